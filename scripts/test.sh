#!/usr/bin/env bash
# Run the whole test suite: prepare the local test bed, then cargo test.
#   scripts/test.sh [extra cargo test args...]   e.g. scripts/test.sh --test testbed
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/testbed.sh
# shellcheck source=/dev/null
source .testbed/env
status=0
cargo test --all-targets "$@" || status=$?
exit "$status"

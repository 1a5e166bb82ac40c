#!/usr/bin/env bash
# Benchmark: a no-op `composeops apply` (with its registry lookup), `apply --offline` and
# `plan`, against Compose v5's `docker-compose up -d`, each on its own twin project of
# identical services on the same engine.
#
#   scripts/bench-noop.sh [--runs N] [--services N]
#
#   --runs N       runs of each command, alternating (apply, apply --offline, plan, compose,
#                  apply, …) so that drift on the shared machine hits all four alike. Default 11.
#   --services N   also measure an N-service project (e.g. 300) after the 30-service one, and
#                  print the cost per service of both sizes: a no-op should grow linearly or
#                  better with the number of services.
#
# For each command: median wall time, median CPU time (user + sys of the child and of what it
# waited for, from wait4's rusage) and median peak RSS (of 3 more runs under GNU time: the
# rusage of a child this script spawns counts the spawning Python's pages too, a 13 MiB
# floor); the ratio Compose / composeops of the
# wall medians; and the engine API requests of a no-op apply (its `api_calls` debug record).
# The image lives in the test bed's registry, so `apply` and `plan` make their real registry
# lookup (one manifest HEAD for the one distinct image); `--offline` skips it, as Compose does.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
RUNS=11
SIZES=(30)
while [ $# -gt 0 ]; do
    case "$1" in
    --runs) RUNS=$2; shift 2 ;;
    --services) [ "$2" != 30 ] && SIZES+=("$2"); shift 2 ;;
    [0-9]*) RUNS=$1; shift ;;
    *) echo "usage: $0 [--runs N] [--services N]" >&2; exit 2 ;;
    esac
done
bash scripts/testbed.sh >/dev/null 2>&1
# shellcheck source=/dev/null
source .testbed/env
command -v python3 >/dev/null || { echo "bench-noop: python3 is needed (wait4 rusage)" >&2; exit 1; }
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
cargo build --release --quiet
BIN=$PWD/target/release/composeops
IMAGE=$COMPOSEOPS_TEST_REGISTRY/composeops-test/busybox:latest
docker tag "$COMPOSEOPS_TEST_BASE_IMAGE" "$IMAGE"
docker push -q "$IMAGE" >/dev/null
WORK=$(mktemp -d)
export COMPOSEOPS_STATE_DIR=$WORK/state
PROJECTS=()

# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh
cleanup() {
    remove_projects "${PROJECTS[@]}"
    rm -rf "$WORK"
}
trap cleanup EXIT

compose_file() {
    echo "services:"
    for i in $(seq -w 1 "$1"); do
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
}

# Measures one size; appends "size command wall_ms cpu_ms rss_kb" lines to $WORK/results.
bench_size() {
    local n=$1 a=bench-ops-$1-$$ b=bench-compose-$1-$$
    PROJECTS+=("$a" "$b")
    mkdir -p "$WORK/$a" "$WORK/$b"
    compose_file "$n" >"$WORK/$a/compose.yaml"
    cp "$WORK/$a/compose.yaml" "$WORK/$b/compose.yaml"
    echo "bringing up two $n-service twins ($a with composeops, $b with Compose v5)…" >&2
    (cd "$WORK/$a" && "$BIN" -p "$a" apply >/dev/null 2>&1)
    (cd "$WORK/$b" && "$COMPOSE_V5" -p "$b" up -d >/dev/null 2>&1)
    local calls
    calls=$(cd "$WORK/$a" && COMPOSEOPS_LOG=debug "$BIN" -p "$a" apply 2>&1 >/dev/null |
        grep -o 'api_calls=[0-9]*' | grep -o '[0-9]*$')
    echo "$n calls $calls" >>"$WORK/results"
    python3 - "$n" "$RUNS" "$WORK/$a" "$WORK/$b" "$a" "$b" "$BIN" "$COMPOSE_V5" >>"$WORK/results" <<'PY'
import os, sys, time
n, runs, dir_a, dir_b, a, b, binary, compose = sys.argv[1:]
cmds = [
    ("apply", dir_a, [binary, "-p", a, "apply"]),
    ("apply--offline", dir_a, [binary, "-p", a, "apply", "--offline"]),
    ("plan", dir_a, [binary, "-p", a, "plan", "--detailed-exitcode"]),
    ("compose-up", dir_b, [compose, "-p", b, "up", "-d"]),
]
null = os.open(os.devnull, os.O_WRONLY)
TIME = "/usr/bin/time"
rss, times = {}, []
for _ in range(int(runs)):
    for name, cwd, argv in cmds:
        os.chdir(cwd)
        t0 = time.perf_counter_ns()
        pid = os.posix_spawn(argv[0], argv, os.environ,
                             file_actions=[(os.POSIX_SPAWN_DUP2, null, 1),
                                           (os.POSIX_SPAWN_DUP2, null, 2)])
        _, status, ru = os.wait4(pid, 0)
        wall = (time.perf_counter_ns() - t0) / 1e6
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit(f"bench-noop: {name} exited {os.waitstatus_to_exitcode(status)}: "
                     "not a no-op (plan not empty after apply?)")
        cpu = (ru.ru_utime + ru.ru_stime) * 1000
        rss[name] = rss.get(name, [])
        times.append((name, wall, cpu))
# Peak RSS: GNU time, a small process, spawns each command so that its own pages are all
# that count.
out = os.path.join(os.path.dirname(dir_a), f"rss-{n}")
for _ in range(3):
    for name, cwd, argv in cmds:
        os.chdir(cwd)
        pid = os.posix_spawn(TIME, [TIME, "-f", "%M", "-o", out] + argv, os.environ,
                             file_actions=[(os.POSIX_SPAWN_DUP2, null, 1),
                                           (os.POSIX_SPAWN_DUP2, null, 2)])
        os.wait4(pid, 0)
        rss[name].append(int(open(out).read().split()[-1]))
for name, wall, cpu in times:
    print(n, name, f"{wall:.2f}", f"{cpu:.2f}", sorted(rss[name])[1])
PY
}

for n in "${SIZES[@]}"; do bench_size "$n"; done

awk -v runs="$RUNS" '
function median(arr, k,    i, j, t, m) {
    for (i = 1; i <= k; i++) m[i] = arr[i]
    for (i = 2; i <= k; i++) for (j = i; j > 1 && m[j - 1] > m[j]; j--) { t = m[j]; m[j] = m[j - 1]; m[j - 1] = t }
    return k % 2 ? m[(k + 1) / 2] : (m[k / 2] + m[k / 2 + 1]) / 2
}
$2 == "calls" { calls[$1] = $3; next }
{
    key = $1 SUBSEP $2; q = ++cnt[key]
    W[key, q] = $3; C[key, q] = $4; R[key, q] = $5
    if (!($1 in seen)) { seen[$1] = 1; sizes[++ns] = $1 }
}
END {
    split("apply apply--offline plan compose-up", cmds, " ")
    label["apply"] = "composeops apply"; label["apply--offline"] = "composeops apply --offline"
    label["plan"] = "composeops plan"; label["compose-up"] = "docker-compose up -d (v5)"
    for (s = 1; s <= ns; s++) {
        n = sizes[s]
        printf "\n%d services, %d runs each, alternating (medians)\n", n, runs
        printf "%-28s %10s %10s %10s %12s\n", "command", "wall ms", "cpu ms", "rss MiB", "compose/this"
        for (i = 1; i <= 4; i++) {
            key = n SUBSEP cmds[i]; k = cnt[key]
            delete w; delete cp; delete r
            for (j = 1; j <= k; j++) { w[j] = W[key, j]; cp[j] = C[key, j]; r[j] = R[key, j] }
            mw[n, cmds[i]] = median(w, k); mc[n, cmds[i]] = median(cp, k); mr[n, cmds[i]] = median(r, k)
        }
        for (i = 1; i <= 4; i++) {
            x = cmds[i]
            printf "%-28s %10.1f %10.1f %10.1f %11.1fx\n", label[x], mw[n, x], mc[n, x], mr[n, x] / 1024, mw[n, "compose-up"] / mw[n, x]
        }
        printf "engine API requests of a no-op apply: %d\n", calls[n]
    }
    if (ns > 1) {
        printf "\ncost per service (wall ms / services)\n"
        printf "%-28s", "command"
        for (s = 1; s <= ns; s++) printf " %10s", sizes[s] " svc"
        printf " %14s\n", "growth/linear"
        for (i = 1; i <= 4; i++) {
            x = cmds[i]; printf "%-28s", label[x]
            for (s = 1; s <= ns; s++) printf " %10.3f", mw[sizes[s], x] / sizes[s]
            # < 1: the largest size costs less per service than the smallest (better than linear).
            printf " %14.2f\n", (mw[sizes[ns], x] / sizes[ns]) / (mw[sizes[1], x] / sizes[1])
        }
    }
}' "$WORK/results"

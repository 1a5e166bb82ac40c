#!/usr/bin/env bash
# The agent at idle: RSS and CPU of the release binary watching N stacks (default 10) of a
# git checkout, with a git poll and an image schedule configured, once every stack converged.
#
#   scripts/bench-agent-idle.sh [STACKS] [SECONDS]     (defaults 10 and 60)
#
# Prints VmRSS (now), VmHWM (peak) and the CPU time used over the idle window.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
STACKS=${1:-10}
SECS=${2:-60}
bash scripts/testbed.sh >/dev/null
# shellcheck source=/dev/null
source .testbed/env
command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl >/dev/null; }
cargo build --release --quiet
BIN=$PWD/target/release/composeops
WORK=$(mktemp -d)
PREFIX=idle-$$
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
AGENT=""
cleanup() {
    [ -n "$AGENT" ] && kill "$AGENT" 2>/dev/null && wait "$AGENT" 2>/dev/null || true
    for i in $(seq 1 "$STACKS"); do
        ids=$(docker ps -aq --filter "label=com.docker.compose.project=$PREFIX-$i")
        [ -n "$ids" ] && docker rm -f $ids >/dev/null 2>&1 || true
        docker network rm "$PREFIX-${i}_default" >/dev/null 2>&1 || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

mkdir -p "$WORK/repo"
for i in $(seq 1 "$STACKS"); do
    mkdir -p "$WORK/repo/s$i"
    cat >"$WORK/repo/s$i/compose.yaml" <<YAML
name: $PREFIX-$i
services:
  app:
    image: $COMPOSEOPS_TEST_BASE_IMAGE
    command: ["sleep", "86400"]
YAML
done
git -C "$WORK/repo" init -q
git -C "$WORK/repo" -c user.email=b@example.com -c user.name=bench add -A
git -C "$WORK/repo" -c user.email=b@example.com -c user.name=bench commit -qm stacks

"$BIN" agent "$WORK/repo" --state-dir "$WORK/state" --listen "$PORT" \
    --git-pull 30s --check-images 1h 2>"$WORK/agent.log" &
AGENT=$!
for _ in $(seq 1 600); do
    done_count=$(curl -fs "http://127.0.0.1:$PORT/status" 2>/dev/null | python3 -c '
import json, sys
st = json.load(sys.stdin)
print(sum(1 for p in st["projects"].values() if p.get("last_result") == "success"))
' 2>/dev/null || echo 0)
    [ "$done_count" = "$STACKS" ] && break
    sleep 0.2
done
[ "$done_count" = "$STACKS" ] || { tail -20 "$WORK/agent.log"; echo "stacks did not converge" >&2; exit 1; }
sleep 5
ticks() { awk '{print $14 + $15}' "/proc/$AGENT/stat"; }
t0=$(ticks)
sleep "$SECS"
t1=$(ticks)
hz=$(getconf CLK_TCK)
rss=$(awk '/VmRSS/ {print $2}' "/proc/$AGENT/status")
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$AGENT/status")
anon=$(awk '/RssAnon/ {print $2}' "/proc/$AGENT/status")
file=$(awk '/RssFile/ {print $2}' "/proc/$AGENT/status")
threads=$(awk '/Threads/ {print $2}' "/proc/$AGENT/status")
python3 - "$STACKS" "$SECS" "$rss" "$hwm" "$t0" "$t1" "$hz" "$anon" "$file" "$threads" <<'PY'
import sys
stacks, secs, rss, hwm, t0, t1, hz, anon, file, threads = sys.argv[1:]
cpu = (int(t1) - int(t0)) / int(hz)
print(f"agent idle, {stacks} stacks, {secs} s window (git-pull 30s, check-images 1h):")
print(f"  RSS now   {int(rss)/1024:6.1f} MiB ({int(anon)/1024:.1f} heap and stacks, {int(file)/1024:.1f} the binary's pages; {threads} threads)")
print(f"  RSS peak  {int(hwm)/1024:6.1f} MiB (includes the first reconciles)")
print(f"  CPU       {cpu:6.2f} s ({cpu/int(secs)*100:.2f} % of one core)")
PY

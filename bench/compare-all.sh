#!/usr/bin/env bash
# Regenerates docs/benchmarks/README.md and its plots: every scenario of `palio-bench compare`,
# Palio beside its peers, then `palio-bench compare-report`.
#
# Usage: bench/compare-all.sh [OUT.jsonl]      (from the repository root)
#
# Needs: the peers (bench/setup-peers.sh) and a release build
# (`cargo build --release -p palio-broker -p palio-bench`). Takes about 20-30 minutes on a
# 2-core machine; leave the machine otherwise idle.
#
# Environment:
#   RUNS   runs of each system per comparison (default 5)
#   SIZES  payload sizes for 1->1 against NATS (default "16 128 1024 4096 16384 65536")
#   ONLY   run only these comparisons, e.g. "sizes latency" (default: all of
#          "sizes tls mosquitto fanout fanin line persistent latency")
set -euo pipefail
out=${1:-docs/benchmarks/compare.jsonl}
bin=${PALIO_BENCH:-target/release/palio-bench}
runs=${RUNS:-5}
sizes=${SIZES:-16 128 1024 4096 16384 65536}
only=${ONLY:-sizes tls mosquitto fanout fanin line persistent latency}
for f in "$bin" "$(dirname "$bin")/palio-broker"; do
  if [ ! -x "$f" ]; then
    echo "no $f: cargo build --release -p palio-broker -p palio-bench" >&2
    exit 2
  fi
done
: >"$out"
run() {
  echo "== compare $*" >&2
  local start=$SECONDS
  "$bin" compare --runs "$runs" --json "$@" >>"$out"
  tail -n1 "$out" | python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); print("   palio %.0f, %s %.0f msgs/s, ratio %.2f, lost %d/%d" % (d["palio_msgs_per_s"], d["peer"], d["peer_msgs_per_s"], d["ratio"], d["palio_lost"], d["peer_lost"]))' >&2 || true
  echo "   ($((SECONDS - start)) s)" >&2
}
for what in $only; do
  case $what in
    sizes) for s in $sizes; do run --peer nats --scenario 1to1 --size "$s"; done ;;
    tls) run --peer nats-tls --scenario 1to1 ;;
    mosquitto) run --peer mosquitto --scenario 1to1 ;;
    fanout) run --peer nats --scenario 1to16 --messages 50000 ;;
    fanin) run --peer nats --scenario 16to1 ;;
    line) run --peer nats --scenario line ;;
    persistent) run --peer jetstream --scenario persistent --messages 100000 ;;
    latency) run --peer nats --scenario latency --messages 200000 ;;
    *) echo "unknown comparison: $what" >&2; exit 2 ;;
  esac
done
"$bin" compare-report "$out" --dir docs/benchmarks --notes docs/benchmarks/compare-notes.md \
  --commit "$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . ':!docs' || echo '+changes')" \
  --command "bench/compare-all.sh"

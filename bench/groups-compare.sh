#!/usr/bin/env bash
# Runs the ordered-group comparison of docs/benchmarks/groups.md: on 3 brokers in a line, the
# publisher at the first and the member (subscriber) at the last, each as its own process, it
# runs best-effort publish/subscribe ("unordered") and the fifo, causal and total orders,
# interleaved: for each round and scenario, unordered fifo causal total. One
# `palio-bench pubsub --json` line per run (tagged with system, scenario and round) is
# appended to OUT.jsonl; then `palio-bench pubsub-summary OUT.jsonl` prints the tables, with
# each order's ratio to unordered.
#
# Usage: bench/groups-compare.sh OUT.jsonl [ROUNDS]
#
# Environment:
#   PALIO_BENCH  the palio-bench binary (default target/release/palio-bench; palio-broker must
#                sit next to it: `cargo build --release -p palio-bench -p palio-broker`)
#   SCENARIOS    default "3b-unlimited 3b-10k":
#                  3b-unlimited  as fast as flow control (and, for groups, acks) allow
#                  3b-10k        paced at 10,000/s, for latency
#   COUNT        messages per unlimited run (default 50000)
#   PACED_COUNT  messages per paced run (default 30000)
#   PAYLOAD      payload bytes (default 128); every message also has 4 attributes
#   RUN_TIMEOUT  seconds allowed per run, setup included (default 300)
set -u
out=${1:?usage: groups-compare.sh OUT.jsonl [ROUNDS]}
rounds=${2:-3}
bin=${PALIO_BENCH:-target/release/palio-bench}
scenarios=${SCENARIOS:-3b-unlimited 3b-10k}
count=${COUNT:-50000}
paced=${PACED_COUNT:-30000}
payload=${PAYLOAD:-128}
if [ ! -x "$bin" ]; then
  echo "not an executable: $bin" >&2
  exit 2
fi
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'); load: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
failed=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for round in $(seq 1 "$rounds"); do
  for scenario in $scenarios; do
    case $scenario in
      3b-unlimited) args=(--brokers 3 --count "$count") ;;
      3b-10k) args=(--brokers 3 --count "$paced" --rate 10000) ;;
      *) echo "unknown scenario: $scenario" >&2; exit 2 ;;
    esac
    for system in unordered fifo causal total; do
      if [ "$system" = unordered ]; then mode=(); else mode=(--group "$system"); fi
      start=$(date +%s)
      if line=$(timeout -k 10 "${RUN_TIMEOUT:-300}" "$bin" pubsub "${args[@]}" "${mode[@]}" \
          --payload "$payload" --system "$system" --scenario "$scenario" --round "$round" \
          --json 2>"$log"); then
        echo "$line" >>"$out"
        rate=$(grep -o '"msgs_per_sec":[0-9.]*' <<<"$line" | cut -d: -f2)
        loss=$(grep -o '"loss":[0-9.e-]*' <<<"$line" | cut -d: -f2)
        p99=$(grep -o '"p99":[0-9]*' <<<"$line" | cut -d: -f2)
        printf 'round %s %-13s %-9s %6.0f msgs/s, loss %s, p99 %s us (%s s)\n' \
          "$round" "$scenario" "$system" "$rate" "$loss" "$p99" "$(( $(date +%s) - start ))" >&2
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

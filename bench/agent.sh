#!/bin/sh
# The benchmark agent: writes one file in its cluster's folder and exits (after sleeping
# BENCH_AGENT_SLEEP seconds, when set). Run by work-clusters and by baseline.sh alike.
# With BENCH_AGENT_LOG set, it appends its cluster's name there (to count the agents that ran).
set -eu
if [ -n "${BENCH_AGENT_LOG:-}" ]; then echo "$WC_CLUSTER" >> "$BENCH_AGENT_LOG"; fi
if [ -n "${BENCH_AGENT_SLEEP:-}" ]; then sleep "$BENCH_AGENT_SLEEP"; fi
mkdir -p "$WC_CLUSTER"
echo "written by the agent of $WC_CLUSTER" > "$WC_CLUSTER/agent_out.txt"

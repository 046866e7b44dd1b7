#!/usr/bin/env bash
# The hand-rolled loop a user would write instead of work-clusters, doing the same work:
# a branch and a full-checkout worktree per cluster, the agents in parallel, their work
# committed, an integration worktree with a `git merge --no-ff` of each branch, then the
# cluster worktrees removed (the integration worktree is kept, as work-clusters keeps it).
#
#   bench/baseline.sh REPO WORKSPACE AGENT_SCRIPT CLUSTER...
#
# The agent is run as `sh AGENT_SCRIPT` in its worktree with WC_CLUSTER set.
set -euo pipefail

if [ $# -lt 4 ]; then
  echo "usage: $0 REPO WORKSPACE AGENT_SCRIPT CLUSTER..." >&2
  exit 2
fi
repo=$1 ws=$2 agent=$3
shift 3
base=$(git -C "$repo" rev-parse HEAD)
mkdir -p "$ws"

# 1. worktrees, one at a time (parallel `git worktree add` corrupts .git/worktrees)
for c in "$@"; do
  git -C "$repo" worktree add -q -b "manual/$c" "$ws/$c" "$base"
done

# 2. agents in parallel, each committing what it left
pids=()
for c in "$@"; do
  (
    cd "$ws/$c"
    WC_CLUSTER=$c sh "$agent"
    git add -A
    git commit -q -m "$c: the agent's work"
  ) &
  pids+=($!)
done
for pid in "${pids[@]}"; do
  wait "$pid"
done

# 3. integration: merge every branch with --no-ff
git -C "$repo" worktree add -q -b manual/integration "$ws/integration" "$base"
for c in "$@"; do
  git -C "$ws/integration" merge -q --no-ff --no-edit "manual/$c"
done

# 4. cleanup
for c in "$@"; do
  git -C "$repo" worktree remove --force "$ws/$c"
done

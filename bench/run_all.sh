#!/usr/bin/env bash
# Run every benchmark at full size, one after another, then gather the results into
# bench/results.json and the benchmark table of README.md.
#
#   bench/run_all.sh                  # all of them (about 50 minutes on 2 cores)
#   bench/run_all.sh overhead scale   # only these
#   PYTHON=/path/to/venv/bin/python bench/run_all.sh
#
# Each run writes bench/results/<name>.json (with the machine, the date and the load average when
# it finished), and the README's table shows every benchmark with its cores, date and load; the
# scripts written for other issues are run the same way when present. Run it on an
# otherwise idle machine: the figures are wall times. A file system that deleted many files
# minutes before writes new ones slower (bench_scale.py prints its pace beside the run), so the
# benchmarks' folders are removed only after the last one.
set -euo pipefail
cd "$(dirname "$0")/.."
# The Python of the environment work-clusters is installed in (its work-clusters and prefect
# commands are taken from beside it): $PYTHON, else the README's .venv.
python=${PYTHON:-.venv/bin/python}
if [ ! -x "$python" ]; then
  echo "no $python: install the project (see README.md) or set PYTHON=/path/to/venv/bin/python" >&2
  exit 2
fi
export PREFECT_SERVER_ANALYTICS_ENABLED=false
# Our modules' bytecode, as an installed package has it (pip compiles a package as it installs it;
# an editable install writes it on the first import, but not where PYTHONDONTWRITEBYTECODE is set,
# as on the machines these figures come from): without it every process of the tool compiles its
# modules from source, 0.3 s of CPU, while Prefect's, in the floor, is compiled. compileall does
# not follow the package's symlinked folders, so they are named one by one.
PYTHONDONTWRITEBYTECODE= "$python" -m compileall -q prefect_work_clusters/__init__.py flows tasks blocks deployments >/dev/null

# name | script | arguments
runs=(
  "startup|floor.py|"
  "overhead|bench_overhead.py|--rounds 5"
  "overhead-20k|bench_overhead.py|--files 20000 --rounds 3"
  "parallel|bench_parallel.py|"
  "scale-server|bench_scale.py|--server"
  "scale|bench_scale.py|"
  "resume|bench_resume.py|"
  "integration|bench_integration.py|--files 100000 --branches 100 --repeat 2"
  "scope|bench_scope.py|"
  "suggest|bench_suggest.py|"
  "suggest-history|bench_suggest_history.py|--repo /work/.mirror/encode+httpx/repo --repo /work/.mirror/pallets+click/repo --repo /work/.mirror/more-itertools+more-itertools/repo --back 100 --window 100"
  "accounting|bench_accounting.py|"
  "fidelity|bench_fidelity.py|"
  "guard|bench_guard.py|--files 100000"
  "sandbox|bench_sandbox.py|"
  "output|bench_output.py|"
  "smoke|bench_smoke.py|"
)
mkdir -p bench/results
# Each benchmark's folder is moved here and removed only after the last one: on a file system that
# writes slower after a mass deletion, one benchmark's cleanup must not be timed in the next one
# (bench/common.py, workdir).
BENCH_TRASH=$(mktemp -d "${TMPDIR:-/tmp}/wc-bench-trash-XXXXXX")
export BENCH_TRASH
trap 'rm -rf "$BENCH_TRASH"' EXIT
load=$(cut -d' ' -f1-3 /proc/loadavg)
for entry in "${runs[@]}"; do
  IFS='|' read -r name script extra <<< "$entry"
  if [ $# -gt 0 ] && [[ " $* " != *" $name "* ]]; then
    continue
  fi
  if [ ! -f "bench/$script" ]; then
    echo "skip $name: bench/$script is not there"
    continue
  fi
  echo "== $name"
  # a benchmark that misses a target still writes its results; only a crash is reported here
  # shellcheck disable=SC2086  # $extra holds several arguments
  "$python" "bench/$script" --out "bench/results/$name.json" $extra || echo "$name exited $?"
done
# every result there is (the latest of each), in the order of the list above
files=()
for entry in "${runs[@]}"; do
  name=${entry%%|*}
  if [ -f "bench/results/$name.json" ]; then
    files+=("bench/results/$name.json")
  fi
done
"$python" bench/collect.py "${files[@]}" --out bench/results.json --readme README.md --load "$load"

#!/usr/bin/env bash
# Mutation testing (mutmut 3) of the modules that hold the guarantees: `make mutation`.
#
# mutmut names a mutant by the path of its file (shared/fakeai/streams/positions.py would be
# "shared.fakeai.streams.positions") and matches it against the module's __name__ at run time
# ("fakeai.streams.positions"), so it cannot run on this repository's layout directly. This
# script stages a tree where paths equal import names (fakeai/ = shared/fakeai + the
# services), runs mutmut there and prints the results; the checkout is never modified.
#
# Usage: infra/scripts/mutation.sh [MODULE ...]   (default: every module of MODULES below)
#   MODULE is a path under fakeai/, e.g. streams/positions.py; TESTS_<name> picks its tests.
# Environment: MUTATION_DIR (default a temp dir, kept for `mutmut browse`), MUTATION_JOBS (1),
#   MUTATION_TIMEOUT_MULTIPLIER (mutmut's timeout_multiplier, default 15: a mutant's tests get
#   (their clean time + 1 s) x this x 2 of CPU and half that of wall time; lower it for
#   modules whose mutants often hang, each of which otherwise burns that whole budget, and
#   re-run their timeouts by hand: beside other work a low one also times out mutants that
#   pass; docs/TESTING.md).
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
python=${PYTHON:-$repo/.venv/bin/python}

# module (under fakeai/) -> the tests that guard it (pytest selection, space-separated)
declare -A MODULES=(
  [streams/positions.py]="tests/unit/streams"
  [timeseries/sketch.py]="tests/unit/timeseries"
  [services/edge/reader.py]="tests/integration/edge/test_mutation_reader.py tests/unit/services/test_edge_reader_gaps.py tests/unit/services/test_edge_caps.py"
  [services/edge/hub.py]="tests/integration/edge/test_mutation_hub.py tests/integration/edge/test_edge_hub.py"
  [services/producer/writer.py]="tests/integration/producer/test_mutation_writer.py tests/integration/producer/test_producer_writer.py"
  [services/producer/records.py]="tests/integration/producer/test_mutation_records.py tests/integration/producer/test_producer_records.py"
  [services/metrics/tracker.py]="tests/unit/timeseries/test_mutation_tracker.py tests/unit/timeseries/test_ts_stream_tracker.py tests/unit/timeseries/test_promise_metric_values.py"
  [timeseries/store.py]="tests/integration/metrics/test_mutation_store.py tests/unit/timeseries tests/integration/metrics/test_ts_endpoints.py"
  [timeseries/query.py]="tests/integration/metrics/test_mutation_query.py tests/unit/timeseries tests/integration/metrics/test_ts_endpoints.py"
  [latency_profiles/manager.py]="tests/unit/test_mutation_latency_manager.py tests/unit/test_latency_profiles.py"
)

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then targets=("${!MODULES[@]}"); fi

for module in "${targets[@]}"; do
  tests=${MODULES[$module]:-}
  if [ -z "$tests" ]; then echo "unknown module $module (known: ${!MODULES[*]})" >&2; exit 2; fi
  work=${MUTATION_DIR:-$(mktemp -d)}/${module//\//_}
  rm -rf "$work"; mkdir -p "$work/fakeai"
  cp -r "$repo"/shared/fakeai/. "$work/fakeai/"
  cp -r "$repo"/services/fakeai/services "$work/fakeai/services"
  cp -r "$repo/tests" "$work/tests"
  find "$work" -name __pycache__ -prune -exec rm -rf {} +
  # The tests import the staged tree from mutants/ (mutmut puts the mutants there), and
  # nothing from the checkout: its .pth entries come after mutants/ on sys.path.
  sed -e 's/^pythonpath = \["\."\]/pythonpath = ["mutants"]/' "$repo/pyproject.toml" > "$work/pyproject.toml"
  selection=$(printf '"%s", ' $tests)
  cat >> "$work/pyproject.toml" <<CFG

[tool.mutmut]
source_paths = ["fakeai/"]
only_mutate = ["fakeai/$module"]
also_copy = ["tests/"]
pytest_add_cli_args = ["-p", "no:randomly", "-p", "no:cacheprovider", "-x", "-q"]
pytest_add_cli_args_test_selection = [${selection%, }]
timeout_multiplier = ${MUTATION_TIMEOUT_MULTIPLIER:-15}
CFG
  echo "== fakeai/$module (tests: $tests) in $work"
  (cd "$work" && "$python" -m mutmut run --max-children "${MUTATION_JOBS:-1}" > run.log 2>&1 || true
   cd "$work" && "$python" -m mutmut results --all true 2>/dev/null | tee results.txt | \
     awk '{s[$NF]++} END {for (k in s) printf "   %s %d\n", k, s[k]}')
done

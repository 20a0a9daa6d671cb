#!/usr/bin/env bash
# The whole suite in three pytest processes, one after the other; fails if any test failed.
#
# Why: a server started inside the test process (tests/support.py: running_app) leaves ~200 MB behind in
# native memory when it stops (no Python object stays alive: no engine, module, thread; glibc's
# malloc_trim and MALLOC_ARENA_MAX do not return it), and the suite starts well over a hundred of them.
# In one process the suite reached 24 GB and the kernel killed it at test 795 of 871 (7 Dec 2026). A
# deployed server starts one app per process, so this is the test harness's cost, not a visitor's.
set -uo pipefail
python=${1:?usage: tests/run-in-groups.sh PYTHON [pytest options]}
shift
cd "$(dirname "$0")/.."
shopt -s nullglob
groups=(
  "tests/test_[a-o]*.py"
  "tests/test_[p-r]*.py tests/test_server_[a-h]*.py"
  "tests/test_server_[i-z]*.py tests/test_s[a-df-z]*.py tests/test_[t-z]*.py"
)
grouped=$(for group in "${groups[@]}"; do printf '%s\n' $group; done | sort)
every=$(printf '%s\n' tests/test_*.py | sort)
if [ "$grouped" != "$every" ]; then
  echo "run-in-groups.sh: the groups do not cover every test file exactly once:" >&2
  diff <(echo "$every") <(echo "$grouped") >&2
  exit 2
fi
status=0
for group in "${groups[@]}"; do
  # shellcheck disable=SC2086  # each group is a list of globs
  "$python" -m pytest "$@" $group || status=1
done
exit $status

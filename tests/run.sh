#!/usr/bin/env bash
# Runs every test project and ends with one summary line: "N passed, N failed, N skipped".
set -uo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
dotnet test Mirror.sln "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
passed=0 failed=0 skipped=0
while read -r f p s; do
  passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
done < <(sed -nE 's/.*(Passed|Failed)! +- Failed: +([0-9]+), Passed: +([0-9]+), Skipped: +([0-9]+).*/\2 \3 \4/p' "$log")
rm -f "$log"
echo "tests: ${passed} passed, ${failed} failed, ${skipped} skipped"
if [[ "${CI:-}" == "true" ]] && ((skipped > 0)); then
  echo "CI runs every required test: ${skipped} skipped" >&2
  exit 1
fi
if ((rc == 0 && passed == 0)); then
  echo "no test ran" >&2
  exit 1
fi
exit "$rc"

#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Every test of image-access, from a fresh Debian 12 (as root): installs what is missing,
# builds with -Werror, runs all meson test suites, and ends with the line
#   N passed, N failed, N skipped
# A skipped test counts as a failure in the exit status: in CI a skip hides a missing piece.
set -uo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
export BUILD=${BUILD:-$top/build}
export MESON_ARGS="${MESON_ARGS:--Dwerror=true}"

"$top/tests/tools/setup.sh" || { echo "0 passed, 1 failed, 0 skipped"; exit 1; }

meson test -C "$BUILD" --print-errorlogs --num-processes 2 "$@"
status=$?

/usr/bin/python3 - "$BUILD/meson-logs/testlog.json" <<'PY'
import json, sys
counts = {"OK": 0, "EXPECTEDFAIL": 0, "FAIL": 0, "UNEXPECTEDPASS": 0, "TIMEOUT": 0,
          "ERROR": 0, "SKIP": 0}
with open(sys.argv[1]) as f:
    for line in f:
        r = json.loads(line)["result"]
        counts[r] = counts.get(r, 0) + 1
passed = counts["OK"] + counts["EXPECTEDFAIL"]
failed = counts["FAIL"] + counts["UNEXPECTEDPASS"] + counts["TIMEOUT"] + counts["ERROR"]
print(f"{passed} passed, {failed} failed, {counts['SKIP']} skipped")
sys.exit(1 if failed or counts["SKIP"] else 0)
PY
summary=$?
[ $status -eq 0 ] && exit $summary
exit 1

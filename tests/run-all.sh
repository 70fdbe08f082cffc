#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Every test of image-access, from a fresh Debian 12 (as root): installs what is missing,
# builds with -Werror, runs all meson test suites, then the unit, fuzz-regress and integration
# suites a second time with everything built under AddressSanitizer and UBSan, and ends with
# the line (both passes counted together)
#   N passed, N failed, N skipped
# A skipped test counts as a failure in the exit status: in CI a skip hides a missing piece.
#
# The sanitized pass builds in $ASAN_BUILD (default: $BUILD-asan); IA_SANITIZE=0 skips it.
# It leaves out test_preload.py, test_qemu.py, test_libvirt.py, the session-VM test of
# test_desktop.py and the test bed's own test of a preload from a path with spaces: they
# LD_PRELOAD the client shim into programs that are not built with ASan (QEMU, a probe), where
# the ASan runtime cannot load.  For the same reason it builds no
# GObject Introspection data (g-ir-scanner runs a dumper linked with the sanitized library,
# which deadlocks in glibc's gettext lock) and leaves out the tests that load the library into
# Debian's Python through it: test_gi.py and two tests of test_desktop.py.
# Measured on 2 shared vCPUs: the first pass about 3 minutes, the build and the sanitized
# pass about 3 more.
set -uo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
export BUILD=${BUILD:-$top/build}
export MESON_ARGS="${MESON_ARGS:--Dwerror=true}"
ASAN_BUILD=${ASAN_BUILD:-$BUILD-asan}
# the tests the sanitized pass leaves out (see above)
not_sanitized='^test_(preload|qemu|libvirt|gi)\.|^test_desktop\.(SessionVmTests\.|DismissedPromptTests\.|PromptTests\.test_keep_within_one_process$)|^test_testbed\.ReachabilityTests\.test_build_under_private_dir_with_spaces$'

"$top/tests/tools/setup.sh" || { echo "0 passed, 1 failed, 0 skipped"; exit 1; }

meson test -C "$BUILD" --print-errorlogs --num-processes 2 "$@"
status=$?
logs=("$BUILD/meson-logs/testlog.json")

if [ "${IA_SANITIZE:-1}" != 0 ]; then
        if [ ! -f "$ASAN_BUILD/build.ninja" ]; then
                meson setup --prefix=/usr "$ASAN_BUILD" "$top" $MESON_ARGS \
                        -Db_sanitize=address,undefined -Db_lundef=false \
                        -Dintrospection=disabled >/dev/null
        else
                meson setup --reconfigure "$ASAN_BUILD" "$top" $MESON_ARGS \
                        -Db_sanitize=address,undefined -Db_lundef=false \
                        -Dintrospection=disabled >/dev/null
        fi && meson compile -C "$ASAN_BUILD" >/dev/null
        if [ $? -ne 0 ]; then
                echo "The sanitized build failed" >&2
                status=1
        else
                if [ $# -gt 0 ]; then
                        selected=("$@")
                else
                        mapfile -t selected < <(meson test -C "$ASAN_BUILD" --list --suite unit \
                                --suite fuzz-regress --suite integration 2>/dev/null |
                                sed -n 's|^[^ ]* / ||p' | grep -Ev "$not_sanitized" | sort -u)
                fi
                ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
                UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
                        meson test -C "$ASAN_BUILD" --no-rebuild --print-errorlogs --num-processes 2 \
                        "${selected[@]}" || status=1
                logs+=("$ASAN_BUILD/meson-logs/testlog.json")
        fi
fi

/usr/bin/python3 - "${logs[@]}" <<'PY'
import json, sys
counts = {"OK": 0, "EXPECTEDFAIL": 0, "FAIL": 0, "UNEXPECTEDPASS": 0, "TIMEOUT": 0,
          "ERROR": 0, "SKIP": 0}
for path in sys.argv[1:]:
    with open(path) as f:
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

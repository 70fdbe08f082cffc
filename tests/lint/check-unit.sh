#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Checks the configured systemd unit and D-Bus activation file (from the build directory):
#   1. systemd-analyze verify: syntax, unknown keys, values, dependencies.  It also insists
#      that ExecStart= names an executable file, and the configured path (the install location,
#      e.g. /usr/local/libexec/image-accessd) does not exist before "meson install".  So the
#      unit is copied to a temporary directory with ExecStart= pointing at the built daemon, or
#      at /bin/true when the daemon is not built; nothing else is changed.  verify reads unit
#      files only: it needs neither systemd as PID 1 nor a bus, and works in this container.
#      Warnings do not change its exit status, so any output at all is a failure here.
#      --man=no: the man page is not installed yet (the man page test covers it).
#   2. systemd-analyze security --offline: the exposure score stays at or below
#      MAX_EXPOSURE (catches hardening lines dropped by accident).
#   3. The activation file matches the unit: Name= is BusName=, Exec= is ExecStart=,
#      SystemdService= is the unit's file name, User=root.
#
# Usage: check-unit.sh UNIT ACTIVATION_FILE [DAEMON].  Output: TAP.
# Skips (TAP plan "1..0 # SKIP", exit 0) if systemd-analyze is missing.
set -u

unit=${1:?usage: check-unit.sh UNIT ACTIVATION_FILE [DAEMON]}
activation=${2:?usage: check-unit.sh UNIT ACTIVATION_FILE [DAEMON]}
daemon=${3:-}
# 1.7 with systemd 252 on Debian 12 (hostnamed: 1.5); the margin absorbs rounding only.  A
# hardening line dropped by accident raises the score past it; raise it only on purpose.
MAX_EXPOSURE=${MAX_EXPOSURE:-1.8}

if ! command -v systemd-analyze >/dev/null; then
        echo "1..0 # SKIP systemd-analyze not installed (package systemd)"
        exit 0  # TAP: the plan says skip; meson counts a non-zero exit as an error
fi

n=0
failed=0
result() {      # result OK|FAIL description [output]
        n=$((n + 1))
        if [ "$1" = OK ]; then
                echo "ok $n - $2"
        else
                failed=$((failed + 1))
                echo "not ok $n - $2"
                [ -n "${3:-}" ] && printf '%s\n' "$3" | sed 's/^/# /'
        fi
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

name=$(basename "$unit")
if [ -n "$daemon" ] && [ -x "$daemon" ]; then
        exec_path=$daemon
else
        exec_path=/bin/true
fi
# ExecStart= in quotes (a checkout may be in a path with spaces): \ and " escaped, % doubled
exec_q=${exec_path//\\/\\\\}
exec_q=${exec_q//\"/\\\"}
exec_q=${exec_q//%/%%}
while IFS= read -r line; do
        case $line in
        ExecStart=*)
                rest=${line#ExecStart=}
                args=
                [ "${rest#* }" != "$rest" ] && args=" ${rest#* }"
                printf 'ExecStart="%s"%s\n' "$exec_q" "$args" ;;
        *)
                printf '%s\n' "$line" ;;
        esac
done <"$unit" >"$tmp/$name"

# 1. verify
out=$(cd "$tmp" && SYSTEMD_LOG_COLOR=0 systemd-analyze verify --man=no "./$name" 2>&1)
rc=$?
if [ $rc -eq 0 ] && [ -z "$out" ]; then
        result OK "systemd-analyze verify $name (ExecStart=$exec_path)"
else
        result FAIL "systemd-analyze verify $name (ExecStart=$exec_path)" "exit $rc: $out"
fi

# 2. security score (compared here: --threshold's exit status would not say which line).
out=$(cd "$tmp" && SYSTEMD_LOG_COLOR=0 systemd-analyze security --offline=yes --no-pager \
                "./$name" 2>&1)
score=$(printf '%s\n' "$out" | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
if [ -z "$score" ]; then
        result FAIL "systemd-analyze security: exposure score printed" "$out"
elif awk -v s="$score" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(s <= m) }'; then
        result OK "systemd-analyze security: exposure $score <= $MAX_EXPOSURE"
else
        result FAIL "systemd-analyze security: exposure $score <= $MAX_EXPOSURE" \
                "$(printf '%s\n' "$out" | grep '✗')"
fi

# 3. activation file against the unit
key() {         # key FILE KEY: value of the first KEY= line
        sed -n "s/^$2=//p" "$1" | head -n1
}
check_eq() {    # check_eq DESCRIPTION GOT WANT
        if [ "$2" = "$3" ] && [ -n "$2" ]; then
                result OK "$1"
        else
                result FAIL "$1" "got '$2', want '$3'"
        fi
}
check_eq "activation Name= equals unit BusName=" \
        "$(key "$activation" Name)" "$(key "$unit" BusName)"
check_eq "activation Exec= equals unit ExecStart=" \
        "$(key "$activation" Exec)" "$(key "$unit" ExecStart)"
check_eq "activation SystemdService= is the unit" \
        "$(key "$activation" SystemdService)" "$name"
check_eq "activation User= is root" "$(key "$activation" User)" root
check_eq "activation file starts with [D-BUS Service]" \
        "$(grep -v -e '^#' -e '^$' "$activation" | head -n1)" "[D-BUS Service]"

echo "1..$n"
[ "$failed" -eq 0 ]

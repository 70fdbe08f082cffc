#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The hand-written man pages render without a single warning (man --warnings passes -ww to
# groff: bad macros, unbalanced fonts, lines that cannot be broken), fit 80 columns, and have a
# NAME section that whatis/apropos can index (lexgrog).
#
# Usage: check-man.sh PAGE....  Output: TAP.
# Skips (TAP plan "1..0 # SKIP", exit 0) if man(1) is missing.
set -u

if ! command -v man >/dev/null; then
        echo "1..0 # SKIP man not installed (package man-db)"
        exit 0  # TAP: the plan says skip; meson counts a non-zero exit as an error
fi
export LC_ALL=C.UTF-8 MANWIDTH=80 MANPAGER=cat PAGER=cat

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

for page in "$@"; do
        name=$(basename "$page")
        man --warnings -l "$page" >"$tmp/out" 2>"$tmp/err"
        rc=$?
        if [ $rc -eq 0 ] && [ ! -s "$tmp/err" ] && [ -s "$tmp/out" ]; then
                result OK "$name renders without warnings"
        else
                result FAIL "$name renders without warnings" "exit $rc: $(cat "$tmp/err")"
        fi

        wide=$(awk 'length > 80 { printf "line %d: %d columns\n", NR, length }' "$tmp/out")
        if [ -z "$wide" ]; then
                result OK "$name fits 80 columns"
        else
                result FAIL "$name fits 80 columns" "$wide"
        fi

        if ! command -v lexgrog >/dev/null; then
                n=$((n + 1))
                echo "ok $n - $name NAME section # SKIP lexgrog missing"
        elif out=$(lexgrog "$page" 2>&1); then
                result OK "$name NAME section: ${out#*: }"
        else
                result FAIL "$name NAME section parses" "$out"
        fi
done

echo "1..$n"
[ "$failed" -eq 0 ]

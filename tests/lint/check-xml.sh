#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# xmllint every XML file the project installs, found at run time (not at configure time), so a
# file added later is checked without reconfiguring:
#   policy/*.policy          valid against polkit's DTD (policyconfig-1.dtd, from polkitd)
#   policy/*.conf            well-formed, root element <busconfig>
#   dbus-interfaces/*.xml    well-formed, root element <node>; every method with an fd ('h')
#                            argument carries org.gtk.GDBus.C.UnixFD, and the proxy that
#                            gdbus-codegen generates from it passes a GUnixFDList
# dbus ships no busconfig or introspection DTD on Debian and --nonet forbids fetching one, so
# those two are checked for well-formedness and their root; their meaning is tested elsewhere
# (the bus policy by the integration tests' private bus, the interface by the introspection
# sync test).
#
# Usage: check-xml.sh SOURCE_ROOT.  Output: TAP.
# Skips (TAP plan "1..0 # SKIP", exit 0) if xmllint is missing.
set -u

src=${1:?usage: check-xml.sh SOURCE_ROOT}
POLKIT_DTD=${POLKIT_DTD:-/usr/share/polkit-1/policyconfig-1.dtd}

if ! command -v xmllint >/dev/null; then
        echo "1..0 # SKIP xmllint not installed (libxml2-utils)"
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

# check_root FILE NAME: the document element of FILE is NAME.
check_root() {
        local root
        root=$(xmllint --nonet --xpath 'name(/*)' "$1" 2>&1)
        if [ "$root" = "$2" ]; then
                result OK "$1: root element <$2>"
        else
                result FAIL "$1: root element <$2>" "found: $root"
        fi
}

shopt -s nullglob
cd "$src" || exit 1

policies=(policy/*.policy)
confs=(policy/*.conf)
interfaces=(dbus-interfaces/*.xml)

if [ ${#policies[@]} -eq 0 ]; then
        result FAIL "policy/ holds a .policy file"
fi

for f in "${policies[@]}"; do
        if [ -r "$POLKIT_DTD" ]; then
                if out=$(xmllint --noout --nonet --dtdvalid "$POLKIT_DTD" "$f" 2>&1); then
                        result OK "$f: valid against $POLKIT_DTD"
                else
                        result FAIL "$f: valid against $POLKIT_DTD" "$out"
                fi
        else
                n=$((n + 1))
                echo "ok $n - $f: DTD validation # SKIP $POLKIT_DTD missing (install polkitd)"
                if out=$(xmllint --noout --nonet "$f" 2>&1); then
                        result OK "$f: well-formed"
                else
                        result FAIL "$f: well-formed" "$out"
                fi
        fi
done

for f in "${confs[@]}" "${interfaces[@]}"; do
        if out=$(xmllint --noout --nonet "$f" 2>&1); then
                result OK "$f: well-formed"
        else
                result FAIL "$f: well-formed" "$out"
                continue
        fi
        case $f in
        policy/*.conf) check_root "$f" busconfig ;;
        *.xml) check_root "$f" node ;;
        esac
done

# unix_fd_methods FILE: names of the methods with an 'h' argument, one per line
unix_fd_methods() {
        xmllint --nonet --xpath "//method[arg[@type='h']]/@name" "$1" 2>/dev/null |
                sed -n 's/^ *name="\([^"]*\)"$/\1/p'
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for f in "${interfaces[@]}"; do
        missing=$(xmllint --nonet --xpath "//method[arg[@type='h'] and not(annotation[@name='org.gtk.GDBus.C.UnixFD'])]/@name" "$f" 2>/dev/null)
        if [ -z "$missing" ]; then
                result OK "$f: methods with fd arguments carry org.gtk.GDBus.C.UnixFD"
        else
                result FAIL "$f: methods with fd arguments carry org.gtk.GDBus.C.UnixFD" "$missing"
        fi
        if ! command -v gdbus-codegen >/dev/null; then
                result FAIL "$f: gdbus-codegen proxy" "gdbus-codegen not installed (libglib2.0-dev-bin)"
                continue
        fi
        if ! out=$(gdbus-codegen --interface-prefix org.example. --c-namespace Ia \
                        --generate-c-code "$tmp/gen" "$f" 2>&1); then
                result FAIL "$f: gdbus-codegen generates a proxy" "$out"
                continue
        fi
        while read -r method; do
                [ -n "$method" ] || continue
                snake=$(printf '%s' "$method" | sed 's/\([a-z0-9]\)\([A-Z]\)/\1_\2/g' | tr 'A-Z' 'a-z')
                # the declaration of every ..._call_<method>_sync, up to its ");"
                decl=$(awk -v m="_call_${snake}_sync" 'index($0, m " (") { p = 1 } p { print } p && /\);/ { p = 0 }' "$tmp/gen.h")
                calls=$(printf '%s\n' "$decl" | grep -c "_call_${snake}_sync (")
                fdlists=$(printf '%s\n' "$decl" | grep -c 'GUnixFDList')
                if [ "$calls" -gt 0 ] && [ "$fdlists" -ge "$calls" ]; then
                        result OK "$f: gdbus-codegen: $method passes a GUnixFDList"
                else
                        result FAIL "$f: gdbus-codegen: $method passes a GUnixFDList" "$decl"
                fi
        done < <(unix_fd_methods "$f")
done

echo "1..$n"
[ "$failed" -eq 0 ]

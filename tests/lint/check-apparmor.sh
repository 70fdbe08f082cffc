#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# data/apparmor/image-access-qemu with the real apparmor_parser, parse-only (-Q: nothing is
# loaded into the kernel, AppArmor need not be active): a domain profile made from libvirt's
# TEMPLATE.qemu, its libvirt-qemu abstraction including the snippet through the local include,
# as docs/libvirt.md says to set it up.  A copy of /etc/apparmor.d, the host's is not touched.
# TAP output.
set -u
snippet=$1
echo "1..3"
parser=/usr/sbin/apparmor_parser
if [ ! -x "$parser" ] || [ ! -f /etc/apparmor.d/abstractions/libvirt-qemu ]; then
        echo "not ok 1 - apparmor_parser and libvirt's abstractions (packages apparmor, libvirt-daemon-system)"
        echo "not ok 2 - # not run"
        echo "not ok 3 - # not run"
        exit 0
fi
echo "ok 1 - apparmor_parser and libvirt's abstractions are there"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -a /etc/apparmor.d "$tmp/d"
cp "$snippet" "$tmp/d/abstractions/image-access-qemu"
mkdir -p "$tmp/d/local/abstractions"
echo 'include <abstractions/image-access-qemu>' >> "$tmp/d/local/abstractions/libvirt-qemu"
sed 's/LIBVIRT_TEMPLATE/libvirt-00000000-0000-0000-0000-000000000001/' \
        "$tmp/d/libvirt/TEMPLATE.qemu" > "$tmp/profile"
if out=$("$parser" -Q -K --base "$tmp/d" -I "$tmp/d" "$tmp/profile" 2>&1); then
        echo "ok 2 - a libvirt domain profile with the snippet parses"
else
        echo "not ok 2 - a libvirt domain profile with the snippet parses"
        echo "$out" | sed 's/^/# /'
fi
# The parser really reads the snippet: a broken copy must fail.
echo 'this is not a rule' >> "$tmp/d/abstractions/image-access-qemu"
if "$parser" -Q -K --base "$tmp/d" -I "$tmp/d" "$tmp/profile" >/dev/null 2>&1; then
        echo "not ok 3 - a broken snippet is refused (so test 2 read it)"
else
        echo "ok 3 - a broken snippet is refused (so test 2 read it)"
fi

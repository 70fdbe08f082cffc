#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The main job on the embedded default, from a fresh Debian 12 (as root): installs what is
# missing, builds, and runs image-accessd on a private system bus with the real polkitd, a demo
# guest opening its image and being denied another's.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
export BUILD=${BUILD:-$top/build}
"$top/tests/tools/setup.sh" >/dev/null
exec env IA_DAEMON="$BUILD/daemon/image-accessd" \
        IA_SOURCE_ROOT="$top" \
        IA_BUS_POLICY="$top/policy/org.example.ImageAccess.conf" \
        IA_POLKIT_POLICY="$top/policy/org.example.ImageAccess.policy" \
        /usr/bin/python3 "$top/tests/demo.py"

#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Installs what building and testing image-access needs on Debian 12, then configures and
# builds into BUILD (default: build).  Idempotent: packages already there are not touched.
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILD:-$top/build}

packages=(
        meson ninja-build pkg-config gcc clang
        libsystemd-dev libglib2.0-dev libglib2.0-dev-bin libdbus-1-dev libpolkit-gobject-1-dev
        dbus dbus-daemon dbus-bin polkitd pkexec
        python3 python3-dbus python3-gi gir1.2-glib-2.0 bash-completion
        gobject-introspection libgirepository1.0-dev
        libxml2-utils systemd man-db util-linux procps e2fsprogs acl tmux
        valgrind
        qemu-system-x86 qemu-utils
        libvirt-daemon-system libvirt-clients apparmor
)

missing=()
for p in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
        if [ "$(id -u)" != 0 ]; then
                echo "Missing packages: ${missing[*]}; run as root to install them" >&2
                exit 1
        fi
        echo "Installing: ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 ||
                apt-get install -y --no-install-recommends "${missing[@]}"
fi

if [ ! -f "$build/build.ninja" ]; then
        # /usr: the prefix whose install the system reads (and config in /etc), as in the README
        meson setup --prefix=/usr "$build" "$top" ${MESON_ARGS:-}
else
        meson setup --reconfigure "$build" "$top" ${MESON_ARGS:-} >/dev/null
fi
meson compile -C "$build"

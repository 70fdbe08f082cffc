#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""
Where `meson install` puts the files the system's own daemons read, from meson's own record of
the build (meson-info/intro-installed.json) against what pkg-config says, asked here
independently of meson.build:

 * the bus policy in DATADIR/dbus-1/system.d, the activation file in system_bus_services_dir
   and the interface XML in interfaces_dir of dbus-1.pc (datadir set to the build's);
 * the polkit actions in policydir of polkit-gobject-1.pc (likewise);
 * the unit in systemd_system_unit_dir of systemd.pc;
 * the LD_PRELOAD shim in LIBDIR/image-access/, and nothing of it in LIBDIR itself;
 * LICENSE in DATADIR/doc/image-access/.
An option that overrides a directory (-Ddbus_interfaces_dir= ...) replaces the expectation.

Usage: check-install.py BUILD_ROOT.  Output: TAP.
"""

import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tap import plan, result  # noqa: E402



def pkg_var(pkg, var, datadir=None):
    argv = ["pkg-config", "--variable=" + var, pkg]
    if datadir:
        argv.insert(1, "--define-variable=datadir=" + datadir)
    p = subprocess.run(argv, capture_output=True, text=True)
    return p.stdout.strip() if p.returncode == 0 and p.stdout.strip() else None


def main():
    if len(sys.argv) != 2:
        print("usage: check-install.py BUILD_ROOT", file=sys.stderr)
        return 2
    info = os.path.join(sys.argv[1], "meson-info")
    with open(os.path.join(info, "intro-installed.json")) as f:
        installed = json.load(f)        # built or source file → installed path
    with open(os.path.join(info, "intro-buildoptions.json")) as f:
        opts = {o["name"]: o["value"] for o in json.load(f)}
    prefix = opts["prefix"]
    datadir = os.path.join(prefix, opts["datadir"])
    libdir = os.path.join(prefix, opts["libdir"])

    def where(basename):
        return sorted(os.path.dirname(dst) for src, dst in installed.items()
                      if os.path.basename(dst) == basename)

    def expect(basename, option, pkg, var, fallback, use_datadir=True):
        want = opts.get(option) or (pkg and pkg_var(pkg, var, datadir if use_datadir else None))
        want = want or fallback
        got = where(basename)
        result(got == [want], "%s is installed to %s" % (basename, want),
               ["installed to: %s" % (got or "nowhere")])

    expect("org.example.ImageAccess.conf", "dbus_system_conf_dir", None, None,
           os.path.join(pkg_var("dbus-1", "datadir", datadir) or datadir, "dbus-1", "system.d"))
    expect("org.example.ImageAccess.service", "dbus_system_services_dir", "dbus-1",
           "system_bus_services_dir", os.path.join(datadir, "dbus-1", "system-services"))
    expect("org.example.ImageAccess.xml", "dbus_interfaces_dir", "dbus-1", "interfaces_dir",
           os.path.join(datadir, "dbus-1", "interfaces"))
    expect("org.example.ImageAccess.policy", "polkit_actions_dir", "polkit-gobject-1",
           "policydir", os.path.join(datadir, "polkit-1", "actions"))
    expect("image-access.service", "systemdsystemunitdir", "systemd", "systemd_system_unit_dir",
           os.path.join(prefix, "lib", "systemd", "system"), use_datadir=False)
    expect("libimageaccess-preload.so", None, None, None, os.path.join(libdir, "image-access"))
    expect("LICENSE", None, None, None, os.path.join(datadir, "doc", "image-access"))

    return plan()


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""
Domain start and a 4-disk snapshot through the real libvirtd, with image-accessd and without.

    bench-libvirt.py --build BUILD [--append FILE] [--runs N (7)] [--disks N (4)]

One integration test bed (private bus, the real polkitd, BUILD's image-accessd at log level
info) and libvirtd 9.0 in its private mount namespace (tests/integration/libvirtbed.py), with
the qemu hook of data/libvirt.  Two domains, TCG, N qcow2 disks each:

  service  images root:root 0600 in a root 0711 directory, opted in (docs/libvirt.md): the
           hook registers and grants on start, QEMU opens everything through the shim, the
           overlays through the directory grant
  direct   images owned by the domain's uid (0600), no shim; libvirt relabels the overlays
           it creates (relabel='yes'), which is how one runs without the service

Each run, interleaved: `virsh start` (wall time, hook included), then `virsh
snapshot-create-as --disk-only --atomic` of all N disks (wall time), then destroy, and the
definition, snapshot metadata and overlays are put back.  Prints the medians and the ratios
service / direct, and with --append adds JSON lines {"name", "unit": "ms", "median", "p99",
"n", ...} and the two ratios to FILE.  Exit status: 0, 1 on failure, 77 when libvirt, QEMU or
the test bed's requirements are missing.
"""

import argparse
import os
import shutil
import statistics
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(SOURCE_ROOT, 'tests', 'integration'))
import libvirtbed  # noqa: E402
import qemuvm  # noqa: E402
import testbed  # noqa: E402
from benchlib import append_records, logger, p99  # noqa: E402

SERVICE_UID = testbed.USERS['ia-emu1'].uid
DIRECT_UID = testbed.USERS['ia-emu2'].uid
log = logger('bench-libvirt')


class Domain:
    def __init__(self, bed, lv, name, uid, disks, service, shim):
        self.bed, self.lv, self.name = bed, lv, name
        self.dir = qemuvm.image_dir(bed, name)
        self.disks = []
        for i in range(disks):
            path = qemuvm.make_qcow2(os.path.join(self.dir, 'disk%d.qcow2' % i), '64M')
            if not service:
                os.chown(path, uid, uid)
            self.disks.append(path)
        xml = libvirtbed.domain_xml(name, uid, [('vd' + chr(ord('a') + i), p, 'qcow2')
                                                for i, p in enumerate(self.disks)],
                                    shim, bed.address, [bed.images_dir],
                                    directories=[self.dir], opt_in=service,
                                    relabel=not service, shim_env=service,
                                    uuid=str(uuid.uuid4()))   # define again = the same domain
        self.xml_path = os.path.join(bed.runtime_dir, name + '.xml')
        with open(self.xml_path, 'w') as f:
            f.write(xml)
        lv.virsh('define', self.xml_path)

    def timed(self, *args):
        t0 = time.monotonic()
        self.lv.virsh(*args, timeout=300)
        return (time.monotonic() - t0) * 1000

    def run(self):
        start = self.timed('start', self.name)
        snap = self.timed('snapshot-create-as', self.name, 's1', '--disk-only', '--atomic')
        self.lv.virsh('destroy', self.name)
        # back to the base disks: the definition followed the snapshot
        self.lv.virsh('snapshot-delete', self.name, 's1', '--metadata')
        self.lv.virsh('define', self.xml_path)
        for fn in os.listdir(self.dir):
            if fn.endswith('.s1'):
                os.unlink(os.path.join(self.dir, fn))
        return start, snap


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--build', required=True, help='meson build directory')
    ap.add_argument('--append', metavar='FILE', help='append the JSON lines to FILE')
    ap.add_argument('--runs', type=int, default=7, help='runs of each kind (default 7)')
    ap.add_argument('--disks', type=int, default=4, help='disks per domain (default 4)')
    args = ap.parse_args()

    build = os.path.abspath(args.build)
    # IA_BENCH_DAEMON: another build of the daemon, as for bench.py (before/after).
    daemon = os.environ.get('IA_BENCH_DAEMON') or os.path.join(build, 'daemon', 'image-accessd')
    ctl = os.path.join(build, 'client', 'ctl', 'image-accessctl')
    shim_built = os.path.join(build, 'client', 'preload', 'libimageaccess-preload.so')
    reason = testbed.missing_requirements() or libvirtbed.missing_requirements()
    for path in (daemon, ctl, shim_built):
        if not reason and not os.path.exists(path):
            reason = '%s is not built' % path
    if reason:
        log('skipped: %s' % reason)
        return 77

    with open(os.path.join(SOURCE_ROOT, 'data', 'libvirt', 'image-access-hook.in')) as f:
        hook = f.read().replace('@IMAGE_ACCESSCTL@', ctl)
    times = {k: {'start': [], 'snapshot': []} for k in ('service', 'direct')}
    bed = testbed.TestBed(daemon=daemon)
    with bed:
        bed.start_daemon(['--log-level=info'])
        shim = os.path.join(bed.runtime_dir, 'libimageaccess-preload.so')
        shutil.copyfile(shim_built, shim)
        os.chmod(shim, 0o644)
        lv = libvirtbed.LibvirtBed(bed, hooks={'image-access': hook}).start()
        try:
            doms = {'service': Domain(bed, lv, 'bench-svc', SERVICE_UID, args.disks, True,
                                      shim),
                    'direct': Domain(bed, lv, 'bench-own', DIRECT_UID, args.disks, False,
                                     shim)}
            for d in doms.values():      # warm: QEMU's binary, libvirt's capabilities
                d.run()
            log('%d disks, %d runs of each kind, interleaved' % (args.disks, args.runs))
            for i in range(args.runs):
                order = ('service', 'direct') if i % 2 == 0 else ('direct', 'service')
                for kind in order:
                    start, snap = doms[kind].run()
                    times[kind]['start'].append(start)
                    times[kind]['snapshot'].append(snap)
                log('run %2d: start service %6.0f direct %6.0f ms; snapshot service %6.0f '
                    'direct %6.0f ms' % (i + 1, times['service']['start'][-1],
                                         times['direct']['start'][-1],
                                         times['service']['snapshot'][-1],
                                         times['direct']['snapshot'][-1]))
        finally:
            leftovers = lv.stop()
            if leftovers:
                log('QEMUs left running after destroy: %r' % leftovers)

    recs = []
    for what in ('start', 'snapshot'):
        for kind in ('service', 'direct'):
            v = times[kind][what]
            recs.append({'name': 'libvirt_%s_%s' % (what, kind), 'unit': 'ms',
                         'median': round(statistics.median(v), 1), 'p99': round(p99(v), 1),
                         'n': len(v), 'min': round(min(v), 1), 'max': round(max(v), 1),
                         'how': 'virsh %s, libvirt 9.0, TCG, %d qcow2 disks, %s' % (
                             'start' if what == 'start' else
                             'snapshot-create-as --disk-only --atomic', args.disks,
                             'images root 0600 through image-accessd' if kind == 'service'
                             else 'images owned by the domain uid, no service')})
        ratio = statistics.median(times['service'][what]) / \
            statistics.median(times['direct'][what])
        recs.append({'name': 'libvirt_%s_ratio' % what, 'unit': 'ratio',
                     'median': round(ratio, 3), 'p99': None, 'n': args.runs,
                     'how': 'median service / median direct'})
    for r in recs:
        sys.stdout.write('%-28s %8s %s\n' % (r['name'], r['median'], r['unit']))
    if args.append:
        append_records(args.append, recs)
    return 0


if __name__ == '__main__':
    sys.exit(main())

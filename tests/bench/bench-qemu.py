#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""
The 16-disk snapshot transaction in unmodified QEMU, through image-accessd and direct.

    bench-qemu.py --build BUILD [--append FILE] [--runs N (21)] [--disks N] [--profile]

Starts one integration test bed (private system bus, the real polkitd, BUILD's image-accessd
at log level info with the default configuration), makes N qcow2 base images (root:root 0600
in a root 0711 directory), and then, interleaved, N runs of each:

  qemu16_root     QEMU as root, images opened directly by QEMU
  qemu16_service  QEMU as the test user ia-emu1 (bound to the guest by uid), every image
                  opened through BUILD/client/preload/libimageaccess-preload.so and the service

Each run is a fresh QEMU (qemu-system-x86_64 -machine q35,accel=tcg -S, one virtio-blk disk
per base) and one QMP `transaction` of blockdev-snapshot-sync onto new overlay files; the
figure is the wall time of that QMP command, seen by the client, started after a sync(2).  The service run's overlays
are granted ("create") before QEMU starts and removed with RevokeImage remove-created after.

Prints the medians and their ratio (target: service / root <= 1.25, README.md "Performance") and, with
--append, adds two JSON lines to FILE: {"name", "unit": "ms", "median", "p99", "n", ...}.
--profile adds one service run with IMAGE_ACCESS_DEBUG=1 and splits the time QEMU spent
waiting in brokered opens by mode, first open of an (overlay, mode) versus repeats.

Exit status: 0, 1 on failure, 77 when QEMU, the shim or the test bed's requirements are
missing.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(SOURCE_ROOT, 'tests', 'integration'))
import testbed  # noqa: E402
import qemuvm  # noqa: E402

GUEST = 'bench'
EMU = 'ia-emu1'


def log(msg):
    sys.stderr.write('bench-qemu: %s\n' % msg)
    sys.stderr.flush()


def p99(values):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(0.99 * (len(s) - 1))))]


class Bench:
    def __init__(self, bed, disks):
        self.bed, self.n = bed, disks
        self.mgr = bed.local
        self.dir = qemuvm.image_dir(bed, 'bench')
        self.bases = [qemuvm.make_qcow2(os.path.join(self.dir, 'base%d.qcow2' % i))
                      for i in range(disks)]
        self.call('RegisterGuest', 'sa{sv}',
                  [GUEST, {'uid': {'$v': ['u', bed.users[EMU].uid]}}])
        for p in self.bases:
            self.call('GrantImage', 'sssa{sv}', [GUEST, p, 'read-write', {}])
        self.seq = 0

    def call(self, method, sig, args):
        r = self.mgr.manager(method, sig, args)
        if not r.ok:
            raise testbed.TestBedError('%s: %s: %s' % (method, r.error, r.message))
        return r.values

    def overlays(self, tag):
        self.seq += 1
        return {'d%d' % i: os.path.join(self.dir, 'ov-%s-%d-%d.qcow2' % (tag, self.seq, i))
                for i in range(self.n)}

    def run(self, service, debug=False):
        """One fresh QEMU, one transaction; returns (milliseconds, qemu log text)."""
        tag = 'svc' if service else 'root'
        ovs = self.overlays(tag)
        vm = qemuvm.Qemu(self.bed, EMU if service else 'root', guest=GUEST, disks=self.bases,
                         prefixes=[self.dir], debug=debug, name='%s-%d' % (tag, self.seq))
        try:
            vm.start()
            if service:
                # As a VM manager does when a snapshot is asked for: grant the overlays while
                # the emulator runs, then send the transaction.  The service asks polkit about
                # the new grants for the emulator during these calls (authz_prefetch()), so
                # the transaction finds the answers; with grants made before the emulator
                # ever opened anything it pays one polkit check per overlay instead.
                for p in ovs.values():
                    self.call('GrantImage', 'sssa{sv}', [GUEST, p, 'create', {}])
            # QEMU fdatasyncs each overlay five times, and the first fdatasync of a run also
            # flushed whatever the runs before had left dirty (removed overlays, logs): the
            # same transaction took 90 or 160 ms depending on it.  Start every run, of both
            # kinds, with nothing dirty.
            os.sync()
            t0 = time.perf_counter()
            vm.snapshot(ovs)
            ms = (time.perf_counter() - t0) * 1000
            top = vm.top_nodes()
            if any(top['vd%d' % i][1] != ovs['d%d' % i] for i in range(self.n)):
                raise testbed.TestBedError('the overlays are not the active layers: %r' % top)
        finally:
            rc = vm.stop()
        if rc != 0:
            raise testbed.TestBedError('QEMU exited with %s:\n%s' % (rc, vm.log()))
        text = self.bed.log_text('qemu-' + vm.name)
        for p in ovs.values():
            if service:
                self.call('RevokeImage', 'ssa{sv}',
                          [GUEST, p, {'remove-created': {'$v': ['b', True]}}])
            elif os.path.exists(p):
                os.unlink(p)
        return ms, text


OPEN_RE = re.compile(r'image-access-preload: (read-only|read-write|create) (\S+): '
                     r'(?:fd \d+|.* -> (\w+)), (\d+) us')


def profile(text, total_ms):
    """Split the brokered opens of one debug run: first (overlay, mode) vs repeats."""
    seen = set()
    rows = {}
    for m in OPEN_RE.finditer(text):
        mode, path, err, us = m.group(1), m.group(2), m.group(3), int(m.group(4))
        if 'base' in os.path.basename(path):
            continue            # QEMU's start-up, not the transaction
        key = (path, mode)
        kind = '%s %s%s' % (mode, 'first' if key not in seen else 'repeat',
                            ' (%s)' % err if err else '')
        seen.add(key)
        r = rows.setdefault(kind, [])
        r.append(us)
    out = ['profile of one service run (%.1f ms transaction, IMAGE_ACCESS_DEBUG=1):' % total_ms]
    total = 0
    for kind in sorted(rows):
        us = rows[kind]
        total += sum(us)
        out.append('  %-34s n=%3d  median %6.0f us  sum %7.1f ms'
                   % (kind, len(us), statistics.median(us), sum(us) / 1000))
    out.append('  %-34s        %22s %7.1f ms (%.0f %% of the transaction)'
               % ('all brokered opens', '', total / 1000, 100 * total / 1000 / total_ms))
    return '\n'.join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--build', required=True, help='meson build directory')
    ap.add_argument('--append', metavar='FILE', help='append the JSON lines to FILE')
    # The transaction's time varies by a third from run to run (QEMU's fdatasyncs): 21 runs
    # keep the median of each kind steady to a few per cent.
    ap.add_argument('--runs', type=int, default=21, help='runs of each kind (default 21)')
    ap.add_argument('--disks', type=int, default=16, help='disks per VM (default 16)')
    ap.add_argument('--profile', action='store_true', help='add one profiled service run')
    args = ap.parse_args()

    build = os.path.abspath(args.build)
    daemon = os.path.join(build, 'daemon', 'image-accessd')
    shim = os.path.join(build, 'client', 'preload', 'libimageaccess-preload.so')
    os.environ.setdefault(qemuvm.SHIM_VAR, shim)
    reason = testbed.missing_requirements() or qemuvm.missing_requirements()
    if not reason and not os.access(daemon, os.X_OK):
        reason = '%s is not built' % daemon
    if reason:
        log('skipped: %s' % reason)
        return 77

    name = 'qemu%d' % args.disks
    times = {'root': [], 'service': []}
    bed = testbed.TestBed(daemon=daemon)
    with bed:
        # In production the state lives in /run/image-access, a tmpfs, where the journal's
        # fdatasync costs nothing.  This machine has no tmpfs on /run (no systemd as PID 1),
        # so the state directory gets one; otherwise every created overlay would pay a disk
        # flush that no real deployment pays.  Lazily unmounted before the bed removes it.
        subprocess.run(['mount', '-t', 'tmpfs', '-o', 'mode=0700,size=64m', 'image-access-state',
                        bed.state_dir], check=True)
        try:
            bed.start_daemon(['--log-level=info'])
            b = Bench(bed, args.disks)
            log('%d disks, %d runs of each kind, interleaved (fresh QEMU each run)'
                % (args.disks, args.runs))
            b.run(False)                    # warm the page cache and QEMU's binary
            b.run(True)
            for i in range(args.runs):
                order = (False, True) if i % 2 == 0 else (True, False)
                for service in order:
                    ms, _ = b.run(service)
                    times['service' if service else 'root'].append(ms)
                log('run %2d: root %6.1f ms  service %6.1f ms'
                    % (i + 1, times['root'][-1], times['service'][-1]))
            prof = None
            if args.profile:
                ms, text = b.run(True, debug=True)
                prof = profile(text, ms)
        finally:
            subprocess.run(['umount', '-l', bed.state_dir], check=False)

    recs = []
    for kind in ('root', 'service'):
        v = times[kind]
        recs.append({'name': '%s_%s' % (name, kind), 'unit': 'ms',
                     'median': round(statistics.median(v), 3), 'p99': round(p99(v), 3),
                     'n': len(v), 'min': round(min(v), 3), 'max': round(max(v), 3),
                     'how': 'QMP transaction of %d blockdev-snapshot-sync, fresh QEMU 7.2 '
                            'per run, %s' % (args.disks,
                                             'as root, direct opens' if kind == 'root' else
                                             'as ia-emu1 through libimageaccess-preload.so '
                                             'and image-accessd (log level info, default '
                                             'DecisionCacheSec)')})
    ratio = recs[1]['median'] / recs[0]['median']
    # Each service run next to the root run of the same round: a second look at the same
    # ratio that a slow stretch of the disk cannot skew.
    pairs = [s / r for r, s in zip(times['root'], times['service'])]
    recs[1]['pair_ratio_median'] = round(statistics.median(pairs), 3)
    for r in recs:
        print('%-16s median %8.1f ms  p99 %8.1f ms  n=%d' % (r['name'], r['median'], r['p99'],
                                                            r['n']))
    print('%s_service / %s_root = %.2f (target <= 1.25); median of the %d per-round ratios %.2f'
          % (name, name, ratio, len(pairs), recs[1]['pair_ratio_median']))
    if prof:
        print(prof)
    if args.append:
        with open(args.append, 'a') as f:
            for r in recs:
                f.write(json.dumps(r) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())

#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""
Unmodified QEMU through image-accessd and direct: its start with N disks, and a snapshot
transaction of all N.

    bench-qemu.py --build BUILD [--append FILE] [--runs N (15)] [--disks LIST (16,32)]
                  [--profile]

Starts one integration test bed (private system bus, the real polkitd, BUILD's image-accessd
at log level info with the default configuration), makes as many qcow2 base images as the
largest disk count (root:root 0600 in a root 0711 directory), and then runs N rounds.  Each
round starts, for every disk count D of LIST, one fresh QEMU of each kind:

  root     QEMU as root, images opened directly by QEMU
  service  QEMU as the test user ia-emu1 (bound to the guest by uid), every image opened
           through BUILD/client/preload/libimageaccess-preload.so and the service

and the order of the round's QEMUs is reversed every other round.  Each QEMU
(qemu-system-x86_64 -machine q35,accel=tcg -S, one virtio-blk disk per base, 8 to a PCI
slot) gives two
figures, each started after a sync(2):

  qemuD_start_KIND  from the launch of QEMU until it answers QMP `query-status`.  QEMU opens
                    every -blockdev and realizes every device in its start-up, before its main
                    loop runs, and the main loop is what answers QMP commands: so this point
                    includes each disk's first open.  In the service case each of those
                    opens goes through the service on a new connection, whose first open of
                    an image asks polkit (cold).  Both kinds are launched through setpriv
                    (root's as uid 0), so that the launches do not differ.
  qemuD_KIND        the wall time of one QMP `transaction` of D blockdev-snapshot-sync onto new
                    overlay files, seen by the client.  The service run's overlays are
                    granted ("create") after the start, as a VM manager does when a snapshot
                    is asked for, and removed with RevokeImage remove-created after.

Prints the medians and, for each pair, the median of the per-round ratios service / root
with the target of README.md "Performance" (16-disk snapshot <= 1.10, 32-disk snapshot and
start <= 1.15).  With --append it adds one JSON line a figure to FILE: {"name", "unit": "ms",
"median", "p99", "n", ...}; the service lines carry pair_ratio_median (the median of the
per-round ratios) and ratio_rounds.  --profile adds one service run of the largest count with
IMAGE_ACCESS_DEBUG=1 and splits the time QEMU spent waiting in brokered opens, in its start
and in the transaction, by mode, first open of an (image, mode) versus repeats.

Exit status: 0, 1 on failure, 77 when QEMU, the shim or the test bed's requirements are
missing.
"""

import argparse
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
from benchlib import QEMU_TARGETS, append_records, logger, p99, pair_ratio_median  # noqa: E402

GUEST = 'bench'
EMU = 'ia-emu1'
KINDS = ('root', 'service')
log = logger('bench-qemu')
FIRST_SLOT = 0x08               # PCI slots of the disks: 8 functions a slot from here on


class BenchQemu(qemuvm.Qemu):
    """qemuvm.Qemu with the virtio-blk devices packed 8 to a PCI slot: q35's root bus has
    fewer free slots (29 with -nodefaults) than 32 disks need."""

    def argv(self):
        a = super().argv()
        for i in range(len(self.disks)):
            dev = 'virtio-blk-pci,drive=d%d,id=vd%d' % (i, i)
            a[a.index(dev)] = '%s,addr=0x%x.%d%s' % (dev, FIRST_SLOT + i // 8, i % 8,
                                                     ',multifunction=on' if i % 8 == 0 else '')
        return a


class Bench:
    def __init__(self, bed, disks):
        self.bed = bed
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

    def overlays(self, tag, disks):
        self.seq += 1
        return {'d%d' % i: os.path.join(self.dir, 'ov-%s-%d-%d.qcow2' % (tag, self.seq, i))
                for i in range(disks)}

    def run(self, service, disks, debug=False):
        """One fresh QEMU with the first @disks bases: its start, then one transaction;
        returns (start ms, transaction ms, qemu log text)."""
        tag = 'svc' if service else 'root'
        ovs = self.overlays(tag, disks)
        vm = BenchQemu(self.bed, EMU if service else 'root', guest=GUEST,
                       disks=self.bases[:disks], prefixes=[self.dir], debug=debug,
                       name='%s-%d' % (tag, self.seq))
        try:
            # QEMU fdatasyncs each overlay five times, and the first fdatasync of a run also
            # flushed whatever the runs before had left dirty (removed overlays, logs): the
            # same transaction took 90 or 160 ms depending on it.  Start every run, of both
            # kinds, with nothing dirty.
            os.sync()
            t0 = time.perf_counter()
            vm.start()
            status = vm.qmp('query-status')
            start_ms = (time.perf_counter() - t0) * 1000
            if status.get('status') != 'prelaunch':
                raise testbed.TestBedError('QEMU is %r, not stopped before launch' % status)
            if service:
                # As a VM manager does when a snapshot is asked for: grant the overlays while
                # the emulator runs, then send the transaction.  The service asks polkit about
                # the new grants for the emulator during these calls (authz_prefetch()), so
                # the transaction finds the answers; with grants made before the emulator
                # ever opened anything it pays one polkit check per overlay instead.
                for p in ovs.values():
                    self.call('GrantImage', 'sssa{sv}', [GUEST, p, 'create', {}])
            os.sync()
            t0 = time.perf_counter()
            vm.snapshot(ovs)
            snap_ms = (time.perf_counter() - t0) * 1000
            top = vm.top_nodes()
            if any(top['vd%d' % i][1] != ovs['d%d' % i] for i in range(disks)):
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
        return start_ms, snap_ms, text


OPEN_RE = re.compile(r'image-access-preload: (read-only|read-write|create) (\S+): '
                     r'(?:fd \d+|.* -> (\w+)), (\d+) us')


def profile(text, start_ms, snap_ms):
    """Split the brokered opens of one debug run into the start's (the bases) and the
    transaction's (the overlays), each by first (image, mode) vs repeats."""
    seen = set()
    rows = {'start': {}, 'transaction': {}}
    for m in OPEN_RE.finditer(text):
        mode, path, err, us = m.group(1), m.group(2), m.group(3), int(m.group(4))
        phase = 'start' if os.path.basename(path).startswith('base') else 'transaction'
        key = (path, mode)
        kind = '%s %s%s' % (mode, 'first' if key not in seen else 'repeat',
                            ' (%s)' % err if err else '')
        seen.add(key)
        rows[phase].setdefault(kind, []).append(us)
    out = ['profile of one service run (IMAGE_ACCESS_DEBUG=1):']
    for phase, ms in (('start', start_ms), ('transaction', snap_ms)):
        out.append(' %s, %.1f ms:' % (phase, ms))
        total = 0
        for kind in sorted(rows[phase]):
            us = rows[phase][kind]
            total += sum(us)
            out.append('  %-34s n=%3d  median %6.0f us  sum %7.1f ms'
                       % (kind, len(us), statistics.median(us), sum(us) / 1000))
        out.append('  %-34s        %22s %7.1f ms (%.0f %% of the %s)'
                   % ('all brokered opens', '', total / 1000, 100 * total / 1000 / ms, phase))
    return '\n'.join(out)


def how(what, disks, kind):
    text = ('from launch until QMP query-status answers (all %d disks opened)' % disks
            if what == 'start' else
            'QMP transaction of %d blockdev-snapshot-sync' % disks)
    return '%s, fresh QEMU 7.2 per run, %s' % (
        text, 'as root, direct opens' if kind == 'root' else
        'as ia-emu1 through libimageaccess-preload.so and image-accessd (log level info, '
        'default DecisionCacheSec)')


def records(times):
    """The JSON records of every (disk count, figure, kind), the service ones with the
    per-round ratios to the root ones."""
    recs = []
    for disks in sorted(times):
        for what in ('snapshot', 'start'):
            name = 'qemu%d' % disks + ('_start' if what == 'start' else '')
            for kind in KINDS:
                v = times[disks][kind][what]
                rec = {'name': '%s_%s' % (name, kind), 'unit': 'ms',
                       'median': round(statistics.median(v), 3), 'p99': round(p99(v), 3),
                       'n': len(v), 'min': round(min(v), 3), 'max': round(max(v), 3),
                       'how': how(what, disks, kind)}
                if kind == 'service':
                    root = times[disks]['root'][what]
                    rec['pair_ratio_median'] = round(pair_ratio_median(v, root), 3)
                    rec['ratio_rounds'] = [round(s / r, 2) for s, r in zip(v, root)]
                recs.append(rec)
    return recs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--build', required=True, help='meson build directory')
    ap.add_argument('--append', metavar='FILE', help='append the JSON lines to FILE')
    # A round is four fresh QEMUs, about 6 s on 2 CPUs.  A transaction's time can double from
    # one run to the next (QEMU's fdatasyncs), and a single round's ratio with it: 15 rounds
    # give a median that holds to a few per cent, in about a minute and a half.
    ap.add_argument('--runs', type=int, default=15, help='rounds (default 15)')
    ap.add_argument('--disks', default='16,32',
                    help='disk counts, comma-separated (default 16,32)')
    ap.add_argument('--profile', action='store_true', help='add one profiled service run')
    args = ap.parse_args()
    try:
        counts = sorted({int(d) for d in args.disks.split(',')})
    except ValueError:
        ap.error('--disks takes whole numbers separated by commas')
    if args.runs < 1 or counts[0] < 1:
        ap.error('--runs and --disks take positive numbers')

    build = os.path.abspath(args.build)
    # IA_BENCH_DAEMON: another build of the daemon, as for bench.py (before/after).
    daemon = os.environ.get('IA_BENCH_DAEMON') or os.path.join(build, 'daemon', 'image-accessd')
    shim = os.path.join(build, 'client', 'preload', 'libimageaccess-preload.so')
    os.environ.setdefault(qemuvm.SHIM_VAR, shim)
    reason = testbed.missing_requirements() or qemuvm.missing_requirements()
    if not reason and not os.access(daemon, os.X_OK):
        reason = '%s is not built' % daemon
    if reason:
        log('skipped: %s' % reason)
        return 77

    times = {d: {k: {'start': [], 'snapshot': []} for k in KINDS} for d in counts}
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
            b = Bench(bed, counts[-1])
            log('%s disks, %d rounds, each a fresh QEMU of each kind and count, interleaved'
                % (' and '.join(map(str, counts)), args.runs))
            b.run(False, counts[-1])        # warm the page cache and QEMU's binary
            b.run(True, counts[-1])
            plan = [(d, kind) for d in counts for kind in KINDS]
            for i in range(args.runs):
                for d, kind in (plan if i % 2 == 0 else plan[::-1]):
                    start, snap, _ = b.run(kind == 'service', d)
                    times[d][kind]['start'].append(start)
                    times[d][kind]['snapshot'].append(snap)
                log('round %2d: %s' % (i + 1, '; '.join(
                    '%d disks start %.0f/%.0f ms, snapshot %.1f/%.1f ms (root/service)'
                    % (d, times[d]['root']['start'][-1], times[d]['service']['start'][-1],
                       times[d]['root']['snapshot'][-1], times[d]['service']['snapshot'][-1])
                    for d in counts)))
            prof = None
            if args.profile:
                start, snap, text = b.run(True, counts[-1], debug=True)
                prof = profile(text, start, snap)
        finally:
            subprocess.run(['umount', '-l', bed.state_dir], check=False)

    recs = records(times)
    for r in recs:
        print('%-22s median %8.1f ms  p99 %8.1f ms  n=%d' % (r['name'], r['median'], r['p99'],
                                                            r['n']))
    for r in recs:
        if 'pair_ratio_median' in r:
            base = r['name'][:-len('_service')]
            limit = QEMU_TARGETS.get(base)
            print('%s / %s_root: median of the %d per-round ratios %.2f (%s)'
                  % (r['name'], base, r['n'], r['pair_ratio_median'],
                     'target <= %.2f' % limit if limit else 'no target'))
    if prof:
        print(prof)
    if args.append:
        append_records(args.append, recs)
    return 0


if __name__ == '__main__':
    sys.exit(main())

#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""
End to end with the real, unmodified QEMU (Debian's qemu-system-x86_64 7.2): QEMU runs as a
test user that cannot open the images itself (root:root 0600 qcow2 files in a root 0711
directory) with libimageaccess-preload.so preloaded, and gets every image from image-accessd.
The test plays the VM manager (register, bind, grant, revoke as root over the bus) and
talks QMP to QEMU.

What QEMU does with image paths is measured in docs/qemu-open-patterns.md; the
manager's side of a snapshot is described in docs/qemu.md.
"""

import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qemuvm  # noqa: E402
import testbed  # noqa: E402

ASK = 'Asking polkit about org.example.imageaccess.open-image'
AUDIT_RE = re.compile(r"audit: (?P<event>\w+) (?P<result>allowed|denied) "
                      r"guest='(?P<guest>(?:[^'\\]|\\.)*)'"
                      r"(?: image='(?P<image>(?:[^'\\]|\\.)*)')?(?: mode=(?P<mode>\S+))?"
                      r" uid=(?P<uid>\d+) pid=(?P<pid>-?\d+) sender=(?P<sender>\S+)"
                      r"(?: via=(?P<via>\S+))?(?: reason='(?P<reason>(?:[^'\\]|\\.)*)')?")
DENY_B_RULE = '''polkit.addRule(function(action, subject) {
    if (action.id == "org.example.imageaccess.open-image" &&
        action.lookup("guest") == "vm-b" && action.lookup("mode") != "read-only")
        return polkit.Result.NO;
});
'''


def audit_records(text):
    return [m.groupdict() for m in map(AUDIT_RE.search, text.splitlines()) if m]


class QemuTestCase(testbed.IaTestCase):
    def setUp(self):
        reason = qemuvm.missing_requirements()
        if reason:
            self.skipTest(reason)
        super().setUp()
        self.dir = qemuvm.image_dir(self.bed)
        self.mgr = self.bed.local

    # ---- the VM manager's side ------------------------------------------------------------
    def register(self, guest, who=None):
        opts = {'uid': {'$v': ['u', self.bed.users[who].uid]}} if who else {}
        self.assertOk(self.mgr.manager('RegisterGuest', 'sa{sv}', [guest, opts]))

    def grant(self, guest, path, mode):
        self.assertOk(self.mgr.manager('GrantImage', 'sssa{sv}', [guest, path, mode, {}]))

    def revoke(self, guest, path, remove_created=False):
        opts = {'remove-created': {'$v': ['b', True]}} if remove_created else {}
        return self.mgr.manager('RevokeImage', 'ssa{sv}', [guest, path, opts])

    def grants(self, guest):
        """{path: (mode, created)} from ListGrants."""
        r = self.mgr.manager('ListGrants', 's', [guest])
        return {p: (m, bool(props.get('created'))) for p, m, props in self.assertOk(r)[0]}

    def bases(self, guest, n, prefix=''):
        paths = []
        for i in range(n):
            p = qemuvm.make_qcow2(os.path.join(self.dir, '%sbase%d.qcow2' % (prefix, i)))
            self.grant(guest, p, 'read-write')
            paths.append(p)
        return paths

    def overlays(self, guest, n, prefix='', grant=True, skip=()):
        """{node d<i>: overlay path}; granted 'create' except the indexes in skip."""
        res = {}
        for i in range(n):
            p = os.path.join(self.dir, '%sov%d.qcow2' % (prefix, i))
            if grant and i not in skip:
                self.grant(guest, p, 'create')
            res['d%d' % i] = p
        return res

    def start_vm(self, who, guest, disks, **kw):
        vm = qemuvm.Qemu(self.bed, who, guest=guest, disks=disks, prefixes=[self.dir], **kw)
        self.addCleanup(vm.stop)
        vm.start()
        return vm

    # ---- looking -------------------------------------------------------------------------
    def daemon_log_mark(self):
        return len(self.bed.log_text('daemon'))

    def daemon_log_since(self, mark):
        return self.bed.log_text('daemon')[mark:]

    def assertGraph(self, vm, expected):
        """expected: {device: (top node, file, backing file or None)}."""
        self.assertEqual(vm.top_nodes(), expected)

    def base_graph(self, bases):
        return {'vd%d' % i: ('d%d' % i, p, None) for i, p in enumerate(bases)}

    def snapshot_graph(self, bases, ovs):
        return {'vd%d' % i: ('s%d' % i, ovs['d%d' % i], p) for i, p in enumerate(bases)}

    def assertImageData(self, path, offset, length, depth):
        """The range is data at the given depth of the backing chain (0: this image)."""
        for ext in qemuvm.qemu_img_map(path):
            if ext['start'] <= offset < ext['start'] + ext['length']:
                self.assertTrue(ext['data'], (path, ext))
                self.assertEqual(ext['depth'], depth, (path, ext))
                self.assertGreaterEqual(ext['start'] + ext['length'], offset + length)
                return
        self.fail('%s: no extent covers %d' % (path, offset))

    def leftover_files(self):
        return sorted(os.listdir(self.dir))


class StartAndSnapshotTests(QemuTestCase):
    def test_qemu_alone_cannot_open_the_images(self):
        """The premise: without the shim the test user's QEMU is refused by the kernel."""
        self.register('vm1', 'ia-emu1')
        bases = self.bases('vm1', 1)
        vm = qemuvm.Qemu(self.bed, 'ia-emu1', guest='vm1', disks=bases, prefixes=[self.dir],
                         shim='')
        self.addCleanup(vm.stop)
        vm.start(wait=False)
        rc = vm.child.popen.wait(30)
        self.assertNotEqual(rc, 0)
        self.assertIn("Could not open '%s': Permission denied" % bases[0], vm.log())

    def check_snapshot_every_disk(self, n, extra_args=()):
        self.register('vm1', 'ia-emu1')
        bases = self.bases('vm1', n)
        ovs = self.overlays('vm1', n)
        vm = self.start_vm('ia-emu1', 'vm1', bases, extra_args=extra_args)
        emu_uid = str(self.bed.users['ia-emu1'].uid)

        # every disk came from the service, to this very QEMU process
        recs = audit_records(self.bed.log_text('daemon'))
        for p in bases:
            opened = [r for r in recs if r['event'] == 'open' and r['image'] == p]
            self.assertTrue(opened, 'no audit line for %s' % p)
            self.assertTrue(all((r['result'], r['mode'], r['uid'], r['pid']) ==
                                ('allowed', 'read-write', emu_uid, str(vm.pid))
                                for r in opened), opened)
        self.assertGraph(vm, self.base_graph(bases))

        mark = self.daemon_log_mark()
        t0 = time.monotonic()
        vm.snapshot(ovs)
        elapsed = time.monotonic() - t0
        window = self.daemon_log_since(mark)
        sys.stderr.write('%d-disk transaction through the service: %.1f ms\n'
                         % (n, elapsed * 1000))

        # the overlays are the active layers, backed by the bases
        self.assertGraph(vm, self.snapshot_graph(bases, ovs))
        nodes = vm.node_files()
        for i in range(n):
            self.assertEqual(nodes['s%d' % i], ovs['d%d' % i])
            self.assertEqual(nodes['d%d' % i], bases[i])
        # made by the service for this guest: root's, 0600, recorded as created
        listed = self.grants('vm1')
        for p in ovs.values():
            st = os.stat(p)
            self.assertEqual((st.st_uid, st.st_mode & 0o777), (0, 0o600), p)
            self.assertEqual(listed[p], ('create', True))

        # QEMU opens each overlay 7 times; the shim answers the 2 probes made before the file
        # exists itself (ENOENT by stat), so 5 reach the service, yet polkit is asked at most
        # once per overlay (the decision cache: a yes to create covers the reopens)
        recs = [r for r in audit_records(window) if r['event'] == 'open']
        for p in ovs.values():
            mine = [r for r in recs if r['image'] == p]
            self.assertGreaterEqual(len(mine), 5, mine)
            self.assertEqual(sum(1 for r in mine if r['result'] == 'allowed' and
                                 r['reason'] == 'created'), 1, mine)
        pairs = {(r['image'], r['mode']) for r in recs}
        asks = window.count(ASK)
        sys.stderr.write('%d opens, %d distinct (overlay, mode), %d polkit checks\n'
                         % (len(recs), len(pairs), asks))
        self.assertLessEqual(asks, len(pairs))
        self.assertLessEqual(asks, n)

        # a guest-side write lands in the overlay, not in the base
        for i in (0, n - 1):
            out = vm.qemu_io(i, 'write -P 0x41 65536 65536')
            self.assertIn('wrote 65536/65536 bytes at offset 65536', out)
        self.assertEqual(vm.stop(), 0)
        for i in (0, n - 1):
            self.assertImageData(ovs['d%d' % i], 65536, 65536, depth=0)
            self.assertFalse(any(e['data'] for e in qemuvm.qemu_img_map(bases[i])))

    def test_2_disks(self):
        self.check_snapshot_every_disk(2)

    def test_16_disks(self):
        self.check_snapshot_every_disk(16)

    def test_2_disks_sandboxed(self):
        """QEMU's seccomp sandbox leaves the shim's bus traffic alone."""
        self.check_snapshot_every_disk(2, ['-sandbox', 'on,obsolete=deny,elevateprivileges=deny,'
                                           'spawn=deny,resourcecontrol=deny'])


class RollbackTests(QemuTestCase):
    def test_failed_transaction_rolls_back_and_orphans_are_removed(self):
        self.register('vm1', 'ia-emu1')
        bases = self.bases('vm1', 3)
        ovs = self.overlays('vm1', 3, skip=(2,))         # the last overlay is not granted
        vm = self.start_vm('ia-emu1', 'vm1', bases)
        before_nodes = vm.node_files()

        with self.assertRaises(qemuvm.QmpError) as cm:
            vm.snapshot(ovs)
        self.assertIn('Permission denied', cm.exception.desc)
        self.assertIn(ovs['d2'], cm.exception.desc)
        # QEMU rolled every disk back
        self.assertGraph(vm, self.base_graph(bases))
        self.assertEqual(vm.node_files(), before_nodes)
        # ... but left the overlays it had made on disk: the service knows them as created
        self.assertTrue(os.path.exists(ovs['d0']) and os.path.exists(ovs['d1']))
        self.assertFalse(os.path.exists(ovs['d2']))
        listed = self.grants('vm1')
        self.assertEqual(listed[ovs['d0']], ('create', True))
        self.assertEqual(listed[ovs['d1']], ('create', True))
        self.assertNotIn(ovs['d2'], listed)

        # the manager cleans up: RevokeImage remove-created; nothing is left
        for node in ('d0', 'd1'):
            self.assertOk(self.revoke('vm1', ovs[node], remove_created=True))
        self.assertEqual(self.leftover_files(), sorted(os.path.basename(p) for p in bases))
        records = audit_records(self.bed.log_text('daemon'))
        self.assertEqual(len([r for r in records if r['event'] == 'revoke']), 2)

        # the disks still work, and a retry with every overlay granted succeeds
        self.assertIn('wrote 4096/4096', vm.qemu_io(0, 'write -P 0x42 0 4096'))
        self.overlays('vm1', 3)
        vm.snapshot(ovs)
        self.assertGraph(vm, self.snapshot_graph(bases, ovs))


class RevokeTests(QemuTestCase):
    def test_revoke_while_running(self):
        self.register('vm1', 'ia-emu1')
        bases = self.bases('vm1', 2)
        vm = self.start_vm('ia-emu1', 'vm1', bases)
        self.assertIn('wrote 65536/65536', vm.qemu_io(1, 'write -P 0x43 0 65536'))

        self.assertOk(self.revoke('vm1', bases[1]))
        mark = self.daemon_log_mark()
        # a later open of the revoked image is denied ...
        with self.assertRaises(qemuvm.QmpError) as cm:
            vm.qmp('blockdev-add', driver='file', filename=bases[1], **{'node-name': 'again',
                                                                         'read-only': True})
        self.assertIn('Permission denied', cm.exception.desc)
        denied = [r for r in audit_records(self.daemon_log_since(mark))
                  if r['event'] == 'open' and r['image'] == bases[1]]
        self.assertTrue(denied and all(r['result'] == 'denied' for r in denied), denied)
        self.assertIn('no grant', denied[0]['reason'])
        # ... while the running disk keeps its fd: still readable and writable
        out = vm.qemu_io(1, 'read -P 0x43 0 65536')
        self.assertIn('read 65536/65536 bytes', out)
        self.assertNotIn('Pattern verification failed', out)
        self.assertIn('wrote 65536/65536', vm.qemu_io(1, 'write -P 0x44 65536 65536'))
        out = vm.qemu_io(1, 'read -P 0x44 65536 65536')
        self.assertIn('read 65536/65536 bytes', out)
        self.assertNotIn('Pattern verification failed', out)
        # the other disk is not affected at all
        self.assertIn('wrote 4096/4096', vm.qemu_io(0, 'write -P 0x45 0 4096'))
        self.assertEqual(vm.stop(), 0)
        self.assertImageData(bases[1], 65536, 65536, depth=0)


class ServiceRestartTests(QemuTestCase):
    def test_restart_between_snapshots(self):
        """Grants and the uid binding survive a kill -9 of the service; QEMU's connection to
        the bus is not the service's, so the shim carries on."""
        self.register('vm1', 'ia-emu1')
        bases = self.bases('vm1', 2)
        ovs = self.overlays('vm1', 2)
        vm = self.start_vm('ia-emu1', 'vm1', bases)
        self.bed.restart_daemon(signal.SIGKILL)
        vm.snapshot(ovs)
        self.assertGraph(vm, self.snapshot_graph(bases, ovs))

    def test_service_dies_during_a_transaction(self):
        """An open in flight when the service dies fails; QEMU rolls back, nothing hangs, and
        after a restart the manager cleans up and the retry succeeds."""
        self.register('vm1', 'ia-emu1')
        bases = self.bases('vm1', 2)
        ovs = self.overlays('vm1', 2)
        vm = self.start_vm('ia-emu1', 'vm1', bases)
        self.bed.signal_daemon(signal.SIGSTOP)         # the next open hangs in the service
        vm.qmp_conn.send('transaction', {'actions': vm.snapshot_actions(ovs)})
        time.sleep(0.5)
        self.bed.kill_daemon(signal.SIGKILL)
        ans = vm.qmp_conn.receive()
        self.assertIn('error', ans)
        sys.stderr.write('transaction with the service killed: %s\n' % ans['error']['desc'])
        self.assertGraph(vm, self.base_graph(bases))
        self.bed.start_daemon()
        for p in ovs.values():
            # one call per overlay, whether or not QEMU had created it (docs/qemu.md, step 4)
            self.assertOk(self.revoke('vm1', p, remove_created=True))
        self.assertEqual(self.leftover_files(), sorted(os.path.basename(p) for p in bases))
        self.overlays('vm1', 2)
        vm.snapshot(ovs)
        self.assertGraph(vm, self.snapshot_graph(bases, ovs))


class TwoGuestTests(QemuTestCase):
    def test_polkit_rule_denies_one_guest(self):
        self.register('vm-a', 'ia-emu1')
        self.register('vm-b', 'ia-emu2')
        bases_a = self.bases('vm-a', 2, prefix='a-')
        bases_b = self.bases('vm-b', 2, prefix='b-')
        ovs_a = self.overlays('vm-a', 2, prefix='a-')
        ovs_b = self.overlays('vm-b', 2, prefix='b-')
        vm_a = self.start_vm('ia-emu1', 'vm-a', bases_a)
        vm_b = self.start_vm('ia-emu2', 'vm-b', bases_b)

        # from now on guest B may open images read-only only
        self.bed.set_rules('50-vm-b-read-only.rules', DENY_B_RULE)
        mark = self.daemon_log_mark()
        with self.assertRaises(qemuvm.QmpError) as cm:
            vm_b.snapshot(ovs_b)
        self.assertIn('Permission denied', cm.exception.desc)
        vm_a.snapshot(ovs_a)

        self.assertGraph(vm_a, self.snapshot_graph(bases_a, ovs_a))
        self.assertGraph(vm_b, self.base_graph(bases_b))
        self.assertFalse(any(os.path.exists(p) for p in ovs_b.values()))
        self.assertTrue(all(os.path.exists(p) for p in ovs_a.values()))
        recs = [r for r in audit_records(self.daemon_log_since(mark)) if r['event'] == 'open']
        b_denied = [r for r in recs if r['guest'] == 'vm-b' and r['mode'] == 'create']
        self.assertTrue(b_denied and all(r['result'] == 'denied' for r in b_denied), b_denied)
        self.assertTrue(any(r['guest'] == 'vm-a' and r['mode'] == 'create' and
                            r['result'] == 'allowed' for r in recs))
        # B's running disks are untouched by the rule (their fds are open)
        self.assertIn('wrote 4096/4096', vm_b.qemu_io(0, 'write -P 0x46 0 4096'))


class BindProcessTests(QemuTestCase):
    def test_bind_process_between_fork_and_exec(self):
        self.register('vm1')                    # no uid: only the bound process counts
        bases = self.bases('vm1', 2)
        ovs = self.overlays('vm1', 2)
        vm = qemuvm.Qemu(self.bed, 'ia-emu1', guest='vm1', disks=bases, prefixes=[self.dir],
                         hold=True, use_bus_address_var=False)
        self.addCleanup(vm.stop)
        vm.start()                              # the wrapper runs as ia-emu1 and waits
        self.assertOk(self.mgr.manager('BindProcess', 'sha{sv}',
                                       ['vm1', {'pidfd_of': vm.pid}, {}]))
        vm.release()                            # exec QEMU: same pid, new bus connection

        vm.snapshot(ovs)
        self.assertGraph(vm, self.snapshot_graph(bases, ovs))
        recs = audit_records(self.bed.log_text('daemon'))
        binds = [r for r in recs if r['event'] == 'bind']
        self.assertEqual(len(binds), 1)
        self.assertIn('process %d' % vm.pid, binds[0]['reason'])
        opens = [r for r in recs if r['event'] == 'open' and r['result'] == 'allowed']
        self.assertTrue(opens)
        self.assertEqual({r['pid'] for r in opens}, {str(vm.pid)})
        # another process of the same uid is not the guest
        other = self.bed.agent('ia-emu1')
        self.assertError(other.open_image('vm1', bases[0], 'read-only'),
                         'org.example.ImageAccess.Error.NotBound')


class LeakTests(QemuTestCase):
    CYCLES = 50
    COMMITS = 20

    def test_no_fd_leak_over_snapshot_cycles(self):
        self.register('vm1', 'ia-emu1')
        bases = self.bases('vm1', 2)
        ovs = self.overlays('vm1', 2, skip=(1,))       # d1's overlay is not granted
        vm = self.start_vm('ia-emu1', 'vm1', bases)

        def failing():
            with self.assertRaises(qemuvm.QmpError):
                vm.snapshot(ovs)

        def snapshot_and_commit():
            vm.snapshot({'d0': ovs['d0']})
            vm.qmp('block-commit', device='s0', **{'job-id': 'commit0'})
            vm.qmp_conn.wait_event('BLOCK_JOB_READY', timeout=30,
                                   match=lambda d: d.get('device') == 'commit0')
            vm.qmp('block-job-complete', device='commit0')
            ev = vm.qmp_conn.wait_event('BLOCK_JOB_COMPLETED', timeout=30,
                                        match=lambda d: d.get('device') == 'commit0')
            self.assertNotIn('error', ev['data'])

        failing()                       # warm up: the orphan exists from now on
        snapshot_and_commit()
        self.assertGraph(vm, self.base_graph(bases))
        qemu_fds = vm.fd_targets()
        daemon_fds = sorted(f['target'] for f in self.bed.daemon_fds())

        t0 = time.monotonic()
        for _ in range(self.CYCLES):
            failing()
            self.assertGraph(vm, self.base_graph(bases))
        t1 = time.monotonic()
        for _ in range(self.COMMITS):
            snapshot_and_commit()
        t2 = time.monotonic()
        sys.stderr.write('%d failing transactions: %.1f s; %d snapshot+commit: %.1f s\n'
                         % (self.CYCLES, t1 - t0, self.COMMITS, t2 - t1))
        self.assertGraph(vm, self.base_graph(bases))
        self.assertEqual(vm.fd_targets(), qemu_fds)
        self.assertEqual(sorted(f['target'] for f in self.bed.daemon_fds()), daemon_fds)
        self.assertFalse([t for t in daemon_fds if t.startswith(self.dir)])

        self.assertEqual(vm.stop(), 0)
        self.assertOk(self.revoke('vm1', ovs['d0'], remove_created=True))
        self.assertEqual(self.leftover_files(), sorted(os.path.basename(p) for p in bases))


if __name__ == '__main__':
    testbed.main()

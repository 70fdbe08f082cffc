#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""
The real libvirtd 9.0 drives unprivileged QEMUs through image-accessd (libvirtbed.py): the
libvirt qemu hook of data/libvirt registers each opted-in domain, bound to the uid of its
static DAC label, and grants its disks; the images are root 0600 in a root 0711 directory
and QEMU (TCG) opens them through the preloaded shim.  The commands are those of
docs/libvirt.md.
"""

import os
import re
import shutil
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import libvirtbed  # noqa: E402
import qemuvm  # noqa: E402
import testbed  # noqa: E402

HOOK_TEMPLATE = os.path.join(testbed.SOURCE_ROOT, 'data', 'libvirt', 'image-access-hook.in')
AUDIT_RE = re.compile(r"audit: (?P<event>\w+) (?P<result>allowed|denied) "
                      r"guest='(?P<guest>(?:[^'\\]|\\.)*)'"
                      r"(?: image='(?P<image>(?:[^'\\]|\\.)*)')?(?: mode=(?P<mode>\S+))?"
                      r" uid=(?P<uid>\d+) pid=(?P<pid>-?\d+) sender=(?P<sender>\S+)"
                      r"(?: via=(?P<via>\S+))?(?: reason='(?P<reason>(?:[^'\\]|\\.)*)')?")
UID1 = testbed.USERS['ia-emu1'].uid
UID2 = testbed.USERS['ia-emu2'].uid


def audit_records(text):
    return [m.groupdict() for m in map(AUDIT_RE.search, text.splitlines()) if m]


def hook_text():
    """The hook as meson installs it, pointing at the built image-accessctl."""
    with open(HOOK_TEMPLATE) as f:
        return f.read().replace('@IMAGE_ACCESSCTL@', os.environ['IA_CTL'])


class LibvirtTestCase(testbed.IaTestCase):
    def setUp(self):
        reason = qemuvm.missing_requirements() or libvirtbed.missing_requirements()
        if reason:
            self.fail(reason)     # CI installs all of it (tests/tools/setup.sh)
        if not os.environ.get('IA_CTL'):
            self.fail('IA_CTL is not set: image-accessctl was not built')
        super().setUp()
        # QEMU runs as the domains' uids: give it a shim it can surely read (the build tree
        # may be below a 0700 directory)
        self.shim = os.path.join(self.bed.runtime_dir, 'libimageaccess-preload.so')
        shutil.copyfile(qemuvm.shim_path(), self.shim)
        os.chmod(self.shim, 0o644)
        self.lv = libvirtbed.LibvirtBed(self.bed, hooks={'image-access': hook_text()})
        self.addCleanup(self._stop_libvirt)
        self.lv.start()

    def _stop_libvirt(self):
        leftovers = self.lv.stop()
        if leftovers:
            raise AssertionError('QEMUs left running after destroy: %r' % leftovers)

    def run(self, result=None):
        watch = testbed._FailureWatch(result) if result is not None else None
        try:
            return super().run(watch if watch else result)
        finally:
            if watch is not None and watch.failed and getattr(self, 'lv', None):
                sys.stderr.write('\n===== libvirtd =====\n%s\n' % self.lv.libvirtd_log())
                for cmd, out, err, rc in self.lv.transcript:
                    sys.stderr.write('%s  [%d]\n%s%s' % (cmd, rc, out, err))

    # ---- domains ----------------------------------------------------------------------------
    def image_dir(self, name):
        return qemuvm.image_dir(self.bed, name)

    def disk(self, domain, name='disk.qcow2', size='1M', backing=None):
        return qemuvm.make_qcow2(os.path.join(self.image_dir(domain), name), size, backing)

    def define(self, name, uid, disks, **kw):
        """Define a domain; disks: paths (qcow2), vda, vdb, ... in order."""
        kw.setdefault('prefixes', [self.bed.images_dir])
        xml = libvirtbed.domain_xml(name, uid, [('vd' + chr(ord('a') + i), p, 'qcow2')
                                                for i, p in enumerate(disks)],
                                    self.shim, self.bed.address, **kw)
        path = os.path.join(self.bed.runtime_dir, name + '.xml')
        with open(path, 'w') as f:
            f.write(xml)
        self.lv.virsh('define', path)
        return path

    def start(self, name):
        rc, out, err = self.lv.virsh_result('start', name)
        if rc != 0:
            self.fail('virsh start %s failed: %s\n%s' % (name, err, self.lv.qemu_log(name)))

    def guests(self):
        values = self.assertOk(self.bed.local.manager('ListGuests'))
        return {g[0]: g[1] for g in values[0]}

    def grants(self, guest):
        values = self.assertOk(self.bed.local.manager('ListGrants', 's', [guest]))
        return {g[0]: g[1] for g in values[0]}

    def wait_for(self, cond, what, timeout=15.0):
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                self.fail('timed out waiting for %s' % what)
            time.sleep(0.05)

    def opens(self, since=0):
        return [r for r in audit_records(self.bed.log_text('daemon')[since:])
                if r['event'] == 'open']

    def log_mark(self):
        return len(self.bed.log_text('daemon'))

    def qmp(self, domain, command, **arguments):
        """A QMP command through libvirt (virsh qemu-monitor-command): (ok, reply text)."""
        import json
        rc, out, err = self.lv.virsh_result('qemu-monitor-command', domain, json.dumps(
            {'execute': command, 'arguments': arguments}))
        return rc == 0 and '"error"' not in out, out + err

    def add_file_node(self, domain, path, node, read_only=True):
        """blockdev-add driver=file: makes QEMU open(2) PATH, through the shim."""
        return self.qmp(domain, 'blockdev-add', driver='file', filename=path, **{
            'node-name': node, 'read-only': read_only})


class HookTests(LibvirtTestCase):
    def test_domain_starts_on_root_0600_images(self):
        img = self.disk('vm1')
        st = os.stat(img)
        self.assertEqual((st.st_uid, st.st_mode & 0o7777), (0, 0o600))
        self.assertEqual(os.stat(os.path.dirname(img)).st_mode & 0o7777, 0o711)
        self.define('vm1', UID1, [img])
        mark = self.log_mark()
        self.start('vm1')
        g = self.guests()['vm1']
        self.assertEqual(g['uid'], UID1)
        self.assertTrue(g['uuid'])
        self.assertEqual(self.grants('vm1'), {img: 'read-write'})
        opens = [r for r in self.opens(mark) if r['result'] == 'allowed']
        self.assertTrue(any(r['image'] == img and r['mode'] == 'read-write' and
                            int(r['uid']) == UID1 for r in opens), opens)
        # the image stayed as it was: libvirt did not relabel it, nobody chowned it
        st2 = os.stat(img)
        self.assertEqual((st2.st_uid, st2.st_gid, st2.st_mode & 0o7777), (0, 0, 0o600))

    def test_two_domains_each_open_only_their_own(self):
        img1, img2 = self.disk('vm1'), self.disk('vm2')
        self.define('vm1', UID1, [img1])
        self.define('vm2', UID2, [img2])
        self.start('vm1')
        self.start('vm2')
        self.assertEqual(self.guests()['vm2']['uid'], UID2)
        mark = self.log_mark()
        ok, out = self.add_file_node('vm1', img2, 'steal')
        self.assertFalse(ok, out)
        self.assertIn('Permission denied', out)
        denied = [r for r in self.opens(mark) if r['result'] == 'denied']
        self.assertTrue(any(r['guest'] == 'vm1' and r['image'] == img2 and
                            int(r['uid']) == UID1 for r in denied), denied)
        ok, out = self.add_file_node('vm2', img1, 'steal')
        self.assertFalse(ok, out)
        # each still opens its own
        ok, out = self.add_file_node('vm1', img1, 'own')
        self.assertTrue(ok, out)
        self.assertIn('running', self.lv.virsh('domstate', 'vm1'))
        self.assertIn('running', self.lv.virsh('domstate', 'vm2'))

    def test_backing_chain_granted_read_only(self):
        base = self.disk('vm1', 'base.qcow2')
        top = self.disk('vm1', 'top.qcow2', backing=base)
        self.define('vm1', UID1, [top])
        mark = self.log_mark()
        self.start('vm1')
        grants = self.grants('vm1')
        self.assertEqual(grants, {top: 'read-write', base: 'read-only'})
        self.assertTrue(any(r['image'] == base and r['result'] == 'allowed'
                            for r in self.opens(mark)))

    def test_backing_file_of_another_domain_refused(self):
        # vm1's guest could write any backing file name into its own image's header
        theirs = self.disk('vm2', 'disk.qcow2')
        mine = self.disk('vm1', 'top.qcow2', backing=theirs)
        self.define('vm1', UID1, [mine])
        rc, out, err = self.lv.virsh_result('start', 'vm1')
        self.assertNotEqual(rc, 0)
        self.assertIn("image-access: domain 'vm1': '%s' names the backing file '%s', outside "
                      "the domain's directories" % (mine, theirs), err)
        self.assertNotIn('vm1', self.guests())

    def test_destroy_unregisters(self):
        self.define('vm1', UID1, [self.disk('vm1')])
        self.start('vm1')
        self.assertIn('vm1', self.guests())
        self.lv.virsh('destroy', 'vm1')
        self.assertNotIn('vm1', self.guests())
        self.start('vm1')       # and it can start again
        self.assertIn('vm1', self.guests())

    def test_refuses_domain_without_static_uid(self):
        self.define('vm1', UID1, [self.disk('vm1')], label=False)
        rc, out, err = self.lv.virsh_result('start', 'vm1')
        self.assertNotEqual(rc, 0)
        self.assertIn("image-access: domain 'vm1' has no <seclabel type='static' model='dac'> "
                      "with a non-root uid", err)
        self.assertNotIn('vm1', self.guests())

    def test_refuses_uid_of_another_guest(self):
        self.define('vm1', UID1, [self.disk('vm1')])
        self.define('vm2', UID1, [self.disk('vm2')])
        self.start('vm1')
        rc, out, err = self.lv.virsh_result('start', 'vm2')
        self.assertNotEqual(rc, 0)
        self.assertIn("image-access: domain 'vm2': uid %d is already guest 'vm1''s" % UID1, err)
        self.assertEqual(self.guests()['vm1']['uid'], UID1)
        self.assertNotIn('vm2', self.guests())

    def test_not_opted_in_is_left_alone(self):
        self.define('vm1', UID1, [self.disk('vm1')], opt_in=False)
        rc, out, err = self.lv.virsh_result('start', 'vm1')
        # nothing registered it: QEMU's open through the shim is refused, the start fails
        self.assertNotEqual(rc, 0)
        self.assertNotIn('vm1', self.guests())
        self.assertNotIn('image-access:', err)

    def test_stale_registration_is_replaced(self):
        img = self.disk('vm1')
        self.assertOk(self.bed.local.manager('RegisterGuest', 'sa{sv}', ['vm1', {
            'uid': {'$v': ['u', UID1]}}]))
        self.assertOk(self.bed.local.manager('GrantImage', 'sssa{sv}', [
            'vm1', os.path.join(self.image_dir('vm1'), 'old.qcow2'), 'create', {}]))
        self.define('vm1', UID1, [img])
        self.start('vm1')
        self.assertEqual(sorted(self.grants('vm1')), [img])

    def test_libvirtd_restart_keeps_domains_served(self):
        img = self.disk('vm1')
        self.define('vm1', UID1, [img])
        self.start('vm1')
        old = self.lv.libvirtd_pid
        self.lv.restart_libvirtd()
        self.assertNotEqual(self.lv.libvirtd_pid, old)
        self.assertIn('running', self.lv.virsh('domstate', 'vm1'))
        self.assertEqual(sorted(self.grants('vm1')), [img])
        ok, out = self.add_file_node('vm1', img, 'again')
        self.assertTrue(ok, out)
        self.lv.virsh('destroy', 'vm1')
        self.assertNotIn('vm1', self.guests())

    def test_reconnect_registers_a_forgotten_guest(self):
        img = self.disk('vm1')
        self.define('vm1', UID1, [img])
        self.start('vm1')
        self.lv.stop_libvirtd()
        self.assertOk(self.bed.local.manager('UnregisterGuest', 's', ['vm1']))
        self.lv.start()
        # libvirtd reconnects to its domains in threads of their own, after it answers
        self.wait_for(lambda: 'vm1' in self.guests(), 'the reconnect hook to register vm1')
        self.assertEqual(self.guests()['vm1']['uid'], UID1)
        ok, out = self.add_file_node('vm1', img, 'again')
        self.assertTrue(ok, out)


class SnapshotTests(LibvirtTestCase):
    """Disk-only snapshots and block commits made by libvirt: libvirt creates the overlay
    itself, as root 0600, in the guest's directory; the directory grant the hook made from
    the domain's metadata lets QEMU open it, with no manual step and no chown."""

    def domain(self, name='vm1', uid=UID1, n_disks=1):
        d = self.image_dir(name)
        disks = [self.disk(name, 'disk%d.qcow2' % i) for i in range(n_disks)]
        self.define(name, uid, disks, directories=[d])
        self.start(name)
        return d, disks

    def blocklist(self, name):
        return [line.split()[1] for line in self.lv.virsh('domblklist', name).splitlines()
                if line.strip()]

    def show_transcript(self, mark):
        """The virsh runs and the service's audit lines, for the record (test log)."""
        sys.stdout.write('\n---- virsh ----\n')
        for cmd, out, err, rc in self.lv.transcript:
            sys.stdout.write('%s\n%s%s' % (cmd, out, err))
        sys.stdout.write('---- image-accessd audit ----\n')
        for line in self.bed.log_text('daemon')[mark:].splitlines():
            if 'audit:' in line:
                sys.stdout.write(line + '\n')
        sys.stdout.flush()

    def test_default_names_then_blockcommit(self):
        d, (disk,) = self.domain()
        grants = self.assertOk(self.bed.local.manager('ListGrants', 's', ['vm1']))[0]
        self.assertIn([d, 'read-write', {'created': False, 'pinned': True, 'directory': True,
                                         'device': os.stat(d).st_dev,
                                         'inode': os.stat(d).st_ino}], grants)
        mark = self.log_mark()
        del self.lv.transcript[:]
        self.lv.virsh('snapshot-create-as', 'vm1', 's1', '--disk-only', '--atomic')
        overlay = os.path.join(d, 'disk0.s1')
        self.assertEqual(self.blocklist('vm1'), [overlay])
        st = os.stat(overlay)
        self.assertEqual((st.st_uid, st.st_gid, st.st_mode & 0o7777), (0, 0, 0o600))
        opened = [r for r in self.opens(mark) if r['image'] == overlay]
        self.assertTrue(opened and all(r['result'] == 'allowed' and int(r['uid']) == UID1
                                       for r in opened), opened)
        self.lv.virsh('blockcommit', 'vm1', 'vda', '--active', '--pivot', '--wait')
        self.assertEqual(self.blocklist('vm1'), [disk])
        self.assertTrue(any(r['image'] == disk and r['mode'] == 'read-write' and
                            r['result'] == 'allowed' for r in self.opens(mark)))
        self.assertIn('running', self.lv.virsh('domstate', 'vm1'))
        self.show_transcript(mark)

    def test_diskspec(self):
        d, disks = self.domain(n_disks=2)
        ov = [os.path.join(d, 'ov%d.qcow2' % i) for i in range(2)]
        self.lv.virsh('snapshot-create-as', 'vm1', 's1', '--disk-only', '--atomic',
                      '--diskspec', 'vda,file=' + ov[0], '--diskspec', 'vdb,file=' + ov[1])
        self.assertEqual(self.blocklist('vm1'), ov)
        for dev in ('vda', 'vdb'):
            self.lv.virsh('blockcommit', 'vm1', dev, '--active', '--pivot', '--wait')
        self.assertEqual(self.blocklist('vm1'), disks)

    def test_overlay_outside_the_grants_fails_cleanly(self):
        d, (disk,) = self.domain()
        other = self.image_dir('elsewhere')
        ov = os.path.join(other, 'ov.qcow2')
        mark = self.log_mark()
        rc, out, err = self.lv.virsh_result('snapshot-create-as', 'vm1', 's1', '--disk-only',
                                            '--atomic', '--diskspec', 'vda,file=' + ov)
        self.assertNotEqual(rc, 0)
        self.assertIn('Permission denied', err)
        self.assertTrue(any(r['image'] == ov and r['result'] == 'denied' and
                            int(r['uid']) == UID1 for r in self.opens(mark)))
        self.assertIn('running', self.lv.virsh('domstate', 'vm1'))
        self.assertEqual(self.blocklist('vm1'), [disk])
        ok, out = self.add_file_node('vm1', disk, 'still')
        self.assertTrue(ok, out)

    def test_other_domains_directory_is_refused(self):
        d1, _ = self.domain('vm1', UID1)
        self.define('vm2', UID2, [self.disk('vm2')], directories=[d1])
        rc, out, err = self.lv.virsh_result('start', 'vm2')
        self.assertNotEqual(rc, 0)
        self.assertIn("guest 'vm1' has a directory grant for '%s'" % d1, err)
        self.assertNotIn('vm2', self.guests())

    def test_service_killed_then_snapshot(self):
        d, (disk,) = self.domain()
        self.bed.kill_daemon(signal.SIGKILL)
        self.bed.start_daemon(self.daemon_args, self.daemon_config)
        self.assertEqual(self.guests()['vm1']['uid'], UID1)
        self.lv.virsh('snapshot-create-as', 'vm1', 's1', '--disk-only', '--atomic')
        self.assertEqual(self.blocklist('vm1'), [os.path.join(d, 'disk0.s1')])
        self.lv.virsh('blockcommit', 'vm1', 'vda', '--active', '--pivot', '--wait')
        self.assertEqual(self.blocklist('vm1'), [disk])


if __name__ == '__main__':
    testbed.main()

#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""
image-accessd under attack: each test mounts one attack an emulator (a guest that escaped into
it, running as its own uid) or any local user could make, and proves it is denied.  The
service's promise: no fd for an inode that was not granted, never in a stronger mode; nothing
leaked per call; no caller can stop it serving others.

The fast attackers (a renameat2() race, storms of connections and calls, the random caller)
are tests/integration/ia-attack.c; attackhelper.py runs them.  Each test prints a line
"FIGURES test: {...}" with what it measured (attempts, successes, denials, fd counts).

Not repeated here (see test_open.py, test_pinning.py, test_identity.py, test_manager.py):
single symlinks and file types, renamed-in files, pid reuse, unprivileged manager calls,
huge strings to manager methods.
"""

import hashlib
import os
import re
import signal
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import attackhelper  # noqa: E402
import testbed  # noqa: E402
from attackhelper import Helper, figures  # noqa: E402

E = 'org.example.ImageAccess.Error.'
NOT_GRANTED = E + 'NotGranted'
NOT_BOUND = E + 'NotBound'
SYMLINK = E + 'SymlinkRefused'
WRONG_TYPE = E + 'WrongFileType'
INVALID_PATH = E + 'InvalidPath'
INVALID_OPTION = E + 'InvalidOption'
INVALID_NAME = E + 'InvalidName'
INVALID_MODE = E + 'InvalidMode'
IO_ERROR = E + 'IOError'
LIMIT = E + 'LimitExceeded'
NOT_FOUND = E + 'NotFound'
INVALID_ARGS = 'org.freedesktop.DBus.Error.InvalidArgs'
ACCESS_DENIED = 'org.freedesktop.DBus.Error.AccessDenied'
INTERACTIVE = 'org.freedesktop.DBus.Error.InteractiveAuthorizationRequired'
# An interactive caller whom polkit would have to ask for a password, with no agent to ask
AUTH_FAILED = 'org.example.ImageAccess.Error.AuthenticationFailed'
MODES = ('read-only', 'read-write', 'create')


def sha(path):
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def file_id(path):
    st = os.lstat(path)
    return (st.st_dev, st.st_ino, st.st_mode, st.st_uid, st.st_size, st.st_mtime_ns)


def rawbus_copy(bed):
    """rawbus.py copied where the test users can read it (the source tree may be 0700)."""
    raw = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'rawbus.py')
    copy = os.path.join(bed.runtime_dir, 'rawbus.py')
    with open(raw, 'rb') as src, open(copy, 'wb') as dst:
        dst.write(src.read())
    os.chmod(copy, 0o644)
    return copy


class AttackTestCase(testbed.IaTestCase):
    """vm1 is bound to ia-emu1's uid; self.emu is an ia-emu1 process."""

    def setUp(self):
        super().setUp()
        self.emu_user = self.bed.users['ia-emu1']
        self.manager('RegisterGuest', 'sa{sv}', ['vm1', {'uid': {'$v': ['u', self.emu_user.uid]}}])
        self.emu = self.bed.agent('ia-emu1')
        self.ctl = attackhelper.make_user_dir(os.path.join(self.bed.runtime_dir, 'tmp', 'ctl'),
                                              self.emu_user)

    def manager(self, method, sig, args, **kw):
        return self.assertOk(self.bed.local.manager(method, sig, args, **kw),
                             '%s%r' % (method, args))

    def grant(self, path, mode, guest='vm1'):
        self.manager('GrantImage', 'sssa{sv}', [guest, path, mode, {}])

    def tables(self):
        guests = self.assertOk(self.bed.local.manager('ListGuests'))[0]
        return {name: (props, self.assertOk(self.bed.local.manager('ListGrants', 's', [name]))[0])
                for name, props in guests}

    def warm_up(self, path, mode='read-only'):
        for _ in range(3):
            r = self.emu.open_image('vm1', path, mode)
            self.assertOk(r)
            self.emu.close_fd(r.fd()['fd'])
        attackhelper.ping(self, self.bed)


# ---- paths ------------------------------------------------------------------------------------

class PathAttackTests(AttackTestCase):

    def test_magic_links_refused_for_grant_and_open(self):
        """/proc/self/fd/N, /proc/PID/root/…, /dev/fd/N, /proc/self/cwd/… name the service's
        own fds, another process's root, its cwd: as GrantImage paths they are refused, as
        OpenImage paths nothing is granted, and no fd ever comes back."""
        daemon, emu = self.bed.daemon_pid, self.emu.pid
        journal = [f['fd'] for f in self.bed.daemon_fds() if f['target'].endswith('/journal')]
        paths = ['/proc/self/fd/%d' % n for n in range(0, 16)] + \
                ['/dev/fd/%d' % n for n in range(0, 16)] + \
                ['/proc/%d/fd/%d' % (daemon, n) for n in journal] + \
                ['/proc/thread-self/fd/3', '/dev/stdin', '/dev/stderr', '/proc/self/exe',
                 '/proc/self/root/etc/shadow', '/proc/1/root/etc/shadow',
                 '/proc/%d/root/etc/shadow' % daemon, '/proc/%d/root/etc/shadow' % emu,
                 '/proc/self/cwd/etc/shadow', '/proc/%d/cwd/etc/shadow' % emu,
                 '/proc/%d/cwd/etc/shadow' % daemon, '/proc/self/fd/0/x',
                 '/proc/%d/task/%d/root/etc/shadow' % (daemon, daemon)]
        before = self.tables()
        refused = 0
        for p in paths:
            for mode in MODES:
                r = self.bed.local.manager('GrantImage', 'sssa{sv}', ['vm1', p, mode, {}])
                self.assertError(r, SYMLINK, 'GrantImage %s %s' % (p, mode))
                refused += 1
                r = self.emu.open_image('vm1', p, mode)
                self.assertError(r, NOT_GRANTED, 'OpenImage %s %s' % (p, mode))
                self.assertEqual(r.fds, [])
                refused += 1
        self.assertEqual(self.tables(), before)

        # The same links put into a granted path afterwards, by the emulator, in a directory
        # it may write: the open is refused, not followed into the service's own fds.
        d = attackhelper.make_user_dir(os.path.join(self.bed.images_dir, 'emu'), self.emu_user)
        sub = os.path.join(d, 'sub')
        os.mkdir(sub)
        targets = {'/proc/self/fd': [str(n) for n in journal + [0, 1, 2]],
                   '/proc/%d/root/etc' % daemon: ['shadow'],
                   '/proc/self/cwd': ['x.img'],
                   '/dev/fd': ['0', '3']}
        for target, names in targets.items():
            for name in names:
                path = os.path.join(sub, name)
                if not os.path.exists(path):
                    with open(path, 'wb') as f:
                        f.write(b'granted ' + name.encode())
                    os.chmod(path, 0o600)
                self.grant(path, 'read-write')
        os.rename(sub, os.path.join(d, 'real'))
        for target, names in targets.items():
            if os.path.lexists(sub):
                os.unlink(sub)
            os.symlink(target, sub)
            os.lchown(sub, self.emu_user.uid, self.emu_user.gid)
            for name in names:
                for mode in ('read-only', 'read-write'):
                    r = self.emu.open_image('vm1', os.path.join(sub, name), mode)
                    self.assertError(r, SYMLINK, '%s/%s via %s' % (sub, name, target))
                    refused += 1
        self.assertTrue(self.bed.daemon_running())
        figures(self, refused=refused)

    def test_path_max_and_name_max(self):
        """PATH_MAX + 1 bytes and a 256-byte component are InvalidPath for GrantImage and
        OpenImage; the longest valid ones are accepted as paths (and just not found)."""
        d = self.bed.images_dir

        def of_length(total):
            path = d
            while len(path) < total:
                n = min(200, total - len(path) - 1)
                if total - len(path) - 1 - n == 1:
                    n -= 1
                path += '/' + 'p' * n
            self.assertEqual(len(path), total)
            return path

        invalid = [of_length(4097), of_length(4096), d + '/' + 'n' * 256,
                   d + '/' + 'n' * 256 + '/x.img', of_length(65536)]
        valid = [of_length(4095), d + '/' + 'n' * 255]
        for p in invalid:
            for mode in MODES:
                self.assertError(self.bed.local.manager('GrantImage', 'sssa{sv}',
                                                        ['vm1', p, mode, {}]), INVALID_PATH)
                r = self.emu.open_image('vm1', p, mode)
                self.assertError(r, INVALID_PATH)
                self.assertLess(len(r.message), 1024, 'the error does not echo the whole path')
        for p in valid:
            self.assertError(self.bed.local.manager('GrantImage', 'sssa{sv}',
                                                    ['vm1', p, 'read-only', {}]), NOT_FOUND)
            self.assertError(self.emu.open_image('vm1', p, 'read-only'), NOT_GRANTED)
        self.assertEqual(self.tables()['vm1'][1], [])

    def test_fifo_grant_refused_without_blocking(self):
        """A FIFO cannot be granted (the grant looks at the file now), and granting or opening
        one never waits for a writer."""
        fifo = os.path.join(self.bed.images_dir, 'fifo')
        os.mkfifo(fifo, 0o666)
        t0 = time.monotonic()
        for mode in ('read-only', 'read-write'):
            self.assertError(self.bed.local.manager('GrantImage', 'sssa{sv}',
                                                    ['vm1', fifo, mode, {}], timeout=5), WRONG_TYPE)
        self.assertError(self.bed.local.manager('GrantImage', 'sssa{sv}',
                                                ['vm1', fifo, 'create', {}], timeout=5), WRONG_TYPE)
        self.assertError(self.emu.open_image('vm1', fifo, 'read-only', timeout=5), NOT_GRANTED)
        self.assertLess(time.monotonic() - t0, 3.0)

    # -- the swap race: renameat2(RENAME_EXCHANGE) in a tight loop against OpenImage ----------

    def race(self, kind, swaps=100000):
        """The emulator's uid owns the image directory.  A helper running as that uid swaps
        the granted file with something else in a tight loop while the emulator opens the
        granted path as fast as it can: every fd it gets must be the granted inode."""
        d = attackhelper.make_user_dir(os.path.join(self.bed.images_dir, 'race'), self.emu_user)
        if kind == 'parent':
            sub = os.path.join(d, 'sub')
            os.mkdir(sub, 0o755)
            granted = self.bed.make_image('race/sub/shadow', b'granted, behind sub')
            a, b = sub, os.path.join(d, 'sublink')
            os.symlink('/etc', b)
        else:
            granted = self.bed.make_image('race/disk.img', b'granted disk')
            a, b = granted, os.path.join(d, 'other')
            if kind == 'symlink':
                os.symlink('/etc/shadow', b)
            elif kind == 'root-file':
                self.bed.make_image('race/other', b'another root-owned 0600 file')
            elif kind == 'fifo':
                os.mkfifo(b, 0o666)
        os.lchown(b, self.emu_user.uid, self.emu_user.gid)
        self.grant(granted, 'read-write')
        st = os.stat(granted)
        watched = {p: file_id(p) for p in ('/etc/shadow', granted, b)}
        shadow = sha('/etc/shadow')
        self.warm_up(granted, 'read-write')

        swapped, opened = os.path.join(self.ctl, 'swapper-reached'), os.path.join(self.ctl, 'opener-reached')
        swapper = Helper(self, 'ia-emu1', 'swap', a=a, b=b, min=swaps, reached=swapped,
                         until=opened, max_seconds=90)
        opener = Helper(self, 'ia-emu1', 'open-loop', guest='vm1', path=granted,
                        mode='read-write', dev=st.st_dev, ino=st.st_ino, min=500, in_flight=16,
                        reached=opened, until=swapped, max_seconds=90)
        s, o = swapper.result(), opener.result()
        figures(self, kind=kind, swaps=s['swaps'], attempts=o['calls'], successes=o['ok'],
                denials=o['denied'], errors=o['errors'], wrong_allows=o['wrong_allows'],
                max_latency_s=o['max_latency'])
        self.assertEqual(o['wrong_allows'], 0, o['wrong'])
        self.assertEqual(o['unanswered'], 0)
        self.assertFalse(s['timed_out'] or o['timed_out'], (s, o))
        self.assertGreaterEqual(s['swaps'], swaps)
        self.assertEqual(s['errors'], 0, s)
        self.assertEqual(o['replies'], o['calls'])
        self.assertGreater(o['ok'], 0, 'the granted file was opened between swaps')
        self.assertGreater(o['denied'], 0, 'the race was lost by the attacker, not avoided')
        expected = {'symlink': {SYMLINK}, 'parent': {SYMLINK}, 'root-file': {NOT_GRANTED},
                    'fifo': {WRONG_TYPE}}[kind]
        self.assertLessEqual(set(o['errors']), expected, o['errors'])
        self.assertLess(o['max_latency'], 5.0, 'no open blocked')
        # an even number of exchanges: everything is back, and nothing was written
        self.assertEqual({p: file_id(p) for p in watched}, watched)
        self.assertEqual(sha('/etc/shadow'), shadow)
        self.assertTrue(self.bed.daemon_running())

    def test_swap_race_symlink_to_shadow(self):
        self.race('symlink')

    def test_swap_race_other_root_file(self):
        self.race('root-file')

    def test_swap_race_parent_dir_for_symlink(self):
        self.race('parent')

    def test_swap_race_fifo(self):
        self.race('fifo')


# ---- identity ---------------------------------------------------------------------------------

# ---- file identity ----------------------------------------------------------------------------

FILE_EXISTS = E + 'FileExists'
DEVICE_BUSY = E + 'DeviceBusy'
NOT_CREATED = E + 'NotCreatedByService'


class InodeReuseAttackTests(AttackTestCase):
    """Whoever can write the image directory deletes a granted (or created) file and makes
    another in its place, on a real ext4 that gives the new file the old inode number.  The
    grant, the create reopen and remove-created must all see that it is another file."""

    def setUp(self):
        attackhelper.private_mounts()
        super().setUp()
        self.fs, self.loop = attackhelper.mount_ext4(self)

    def replace_in_place(self, path, make):
        """Deletes PATH and calls make(PATH) until the new file has the old inode number
        (ext4 gives it at once, once nobody holds the old file: the daemon closes its copy
        right after it sent the reply, which on a loaded machine can be a while after the
        caller got it); returns that number."""
        ino = os.lstat(path).st_ino
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            os.unlink(path)
            make(path)
            if os.lstat(path).st_ino == ino:
                return ino
            time.sleep(0.01)
        self.fail('ext4 did not reuse inode %d for %s' % (ino, path))

    def write(self, path, data):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, data)
        os.close(fd)

    def test_rm_and_recreate_in_place_on_ext4(self):
        p = os.path.join(self.fs, 'a.img')
        self.write(p, b'granted')
        self.grant(p, 'read-write')
        r = self.emu.open_image('vm1', p, 'read-write')
        self.assertOk(r)
        self.emu.close_fd(r.fd()['fd'])

        ino = self.replace_in_place(p, lambda q: self.write(q, b'attacker'))
        for mode in ('read-only', 'read-write'):
            r = self.emu.open_image('vm1', p, mode)
            self.assertError(r, NOT_GRANTED, 'same inode %d, another file, %s' % (ino, mode))
            self.assertEqual(r.fds, [])
        # The manager grants it again: now it is the granted file.
        self.grant(p, 'read-only')
        r = self.emu.open_image('vm1', p, 'read-only')
        self.assertOk(r)
        self.emu.close_fd(r.fd()['fd'])
        figures(self, reused_inode=ino, refused=2)

    def test_create_reopen_and_remove_created_after_reuse(self):
        p = os.path.join(self.fs, 'overlay.qcow2')
        self.grant(p, 'create')
        r = self.emu.open_image('vm1', p, 'create')
        self.assertOk(r)
        self.emu.close_fd(r.fd()['fd'])

        # Root (or whoever can write the directory) puts a file of its own in its place.
        ino = self.replace_in_place(p, lambda q: self.write(q, b'root-made'))
        r = self.emu.open_image('vm1', p, 'create')
        self.assertError(r, FILE_EXISTS, 'the create reopen of inode %d' % ino)
        self.assertEqual(r.fds, [])
        r = self.bed.local.manager('RevokeImage', 'ssa{sv}', ['vm1', p, {'remove-created': True}])
        self.assertError(r, NOT_CREATED)
        with open(p, 'rb') as f:
            self.assertEqual(f.read(), b'root-made')
        figures(self, reused_inode=ino, refused=2)

    def test_mknod_swap_of_granted_device(self):
        """A granted block device node is replaced by mknod of another device (here the
        loop device under this very file system, mounted) with the same inode number."""
        node = os.path.join(self.fs, 'disk')
        os.mknod(node, 0o600 | stat.S_IFBLK, os.makedev(7, 250))
        self.grant(node, 'read-write')
        target = os.stat(self.loop).st_rdev
        ino = self.replace_in_place(node, lambda q: os.mknod(q, 0o600 | stat.S_IFBLK, target))
        for mode in ('read-only', 'read-write'):
            r = self.emu.open_image('vm1', node, mode)
            self.assertError(r, NOT_GRANTED, 'mknod swap, same inode %d, %s' % (ino, mode))
            self.assertEqual(r.fds, [])
        figures(self, reused_inode=ino, refused=2)


class BlockDeviceAttackTests(AttackTestCase):
    """Read-write opens of block devices are exclusive (O_EXCL): a mounted device is refused
    with DeviceBusy, and a device a guest holds read-write can be neither mounted nor opened
    read-write again.  Read-only opens claim nothing and are allowed (docs/security.md)."""

    def setUp(self):
        attackhelper.private_mounts()
        super().setUp()
        self.fs, self.loop = attackhelper.mount_ext4(self)

    def test_mounted_loop_device(self):
        self.grant(self.loop, 'read-write')
        r = self.emu.open_image('vm1', self.loop, 'read-write')
        self.assertError(r, DEVICE_BUSY, 'read-write open of the mounted %s' % self.loop)
        self.assertEqual(r.fds, [])
        # read-only: allowed, and it does not keep the file system from being unmounted
        r = self.emu.open_image('vm1', self.loop, 'read-only')
        self.assertOk(r)
        self.emu.close_fd(r.fd()['fd'])

        subprocess.run(['umount', self.fs], check=True)
        r = self.emu.open_image('vm1', self.loop, 'read-write')
        self.assertOk(r)
        held = r.fd()['fd']
        # while the guest has it read-write: no mount, no second writer
        m = subprocess.run(['mount', '-t', 'ext4', self.loop, self.fs], capture_output=True)
        self.assertNotEqual(m.returncode, 0, 'mounted a device a guest holds read-write')
        r = self.emu.open_image('vm1', self.loop, 'read-write')
        self.assertError(r, DEVICE_BUSY)
        self.emu.close_fd(held)
        subprocess.run(['mount', '-t', 'ext4', self.loop, self.fs], check=True)
        figures(self, refused=2)


class CreatedFileAttackTests(AttackTestCase):

    def test_default_acl_on_the_directory(self):
        """The image directory has a default ACL naming ia-emu2 (another guest's emulator).
        The file the service creates for vm1 is exactly root 0600 with no ACL entry at all:
        masked entries would come back with a later "chmod g+rw", and ia-emu2 cannot open it
        even then."""
        d = os.path.join(self.bed.images_dir, 'acl')
        os.mkdir(d, 0o755)
        subprocess.run(['setfacl', '-d', '-m',
                        'u:%d:rw,m::rw' % self.bed.users['ia-emu2'].uid, d], check=True)
        p = os.path.join(d, 'overlay.qcow2')
        self.grant(p, 'create')
        r = self.emu.open_image('vm1', p, 'create')
        self.assertOk(r)
        self.emu.close_fd(r.fd()['fd'])

        st = os.lstat(p)
        self.assertEqual((st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)), (0, 0, 0o600))
        self.assertNotIn('system.posix_acl_access', os.listxattr(p, follow_symlinks=False))
        os.chmod(p, 0o660)
        self.assertNotIn('system.posix_acl_access', os.listxattr(p, follow_symlinks=False))
        with self.assertRaises(Exception) as denied:
            self.bed.agent('ia-emu2').open(p, 'O_RDONLY')
        self.assertIn('EACCES', str(denied.exception).replace('Permission denied', 'EACCES'))
        figures(self, mode=oct(stat.S_IMODE(os.lstat(p).st_mode)))


class RiskyGrantTests(AttackTestCase):
    """GrantImage grants, and warns in the log and in the grant's audit record, when the file
    has other hard links, is owned by a user other than root, the manager and the guest's uid,
    or a directory on its path can be written by a user other than root (docs/security.md:
    warned, not refused)."""

    def grant_reason(self, path):
        self.grant(path, 'read-only')
        attackhelper.ping(self, self.bed)
        lines = [line for line in self.bed.log_text('daemon').splitlines()
                 if "audit: grant allowed guest='vm1' image='%s'" % path in line]
        self.assertEqual(len(lines), 1, lines)
        m = re.search(r" reason='((?:[^'\\]|\\.)*)'", lines[0])
        return m.group(1) if m else None

    def test_risky_grants_are_warned(self):
        other = self.bed.users['ia-emu2']
        clean = self.bed.make_image('clean.img', b'x')
        linked = self.bed.make_image('linked.img', b'x')
        os.link(linked, os.path.join(self.bed.images_dir, 'elsewhere.img'))
        foreign = self.bed.make_image('foreign.img', b'x', uid=other.uid, gid=other.gid)
        own = self.bed.make_image('own.img', b'x', uid=self.emu_user.uid, gid=self.emu_user.gid)
        d = os.path.join(self.bed.images_dir, 'users')
        os.mkdir(d, 0o755)
        os.chown(d, other.uid, other.gid)
        below = os.path.join(d, 'disk.img')
        with open(below, 'wb') as f:
            f.write(b'x')

        self.assertIsNone(self.grant_reason(clean))
        self.assertIsNone(self.grant_reason(own), 'owned by the guest\'s own uid')
        self.assertEqual(self.grant_reason(linked), 'risky: it has 2 hard links')
        self.assertEqual(self.grant_reason(foreign), 'risky: it is owned by uid %d' % other.uid)
        self.assertEqual(self.grant_reason(below),
                         "risky: \\'%s\\' is writable by uid %d" % (d, other.uid))
        # warned, not refused: the guest opens them
        for p in (linked, foreign, below):
            r = self.emu.open_image('vm1', p, 'read-only')
            self.assertOk(r)
            self.emu.close_fd(r.fd()['fd'])
        self.assertEqual(len(re.findall(r'<warning> Granted .* but it is risky',
                                        self.bed.log_text('daemon'))), 3)
        figures(self, warned=3, clean=2)


class DeliveryAuditTests(AttackTestCase):

    def test_bounced_fd_is_audited_undelivered(self):
        """A bound emulator whose connection did not negotiate fd passing opens a granted
        image.  The service allows it and sends the fd; dbus-daemon drops the reply and tells
        the service so.  The audit then has "open undelivered" for that sender after its
        "open allowed"; a normal open has no such record."""
        img = self.bed.make_image('disk.img', b'disk')
        self.grant(img, 'read-only')
        r = self.emu.open_image('vm1', img, 'read-only')
        self.assertOk(r)
        self.emu.close_fd(r.fd()['fd'])

        copy = rawbus_copy(self.bed)
        argv = attackhelper.user_argv(self.bed, 'ia-emu1', [testbed.PYTHON, copy,
                                                            '--open-without-fds',
                                                            self.bed.socket_path, 'vm1', img])
        out = subprocess.run(argv, env=self.bed.base_env(), capture_output=True, text=True,
                             timeout=30, preexec_fn=testbed._child_setup)
        self.assertEqual(out.stdout.strip(), '{"answered": false}', out.stderr)

        m = self.bed.wait_log('daemon', r"audit: open undelivered guest='vm1' image='%s' "
                                        r"mode=read-only uid=%d pid=\d+ sender=(:\S+) reason='the bus "
                                        r"did not deliver the file descriptor: "
                                        r"org.freedesktop.DBus.Error.NotSupported"
                              % (re.escape(img), self.emu_user.uid))
        sender = m.group(1)
        log = self.bed.log_text('daemon')
        self.assertEqual(log.count('audit: open undelivered'), 1)
        self.assertRegex(log, r"audit: open allowed guest='vm1' image='%s' mode=read-only "
                              r"uid=%d pid=\d+ sender=%s\n" % (re.escape(img), self.emu_user.uid,
                                                               re.escape(sender)))
        figures(self, undelivered=1, delivered=1)


# ---- the log ----------------------------------------------------------------------------------

# What each reader may take for the end of a line or a direction change: Python's
# str.splitlines() alone splits on \x85, \u2028 and \u2029 (and on \x1c-\x1e).
UNSAFE_CHARS = ['\x85', '\x9b', '\x1e', '\u2028', '\u2029', '\u202e', '\u2066', '\u200f']
FORGED = "audit: open allowed guest='vm1' image='/etc/shadow' mode=read-write uid=0 pid=1 " \
         "sender=:1.1"


class LogForgeryAttackTests(AttackTestCase):

    def test_unicode_line_breaks_cannot_forge_records(self):
        """An unbound local user (ia-emu2) and the manager send paths, guest descriptions and
        modes holding C1 controls (NEL, CSI), U+2028/U+2029 and bidi overrides followed by a
        forged "open allowed … /etc/shadow" record.  Paths and descriptions are refused as
        invalid; nothing of it reaches the daemon's log raw, so a reader that splits on
        Unicode line breaks still finds no forged record, and no error message carries the
        characters back either."""
        d = self.bed.images_dir
        stranger = self.bed.agent('ia-emu2')
        refused = 0
        for ch in UNSAFE_CHARS:
            path = d + '/x' + ch + FORGED
            for mode in MODES:
                r = stranger.open_image('vm1', path, mode)
                self.assertError(r, INVALID_PATH, 'OpenImage %r' % path)
                self.assertFalse(set(r.message) & set(UNSAFE_CHARS), r.message)
                r = self.emu.open_image('vm1', path, mode)
                self.assertError(r, INVALID_PATH)
                r = self.bed.local.manager('GrantImage', 'sssa{sv}', ['vm1', path, mode, {}])
                self.assertError(r, INVALID_PATH)
                self.assertFalse(set(r.message) & set(UNSAFE_CHARS), r.message)
                refused += 3
            r = self.bed.local.manager('RegisterGuest', 'sa{sv}',
                                       ['vm9', {'description': {'$v': ['s', 'd' + ch + FORGED]}}])
            self.assertError(r, INVALID_OPTION)
            r = stranger.open_image('vm1', d + '/y', 'read-only' + ch + FORGED)
            self.assertError(r, INVALID_MODE)
            self.assertFalse(set(r.message) & set(UNSAFE_CHARS), r.message)
            refused += 2
        attackhelper.ping(self, self.bed)

        log = self.bed.log_text('daemon')
        self.assertFalse(set(log) & set(UNSAFE_CHARS), 'raw unsafe characters in the log')
        forged = [line for line in log.splitlines()
                  if 'allowed' in line and '/etc/shadow' in line]
        self.assertEqual(forged, [])
        self.assertNotIn('vm9', self.tables())
        figures(self, refused=refused, forged_lines=len(forged))


# ---- the state directory ----------------------------------------------------------------------

class StateDirAttackTests(AttackTestCase):

    def test_two_daemons_on_one_state_directory(self):
        """A second image-accessd on another bus, given the running one's state directory
        (a misconfigured second instance, or one started to rewrite the first's grants),
        refuses to start and names the holder's pid; the first one's guests survive its
        restart.  The control: once the first has stopped, the second starts on that
        directory and finds vm1."""
        first = self.bed.daemon_pid
        self.grant(self.bed.make_image('a.img', b'a' * 512), 'read-only')
        with testbed.TestBed() as other:
            with self.assertRaises(testbed.TestBedError) as refused:
                other.start_daemon(['--state-dir=' + self.bed.state_dir])
            self.assertIn('in use by another image-accessd, pid %d' % first,
                          str(refused.exception))
            self.assertFalse(other.daemon_running())
            self.assertEqual(self.bed.daemon_pid, first)

            self.bed.restart_daemon()
            self.assertIn('vm1', self.tables())
            self.assertEqual(len(self.tables()['vm1'][1]), 1)

            self.bed.kill_daemon()
            other.start_daemon(['--state-dir=' + self.bed.state_dir])
            guests = self.assertOk(other.local.manager('ListGuests'))[0]
            self.assertEqual([g[0] for g in guests], ['vm1'])
            other.kill_daemon()
        figures(self, first_pid=first, refused=1)


class IdentityAttackTests(AttackTestCase):

    def test_disconnect_right_after_send(self):
        """1,000 callers that connect, send OpenImage without waiting and close at a random
        moment (before, during or after the open): the service survives, gets back to its
        fds, and every fd it sends goes to the connection that asked for it."""
        img = self.bed.make_image('disk.img', b'disk')
        self.grant(img, 'read-write')
        st = os.stat(img)
        self.warm_up(img)
        baseline = attackhelper.fd_table(self.bed)
        monitor = Helper(self, 'root', 'monitor', until=os.path.join(self.ctl, 'stop-monitor'),
                         stdout_file=os.path.join(self.bed.runtime_dir, 'tmp', 'monitor.out'))
        self.assertEqual(monitor.readline(), {'monitoring': True})
        done = os.path.join(self.ctl, 'storm-done')
        legit = Helper(self, 'ia-emu1', 'open-loop', guest='vm1', path=img, mode='read-only',
                       dev=st.st_dev, ino=st.st_ino, min=200, in_flight=4, until=done)
        storm = Helper(self, 'ia-emu1', 'disconnect', guest='vm1', path=img, mode='read-write',
                       count=1000, max_delay_us=15000, seed=os.getpid())
        s = storm.result()
        open(done, 'w').close()
        o = legit.result()
        self.assertEqual(s['sent'], 1000, s)
        after = attackhelper.wait_fds(self, self.bed, baseline)
        attackhelper.ping(self, self.bed)
        time.sleep(0.2)     # let the monitor see the last messages
        open(os.path.join(self.ctl, 'stop-monitor'), 'w').close()
        lines = monitor.output()
        calls = {(m['call'], m['serial']) for m in lines if 'call' in m}
        fd_msgs = [m for m in lines if 'fd_message' in m]
        strays = [m for m in fd_msgs
                  if m['type'] != 2 or (m['destination'], m['reply_serial']) not in calls]
        self.assertEqual(strays, [], 'fds sent to a connection that did not ask for them')
        dests = [m['destination'] for m in fd_msgs]
        legit_name = max(set(dests), key=dests.count) if dests else None
        to_storm = len([x for x in dests if x != legit_name])
        self.assertEqual(o['wrong_allows'], 0, o['wrong'])
        self.assertEqual(o['errors'], {}, 'the well-behaved emulator was served throughout')
        self.assertTrue(self.bed.daemon_running())
        self.assertOk(self.emu.open_image('vm1', img, 'read-write'))
        # where the callers vanished (the storm asks read-write, the well-behaved one read-only)
        log = self.bed.log_text('daemon')
        stages = {
            'before_credentials': log.count('Could not establish the credentials'),
            'during_polkit': log.count('NameHasNoOwner'),
            'after_open_allowed': len([line for line in log.splitlines()
                                       if 'audit: open allowed' in line and 'mode=read-write' in line]),
        }
        figures(self, disconnecting_callers=s['sent'], fd_replies_to_vanishing_callers=to_storm,
                vanished=stages,
                storm_seconds=s['seconds'],
                fds_before=len(baseline), fds_after=after, legit_opens=o['ok'])

    def test_bound_emulator_denied_every_manager_method(self):
        """An emulator bound to its guest is no VM manager: every Manager method, about its
        own guest or another, is denied (with and without interactive authorization), and
        nothing changes."""
        img = self.bed.make_image('disk.img', b'disk')
        other = self.bed.make_image('other.img', b'other guest')
        self.grant(img, 'read-only')
        self.manager('RegisterGuest', 'sa{sv}', ['vm2', {}])
        self.grant(other, 'read-write', guest='vm2')
        before = self.tables()
        uid = self.emu_user.uid
        calls = []
        for g in ('vm1', 'vm2', 'vm9'):
            calls += [
                ('RegisterGuest', 'sa{sv}', [g, {'uid': {'$v': ['u', uid]}}]),
                ('UnregisterGuest', 's', [g]),
                ('BindProcess', 'sha{sv}', [g, {'pidfd_of': 'self'}, {}]),
                ('GrantImage', 'sssa{sv}', [g, '/etc/shadow', 'read-write', {}]),
                ('GrantImage', 'sssa{sv}', [g, img, 'create', {}]),
                ('GrantImage', 'sssa{sv}', [g, other, 'read-write', {}]),
                ('RevokeImage', 'ssa{sv}', [g, img, {'remove-created': True}]),
                ('RevokeImage', 'ssa{sv}', [g, other, {}]),
                ('ListGrants', 's', [g]),
            ]
        calls.append(('ListGuests', '', []))
        denied = 0
        for interactive, error in ((False, INTERACTIVE), (True, AUTH_FAILED)):
            for method, sig, args in calls:
                r = self.emu.manager(method, sig, args, interactive=interactive)
                self.assertError(r, error, '%s%r' % (method, args))
                denied += 1
        # nor can it change the service's one property
        r = self.emu.call('Set', 'ssv', [testbed.IFACE, 'Version', {'$v': ['s', '9']}],
                          iface='org.freedesktop.DBus.Properties')
        self.assertFalse(r.ok)
        self.assertEqual(self.tables(), before)
        # it is bound all along: its own image opens, another guest's does not
        self.assertOk(self.emu.open_image('vm1', img, 'read-only'))
        self.assertError(self.emu.open_image('vm2', other, 'read-only'), NOT_BOUND)
        figures(self, manager_calls_denied=denied)

    def test_unprivileged_cannot_own_the_name(self):
        """No uid but root may own org.example.ImageAccess, in any way RequestName offers:
        not while the service runs, not in the queue behind it, and not in the window while
        it restarts (where an impostor would be handed every emulator's calls)."""
        def try_all(agents):
            n = 0
            for a in agents:
                for flags in (0, 1, 2, 4, 7):
                    r = a.call('RequestName', 'su', [testbed.BUS_NAME, flags],
                               dest='org.freedesktop.DBus', path='/org/freedesktop/DBus',
                               iface='org.freedesktop.DBus')
                    self.assertError(r, ACCESS_DENIED, '%s flags %d' % (a.name, flags))
                    n += 1
            return n

        def queued():
            return self.assertOk(self.bed.local.call(
                'ListQueuedOwners', 's', [testbed.BUS_NAME], dest='org.freedesktop.DBus',
                path='/org/freedesktop/DBus', iface='org.freedesktop.DBus'))[0]

        agents = [self.emu] + [self.bed.agent(u) for u in ('ia-mgr', 'ia-emu2', 'ia-op', 'ia-desk')]
        n = try_all(agents)
        owner = self.bed.connection_pid(testbed.BUS_NAME)
        self.assertEqual(owner, self.bed.daemon_pid)
        self.assertEqual(len(queued()), 1)
        self.bed.kill_daemon(signal.SIGTERM)
        n += try_all(agents)
        self.assertFalse(self.bed.bus.name_has_owner(testbed.BUS_NAME))
        self.bed.start_daemon()
        self.assertEqual(self.bed.connection_pid(testbed.BUS_NAME), self.bed.daemon_pid)
        self.assertEqual(len(queued()), 1)
        figures(self, request_name_denied=n)


# ---- mode -------------------------------------------------------------------------------------

class ModeAttackTests(AttackTestCase):

    def test_read_only_fd_stays_read_only(self):
        """An fd from a read-only grant (and a read-only open of a read-write grant) cannot
        write, truncate, allocate, be switched writable with F_SETFL, be mapped writable or be
        reopened writable through /proc/self/fd or /dev/fd."""
        for name, grant in (('ro.img', 'read-only'), ('rw.img', 'read-write')):
            img = self.bed.make_image(name, b'precious' * 512)
            self.grant(img, grant)
            before, digest = file_id(img), sha(img)
            res = attackhelper.run(self, 'ia-emu1', 'modecheck', guest='vm1', path=img)
            st = os.stat(img)
            self.assertEqual((res['st_dev'], res['st_ino']), (st.st_dev, st.st_ino))
            expected = {
                'open': 'ok', 'accmode': os.O_RDONLY,
                'write': 'EBADF', 'pwrite': 'EBADF', 'ftruncate': 'EINVAL',
                'ftruncate_grow': 'EINVAL', 'fallocate': 'EBADF',
                'setfl_rdwr': 'ok', 'accmode_after_setfl': os.O_RDONLY,
                'write_after_setfl': 'EBADF', 'mmap_shared_write': 'EACCES',
                'mprotect_write': 'EACCES', 'proc_reopen_rdwr': 'EACCES',
                'devfd_reopen_wronly': 'EACCES', 'fchmod': 'EPERM', 'fchown': 'EPERM',
            }
            got = {k: v for k, v in res.items() if k not in ('st_dev', 'st_ino')}
            self.assertEqual(got, expected, grant)
            self.assertEqual(file_id(img), before)
            self.assertEqual(sha(img), digest)


# ---- resources --------------------------------------------------------------------------------

class ResourceAttackTests(AttackTestCase):

    def setUp(self):
        super().setUp()
        self.img = self.bed.make_image('disk.img', b'disk')
        self.grant(self.img, 'read-write')
        self.st = os.stat(self.img)
        self.warm_up(self.img)

    def test_unsolicited_fds(self):
        """1,000 calls carrying 16 fds each that no method wants (as unknown options, as a
        known option of the wrong type, as an array in a variant, next to BindProcess's
        pidfd): a named error each time, and the service keeps none of them.  Calls that
        carry an fd and wait for polkit hold it only until they are answered."""
        baseline = attackhelper.fd_table(self.bed)
        res = attackhelper.run(self, 'ia-emu1', 'fdspam', guest='vm1', path=self.img,
                               count=1000, fds=16)
        self.assertEqual(res['calls'], 1000)
        self.assertEqual(res['errors'], {INVALID_OPTION: 1000})
        attackhelper.ping(self, self.bed)
        after_spam = len(attackhelper.fd_table(self.bed))
        self.assertEqual(attackhelper.fd_table(self.bed), baseline)
        # parked: BindProcess from the emulator waits for polkit holding its pidfd
        pend = [self.emu.call_async('BindProcess', 'sha{sv}', ['vm1', {'pidfd_of': 'self'}, {}],
                                    iface=testbed.MANAGER_IFACE) for _ in range(100)]
        peak = len(self.bed.daemon_fds())
        for p in pend:
            self.assertError(p.wait(), INTERACTIVE)
        after = attackhelper.wait_fds(self, self.bed, baseline)
        figures(self, calls_with_16_fds=res['calls'], fds_before=len(baseline),
                fds_after_spam=after_spam, fds_peak_parked=peak, fds_after=after)

    def test_250_connections_from_one_uid(self):
        """250 connections of one uid, each with one OpenImage in flight at once: served or
        refused by name, none left unanswered, and the service's fds return to where they
        were once the connections are gone."""
        baseline = attackhelper.fd_table(self.bed)
        res = attackhelper.run(self, 'ia-emu1', 'conns', guest='vm1', path=self.img,
                               mode='read-only', count=250, dev=self.st.st_dev,
                               ino=self.st.st_ino)
        self.assertEqual(res['unanswered'], 0, res)
        self.assertEqual(res['wrong_allows'], 0, res['wrong'])
        self.assertEqual(res['connections'] + res['errors'].get('ia-attack.ConnectFailed', 0), 250)
        clean = {LIMIT, 'org.freedesktop.DBus.Error.LimitsExceeded', E + 'AuthorizationUnavailable',
                 'ia-attack.ConnectFailed'}
        self.assertLessEqual(set(res['errors']), clean, res['errors'])
        self.assertGreater(res['ok'], 200, res)
        after = attackhelper.wait_fds(self, self.bed, baseline)
        self.assertTrue(self.bed.daemon_running())
        self.assertOk(self.emu.open_image('vm1', self.img, 'read-only'))
        figures(self, connections=res['connections'], served=res['ok'], errors=res['errors'],
                fds_before=len(baseline), fds_after=after)

    def test_huge_and_malformed_open_calls_bounded_memory(self):
        """What an emulator can send to OpenImage, at its largest: 1 MB names, paths, modes,
        option keys and values, 20,000 options, deep variants, wrong signatures.  Each is
        refused by name, and the service does not grow."""
        mb = 1 << 20
        img = self.img
        many = {('k%05d' % i): {'$v': ['b', True]} for i in range(20000)}
        nested = {'$v': ['s', 'x']}
        for _ in range(30):
            nested = {'$v': ['v', nested]}
        cases = [
            ('sssa{sv}', ['g' * mb, img, 'read-only', {}], INVALID_NAME),
            ('sssa{sv}', ['vm1', '/' + 'p' * mb, 'read-only', {}], INVALID_PATH),
            ('sssa{sv}', ['vm1', '/a/' * (mb // 3), 'read-only', {}], INVALID_PATH),
            ('sssa{sv}', ['vm1', img, 'm' * mb, {}], INVALID_MODE),
            ('sssa{sv}', ['vm1', img, 'read-only', {'k' * mb: True}], INVALID_OPTION),
            ('sssa{sv}', ['vm1', img, 'read-only', {'direct': 'v' * mb}], INVALID_OPTION),
            ('sssa{sv}', ['vm1', img, 'read-only', many], INVALID_OPTION),
            ('sssa{sv}', ['vm1', img, 'read-only', {'direct': nested}], INVALID_OPTION),
            ('sssa{sv}', ['vm1', img, 'read-only', {'direct': {'$v': ['as', ['x'] * 50000]}}],
             INVALID_OPTION),
            ('ay', [{'$bytes': '00' * mb}], INVALID_ARGS),
            ('as', [['s' * 1000] * 1000], INVALID_ARGS),
            ('sssa{sv}s', ['vm1', img, 'read-only', {}, 'x' * mb], INVALID_ARGS),
            ('sss', ['vm1', img, 'read-only'], INVALID_ARGS),
            ('a{sv}sss', [{}, 'vm1', img, 'read-only'], INVALID_ARGS),
        ]
        pid = self.bed.daemon_pid
        for sig, args, err in cases:     # warm up: the first big messages size the buffers
            for _ in range(3):
                r = self.emu.call('OpenImage', sig, args)
                msg = self.assertError(r, err, sig)
                self.assertLess(len(msg), 2048, 'the error does not echo the argument')
        attackhelper.ping(self, self.bed)
        before = attackhelper.vm_rss_kb(pid)
        rounds = 0
        for i in range(10):
            for sig, args, err in cases:
                self.assertError(self.emu.call('OpenImage', sig, args), err, sig)
                rounds += 1
        attackhelper.ping(self, self.bed)
        after = attackhelper.vm_rss_kb(pid)
        figures(self, huge_calls=rounds, rss_before_kb=before, rss_after_kb=after,
                asan=self.bed.daemon_sanitized())
        if not self.bed.daemon_sanitized():     # ASan's quarantine holds freed buffers
            self.assertLess(after - before, 4 * 1024, 'VmRSS grew from %d kB to %d kB' % (before, after))
        self.assertOk(self.emu.open_image('vm1', img, 'read-write'))

    def test_at_its_fd_limit(self):
        """The service at its fd limit (lowered from outside with prlimit to just above the
        fds it holds): concurrent opens fail by name ("Too many open files", LimitExceeded),
        never hang, never crash it or cost it its bus connection; with the limit back, it
        serves again by itself."""
        pid = self.bed.daemon_pid
        baseline = attackhelper.fd_table(self.bed)
        top = max(fd for fd, _ in baseline) + 1
        soft, hard = [int(x) for x in subprocess.run(
            ['prlimit', '--pid', str(pid), '--nofile', '--raw', '--noheadings', '-o', 'SOFT,HARD'],
            check=True, capture_output=True, text=True).stdout.split()]

        def prlimit(n):
            # The soft limit only: raising a hard limit needs CAP_SYS_RESOURCE, which a
            # container may lack, and the soft limit is what open() and recvmsg() obey.
            subprocess.run(['prlimit', '--pid', str(pid), '--nofile=%d:' % n], check=True)

        self.addCleanup(lambda: self.bed.daemon_running() and prlimit(soft))
        since = len(self.bed.log_text('daemon'))
        totals = {'calls': 0, 'ok': 0, 'errors': {}}
        # From no free fd at all (the lowest free number: an open done on the loop needs
        # only two at a time, and gaps in the table below the top are free too) up.
        lowest_free = min(set(range(top + 1)) - {fd for fd, _ in baseline})
        for limit in sorted({lowest_free} | {top + extra for extra in (1, 2, 3, 4, 5, 6, 8)}):
            prlimit(limit)
            res = attackhelper.run(self, 'ia-emu1', 'open-loop', guest='vm1', path=self.img,
                                   mode='read-only', dev=self.st.st_dev, ino=self.st.st_ino,
                                   min=400, in_flight=32, max_seconds=30)
            self.assertEqual(res['wrong_allows'], 0, res['wrong'])
            self.assertEqual(res['unanswered'], 0)
            self.assertFalse(res['timed_out'], res)
            self.assertLess(res['max_latency'], 5.0, 'no open waited for a reply that never came')
            self.assertLessEqual(set(res['errors']), {IO_ERROR, LIMIT}, res['errors'])
            totals['calls'] += res['calls']
            totals['ok'] += res['ok']
            for k, v in res['errors'].items():
                totals['errors'][k] = totals['errors'].get(k, 0) + v
            # manager calls are answered too
            r = self.bed.local.manager('GrantImage', 'sssa{sv}', ['vm1', self.img, 'read-write', {}])
            if not r.ok:
                self.assertIn(r.error, (IO_ERROR, LIMIT), r)
            self.assertOk(self.bed.local.manager('ListGuests'))
            self.assertTrue(self.bed.daemon_running())
            self.assertTrue(self.bed.bus.name_has_owner(testbed.BUS_NAME))
        self.assertGreater(sum(totals['errors'].values()), 0, 'the limit was reached')
        denials = [line for line in self.bed.log_text('daemon')[since:].splitlines()
                   if 'audit: open denied' in line]
        self.assertTrue(denials)
        for line in denials:
            self.assertIn('Too many open files', line)
        prlimit(soft)
        res = attackhelper.run(self, 'ia-emu1', 'open-loop', guest='vm1', path=self.img,
                               mode='read-only', dev=self.st.st_dev, ino=self.st.st_ino,
                               min=400, in_flight=32)
        self.assertEqual((res['ok'], res['errors']), (res['calls'], {}), 'recovered by itself')
        after = attackhelper.wait_fds(self, self.bed, baseline)
        figures(self, soft_limit=soft, hard_limit=hard, fds_before=len(baseline),
                fds_after=after, at_limit=totals)


class FdBudgetTests(AttackTestCase):
    """The service with an fd limit of 1024 (prlimit as its wrapper)."""

    LIMIT = 1024

    def setUp(self):
        old = os.environ.get('IA_DAEMON_WRAPPER')
        os.environ['IA_DAEMON_WRAPPER'] = 'prlimit --nofile=%d:%d --' % (self.LIMIT, self.LIMIT)
        try:
            super().setUp()
        finally:
            if old is None:
                os.environ.pop('IA_DAEMON_WRAPPER', None)
            else:
                os.environ['IA_DAEMON_WRAPPER'] = old

    def test_fds_parked_with_requests_never_reach_the_limit(self):
        """Any local user can make requests wait for polkit (BindProcess), each carrying the
        16 fds dbus-daemon lets a message carry, referenced or not: 320 of them are 5,120
        fds.  Had they reached the fd limit, sd-bus could not receive the next message with
        an fd and would drop the bus connection (the service exits).  The service lowers
        MaxPendingTotal to what its fd limit can hold, refuses the rest, and serves on."""
        # Each connection makes a call first and waits, so that the service knows who it is
        # before the flood.
        self.flood(warm=True)

    def test_fds_from_unseen_connections_never_reach_the_limit(self):
        """The same flood from connections the service has not seen before.  It asks the
        bus who they are asynchronously (identity.c): a synchronous call would let sd-bus
        read every message arriving meanwhile into its queue, fds and all, and that took the
        service to its fd limit in 2 runs of 3.  Requests waiting for their caller's
        credentials count against MaxPendingTotal like those waiting for polkit."""
        self.flood(warm=False)

    def flood(self, warm):
        img = self.bed.make_image('disk.img', b'disk')
        self.grant(img, 'read-only')
        baseline = attackhelper.fd_table(self.bed)
        copy = rawbus_copy(self.bed)
        argv = attackhelper.user_argv(self.bed, 'ia-desk', [testbed.PYTHON, copy,
                                                            self.bed.socket_path, 'vm1', '8', '40', '16'])
        flood = subprocess.Popen(argv, env=self.bed.base_env(WARM='1' if warm else '', HOLD='2'),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 preexec_fn=testbed._child_setup)
        self.addCleanup(lambda: flood.poll() is None and flood.kill())
        peak = 0
        while flood.poll() is None:
            self.assertTrue(self.bed.daemon_running(), 'the service died in the flood')
            try:
                peak = max(peak, len(self.bed.daemon_fds()))
            except (OSError, TypeError):
                pass
            time.sleep(0.02)
        out, err = flood.communicate()
        # (dbus-daemon may throw the flooding client off the bus: its outcome does not matter)
        self.assertTrue(self.bed.daemon_running(), 'the service survived')
        self.assertTrue(self.bed.bus.name_has_owner(testbed.BUS_NAME))
        self.assertNotIn('Lost the connection to the bus', self.bed.log_text('daemon'))
        self.assertRegex(self.bed.log_text('daemon'),
                         r'fd limit of %d allows at most \d+ requests' % self.LIMIT)
        recovery = self.wait_serving(img, timeout=40)
        # the parked requests end with their polkit checks: within [Polkit] TimeoutSec (25 s)
        # even if polkitd 122 stalls
        after = attackhelper.wait_fds(self, self.bed, baseline, timeout=40)
        figures(self, fd_limit=self.LIMIT, fds_sent=8 * 40 * 16, daemon_fds_peak=peak,
                fds_before=len(baseline), fds_after=after, seconds_to_serve_again=recovery)

    def wait_serving(self, img, timeout):
        """The emulator's open succeeds again by itself; returns how long that took.

        Right after the flood it may be refused for a while, and only for being over a limit:
        dbus-daemon queues at most 64 fds for one receiver (max_outgoing_unix_fds), so while
        the flood's messages fill the service's queue it refuses whatever else is sent to the
        service (polkitd's replies included: those checks wait out [Polkit] TimeoutSec), and
        the requests parked meanwhile hold MaxPendingTotal.  When dbus-daemon throws the
        flooding client off the bus, the test gets here while that queue is still full."""
        start = time.monotonic()
        while True:
            r = self.emu.open_image('vm1', img, 'read-only')
            if r.ok or time.monotonic() - start > timeout:
                break
            self.assertIn(r.error, (LIMIT, 'org.freedesktop.DBus.Error.LimitsExceeded'), r)
            time.sleep(0.05)
        self.assertOk(r)
        return round(time.monotonic() - start, 2)


# ---- the random caller ------------------------------------------------------------------------

class RandomCallerTests(AttackTestCase):

    def test_random_calls(self):
        """≥ 100,000 calls from two processes at once: root (a VM manager that may also be
        a guest's emulator) and the emulator of vm1, each with valid calls, invalid ones,
        wrong types, random fds, random method names and option dicts.  Each process keeps a
        model of what was granted to the guests it is bound to (the test's grants, and for
        root its own changes to guests it owns) and checks every fd it gets against it: the
        guest, path and mode must be covered and the inode must be the granted one."""
        d = self.bed.images_dir
        img = {n: self.bed.make_image(n, n.encode() * 100) for n in
               ('a.img', 'b.img', 'c.img', 'd.img', 'sub/e.img')}
        os.symlink(img['a.img'], os.path.join(d, 'link.img'))
        os.mkfifo(os.path.join(d, 'fifo'))
        os.mkdir(os.path.join(d, 'dir'))
        new = [os.path.join(d, 'new%d.img' % i) for i in range(4)]
        paths = list(img.values()) + new + [
            os.path.join(d, 'link.img'), os.path.join(d, 'fifo'), os.path.join(d, 'dir'),
            os.path.join(d, 'missing.img'), '/etc/shadow', '/dev/null', '/proc/self/fd/0',
            '/proc/1/root/etc/shadow', '/dev/fd/3', '/proc/self/cwd/x', d]
        self.manager('RegisterGuest', 'sa{sv}', ['rootvm', {'uid': {'$v': ['u', 0]}}])
        static = [('vm1', img['a.img'], 'read-only'), ('vm1', img['b.img'], 'read-write'),
                  ('vm1', new[0], 'create'), ('rootvm', img['c.img'], 'read-write'),
                  ('rootvm', img['sub/e.img'], 'read-only'), ('rootvm', new[1], 'create')]
        for g, p, m in static:
            self.grant(p, m, guest=g)

        def grant_lines(guest):
            out = []
            for g, p, m in static:
                if g == guest:
                    st = os.stat(p) if os.path.exists(p) else None
                    out.append('grant %s %s %s %d %d' % (g, p, m, st.st_dev if st else 0,
                                                        st.st_ino if st else 0))
            return out

        common = ['guest ' + g for g in ('vm1', 'rootvm', 'fz0', 'fz1', 'fz2', 'nosuch', 'vm2')]
        common += ['path ' + p for p in paths] + ['fdfile ' + img['a.img'], 'fdfile /etc/hostname']
        specs = {
            'root': common + ['own rootvm', 'own fz0', 'own fz1', 'own fz2', 'uid 0',
                              'uid 61099', 'uid 4294967295', 'myuid 0', 'bound rootvm',
                              'exists vm1', 'manager 25'] + grant_lines('rootvm'),
            'ia-emu1': common + ['uid 61099', 'uid 0', 'myuid %d' % self.emu_user.uid,
                                 'bound vm1', 'exists rootvm', 'manager 5'] + grant_lines('vm1'),
        }
        for who, lines in specs.items():
            path = os.path.join(self.bed.runtime_dir, 'spec-%s' % who)
            with open(path, 'w') as f:
                f.write('\n'.join(lines) + '\n')
            os.chmod(path, 0o644)
        ignore = ('anon_inode:[pidfd]',)
        baseline = attackhelper.fd_table(self.bed, ignore)
        rss_before = attackhelper.vm_rss_kb(self.bed.daemon_pid)
        counts = {'root': 55000, 'ia-emu1': 50000}
        seed = int(os.environ.get('IA_RANDOM_SEED', str(int(time.time()))))
        sys.stderr.write('random caller seed: %d (rerun with IA_RANDOM_SEED=%d)\n' % (seed, seed))
        helpers = {who: Helper(self, who, 'random', spec=os.path.join(self.bed.runtime_dir, 'spec-%s' % who),
                               seed=seed + i, count=counts[who], max_seconds=95, timeout=110)
                   for i, who in enumerate(counts)}
        res = {who: h.result() for who, h in helpers.items()}
        total = sum(r['calls'] for r in res.values())
        wrong = sum(r['wrong_allows'] for r in res.values())
        figures(self, seed=seed, calls=total, wrong_allows=wrong,
                per_process={w: {k: r[k] for k in ('calls', 'ok', 'fds', 'manager_ok', 'timeouts',
                                                    'seconds', 'no_reply_sent')}
                             for w, r in res.items()},
                rss_before_kb=rss_before, rss_after_kb=attackhelper.vm_rss_kb(self.bed.daemon_pid))
        for who, r in res.items():
            self.assertEqual(r['wrong_allows'], 0, '%s: %s' % (who, r['wrong']))
            self.assertEqual(r['timeouts'], 0, '%s: %s' % (who, r['errors']))
            self.assertTrue(r['alive_at_end'])
            self.assertGreater(r['fds'], 0, '%s: the random calls reached real opens' % who)
            self.assertEqual(r['calls'], counts[who], '%s did not finish in time' % who)
        self.assertEqual(res['ia-emu1']['manager_ok'], 0)
        self.assertGreaterEqual(total, 100000)
        self.assertTrue(self.bed.daemon_running())
        attackhelper.ping(self, self.bed)
        attackhelper.wait_fds(self, self.bed, baseline, ignore=ignore)
        # the emulator's own grants are as the test made them
        grants = {p: m for p, m, _ in self.tables()['vm1'][1]}
        self.assertEqual(grants, {p: m for g, p, m in static if g == 'vm1'})


if __name__ == '__main__':
    testbed.main()

#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""
OpenImage end to end: the real bus, the real polkitd and the built image-accessd, with the
emulator running as its own uid (ia-emu1, bound to guest vm1 by RegisterGuest's uid option).

What is proved here, each with the matching denial:
  - the fd carries exactly the access mode asked for and refers to the granted inode; a grant
    covers weaker modes only; no grant, a revoked grant, another guest's grant: NotGranted;
  - no symlink is followed (last component or directory), only regular files are opened
    (FIFO, socket, directory, character device refused without blocking);
  - create makes a root-owned 0600 file, reopens its own file without truncating it and never
    clobbers or follows anything else; remove-created removes exactly that inode;
  - malformed input is refused by name and changes nothing;
  - the daemon keeps no fd after an open, allowed or denied, and holds all of its own fds
    O_CLOEXEC;
  - one audit line per decision, naming guest, image, mode, uid and pid, which a caller
    cannot forge through the image path.
"""

import hashlib
import os
import re
import socket
import stat
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testbed  # noqa: E402

E = 'org.example.ImageAccess.Error.'
NOT_GRANTED = E + 'NotGranted'
NOT_BOUND = E + 'NotBound'
NOT_FOUND = E + 'NotFound'
SYMLINK = E + 'SymlinkRefused'
WRONG_TYPE = E + 'WrongFileType'
FILE_EXISTS = E + 'FileExists'
NOT_CREATED = E + 'NotCreatedByService'
INVALID_PATH = E + 'InvalidPath'
INVALID_MODE = E + 'InvalidMode'
INVALID_OPTION = E + 'InvalidOption'
INVALID_NAME = E + 'InvalidName'
INVALID_ARGS = 'org.freedesktop.DBus.Error.InvalidArgs'

EMU1_UID = testbed.USERS['ia-emu1'].uid


def file_state(path):
    """Everything about a directory entry that an open must not change (None: absent)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    digest = None
    if stat.S_ISREG(st.st_mode):
        with open(path, 'rb') as f:
            digest = hashlib.sha256(f.read()).hexdigest()
    elif stat.S_ISLNK(st.st_mode):
        digest = os.readlink(path)
    return (st.st_ino, st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns,
            st.st_ctime_ns, st.st_nlink, digest)


def tree_state(top):
    """file_state() of every entry below top."""
    res = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            res[p] = file_state(p)
    return res


def path_of_length(prefix, total, component=255):
    """An absolute path under prefix of exactly total bytes, components ≤ component bytes."""
    path = prefix
    while len(path) < total:
        room = total - len(path) - 1          # minus the '/'
        n = min(component, room)
        if room - n == 1:                     # would leave a lone '/' with nothing after it
            n -= 1
        path += '/' + 'c' * n
    assert len(path) == total, (len(path), total)
    return path


class OpenTestCase(testbed.IaTestCase):
    """vm1 is registered bound to ia-emu1's uid; self.emu is an ia-emu1 process."""

    def setUp(self):
        super().setUp()
        self.register('vm1', uid=EMU1_UID)
        self.emu = self.bed.agent('ia-emu1')

    # ---- manager calls (as root) ----------------------------------------------------------
    def register(self, name, uid=None):
        opts = {} if uid is None else {'uid': {'$v': ['u', uid]}}
        self.assertOk(self.bed.local.manager('RegisterGuest', 'sa{sv}', [name, opts]))

    def grant(self, path, mode, guest='vm1'):
        self.assertOk(self.bed.local.manager('GrantImage', 'sssa{sv}', [guest, path, mode, {}]),
                      'GrantImage %s %s' % (path, mode))

    def revoke(self, path, guest='vm1', remove_created=None):
        opts = {} if remove_created is None else {'remove-created': remove_created}
        return self.bed.local.manager('RevokeImage', 'ssa{sv}', [guest, path, opts])

    def grants(self, guest='vm1'):
        """{path: (mode, created)}"""
        values = self.assertOk(self.bed.local.manager('ListGrants', 's', [guest]))[0]
        return {p: (m, props.get('created')) for p, m, props in values}

    def state(self):
        """What a refused call must leave as it was: guests and every guest's grants."""
        guests = self.assertOk(self.bed.local.manager('ListGuests'))[0]
        return {name: (props, self.grants(name)) for name, props in guests}

    def image(self, name, data=b'', **kw):
        return self.bed.make_image(name, data, **kw)

    def sync_daemon(self):
        """Returns once the daemon has dispatched everything sent to it before."""
        self.assertOk(self.bed.local.call('Ping', iface='org.freedesktop.DBus.Peer'))

    def open_ok(self, path, mode='read-only', caller=None, guest='vm1', **kw):
        r = (caller or self.emu).open_image(guest, path, mode, **kw)
        self.assertOk(r, 'OpenImage %s %s' % (path, mode))
        self.assertEqual(len(r.fds), 1, r)
        self.assertEqual(r.values, [{'fd': r.fd()['fd']}])
        return r.fd()

    def open_err(self, path, mode, error, caller=None, guest='vm1', **kw):
        r = (caller or self.emu).open_image(guest, path, mode, **kw)
        self.assertError(r, error, 'OpenImage %s %s' % (path, mode))
        self.assertEqual(r.fds, [], 'an error carries no fd')
        return r.message


class ModeTests(OpenTestCase):

    def test_read_only_grant_gives_read_only_fd(self):
        data = b'read-only image content\n' * 100
        path = self.image('ro.img', data, mode=0o600)
        # the caller could not open it by itself: whatever it gets, it got from the service
        with self.assertRaisesRegex(testbed.TestBedError, 'PermissionError'):
            self.emu.open(path)
        before = file_state(path)
        self.grant(path, 'read-only')
        fd = self.open_ok(path, 'read-only', read=len(data) + 10, write=b'X')
        st = os.stat(path)
        self.assertEqual((fd['st_dev'], fd['st_ino'], fd['type']), (st.st_dev, st.st_ino, 'reg'))
        self.assertEqual(fd['path'], path)
        self.assertEqual(fd['accmode'], 'O_RDONLY')
        self.assertEqual(fd['status_flags'], [], 'no O_NONBLOCK/O_DIRECT unless asked')
        self.assertEqual(fd['read'], data)
        self.assertEqual(fd['write_errno'], 'EBADF', 'a read-only fd cannot write')
        self.assertEqual(file_state(path), before)
        # the deny: a process of another uid, not bound to vm1
        self.open_err(path, 'read-only', NOT_BOUND, caller=self.bed.agent('ia-emu2'))
        # and root, which is no guest unless bound
        self.open_err(path, 'read-only', NOT_BOUND, caller=self.bed.local)

    def test_read_write_grant_gives_read_write_fd(self):
        path = self.image('rw.img', b'0123456789', mode=0o600)
        self.grant(path, 'read-write')
        fd = self.open_ok(path, 'read-write', write=b'AB', offset=3)
        self.assertEqual(fd['accmode'], 'O_RDWR')
        self.assertEqual(fd['write'], 2)
        with open(path, 'rb') as f:
            self.assertEqual(f.read(), b'012AB56789', 'the write landed in the file')
        self.assertEqual(self.emu.fd(fd['fd'], read=10)['read'], b'012AB56789')
        # a read-write grant opened read-only: exactly the mode asked for, never more
        ro = self.open_ok(path, 'read-only', write=b'Z')
        self.assertEqual(ro['accmode'], 'O_RDONLY')
        self.assertEqual(ro['write_errno'], 'EBADF')
        with open(path, 'rb') as f:
            self.assertEqual(f.read(), b'012AB56789')
        # read-write does not cover create
        self.open_err(path, 'create', NOT_GRANTED)

    def test_open_options(self):
        path = self.image('opt.img', b'x' * 4096)
        self.grant(path, 'read-write')
        fd = self.open_ok(path, 'read-only', options={'nonblock': True})
        self.assertEqual(fd['status_flags'], ['O_NONBLOCK'])
        fd = self.open_ok(path, 'read-write', options={'direct': True, 'nonblock': False})
        self.assertEqual(fd['status_flags'], ['O_DIRECT'])
        self.assertEqual(fd['accmode'], 'O_RDWR')
        fd = self.open_ok(path, 'read-only', options={'direct': False})
        self.assertEqual(fd['status_flags'], [])

    def test_read_only_grant_refuses_stronger_modes(self):
        path = self.image('ro.img', b'keep me', mode=0o640)
        gone = self.image('gone.img', b'deleted after the grant')
        self.grant(path, 'read-only')
        self.grant(gone, 'read-only')
        os.unlink(gone)
        before = tree_state(self.bed.images_dir)
        grants = self.grants()
        msg = self.open_err(path, 'read-write', NOT_GRANTED)
        self.assertIn('read-only', msg)
        self.open_err(path, 'create', NOT_GRANTED)
        # a read-only grant never creates, also where the file is missing
        self.open_err(gone, 'create', NOT_GRANTED)
        self.open_err(gone, 'read-write', NOT_GRANTED)
        self.assertEqual(tree_state(self.bed.images_dir), before, 'nothing on disk changed')
        self.assertFalse(os.path.lexists(gone))
        self.assertEqual(self.grants(), grants)
        # the allow next to it
        self.assertEqual(self.open_ok(path, 'read-only', read=7)['read'], b'keep me')

    def test_no_grant(self):
        path = self.image('a.img', b'a')
        other = self.image('dir/b.img', b'b')
        self.open_err(path, 'read-only', NOT_GRANTED)
        # another guest's grant does not help vm1
        self.register('vm2')
        self.grant(path, 'read-write', guest='vm2')
        self.open_err(path, 'read-only', NOT_GRANTED)
        # grants are for exact paths: not a prefix, not a sibling; a directory cannot be
        # granted at all
        self.assertError(self.bed.local.manager(
            'GrantImage', 'sssa{sv}', ['vm1', os.path.dirname(other), 'read-write', {}]),
            WRONG_TYPE)
        self.grant(self.image('a.im', b'prefix'), 'read-write')
        self.open_err(other, 'read-only', NOT_GRANTED)
        self.open_err(path, 'read-only', NOT_GRANTED)
        self.open_err(path + 'x', 'read-only', NOT_GRANTED)
        # the allow: granting the path itself
        self.grant(path, 'read-only')
        self.assertEqual(self.open_ok(path, read=1)['read'], b'a')

    def test_revoke_denies_new_opens_keeps_old_fds(self):
        path = self.image('r.img', b'before revoke')
        self.grant(path, 'read-write')
        old = self.open_ok(path, 'read-write')
        self.assertOk(self.revoke(path))
        self.assertEqual(self.grants(), {})
        self.open_err(path, 'read-only', NOT_GRANTED)
        self.open_err(path, 'read-write', NOT_GRANTED)
        # descriptors handed out earlier stay valid, in their mode
        self.assertEqual(self.emu.fd(old['fd'], write=b'AFTER')['write'], 5)
        self.assertEqual(self.emu.fd(old['fd'], read=13)['read'], b'AFTERe revoke')
        with open(path, 'rb') as f:
            self.assertEqual(f.read(), b'AFTERe revoke')
        # revoking what is not granted is NotGranted, and granting again works
        self.assertError(self.revoke(path), NOT_GRANTED)
        self.grant(path, 'read-only')
        self.assertEqual(self.open_ok(path, read=5)['read'], b'AFTER')


class FileTypeTests(OpenTestCase):
    """GrantImage refuses links and non-regular files itself; these tests are about what an
    open finds when such a thing was put under a granted name afterwards."""

    def grant_err(self, path, mode, error):
        self.assertError(self.bed.local.manager('GrantImage', 'sssa{sv}',
                                                ['vm1', path, mode, {}]), error,
                         'GrantImage %s %s' % (path, mode))

    def test_symlink_as_last_component(self):
        target = self.image('target.img', b'secret target', mode=0o600)
        link = os.path.join(self.bed.images_dir, 'link.img')
        rel = os.path.join(self.bed.images_dir, 'rel-link.img')
        for p in (link, rel):
            self.image(os.path.basename(p), b'granted file')
            self.grant(p, 'read-write')
        # replaced by links after the grant
        os.unlink(link)
        os.symlink(target, link)
        os.unlink(rel)
        os.symlink('target.img', rel)
        before = tree_state(self.bed.images_dir)
        for p in (link, rel):
            for mode in ('read-only', 'read-write'):
                self.open_err(p, mode, SYMLINK)
        self.assertEqual(tree_state(self.bed.images_dir), before, 'target untouched')
        # a link is not grantable in the first place, in any mode
        for mode in ('read-only', 'read-write', 'create'):
            self.grant_err(link, mode, SYMLINK)
        # the allow: the target itself, once granted
        self.grant(target, 'read-only')
        self.assertEqual(self.open_ok(target, read=6)['read'], b'secret')

    def test_symlink_as_directory(self):
        d = self.bed.images_dir
        linkdir = os.path.join(d, 'linkdir')
        via_link = self.image('linkdir/disk.img', b'behind a link', mode=0o600)
        new_via_link = os.path.join(linkdir, 'new.img')
        self.grant(via_link, 'read-write')
        self.grant(new_via_link, 'create')
        # the directory is swapped for a link to an identical one after the grants
        realdir = os.path.join(d, 'realdir')
        os.rename(linkdir, realdir)
        os.symlink('realdir', linkdir)
        real = os.path.join(realdir, 'disk.img')
        before = tree_state(d)
        self.open_err(via_link, 'read-only', SYMLINK)
        self.open_err(via_link, 'read-write', SYMLINK)
        self.open_err(new_via_link, 'create', SYMLINK)
        self.assertEqual(tree_state(d), before)
        self.assertFalse(os.path.lexists(os.path.join(realdir, 'new.img')))
        # a link further up, to an absolute target, is refused when granting
        up = os.path.join(d, 'up')
        os.symlink(d, up)
        self.grant_err(os.path.join(up, 'realdir', 'disk.img'), 'read-only', SYMLINK)
        self.grant_err(os.path.join(up, 'new.img'), 'create', SYMLINK)
        self.grant(real, 'read-only')
        self.assertEqual(self.open_ok(real, read=6)['read'], b'behind')

    def test_wrong_file_types(self):
        d = self.bed.images_dir
        fifo, sock_path, directory, chardev, missing = (
            os.path.join(d, n) for n in ('fifo', 'sock', 'adir', 'null', 'missing.img'))
        for p in (fifo, sock_path, directory, chardev, missing):
            self.image(os.path.basename(p), b'granted file')
            self.grant(p, 'read-write')
            os.unlink(p)
        # ... and replaced after the grant
        os.mkfifo(fifo, 0o666)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(sock.close)
        sock.bind(sock_path)
        sock.listen(1)
        os.mkdir(directory)
        os.mknod(chardev, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        before = tree_state(d)
        t0 = time.monotonic()
        # read-only on a FIFO is the open that would block without a writer
        for mode in ('read-only', 'read-write'):
            self.open_err(fifo, mode, WRONG_TYPE, timeout=5)
        self.assertLess(time.monotonic() - t0, 3.0, 'a FIFO must not hang the open')
        for p in (sock_path, directory, chardev):
            for mode in ('read-only', 'read-write'):
                self.open_err(p, mode, WRONG_TYPE)
        self.open_err(missing, 'read-only', NOT_FOUND)
        self.open_err(missing, 'read-write', NOT_FOUND)
        self.assertEqual(tree_state(d), before)
        self.assertFalse(os.path.lexists(missing), 'read-write does not create')
        # nobody ever opened the FIFO for writing: a non-blocking open for writing finds no
        # reader (ENXIO)
        with self.assertRaises(OSError) as cm:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        self.assertEqual(cm.exception.errno, 6)  # ENXIO
        # none of them is grantable as it is now
        for p in (fifo, sock_path, directory, chardev, '/dev/null'):
            self.grant_err(p, 'read-only', WRONG_TYPE)
        self.grant_err(missing, 'read-only', NOT_FOUND)
        # the service still serves
        ok = self.image('ok.img', b'ok')
        self.grant(ok, 'read-only')
        self.assertEqual(self.open_ok(ok, read=2)['read'], b'ok')


class CreateTests(OpenTestCase):

    def test_create_new_file(self):
        # a setgid directory and a group-writable mode: neither may leak into the new file
        d = os.path.join(self.bed.images_dir, 'sgid')
        os.mkdir(d)
        os.chown(d, 0, testbed.GROUPS['ia-operators'])
        os.chmod(d, 0o2777)
        path = os.path.join(d, 'new.qcow2')
        self.grant(path, 'create')
        self.assertEqual(self.grants(), {path: ('create', False)})
        fd = self.open_ok(path, 'create', write=b'written through the fd')
        st = os.lstat(path)
        self.assertTrue(stat.S_ISREG(st.st_mode))
        self.assertEqual((st.st_uid, st.st_gid), (0, 0), 'owned by root')
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)
        self.assertEqual((fd['st_dev'], fd['st_ino']), (st.st_dev, st.st_ino))
        self.assertEqual(fd['accmode'], 'O_RDWR')
        # O_NOFOLLOW of the creating openat() stays visible in F_GETFL; it changes nothing
        # for I/O.  What must not be there unasked is O_NONBLOCK, O_DIRECT, O_APPEND.
        self.assertEqual(set(fd['status_flags']) - {'O_NOFOLLOW'}, set())
        self.assertEqual(self.grants(), {path: ('create', True)})
        with open(path, 'rb') as f:
            self.assertEqual(f.read(), b'written through the fd')
        # the same guest creating again reopens its own file: no truncation
        again = self.open_ok(path, 'create', read=64)
        self.assertEqual(again['st_ino'], st.st_ino)
        self.assertEqual(again['accmode'], 'O_RDWR')
        self.assertEqual(again['read'], b'written through the fd')
        self.assertEqual(os.stat(path).st_size, 22)
        # a create grant covers the weaker modes
        self.assertEqual(self.open_ok(path, 'read-only')['accmode'], 'O_RDONLY')
        self.assertEqual(self.open_ok(path, 'read-write')['accmode'], 'O_RDWR')
        self.assertEqual(self.grants(), {path: ('create', True)})
        # the deny: another guest with a create grant for the same path did not create it
        self.register('vm2', uid=testbed.USERS['ia-emu2'].uid)
        self.grant(path, 'create', guest='vm2')
        self.open_err(path, 'create', FILE_EXISTS, caller=self.bed.agent('ia-emu2'),
                      guest='vm2')
        with open(path, 'rb') as f:
            self.assertEqual(f.read(), b'written through the fd')

    def test_create_refuses_existing_file(self):
        path = self.image('existing.img', b'not made by the service', mode=0o644,
                          uid=EMU1_UID, gid=EMU1_UID)
        self.grant(path, 'create')
        before = tree_state(self.bed.images_dir)
        msg = self.open_err(path, 'create', FILE_EXISTS)
        self.assertIn(path, msg)
        self.assertEqual(tree_state(self.bed.images_dir), before, 'content unchanged')
        self.assertEqual(self.grants(), {path: ('create', False)})
        # an empty existing file is no different
        empty = self.image('empty.img')
        self.grant(empty, 'create')
        self.open_err(empty, 'create', FILE_EXISTS)
        self.assertEqual(self.grants()[empty], ('create', False))

    def test_create_refuses_dangling_symlink(self):
        outside = os.path.join(self.bed.runtime_dir, 'tmp', 'planted')
        link = os.path.join(self.bed.images_dir, 'dangling.img')
        rel_link = os.path.join(self.bed.images_dir, 'rel-dangling.img')
        # granted while nothing is there, planted before the guest creates the file
        for p in (link, rel_link):
            self.grant(p, 'create')
        os.symlink(outside, link)
        os.symlink('would-be-created.img', rel_link)
        before = tree_state(self.bed.images_dir)
        for p in (link, rel_link):
            r = self.emu.open_image('vm1', p, 'create')
            self.assertIn(r.error, (FILE_EXISTS, SYMLINK), r)
        self.assertFalse(os.path.lexists(outside), 'nothing created at the link target')
        self.assertFalse(os.path.lexists(os.path.join(self.bed.images_dir,
                                                      'would-be-created.img')))
        self.assertEqual(tree_state(self.bed.images_dir), before)
        self.assertEqual(self.grants(), {link: ('create', False), rel_link: ('create', False)})

    def test_create_refuses_replaced_file(self):
        path = os.path.join(self.bed.images_dir, 'swap.img')
        self.grant(path, 'create')
        self.open_ok(path, 'create', write=b'ours')
        # someone puts another file under the name
        other = self.image('other.img', b'somebody else\'s')
        os.rename(other, path)
        before = tree_state(self.bed.images_dir)
        self.open_err(path, 'create', FILE_EXISTS)
        self.assertEqual(tree_state(self.bed.images_dir), before)
        # ... or a symlink to a file
        victim = self.image('victim.img', b'victim')
        os.unlink(path)
        os.symlink(victim, path)
        before = tree_state(self.bed.images_dir)
        r = self.emu.open_image('vm1', path, 'create')
        self.assertIn(r.error, (FILE_EXISTS, SYMLINK), r)
        self.assertEqual(tree_state(self.bed.images_dir), before)
        # once the name is free again, create makes a new file
        os.unlink(path)
        fd = self.open_ok(path, 'create', read=10)
        self.assertEqual(fd['read'], b'')
        self.assertEqual(os.lstat(path).st_ino, fd['st_ino'])

    def test_revoke_remove_created(self):
        path = os.path.join(self.bed.images_dir, 'overlay.qcow2')
        keep = self.image('keep.img', b'keep')
        self.grant(path, 'create')
        self.grant(keep, 'read-write')
        fd = self.open_ok(path, 'create', write=b'overlay')
        before = tree_state(self.bed.images_dir)
        self.assertOk(self.revoke(path, remove_created=True))
        after = tree_state(self.bed.images_dir)
        self.assertFalse(os.path.lexists(path), 'the created file is gone')
        del before[path]
        self.assertEqual(after, before, 'nothing else was touched')
        self.assertEqual(self.grants(), {keep: ('read-write', False)})
        self.open_err(path, 'read-only', NOT_GRANTED)
        # the fd handed out earlier still works on the unlinked inode
        self.assertEqual(self.emu.fd(fd['fd'], read=7)['read'], b'overlay')

    def test_remove_created_refuses_other_inode(self):
        path = os.path.join(self.bed.images_dir, 'overlay.qcow2')
        self.grant(path, 'create')
        self.open_ok(path, 'create', write=b'ours')
        other = self.image('other.img', b'precious data')
        os.rename(other, path)
        before = tree_state(self.bed.images_dir)
        msg = self.assertError(self.revoke(path, remove_created=True), NOT_CREATED)
        self.assertIn(path, msg)
        self.assertEqual(tree_state(self.bed.images_dir), before, 'the other file survives')
        with open(path, 'rb') as f:
            self.assertEqual(f.read(), b'precious data')
        self.assertEqual(self.grants(), {path: ('create', True)}, 'the grant stays')
        # a plain revoke still works afterwards and leaves the file alone
        self.assertOk(self.revoke(path))
        self.assertEqual(tree_state(self.bed.images_dir), before)
        self.assertEqual(self.grants(), {})

    def test_remove_created_of_a_file_never_created(self):
        """docs/qemu.md step 4: one call per overlay of a failed snapshot, whether or not the
        emulator got as far as creating it.  Never created: the grant goes, nothing is
        removed, and the audit says so."""
        made = os.path.join(self.bed.images_dir, 'made.qcow2')
        never = os.path.join(self.bed.images_dir, 'never.qcow2')
        self.grant(made, 'create')
        self.grant(never, 'create')
        self.open_ok(made, 'create', write=b'ours')
        before = tree_state(self.bed.images_dir)
        self.assertOk(self.revoke(never, remove_created=True))
        self.assertEqual(tree_state(self.bed.images_dir), before)
        self.assertEqual(self.grants(), {made: ('create', True)})
        self.bed.wait_log('daemon', r"audit: revoke allowed guest='vm1' image='%s'.*nothing was "
                          r"created" % re.escape(never))
        self.assertOk(self.revoke(made, remove_created=True))
        self.assertFalse(os.path.exists(made))
        self.assertEqual(self.grants(), {})

    def test_remove_created_refuses_plain_grant(self):
        path = self.image('plain.img', b'not created by the service')
        self.grant(path, 'read-write')
        before = tree_state(self.bed.images_dir)
        self.assertError(self.revoke(path, remove_created=True), NOT_CREATED)
        self.assertEqual(tree_state(self.bed.images_dir), before)
        self.assertEqual(self.grants(), {path: ('read-write', False)})
        # a create grant whose file existed before (FileExists) is not "created" either
        self.grant(path, 'create')
        self.open_err(path, 'create', FILE_EXISTS)
        self.assertError(self.revoke(path, remove_created=True), NOT_CREATED)
        self.assertEqual(tree_state(self.bed.images_dir), before)
        # remove-created=false is a plain revoke
        self.assertOk(self.revoke(path, remove_created=False))
        self.assertEqual(self.grants(), {})
        self.assertEqual(tree_state(self.bed.images_dir), before)


class InputTests(OpenTestCase):

    def test_invalid_input_refused_and_harmless(self):
        img = self.image('good.img', b'good')
        self.grant(img, 'read-write')
        d = self.bed.images_dir
        state = self.state()
        fds = [f['fd'] for f in self.bed.daemon_fds()]
        log_size = os.path.getsize(self.bed.logs['daemon'])
        huge_name = 'g' * 100000
        cases = [
            # (description, signature, args, expected error)
            ('relative path', 'sssa{sv}', ['vm1', 'images/good.img', 'read-only', {}],
             INVALID_PATH),
            ('double slash', 'sssa{sv}', ['vm1', d + '//good.img', 'read-only', {}],
             INVALID_PATH),
            ('leading double slash', 'sssa{sv}', ['vm1', '/' + img, 'read-only', {}],
             INVALID_PATH),
            ('dot component', 'sssa{sv}', ['vm1', d + '/./good.img', 'read-only', {}],
             INVALID_PATH),
            ('dot-dot component', 'sssa{sv}', ['vm1', d + '/../images/good.img', 'read-only',
                                               {}], INVALID_PATH),
            ('trailing dot-dot', 'sssa{sv}', ['vm1', d + '/..', 'read-only', {}], INVALID_PATH),
            ('trailing slash', 'sssa{sv}', ['vm1', img + '/', 'read-only', {}], INVALID_PATH),
            ('empty path', 'sssa{sv}', ['vm1', '', 'read-only', {}], INVALID_PATH),
            ('root', 'sssa{sv}', ['vm1', '/', 'read-only', {}], INVALID_PATH),
            ('newline', 'sssa{sv}', ['vm1', d + '/good.img\naudit: forged', 'read-only', {}],
             INVALID_PATH),
            ('path of 4096 bytes', 'sssa{sv}', ['vm1', path_of_length(d, 4096), 'read-only',
                                                {}], INVALID_PATH),
            ('component of 256 bytes', 'sssa{sv}', ['vm1', d + '/' + 'n' * 256, 'read-only',
                                                    {}], INVALID_PATH),
            ('unknown mode', 'sssa{sv}', ['vm1', img, 'write', {}], INVALID_MODE),
            ('empty mode', 'sssa{sv}', ['vm1', img, '', {}], INVALID_MODE),
            ('mode in capitals', 'sssa{sv}', ['vm1', img, 'READ-ONLY', {}], INVALID_MODE),
            ('unknown option', 'sssa{sv}', ['vm1', img, 'read-only', {'truncate': True}],
             INVALID_OPTION),
            ('option of the wrong type', 'sssa{sv}', ['vm1', img, 'read-only',
                                                      {'direct': 'yes'}], INVALID_OPTION),
            ('option as a number', 'sssa{sv}', ['vm1', img, 'read-only',
                                                {'nonblock': {'$v': ['u', 1]}}],
             INVALID_OPTION),
            ('huge guest name', 'sssa{sv}', [huge_name, img, 'read-only', {}], INVALID_NAME),
            ('empty guest name', 'sssa{sv}', ['', img, 'read-only', {}], INVALID_NAME),
            ('guest name of 129', 'sssa{sv}', ['v' * 129, img, 'read-only', {}], INVALID_NAME),
            ('guest name with /', 'sssa{sv}', ['vm1/../vm2', img, 'read-only', {}],
             INVALID_NAME),
            ('guest name starting with -', 'sssa{sv}', ['-vm1', img, 'read-only', {}],
             INVALID_NAME),
            ('options missing', 'sss', ['vm1', img, 'read-only'], INVALID_ARGS),
            ('an extra argument', 'sssa{sv}s', ['vm1', img, 'read-only', {}, 'x'],
             INVALID_ARGS),
            ('options of another type', 'sssa{ss}', ['vm1', img, 'read-only', {}],
             INVALID_ARGS),
            ('mode as a number', 'ssua{sv}', ['vm1', img, 0, {}], INVALID_ARGS),
            ('no arguments', '', [], INVALID_ARGS),
        ]
        for desc, sig, args, error in cases:
            with self.subTest(desc):
                r = self.emu.call('OpenImage', sig, args)
                self.assertError(r, error)
                self.assertEqual(r.fds, [])
                self.assertLess(len(r.message), 1024, 'the error does not echo huge input')
                self.assertTrue(self.bed.daemon_running())
                self.assertEqual(self.state(), state)
        # the same through the Manager interface's path and name checks
        for args, error in ((['vm1', '/a/../b', 'read-only', {}], INVALID_PATH),
                            ([huge_name, img, 'read-only', {}], INVALID_NAME)):
            self.assertError(self.bed.local.manager('GrantImage', 'sssa{sv}', args), error)
        self.assertEqual(self.state(), state)
        self.assertEqual([f['fd'] for f in self.bed.daemon_fds()], fds)
        self.assertLess(os.path.getsize(self.bed.logs['daemon']) - log_size, 20000,
                        'huge input is not copied into the log')
        self.assertNotIn('audit: forged', self.bed.log_text('daemon'))
        # the boundaries themselves are valid: refused for lack of a grant, not as invalid
        for p in (path_of_length(d, 4095), d + '/' + 'n' * 255):
            self.open_err(p, 'read-only', NOT_GRANTED)
        self.open_err(img, 'read-only', NOT_BOUND, guest='v' * 128)
        # and the caller still gets its image
        self.assertEqual(self.open_ok(img, 'read-write', read=4)['read'], b'good')


class ResourceTests(OpenTestCase):

    def test_no_fd_leak_and_cloexec(self):
        d = self.bed.images_dir
        img = self.image('leak.img', b'leak test')
        fifo = self.image('fifo')
        link = self.image('link.img')
        missing = self.image('missing.img')
        ungranted = self.image('ungranted.img')
        for p, mode in ((img, 'read-write'), (fifo, 'read-only'), (link, 'read-only'),
                        (missing, 'read-only')):
            self.grant(p, mode)
        for p in (fifo, link, missing):
            os.unlink(p)
        os.mkfifo(fifo)
        os.symlink(img, link)
        created = os.path.join(d, 'created.img')
        self.grant(created, 'create')
        emu2 = self.bed.agent('ia-emu2')
        # warm up every path once (lazy initialisation is not a leak)
        for _ in range(2):
            self.emu.close_fd(self.open_ok(img, 'read-write')['fd'])
            self.emu.close_fd(self.open_ok(created, 'create')['fd'])
            self.open_err(missing, 'read-only', NOT_FOUND)
        self.sync_daemon()
        baseline = self.bed.daemon_fds()

        denied = [(fifo, 'read-only', WRONG_TYPE, self.emu), (link, 'read-only', SYMLINK, self.emu),
                  (missing, 'read-only', NOT_FOUND, self.emu),
                  (ungranted, 'read-only', NOT_GRANTED, self.emu),
                  (img, 'read-only', NOT_BOUND, emu2)]
        batch = 20
        for start in range(0, 200, batch):
            pend = [self.emu.call_async('OpenImage', 'sssa{sv}',
                                        ['vm1', img if i % 2 else created,
                                         'read-write' if i % 2 else 'create', {}])
                    for i in range(start, start + batch)]
            pend_denied = [(denied[i % len(denied)],
                            denied[i % len(denied)][3].call_async(
                                'OpenImage', 'sssa{sv}',
                                ['vm1', denied[i % len(denied)][0], denied[i % len(denied)][1],
                                 {}]))
                           for i in range(start, start + batch)]
            for p in pend:
                r = p.wait()
                self.assertOk(r)
                self.emu.close_fd(r.fd()['fd'])
            for (path, mode, error, _), p in pend_denied:
                self.assertError(p.wait(), error, path)
        self.sync_daemon()
        after = self.bed.daemon_fds()
        self.assertEqual([(f['fd'], f['target']) for f in after],
                         [(f['fd'], f['target']) for f in baseline],
                         'the daemon\'s fds after 200 opens and 200 denials')
        # while the caller holds fds, the daemon holds none of them
        held = [self.open_ok(p, m) for p, m in ((img, 'read-only'), (created, 'create'))]
        self.sync_daemon()
        targets = {f['target'] for f in self.bed.daemon_fds()}
        self.assertNotIn(img, targets)
        self.assertNotIn(created, targets)
        self.assertEqual(len(held), 2)
        # everything the daemon opened itself is O_CLOEXEC (0-2 are inherited stdio)
        leaky = [f for f in self.bed.daemon_fds() if f['fd'] > 2 and not f['cloexec']]
        self.assertEqual(leaky, [], 'fds without O_CLOEXEC')


AUDIT_RE = re.compile(r"audit: (?P<event>\S+) (?P<result>allowed|denied) (?P<rest>.*)$")
FIELD_RE = re.compile(r"(\w[\w-]*)=('(?:[^'\\]|\\.)*'|\S*)")


def parse_audit(line):
    """An audit line → {'event', 'result', field: value}; quoted values unescaped.  Raises
    ValueError on a field given twice or text between fields (a forged or broken line)."""
    m = AUDIT_RE.search(line)
    if not m:
        raise ValueError('not an audit line: %r' % line)
    rec = {'event': m.group('event'), 'result': m.group('result')}
    rest, pos = m.group('rest'), 0
    for f in FIELD_RE.finditer(rest):
        if rest[pos:f.start()].strip():
            raise ValueError('stray text %r in %r' % (rest[pos:f.start()], line))
        key, value = f.group(1), f.group(2)
        if value.startswith("'"):
            value = re.sub(r'\\(.)', r'\1', value[1:-1])
        if key in rec:
            raise ValueError('field %s twice in %r' % (key, line))
        rec[key] = value
        pos = f.end()
    if rest[pos:].strip():
        raise ValueError('stray text %r in %r' % (rest[pos:], line))
    return rec


class AuditTests(OpenTestCase):

    def audit_lines(self, since):
        text = self.bed.log_text('daemon')[since:]
        return [line for line in text.splitlines() if 'audit: open ' in line]

    def test_one_audit_line_per_open_decision(self):
        d = self.bed.images_dir
        img = self.image('a.img', b'a')
        link = self.image('l.img')
        missing = self.image('missing.img')
        created = os.path.join(d, 'c.img')
        # a path that tries to forge fields of its own record
        forged = os.path.join(d, "x' mode=create uid=0 pid=1 sender=:1.1 reason='ok")
        with open(forged, 'wb') as f:
            f.write(b'f')
        for p, m in ((img, 'read-only'), (link, 'read-only'), (missing, 'read-only'),
                     (created, 'create'), (forged, 'read-only')):
            self.grant(p, m)
        os.unlink(link)
        os.symlink(img, link)
        os.unlink(missing)
        emu2 = self.bed.agent('ia-emu2')
        since = len(self.bed.log_text('daemon'))
        decisions = [
            # (caller, path, mode, allowed, error)
            (self.emu, img, 'read-only', True, None),
            (self.emu, img, 'read-write', False, NOT_GRANTED),
            (emu2, img, 'read-only', False, NOT_BOUND),
            (self.emu, missing, 'read-only', False, NOT_FOUND),
            (self.emu, link, 'read-only', False, SYMLINK),
            (self.emu, created, 'create', True, None),
            (self.emu, created, 'create', True, None),
            (self.emu, forged, 'read-only', True, None),
            (self.emu, forged, 'read-write', False, NOT_GRANTED),
        ]
        for caller, path, mode, allowed, error in decisions:
            r = caller.open_image('vm1', path, mode)
            if allowed:
                self.assertOk(r)
            else:
                self.assertError(r, error)
        # refused as malformed before any decision: no audit record to forge with
        self.assertError(self.emu.open_image('vm1', d + '/a\nb', 'read-only'), INVALID_PATH)
        self.sync_daemon()
        lines = self.audit_lines(since)
        self.assertEqual(len(lines), len(decisions), '\n'.join(lines))
        for line, (caller, path, mode, allowed, error) in zip(lines, decisions):
            with self.subTest(line=line):
                rec = parse_audit(line)
                self.assertEqual(rec['event'], 'open')
                self.assertEqual(rec['result'], 'allowed' if allowed else 'denied')
                self.assertEqual(rec['guest'], 'vm1')
                self.assertEqual(rec['image'], path)
                self.assertEqual(rec['mode'], mode)
                self.assertEqual(int(rec['uid']), caller.uid)
                self.assertEqual(int(rec['pid']), caller.pid)
                self.assertEqual(rec['sender'], caller.unique_name)
                if not allowed:
                    self.assertTrue(rec.get('reason'), 'a denial says why')


if __name__ == '__main__':
    testbed.main()

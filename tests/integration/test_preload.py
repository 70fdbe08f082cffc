#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""
libimageaccess-preload.so without QEMU: the open(2) semantics it builds on OpenImage (modes,
O_CREAT/O_EXCL/O_TRUNC/O_CLOEXEC/O_DIRECT/O_NONBLOCK, the errnos an emulator expects), which
opens it claims (prefixes, lexical normalization, relative paths, openat dirfds) and which it
leaves to libc, every interposed entry point, threads, fork, and an unreachable service.

The caller is shim_probe.py, a Python process run as a test user with the shim preloaded; it
opens through ctypes, so the preloaded definitions are the ones called.
"""

import json
import os
import select
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qemuvm  # noqa: E402
import testbed  # noqa: E402

GUEST = 'vm1'
PROBE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'shim_probe.py')


class Probe:
    """shim_probe.py as a test user with the shim preloaded."""

    def __init__(self, bed, who='ia-emu1', guest=GUEST, prefixes=(), env=None, name='probe'):
        u = bed.users[who] if isinstance(who, str) else testbed.User(str(who), who, who)
        e = bed.base_env(HOME=bed.runtime_dir, PYTHONDONTWRITEBYTECODE='1',
                         LD_PRELOAD=qemuvm.shim_path(bed), IMAGE_ACCESS_DEBUG='1')
        if guest is not None:
            e['IMAGE_ACCESS_GUEST'] = guest
        if prefixes:
            e['IMAGE_ACCESS_PREFIXES'] = ':'.join(prefixes)
        e['IMAGE_ACCESS_BUS_ADDRESS'] = bed.address
        e.update(env or {})
        argv = ['setpriv', '--reuid=%d' % u.uid, '--regid=%d' % u.gid, '--clear-groups',
                '--pdeathsig=SIGKILL', '--', testbed.PYTHON, PROBE]
        self.bed = bed
        self.child = bed._spawn(name, argv, e, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.buf = b''
        self.pid = self._read()['ready']

    def _read(self, timeout=60):
        fd = self.child.popen.stdout.fileno()
        while b'\n' not in self.buf:
            r, _, _ = select.select([fd], [], [], timeout)
            chunk = os.read(fd, 65536) if r else b''
            if not chunk:
                raise testbed.TestBedError('probe: no answer\n%s'
                                           % testbed._tail(self.child.log_path))
            self.buf += chunk
        line, self.buf = self.buf.split(b'\n', 1)
        return json.loads(line)

    def __call__(self, op, **kw):
        kw['op'] = op
        self.child.popen.stdin.write(json.dumps(kw).encode() + b'\n')
        self.child.popen.stdin.flush()
        res = self._read()
        if 'exception' in res:
            raise AssertionError('probe: %s' % res['exception'])
        return res

    def open(self, path, *flags, fn='open64', dirfd=None):
        return self('open', path=path, flags=list(flags) or ['O_RDONLY'], fn=fn, dirfd=dirfd)

    def stop(self):
        if self.child.alive():
            self.child.popen.stdin.close()
            self.child.popen.wait(10)

    def log(self):
        return self.bed.log_text(os.path.basename(self.child.log_path)[:-4])


class PreloadTestCase(testbed.IaTestCase):
    def setUp(self):
        reason = qemuvm.missing_requirements()
        if reason:
            self.skipTest(reason)
        super().setUp()
        self.dir = qemuvm.image_dir(self.bed)
        self.mgr = self.bed.local
        self.register(GUEST, self.bed.users['ia-emu1'].uid)

    def register(self, guest, uid=None):
        opts = {'uid': {'$v': ['u', uid]}} if uid is not None else {}
        self.assertOk(self.mgr.manager('RegisterGuest', 'sa{sv}', [guest, opts]))

    def grant(self, path, mode, guest=GUEST):
        self.assertOk(self.mgr.manager('GrantImage', 'sssa{sv}', [guest, path, mode, {}]))

    def image(self, name, data=b'', mode=0o600):
        path = os.path.join(self.dir, name)
        with open(path, 'wb') as f:
            f.write(data)
        os.chmod(path, mode)
        return path

    def probe(self, **kw):
        kw.setdefault('prefixes', [self.dir])
        p = Probe(self.bed, **kw)
        self.addCleanup(p.stop)
        return p

    def audit_opens(self, path=None):
        lines = [line for line in self.bed.log_text('daemon').splitlines()
                 if 'audit: open ' in line]
        if path:
            lines = [line for line in lines if "image='%s'" % path in line]
        return lines

    def assertErrno(self, res, name):
        self.assertEqual(res.get('errno'), name, res)


class ChannelTests(PreloadTestCase):
    """Repeated opens go over a channel (ia_client_set_use_channel()) unless turned off."""

    ON_CHANNEL = 'asked on its channel'

    def opens(self, p, path, n):
        for _ in range(n):
            r = p.open(path, 'O_RDWR')
            self.assertEqual(r['accmode'], 'O_RDWR', r)
            p('close', fd=r['fd'])

    def test_repeats_on_a_channel(self):
        img = self.image('disk.img', b'disk')
        self.grant(img, 'read-write')
        p = self.probe()
        self.opens(p, img, 5)
        log = self.bed.log_text('daemon')
        self.assertEqual(log.count('Opened a channel for'), 1, 'one channel')
        self.assertEqual(log.count(self.ON_CHANNEL), 4, 'the first open asked polkit on the bus')
        self.assertEqual(len(self.audit_opens(img)), 5, 'each open audited once')

    def test_channel_off(self):
        img = self.image('disk.img', b'disk')
        self.grant(img, 'read-write')
        p = self.probe(env={'IMAGE_ACCESS_CHANNEL': '0'})
        self.opens(p, img, 3)
        log = self.bed.log_text('daemon')
        self.assertNotIn('Opened a channel for', log)
        self.assertNotIn(self.ON_CHANNEL, log)
        self.assertEqual(len(self.audit_opens(img)), 3)


class ModeTests(PreloadTestCase):
    def test_flags_map_to_modes(self):
        ro = self.image('ro.img', b'read only')
        rw = self.image('rw.img', b'read write')
        self.grant(ro, 'read-only')
        self.grant(rw, 'read-write')
        p = self.probe()

        r = p.open(ro, 'O_RDONLY', 'O_CLOEXEC')
        self.assertEqual((r['accmode'], r['st_uid'], r['cloexec']), ('O_RDONLY', 0, True), r)
        self.assertErrno(p.open(ro, 'O_RDWR'), 'EACCES')        # NotGranted
        self.assertErrno(p.open(ro, 'O_WRONLY'), 'EACCES')
        r = p.open(rw, 'O_RDWR')
        self.assertEqual(r['accmode'], 'O_RDWR')
        self.assertFalse(r['cloexec'], 'no O_CLOEXEC asked: the fd must be inheritable')
        self.assertEqual(p('write', fd=r['fd'], data=b'WRITE'.hex())['n'], 5)
        with open(rw, 'rb') as f:
            self.assertEqual(f.read(), b'WRITEwrite')
        r = p.open(rw, 'O_WRONLY')      # the service has no write-only: read-write
        self.assertEqual(r['accmode'], 'O_RDWR')
        r = p.open(rw, 'O_RDWR', 'O_TRUNC')
        self.assertEqual(r['size'], 0)
        self.assertEqual(os.stat(rw).st_size, 0)
        r = p.open(rw, 'O_RDWR', 'O_DIRECT', 'O_NONBLOCK', 'O_APPEND')
        self.assertEqual(sorted(r['status_flags']), ['O_APPEND', 'O_DIRECT', 'O_NONBLOCK'])
        self.assertErrno(p.open(rw, 'O_RDWR', 'O_DSYNC'), 'EINVAL')
        self.assertErrno(p.open(rw, 'O_RDONLY', 'O_TRUNC'), 'EINVAL')
        modes = [line.split(' mode=')[1].split()[0] for line in self.audit_opens()]
        self.assertEqual(modes.count('read-only'), 1, modes)
        self.assertIn('read-write', modes)

    def test_errnos(self):
        missing = self.image('missing.img')
        secret = self.image('secret.img', b'x')
        self.grant(missing, 'read-write')      # read-only/read-write grants need the file
        os.unlink(missing)
        p = self.probe()
        self.assertErrno(p.open(missing, 'O_RDONLY'), 'ENOENT')   # NotFound: QEMU's probes
        self.assertErrno(p.open(secret, 'O_RDONLY'), 'EACCES')    # NotGranted
        other = self.probe(guest='not-mine', name='probe-other')
        self.assertErrno(other.open(secret, 'O_RDONLY'), 'EACCES')   # NotBound
        self.bed.set_rules('50-deny.rules', '''polkit.addRule(function(action, subject) {
    if (action.id == "org.example.imageaccess.open-image") return polkit.Result.NO;
});
''')
        ok = self.image('ok.img', b'x')
        self.grant(ok, 'read-only')
        self.assertErrno(p.open(ok, 'O_RDONLY'), 'EACCES')        # AccessDenied
        self.assertIn('org.freedesktop.DBus.Error.AccessDenied', p.log())

    def test_create(self):
        new = os.path.join(self.dir, 'new.qcow2')
        self.grant(new, 'create')
        p = self.probe()
        r = p.open(new, 'O_RDWR', 'O_CREAT', 'O_CLOEXEC')
        self.assertEqual((r['accmode'], r['st_uid'], r['st_mode']), ('O_RDWR', 0, 0o600), r)
        ino = r['ino']
        p('write', fd=r['fd'], data=b'qcow'.hex())
        # QEMU's pattern: O_CREAT without O_EXCL again reopens the same file
        r = p.open(new, 'O_RDWR', 'O_CREAT')
        self.assertEqual((r['ino'], r['size']), (ino, 4))
        self.assertErrno(p.open(new, 'O_RDWR', 'O_CREAT', 'O_EXCL'), 'EEXIST')
        r = p.open(new, 'O_RDONLY', 'O_CREAT')
        self.assertEqual(r['accmode'], 'O_RDONLY')
        r = p.open(new, 'O_WRONLY', 'O_CREAT', 'O_TRUNC', fn='creat')
        self.assertEqual((r['ino'], r['size'], r['accmode']), (ino, 0, 'O_RDWR'))

        # a file the service did not create: O_CREAT opens it (read-write), O_EXCL refuses
        theirs = self.image('theirs.img', b'theirs')
        self.grant(theirs, 'create')
        r = p.open(theirs, 'O_RDWR', 'O_CREAT')
        self.assertEqual((r['accmode'], r['size']), ('O_RDWR', 6))
        self.assertErrno(p.open(theirs, 'O_RDWR', 'O_CREAT', 'O_EXCL'), 'EEXIST')
        # O_CREAT of an existing file with only a read-write grant: opens it
        rw = self.image('rw.img', b'rw')
        self.grant(rw, 'read-write')
        self.assertEqual(p.open(rw, 'O_RDWR', 'O_CREAT')['size'], 2)
        # no create grant and no file: EACCES, nothing made
        nogrant = self.image('nogrant.img')
        self.grant(nogrant, 'read-write')
        os.unlink(nogrant)
        self.assertErrno(p.open(nogrant, 'O_RDWR', 'O_CREAT'), 'EACCES')
        self.assertFalse(os.path.exists(nogrant))


class ClaimTests(PreloadTestCase):
    def test_paths_outside_prefixes_go_to_libc(self):
        inside = self.image('disk.img', b'inside')
        self.grant(inside, 'read-only')
        outside_dir = os.path.join(self.bed.images_dir, 'vm2')      # a prefix look-alike
        os.mkdir(outside_dir, 0o711)
        outside = os.path.join(outside_dir, 'disk.img')
        with open(outside, 'wb') as f:
            f.write(b'outside')
        os.chmod(outside, 0o600)
        readable = os.path.join(outside_dir, 'public.img')
        with open(readable, 'wb') as f:
            f.write(b'public')
        os.chmod(readable, 0o644)
        p = self.probe()
        before = len(self.audit_opens())
        self.assertErrno(p.open(outside, 'O_RDONLY'), 'EACCES')             # the kernel's
        self.assertErrno(p.open(self.dir + '/../vm2/disk.img'), 'EACCES')  # normalized: out
        self.assertEqual(p.open(readable)['accmode'], 'O_RDONLY')
        self.assertEqual(p.open('/etc/hostname')['accmode'], 'O_RDONLY')
        self.assertEqual(len(self.audit_opens()), before, 'libc opens must not reach the service')
        # Python's own start-up (hundreds of opens) went to libc as well
        self.assertEqual(len(self.audit_opens()), 0)

    def test_normalization_and_relative_paths(self):
        img = self.image('disk.img', b'disk')
        self.grant(img, 'read-only')
        p = self.probe()
        for path in (img, self.dir + '//./disk.img', self.dir + '/x/../disk.img',
                     os.path.join(self.dir, '..', os.path.basename(self.dir), 'disk.img')):
            self.assertEqual(p.open(path)['size'], 4, path)
        p('chdir', path=self.dir)
        self.assertEqual(p.open('disk.img')['size'], 4)
        self.assertEqual(p.open('./disk.img', fn='openat64')['size'], 4)
        p('chdir', path='/')
        self.assertEqual(p.open('disk.img', fn='openat', dirfd=self.dir)['size'], 4)
        lines = self.audit_opens(img)
        self.assertEqual(len(lines), 7, lines)      # the service saw the normalized path only
        self.assertTrue(all('allowed' in line for line in lines), lines)

    def test_every_entry_point(self):
        img = self.image('disk.img', b'disk')
        self.grant(img, 'read-write')
        p = self.probe()
        fns = ['open', 'open64', '__open_2', '__open64_2', 'openat', 'openat64', '__openat_2',
               '__openat64_2']
        for fn in fns:
            r = p.open(img, 'O_RDWR', fn=fn)
            self.assertEqual((r.get('accmode'), r.get('st_uid')), ('O_RDWR', 0), (fn, r))
        for fn in ('creat', 'creat64'):
            self.assertEqual(p.open(img, fn=fn)['size'], 0, fn)
        self.assertEqual(len(self.audit_opens(img)), len(fns) + 2)

    def test_inactive_without_guest(self):
        img = self.image('disk.img', b'disk')
        self.grant(img, 'read-only')
        p = self.probe(guest=None)
        self.assertErrno(p.open(img), 'EACCES')
        self.assertEqual(self.audit_opens(), [])
        self.assertIn('both IMAGE_ACCESS_GUEST and IMAGE_ACCESS_PREFIXES must be set', p.log())


class ProcessTests(PreloadTestCase):
    def test_threads(self):
        img = self.image('disk.img', b'disk')
        self.grant(img, 'read-only')
        p = self.probe()
        p('close', fd=p.open(img)['fd'])   # the shim's bus connection exists from now on
        base = p('fdcount')['n']
        res = p('threads', path=img, flags=['O_RDONLY', 'O_CLOEXEC'], threads=8, count=25)
        self.assertEqual((res['ok'], res['errors']), (200, {}), res)
        self.assertEqual(p('fdcount')['n'], base)

    def test_fork(self):
        img = self.image('disk.img', b'disk')
        self.grant(img, 'read-only')
        p = self.probe()
        self.assertEqual(p.open(img)['size'], 4)        # the parent's connection exists
        child = p('fork_open', path=img, flags=['O_RDONLY'])
        self.assertEqual(child.get('size'), 4, child)
        self.assertNotEqual(child['pid'], p.pid)
        self.assertEqual(p.open(img)['size'], 4)        # the parent is unaffected
        pids = {line.split(' pid=')[1].split()[0] for line in self.audit_opens(img)}
        self.assertEqual(pids, {str(p.pid), str(child['pid'])})
        self.assertIn('opening a connection of its own', p.log())

    def test_unreachable_service(self):
        img = self.image('disk.img', b'disk')
        self.grant(img, 'read-only')
        p = self.probe(env={'IMAGE_ACCESS_BUS_ADDRESS':
                            'unix:path=' + os.path.join(self.bed.runtime_dir, 'nobus')})
        self.assertErrno(p.open(img), 'ECONNREFUSED')
        self.assertEqual(p.open('/etc/hostname')['accmode'], 'O_RDONLY')
        self.assertIn('cannot connect to unix:path=', p.log())

    def test_uid_without_passwd_entry(self):
        """dbus-daemon drops a connection whose uid has no passwd entry: QEMU would only say
        "Transport endpoint is not connected".  The shim says why, once (docs/qemu.md)."""
        img = self.image('disk.img', b'disk', mode=0o644)
        self.grant(img, 'read-only')
        uid = 61090
        self.assertNotIn(uid, [u.uid for u in self.bed.users.values()])
        p = self.probe(who=uid, env={'IMAGE_ACCESS_DEBUG': '0'})
        first = p.open(img)
        self.assertNotIn('fd', first)
        self.assertIsNotNone(first.get('errno'), first)
        p.open(img)
        log = p.log()
        self.assertEqual(log.count('image-access-preload:'), 1, repr(first) + log)
        self.assertIn('the bus refused or dropped the connection', log)
        self.assertIn('uid %d' % uid, log)
        self.assertIn('passwd', log)


if __name__ == '__main__':
    testbed.main()

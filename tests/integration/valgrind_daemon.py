#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""
image-accessd under valgrind (meson suite 'valgrind'): memcheck with full leak checking and
fd tracking, through the test bed's IA_DAEMON_WRAPPER, over a workload that walks every
method's allowed and denied paths, then SIGTERM.  Zero valgrind errors, no leaks, and no fd
open at exit beyond stdin, stdout and stderr.

Not a test_*.py file: meson registers it in its own suite, 'valgrind' (it is slow, and the
integration suite runs every test_*.py).
"""

import os
import re
import shutil
import signal
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_channel  # noqa: E402
import testbed  # noqa: E402

E = 'org.example.ImageAccess.Error.'
SUPPRESSIONS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data', 'valgrind.supp')
VALGRIND = ['valgrind', '--track-fds=yes', '--leak-check=full', '--show-leak-kinds=definite,indirect,possible',
            '--errors-for-leak-kinds=definite,indirect,possible', '--error-exitcode=99',
            '--num-callers=30', '--child-silent-after-fork=yes']


class ValgrindTests(testbed.IaTestCase):
    daemon_autostart = False

    def setUp(self):
        if not shutil.which('valgrind'):
            raise unittest.SkipTest('valgrind is not installed (tests/tools/setup.sh installs it)')
        wrapper = list(VALGRIND)
        if os.path.exists(SUPPRESSIONS):
            wrapper.append('--suppressions=' + SUPPRESSIONS)
        old = os.environ.get('IA_DAEMON_WRAPPER')
        os.environ['IA_DAEMON_WRAPPER'] = ' '.join(wrapper)
        try:
            super().setUp()
        finally:
            if old is None:
                os.environ.pop('IA_DAEMON_WRAPPER', None)
            else:
                os.environ['IA_DAEMON_WRAPPER'] = old
        # GLib: no slice allocator caching, so that leaks are leaks
        self.bed.start_daemon(env={'G_SLICE': 'always-malloc', 'G_DEBUG': 'gc-friendly'},
                              timeout=120)

    def workload(self):
        bed, root = self.bed, self.bed.local
        emu_uid = bed.users['ia-emu1'].uid
        d = bed.images_dir
        ro = bed.make_image('ro.img', b'read only')
        rw = bed.make_image('rw.img', b'read write')
        other = bed.make_image('other.img', b'not granted')
        new = os.path.join(d, 'new.qcow2')
        os.symlink(ro, os.path.join(d, 'link.img'))
        os.mkfifo(os.path.join(d, 'fifo'))

        def ok(r):
            return self.assertOk(r)

        ok(root.manager('RegisterGuest', 'sa{sv}', ['vm1', {'uid': {'$v': ['u', emu_uid]},
                                                            'uuid': {'$v': ['s', '6a1b4a0e-2b5c-4d0e-9f3a-1c2d3e4f5a6b']},
                                                            'description': {'$v': ['s', 'valgrind']}}]))
        ok(root.manager('RegisterGuest', 'sa{sv}', ['vm2', {}]))
        for path, mode in ((ro, 'read-only'), (rw, 'read-write'), (new, 'create'),
                           (os.path.join(d, 'fifo2'), 'create')):
            ok(root.manager('GrantImage', 'sssa{sv}', ['vm1', path, mode, {}]))
        self.assertError(root.manager('GrantImage', 'sssa{sv}', ['vm1', os.path.join(d, 'link.img'),
                                                                 'read-only', {}]), E + 'SymlinkRefused')
        self.assertError(root.manager('GrantImage', 'sssa{sv}', ['vm1', os.path.join(d, 'fifo'),
                                                                 'read-only', {}]), E + 'WrongFileType')
        emu = bed.agent('ia-emu1')
        for _ in range(3):
            ok(emu.open_image('vm1', ro, read=4))
            ok(emu.open_image('vm1', rw, 'read-write', write=b'x'))
            ok(emu.open_image('vm1', rw, 'read-only', options={'nonblock': True}))
            ok(emu.open_image('vm1', new, 'create', write=b'qcow'))
        for path, mode, err in ((other, 'read-only', 'NotGranted'), (ro, 'read-write', 'NotGranted'),
                                ('/proc/self/fd/3', 'read-only', 'NotGranted'),
                                ('relative', 'read-only', 'InvalidPath')):
            self.assertError(emu.open_image('vm1', path, mode), E + err)
        self.assertError(emu.open_image('vm2', ro), E + 'NotBound')
        self.assertError(emu.open_image('vm1', ro, options={'bogus': True}), E + 'InvalidOption')
        self.assertError(emu.manager('ListGuests'), 'org.freedesktop.DBus.Error.InteractiveAuthorizationRequired')
        # a channel: a served open, refusals, a malformed packet that closes it
        r = emu.call('OpenChannel', 'sa{sv}', ['vm1', {}])
        ok(r)
        ch = test_channel.Channel(test_channel.take_fd(emu.pid, r.fd()['fdnum']))
        emu.close_fd(r.values[0]['fd'])
        reply = ch.request('vm1', ro, test_channel.RO)
        self.assertEqual((reply.status, len(reply.fds)), (test_channel.OK, 1), reply)
        os.close(reply.fd)
        self.assertEqual(ch.request('vm1', other, test_channel.RO).name, E + 'NotGranted')
        self.assertEqual(ch.request('vm1', os.path.join(d, 'fifo2'), test_channel.RO).name,
                         E + 'NotFound')
        ch.send(b'not a request')
        ch.wait_closed()
        ch.close()
        pend = [emu.call_async('OpenImage', 'sssa{sv}', ['vm1', ro, 'read-only', {}]) for _ in range(20)]
        for p in pend:
            ok(p.wait())
        # a binding, and an emulator that dies with calls in flight
        emu2 = bed.agent('ia-emu2')
        ok(root.manager('BindProcess', 'sha{sv}', ['vm2', {'pidfd_of': emu2.pid}, {}]))
        emu3 = bed.agent('ia-emu1')
        for _ in range(10):
            emu3.call_async('OpenImage', 'sssa{sv}', ['vm1', rw, 'read-write', {}])
        emu3.kill()
        ok(root.manager('ListGuests'))
        ok(root.manager('ListGrants', 's', ['vm1']))
        ok(root.manager('RevokeImage', 'ssa{sv}', ['vm1', new, {'remove-created': True}]))
        self.assertFalse(os.path.exists(new))
        ok(root.manager('RevokeImage', 'ssa{sv}', ['vm1', rw, {}]))
        self.assertError(emu.open_image('vm1', rw, 'read-write'), E + 'NotGranted')
        ok(root.manager('UnregisterGuest', 's', ['vm2']))
        ok(root.call('Get', 'ss', [testbed.IFACE, 'Version'], iface='org.freedesktop.DBus.Properties'))
        ok(root.call('Introspect', iface='org.freedesktop.DBus.Introspectable'))

    def test_no_errors_no_leaks_no_fds(self):
        self.workload()
        since = self.bed.log_text('daemon').rfind('----- testbed: start')
        rc = self.bed.kill_daemon(signal.SIGTERM, timeout=60)
        log = self.bed.log_text('daemon')[since:]
        sys.stderr.write(''.join(line + '\n' for line in log.splitlines() if line.startswith('==')))
        summary = re.search(r'ERROR SUMMARY: (\d+) errors', log)
        self.assertIsNotNone(summary, 'valgrind printed no summary')
        fds = re.search(r'FILE DESCRIPTORS: (\d+) open(?: \((\d+) std\))? at exit', log)
        self.assertIsNotNone(fds, 'valgrind printed no fd report')
        leaks = re.search(r'definitely lost: ([\d,]+) bytes', log)
        sys.stderr.write('FIGURES ValgrindTests: %s\n' % {
            'exit_status': rc, 'errors': int(summary.group(1)),
            'fds_open_at_exit': int(fds.group(1)),
            'definitely_lost': leaks.group(1) if leaks else '0'})
        self.assertEqual(int(summary.group(1)), 0, 'valgrind errors')
        self.assertEqual(rc, 0, 'exit status (99: valgrind found errors)')
        self.assertEqual(int(fds.group(1)), 3, 'fds open at exit beyond stdin, stdout, stderr')


if __name__ == '__main__':
    testbed.main()

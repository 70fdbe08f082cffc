#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""
libimageaccess against the real image-accessd, dbus-daemon and polkitd: the C driver
tests/client/ia-client-test runs as the emulator (test user ia-emu1, bound to guest vm1 by
uid) or as the VM manager (root), and reports in JSON what a caller really got — fds with
their access mode, CLOEXEC and inode, the process's fd count before and after, errors with
their D-Bus name and message.
"""

import errno
import os
import random
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import clientprog  # noqa: E402
import testbed  # noqa: E402

EMU = 'ia-emu1'
EMU_UID = testbed.USERS[EMU].uid
GUEST = 'vm1'
NO_REPLY = 'org.freedesktop.DBus.Error.NoReply'
NOT_GRANTED = 'org.example.ImageAccess.Error.NotGranted'
NOT_BOUND = 'org.example.ImageAccess.Error.NotBound'
ACCMODE = {'read-only': 'O_RDONLY', 'read-write': 'O_RDWR', 'create': 'O_RDWR'}


class ClientTestCase(testbed.IaTestCase):

    def setUp(self):
        super().setUp()
        if not clientprog.client_test_path():
            self.skipTest('ia-client-test is not built')
        self.mgr = self.bed.local
        self.assertOk(self.mgr.manager('RegisterGuest', 'sa{sv}',
                                       [GUEST, {'uid': {'$v': ['u', EMU_UID]}}]))
        self.batch_dir = os.path.join(self.bed.images_dir, 'snap')
        os.makedirs(self.batch_dir, mode=0o755)

    def grant(self, path, mode, guest=GUEST):
        self.assertOk(self.mgr.manager('GrantImage', 'sssa{sv}', [guest, path, mode, {}]))

    def grants(self, guest=GUEST):
        return {p: (m, props.get('created')) for p, m, props in
                self.assertOk(self.mgr.manager('ListGrants', 's', [guest]))[0]}

    def overlay_paths(self, n, prefix='overlay'):
        return [os.path.join(self.batch_dir, '%s-%02d.qcow2' % (prefix, i)) for i in range(n)]

    def left_on_disk(self):
        return sorted(os.listdir(self.batch_dir))

    def assertNoLeak(self, res):
        """fd counts of one batch run: nothing left once it settled and once it was freed."""
        self.assertEqual(res['fds_settled'], res['fds_before'], res)
        self.assertEqual(res['fds_after'], res['fds_before'], res)

    def assertFd(self, fd, path, mode):
        st = os.stat(path)
        self.assertEqual(fd['accmode'], ACCMODE[mode], (path, mode))
        self.assertTrue(fd['cloexec'], 'fds from the library are O_CLOEXEC')
        self.assertGreaterEqual(fd['fdnum'], 3)
        self.assertEqual((fd['st_dev'], fd['st_ino']), (st.st_dev, st.st_ino), path)
        self.assertTrue(fd['reg'])

    def remove_created(self, paths, guest=GUEST):
        """The VM manager's half of the cleanup design: ia_manager_remove_created()."""
        return clientprog.run(self.bed, 'root', ['remove-created', guest] + list(paths))[0]


class OpenTests(ClientTestCase):

    def test_open_sync(self):
        ro = self.bed.make_image('ro.img', b'read me')
        rw = self.bed.make_image('rw.img', b'write me')
        self.grant(ro, 'read-only')
        self.grant(rw, 'read-write')
        for path, mode in ((ro, 'read-only'), (rw, 'read-write')):
            res = clientprog.run(self.bed, EMU, ['open-sync', GUEST, path, mode])[0]
            self.assertEqual(res['result'], 0, res)
            self.assertFd(res['fd'], path, mode)
            self.assertEqual(res['fds_after'], res['fds_before'], 'client freed, fd closed')

        # a refusal comes back as errno, D-Bus name and the service's message
        res = clientprog.run(self.bed, EMU, ['open-sync', GUEST, ro, 'read-write'])[0]
        self.assertEqual(res['result'], -errno.EPERM, res)
        self.assertEqual(res['error']['name'], NOT_GRANTED)
        self.assertIn(ro, res['error']['message'])
        self.assertTrue(res['error_errno_matches'])
        self.assertTrue(res['fd_untouched_on_failure'])
        res = clientprog.run(self.bed, EMU, ['open-sync', 'vm2', ro, 'read-only'])[0]
        self.assertEqual(res['result'], -errno.ENOLINK, res)
        self.assertEqual(res['error']['name'], NOT_BOUND)
        self.assertEqual(res['fds_after'], res['fds_before'])

    def test_open_address_override(self):
        ro = self.bed.make_image('ro.img', b'x')
        self.grant(ro, 'read-only')
        bogus = {'DBUS_SYSTEM_BUS_ADDRESS': 'unix:path=' + os.path.join(self.bed.runtime_dir,
                                                                       'no-such-bus')}
        res = clientprog.run(self.bed, EMU, ['open-sync', GUEST, ro, 'read-only'],
                             address=self.bed.address, env=bogus)[0]
        self.assertEqual(res['result'], 0, res)
        # without the override, DBUS_SYSTEM_BUS_ADDRESS is what the library follows
        prog = clientprog.ClientProgram(self.bed, EMU, ['open-sync', GUEST, ro, 'read-only'],
                                        env=bogus)
        with self.assertRaisesRegex(testbed.TestBedError, 'status 1'):
            prog.finish()
        self.assertIn('connect:', prog.log())

    def _async_open_with_polkit_stopped(self, command):
        """The open waits for polkit (stopped); the caller's loop must keep running."""
        path = self.bed.make_image('disk.img', b'async')
        self.grant(path, 'read-write')
        self.bed.signal_polkitd(signal.SIGSTOP)
        try:
            prog = clientprog.ClientProgram(self.bed, EMU, [command, GUEST, path, 'read-write',
                                                            '10'])
            self.assertEqual(prog.read(), {'started': True})
            time.sleep(0.6)
            self.assertFalse(prog.ready(), 'the open completed although polkitd is stopped')
        finally:
            self.bed.signal_polkitd(signal.SIGCONT)
        res = prog.read()
        prog.finish()
        self.assertEqual(res['result'], 0, res)
        self.assertFd(res['fd'], path, 'read-write')
        # 10 ms ticks during >= 0.6 s of pending: the loop was never blocked
        self.assertGreaterEqual(res['ticks_while_pending'], 20, res)
        self.assertEqual(res['fds_after'], res['fds_before'], res)

    def test_open_async_sd_event(self):
        self._async_open_with_polkit_stopped('open-event')

    def test_open_async_glib(self):
        self._async_open_with_polkit_stopped('open-glib')

    def test_open_async_error(self):
        path = self.bed.make_image('disk.img', b'x')
        for command in ('open-event', 'open-glib'):
            res = clientprog.run(self.bed, EMU, [command, GUEST, path, 'read-only', '10'])[1]
            self.assertEqual(res['result'], -errno.EPERM, res)
            self.assertEqual(res['error']['name'], NOT_GRANTED)
            self.assertEqual(res['fds_after'], res['fds_before'], res)


class BatchTests(ClientTestCase):

    def test_batch_64_all_succeed(self):
        modes = ['read-only', 'read-write', 'create']
        specs, expect = [], []
        for i in range(64):
            mode = modes[i % 3]
            if mode == 'create':
                path = os.path.join(self.batch_dir, 'new-%02d.qcow2' % i)
            else:
                path = self.bed.make_image('base-%02d.img' % i, b'base %d' % i)
            self.grant(path, mode)
            specs.append('%s:%s' % (mode, path))
            expect.append((path, mode))
        for loop in ('event', 'glib', 'sync'):
            with self.subTest(loop=loop):
                out = clientprog.run(self.bed, EMU, ['batch', '--loop=' + loop, GUEST] + specs)
                res = [o for o in out if 'result' in o][0]
                self.assertEqual(res['result'], 0, res)
                self.assertEqual(res['commit'], 0)
                self.assertEqual(res['fds_committed'], res['fds_before'] + 64)
                self.assertEqual(len(res['fds']), 64)
                for fd, (path, mode) in zip(res['fds'], expect):
                    self.assertFd(fd['d'], path, mode)
                self.assertEqual(res['fds_after'], res['fds_before'])
                self.assertEqual(res['hook_calls'], 0, 'nothing to clean after a commit')
                self.assertEqual(out[-1]['fds_end'], out[-1]['fds_start'])
        # the created files are the caller's now: on disk, recorded as created
        created = [p for p, m in expect if m == 'create']
        self.assertEqual(sorted(os.path.join(self.batch_dir, f) for f in self.left_on_disk()),
                         sorted(created))
        grants = self.grants()
        self.assertTrue(all(grants[p] == ('create', True) for p in created))

    def test_batch_beyond_window(self):
        # more images than IA_BATCH_MAX_IN_FLIGHT (64): the rest follow as replies come in
        paths = [self.bed.make_image('w/%03d.img' % i, b'%d' % i) for i in range(150)]
        for p in paths:
            self.grant(p, 'read-only')
        out = clientprog.run(self.bed, EMU, ['batch', '--loop=glib', GUEST] +
                             ['read-only:' + p for p in paths])
        res = [o for o in out if 'result' in o][0]
        self.assertEqual(res['result'], 0, res)
        self.assertEqual(len(res['fds']), 150)
        for fd, p in zip(res['fds'], paths):
            self.assertFd(fd['d'], p, 'read-only')
        self.assertEqual(res['fds_after'], res['fds_before'])

    def test_batch_64_one_failure_cleaned_up(self):
        paths = self.overlay_paths(64)
        bad = random.Random().randrange(64)
        for i, p in enumerate(paths):
            if i != bad:
                self.grant(p, 'create')
        out = clientprog.run(self.bed, EMU, ['batch', '--loop=event', GUEST] +
                             ['create:' + p for p in paths])
        res = [o for o in out if 'result' in o][0]
        self.assertEqual(res['result'], -errno.EPERM, res)
        self.assertEqual(res['error']['name'], NOT_GRANTED)
        self.assertEqual(res['failed_index'], bad)
        self.assertIn(paths[bad], res['error']['message'])
        self.assertEqual(res['state'], 3)  # IA_BATCH_FAILED
        self.assertEqual(res['settled'], 64, 'the batch waits for every reply')
        self.assertNoLeak(res)
        self.assertEqual(out[-1]['fds_end'], out[-1]['fds_start'])
        # the files the service made are reported, once, through the hook and the getter
        expected = [p for i, p in enumerate(paths) if i != bad]
        self.assertEqual(res['created'], expected)
        self.assertEqual(res['hook_calls'], 1)
        self.assertEqual(res['hook_paths'], expected)
        self.assertEqual(len(self.left_on_disk()), 63, 'the emulator cannot remove them')
        # the manager removes them
        rm = self.remove_created(res['hook_paths'])
        self.assertEqual(rm['result'], 63, rm)
        self.assertEqual(self.left_on_disk(), [])
        self.assertEqual(self.grants(), {}, 'remove-created withdraws the grants')

    def test_batch_abort_midway(self):
        paths = self.overlay_paths(64)
        for p in paths:
            self.grant(p, 'create')
        out = clientprog.run(self.bed, EMU, ['batch', '--loop=event', '--abort-after=4', GUEST] +
                             ['create:' + p for p in paths])
        res = [o for o in out if 'result' in o][0]
        self.assertTrue(res['aborted'])
        self.assertEqual(res['result'], -errno.ECANCELED)
        self.assertEqual(res['state'], 5)  # IA_BATCH_ABORTED
        self.assertLess(res['settled_at_abort'], 64, 'aborted while calls were in flight')
        self.assertEqual(res['settled'], 64)
        self.assertNoLeak(res)
        self.assertEqual(out[-1]['fds_end'], out[-1]['fds_start'])
        # every create went through (in-flight calls are not cancelled): all are reported
        self.assertEqual(res['hook_calls'], 1)
        self.assertEqual(sorted(res['hook_paths']), sorted(paths))
        rm = self.remove_created(res['hook_paths'])
        self.assertEqual(rm['result'], 64, rm)
        self.assertEqual(self.left_on_disk(), [])

    def test_batch_ready_then_abort(self):
        paths = self.overlay_paths(8)
        ro = self.bed.make_image('base.img', b'base')
        self.grant(ro, 'read-only')
        for p in paths:
            self.grant(p, 'create')
        out = clientprog.run(self.bed, EMU, ['batch', '--loop=glib', '--no-commit', GUEST,
                                             'read-only:' + ro] + ['create:' + p for p in paths])
        res = [o for o in out if 'result' in o][0]
        self.assertEqual(res['result'], 0, res)
        self.assertEqual(res['abort'], 0)
        self.assertEqual(res['fds_settled'], res['fds_before'] + 9, 'the batch held the fds')
        self.assertEqual(res['fds_after'], res['fds_before'])
        self.assertEqual(res['hook_calls_after_abort'], 1)
        self.assertEqual(res['hook_paths_after_abort'], paths)
        self.assertEqual(self.remove_created(paths)['result'], 8)
        self.assertEqual(self.left_on_disk(), [])
        self.assertTrue(os.path.exists(ro), 'only created files are removed')

    def test_batch_daemon_killed_midway(self):
        paths = self.overlay_paths(64)
        for p in paths:
            self.grant(p, 'create')
        self.bed.signal_daemon(signal.SIGSTOP)
        prog = clientprog.ClientProgram(self.bed, EMU, ['batch', '--loop=event', '--wait',
                                                        '--repeat=2', GUEST] +
                                        ['create:' + p for p in paths])
        self.assertEqual(prog.read(), {'ready': 0})
        prog.go()
        self.assertEqual(prog.read(), {'iteration': 0, 'started': 0})
        time.sleep(0.2)
        self.assertFalse(prog.ready(), 'the batch completed although the service is stopped')
        self.assertEqual(self.bed.kill_daemon(signal.SIGKILL), -signal.SIGKILL)

        # Every call had reached the bus before the first reply: all 64 get NoReply from
        # dbus-daemon (none ServiceUnknown), which is what "pipelined" means.
        res = prog.read()
        self.assertLess(res['result'], 0, res)
        self.assertEqual(res['error']['name'], NO_REPLY, res)
        self.assertIn('failed at image 0', res['error']['message'])
        self.assertEqual(res['state'], 3)
        self.assertNoLeak(res)
        # no answer: the service might have created them, so they are reported; it did not
        self.assertEqual(res['created'], paths)
        self.assertEqual(self.left_on_disk(), [])

        self.bed.start_daemon()
        self.assertEqual(prog.read(), {'ready': 1})
        prog.go()
        self.assertEqual(prog.read(), {'iteration': 1, 'started': 0})
        res = prog.read()
        self.assertEqual(res['result'], 0, res)
        self.assertEqual(len(res['fds']), 64)
        for fd, p in zip(res['fds'], paths):
            self.assertFd(fd['d'], p, 'create')
        self.assertEqual(res['fds_after'], res['fds_before'])
        end = prog.finish()[-1]
        self.assertEqual(end['fds_end'], end['fds_start'])
        self.assertEqual(len(self.left_on_disk()), 64)


class ConnectionTests(ClientTestCase):

    def start_private_bus(self, socket_path, seq):
        """A second dbus-daemon (session policy, root only) listening on socket_path."""
        if os.path.exists(socket_path):
            os.unlink(socket_path)
        r, w = os.pipe()
        try:
            child = self.bed._spawn('bus2-%d' % seq, [
                testbed.DBUS_DAEMON, '--session', '--nofork', '--nopidfile',
                '--address=unix:path=' + socket_path, '--print-address=%d' % w],
                self.bed.base_env(), pass_fds=(w,))
            os.close(w)
            w = None
            data = b''
            while b'\n' not in data:
                chunk = os.read(r, 4096)
                if not chunk:
                    self.fail('the second dbus-daemon did not start')
                data += chunk
        finally:
            os.close(r)
            if w is not None:
                os.close(w)
        return child

    def test_reconnect_after_bus_restart(self):
        sock = os.path.join(self.bed.runtime_dir, 'bus2')
        bus = self.start_private_bus(sock, 1)
        prog = clientprog.ClientProgram(self.bed, 'root', ['reconnect', '2'],
                                        address='unix:path=' + sock)
        prog.go()
        first = prog.read()
        # connected: the bus answers that nobody owns the service's name on it
        self.assertEqual(first['result'], -errno.EHOSTUNREACH, first)
        self.assertEqual(first['error']['name'], 'org.freedesktop.DBus.Error.ServiceUnknown')

        bus.stop(signal.SIGKILL)
        self.start_private_bus(sock, 2)
        prog.go()
        second = prog.read()
        # the next call notices the lost connection, opens a new one and reaches the new bus
        self.assertEqual(second['result'], -errno.EHOSTUNREACH, second)
        self.assertEqual(second['error']['name'], 'org.freedesktop.DBus.Error.ServiceUnknown')
        self.assertEqual(second['fds'], first['fds'], 'the old connection was closed')
        prog.finish()


class ChannelTests(ClientTestCase):
    """ia_client_set_use_channel(): the same opens and answers, without the bus daemon."""

    ON_CHANNEL = 'asked on its channel'
    ASK = 'Asking polkit about org.example.imageaccess.open-image'

    def log_count(self, text):
        return self.bed.log_text('daemon').count(text)

    def channel_prog(self, rounds, *specs):
        return clientprog.ClientProgram(self.bed, EMU, ['open-channel', str(rounds), GUEST] +
                                        ['%s:%s' % s for s in specs])

    def round(self, prog, n):
        prog.go()
        return [prog.read() for _ in range(n)]

    def test_repeats_go_over_the_channel(self):
        rw = self.bed.make_image('rw.img', b'write me')
        ro = self.bed.make_image('ro.img', b'read me')
        self.grant(rw, 'read-write')
        self.grant(ro, 'read-only')
        prog = self.channel_prog(3, (rw, 'read-write'), (rw, 'read-only'), (ro, 'read-only'))
        first = self.round(prog, 3)
        # The first round asks polkit over the bus (one check per image: read-write covers
        # read-only); the channel cannot, and says so.
        for res, (path, mode) in zip(first, ((rw, 'read-write'), (rw, 'read-only'),
                                             (ro, 'read-only'))):
            self.assertEqual(res['result'], 0, res)
            self.assertFd(res['fd'], path, mode)
        self.assertEqual(self.log_count(self.ASK), 2)
        self.assertEqual(self.log_count('Opened a channel for'), 1)
        on_channel = self.log_count(self.ON_CHANNEL)
        self.assertEqual(on_channel, 1, 'only the read-only reopen of rw was decided there')
        for _ in range(2):
            for res, (path, mode) in zip(self.round(prog, 3),
                                         ((rw, 'read-write'), (rw, 'read-only'),
                                          (ro, 'read-only'))):
                self.assertEqual(res['result'], 0, res)
                self.assertFd(res['fd'], path, mode)
        self.assertEqual(self.log_count(self.ON_CHANNEL) - on_channel, 6, 'every repeat')
        self.assertEqual(self.log_count(self.ASK), 2, 'polkit was not asked again')
        self.assertEqual(self.log_count('Opened a channel for'), 1, 'one channel')
        end = prog.finish()[-1]
        fds = [r['fds'] for r in first]
        self.assertEqual(end['fds_at_end'], fds[0] - 2, 'bus socket and channel closed: %r'
                         % (fds,))

    def test_refusals_are_the_same(self):
        rw = self.bed.make_image('rw.img', b'x')
        ro = self.bed.make_image('ro.img', b'x')
        self.grant(rw, 'read-write')
        self.grant(ro, 'read-only')
        prog = self.channel_prog(2, (rw, 'read-write'), (ro, 'read-write'),
                                 (self.bed.images_dir + '/nothing.img', 'read-only'))
        for results in (self.round(prog, 3), self.round(prog, 3)):
            ok, weaker, none = results
            self.assertEqual(ok['result'], 0, ok)
            for res in (weaker, none):
                self.assertEqual(res['result'], -errno.EPERM, res)
                self.assertEqual(res['error']['name'], NOT_GRANTED)
                self.assertTrue(res['error_errno_matches'])
            self.assertIn('only read-only, not read-write', weaker['error']['message'])
        # The second round's refusals came over the channel (no polkit needed to refuse).
        self.assertGreaterEqual(self.log_count('Opened a channel for'), 1)
        prog.finish()

    def test_revoke_and_rules_take_effect_on_the_next_open(self):
        rw = self.bed.make_image('rw.img', b'x')
        self.grant(rw, 'read-write')
        prog = self.channel_prog(4, (rw, 'read-write'))
        self.assertEqual(self.round(prog, 1)[0]['result'], 0)
        self.assertEqual(self.round(prog, 1)[0]['result'], 0)
        self.assertEqual(self.log_count(self.ON_CHANNEL), 1)
        # A rule that says no: the cached yes is void, the channel sends the open to the
        # bus, and polkit refuses it there.
        self.bed.set_rules('40-no.rules', """polkit.addRule(function(action, subject) {
    if (action.id == "org.example.imageaccess.open-image") return polkit.Result.NO;
});
""")
        res = self.round(prog, 1)[0]
        self.assertEqual(res['result'], -errno.EACCES, res)
        self.assertEqual(res['error']['name'], 'org.freedesktop.DBus.Error.AccessDenied')
        self.assertEqual(self.log_count(self.ON_CHANNEL), 1)
        self.bed.remove_rules('40-no.rules')
        self.assertOk(self.mgr.manager('RevokeImage', 'ssa{sv}', [GUEST, rw, {}]))
        res = self.round(prog, 1)[0]
        self.assertEqual(res['result'], -errno.EPERM, res)
        self.assertEqual(res['error']['name'], NOT_GRANTED)
        prog.finish()

    def test_daemon_restart_and_service_without_channels(self):
        rw = self.bed.make_image('rw.img', b'x')
        self.grant(rw, 'read-write')
        prog = self.channel_prog(3, (rw, 'read-write'), (rw, 'read-write'))
        self.assertEqual([r['result'] for r in self.round(prog, 2)], [0, 0])
        self.assertEqual(self.log_count(self.ON_CHANNEL), 1)
        # The channel dies with the daemon; the next open reconnects to the bus, gets a new
        # channel, and works.
        self.bed.restart_daemon()
        self.assertEqual([r['result'] for r in self.round(prog, 2)], [0, 0])
        # (the daemon's log goes on across restarts)
        self.assertEqual(self.log_count('Opened a channel for'), 2, 'the new daemon made one')
        self.assertEqual(self.log_count(self.ON_CHANNEL), 2)
        # A service that hands out no channels: every open over the bus, all fine.
        self.bed.restart_daemon(config='[Limits]\nMaxChannels=0\n')
        results = self.round(prog, 2)
        self.assertEqual([r['result'] for r in results], [0, 0], results)
        self.assertEqual(self.log_count('hands out no channels'), 1, 'asked once, never again')
        self.assertEqual(self.log_count(self.ON_CHANNEL), 2)
        prog.finish()


class ManagerTests(ClientTestCase):

    def assertManagerCalls(self, res, path):
        """What the "manager" and "manager-async" runs of ia-client-test must have seen."""
        self.assertEqual(res['register'], 0)
        self.assertEqual(res['register_again'], -errno.EEXIST)
        self.assertEqual(res['register_again_error']['name'],
                         'org.example.ImageAccess.Error.GuestExists')
        self.assertEqual(res['grant'], 0)
        self.assertEqual(res['bind_pid'], 0, res.get('bind_pid_error'))
        self.assertEqual(res['list_guests'], 2)  # vm1 and vm-lib
        self.assertEqual(res['guest_uuid'], '6f1c2a7e-9a4b-4c1e-8d2f-0a1b2c3d4e5f')
        self.assertEqual(res['guest_description'], 'made by ia-client-test')
        self.assertEqual(res['guest_uid'], 61003)
        self.assertEqual(res['guest_grants'], 1)
        self.assertEqual(res['guest_processes'], 1)
        self.assertEqual(res['list_grants'], 1)
        self.assertEqual((res['grant_path'], res['grant_mode'], res['grant_created']),
                         (path, 'create', False))
        # a create grant whose file was never made: one call withdraws it, nothing to remove
        self.assertEqual(res['revoke_remove_uncreated'], 0)
        self.assertIsNone(res['revoke_remove_uncreated_error'])
        self.assertEqual(res['grant_again'], 0)
        self.assertEqual(res['revoke'], 0)
        self.assertEqual(res['revoke_again'], -errno.EPERM)
        self.assertEqual(res['revoke_again_error']['name'], NOT_GRANTED)
        self.assertEqual(res['unregister'], 0)
        self.assertEqual(res['unregister_again'], -errno.ESRCH)
        self.assertEqual(res['unregister_again_error']['name'],
                         'org.example.ImageAccess.Error.UnknownGuest')

    def test_manager_calls(self):
        path = os.path.join(self.batch_dir, 'never-created.qcow2')
        res = clientprog.run(self.bed, 'root', ['manager', 'vm-lib', '61003', path])[0]
        self.assertEqual(res['version_r'], 0)
        self.assertTrue(res['version'])
        self.assertManagerCalls(res, path)

    def check_manager_calls_async(self, loop):
        path = os.path.join(self.batch_dir, 'never-created.qcow2')
        res = clientprog.run(self.bed, 'root', ['manager-async', loop, 'vm-lib', '61003',
                                                path])[0]
        self.assertManagerCalls(res, path)
        self.assertFalse(res['reentered'], 'callbacks run from the loop, never from the call')
        # explain: polkit's answer, the same as the synchronous call's
        self.assertEqual(res['explain'], 0)
        self.assertEqual(res['explain_answer'], res['explain_sync_answer'])
        # a cancelled request never calls back; a refused argument fails at once
        self.assertEqual((res['cancel_start'], res['cancel'], res['cancel_pending_after']),
                         (0, 1, False))
        self.assertFalse(res['cancelled_called'])
        self.assertEqual(res['grant_relative'], -errno.EINVAL)
        self.assertFalse(res['grant_relative_called'])
        # nothing was created: its grant withdrawn, nothing removed, no failure
        self.assertEqual(res['remove_created'], 1)
        self.assertEqual(res['grant_after_remove'], 0)
        # the flagged variants
        self.assertEqual(res['register_same_uid'], -errno.EADDRINUSE)
        self.assertEqual(res['register_same_uid_error']['name'],
                         'org.example.ImageAccess.Error.UidInUse')
        self.assertEqual(res['register_shared'], 0)
        self.assertEqual(res['grant_directory'], 0, res['grant_directory_error'])
        self.assertEqual(res['list_directory_grants'], 1)
        self.assertEqual(res['directory_grant_path'], os.path.dirname(path))
        self.assertTrue(res['directory_grant_is_directory'])
        self.assertEqual(res['grant_bad_flags'], -errno.EINVAL)
        self.assertEqual(res['unregister_shared'], 0)
        self.assertEqual(res['fds_after'], res['fds_before'], 'no fd left behind')

    def test_manager_calls_async_sd_event(self):
        self.check_manager_calls_async('event')

    def test_manager_calls_async_glib(self):
        self.check_manager_calls_async('glib')

    def test_remove_created_tolerates_nothing_to_clean(self):
        made = os.path.join(self.batch_dir, 'made.qcow2')
        never = os.path.join(self.batch_dir, 'never.qcow2')
        revoked = os.path.join(self.batch_dir, 'revoked.qcow2')
        for p in (made, never):
            self.grant(p, 'create')
        res = clientprog.run(self.bed, EMU, ['open-sync', GUEST, made, 'create'])[0]
        self.assertEqual(res['result'], 0, res)
        # made: removed; never: its grant withdrawn; revoked: NotGranted, not a failure
        rm = self.remove_created([made, never, revoked])
        self.assertEqual(rm['result'], 2, rm)
        self.assertEqual(self.left_on_disk(), [])
        self.assertEqual(self.grants(), {})


if __name__ == '__main__':
    testbed.main()

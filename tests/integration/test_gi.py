#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""
libimageaccess-gobject through GObject Introspection, as Python programs use it
(gi.repository.ImageAccess), against the real image-accessd, dbus-daemon and polkitd.

The test process itself is the client (root: the VM manager, and, bound to a guest by its
own pidfd, the emulator).  The typelib and the libraries come from the build tree:
IA_GI_TYPELIB_DIR and IA_GI_LIBRARY_PATH, set by tests/integration/meson.build.  The dynamic
loader reads LD_LIBRARY_PATH only at start, so the file re-executes itself once with it set.
"""

import fcntl
import json
import os
import subprocess
import sys
import time

if __name__ == '__main__' and os.environ.get('IA_GI_LIBRARY_PATH') and \
        os.environ.get('IA_GI_REEXEC') != '1':
    os.environ['LD_LIBRARY_PATH'] = ':'.join(
        p for p in (os.environ['IA_GI_LIBRARY_PATH'], os.environ.get('LD_LIBRARY_PATH')) if p)
    os.environ['GI_TYPELIB_PATH'] = ':'.join(
        p for p in (os.environ.get('IA_GI_TYPELIB_DIR'), os.environ.get('GI_TYPELIB_PATH')) if p)
    os.environ['IA_GI_REEXEC'] = '1'
    os.execv(sys.executable, [sys.executable] + sys.argv)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testbed  # noqa: E402

GUEST = 'vm-gi'
UUID = '0b7e5a52-3c1d-4f8e-9a6b-2d4c6e8f0a1c'

RULE_DENY_GI = '''\
polkit.addRule(function(action, subject) {
    if (action.id == "org.example.imageaccess.open-image" && action.lookup("guest") == "vm-gi"
        && action.lookup("mode") == "read-write")
        return polkit.Result.NO;
    return polkit.Result.NOT_HANDLED;
});
'''

RULE_AUTH_GI = '''\
polkit.addRule(function(action, subject) {
    if (action.id == "org.example.imageaccess.open-image" && action.lookup("guest") == "vm-gi"
        && action.lookup("mode") == "read-write")
        return polkit.Result.AUTH_ADMIN;
    return polkit.Result.NOT_HANDLED;
});
'''


def gi_modules():
    import gi
    gi.require_version('ImageAccess', '0.1')
    from gi.repository import GLib, Gio, ImageAccess
    return GLib, Gio, ImageAccess


def accmode(fd):
    return fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE


def fds():
    """What this process has open: {fd: target}."""
    out = {}
    for name in os.listdir('/proc/self/fd'):
        try:
            out[int(name)] = os.readlink('/proc/self/fd/' + name)
        except FileNotFoundError:  # the directory's own fd
            pass
    return out


def nfds():
    return len(fds())


class GiTestCase(testbed.IaTestCase):

    def setUp(self):
        if not os.environ.get('IA_GI_TYPELIB_DIR'):
            raise AssertionError('IA_GI_TYPELIB_DIR is not set: the typelib was not built')
        super().setUp()
        self.GLib, self.Gio, self.IA = gi_modules()
        self.client = self.IA.Client.new_sync(self.bed.address, None)
        self.addCleanup(lambda: setattr(self, 'client', None))

    def assertGError(self, ctx, code):
        e = ctx.exception
        self.assertTrue(e.matches(self.IA.error_quark(), code),
                        '%s (%s %d) is not %s' % (e.message, e.domain, e.code, code))
        return e.message

    def register_bound(self, guest=GUEST):
        """Registers @guest and binds this process to it (by a pidfd of itself).  The service
        takes the identity of a connection when it is made, so the emulator's client is a new
        one, connected after the bind (self.emu)."""
        self.client.register_guest_sync(guest, UUID, 'made by test_gi', self.IA.UID_NONE, None)
        pidfd = os.pidfd_open(os.getpid())
        try:
            self.client.bind_process_sync(guest, pidfd, None)
        finally:
            os.close(pidfd)
        self.emu = self.IA.Client.new_sync(self.bed.address, None)
        self.addCleanup(lambda: setattr(self, 'emu', None))

    def run_loop(self, start, timeout=30):
        """Runs a GLib main loop until start(done) calls done(value); returns the value."""
        loop = self.GLib.MainLoop()
        box = []

        def done(value):
            box.append(value)
            loop.quit()
        start(done)
        tid = self.GLib.timeout_add_seconds(timeout, loop.quit)
        loop.run()
        if box:
            self.GLib.source_remove(tid)
        self.assertTrue(box, 'no completion within %d s' % timeout)
        return box[0]


class ManagerTests(GiTestCase):

    def test_register_grant_list(self):
        IA = self.IA
        self.client.register_guest_sync(GUEST, UUID, 'made by test_gi', 61002, None)
        with self.assertRaises(self.GLib.Error) as ctx:
            self.client.register_guest_sync(GUEST, None, None, IA.UID_NONE, None)
        self.assertGError(ctx, IA.Error.GUEST_EXISTS)

        path = self.bed.make_image('gi.img', b'gi')
        self.client.grant_image_sync(GUEST, path, IA.Mode.READ_WRITE, None)
        guests = {g.name: g for g in self.client.list_guests_sync(None)}
        self.assertEqual(set(guests), {GUEST})
        g = guests[GUEST]
        self.assertEqual((g.uuid, g.description, g.uid, g.n_grants, g.n_processes),
                         (UUID, 'made by test_gi', 61002, 1, 0))
        grants = self.client.list_grants_sync(GUEST, None)
        self.assertEqual([(x.path, x.mode, x.created, x.pinned) for x in grants],
                         [(path, IA.Mode.READ_WRITE, False, True)])
        self.assertEqual(grants[0].inode, os.stat(path).st_ino)

        self.client.revoke_image_sync(GUEST, path, IA.RevokeFlags.NONE, None)
        self.assertEqual(len(self.client.list_grants_sync(GUEST, None)), 0)
        with self.assertRaises(self.GLib.Error) as ctx:
            self.client.revoke_image_sync(GUEST, path, IA.RevokeFlags.NONE, None)
        self.assertGError(ctx, IA.Error.NOT_GRANTED)
        self.client.unregister_guest_sync(GUEST, None)
        with self.assertRaises(self.GLib.Error) as ctx:
            self.client.list_grants_sync(GUEST, None)
        self.assertGError(ctx, IA.Error.UNKNOWN_GUEST)

    def test_library_refusals_are_invalid_argument(self):
        with self.assertRaises(self.GLib.Error) as ctx:
            self.client.grant_image_sync(GUEST, 'relative/path', self.IA.Mode.READ_ONLY, None)
        self.assertGError(ctx, self.IA.Error.INVALID_ARGUMENT)

    def test_denied_for_a_non_root_manager(self):
        """ia-mgr has no rule: the manager actions are auth_admin, and without interactive
        authorization that is InteractiveAuthorizationRequired, mapped to its own code."""
        script = ('import gi, sys; gi.require_version("ImageAccess", "0.1"); '
                  'from gi.repository import GLib, ImageAccess as IA; '
                  'c = IA.Client.new_sync(sys.argv[1], None)\n'
                  'try:\n c.list_guests_sync(None)\n'
                  'except GLib.Error as e:\n print(e.domain, IA.Error(e.code).value_nick)')
        u = self.bed.users['ia-mgr']
        env = self.bed.base_env(LD_LIBRARY_PATH=os.environ['LD_LIBRARY_PATH'],
                                GI_TYPELIB_PATH=os.environ['GI_TYPELIB_PATH'])
        p = subprocess.run(['setpriv', '--reuid=%d' % u.uid, '--regid=%d' % u.gid,
                            '--clear-groups', '--', testbed.PYTHON, '-c', script,
                            self.bed.address], env=env, capture_output=True, text=True,
                           timeout=60)
        self.assertEqual((p.returncode, p.stderr), (0, ''))
        self.assertEqual(p.stdout.split(),
                         ['image-access-error-quark', 'interactive-authorization-required'])

    def test_explain(self):
        IA = self.IA
        path = self.bed.make_image('gi.img', b'gi')

        def explain(mode):
            return self.client.explain_polkit_sync(GUEST, path, mode, None, 61002, 0, None)
        self.assertEqual(explain(IA.Mode.READ_WRITE), IA.PolkitAnswer.AUTHORIZED)
        self.bed.set_rules('50-gi.rules', RULE_AUTH_GI)
        self.assertEqual(explain(IA.Mode.READ_WRITE), IA.PolkitAnswer.CHALLENGE)
        self.assertEqual(explain(IA.Mode.READ_ONLY), IA.PolkitAnswer.AUTHORIZED)
        self.bed.set_rules('50-gi.rules', RULE_DENY_GI)
        self.assertEqual(explain(IA.Mode.READ_WRITE), IA.PolkitAnswer.NOT_AUTHORIZED)
        # asynchronously, the same answer
        answer = self.run_loop(lambda done: self.client.explain_polkit(
            GUEST, path, IA.Mode.READ_WRITE, None, 61002, 0, None,
            lambda c, res: done(c.explain_polkit_finish(res))))
        self.assertEqual(answer, IA.PolkitAnswer.NOT_AUTHORIZED)


class OpenTests(GiTestCase):

    def setUp(self):
        super().setUp()
        self.register_bound()
        self.rw = self.bed.make_image('rw.img', b'read-write image')
        self.ro = self.bed.make_image('ro.img', b'read-only image')
        self.client.grant_image_sync(GUEST, self.rw, self.IA.Mode.READ_WRITE, None)
        self.client.grant_image_sync(GUEST, self.ro, self.IA.Mode.READ_ONLY, None)

    def check_fd(self, fd, path, mode):
        try:
            self.assertGreaterEqual(fd, 3)
            self.assertEqual(accmode(fd), mode)
            self.assertTrue(fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC)
            st, want = os.fstat(fd), os.stat(path)
            self.assertEqual((st.st_dev, st.st_ino), (want.st_dev, want.st_ino))
        finally:
            os.close(fd)

    def test_open_sync(self):
        IA = self.IA
        flags = IA.OpenFlags.NONE
        self.check_fd(self.emu.open_image_sync(GUEST, self.rw, IA.Mode.READ_WRITE, flags,
                                                  None), self.rw, os.O_RDWR)
        self.check_fd(self.emu.open_image_sync(GUEST, self.rw, IA.Mode.READ_ONLY, flags,
                                                  None), self.rw, os.O_RDONLY)
        self.check_fd(self.emu.open_image_sync(GUEST, self.ro, IA.Mode.READ_ONLY, flags,
                                                  None), self.ro, os.O_RDONLY)
        before = nfds()
        with self.assertRaises(self.GLib.Error) as ctx:
            self.emu.open_image_sync(GUEST, self.ro, IA.Mode.READ_WRITE, flags, None)
        msg = self.assertGError(ctx, IA.Error.NOT_GRANTED)
        self.assertIn(self.ro, msg, 'the message is the service\'s and names the image')
        with self.assertRaises(self.GLib.Error) as ctx:
            self.emu.open_image_sync('vm-other', self.ro, IA.Mode.READ_ONLY, flags, None)
        self.assertGError(ctx, IA.Error.NOT_BOUND)
        self.assertEqual(nfds(), before)

    def test_open_async_in_main_loop(self):
        IA = self.IA
        ticks = []
        self.GLib.timeout_add(5, lambda: ticks.append(1) or True)

        def start(done):
            def finished(client, res):
                try:
                    done(client.open_image_finish(res))
                except self.GLib.Error as e:
                    done(e)
            self.emu.open_image(GUEST, self.rw, IA.Mode.READ_WRITE, IA.OpenFlags.NONE, None,
                                   finished)
        fd = self.run_loop(start)
        self.assertIsInstance(fd, int, fd)
        self.check_fd(fd, self.rw, os.O_RDWR)

        # a refusal arrives as a GError in the callback
        err = self.run_loop(lambda done: self.emu.open_image(
            GUEST, self.ro, IA.Mode.READ_WRITE, IA.OpenFlags.NONE, None,
            lambda c, res: done(self._finish_or_error(c.open_image_finish, res))))
        self.assertTrue(err.matches(IA.error_quark(), IA.Error.NOT_GRANTED), err)

        # several at once, and other manager calls on the same loop
        results = self.run_loop(lambda done: self._several(done))
        self.assertEqual(sorted(results), ['grants', 'guests', 'ro', 'rw'])

    def _finish_or_error(self, finish, res):
        try:
            return finish(res)
        except self.GLib.Error as e:
            return e

    def _several(self, done):
        IA = self.IA
        got = []

        def one(name, value):
            if isinstance(value, int):
                os.close(value)
            got.append(name)
            if len(got) == 4:
                done(got)
        for name, path, mode in (('rw', self.rw, IA.Mode.READ_WRITE),
                                 ('ro', self.ro, IA.Mode.READ_ONLY)):
            self.emu.open_image(GUEST, path, mode, IA.OpenFlags.NONE, None,
                                   lambda c, res, n=name: one(n, c.open_image_finish(res)))
        self.client.list_guests(None, lambda c, res: one('guests', len(c.list_guests_finish(res))
                                                         and None))
        self.client.list_grants(GUEST, None,
                                lambda c, res: one('grants', len(c.list_grants_finish(res))
                                                   and None))

    def test_cancel(self):
        IA = self.IA
        # cancelled before the call: fails at once, nothing sent
        cancellable = self.Gio.Cancellable()
        cancellable.cancel()
        err = self.run_loop(lambda done: self.emu.open_image(
            GUEST, self.rw, IA.Mode.READ_WRITE, IA.OpenFlags.NONE, cancellable,
            lambda c, res: done(self._finish_or_error(c.open_image_finish, res))))
        self.assertTrue(err.matches(self.Gio.io_error_quark(), self.Gio.IOErrorEnum.CANCELLED))
        # counted after the first GLib.MainLoop.run(): PyGObject's SIGINT handling starts
        # GLib's worker context, with an eventfd of its own, there
        before = fds()

        # cancelled while in flight: CANCELLED, and the fd that still arrives is closed
        cancellable = self.Gio.Cancellable()

        def start(done):
            self.emu.open_image(GUEST, self.rw, IA.Mode.READ_WRITE, IA.OpenFlags.NONE,
                                   cancellable,
                                   lambda c, res: done(self._finish_or_error(
                                       c.open_image_finish, res)))
            cancellable.cancel()
        err = self.run_loop(start)
        self.assertTrue(err.matches(self.Gio.io_error_quark(), self.Gio.IOErrorEnum.CANCELLED),
                        err)
        # The reply still comes (the service opens in a worker, so it may come after later
        # calls' replies) and the library drops it with its fd: run the loop until then.
        # A leaked fd would stay, and fail the comparison below after the bound.
        ctx = self.GLib.MainContext.default()
        deadline = time.monotonic() + 10
        while fds() != before and time.monotonic() < deadline:
            self.GLib.timeout_add(50, lambda: False)
            ctx.iteration(True)
        self.assertEqual(fds(), before, 'the fd of the cancelled open was not leaked')



def gdbus_proxy_test_path():
    """tests/client/gdbus-proxy-test of the build that made $IA_DAEMON."""
    build = os.path.dirname(os.path.dirname(os.path.abspath(os.environ.get('IA_DAEMON', '/'))))
    return os.path.join(build, 'tests', 'client', 'gdbus-proxy-test')


class GdbusCodegenTests(testbed.IaTestCase):
    """A proxy generated by gdbus-codegen from the interface XML opens an image: the
    org.gtk.GDBus.C.UnixFD annotation gives its OpenImage call the fd list the fd comes in."""

    def run_proxy(self, user, *args):
        u = self.bed.users[user]
        p = subprocess.run(['setpriv', '--reuid=%d' % u.uid, '--regid=%d' % u.gid,
                            '--clear-groups', '--', gdbus_proxy_test_path(), self.bed.address]
                           + list(args), env=self.bed.base_env(), capture_output=True,
                           text=True, timeout=60)
        self.assertEqual((p.returncode, p.stderr), (0, ''))
        return json.loads(p.stdout)

    def test_generated_proxy_opens_an_image(self):
        path = gdbus_proxy_test_path()
        self.assertTrue(os.access(path, os.X_OK), '%s is not built' % path)
        emu = self.bed.users['ia-emu1']
        mgr = self.bed.local
        self.assertOk(mgr.manager('RegisterGuest', 'sa{sv}',
                                  ['vm1', {'uid': {'$v': ['u', emu.uid]}}]))
        rw = self.bed.make_image('rw.img', b'rw')
        ro = self.bed.make_image('ro.img', b'ro')
        self.assertOk(mgr.manager('GrantImage', 'sssa{sv}', ['vm1', rw, 'read-write', {}]))
        self.assertOk(mgr.manager('GrantImage', 'sssa{sv}', ['vm1', ro, 'read-only', {}]))

        res = self.run_proxy('ia-emu1', 'vm1', rw, 'read-write')
        self.assertEqual((res.get('accmode'), res.get('cloexec')), ('O_RDWR', True), res)
        res = self.run_proxy('ia-emu1', 'vm1', ro, 'read-only')
        self.assertEqual(res.get('accmode'), 'O_RDONLY', res)
        res = self.run_proxy('ia-emu1', 'vm1', ro, 'read-write')
        self.assertEqual(res.get('error'), 'org.example.ImageAccess.Error.NotGranted', res)


if __name__ == '__main__':
    testbed.main()

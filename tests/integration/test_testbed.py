#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""
Tests of the integration test bed itself, against the real dbus-daemon and polkitd: polkit
answers on the private bus, rules change answers at runtime, broken (non-ES5) rules are
caught, callers really run as distinct uids, the host is left untouched and no process
survives.  The daemon-facing half of the bed (start/kill/restart, fd passing, the project's
bus policy) is checked with a stand-in service, so this file needs no built image-accessd.
"""

import contextlib
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testbed  # noqa: E402

RULE_ALLOW_EMU1 = '''\
polkit.addRule(function(action, subject) {
    if (action.id == "org.example.imageaccess.test-only" && subject.user == "ia-emu1")
        return polkit.Result.YES;
    return polkit.Result.NOT_HANDLED;
});
'''

RULE_ALLOW_OPERATORS = '''\
polkit.addRule(function(action, subject) {
    if (action.id == "org.example.imageaccess.test-only" && subject.isInGroup("ia-operators"))
        return polkit.Result.YES;
    return polkit.Result.NOT_HANDLED;
});
'''

RULE_ES6 = '''\
polkit.addRule((action, subject) => {
    let allowed = action.id == "org.example.imageaccess.test-only";
    return allowed ? polkit.Result.YES : polkit.Result.NOT_HANDLED;
});
'''

# A stand-in for image-accessd: same command line, owns the same name, and exports a few
# methods on the project's interfaces (plus one on an interface the bus policy must block).
FAKE_DAEMON = r'''#!/usr/bin/python3
import os, signal, sys
import dbus, dbus.bus, dbus.service, dbus.mainloop.glib
from gi.repository import GLib

args = dict(a[2:].split('=', 1) for a in sys.argv[1:] if a.startswith('--') and '=' in a)
print('fake daemon: args', sys.argv[1:], file=sys.stderr, flush=True)
if '--fail' in sys.argv:
    print('fake daemon: failing on purpose', file=sys.stderr, flush=True)
    sys.exit(3)
dbus.mainloop.glib.DBusGMainLoop(set_as_default=True)
bus = dbus.bus.BusConnection(args['bus-address'])
IFACE = 'org.example.ImageAccess'

class Service(dbus.service.Object):
    @dbus.service.method(IFACE, in_signature='sssa{sv}', out_signature='h')
    def OpenImage(self, guest, path, mode, options):
        acc = {'read-only': os.O_RDONLY, 'read-write': os.O_RDWR}[mode]
        fd = os.open(path, acc | os.O_CLOEXEC | os.O_NOCTTY)
        try:
            return dbus.types.UnixFd(fd)  # dups it
        finally:
            os.close(fd)

    @dbus.service.method(IFACE, in_signature='a{sv}', out_signature='a{ss}')
    def Echo(self, options):
        return {k: type(v).__name__ for k, v in options.items()}

    @dbus.service.method(IFACE, in_signature='', out_signature='b', message_keyword='msg')
    def Interactive(self, msg):
        return msg.get_allow_interactive_authorization()

    @dbus.service.method(IFACE, in_signature='d', out_signature='')
    def Sleep(self, seconds):
        import time
        time.sleep(seconds)

    @dbus.service.method(IFACE, in_signature='s', out_signature='')
    def Emit(self, text):
        self.Happened(text)

    @dbus.service.signal(IFACE, signature='s')
    def Happened(self, text):
        pass

    @dbus.service.method('org.example.ImageAccess.Manager', in_signature='sh',
                         out_signature='i')
    def BindProcess(self, guest, pidfd):
        fd = pidfd.take()
        try:
            with open('/proc/self/fdinfo/%d' % fd) as f:
                return int([l.split()[1] for l in f if l.startswith('Pid:')][0])
        finally:
            os.close(fd)

    @dbus.service.method('org.example.NotAllowed', in_signature='', out_signature='s')
    def Secret(self):
        return 'reached'

loop = GLib.MainLoop()
GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)  # before the name
Service(bus, '/org/example/ImageAccess')
name = dbus.service.BusName('org.example.ImageAccess', bus)
loop.run()
print('fake daemon: clean exit', file=sys.stderr, flush=True)
'''

HOST_PATHS = ['/etc/passwd', '/etc/group', '/etc/polkit-1/rules.d',
              '/usr/share/polkit-1/actions', '/usr/share/polkit-1/rules.d']


def snapshot(paths):
    """Contents and metadata of files, and of every file in directories."""
    snap = {}
    for p in paths:
        entries = [p] + ([os.path.join(p, n) for n in sorted(os.listdir(p))]
                         if os.path.isdir(p) else [])
        for e in entries:
            st = os.lstat(e)
            digest = None
            if os.path.isfile(e):
                with open(e, 'rb') as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
            snap[e] = (st.st_mode, st.st_uid, st.st_size, st.st_mtime_ns, st.st_ino, digest)
    return snap


class PolkitTests(testbed.IaTestCase):
    """The real polkitd on the private bus, with the test's rules and actions."""

    daemon_autostart = False
    bed_options = {'actions': [testbed.TEST_ONLY_POLICY]}

    def authorized(self, agent):
        return self.assertOk(agent.polkit_check(testbed.TEST_ONLY_ACTION))[0][0]

    def test_polkitd_answers_on_private_bus(self):
        # root: authorized before any rule runs; a test user: the defaults (allow_any=no)
        self.assertEqual(self.assertOk(self.bed.local.polkit_check(testbed.TEST_ONLY_ACTION)),
                         [[True, False, {}]])
        self.assertEqual(self.assertOk(self.bed.agent('ia-desk').polkit_check(
            testbed.TEST_ONLY_ACTION)), [[False, False, {}]])
        # an unknown action is an error, not a yes
        r = self.bed.local.polkit_check('org.example.imageaccess.no-such-action')
        self.assertFalse(r.ok and r.values[0][0], r)
        # a stock tool finds the private bus through DBUS_SYSTEM_BUS_ADDRESS
        env = self.bed.base_env()
        pk = subprocess.run(['pkcheck', '--action-id', testbed.TEST_ONLY_ACTION,
                             '--process', str(os.getpid())], env=env, capture_output=True)
        self.assertEqual(pk.returncode, 0, pk.stderr)
        pk = subprocess.run(['setpriv', '--reuid=61005', '--regid=61005', '--clear-groups',
                             '/bin/sh', '-c', 'exec pkcheck --action-id "$1" --process $$',
                             'sh', testbed.TEST_ONLY_ACTION], env=env, capture_output=True)
        self.assertEqual(pk.returncode, 1, pk.stderr)  # 1: not authorized

    def test_project_actions_visible(self):
        if not os.path.exists(self.bed.polkit_policy):
            self.skipTest('%s does not exist yet' % self.bed.polkit_policy)
        with open(self.bed.polkit_policy) as f:
            ids = set(__import__('re').findall(r'<action id="([^"]+)"', f.read()))
        self.assertTrue(ids)
        r = self.bed.local.call('EnumerateActions', 's', [''], iface=testbed.POLKIT_IFACE,
                                path=testbed.POLKIT_PATH, dest=testbed.POLKIT_NAME)
        visible = {a[0] for a in self.assertOk(r)[0]}
        self.assertEqual(visible, ids | {testbed.TEST_ONLY_ACTION},
                         'only the project\'s and the test\'s actions are visible')

    def test_rules_change_answer_at_runtime(self):
        emu1, emu2 = self.bed.agent('ia-emu1'), self.bed.agent('ia-emu2')
        self.assertFalse(self.authorized(emu1))
        self.bed.set_rules('50-test.rules', RULE_ALLOW_EMU1)
        self.assertTrue(self.authorized(emu1))
        self.assertFalse(self.authorized(emu2))
        # replacing the file takes effect too
        self.bed.set_rules('50-test.rules', RULE_ALLOW_EMU1.replace('ia-emu1', 'ia-emu2'))
        self.assertFalse(self.authorized(emu1))
        self.assertTrue(self.authorized(emu2))
        self.bed.remove_rules('50-test.rules')
        self.assertFalse(self.authorized(emu2))
        # many quick changes: every answer reflects the rules on disk at that moment
        for i in range(10):
            who = 'ia-emu1' if i % 2 == 0 else 'ia-emu2'
            self.bed.set_rules('50-test.rules', RULE_ALLOW_EMU1.replace('ia-emu1', who))
            self.assertEqual(self.authorized(emu1), who == 'ia-emu1', i)
            self.assertEqual(self.authorized(emu2), who == 'ia-emu2', i)

    def test_groups_from_private_group_file(self):
        # polkit's isInGroup() reads /etc/group: the private copy in polkitd's namespace
        self.bed.set_rules('50-operators.rules', RULE_ALLOW_OPERATORS)
        self.assertTrue(self.authorized(self.bed.agent('ia-op')))
        self.assertTrue(self.authorized(self.bed.agent('ia-op', groups=[])),
                        'membership comes from the group file, not the process')
        self.assertFalse(self.authorized(self.bed.agent('ia-desk')))

    def test_polkitd_stop_hang_and_restart(self):
        self.bed.set_rules('50-test.rules', RULE_ALLOW_EMU1)
        emu1 = self.bed.agent('ia-emu1')
        old = self.bed.polkitd_pid
        # a hang: SIGSTOP holds every check
        self.bed.signal_polkitd(signal.SIGSTOP)
        self.assertError(emu1.polkit_check(testbed.TEST_ONLY_ACTION, timeout=0.3),
                         'org.freedesktop.DBus.Error.NoReply')
        self.bed.signal_polkitd(signal.SIGCONT)
        self.assertTrue(self.authorized(emu1))
        # unreachable: no owner of the name
        self.assertIn(self.bed.kill_polkitd(), (0, -signal.SIGTERM))
        self.assertIsNone(self.bed.polkitd_pid)
        self.assertError(emu1.polkit_check(testbed.TEST_ONLY_ACTION),
                         'org.freedesktop.DBus.Error.ServiceUnknown')
        self.bed.start_polkitd()
        self.assertNotEqual(self.bed.polkitd_pid, old)
        self.assertTrue(self.authorized(emu1), 'the rules on disk are loaded again')
        self.bed.set_rules('50-test.rules', RULE_ALLOW_EMU1.replace('ia-emu1', 'ia-emu2'))
        self.assertFalse(self.authorized(emu1))

    def test_initial_rules(self):
        with testbed.TestBed(rules={'50-test.rules': RULE_ALLOW_EMU1},
                             actions=[testbed.TEST_ONLY_POLICY]) as bed:
            self.assertTrue(self.authorized(bed.agent('ia-emu1')))
            self.assertFalse(self.authorized(bed.agent('ia-emu2')))

    def test_broken_rules_detected(self):
        emu1 = self.bed.agent('ia-emu1')
        with self.assertRaisesRegex(AssertionError, 'rejected 60-es6.rules'):
            self.bed.set_rules('60-es6.rules', RULE_ES6)
        errors = self.bed.rules_errors()
        self.assertTrue(errors)
        for line in errors:  # once per reload
            self.assertIn('Error compiling script /etc/polkit-1/rules.d/60-es6.rules', line)
        # the broken file is skipped: the defaults (deny) apply
        self.assertFalse(self.authorized(emu1))
        with self.assertRaisesRegex(AssertionError, 'broken rules'):
            self.bed.check_rules_errors()
        # `let` alone is enough to break a file
        self.bed.set_rules('60-es6.rules', 'let x = 1;\n' + RULE_ALLOW_EMU1, check=False)
        self.assertFalse(self.authorized(emu1))
        self.bed.remove_rules('60-es6.rules')
        self.bed.acknowledge_rules_errors()  # expected here; teardown would fail otherwise
        self.bed.check_rules_errors()


class IdentityTests(testbed.IaTestCase):
    daemon_autostart = False

    def test_agents_run_as_distinct_uids(self):
        seen = set()
        for name, user in sorted(self.bed.users.items()):
            a = self.bed.agent(name)
            me = a.whoami()
            self.assertEqual((me['uid'], me['euid'], me['gid'], me['egid']),
                             (user.uid, user.uid, user.gid, user.gid))
            self.assertEqual(sorted(me['groups']), sorted(user.groups))
            self.assertEqual(self.bed.connection_uid(a.unique_name), user.uid)
            self.assertEqual(self.bed.connection_pid(a.unique_name), a.pid)
            with open('/proc/%d/status' % a.pid) as f:
                status = dict(line.split(':', 1) for line in f)
            self.assertEqual(status['CapEff'].strip(), '0' * 16)
            self.assertEqual(status['Uid'].split(), [str(user.uid)] * 4)  # saved uid too
            seen.add(a.unique_name)
        root = self.bed.agent('root')
        self.assertEqual(self.bed.connection_uid(root.unique_name), 0)
        nobody = self.bed.agent(65534)
        self.assertEqual(self.bed.connection_uid(nobody.unique_name), 65534)
        self.assertEqual(self.bed.connection_uid(self.bed.local.unique_name), 0)
        self.assertEqual(len(seen), len(self.bed.users))

    def test_reconnect_gives_new_unique_name(self):
        a = self.bed.agent('ia-emu1')
        old = a.unique_name
        new = a.reconnect()
        self.assertNotEqual(old, new)
        self.assertEqual(a.get_unique_name(), new)
        self.assertEqual(self.bed.connection_uid(new), 61002)
        self.assertFalse(self.bed.bus.name_has_owner(old))

    def test_host_untouched_and_nothing_left(self):
        before = snapshot(HOST_PATHS)
        with testbed.TestBed(rules={'40-a.rules': RULE_ALLOW_EMU1},
                             actions=[testbed.TEST_ONLY_POLICY]) as bed:
            pids = bed.pids()
            agents = [bed.agent(n) for n in ('ia-mgr', 'ia-op')]
            bed.set_rules('50-test.rules', RULE_ALLOW_OPERATORS)
            polkitd = pids['polkitd']
            # inside polkitd's namespace the test users exist; on the host they do not
            with open('/proc/%d/root/etc/passwd' % polkitd) as f:
                self.assertIn('ia-emu1:x:61002:', f.read())
            with open('/proc/%d/root/etc/group' % polkitd) as f:
                self.assertIn('ia-operators:x:61050:ia-op', f.read())
            self.assertEqual(sorted(os.listdir('/proc/%d/root/etc/polkit-1/rules.d' % polkitd)),
                             ['40-a.rules', '50-test.rules', 'zzzz-ia-testbed-sync.rules'])
            self.assertEqual(os.listdir('/proc/%d/root/usr/share/polkit-1/rules.d' % polkitd),
                             [])
            with open('/proc/self/mountinfo') as f:
                self.assertNotIn(bed.runtime_dir, f.read())
            self.assertEqual(snapshot(HOST_PATHS), before)
            self.assertEqual({p for p, _ in bed.find_leftovers()},
                             set(pids.values()) | {a.pid for a in agents})
            all_pids = set(bed.pids().values())
            runtime_dir = bed.runtime_dir
        for pid in all_pids:
            self.assertFalse(os.path.exists('/proc/%d' % pid), pid)
        self.assertEqual(bed.find_leftovers(), [])
        self.assertFalse(os.path.exists(runtime_dir))
        self.assertEqual(snapshot(HOST_PATHS), before)
        with open('/etc/passwd') as f:
            self.assertNotIn('ia-emu1', f.read())

    def test_nothing_left_when_test_process_is_killed(self):
        # A test process killed with SIGKILL (no cleanup at all): the bus, the daemon and the
        # agents die by PR_SET_PDEATHSIG, polkitd exits when its bus goes away.
        script = textwrap.dedent('''
            import sys, time
            sys.path.insert(0, %r)
            import testbed
            bed = testbed.TestBed().start()
            bed.agent('ia-emu1'); bed.agent('root')
            print(bed.token, bed.runtime_dir, flush=True)
            time.sleep(60)
        ''' % os.path.dirname(os.path.abspath(__file__)))
        p = subprocess.Popen([testbed.PYTHON, '-c', script], stdout=subprocess.PIPE)
        token, runtime_dir = p.stdout.readline().decode().split()
        probe = testbed.TestBed()
        probe.token = token
        self.assertEqual(len(probe.find_leftovers()), 4)
        p.kill()
        p.wait()
        p.stdout.close()
        deadline = time.monotonic() + 5
        while probe.find_leftovers() and time.monotonic() < deadline:
            time.sleep(0.02)
        left = probe.find_leftovers()
        for pid, _ in left:
            os.kill(pid, signal.SIGKILL)
        subprocess.run(['rm', '-rf', '--one-file-system', runtime_dir], check=True)
        self.assertEqual(left, [])

    def test_failure_prints_logs(self):
        class Inner(testbed.IaTestCase):
            daemon_autostart = False

            def test_fails(self):
                self.bed.agent('ia-emu1')
                self.fail('on purpose')

            def test_passes(self):
                pass

        for name, should_dump in (('test_fails', True), ('test_passes', False)):
            err = io.StringIO()
            result = unittest.TestResult()
            with contextlib.redirect_stderr(err):
                Inner(name).run(result)
            self.assertEqual(result.wasSuccessful(), not should_dump)
            out = err.getvalue()
            if should_dump:
                for part in ('===== dbus-daemon:', '===== polkitd:', '===== agent-ia-emu1-1:',
                             'Acquired the name org.freedesktop.PolicyKit1'):
                    self.assertIn(part, out)
            else:
                self.assertNotIn('=====', out)


class DaemonSideTests(testbed.IaTestCase):
    """The daemon half of the bed, and the project's bus policy, with a stand-in service."""

    daemon_autostart = False
    bed_options = {'actions': [testbed.TEST_ONLY_POLICY]}

    def setUp(self):
        super().setUp()
        fake = os.path.join(self.bed.runtime_dir, 'fake-image-accessd')
        with open(fake, 'w') as f:
            f.write(FAKE_DAEMON)
        os.chmod(fake, 0o755)
        self.bed.daemon_path = fake
        self.bed.start_daemon()

    def test_daemon_lifecycle(self):
        pid = self.bed.daemon_pid
        self.assertTrue(self.bed.bus.name_has_owner(testbed.BUS_NAME))
        log = self.bed.log_text('daemon')
        self.assertIn("'--bus-address=%s'" % self.bed.address, log)
        self.assertIn("'--state-dir=%s'" % self.bed.state_dir, log)
        self.assertIn("'--log-level=debug'", log)
        self.assertEqual(self.bed.kill_daemon(signal.SIGTERM), 0)
        self.assertFalse(self.bed.bus.name_has_owner(testbed.BUS_NAME))
        self.assertIsNone(self.bed.daemon_pid)
        self.bed.start_daemon(['--extra=1'], config='[Daemon]\n')
        self.assertNotEqual(self.bed.daemon_pid, pid)
        self.assertIn("'--extra=1'", self.bed.log_text('daemon'))
        self.assertIn("'--config=%s'" % os.path.join(self.bed.runtime_dir, 'image-access.conf'),
                      self.bed.log_text('daemon'))
        self.assertEqual(self.bed.restart_daemon(signal.SIGKILL), -signal.SIGKILL)
        self.assertEqual(self.bed.log_text('daemon').count("'--extra=1'"), 2,
                         'restart reuses the arguments')
        self.assertTrue(self.bed.bus.name_has_owner(testbed.BUS_NAME))
        fds = self.bed.daemon_fds()
        self.assertTrue(any(f['target'].startswith('socket:') for f in fds), fds)

    def test_daemon_start_failure_shows_log(self):
        self.bed.kill_daemon()
        with self.assertRaisesRegex(testbed.TestBedError,
                                    r'(?s)exited during start-up \(status 3\).*on purpose'):
            self.bed.start_daemon(['--fail'])

    def test_bus_policy(self):
        emu = self.bed.agent('ia-emu1')
        self.assertEqual(self.assertOk(emu.call('Echo', 'a{sv}', [{}])), [{}])
        for iface, method in (('org.freedesktop.DBus.Peer', 'Ping'),
                              ('org.freedesktop.DBus.Introspectable', 'Introspect')):
            self.assertOk(emu.call(method, iface=iface))
        # an interface the policy does not list is blocked by the bus, for root too
        for caller in (emu, self.bed.local):
            r = caller.call('Secret', iface='org.example.NotAllowed')
            self.assertError(r, 'org.freedesktop.DBus.Error.AccessDenied')
            self.assertIn('Rejected send message', r.message)
        # only root may own the name
        r = emu.call('RequestName', 'su', [testbed.BUS_NAME, 0], dest='org.freedesktop.DBus',
                     path='/org/freedesktop/DBus', iface='org.freedesktop.DBus')
        self.assertError(r, 'org.freedesktop.DBus.Error.AccessDenied')

    def test_fd_passing(self):
        path = self.bed.make_image('disk.img', b'hello image', mode=0o644)
        emu = self.bed.agent('ia-emu1')
        n = emu.fdcount()
        r = emu.open_image('vm1', path, 'read-only', read=5, write=b'X')
        self.assertOk(r)
        fd = r.fd()
        self.assertEqual(r.values, [{'fd': fd['fd']}])
        st = os.stat(path)
        self.assertEqual((fd['st_dev'], fd['st_ino'], fd['type']), (st.st_dev, st.st_ino, 'reg'))
        self.assertEqual(fd['accmode'], 'O_RDONLY')
        self.assertIs(fd['cloexec'], False)  # the receiver's flag: dbus-python dup()s
        self.assertEqual(fd['read'], b'hello')
        self.assertEqual(fd['write_errno'], 'EBADF')
        self.assertEqual(fd['path'], path)
        self.assertEqual(emu.fdcount(), n + 1)
        self.assertEqual(emu.fd(fd['fd'], read=5, offset=6)['read'], b'image')
        emu.close_fd(fd['fd'])
        self.assertEqual(emu.fdcount(), n)
        rw = self.bed.local.open_image('vm1', path, 'read-write', write=b'J')
        self.assertEqual(rw.fd()['accmode'], 'O_RDWR')
        self.assertEqual(rw.fd()['write'], 1)
        with open(path, 'rb') as f:
            self.assertEqual(f.read(), b'Jello image')
        self.assertEqual(os.fstat(self.bed.local.raw_fd(rw.fd()['fd'])).st_ino, st.st_ino)
        # errors come back by name
        r = emu.open_image('vm1', '/nonexistent', 'read-only')
        self.assertFalse(r.ok)
        self.assertIn('FileNotFoundError', r.message)
        self.assertEqual(self.bed.daemon_fds(), [f for f in self.bed.daemon_fds()
                                                 if f['target'] != path],
                         'the service keeps no copy')

    def test_pidfd_and_typed_arguments(self):
        mgr, emu = self.bed.agent('ia-mgr'), self.bed.agent('ia-emu1')
        r = mgr.manager('BindProcess', 'sh', ['vm1', {'pidfd_of': emu.pid}])
        self.assertEqual(self.assertOk(r), [emu.pid])
        r = mgr.manager('BindProcess', 'sh', ['vm1', {'pidfd_of': 'self'}])
        self.assertEqual(self.assertOk(r), [mgr.pid])
        held = mgr.pidfd(emu.pid)
        self.assertEqual(self.assertOk(mgr.manager('BindProcess', 'sh',
                                                   ['vm1', {'fd': held['fd']}])), [emu.pid])
        r = mgr.call('Echo', 'a{sv}', [{'uid': {'$v': ['u', 61002]}, 'n': 5, 's': 'x',
                                       'b': True, 'l': ['a'], 't': {'$v': ['t', 2**40]}}])
        self.assertEqual(self.assertOk(r), [{'uid': 'UInt32', 'n': 'Int32', 's': 'String',
                                             'b': 'Boolean', 'l': 'Array', 't': 'UInt64'}])
        # a malformed request is an agent error; the agent lives on
        self.assertError(mgr.call('Echo', 'a{sv}', [[1]]), 'agent.AgentError')
        self.assertError(mgr.call('Echo', 'a{sv}', []), 'agent.AgentError')
        self.assertEqual(mgr.whoami()['uid'], 61001)

    def test_interactive_flag(self):
        emu = self.bed.agent('ia-emu1')
        self.assertEqual(self.assertOk(emu.call('Interactive')), [False])
        self.assertEqual(self.assertOk(emu.call('Interactive', interactive=True)), [True])
        self.assertEqual(self.assertOk(self.bed.local.call('Interactive', interactive=True)),
                         [True])

    def test_async_calls_and_signals(self):
        emu = self.bed.agent('ia-emu1')
        slow = emu.call_async('Sleep', 'd', [0.3])
        pings = [emu.call_async('Ping', iface='org.freedesktop.DBus.Peer') for _ in range(20)]
        for p in pings:
            self.assertOk(p.wait())
        self.assertOk(slow.wait())
        r = emu.call_async('Sleep', 'd', [0.5], timeout=0.1).wait()
        self.assertError(r, 'org.freedesktop.DBus.Error.NoReply')
        emu.subscribe("type='signal',interface='org.example.ImageAccess',member='Happened'")
        self.assertOk(self.bed.local.call('Emit', 's', ['one']))
        sigs = emu.signals(count=1, timeout=5)
        self.assertEqual([(s['member'], s['args']) for s in sigs], [('Happened', ['one'])])
        self.assertEqual(emu.signals(), [])

    def test_rules_sync_pings_daemon(self):
        # with a daemon running, set_rules also round-trips to it (Changed processed)
        self.bed.set_rules('50-test.rules', RULE_ALLOW_EMU1)
        self.assertTrue(self.assertOk(self.bed.agent('ia-emu1').polkit_check(
            testbed.TEST_ONLY_ACTION))[0][0])


# Runs in `unshare -m`: puts the build at DIR/a b/build (DIR is 0700) by a bind mount, points
# the IA_* variables there, as a checkout in a private home would, and starts a bed.
REACH_SCRIPT = r'''
import json, os, subprocess, sys
sys.path.insert(0, sys.argv[3])
d, build = sys.argv[1], sys.argv[2]
inner = os.path.join(d, 'a b', 'build')
os.makedirs(inner)
subprocess.run(['mount', '--bind', build, inner], check=True)
for var in ('IA_CTL', 'IA_PRELOAD_SHIM'):
    os.environ[var] = os.path.join(inner, os.path.relpath(os.environ[var], build))
os.environ['IA_BUILD_ROOT'] = inner
if len(sys.argv) > 4:   # a directory test users must reach that is itself 0700
    os.mkdir(os.path.join(d, 'a b', 'private'), 0o700)
    os.environ['IA_EXAMPLES_DIR'] = os.path.join(d, 'a b', 'private')
import testbed, qemuvm
out = {}
try:
    bed = testbed.TestBed().start()
except testbed.TestBedError as e:
    print(json.dumps({'error': str(e)}))
    sys.exit(0)
try:
    setpriv = ['setpriv', '--reuid=61002', '--regid=61002', '--clear-groups', '--']
    r = subprocess.run(setpriv + [os.environ['IA_CTL'], '--help'], env=bed.base_env(),
                       capture_output=True, text=True)
    out['ctl'] = [r.returncode, r.stderr]
    r = subprocess.run(setpriv + ['/bin/true'], capture_output=True, text=True,
                       env=bed.base_env(LD_PRELOAD=qemuvm.shim_path(bed)))
    out['preload'] = [r.returncode, r.stderr]
    out['mode_inside'] = os.stat(d).st_mode & 0o7777
finally:
    bed.stop()
    bed.remove()
print(json.dumps(out))
'''


class ReachabilityTests(unittest.TestCase):
    """A checkout below a directory only root can traverse, in a path with spaces: test users
    still run the built CLI and preload the shim, and no mode on disk changes."""

    def setUp(self):
        reason = testbed.missing_requirements()
        if reason:
            self.fail(reason)
        for var in ('IA_CTL', 'IA_PRELOAD_SHIM', 'IA_BUILD_ROOT'):
            if not os.environ.get(var):
                self.fail('%s is not set (run through meson test)' % var)
        self.dir = tempfile.mkdtemp(prefix='ia-reach-')     # 0700, like /root
        self.addCleanup(subprocess.run, ['rm', '-rf', '--one-file-system', self.dir])

    def run_script(self, *extra):
        p = subprocess.run(['unshare', '-m', '--propagation', 'private', '--', testbed.PYTHON,
                            '-c', REACH_SCRIPT, self.dir, os.environ['IA_BUILD_ROOT'],
                            testbed.HERE] + list(extra), capture_output=True, text=True,
                           timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        return json.loads(p.stdout.splitlines()[-1])

    def test_build_under_private_dir_with_spaces(self):
        out = self.run_script()
        self.assertNotIn('error', out)
        self.assertEqual(out['ctl'], [0, ''])
        self.assertEqual(out['preload'], [0, ''])   # ld.so prints why a preload fails
        self.assertEqual(out['mode_inside'], 0o711)
        self.assertEqual(os.stat(self.dir).st_mode & 0o7777, 0o700)  # on disk: unchanged

    def test_unreachable_says_why(self):
        """A directory that is itself needed cannot be covered: the bed says which and why."""
        out = self.run_script('private-needed')
        self.assertIn('error', out)
        self.assertIn("%s/a b/private: directory %s/a b/private has mode 0700 (others may not "
                      "traverse it)" % (self.dir, self.dir), out['error'])
        self.assertIn('umask 077', out['error'])

if __name__ == '__main__':
    testbed.main()

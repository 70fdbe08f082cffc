#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""
Who may act as a guest's emulator (docs/identity.md), against the real bus and the built
daemon: uid bindings, process bindings and their four conditions, the pid-reuse attack mounted
for real, BindProcess's refusals, and bindings across a kill -9 of the service.

Processes whose pid matters are placed on a chosen pid through /proc/sys/kernel/ns_last_pid
(root in the initial pid namespace): write P-1, fork, and the child is P, unless another
process on the machine forked in between, in which case the step is retried.
"""

import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import attackhelper  # noqa: E402
import testbed  # noqa: E402

E = 'org.example.ImageAccess.Error.'
NOT_BOUND = E + 'NotBound'
AUTH_UNAVAILABLE = E + 'AuthorizationUnavailable'
UNKNOWN_GUEST = E + 'UnknownGuest'
INVALID_PROCESS = E + 'InvalidProcess'
INVALID_OPTION = E + 'InvalidOption'
# without the interactive flag, and with it when there is no polkit agent to ask
DENIED = ('org.freedesktop.DBus.Error.InteractiveAuthorizationRequired',
          'org.example.ImageAccess.Error.AuthenticationFailed')

EMU1 = testbed.USERS['ia-emu1']
EMU2 = testbed.USERS['ia-emu2']
NS_LAST_PID = '/proc/sys/kernel/ns_last_pid'
PID_ATTEMPTS = 25

# An agent (agent.py's protocol) whose process exists before its bus connection: it prints
# {"waiting": ...}, and connects only when told to, optionally changing its uid first.
LATE_AGENT_PY = r'''
import json, os, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

def say(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()

say({"waiting": {"pid": os.getpid(), "uid": os.getuid(), "euid": os.geteuid()}})
cmd = json.loads(sys.stdin.readline() or '{"cmd": "exit"}')
if cmd.get("cmd") == "exit":
    say({"ok": True})
    sys.exit(0)
if cmd.get("setuid") is not None:
    os.setgroups([])
    os.setgid(cmd["setuid"])
    os.setuid(cmd["setuid"])
import agent
agent.main()
'''

# The attacker of docs/identity.md: connects (the bus records its pid), makes a harmless call
# so the service has seen the connection, forks a child that inherits the connection's socket,
# and exits without closing it.  The child then calls OpenImage on that old connection when
# told to, and answers in JSON.
ATTACKER_PY = r'''
import json, os, sys
import dbus, dbus.bus

address, bus_name, path = sys.argv[1:4]
conn = dbus.bus.BusConnection(address)
conn.call_blocking(bus_name, path, "org.freedesktop.DBus.Peer", "Ping", "", [])
if len(sys.argv) > 4:   # GUEST IMAGE: open it once before the fork, as the emulator would
    conn.call_blocking(bus_name, path, "org.example.ImageAccess", "OpenImage", "sssa{sv}",
                       [sys.argv[4], sys.argv[5], "read-only", {}]).take()
unique_name = conn.get_unique_name()
child = os.fork()
if child:
    sys.stdout.write(json.dumps({"parent": os.getpid(), "child": child,
                                 "unique_name": unique_name}) + "\n")
    sys.stdout.flush()
    os._exit(0)   # no close, no flush: the connection lives on in the child
# A pid stays taken while it names a process group: leave the parent's group, so that the
# parent's pid is really free once it is reaped.
os.setpgid(0, 0)

for line in sys.stdin:
    req = json.loads(line)
    if req["cmd"] == "open":
        try:
            fd = conn.call_blocking(bus_name, path, "org.example.ImageAccess", "OpenImage",
                                    "sssa{sv}", [req["guest"], req["path"], "read-only", {}])
            n = fd.take()
            res = {"ok": os.pread(n, 64, 0).hex()}
            os.close(n)
        except dbus.exceptions.DBusException as e:
            res = {"error": e.get_dbus_name(), "message": e.get_dbus_message()}
    elif req["cmd"] == "whoami":
        res = {"ok": {"pid": os.getpid(), "uid": os.getuid(),
                      "unique_name": conn.get_unique_name()}}
    else:
        break
    sys.stdout.write(json.dumps(res) + "\n")
    sys.stdout.flush()
'''


def pid_alive(pid):
    """True while pid names a process that is not a zombie."""
    try:
        with open('/proc/%d/stat' % pid) as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def wait_gone(pid, timeout=5.0):
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            raise AssertionError('process %d did not go away' % pid)
        time.sleep(0.005)


class LateAgent(testbed.Agent):
    """An Agent (same protocol and methods) that is started on a wanted pid, if possible, and
    connects to the bus only when connect() is called.  self.pid is its pid at once."""

    def __init__(self, bed, user, want_pid=None):
        self.bed, self.name = bed, user.name if user else 'root'
        self.uid = user.uid if user else 0
        self.gid = user.gid if user else 0
        self.groups = []
        script = os.path.join(bed.runtime_dir, 'late_agent.py')
        if not os.path.exists(script):
            with open(script, 'w') as f:
                f.write(LATE_AGENT_PY)
            os.chmod(script, 0o644)
        argv = [testbed.PYTHON, script, bed.address]
        if user:
            argv = ['setpriv', '--reuid=%d' % user.uid, '--regid=%d' % user.gid,
                    '--clear-groups', '--pdeathsig=SIGKILL', '--'] + argv
        env = bed.base_env(HOME=bed.runtime_dir, PYTHONDONTWRITEBYTECODE='1')
        bed._agent_seq += 1
        name = 'agent-late-%s-%d' % (self.name, bed._agent_seq)
        if want_pid is not None:
            with open(NS_LAST_PID, 'w') as f:
                f.write(str(want_pid - 1))
        # Nothing between the write above and the fork in Popen allocates a pid here.
        self.child = bed._spawn(name, argv, env, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        bed._agents.append(self)
        self._buf = b''
        self.pid = self.child.pid
        waiting = self._readline(testbed.START_TIMEOUT)
        if 'waiting' not in waiting or waiting['waiting']['pid'] != self.pid:
            raise testbed.TestBedError('late agent did not start: %r' % waiting)
        self.unique_name = None

    def connect(self, setuid=None):
        """Connect to the bus now; setuid: change to this uid (and gid) first."""
        self.child.popen.stdin.write(json.dumps({'setuid': setuid}).encode() + b'\n')
        self.child.popen.stdin.flush()
        ready = self._readline(testbed.START_TIMEOUT)
        if 'ready' not in ready:
            raise testbed.TestBedError('late agent did not connect: %r' % ready)
        self.unique_name = ready['ready']['unique_name']
        if setuid is not None:
            self.uid = setuid
        return self.unique_name


class Attacker:
    """ATTACKER_PY run as `user`: self.pid is the pid the bus recorded for the connection (the
    process is gone once this returns), self.child_pid the process that still holds it."""

    def __init__(self, test, user, first_open=()):
        bed = test.bed
        script = os.path.join(bed.runtime_dir, 'attacker.py')
        if not os.path.exists(script):
            with open(script, 'w') as f:
                f.write(ATTACKER_PY)
            os.chmod(script, 0o644)
        argv = ['setpriv', '--reuid=%d' % user.uid, '--regid=%d' % user.gid, '--clear-groups',
                '--', testbed.PYTHON, script, bed.address, testbed.BUS_NAME, testbed.OBJECT_PATH,
                *first_open]
        bed._agent_seq += 1
        self.proc = bed._spawn('attacker-%d' % bed._agent_seq, argv,
                               bed.base_env(PYTHONDONTWRITEBYTECODE='1'),
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.stdin, self.stdout = self.proc.popen.stdin, self.proc.popen.stdout
        info = self._read()
        self.pid, self.child_pid = info['parent'], info['child']
        self.unique_name = info['unique_name']
        test.addCleanup(self.kill)
        if self.proc.popen.wait(10) != 0:  # reaped: the pid is free again
            raise testbed.TestBedError('attacker parent failed')
        assert self.pid == self.proc.pid and not pid_alive(self.pid)

    def _read(self):
        line = self.stdout.readline()
        if not line:
            raise testbed.TestBedError('attacker exited:\n' + testbed._tail(self.proc.log_path))
        return json.loads(line)

    def request(self, req):
        self.stdin.write(json.dumps(req).encode() + b'\n')
        self.stdin.flush()
        return self._read()

    def open_image(self, guest, path):
        return self.request({'cmd': 'open', 'guest': guest, 'path': path})

    def kill(self):
        """The child is not ours to wait for (its parent exited): kill it by its pid."""
        if pid_alive(self.child_pid):
            os.kill(self.child_pid, signal.SIGKILL)
            wait_gone(self.child_pid)
        for f in (self.stdin, self.stdout):
            try:
                f.close()
            except OSError:
                pass


class IdentityTestCase(testbed.IaTestCase):
    """vm1 is bound to ia-emu1's uid; vm2 has no uid (for process bindings).  Both have a
    read-only grant of self.img."""

    def setUp(self):
        super().setUp()
        self.img = self.bed.make_image('disk.img', b'guest disk content')
        self.assertOk(self.bed.local.manager('RegisterGuest', 'sa{sv}',
                                             ['vm1', {'uid': {'$v': ['u', EMU1.uid]}}]))
        self.assertOk(self.bed.local.manager('RegisterGuest', 'sa{sv}', ['vm2', {}]))
        for g in ('vm1', 'vm2'):
            self.assertOk(self.bed.local.manager('GrantImage', 'sssa{sv}',
                                                 [g, self.img, 'read-only', {}]))

    def bind(self, pid_or_fd, guest='vm2', caller=None, options=None):
        h = pid_or_fd if isinstance(pid_or_fd, dict) else {'pidfd_of': pid_or_fd}
        return (caller or self.bed.local).manager('BindProcess', 'sha{sv}',
                                                  [guest, h, options or {}])

    def processes(self, guest='vm2'):
        guests = dict(self.assertOk(self.bed.local.manager('ListGuests'))[0])
        return guests[guest]['processes']

    def assertOpens(self, caller, guest='vm2', msg=None):
        r = caller.open_image(guest, self.img, read=5)
        self.assertOk(r, msg)
        self.assertEqual(r.fd()['read'], b'guest', msg)

    def assertNotBound(self, caller, guest='vm2', msg=None):
        r = caller.open_image(guest, self.img)
        self.assertError(r, NOT_BOUND, msg)
        self.assertEqual(r.fds, [])
        return r.message

    def late_agent_at(self, want_pid, user):
        """A LateAgent on exactly want_pid, or None when other processes kept taking it."""
        for _ in range(PID_ATTEMPTS):
            if pid_alive(want_pid) or os.path.exists('/proc/%d' % want_pid):
                return None  # someone else has it now, and may keep it
            a = LateAgent(self.bed, user, want_pid)
            if a.pid == want_pid:
                return a
            a.exit()
        return None


class UidBindingTests(IdentityTestCase):

    def test_uid_binding(self):
        emu1, emu2 = self.bed.agent('ia-emu1'), self.bed.agent('ia-emu2')
        self.assertOpens(emu1, 'vm1')
        # every process of that uid counts, whenever it connected
        self.assertOpens(self.bed.agent('ia-emu1', groups=[testbed.GROUPS['ia-operators']]),
                         'vm1')
        # the denials: another uid claiming vm1, root claiming vm1, emu1 claiming vm2
        msg_vm1 = self.assertNotBound(emu2, 'vm1')
        self.assertNotBound(self.bed.local, 'vm1')
        self.assertNotBound(emu1, 'vm2')
        # an unknown guest is answered exactly like a guest that is not yours
        msg_unknown = self.assertNotBound(emu2, 'nosuch')
        self.assertEqual(msg_unknown.replace("'nosuch'", "'vm1'"), msg_vm1,
                         'the message tells nothing either')
        self.assertNotBound(emu1, 'nosuch')
        # the binding is the guest's: gone with it, not back by registering the name again
        self.assertOk(self.bed.local.manager('UnregisterGuest', 's', ['vm1']))
        self.assertNotBound(emu1, 'vm1')
        self.assertOk(self.bed.local.manager('RegisterGuest', 'sa{sv}', ['vm1', {}]))
        self.assertOk(self.bed.local.manager('GrantImage', 'sssa{sv}',
                                             ['vm1', self.img, 'read-only', {}]))
        self.assertNotBound(emu1, 'vm1')


class PolkitSubjectTests(IdentityTestCase):
    """polkit is asked about the caller's process (pid, start time, uid), docs/polkit.md "The
    subject"; every open asks (no decision cache).  An emulator bound by uid passes identity
    with any process of that uid, so here polkit's subject is what stands between a departed
    process's connection and a yes."""
    daemon_config = '[Polkit]\nDecisionCacheSec=0\n'

    def assertGone(self, attacker):
        r = attacker.open_image('vm1', self.img)
        self.assertEqual(r.get('error'), 'org.freedesktop.DBus.Error.AccessDenied', r)
        self.assertIn('The process that made connection %s (pid %d) is gone'
                      % (attacker.unique_name, attacker.pid), r.get('message'))
        # a denial, not a polkit failure: no warning that anyone could cause at will
        self.assertNotIn('polkit check of org.example.imageaccess.open-image for %s failed'
                         % attacker.unique_name, self.bed.log_text('daemon'))
        # a live emulator of the same uid still opens
        self.assertOpens(self.bed.agent('ia-emu1'), guest='vm1')

    def test_no_yes_for_a_process_that_is_gone(self):
        """It opens once (polkit learns the process), then forks a child that keeps the
        connection, and exits: polkitd finds that process gone."""
        attacker = Attacker(self, EMU1, first_open=('vm1', self.img))
        self.assertTrue(pid_alive(attacker.child_pid), 'the old connection is held')
        self.assertGone(attacker)
        # and polkit is not asked about it again
        asked = self.bed.log_text('daemon').count('Asking polkit about org.example.imageaccess.'
                                                  'open-image for %s' % attacker.unique_name)
        self.assertGone(attacker)
        self.assertEqual(self.bed.log_text('daemon').count(
            'Asking polkit about org.example.imageaccess.open-image for %s'
            % attacker.unique_name), asked)

    def test_no_question_about_a_process_gone_before_its_first(self):
        """The parent exits before its connection asks anything: the service does not ask
        polkit about the pid at all (it may name another process by then)."""
        attacker = Attacker(self, EMU1)
        self.assertGone(attacker)
        self.assertNotIn('Asking polkit about org.example.imageaccess.open-image for %s'
                         % attacker.unique_name, self.bed.log_text('daemon'))


class ProcessBindingTests(IdentityTestCase):

    def test_process_binding_admits_only_new_connections(self):
        emu = self.bed.agent('ia-emu2')
        old_name = emu.unique_name
        self.assertNotBound(emu, msg='before any binding')
        self.assertOk(self.bed.local.manager('BindProcess', 'sha{sv}',
                                             ['vm2', {'pidfd_of': emu.pid}, {}]))
        self.assertEqual(self.processes(), 1)
        # the agent's connection predates the binding: it could be an earlier owner's of the
        # pid, so it is refused, by design
        self.assertNotBound(emu, msg='connection older than the binding')
        self.assertIn('Connection %s (pid %d) is older than the binding' % (old_name, emu.pid),
                      self.bed.log_text('daemon'))
        # a connection made after the binding is the bound process's own
        emu.reconnect()
        self.assertOpens(emu)
        self.assertOpens(emu, msg='and again, now by name')
        # ... and so is every later one of that process
        emu.reconnect()
        self.assertOpens(emu)
        # the denials: another process of the same uid, connected after the binding
        other = self.bed.agent('ia-emu2')
        self.assertNotBound(other)
        other.reconnect()
        self.assertNotBound(other)
        # the bound process claiming another guest (vm1 is bound to ia-emu1's uid)
        self.assertNotBound(emu, 'vm1')
        # the binding ends with the process; its pid holds nothing for the next process
        emu.exit()
        later = self.bed.agent('ia-emu2')
        self.assertNotBound(later)

    def test_uid_checked_when_connection_is_admitted(self):
        """Point 3: the connection's uid must be the process's effective uid when the
        connection is admitted.  A manager binds between fork and exec, often before the child
        drops to the emulator's uid: a process bound while still root that drops to ia-emu2
        before connecting is admitted.  Its uid now differs from what the bus recorded for a
        connection made before the drop: such a connection is refused (the /proc check)."""
        before = LateAgent(self.bed, None)              # root, not connected yet
        self.assertOk(self.bind(before.pid))
        before.connect(setuid=EMU2.uid)
        self.assertEqual(self.bed.connection_uid(before.unique_name), EMU2.uid)
        self.assertOpens(before)
        after = LateAgent(self.bed, EMU2)               # already ia-emu2 when bound
        self.assertOk(self.bind(after.pid))
        after.connect()
        self.assertOpens(after)

    def test_a_process_cannot_bind_itself(self):
        emu = self.bed.agent('ia-emu2')
        for interactive in (False, True):
            r = emu.manager('BindProcess', 'sha{sv}', ['vm2', {'pidfd_of': 'self'}, {}],
                            interactive=interactive)
            self.assertIn(r.error, DENIED, r)
        self.assertEqual(self.processes(), 0)
        emu.reconnect()
        self.assertNotBound(emu)
        # the allow: root binds it
        self.assertOk(self.bind(emu.pid))
        emu.reconnect()
        self.assertOpens(emu)


class LostSignalTests(IdentityTestCase):

    def test_places_of_connections_that_left_unannounced_come_back(self):
        """A binding admits at most 16 connections, and a connection gives its place back
        when it leaves the bus.  dbus-daemon drops the NameOwnerChanged that says so while the
        service's queue is full, which any local user can bring about: an emulator that
        reconnects meanwhile would run out of places for good.  The service compares its
        connections with the bus's list of names every 30 s and gives the places back."""
        emu = self.bed.agent('ia-emu2')
        self.assertOk(self.bind(emu.pid))
        refused = 'Binding of pid %d to guest \'vm2\' has too many connections' % emu.pid
        # Each round a new connection is admitted, then leaves unannounced.  (The connection
        # made while the queue is full is not announced either: it counts as older than the
        # binding and is never admitted.)  A check of the bus's names may come in the middle
        # and free places: go on until the binding is full.
        for _ in range(40):
            emu.reconnect()
            r = emu.open_image('vm2', self.img)
            if not r.ok:
                break
            with attackhelper.FullQueue(self, self.bed):
                emu.reconnect()
        self.assertError(r, NOT_BOUND)
        self.assertIn(refused, self.bed.log_text('daemon'))
        # the next check gives the places back
        deadline = time.monotonic() + 45
        while not r.ok and time.monotonic() < deadline:
            time.sleep(0.5)
            emu.reconnect()
            r = emu.open_image('vm2', self.img)
        self.assertOk(r)
        self.assertRegex(self.bed.log_text('daemon'),
                         r'Forgot [0-9]+ connection\(s\) that left the bus unannounced')
        self.assertEqual(self.processes(), 1)


class BindErrorTests(IdentityTestCase):

    def test_bind_process_errors(self):
        emu = self.bed.agent('ia-emu2')
        dead = self.bed.agent('ia-emu2')
        held = self.bed.local.pidfd(dead.pid)
        dead.kill()
        wait_gone(dead.pid)
        cases = [
            ('a regular file', {'open': self.img}, 'vm2', {}, INVALID_PROCESS),
            ('a directory', {'open': self.bed.images_dir, 'flags': 'O_RDONLY|O_DIRECTORY'},
             'vm2', {}, INVALID_PROCESS),
            ('/proc/PID of the process', {'open': '/proc/%d' % emu.pid,
                                          'flags': 'O_RDONLY|O_DIRECTORY'},
             'vm2', {}, INVALID_PROCESS),
            ('a pidfd of an exited process', {'fd': held['fd']}, 'vm2', {}, INVALID_PROCESS),
            ('an unknown guest', {'pidfd_of': emu.pid}, 'nosuch', {}, UNKNOWN_GUEST),
            ('an option', {'pidfd_of': emu.pid}, 'vm2', {'uid': {'$v': ['u', EMU2.uid]}},
             INVALID_OPTION),
        ]
        for desc, h, guest, opts, error in cases:
            with self.subTest(desc):
                self.assertError(self.bind(h, guest, options=opts), error)
                self.assertEqual(self.processes(), 0, 'no binding was made')
        emu.reconnect()
        self.assertNotBound(emu, msg='none of the refused binds bound anything')
        self.assertTrue(self.bed.daemon_running())
        # the allow
        self.assertOk(self.bind(emu.pid))
        emu.reconnect()
        self.assertOpens(emu)


class RestartTests(IdentityTestCase):

    def test_process_binding_survives_kill_9(self):
        emu = self.bed.agent('ia-emu2')
        doomed = self.bed.agent('ia-emu2')
        for a in (emu, doomed):
            self.assertOk(self.bind(a.pid))
            a.reconnect()
            self.assertOpens(a)
        self.assertEqual(self.processes(), 2)
        admitted = emu.unique_name
        self.assertEqual(self.bed.kill_daemon(signal.SIGKILL), -signal.SIGKILL)
        doomed.kill()               # dies while the service is down
        wait_gone(doomed.pid)
        self.bed.start_daemon()
        # the same connection, admitted before the crash, still opens
        self.assertEqual(emu.get_unique_name(), admitted)
        self.assertOpens(emu, msg='admitted connection after restart')
        # the binding of the process that died meanwhile is dropped
        self.assertEqual(self.processes(), 1)
        self.assertIn("Bound process %d of guest 'vm2' is gone" % doomed.pid,
                      self.bed.log_text('daemon'))
        # a new connection of the surviving process is admitted too
        emu.reconnect()
        self.assertOpens(emu)
        # the denials survive as well: an unbound process of that uid, old or new connection
        other = self.bed.agent('ia-emu2')
        self.assertNotBound(other)
        other.reconnect()
        self.assertNotBound(other)

    def test_restart_drops_binding_of_reused_pid(self):
        """A bound process dies while the service is down and its pid goes to another process
        of the same uid, which connects after the restart.  Only the start time recorded with
        the binding tells the two apart: the newcomer must not inherit the binding."""
        for _ in range(PID_ATTEMPTS):
            victim = self.bed.agent('ia-emu2')
            self.assertOk(self.bind(victim.pid))
            victim.reconnect()
            self.assertOpens(victim)
            pid = victim.pid
            self.bed.kill_daemon(signal.SIGKILL)
            victim.kill()
            wait_gone(pid)
            heir = self.late_agent_at(pid, EMU2)
            self.bed.start_daemon()
            if heir is not None:
                break
        else:
            self.fail('could not get pid %d back for a new process in %d attempts'
                      % (pid, PID_ATTEMPTS))
        heir.connect()
        self.assertEqual(self.bed.connection_pid(heir.unique_name), pid)
        self.assertEqual(self.bed.connection_uid(heir.unique_name), EMU2.uid)
        self.assertNotBound(heir, msg='pid %d reused while the service was down' % pid)
        self.assertIn("Bound process %d of guest 'vm2' is gone" % pid,
                      self.bed.log_text('daemon'))


class PidReuseAttackTests(IdentityTestCase):

    def test_pid_reuse_attack(self):
        """docs/identity.md, "The attack this stops", for real.

        An attacker running as the emulator's own uid (ia-emu2) connects to the bus, so the
        bus records its pid P; makes a harmless call; forks a child that keeps the socket;
        and exits.  The next process created gets P (ns_last_pid): that is the emulator,
        which the manager (root) binds to vm2 with a pidfd before it connects.  The bus now
        reports pid P and uid ia-emu2 for both the attacker's old connection and the
        emulator's new one, so a service deciding by pid and uid could not tell them apart.

        Proved: the attacker's old connection is refused (NotBound) before and after the
        emulator is admitted, while the emulator's own connection, made after the binding,
        opens the image.  Only condition 4 (the connection appeared after the binding)
        separates them here; conditions 1-3 all hold for the attacker."""
        for attempt in range(PID_ATTEMPTS):
            attacker = Attacker(self, EMU2)
            emulator = self.late_agent_at(attacker.pid, EMU2)
            if emulator is not None:
                break
            attacker.kill()
        else:
            self.fail('could not hand pid %d to a new process in %d attempts'
                      % (attacker.pid, PID_ATTEMPTS))
        P = attacker.pid
        self.assertEqual(emulator.pid, P)
        self.assertTrue(pid_alive(attacker.child_pid), 'the old connection is held')
        self.assertEqual(self.bed.connection_pid(attacker.unique_name), P,
                         'the bus attributes the old connection to pid %d' % P)
        self.assertEqual(self.bed.connection_uid(attacker.unique_name), EMU2.uid)
        self.assertNotEqual(attacker.request({'cmd': 'whoami'})['ok']['pid'], P)
        r = attacker.open_image('vm2', self.img)
        self.assertEqual(r.get('error'), NOT_BOUND, r)

        # the manager binds the emulator (pid P) before it connects
        self.assertOk(self.bind(P))
        r = attacker.open_image('vm2', self.img)
        self.assertEqual(r.get('error'), NOT_BOUND, 'the attack succeeded: %r' % r)
        self.assertIn('Connection %s (pid %d) is older than the binding'
                      % (attacker.unique_name, P), self.bed.log_text('daemon'))

        emulator.connect()
        self.assertEqual(self.bed.connection_pid(emulator.unique_name), P)
        self.assertEqual(self.bed.connection_uid(emulator.unique_name), EMU2.uid)
        self.assertOpens(emulator, msg='the real emulator')
        r = attacker.open_image('vm2', self.img)
        self.assertEqual(r.get('error'), NOT_BOUND, 'after the emulator was admitted: %r' % r)
        self.assertOpens(emulator, msg='the real emulator, again')
        # the log names the attacker's refusals with its own unique name
        denied = [line for line in self.bed.log_text('daemon').splitlines()
                  if 'audit: open denied' in line and 'sender=%s' % attacker.unique_name in line]
        self.assertEqual(len(denied), 3, denied)

    def test_pid_reused_after_bound_process_exits(self):
        """Condition 2: the bound emulator exits and its pid goes to another process of the
        same uid, which connects after the binding was made.  Pid, uid and connection age all
        fit; only the pidfd, which has signalled exit, shows that the pid names another
        process now.  The newcomer is refused, and the binding ends."""
        for _ in range(PID_ATTEMPTS):
            emu = self.bed.agent('ia-emu2')
            self.assertOk(self.bind(emu.pid))
            emu.reconnect()
            self.assertOpens(emu)
            pid = emu.pid
            emu.kill()
            wait_gone(pid)
            heir = self.late_agent_at(pid, EMU2)
            if heir is not None:
                break
        else:
            self.fail('could not get pid %d back for a new process in %d attempts'
                      % (pid, PID_ATTEMPTS))
        heir.connect()
        self.assertEqual(self.bed.connection_pid(heir.unique_name), pid)
        self.assertEqual(self.bed.connection_uid(heir.unique_name), EMU2.uid)
        self.assertNotBound(heir, msg='pid %d of an exited bound process' % pid)
        heir.reconnect()
        self.assertNotBound(heir)
        # binding the newcomer explicitly is what makes it the emulator
        self.assertOk(self.bind(heir.pid))
        heir.reconnect()
        self.assertOpens(heir)


if __name__ == '__main__':
    testbed.main()

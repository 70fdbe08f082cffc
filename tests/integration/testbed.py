#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""
The integration test bed: a private system bus, the real polkitd and the built image-accessd,
with callers running as distinct real uids.  Nothing on the host changes: test users live in
private copies of /etc/passwd and /etc/group that only the bus and polkitd see (each in its own
mount namespace), and polkitd sees only the test's rules and actions.

How it is done, and why, is in docs/testbed.md.  Short version:

  runtime dir (mktemp, 0755)
    passwd, group          host copies + test users (uid/gid 61000-61099)
    bus.conf               system-like policy + <include> of the project's bus policy
    bus                    the bus socket
    rules.d/  actions/     bind-mounted over /etc/polkit-1/rules.d and
                           /usr/share/polkit-1/actions in polkitd's namespace
                           (a tmpfs hides /usr/share/polkit-1/rules.d)
    state/                 --state-dir of the daemon (survives restart_daemon)
    images/                a place for test images (make_image)
    logs/                  dbus-daemon.log, polkitd.log, daemon.log, agent-*.log

Usage from a test file (each test method becomes its own meson test):

    import testbed

    class OpenTests(testbed.IaTestCase):
        def test_open(self):
            emu = self.bed.agent('ia-emu1')
            r = emu.call('OpenImage', 'sssa{sv}', ['vm1', path, 'read-only', {}], read=4)
            self.assertError(r, 'org.example.ImageAccess.Error.NotBound')

    if __name__ == '__main__':
        testbed.main()

The API reference is in the docstrings of TestBed, AgentBase, Reply and IaTestCase.
"""

import atexit
import ctypes
import json
import os
import re
import select
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import uuid

try:
    import dbus
    import dbus.bus
    import dbus.mainloop.glib
    from gi.repository import GLib
    _IMPORT_ERROR = None
except ImportError as _e:  # listing tests at configure time must work without them
    _IMPORT_ERROR = ('python3-dbus/python3-gi not importable (%s); run the tests with Debian\'s '
                     '/usr/bin/python3, not %s' % (_e, sys.executable))

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_ROOT = os.environ.get('IA_SOURCE_ROOT') or os.path.dirname(os.path.dirname(HERE))
DATA_DIR = os.path.join(HERE, 'data')
AGENT_PY = os.path.join(HERE, 'agent.py')
PYTHON = '/usr/bin/python3'

BUS_NAME = 'org.example.ImageAccess'
OBJECT_PATH = '/org/example/ImageAccess'
IFACE = 'org.example.ImageAccess'
MANAGER_IFACE = 'org.example.ImageAccess.Manager'
POLKIT_NAME = 'org.freedesktop.PolicyKit1'
POLKIT_PATH = '/org/freedesktop/PolicyKit1/Authority'
POLKIT_IFACE = 'org.freedesktop.PolicyKit1.Authority'
TEST_ONLY_ACTION = 'org.example.imageaccess.test-only'
TEST_ONLY_POLICY = os.path.join(DATA_DIR, 'org.example.imageaccess.test-only.policy')
RULES_EXAMPLES_DIR = os.environ.get('IA_RULES_EXAMPLES_DIR') or \
    os.path.join(SOURCE_ROOT, 'policy', 'rules-examples')  # for install_rules_file()

DBUS_DAEMON = '/usr/bin/dbus-daemon'
POLKITD = '/usr/lib/polkit-1/polkitd'
TOOLS = ['unshare', 'setpriv', 'mount', 'gdbus']

RUN_TOKEN_VAR = 'IA_TESTBED_RUN'  # every process of a bed carries it: found again in teardown
RULES_ERROR_RE = re.compile(r'Error compiling script|Error evaluating (authorization|admin) rules')
LOG_TAIL_LINES = 200
START_TIMEOUT = float(os.environ.get('IA_TESTBED_START_TIMEOUT', '10'))


class User:
    """A test user: name, uid, gid (its own group) and supplementary gids."""

    def __init__(self, name, uid, gid, groups=(), gecos=''):
        self.name, self.uid, self.gid, self.groups, self.gecos = name, uid, gid, list(groups), gecos

    def __repr__(self):
        return 'User(%s, uid=%d)' % (self.name, self.uid)


# Test users and groups, in the 61000-61099 range.  They exist only in the private passwd and
# group files of the bus and polkitd: polkit's subject.user and subject.isInGroup() see them.
GROUPS = {'ia-operators': 61050}
USERS = {u.name: u for u in [
    User('ia-mgr', 61001, 61001, gecos='image-access test VM manager (not root)'),
    User('ia-emu1', 61002, 61002, gecos='image-access test emulator 1'),
    User('ia-emu2', 61003, 61003, gecos='image-access test emulator 2'),
    User('ia-op', 61004, 61004, [GROUPS['ia-operators']], gecos='image-access test operator'),
    User('ia-desk', 61005, 61005, gecos='image-access test desktop user'),
]}


def missing_requirements():
    """Why the bed cannot run here (a string), or None."""
    if os.geteuid() != 0:
        return 'integration tests need root (they start polkitd and switch uids)'
    if _IMPORT_ERROR:
        return _IMPORT_ERROR
    for path, pkg in ((DBUS_DAEMON, 'dbus-daemon'), (POLKITD, 'polkitd')):
        if not os.access(path, os.X_OK):
            return '%s not found (install the Debian package %s)' % (path, pkg)
    for tool in TOOLS:
        if not shutil.which(tool):
            return '%s not found in PATH' % tool
    return None


# ---- small helpers ------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def _child_setup():
    """Runs in each child before exec: die with the test process.  Cleared by the kernel when
    the child changes credentials (polkitd, setpriv'd agents), hence the PID records too."""
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _tail(path, lines=LOG_TAIL_LINES):
    try:
        with open(path, errors='replace') as f:
            return ''.join(f.readlines()[-lines:])
    except OSError as e:
        return '(cannot read %s: %s)\n' % (path, e)


def _xml_escape(s):
    return s.replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;').replace('"', '&quot;')


class TestBedError(Exception):
    """The bed could not do what was asked (a component died, a timeout)."""


# ---- reaching a checkout that test users cannot traverse ------------------------------------
#
# A checkout may live below a directory that only root can traverse (/root, a `mktemp -d`
# parent), and test users must execute and read what is in it: the CLI, the example programs,
# the shim, shim_probe.py.  Instead of changing modes on the user's disk, the test process moves
# into a private mount namespace once and, for each directory on the way to those paths that
# other users cannot traverse, keeps the one entry on the way by a bind mount, covers the
# directory with a tmpfs of mode 0711 and binds the entry back at the same name.  Absolute paths
# stay the same (meson's build dir keeps working outside), nothing on disk changes, and every
# process the bed starts inherits the view.  The rest of a covered directory is hidden in the
# namespace, which the tests never look at.

_CLONE_NEWNS = 0x00020000
_MS_NOSUID, _MS_NODEV, _MS_BIND, _MS_REC, _MS_PRIVATE = 0x2, 0x4, 0x1000, 0x4000, 0x40000
_reach_error = None
_reach_done = False


def _mount(source, target, fstype, flags, data):
    if _libc.mount(source.encode() if source else None, target.encode(),
                   fstype.encode() if fstype else None, flags,
                   data.encode() if data else None) != 0:
        e = ctypes.get_errno()
        raise OSError(e, 'mount %s on %s: %s' % (source, target, os.strerror(e)))


def _prefixes(path):
    """'/a/b' → ['/', '/a', '/a/b']."""
    out, cur = ['/'], '/'
    for part in path.strip('/').split('/'):
        if part:
            cur = os.path.join(cur, part)
            out.append(cur)
    return out


def _others_can_traverse(path):
    return bool(os.stat(path).st_mode & 0o001)


def reach_paths():
    """What test users must reach: the source tree, the build tree, the temporary directory and
    every absolute path in an IA_* variable (the built programs, another build's daemon)."""
    paths = {SOURCE_ROOT, tempfile.gettempdir()}
    for key, value in os.environ.items():
        if key.startswith('IA_') and value.startswith('/') and os.path.exists(value):
            paths.add(value)
    return sorted({os.path.realpath(p) for p in paths})


def unreachable(paths):
    """Why test users cannot reach each of paths as they stand (a list of sentences)."""
    problems = []
    for path in paths:
        for p in _prefixes(path):
            st = os.stat(p)
            if os.path.isdir(p) and not st.st_mode & 0o001:
                problems.append('%s: directory %s has mode %04o (others may not traverse it)'
                                % (path, p, st.st_mode & 0o7777))
                break
            if not os.path.isdir(p) and not st.st_mode & 0o004:
                problems.append('%s has mode %04o (others may not read it)'
                                % (p, st.st_mode & 0o7777))
    return problems


def make_reachable(paths):
    """Make paths reachable for test users in this process's private mount view (see above);
    a no-op when nothing is in the way.  The process must be single-threaded (unshare).
    Raises TestBedError with the reason when something stays out of reach, e.g. a path that
    is itself not readable, or a build made with umask 077."""
    keep = {}       # directory others cannot traverse → the entries below it on the way
    for path in paths:
        chain = _prefixes(path)
        for parent, child in zip(chain, chain[1:]):
            if parent not in paths and not _others_can_traverse(parent):
                keep.setdefault(parent, set()).add(child)
    if keep:
        if len(os.listdir('/proc/self/task')) != 1:
            raise TestBedError('cannot make %s reachable for test users: unshare(CLONE_NEWNS) '
                               'needs a single-threaded process' % ', '.join(sorted(keep)))
        if _libc.unshare(_CLONE_NEWNS) != 0:
            e = ctypes.get_errno()
            raise TestBedError('unshare(CLONE_NEWNS): %s' % os.strerror(e))
        _mount(None, '/', None, _MS_REC | _MS_PRIVATE, None)  # nothing propagates to the host
        # outer directories first: an inner one is then reached through the outer's bind mount
        for parent in sorted(keep, key=lambda d: len(_prefixes(d))):
            st = os.stat(parent)
            fds = {c: os.open(c, os.O_PATH | os.O_CLOEXEC) for c in sorted(keep[parent])}
            try:
                _mount('tmpfs', parent, 'tmpfs', _MS_NOSUID | _MS_NODEV,
                       'mode=0711,uid=%d,gid=%d,size=64k' % (st.st_uid, st.st_gid))
                for child, fd in fds.items():
                    if os.path.isdir('/proc/self/fd/%d' % fd):
                        os.mkdir(child)
                    else:
                        os.close(os.open(child, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
                    _mount('/proc/self/fd/%d' % fd, child, None, _MS_BIND | _MS_REC, None)
            finally:
                for fd in fds.values():
                    os.close(fd)
        try:
            os.chdir(os.getcwd())   # the working directory as seen through the new mounts
        except OSError:
            pass
    problems = unreachable(paths)
    if problems:
        raise TestBedError('test users (uids 61000-61099) cannot reach what they must run or '
                           'read, and the test bed cannot change that without changing modes '
                           'on disk:\n  %s\nA directory that is itself needed must be '
                           'traversable by others (a checkout or build made with umask 077 is '
                           'not: rebuild it with umask 022).' % '\n  '.join(problems))


def ensure_reachable():
    """make_reachable(reach_paths()) once per process; TestBed.start() calls it."""
    global _reach_done, _reach_error
    if not _reach_done:
        _reach_done = True
        try:
            make_reachable(reach_paths())
        except (TestBedError, OSError) as e:
            _reach_error = str(e)
    if _reach_error:
        raise TestBedError(_reach_error)


class _Child:
    """A process the bed started; logs go to log_path (stdout and stderr)."""

    def __init__(self, name, argv, log_path, env, pass_fds=(), stdin=subprocess.DEVNULL,
                 stdout=None):
        self.name = name
        self.log_path = log_path
        with open(log_path, 'ab') as log:
            self.popen = subprocess.Popen(argv, stdin=stdin, stdout=stdout or log, stderr=log,
                                          env=env, pass_fds=pass_fds, close_fds=True,
                                          preexec_fn=_child_setup, process_group=0)
        self.pid = self.popen.pid

    def alive(self):
        return self.popen.poll() is None

    def stop(self, sig=signal.SIGTERM, grace=5.0):
        """Signal the process (and its process group); SIGKILL after grace seconds.
        Returns (returncode, needed_sigkill)."""
        if self.alive():
            for kill in (os.killpg, os.kill):
                try:
                    kill(self.pid, sig)
                    break
                except (ProcessLookupError, PermissionError):
                    continue
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.popen.kill()
                self.popen.wait()
                return self.popen.returncode, True
        return self.popen.wait(), False


# ---- callers --------------------------------------------------------------------------------

class Reply:
    """The answer to a D-Bus call made by an agent.

    ok       True when the call returned, False for an error reply (or an agent failure)
    values   list of the returned values in JSON form (None on error); a returned fd is
             {"fd": ID}, the id under which the agent keeps it
    error    the D-Bus error name ("agent.*" for failures inside the agent), else None
    message  the error text, else None
    fds      descriptions of the returned fds, in order (see AgentBase.fd)
    """

    def __init__(self, raw):
        self.raw = raw
        self.ok = 'ok' in raw
        self.values = raw.get('ok') if self.ok else None
        self.error = raw.get('error')
        self.message = raw.get('message')
        descs = raw.get('fds') or {}
        self.fds = [_norm_fd(descs[k]) for k in sorted(descs, key=int)]

    def fd(self, i=0):
        """Description of the i-th fd in the reply."""
        return self.fds[i]

    def __repr__(self):
        if self.ok:
            return 'Reply(ok=%r%s)' % (self.values, ', fds=%r' % self.fds if self.fds else '')
        return 'Reply(error=%s: %s)' % (self.error, self.message)


def _norm_fd(d):
    """Agent fd description → Python: 'read' becomes bytes (or 'read_errno' is set), 'write'
    the number of bytes written (or 'write_errno')."""
    d = dict(d)
    for key in ('read', 'write'):
        if key in d:
            res = d.pop(key)
            if 'ok' in res:
                d[key] = bytes.fromhex(res['ok']) if key == 'read' else res['ok']
            else:
                d[key + '_errno'] = res['errno']
    return d


class Pending:
    """An asynchronous call in flight; wait() returns its Reply."""

    def __init__(self, agent, token):
        self.agent, self.token = agent, token

    def wait(self, timeout=65.0):
        return Reply(self.agent.request({'cmd': 'wait', 'token': self.token,
                                         'timeout': timeout}, timeout + 10))


class AgentBase:
    """A caller with its own bus connection.  Subclasses: Agent (a process as some uid) and
    LocalAgent (inside the test process, root).

    Arguments in JSON form, converted along the D-Bus signature:
      basic types as JSON; 'ay' as str, list of ints or {"$bytes": HEX}; structs as lists;
      dicts with string keys; 'v' as {"$v": [SIG, VALUE]} (untyped values are guessed:
      bool→b, int→i/x, float→d, str→s, [str]→as, dict→a{sv});
      'h' as {"pidfd_of": PID or "self"} (the agent opens a pidfd), {"fd": ID} (an fd the
      agent holds) or {"open": PATH, "flags": "O_RDONLY|..."}.
    """

    uid = None
    pid = None
    unique_name = None
    name = None

    def request(self, req, timeout=None):
        raise NotImplementedError

    def _ok(self, req, timeout=None):
        res = self.request(req, timeout)
        if 'ok' not in res:
            raise TestBedError('agent %s: %s failed: %s: %s' % (self.name, req.get('cmd'),
                                                               res.get('error'),
                                                               res.get('message')))
        return res['ok']

    def _call_req(self, method, sig, args, iface, path, dest, timeout, interactive, read, write,
                  offset, no_auto_start):
        req = {'cmd': 'call', 'dest': dest, 'path': path, 'iface': iface, 'method': method,
               'sig': sig, 'args': list(args), 'interactive': bool(interactive),
               'no_auto_start': bool(no_auto_start), 'offset': offset}
        if timeout is not None:
            req['timeout'] = timeout
        if read is not None:
            req['read'] = read
        if write is not None:
            req['write'] = write if not isinstance(write, bytes) else {'$bytes': write.hex()}
        return req

    def call(self, method, sig='', args=(), iface=IFACE, path=OBJECT_PATH, dest=BUS_NAME,
             timeout=None, interactive=False, read=None, write=None, offset=0,
             no_auto_start=False):
        """Call a method and wait; returns a Reply.  timeout: D-Bus timeout in seconds
        (default 60).  interactive: set ALLOW_INTERACTIVE_AUTHORIZATION.  read=N: pread N
        bytes at offset from each returned fd; write=bytes|str: pwrite them at offset."""
        req = self._call_req(method, sig, args, iface, path, dest, timeout, interactive, read,
                             write, offset, no_auto_start)
        return Reply(self.request(req, (timeout or 60) + 10))

    def call_async(self, method, sig='', args=(), iface=IFACE, path=OBJECT_PATH, dest=BUS_NAME,
                   timeout=None, interactive=False, read=None, write=None, offset=0,
                   no_auto_start=False):
        """Send a call without waiting; returns a Pending (.wait(timeout) → Reply).  Many
        can be in flight on the one connection."""
        req = self._call_req(method, sig, args, iface, path, dest, timeout, interactive, read,
                             write, offset, no_auto_start)
        req['async'] = True
        return Pending(self, self._ok(req))

    def manager(self, method, sig='', args=(), **kw):
        """call() on the Manager interface."""
        return self.call(method, sig, args, iface=MANAGER_IFACE, **kw)

    def open_image(self, guest, path, mode='read-only', options=None, **kw):
        """OpenImage(s guest, s path, s mode, a{sv} options) → Reply (values [{"fd": ID}])."""
        return self.call('OpenImage', 'sssa{sv}', [guest, path, mode, options or {}], **kw)

    def polkit_check(self, action, details=None, flags=0, subject_name=None, timeout=None):
        """CheckAuthorization for this agent's own connection (or subject_name); returns a
        Reply whose values[0] is [is_authorized, is_challenge, details]."""
        subject = ['system-bus-name', {'name': {'$v': ['s', subject_name or self.unique_name]}}]
        return self.call('CheckAuthorization', '(sa{sv})sa{ss}us',
                         [subject, action, details or {}, flags, ''],
                         iface=POLKIT_IFACE, path=POLKIT_PATH, dest=POLKIT_NAME,
                         timeout=timeout)

    def fd(self, fd_id, read=None, write=None, offset=0):
        """Describe a held fd: fd (id), fdnum, st_dev, st_ino, st_mode, st_uid, st_gid,
        st_size, type ('reg'|'blk'|...), path (readlink), flags (F_GETFL), accmode
        ('O_RDONLY'|'O_WRONLY'|'O_RDWR'), status_flags (['O_DIRECT', ...]), cloexec; plus
        read (bytes) / read_errno, write (count) / write_errno when asked."""
        req = {'cmd': 'fd', 'fd': fd_id, 'offset': offset}
        if read is not None:
            req['read'] = read
        if write is not None:
            req['write'] = write if not isinstance(write, bytes) else {'$bytes': write.hex()}
        return _norm_fd(self._ok(req))

    def close_fd(self, fd_id):
        self._ok({'cmd': 'close', 'fd': fd_id})

    def open(self, path, flags='O_RDONLY', mode=0o600):
        """Open a file in the agent (as its uid); returns its description (key 'fd' is the
        id to pass as {"fd": ID})."""
        return _norm_fd(self._ok({'cmd': 'open', 'path': path, 'flags': flags, 'mode': mode}))

    def pidfd(self, pid):
        """Open and keep a pidfd; returns its description."""
        return _norm_fd(self._ok({'cmd': 'pidfd', 'pid': pid}))

    def fdcount(self):
        """Number of open fds of the agent process."""
        return self._ok({'cmd': 'fdcount'})

    def whoami(self):
        """{pid, uid, euid, gid, egid, groups, unique_name} of the agent."""
        return self._ok({'cmd': 'whoami'})

    def get_unique_name(self):
        self.unique_name = self._ok({'cmd': 'unique_name'})
        return self.unique_name

    def reconnect(self):
        """Drop the bus connection and open a new one; returns the new unique name."""
        self.unique_name = self._ok({'cmd': 'reconnect'})
        return self.unique_name

    def subscribe(self, rule):
        """Add a match rule, e.g. "type='signal',sender='org.example.ImageAccess'"."""
        self._ok({'cmd': 'subscribe', 'rule': rule})

    def signals(self, count=0, timeout=0.0):
        """Signals received so far (waiting up to timeout for at least count), then forgets
        them: [{sender, path, interface, member, args}]."""
        return self._ok({'cmd': 'signals', 'count': count, 'timeout': timeout}, timeout + 10)


class Agent(AgentBase):
    """A caller process running as `user` (setpriv), speaking agent.py's protocol."""

    def __init__(self, bed, name, uid, gid, groups, seq):
        self.bed, self.name, self.uid, self.gid, self.groups = bed, name, uid, gid, groups
        argv = [PYTHON, bed.agent_py, bed.address]
        if uid != 0:
            grp = ['--groups=' + ','.join(map(str, groups))] if groups else ['--clear-groups']
            argv = ['setpriv', '--reuid=%d' % uid, '--regid=%d' % gid] + grp + \
                   ['--pdeathsig=SIGKILL', '--'] + argv
        env = bed.base_env(HOME=bed.runtime_dir, PYTHONDONTWRITEBYTECODE='1')
        self.child = bed._spawn('agent-%s-%d' % (name, seq), argv, env,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._buf = b''
        ready = self._readline(START_TIMEOUT)
        if 'ready' not in ready:
            raise TestBedError('agent %s did not start: %r' % (name, ready))
        self.pid = ready['ready']['pid']
        self.unique_name = ready['ready']['unique_name']

    def _readline(self, timeout):
        fd = self.child.popen.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b'\n' not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TestBedError('agent %s: no answer within %.0f s\n%s'
                                   % (self.name, timeout, _tail(self.child.log_path)))
            r, _, _ = select.select([fd], [], [], left)
            if r:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise TestBedError('agent %s exited (status %s)\n%s'
                                       % (self.name, self.child.popen.poll(),
                                          _tail(self.child.log_path)))
                self._buf += chunk
        line, self._buf = self._buf.split(b'\n', 1)
        return json.loads(line)

    def request(self, req, timeout=None):
        """Send one protocol command (a dict); returns the raw answer dict."""
        try:
            self.child.popen.stdin.write(json.dumps(req).encode() + b'\n')
            self.child.popen.stdin.flush()
        except BrokenPipeError:
            raise TestBedError('agent %s is gone (status %s)\n%s'
                               % (self.name, self.child.popen.poll(),
                                  _tail(self.child.log_path))) from None
        return self._readline(timeout or 70)

    def exit(self, timeout=5.0):
        """Ask the agent to exit (closing its connection and fds); returns its exit status."""
        if self.child.alive():
            try:
                self.request({'cmd': 'exit'}, timeout)
                self.child.popen.stdin.close()
                self.child.popen.wait(timeout)
            except (TestBedError, OSError, subprocess.TimeoutExpired):
                pass
        return self.child.stop(grace=timeout)[0]

    def kill(self, sig=signal.SIGKILL):
        """Kill the agent process (e.g. an emulator dying mid-request); returns its status."""
        return self.child.stop(sig)[0]


class LocalAgent(AgentBase):
    """The same protocol inside the test process, as root (no extra process)."""

    def __init__(self, bed):
        sys.path.insert(0, HERE)
        import agent as agent_module
        self.bed, self.name, self.uid = bed, 'local-root', 0
        self.caller = agent_module.Caller(bed.address)
        self.pid = os.getpid()
        self.unique_name = self.caller.conn.get_unique_name()

    def request(self, req, timeout=None):
        return self.caller.handle(req)

    def raw_fd(self, fd_id):
        """The fd number behind an id (still owned by the LocalAgent)."""
        return self.caller.fds[int(fd_id)]

    def exit(self):
        self.caller.close()


# ---- the bed --------------------------------------------------------------------------------

class TestBed:
    """A private system bus + the real polkitd + (on request) the daemon under test.

    TestBed(rules={NAME: TEXT}, actions=[PATH], polkit_policy=PATH, bus_policy=PATH,
            daemon=PATH, extra_users=[User], extra_bus_policies=[PATH])
      rules    rules files put in place before polkitd starts
      actions  extra .policy files (e.g. TEST_ONLY_POLICY) besides the project's
      extra_users  more test users (uids 61000-61099) besides USERS
      extra_bus_policies  more bus policy files included after the project's, e.g. for a
               helper service that needs a name of its own (tests/bench/bench-ref.conf)
      the rest default to $IA_POLKIT_POLICY, $IA_BUS_POLICY, $IA_DAEMON (then source tree)

    start() → self; stop() tears down and raises AssertionError on problems (a leftover
    process, a daemon that crashed or would not stop, rules errors in polkitd's log);
    remove() deletes the runtime dir.  Also a context manager (start, stop + remove).

    Attributes: address, runtime_dir, state_dir, images_dir, rules_dir, log_dir, users
    (name → User), bus (dbus-python root connection of the bed), local (a LocalAgent),
    daemon_pid, logs (component → log path), startup_seconds.
    """

    def __init__(self, rules=None, actions=(), polkit_policy=None, bus_policy=None,
                 daemon=None, extra_users=(), extra_bus_policies=()):
        self.initial_rules = dict(rules or {})
        self.extra_actions = list(actions)
        self.polkit_policy = polkit_policy or os.environ.get('IA_POLKIT_POLICY') or \
            os.path.join(SOURCE_ROOT, 'policy', 'org.example.ImageAccess.policy')
        self.bus_policy = bus_policy or os.environ.get('IA_BUS_POLICY') or \
            os.path.join(SOURCE_ROOT, 'policy', 'org.example.ImageAccess.conf')
        self.extra_bus_policies = [os.path.abspath(p) for p in extra_bus_policies]
        self.daemon_path = daemon or os.environ.get('IA_DAEMON') or None
        self.daemon_wrapper = shlex.split(os.environ.get('IA_DAEMON_WRAPPER', ''))
        self.users = dict(USERS)
        self.users.update((u.name, u) for u in extra_users)
        self.groups = dict(GROUPS)
        self.token = uuid.uuid4().hex
        self.runtime_dir = None
        self.address = None
        self.bus = None
        self._local = None
        self._children = []
        self._agents = []
        self._agent_seq = 0
        self._bus_child = self._polkit_child = None
        self._daemon = None
        self._daemon_args = None
        self._daemon_expected_exit = False
        self._daemon_starts = 0
        self._changed = 0
        self._sync_seq = 0
        self._polkit_starts = 0
        self._rules_errors_acked = 0
        self._stopped = False
        self._dumped = False
        self.startup_seconds = None
        self.logs = {}

    # ---- lifecycle ------------------------------------------------------------------------
    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        try:
            self.stop(check=exc[0] is None)
        finally:
            if exc[0] is not None:
                self.dump_logs()
            self.remove()

    def start(self):
        reason = missing_requirements()
        if reason:
            raise unittest.SkipTest(reason)
        ensure_reachable()
        t0 = time.monotonic()
        _LIVE_BEDS.add(self)
        try:
            self._make_dirs()
            self._write_users()
            self._start_bus()
            self._start_polkitd()
            self._polkit_starts = 1
            self.bus = dbus.bus.BusConnection(self.address,
                                              mainloop=dbus.mainloop.glib.DBusGMainLoop())
            self.bus.add_signal_receiver(self._on_polkit_changed, signal_name='Changed',
                                         dbus_interface=POLKIT_IFACE, path=POLKIT_PATH)
            self.check_rules_errors()  # polkitd loads the initial rules before it is ready
        except BaseException:
            self.stop(check=False)
            self.dump_logs()
            self.remove()
            raise
        self.startup_seconds = time.monotonic() - t0
        return self

    def _make_dirs(self):
        base = os.environ.get('IA_TESTBED_TMPDIR') or None
        self.runtime_dir = tempfile.mkdtemp(prefix='ia-testbed-', dir=base)
        os.chmod(self.runtime_dir, 0o755)  # polkitd and the test users need the socket
        for sub, mode in (('rules.d', 0o755), ('actions', 0o755), ('logs', 0o755),
                          ('images', 0o755), ('state', 0o700), ('tmp', 0o755)):
            path = os.path.join(self.runtime_dir, sub)
            os.mkdir(path)
            os.chmod(path, mode)
        self.rules_dir = os.path.join(self.runtime_dir, 'rules.d')
        self.actions_dir = os.path.join(self.runtime_dir, 'actions')
        self.log_dir = os.path.join(self.runtime_dir, 'logs')
        self.images_dir = os.path.join(self.runtime_dir, 'images')
        self.state_dir = os.path.join(self.runtime_dir, 'state')
        self.socket_path = os.path.join(self.runtime_dir, 'bus')
        # agents run as test users: give them a copy of agent.py they can surely read
        self.agent_py = os.path.join(self.runtime_dir, 'agent.py')
        shutil.copyfile(AGENT_PY, self.agent_py)
        os.chmod(self.agent_py, 0o644)
        for name, text in self.initial_rules.items():
            self._write_file(os.path.join(self.rules_dir, self._rules_name(name)), text)
        actions = list(self.extra_actions)
        if os.path.exists(self.polkit_policy):  # written by another engineer; may be absent
            actions.insert(0, self.polkit_policy)
        for src in actions:
            dst = os.path.join(self.actions_dir, os.path.basename(src))
            shutil.copyfile(src, dst)
            os.chmod(dst, 0o644)

    def _write_users(self):
        with open('/etc/passwd') as f:
            passwd = f.read()
        with open('/etc/group') as f:
            group = f.read()
        taken_uids = {int(line.split(':')[2]) for line in passwd.splitlines()
                      if line.count(':') >= 6}
        taken_gids = {int(line.split(':')[2]) for line in group.splitlines()
                      if line.count(':') >= 3}
        for u in self.users.values():
            if u.uid in taken_uids or u.gid in taken_gids:
                raise TestBedError('uid/gid %d of test user %s already exists on this host'
                                   % (u.uid, u.name))
        if not passwd.endswith('\n'):
            passwd += '\n'
        if not group.endswith('\n'):
            group += '\n'
        for u in self.users.values():
            passwd += '%s:x:%d:%d:%s:/nonexistent:/usr/sbin/nologin\n' % (u.name, u.uid, u.gid,
                                                                          u.gecos)
            group += '%s:x:%d:\n' % (u.name, u.gid)
        for gname, gid in self.groups.items():
            members = [u.name for u in self.users.values() if gid in u.groups]
            group += '%s:x:%d:%s\n' % (gname, gid, ','.join(members))
        self.passwd_path = os.path.join(self.runtime_dir, 'passwd')
        self.group_path = os.path.join(self.runtime_dir, 'group')
        self._write_file(self.passwd_path, passwd)
        self._write_file(self.group_path, group)

    def base_env(self, **extra):
        env = {'PATH': os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin'),
               'LANG': 'C.UTF-8', RUN_TOKEN_VAR: self.token}
        if self.address:
            env['DBUS_SYSTEM_BUS_ADDRESS'] = self.address
        env.update(extra)
        return env

    def _spawn(self, name, argv, env, **kw):
        log = os.path.join(self.log_dir, name + '.log')
        child = _Child(name, argv, log, env, **kw)
        self._children.append(child)
        self.logs.setdefault(name, log)
        return child

    def _ns_script(self, extra_mounts, exec_line):
        """sh script for `unshare -m`: private passwd/group, extra mounts, exec."""
        return ('set -e; mount --bind "$IA_PASSWD" /etc/passwd; '
                'mount --bind "$IA_GROUP" /etc/group; %s exec %s' % (extra_mounts, exec_line))

    def _start_bus(self):
        conf = os.path.join(self.runtime_dir, 'bus.conf')
        self._write_file(conf, BUS_CONFIG_TEMPLATE % {
            'socket': _xml_escape(self.socket_path),
            'include': _xml_escape(os.path.abspath(self.bus_policy)),
            'extra_includes': ''.join('  <include ignore_missing="no">%s</include>\n'
                                      % _xml_escape(p) for p in self.extra_bus_policies)})
        if not os.path.exists(self.bus_policy):
            raise TestBedError('bus policy %s not found (IA_BUS_POLICY)' % self.bus_policy)
        r, w = os.pipe()
        try:
            env = self.base_env(IA_PASSWD=self.passwd_path, IA_GROUP=self.group_path,
                                IA_CONF=conf, IA_FD=str(w))
            argv = ['unshare', '-m', '--propagation', 'private', '--', '/bin/sh', '-c',
                    self._ns_script('', DBUS_DAEMON + ' --config-file="$IA_CONF" --nofork '
                                    '--nopidfile --print-address="$IA_FD"')]
            self._bus_child = self._spawn('dbus-daemon', argv, env, pass_fds=(w,))
            os.close(w)
            w = None
            data = b''
            deadline = time.monotonic() + START_TIMEOUT
            while b'\n' not in data:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([r], [], [], left)[0]:
                    raise TestBedError('dbus-daemon printed no address within %.0f s'
                                       % START_TIMEOUT)
                chunk = os.read(r, 4096)
                if not chunk:
                    raise TestBedError('dbus-daemon exited during start-up (status %s)'
                                       % self._bus_child.popen.wait())
                data += chunk
        finally:
            os.close(r)
            if w is not None:
                os.close(w)
        self.address = data.split(b'\n')[0].decode().split(',guid=')[0]

    def _start_polkitd(self):
        """Start polkitd in its namespace; returns once it owns its name."""
        env = self.base_env(IA_PASSWD=self.passwd_path, IA_GROUP=self.group_path,
                            IA_RULES=self.rules_dir, IA_ACTIONS=self.actions_dir)
        mounts = ('mount --bind "$IA_RULES" /etc/polkit-1/rules.d; '
                  'mount -t tmpfs -o mode=0755 ia-testbed /usr/share/polkit-1/rules.d; '
                  'mount --bind "$IA_ACTIONS" /usr/share/polkit-1/actions;')
        argv = ['unshare', '-m', '--propagation', 'private', '--', '/bin/sh', '-c',
                self._ns_script(mounts, POLKITD)]
        self._polkit_child = self._spawn('polkitd', argv, env)
        wait = subprocess.Popen(['gdbus', 'wait', '--system', '--timeout',
                                 str(int(START_TIMEOUT)), POLKIT_NAME],
                                env=self.base_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, preexec_fn=_child_setup)
        while wait.poll() is None:
            if not self._polkit_child.alive():
                wait.kill()
                wait.wait()
                raise TestBedError('polkitd exited during start-up (status %s)'
                                   % self._polkit_child.popen.returncode)
            try:
                wait.wait(0.002)
            except subprocess.TimeoutExpired:
                pass
        err = wait.stderr.read().decode(errors='replace')
        wait.stderr.close()
        if wait.returncode != 0:
            raise TestBedError('polkitd did not appear on the bus: gdbus wait: %s' % err)

    def stop(self, check=True):
        """Stop everything by recorded PID, then look for any process carrying this bed's
        token.  With check, raise AssertionError listing the problems found."""
        if self._stopped:
            return
        self._stopped = True
        problems = []
        for a in self._agents:
            try:
                a.exit(timeout=2.0)
            except Exception as e:  # go on: everything is killed by PID below anyway
                problems.append('agent %s: %r' % (a.name, e))
        if self._local is not None:
            try:
                self._local.exit()
            except Exception as e:
                problems.append('local agent: %r' % e)
        if self._daemon is not None and self._daemon.alive():
            rc, killed = self._daemon.stop(signal.SIGTERM, grace=10.0)
            if killed:
                problems.append('image-accessd did not exit within 10 s of SIGTERM')
            elif rc not in (0, -signal.SIGTERM):
                problems.append('image-accessd exited with status %s on SIGTERM' % rc)
        elif self._daemon is not None and not self._daemon_expected_exit:
            problems.append('image-accessd exited on its own during the test (status %s)'
                            % self._daemon.popen.returncode)
        if self.bus is not None:
            try:
                self.bus.close()
            except Exception:
                pass
        for child in reversed(self._children):
            child.stop(signal.SIGTERM, grace=5.0)
        leftovers = self.find_leftovers()
        for pid, desc in leftovers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if leftovers:
            problems.append('processes of this test bed survived teardown: %s' % leftovers)
        if 'polkitd' in self.logs and check:
            problems += ['polkitd log: ' + line for line in self.unacknowledged_rules_errors()]
        _LIVE_BEDS.discard(self)
        if problems and check:
            raise AssertionError('test bed teardown found problems:\n  ' + '\n  '.join(problems))

    def remove(self):
        """Delete the runtime dir (unless $IA_TESTBED_KEEP is set)."""
        if self.runtime_dir and os.path.isdir(self.runtime_dir):
            if os.environ.get('IA_TESTBED_KEEP'):
                sys.stderr.write('IA_TESTBED_KEEP: runtime dir kept: %s\n' % self.runtime_dir)
            else:
                shutil.rmtree(self.runtime_dir, ignore_errors=True)

    def find_leftovers(self):
        """[(pid, cmdline)] of live processes carrying this bed's token (in their environ)."""
        needle = ('%s=%s' % (RUN_TOKEN_VAR, self.token)).encode()
        found = []
        me = os.getpid()
        for entry in os.listdir('/proc'):
            if not entry.isdigit() or int(entry) == me:
                continue
            try:
                with open('/proc/%s/environ' % entry, 'rb') as f:
                    if needle not in f.read().split(b'\0'):
                        continue
                with open('/proc/%s/cmdline' % entry, 'rb') as f:
                    cmd = f.read().replace(b'\0', b' ').decode(errors='replace').strip()
            except OSError:
                continue
            found.append((int(entry), cmd))
        return found

    def pids(self):
        """{name: pid} of the live processes the bed started."""
        return {c.name: c.pid for c in self._children if c.alive()}

    # ---- logs -----------------------------------------------------------------------------
    def log_text(self, name):
        """Whole log of a component: 'dbus-daemon', 'polkitd', 'daemon', 'agent-...'."""
        with open(self.logs[name], errors='replace') as f:
            return f.read()

    def dump_logs(self, out=None, lines=LOG_TAIL_LINES):
        """Print the last lines of every log (done once; IaTestCase does it on failure)."""
        if self._dumped or not self.runtime_dir or not os.path.isdir(self.runtime_dir):
            return
        self._dumped = True
        out = out or sys.stderr
        for name in sorted(self.logs, key=lambda n: (n.startswith('agent'), n)):
            out.write('\n===== %s: last %d lines of %s =====\n' % (name, lines, self.logs[name]))
            out.write(_tail(self.logs[name], lines))
        out.write('===== end of test bed logs =====\n')
        out.flush()

    def wait_log(self, name, pattern, timeout=10.0):
        """Wait until a component's log matches the regex; returns the match."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.log_text(name))
            if m:
                return m
            if time.monotonic() > deadline:
                raise AssertionError('%s log did not match %r within %.0f s:\n%s'
                                     % (name, pattern, timeout, _tail(self.logs[name], 50)))
            time.sleep(0.01)

    # ---- polkit rules ---------------------------------------------------------------------
    @staticmethod
    def _rules_name(name):
        if '/' in name or name.startswith('.') or not name.endswith('.rules'):
            raise ValueError('rules file name must be a plain NAME.rules, not %r' % name)
        return name

    def _write_file(self, path, text, mode=0o644):
        with open(path, 'w') as f:
            f.write(text)
        os.chmod(path, mode)

    def _on_polkit_changed(self, *args):
        self._changed += 1

    def _iterate(self, done, timeout, what):
        ctx = GLib.MainContext.default()
        deadline = time.monotonic() + timeout
        tick = GLib.timeout_add(10, lambda: True)  # wake up: done() may also read a file
        try:
            while not done():
                if time.monotonic() > deadline:
                    raise TestBedError('timed out after %.0f s waiting for %s'
                                       % (timeout, what))
                ctx.iteration(True)
        finally:
            GLib.source_remove(tick)

    def _sync_rules(self, timeout=25.0):  # above polkitd 122's 15 s stalls
        """Return once polkitd runs with the rules now on disk, its Changed signal has been
        received here, and the daemon (if running) has processed that Changed too.

        polkitd reloads on inotify events and emits Changed after each reload (two per
        rename, one per unlink).  Counting signals cannot tell a late Changed of an earlier
        change from ours, so a last file is renamed in whose load logs a unique marker:
        once the marker is in polkitd's log, a reload has read the directory after our
        change.  polkitd is single-threaded and sends in order, so the reply to a method call
        made after that comes after that reload's Changed; the bus routes that Changed to
        every receiver, the daemon included, before the reply.  A Peer.Ping to the daemon
        then queues behind the Changed in its input, and sd-bus dispatches in order."""
        self._sync_seq += 1
        marker = 'ia-testbed: rules sync %d' % self._sync_seq
        before = self._changed
        tmp = os.path.join(self.runtime_dir, 'tmp', 'sync.rules')
        self._write_file(tmp, 'polkit.log("%s");\n' % marker)
        os.rename(tmp, os.path.join(self.rules_dir, 'zzzz-ia-testbed-sync.rules'))
        self._iterate(lambda: marker in self.log_text('polkitd'), timeout,
                      'polkitd to reload its rules')
        self.bus.call_blocking(POLKIT_NAME, POLKIT_PATH, 'org.freedesktop.DBus.Properties',
                               'Get', 'ss', [POLKIT_IFACE, 'BackendName'], timeout=timeout)
        self._iterate(lambda: self._changed > before, timeout,
                      'the Changed signal of polkitd')
        if self.daemon_running():
            self.bus.call_blocking(BUS_NAME, OBJECT_PATH, 'org.freedesktop.DBus.Peer', 'Ping',
                                   '', [], timeout=timeout)

    def set_rules(self, name, text, check=True):
        """Install or replace rules file NAME (e.g. '50-test.rules'): written as a dot file,
        renamed into place, and returns once polkitd has reloaded (Changed signal).  With
        check, raise AssertionError if polkitd could not compile it (rules are ES5)."""
        name = self._rules_name(name)
        tmp = os.path.join(self.rules_dir, '.%s.tmp' % name)  # polkitd ignores dot files
        self._write_file(tmp, text)
        mark = len(self.rules_errors())
        os.rename(tmp, os.path.join(self.rules_dir, name))
        self._sync_rules()
        if check:
            new = [line for line in self.rules_errors()[mark:] if name in line]
            if new:
                raise AssertionError('polkitd rejected %s (rules are ES5: no let, const, arrow '
                                     'functions, template strings):\n%s' % (name, '\n'.join(new)))

    def install_rules_file(self, path, name=None, check=True):
        """set_rules() with the contents of a file (e.g. an example from policy/)."""
        with open(path) as f:
            self.set_rules(name or os.path.basename(path), f.read(), check)

    def remove_rules(self, name):
        os.unlink(os.path.join(self.rules_dir, self._rules_name(name)))
        self._sync_rules()

    def rules_errors(self):
        """Lines of polkitd's log that report a broken rules file or a rule that threw."""
        return [line for line in self.log_text('polkitd').splitlines()
                if RULES_ERROR_RE.search(line)]

    def unacknowledged_rules_errors(self):
        return self.rules_errors()[self._rules_errors_acked:]

    def check_rules_errors(self):
        """Raise AssertionError if polkitd logged a rules error not acknowledged yet."""
        errs = self.unacknowledged_rules_errors()
        if errs:
            raise AssertionError('polkitd reports broken rules:\n' + '\n'.join(errs))

    def acknowledge_rules_errors(self):
        """Mark the rules errors logged so far as expected (teardown will not fail on them)."""
        self._rules_errors_acked = len(self.rules_errors())

    # ---- polkitd itself -------------------------------------------------------------------
    @property
    def polkitd_pid(self):
        return self._polkit_child.pid if self._polkit_child.alive() else None

    def signal_polkitd(self, sig):
        """Send a signal and return at once: SIGSTOP makes every check hang (all of them:
        a per-action hang needs python-dbusmock's polkitd template), SIGCONT resumes."""
        os.kill(self._polkit_child.pid, sig)

    def kill_polkitd(self, sig=signal.SIGTERM, timeout=10.0):
        """Stop polkitd (polkit unreachable) and wait until its name is gone; returns its
        exit status."""
        self._polkit_child.popen.send_signal(sig)
        try:
            rc = self._polkit_child.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self._polkit_child.stop(signal.SIGKILL)
            raise AssertionError('polkitd did not exit within %.0f s of signal %d'
                                 % (timeout, sig))
        deadline = time.monotonic() + timeout
        while self.bus.name_has_owner(POLKIT_NAME):
            if time.monotonic() > deadline:
                raise TestBedError('%s still has an owner after polkitd exited' % POLKIT_NAME)
            time.sleep(0.002)
        return rc

    def start_polkitd(self):
        """Start polkitd again after kill_polkitd(), with the rules and actions on disk."""
        if self._polkit_child.alive():
            raise TestBedError('polkitd is already running')
        self._polkit_starts += 1
        with open(self.logs['polkitd'], 'a') as f:
            f.write('----- testbed: polkitd start #%d -----\n' % self._polkit_starts)
        self._start_polkitd()

    # ---- the bus itself -------------------------------------------------------------------
    def kill_bus(self, sig=signal.SIGKILL, timeout=10.0):
        """Kill dbus-daemon (a bus crash).  polkitd exits with it, every agent loses its
        connection, and the daemon is expected to exit (exit-on-disconnect): wait for that
        with wait_daemon_exit().  Returns dbus-daemon's exit status."""
        self._daemon_expected_exit = True
        rc, _ = self._bus_child.stop(sig, grace=timeout)
        return rc

    def wait_daemon_exit(self, timeout=10.0):
        """Wait for the daemon to exit by itself, which the test expects; returns its exit
        status (None if it is still running after timeout)."""
        self._daemon_expected_exit = True
        try:
            return self._daemon.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def restart_bus(self):
        """After kill_bus(): a new dbus-daemon on the same socket path and a new polkitd.
        self.bus and self.local are new connections; the daemon is not started."""
        if self._bus_child.alive():
            raise TestBedError('dbus-daemon is still running')
        if self._polkit_child.alive():
            self._polkit_child.stop(signal.SIGTERM)
        try:
            self.bus.close()
        except Exception:
            pass
        if self._local is not None:
            self._local.exit()
            self._local = None
        self._start_bus()
        self._polkit_starts += 1
        self._start_polkitd()
        self.bus = dbus.bus.BusConnection(self.address,
                                          mainloop=dbus.mainloop.glib.DBusGMainLoop())
        self.bus.add_signal_receiver(self._on_polkit_changed, signal_name='Changed',
                                     dbus_interface=POLKIT_IFACE, path=POLKIT_PATH)

    # ---- the daemon under test ------------------------------------------------------------
    def start_daemon(self, extra_args=(), config=None, env=None, timeout=None):
        """Start IA_DAEMON --bus-address=A --state-dir=D --log-level=debug [--config=F]
        EXTRA_ARGS and wait until it owns org.example.ImageAccess.  config: text for a
        config file.  Fails with the daemon's log if it exits first."""
        if not self.daemon_path:
            raise unittest.SkipTest('IA_DAEMON is not set: the daemon was not built '
                                    '(no image_accessd target in daemon/meson.build)')
        if self.daemon_running():
            raise TestBedError('the daemon is already running')
        args = ['--bus-address=' + self.address, '--state-dir=' + self.state_dir,
                '--log-level=debug']
        if config is not None:
            path = os.path.join(self.runtime_dir, 'image-access.conf')
            self._write_file(path, config)
            args.append('--config=' + path)
        args += list(extra_args)
        self._daemon_args = (list(extra_args), config, env)
        full_env = dict(os.environ)
        for var in ('NOTIFY_SOCKET', 'DBUS_SESSION_BUS_ADDRESS', 'LISTEN_FDS', 'LISTEN_PID'):
            full_env.pop(var, None)
        full_env.update(self.base_env())
        full_env.update(env or {})
        self._daemon_starts += 1
        name = 'daemon'
        self.logs['daemon'] = os.path.join(self.log_dir, 'daemon.log')
        with open(self.logs['daemon'], 'a') as f:
            f.write('----- testbed: start #%d: %s -----\n'
                    % (self._daemon_starts, ' '.join([self.daemon_path] + args)))
        self._daemon = self._spawn(name, self.daemon_wrapper + [self.daemon_path] + args,
                                   full_env)
        self._daemon_expected_exit = False
        timeout = timeout or START_TIMEOUT * (5 if self.daemon_wrapper else 1)
        deadline = time.monotonic() + timeout
        while not self.bus.name_has_owner(BUS_NAME):
            if not self._daemon.alive():
                self._daemon_expected_exit = True
                raise TestBedError('image-accessd exited during start-up (status %s):\n%s'
                                   % (self._daemon.popen.returncode,
                                      _tail(self.logs['daemon'])))
            if time.monotonic() > deadline:
                raise TestBedError('image-accessd did not own %s within %.0f s:\n%s'
                                   % (BUS_NAME, timeout, _tail(self.logs['daemon'])))
            time.sleep(0.003)
        return self._daemon.pid

    def daemon_running(self):
        return self._daemon is not None and self._daemon.alive()

    @property
    def daemon_pid(self):
        return self._daemon.pid if self.daemon_running() else None

    def signal_daemon(self, sig):
        """Send a signal and return at once (SIGSTOP/SIGCONT: a hang).  To end the daemon use
        kill_daemon(): an exit the bed did not ask for fails the test at teardown."""
        os.kill(self._daemon.pid, sig)

    def kill_daemon(self, sig=signal.SIGTERM, timeout=10.0):
        """Send sig, wait for the process to exit and the bus name to be released; returns
        the exit status (0, or -N when killed by signal N)."""
        if not self.daemon_running():
            raise TestBedError('the daemon is not running')
        self._daemon_expected_exit = True
        os.kill(self._daemon.pid, sig)
        try:
            rc = self._daemon.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self._daemon.stop(signal.SIGKILL)
            raise AssertionError('image-accessd did not exit within %.0f s of signal %d'
                                 % (timeout, sig))
        deadline = time.monotonic() + timeout
        while self.bus.name_has_owner(BUS_NAME):
            if time.monotonic() > deadline:
                raise TestBedError('%s still has an owner after the daemon exited' % BUS_NAME)
            time.sleep(0.002)
        return rc

    def restart_daemon(self, sig=signal.SIGTERM, extra_args=None, config=None, env=None):
        """kill_daemon(sig) then start_daemon() with the same arguments unless new ones are
        given; the state dir is kept.  Returns the exit status of the old process."""
        old_args, old_config, old_env = self._daemon_args
        rc = self.kill_daemon(sig)
        self.start_daemon(old_args if extra_args is None else extra_args,
                          old_config if config is None else config,
                          old_env if env is None else env)
        return rc

    restart = restart_daemon

    def daemon_sanitized(self):
        """Whether the running daemon is built with AddressSanitizer (meson -Db_sanitize):
        its allocator keeps freed memory in quarantine, so bounds on VmRSS measure ASan,
        not the daemon."""
        with open('/proc/%d/maps' % self._daemon.pid) as f:
            return 'libasan' in f.read()

    def daemon_fds(self):
        """The daemon's open fds: [{fd, target, flags, cloexec}] from /proc (to check that it
        keeps no copies of handed-out fds and opens everything O_CLOEXEC)."""
        pid = self._daemon.pid
        res = []
        for fd in sorted(os.listdir('/proc/%d/fd' % pid), key=int):
            try:
                target = os.readlink('/proc/%d/fd/%s' % (pid, fd))
                with open('/proc/%d/fdinfo/%s' % (pid, fd)) as f:
                    flags = int(re.search(r'^flags:\s+(\d+)', f.read(), re.M).group(1), 8)
            except (OSError, AttributeError):
                continue
            res.append({'fd': int(fd), 'target': target, 'flags': flags,
                        'cloexec': bool(flags & os.O_CLOEXEC)})
        return res

    # ---- callers --------------------------------------------------------------------------
    def agent(self, who='root', groups=None):
        """A caller process: who is a test user name ('ia-emu1'), 'root', or a numeric uid
        (gid = uid).  groups: supplementary gids (default: the user's groups in the private
        group file; [] for none).  Returns an Agent (see AgentBase)."""
        if who == 'root' or who == 0:
            name, uid, gid, default_groups = 'root', 0, 0, []
        elif isinstance(who, int):
            name, uid, gid, default_groups = str(who), who, who, []
        else:
            u = self.users[who]
            name, uid, gid, default_groups = u.name, u.uid, u.gid, u.groups
        self._agent_seq += 1
        a = Agent(self, name, uid, gid, default_groups if groups is None else list(groups),
                  self._agent_seq)
        self._agents.append(a)
        return a

    @property
    def local(self):
        """A LocalAgent: root calls from the test process itself (no extra process)."""
        if self._local is None:
            self._local = LocalAgent(self)
        return self._local

    def connection_uid(self, name):
        """GetConnectionUnixUser of a bus name, as the bus sees it."""
        return int(self.bus.call_blocking('org.freedesktop.DBus', '/org/freedesktop/DBus',
                                          'org.freedesktop.DBus', 'GetConnectionUnixUser',
                                          's', [name]))

    def connection_pid(self, name):
        return int(self.bus.call_blocking('org.freedesktop.DBus', '/org/freedesktop/DBus',
                                          'org.freedesktop.DBus',
                                          'GetConnectionUnixProcessID', 's', [name]))

    # ---- images ---------------------------------------------------------------------------
    def make_image(self, name, data=b'', size=None, mode=0o600, uid=0, gid=0):
        """Create images_dir/NAME (subdirectories made as needed) with data, optionally
        truncated/extended to size; returns the absolute path."""
        path = os.path.join(self.images_dir, name)
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        try:
            os.write(fd, data)
            if size is not None:
                os.ftruncate(fd, size)
            os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
        return path


BUS_CONFIG_TEMPLATE = '''<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<!-- Generated by tests/integration/testbed.py: the policy of /usr/share/dbus-1/system.conf,
     polkitd's own policy, and the project's bus policy; nothing from the host's system.d. -->
<busconfig>
  <type>system</type>
  <listen>unix:path=%(socket)s</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"
          send_member="UpdateActivationEnvironment"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Debug.Stats"/>
    <allow send_destination="org.freedesktop.PolicyKit1"/>
  </policy>
  <policy user="root">
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Monitoring"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Debug.Stats"/>
  </policy>
  <policy user="polkitd">
    <allow own="org.freedesktop.PolicyKit1"/>
    <allow send_interface="org.freedesktop.PolicyKit1.AuthenticationAgent"/>
  </policy>
  <include ignore_missing="no">%(include)s</include>
%(extra_includes)s</busconfig>
'''

_LIVE_BEDS = set()


@atexit.register
def _stop_live_beds():
    """Last resort (an interrupted run): stop whatever is still running."""
    for bed in list(_LIVE_BEDS):
        try:
            bed.stop(check=False)
        finally:
            bed.remove()


# ---- unittest integration -------------------------------------------------------------------

class _FailureWatch:
    """Wraps a unittest result to notice failures of the test it runs."""

    def __init__(self, result):
        self._result = result
        self.failed = False

    def __getattr__(self, name):
        return getattr(self._result, name)

    def addError(self, test, err):
        self.failed = True
        self._result.addError(test, err)

    def addFailure(self, test, err):
        self.failed = True
        self._result.addFailure(test, err)

    def addSubTest(self, test, subtest, err):
        if err is not None:
            self.failed = True
        self._result.addSubTest(test, subtest, err)

    def addUnexpectedSuccess(self, test):
        self.failed = True
        self._result.addUnexpectedSuccess(test)


class IaTestCase(unittest.TestCase):
    """Base class: a fresh TestBed per test, as self.bed.

    Class attributes:
      daemon_autostart  start the daemon in setUp (default True; skipped if IA_DAEMON unset)
      daemon_args       extra arguments for that start
      daemon_config     config file text for that start (None: no --config)
      bed_options       keyword arguments for TestBed (rules=, actions=, ...)
    On failure the last lines of every log are printed; teardown fails the test on leftover
    processes, a crashed daemon, or rules errors in polkitd's log.
    """

    daemon_autostart = True
    daemon_args = ()
    daemon_config = None
    bed_options = {}

    def setUp(self):
        self.bed = TestBed(**self.bed_options)
        self.addCleanup(self.bed.stop)
        self.bed.start()
        if self.daemon_autostart:
            self.bed.start_daemon(self.daemon_args, self.daemon_config)

    def run(self, result=None):
        if result is None:
            return super().run(result)
        watch = _FailureWatch(result)
        try:
            return super().run(watch)
        finally:
            bed = getattr(self, 'bed', None)
            if bed is not None:
                if watch.failed:
                    bed.dump_logs()
                bed.remove()

    def assertOk(self, reply, msg=None):
        """Assert a Reply succeeded; returns its values."""
        if not reply.ok:
            self.fail('%sexpected success, got %s: %s'
                      % (msg + ': ' if msg else '', reply.error, reply.message))
        return reply.values

    def assertError(self, reply, name, msg=None):
        """Assert a Reply is the D-Bus error `name`; returns its message."""
        if reply.ok or reply.error != name:
            self.fail('%sexpected error %s, got %r' % (msg + ': ' if msg else '', name, reply))
        return reply.message


# ---- running and listing --------------------------------------------------------------------

def _iter_tests(suite):
    for t in suite:
        if isinstance(t, unittest.TestSuite):
            yield from _iter_tests(t)
        else:
            yield t


def _list_module(module):
    loader = unittest.TestLoader()
    return [t.id().split('.', 1)[1] if t.id().startswith(module.__name__ + '.') else t.id()
            for t in _iter_tests(loader.loadTestsFromModule(module))]


def list_all(directory):
    """Lines 'FILE TEST_ID parallel|serial' for every test method of directory/test_*.py.
    A file opts out of parallel runs with a module attribute IA_PARALLEL = False."""
    import importlib.util
    sys.path.insert(0, directory)
    lines = []
    for fn in sorted(os.listdir(directory)):
        if not (fn.startswith('test_') and fn.endswith('.py')):
            continue
        spec = importlib.util.spec_from_file_location(fn[:-3], os.path.join(directory, fn))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        mode = 'parallel' if getattr(mod, 'IA_PARALLEL', True) else 'serial'
        tests = _list_module(mod)
        if not tests:
            raise SystemExit('%s defines no tests' % fn)
        lines += ['%s %s.%s %s' % (fn, fn[:-3], t, mode) for t in tests]
    return lines


def main():
    """Entry point of a test file: `test_x.py [--list | Class.method ...]`.  Exit status:
    0 passed, 1 failed, 77 everything skipped (with the reason on stderr)."""
    if '--list' in sys.argv[1:]:
        print('\n'.join(_list_module(sys.modules['__main__'])))
        return
    # meson's timeout sends SIGTERM: turn it into an error so cleanups and log dumps run
    signal.signal(signal.SIGTERM, lambda *a: sys.exit('SIGTERM (test timeout?)'))
    prog = unittest.main(module='__main__', exit=False, verbosity=2,
                         testRunner=unittest.TextTestRunner(stream=sys.stderr, verbosity=2))
    res = prog.result
    if res.failures or res.errors or res.unexpectedSuccesses:
        sys.exit(1)
    if res.testsRun and len(res.skipped) == res.testsRun:
        reasons = sorted({r for _, r in res.skipped})
        sys.stderr.write('SKIP (exit 77; CI counts this as a failure): %s\n' % '; '.join(reasons))
        sys.exit(77)
    sys.exit(0)


def _check_registered(directory, registered):
    """meson test: every test method on disk is registered (else: reconfigure)."""
    on_disk = sorted(list_all(directory))
    reg = sorted(line for line in registered.split(';') if line)
    if on_disk != reg:
        missing = sorted(set(on_disk) - set(reg))
        stale = sorted(set(reg) - set(on_disk))
        sys.stderr.write('integration tests on disk and registered with meson differ; run '
                         '`meson setup --reconfigure BUILDDIR`.\n  not registered: %s\n  '
                         'gone: %s\n' % (missing, stale))
        sys.exit(1)
    print('%d integration tests registered' % len(reg))


if __name__ == '__main__':
    if len(sys.argv) == 3 and sys.argv[1] == '--list-all':
        print('\n'.join(list_all(sys.argv[2])))
    elif len(sys.argv) == 3 and sys.argv[1] == '--check-registered':
        _check_registered(sys.argv[2], os.environ.get('IA_REGISTERED_TESTS', ''))
    else:
        sys.exit('usage: testbed.py --list-all DIR | --check-registered DIR')

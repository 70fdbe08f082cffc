# SPDX-License-Identifier: LGPL-2.1-or-later
"""
Runs tests/integration/ia-attack (the C attacker, see its header) on a test bed, as root or
as a test user (setpriv, like testbed.Agent), and helpers the attack and fault tests share.

    h = attackhelper.Helper(self, 'ia-emu1', 'open-loop', guest='vm1', path=p, mode='read-only')
    res = h.result()          # the JSON object the helper printed last; asserts exit status 0

Every Helper is killed in the test's cleanup, before the bed is torn down.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import unittest

import testbed


def attack_path():
    """The built helper: $IA_ATTACK (tests/integration/meson.build sets it), else next to
    $IA_DAEMON's build dir."""
    path = os.environ.get('IA_ATTACK')
    if not path and os.environ.get('IA_DAEMON'):
        build = os.path.dirname(os.path.dirname(os.path.abspath(os.environ['IA_DAEMON'])))
        path = os.path.join(build, 'tests', 'integration', 'ia-attack')
    return path if path and os.access(path, os.X_OK) else None


def user_argv(bed, who, argv):
    """argv run as `who` ('root', a test user name or a uid), dying with the test."""
    if who in ('root', 0):
        return list(argv)
    if isinstance(who, int):
        uid = gid = who
        groups = []
    else:
        u = bed.users[who]
        uid, gid, groups = u.uid, u.gid, u.groups
    grp = ['--groups=' + ','.join(map(str, groups))] if groups else ['--clear-groups']
    return ['setpriv', '--reuid=%d' % uid, '--regid=%d' % gid] + grp + \
        ['--pdeathsig=SIGKILL', '--'] + list(argv)


class Helper:
    """One run of ia-attack ACTION --address=BED --KEY=VALUE … (ACTION: its mode)"""

    def __init__(self, test, who, action, timeout=100, stdout_file=None, **opts):
        """stdout_file: write the output there instead of a pipe (a helper that prints a
        lot while the test is busy elsewhere must never block on a full pipe)."""
        bed = test.bed
        binary = attack_path()
        if not binary:
            raise unittest.SkipTest('ia-attack is not built (IA_ATTACK unset)')
        # test users may not be able to reach the build dir: run a copy from the runtime dir
        copy = os.path.join(bed.runtime_dir, 'ia-attack')
        if not os.path.exists(copy):
            shutil.copyfile(binary, copy)
            os.chmod(copy, 0o755)
        args = [copy, action, '--address=' + bed.address]
        for key, value in opts.items():
            args.append('--%s=%s' % (key.replace('_', '-'), value))
        self.name = '%s %s' % (action, who)
        self.timeout = timeout
        self.stdout_file = stdout_file
        out = open(stdout_file, 'wb') if stdout_file else subprocess.PIPE
        try:
            self.popen = subprocess.Popen(user_argv(bed, who, args), env=bed.base_env(),
                                          stdout=out, stderr=subprocess.PIPE,
                                          preexec_fn=testbed._child_setup)
        finally:
            if stdout_file:
                out.close()
        self._out = None
        test.addCleanup(self.kill)

    def kill(self):
        if self.popen.poll() is None:
            self.popen.kill()
        try:
            self.popen.communicate(timeout=10)
        except (ValueError, subprocess.TimeoutExpired):
            pass

    def readline(self, timeout=10):
        """The next line of output, parsed (for modes that print as they go)."""
        import select
        deadline = time.monotonic() + timeout
        fd = self.popen.stdout
        if self.stdout_file:
            while True:
                with open(self.stdout_file) as f:
                    line = f.readline()
                if line.endswith('\n'):
                    return json.loads(line)
                if time.monotonic() > deadline:
                    raise AssertionError('%s printed nothing within %.0f s' % (self.name, timeout))
                time.sleep(0.01)
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise AssertionError('%s printed nothing within %.0f s' % (self.name, timeout))
            line = fd.readline()
            if not line:
                raise AssertionError('%s exited: %s' % (self.name, self.popen.wait()))
            return json.loads(line)

    def output(self, timeout=None):
        """All lines of output, parsed, once the helper has exited (status 0)."""
        if self._out is None:
            try:
                out, err = self.popen.communicate(timeout=timeout or self.timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError('%s did not finish within %s s' % (self.name, timeout or self.timeout))
            if self.popen.returncode != 0:
                raise AssertionError('%s failed (status %s): %s'
                                     % (self.name, self.popen.returncode, err.decode(errors='replace')))
            if self.stdout_file:
                with open(self.stdout_file, 'rb') as f:
                    out = f.read()
            self._out = [json.loads(line) for line in out.decode().splitlines() if line.strip()]
        return self._out

    def result(self, timeout=None):
        """The last JSON object the helper printed."""
        return self.output(timeout)[-1]


def run(test, who, action, timeout=100, **opts):
    """Helper(...).result()"""
    return Helper(test, who, action, timeout=timeout, **opts).result()


def figures(test, **values):
    """Print the figures a test measured, on one line that the report can collect."""
    sys.stderr.write('FIGURES %s: %s\n' % (test.id().split('.', 1)[-1], json.dumps(values, sort_keys=True)))


def vm_rss_kb(pid):
    with open('/proc/%d/status' % pid) as f:
        return int(re.search(r'^VmRSS:\s+(\d+)', f.read(), re.M).group(1))


def fd_table(bed, ignore=()):
    """[(fd, target)] of the daemon, without targets starting with any of `ignore`."""
    return [(f['fd'], f['target']) for f in bed.daemon_fds()
            if not any(f['target'].startswith(i) for i in ignore)]


def wait_fds(test, bed, baseline, timeout=20.0, ignore=()):
    """Wait until the daemon's fd table equals baseline again; assert it does."""
    deadline = time.monotonic() + timeout
    while True:
        now = fd_table(bed, ignore)
        if now == baseline or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    test.assertEqual(now, baseline, "the daemon's fds after the storm (before: %d, after: %d)"
                     % (len(baseline), len(now)))
    return len(now)


def ping(test, bed):
    """Returns once the daemon has dispatched everything sent to it before."""
    test.assertOk(bed.local.call('Ping', iface='org.freedesktop.DBus.Peer'))


def make_user_dir(path, user):
    os.makedirs(path, exist_ok=True)
    os.chown(path, user.uid, user.gid)
    os.chmod(path, 0o755)
    return path


def private_mounts():
    """Move this (single-threaded) test process into a mount namespace of its own, with no
    propagation to the host: mounts made by the test (tmpfs, FUSE) vanish with its last
    process even if the test is killed, and the daemon, its child, sees them."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    CLONE_NEWNS = 0x00020000
    if libc.unshare(CLONE_NEWNS) != 0:
        e = ctypes.get_errno()
        raise OSError(e, 'unshare(CLONE_NEWNS): ' + os.strerror(e))
    subprocess.run(['mount', '--make-rprivate', '/'], check=True)


def mount_ext4(test, name='ext4', size_mb=32):
    """A fresh ext4 file system, loop-mounted at IMAGES_DIR/NAME for this test (call
    private_mounts() first, before the daemon starts, so that the daemon sees it and nobody
    else does).  ext4 reuses a freed inode number for the next file created, which is what
    the identity attacks need.  Unmounted and its loop device detached in the test's
    cleanup, also when the test fails.  Returns (mount point, loop device)."""
    img = os.path.join(test.bed.runtime_dir, name + '.img')
    mnt = os.path.join(test.bed.images_dir, name)
    with open(img, 'wb') as f:
        f.truncate(size_mb << 20)
    subprocess.run(['mkfs.ext4', '-q', '-F', img], check=True)
    os.mkdir(mnt)
    loop = subprocess.run(['losetup', '--find', '--show', img], check=True,
                          capture_output=True, text=True).stdout.strip()
    test.addCleanup(subprocess.run, ['losetup', '-d', loop], check=False)
    subprocess.run(['mount', '-t', 'ext4', loop, mnt], check=True)
    test.addCleanup(subprocess.run, ['umount', mnt], check=False)
    return mnt, loop


def kill_quietly(pid, sig=signal.SIGKILL):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


class FullQueue:
    """Stops the service and fills its queue in dbus-daemon, which then drops every message
    for the service, signals included, until the service reads again:

        with attackhelper.FullQueue(test, bed):
            ...               # e.g. a connection leaves: its NameOwnerChanged is lost

    dbus-daemon keeps at most max_outgoing_unix_fds (64) fds queued for one receiver.  Two
    large calls fill the socket to the stopped service, so that what follows stays in
    dbus-daemon's queue; then two connections queue 4 calls of 16 fds each (a sender may
    itself have at most 64 fds in dbus-daemon's hands).  A ping from the test proves the
    queue full.  On leaving, the service continues, the fillers disconnect, and the service
    has read its queue when the block ends."""

    def __init__(self, test, bed):
        self.test, self.bed = test, bed

    def __enter__(self):
        import rawbus
        self.bed.signal_daemon(signal.SIGSTOP)
        self.conns = []
        fds = [os.open('/dev/null', os.O_RDONLY | os.O_CLOEXEC) for _ in range(16)]
        try:
            big = rawbus.Marshal()
            big.s('x' * (512 * 1024))
            for n in range(2):
                c = rawbus.Conn(self.bed.socket_path)
                self.conns.append(c)
                if n == 0:
                    for _ in range(2):
                        c.send(self.ping(c, 's', big.b, 0))
                for _ in range(4):
                    c.send(self.ping(c, '', b'', len(fds)), fds)
        finally:
            for fd in fds:
                os.close(fd)
        # (dbus-daemon may not have read all of it yet)
        for _ in range(20):
            r = self.bed.local.call('Ping', iface='org.freedesktop.DBus.Peer', timeout=0.5)
            if r.error == 'org.freedesktop.DBus.Error.LimitsExceeded':
                break
        self.test.assertEqual(r.error, 'org.freedesktop.DBus.Error.LimitsExceeded', r)
        return self

    @staticmethod
    def ping(c, sig, body, nfds):
        import rawbus
        return rawbus.message(c.next(), '/org/example/ImageAccess', 'org.freedesktop.DBus.Peer',
                              'Ping', testbed.BUS_NAME, sig, body, nfds)

    def __exit__(self, *exc):
        self.bed.signal_daemon(signal.SIGCONT)
        for c in self.conns:
            c.sock.close()
        # until the service has read its queue, dbus-daemon still refuses calls to it
        deadline = time.monotonic() + 10
        while True:
            r = self.bed.local.call('Ping', iface='org.freedesktop.DBus.Peer', timeout=5)
            if r.ok or time.monotonic() > deadline or exc[0] is not None:
                break
            self.test.assertEqual(r.error, 'org.freedesktop.DBus.Error.LimitsExceeded', r)
            time.sleep(0.02)
        return False

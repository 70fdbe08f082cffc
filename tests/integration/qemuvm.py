#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""
Unmodified QEMU as an unprivileged emulator of the test bed: images made as root with
qemu-img, QEMU started as a test user with LD_PRELOAD of libimageaccess-preload.so, and a
small QMP client.  Used by test_qemu.py and tests/bench/bench-qemu.py.

How Debian's QEMU 7.2 opens images (what the shim must handle) is measured in
docs/qemu-open-patterns.md; docs/qemu.md is the user's guide.

    vm = qemuvm.Qemu(bed, 'ia-emu1', guest='vm1', disks=[base0, base1],
                     prefixes=[images_dir], shim=path_of_the_shim)
    vm.start()                       # returns once QMP is up (qmp_capabilities done)
    vm.qmp('query-block')            # → the 'return' value; QmpError on an error answer
    vm.snapshot({'d0': ov0, ...})    # one transaction of blockdev-snapshot-sync
    vm.stop()                        # quit, or kill after a grace period

Everything QEMU prints goes to the bed's log 'qemu-NAME' (shown on failure).
"""

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import time

import testbed

QEMU = shutil.which('qemu-system-x86_64') or '/usr/bin/qemu-system-x86_64'
QEMU_IMG = shutil.which('qemu-img') or '/usr/bin/qemu-img'
# HMP qemu-io prints its results on QEMU's stdout (the log file): line-buffer it so that the
# output is there when the command returns.  stdbuf preloads its own library after ours.
STDBUF = shutil.which('stdbuf') or '/usr/bin/stdbuf'
SHIM_VAR = 'IA_PRELOAD_SHIM'    # set by meson to the built shim
QMP_TIMEOUT = 30.0


def missing_requirements():
    """Why QEMU tests cannot run here (a string), or None."""
    for path, pkg in ((QEMU, 'qemu-system-x86'), (QEMU_IMG, 'qemu-utils'),
                      (STDBUF, 'coreutils')):
        if not os.access(path, os.X_OK):
            return '%s not found (install the Debian package %s)' % (path, pkg)
    shim = os.environ.get(SHIM_VAR)
    if not shim or not os.path.exists(shim):
        return '%s is not set to the built libimageaccess-preload.so' % SHIM_VAR
    return None


def shim_path(bed=None):
    """The built shim, as a path LD_PRELOAD can carry.  ld.so splits LD_PRELOAD at spaces and
    colons, so a checkout in a path with either gets a symlink in the bed's runtime dir."""
    path = os.environ.get(SHIM_VAR)
    if path and bed is not None and (' ' in path or ':' in path):
        link = os.path.join(bed.runtime_dir, os.path.basename(path))
        if ' ' in link or ':' in link:
            raise testbed.TestBedError('LD_PRELOAD cannot name %s nor %s: both contain a space '
                                       'or a colon (set TMPDIR to a plain path)' % (path, link))
        if not os.path.lexists(link):
            os.symlink(path, link)
        return link
    return path


# ---- images ---------------------------------------------------------------------------------

def image_dir(bed, name='vm'):
    """A root-owned 0711 directory for images under the bed's images dir: any uid may look
    up a name in it (stat works), nobody but root may list or create."""
    path = os.path.join(bed.images_dir, name)
    os.makedirs(path, exist_ok=True)
    os.chown(path, 0, 0)
    os.chmod(path, 0o711)
    return path


def make_qcow2(path, size='1M', backing=None):
    """qemu-img create as root, then root:root 0600: the emulator cannot open it itself."""
    argv = [QEMU_IMG, 'create', '-q', '-f', 'qcow2']
    if backing:
        argv += ['-b', backing, '-F', 'qcow2']
    argv += [path, size]
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    os.chown(path, 0, 0)
    os.chmod(path, 0o600)
    return path


def qemu_img_map(path):
    """`qemu-img map --output=json` of an image (as root): the list of extents."""
    out = subprocess.run([QEMU_IMG, 'map', '--output=json', '-U', path], check=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE).stdout
    return json.loads(out)


def qemu_img_info(path):
    out = subprocess.run([QEMU_IMG, 'info', '--output=json', '-U', path], check=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE).stdout
    return json.loads(out)


# ---- QMP ------------------------------------------------------------------------------------

class QmpError(Exception):
    """QEMU answered a command with an error: .cls and .desc."""

    def __init__(self, command, error):
        self.cls = error.get('class')
        self.desc = error.get('desc')
        super().__init__('%s: %s: %s' % (command, self.cls, self.desc))


class Qmp:
    """A QMP connection over a unix socket: one command at a time, events kept aside."""

    def __init__(self, path, timeout=QMP_TIMEOUT):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.timeout = timeout
        self.buf = b''
        self.events = []
        greeting = self._read()
        if 'QMP' not in greeting:
            raise testbed.TestBedError('not a QMP greeting: %r' % greeting)
        self.command('qmp_capabilities')

    def _read(self):
        deadline = time.monotonic() + self.timeout
        while b'\n' not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise testbed.TestBedError('QMP: no answer within %.0f s' % self.timeout)
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise testbed.TestBedError('QMP: QEMU closed the connection')
            self.buf += chunk
        line, self.buf = self.buf.split(b'\n', 1)
        return json.loads(line)

    def send(self, command, arguments=None):
        """Send a command without waiting; receive() returns its answer later."""
        msg = {'execute': command}
        if arguments is not None:
            msg['arguments'] = arguments
        self.sock.sendall(json.dumps(msg).encode() + b'\n')

    def receive(self):
        """The next answer (events are kept aside)."""
        while True:
            ans = self._read()
            if 'event' in ans:
                self.events.append(ans)
                continue
            return ans

    def execute(self, command, arguments=None):
        """Send a command; returns the raw answer ({'return': …} or {'error': …})."""
        self.send(command, arguments)
        return self.receive()

    def command(self, command, arguments=None):
        """execute() that returns the 'return' value or raises QmpError."""
        ans = self.execute(command, arguments)
        if 'error' in ans:
            raise QmpError(command, ans['error'])
        return ans['return']

    def wait_event(self, name, timeout=None, match=None):
        """The first event called name (and matching match(data)), waiting for it."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            for i, ev in enumerate(self.events):
                if ev['event'] == name and (match is None or match(ev.get('data', {}))):
                    return self.events.pop(i)
            if time.monotonic() > deadline:
                raise testbed.TestBedError('QMP: no %s event within %.0f s' % (name, timeout))
            saved = self.timeout
            self.timeout = max(0.01, deadline - time.monotonic())
            try:
                ev = self._read()
            except testbed.TestBedError:
                if time.monotonic() > deadline:
                    raise
                continue
            finally:
                self.timeout = saved
            if 'event' in ev:
                self.events.append(ev)

    def close(self):
        self.sock.close()


# ---- QEMU -----------------------------------------------------------------------------------

class Qemu:
    """qemu-system-x86_64 as a test user, with the shim preloaded.

    who       test user name ('ia-emu1'), or 'root' (then no shim: direct opens)
    guest     IMAGE_ACCESS_GUEST; prefixes: IMAGE_ACCESS_PREFIXES (list)
    disks     base image paths; disk i is node 'f<i>' (file) / 'd<i>' (qcow2) / device 'vd<i>'
    machine   'q35' (a PC with virtio-blk-pci devices) or 'none' (block layer only)
    hold      start stopped in a wrapper that waits for release() before exec'ing QEMU, so
              that the manager can BindProcess the pid first (same pid before and after exec)
    use_bus_address_var  pass the bus as IMAGE_ACCESS_BUS_ADDRESS (else only through
              DBUS_SYSTEM_BUS_ADDRESS)
    extra_args  more QEMU arguments (e.g. -sandbox on,...)
    """

    def __init__(self, bed, who, guest=None, disks=(), prefixes=(), machine='q35',
                 shim=None, hold=False, use_bus_address_var=True, debug=False, extra_env=None,
                 name=None, extra_args=()):
        self.bed, self.who, self.guest = bed, who, guest
        self.disks, self.prefixes, self.machine = list(disks), list(prefixes), machine
        self.shim = shim if shim is not None else shim_path(bed)
        self.hold, self.use_bus_address_var, self.debug = hold, use_bus_address_var, debug
        self.extra_env = dict(extra_env or {})
        self.extra_args = list(extra_args)
        self.name = name or guest or who
        if who == 'root':
            self.uid = self.gid = 0
        else:
            u = bed.users[who]
            self.uid, self.gid = u.uid, u.gid
        self.run_dir = os.path.join(bed.runtime_dir, 'qemu-' + self.name)
        self.qmp_path = os.path.join(self.run_dir, 'qmp.sock')
        self.child = None
        self.qmp_conn = None
        self._release_w = None

    # ---- command line -------------------------------------------------------------------
    def argv(self):
        a = [STDBUF, '-oL', QEMU, '-machine', ('q35,accel=tcg' if self.machine == 'q35' else 'none'),
             '-m', '64', '-S', '-nodefaults', '-display', 'none', '-serial', 'none',
             '-monitor', 'none', '-qmp', 'unix:%s,server=on,wait=off' % self.qmp_path]
        for i, path in enumerate(self.disks):
            a += ['-blockdev', 'driver=file,filename=%s,node-name=f%d' % (path, i),
                  '-blockdev', 'driver=qcow2,file=f%d,node-name=d%d' % (i, i)]
            if self.machine == 'q35':
                a += ['-device', 'virtio-blk-pci,drive=d%d,id=vd%d' % (i, i)]
        return a + self.extra_args

    def env(self):
        env = self.bed.base_env(HOME=self.run_dir)
        if self.who != 'root' and self.shim:
            env['LD_PRELOAD'] = self.shim
            env['IMAGE_ACCESS_GUEST'] = self.guest
            env['IMAGE_ACCESS_PREFIXES'] = ':'.join(self.prefixes)
            if self.use_bus_address_var:
                env['IMAGE_ACCESS_BUS_ADDRESS'] = self.bed.address
            if self.debug:
                env['IMAGE_ACCESS_DEBUG'] = '1'
        env.update(self.extra_env)
        return env

    # ---- life ---------------------------------------------------------------------------
    def start(self, wait=True):
        """Spawn QEMU (via setpriv for a test user); with wait, return once QMP is ready.
        With hold, returns after the wrapper switched uid and waits: call release()."""
        os.makedirs(self.run_dir, exist_ok=True)
        os.chown(self.run_dir, self.uid, self.gid)
        os.chmod(self.run_dir, 0o700)
        argv = self.argv()
        pass_fds = ()
        ready_r = None
        if self.hold:
            # The wrapper: tell the test it runs (as the final uid), wait for the go, exec.
            ready_r, ready_w = os.pipe()
            rel_r, rel_w = os.pipe()
            argv = ['/bin/sh', '-c', 'echo ready >&%d; exec %d>&-; read go <&%d; exec %d<&-; '
                    'exec "$@"' % (ready_w, ready_w, rel_r, rel_r), 'ia-qemu-hold'] + argv
            pass_fds = (ready_w, rel_r)
        # Root's QEMU goes through setpriv too: the same launch for both, so that timings
        # of the two differ only by what the service adds (the extra exec cost some 13 ms
        # of a 150 ms start).
        argv = ['setpriv', '--reuid=%d' % self.uid, '--regid=%d' % self.gid,
                '--clear-groups', '--pdeathsig=SIGKILL', '--'] + argv
        try:
            self.child = self.bed._spawn('qemu-' + self.name, argv, self.env(),
                                         pass_fds=pass_fds)
        finally:
            if self.hold:
                os.close(ready_w)
                os.close(rel_r)
        self.pid = self.child.pid
        if self.hold:
            self._release_w = rel_w
            try:
                r, _, _ = select.select([ready_r], [], [], testbed.START_TIMEOUT)
                data = os.read(ready_r, 64) if r else b''
            finally:
                os.close(ready_r)
            if not data.startswith(b'ready'):
                raise testbed.TestBedError('the QEMU wrapper did not start:\n%s' % self.log())
            return self
        if wait:
            self.wait_qmp()
        return self

    def release(self, wait=True):
        """Let a held wrapper exec QEMU."""
        os.write(self._release_w, b'go\n')
        os.close(self._release_w)
        self._release_w = None
        if wait:
            self.wait_qmp()
        return self

    def wait_qmp(self, timeout=QMP_TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            if not self.child.alive():
                raise testbed.TestBedError('QEMU exited (status %s) before QMP was up:\n%s'
                                           % (self.child.popen.returncode, self.log()))
            if os.path.exists(self.qmp_path):
                try:
                    self.qmp_conn = Qmp(self.qmp_path)
                    return self
                except (ConnectionRefusedError, FileNotFoundError):
                    pass
            if time.monotonic() > deadline:
                raise testbed.TestBedError('QEMU: no QMP within %.0f s:\n%s' % (timeout,
                                                                               self.log()))
            time.sleep(0.005)

    def alive(self):
        return self.child is not None and self.child.alive()

    def stop(self, grace=5.0):
        """quit over QMP, then SIGTERM/SIGKILL whatever is left; returns the exit status."""
        if self._release_w is not None:
            os.close(self._release_w)   # a held wrapper reads EOF and execs nothing useful
            self._release_w = None
        if self.child is None:
            return None
        if self.qmp_conn is not None:
            try:
                if self.child.alive():
                    self.qmp_conn.execute('quit')
            except (OSError, testbed.TestBedError):
                pass
            self.qmp_conn.close()
            self.qmp_conn = None
        try:
            return self.child.popen.wait(grace)
        except subprocess.TimeoutExpired:
            return self.child.stop(signal.SIGTERM, grace)[0]

    def log(self):
        try:
            return testbed._tail(self.child.log_path, 50)
        except Exception:
            return ''

    # ---- QMP helpers --------------------------------------------------------------------
    def qmp(self, command, **arguments):
        return self.qmp_conn.command(command, arguments or None)

    def qmp_raw(self, command, **arguments):
        return self.qmp_conn.execute(command, arguments or None)

    def hmp(self, line):
        """An HMP command through QMP human-monitor-command; returns its output."""
        return self.qmp('human-monitor-command', **{'command-line': line})

    def qemu_io(self, disk_index, cmd):
        """HMP qemu-io on the virtio-blk device vd<i>, i.e. a guest-side read or write;
        returns what it printed (on QEMU's stdout, hence read from the log)."""
        with open(self.child.log_path, 'rb') as f:
            f.seek(0, os.SEEK_END)
            self.hmp('qemu-io -d /machine/peripheral/vd%d/virtio-backend "%s"'
                     % (disk_index, cmd))
            return f.read().decode(errors='replace')

    def snapshot_actions(self, overlays):
        """{node: overlay_path} → actions of a transaction of blockdev-snapshot-sync; the
        new node of d<i> is s<i>."""
        return [{'type': 'blockdev-snapshot-sync',
                 'data': {'node-name': node, 'snapshot-file': path,
                          'snapshot-node-name': 's' + node[1:], 'format': 'qcow2'}}
                for node, path in overlays.items()]

    def snapshot(self, overlays, raw=False):
        """One `transaction` of blockdev-snapshot-sync; returns the answer (raw) or raises
        QmpError."""
        args = {'actions': self.snapshot_actions(overlays)}
        if raw:
            return self.qmp_conn.execute('transaction', args)
        return self.qmp_conn.command('transaction', args)

    def top_nodes(self):
        """{device id: (top node-name, its backing file or None)} from query-block."""
        res = {}
        for b in self.qmp('query-block'):
            ins = b.get('inserted') or {}
            dev = b.get('qdev', '')
            dev = dev.split('/')[3] if dev.startswith('/machine/peripheral/') else dev
            res[dev] = (ins.get('node-name'), ins.get('file'), ins.get('backing_file'))
        return res

    def node_files(self):
        """{node-name: filename} of every named node (query-named-block-nodes)."""
        return {n['node-name']: n['file'] for n in self.qmp('query-named-block-nodes')}

    def fd_count(self):
        return len(os.listdir('/proc/%d/fd' % self.pid))

    def fd_targets(self):
        res = []
        for fd in os.listdir('/proc/%d/fd' % self.pid):
            try:
                res.append(os.readlink('/proc/%d/fd/%s' % (self.pid, fd)))
            except OSError:
                pass
        return sorted(res)

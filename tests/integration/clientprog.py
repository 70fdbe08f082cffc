#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""
Runs tests/client/ia-client-test (the C driver of libimageaccess) on a test bed, as an
emulator (a test user, through setpriv, like testbed.Agent) or as the VM manager (root).

The driver prints one JSON object per line; where a test must act between two steps it waits
for a line on stdin (ClientProgram.go()).

    prog = clientprog.ClientProgram(bed, 'ia-emu1', ['open-sync', 'vm1', path, 'read-only'])
    res = prog.read()        # next JSON line
    prog.finish()            # waits, asserts exit status 0

The binary is $IA_CLIENT_TEST, else BUILD/tests/client/ia-client-test where BUILD is found
from $IA_DAEMON (BUILD/daemon/image-accessd), which tests/integration/meson.build sets.
"""

import json
import os
import select
import subprocess
import time
import unittest

import testbed


def client_test_path():
    """Path of the built driver, or None."""
    path = os.environ.get('IA_CLIENT_TEST')
    if not path and os.environ.get('IA_DAEMON'):
        build = os.path.dirname(os.path.dirname(os.path.abspath(os.environ['IA_DAEMON'])))
        path = os.path.join(build, 'tests', 'client', 'ia-client-test')
    return path if path and os.access(path, os.X_OK) else None


class ClientProgram:
    """One run of the driver.  who: a test user name, 'root', or a numeric uid."""

    def __init__(self, bed, who, args, address=None, env=None):
        path = client_test_path()
        if not path:
            raise unittest.SkipTest('ia-client-test is not built (set IA_CLIENT_TEST, or build '
                                    'tests/client/ia-client-test next to the daemon)')
        self.bed = bed
        argv = [path] + (['--address=' + address] if address else []) + list(args)
        if who == 'root' or who == 0:
            name = 'root'
        else:
            if isinstance(who, int):
                name, uid, gid, groups = str(who), who, who, []
            else:
                u = bed.users[who]
                name, uid, gid, groups = u.name, u.uid, u.gid, u.groups
            grp = ['--groups=' + ','.join(map(str, groups))] if groups else ['--clear-groups']
            argv = ['setpriv', '--reuid=%d' % uid, '--regid=%d' % gid] + grp + \
                   ['--pdeathsig=SIGKILL', '--'] + argv
        seq = getattr(bed, '_client_program_seq', 0) + 1
        bed._client_program_seq = seq
        full_env = bed.base_env(HOME=bed.runtime_dir)
        full_env.update(env or {})
        # The bed's own spawner, as for agents: the log is dumped on failure, the process is
        # killed at teardown, and it carries the bed's token (leftover detection).
        self.child = bed._spawn('client-%s-%d' % (name, seq), argv, full_env,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.name = name
        self._buf = b''

    def log(self):
        with open(self.child.log_path, errors='replace') as f:
            return f.read()

    def ready(self, timeout=0.0):
        """Whether a complete line is waiting to be read."""
        if b'\n' in self._buf:
            return True
        fd = self.child.popen.stdout.fileno()
        r, _, _ = select.select([fd], [], [], timeout)
        if r:
            chunk = os.read(fd, 65536)
            if chunk:
                self._buf += chunk
        return b'\n' in self._buf

    def read(self, timeout=90.0):
        """The next JSON line (a dict)."""
        fd = self.child.popen.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b'\n' not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise testbed.TestBedError('%s: no output within %.0f s\n%s'
                                           % (self.name, timeout, self.log()))
            r, _, _ = select.select([fd], [], [], left)
            if r:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    raise testbed.TestBedError('%s exited (status %s) without output\n%s'
                                               % (self.name, self.child.popen.wait(),
                                                  self.log()))
                self._buf += chunk
        line, self._buf = self._buf.split(b'\n', 1)
        return json.loads(line)

    def go(self):
        self.child.popen.stdin.write(b'go\n')
        self.child.popen.stdin.flush()

    def finish(self, timeout=30.0):
        """Wait for exit; raise unless the status is 0.  Returns remaining output lines."""
        rest = []
        try:
            out, _ = self.child.popen.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.child.stop()
            raise testbed.TestBedError('%s did not exit\n%s' % (self.name, self.log()))
        data = self._buf + (out or b'')
        rest = [json.loads(line) for line in data.split(b'\n') if line.strip()]
        if self.child.popen.returncode != 0:
            raise testbed.TestBedError('%s exited with status %s\n%s'
                                       % (self.name, self.child.popen.returncode, self.log()))
        return rest


def run(bed, who, args, timeout=90.0, **kw):
    """Run the driver to completion; returns all its JSON lines."""
    prog = ClientProgram(bed, who, args, **kw)
    return prog.finish(timeout)

#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""
image-accessctl end to end: the built CLI ($IA_CTL) against the real bus, the real polkitd and
the built image-accessd, as root (the VM manager) and as test users (emulators, a non-root
manager).

Every verb with success and its failures: each failure must exit with the documented status
and print exactly one line on stderr naming the problem, and nothing on stdout.  `list` is
checked as a table and as parsed JSON with its stable keys; `open` runs a command with the
image at the asked fd and nothing else inherited; `explain` is checked layer by layer through
its JSON output, and its polkit verdict against what a real open then gets.
"""

import json
import os
import random
import re
import shutil
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testbed  # noqa: E402

CTL = os.environ.get('IA_CTL')
QEMU_IMG = '/usr/bin/qemu-img'
QEMU_SYSTEM = '/usr/bin/qemu-system-x86_64'

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_DENIED, EXIT_NOT_FOUND, EXIT_EXISTS = range(6)

MGR = testbed.USERS['ia-mgr']
EMU1 = testbed.USERS['ia-emu1']
EMU2 = testbed.USERS['ia-emu2']
UUID = '7a4c2b1e-8d3f-4e2a-9b1c-0f5e6d7c8a9b'

RULE_DENY_VM1_EMU1 = '''\
polkit.addRule(function(action, subject) {
    if (action.id == "org.example.imageaccess.open-image" &&
        action.lookup("guest") == "vm1" && subject.user == "ia-emu1")
        return polkit.Result.NO;
    return polkit.Result.NOT_HANDLED;
});
'''

RULE_AUTH_VM1_WRITES = '''\
polkit.addRule(function(action, subject) {
    if (action.id == "org.example.imageaccess.open-image" &&
        action.lookup("guest") == "vm1" && action.lookup("mode") != "read-only")
        return polkit.Result.AUTH_ADMIN;
    return polkit.Result.NOT_HANDLED;
});
'''


class CliTestCase(testbed.IaTestCase):
    """self.ctl(*args, user=None) runs the CLI on the bed's bus; helpers for the checks."""

    def setUp(self):
        if not CTL:
            raise unittest.SkipTest('IA_CTL is not set: image-accessctl was not built')
        super().setUp()

    def ctl(self, *args, user=None, address=True, env=None, input=None, timeout=60):
        """Run image-accessctl ARGS (as root, or as a test user name); returns the
        CompletedProcess with text stdout/stderr."""
        argv = [CTL] + (['--address=' + self.bed.address] if address else []) + list(args)
        if user is not None:
            u = self.bed.users[user]
            argv = ['setpriv', '--reuid=%d' % u.uid, '--regid=%d' % u.gid, '--clear-groups',
                    '--'] + argv
        return subprocess.run(argv, input=input, stdin=None if input is not None else
                              subprocess.DEVNULL, capture_output=True, text=True,
                              env=self.bed.base_env(**(env or {})), timeout=timeout)

    def assertSuccess(self, p, msg=None):
        """Exit 0 and nothing on stderr; returns stdout."""
        self.assertEqual(p.returncode, 0, '%s%r failed (%d): %s' % (
            msg + ': ' if msg else '', p.args, p.returncode, p.stderr))
        self.assertEqual(p.stderr, '', 'stderr of a success must be empty')
        return p.stdout

    def assertFails(self, p, status, pattern):
        """Exit with `status`, one line on stderr matching the regex `pattern`, no stdout;
        returns that line."""
        self.assertEqual(p.returncode, status, '%r: expected exit %d, got %d; stderr: %r' % (
            p.args, status, p.returncode, p.stderr))
        self.assertTrue(p.stderr.endswith('\n') and p.stderr.count('\n') == 1,
                        'expected exactly one line on stderr, got %r' % p.stderr)
        self.assertRegex(p.stderr, pattern)
        self.assertEqual(p.stdout, '', 'a failure prints nothing on stdout')
        return p.stderr.strip()

    def json(self, *args, **kw):
        return json.loads(self.assertSuccess(self.ctl('--json', *args, **kw)))

    def guests(self):
        return {g['name']: g for g in self.json('list')}

    def grants(self, guest):
        return {g['path']: g for g in self.json('list', guest)}

    def register(self, name='vm1', *extra):
        self.assertSuccess(self.ctl('register', name, *extra))

    def grant(self, guest, path, mode):
        self.assertSuccess(self.ctl('grant', guest, path, mode))

    def image(self, name, data=b'hello world'):
        return self.bed.make_image(name, data)


# ---- register, unregister, list ---------------------------------------------------------------

class RegisterTests(CliTestCase):

    def test_register_and_list(self):
        self.register('vm1', '--uid=%d' % EMU1.uid, '--uuid=' + UUID,
                      '--description=Test VM one')
        self.register('vm2')
        self.register('vm0', '--uid=root')      # a user name, resolved here

        self.assertEqual(self.json('list'), [
            {'name': 'vm0', 'uuid': None, 'description': None, 'uid': 0, 'grants': 0,
             'processes': 0},
            {'name': 'vm1', 'uuid': UUID, 'description': 'Test VM one', 'uid': EMU1.uid,
             'grants': 0, 'processes': 0},
            {'name': 'vm2', 'uuid': None, 'description': None, 'uid': None, 'grants': 0,
             'processes': 0},
        ])

        lines = self.assertSuccess(self.ctl('list')).splitlines()
        self.assertEqual(lines[0].split(),
                         ['GUEST', 'UID', 'PROCESSES', 'GRANTS', 'UUID', 'DESCRIPTION'])
        self.assertEqual(lines[2].split(), ['vm1', str(EMU1.uid), '0', '0', UUID, 'Test', 'VM',
                                            'one'])
        self.assertEqual(lines[3].split(), ['vm2', '-', '0', '0', '-'])
        self.assertEqual(lines[-1], '3 guests listed.')
        # columns line up: every row starts its UID column where the header does
        col = lines[0].index('UID')
        self.assertTrue(all(line[col - 2:col] == '  ' for line in lines[1:4]), lines)

        bare = self.assertSuccess(self.ctl('list', '--no-legend')).splitlines()
        self.assertEqual(bare, lines[1:4])
        # no command at all lists too, as systemctl does
        self.assertEqual(self.assertSuccess(self.ctl()).splitlines(), lines)

    def test_list_empty(self):
        self.assertEqual(self.json('list'), [])
        self.assertEqual(self.assertSuccess(self.ctl('list')), 'No guests.\n')
        self.assertEqual(self.assertSuccess(self.ctl('list', '--no-legend')), '')

    def test_register_errors(self):
        self.register('vm1')
        self.assertFails(self.ctl('register', 'vm1'), EXIT_EXISTS,
                         r"^Failed to register guest 'vm1': .*'vm1'.*already")
        self.assertFails(self.ctl('register', 'bad/name'), EXIT_USAGE,
                         r"^Failed to register guest 'bad/name': .*name")
        self.assertFails(self.ctl('register', 'vm2', '--uuid=not-a-uuid'), EXIT_USAGE,
                         r"^Failed to register guest 'vm2': .*uuid.*not-a-uuid")
        self.assertFails(self.ctl('register', 'vm2', '--uid=no-such-user-ia'), EXIT_NOT_FOUND,
                         r"^Unknown user 'no-such-user-ia'$")
        self.assertFails(self.ctl('register'), EXIT_USAGE, r"^'register' takes 1 argument, got 0$")
        self.assertFails(self.ctl('register', 'vm2', '--mode=read-only'), EXIT_USAGE,
                         r"^Option '--mode' does not apply to 'register'$")
        self.assertEqual(list(self.guests()), ['vm1'], 'failed calls changed nothing')

    def test_register_shared_uid(self):
        self.assertSuccess(self.ctl('register', 'vm1', '--uid=61002'))
        self.assertFails(self.ctl('register', 'vm2', '--uid=61002'), EXIT_EXISTS,
                         r"^Failed to register guest 'vm2': .*bound to guest 'vm1'.*share-uid")
        self.assertFails(self.ctl('register', 'vm3', '--share-uid'), EXIT_USAGE, r"uid")
        self.assertEqual(list(self.guests()), ['vm1'], 'failed calls changed nothing')
        self.assertSuccess(self.ctl('register', 'vm2', '--uid=61002', '--share-uid'))
        self.assertEqual(sorted(self.guests()), ['vm1', 'vm2'])

    def test_unregister(self):
        self.register('vm1')
        self.assertSuccess(self.ctl('unregister', 'vm1'))
        self.assertEqual(self.guests(), {})
        self.assertFails(self.ctl('unregister', 'vm1'), EXIT_NOT_FOUND,
                         r"^Failed to unregister guest 'vm1': .*'vm1'")

    def test_manager_verbs_denied_for_non_root(self):
        """ia-mgr has no rules: every manager action needs an administrator, and a CLI
        whose stdin is no terminal does not ask (InteractiveAuthorizationRequired)."""
        self.register('vm1')
        path = self.image('vm1.img')
        for args, what in ((['register', 'vm2'], 'register-guest'),
                           (['unregister', 'vm1'], 'unregister-guest'),
                           (['grant', 'vm1', path, 'read-only'], 'grant-image'),
                           (['revoke', 'vm1', path], 'revoke-image'),
                           (['bind', 'vm1', str(os.getpid())], 'bind-process'),
                           (['list'], 'list'),
                           (['list', 'vm1'], 'list')):
            with self.subTest(args=args):
                self.assertFails(self.ctl(*args, user='ia-mgr'), EXIT_DENIED,
                                 r'org\.example\.imageaccess\.%s' % re.escape(what))
        # asked to be interactive, polkit finds no agent and says no: still "denied"
        self.assertFails(self.ctl('--ask-password', 'register', 'vm2', user='ia-mgr'),
                         EXIT_DENIED, r'^Failed to register guest .*register-guest')
        self.assertEqual(list(self.guests()), ['vm1'])
        self.assertEqual(self.grants('vm1'), {})


# ---- grant, revoke ---------------------------------------------------------------------------------

class GrantTests(CliTestCase):

    def setUp(self):
        super().setUp()
        self.register('vm1', '--uid=%d' % EMU1.uid)

    def test_grant_and_list_grants(self):
        a = self.image('a.img')
        b = os.path.join(self.bed.images_dir, 'b.img')
        self.grant('vm1', a, 'read-only')
        self.grant('vm1', b, 'create')
        self.assertEqual(self.json('list', 'vm1'), [
            {'path': a, 'mode': 'read-only', 'created': False},
            {'path': b, 'mode': 'create', 'created': False},
        ])
        self.grant('vm1', a, 'read-write')      # granting again changes the mode
        self.assertEqual(self.grants('vm1')[a]['mode'], 'read-write')
        self.assertEqual(self.guests()['vm1']['grants'], 2)

        lines = self.assertSuccess(self.ctl('list', 'vm1')).splitlines()
        self.assertEqual(lines[0].split(), ['PATH', 'MODE', 'CREATED'])
        self.assertEqual(lines[1].split(), [a, 'read-write', 'no'])
        self.assertEqual(lines[2].split(), [b, 'create', 'no'])
        self.assertEqual(lines[-1], '2 grants listed.')

        self.register('vm2')
        self.assertEqual(self.assertSuccess(self.ctl('list', 'vm2')),
                         "Guest 'vm2' has no grants.\n")
        self.assertEqual(self.json('list', 'vm2'), [])

    def test_grant_errors(self):
        a = self.image('a.img')
        self.assertFails(self.ctl('grant', 'nosuch', a, 'read-only'), EXIT_NOT_FOUND,
                         r"^Failed to grant '.*/a\.img' to guest 'nosuch': .*'nosuch'")
        self.assertFails(self.ctl('grant', 'vm1', a, 'rw'), EXIT_USAGE,
                         r"^Invalid mode 'rw': expected read-only, read-write or create$")
        self.assertFails(self.ctl('grant', 'vm1', 'a.img', 'read-only'), EXIT_USAGE,
                         r"^Image path 'a\.img' is not absolute$")
        self.assertFails(self.ctl('grant', 'vm1', self.bed.images_dir + '/../x.img',
                                  'read-only'), EXIT_USAGE,
                         r"^Failed to grant .*: .*path")      # the service: InvalidPath
        self.assertFails(self.ctl('grant', 'vm1', a), EXIT_USAGE,
                         r"^'grant' takes 3 arguments, got 2$")
        # read-only and read-write grants are for an existing file (pinned to its inode)
        self.assertFails(self.ctl('grant', 'vm1', a + '.missing', 'read-only'), EXIT_NOT_FOUND,
                         r"^Failed to grant '.*/a\.img\.missing' to guest 'vm1': .*not exist")
        self.assertEqual(self.grants('vm1'), {})

    def test_revoke(self):
        a = self.image('a.img')
        self.grant('vm1', a, 'read-only')
        self.assertSuccess(self.ctl('revoke', 'vm1', a))
        self.assertEqual(self.grants('vm1'), {})
        self.assertTrue(os.path.exists(a), 'revoke without --remove-created removes nothing')
        self.assertFails(self.ctl('revoke', 'vm1', a), EXIT_DENIED,
                         r"^Failed to revoke '.*/a\.img' from guest 'vm1': .*grant")
        self.assertFails(self.ctl('revoke', 'nosuch', a), EXIT_NOT_FOUND,
                         r"^Failed to revoke .* from guest 'nosuch': .*'nosuch'")
        self.assertFails(self.ctl('revoke', 'vm1', 'a.img'), EXIT_USAGE,
                         r"^Image path 'a\.img' is not absolute$")

    def test_revoke_remove_created(self):
        """The orphan overlay of a failed snapshot: created by the service for the emulator,
        then removed by the manager; a file the service did not create stays."""
        ov = os.path.join(self.bed.images_dir, 'overlay.qcow2')
        self.grant('vm1', ov, 'create')
        self.assertSuccess(self.ctl('open', '--guest=vm1', '--mode=create', ov, '--', 'true',
                                    user='ia-emu1'))
        self.assertTrue(os.path.exists(ov))
        self.assertEqual(self.grants('vm1')[ov]['created'], True)
        self.assertIn('yes', self.assertSuccess(self.ctl('list', 'vm1')).splitlines()[1])
        self.assertSuccess(self.ctl('revoke', '--remove-created', 'vm1', ov))
        self.assertFalse(os.path.exists(ov))
        self.assertEqual(self.grants('vm1'), {})

        mine = self.image('mine.img')
        self.grant('vm1', mine, 'create')
        self.assertFails(self.ctl('revoke', 'vm1', mine, '--remove-created'), EXIT_DENIED,
                         r"^Failed to revoke '.*/mine\.img' from guest 'vm1': ")
        self.assertTrue(os.path.exists(mine), 'a file the service did not create stays')
        self.assertIn(mine, self.grants('vm1'), 'and so does its grant')


# ---- bind --------------------------------------------------------------------------------------

class BindTests(CliTestCase):

    def test_bind_then_open_from_the_bound_process(self):
        """A process of ia-emu2 waits; root binds its pid; the process then execs the CLI (same
        pid, a connection made after the bind) and opens the image of vm2."""
        self.register('vm2')
        path = self.image('vm2.img', b'hello from vm2')
        self.grant('vm2', path, 'read-only')
        script = ('read go; exec "$0" --address="$1" open --guest=vm2 --mode=read-only "$2" '
                  "-- /bin/sh -c 'head -c 10 <&3'")
        proc = subprocess.Popen(['setpriv', '--reuid=%d' % EMU2.uid, '--regid=%d' % EMU2.gid,
                                 '--clear-groups', '--', '/bin/sh', '-c', script, CTL,
                                 self.bed.address, path],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=self.bed.base_env())
        try:
            self.assertSuccess(self.ctl('bind', 'vm2', str(proc.pid)))
            self.assertEqual(self.guests()['vm2']['processes'], 1)
            out, err = proc.communicate('go\n', timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.assertEqual((proc.returncode, out, err), (0, 'hello from', ''))

        # the same open from a process that is not bound
        self.assertFails(self.ctl('open', '--guest=vm2', '--mode=read-only', path, '--',
                                  'true', user='ia-emu2'), EXIT_DENIED, r'not bound')

    def test_bind_errors(self):
        self.register('vm1')
        self.assertFails(self.ctl('bind', 'vm1', 'abc'), EXIT_USAGE, r"^Invalid PID 'abc'$")
        self.assertFails(self.ctl('bind', 'vm1', '0'), EXIT_USAGE, r"^Invalid PID '0'$")
        # a pid that cannot exist (above pid_max's hard limit)
        self.assertFails(self.ctl('bind', 'vm1', '2147483647'), EXIT_NOT_FOUND,
                         r'^No process with PID 2147483647$')
        self.assertFails(self.ctl('bind', 'nosuch', str(os.getpid())), EXIT_NOT_FOUND,
                         r"^Failed to bind PID \d+ to guest 'nosuch': .*'nosuch'")
        self.assertEqual(self.guests()['vm1']['processes'], 0)


# ---- open ----------------------------------------------------------------------------------------

class OpenTests(CliTestCase):
    """vm1 is bound to ia-emu1's uid; the CLI runs as ia-emu1, as an emulator would."""

    def setUp(self):
        super().setUp()
        self.register('vm1', '--uid=%d' % EMU1.uid)
        self.path = self.image('vm1.img', b'hello world')
        self.grant('vm1', self.path, 'read-write')

    def open(self, *args, mode='read-only', path=None, user='ia-emu1'):
        before, sep, command = list(args), [], []
        if '--' in before:
            i = before.index('--')
            before, sep, command = before[:i], ['--'], before[i + 1:]
        return self.ctl('open', '--guest', 'vm1', '--mode', mode, *before, path or self.path,
                        *sep, *command, user=user)

    def test_open_runs_command_with_fd(self):
        out = self.assertSuccess(self.open(
            '--', '/bin/sh', '-c', 'head -c 5 <&3; echo; ls /proc/$$/fd; '
            'if echo x >&3; then echo writable; else echo read-only; fi 2>/dev/null'))
        lines = out.splitlines()
        self.assertEqual(lines[0], 'hello')
        # the image at 3 and stdio, nothing else: the bus connection was not inherited
        self.assertEqual(sorted(lines[1:-1], key=int), ['0', '1', '2', '3'])
        self.assertEqual(lines[-1], 'read-only')

    @unittest.skipUnless(os.access(QEMU_IMG, os.X_OK), 'qemu-img not installed (qemu-utils)')
    def test_open_qemu_img_info(self):
        """The showcase: an unprivileged qemu-img inspects an image in a directory it cannot
        enter.  /dev/fd/3 is a reopen through /proc, which checks the file's own permissions
        (here 0644) but not those of the directories above it (here 0700)."""
        private = os.path.join(self.bed.images_dir, 'private')
        os.mkdir(private, 0o700)
        qcow2 = os.path.join(private, 'disk.qcow2')
        subprocess.run([QEMU_IMG, 'create', '-q', '-f', 'qcow2', qcow2, '16M'], check=True)
        os.chmod(qcow2, 0o644)
        self.grant('vm1', qcow2, 'read-only')
        denied = subprocess.run(['setpriv', '--reuid=%d' % EMU1.uid, '--regid=%d' % EMU1.gid,
                                 '--clear-groups', '--', QEMU_IMG, 'info', qcow2],
                                capture_output=True, text=True)
        self.assertNotEqual(denied.returncode, 0, 'the emulator cannot open it by itself')
        out = self.assertSuccess(self.open('--', QEMU_IMG, 'info', '/dev/fd/3', path=qcow2))
        self.assertIn('file format: qcow2', out)
        self.assertIn('virtual size: 16 MiB (16777216 bytes)', out)

        # A root-only file (0600) cannot be reopened through /dev/fd/3: the command must use
        # the fd itself.  Documented in image-accessctl(1); this keeps the page honest.
        os.chmod(qcow2, 0o600)
        p = self.open('--', QEMU_IMG, 'info', '/dev/fd/3', path=qcow2)
        self.assertEqual(p.returncode, 1)
        self.assertIn('Permission denied', p.stderr)

    @unittest.skipUnless(os.access(QEMU_SYSTEM, os.X_OK) and os.access(QEMU_IMG, os.X_OK),
                         'qemu-system-x86_64 or qemu-img not installed')
    def test_open_qemu_add_fd(self):
        """An unprivileged QEMU uses a root-only (0600) image through the fd itself: -add-fd
        puts fd 3 in an fd set and the file driver opens /dev/fdset/1, which dups it."""
        qcow2 = os.path.join(self.bed.images_dir, 'root-only.qcow2')
        subprocess.run([QEMU_IMG, 'create', '-q', '-f', 'qcow2', qcow2, '16M'], check=True)
        os.chmod(qcow2, 0o600)
        self.grant('vm1', qcow2, 'read-only')
        qmp = ('{"execute": "qmp_capabilities"}\n'
               '{"execute": "query-named-block-nodes", "arguments": {"flat": true}}\n'
               '{"execute": "quit"}\n')
        p = self.ctl('open', '--guest=vm1', '--mode=read-only', qcow2, '--', QEMU_SYSTEM,
                     '-machine', 'none', '-nodefaults', '-display', 'none',
                     '-add-fd', 'fd=3,set=1',
                     '-blockdev', 'driver=file,filename=/dev/fdset/1,node-name=f0,'
                     'read-only=on',
                     '-blockdev', 'driver=qcow2,file=f0,node-name=d0,read-only=on',
                     '-qmp', 'stdio', user='ia-emu1', input=qmp)
        self.assertEqual(p.returncode, 0, p.stderr)
        replies = [json.loads(line) for line in p.stdout.splitlines() if line.strip()]
        nodes = next(r['return'] for r in replies
                     if isinstance(r.get('return'), list) and r['return'])
        d0 = next(n for n in nodes if n['node-name'] == 'd0')
        self.assertEqual((d0['drv'], d0['image']['virtual-size'], d0['ro']),
                         ('qcow2', 16 << 20, True))

    def test_open_at_other_fd_numbers(self):
        out = self.assertSuccess(self.open('--fd=7', '--', '/bin/sh', '-c',
                                           'head -c 5 <&7; echo; ls /proc/$$/fd'))
        self.assertEqual(out.splitlines()[0], 'hello')
        self.assertEqual(sorted(out.splitlines()[1:], key=int), ['0', '1', '2', '7'])
        self.assertEqual(self.assertSuccess(self.open('--fd=0', '--', 'head', '-c', '5')),
                         'hello')

    def test_open_read_write_and_create(self):
        self.assertSuccess(self.open('--', '/bin/sh', '-c', 'printf HELLO >&3',
                                     mode='read-write'))
        with open(self.path, 'rb') as f:
            self.assertEqual(f.read(), b'HELLO world')

        new = os.path.join(self.bed.images_dir, 'new.img')
        self.grant('vm1', new, 'create')
        self.assertSuccess(self.open('--', '/bin/sh', '-c', 'printf fresh >&3', mode='create',
                                     path=new))
        st = os.stat(new)
        self.assertEqual((st.st_uid, st.st_mode & 0o7777), (0, 0o600))
        with open(new, 'rb') as f:
            self.assertEqual(f.read(), b'fresh')

    def test_open_flags(self):
        """--direct and --nonblock reach the fd; without them neither is set."""
        def flags(*args):
            out = self.assertSuccess(self.open(*args, '--', '/bin/sh', '-c',
                                               'grep ^flags: /proc/self/fdinfo/3'))
            return int(out.split()[1], 8)
        plain = flags()
        self.assertEqual(plain & (os.O_DIRECT | os.O_NONBLOCK | os.O_ACCMODE), os.O_RDONLY)
        self.assertEqual(flags('--direct', '--nonblock') & (os.O_DIRECT | os.O_NONBLOCK),
                         os.O_DIRECT | os.O_NONBLOCK)
        self.assertFalse(plain & os.O_CLOEXEC)

    def test_open_exit_status_is_the_command_s(self):
        self.assertEqual(self.open('--', '/bin/sh', '-c', 'exit 42').returncode, 42)
        self.assertFails(self.open('--', '/nonexistent/command'), 127,
                         r"^Failed to execute '/nonexistent/command': No such file")
        self.assertFails(self.open('--', self.bed.images_dir), 126,
                         r"^Failed to execute '.*images': Permission denied")

    def test_open_errors(self):
        other = self.image('other.img')
        self.assertFails(self.ctl('open', '--guest=nosuch', '--mode=read-only', self.path, '--',
                                  'true', user='ia-emu1'),
                         EXIT_DENIED, r"^Failed to open '.*' for guest 'nosuch': .*not bound")
        self.assertFails(self.open('--', 'true', user='ia-emu2'), EXIT_DENIED,
                         r"^Failed to open '.*/vm1\.img' for guest 'vm1': .*not bound")
        self.assertFails(self.open('--', 'true', path=other), EXIT_DENIED,
                         r"^Failed to open '.*/other\.img' for guest 'vm1': .*no grant")
        self.assertFails(self.open('--', 'true', mode='create'), EXIT_DENIED,
                         r"only read-write, not create")
        self.assertFails(self.open('--', 'true', mode='rw'), EXIT_USAGE, r"^Invalid mode 'rw'")
        self.assertFails(self.open('--', 'true', path='vm1.img'), EXIT_USAGE,
                         r"^Image path 'vm1\.img' is not absolute$")
        gone = self.image('gone.img')
        self.grant('vm1', gone, 'read-only')
        os.unlink(gone)
        self.assertFails(self.open('--', 'true', path=gone), EXIT_NOT_FOUND,
                         r"^Failed to open '.*/gone\.img' for guest 'vm1': .*does not exist")
        self.assertFails(self.open(), EXIT_USAGE, r"^open needs '-- COMMAND")
        self.assertFails(self.open('--'), EXIT_USAGE, r"^open needs '-- COMMAND")
        self.assertFails(self.ctl('open', '--mode=read-only', self.path, '--', 'true'),
                         EXIT_USAGE, r'^open needs --guest=GUEST$')
        self.assertFails(self.open('--fd=-1', '--', 'true'), EXIT_USAGE,
                         r"^Invalid fd number '-1'$")


# ---- explain --------------------------------------------------------------------------------------

class ExplainTests(CliTestCase):
    """vm1 is bound to ia-emu1's uid and holds a read-write grant of vm1.img."""

    def setUp(self):
        super().setUp()
        self.register('vm1', '--uid=%d' % EMU1.uid, '--uuid=' + UUID)
        self.path = self.image('vm1.img')
        self.grant('vm1', self.path, 'read-write')

    def explain(self, *args, guest='vm1', mode='read-only', path=None, status=None):
        """explain --json; returns (exit status, parsed output)."""
        p = self.ctl('explain', '--json', '--guest=' + guest, '--mode=' + mode, *args,
                     path or self.path)
        self.assertEqual(p.stderr, '')
        if status is not None:
            self.assertEqual(p.returncode, status, p.stdout)
        out = json.loads(p.stdout)
        self.assertEqual(set(out), {'guest', 'image', 'mode', 'uid', 'verdict', 'layers'})
        self.assertEqual(list(out['layers']), ['grant', 'binding', 'polkit', 'path'])
        return out

    def results(self, out):
        return {name: layer['result'] for name, layer in out['layers'].items()}

    def real_open(self, mode='read-only', user='ia-emu1', path=None):
        return self.ctl('open', '--guest=vm1', '--mode=' + mode, path or self.path, '--', 'true',
                        user=user)

    def test_explain_allowed(self):
        out = self.explain(status=EXIT_OK)
        self.assertEqual(out['verdict'], 'allowed')
        self.assertEqual((out['guest'], out['image'], out['mode'], out['uid']),
                         ('vm1', self.path, 'read-only', EMU1.uid))
        self.assertEqual(self.results(out), dict.fromkeys(out['layers'], 'pass'))
        layers = out['layers']
        self.assertEqual((layers['grant']['registered'], layers['grant']['granted_mode'],
                          layers['grant']['created']), (True, 'read-write', False))
        self.assertEqual((layers['binding']['bound_uid'], layers['binding']['processes']),
                         (EMU1.uid, 0))
        self.assertEqual((layers['polkit']['action'], layers['polkit']['uid'],
                          layers['polkit']['answer']),
                         ('org.example.imageaccess.open-image', EMU1.uid, 'yes'))
        self.assertEqual((layers['path']['exists'], layers['path']['type'],
                          layers['path']['symlink']), (True, 'regular', None))
        self.assertSuccess(self.real_open())

        text = self.assertSuccess(self.ctl('explain', '--guest=vm1', '--mode=read-only',
                                           self.path))
        self.assertRegex(text, r'(?m)^  grant +pass +guest .vm1. holds a read-write grant')
        self.assertRegex(text, r'(?m)^  polkit +pass +polkit authorizes')
        self.assertTrue(text.endswith('\nVerdict: allowed\n'), text)

    def test_explain_replaced_file(self):
        """A granted file replaced by another at the same path: the service opens only the
        inode the grant is pinned to, and explain says so."""
        self.assertSuccess(self.real_open())
        tmp = self.image('new.img', b'not the granted file')
        os.rename(tmp, self.path)
        out = self.explain(status=EXIT_DENIED)
        self.assertEqual(out['verdict'], 'denied')
        self.assertEqual(out['layers']['path']['result'], 'fail')
        self.assertIn('it was replaced since', out['layers']['path']['reason'])
        self.assertFails(self.real_open(), EXIT_DENIED, r'it was replaced since')

    def test_explain_equals_open_random(self):
        """explain's verdict is the outcome of the real open, over random situations: grant
        modes, revokes, replaced, missing, appeared and created files, symlinks, directories,
        callers bound or not, and a polkit rule that denies some images."""
        seed = int(os.environ.get('IA_TEST_SEED') or random.SystemRandom().randrange(1 << 32))
        rnd = random.Random(seed)
        self.bed.set_rules('50-deny.rules', '''
polkit.addRule(function(action, subject) {
    if (action.id == "org.example.imageaccess.open-image" &&
        action.lookup("image").indexOf("polkit-no") >= 0)
        return polkit.Result.NO;
    return polkit.Result.NOT_HANDLED;
});
''')
        modes = ['read-only', 'read-write', 'create']
        states = ['granted', 'replaced', 'missing', 'never-existed', 'appeared', 'created',
                  'symlink', 'directory', 'revoked', 'not-granted']
        seen = set()
        for i in range(60):
            grant_mode = rnd.choice(modes)
            mode = rnd.choice(modes)
            state = rnd.choice(states)
            user = rnd.choice(['ia-emu1', 'ia-emu1', 'ia-emu2'])
            polkit_no = rnd.random() < 0.25
            if state == 'created':          # the service makes it first, for this guest
                grant_mode, polkit_no = 'create', False
            name = 'r%02d-%s%s.img' % (i, state, '-polkit-no' if polkit_no else '')
            path = os.path.join(self.bed.images_dir, name)
            situation = ('seed %d, #%d: grant %s, %s, open %s as %s%s'
                         % (seed, i, grant_mode, state, mode, user,
                            ', polkit says no' if polkit_no else ''))
            if state in ('granted', 'replaced', 'missing', 'revoked', 'not-granted'):
                self.image(name)
            elif state == 'symlink':
                os.symlink(self.path, path)
            elif state == 'directory':
                os.mkdir(path)
            if state != 'not-granted':
                g = self.ctl('grant', 'vm1', path, grant_mode)
                if g.returncode != 0:       # refused grants (a symlink...) leave no grant
                    state += ' (grant refused)'
            if state == 'replaced':
                os.rename(self.image(name + '.new', b'another file'), path)
            elif state == 'missing':
                os.unlink(path)
            elif state == 'appeared':
                self.image(name)
            elif state == 'created':
                self.assertSuccess(self.real_open('create', path=path), situation)
            elif state == 'revoked':
                self.assertSuccess(self.ctl('revoke', 'vm1', path))
            out = self.explain('--uid=%d' % self.bed.users[user].uid, mode=mode, path=path)
            opened = self.real_open(mode, user=user, path=path)
            self.assertIn(out['verdict'], ('allowed', 'denied'), situation)
            self.assertEqual(out['verdict'] == 'allowed', opened.returncode == 0,
                             '%s: explain says %s (%s), the open %s'
                             % (situation, out['verdict'],
                                {n: lay['reason'] for n, lay in out['layers'].items()
                                 if lay['result'] != 'pass'},
                                'succeeded' if opened.returncode == 0 else
                                'failed: ' + opened.stderr.strip()))
            seen.add((state, out['verdict']))
        # the draw covered both verdicts
        self.assertEqual({v for _, v in seen}, {'allowed', 'denied'}, 'seed %d' % seed)

    def test_explain_not_granted(self):
        out = self.explain(mode='create', status=EXIT_DENIED)
        self.assertEqual(out['verdict'], 'denied')
        self.assertEqual(out['layers']['grant']['result'], 'fail')
        self.assertIn('only read-write, not create', out['layers']['grant']['reason'])
        other = self.image('other.img')
        out = self.explain(path=other, status=EXIT_DENIED)
        self.assertEqual(self.results(out), {'grant': 'fail', 'binding': 'pass',
                                             'polkit': 'pass', 'path': 'pass'})
        self.assertEqual(out['layers']['grant']['granted_mode'], None)
        self.assertFails(self.real_open(path=other), EXIT_DENIED, 'no grant')

        text = self.ctl('explain', '--guest=vm1', '--mode=read-only', other)
        self.assertEqual(text.returncode, EXIT_DENIED)
        self.assertRegex(text.stdout, r'(?m)^  grant +FAIL +guest .vm1. has no grant')
        self.assertTrue(text.stdout.endswith('\nVerdict: denied\n'))

    def test_explain_not_bound(self):
        out = self.explain('--uid=%d' % EMU2.uid, status=EXIT_DENIED)
        self.assertEqual(self.results(out), {'grant': 'pass', 'binding': 'fail',
                                             'polkit': 'pass', 'path': 'pass'})
        self.assertEqual(out['uid'], EMU2.uid)
        self.assertIn('bound to uid %d' % EMU1.uid, out['layers']['binding']['reason'])
        self.assertFails(self.real_open(user='ia-emu2'), EXIT_DENIED, 'not bound')

        self.register('vm2')
        self.grant('vm2', self.path, 'read-only')
        out = self.explain('--uid=%d' % EMU2.uid, guest='vm2', status=EXIT_DENIED)
        self.assertEqual(out['layers']['binding']['result'], 'fail')
        self.assertEqual(out['layers']['binding']['bound_uid'], None)

        out = self.explain('--uid=%d' % EMU1.uid, guest='nosuch', status=EXIT_DENIED)
        self.assertEqual((out['layers']['grant']['result'], out['layers']['grant']['registered'],
                          out['layers']['binding']['result']), ('fail', False, 'fail'))

    def test_explain_polkit_denied(self):
        self.bed.set_rules('50-deny-vm1.rules', RULE_DENY_VM1_EMU1)
        out = self.explain(status=EXIT_DENIED)
        self.assertEqual(self.results(out), {'grant': 'pass', 'binding': 'pass',
                                             'polkit': 'fail', 'path': 'pass'})
        self.assertEqual(out['layers']['polkit']['answer'], 'no')
        self.assertIn('AccessDenied', out['layers']['polkit']['reason'])
        # the prediction holds: the real open is refused by polkit
        self.assertFails(self.real_open(), EXIT_DENIED, r'Not authorized by polkit')

        self.bed.remove_rules('50-deny-vm1.rules')
        self.assertEqual(self.explain(status=EXIT_OK)['verdict'], 'allowed')
        self.assertSuccess(self.real_open())

    def test_explain_polkit_challenge(self):
        self.bed.set_rules('50-auth-vm1.rules', RULE_AUTH_VM1_WRITES)
        out = self.explain(mode='read-write', status=EXIT_DENIED)
        self.assertEqual(out['layers']['polkit']['answer'], 'challenge')
        self.assertEqual(out['layers']['polkit']['result'], 'fail')
        self.assertFails(self.real_open(mode='read-write'), EXIT_DENIED, r'authentication')
        self.assertEqual(self.explain(mode='read-only', status=EXIT_OK)['verdict'], 'allowed')

    def test_explain_symlink(self):
        """Grants are made for real files; then a directory and a file are swapped for
        symbolic links (grants refuse links, opens follow none)."""
        d = os.path.join(self.bed.images_dir, 'd')
        via_dir = self.image('d/vm1.img')
        link = self.image('link.img')
        self.grant('vm1', via_dir, 'read-only')
        self.grant('vm1', link, 'read-only')
        os.rename(d, d + '.real')
        os.symlink(d + '.real', d)
        os.unlink(link)
        os.symlink(self.path, link)
        for path, at, type_ in ((via_dir, d, None), (link, link, 'symlink')):
            with self.subTest(path=path):
                out = self.explain(path=path, status=EXIT_DENIED)
                self.assertEqual(self.results(out), {'grant': 'pass', 'binding': 'pass',
                                                     'polkit': 'pass', 'path': 'fail'})
                self.assertEqual(out['layers']['path']['symlink'], at)
                self.assertEqual(out['layers']['path']['type'], type_)
                self.assertIn('SymlinkRefused', out['layers']['path']['reason'])
                self.assertFails(self.real_open(path=path), EXIT_FAILURE, 'symbolic link')

    def test_explain_path_types_and_create(self):
        new = os.path.join(self.bed.images_dir, 'new.img')
        self.grant('vm1', new, 'create')
        out = self.explain(mode='create', path=new, status=EXIT_OK)
        self.assertEqual((out['layers']['path']['exists'], out['layers']['path']['type']),
                         (False, None))
        out = self.explain(path=new, status=EXIT_DENIED)       # read-only: must exist
        self.assertIn('NotFound', out['layers']['path']['reason'])

        self.grant('vm1', self.path, 'create')                 # exists, not the service's
        out = self.explain(mode='create', status=EXIT_DENIED)
        self.assertIn('FileExists', out['layers']['path']['reason'])
        self.assertFails(self.real_open(mode='create'), EXIT_EXISTS, 'not a file this service')

        dir_img = self.image('dir.img')                        # granted, then a directory
        self.grant('vm1', dir_img, 'read-only')
        os.unlink(dir_img)
        os.mkdir(dir_img)
        out = self.explain(path=dir_img, status=EXIT_DENIED)
        self.assertEqual(out['layers']['path']['type'], 'directory')
        self.assertIn('WrongFileType', out['layers']['path']['reason'])
        self.assertFails(self.real_open(path=dir_img), EXIT_FAILURE, 'not a regular file')

        out = self.explain(path=self.bed.images_dir + '//x.img', status=EXIT_DENIED)
        self.assertIn('InvalidPath', out['layers']['path']['reason'])

    def test_explain_process_binding_is_undecided_without_uid(self):
        """A guest bound to processes only: the listing does not say their uid, so polkit
        cannot be asked until --uid names it."""
        self.register('vm3')
        self.grant('vm3', self.path, 'read-only')
        sleeper = subprocess.Popen(['sleep', '60'], env=self.bed.base_env())
        try:
            self.assertSuccess(self.ctl('bind', 'vm3', str(sleeper.pid)))
            out = self.explain(guest='vm3', status=EXIT_FAILURE)
            self.assertEqual(out['verdict'], 'unknown')
            self.assertEqual(self.results(out), {'grant': 'pass', 'binding': 'pass',
                                                 'polkit': 'unknown', 'path': 'pass'})
            self.assertEqual(out['uid'], None)
            out = self.explain('--uid=0', guest='vm3')
            self.assertEqual(out['layers']['binding']['result'], 'unknown')
            self.assertEqual(out['layers']['polkit']['result'], 'pass')
        finally:
            sleeper.kill()
            sleeper.wait()

    def test_explain_usage(self):
        self.assertFails(self.ctl('explain', '--mode=read-only', self.path), EXIT_USAGE,
                         r'^explain needs --guest=GUEST$')
        self.assertFails(self.ctl('explain', '--guest=vm1', self.path), EXIT_USAGE,
                         r'^explain needs --mode=MODE$')
        self.assertFails(self.ctl('explain', '--guest=vm1', '--mode=read-only', '--uid=0',
                                  '--user=root', self.path), EXIT_USAGE, r'exclude each other')
        self.assertFails(self.ctl('explain', '--guest=vm1', '--mode=read-only', 'vm1.img'),
                         EXIT_USAGE, r'not absolute')
        self.assertFails(self.ctl('explain', '--guest=vm1', '--mode=read-only', self.path,
                                  user='ia-mgr'), EXIT_DENIED, r'^Failed to list guests: ')


# ---- global options, help, the bus ----------------------------------------------------------------

class GlobalTests(CliTestCase):

    VERBS = ['register', 'unregister', 'bind', 'grant', 'revoke', 'list', 'open', 'explain']

    def test_help(self):
        out = self.assertSuccess(self.ctl('--help', address=False))
        for verb in self.VERBS:
            self.assertRegex(out, r'(?m)^  %s ' % verb)
        for status in range(6):
            self.assertRegex(out, r'(?m)^  %d  ' % status)
        self.assertEqual(self.assertSuccess(self.ctl('-h', address=False)), out)
        for verb in self.VERBS:
            with self.subTest(verb=verb):
                for args in ([verb, '--help'], ['--help', verb], [verb, '-h']):
                    verb_help = self.assertSuccess(self.ctl(*args, address=False))
                    self.assertTrue(verb_help.startswith('image-accessctl %s' % verb),
                                    verb_help)

    def test_version(self):
        out = self.assertSuccess(self.ctl('--version', address=False))
        self.assertRegex(out, r'^image-accessctl \d+\.\d+\S*\n$')

    def test_usage_errors(self):
        self.assertFails(self.ctl('frobnicate'), EXIT_USAGE, r"^Unknown command 'frobnicate'$")
        self.assertFails(self.ctl('list', '--frob'), EXIT_USAGE, r"^Unknown option '--frob'$")
        self.assertFails(self.ctl('list', '-x'), EXIT_USAGE, r"^Unknown option '-x'$")
        self.assertFails(self.ctl('list', '--json=yes'), EXIT_USAGE,
                         r"^Option '--json' takes no value$")
        self.assertFails(self.ctl('list', 'a', 'b'), EXIT_USAGE,
                         r"^'list' takes at most 1 argument, got 2$")
        self.assertFails(self.ctl('list', '--guest'), EXIT_USAGE,
                         r"^Option '--guest' needs a value$")
        self.assertFails(self.ctl('list', '--remove-created'), EXIT_USAGE,
                         r"^Option '--remove-created' does not apply to 'list'$")
        self.assertFails(self.ctl('--address=', 'list', address=False), EXIT_USAGE,
                         r'--address needs')

    def test_system_bus_from_environment(self):
        """Without --address, $DBUS_SYSTEM_BUS_ADDRESS (base_env sets the bed's) is used."""
        self.register('vm1')
        out = json.loads(self.assertSuccess(self.ctl('--json', 'list', address=False)))
        self.assertEqual([g['name'] for g in out], ['vm1'])

    def test_bus_unreachable(self):
        self.assertFails(self.ctl('--address=unix:path=/nonexistent/ia-bus', 'list',
                                  address=False), EXIT_FAILURE,
                         r'^Failed to connect to unix:path=/nonexistent/ia-bus: ')


BASH_COMPLETION = '/usr/share/bash-completion/bash_completion'
COMPLETION = os.path.join(testbed.SOURCE_ROOT, 'data', 'bash-completion', 'image-accessctl')


class CompletionTests(CliTestCase):
    """data/bash-completion/image-accessctl, run by bash with bash-completion's helpers on a
    command line split as readline splits it, asking the bed's service for guest names."""

    def setUp(self):
        # a failure, not a skip: tests/tools/setup.sh installs it, CI must not hide its absence
        if not os.path.exists(BASH_COMPLETION):
            self.fail('%s not found: install the Debian package bash-completion '
                      '(tests/tools/setup.sh does)' % BASH_COMPLETION)
        super().setUp()
        self.register('vm1')
        self.register('web:db')         # ':' is a word break for readline
        self.path = self.image('vm1.img')
        self.grant('vm1', self.path, 'read-only')

    def complete(self, line, env=None):
        words = re.findall(r'[=:]|[^\s=:]+', line)
        if not words or line[-1].isspace():
            words.append('')
        script = ('source "$1"; source "$2"; COMP_LINE=$3; COMP_POINT=${#COMP_LINE}; '
                  'shift 3; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); '
                  '_image_accessctl 2>/dev/null; printf "%s\\n" "${COMPREPLY[@]}"')
        path = os.path.dirname(CTL) + ':' + os.environ.get('PATH', '/usr/bin:/bin')
        p = subprocess.run(['bash', '-c', script, 'complete', BASH_COMPLETION, COMPLETION, line]
                           + words, capture_output=True, text=True, check=True,
                           env=self.bed.base_env(PATH=path, **(env or {})))
        return sorted(set(w for w in p.stdout.split('\n') if w))

    def test_verbs_and_options(self):
        self.assertEqual(self.complete('image-accessctl '),
                         sorted(GlobalTests.VERBS))
        self.assertEqual(self.complete('image-accessctl re'), ['register', 'revoke'])
        self.assertEqual(self.complete('image-accessctl revoke --re'), ['--remove-created'])
        self.assertEqual(self.complete('image-accessctl explain --u'), ['--uid=', '--user='])
        self.assertIn('--no-legend', self.complete('image-accessctl list --'))
        self.assertNotIn('--guest=', self.complete('image-accessctl list --'))

    def test_guests_modes_paths(self):
        self.assertEqual(self.complete('image-accessctl list '), ['vm1', 'web:db'])
        self.assertEqual(self.complete('image-accessctl grant w'), ['web:db'])
        self.assertEqual(self.complete('image-accessctl grant web:d'), ['db'])
        self.assertEqual(self.complete('image-accessctl open --guest=v'), ['vm1'])
        self.assertEqual(self.complete('image-accessctl open --mode '),
                         ['create', 'read-only', 'read-write'])
        self.assertEqual(self.complete('image-accessctl grant vm1 %s r' % self.path),
                         ['read-only', 'read-write'])
        self.assertEqual(self.complete('image-accessctl grant vm1 %s/vm'
                                       % self.bed.images_dir), [self.path])
        self.assertEqual(self.complete('image-accessctl revoke vm1 '), [self.path])
        # the bus named on the command line is the one asked
        self.assertEqual(self.complete('image-accessctl --address=%s list '
                                       % self.bed.address,
                                       env={'DBUS_SYSTEM_BUS_ADDRESS': 'unix:path=/nonexistent'}),
                         ['vm1', 'web:db'])

    def test_command_after_dashdash(self):
        self.assertIn('qemu-img' if os.access(QEMU_IMG, os.X_OK) else 'true',
                      self.complete('image-accessctl open --guest=vm1 --mode=read-only %s -- %s'
                                    % (self.path, 'qemu-im' if os.access(QEMU_IMG, os.X_OK)
                                       else 'tru')))


class NoServiceTests(CliTestCase):
    daemon_autostart = False

    def test_service_not_running(self):
        self.assertFails(self.ctl('list'), EXIT_FAILURE, r'^Failed to list guests: .*ImageAccess')


if __name__ == '__main__':
    testbed.main()

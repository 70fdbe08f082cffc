#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""
The example programs of docs/emulator-guide.md and docs/vm-manager-guide.md (docs/examples/,
built by tests/examples/meson.build), run against the real bus, polkitd and image-accessd, and
their output checked: a guide whose example does not do what the text says is wrong.

Emulator examples run as ia-emu1 on guest vm1, which is bound to that uid; the VM-manager
example runs as root and starts the emulator examples as ia-emu2, bound by process.
"""

import os
import re
import stat
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testbed  # noqa: E402


def examples_dir():
    """$IA_EXAMPLES_DIR, else BUILD/tests/examples next to the built daemon."""
    if os.environ.get('IA_EXAMPLES_DIR'):
        return os.environ['IA_EXAMPLES_DIR']
    daemon = os.environ.get('IA_DAEMON')
    if daemon:
        return os.path.join(os.path.dirname(os.path.dirname(daemon)), 'tests', 'examples')
    return None


EXAMPLES = examples_dir()
DOCS = os.path.join(testbed.SOURCE_ROOT, 'docs')
GUIDES = ['emulator-guide.md', 'vm-manager-guide.md']
EMU1 = testbed.USERS['ia-emu1']
EMU2 = testbed.USERS['ia-emu2']


class ExampleTestCase(testbed.IaTestCase):

    def setUp(self):
        if not EXAMPLES or not os.path.isdir(EXAMPLES):
            raise unittest.SkipTest('the examples were not built (tests/examples)')
        super().setUp()
        self.images = self.bed.images_dir

    def manager(self, method, sig, args):
        return self.assertOk(self.bed.local.manager(method, sig, args), method)

    def register(self, guest, uid=None):
        self.manager('RegisterGuest', 'sa{sv}',
                     [guest, {} if uid is None else {'uid': {'$v': ['u', uid]}}])

    def grant(self, guest, path, mode):
        self.manager('GrantImage', 'sssa{sv}', [guest, path, mode, {}])

    def grants(self, guest):
        return {p: (m, props.get('created')) for p, m, props in
                self.manager('ListGrants', 's', [guest])[0]}

    def guests(self):
        return [name for name, _ in self.manager('ListGuests', '', [])[0]]

    def run_example(self, name, *args, user=None):
        argv = [os.path.join(EXAMPLES, name)] + list(args)
        if user is not None:
            u = self.bed.users[user]
            argv = ['setpriv', '--reuid=%d' % u.uid, '--regid=%d' % u.gid, '--clear-groups',
                    '--'] + argv
        return subprocess.run(argv, capture_output=True, text=True, env=self.bed.base_env(),
                              stdin=subprocess.DEVNULL, timeout=60)

    def path(self, name):
        return os.path.join(self.images, name)

    def assertRoot0600(self, path, content=None):
        st = os.stat(path)
        self.assertEqual((st.st_uid, stat.S_IMODE(st.st_mode)), (0, 0o600), path)
        if content is not None:
            with open(path, 'rb') as f:
                self.assertEqual(f.read(), content)


class EmulatorExampleTests(ExampleTestCase):
    """docs/emulator-guide.md"""

    def setUp(self):
        super().setUp()
        self.register('vm1', EMU1.uid)
        self.disk = self.bed.make_image('vm1.img', b'hello world\n')
        self.grant('vm1', self.disk, 'read-write')

    def test_open_image(self):
        p = self.run_example('open-image', 'vm1', self.disk, 'read-only', user='ia-emu1')
        self.assertEqual((p.returncode, p.stderr), (0, ''))
        self.assertEqual(p.stdout, "opened %s read-only: 12 bytes, O_RDONLY, cloexec=yes, "
                         "starts with 'hello world'\n" % self.disk)
        p = self.run_example('open-image', 'vm1', self.disk, 'read-write', user='ia-emu1')
        self.assertIn('O_RDWR', p.stdout)

        other = self.bed.make_image('other.img')
        p = self.run_example('open-image', 'vm1', other, 'read-only', user='ia-emu1')
        self.assertEqual((p.returncode, p.stdout), (1, ''))
        self.assertIn('(org.example.ImageAccess.Error.NotGranted)', p.stderr)
        p = self.run_example('open-image', 'vm1', self.disk, 'read-only', user='ia-emu2')
        self.assertIn('(org.example.ImageAccess.Error.NotBound)', p.stderr)

    def test_open_image_repeatedly_on_a_channel(self):
        p = self.run_example('open-image', 'vm1', self.disk, 'read-write', '5', user='ia-emu1')
        self.assertEqual((p.returncode, p.stderr), (0, ''))
        self.assertIn('O_RDWR', p.stdout)
        log = self.bed.log_text('daemon')
        self.assertEqual(log.count('Opened a channel for'), 1)
        self.assertEqual(log.count('asked on its channel'), 4, 'all but the first')
        self.assertEqual(log.count('Asking polkit about org.example.imageaccess.open-image'), 1)

    def test_open_async(self):
        second = self.bed.make_image('second.img', b'x' * 4096)
        self.grant('vm1', second, 'read-only')
        missing = self.path('not-granted.img')
        p = self.run_example('open-async', 'vm1', self.disk, second, missing, user='ia-emu1')
        self.assertEqual(p.returncode, 1, p.stderr)
        lines = p.stdout.splitlines()
        self.assertEqual(lines[0], '3 opens in flight')
        # answers arrive in whatever order the service finishes
        self.assertEqual(sorted(lines[1:]), sorted([
            '%s: opened, 12 bytes' % self.disk,
            '%s: opened, 4096 bytes' % second,
            '%s: refused: org.example.ImageAccess.Error.NotGranted' % missing]))

        p = self.run_example('open-async', 'vm1', self.disk, second, user='ia-emu1')
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    def test_snapshot_batch(self):
        overlays = [self.path('ov%d.qcow2' % i) for i in range(3)]
        for ov in overlays:
            self.grant('vm1', ov, 'create')
        p = self.run_example('snapshot-batch', 'vm1', *overlays, user='ia-emu1')
        self.assertEqual((p.returncode, p.stdout, p.stderr), (0, 'prepared 3 overlays\n', ''))
        for ov in overlays:
            self.assertRoot0600(ov, b'overlay\n')
            self.assertEqual(self.grants('vm1')[ov], ('create', True))

    def test_snapshot_batch_failure_reports_cleanup(self):
        """One overlay cannot be created (a file the service did not make is in the way):
        nothing is kept, and the overlays the service did create are reported."""
        overlays = [self.path('ov%d.qcow2' % i) for i in range(3)]
        in_the_way = self.bed.make_image('ov2.qcow2', b'not an overlay')
        for ov in overlays:
            self.grant('vm1', ov, 'create')
        p = self.run_example('snapshot-batch', 'vm1', *overlays, user='ia-emu1')
        self.assertEqual(p.returncode, 1)
        self.assertEqual(sorted(p.stdout.splitlines()),
                         ['cleanup ' + overlays[0], 'cleanup ' + overlays[1]])
        self.assertIn('Snapshot not prepared: ', p.stderr)
        self.assertIn('The first image that failed: %s\n' % in_the_way, p.stderr)
        # the emulator cannot remove them; they wait for the VM manager
        for ov in overlays[:2]:
            self.assertRoot0600(ov, b'')
        with open(in_the_way, 'rb') as f:
            self.assertEqual(f.read(), b'not an overlay')

    def test_glib_loop(self):
        overlays = [self.path('ov%d.qcow2' % i) for i in range(2)]
        for ov in overlays:
            self.grant('vm1', ov, 'create')
        p = self.run_example('glib-loop', 'vm1', self.disk, *overlays, user='ia-emu1')
        self.assertEqual((p.returncode, p.stderr), (0, ''))
        lines = p.stdout.splitlines()
        self.assertEqual(lines[:2], ['disk opened', 'snapshot prepared: 2 overlays'])
        self.assertRegex(lines[2], r'^the timer fired \d+ times? meanwhile$')
        for ov in overlays:
            self.assertRoot0600(ov)

        # a snapshot that fails reports what to clean up, from the loop too
        missing = self.path('not-granted.qcow2')
        new = self.path('new.qcow2')
        self.grant('vm1', new, 'create')
        p = self.run_example('glib-loop', 'vm1', self.disk, new, missing, user='ia-emu1')
        self.assertEqual(p.returncode, 1)
        lines = p.stdout.splitlines()
        self.assertEqual(lines[:2], ['disk opened', 'cleanup ' + new])
        self.assertTrue(lines[2].startswith('snapshot failed: '), lines)
        self.assertIn('no grant', lines[2])

        # no grant for the disk: the first step fails and the loop ends
        p = self.run_example('glib-loop', 'vm1', self.path('nope.img'), new, user='ia-emu1')
        self.assertEqual(p.returncode, 1)
        self.assertTrue(p.stdout.startswith('disk refused: '), p.stdout)


class VmManagerExampleTests(ExampleTestCase):
    """docs/vm-manager-guide.md: vm-manager runs as root and starts an emulator example as
    ia-emu2, bound by process between fork and exec."""

    def vm_manager(self, guest, disk, overlays, emulator):
        return self.run_example('vm-manager', '--uid=%d' % EMU2.uid, guest, disk, *overlays,
                                '--', os.path.join(EXAMPLES, emulator[0]), *emulator[1:])

    def test_bind_between_fork_and_exec(self):
        disk = self.bed.make_image('vm2.img', b'hello world\n')
        p = self.vm_manager('vm2', disk, [], ['open-image', 'vm2', disk, 'read-write'])
        self.assertEqual((p.returncode, p.stderr), (0, ''))
        self.assertEqual(p.stdout.splitlines(), [
            "emulator: opened %s read-write: 12 bytes, O_RDWR, cloexec=yes, starts with "
            "'hello world'" % disk,
            'emulator exited with status 0',
            'grant %s read-write' % disk])
        self.assertEqual(self.guests(), [], 'the guest is unregistered at the end')
        log = self.bed.log_text('daemon')
        self.assertRegex(log, r"bind allowed guest='vm2' .*uid %d" % EMU2.uid)

    def test_snapshot_then_cleanup_of_a_failed_one(self):
        disk = self.bed.make_image('vm2.img')
        good = [self.path('good%d.qcow2' % i) for i in range(2)]
        p = self.vm_manager('vm2', disk, good, ['glib-loop', 'vm2', disk] + good)
        self.assertEqual((p.returncode, p.stderr), (0, ''), p.stdout)
        self.assertIn('emulator: snapshot prepared: 2 overlays', p.stdout)
        for ov in good:
            self.assertIn('grant %s create (created by the service)' % ov, p.stdout)
            self.assertRoot0600(ov)

        # A second snapshot fails on its last overlay: the manager removes the others.
        bad = [self.path('bad%d.qcow2' % i) for i in range(3)]
        in_the_way = self.bed.make_image('bad2.qcow2', b'keep me')
        p = self.vm_manager('vm2', disk, bad, ['snapshot-batch', 'vm2'] + bad)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertIn('The first image that failed: %s' % in_the_way, p.stderr)
        self.assertIn('emulator exited with status 1\n'
                      'removed 2 file(s) the failed snapshot left behind\n', p.stdout)
        self.assertNotIn('cleanup', p.stdout, 'the reports were consumed, not echoed')
        self.assertFalse(os.path.exists(bad[0]) or os.path.exists(bad[1]))
        with open(in_the_way, 'rb') as f:
            self.assertEqual(f.read(), b'keep me')
        self.assertTrue(all(os.path.exists(ov) for ov in good), 'other files are untouched')
        self.assertEqual(self.guests(), [])

    def test_usage(self):
        p = self.run_example('vm-manager', 'vm2', self.path('x.img'))
        self.assertEqual(p.returncode, 2)
        self.assertIn('usage:', p.stderr)


class GuideCodeTests(unittest.TestCase):
    """Every C block of the guides is an excerpt of an example program, verbatim up to its
    indentation, so every one of them is compiled by the build and run by the tests above."""

    def test_c_blocks_are_compiled_excerpts(self):
        sources = {}
        for name in sorted(os.listdir(os.path.join(DOCS, 'examples'))):
            if name.endswith('.c'):
                with open(os.path.join(DOCS, 'examples', name)) as f:
                    sources[name] = f.read()
        self.assertEqual(sorted(sources), ['glib-loop.c', 'open-async.c', 'open-image.c',
                                           'snapshot-batch.c', 'vm-manager.c'])
        n = 0
        for guide in GUIDES:
            with open(os.path.join(DOCS, guide)) as f:
                text = f.read()
            for block in re.findall(r'^```c\n(.*?)^```$', text, re.M | re.S):
                n += 1
                lines = block.splitlines()
                found = [name for name, src in sources.items()
                         if any(self._contains(src, lines, indent) for indent in (0, 8, 16))]
                self.assertTrue(found, '%s: this block is in no example:\n%s' % (guide, block))
            for link in re.findall(r'\]\((examples/[^)]*)\)', text):
                self.assertTrue(os.path.exists(os.path.join(DOCS, link)), link)
        self.assertGreater(n, 10)

    @staticmethod
    def _contains(src, lines, indent):
        pad = ' ' * indent
        return '\n'.join(pad + line if line else '' for line in lines) in src


if __name__ == '__main__':
    testbed.main()

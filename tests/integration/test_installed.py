#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""
The installed tree is the product: `meson install --destdir STAGE` of this build, then

 * the private bus includes the bus policy from STAGE and polkitd reads the actions from STAGE
   (nothing from the source tree), the daemon runs from STAGE's libexecdir, and the CLI from
   STAGE's bindir registers, grants and, as the emulator's uid, opens an image;
 * an example client from docs/examples is compiled against STAGE's imageaccess.pc and headers
   alone, and opens the image as the emulator;
 * `systemd-analyze verify` passes on the installed unit, with the installed daemon at the
   path ExecStart= names (bind-mounted there in a private mount namespace: the host's /usr is
   not touched), and the activation file names the same executable.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testbed  # noqa: E402

BUILD_ROOT = os.environ.get('IA_BUILD_ROOT')
EMU1 = testbed.USERS['ia-emu1']


def _meson_info(name):
    with open(os.path.join(BUILD_ROOT, 'meson-info', name)) as f:
        return json.load(f)


class InstalledTreeTests(testbed.IaTestCase):
    daemon_autostart = False

    def setUp(self):
        if not BUILD_ROOT:
            self.fail('IA_BUILD_ROOT is not set (run through meson test)')
        meson = shutil.which('meson')
        if not meson:
            self.fail('meson not found in PATH')
        self.stage = tempfile.mkdtemp(prefix='ia-stage-')
        os.chmod(self.stage, 0o755)     # test users run the staged CLI and example
        self.addCleanup(shutil.rmtree, self.stage, True)
        p = subprocess.run([meson, 'install', '-C', BUILD_ROOT, '--no-rebuild', '--quiet',
                            '--destdir', self.stage], capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, 'meson install failed:\n%s%s' % (p.stdout, p.stderr))
        opts = {o['name']: o['value'] for o in _meson_info('intro-buildoptions.json')}
        self.prefix = opts['prefix']
        # installed basename → its path in the stage (where meson says it installs it); the
        # CLI and its bash completion share a name: the completion is left out
        self.installed = {}
        for dst in _meson_info('intro-installed.json').values():
            staged = self.stage + dst
            self.assertTrue(os.path.lexists(staged), 'not installed: %s' % dst)
            if '/bash-completion/' not in dst:
                self.assertNotIn(os.path.basename(dst), self.installed)
                self.installed[os.path.basename(dst)] = staged
        self.sanitize = opts.get('b_sanitize', 'none')
        self.libdir = self.stage + os.path.join(self.prefix, opts['libdir'])
        self.bed_options = dict(bus_policy=self.installed['org.example.ImageAccess.conf'],
                                polkit_policy=self.installed['org.example.ImageAccess.policy'],
                                daemon=self.installed['image-accessd'])
        super().setUp()
        self.assertNotIn(testbed.SOURCE_ROOT, self.bed.bus_policy + self.bed.polkit_policy)
        self.bed.start_daemon()
        self.image = self.bed.make_image('vm1.img', b'hello from the installed tree\n')

    def run_as(self, argv, user=None, **kw):
        if user is not None:
            argv = ['setpriv', '--reuid=%d' % user.uid, '--regid=%d' % user.gid,
                    '--clear-groups', '--'] + argv
        return subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                              timeout=60, env=self.bed.base_env(LD_LIBRARY_PATH=self.libdir),
                              **kw)

    def ctl(self, *args, user=None):
        p = self.run_as([self.installed['image-accessctl']] + list(args), user)
        self.assertEqual((p.returncode, p.stderr), (0, ''), p.args)
        return p.stdout

    def test_service_cli_and_example_client(self):
        ctl = self.installed['image-accessctl']
        self.assertTrue(ctl.startswith(self.stage))
        self.ctl('register', 'vm1', '--uid=%d' % EMU1.uid)
        self.ctl('grant', 'vm1', self.image, 'read-only')
        out = self.ctl('open', '--guest=vm1', '--mode=read-only', self.image, '--',
                       '/bin/sh', '-c', 'head -c 15 <&3', user=EMU1)
        self.assertEqual(out, 'hello from the ')
        # polkitd read the installed actions: a manager call from a non-root user is refused
        # by the installed defaults (auth_admin, no agent), not by a missing action
        p = self.run_as([ctl, 'register', 'vm2'], testbed.USERS['ia-mgr'])
        self.assertNotEqual(p.returncode, 0)
        self.assertIn('register-guest needs authentication', p.stderr)

        # an example client built against the installed .pc file and headers only
        env = dict(os.environ, PKG_CONFIG_SYSROOT_DIR=self.stage,
                   PKG_CONFIG_PATH=os.path.join(self.libdir, 'pkgconfig'),
                   PKG_CONFIG_LIBDIR=os.path.join(self.libdir, 'pkgconfig') + ':' +
                   '/usr/lib/x86_64-linux-gnu/pkgconfig:/usr/lib/pkgconfig:/usr/share/pkgconfig')
        flags = subprocess.run(['pkg-config', '--cflags', '--libs', 'imageaccess'], env=env,
                               capture_output=True, text=True)
        self.assertEqual(flags.returncode, 0, flags.stderr)
        self.assertIn('-I' + self.stage, flags.stdout)
        exe = os.path.join(self.stage, 'open-image')
        cc = [os.environ.get('CC', 'cc'), '-o', exe,
              os.path.join(testbed.SOURCE_ROOT, 'docs', 'examples', 'open-image.c')]
        if self.sanitize != 'none':     # the staged library is instrumented: so is its user
            cc.append('-fsanitize=' + self.sanitize)
        p = subprocess.run(cc + flags.stdout.split(), capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        p = self.run_as([exe, 'vm1', self.image, 'read-only'], EMU1)
        self.assertEqual((p.returncode, p.stderr), (0, ''))
        self.assertIn("opened %s read-only" % self.image, p.stdout)
        # and it used the staged library, not one from the build tree or the host
        p = self.run_as(['ldd', exe])
        self.assertIn(os.path.join(self.libdir, 'libimageaccess.so.0'), p.stdout)

    def test_unit_and_activation_file(self):
        unit = self.installed['image-access.service']
        with open(unit) as f:
            exec_start = [line.split('=', 1)[1].split()[0] for line in f
                          if line.startswith('ExecStart=')]
        with open(self.installed['org.example.ImageAccess.service']) as f:
            activation_exec = [line.split('=', 1)[1].split()[0] for line in f
                               if line.startswith('Exec=')]
        self.assertEqual(len(exec_start), 1)
        self.assertEqual(activation_exec, exec_start)
        daemon = exec_start[0]
        self.assertEqual(self.stage + daemon, self.installed['image-accessd'])
        # verify insists that ExecStart= is executable: show it the staged daemon there
        script = ('set -e; mount --bind "$1" "$2"; cd "$3"; '
                  'SYSTEMD_LOG_COLOR=0 exec systemd-analyze verify --man=no "$4"')
        p = subprocess.run(['unshare', '-m', '--propagation', 'private', '--', 'sh', '-c',
                            script, 'verify', os.path.dirname(self.stage + daemon),
                            os.path.dirname(daemon), os.path.dirname(unit), unit],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual((p.returncode, p.stdout + p.stderr), (0, ''))


if __name__ == '__main__':
    testbed.main()

#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""
Directory grants (GrantImage option 'directory'): a guest opens the files its manager makes
beneath a granted directory (libvirt's snapshot overlays) without a grant per file, and every
property of file grants still holds: the directory is pinned, nothing beneath it is reached
through a link, another guest's file is never reached, the mode is the grant's, a file's own
grant takes precedence, RevokeImage / ListGrants / the state file know it.
"""

import json
import os
import signal
import subprocess

import testbed
from test_manager import RULE_LOG_DETAILS

ERR = 'org.example.ImageAccess.Error.'
IA_NS_ACTION = 'org.example.imageaccess.'


def b(v):
    return {'$v': ['b', v]}


class DirectoryTests(testbed.IaTestCase):
    def setUp(self):
        super().setUp()
        self.mgr = self.bed.local
        self.emu = self.bed.agent('ia-emu1')
        self.dir = os.path.join(self.bed.images_dir, 'vm1')
        os.mkdir(self.dir, 0o711)
        os.chmod(self.dir, 0o711)
        for g, who in (('vm1', 'ia-emu1'), ('vm2', 'ia-emu2')):
            self.assertOk(self.mgr.manager('RegisterGuest', 'sa{sv}', [g, {
                'uid': {'$v': ['u', self.bed.users[who].uid]}}]))

    def grant(self, guest, path, mode, directory=False):
        return self.mgr.manager('GrantImage', 'sssa{sv}',
                                [guest, path, mode, {'directory': b(True)} if directory else {}])

    def open(self, path, mode='read-write', guest='vm1'):
        return self.emu.call('OpenImage', 'sssa{sv}', [guest, path, mode, {}], read=8)

    def grants(self, guest='vm1'):
        return {g[0]: (g[1], g[2]) for g in self.assertOk(
            self.mgr.manager('ListGrants', 's', [guest]))[0]}

    def test_open_beneath(self):
        self.assertOk(self.grant('vm1', self.dir, 'read-write', directory=True))
        mode, props = self.grants()[self.dir]
        st = os.stat(self.dir)
        self.assertEqual((mode, props), ('read-write', {
            'created': False, 'pinned': True, 'directory': True, 'device': st.st_dev,
            'inode': st.st_ino}))
        # made after the grant, by root, as libvirt makes an overlay
        ov = self.bed.make_image('vm1/disk.s1', b'overlay')
        sub = self.bed.make_image('vm1/sub/deeper.img', b'deeper')
        self.assertEqual(self.open(ov).fd()['read'], b'overlay')
        self.assertEqual(self.open(sub, 'read-only').fd()['read'], b'deeper')
        self.assertError(self.open(ov, 'create'), ERR + 'NotGranted')
        # the directory itself is not a file to open; nor are paths next to it
        self.assertError(self.open(self.dir, 'read-only'), ERR + 'NotGranted')
        self.assertError(self.open(self.dir + '-x/a', 'read-only'), ERR + 'NotGranted')
        self.assertError(self.open(os.path.join(self.dir, 'missing'), 'read-only'),
                         ERR + 'NotFound')
        self.assertRegex(self.bed.log_text('daemon'),
                         r"audit: grant allowed guest='vm1' image='%s' mode=read-write uid=0 .*"
                         % self.dir)
        # read-only directory grant: read-only opens only
        self.assertOk(self.grant('vm1', self.dir, 'read-only', directory=True))
        self.assertError(self.open(ov), ERR + 'NotGranted')
        self.assertOk(self.open(ov, 'read-only'))

    def test_no_links_no_other_names_no_other_guests(self):
        self.assertOk(self.grant('vm1', self.dir, 'read-write', directory=True))
        theirs = self.bed.make_image('vm2.img', b'vm2 secret')
        self.assertOk(self.grant('vm2', theirs, 'read-write'))
        os.symlink(theirs, os.path.join(self.dir, 'link'))
        self.assertError(self.open(os.path.join(self.dir, 'link')), ERR + 'SymlinkRefused')
        os.symlink(self.bed.images_dir, os.path.join(self.dir, 'up'))
        self.assertError(self.open(os.path.join(self.dir, 'up', 'vm2.img')),
                         ERR + 'SymlinkRefused')
        os.link(theirs, os.path.join(self.dir, 'hard'))
        msg = self.assertError(self.open(os.path.join(self.dir, 'hard')), ERR + 'NotGranted')
        self.assertIn('other names', msg)
        # moved in by someone with the right (root): still the other guest's file
        os.unlink(os.path.join(self.dir, 'hard'))
        os.rename(theirs, os.path.join(self.dir, 'moved'))
        msg = self.assertError(self.open(os.path.join(self.dir, 'moved')), ERR + 'NotGranted')
        self.assertIn("file of guest 'vm2'", msg)
        os.mkfifo(os.path.join(self.dir, 'fifo'))
        self.assertError(self.open(os.path.join(self.dir, 'fifo')), ERR + 'WrongFileType')

    def test_file_grant_takes_precedence(self):
        base = self.bed.make_image('vm1/base.img', b'base')
        self.assertOk(self.grant('vm1', self.dir, 'read-write', directory=True))
        self.assertOk(self.grant('vm1', base, 'read-only'))
        self.assertError(self.open(base), ERR + 'NotGranted')
        self.assertOk(self.open(base, 'read-only'))

    def test_directory_is_pinned_and_checked(self):
        # writable by others: refused
        os.chmod(self.dir, 0o777)
        r = self.grant('vm1', self.dir, 'read-write', directory=True)
        self.assertError(r, ERR + 'InvalidPath')
        self.assertIn('writable by nobody else', r.message)
        os.chmod(self.dir, 0o711)
        self.assertError(self.grant('vm1', self.bed.make_image('f.img'), 'read-write',
                                    directory=True), ERR + 'WrongFileType')
        self.assertError(self.grant('vm1', self.dir + '-missing', 'read-write', directory=True),
                         ERR + 'NotFound')
        self.assertOk(self.grant('vm1', self.dir, 'read-write', directory=True))
        ov = self.bed.make_image('vm1/ov.img', b'ov')
        # replaced by another directory with the same name: refused until granted again
        os.rename(self.dir, self.dir + '.old')
        os.mkdir(self.dir, 0o711)
        os.rename(ov.replace('/vm1/', '/vm1.old/'), ov)
        self.assertIn('was replaced', self.assertError(self.open(ov), ERR + 'NotGranted'))
        self.assertOk(self.grant('vm1', self.dir, 'read-write', directory=True))
        self.assertOk(self.open(ov))

    def test_directories_of_two_guests_never_nest(self):
        self.assertOk(self.grant('vm1', self.dir, 'read-write', directory=True))
        sub = os.path.join(self.dir, 'sub')
        os.mkdir(sub, 0o711)
        for path in (self.dir, sub, self.bed.images_dir):
            r = self.grant('vm2', path, 'read-write', directory=True)
            self.assertError(r, ERR + 'DirectoryInUse')
            self.assertIn("guest 'vm1' has a directory grant for '%s'" % self.dir, r.message)
        # the same guest may, and a file grant for the other guest is no directory grant
        self.assertOk(self.grant('vm1', sub, 'read-only', directory=True))

    def test_create_beneath_then_revoke_remove_created(self):
        self.assertOk(self.grant('vm1', self.dir, 'create', directory=True))
        root_sub = self.bed.agent('root')
        root_sub.subscribe("type='signal',sender='org.example.ImageAccess',member='GrantsChanged'")
        self.assertOk(root_sub.call('Ping', iface='org.freedesktop.DBus.Peer'))
        new = os.path.join(self.dir, 'new.qcow2')
        self.assertOk(self.open(new, 'create'))
        # The file made has a grant of its own from now on: managers hear of it.
        got = root_sub.signals(count=1, timeout=10)
        self.assertEqual([(g['member'], g['args']) for g in got], [('GrantsChanged', ['vm1'])])
        st = os.stat(new)
        self.assertEqual((st.st_uid, st.st_mode & 0o7777), (0, 0o600))
        mode, props = self.grants()[new]
        self.assertEqual((mode, props['created'], props['pinned'], props.get('directory')),
                         ('create', True, True, None))
        # its own file again: fine; a file the service did not make: never clobbered
        self.assertOk(self.open(new, 'create'))
        self.assertError(self.open(self.bed.make_image('vm1/other.img'), 'create'),
                         ERR + 'FileExists')
        self.assertOk(self.mgr.manager('RevokeImage', 'ssa{sv}',
                                       ['vm1', new, {'remove-created': b(True)}]))
        self.assertFalse(os.path.exists(new))

    def test_revoke_list_and_restart(self):
        self.bed.set_rules('10-log-details.rules', RULE_LOG_DETAILS)
        self.assertOk(self.grant('vm1', self.dir, 'read-write', directory=True))
        ov = self.bed.make_image('vm1/ov.img', b'ov')
        self.assertOk(self.open(ov))
        details = [json.loads(line.split('IA-DETAILS ', 1)[1].split(' ', 1)[1])
                   for line in self.bed.log_text('polkitd').splitlines() if 'IA-DETAILS ' +
                   IA_NS_ACTION + 'open-image' in line]
        self.assertIn({'guest': 'vm1', 'image': ov, 'mode': 'read-write', 'guest-uuid': '',
                       'directory': self.dir}, details)
        self.bed.restart_daemon(signal.SIGKILL)
        self.assertTrue(self.grants()[self.dir][1]['directory'])
        self.emu.reconnect()
        self.assertOk(self.open(ov))
        self.assertOk(self.mgr.manager('RevokeImage', 'ssa{sv}', ['vm1', self.dir, {}]))
        self.assertError(self.open(ov), ERR + 'NotGranted')
        self.assertNotIn(self.dir, self.grants())


    def test_cli_grant_list_explain(self):
        def ctl(*args):
            return subprocess.run([os.environ['IA_CTL'], '--address=' + self.bed.address] +
                                  list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  universal_newlines=True)
        r = ctl('grant', '--directory', 'vm1', self.dir, 'read-write')
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(self.dir + '/ ', ctl('list', 'vm1').stdout)
        self.assertEqual(json.loads(ctl('--json', 'list', 'vm1').stdout), [
            {'path': self.dir, 'mode': 'read-write', 'created': False, 'directory': True}])
        ov = self.bed.make_image('vm1/disk.s1', b'x')
        r = ctl('explain', '--guest=vm1', '--mode=read-write', ov)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("grant for directory '%s' above it" % self.dir, r.stdout)
        r = ctl('explain', '--guest=vm1', '--mode=create', ov)
        self.assertIn("beneath directory '%s' only read-write, not create" % self.dir, r.stdout)
        r = ctl('grant', '--directory', 'vm2', self.dir, 'read-write')
        self.assertEqual(r.returncode, 5, r.stderr)
        self.assertIn("guest 'vm1' has a directory grant", r.stderr)


if __name__ == '__main__':
    testbed.main()

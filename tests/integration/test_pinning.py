#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""
Grants are for inodes, not names (daemon/bus-image-access.c, Grant.pinned): an emulator that
can rename files in an image directory must not get another guest's image by moving it under
a name it was granted.
"""

import os
import signal

import testbed

NOT_GRANTED = 'org.example.ImageAccess.Error.NotGranted'


class PinningTests(testbed.IaTestCase):
    def setUp(self):
        super().setUp()
        self.emu = self.bed.agent('ia-emu1')
        emu_user = self.bed.users['ia-emu1']
        # A directory the emulator's uid may write in: it can rename entries there.
        self.dir = os.path.join(self.bed.images_dir, 'shared')
        os.mkdir(self.dir)
        os.chown(self.dir, emu_user.uid, emu_user.gid)
        os.chmod(self.dir, 0o755)
        self.mine = self.bed.make_image('shared/vm1.img', data=b'vm1 disk')
        self.theirs = self.bed.make_image('shared/vm2.img', data=b'vm2 secret')
        mgr = self.bed.local
        self.assertOk(mgr.manager('RegisterGuest', 'sa{sv}',
                                  ['vm1', {'uid': {'$v': ['u', emu_user.uid]}}]))
        self.assertOk(mgr.manager('RegisterGuest', 'sa{sv}', ['vm2', {}]))
        self.assertOk(mgr.manager('GrantImage', 'sssa{sv}', ['vm1', self.mine, 'read-write', {}]))
        self.assertOk(mgr.manager('GrantImage', 'sssa{sv}', ['vm2', self.theirs, 'read-write', {}]))

    def open(self, path, mode='read-write'):
        return self.emu.call('OpenImage', 'sssa{sv}', ['vm1', path, mode, {}], read=16)

    def swap_in_theirs(self):
        # What the emulator itself could do: rename is allowed by the directory's mode.
        os.rename(self.theirs, self.mine)

    def test_renamed_in_file_refused(self):
        self.assertEqual(self.open(self.mine).fd(0)['read'], b'vm1 disk')
        self.swap_in_theirs()
        message = self.assertError(self.open(self.mine), NOT_GRANTED)
        self.assertIn('replaced', message)
        self.assertError(self.open(self.mine, 'read-only'), NOT_GRANTED)

    def test_list_grants_shows_the_pin(self):
        overlay = os.path.join(self.dir, 'overlay.qcow2')
        self.assertOk(self.bed.local.manager('GrantImage', 'sssa{sv}', ['vm1', overlay, 'create', {}]))
        grants = {g[0]: g[2] for g in self.assertOk(self.bed.local.manager('ListGrants', 's', ['vm1']))[0]}
        st = os.stat(self.mine)
        self.assertEqual((grants[self.mine]['pinned'], grants[self.mine]['device'],
                          grants[self.mine]['inode']), (True, st.st_dev, st.st_ino))
        self.assertEqual(grants[overlay], {'created': False, 'pinned': False})

    def test_regrant_pins_the_new_file(self):
        self.swap_in_theirs()
        self.assertError(self.open(self.mine), NOT_GRANTED)
        self.assertOk(self.bed.local.manager('GrantImage', 'sssa{sv}', ['vm1', self.mine, 'read-write', {}]))
        self.assertEqual(self.open(self.mine).fd(0)['read'], b'vm2 secret')

    def test_pin_survives_restart(self):
        self.bed.restart_daemon(signal.SIGKILL)
        self.swap_in_theirs()
        self.assertError(self.open(self.mine), NOT_GRANTED)

    def test_missing_file_needs_create_grant(self):
        later = os.path.join(self.dir, 'later.img')
        self.assertError(self.bed.local.manager('GrantImage', 'sssa{sv}', ['vm1', later, 'read-only', {}]),
                         'org.example.ImageAccess.Error.NotFound')
        self.assertError(self.bed.local.manager('GrantImage', 'sssa{sv}', ['vm1', later, 'read-write', {}]),
                         'org.example.ImageAccess.Error.NotFound')
        grants = self.assertOk(self.bed.local.manager('ListGrants', 's', ['vm1']))[0]
        self.assertEqual([g[0] for g in grants], [self.mine])

    def test_overlay_path_squatted(self):
        overlay = os.path.join(self.dir, 'overlay.qcow2')
        self.assertOk(self.bed.local.manager('GrantImage', 'sssa{sv}', ['vm1', overlay, 'create', {}]))
        # Before the guest creates it, the emulator moves another guest's image there.
        os.rename(self.theirs, overlay)
        # Until the service has created it, nothing at that name is the guest's.
        self.assertError(self.open(overlay), 'org.example.ImageAccess.Error.NotFound')
        self.assertError(self.open(overlay, 'read-only'), 'org.example.ImageAccess.Error.NotFound')
        self.assertError(self.open(overlay, 'create'), 'org.example.ImageAccess.Error.FileExists')
        with open(overlay, 'rb') as f:
            self.assertEqual(f.read(), b'vm2 secret')

    def test_created_file_is_pinned(self):
        overlay = os.path.join(self.dir, 'overlay.qcow2')
        self.assertOk(self.bed.local.manager('GrantImage', 'sssa{sv}', ['vm1', overlay, 'create', {}]))
        reply = self.emu.call('OpenImage', 'sssa{sv}', ['vm1', overlay, 'create', {}], write=b'qcow')
        self.assertOk(reply)
        # Reopened as QEMU does after creating it: allowed, it is the same inode.
        self.assertEqual(self.open(overlay).fd(0)['read'], b'qcow')
        # Replaced by another file: refused.
        os.rename(self.theirs, overlay)
        self.assertError(self.open(overlay), NOT_GRANTED)


if __name__ == '__main__':
    testbed.main()

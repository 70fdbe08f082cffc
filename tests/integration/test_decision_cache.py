#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""
The polkit decision cache (daemon/authz.c): a "yes" is reused for the same connection, action
and details, and forgotten on everything that could change the answer.  Each test counts the
daemon's "Asking polkit" debug lines, i.e. real CheckAuthorization calls.
"""

import re
import signal
import subprocess
import time

import testbed

GUEST = 'vm1'
ASK = 'Asking polkit about org.example.imageaccess.open-image'


class DecisionCacheTests(testbed.IaTestCase):
    daemon_config = '[Polkit]\nDecisionCacheSec=30\n'

    def setUp(self):
        super().setUp()
        self.image = self.bed.make_image('disk.raw', data=b'disk', size=4096)
        self.emu = self.bed.agent('ia-emu1')
        mgr = self.bed.local
        self.assertOk(mgr.manager('RegisterGuest', 'sa{sv}',
                                  [GUEST, {'uid': {'$v': ['u', self.emu.uid]}}]))
        self.assertOk(mgr.manager('GrantImage', 'sssa{sv}', [GUEST, self.image, 'read-write', {}]))

    def asks(self):
        return self.bed.log_text('daemon').count(ASK)

    def open(self, agent=None, mode='read-write'):
        return (agent or self.emu).call('OpenImage', 'sssa{sv}', [GUEST, self.image, mode, {}])

    def test_repeats_ask_polkit_once(self):
        before = self.asks()
        for _ in range(7):      # QEMU opens each overlay 7 times
            self.assertOk(self.open())
        self.assertEqual(self.asks() - before, 1)

    def test_weaker_mode_covered_stronger_asks(self):
        before = self.asks()
        self.assertOk(self.open(mode='read-only'))
        self.assertOk(self.open(mode='read-write'))     # stronger: asks
        self.assertOk(self.open(mode='read-only'))      # covered by the read-write yes
        self.assertEqual(self.asks() - before, 2)

    def test_other_image_asks_again(self):
        other = self.bed.make_image('other.raw', size=4096)
        self.assertOk(self.bed.local.manager('GrantImage', 'sssa{sv}', [GUEST, other, 'read-write', {}]))
        self.assertOk(self.open())
        before = self.asks()
        self.assertOk(self.emu.call('OpenImage', 'sssa{sv}', [GUEST, other, 'read-write', {}]))
        self.assertEqual(self.asks() - before, 1)

    def test_second_image_asks_ahead_for_the_rest(self):
        """A VM's start opens one disk after the other: the second asks polkit about all of
        the guest's other images, each in its granted mode, and the later disks find their
        answers (or take over the question while it is out)."""
        disks = [self.bed.make_image('disk%d.raw' % i, size=4096) for i in range(6)]
        for d in disks:
            self.assertOk(self.bed.local.manager('GrantImage', 'sssa{sv}', [GUEST, d, 'read-write', {}]))
        before = self.asks()
        for d in disks:
            self.assertOk(self.emu.call('OpenImage', 'sssa{sv}', [GUEST, d, 'read-write', {}]))
        self.bed.wait_log('daemon', 'Prefetching polkit')
        self.assertOk(self.open())
        # One question per image, the fixture's too, and none twice.
        self.assertEqual(self.asks() - before, len(disks) + 1)

    def test_asks_ahead_in_the_order_of_the_grants(self):
        """polkitd answers in the order it is asked, and an emulator opens its disks in the
        order the manager granted them: the questions asked ahead follow the grants, from
        the one after the image just opened, so each answer is in before its disk's turn."""
        names = ['disk-%s.raw' % w for w in ('kilo', 'alpha', 'juliett', 'echo', 'golf', 'bravo',
                                             'lima', 'delta', 'hotel', 'charlie', 'india')]
        disks = [self.bed.make_image(n, size=4096) for n in names]
        for d in disks:
            self.assertOk(self.bed.local.manager('GrantImage', 'sssa{sv}', [GUEST, d, 'read-write', {}]))
        since = len(self.bed.log_text('daemon'))
        for d in disks[:2]:
            self.assertOk(self.emu.call('OpenImage', 'sssa{sv}', [GUEST, d, 'read-write', {}]))
        self.bed.wait_log('daemon', "Prefetching polkit's answer .* about '%s'" % re.escape(self.image))
        asked = re.findall(r"Prefetching polkit's answer on \S+ for \S+ about '([^']*)'",
                           self.bed.log_text('daemon')[since:])
        # The fixture's image was granted first: it comes last, after the wrap.
        self.assertEqual(asked, disks[2:] + [self.image])

    def test_asks_ahead_about_the_nearest(self):
        """Questions ahead stay within half of polkit's window (and at most 64): those asked
        are the grants that come next, the nearest first."""
        disks = [self.bed.make_image('many-%02d.raw' % i, size=4096) for i in range(70)]
        for d in disks:
            self.assertOk(self.bed.local.manager('GrantImage', 'sssa{sv}', [GUEST, d, 'read-only', {}]))
        since = len(self.bed.log_text('daemon'))
        for d in disks[:2]:
            self.assertOk(self.emu.call('OpenImage', 'sssa{sv}', [GUEST, d, 'read-only', {}]))
        self.bed.wait_log('daemon', "Prefetching polkit's answer .* about '%s'" % re.escape(disks[2]))
        asked = re.findall(r"Prefetching polkit's answer on \S+ for \S+ about '([^']*)'",
                           self.bed.log_text('daemon')[since:])
        self.assertTrue(0 < len(asked) <= 64, len(asked))
        self.assertEqual(asked, disks[2:2 + len(asked)])

    def test_one_image_asks_about_nothing_else(self):
        """A caller that opens one image (image-accessctl open) costs polkit one question."""
        for i in range(4):
            d = self.bed.make_image('other%d.raw' % i, size=4096)
            self.assertOk(self.bed.local.manager('GrantImage', 'sssa{sv}', [GUEST, d, 'read-write', {}]))
        before = self.asks()
        for _ in range(3):
            self.assertOk(self.open())
        self.assertOk(self.bed.local.call('Ping', iface='org.freedesktop.DBus.Peer'))
        self.assertEqual(self.asks() - before, 1)
        self.assertNotIn('Prefetching polkit', self.bed.log_text('daemon'))

    def test_overlay_probes_and_reopens_ask_once(self):
        # QEMU's pattern for a new overlay: probes (the file is not there yet), create, then
        # read-only and read-write reopens.  One polkit check in all.
        overlay = self.bed.images_dir + '/overlay.qcow2'
        self.assertOk(self.bed.local.manager('GrantImage', 'sssa{sv}', [GUEST, overlay, 'create', {}]))
        before = self.asks()
        for _ in range(2):
            self.assertError(self.emu.call('OpenImage', 'sssa{sv}', [GUEST, overlay, 'read-only', {}]),
                             'org.example.ImageAccess.Error.NotFound')
        self.assertOk(self.emu.call('OpenImage', 'sssa{sv}', [GUEST, overlay, 'create', {}]))
        for mode in ('read-only', 'read-write', 'read-only', 'read-write'):
            self.assertOk(self.emu.call('OpenImage', 'sssa{sv}', [GUEST, overlay, mode, {}]))
        self.assertEqual(self.bed.log_text('daemon').count(ASK) - before, 1)

    def test_other_connection_asks_again(self):
        before = self.asks()
        self.assertOk(self.open())
        other = self.bed.agent('ia-emu1')      # same uid, another connection
        self.assertOk(self.open(agent=other))
        self.assertEqual(self.asks() - before, 2)

    def test_rule_change_voids(self):
        self.assertOk(self.open())
        self.bed.set_rules('40-deny.rules', '''polkit.addRule(function(action, subject) {
    if (action.id == "org.example.imageaccess.open-image") return polkit.Result.NO;
});
''')
        self.assertError(self.open(), 'org.freedesktop.DBus.Error.AccessDenied')

    def forge(self, path, signal, *args, dest=None):
        """Another user sends a signal as if it were the bus or polkitd: broadcast, or
        unicast to the service's connection with @dest (no match rule filters those)."""
        forger = self.bed.users['ia-emu2']
        subprocess.run(['setpriv', '--reuid=%d' % forger.uid, '--regid=%d' % forger.gid,
                        '--clear-groups', 'gdbus', 'emit', '--system', '--object-path', path,
                        '--signal', signal] + (['--dest', dest] if dest else []) + list(args),
                       env=self.bed.base_env(), check=True, timeout=30)

    def test_forged_changed_signal_voids_nothing(self):
        """polkit's Changed signal counts only when polkitd sends it: anyone may send one (the
        daemon's match names no sender), and a forgery must not make it ask polkitd again."""
        self.assertOk(self.open())
        before = self.asks()
        for n, dest in enumerate((None, self.bed.bus.get_name_owner(testbed.BUS_NAME)), 1):
            self.forge('/org/freedesktop/PolicyKit1/Authority',
                       'org.freedesktop.PolicyKit1.Authority.Changed', dest=dest)
            self.bed.wait_log('daemon', "(?s)(polkit's Changed signal came from :.*){%d}" % n)
            self.assertOk(self.open())
            self.assertEqual(self.asks() - before, 0, dest)

    def test_forged_name_owner_changed_changes_nothing(self):
        """Only the bus says that a connection left: another user's NameOwnerChanged naming
        the emulator's connection must not make the daemon forget it (its decisions here)."""
        self.assertOk(self.open())
        before = self.asks()
        name = self.emu.unique_name
        for n, dest in enumerate((None, self.bed.bus.get_name_owner(testbed.BUS_NAME)), 1):
            self.forge('/org/freedesktop/DBus', 'org.freedesktop.DBus.NameOwnerChanged',
                       "'%s'" % name, "'%s'" % name, "''", dest=dest)
            self.bed.wait_log('daemon', '(?s)(Ignoring a NameOwnerChanged signal from :.*){%d}' % n)
            self.assertOk(self.open())
            self.assertEqual(self.asks() - before, 0, dest)

    def test_revoke_voids_grant_keeps(self):
        self.assertOk(self.open())
        before = self.asks()
        other = self.bed.make_image('other.raw', size=4096)
        # A new grant changes no polkit answer (grants are checked before the cache).
        self.assertOk(self.bed.local.manager('GrantImage', 'sssa{sv}', [GUEST, other, 'read-only', {}]))
        self.bed.wait_log('daemon', 'Prefetching polkit')
        self.assertOk(self.open())
        self.assertEqual(self.asks() - before, 1)        # the prefetch of 'other' only
        # Taking access away voids every remembered yes.
        self.assertOk(self.bed.local.manager('RevokeImage', 'ssa{sv}', [GUEST, other, {}]))
        self.assertOk(self.open())
        self.assertEqual(self.asks() - before, 2)

    def test_grant_prefetches_for_the_guests_emulator(self):
        # The emulator has opened an image of the guest; the manager then grants an overlay:
        # polkit is asked right away, so the create during the snapshot finds the answer.
        self.assertOk(self.open())
        overlay = self.bed.images_dir + '/overlay.qcow2'
        self.assertOk(self.bed.local.manager('GrantImage', 'sssa{sv}', [GUEST, overlay, 'create', {}]))
        self.bed.wait_log('daemon', "Prefetched polkit's answer on org.example.imageaccess.open-image .*: yes")
        before = self.asks()
        self.assertOk(self.emu.call('OpenImage', 'sssa{sv}', [GUEST, overlay, 'create', {}]))
        self.assertOk(self.emu.call('OpenImage', 'sssa{sv}', [GUEST, overlay, 'read-write', {}]))
        self.assertEqual(self.asks() - before, 0)
        # Nobody else's connection was asked about: another emulator of the same uid that
        # never opened anything gets no prefetch.
        self.assertEqual(self.bed.log_text('daemon').count('Prefetching'), 1)

    def test_polkitd_restart_voids(self):
        self.assertOk(self.open())
        before = self.asks()
        self.bed.kill_polkitd()
        self.bed.start_polkitd()
        deadline = time.monotonic() + 5
        reply = self.open()
        while not reply.ok and time.monotonic() < deadline:
            time.sleep(0.05)
            reply = self.open()
        self.assertOk(reply)
        self.assertGreaterEqual(self.asks() - before, 1)

    def test_manager_actions_not_reused(self):
        # A manager's yes may have been won by authenticating: never kept (no *_keep).
        self.bed.set_rules('40-list.rules', '''polkit.addRule(function(action, subject) {
    if (action.id == "org.example.imageaccess.list" && subject.user == "ia-mgr")
        return polkit.Result.YES;
});
''')
        mgr = self.bed.agent('ia-mgr')
        ask = 'Asking polkit about org.example.imageaccess.list'
        before = self.bed.log_text('daemon').count(ask)
        for _ in range(3):
            self.assertOk(mgr.manager('ListGuests'))
        self.assertEqual(self.bed.log_text('daemon').count(ask) - before, 3)

    def test_interactive_not_reused(self):
        before = self.asks()
        for _ in range(3):
            self.assertOk(self.emu.call('OpenImage', 'sssa{sv}', [GUEST, self.image, 'read-write', {}],
                                        interactive=True))
        self.assertEqual(self.asks() - before, 3)

    def test_denial_not_reused(self):
        self.bed.set_rules('40-deny.rules', '''polkit.addRule(function(action, subject) {
    if (action.id == "org.example.imageaccess.open-image") return polkit.Result.NO;
});
''')
        before = self.asks()
        self.assertError(self.open(), 'org.freedesktop.DBus.Error.AccessDenied')
        self.assertError(self.open(), 'org.freedesktop.DBus.Error.AccessDenied')
        self.assertEqual(self.asks() - before, 2)


class DecisionCacheExpiryTests(testbed.IaTestCase):
    daemon_config = '[Polkit]\nDecisionCacheSec=1\n'

    def test_expires(self):
        image = self.bed.make_image('disk.raw', size=4096)
        emu = self.bed.agent('ia-emu1')
        self.assertOk(self.bed.local.manager('RegisterGuest', 'sa{sv}',
                                             [GUEST, {'uid': {'$v': ['u', emu.uid]}}]))
        self.assertOk(self.bed.local.manager('GrantImage', 'sssa{sv}', [GUEST, image, 'read-only', {}]))
        call = lambda: emu.call('OpenImage', 'sssa{sv}', [GUEST, image, 'read-only', {}])
        before = self.bed.log_text('daemon').count(ASK)
        self.assertOk(call())
        self.assertOk(call())
        time.sleep(1.3)
        self.assertOk(call())
        self.assertEqual(self.bed.log_text('daemon').count(ASK) - before, 2)


class DecisionCacheDisabledTests(testbed.IaTestCase):
    daemon_config = '[Polkit]\nDecisionCacheSec=0\n'

    def test_disabled(self):
        image = self.bed.make_image('disk.raw', size=4096)
        emu = self.bed.agent('ia-emu1')
        self.assertOk(self.bed.local.manager('RegisterGuest', 'sa{sv}',
                                             [GUEST, {'uid': {'$v': ['u', emu.uid]}}]))
        self.assertOk(self.bed.local.manager('GrantImage', 'sssa{sv}', [GUEST, image, 'read-only', {}]))
        before = self.bed.log_text('daemon').count(ASK)
        for _ in range(3):
            self.assertOk(emu.call('OpenImage', 'sssa{sv}', [GUEST, image, 'read-only', {}]))
        self.assertEqual(self.bed.log_text('daemon').count(ASK) - before, 3)


if __name__ == '__main__':
    testbed.main()

#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""
Change notifications for managers that are not root: Manager.Subscribe, allowed by the same
polkit action as ListGuests, gets GuestRegistered, GrantsChanged and GuestUnregistered as
unicast signals on org.example.ImageAccess.Notify; callers polkit does not allow, and callers
that did not subscribe, learn no guest name.  The real dbus-daemon applies the project's bus
policy (the broadcast Manager signals reach root only).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testbed  # noqa: E402

NOTIFY = 'org.example.ImageAccess.Notify'
MATCH = "type='signal',sender='org.example.ImageAccess'"
INTERACTIVE_REQUIRED = 'org.freedesktop.DBus.Error.InteractiveAuthorizationRequired'

# ia-operators may list guests (and so follow changes); nobody else but root.
RULE_OPERATORS_LIST = '''\
polkit.addRule(function(action, subject) {
    if (action.id == "org.example.imageaccess.list" && subject.isInGroup("ia-operators"))
        return polkit.Result.YES;
    return polkit.Result.NOT_HANDLED;
});
'''


class NotifyTests(testbed.IaTestCase):
    bed_options = {'rules': {'50-operators-list.rules': RULE_OPERATORS_LIST}}

    def changes(self):
        """Register, grant, unregister vm-n as root (the manager of record)."""
        mgr = self.bed.local
        path = self.bed.make_image('n.img', b'n')
        self.assertOk(mgr.manager('RegisterGuest', 'sa{sv}', ['vm-n', {}]))
        self.assertOk(mgr.manager('GrantImage', 'sssa{sv}', ['vm-n', path, 'read-only', {}]))
        self.assertOk(mgr.manager('UnregisterGuest', 's', ['vm-n']))

    def test_allowed_subscriber_follows_changes(self):
        op = self.bed.agent('ia-op')
        op.subscribe(MATCH)
        self.assertOk(op.manager('Subscribe'))
        self.changes()
        got = op.signals(count=3, timeout=10)
        self.assertEqual([(s['interface'], s['member'], s['args']) for s in got],
                         [(NOTIFY, 'GuestRegistered', ['vm-n']),
                          (NOTIFY, 'GrantsChanged', ['vm-n']),
                          (NOTIFY, 'GuestUnregistered', ['vm-n'])],
                         'only the unicast copies: the broadcast reaches root alone')

    def test_nobody_else_learns_a_guest_name(self):
        emu = self.bed.agent('ia-emu1')             # polkit does not let it list
        emu.subscribe(MATCH)
        self.assertError(emu.manager('Subscribe'), INTERACTIVE_REQUIRED)
        lurker = self.bed.agent('ia-op')            # allowed, but did not subscribe
        lurker.subscribe(MATCH)
        op = self.bed.agent('ia-op')                # the one subscriber
        op.subscribe(MATCH)
        self.assertOk(op.manager('Subscribe'))
        self.changes()
        self.assertEqual(len(op.signals(count=3, timeout=10)), 3)
        self.assertEqual(emu.signals(timeout=1), [])
        self.assertEqual(lurker.signals(timeout=0.5), [])

    def test_changes_after_a_subscriber_left(self):
        op = self.bed.agent('ia-op')
        self.assertOk(op.manager('Subscribe'))
        op.kill()
        self.changes()                              # the gone peer is skipped
        self.assertNotIn('Failed to send', self.bed.log_text('daemon'))
        self.assertOk(self.bed.local.manager('ListGuests'))    # and the service serves on


if __name__ == '__main__':
    testbed.main()

#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""
The Manager interface against the real dbus-daemon, the real polkitd (with the project's
.policy) and the built image-accessd: who may call each method (root without polkit, others
by the defaults or by rules, each action on its own), which polkit details rules see, what
the methods do, that bad input is refused by name and changes nothing, the configured limits,
and that the interface's signals reach root only (bus policy).

Every "allowed" has its "denied" next to it, and every refusal is checked to leave the guest
and grant tables exactly as they were.
"""

import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testbed  # noqa: E402

ERR = 'org.example.ImageAccess.Error.'
E_INTERACTIVE = 'org.freedesktop.DBus.Error.InteractiveAuthorizationRequired'
E_DENIED = 'org.freedesktop.DBus.Error.AccessDenied'
E_AUTH_FAILED = 'org.example.ImageAccess.Error.AuthenticationFailed'
E_ARGS = 'org.freedesktop.DBus.Error.InvalidArgs'

ACTION = 'org.example.imageaccess.'
MANAGER_ACTIONS = ['register-guest', 'unregister-guest', 'bind-process', 'grant-image',
                   'revoke-image', 'list']
# the action that gates each method (ListGuests and ListGrants share "list")
METHOD_ACTION = {
    'RegisterGuest': 'register-guest', 'UnregisterGuest': 'unregister-guest',
    'BindProcess': 'bind-process', 'GrantImage': 'grant-image', 'RevokeImage': 'revoke-image',
    'ListGuests': 'list', 'ListGrants': 'list',
}

UUID1 = '0f6a3c1e-1b2c-4d5e-8f90-123456789abc'
UUID2 = 'A1B2C3D4-E5F6-4A7B-8C9D-0E1F2A3B4C5D'


def s(v):
    return {'$v': ['s', v]}


def u(v):
    return {'$v': ['u', v]}


# ---- the methods, in JSON form for the agents ------------------------------------------------

def register(a, name, options=None, **kw):
    return a.manager('RegisterGuest', 'sa{sv}', [name, options or {}], **kw)


def unregister(a, name, **kw):
    return a.manager('UnregisterGuest', 's', [name], **kw)


def bind(a, guest, pid='self', options=None, **kw):
    return a.manager('BindProcess', 'sha{sv}', [guest, {'pidfd_of': pid}, options or {}], **kw)


def grant(a, guest, path, mode='read-only', options=None, **kw):
    return a.manager('GrantImage', 'sssa{sv}', [guest, path, mode, options or {}], **kw)


def revoke(a, guest, path, options=None, **kw):
    return a.manager('RevokeImage', 'ssa{sv}', [guest, path, options or {}], **kw)


def list_guests(a, **kw):
    return a.manager('ListGuests', **kw)


PIN_KEYS = ('pinned', 'device', 'inode')     # which inode a grant is for: test_pinning.py


def list_grants(a, guest, **kw):
    """ListGrants with the pin properties left out: they name inodes, which differ per run."""
    r = a.manager('ListGrants', 's', [guest], **kw)
    if r.ok:
        for grant in r.values[0]:
            for k in PIN_KEYS:
                grant[2].pop(k, None)
    return r


def rule_allow(user, actions):
    """A rules file that says yes to `user` for exactly the given manager actions."""
    ids = ', '.join('"%s%s"' % (ACTION, a) for a in actions)
    return '''polkit.addRule(function (action, subject) {
    var allowed = [%s];
    if (subject.user === "%s" && allowed.indexOf(action.id) >= 0)
        return polkit.Result.YES;
    return null;
});
''' % (ids, user)


class ManagerTestCase(testbed.IaTestCase):
    """Helpers shared by the tests of this file.

    self.srv is a directory of existing image files (a.img … e.img, 1.img, 2.img, a/z.img)
    for tests about the tables rather than files: whether a grant may name a file that
    does not exist is not their business."""

    SRV_FILES = ['a.img', 'b.img', 'c.img', 'd.img', 'e.img', '1.img', '2.img', 'a/z.img']

    def setUp(self):
        super().setUp()
        for name in self.SRV_FILES:
            self.bed.make_image('srv/' + name, name.encode())
        self.srv = os.path.join(self.bed.images_dir, 'srv')

    def ok(self, reply, msg=None):
        return self.assertOk(reply, msg)

    def tables(self):
        """Everything the Manager interface can show, read as root: guests and, for each,
        its grants.  Equal before and after a refused call means it changed nothing."""
        guests = self.ok(list_guests(self.bed.local))[0]
        grants = {name: self.ok(list_grants(self.bed.local, name))[0] for name, _ in guests}
        return guests, grants

    def guest_props(self, name):
        for n, props in self.ok(list_guests(self.bed.local))[0]:
            if n == name:
                return props
        return None

    def assertRefusedUnchanged(self, reply, error, msg=None):
        """reply is `error` and the tables are what they were at the last snapshot()."""
        self.assertError(reply, error, msg)
        self.assertEqual(self.tables(), self._snapshot,
                         '%sa refused call changed the tables' % (msg + ': ' if msg else ''))

    def snapshot(self):
        self._snapshot = self.tables()
        return self._snapshot

    def daemon_rss_kb(self):
        with open('/proc/%d/status' % self.bed.daemon_pid) as f:
            for line in f:
                if line.startswith('VmRSS:'):
                    return int(line.split()[1])
        raise AssertionError('no VmRSS in /proc/%d/status' % self.bed.daemon_pid)


# ---- (a) root: no polkit ---------------------------------------------------------------------

class RootTests(ManagerTestCase):

    def test_root_needs_no_polkit(self):
        """uid 0 is authorized by the service itself: every method works with polkitd gone,
        while the same calls from another user fail closed (AuthorizationUnavailable)."""
        mgr = self.bed.agent('ia-mgr')
        emu = self.bed.agent('ia-emu1')
        self.bed.kill_polkitd()
        root = self.bed.agent('root')
        img = self.bed.make_image('disk.img', b'disk')

        self.ok(register(root, 'vm1', {'uuid': s(UUID1), 'description': s('first'),
                                       'uid': u(61002)}))
        self.ok(register(root, 'vm2'))
        self.ok(bind(root, 'vm2', emu.pid))
        self.ok(grant(root, 'vm1', img, 'read-write'))
        self.assertEqual(self.ok(list_grants(root, 'vm1')),
                         [[[img, 'read-write', {'created': False}]]])
        self.assertEqual(self.ok(list_guests(root)), [[
            ['vm1', {'uuid': UUID1, 'description': 'first', 'uid': 61002, 'grants': 1,
                     'processes': 0}],
            ['vm2', {'uuid': '', 'description': '', 'grants': 0, 'processes': 1}]]])
        self.ok(revoke(root, 'vm1', img))
        self.assertEqual(self.ok(list_grants(root, 'vm1')), [[]])
        self.ok(unregister(root, 'vm2'))
        self.assertEqual([g[0] for g in self.ok(list_guests(root))[0]], ['vm1'])

        # the deny: a non-root caller is never let through when polkit cannot answer
        self.ok(grant(root, 'vm1', img, 'read-only'))
        self.snapshot()
        unavailable = ERR + 'AuthorizationUnavailable'
        for what, reply in (
                ('register', register(mgr, 'vm3')),
                ('unregister', unregister(mgr, 'vm1')),
                ('bind', bind(mgr, 'vm1')),
                ('grant', grant(mgr, 'vm1', img, 'create')),
                ('revoke', revoke(mgr, 'vm1', img)),
                ('list guests', list_guests(mgr)),
                ('list grants', list_grants(mgr, 'vm1')),
                ('interactive', register(mgr, 'vm3', interactive=True))):
            self.assertRefusedUnchanged(reply, unavailable, what)

        # and once polkitd is back, its answer (the default, auth_admin) applies again
        self.bed.start_polkitd()
        self.assertRefusedUnchanged(register(mgr, 'vm3'), E_INTERACTIVE)
        self.ok(register(root, 'vm3'))


# ---- (b), (c): the defaults, and one rule per action ---------------------------------------

class AuthorizationTests(ManagerTestCase):

    def setUp(self):
        super().setUp()
        root = self.bed.local
        self.img = self.bed.make_image('vm1/disk.img', b'disk')
        self.img2 = self.bed.make_image('vm1/other.img', b'other')
        self.ok(register(root, 'vm1', {'uuid': s(UUID1)}))
        self.ok(register(root, 'victim'))
        self.ok(grant(root, 'vm1', self.img, 'read-only'))
        self.ok(grant(root, 'vm1', self.img2, 'read-only'))

    def calls(self, a, seq, **kw):
        """One call of each method, each of which succeeds when authorized (the state is
        set up again by root as needed)."""
        root = self.bed.local
        if self.guest_props('victim') is None:
            self.ok(register(root, 'victim'))
        self.ok(grant(root, 'vm1', self.img2, 'read-only'))
        return [
            ('RegisterGuest', lambda: register(a, 'new-%d' % seq, **kw)),
            ('UnregisterGuest', lambda: unregister(a, 'victim', **kw)),
            ('BindProcess', lambda: bind(a, 'vm1', **kw)),
            ('GrantImage', lambda: grant(a, 'vm1', self.img,
                                         'read-write' if seq % 2 else 'create', **kw)),
            ('RevokeImage', lambda: revoke(a, 'vm1', self.img2, **kw)),
            ('ListGuests', lambda: list_guests(a, **kw)),
            ('ListGrants', lambda: list_grants(a, 'vm1', **kw)),
        ]

    def test_unprivileged_denied_by_default(self):
        """No rules: every manager action is auth_admin.  Without the interactive flag that
        is InteractiveAuthorizationRequired; with it (and no agent to ask) AuthenticationFailed.
        Nothing changes either way, for every test user."""
        for who in ('ia-mgr', 'ia-emu1', 'ia-op', 'ia-desk'):
            a = self.bed.agent(who)
            for interactive, error in ((False, E_INTERACTIVE), (True, E_AUTH_FAILED)):
                for method, call in self.calls(a, 0, interactive=interactive):
                    self.snapshot()
                    r = call()
                    self.assertRefusedUnchanged(r, error, '%s %s interactive=%s'
                                                % (who, method, interactive))
                    self.assertIn(ACTION + METHOD_ACTION[method], r.message)

    def test_rule_allows_exactly_its_action(self):
        """A rule that allows one action allows that action's methods and nothing else, and
        only for the user it names; a rule allowing every other action does not allow it.
        The six action ids are distinct."""
        mgr, emu = self.bed.agent('ia-mgr'), self.bed.agent('ia-emu1')
        seq = 0
        for action in MANAGER_ACTIONS:
            for only in (True, False):
                allowed = [action] if only else [a for a in MANAGER_ACTIONS if a != action]
                self.bed.set_rules('50-test.rules', rule_allow('ia-mgr', allowed))
                seq += 1
                for method, call in self.calls(mgr, seq):
                    what = '%s with a rule allowing %s' % (method, allowed)
                    self.snapshot()
                    r = call()
                    if METHOD_ACTION[method] in allowed:
                        self.assertOk(r, what)
                    else:
                        self.assertRefusedUnchanged(r, E_INTERACTIVE, what)
                # the rule names ia-mgr: ia-emu1 gets the defaults
                for method, call in self.calls(emu, seq):
                    self.snapshot()
                    self.assertRefusedUnchanged(call(), E_INTERACTIVE, 'ia-emu1 ' + method)
        self.bed.remove_rules('50-test.rules')
        self.snapshot()
        self.assertRefusedUnchanged(register(mgr, 'after-removal'), E_INTERACTIVE)

    def test_denial_does_not_tell_whether_a_guest_exists(self):
        """Authorization comes before the lookup: a caller who may not act on guests gets
        the same answer for a guest that exists and one that does not."""
        mgr = self.bed.agent('ia-mgr')
        self.snapshot()
        for guest in ('vm1', 'no-such-guest'):
            for what, r in (('unregister', unregister(mgr, guest)),
                            ('bind', bind(mgr, guest)),
                            ('grant', grant(mgr, guest, self.img)),
                            ('revoke', revoke(mgr, guest, self.img)),
                            ('list grants', list_grants(mgr, guest))):
                self.assertRefusedUnchanged(r, E_INTERACTIVE, '%s %s' % (what, guest))

    def test_allowed_calls_do_what_root_calls_do(self):
        """With a rule allowing every action, an unprivileged manager's calls take effect
        and it gets their replies (results and errors)."""
        self.bed.set_rules('50-test.rules', rule_allow('ia-mgr', MANAGER_ACTIONS))
        mgr = self.bed.agent('ia-mgr')
        emu = self.bed.agent('ia-emu1')
        self.ok(register(mgr, 'vm2', {'uid': u(61003), 'description': s('by ia-mgr')}))
        self.ok(bind(mgr, 'vm2', emu.pid))
        self.ok(grant(mgr, 'vm2', self.img, 'read-write'))
        self.assertEqual(self.ok(list_grants(mgr, 'vm2')),
                         [[[self.img, 'read-write', {'created': False}]]])
        self.assertEqual(self.guest_props('vm2'),
                         {'uuid': '', 'description': 'by ia-mgr', 'uid': 61003, 'grants': 1,
                          'processes': 1})
        self.assertError(grant(mgr, 'nope', self.img), ERR + 'UnknownGuest')
        self.ok(revoke(mgr, 'vm2', self.img))
        self.assertError(revoke(mgr, 'vm2', self.img), ERR + 'NotGranted')
        self.ok(unregister(mgr, 'vm2'))
        self.assertIsNone(self.guest_props('vm2'))


# ---- (d) the details rules see ---------------------------------------------------------------

RULE_LOG_DETAILS = r'''polkit.addRule(function (action, subject) {
    if (action.id.indexOf("org.example.imageaccess.") !== 0)
        return null;
    var details = {};
    for (var k in action)
        if (k.indexOf("_detail_") === 0)
            details[k.substr(8)] = action[k];
    polkit.log("IA-DETAILS " + action.id + " " + JSON.stringify(details));
    return null;
});
'''

RULE_GRANT_DETAILS = '''polkit.addRule(function (action, subject) {
    var DIR = "%s";
    var image = action.lookup("image");

    if (action.id !== "org.example.imageaccess.grant-image" || subject.user !== "ia-mgr")
        return null;
    if (action.lookup("guest") === "vm1" && action.lookup("mode") === "read-only" &&
        typeof image === "string" && image.substr(0, DIR.length) === DIR)
        return polkit.Result.YES;
    return polkit.Result.NO;
});
'''

RULE_REGISTER_UID = '''polkit.addRule(function (action, subject) {
    if (action.id === "org.example.imageaccess.register-guest" && subject.user === "ia-mgr" &&
        action.lookup("guest-uid") === "61002")
        return polkit.Result.YES;
    return null;
});
'''


class DetailsTests(ManagerTestCase):

    def test_grant_rule_on_guest_mode_and_image(self):
        """A rule deciding grant-image on the guest, mode and image details: only the exact
        combination is allowed; a sibling directory sharing the prefix string is not."""
        root, mgr = self.bed.local, self.bed.agent('ia-mgr')
        allowed_dir = os.path.join(self.bed.images_dir, 'allowed') + '/'
        self.bed.set_rules('50-details.rules', RULE_GRANT_DETAILS % allowed_dir)
        self.ok(register(root, 'vm1'))
        self.ok(register(root, 'vm2'))
        good = self.bed.make_image('allowed/a.img', b'a')
        deep = self.bed.make_image('allowed/sub/b.img', b'b')
        self.snapshot()
        for guest, path, mode in (
                ('vm2', good, 'read-only'),
                ('vm1', good, 'read-write'),
                ('vm1', good, 'create'),
                ('vm1', allowed_dir.rstrip('/') + '-evil/a.img', 'read-only'),
                ('vm1', allowed_dir.rstrip('/'), 'read-only'),
                ('vm1', '/etc/shadow', 'read-only')):
            self.assertRefusedUnchanged(grant(mgr, guest, path, mode), E_DENIED,
                                        '%s %s %s' % (guest, path, mode))
        self.ok(grant(mgr, 'vm1', good, 'read-only'))
        self.ok(grant(mgr, 'vm1', deep, 'read-only'))
        self.assertEqual(self.ok(list_grants(root, 'vm1'))[0],
                         [[good, 'read-only', {'created': False}],
                          [deep, 'read-only', {'created': False}]])
        # upgrading an existing grant is a new question with mode=read-write: denied
        self.snapshot()
        self.assertRefusedUnchanged(grant(mgr, 'vm1', good, 'read-write'), E_DENIED)
        self.assertEqual(self.ok(list_grants(root, 'vm2')), [[]])

    def test_register_rule_sees_guest_uid(self):
        """register-guest carries guest-uid (decimal) when the uid option is given, and no
        such detail without it."""
        mgr = self.bed.agent('ia-mgr')
        self.bed.set_rules('50-uid.rules', RULE_REGISTER_UID)
        self.snapshot()
        self.assertRefusedUnchanged(register(mgr, 'vm1', {'uid': u(61003)}), E_INTERACTIVE)
        self.assertRefusedUnchanged(register(mgr, 'vm1'), E_INTERACTIVE)
        self.assertRefusedUnchanged(register(mgr, 'vm1', {'uid': u(0)}), E_INTERACTIVE)
        self.ok(register(mgr, 'vm1', {'uid': u(61002)}))
        self.assertEqual(self.guest_props('vm1')['uid'], 61002)

    def test_exact_details_of_every_action(self):
        """What each check carries, as a rule enumerates it: exactly the details the .policy
        header documents, nothing more (guest-uid only with the uid option; guest-uuid ""
        for a guest without one; ListGuests none)."""
        self.bed.set_rules('10-log-details.rules', RULE_LOG_DETAILS)
        self.bed.set_rules('50-allow.rules', rule_allow('ia-mgr', MANAGER_ACTIONS))
        mgr, emu = self.bed.agent('ia-mgr'), self.bed.agent('ia-emu1')
        img = self.bed.make_image('d.img', b'd')
        self.ok(register(mgr, 'vm1', {'uuid': s(UUID1), 'uid': u(61002)}))
        # one emulator uid for both guests: sharing asked for
        self.ok(register(mgr, 'vm2', {'uid': u(61002), 'share-uid': {'$v': ['b', True]}}))
        self.ok(bind(mgr, 'vm1'))
        self.ok(grant(mgr, 'vm1', img, 'read-write'))
        self.ok(self.bed.local.manager('GrantImage', 'sssa{sv}', ['vm2', img, 'read-only', {}]))
        self.ok(list_guests(mgr))
        self.ok(list_grants(mgr, 'vm1'))
        self.ok(emu.open_image('vm1', img, 'read-write'))
        self.ok(emu.open_image('vm2', img, 'read-only'))
        self.ok(revoke(mgr, 'vm1', img))
        self.ok(unregister(mgr, 'vm1'))
        expected = [
            ('register-guest', {'guest': 'vm1', 'guest-uid': '61002'}),
            ('register-guest', {'guest': 'vm2', 'guest-uid': '61002'}),
            ('bind-process', {'guest': 'vm1'}),
            ('grant-image', {'guest': 'vm1', 'image': img, 'mode': 'read-write'}),
            ('list', {}),
            ('list', {'guest': 'vm1'}),
            ('open-image', {'guest': 'vm1', 'image': img, 'mode': 'read-write',
                            'guest-uuid': UUID1}),
            ('open-image', {'guest': 'vm2', 'image': img, 'mode': 'read-only',
                            'guest-uuid': ''}),
            ('revoke-image', {'guest': 'vm1', 'image': img}),
            ('unregister-guest', {'guest': 'vm1'}),
        ]
        import json
        seen = []
        for line in self.bed.log_text('polkitd').splitlines():
            if 'IA-DETAILS ' in line:
                action, details = line.split('IA-DETAILS ', 1)[1].split(' ', 1)
                seen.append((action[len(ACTION):], json.loads(details)))
        self.assertEqual(seen, expected)


# ---- (e) semantics ---------------------------------------------------------------------------

class SemanticsTests(ManagerTestCase):

    def test_register_and_unregister(self):
        root = self.bed.local
        self.ok(register(root, 'vm1', {'uuid': s(UUID1)}))
        self.snapshot()
        self.assertRefusedUnchanged(register(root, 'vm1'), ERR + 'GuestExists')
        self.assertRefusedUnchanged(register(root, 'vm1', {'uuid': s(UUID2)}),
                                    ERR + 'GuestExists')
        self.assertEqual(self.guest_props('vm1')['uuid'], UUID1, 'the first one is kept')
        self.assertRefusedUnchanged(unregister(root, 'vm2'), ERR + 'UnknownGuest')
        self.assertRefusedUnchanged(grant(root, 'vm2', self.srv + '/a.img'), ERR + 'UnknownGuest')
        self.assertRefusedUnchanged(revoke(root, 'vm2', self.srv + '/a.img'), ERR + 'UnknownGuest')
        self.assertRefusedUnchanged(bind(root, 'vm2'), ERR + 'UnknownGuest')
        self.assertRefusedUnchanged(list_grants(root, 'vm2'), ERR + 'UnknownGuest')
        # names are case-sensitive
        self.ok(register(root, 'VM1'))
        self.ok(grant(root, 'vm1', self.srv + '/a.img'))
        self.ok(unregister(root, 'vm1'))
        self.assertEqual([g[0] for g in self.ok(list_guests(root))[0]], ['VM1'])
        self.assertError(unregister(root, 'vm1'), ERR + 'UnknownGuest')
        # a guest registered again starts empty: its old grants went with it
        self.ok(register(root, 'vm1'))
        self.assertEqual(self.ok(list_grants(root, 'vm1')), [[]])
        self.assertEqual(self.guest_props('vm1'),
                         {'uuid': '', 'description': '', 'grants': 0, 'processes': 0})

    def test_one_uid_one_guest(self):
        """A uid bound to a guest is refused for another one unless 'share-uid' asks for
        it: every process of the uid would be both guests' emulator."""
        root = self.bed.local
        uid = self.bed.users['ia-emu1'].uid
        self.ok(register(root, 'vm1', {'uid': u(uid)}))
        self.snapshot()
        r = register(root, 'vm2', {'uid': u(uid)})
        self.assertRefusedUnchanged(r, ERR + 'UidInUse')
        self.assertIn("uid %d: it is bound to guest 'vm1'" % uid, r.message)
        self.assertRefusedUnchanged(register(root, 'vm2', {'uid': u(uid),
                                                           'share-uid': {'$v': ['b', False]}}),
                                    ERR + 'UidInUse')
        self.assertRegex(self.bed.log_text('daemon'),
                         r"audit: register denied guest='vm2' uid=0 .*reason='Cannot bind")
        # another uid, no uid, or sharing asked for: fine
        self.ok(register(root, 'vm3', {'uid': u(self.bed.users['ia-emu2'].uid)}))
        self.ok(register(root, 'vm4'))
        self.ok(register(root, 'vm2', {'uid': u(uid), 'share-uid': {'$v': ['b', True]}}))
        self.assertEqual(self.guest_props('vm2')['uid'], uid)
        # the uid is free again once its guests are gone
        self.ok(unregister(root, 'vm1'))
        self.ok(unregister(root, 'vm2'))
        self.ok(register(root, 'vm5', {'uid': u(uid)}))

    def test_registered_again_inherits_nothing(self):
        """A guest unregistered and registered again under the same name starts with no
        grants and no bound processes, also after a restart of the daemon."""
        root = self.bed.local
        emu = self.bed.agent('ia-emu1')
        img = self.bed.make_image('vm1.img', b'x')
        self.ok(register(root, 'vm1', {'uuid': s(UUID1)}))
        self.ok(grant(root, 'vm1', img, 'read-write'))
        self.ok(bind(root, 'vm1', emu.pid))
        emu.reconnect()
        self.ok(emu.open_image('vm1', img, 'read-write'))
        self.ok(unregister(root, 'vm1'))
        self.assertError(emu.open_image('vm1', img, 'read-only'), ERR + 'NotBound')
        self.ok(register(root, 'vm1'))
        for restart in (False, True):
            if restart:
                self.bed.restart_daemon()
            self.assertEqual(self.guest_props('vm1'),
                             {'uuid': '', 'description': '', 'grants': 0, 'processes': 0})
            self.assertEqual(self.ok(list_grants(root, 'vm1')), [[]])
            self.assertError(emu.open_image('vm1', img, 'read-only'), ERR + 'NotBound')
            self.ok(grant(root, 'vm1', img, 'read-only'))
            self.assertError(emu.open_image('vm1', img, 'read-only'), ERR + 'NotBound')
            self.ok(revoke(root, 'vm1', img))

    def test_grants(self):
        root = self.bed.local
        self.ok(register(root, 'vm1'))
        self.ok(register(root, 'vm2'))
        self.ok(grant(root, 'vm1', self.srv + '/b.img', 'read-only'))
        self.ok(grant(root, 'vm1', self.srv + '/a.img', 'create'))
        self.ok(grant(root, 'vm1', self.srv + '/a/z.img', 'read-write'))
        self.ok(grant(root, 'vm2', self.srv + '/b.img', 'read-write'))
        self.assertEqual(self.ok(list_grants(root, 'vm1'))[0], [
            [self.srv + '/a.img', 'create', {'created': False}],
            [self.srv + '/a/z.img', 'read-write', {'created': False}],
            [self.srv + '/b.img', 'read-only', {'created': False}]])
        # granting again changes the mode, in both directions; the count stays
        self.ok(grant(root, 'vm1', self.srv + '/b.img', 'create'))
        self.ok(grant(root, 'vm1', self.srv + '/a.img', 'read-only'))
        self.ok(grant(root, 'vm1', self.srv + '/a.img', 'read-only'))  # no change: still fine
        self.assertEqual(self.ok(list_grants(root, 'vm1'))[0], [
            [self.srv + '/a.img', 'read-only', {'created': False}],
            [self.srv + '/a/z.img', 'read-write', {'created': False}],
            [self.srv + '/b.img', 'create', {'created': False}]])
        self.assertEqual(self.guest_props('vm1')['grants'], 3)
        # grants are per guest
        self.assertEqual(self.ok(list_grants(root, 'vm2'))[0],
                         [[self.srv + '/b.img', 'read-write', {'created': False}]])
        self.snapshot()
        self.assertRefusedUnchanged(revoke(root, 'vm2', self.srv + '/a.img'), ERR + 'NotGranted')
        self.assertRefusedUnchanged(revoke(root, 'vm1', self.srv + '/a'), ERR + 'NotGranted')
        self.assertRefusedUnchanged(revoke(root, 'vm1', self.srv + '/a.img',
                                           {'remove-created': {'$v': ['b', True]}}),
                                    ERR + 'NotCreatedByService')
        self.ok(revoke(root, 'vm1', self.srv + '/a.img'))
        self.assertError(revoke(root, 'vm1', self.srv + '/a.img'), ERR + 'NotGranted')
        self.assertEqual([g[0] for g in self.ok(list_grants(root, 'vm1'))[0]],
                         [self.srv + '/a/z.img', self.srv + '/b.img'])
        self.assertEqual(self.guest_props('vm1')['grants'], 2)
        self.assertEqual(self.guest_props('vm2')['grants'], 1)

    def test_list_guests(self):
        """Sorted by name (bytewise), with uuid, description, grants and processes always and
        uid only when the guest is bound to one."""
        root = self.bed.local
        emu1, emu2 = self.bed.agent('ia-emu1'), self.bed.agent('ia-emu2')
        self.assertEqual(self.ok(list_guests(root)), [[]])
        desc = 'Ünïcode text, 1024 bytes at most: ' + 'x' * 900
        for name, opts in (('vm-b', {'uuid': s(UUID2), 'description': s(desc)}),
                           ('Vm-c', {'uid': u(61003)}),
                           ('vm-a', {'uid': u(0)}),
                           ('1st', {})):
            self.ok(register(root, name, opts))
        self.ok(grant(root, 'vm-b', self.srv + '/1.img'))
        self.ok(grant(root, 'vm-b', self.srv + '/2.img'))
        self.ok(bind(root, 'vm-b', emu1.pid))
        self.ok(bind(root, 'vm-b', emu2.pid))
        self.ok(bind(root, 'vm-a', emu2.pid))
        self.assertEqual(self.ok(list_guests(root))[0], [
            ['1st', {'uuid': '', 'description': '', 'grants': 0, 'processes': 0}],
            ['Vm-c', {'uuid': '', 'description': '', 'uid': 61003, 'grants': 0,
                      'processes': 0}],
            ['vm-a', {'uuid': '', 'description': '', 'uid': 0, 'grants': 0, 'processes': 1}],
            ['vm-b', {'uuid': UUID2, 'description': desc, 'grants': 2, 'processes': 2}]])

    def test_processes_counts_running_processes_only(self):
        """'processes' is the number of bound processes still running: an emulator that
        exits stops counting at once, without any other call in between."""
        root = self.bed.local
        emu1, emu2 = self.bed.agent('ia-emu1'), self.bed.agent('ia-emu2')
        self.ok(register(root, 'vm1'))
        self.ok(bind(root, 'vm1', emu1.pid))
        self.ok(bind(root, 'vm1', emu2.pid))
        self.assertEqual(self.guest_props('vm1')['processes'], 2)
        emu1.kill()
        self.assertEqual(self.guest_props('vm1')['processes'], 1)
        emu2.kill()
        self.assertEqual(self.guest_props('vm1')['processes'], 0)

    def test_bind_refuses_what_is_not_a_live_pidfd(self):
        root = self.bed.local
        emu = self.bed.agent('ia-emu1')
        self.ok(register(root, 'vm1'))
        img = self.bed.make_image('not-a-pidfd', b'x', mode=0o644)
        opened = emu.open(img)
        self.snapshot()
        r = emu.manager('BindProcess', 'sha{sv}', ['vm1', {'fd': opened['fd']}, {}])
        self.assertRefusedUnchanged(r, E_INTERACTIVE, 'unprivileged: authorization first')
        r = root.manager('BindProcess', 'sha{sv}', ['vm1', {'open': img, 'flags': 'O_RDONLY'},
                                                     {}])
        self.assertRefusedUnchanged(r, ERR + 'InvalidProcess')
        # a pidfd of a process that has exited
        gone = self.bed.agent('ia-emu2')
        held = root.pidfd(gone.pid)
        gone.kill()
        r = root.manager('BindProcess', 'sha{sv}', ['vm1', {'fd': held['fd']}, {}])
        self.assertRefusedUnchanged(r, ERR + 'InvalidProcess')

    def test_state_survives_restart(self):
        root = self.bed.local
        self.ok(register(root, 'vm1', {'uuid': s(UUID1), 'description': s('d'),
                                       'uid': u(61002)}))
        self.ok(register(root, 'vm2'))
        self.ok(grant(root, 'vm1', self.srv + '/a.img', 'create'))
        self.ok(grant(root, 'vm1', self.srv + '/a.img', 'read-write'))
        self.ok(grant(root, 'vm2', self.srv + '/b.img'))
        self.ok(revoke(root, 'vm2', self.srv + '/b.img'))
        before = self.tables()
        self.bed.restart_daemon()
        self.assertEqual(self.tables(), before)
        self.bed.restart_daemon(signal.SIGKILL)
        self.assertEqual(self.tables(), before)


# ---- (f) bad input ---------------------------------------------------------------------------

BAD_NAMES = ['', 'a' * 129, '-vm', '.vm', 'vm/1', '/vm', 'vm 1', 'vm\n', 'vm\'1', 'vm*',
             'vmé', 'vm\x01']
BAD_PATHS = ['', 'relative.img', '/', '/srv/../etc/shadow', '/srv/./a.img', '/srv//a.img',
             '/srv/a.img/', '/srv/a\nb.img', '/srv/a\x7f.img', '/' + 'a' * 256,
             '/srv/' + 'a/' * 2046 + 'a']
BAD_MODES = ['', 'rw', 'READ-ONLY', 'read-only ', 'readonly', 'write']


class BadInputTests(ManagerTestCase):

    def setUp(self):
        super().setUp()
        root = self.bed.local
        self.ok(register(root, 'vm1', {'uuid': s(UUID1), 'description': s('one'),
                                       'uid': u(61002)}))
        self.ok(register(root, 'vm2'))
        self.ok(grant(root, 'vm1', self.srv + '/a.img', 'read-write'))
        self.snapshot()

    def test_valid_name_limits(self):
        """The edges of the name rules are accepted (the denials below are not too wide)."""
        root = self.bed.local
        for name in ('a' * 128, 'a', '0', '_x', 'A.b:c+d-e_f', 'x.', 'x-'):
            self.ok(register(root, name), repr(name))
            self.ok(list_grants(root, name))
            self.ok(unregister(root, name))
        self.assertEqual(self.tables(), self._snapshot)

    def test_invalid_names(self):
        root = self.bed.local
        for name in BAD_NAMES:
            for what, call in (
                    ('register', lambda: register(root, name)),
                    ('unregister', lambda: unregister(root, name)),
                    ('bind', lambda: bind(root, name)),
                    ('grant', lambda: grant(root, name, self.srv + '/a.img')),
                    ('revoke', lambda: revoke(root, name, self.srv + '/a.img')),
                    ('list grants', lambda: list_grants(root, name))):
                self.assertRefusedUnchanged(call(), ERR + 'InvalidName', '%s %r' % (what, name))

    def test_invalid_paths_and_modes(self):
        root = self.bed.local
        for path in BAD_PATHS:
            for what, call in (('grant', lambda: grant(root, 'vm1', path)),
                               ('revoke', lambda: revoke(root, 'vm1', path))):
                self.assertRefusedUnchanged(call(), ERR + 'InvalidPath',
                                            '%s %r' % (what, path[:40]))
        for mode in BAD_MODES:
            self.assertRefusedUnchanged(grant(root, 'vm1', self.srv + '/b.img', mode),
                                        ERR + 'InvalidMode', repr(mode))
            # changing the mode of an existing grant validates it too
            self.assertRefusedUnchanged(grant(root, 'vm1', self.srv + '/a.img', mode),
                                        ERR + 'InvalidMode', repr(mode))

    def test_invalid_options(self):
        root = self.bed.local
        bad_register = [
            {'uuid': s('not-a-uuid')},
            {'uuid': s(UUID1[:-1])},
            {'uuid': s(UUID1 + '0')},
            {'uuid': s('{%s}' % UUID1[1:-1])},
            {'uuid': s(UUID1.replace('-', 'g', 1))},
            {'uuid': s(UUID1.replace('0', 'g'))},
            {'uuid': s('')},
            {'description': s('line\nbreak')},
            {'description': s('tab\there')},
            {'description': s('nul-less \x01 control')},
            {'description': s('del \x7f')},
            {'description': s('c1 \u0085 control')},
            {'description': s('x' * 1025)},
            {'description': s('€' * 342)},          # 342 characters, 1026 bytes
            {'uid': u(4294967295)},
            {'name': s('vm3')},
            {'UUID': s(UUID1)},
            {'uuid': u(1)},
            {'uuid': {'$v': ['as', [UUID1]]}},
            {'description': {'$v': ['ay', 'text']}},
            {'uid': s('61002')},
            {'uid': {'$v': ['i', 61002]}},
            {'uid': {'$v': ['t', 61002]}},
            {'uid': {'$v': ['v', {'$v': ['u', 61002]}]}},
        ]
        for opts in bad_register:
            self.assertRefusedUnchanged(register(root, 'vm3', opts), ERR + 'InvalidOption',
                                        repr(opts)[:80])
            self.assertRefusedUnchanged(register(root, 'vm1', opts), ERR + 'InvalidOption',
                                        'checked before GuestExists: ' + repr(opts)[:60])
        # the edges that are fine
        self.ok(register(root, 'vm3', {'description': s('x' * 1024), 'uuid': s(UUID2),
                                       'uid': u(4294967294)}))
        self.ok(register(root, 'vm4', {'description': s('€' * 341)}))  # 1023 bytes
        self.ok(unregister(root, 'vm3'))
        self.ok(unregister(root, 'vm4'))
        # methods that take no options
        for opts in ({'x': s('y')}, {'uuid': s(UUID1)}):
            self.assertRefusedUnchanged(bind(root, 'vm1', options=opts), ERR + 'InvalidOption')
            self.assertRefusedUnchanged(grant(root, 'vm1', self.srv + '/b.img', options=opts),
                                        ERR + 'InvalidOption')
        # RevokeImage knows one option, a boolean
        for opts in ({'remove-created': s('yes')}, {'remove-created': u(1)},
                     {'remove_created': {'$v': ['b', True]}}, {'force': {'$v': ['b', True]}}):
            self.assertRefusedUnchanged(revoke(root, 'vm1', self.srv + '/a.img', opts),
                                        ERR + 'InvalidOption', repr(opts))

    def test_wrong_signatures(self):
        root = self.bed.local
        for method, sig, args in (
                ('RegisterGuest', 's', ['vm3']),
                ('RegisterGuest', '', []),
                ('RegisterGuest', 'sa{ss}', ['vm3', {'uuid': UUID1}]),
                ('RegisterGuest', 'sa{sv}s', ['vm3', {}, 'x']),
                ('RegisterGuest', 'ua{sv}', [1, {}]),
                ('UnregisterGuest', '', []),
                ('UnregisterGuest', 'ss', ['vm1', 'vm2']),
                ('UnregisterGuest', 'u', [1]),
                ('BindProcess', 'sa{sv}', ['vm1', {}]),
                ('BindProcess', 'sua{sv}', ['vm1', os.getpid(), {}]),
                ('BindProcess', 'sh', ['vm1', {'pidfd_of': 'self'}]),
                ('GrantImage', 'sss', ['vm1', self.srv + '/b.img', 'read-only']),
                ('GrantImage', 'ssa{sv}', ['vm1', self.srv + '/b.img', {}]),
                ('GrantImage', 'ssssa{sv}', ['vm1', self.srv + '/b.img', 'read-only', 'x', {}]),
                ('RevokeImage', 'ss', ['vm1', self.srv + '/a.img']),
                ('RevokeImage', 'sssa{sv}', ['vm1', self.srv + '/a.img', 'x', {}]),
                ('ListGuests', 's', ['vm1']),
                ('ListGrants', '', []),
                ('ListGrants', 'ss', ['vm1', 'vm2'])):
            r = root.manager(method, sig, args)
            self.assertRefusedUnchanged(r, E_ARGS, '%s(%s)' % (method, sig))
        # and an unknown method is not InvalidArgs but UnknownMethod
        self.assertError(root.manager('DeleteEverything'),
                         'org.freedesktop.DBus.Error.UnknownMethod')
        self.assertEqual(self.tables(), self._snapshot)

    def test_huge_strings(self):
        """1 MB arguments are refused by name, without echoing them whole, and 200 of them
        do not make the daemon grow (nothing is kept, nothing leaks)."""
        root = self.bed.local
        mb = 1 << 20
        huge_name = 'a' * mb
        huge_path = '/' + 'a/' * (mb // 2) + 'a'
        huge_desc = 'd' * mb
        calls = [
            (lambda: register(root, huge_name), 'InvalidName'),
            (lambda: grant(root, 'vm1', huge_path), 'InvalidPath'),
            (lambda: register(root, 'vm3', {'description': s(huge_desc)}), 'InvalidOption'),
            (lambda: grant(root, huge_name, self.srv + '/a.img'), 'InvalidName'),
        ]
        for call, err in calls:  # warm up: buffers of the first big messages
            for _ in range(5):
                msg = self.assertError(call(), ERR + err)
                self.assertLess(len(msg), 1024, 'the error does not echo the argument')
        before = self.daemon_rss_kb()
        for i in range(200):
            call, err = calls[i % len(calls)]
            self.assertError(call(), ERR + err)
        after = self.daemon_rss_kb()
        if not self.bed.daemon_sanitized():     # ASan's quarantine holds freed buffers
            self.assertLess(after - before, 4 * 1024,
                            'daemon RSS grew from %d kB to %d kB over 200 refused 1 MB calls'
                            % (before, after))
        self.assertEqual(self.tables(), self._snapshot)
        self.assertTrue(self.bed.daemon_running())


# ---- (g) limits ------------------------------------------------------------------------------

class LimitTests(ManagerTestCase):
    daemon_config = '[Limits]\nMaxGuests=3\nMaxGrantsPerGuest=2\nMaxBindingsPerGuest=2\n'

    def test_max_guests(self):
        root = self.bed.local
        for name in ('vm1', 'vm2', 'vm3'):
            self.ok(register(root, name))
        self.snapshot()
        r = register(root, 'vm4', {'uuid': s(UUID1)})
        self.assertRefusedUnchanged(r, ERR + 'LimitExceeded')
        self.assertIn('3', r.message)
        # GuestExists is still told apart at the limit
        self.assertRefusedUnchanged(register(root, 'vm1'), ERR + 'GuestExists')
        # the limit holds after a restart, and is about current guests, not ever registered
        self.bed.restart_daemon()
        self.assertEqual(self.tables(), self._snapshot)
        self.assertRefusedUnchanged(register(root, 'vm4'), ERR + 'LimitExceeded')
        self.ok(unregister(root, 'vm2'))
        self.ok(register(root, 'vm4'))
        self.assertEqual([g[0] for g in self.ok(list_guests(root))[0]], ['vm1', 'vm3', 'vm4'])

    def test_max_grants_per_guest(self):
        root = self.bed.local
        self.ok(register(root, 'vm1'))
        self.ok(register(root, 'vm2'))
        self.ok(grant(root, 'vm1', self.srv + '/a.img'))
        self.ok(grant(root, 'vm1', self.srv + '/b.img'))
        self.snapshot()
        self.assertRefusedUnchanged(grant(root, 'vm1', self.srv + '/c.img'), ERR + 'LimitExceeded')
        # changing the mode of a grant at the limit is no new grant
        self.ok(grant(root, 'vm1', self.srv + '/b.img', 'create'))
        # the limit is per guest
        self.ok(grant(root, 'vm2', self.srv + '/c.img'))
        self.ok(grant(root, 'vm2', self.srv + '/d.img'))
        self.snapshot()
        self.assertRefusedUnchanged(grant(root, 'vm2', self.srv + '/e.img'), ERR + 'LimitExceeded')
        self.bed.restart_daemon()
        self.assertEqual(self.tables(), self._snapshot)
        self.ok(revoke(root, 'vm1', self.srv + '/a.img'))
        self.ok(grant(root, 'vm1', self.srv + '/c.img'))
        self.assertEqual([g[0] for g in self.ok(list_grants(root, 'vm1'))[0]],
                         [self.srv + '/b.img', self.srv + '/c.img'])

    def test_max_bindings_per_guest(self):
        root = self.bed.local
        emus = [self.bed.agent(n) for n in ('ia-emu1', 'ia-emu2', 'ia-mgr')]
        self.ok(register(root, 'vm1'))
        self.ok(bind(root, 'vm1', emus[0].pid))
        self.ok(bind(root, 'vm1', emus[1].pid))
        self.ok(bind(root, 'vm1', emus[1].pid))  # the same process again: replaced
        self.snapshot()
        self.assertRefusedUnchanged(bind(root, 'vm1', emus[2].pid), ERR + 'LimitExceeded')
        # a bound process that exited makes room
        emus[0].kill()
        self.ok(bind(root, 'vm1', emus[2].pid))
        self.assertEqual(self.guest_props('vm1')['processes'], 2)


# ---- (h) signals -----------------------------------------------------------------------------

SIGNAL_RULE = "type='signal',sender='org.example.ImageAccess'"


class SignalTests(ManagerTestCase):

    def test_signals_reach_root_only(self):
        """GuestRegistered, GrantsChanged and GuestUnregistered reach a root subscriber and
        no unprivileged one, not even the unprivileged manager whose calls caused them, which
        still gets every method reply and error."""
        self.bed.set_rules('50-test.rules', rule_allow('ia-mgr', MANAGER_ACTIONS))
        root_sub = self.bed.agent('root')
        mgr, emu = self.bed.agent('ia-mgr'), self.bed.agent('ia-emu1')
        for a in (root_sub, mgr, emu):
            a.subscribe(SIGNAL_RULE)
            a.subscribe("type='signal',interface='org.example.ImageAccess.Manager'")
        for caller in (self.bed.local, mgr):
            self.ok(register(caller, 'vm1'))
            self.ok(grant(caller, 'vm1', self.srv + '/a.img'))
            self.ok(grant(caller, 'vm1', self.srv + '/a.img', 'read-write'))
            self.ok(grant(caller, 'vm1', self.srv + '/a.img', 'read-write'))  # unchanged: no signal
            self.ok(revoke(caller, 'vm1', self.srv + '/a.img'))
            self.assertError(revoke(caller, 'vm1', self.srv + '/a.img'), ERR + 'NotGranted')
            self.assertEqual(self.ok(list_guests(caller)),
                             [[['vm1', {'uuid': '', 'description': '', 'grants': 0,
                                        'processes': 0}]]])
            self.ok(unregister(caller, 'vm1'))
            expected = [('GuestRegistered', ['vm1']), ('GrantsChanged', ['vm1']),
                        ('GrantsChanged', ['vm1']), ('GrantsChanged', ['vm1']),
                        ('GuestUnregistered', ['vm1'])]
            got = root_sub.signals(count=len(expected), timeout=10)
            self.assertEqual([(g['member'], g['args']) for g in got], expected)
            for g in got:
                self.assertEqual((g['path'], g['interface']),
                                 (testbed.OBJECT_PATH, testbed.MANAGER_IFACE))
            # Anything the daemon sent before answering a Ping is routed before the answer.
            for a in (mgr, emu):
                self.ok(a.call('Ping', iface='org.freedesktop.DBus.Peer'))
                self.assertEqual([x for x in a.signals() if x['interface'] ==
                                  testbed.MANAGER_IFACE], [], a.name)
            self.assertEqual(root_sub.signals(), [])


if __name__ == '__main__':
    testbed.main()

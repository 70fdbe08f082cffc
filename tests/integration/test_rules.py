#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""
The example polkit rules of policy/rules-examples/, each proven against the real polkitd and
the built image-accessd: what the header comment of each file promises, allowed and denied.

  operators  members of ia-operators may do every Manager action; others may not
  desktop    a user manages the guests named "USER:*" with images below their own directory;
             by default only in a local active session, which this bed (no logind) never has
  readonly   listed guests open read-only only: read-write and create are denied by polkit
             although the grant table allows them; granting them more is denied too

Plus: every example compiles (polkitd logs nothing), all of them together too; a broken
(ES6) rules file is detected and fails closed for the Manager actions; and with no rules at
all a bound unprivileged emulator opens its granted image without any prompt (open-image
defaults to yes).

Adjustable variables named in a file's header are changed in a copy by exact text
substitution, which fails loudly if the example no longer contains the text.
"""

import glob
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testbed  # noqa: E402

ERR = 'org.example.ImageAccess.Error.'
E_INTERACTIVE = 'org.freedesktop.DBus.Error.InteractiveAuthorizationRequired'
E_DENIED = 'org.freedesktop.DBus.Error.AccessDenied'

EXAMPLES = testbed.RULES_EXAMPLES_DIR
OPERATORS = '50-image-access-operators.rules'
DESKTOP = '50-image-access-desktop.rules'
READONLY = '50-image-access-readonly.rules'
READONLY_INSTALLED = '40-image-access-readonly.rules'   # the name its header asks for

EMU1_UID = testbed.USERS['ia-emu1'].uid
DESK_UID = testbed.USERS['ia-desk'].uid


def example(name):
    with open(os.path.join(EXAMPLES, name)) as f:
        return f.read()


def substitute(text, old, new):
    if text.count(old) != 1:
        raise AssertionError('the example no longer contains %r exactly once; update the test'
                             % old)
    return text.replace(old, new)


def s(v):
    return {'$v': ['s', v]}


def u(v):
    return {'$v': ['u', v]}


def register(a, name, options=None, **kw):
    return a.manager('RegisterGuest', 'sa{sv}', [name, options or {}], **kw)


def unregister(a, name, **kw):
    return a.manager('UnregisterGuest', 's', [name], **kw)


def bind(a, guest, pid='self', **kw):
    return a.manager('BindProcess', 'sha{sv}', [guest, {'pidfd_of': pid}, {}], **kw)


def grant(a, guest, path, mode='read-only', **kw):
    return a.manager('GrantImage', 'sssa{sv}', [guest, path, mode, {}], **kw)


def revoke(a, guest, path, **kw):
    return a.manager('RevokeImage', 'ssa{sv}', [guest, path, {}], **kw)


def list_guests(a, **kw):
    return a.manager('ListGuests', **kw)


def list_grants(a, guest, **kw):
    """ListGrants without the pin properties (inode numbers differ per run; test_pinning.py)."""
    r = a.manager('ListGrants', 's', [guest], **kw)
    if r.ok:
        for grant in r.values[0]:
            for k in ('pinned', 'device', 'inode'):
                grant[2].pop(k, None)
    return r


class RulesTestCase(testbed.IaTestCase):

    def ok(self, reply, msg=None):
        return self.assertOk(reply, msg)

    def tables(self):
        guests = self.ok(list_guests(self.bed.local))[0]
        return guests, {n: self.ok(list_grants(self.bed.local, n))[0] for n, _ in guests}

    def assertRefused(self, reply, error, before, msg=None):
        """reply is `error`, and the guest and grant tables are still `before`."""
        self.assertError(reply, error, msg)
        self.assertEqual(self.tables(), before, msg)

    def manager_calls(self, a, guest, image, tag):
        """One call of each Manager method on `guest`, each of which succeeds if authorized
        (root prepares what each needs); returns [(method, call)].  The grants are in mode
        create, the one mode that may name a file that does not exist (image is often below
        /home, which the bed cannot populate)."""
        root = self.bed.local
        names = [n for n, _ in self.ok(list_guests(root))[0]]
        if guest not in names:
            self.ok(register(root, guest))
        victim = guest + '-victim'
        if victim not in names:
            self.ok(register(root, victim))
        self.ok(grant(root, guest, image + '.old', 'create'))
        return [
            ('RegisterGuest', lambda: register(a, '%s-new%s' % (guest, tag))),
            ('UnregisterGuest', lambda: unregister(a, victim)),
            ('BindProcess', lambda: bind(a, guest)),
            ('GrantImage', lambda: grant(a, guest, image, 'create')),
            ('RevokeImage', lambda: revoke(a, guest, image + '.old')),
            ('ListGuests', lambda: list_guests(a)),
            ('ListGrants', lambda: list_grants(a, guest)),
        ]


# ---- compiling ---------------------------------------------------------------------------------

class CompileTests(RulesTestCase):

    def test_every_example_compiles_alone_and_together(self):
        """polkitd compiles each example (ES5 only: no 'Error compiling script'), all of them
        loaded at once too (they share one global scope), and running them raises nothing."""
        files = sorted(glob.glob(os.path.join(EXAMPLES, '*.rules')))
        self.assertEqual([os.path.basename(f) for f in files], [DESKTOP, OPERATORS, READONLY],
                         'a new example needs its own tests here')
        for path in files:
            self.bed.install_rules_file(path)          # raises on a compile error
            self.bed.remove_rules(os.path.basename(path))
        for path in files:
            self.bed.install_rules_file(path)
        # evaluate every rule for every action: a rule that throws is logged as an error
        root = self.bed.local
        img = self.bed.make_image('a.img', b'a')
        self.ok(register(root, 'kiosk', {'uid': u(EMU1_UID)}))
        self.ok(grant(root, 'kiosk', img, 'read-write'))
        for who in ('ia-op', 'ia-desk', 'ia-emu1'):
            a = self.bed.agent(who)
            for _, call in self.manager_calls(a, who + ':vm', '/home/%s/x.img' % who, who):
                call()
            a.open_image('kiosk', img, 'read-write')
            a.open_image('kiosk', img, 'read-only')
        self.bed.check_rules_errors()
        self.assertNotIn('Error', self.bed.log_text('polkitd'))

    def test_broken_es6_rules_fail_closed(self):
        """An example turned into ES6 is rejected by polkitd with a log line the bed catches,
        and the Manager actions it would have allowed stay at the defaults (denied).

        Only the Manager actions fail closed: open-image defaults to yes, so a broken
        restrictive file (the read-only example) leaves opens to the grants alone.  The log
        line is then the only sign, which is why every example is checked to be caught."""
        op = self.bed.agent('ia-op')
        es6 = substitute(example(OPERATORS), 'polkit.addRule(function (action, subject) {',
                         'polkit.addRule((action, subject) => {')
        with self.assertRaisesRegex(AssertionError, 'rejected %s' % OPERATORS):
            self.bed.set_rules(OPERATORS, es6)
        errors = self.bed.unacknowledged_rules_errors()
        self.assertTrue(errors)
        for line in errors:
            self.assertIn('Error compiling script /etc/polkit-1/rules.d/' + OPERATORS, line)
        with self.assertRaisesRegex(AssertionError, 'broken rules'):
            self.bed.check_rules_errors()
        for method, call in self.manager_calls(op, 'vm1', '/srv/vm1.img', 'es6'):
            before = self.tables()
            self.assertRefused(call(), E_INTERACTIVE, before, method)
        # the same file in ES5 works: it was the syntax, not the logic
        self.bed.set_rules(OPERATORS, example(OPERATORS))
        for method, call in self.manager_calls(op, 'vm1', '/srv/vm1.img', 'es5'):
            self.ok(call(), method)
        # `let` alone breaks a file just as well (duktape accepts `const`, not `let`)
        self.bed.set_rules(OPERATORS, 'let x = 1;\n' + example(OPERATORS), check=False)
        self.assertTrue(any('Error compiling script' in line
                            for line in self.bed.unacknowledged_rules_errors()[len(errors):]))
        before = self.tables()
        self.assertRefused(register(op, 'vm9'), E_INTERACTIVE, before)
        self.bed.remove_rules(OPERATORS)
        # every example, broken the same way, is caught
        for name in (DESKTOP, OPERATORS, READONLY):
            broken = substitute(example(name), 'polkit.addRule(function (action, subject) {',
                                'polkit.addRule((action, subject) => {')
            with self.assertRaisesRegex(AssertionError, 'rejected %s' % name):
                self.bed.set_rules(name, broken)
            self.bed.remove_rules(name)
        self.bed.acknowledge_rules_errors()     # expected here; teardown fails otherwise


# ---- out of the box --------------------------------------------------------------------------

class OutOfTheBoxTests(RulesTestCase):

    def test_bound_emulator_opens_without_prompt(self):
        """No rules at all: an unprivileged emulator bound to its guest (by uid, or by its
        process) opens its granted image with no interactive flag and no agent.  The
        service's own gate still applies: unbound callers and ungranted modes are refused."""
        self.assertEqual(os.listdir(self.bed.rules_dir), [])
        root = self.bed.local
        img = self.bed.make_image('vm1.img', b'vm1 disk')
        self.ok(register(root, 'vm1', {'uid': u(EMU1_UID)}))
        self.ok(register(root, 'vm2'))
        self.ok(grant(root, 'vm1', img, 'read-write'))
        self.ok(grant(root, 'vm2', img, 'read-only'))
        emu1 = self.bed.agent('ia-emu1')
        r = emu1.open_image('vm1', img, 'read-write', read=8)
        self.ok(r)
        self.assertEqual((r.fd()['accmode'], r.fd()['read']), ('O_RDWR', b'vm1 disk'))
        # bound by process: the emulator connects after BindProcess
        emu2 = self.bed.agent('ia-emu2')
        self.ok(bind(root, 'vm2', emu2.pid))
        emu2.reconnect()
        r = emu2.open_image('vm2', img, 'read-only', read=3)
        self.ok(r)
        fd = r.fd()
        self.assertEqual((fd['accmode'], fd['read']), ('O_RDONLY', b'vm1'))
        # the denials
        self.assertError(emu2.open_image('vm2', img, 'read-write'), ERR + 'NotGranted')
        self.assertError(emu2.open_image('vm1', img, 'read-only'), ERR + 'NotBound')
        self.assertError(self.bed.agent('ia-mgr').open_image('vm1', img), ERR + 'NotBound')
        self.assertNotIn('Error', self.bed.log_text('polkitd'))


# ---- operators -------------------------------------------------------------------------------

class OperatorsTests(RulesTestCase):

    def setUp(self):
        super().setUp()
        self.bed.install_rules_file(os.path.join(EXAMPLES, OPERATORS))

    def test_operator_may_do_every_manager_action(self):
        """ia-op (in ia-operators) may call every Manager method without a prompt, whatever
        its process's own groups; ia-desk, ia-mgr and ia-emu1 may call none."""
        for n, op in enumerate((self.bed.agent('ia-op'), self.bed.agent('ia-op', groups=[]))):
            for method, call in self.manager_calls(op, 'vm1', '/srv/vm1.img', 'op%d' % n):
                self.ok(call(), '%s (groups %s)' % (method, op.groups))
        self.assertEqual(self.ok(list_grants(self.bed.local, 'vm1'))[0],
                         [['/srv/vm1.img', 'create', {'created': False}]])
        for who in ('ia-desk', 'ia-mgr', 'ia-emu1'):
            a = self.bed.agent(who)
            for method, call in self.manager_calls(a, 'vm1', '/srv/vm1.img', who):
                before = self.tables()
                self.assertRefused(call(), E_INTERACTIVE, before, '%s %s' % (who, method))

    def test_operator_does_not_open(self):
        """The rule leaves open-image alone: an operator is no emulator."""
        root, op = self.bed.local, self.bed.agent('ia-op')
        img = self.bed.make_image('vm1.img', b'x')
        self.ok(register(op, 'vm1'))
        self.ok(grant(op, 'vm1', img, 'read-write'))
        self.assertError(op.open_image('vm1', img, 'read-only'), ERR + 'NotBound')
        # once it binds its own process it is the emulator, like anyone bound
        self.ok(bind(op, 'vm1'))
        op.reconnect()
        self.ok(op.open_image('vm1', img, 'read-write'))
        self.ok(unregister(root, 'vm1'))

    def test_new_member_counts_at_once(self):
        """polkitd reads the group database at each check: adding ia-desk to the group lets
        it in without restarting anything."""
        desk = self.bed.agent('ia-desk')
        before = self.tables()
        self.assertRefused(register(desk, 'vm1'), E_INTERACTIVE, before)
        with open(self.bed.group_path) as f:
            group = f.read()
        # rewrite in place: polkitd sees this very inode through its bind mount
        with open(self.bed.group_path, 'w') as f:
            f.write(substitute(group, 'ia-operators:x:61050:ia-op\n',
                               'ia-operators:x:61050:ia-op,ia-desk\n'))
        self.ok(register(desk, 'vm1'))
        with open(self.bed.group_path, 'w') as f:
            f.write(group)
        before = self.tables()
        self.assertRefused(register(desk, 'vm2'), E_INTERACTIVE, before)


# ---- desktop ---------------------------------------------------------------------------------

class DesktopTests(RulesTestCase):

    def desktop(self, require_session=False, image_dir=None):
        text = example(DESKTOP)
        if not require_session:
            text = substitute(text, 'var REQUIRE_LOCAL_ACTIVE_SESSION = true;',
                              'var REQUIRE_LOCAL_ACTIVE_SESSION = false;')
        if image_dir is not None:
            text = substitute(text, 'return ["/home/" + user + "/"];',
                              'return ["%s/" + user + "/"];' % image_dir)
        self.bed.set_rules(DESKTOP, text)

    def test_default_requires_a_local_active_session(self):
        """As shipped, the rule answers only subjects in a local active session; this bed
        has no logind, so ia-desk gets the defaults for its own guests too."""
        self.bed.install_rules_file(os.path.join(EXAMPLES, DESKTOP))
        desk = self.bed.agent('ia-desk')
        for method, call in self.manager_calls(desk, 'ia-desk:vm1', '/home/ia-desk/vm1.img',
                                               'x'):
            before = self.tables()
            self.assertRefused(call(), E_INTERACTIVE, before, method)
        # and the same file with the session requirement off allows them: it was only that
        self.desktop(require_session=False)
        for method, call in self.manager_calls(desk, 'ia-desk:vm1', '/home/ia-desk/vm1.img',
                                               'y'):
            if method != 'ListGuests':
                self.ok(call(), method)

    def test_own_guests_and_home_only(self):
        """Without the session requirement: ia-desk manages guests named "ia-desk:*" with
        images below its own directory, and nothing else; ListGuests (every user's guests)
        stays at the defaults.  The directory is moved into the bed (userImageDirs(), as the
        header suggests) so that grants name real files; the shipped /home/USER/ is checked
        after that with create grants, which may name files that do not exist."""
        base = os.path.join(self.bed.images_dir, 'home')
        self.desktop(require_session=False, image_dir=base)
        root, desk, op = self.bed.local, self.bed.agent('ia-desk'), self.bed.agent('ia-op')
        home = base + '/ia-desk/'
        mine = {mode: self.bed.make_image('home/ia-desk/%s.img' % mode, b'm')
                for mode in ('read-only', 'read-write', 'create')}
        deep = self.bed.make_image('home/ia-desk/VMs/deep/disk.qcow2', b'd')
        theirs = self.bed.make_image('home/ia-op/op.img', b'o')
        sibling = self.bed.make_image('home/ia-desktop/a.img', b's')
        self.ok(register(desk, 'ia-desk:vm1', {'description': s('mine')}))
        self.ok(register(desk, 'ia-desk:x'))
        for mode, path in mine.items():
            self.ok(grant(desk, 'ia-desk:vm1', path, mode))
        self.ok(grant(desk, 'ia-desk:vm1', deep, 'read-write'))
        self.ok(bind(desk, 'ia-desk:vm1'))
        self.ok(list_grants(desk, 'ia-desk:vm1'))
        self.ok(revoke(desk, 'ia-desk:vm1', mine['create']))
        self.ok(unregister(desk, 'ia-desk:x'))
        self.ok(register(root, 'ia-op:vm1'))
        self.ok(register(root, 'ia-desk-vm'))
        self.ok(grant(root, 'ia-op:vm1', theirs))

        before = self.tables()
        refused = [
            # other guests: the defaults decide (a challenge)
            (register(desk, 'ia-op:vm2'), E_INTERACTIVE),
            (register(desk, 'ia-desk'), E_INTERACTIVE),
            (register(desk, 'ia-desk:'), E_INTERACTIVE),
            (register(desk, 'ia-desk-vm2'), E_INTERACTIVE),
            (register(desk, 'ia-deskx:vm'), E_INTERACTIVE),
            (register(desk, 'IA-DESK:vm'), E_INTERACTIVE),
            (register(desk, 'ia:desk:vm'), E_INTERACTIVE),
            (unregister(desk, 'ia-op:vm1'), E_INTERACTIVE),
            (unregister(desk, 'ia-desk-vm'), E_INTERACTIVE),
            (bind(desk, 'ia-op:vm1'), E_INTERACTIVE),
            (grant(desk, 'ia-op:vm1', mine['read-only']), E_INTERACTIVE),
            (revoke(desk, 'ia-op:vm1', theirs), E_INTERACTIVE),
            (list_grants(desk, 'ia-op:vm1'), E_INTERACTIVE),
            (list_guests(desk), E_INTERACTIVE),
            # its own guest, but an image outside its directory: a plain no
            (grant(desk, 'ia-desk:vm1', theirs), E_DENIED),
            (grant(desk, 'ia-desk:vm1', sibling), E_DENIED),
            (grant(desk, 'ia-desk:vm1', home.rstrip('/'), 'read-only'), E_DENIED),
            (grant(desk, 'ia-desk:vm1', '/etc/shadow'), E_DENIED),
            (grant(desk, 'ia-desk:vm1', '/dev/null', 'read-write'), E_DENIED),
            (grant(desk, 'ia-desk:vm1', '/tmp' + home + 'a.img', 'create'), E_DENIED),
        ]
        for n, (reply, error) in enumerate(refused):
            self.assertError(reply, error, 'refusal #%d' % n)
        self.assertEqual(self.tables(), before)
        # the same rule serves every user: ia-op owns "ia-op:*" and its own directory
        self.ok(grant(op, 'ia-op:vm1', base + '/ia-op/b.img', 'create'))
        self.assertError(grant(op, 'ia-op:vm1', mine['read-only']), E_DENIED)
        self.assertError(grant(op, 'ia-desk:vm1', theirs), E_INTERACTIVE)

        # as shipped (but for the session): /home/USER/
        self.desktop(require_session=False)
        self.ok(grant(desk, 'ia-desk:vm1', '/home/ia-desk/new.img', 'create'))
        self.ok(grant(desk, 'ia-desk:vm1', '/home/ia-desk/VMs/new.qcow2', 'create'))
        before = self.tables()
        for path in ('/home/ia-desktop/new.img', '/home/ia-op/new.img', '/home/new.img',
                     '/srv/home/ia-desk/new.img', theirs, mine['read-only']):
            self.assertRefused(grant(desk, 'ia-desk:vm1', path, 'create'), E_DENIED, before,
                               path)

    def test_emulator_opens_own_images(self):
        """The whole desktop flow with the image directory moved into the bed: ia-desk
        registers, grants and binds its emulator, which then opens the image (open-image is
        left to the defaults); the emulator gets nothing of another user's guest."""
        base = os.path.join(self.bed.images_dir, 'home')
        self.desktop(require_session=False, image_dir=base)
        root = self.bed.local
        desk = self.bed.agent('ia-desk')
        emu = self.bed.agent('ia-desk')           # the user's emulator, its own process
        mine = self.bed.make_image('home/ia-desk/disk.img', b'desk disk', uid=DESK_UID)
        theirs = self.bed.make_image('home/ia-op/disk.img', b'op disk')
        new = os.path.join(base, 'ia-desk', 'overlay.qcow2')
        self.ok(register(root, 'ia-op:vm1'))
        self.ok(grant(root, 'ia-op:vm1', theirs, 'read-write'))

        self.ok(register(desk, 'ia-desk:vm1'))
        self.ok(grant(desk, 'ia-desk:vm1', mine, 'read-write'))
        self.ok(grant(desk, 'ia-desk:vm1', new, 'create'))
        before = self.tables()
        self.assertRefused(grant(desk, 'ia-desk:vm1', theirs, 'read-only'), E_DENIED, before)
        self.assertRefused(bind(desk, 'ia-op:vm1', emu.pid), E_INTERACTIVE, before)
        self.ok(bind(desk, 'ia-desk:vm1', emu.pid))
        emu.reconnect()

        r = emu.open_image('ia-desk:vm1', mine, 'read-write', read=9)
        self.ok(r)
        self.assertEqual((r.fd()['accmode'], r.fd()['read']), ('O_RDWR', b'desk disk'))
        self.ok(emu.open_image('ia-desk:vm1', new, 'create'))
        st = os.stat(new)
        self.assertEqual((st.st_uid, st.st_mode & 0o777), (0, 0o600))
        self.assertError(emu.open_image('ia-op:vm1', theirs, 'read-only'), ERR + 'NotBound')
        self.assertError(emu.open_image('ia-desk:vm1', theirs, 'read-only'),
                         ERR + 'NotGranted')
        self.assertError(desk.open_image('ia-desk:vm1', mine, 'read-only'), ERR + 'NotBound',
                         'the managing process itself is not the emulator')


# ---- read-only -------------------------------------------------------------------------------

class ReadOnlyTests(RulesTestCase):

    def setUp(self):
        super().setUp()
        self.root = self.bed.local
        self.emu = self.bed.agent('ia-emu1')
        self.img = self.bed.make_image('shared.img', b'shared')
        # every guest bound to ia-emu1's uid (sharing asked for), and granted everything, by
        # root (no polkit)
        self.guests = ['kiosk', 'forensics', 'ro-web', 'vm-other', 'kiosk2', 'ro', 'xro-x']
        for g in self.guests:
            self.ok(register(self.root, g, {'uid': u(EMU1_UID), 'share-uid': {'$v': ['b', True]}}))
            self.ok(grant(self.root, g, self.img, 'create'))
            self.ok(grant(self.root, g, self.new_path(g), 'create'))

    def new_path(self, guest):
        return os.path.join(self.bed.images_dir, 'new-%s.img' % guest)

    def check_opens(self, read_only_guests):
        for g in self.guests:
            self.ok(self.emu.open_image(g, self.img, 'read-only'), g)
            if g in read_only_guests:
                r = self.emu.open_image(g, self.img, 'read-write')
                self.assertError(r, E_DENIED, g)
                self.assertIn('org.example.imageaccess.open-image', r.message)
                self.assertError(self.emu.open_image(g, self.new_path(g), 'create'), E_DENIED,
                                 g)
                self.assertFalse(os.path.exists(self.new_path(g)), 'denied create made %s'
                                 % self.new_path(g))
            else:
                self.ok(self.emu.open_image(g, self.img, 'read-write'), g)
                self.ok(self.emu.open_image(g, self.new_path(g), 'create'), g)
                self.assertTrue(os.path.exists(self.new_path(g)))
                os.unlink(self.new_path(g))

    def test_listed_guests_open_read_only_only(self):
        """kiosk, forensics and ro-* open read-only and nothing else, although the grant
        table says create; other guests, also ones with similar names, are unaffected.
        polkitd logs each denial through polkit.log()."""
        self.bed.install_rules_file(os.path.join(EXAMPLES, READONLY), READONLY_INSTALLED)
        self.assertEqual(self.ok(list_grants(self.root, 'kiosk'))[0][0][1], 'create')
        self.check_opens({'kiosk', 'forensics', 'ro-web'})
        log = self.bed.log_text('polkitd')
        self.assertIn("image-access: denying org.example.imageaccess.open-image of '%s' in "
                      "mode 'read-write' for read-only guest 'kiosk' (user ia-emu1)" % self.img,
                      log)
        self.assertIn("in mode 'create' for read-only guest 'ro-web'", log)
        # without the rule, the grants decide again
        self.bed.remove_rules(READONLY_INSTALLED)
        self.check_opens(set())

    def test_root_emulator_is_not_restricted(self):
        """As the header says: uid 0 is not asked about, so a root emulator is not held to
        read-only."""
        self.bed.install_rules_file(os.path.join(EXAMPLES, READONLY), READONLY_INSTALLED)
        self.ok(register(self.root, 'ro-root', {'uid': u(0)}))
        self.ok(grant(self.root, 'ro-root', self.img, 'read-write'))
        self.ok(self.bed.agent('root').open_image('ro-root', self.img, 'read-write'))
        self.assertError(self.emu.open_image('ro-root', self.img, 'read-only'),
                         ERR + 'NotBound')

    def test_grant_beyond_read_only_denied_before_yes_rules(self):
        """Installed as 40-… (its header's advice), it denies an operator granting a
        read-only guest more than read-only, while the operators rule allows the rest.
        Under its own name, 50-image-access-operators.rules sorts first and its yes wins for
        grant-image: the header's warning holds.  The open-image denial holds either way."""
        self.bed.install_rules_file(os.path.join(EXAMPLES, OPERATORS))
        self.bed.install_rules_file(os.path.join(EXAMPLES, DESKTOP))
        self.bed.install_rules_file(os.path.join(EXAMPLES, READONLY), READONLY_INSTALLED)
        op = self.bed.agent('ia-op')
        x = self.bed.make_image('x.img', b'x')
        self.ok(register(self.root, 'kiosk-2'))
        self.ok(register(self.root, 'ro-new'))
        before = self.tables()
        for g, mode in (('kiosk', 'read-write'), ('forensics', 'create'),
                        ('ro-new', 'read-write')):
            self.assertRefused(grant(op, g, x, mode), E_DENIED, before, g)
        self.ok(grant(op, 'kiosk', x, 'read-only'))
        self.ok(grant(op, 'kiosk-2', x, 'read-write'))
        self.ok(grant(op, 'vm-other', x, 'create'))
        self.check_opens({'kiosk', 'forensics', 'ro-web'})

        self.bed.remove_rules(READONLY_INSTALLED)
        self.bed.install_rules_file(os.path.join(EXAMPLES, READONLY))
        self.ok(grant(op, 'ro-new', x, 'read-write'),
                'the operators rule runs first under the default name')
        self.check_opens({'kiosk', 'forensics', 'ro-web'})


if __name__ == '__main__':
    testbed.main()

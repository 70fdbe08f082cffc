#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""
The audit trail: every register, unregister, bind, grant, revoke and open decision, allowed
or denied, is one line "audit: EVENT allowed|denied guest='…' [image='…'] [mode=…] uid=U
pid=P sender=S [reason='…']" in the daemon's log (daemon/log.c), naming the caller as the
bus saw it; denials say why.  Exactly one line per decision: not zero (a decision nobody can
trace), not two (a handler that runs again after its polkit check, a cached polkit answer,
or a worker's completion must not add or lose lines).

Calls refused as malformed (InvalidName, InvalidPath, …) are refused before any decision
about a guest is made and are not audited; successful List* calls are read-only and are not
audited either (STYLE.md §7).  Both are checked here so that the counts stay exact.
"""

import os
import re
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testbed  # noqa: E402

ERR = 'org.example.ImageAccess.Error.'
E_INTERACTIVE = 'org.freedesktop.DBus.Error.InteractiveAuthorizationRequired'
E_DENIED = 'org.freedesktop.DBus.Error.AccessDenied'
E_AUTH_FAILED = 'org.example.ImageAccess.Error.AuthenticationFailed'

EMU1_UID = testbed.USERS['ia-emu1'].uid

AUDIT_RE = re.compile(r"<info> audit: (?P<event>\S+) (?P<result>allowed|denied) (?P<rest>.*)$")
FIELD_RE = re.compile(r"(\w[\w-]*)=('(?:[^'\\]|\\.)*'|\S*)")

RULE_ALLOW_MGR = '''polkit.addRule(function (action, subject) {
    if (action.id.indexOf("org.example.imageaccess.") === 0 && subject.user === "ia-mgr")
        return polkit.Result.YES;
    return null;
});
'''

RULE_DENY_OPEN_RW = '''polkit.addRule(function (action, subject) {
    if (action.id === "org.example.imageaccess.open-image" && action.lookup("mode") !== "read-only")
        return polkit.Result.NO;
    return null;
});
'''


def parse_audit(line):
    """An audit line → {'event', 'result', field: value}; quoted values unescaped.  Raises
    ValueError on a field given twice or text outside the fields."""
    m = AUDIT_RE.search(line)
    if not m:
        raise ValueError('not an audit line: %r' % line)
    rec = {'event': m.group('event'), 'result': m.group('result')}
    rest, pos = m.group('rest'), 0
    for f in FIELD_RE.finditer(rest):
        if rest[pos:f.start()].strip():
            raise ValueError('stray text %r in %r' % (rest[pos:f.start()], line))
        key, value = f.group(1), f.group(2)
        if value.startswith("'"):
            value = re.sub(r'\\(.)', r'\1', value[1:-1])
        if key in rec:
            raise ValueError('field %s twice in %r' % (key, line))
        rec[key] = value
        pos = f.end()
    if rest[pos:].strip():
        raise ValueError('stray text %r in %r' % (rest[pos:], line))
    return rec


def u(v):
    return {'$v': ['u', v]}


def b(v):
    return {'$v': ['b', v]}


def register(a, name, options=None, **kw):
    return a.manager('RegisterGuest', 'sa{sv}', [name, options or {}], **kw)


def unregister(a, name, **kw):
    return a.manager('UnregisterGuest', 's', [name], **kw)


def bind(a, guest, pidfd=None, **kw):
    return a.manager('BindProcess', 'sha{sv}', [guest, pidfd or {'pidfd_of': 'self'}, {}], **kw)


def grant(a, guest, path, mode='read-only', **kw):
    return a.manager('GrantImage', 'sssa{sv}', [guest, path, mode, {}], **kw)


def revoke(a, guest, path, options=None, **kw):
    return a.manager('RevokeImage', 'ssa{sv}', [guest, path, options or {}], **kw)


class AuditTestCase(testbed.IaTestCase):

    def setUp(self):
        super().setUp()
        self.mark()

    def mark(self):
        self._since = len(self.bed.log_text('daemon'))

    def audit_lines(self):
        """Audit lines logged since the last mark()."""
        text = self.bed.log_text('daemon')[self._since:]
        return [line for line in text.splitlines() if ' audit: ' in line]

    def check(self, ops):
        """Run ops [(caller, call, error or None, expected fields)] and check that each made
        exactly one audit line, in order, with the caller's uid, pid and unique name, the
        result matching the reply, and the expected fields; a denial carries a reason.
        Expected fields may be a compiled regex (searched) or a value (equal); None means
        the field must be absent."""
        self.mark()
        for n, (caller, call, error, fields) in enumerate(ops):
            r = call()
            if error:
                self.assertError(r, error, 'op #%d %s' % (n, fields))
            else:
                self.assertOk(r, 'op #%d %s' % (n, fields))
        lines = self.audit_lines()
        self.assertEqual(len(lines), len(ops), 'one audit line per decision:\n' +
                         '\n'.join(lines))
        for n, (line, (caller, _, error, fields)) in enumerate(zip(lines, ops)):
            with self.subTest(op=n, line=line):
                rec = parse_audit(line)
                self.assertEqual(rec['result'], 'denied' if error else 'allowed')
                self.assertEqual(int(rec['uid']), caller.uid)
                self.assertEqual(int(rec['pid']), caller.pid)
                self.assertEqual(rec['sender'], caller.unique_name)
                if error:
                    self.assertTrue(rec.get('reason'), 'a denial says why')
                for key, want in fields.items():
                    if want is None:
                        self.assertNotIn(key, rec)
                    elif hasattr(want, 'search'):
                        self.assertRegex(rec.get(key, ''), want, key)
                    else:
                        self.assertEqual(rec.get(key), want, key)


class AuditTests(AuditTestCase):

    def test_manager_decisions(self):
        """register, unregister, bind, grant and revoke: allowed by root, allowed by a rule
        (the handler runs twice around its polkit check: still one line), and denied by
        polkit, by the interactive rule, and by the guest and grant tables."""
        root = self.bed.local
        mgr, emu = self.bed.agent('ia-mgr'), self.bed.agent('ia-emu1')
        img = self.bed.make_image('a.img', b'a')
        other = self.bed.make_image('b.img', b'b')
        not_pidfd = {'open': img, 'flags': 'O_RDONLY'}
        R = re.compile
        ops = [
            # register
            (root, lambda: register(root, 'vm1'), None,
             {'event': 'register', 'guest': 'vm1', 'image': None, 'mode': None,
              'reason': None}),
            (root, lambda: register(root, 'vm1'), ERR + 'GuestExists',
             {'event': 'register', 'guest': 'vm1', 'reason': R('already registered')}),
            (mgr, lambda: register(mgr, 'vm2'), E_INTERACTIVE,
             {'event': 'register', 'guest': 'vm2',
              'reason': R('register-guest needs authentication')}),
            (mgr, lambda: register(mgr, 'vm2', interactive=True), E_AUTH_FAILED,
             {'event': 'register', 'guest': 'vm2',
              'reason': R('no polkit authentication agent')}),
            (root, lambda: register(root, 'vm3', {'uid': u(EMU1_UID)}), None,
             {'event': 'register', 'guest': 'vm3'}),
            # bind
            (root, lambda: bind(root, 'vm1', {'pidfd_of': emu.pid}), None,
             {'event': 'bind', 'guest': 'vm1', 'image': None,
              'reason': 'process %d, uid %d' % (emu.pid, EMU1_UID)}),
            (root, lambda: bind(root, 'nope'), ERR + 'UnknownGuest',
             {'event': 'bind', 'guest': 'nope', 'reason': R("No guest named 'nope'")}),
            (root, lambda: bind(root, 'vm1', not_pidfd), ERR + 'InvalidProcess',
             {'event': 'bind', 'guest': 'vm1', 'reason': R('not a pidfd')}),
            (mgr, lambda: bind(mgr, 'vm1'), E_INTERACTIVE,
             {'event': 'bind', 'guest': 'vm1', 'reason': R('bind-process')}),
            # grant
            (root, lambda: grant(root, 'vm1', img, 'read-write'), None,
             {'event': 'grant', 'guest': 'vm1', 'image': img, 'mode': 'read-write',
              'reason': None}),
            (root, lambda: grant(root, 'vm1', img, 'read-write'), None,
             {'event': 'grant', 'guest': 'vm1', 'image': img, 'mode': 'read-write'}),
            (root, lambda: grant(root, 'vm1', other, 'create'), None,
             {'event': 'grant', 'guest': 'vm1', 'image': other, 'mode': 'create'}),
            (root, lambda: grant(root, 'nope', img), ERR + 'UnknownGuest',
             {'event': 'grant', 'guest': 'nope', 'image': img, 'mode': 'read-only',
              'reason': R('No guest')}),
            (mgr, lambda: grant(mgr, 'vm1', '/etc/shadow', 'read-only'), E_INTERACTIVE,
             {'event': 'grant', 'guest': 'vm1', 'image': '/etc/shadow', 'mode': 'read-only',
              'reason': R('grant-image')}),
            # revoke
            (root, lambda: revoke(root, 'vm1', other, {'remove-created': b(True)}),
             ERR + 'NotCreatedByService',
             {'event': 'revoke', 'guest': 'vm1', 'image': other, 'reason': R('not created')}),
            (root, lambda: revoke(root, 'vm1', other), None,
             {'event': 'revoke', 'guest': 'vm1', 'image': other, 'mode': None,
              'reason': None}),
            (root, lambda: revoke(root, 'vm1', other), ERR + 'NotGranted',
             {'event': 'revoke', 'guest': 'vm1', 'image': other, 'reason': R('no grant')}),
            (root, lambda: revoke(root, 'nope', other), ERR + 'UnknownGuest',
             {'event': 'revoke', 'guest': 'nope', 'image': other}),
            (mgr, lambda: revoke(mgr, 'vm1', img), E_INTERACTIVE,
             {'event': 'revoke', 'guest': 'vm1', 'image': img, 'reason': R('revoke-image')}),
            # unregister
            (mgr, lambda: unregister(mgr, 'vm3'), E_INTERACTIVE,
             {'event': 'unregister', 'guest': 'vm3', 'reason': R('unregister-guest')}),
            (root, lambda: unregister(root, 'nope'), ERR + 'UnknownGuest',
             {'event': 'unregister', 'guest': 'nope', 'reason': R('No guest')}),
            (root, lambda: unregister(root, 'vm3'), None,
             {'event': 'unregister', 'guest': 'vm3', 'image': None, 'reason': None}),
        ]
        self.check(ops)

        # the same through polkit's yes: the handler is dispatched twice, audited once
        self.bed.set_rules('50-mgr.rules', RULE_ALLOW_MGR)
        ops = [
            (mgr, lambda: register(mgr, 'vm2'), None, {'event': 'register', 'guest': 'vm2'}),
            (mgr, lambda: register(mgr, 'vm2'), ERR + 'GuestExists',
             {'event': 'register', 'guest': 'vm2'}),
            (mgr, lambda: bind(mgr, 'vm2'), None, {'event': 'bind', 'guest': 'vm2'}),
            (mgr, lambda: grant(mgr, 'vm2', img, 'create'), None,
             {'event': 'grant', 'guest': 'vm2', 'image': img, 'mode': 'create'}),
            (mgr, lambda: grant(mgr, 'vm2', img, 'create'), None,
             {'event': 'grant', 'guest': 'vm2', 'image': img, 'mode': 'create'}),
            (mgr, lambda: revoke(mgr, 'vm2', img), None,
             {'event': 'revoke', 'guest': 'vm2', 'image': img}),
            (mgr, lambda: revoke(mgr, 'vm2', img), ERR + 'NotGranted',
             {'event': 'revoke', 'guest': 'vm2', 'image': img}),
            (mgr, lambda: unregister(mgr, 'vm2'), None,
             {'event': 'unregister', 'guest': 'vm2'}),
            (mgr, lambda: unregister(mgr, 'vm2'), ERR + 'UnknownGuest',
             {'event': 'unregister', 'guest': 'vm2'}),
        ]
        self.check(ops)

    def test_open_decisions(self):
        """open: allowed (also a cached polkit yes, and a create), and denied by binding, by
        the grant table, by the file system and by polkit."""
        root = self.bed.local
        emu, emu2 = self.bed.agent('ia-emu1'), self.bed.agent('ia-emu2')
        img = self.bed.make_image('a.img', b'a')
        missing = self.bed.make_image('missing.img', b'gone before it is opened')
        new = os.path.join(self.bed.images_dir, 'new.img')
        exists = self.bed.make_image('exists.img', b'not ours')
        other_path = os.path.join(self.bed.images_dir, 'other.img')
        self.assertOk(register(root, 'vm1', {'uid': u(EMU1_UID)}))
        for path, mode in ((img, 'read-write'), (missing, 'read-only'), (new, 'create'),
                           (exists, 'create')):
            self.assertOk(grant(root, 'vm1', path, mode))
        os.unlink(missing)
        self.bed.set_rules('50-deny-rw.rules', RULE_DENY_OPEN_RW)
        R = re.compile
        ro = {'event': 'open', 'guest': 'vm1', 'image': img, 'mode': 'read-only'}
        ops = [
            (emu, lambda: emu.open_image('vm1', img, 'read-only'), None,
             dict(ro, reason=None)),
            (emu, lambda: emu.open_image('vm1', img, 'read-only'), None, ro),  # cached yes
            (emu, lambda: emu.open_image('vm1', img, 'read-only'), None, ro),
            (emu, lambda: emu.open_image('vm1', img, 'read-write'), E_DENIED,
             {'event': 'open', 'guest': 'vm1', 'image': img, 'mode': 'read-write',
              'reason': R('Not authorized by polkit for action '
                          'org.example.imageaccess.open-image')}),
            (emu2, lambda: emu2.open_image('vm1', img, 'read-only'), ERR + 'NotBound',
             dict(ro, reason=R('not bound'))),
            (emu, lambda: emu.open_image('vm1', other_path, 'read-only'), ERR + 'NotGranted',
             {'event': 'open', 'image': other_path, 'reason': R('no grant')}),
            (emu, lambda: emu.open_image('vm1', missing, 'read-only'), ERR + 'NotFound',
             {'event': 'open', 'image': missing, 'reason': R('does not exist')}),
            (root, lambda: root.open_image('vm1', img, 'read-write'), ERR + 'NotBound',
             {'event': 'open', 'mode': 'read-write'}),
        ]
        self.check(ops)
        self.bed.remove_rules('50-deny-rw.rules')
        ops = [
            (emu, lambda: emu.open_image('vm1', new, 'create'), None,
             {'event': 'open', 'image': new, 'mode': 'create', 'reason': 'created'}),
            (emu, lambda: emu.open_image('vm1', img, 'read-write'), None,
             {'event': 'open', 'image': img, 'mode': 'read-write'}),
            (emu, lambda: emu.open_image('vm1', new, 'create'), None,
             {'event': 'open', 'image': new, 'mode': 'create'}),
            (emu, lambda: emu.open_image('vm1', exists, 'create'), ERR + 'FileExists',
             {'event': 'open', 'image': exists, 'mode': 'create', 'reason': R('exists')}),
            (emu, lambda: emu.open_image('vm1', img, 'create'), ERR + 'NotGranted',
             {'event': 'open', 'image': img, 'mode': 'create'}),
            (root, lambda: revoke(root, 'vm1', new, {'remove-created': b(True)}), None,
             {'event': 'revoke', 'image': new, 'reason': 'created file removed'}),
            (emu, lambda: emu.open_image('vm1', new, 'create'), ERR + 'NotGranted',
             {'event': 'open', 'image': new, 'mode': 'create'}),
        ]
        self.check(ops)

    def test_polkit_unavailable_is_audited(self):
        """With polkitd gone, every decision that needs it is a logged denial."""
        root = self.bed.local
        mgr, emu = self.bed.agent('ia-mgr'), self.bed.agent('ia-emu1')
        img = self.bed.make_image('a.img', b'a')
        self.assertOk(register(root, 'vm1', {'uid': u(EMU1_UID)}))
        self.assertOk(grant(root, 'vm1', img, 'read-only'))
        self.bed.kill_polkitd()
        unavailable = ERR + 'AuthorizationUnavailable'
        why = re.compile('could not decide')
        self.check([
            (mgr, lambda: register(mgr, 'vm2'), unavailable,
             {'event': 'register', 'guest': 'vm2', 'reason': why}),
            (mgr, lambda: grant(mgr, 'vm1', img, 'create'), unavailable,
             {'event': 'grant', 'image': img, 'mode': 'create', 'reason': why}),
            (emu, lambda: emu.open_image('vm1', img), unavailable,
             {'event': 'open', 'image': img, 'mode': 'read-only', 'reason': why}),
            (root, lambda: grant(root, 'vm1', img, 'read-write'), None,
             {'event': 'grant', 'mode': 'read-write'}),
        ])


class CountTests(AuditTestCase):

    def test_n_operations_n_lines(self):
        """Rounds of every kind of decision, sequential and pipelined (many opens in flight
        at once through polkit), interleaved with List* calls and malformed calls that make
        no decision: exactly one line per decision, and the allowed/denied tallies match."""
        root = self.bed.local
        mgr = self.bed.agent('ia-mgr')
        self.bed.set_rules('50-mgr.rules', RULE_ALLOW_MGR)
        img = self.bed.make_image('a.img', b'a')
        emu = self.bed.agent('ia-emu1')
        expected = {'allowed': 0, 'denied': 0}

        def op(reply, allowed):
            self.assertEqual(reply.ok, allowed, reply)
            expected['allowed' if allowed else 'denied'] += 1

        def no_decision(reply):
            self.assertTrue(reply.ok or reply.error.startswith(ERR + 'Invalid'), reply)

        rounds = 10
        for i in range(rounds):
            g = 'vm%d' % i
            caller = mgr if i % 2 else root
            op(register(caller, g, {'uid': u(EMU1_UID)}), True)
            op(register(caller, g), False)
            op(register(emu, g + 'x'), False)
            no_decision(register(caller, '-bad'))
            no_decision(caller.manager('ListGuests'))
            op(grant(caller, g, img, 'read-only'), True)
            op(grant(caller, g, img, 'read-only'), True)
            no_decision(grant(caller, g, 'relative', 'read-only'))
            no_decision(grant(caller, g, img, 'rw'))
            op(grant(emu, g, img, 'read-write'), False)
            op(bind(caller, g, {'pidfd_of': emu.pid}), True)
            op(emu.open_image(g, img, 'read-only'), True)
            op(emu.open_image(g, img, 'read-only'), True)
            op(emu.open_image(g, img, 'read-write'), False)
            no_decision(emu.open_image(g, img, 'bogus'))
            no_decision(caller.manager('ListGrants', 's', [g]))
            op(revoke(caller, g, img), True)
            op(revoke(caller, g, img), False)
            op(emu.open_image(g, img, 'read-only'), False)
            op(unregister(caller, g), True)
            op(unregister(caller, g), False)
        # pipelined: 40 opens in flight at once, each through polkit (fresh connection)
        self.assertOk(register(root, 'busy', {'uid': u(EMU1_UID)}))
        self.assertOk(grant(root, 'busy', img, 'read-only'))
        expected['allowed'] += 2
        emu.reconnect()
        pending = [emu.call_async('OpenImage', 'sssa{sv}',
                                  ['busy', img, 'read-only' if n % 4 else 'read-write', {}])
                   for n in range(40)]
        for n, p in enumerate(pending):
            op(p.wait(), bool(n % 4))

        lines = self.audit_lines()
        results = [parse_audit(line)['result'] for line in lines]
        self.assertEqual(len(lines), expected['allowed'] + expected['denied'],
                         '\n'.join(lines[-20:]))
        self.assertEqual({k: results.count(k) for k in ('allowed', 'denied')}, expected)
        # every caller pid named is one of ours
        pids = {int(parse_audit(line)['pid']) for line in lines}
        self.assertEqual(pids, {root.pid, mgr.pid, emu.pid})


if __name__ == '__main__':
    testbed.main()

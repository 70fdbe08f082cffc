#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""
image-accessd's persistence, seen from outside: guests, grants (all modes), created-file
records and process bindings survive kill -9 and a clean stop; every change whose reply was
received before a crash is there after it (acknowledged = durable); a damaged snapshot or
journal is reported, kept for inspection and never half-loaded (the daemon starts with
nothing: fail closed); a torn last journal line, a write that was never acknowledged, is
dropped silently; and a state directory that cannot be used stops the daemon instead of
letting it run without persistence.

The on-disk format is described at the top of daemon/state.c: "state" (a snapshot with an
"end <lines> <checksum>" trailer) and "journal" (lines "<record> <checksum>").  Records that
need a valid checksum are built here with the same word-wise FNV-1a.
"""

import os
import random
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testbed  # noqa: E402

ERR = 'org.example.ImageAccess.Error.'
NOT_BOUND = ERR + 'NotBound'
MODES = ('read-only', 'read-write', 'create')
WINDOW = 100  # calls in flight at once from one connection
UUID1 = '0e9a1c54-7f3b-4d6e-9a21-5c8b3e4f6a70'


def figure(text):
    sys.stderr.write('\nFIGURE: %s\n' % text)
    sys.stderr.flush()


def fnv1a(data, h=0xcbf29ce484222325):
    """The checksum of daemon/state.c: FNV-1a 64, whole 8-byte words xor-ed in as
    little-endian integers, the remaining bytes one at a time."""
    prime, mask = 0x100000001b3, (1 << 64) - 1
    end = len(data) // 8 * 8
    for i in range(0, end, 8):
        h = ((h ^ int.from_bytes(data[i:i + 8], 'little')) * prime) & mask
    for b in data[end:]:
        h = ((h ^ b) * prime) & mask
    return h


def journal_line(record):
    """A complete journal line with a valid checksum."""
    return record + b' %016x\n' % fnv1a(record)


def v(sig, value):
    return {'$v': [sig, value]}


class StateBase(testbed.IaTestCase):
    """Helpers: a populated registry, its full listing, the files, the latest start's log."""

    def path(self, name):
        return os.path.join(self.bed.state_dir, name)

    def read(self, name):
        with open(self.path(name), 'rb') as f:
            return f.read()

    def write(self, name, data):
        with open(self.path(name), 'wb') as f:
            f.write(data)

    def image_for(self, name, mode):
        """A path to grant in mode: read-only and read-write grants need an existing file,
        a create grant names one that is yet to be made."""
        path = os.path.join(self.bed.images_dir, name)
        if mode != 'create' and not os.path.exists(path):
            self.bed.make_image(name, b'data')
        return path

    def listing(self):
        """Everything the Manager interface shows: guests and each guest's grants."""
        guests = self.assertOk(self.bed.local.manager('ListGuests'))[0]
        return {'guests': guests,
                'grants': {g[0]: self.assertOk(self.bed.local.manager('ListGrants', 's',
                                                                      [g[0]]))[0]
                           for g in guests}}

    def last_start_log(self):
        return self.bed.log_text('daemon').rsplit('----- testbed: start #', 1)[-1]

    def manager(self, method, sig, args):
        return self.assertOk(self.bed.local.manager(method, sig, args), method)

    def populate(self):
        """vm1 bound to ia-emu1's uid with a grant of every mode (the create one used, so a
        created-file record exists), vm2 bound to a running process by pidfd, vm3 with
        nothing; names, descriptions and paths that need escaping."""
        b = self.bed
        self.images = {
            'ro': b.make_image('vm1/disk "ro" \\ one.img', b'read-only data'),
            'rw': b.make_image('vm1/disk rw.img', b'read-write data'),
            'create': os.path.join(b.images_dir, 'vm1', 'overlay new.qcow2'),
            'vm2': b.make_image('vm2/disk.img', b'vm2 data'),
        }
        self.manager('RegisterGuest', 'sa{sv}',
                     ['vm1', {'uid': v('u', 61002), 'uuid': v('s', UUID1),
                              'description': v('s', 'Guest "one" \\ ünïcode, tab-free')}])
        self.manager('RegisterGuest', 'sa{sv}', ['vm2', {'description': v('s', '')}])
        self.manager('RegisterGuest', 'sa{sv}', ['vm3:x+y_z.w-1', {}])
        for key, mode in (('ro', 'read-only'), ('rw', 'read-write'), ('create', 'create')):
            self.manager('GrantImage', 'sssa{sv}', ['vm1', self.images[key], mode, {}])
        self.manager('GrantImage', 'sssa{sv}', ['vm2', self.images['vm2'], 'read-only', {}])

        self.emu1 = b.agent('ia-emu1')
        r = self.emu1.open_image('vm1', self.images['create'], 'create', write=b'overlay')
        self.assertOk(r, 'create')
        self.created_ino = r.fd()['st_ino']
        self.emu2 = b.agent('ia-emu2')
        self.manager('BindProcess', 'sha{sv}', ['vm2', {'pidfd_of': self.emu2.pid}, {}])
        self.emu2.reconnect()  # only a connection made after the binding counts
        self.assertOk(self.emu2.open_image('vm2', self.images['vm2']), 'bound by pidfd')

    def assert_populated_works(self):
        """The populated guests work as before: uid binding, pidfd binding, every mode, the
        created-file record."""
        r = self.emu1.open_image('vm1', self.images['ro'], read=14)
        self.assertEqual(self.assertOk(r) and r.fd()['read'], b'read-only data')
        r = self.emu1.open_image('vm1', self.images['rw'], 'read-write', write=b'READ')
        self.assertOk(r)
        self.assertEqual(r.fd()['accmode'], 'O_RDWR')
        # the service created this file for vm1: opening it with create again is allowed
        r = self.emu1.open_image('vm1', self.images['create'], 'create', read=7)
        self.assertOk(r, 'reopen the created overlay')
        self.assertEqual((r.fd()['st_ino'], r.fd()['read']), (self.created_ino, b'overlay'))
        self.assertOk(self.emu2.open_image('vm2', self.images['vm2']), 'pidfd binding')

    def populated_listing(self):
        """The listing populate() must produce (checked once, then compared)."""
        listing = self.listing()
        names = [g[0] for g in listing['guests']]
        self.assertEqual(names, ['vm1', 'vm2', 'vm3:x+y_z.w-1'])
        self.assertEqual(sorted((p, m, d['created']) for p, m, d in listing['grants']['vm1']),
                         sorted([(self.images['ro'], 'read-only', False),
                                 (self.images['rw'], 'read-write', False),
                                 (self.images['create'], 'create', True)]))
        vm1 = dict(listing['guests'][0][1])
        self.assertEqual((vm1['uid'], vm1['uuid']), (61002, UUID1))
        self.assertEqual(dict(listing['guests'][1][1])['processes'], 1)
        return listing

    def assert_fail_closed(self, damaged, what):
        """The latest start found `damaged` (a file name) corrupt: it said so naming the
        file, loaded nothing, and kept the file as NAME.corrupt."""
        log = self.last_start_log()
        self.assertRegex(log, r'<err> State in .* is corrupt: %s' % re.escape(self.path(damaged)),
                         what)
        self.assertIn("as '%s.corrupt'" % self.path(damaged), log, what)
        self.assertEqual(self.listing(), {'guests': [], 'grants': {}}, what)
        self.assertTrue(os.path.exists(self.path(damaged + '.corrupt')), what)

    def assert_new_state_persists(self, what):
        """After a fail-closed start: new registrations work and survive kill -9."""
        name = 'fresh-%d' % random.randrange(10 ** 6)
        img = self.bed.make_image('%s.img' % name, b'fresh')
        self.manager('RegisterGuest', 'sa{sv}', [name, {'uid': v('u', 61003)}])
        self.manager('GrantImage', 'sssa{sv}', [name, img, 'read-only', {}])
        self.assertEqual(self.bed.restart_daemon(signal.SIGKILL), -signal.SIGKILL)
        self.assertNotIn('corrupt', self.last_start_log(), what)
        self.assertEqual([g[0] for g in self.listing()['guests']], [name], what)
        emu = self.bed.agent('ia-emu2')
        self.assertOk(emu.open_image(name, img), what)
        emu.exit()


# ---- (a), (b) survival ------------------------------------------------------------------------

class SurvivalTests(StateBase):

    def test_everything_survives_sigkill(self):
        self.populate()
        before = self.populated_listing()
        self.assertEqual(self.bed.restart_daemon(signal.SIGKILL), -signal.SIGKILL)
        self.assertNotIn('corrupt', self.last_start_log())
        self.assertEqual(self.listing(), before)
        self.assert_populated_works()

        # the created-file record (device and inode) survived: remove-created removes it
        self.manager('RevokeImage', 'ssa{sv}',
                     ['vm1', self.images['create'], {'remove-created': v('b', True)}])
        self.assertFalse(os.path.exists(self.images['create']))
        self.assertEqual(self.bed.restart_daemon(signal.SIGKILL), -signal.SIGKILL)
        self.assertEqual([p for p, _, _ in self.listing()['grants']['vm1']],
                         sorted([self.images['ro'], self.images['rw']]))
        # and a mode change and an unregistration too
        self.manager('GrantImage', 'sssa{sv}', ['vm1', self.images['ro'], 'read-write', {}])
        self.manager('UnregisterGuest', 's', ['vm3:x+y_z.w-1'])
        expected = self.listing()
        self.assertEqual(self.bed.restart_daemon(signal.SIGKILL), -signal.SIGKILL)
        self.assertEqual(self.listing(), expected)
        self.assertEqual([g[0] for g in expected['guests']], ['vm1', 'vm2'])

    def test_sigterm_exits_0_and_keeps_state(self):
        self.populate()
        before = self.populated_listing()
        self.assertEqual(self.bed.restart_daemon(signal.SIGTERM), 0)
        self.assertEqual(self.listing(), before)
        self.assert_populated_works()
        # a clean stop leaves a compact snapshot and a journal with only its header
        self.assertEqual(self.bed.kill_daemon(signal.SIGTERM), 0)
        self.assertEqual(self.read('journal').count(b'\n'), 1)
        self.assertTrue(self.read('state').startswith(b'image-access-state 2\n'))
        # snapshots of many sizes (the trailer counts lines: 1 to 2 digits, every leading
        # digit) load again after a clean stop
        self.bed.start_daemon()
        self.manager('UnregisterGuest', 's', ['vm3:x+y_z.w-1'])
        for i in range(40):
            self.manager('GrantImage', 'sssa{sv}',
                         ['vm2', self.image_for('vm2/extra-%02d.img' % i, MODES[i % 3]),
                          MODES[i % 3], {}])
            expected = self.listing()
            self.assertEqual(self.bed.restart_daemon(signal.SIGTERM), 0, i)
            self.assertNotIn('corrupt', self.last_start_log(), i)
            self.assertEqual(self.listing(), expected, i)
        self.assert_populated_works()


class AcknowledgedIsDurableTests(StateBase):

    def test_acknowledged_grants_survive_sigkill_at_random_moment(self):
        seed = int(os.environ.get('IA_TEST_SEED') or time.time())
        rnd = random.Random(seed)
        sys.stderr.write('\nrandom seed %d (set IA_TEST_SEED to repeat)\n' % seed)
        self.manager('RegisterGuest', 'sa{sv}', ['vm1', {}])
        mgr = self.bed.agent('root')  # a VM manager process: root needs no polkit round trip
        totals = {'sent': 0, 'acked': 0, 'present_unacked': 0, 'lost_unacked': 0}
        for rnd_no in range(6):
            n = 300
            kill_at = rnd.randrange(20, n)
            sent, replies = [], []
            for i in range(n):
                if i >= WINDOW:  # stay under the bus's 128 pending replies per connection
                    replies.append(sent[i - WINDOW][2].wait(40))
                mode = rnd.choice(MODES)
                path = self.image_for('r%d/disk-%03d.img' % (rnd_no, i), mode)
                sent.append((path, mode, mgr.call_async(
                    'GrantImage', 'sssa{sv}', ['vm1', path, mode, {}],
                    iface=testbed.MANAGER_IFACE, timeout=30)))
                if i == kill_at:
                    # Half the rounds kill at once, with a full window of grants in flight,
                    # so that the kill surely lands mid-stream even when the daemon is fast
                    # (or the sanitized build slow) enough to answer everything in 50 ms.
                    if rnd_no % 2:
                        time.sleep(rnd.uniform(0, 0.05))
                    self.assertEqual(self.bed.kill_daemon(signal.SIGKILL), -signal.SIGKILL)
                    break
            replies += [p.wait(40) for _, _, p in sent[len(replies):]]
            acked = {}
            for (path, mode, _), r in zip(sent, replies):
                if r.ok:
                    acked[path] = mode
                else:
                    self.assertIn(r.error, ('org.freedesktop.DBus.Error.NoReply',
                                            'org.freedesktop.DBus.Error.ServiceUnknown',
                                            'org.freedesktop.DBus.Error.NameHasNoOwner'), r)
            self.bed.start_daemon()
            self.assertNotIn('corrupt', self.last_start_log())
            present = {p: m for p, m, _ in self.listing()['grants']['vm1']
                       if '/r%d/' % rnd_no in p}
            missing = {p: m for p, m in acked.items() if present.get(p) != m}
            self.assertEqual(missing, {}, 'round %d: acknowledged grants lost or changed '
                             '(%d sent, %d acknowledged)' % (rnd_no, len(sent), len(acked)))
            self.assertLessEqual(set(present), {p for p, _, _ in sent})
            for p, m in present.items():
                self.assertEqual(m, dict((q, mm) for q, mm, _ in sent)[p])
            totals['sent'] += len(sent)
            totals['acked'] += len(acked)
            totals['present_unacked'] += len(set(present) - set(acked))
            totals['lost_unacked'] += len(sent) - len(acked) - len(set(present) - set(acked))
        figure('grants under kill -9: %(sent)d sent, %(acked)d acknowledged (all present '
               'after restart), %(present_unacked)d unacknowledged but present, '
               '%(lost_unacked)d unacknowledged and absent' % totals)
        # the kill really landed with requests in flight
        self.assertGreater(totals['sent'], totals['acked'])


# ---- (c), (d) a damaged snapshot --------------------------------------------------------------

class CorruptSnapshotTests(StateBase):

    def clean_stop(self):
        """Populate, stop cleanly (the exit writes the snapshot); returns (state, journal)."""
        self.populate()
        self.before = self.populated_listing()
        self.assertEqual(self.bed.kill_daemon(signal.SIGTERM), 0)
        state, journal = self.read('state'), self.read('journal')
        self.assertEqual(journal.count(b'\n'), 1, 'only the header after a clean stop')
        self.assertIn(b'guest "vm1"', state)
        return state, journal

    def start_with(self, state, journal):
        if self.bed.daemon_running():
            self.bed.kill_daemon(signal.SIGTERM)
        self.write('state', state)
        self.write('journal', journal)
        t0 = time.monotonic()
        self.bed.start_daemon()
        return time.monotonic() - t0

    def assert_nobody_served(self):
        self.assertError(self.emu1.open_image('vm1', self.images['ro']), NOT_BOUND)
        self.assertError(self.emu2.open_image('vm2', self.images['vm2']), NOT_BOUND)

    def test_flipped_byte_fails_closed(self):
        state, journal = self.clean_stop()
        mid = len(state) // 2
        flipped = state[:mid] + bytes([state[mid] ^ 0x01]) + state[mid + 1:]
        # a change that would matter if it were believed: vm1 bound to ia-emu2's uid
        rebound = state.replace(b' 61002\n', b' 61003\n')
        self.assertNotEqual(rebound, state)
        for what, damaged in (('byte %d flipped' % mid, flipped),
                              ('uid 61002 -> 61003', rebound)):
            dt = self.start_with(damaged, journal)
            self.assert_fail_closed('state', what)
            self.assertEqual(self.read('state.corrupt'), damaged, what)
            self.assertEqual(self.read('journal.corrupt'), journal, what)
            self.assert_nobody_served()
            self.assertError(self.bed.agent('ia-emu2').open_image('vm1', self.images['ro']),
                             NOT_BOUND, what)
            figure('%s: started fail-closed in %.0f ms' % (what, dt * 1000))
        self.assert_new_state_persists('after a corrupt snapshot')
        # the control: the undamaged files load in full
        self.start_with(state, journal)
        self.assertEqual(self.listing(), self.before)

    def test_truncated_snapshot_fails_closed(self):
        state, journal = self.clean_stop()
        lines = state.splitlines(keepends=True)
        offsets = sorted({0, 1, len(lines[0]) - 1, len(lines[0]), len(state) // 3,
                          len(state) // 2, len(state) - len(lines[-1]),  # no trailer
                          len(state) - len(lines[-1]) + 6,               # half a trailer
                          len(state) - 5, len(state) - 1})               # no final newline
        for off in offsets:
            self.start_with(state[:off], journal)
            self.assert_fail_closed('state', 'truncated at %d of %d' % (off, len(state)))
            self.assertEqual(self.read('state.corrupt'), state[:off])
            self.assert_nobody_served()
        self.assert_new_state_persists('after a truncated snapshot')
        self.start_with(state, journal)
        self.assertEqual(self.listing(), self.before)

    def test_snapshot_with_records_appended_fails_closed(self):
        # a line after the trailer (two snapshots glued, or a journal record in the wrong
        # file) is not silently ignored
        state, journal = self.clean_stop()
        self.start_with(state + b'guest "evil" - - 61003\n', journal)
        self.assert_fail_closed('state', 'line after the trailer')
        self.assertError(self.bed.agent('ia-emu2').open_image('evil', self.images['ro']),
                         NOT_BOUND)


# ---- (e) the journal --------------------------------------------------------------------------

class JournalTests(StateBase):

    def crash_with_journal(self):
        """Populate over a snapshot + journal: vm1 is in the snapshot (clean stop), the rest
        only in the journal (kill -9).  Returns (state, journal)."""
        self.manager('RegisterGuest', 'sa{sv}', ['vm0', {}])
        self.assertEqual(self.bed.restart_daemon(signal.SIGTERM), 0)
        self.populate()
        self.before = self.listing()
        self.assertEqual(self.bed.kill_daemon(signal.SIGKILL), -signal.SIGKILL)
        state, journal = self.read('state'), self.read('journal')
        self.assertGreater(journal.count(b'\n'), 8)
        # the test's checksum is the daemon's: every line verifies
        for line in journal.splitlines():
            self.assertEqual(journal_line(line[:-17]), line + b'\n')
        return state, journal

    def start_with(self, state, journal):
        if self.bed.daemon_running():
            self.bed.kill_daemon(signal.SIGTERM)
        self.write('state', state)
        self.write('journal', journal)
        self.bed.start_daemon()

    def test_torn_last_line_dropped(self):
        state, journal = self.crash_with_journal()
        last = journal.splitlines(keepends=True)[-1]
        grant = b'grant "vm0" "/srv/images/torn.img" create -'
        torn_tails = {
            'half a record': grant[:25],
            'a record without its checksum': grant,
            'a whole record but the newline': journal_line(grant)[:-1],
            'a copy of the last line but the newline': last[:-1],
        }
        for what, tail in torn_tails.items():
            self.start_with(state, journal + tail)
            log = self.last_start_log()
            self.assertNotIn('corrupt', log, what)
            self.assertNotIn('<err>', log, what)
            self.assertEqual(self.listing(), self.before, what)
            self.assertFalse(os.path.exists(self.path('journal.corrupt')), what)
            # the next record goes after the last complete one, not after the torn bytes
            after = self.image_for('after-torn.img', 'read-write')
            self.manager('GrantImage', 'sssa{sv}', ['vm0', after, 'read-write', {}])
            self.assertEqual(self.bed.restart_daemon(signal.SIGKILL), -signal.SIGKILL)
            self.assertNotIn('corrupt', self.last_start_log(), what)
            self.assertEqual([g[:2] for g in self.listing()['grants']['vm0']],
                             [[after, 'read-write']], what)
        self.start_with(state, journal)
        self.assert_populated_works()

    def test_damaged_middle_line_fails_closed(self):
        state, journal = self.crash_with_journal()
        lines = journal.splitlines(keepends=True)
        mid = len(lines) // 2
        bad_line = bytearray(lines[mid])
        bad_line[len(bad_line) // 3] ^= 0x01
        damaged = {
            'a garbage line': lines[:mid] + [b'garbage\n'] + lines[mid:],
            'a flipped byte': lines[:mid] + [bytes(bad_line)] + lines[mid + 1:],
            'an unknown record, checksum valid':
                lines[:mid] + [journal_line(b'frobnicate "vm1"')] + lines[mid:],
            'a record that does not apply, checksum valid':
                lines[:mid] + [journal_line(b'revoke "no-such-guest" "/x.img"')] + lines[mid:],
        }
        for what, new_lines in damaged.items():
            data = b''.join(new_lines)
            self.start_with(state, data)
            self.assert_fail_closed('journal', what)
            self.assertRegex(self.last_start_log(), r'%s:\d+: ' % re.escape(self.path('journal')),
                             'the line is named: ' + what)
            self.assertEqual(self.read('journal.corrupt'), data, what)
            self.assertError(self.emu1.open_image('vm1', self.images['ro']), NOT_BOUND, what)
        self.assert_new_state_persists('after a damaged journal')


# ---- a full file system under the state directory ---------------------------------------------

class DiskFullTests(StateBase):
    """The state directory on a small tmpfs that fills up: a change that cannot be recorded
    is refused (IOError) and undone in memory, so memory and disk never disagree, the
    journal is never left with half a record, and everything works again once there is
    room.  The tmpfs lives in a mount namespace held by a sleeping process, so it outlives
    daemon restarts; the daemon enters it with nsenter, the test reaches it through
    /proc/HOLDER/root."""

    daemon_autostart = False

    def test_full_disk_refuses_changes_and_never_diverges(self):
        fs_dir = os.path.join(self.bed.runtime_dir, 'tmp', 'smallfs')
        os.mkdir(fs_dir, 0o700)
        holder = self.bed._spawn(
            'statefs-holder',
            ['unshare', '-m', '--propagation', 'private', '--', '/bin/sh', '-c',
             'mount -t tmpfs -o size=256k,mode=0700 ia-small-state "$0" && echo mounted && '
             'exec sleep 100000', fs_dir], self.bed.base_env())
        self.bed.wait_log('statefs-holder', 'mounted')
        seen = '/proc/%d/root%s' % (holder.pid, fs_dir)  # the tmpfs, from out here
        self.bed.daemon_wrapper = ['nsenter', '-t', str(holder.pid), '-m', '--']
        self.bed.start_daemon(['--state-dir=' + fs_dir])
        self.assertTrue(os.path.exists(os.path.join(seen, 'journal')))
        self.manager('RegisterGuest', 'sa{sv}', ['vm1', {'uid': v('u', 61002)}])

        # fill the file system up to one page
        st = os.statvfs(seen)
        with open(os.path.join(seen, 'filler'), 'wb') as f:
            f.write(b'\0' * ((st.f_bavail - 1) * st.f_frsize))
        acked, refused = [], []
        for i in range(200):
            path = self.image_for('full/disk-%03d.img' % i, 'read-only')
            r = self.bed.local.manager('GrantImage', 'sssa{sv}', ['vm1', path, 'read-only', {}])
            if r.ok:
                acked.append(path)
            else:
                self.assertError(r, ERR + 'IOError')
                self.assertIn('No space left on device', r.message)
                refused.append(path)
                if len(refused) >= 5:
                    break
        self.assertTrue(acked and refused, (len(acked), len(refused)))
        # a record longer than what the refused grants needed is refused too
        self.assertError(self.bed.local.manager(
            'RegisterGuest', 'sa{sv}', ['vm2', {'description': v('s', 'x' * 1000)}]),
            ERR + 'IOError')
        expected = self.listing()
        self.assertEqual([g[0] for g in expected['grants']['vm1']], sorted(acked))
        self.assertEqual([g[0] for g in expected['guests']], ['vm1'])
        figure('state on a full tmpfs: %d grants recorded, then refused with IOError: %s'
               % (len(acked), r.message))

        # the journal holds whole records only, and loads to exactly what memory held
        journal = open(os.path.join(seen, 'journal'), 'rb').read()
        self.assertTrue(journal.endswith(b'\n'))
        self.assertEqual(self.bed.restart_daemon(signal.SIGKILL), -signal.SIGKILL)
        self.assertNotIn('corrupt', self.last_start_log())
        self.assertEqual(self.listing(), expected)
        # a clean stop cannot write its snapshot now: it says so, exits 0, loses nothing
        self.assertEqual(self.bed.restart_daemon(signal.SIGTERM), 0)
        self.assertRegex(self.bed.log_text('daemon'), r'Failed to write a snapshot at exit')
        self.assertEqual(self.listing(), expected)
        self.assertEqual([n for n in os.listdir(seen) if n.startswith('.')], [],
                         'no temp file left behind')

        # room again: changes are recorded again
        os.unlink(os.path.join(seen, 'filler'))
        for path in refused:
            self.manager('GrantImage', 'sssa{sv}', ['vm1', path, 'read-only', {}])
        self.manager('RegisterGuest', 'sa{sv}', ['vm2', {}])
        expected = self.listing()
        self.assertEqual(self.bed.restart_daemon(signal.SIGKILL), -signal.SIGKILL)
        self.assertEqual(self.listing(), expected)
        self.assertEqual(len(expected['grants']['vm1']), len(acked) + len(refused))
        emu = self.bed.agent('ia-emu1')
        self.assertOk(emu.open_image('vm1', acked[0]))
        self.assertOk(emu.open_image('vm1', refused[0]))
        self.assertEqual(self.bed.kill_daemon(signal.SIGTERM), 0)


# ---- (f) a state directory that cannot be used ------------------------------------------------

class UnusableStateDirTests(StateBase):
    daemon_autostart = False

    def run_daemon(self, state_dir, wrapper=()):
        """Run image-accessd until it exits (at most 10 s); returns (status, output)."""
        if not self.bed.daemon_path:
            self.skipTest('IA_DAEMON is not set')
        argv = list(wrapper) + [self.bed.daemon_path, '--bus-address=' + self.bed.address,
                                '--state-dir=' + state_dir, '--log-level=debug']
        p = subprocess.Popen(argv, env=self.bed.base_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, process_group=0)
        try:
            out, _ = p.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            out, _ = p.communicate()
            self.fail('image-accessd runs on with an unusable state directory %s:\n%s'
                      % (state_dir, out.decode(errors='replace')))
        self.assertFalse(self.bed.bus.name_has_owner(testbed.BUS_NAME))
        return p.returncode, out.decode(errors='replace')

    def assert_refuses(self, state_dir, reason_re, wrapper=()):
        rc, out = self.run_daemon(state_dir, wrapper)
        self.assertNotEqual(rc, 0, out)
        self.assertRegex(out, r"<err> Failed to open the state directory '%s': %s"
                         % (re.escape(state_dir), reason_re))
        self.assertNotIn('Serving', out)
        return out

    def readonly(self, path):
        """A wrapper running the daemon in a mount namespace where path is read-only."""
        return ['unshare', '-m', '--propagation', 'private', '--', '/bin/sh', '-c',
                'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"', path]

    def test_unusable_state_dir_stops_the_daemon(self):
        base = os.path.join(self.bed.runtime_dir, 'tmp')
        a_file = os.path.join(base, 'a-file')
        with open(a_file, 'w') as f:
            f.write('in the way\n')
        self.assert_refuses(a_file, 'Not a directory')
        self.assert_refuses(os.path.join(a_file, 'state'), 'Not a directory')
        self.assert_refuses(os.path.join(base, 'missing', 'state'), 'No such file or directory')

        # a state directory on a read-only file system: existing, with state in it
        ro_state = os.path.join(base, 'ro-state')
        os.mkdir(ro_state, 0o700)
        with open(os.path.join(ro_state, 'journal'), 'wb') as f:
            f.write(journal_line(b'image-access-journal 1 1'))
        self.assert_refuses(ro_state, 'Read-only file system', self.readonly(ro_state))
        # not existing yet, under a read-only parent
        ro_parent = os.path.join(base, 'ro-parent')
        os.mkdir(ro_parent, 0o755)
        self.assert_refuses(os.path.join(ro_parent, 'state'), 'Read-only file system',
                            self.readonly(ro_parent))
        # owned by someone else, who could swap the files under the daemon
        foreign = os.path.join(base, 'foreign')
        os.mkdir(foreign, 0o700)
        os.chown(foreign, 61001, 61001)
        self.assert_refuses(foreign, 'Operation not permitted')
        # a symlink to a good directory is refused too (O_NOFOLLOW)
        good = os.path.join(base, 'good')
        os.mkdir(good, 0o700)
        os.symlink(good, os.path.join(base, 'link'))
        self.assert_refuses(os.path.join(base, 'link'),
                            '(Not a directory|Too many levels of symbolic links)')

        # the control: the same command line with a usable directory serves
        self.bed.start_daemon(['--state-dir=' + good])
        self.assertOk(self.bed.local.manager('ListGuests'))


if __name__ == '__main__':
    testbed.main()

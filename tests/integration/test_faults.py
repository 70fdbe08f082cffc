#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""
image-accessd when the world around it fails: the bus dies, the service itself is killed
again and again under load, an image's file system hangs, the disk fills up.  polkit faults and
damaged state files are test_polkit.py's and test_state.py's.

Each test prints a line "FIGURES test: {...}" with what it measured.
"""

import errno
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import attackhelper  # noqa: E402
import testbed  # noqa: E402
from attackhelper import Helper, figures  # noqa: E402

E = 'org.example.ImageAccess.Error.'
NO_SPACE = E + 'NoSpace'
IO_ERROR = E + 'IOError'
CLEAN_WHEN_DOWN = {'org.freedesktop.DBus.Error.NoReply', 'org.freedesktop.DBus.Error.ServiceUnknown',
                   'org.freedesktop.DBus.Error.NameHasNoOwner'}
# What the state directory may hold after any fault: the snapshot, the journal and the lock file
# (kept, as an open file description lock needs no clean-up), never a temporary file.
STATE_FILES = {'state', 'journal', 'lock'}


class FaultTestCase(testbed.IaTestCase):
    """vm1 is bound to ia-emu1's uid and granted a.img read-only."""

    def setUp(self):
        super().setUp()
        self.emu_user = self.bed.users['ia-emu1']
        self.ok('RegisterGuest', 'sa{sv}', ['vm1', {'uid': {'$v': ['u', self.emu_user.uid]}}])
        self.img = self.bed.make_image('a.img', b'image a')
        self.ok('GrantImage', 'sssa{sv}', ['vm1', self.img, 'read-only', {}])
        self.ctl = attackhelper.make_user_dir(os.path.join(self.bed.runtime_dir, 'tmp', 'ctl'),
                                              self.emu_user)

    def ok(self, method, sig, args, **kw):
        return self.assertOk(self.bed.local.manager(method, sig, args, **kw), '%s%r' % (method, args))

    def tables(self):
        """Guests (without the live 'processes' count) and their grants."""
        guests = self.assertOk(self.bed.local.manager('ListGuests'))[0]
        out = {}
        for name, props in guests:
            props = dict(props)
            props.pop('processes', None)
            grants = self.assertOk(self.bed.local.manager('ListGrants', 's', [name]))[0]
            out[name] = (props, sorted((p, m, dict(x)) for p, m, x in grants))
        return out

    def state_dir_files(self):
        return set(os.listdir(self.bed.state_dir))


# ---- the bus dies -------------------------------------------------------------------------------

class BusCrashTests(FaultTestCase):

    def test_bus_killed(self):
        """dbus-daemon killed: the service exits by itself with a non-zero status (so that
        Restart=on-failure starts it again) and says why; its state is intact, and on a new
        bus the restarted service has every guest and grant, the created file included."""
        self.ok('RegisterGuest', 'sa{sv}', ['vm2', {'uuid': {'$v': ['s', '6a1b4a0e-2b5c-4d0e-9f3a-1c2d3e4f5a6b']},
                                                   'description': {'$v': ['s', 'second guest']}}])
        b = self.bed.make_image('b.img', b'image b')
        new = os.path.join(self.bed.images_dir, 'new.qcow2')
        self.ok('GrantImage', 'sssa{sv}', ['vm1', b, 'read-write', {}])
        self.ok('GrantImage', 'sssa{sv}', ['vm1', new, 'create', {}])
        self.ok('GrantImage', 'sssa{sv}', ['vm2', b, 'read-only', {}])
        emu = self.bed.agent('ia-emu1')
        self.assertOk(emu.open_image('vm1', new, 'create', write=b'qcow'))
        before = self.tables()
        self.assertEqual([p for p, _, x in before['vm1'][1] if x['created']], [new])
        since = len(self.bed.log_text('daemon'))
        t0 = time.monotonic()
        self.bed.kill_bus(signal.SIGKILL)
        rc = self.bed.wait_daemon_exit(10)
        waited = time.monotonic() - t0
        self.assertIsNotNone(rc, 'the service did not exit after losing its bus')
        self.assertGreater(rc, 0, 'a non-zero status, so that systemd restarts it (got %s)' % rc)
        log = self.bed.log_text('daemon')[since:]
        self.assertRegex(log, r'(?i)lost .*bus|bus .*(disconnect|closed|lost)',
                         'the log says why it exits:\n' + log)
        self.assertLessEqual(self.state_dir_files(), STATE_FILES)
        self.bed.restart_bus()
        self.bed.start_daemon()
        self.assertEqual(self.tables(), before)
        emu = self.bed.agent('ia-emu1')
        self.assertEqual(emu.open_image('vm1', self.img, read=7).fd()['read'], b'image a')
        self.assertEqual(emu.open_image('vm1', new, 'create', read=4).fd()['read'], b'qcow')
        figures(self, exit_status=rc, exit_seconds=round(waited, 3),
                guests=len(before), grants=sum(len(g) for _, g in before.values()))


# ---- the service killed under load -----------------------------------------------------------

class KillStormTests(FaultTestCase):
    """A VM manager registers and grants (ia-attack manager-loop), an emulator opens
    (open-loop), and the service is killed in between."""

    def start_load(self):
        b = self.bed.make_image('b.img', b'image b')
        newdir = os.path.join(self.bed.images_dir, 'new')
        os.mkdir(newdir)
        self.pause = os.path.join(self.ctl, 'pause')
        self.stop_file = os.path.join(self.ctl, 'stop')
        self.acks = os.path.join(self.ctl, 'manager.out')
        self.manager_loop = Helper(self, 'root', 'manager-loop', image=self.img, image2=b,
                                   dir=newdir, pause=self.pause, until=self.stop_file,
                                   max_seconds=110, timeout=115, stdout_file=self.acks)
        st = os.stat(self.img)
        self.opener = Helper(self, 'ia-emu1', 'open-loop', guest='vm1', path=self.img,
                             mode='read-only', dev=st.st_dev, ino=st.st_ino, in_flight=4,
                             until=self.stop_file, max_seconds=110, timeout=115)
        self.paths = {1: self.img, 2: b}
        self.newdir = newdir

    def acked(self):
        with open(self.acks) as f:
            return [tuple(json.loads(line)['ack']) for line in f
                    if line.endswith('\n') and '"ack"' in line]

    def expected(self, acks, pending):
        """guest → {path: mode} after the acknowledged steps; `pending` (k, step) may or may
        not have happened: returns (expected, ambiguous guest or None)."""
        exp = {}
        for k, step in acks:
            g = 'ks%d' % k
            if step == 0:
                exp[g] = {}
            elif step in (1, 2):
                exp[g][self.paths[step]] = ('read-only', 'read-write')[step - 1]
            elif step == 3:
                exp[g][os.path.join(self.newdir, 'new-%d.img' % k)] = 'create'
            else:
                exp[g].pop(self.paths[2], None)
        return exp, ('ks%d' % pending[0]) if pending else None

    def pause_loop(self):
        open(self.pause, 'w').close()
        paused = self.pause + '.paused'
        deadline = time.monotonic() + 30
        while not os.path.exists(paused):
            self.assertLess(time.monotonic(), deadline, 'the manager loop did not pause')
            if self.manager_loop.popen.poll() is not None:
                self.fail('the manager loop exited: %s' % self.manager_loop.output())
            time.sleep(0.002)
        with open(paused) as f:
            return tuple(json.load(f)['pending'])

    def resume_loop(self):
        os.unlink(self.pause)

    def verify(self, full):
        """Every acknowledged registration and grant is there (and every acknowledged revoke
        is not); only the one call in progress may have happened or not."""
        pending = self.pause_loop()
        try:
            exp, ambiguous = self.expected(self.acked(), pending)
            guests = {name: props for name, props in
                      self.assertOk(self.bed.local.manager('ListGuests'))[0]}
            for g, grants in exp.items():
                if g == ambiguous:
                    continue
                self.assertIn(g, guests, 'acknowledged registration of %s lost' % g)
                self.assertEqual(guests[g]['grants'], len(grants), 'grants of %s' % g)
            names = list(exp) if full else [g for g in list(exp)[-3:]]
            for g in names:
                if g == ambiguous or g not in guests:
                    continue
                got = {p: m for p, m, _ in self.assertOk(self.bed.local.manager('ListGrants', 's', [g]))[0]}
                self.assertEqual(got, exp[g], 'grants of %s' % g)
            extra = set(guests) - set(exp) - {'vm1', ambiguous}
            self.assertEqual(extra, set(), 'guests that were never acknowledged')
            return len(exp), sum(len(x) for x in exp.values())
        finally:
            self.resume_loop()

    def finish_load(self):
        open(self.stop_file, 'w').close()
        m = self.manager_loop.result()
        o = self.opener.result()
        self.assertEqual(o['wrong_allows'], 0, o['wrong'])
        self.assertEqual(o['unanswered'], 0, o)
        self.assertLessEqual(set(o['errors']), CLEAN_WHEN_DOWN, o['errors'])
        self.assertLessEqual(set(m['errors']), CLEAN_WHEN_DOWN, m['errors'])
        # An emulator's open waits for polkit, whose checks polkitd 122 can stall for 15 s
        # (testbed-facts.md); [Polkit] TimeoutSec (25 s) bounds that.  Root's manager calls
        # never ask polkit.
        self.assertLess(o['max_latency'], 30, 'an open hung')
        self.assertLess(m['max_latency'], 10, 'a manager call hung')
        return m, o

    def test_sigkill_100_times_under_load(self):
        """SIGKILL 100 times at random moments of the load: after each restart every
        acknowledged registration and grant is there, the state dir holds nothing but its
        two files, and the clients saw only clean errors, none hung."""
        self.start_load()
        rng = random.Random(os.getpid())
        strays, t0, slowest = [], time.monotonic(), (0, '')
        for i in range(100):
            t1 = time.monotonic()
            time.sleep(rng.uniform(0.01, 0.12))
            self.bed.kill_daemon(signal.SIGKILL)
            left = self.state_dir_files() - STATE_FILES
            if left:
                strays.append(sorted(left))     # a compaction killed midway: cleaned at start
            self.bed.start_daemon()
            self.assertLessEqual(self.state_dir_files(), STATE_FILES,
                                 'after restart %d' % (i + 1))
            t2 = time.monotonic()
            guests, grants = self.verify(full=(i % 25 == 24))
            t3 = time.monotonic()
            if t3 - t1 > slowest[0]:
                slowest = (t3 - t1, 'iteration %d: restart %.3f s, verify %.3f s' % (i, t2 - t1, t3 - t2))
        sys.stderr.write('slowest %.3f s: %s\n' % slowest)
        m, o = self.finish_load()
        guests, grants = self.verify_final()
        figures(self, kills=100, seconds=round(time.monotonic() - t0, 1),
                acknowledged_manager_calls=m['acked'], guests=guests, grants=grants,
                manager_errors=m['errors'], opens=o['calls'], opened=o['ok'],
                open_errors=o['errors'], temp_files_left_by_a_kill=len(strays))

    def verify_final(self):
        exp, _ = self.expected(self.acked(), None)
        tables = self.tables()
        for g, grants in exp.items():
            self.assertEqual({p: m for p, m, _ in tables[g][1]}, grants, g)
        return len(exp), sum(len(x) for x in exp.values())

    def test_sigterm_under_load(self):
        """SIGTERM under the same load: exit status 0, a clean snapshot, and everything
        acknowledged is there after the restart."""
        self.start_load()
        time.sleep(1.0)
        since = len(self.bed.log_text('daemon'))
        t0 = time.monotonic()
        rc = self.bed.kill_daemon(signal.SIGTERM)
        took = time.monotonic() - t0
        self.assertEqual(rc, 0)
        self.assertIn('Received Terminated, exiting', self.bed.log_text('daemon')[since:])
        # sd-bus closes the connection as the loop ends: that is not losing the bus.
        self.assertNotIn('Lost the connection', self.bed.log_text('daemon')[since:])
        self.assertLessEqual(self.state_dir_files(), STATE_FILES)
        self.assertIn('state', self.state_dir_files(), 'a snapshot was written at exit')
        self.bed.start_daemon()
        self.verify(full=True)
        m, o = self.finish_load()
        guests, grants = self.verify_final()
        figures(self, exit_status=rc, exit_seconds=round(took, 3), guests=guests, grants=grants,
                manager_errors=m['errors'], open_errors=o['errors'])


# ---- a hung file system ------------------------------------------------------------------------

class HungFsTests(FaultTestCase):

    def setUp(self):
        attackhelper.private_mounts()
        super().setUp()
        import fusehang
        self.mnt = os.path.join(self.bed.images_dir, 'hung')
        os.mkdir(self.mnt)
        self.fs = fusehang.HangFS(self.mnt, {'disk.img': 1 << 20, 'other.img': 4096})
        self.addCleanup(self.fs.close)
        self.hung = os.path.join(self.mnt, 'disk.img')
        self.ok('GrantImage', 'sssa{sv}', ['vm1', self.hung, 'read-only', {}])
        self.ok('RegisterGuest', 'sa{sv}', ['vm2', {'uid': {'$v': ['u', self.bed.users['ia-emu2'].uid]}}])
        self.b = self.bed.make_image('b.img', b'image b')
        self.ok('GrantImage', 'sssa{sv}', ['vm2', self.b, 'read-write', {}])
        self.emu = self.bed.agent('ia-emu1')
        self.emu2 = self.bed.agent('ia-emu2')
        r = self.emu.open_image('vm1', self.hung)       # answers, before it hangs
        self.assertOk(r)
        self.emu.close_fd(r.fd()['fd'])
        self.registered = 0

    def others_served(self, rounds=10, same_guest=True):
        """Other callers' opens and manager calls, each answered within 1 s (and, with
        same_guest, the hung guest's opens of another image); returns the slowest, in
        seconds."""
        worst = 0
        for i in range(rounds):
            self.registered += 1
            name = 'x%d' % self.registered
            for call in (lambda: self.emu2.open_image('vm2', self.b, 'read-write'),
                         lambda: self.emu.open_image('vm1', self.img) if same_guest else
                         self.emu2.open_image('vm2', self.b, 'read-only'),
                         lambda: self.bed.local.manager('ListGuests'),
                         lambda: self.bed.local.manager('GrantImage', 'sssa{sv}',
                                                        ['vm2', self.img, 'read-only', {}]),
                         lambda: self.bed.local.manager('RegisterGuest', 'sa{sv}', [name, {}])):
                t0 = time.monotonic()
                self.assertOk(call())
                worst = max(worst, time.monotonic() - t0)
        self.assertLess(worst, 1.0, 'a call of another caller waited for the hung file system')
        return worst

    def test_hung_lookup_stalls_only_its_own_request(self):
        """The file system stops answering lookups: the OpenImage and the GrantImage of its
        files wait, nobody else does; when it answers again they complete, and the service
        carries on."""
        self.fs.hang('lookup', 'getattr')
        stalled_open = self.emu.call_async('OpenImage', 'sssa{sv}', ['vm1', self.hung, 'read-only', {}])
        stalled_grant = self.bed.agent('root').call_async(
            'GrantImage', 'sssa{sv}', ['vm1', os.path.join(self.mnt, 'other.img'), 'read-only', {}],
            iface=testbed.MANAGER_IFACE)
        deadline = time.monotonic() + 5
        while self.fs.held_count() < 2:
            self.assertLess(time.monotonic(), deadline, 'the requests did not reach the file system')
            time.sleep(0.01)
        worst = self.others_served()
        self.assertEqual(self.fs.held_count(), 2, 'still stalled')
        self.fs.resume()
        r = stalled_open.wait(10)
        self.assertOk(r)
        self.assertEqual(r.fd()['st_ino'], 2)
        self.emu.close_fd(r.fd()['fd'])     # before the file system goes away
        self.assertOk(stalled_grant.wait(10))
        self.others_served(2)
        figures(self, stalled=2, slowest_other_call_s=round(worst, 3))

    def test_one_guest_cannot_take_every_worker(self):
        """An emulator whose image hangs asks for it again and again (64 opens in flight, more
        than the service has threads): its requests wait, but the other guest's opens and
        the manager's calls are still answered within 1 s."""
        self.fs.hang('lookup', 'getattr', 'open')
        stalled = [self.emu.call_async('OpenImage', 'sssa{sv}', ['vm1', self.hung, 'read-only', {}])
                   for _ in range(64)]
        deadline = time.monotonic() + 5
        while self.fs.held_count() < 1:
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.01)
        time.sleep(0.5)
        # (vm1's own opens of other images wait behind its hung ones: its share is taken)
        worst = self.others_served(same_guest=False)
        self.fs.resume()
        answered = [p.wait(20) for p in stalled]
        self.assertEqual([r.error for r in answered if not r.ok], [])
        for r in answered:
            self.emu.close_fd(r.fd()['fd'])
        figures(self, stalled=len(stalled), slowest_other_call_s=round(worst, 3))

    def test_hung_open_then_unmount_then_sigterm(self):
        """The file system stops answering open(): the OpenImage waits, others are served;
        the connection is aborted (the file system is gone): the waiting open fails by
        name and the service recovers.  Then it hangs again, and SIGTERM still ends the
        service at once, leaving the hung thread to the process's exit."""
        self.fs.hang('open')
        stalled = self.emu.call_async('OpenImage', 'sssa{sv}', ['vm1', self.hung, 'read-only', {}])
        deadline = time.monotonic() + 5
        while self.fs.held_count() < 1:
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.01)
        worst = self.others_served()
        # a second mount takes the place of the first: abort the connection, detach
        self.fs.close()
        r = stalled.wait(10)
        self.assertEqual(r.error, IO_ERROR, r)
        self.assertEqual(r.fds, [])
        self.others_served(2)
        self.assertEqual(self.emu.open_image('vm1', self.hung).error, E + 'NotFound')

        import fusehang
        fs2 = fusehang.HangFS(self.mnt, {'disk.img': 1 << 20})
        self.addCleanup(fs2.close)
        fs2.hang('lookup')
        hung = [self.emu.call_async('OpenImage', 'sssa{sv}', ['vm1', self.hung, 'read-only', {}])
                for _ in range(3)]
        # the kernel sends one LOOKUP for a name however many wait for it
        deadline = time.monotonic() + 5
        while fs2.held_count() < 1:
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.01)
        time.sleep(0.3)
        # SIGTERM: the service stops serving at once, closes its bus connection (callers
        # get NoReply, the name is free for a new instance) and does not wait for the hung
        # job.  A thread whose request the file system has already taken cannot be killed
        # by anyone, not even SIGKILL (the kernel's FUSE, like a hard NFS mount, waits it
        # out), so the process itself ends only when the file system lets the thread go.
        since = len(self.bed.log_text('daemon'))
        t0 = time.monotonic()
        self.bed.signal_daemon(signal.SIGTERM)
        while self.bed.bus.name_has_owner(testbed.BUS_NAME):
            self.assertLess(time.monotonic() - t0, 5.0, 'the service did not let go of its name')
            time.sleep(0.01)
        released = time.monotonic() - t0
        for p in hung:
            self.assertIn(p.wait(10).error, CLEAN_WHEN_DOWN)
        self.assertIn('Received Terminated, exiting', self.bed.log_text('daemon')[since:])
        fs2.close()
        rc = self.bed.wait_daemon_exit(10)
        took = time.monotonic() - t0
        self.assertEqual(rc, 0, 'exit status once the file system let go')
        self.assertLessEqual(self.state_dir_files(), STATE_FILES)
        self.bed.start_daemon()
        self.assertOk(self.emu.open_image('vm1', self.img))
        figures(self, slowest_other_call_s=round(worst, 3), name_released_after_sigterm_s=round(released, 3),
                exited_after_unhang_s=round(took, 3))


# ---- a full disk --------------------------------------------------------------------------------

class DiskFullTests(FaultTestCase):

    def setUp(self):
        attackhelper.private_mounts()
        super().setUp()
        self.full = os.path.join(self.bed.images_dir, 'full')
        os.mkdir(self.full)
        subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=256k,nr_inodes=32,mode=0755',
                        'ia-full', self.full], check=True)
        self.addCleanup(subprocess.run, ['umount', '-l', self.full])

    def fill(self):
        """Use up every inode and every block of the small file system."""
        n = 0
        while True:
            try:
                fd = os.open(os.path.join(self.full, 'filler-%d' % n), os.O_CREAT | os.O_WRONLY, 0o600)
            except OSError as e:
                self.assertEqual(e.errno, errno.ENOSPC)
                break
            n += 1
            if n == 1:
                try:
                    while True:
                        os.write(fd, b'x' * 65536)
                except OSError as e:
                    self.assertEqual(e.errno, errno.ENOSPC)
            os.close(fd)
        return n

    def test_create_on_a_full_disk(self):
        """A create on a full file system: NoSpace, no file left behind, the grant not
        marked as created; with room again the same call creates the file."""
        new = os.path.join(self.full, 'overlay.qcow2')
        self.ok('GrantImage', 'sssa{sv}', ['vm1', new, 'create', {}])
        fillers = self.fill()
        before = sorted(os.listdir(self.full))
        emu = self.bed.agent('ia-emu1')
        for options in ({}, {'direct': True}, {'nonblock': True}):
            r = emu.open_image('vm1', new, 'create', options=options)
            self.assertEqual(r.error, NO_SPACE, r)
            self.assertEqual(r.fds, [])
            self.assertEqual(sorted(os.listdir(self.full)), before, 'nothing left behind')
        grants = {p: x for p, _, x in self.assertOk(self.bed.local.manager('ListGrants', 's', ['vm1']))[0]}
        self.assertFalse(grants[new]['created'])
        os.unlink(os.path.join(self.full, 'filler-%d' % (fillers - 1)))
        r = emu.open_image('vm1', new, 'create')
        self.assertOk(r)
        st = os.stat(new)
        self.assertEqual((st.st_uid, st.st_mode & 0o7777, st.st_size), (0, 0o600, 0))
        self.assertEqual(r.fd()['st_ino'], st.st_ino)
        figures(self, fillers=fillers)


if __name__ == '__main__':
    testbed.main()

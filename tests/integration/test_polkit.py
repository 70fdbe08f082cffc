#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""
image-accessd against polkit under load and failure: many callers at once (the daemon caps
CheckAuthorization calls in flight below dbus-daemon's 128 pending replies per connection
and queues the rest), polkitd absent, killed mid-check, hung, erroring or answering garbage
(a fake authority, fake_polkitd.py), callers that vanish while their checks are queued, and
the per-caller limit.  The rule throughout: polkit not answering yes is a denial, in bounded
time, and nothing that does not need polkit waits for it.

Figures (times to deny, load throughput) are printed as "FIGURE: ..." lines on stderr.
"""

import os
import shutil
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testbed  # noqa: E402

ERR = 'org.example.ImageAccess.Error.'
AUTH_UNAVAILABLE = ERR + 'AuthorizationUnavailable'
LIMIT_EXCEEDED = ERR + 'LimitExceeded'
NOT_GRANTED = ERR + 'NotGranted'
NOT_BOUND = ERR + 'NotBound'
ACCESS_DENIED = 'org.freedesktop.DBus.Error.AccessDenied'
INTERACTIVE_REQUIRED = 'org.freedesktop.DBus.Error.InteractiveAuthorizationRequired'
BUS_LIMITS_EXCEEDED = 'org.freedesktop.DBus.Error.LimitsExceeded'
OPEN_ACTION = 'org.example.imageaccess.open-image'
FAKE_CONTROL_IFACE = 'org.example.FakePolkit'
FAKE_POLKITD_PY = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fake_polkitd.py')

# Three guests, each bound to the uid of its own emulator: polkit is really asked (uid 0
# would be authorized without asking).
EMULATORS = [('vm1', 'ia-emu1'), ('vm2', 'ia-emu2'), ('vm3', 'ia-desk')]


def figure(text):
    sys.stderr.write('\nFIGURE: %s\n' % text)
    sys.stderr.flush()


class FakePolkit:
    """fake_polkitd.py running as user polkitd in place of the real polkitd."""

    def __init__(self, bed, mode):
        self.bed = bed
        if bed.polkitd_pid:
            bed.kill_polkitd()
        # run as polkitd: give it a copy it can surely read (like agent.py)
        path = os.path.join(bed.runtime_dir, 'fake_polkitd.py')
        shutil.copyfile(FAKE_POLKITD_PY, path)
        os.chmod(path, 0o644)
        argv = ['setpriv', '--reuid=polkitd', '--regid=polkitd', '--clear-groups',
                '--pdeathsig=SIGKILL', '--', testbed.PYTHON, path, bed.address, mode]
        env = bed.base_env(HOME=bed.runtime_dir, PYTHONDONTWRITEBYTECODE='1')
        # _spawn: the bed logs it, stops it at teardown and finds it if it survives
        self.child = bed._spawn('fake-polkitd', argv, env)
        deadline = time.monotonic() + 10
        while not bed.bus.name_has_owner(testbed.POLKIT_NAME):
            if not self.child.alive():
                raise testbed.TestBedError('fake polkitd exited (status %s):\n%s'
                                           % (self.child.popen.returncode,
                                              bed.log_text('fake-polkitd')))
            if time.monotonic() > deadline:
                raise testbed.TestBedError('fake polkitd did not own its name')
            time.sleep(0.005)

    def _call(self, method, sig='', args=()):
        return self.bed.bus.call_blocking(testbed.POLKIT_NAME, testbed.POLKIT_PATH,
                                          FAKE_CONTROL_IFACE, method, sig, list(args),
                                          timeout=10)

    def set_mode(self, mode):
        self._call('SetMode', 's', [mode])

    def release(self, mode='allow'):
        return int(self._call('Release', 's', [mode]))

    def stats(self):
        return self._call('Stats')

    def wait_outstanding(self, n, timeout=20.0):
        deadline = time.monotonic() + timeout
        while True:
            s = self.stats()
            if int(s['outstanding']) >= n:
                return s
            if time.monotonic() > deadline:
                raise AssertionError('fake polkitd holds %d checks, expected %d'
                                     % (int(s['outstanding']), n))
            time.sleep(0.01)


class Base(testbed.IaTestCase):
    def setup_guest(self, guest, user, mode='read-only'):
        """Register guest bound to user's uid, with one image granted; returns its path."""
        uid = self.bed.users[user].uid
        self.assertOk(self.bed.local.manager(
            'RegisterGuest', 'sa{sv}',
            [guest, {'uid': {'$v': ['u', uid]},
                     'uuid': {'$v': ['s', '6f1c2a3e-0000-4000-8000-%012d' % uid]}}]))
        return self.grant_images(guest, 1, 'main', mode)[0]

    def grant_images(self, guest, n, tag='img', mode='read-only'):
        """n more images for guest, all holding 'image of GUEST', granted.  The daemon may
        reuse polkit's yes for the same connection and question for a few seconds
        (DecisionCacheSec), so a test that needs polkit asked uses an image not opened
        before on that connection, or a new connection."""
        paths = []
        for i in range(n):
            path = self.bed.make_image('%s/%s-%d.img' % (guest, tag, i),
                                       ('image of %s' % guest).encode())
            self.assertOk(self.bed.local.manager('GrantImage', 'sssa{sv}',
                                                 [guest, path, mode, {}]))
            paths.append(path)
        return paths

    def open_async(self, agent, guest, path, mode='read-only', **kw):
        return agent.call_async('OpenImage', 'sssa{sv}', [guest, path, mode, {}], **kw)

    def assert_daemon_serves(self):
        """The daemon is alive and answers at once (root: no polkit)."""
        self.assertTrue(self.bed.daemon_running(), 'image-accessd died')
        t0 = time.monotonic()
        self.assertOk(self.bed.local.manager('ListGuests'))
        self.assertLess(time.monotonic() - t0, 1.0)

    def kill_and_wait_left(self, agent):
        """Kill agent; return once the daemon has seen its connection leave: a Peer.Ping sent
        after the name is gone is answered after the NameOwnerChanged that precedes it in the
        daemon's input."""
        agent.kill()
        deadline = time.monotonic() + 10
        while self.bed.bus.name_has_owner(agent.unique_name):
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.01)
        self.bed.bus.call_blocking(testbed.BUS_NAME, testbed.OBJECT_PATH,
                                   'org.freedesktop.DBus.Peer', 'Ping', '', [], timeout=10)

    def assert_opens(self, agent, guest, path, what=''):
        expected = ('image of %s' % guest).encode()
        r = agent.open_image(guest, path, read=len(expected))
        self.assertOk(r, what)
        self.assertEqual(r.fd()['read'], expected, what)
        agent.close_fd(r.values[0]['fd'])


# ---- (a) load ---------------------------------------------------------------------------------

class LoadBase(Base):
    """3 callers x 64 OpenImage in flight at once, every one needing a polkit check."""

    def run_load(self, cap):
        for g, u in EMULATORS:
            self.setup_guest(g, u)
        # 64 different images per guest: every open is a question polkit has not answered
        # for that connection yet
        paths = {g: self.grant_images(g, 64) for g, u in EMULATORS}
        size = len('image of vm1')

        def fire_all(agents):
            pend = []
            for i in range(64):
                for g, a in agents:  # interleaved: all three keep up to 64 in flight
                    pend.append((g, a, self.open_async(a, g, paths[g][i], read=size)))
            return pend

        def check_all(pend, what):
            errors = {}
            for g, a, p in pend:
                r = p.wait(90)
                if not r.ok:
                    errors[r.error] = errors.get(r.error, 0) + 1
                    continue
                self.assertEqual(r.fd()['read'], ('image of %s' % g).encode())
                self.assertEqual(r.fd()['accmode'], 'O_RDONLY')
                a.close_fd(r.values[0]['fd'])
            self.assertEqual(errors, {}, '%s: %d calls, errors by name' % (what, len(pend)))

        # free-running: as fast as three callers can send
        agents = [(g, self.bed.agent(u)) for g, u in EMULATORS]
        t0 = time.monotonic()
        pend = fire_all(agents)
        check_all(pend, 'free-running')
        dt = time.monotonic() - t0
        figure('load, MaxPolkitInFlight=%d: 3x64 OpenImage free-running: 192 ok, 0 errors, '
               '%.2f s (%.0f/s)' % (cap, dt, 192 / dt))

        # parked: polkitd stopped while all 192 are sent, so all of them are pending in the
        # daemon at once, cap of them at polkitd and the rest in the daemon's queue.  New
        # connections: nothing polkit said to the old ones applies to them.
        agents = [(g, self.bed.agent(u)) for g, u in EMULATORS]
        self.bed.signal_polkitd(signal.SIGSTOP)
        try:
            pend = fire_all(agents)
            # every call reached the daemon (it handles a connection's messages in order)
            for _, a in agents:
                self.assertOk(a.call('Ping', iface='org.freedesktop.DBus.Peer'))
            self.assertEqual([p.wait(0).error for _, _, p in pend[:3]], ['agent.Timeout'] * 3)
        finally:
            self.bed.signal_polkitd(signal.SIGCONT)
        t0 = time.monotonic()
        check_all(pend, 'all parked at once')
        dt = time.monotonic() - t0
        figure('load, MaxPolkitInFlight=%d: 3x64 OpenImage all pending at once: 192 ok, '
               '0 errors, drained in %.2f s' % (cap, dt))
        self.assertNotIn('LimitsExceeded', self.bed.log_text('daemon'))
        self.assert_daemon_serves()


class LoadTests(LoadBase):
    def test_3x64_default_cap(self):
        self.run_load(64)


class LoadCap120Tests(LoadBase):
    """The same with the cap at its maximum (120), just under the bus's 128."""

    daemon_config = '[Limits]\nMaxPolkitInFlight=120\n'

    def test_3x64_cap_120(self):
        self.run_load(120)


class BusReplyLimitTests(Base):
    """The control: dbus-daemon really refuses the 129th pending call of one connection.
    That is why an uncapped service fails 3x64 and why MaxPolkitInFlight exists."""

    daemon_autostart = False

    def test_bus_refuses_129th_pending_call(self):
        caller = self.bed.agent('ia-emu1')
        self.bed.signal_polkitd(signal.SIGSTOP)
        try:
            pend = [caller.call_async('CheckAuthorization', '(sa{sv})sa{ss}us',
                                      [['system-bus-name',
                                        {'name': {'$v': ['s', caller.unique_name]}}],
                                       OPEN_ACTION, {}, 0, ''],
                                      iface=testbed.POLKIT_IFACE, path=testbed.POLKIT_PATH,
                                      dest=testbed.POLKIT_NAME)
                    for _ in range(140)]
            refused = [p.wait(10) for p in pend[128:]]
        finally:
            self.bed.signal_polkitd(signal.SIGCONT)
        self.assertEqual({r.error for r in refused}, {BUS_LIMITS_EXCEEDED})
        answered = [p.wait(60) for p in pend[:128]]
        self.assertTrue(all(r.ok for r in answered), [r for r in answered if not r.ok][:3])


class CapBase(Base):
    """The cap, counted where it matters: at the authority.  A fake polkitd holds every
    check; with 3x64 requests parked, exactly MaxPolkitInFlight checks reach it."""

    cap = 64

    def run_cap(self):
        fake = FakePolkit(self.bed, 'hold')
        for g, u in EMULATORS:
            self.setup_guest(g, u)
        paths = {g: self.grant_images(g, 64) for g, u in EMULATORS}
        agents = [(g, self.bed.agent(u)) for g, u in EMULATORS]
        pend = []
        for i in range(64):
            for g, a in agents:
                pend.append(self.open_async(a, g, paths[g][i]))
        fake.wait_outstanding(self.cap)
        time.sleep(0.5)  # give an over-eager daemon the time to send more
        s = fake.stats()
        self.assertEqual((int(s['outstanding']), int(s['calls']), int(s['peak_outstanding'])),
                         (self.cap, self.cap, self.cap))
        # nothing answered yet: queued, not refused
        self.assertEqual([p.wait(0).error for p in pend[:5]], ['agent.Timeout'] * 5)
        self.assertEqual(fake.release('allow'), self.cap)
        errors = [r for r in (p.wait(60) for p in pend) if not r.ok]
        self.assertEqual(errors, [])
        s = fake.stats()
        # Each request's question once (a request takes over the one asked ahead for it);
        # the second image of each connection may also have asked ahead about the one image
        # of its guest that nobody opens here (setup_guest()'s).
        self.assertGreaterEqual(int(s['calls']), 192)
        self.assertLessEqual(int(s['calls']), 192 + len(EMULATORS))
        self.assertEqual(int(s['peak_outstanding']), self.cap)
        figure('cap: %d of 192 parked requests reached polkit at once; 192 ok' % self.cap)


class CapTests(CapBase):
    def test_checks_in_flight_capped_default(self):
        self.run_cap()


class Cap120Tests(CapBase):
    daemon_config = '[Limits]\nMaxPolkitInFlight=120\n'
    cap = 120

    def test_checks_in_flight_capped_120(self):
        self.run_cap()


# ---- (b), (c) polkitd absent, killed mid-check ------------------------------------------------

class PolkitGoneTests(Base):

    def test_polkitd_absent_denies_quickly(self):
        path = self.setup_guest('vm1', 'ia-emu1')
        emu = self.bed.agent('ia-emu1')
        mgr = self.bed.agent('ia-mgr')
        self.bed.kill_polkitd()

        t0 = time.monotonic()
        msg = self.assertError(emu.open_image('vm1', path), AUTH_UNAVAILABLE)
        dt = time.monotonic() - t0
        figure('polkitd absent: OpenImage denied (AuthorizationUnavailable) in %.1f ms'
               % (dt * 1000))
        self.assertLess(dt, 5.0)
        self.assertIn(OPEN_ACTION, msg)
        # the manager interface fails closed the same way for a non-root manager
        t0 = time.monotonic()
        self.assertError(mgr.manager('GrantImage', 'sssa{sv}', ['vm1', path, 'read-write', {}]),
                         AUTH_UNAVAILABLE)
        self.assertLess(time.monotonic() - t0, 5.0)
        grants = self.assertOk(self.bed.local.manager('ListGrants', 's', ['vm1']))[0]
        self.assertEqual([(g[0], g[1], g[2]['created']) for g in grants], [(path, 'read-only', False)])
        self.assert_daemon_serves()
        self.bed.wait_log('daemon', r"open denied guest='vm1'.*uid=61002")

        self.bed.start_polkitd()
        self.assert_opens(emu, 'vm1', path, 'after polkitd came back')

    def test_polkitd_killed_mid_check(self):
        path = self.setup_guest('vm1', 'ia-emu1')
        emu = self.bed.agent('ia-emu1')
        self.bed.signal_polkitd(signal.SIGSTOP)
        # 80: the default cap (64) in flight at polkitd, 16 queued in the daemon
        pend = [self.open_async(emu, 'vm1', path) for _ in range(80)]
        # the daemon has handled all 80 (in order on the connection) and sent its checks
        self.assertOk(emu.call('Ping', iface='org.freedesktop.DBus.Peer'))
        t0 = time.monotonic()
        self.assertEqual(self.bed.kill_polkitd(signal.SIGKILL), -signal.SIGKILL)
        replies = [p.wait(30) for p in pend]
        dt = time.monotonic() - t0
        self.assertEqual([r for r in replies if r.ok], [], 'allowed although polkitd died')
        self.assertEqual({r.error for r in replies}, {AUTH_UNAVAILABLE})
        figure('polkitd SIGKILLed with 64 checks in flight and 16 queued: all 80 denied '
               '(AuthorizationUnavailable) within %.1f ms' % (dt * 1000))
        # the in-flight ones saw dbus-daemon's NoReply
        self.assertRegex(self.bed.log_text('daemon'), r'org\.freedesktop\.DBus\.Error\.NoReply')
        self.assert_daemon_serves()

        self.bed.start_polkitd()
        self.assert_opens(emu, 'vm1', path, 'after polkitd was restarted')


# ---- (d) polkitd hung -------------------------------------------------------------------------

class QueuedDeadlineTests(Base):
    """TimeoutSec runs from a request's arrival, not from when its turn in the queue came:
    with polkitd hung and 16 checks behind a window of 4, every one is denied after about
    one timeout, not four."""
    daemon_config = '[Polkit]\nTimeoutSec=2\n[Limits]\nMaxPolkitInFlight=4\n'

    def test_queued_requests_share_one_timeout(self):
        self.setup_guest('vm1', 'ia-emu1')
        images = self.grant_images('vm1', 16, 'queued')
        emu = self.bed.agent('ia-emu1')
        self.bed.signal_polkitd(signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            pending = [self.open_async(emu, 'vm1', path) for path in images]
            replies = [p.wait(30) for p in pending]
            dt = time.monotonic() - t0
        finally:
            self.bed.signal_polkitd(signal.SIGCONT)
        figure('polkitd hung, 16 checks behind a window of 4, TimeoutSec=2: all denied after %.2f s' % dt)
        for r in replies:
            self.assertError(r, AUTH_UNAVAILABLE)
        self.assertLess(dt, 4.5)
        self.assert_daemon_serves()


class PolkitHungTests(Base):
    daemon_config = '[Polkit]\nTimeoutSec=2\n'

    def test_hung_polkitd_times_out_and_blocks_nothing_else(self):
        path = self.setup_guest('vm1', 'ia-emu1')
        fresh = self.grant_images('vm1', 1, 'fresh')[0]  # never opened: polkit must be asked
        ungranted = self.bed.make_image('ungranted.img', b'x')
        emu = self.bed.agent('ia-emu1')
        stranger = self.bed.agent('ia-emu2')
        self.assert_opens(emu, 'vm1', path, 'before the hang')
        # learn the strangers's credentials now (the daemon asks the bus once per caller)
        self.assertError(stranger.open_image('vm1', path), NOT_BOUND)

        self.bed.signal_polkitd(signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            hung = self.open_async(emu, 'vm1', fresh, read=4)
            prompt = {}

            def timed(what, fn):
                t = time.monotonic()
                r = fn()
                prompt[what] = time.monotonic() - t
                return r

            self.assertError(timed('NotGranted', lambda: emu.open_image('vm1', ungranted)),
                             NOT_GRANTED)
            self.assertError(timed('NotBound', lambda: stranger.open_image('vm1', path)),
                             NOT_BOUND)
            self.assertOk(timed('ListGuests', lambda: self.bed.local.manager('ListGuests')))
            other = self.bed.make_image('other.img')
            self.assertOk(timed('GrantImage', lambda: self.bed.local.manager(
                'GrantImage', 'sssa{sv}', ['vm1', other, 'read-write', {}])))
            self.assertOk(timed('ListGrants', lambda: self.bed.local.manager(
                'ListGrants', 's', ['vm1'])))
            self.assertOk(timed('RegisterGuest', lambda: self.bed.local.manager(
                'RegisterGuest', 'sa{sv}', ['vm9', {}])))
            # still parked while all of that was answered
            self.assertEqual(hung.wait(0).error, 'agent.Timeout')
            r = hung.wait(30)
            dt = time.monotonic() - t0
        finally:
            self.bed.signal_polkitd(signal.SIGCONT)
        figure('polkitd hung (SIGSTOP), TimeoutSec=2: OpenImage denied after %.2f s; '
               'meanwhile %s' % (dt, ', '.join('%s %.1f ms' % (k, v * 1000)
                                              for k, v in prompt.items())))
        self.assertError(r, AUTH_UNAVAILABLE)
        self.assertGreaterEqual(dt, 1.9)
        self.assertLess(dt, 4.5)
        for what, t in prompt.items():
            self.assertLess(t, 1.0, '%s waited for the hung polkitd' % what)
        self.assertRegex(self.bed.log_text('daemon'), r'(?i)timed out|timeout')

        # polkitd resumes and answers the stale check: it must not turn into an open
        allowed = "open allowed guest='vm1' image='%s'" % fresh
        self.assertNotIn(allowed, self.bed.log_text('daemon'))
        self.assert_opens(emu, 'vm1', fresh, 'after polkitd resumed')
        self.assertEqual(self.bed.log_text('daemon').count(allowed), 1)
        self.assert_daemon_serves()


# ---- (e) polkitd erroring, malformed, challenging ---------------------------------------------

class FakePolkitTests(Base):

    def test_error_and_malformed_replies_fail_closed(self):
        path = self.setup_guest('vm1', 'ia-emu1')
        emu = self.bed.agent('ia-emu1')
        mgr = self.bed.agent('ia-mgr')
        fake = FakePolkit(self.bed, 'error')
        for mode in ('error', 'malformed', 'unwrapped'):
            fake.set_mode(mode)
            calls = int(fake.stats()['calls'])
            t0 = time.monotonic()
            msg = self.assertError(emu.open_image('vm1', path), AUTH_UNAVAILABLE, mode)
            self.assertLess(time.monotonic() - t0, 5.0)
            self.assertEqual(int(fake.stats()['calls']), calls + 1, 'polkit was asked')
            if mode == 'error':
                self.assertIn('org.freedesktop.PolicyKit1.Error.Failed', msg)
            # a manager call by a non-root manager too
            self.assertError(mgr.manager('RegisterGuest', 'sa{sv}', ['vm-' + mode, {}]),
                             AUTH_UNAVAILABLE, mode)
        self.assertEqual([g[0] for g in self.assertOk(self.bed.local.manager('ListGuests'))[0]],
                         ['vm1'])
        fake.set_mode('deny')
        self.assertError(emu.open_image('vm1', path), ACCESS_DENIED)
        self.assert_daemon_serves()

        # the control: the same fake saying yes lets the open through, and was asked the
        # right question
        fake.set_mode('allow')
        self.assert_opens(emu, 'vm1', path, 'fake polkit says yes')
        s = fake.stats()
        self.assertEqual(str(s['last_action']), OPEN_ACTION)
        # the subject is the emulator's process, as the bus saw it connect, with the start
        # time its binding proved (not a bus name polkitd would have to resolve)
        with open('/proc/%d/stat' % emu.pid) as f:
            start = int(f.read().rsplit(')', 1)[1].split()[19])
        self.assertEqual(str(s['last_subject'][0]), 'unix-process')
        self.assertEqual({str(k): int(v) for k, v in s['last_subject'][1].items()},
                         {'pid': emu.pid, 'start-time': start, 'uid': 61002})
        self.assertEqual({str(k): str(v) for k, v in s['last_details'].items()},
                         {'guest': 'vm1', 'image': path, 'mode': 'read-only',
                          'guest-uuid': '6f1c2a3e-0000-4000-8000-%012d' % 61002})
        self.assertEqual(int(s['last_flags']), 0)

    def test_challenge(self):
        path = self.setup_guest('vm1', 'ia-emu1')
        emu = self.bed.agent('ia-emu1')
        fake = FakePolkit(self.bed, 'challenge')
        self.assertError(emu.open_image('vm1', path), INTERACTIVE_REQUIRED)
        self.assertEqual(int(fake.stats()['last_flags']), 0)
        # with the flag, polkit is asked again and told it may interact; a challenge it
        # could not resolve (no agent) is still a no, named as a failed authentication
        r = emu.open_image('vm1', path, interactive=True)
        self.assertFalse(r.ok, r)
        self.assertEqual(r.error, 'org.example.ImageAccess.Error.AuthenticationFailed')
        self.assertIn('no polkit authentication agent', r.message)
        self.assertEqual(int(fake.stats()['last_flags']), 1)
        self.assert_daemon_serves()


# ---- (f) callers vanishing with checks queued or in flight ------------------------------------

class VanishingCallerTests(Base):
    # a small cap: of each dying caller's 64 requests, 16 are at polkitd and 48 queued
    daemon_config = '[Limits]\nMaxPolkitInFlight=16\n'

    def test_caller_killed_with_64_checks_pending(self):
        paths = {g: self.setup_guest(g, u) for g, u in EMULATORS[:2]}
        many = self.grant_images('vm1', 64)           # each victim asks 64 questions
        rounds = self.grant_images('vm2', 20, 'round')  # the survivor a new one each round
        survivor = self.bed.agent('ia-emu2')
        self.assert_opens(survivor, 'vm2', paths['vm2'], 'warm-up')
        first = self.bed.agent('ia-emu1')
        self.assert_opens(first, 'vm1', paths['vm1'], 'warm-up')
        first.kill()
        baseline = len(self.bed.daemon_fds())
        counts = []
        for i in range(20):
            victim = self.bed.agent('ia-emu1')
            stopped = i % 2 == 1  # odd rounds: polkitd hung while the caller dies
            if stopped:
                self.bed.signal_polkitd(signal.SIGSTOP)
            try:
                for p in many:
                    self.open_async(victim, 'vm1', p)
                victim.kill()
            finally:
                if stopped:
                    self.bed.signal_polkitd(signal.SIGCONT)
            self.assertTrue(self.bed.daemon_running(), 'round %d' % i)
            self.assert_opens(survivor, 'vm2', rounds[i], 'round %d' % i)
            counts.append(len(self.bed.daemon_fds()))
        # every fd of the dead callers' opens is closed again
        deadline = time.monotonic() + 10
        while len(self.bed.daemon_fds()) != baseline and time.monotonic() < deadline:
            time.sleep(0.05)
        final = len(self.bed.daemon_fds())
        figure('20 callers killed with 64 opens pending each: daemon fds baseline %d, '
               'after each round %s, at the end %d' % (baseline, counts, final))
        self.assertEqual(final, baseline, self.bed.daemon_fds())
        # full service afterwards: 64 at once from a new caller, none refused
        late = self.bed.agent('ia-emu1')
        pend = [self.open_async(late, 'vm1', p) for p in many]
        self.assertEqual([r for r in (p.wait(60) for p in pend) if not r.ok], [])
        self.assert_daemon_serves()
        self.assertNotIn('Failed to re-enqueue', self.bed.log_text('daemon'))


class AnswerAfterCallerLeftTests(Base):
    """polkit answers a request whose caller has left the bus by then: the answer is dropped,
    nothing is opened for nobody, and the request's pending slot is given back: with
    MaxPendingTotal=1 one leaked slot refuses every later caller (even their credentials
    lookup waits in a slot).  Ordered deterministically: the daemon has seen the caller
    leave (a Peer.Ping sent after the name was gone is answered after the NameOwnerChanged
    that precedes it in the daemon's input) before polkit answers."""

    daemon_config = '[Limits]\nMaxPendingTotal=1\n'

    def test_answer_after_caller_left(self):
        path = self.setup_guest('vm1', 'ia-emu1')
        fake = FakePolkit(self.bed, 'hold')
        leaver = self.bed.agent('ia-emu1')
        self.open_async(leaver, 'vm1', path)
        fake.wait_outstanding(1)

        self.kill_and_wait_left(leaver)
        self.assertEqual(fake.release('allow'), 1)
        self.assert_daemon_serves()

        later = self.bed.agent('ia-emu1')
        self.assert_opens(later, 'vm1', path, 'a later caller after one left mid-request')
        self.assertNotRegex(self.bed.log_text('daemon'),
                            r"open allowed guest='vm1'.*sender=%s\b" % leaver.unique_name)


class RevokedWhileAskingTests(Base):
    """The grant goes while polkit decides: when the answer comes, the request runs again,
    finds no grant and is refused before it takes polkit's answer.  The answer it left behind
    is dropped and the request's pending slot given back: with MaxPendingTotal=1 one leaked
    slot refuses every later request that waits."""

    daemon_config = '[Limits]\nMaxPendingTotal=1\n'

    def test_grant_revoked_while_polkit_decides(self):
        path = self.setup_guest('vm1', 'ia-emu1')
        fake = FakePolkit(self.bed, 'hold')
        emu = self.bed.agent('ia-emu1')
        parked = self.open_async(emu, 'vm1', path, read=5)
        fake.wait_outstanding(1)
        self.assertOk(self.bed.local.manager('RevokeImage', 'ssa{sv}', ['vm1', path, {}]))
        self.assertEqual(fake.release('allow'), 1)
        r = parked.wait(30)
        self.assertError(r, NOT_GRANTED)
        self.assertEqual(r.fds, [])
        self.assertNotIn("open allowed guest='vm1'", self.bed.log_text('daemon'))

        # granted again: the next open waits for polkit in the one pending slot
        self.assertOk(self.bed.local.manager('GrantImage', 'sssa{sv}',
                                             ['vm1', path, 'read-only', {}]))
        fake.set_mode('allow')
        self.assert_opens(emu, 'vm1', path, 'the slot of the refused request is free')
        self.assertEqual(int(fake.stats()['calls']), 2)
        self.assert_daemon_serves()


class QueuedCheckOfLeaverTests(Base):
    """A caller leaves while its polkit check still waits for room under MaxPolkitInFlight:
    the check is dropped, never sent to polkitd, and its pending slot is given back at once
    (the daemon's connection table tells authz that the connection left).  Ordered as above:
    the leaver's own Ping returns after the daemon parked its open, and a Ping after its
    name is gone returns after the daemon saw it leave."""

    daemon_config = '[Limits]\nMaxPolkitInFlight=1\nMaxPendingTotal=2\n'

    def test_queued_check_of_a_leaver_never_reaches_polkit(self):
        seen, fresh = self.setup_guest('vm1', 'ia-emu1'), self.grant_images('vm1', 1, 'fresh')[0]
        held, third = self.setup_guest('vm2', 'ia-emu2'), self.grant_images('vm2', 1, 'third')[0]
        leaver = self.bed.agent('ia-emu1')
        self.assert_opens(leaver, 'vm1', seen, 'warm-up: the daemon knows its credentials')

        fake = FakePolkit(self.bed, 'hold')
        holder = self.bed.agent('ia-emu2')
        first = self.open_async(holder, 'vm2', held)
        fake.wait_outstanding(1)                        # the window is full
        queued = self.open_async(leaver, 'vm1', fresh)  # waits behind it, in the daemon
        self.assertOk(leaver.call('Ping', iface='org.freedesktop.DBus.Peer'))
        self.assertEqual(queued.wait(0).error, 'agent.Timeout', 'parked, not refused')

        self.kill_and_wait_left(leaver)

        # its slot is free again: with MaxPendingTotal=2 another caller is parked, not refused
        other = self.bed.agent('ia-emu2')
        later = self.open_async(other, 'vm2', third)
        self.assertEqual(later.wait(0.5).error, 'agent.Timeout', 'parked, not refused')

        self.assertEqual(fake.release('allow'), 1)
        self.assertTrue(first.wait(30).ok)
        self.assertTrue(later.wait(30).ok)
        # polkitd was asked for the holder and the later caller, never for the leaver
        self.assertEqual(int(fake.stats()['calls']), 2)
        self.assert_daemon_serves()


# ---- (g) per-caller limit ---------------------------------------------------------------------

class PerSenderLimitTests(Base):
    # Without reused or prefetched decisions (authz_prefetch() asks polkit about new grants
    # for emulators that already opened the guest's images), every open here waits for polkit.
    daemon_config = '[Limits]\nMaxPendingPerSender=8\n[Polkit]\nDecisionCacheSec=0\n'

    def test_ninth_pending_call_refused_other_callers_accepted(self):
        path1 = self.setup_guest('vm1', 'ia-emu1')
        path2 = self.setup_guest('vm2', 'ia-emu2')
        emu1, emu1b, emu2 = (self.bed.agent('ia-emu1'), self.bed.agent('ia-emu1'),
                             self.bed.agent('ia-emu2'))
        for a, g, p in ((emu1, 'vm1', path1), (emu1b, 'vm1', path1), (emu2, 'vm2', path2)):
            self.assert_opens(a, g, p, 'warm-up')
        # images not opened yet: each open waits for polkit
        fresh1 = self.grant_images('vm1', 18, 'fresh')
        fresh2 = self.grant_images('vm2', 1, 'fresh')

        self.bed.signal_polkitd(signal.SIGSTOP)
        try:
            eight = [self.open_async(emu1, 'vm1', p) for p in fresh1[:8]]
            t0 = time.monotonic()
            msg = self.assertError(emu1.open_image('vm1', fresh1[8]), LIMIT_EXCEEDED)
            dt = time.monotonic() - t0
            figure('9th pending OpenImage of one caller refused (LimitExceeded) in %.1f ms'
                   % (dt * 1000))
            self.assertLess(dt, 1.0)
            self.assertIn(emu1.unique_name, msg)
            # other connections, of the same uid and of another, are still accepted
            others = [self.open_async(emu1b, 'vm1', fresh1[9]),
                      self.open_async(emu2, 'vm2', fresh2[0])]
            for p in others + eight:
                self.assertEqual(p.wait(0.3).error, 'agent.Timeout', 'parked, not refused')
        finally:
            self.bed.signal_polkitd(signal.SIGCONT)
        for p in eight + others:
            self.assertOk(p.wait(60))
        # the slots are given back: 8 at once again, all served
        pend = [self.open_async(emu1, 'vm1', p) for p in fresh1[10:18]]
        self.assertEqual([r for r in (p.wait(60) for p in pend) if not r.ok], [])


if __name__ == '__main__':
    testbed.main()

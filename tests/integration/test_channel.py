#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""
OpenImage channels (daemon/channel.c, client/common/ia-channel.h): OpenChannel(s guest, a{sv}) hands
a bound emulator one end of a SOCK_SEQPACKET socket pair.  Each request on it is checked as an
OpenImage from the bus connection that asked for the channel (its owner), whoever holds the
socket; it never asks polkit: without a root owner or a polkit "yes" in the owner's decision
cache the answer is USE_BUS.  Packets that do not parse, are too large or carry fds close the
channel, as does a client that does not read its replies; the channel dies with its owner's
bus connection.

The tests speak the wire protocol themselves: the channel fd is taken out of the agent that
called OpenChannel (pidfd_getfd) and used from the test process with sendmsg/recvmsg.
"""

import array
import ctypes
import errno
import fcntl
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import attackhelper  # noqa: E402
import testbed  # noqa: E402

# ---- the wire format (client/common/ia-channel.h) ---------------------------------------------------

MAGIC = 0x31434149
REQUEST = struct.Struct('=6I')    # magic serial mode options guest_len path_len
REPLY = struct.Struct('=5I')      # magic serial status name_len message_len
PACKET_MAX = 8192
RO, RW, CREATE = 0, 1, 2
OPT_DIRECT, OPT_NONBLOCK = 0x1, 0x2
OK, ERROR, USE_BUS = 0, 1, 2
STATUS = {OK: 'OK', ERROR: 'ERROR', USE_BUS: 'USE_BUS'}
MODE_NAMES = {RO: 'read-only', RW: 'read-write', CREATE: 'create'}

ERR = 'org.example.ImageAccess.Error.'
NOT_BOUND = ERR + 'NotBound'
NOT_GRANTED = ERR + 'NotGranted'
NOT_FOUND = ERR + 'NotFound'
INVALID_PATH = ERR + 'InvalidPath'
INVALID_NAME = ERR + 'InvalidName'
INVALID_OPTION = ERR + 'InvalidOption'
LIMIT_EXCEEDED = ERR + 'LimitExceeded'
ACCESS_DENIED = 'org.freedesktop.DBus.Error.AccessDenied'

GUEST = 'vm1'
CACHE_CONFIG = '[Polkit]\nDecisionCacheSec=600\n'   # no expiry during a test
DENY_OPEN_RULES = '''polkit.addRule(function(action, subject) {
    if (action.id == "org.example.imageaccess.open-image") return polkit.Result.NO;
});
'''
WAIT = 20.0   # seconds: a bound on waits for something that must happen, never asserted on


def pack_request(serial, mode, guest, path, options=0, magic=MAGIC, guest_len=None,
                 path_len=None):
    """A request packet; the length fields may be given to make it lie."""
    g = guest.encode() if isinstance(guest, str) else guest
    p = path.encode() if isinstance(path, str) else path
    return REQUEST.pack(magic, serial, mode, options,
                        len(g) if guest_len is None else guest_len,
                        len(p) if path_len is None else path_len) + g + p


class ChannelReply:
    """A parsed reply: serial, status, name, message, fds (received fd numbers, ours)."""

    def __init__(self, data, fds):
        if len(data) < REPLY.size:
            raise AssertionError('reply of %d bytes is shorter than its header' % len(data))
        magic, self.serial, self.status, name_len, message_len = REPLY.unpack_from(data)
        if magic != MAGIC:
            raise AssertionError('reply magic %#x' % magic)
        if REPLY.size + name_len + message_len != len(data):
            raise AssertionError('reply lengths %d+%d do not match its %d bytes'
                                 % (name_len, message_len, len(data)))
        self.name = data[REPLY.size:REPLY.size + name_len].decode()
        self.message = data[REPLY.size + name_len:].decode()
        self.fds = fds

    @property
    def fd(self):
        return self.fds[0]

    def __repr__(self):
        return 'ChannelReply(serial=%#x, %s, %r, %r, fds=%r)' % (
            self.serial, STATUS.get(self.status, self.status), self.name, self.message, self.fds)


_libc = ctypes.CDLL(None, use_errno=True)
_SYS_pidfd_getfd = 438   # the same number on every architecture


def take_fd(pid, fdnum):
    """A copy of fd fdnum of process pid in this process (pidfd_getfd, as root)."""
    pidfd = os.pidfd_open(pid)
    try:
        fd = _libc.syscall(_SYS_pidfd_getfd, pidfd, fdnum, 0)
        if fd < 0:
            e = ctypes.get_errno()
            raise OSError(e, 'pidfd_getfd(%d, %d): %s' % (pid, fdnum, os.strerror(e)))
        return fd
    finally:
        os.close(pidfd)


def fd_info(fd):
    st = os.fstat(fd)
    fl = fcntl.fcntl(fd, fcntl.F_GETFL)
    return {'dev': st.st_dev, 'ino': st.st_ino, 'accmode': fl & os.O_ACCMODE, 'flags': fl}


class Channel:
    """The client end of a channel, in the test process."""

    def __init__(self, fd):
        self.sock = socket.socket(fileno=fd)
        self.sock.settimeout(WAIT)
        self.next_serial = 0x51000000

    def close(self):
        self.sock.close()

    def send(self, packet, fds=()):
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array('i', fds))] if fds else []
        return self.sock.sendmsg([packet], anc)

    def recv(self):
        """The next reply, or None at end of file (the service closed the channel)."""
        data, anc, flags, _ = self.sock.recvmsg(PACKET_MAX, socket.CMSG_SPACE(16 * 4))
        fds = []
        for level, kind, cdata in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                a = array.array('i')
                a.frombytes(cdata[:len(cdata) - len(cdata) % a.itemsize])
                fds += list(a)
        if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
            for fd in fds:
                os.close(fd)
            raise AssertionError('reply truncated (msg_flags %#x)' % flags)
        if not data:
            if fds:
                raise AssertionError('an empty packet with fds %r' % fds)
            return None
        return ChannelReply(data, fds)

    def request(self, guest, path, mode, options=0, serial=None):
        if serial is None:
            serial = self.next_serial
            self.next_serial += 1
        self.send(pack_request(serial, mode, guest, path, options))
        reply = self.recv()
        if reply is None:
            raise AssertionError('the channel was closed instead of answering %s %s'
                                 % (path, MODE_NAMES.get(mode, mode)))
        if reply.serial != serial:
            raise AssertionError('reply serial %#x for request %#x' % (reply.serial, serial))
        return reply

    def wait_closed(self):
        """Reads until end of file; returns the replies still queued (their fds closed) and
        whether ECONNRESET was seen (the service closed with requests of ours unread)."""
        replies, reset = 0, False
        while True:
            try:
                reply = self.recv()
            except ConnectionResetError:
                reset = True
                continue
            if reply is None:
                return replies, reset
            replies += 1
            for fd in reply.fds:
                os.close(fd)


class ChannelTestCase(testbed.IaTestCase):
    daemon_config = CACHE_CONFIG

    def setUp(self):
        super().setUp()
        self.image = self.bed.make_image('disk.raw', data=b'disk', size=4096)
        self.image_st = os.stat(self.image)
        self.emu = self.bed.agent('ia-emu1')
        self.mgr = self.bed.local
        self.assertOk(self.mgr.manager('RegisterGuest', 'sa{sv}',
                                       [GUEST, {'uid': {'$v': ['u', self.emu.uid]}}]))
        self.grant(self.image, 'read-write')

    # ---- helpers ------------------------------------------------------------------------
    def grant(self, path, mode, guest=GUEST):
        self.assertOk(self.mgr.manager('GrantImage', 'sssa{sv}', [guest, path, mode, {}]))

    def open_bus(self, mode='read-write', path=None, agent=None, guest=GUEST):
        """OpenImage over the bus; its fd is closed again (what counts is the cached yes)."""
        agent = agent or self.emu
        r = agent.open_image(guest, path or self.image, mode)
        self.assertOk(r, 'OpenImage %s %s' % (path or self.image, mode))
        agent.close_fd(r.fd()['fd'])
        return r

    def open_channel(self, agent=None, guest=GUEST, options=None):
        return (agent or self.emu).call('OpenChannel', 'sa{sv}', [guest, options or {}])

    def channel(self, agent=None, guest=GUEST):
        """OpenChannel by agent; the channel moves to the test process (the agent's copy is
        closed) and is closed at cleanup."""
        agent = agent or self.emu
        r = self.open_channel(agent, guest)
        self.assertOk(r, 'OpenChannel')
        self.assertEqual(len(r.fds), 1, r)
        fd_id = r.values[0]['fd']
        if isinstance(agent, testbed.LocalAgent):
            fd = os.dup(agent.raw_fd(fd_id))
        else:
            fd = take_fd(agent.pid, r.fd()['fdnum'])
        agent.close_fd(fd_id)
        ch = Channel(fd)
        self.addCleanup(ch.close)
        return ch

    def request_ok(self, ch, mode, path=None, guest=GUEST, options=0):
        reply = ch.request(guest, path or self.image, mode, options)
        self.assertEqual((reply.status, reply.name, len(reply.fds)), (OK, '', 1), reply)
        self.addCleanup(os.close, reply.fd)
        return reply.fd

    def request_status(self, ch, mode, path=None, guest=GUEST, options=0):
        reply = ch.request(guest, path or self.image, mode, options)
        self.assertEqual(reply.fds, [], reply)
        return reply

    def assertUseBus(self, ch, mode, path=None, guest=GUEST):
        reply = self.request_status(ch, mode, path, guest)
        self.assertEqual((reply.status, reply.name), (USE_BUS, ''), reply)
        return reply

    def assertChannelError(self, ch, mode, name, path=None, guest=GUEST):
        reply = self.request_status(ch, mode, path, guest)
        self.assertEqual((reply.status, reply.name), (ERROR, name), reply)
        self.assertTrue(reply.message, reply)
        return reply

    def daemon_fd_count(self):
        return len(os.listdir('/proc/%d/fd' % self.bed.daemon_pid))

    def wait_daemon_fds(self, expected, what):
        """The daemon's fd count comes back to expected (requests in workers may still hold
        an image for a moment)."""
        deadline = time.monotonic() + WAIT
        while self.daemon_fd_count() != expected and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertEqual(self.daemon_fd_count(), expected,
                         '%s: the daemon holds %r' % (what, self.bed.daemon_fds()))

    def sync_daemon(self):
        """Returns once the daemon has dispatched what reached it before."""
        self.assertOk(self.mgr.call('Ping', iface='org.freedesktop.DBus.Peer'))

    def assertServes(self):
        """The daemon is alive and still opens over the bus."""
        self.assertTrue(self.bed.daemon_running())
        self.open_bus('read-only')


# ---- OpenChannel ----------------------------------------------------------------------------

class OpenChannelTests(ChannelTestCase):

    def test_unbound_caller_not_bound_like_open_image(self):
        emu2 = self.bed.agent('ia-emu2')
        message = self.assertError(self.open_channel(emu2), NOT_BOUND)
        self.assertEqual(message, self.assertError(emu2.open_image(GUEST, self.image), NOT_BOUND))
        self.assertIn(emu2.unique_name, message)

    def test_unknown_guest_not_bound(self):
        message = self.assertError(self.open_channel(guest='nosuchvm'), NOT_BOUND)
        self.assertEqual(message,
                         self.assertError(self.emu.open_image('nosuchvm', self.image), NOT_BOUND))
        self.assertError(self.open_channel(guest='bad/name'), INVALID_NAME)

    def test_options_refused(self):
        for options in ({'nosuch': {'$v': ['b', True]}},
                        {'direct': {'$v': ['b', True]}}):     # an OpenImage option, not this one
            with self.subTest(options=options):
                self.assertError(self.open_channel(options=options), INVALID_OPTION)
        # none of them made a channel: the two of the connection are still there
        self.channel()
        self.channel()

    def test_is_a_seqpacket_socket(self):
        ch = self.channel()
        self.assertEqual(ch.sock.family, socket.AF_UNIX)
        self.assertEqual(ch.sock.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE),
                         socket.SOCK_SEQPACKET)

    def test_two_per_connection(self):
        first = self.channel()
        self.channel()
        message = self.assertError(self.open_channel(), LIMIT_EXCEEDED)
        self.assertIn('per connection', message)
        # the limit is per bus connection, not per uid
        other = self.bed.agent('ia-emu1')
        self.channel(other)
        # a channel the client closes frees its place
        first.close()
        self.bed.wait_log('daemon', 'Closing the channel of %s: the client closed it'
                          % re.escape(self.emu.unique_name))
        self.channel()
        self.assertError(self.open_channel(), LIMIT_EXCEEDED)


class MaxChannelsTests(ChannelTestCase):
    daemon_config = CACHE_CONFIG + '[Limits]\nMaxChannels=1\n'

    def test_limit_in_all(self):
        first = self.channel()
        other = self.bed.agent('ia-emu1')
        self.assertIn('MaxChannels', self.assertError(self.open_channel(other), LIMIT_EXCEEDED))
        self.assertError(self.open_channel(), LIMIT_EXCEEDED)
        first.close()
        self.bed.wait_log('daemon', 'Closing the channel of %s: the client closed it'
                          % re.escape(self.emu.unique_name))
        self.channel(other)


class NoChannelsTests(ChannelTestCase):
    daemon_config = CACHE_CONFIG + '[Limits]\nMaxChannels=0\n'

    def test_zero_allows_none(self):
        # Not a limit that may pass (LimitExceeded): libimageaccess stops asking.
        r = self.open_channel()
        self.assertError(r, 'org.freedesktop.DBus.Error.NotSupported')
        self.assertIn('MaxChannels=0', r.message)
        self.assertServes()


# ---- requests --------------------------------------------------------------------------------

class RequestTests(ChannelTestCase):

    def test_cold_request_uses_bus(self):
        ch = self.channel()
        for mode in (RO, RW):
            reply = self.assertUseBus(ch, mode)
            self.assertTrue(reply.message)
        # the service did not ask polkit on the channel's behalf
        self.assertNotIn('Asking polkit about org.example.imageaccess.open-image',
                         self.bed.log_text('daemon'))

    def test_cached_yes_opens_exactly_the_mode_asked(self):
        self.open_bus('read-write')
        ch = self.channel()
        fd = self.request_ok(ch, RO)
        info = fd_info(fd)
        self.assertEqual(info['accmode'], os.O_RDONLY)
        self.assertEqual((info['dev'], info['ino']), (self.image_st.st_dev, self.image_st.st_ino))
        self.assertEqual(os.pread(fd, 4, 0), b'disk')
        with self.assertRaises(OSError) as cm:
            os.pwrite(fd, b'x', 0)
        self.assertEqual(cm.exception.errno, errno.EBADF)
        self.assertFalse(info['flags'] & (os.O_NONBLOCK | os.O_DIRECT | os.O_APPEND))

        fd = self.request_ok(ch, RW)
        info = fd_info(fd)
        self.assertEqual(info['accmode'], os.O_RDWR)
        self.assertEqual((info['dev'], info['ino']), (self.image_st.st_dev, self.image_st.st_ino))
        self.assertEqual(os.pwrite(fd, b'DISK', 0), 4)
        with open(self.image, 'rb') as f:
            self.assertEqual(f.read(4), b'DISK')

        # stronger than the grant: refused before any thought of polkit
        self.assertChannelError(ch, CREATE, NOT_GRANTED)

    def test_stronger_mode_than_cached_uses_bus(self):
        self.open_bus('read-only')
        ch = self.channel()
        self.assertUseBus(ch, RW)
        self.request_ok(ch, RO)
        self.open_bus('read-write')
        self.request_ok(ch, RW)

    def test_create_yes_covers_read_write_not_the_reverse(self):
        overlay = os.path.join(self.bed.images_dir, 'overlay.qcow2')
        self.grant(overlay, 'create')
        ch = self.channel()
        self.assertUseBus(ch, CREATE, overlay)
        self.open_bus('create', overlay)    # created over the bus: a create yes
        st = os.stat(overlay)
        for mode in (RW, CREATE, RO):       # create: reopening what the service made for it
            fd = self.request_ok(ch, mode, overlay)
            self.assertEqual((fd_info(fd)['ino'], fd_info(fd)['accmode']),
                             (st.st_ino, os.O_RDONLY if mode == RO else os.O_RDWR))
        # another connection of the emulator with a read-write yes only
        other = self.bed.agent('ia-emu1')
        self.open_bus('read-write', overlay, agent=other)
        ch2 = self.channel(other)
        self.assertUseBus(ch2, CREATE, overlay)
        self.request_ok(ch2, RW, overlay)

    def test_options(self):
        self.open_bus('read-write')
        ch = self.channel()
        fd = self.request_ok(ch, RO, options=OPT_NONBLOCK)
        self.assertEqual(fd_info(fd)['flags'] & (os.O_NONBLOCK | os.O_DIRECT), os.O_NONBLOCK)
        fd = self.request_ok(ch, RW, options=OPT_DIRECT)
        info = fd_info(fd)
        self.assertEqual(info['flags'] & (os.O_NONBLOCK | os.O_DIRECT), os.O_DIRECT)
        self.assertEqual(info['accmode'], os.O_RDWR)

    def test_interactive_yes_not_used(self):
        # a yes that may have been won by authenticating is not kept, so not used here
        r = self.emu.open_image(GUEST, self.image, 'read-write', interactive=True)
        self.assertOk(r)
        self.emu.close_fd(r.fd()['fd'])
        ch = self.channel()
        self.assertUseBus(ch, RO)

    def test_yes_of_another_connection_does_not_count(self):
        other = self.bed.agent('ia-emu1')     # same uid: bound as well
        self.open_bus('read-write', agent=other)
        ch = self.channel()
        self.assertUseBus(ch, RO)
        self.open_bus('read-write')
        self.request_ok(ch, RO)

    def test_other_image_not_covered_prefetch_is(self):
        other = self.bed.make_image('other.raw', data=b'othr', size=4096)
        self.grant(other, 'read-only')
        ch = self.channel()
        self.open_bus('read-write')
        self.assertUseBus(ch, RO, other)     # no yes for that image
        # A grant made after the emulator opened an image of the guest is prefetched: the
        # channel can open it without the bus.
        late = self.bed.make_image('late.raw', data=b'late', size=4096)
        self.grant(late, 'read-only')
        self.bed.wait_log('daemon', "Prefetched polkit's answer on "
                                    "org.example.imageaccess.open-image for %s: yes"
                          % re.escape(self.emu.unique_name))
        fd = self.request_ok(ch, RO, late)
        self.assertEqual(os.pread(fd, 4, 0), b'late')

    def test_create_on_channel_after_prefetch(self):
        # A snapshot: the emulator has opened an image of the guest, the manager grants a new
        # overlay, the service prefetches polkit's answer, and the create comes on the channel.
        ch = self.channel()
        self.open_bus('read-write')
        overlay = os.path.join(self.bed.images_dir, 'snap.qcow2')
        self.grant(overlay, 'create')
        self.bed.wait_log('daemon', "Prefetched polkit's answer on "
                                    "org.example.imageaccess.open-image for %s: yes"
                          % re.escape(self.emu.unique_name))
        self.assertChannelError(ch, RO, NOT_FOUND, overlay)    # not made yet
        fd = self.request_ok(ch, CREATE, overlay)
        st = os.stat(overlay)
        self.assertEqual((fd_info(fd)['ino'], fd_info(fd)['accmode']), (st.st_ino, os.O_RDWR))
        self.assertEqual((st.st_uid, st.st_mode & 0o7777), (0, 0o600))
        self.assertIn("audit: open allowed guest='vm1' image='%s' mode=create" % overlay,
                      self.bed.log_text('daemon'))
        # recorded as the service's creation, as over the bus
        grants = self.assertOk(self.mgr.manager('ListGrants', 's', [GUEST]))[0]
        self.assertIn([overlay, 'create', {'created': True, 'pinned': True,
                                           'device': st.st_dev, 'inode': st.st_ino}], grants)
        self.request_ok(ch, RW, overlay)
        self.assertOk(self.mgr.manager('RevokeImage', 'ssa{sv}',
                                       [GUEST, overlay, {'remove-created': {'$v': ['b', True]}}]))
        self.assertFalse(os.path.exists(overlay))

    def test_errors_as_open_image(self):
        emu2 = self.bed.agent('ia-emu2')
        self.assertOk(self.mgr.manager('RegisterGuest', 'sa{sv}',
                                       ['vm2', {'uid': {'$v': ['u', emu2.uid]}}]))
        vm2_image = self.bed.make_image('vm2.raw', size=4096)
        self.grant(vm2_image, 'read-write', guest='vm2')
        ro_image = self.bed.make_image('ro.raw', size=4096)
        self.grant(ro_image, 'read-only')
        missing = self.bed.make_image('ungranted.raw', size=4096)
        overlay = os.path.join(self.bed.images_dir, 'overlay.qcow2')
        self.grant(overlay, 'create')
        self.open_bus('read-write')
        ch = self.channel()
        cases = [
            (GUEST, missing, RO, NOT_GRANTED),
            (GUEST, ro_image, RW, NOT_GRANTED),
            (GUEST, self.image, CREATE, NOT_GRANTED),
            (GUEST, overlay, RO, NOT_FOUND),
            ('vm2', vm2_image, RO, NOT_BOUND),
            ('nosuchvm', self.image, RO, NOT_BOUND),
            (GUEST, 'relative.raw', RO, INVALID_PATH),
            (GUEST, '/a/../b', RO, INVALID_PATH),
            (GUEST, self.image + '/', RO, INVALID_PATH),
            (GUEST, '', RO, INVALID_PATH),
            ('bad/name', self.image, RO, INVALID_NAME),
            ('x' * 200, self.image, RO, INVALID_NAME),
            (GUEST, '/' + 'p' * 4095, RO, INVALID_PATH),
        ]
        for n, (guest, path, mode, name) in enumerate(cases):
            with self.subTest(guest=guest[:20], path=path, mode=mode):
                serial = 0xdead0000 + n
                ch.send(pack_request(serial, mode, guest, path))
                reply = ch.recv()
                self.assertIsNotNone(reply, 'the channel was closed')
                self.assertEqual((reply.serial, reply.status, reply.name, reply.fds),
                                 (serial, ERROR, name, []), reply)
                # the same answer, word for word, as OpenImage from the owner's connection
                bus = self.emu.open_image(guest, path, MODE_NAMES[mode])
                self.assertEqual((reply.name, reply.message), (bus.error, bus.message))
        # errors do not close the channel
        self.request_ok(ch, RO)

    def test_not_utf8_refused(self):
        # The bus refuses such strings itself; on a channel the service must.
        self.open_bus('read-write')
        ch = self.channel()
        for guest, path, name in ((GUEST.encode(), self.image.encode() + b'\xff', INVALID_PATH),
                                  (b'vm\xc3', self.image.encode(), INVALID_NAME)):
            with self.subTest(guest=guest, path=path):
                ch.send(pack_request(9, RO, guest, path))
                reply = ch.recv()
                self.assertIsNotNone(reply, 'the channel was closed')
                self.assertEqual((reply.status, reply.name, reply.fds), (ERROR, name, []), reply)
                self.assertIn('not UTF-8', reply.message)
        self.request_ok(ch, RO)

    def test_serials_echoed(self):
        self.open_bus('read-write')
        ch = self.channel()
        serials = [0, 1, 0xffffffff, 0x80000000, 7, 7]
        for s in serials:
            ch.send(pack_request(s, RO, GUEST, self.image))
        got = []
        for _ in serials:
            reply = ch.recv()
            self.assertEqual((reply.status, len(reply.fds)), (OK, 1), reply)
            os.close(reply.fd)
            got.append(reply.serial)
        self.assertEqual(sorted(got), sorted(serials))

    def test_replaced_file_refused(self):
        self.open_bus('read-write')
        ch = self.channel()
        self.request_ok(ch, RW)
        swap = self.bed.make_image('swap.raw', data=b'evil', size=4096)
        os.rename(swap, self.image)
        reply = self.assertChannelError(ch, RW, NOT_GRANTED)
        self.assertIn('replaced', reply.message)

    def test_root_owner_needs_no_polkit(self):
        root_image = self.bed.make_image('root.raw', data=b'root', size=4096)
        self.assertOk(self.mgr.manager('RegisterGuest', 'sa{sv}',
                                       ['vmroot', {'uid': {'$v': ['u', 0]}}]))
        self.grant(root_image, 'read-only', guest='vmroot')
        ch = self.channel(self.mgr, 'vmroot')
        fd = self.request_ok(ch, RO, root_image, 'vmroot')
        self.assertEqual(os.pread(fd, 4, 0), b'root')
        self.assertEqual(fd_info(fd)['accmode'], os.O_RDONLY)
        # and still only what is granted
        self.assertChannelError(ch, RW, NOT_GRANTED, root_image, 'vmroot')
        self.assertChannelError(ch, RO, NOT_BOUND, self.image, GUEST)

    def test_holder_acts_as_owner(self):
        # The test process is root and holds the emulator's channel: it can do only what the
        # emulator may, with the emulator's cache.
        root_image = self.bed.make_image('root.raw', size=4096)
        self.assertOk(self.mgr.manager('RegisterGuest', 'sa{sv}',
                                       ['vmroot', {'uid': {'$v': ['u', 0]}}]))
        self.grant(root_image, 'read-only', guest='vmroot')
        ch = self.channel()
        self.assertChannelError(ch, RO, NOT_BOUND, root_image, 'vmroot')
        self.assertUseBus(ch, RO)           # a root owner would not need polkit
        self.open_bus('read-only')
        self.request_ok(ch, RO)
        self.assertUseBus(ch, RW)


# ---- robustness ----------------------------------------------------------------------------

class RobustnessTests(ChannelTestCase):

    def setUp(self):
        super().setUp()
        self.open_bus('read-write')      # a valid request would now be answered with an fd
        self.sync_daemon()
        self.baseline = self.daemon_fd_count()

    def assertSendCloses(self, ch, packet, what, reason=None, fds=()):
        """Sending packet makes the service close ch without an answer, for reason (its
        log's words), keeping no fd of it."""
        mark = len(self.bed.log_text('daemon'))
        ch.send(packet, fds)
        replies, _ = ch.wait_closed()
        self.assertEqual(replies, 0, '%s was answered' % what)
        ch.close()
        self.wait_daemon_fds(self.baseline, what)
        if reason:
            self.assertIn('Closing the channel of %s: %s' % (self.emu.unique_name, reason),
                          self.bed.log_text('daemon')[mark:])

    def test_malformed_closes(self):
        good = pack_request(1, RO, GUEST, self.image)
        malformed = 'a malformed request'
        cases = {
            'bad magic': pack_request(1, RO, GUEST, self.image, magic=0x31434148),
            'short header': good[:REQUEST.size - 1],
            'header only, lengths lie': good[:REQUEST.size],
            'unknown mode': pack_request(1, 3, GUEST, self.image),
            'unknown option': pack_request(1, RO, GUEST, self.image, options=0x4),
            'guest_len too long': pack_request(1, RO, GUEST, self.image, guest_len=2**32 - 1),
            'path_len too long': pack_request(1, RO, GUEST, self.image,
                                              path_len=len(self.image) + 1),
            'lengths overflow': pack_request(1, RO, GUEST, self.image, guest_len=2**31,
                                             path_len=2**31 + len(GUEST) + len(self.image)),
            'trailing bytes': good + b'\0',
            'NUL in path': pack_request(1, RO, GUEST, self.image + '\0x'),
            'NUL in guest': pack_request(1, RO, GUEST + '\0', self.image),
            'path longer than PATH_MAX + 1': pack_request(1, RO, GUEST, '/' + 'p' * 4096),
        }
        for what, packet in cases.items():
            with self.subTest(what):
                self.assertSendCloses(self.channel(), packet, what, malformed)
        # an empty packet reads like end of file: closed as well
        self.assertSendCloses(self.channel(), b'', 'an empty packet')
        self.assertServes()

    def test_oversize_closes(self):
        ch = self.channel()
        packet = pack_request(1, RO, GUEST, self.image)
        self.assertSendCloses(ch, packet + b'\0' * (9000 - len(packet)), 'a 9000-byte packet',
                              'a request larger than the protocol allows')
        # just above the maximum, with lengths that add up
        ch = self.channel()
        path = '/' + 'p' * (PACKET_MAX + 1 - REQUEST.size - len(GUEST) - 1)
        packet = pack_request(2, RO, GUEST, path)
        self.assertEqual(len(packet), PACKET_MAX + 1)
        self.assertSendCloses(ch, packet, 'a packet of PACKET_MAX + 1 bytes',
                              'a request larger than the protocol allows')
        self.assertServes()

    def test_fds_attached_close_and_never_enter(self):
        bait = self.bed.make_image('bait.raw', size=4096)
        fds = [os.open(bait, os.O_RDONLY | os.O_CLOEXEC) for _ in range(3)]
        self.addCleanup(lambda: [os.close(fd) for fd in fds])
        # a valid request, which would be answered with an fd, but with fds attached
        self.assertSendCloses(self.channel(), pack_request(1, RO, GUEST, self.image),
                              'a request with 3 fds', 'a request with file descriptors attached',
                              fds)
        self.assertNotIn(bait, [f['target'] for f in self.bed.daemon_fds()])
        self.assertServes()

    def test_client_close_frees(self):
        ch = self.channel()
        self.request_ok(ch, RO)
        ch.close()
        self.bed.wait_log('daemon', 'Closing the channel of %s: the client closed it'
                          % re.escape(self.emu.unique_name))
        self.wait_daemon_fds(self.baseline, 'a channel the client closed')
        self.assertServes()


# ---- the owner ------------------------------------------------------------------------------

class OwnerTests(ChannelTestCase):

    def setUp(self):
        super().setUp()
        self.open_bus('read-write')
        self.sync_daemon()
        self.baseline = self.daemon_fd_count()

    def test_owner_reconnect_closes(self):
        ch = self.channel()
        ch2 = self.channel()
        self.request_ok(ch, RO)
        old = self.emu.unique_name
        new = self.emu.reconnect()
        self.assertNotEqual(old, new)
        for c in (ch, ch2):
            replies, _ = c.wait_closed()
            self.assertEqual(replies, 0)
        self.wait_daemon_fds(self.baseline, 'the channels of a connection that left')
        # the new connection has no yes yet, and channels of its own
        ch = self.channel()
        self.assertUseBus(ch, RO)
        self.open_bus('read-only')
        self.request_ok(ch, RO)

    def test_owner_exit_closes(self):
        ch = self.channel()
        self.request_ok(ch, RO)
        self.emu.exit()
        replies, _ = ch.wait_closed()
        self.assertEqual(replies, 0)
        self.wait_daemon_fds(self.baseline, 'the channel of an emulator that exited')
        self.assertTrue(self.bed.daemon_running())

    def test_owner_killed_closes(self):
        ch = self.channel()
        self.emu.kill()
        replies, _ = ch.wait_closed()
        self.assertEqual(replies, 0)
        self.wait_daemon_fds(self.baseline, 'the channel of an emulator that was killed')
        self.assertTrue(self.bed.daemon_running())

    def test_owner_leaving_unannounced_closes(self):
        """dbus-daemon drops the NameOwnerChanged of a connection that leaves while the
        service's queue is full (any local user can fill it).  The service finds out from the
        bus's list of names, at most about 30 s later, and closes the channels."""
        ch = self.channel()
        self.request_ok(ch, RO)
        with attackhelper.FullQueue(self, self.bed):
            old = self.emu.unique_name
            self.emu.reconnect()
        ch.sock.settimeout(45)
        replies, _ = ch.wait_closed()
        self.assertEqual(replies, 0)
        self.assertRegex(self.bed.log_text('daemon'),
                         r'Connection %s is no longer on the bus, though we were not told'
                         % re.escape(old))
        # (the fillers' connections left unannounced too; the notice comes after the channel
        # was closed)
        self.bed.wait_log('daemon', r'Forgot [0-9]+ connection\(s\) that left the bus unannounced')
        self.wait_daemon_fds(self.baseline, 'the channel of a connection that left unannounced')

    def test_daemon_stop_closes(self):
        ch = self.channel()
        self.request_ok(ch, RO)
        self.assertEqual(self.bed.kill_daemon(), 0)
        replies, _ = ch.wait_closed()
        self.assertEqual(replies, 0)
        # a new service knows nothing of the old one's channels
        self.bed.start_daemon(config=CACHE_CONFIG)
        ch = self.channel()
        self.assertUseBus(ch, RO)


# ---- a request that hangs in the file system ---------------------------------------------------

class HungFsTestCase(ChannelTestCase):
    """vm1 also has hung/disk.img read-only, on a FUSE file system that stops answering on
    demand; the emulator's connection has a yes for it and for disk.raw read-write."""

    def setUp(self):
        import attackhelper
        attackhelper.private_mounts()       # before the daemon starts: it must see the mount
        super().setUp()
        import fusehang
        self.mnt = os.path.join(self.bed.images_dir, 'hung')
        os.mkdir(self.mnt)
        self.fs = fusehang.HangFS(self.mnt, {'disk.img': 1 << 20})
        self.addCleanup(self.fs.close)
        self.hung = os.path.join(self.mnt, 'disk.img')
        self.grant(self.hung, 'read-only')
        self.open_bus('read-only', self.hung)      # answers (and caches a yes) before it hangs
        self.open_bus('read-write')
        self.sync_daemon()
        self.baseline = self.daemon_fd_count()

    def hang_request(self, ch, serial):
        self.fs.hang('open')
        ch.send(pack_request(serial, RO, GUEST, self.hung))
        deadline = time.monotonic() + WAIT
        while self.fs.held_count() < 1:
            self.assertLess(time.monotonic(), deadline, 'the request did not reach the file system')
            time.sleep(0.01)



class HungFsTests(HungFsTestCase):

    def test_hung_open_does_not_hold_up_the_channel(self):
        ch = self.channel()
        self.hang_request(ch, 1)
        fd = self.request_ok(ch, RW)            # answered while request 1 waits
        self.assertEqual(fd_info(fd)['ino'], self.image_st.st_ino)
        self.assertChannelError(ch, RW, NOT_GRANTED, self.hung)
        self.fs.resume()
        reply = ch.recv()
        self.assertEqual((reply.serial, reply.status, len(reply.fds)), (1, OK, 1), reply)
        self.assertEqual(fd_info(reply.fd)['accmode'], os.O_RDONLY)
        os.close(reply.fd)                      # before the file system goes away

    def test_owner_leaves_while_its_open_hangs(self):
        ch = self.channel()
        self.hang_request(ch, 1)
        self.emu.exit()
        replies, _ = ch.wait_closed()
        self.assertEqual(replies, 0)
        self.fs.resume()
        # the open completes in its worker and goes nowhere; nothing of it stays
        self.bed.wait_log('daemon', r"audit: open allowed guest='vm1' image='%s'"
                          % re.escape(self.hung))
        self.wait_daemon_fds(self.baseline, 'an open finished after its channel closed')
        self.assertNotIn(self.hung, [f['target'] for f in self.bed.daemon_fds()])
        self.assertTrue(self.bed.daemon_running())
        emu = self.bed.agent('ia-emu1')
        r = emu.open_image(GUEST, self.image, 'read-only')
        self.assertOk(r)
        emu.close_fd(r.fd()['fd'])


    def test_sigterm_with_a_request_in_a_worker(self):
        ch = self.channel()
        self.hang_request(ch, 1)
        self.bed.signal_daemon(signal.SIGTERM)
        replies, _ = ch.wait_closed()           # the service does not wait for the file system
        self.assertEqual(replies, 0)
        self.fs.resume()
        self.assertEqual(self.bed.wait_daemon_exit(WAIT), 0)


class HungFsPendingLimitTests(HungFsTestCase):
    daemon_config = CACHE_CONFIG + '[Limits]\nMaxPendingPerSender=1\n'

    def test_requests_in_workers_count_as_pending(self):
        ch = self.channel()
        self.hang_request(ch, 1)
        # Another open that needs a worker (a FUSE file system may hang) is over the budget;
        # the bus and the channel share the owner's budget.
        self.assertChannelError(ch, RO, LIMIT_EXCEEDED, self.hung)
        self.assertError(self.emu.open_image(GUEST, self.hung, 'read-only'), LIMIT_EXCEEDED)
        # An open of a local file is done on the loop and holds nothing: it is answered.
        self.request_ok(ch, RW)
        self.assertOk(self.emu.open_image(GUEST, self.image, 'read-write'))
        self.fs.resume()
        reply = ch.recv()
        self.assertEqual((reply.serial, reply.status, len(reply.fds)), (1, OK, 1), reply)
        os.close(reply.fd)
        self.request_ok(ch, RW)

    def test_mount_change_sends_opens_back_to_workers(self):
        """A device number names a file system only while it is mounted: after any change to
        the mount table the service opens in workers again until it has looked anew."""
        ch = self.channel()
        self.hang_request(ch, 1)
        self.request_ok(ch, RW)                 # on the loop: not counted
        extra = os.path.join(self.bed.images_dir, 'extra')
        os.mkdir(extra)
        subprocess.run(['mount', '-t', 'tmpfs', 'ia-extra', extra], check=True)
        self.addCleanup(subprocess.run, ['umount', '-l', extra])
        self.sync_daemon()
        self.assertChannelError(ch, RW, LIMIT_EXCEEDED)
        self.fs.resume()
        reply = ch.recv()
        self.assertEqual((reply.serial, reply.status, len(reply.fds)), (1, OK, 1), reply)
        os.close(reply.fd)
        self.request_ok(ch, RW)                 # in a worker, which learns the device again
        self.fs.hang('open')
        ch.send(pack_request(2, RO, GUEST, self.hung))
        deadline = time.monotonic() + WAIT
        while self.fs.held_count() < 1:
            self.assertLess(time.monotonic(), deadline, 'the request did not reach the file system')
            time.sleep(0.01)
        self.request_ok(ch, RW)                 # on the loop again
        self.fs.resume()
        reply = ch.recv()
        self.assertEqual((reply.serial, reply.status), (2, OK), reply)
        os.close(reply.fd)



# ---- invalidation --------------------------------------------------------------------------

class InvalidationTests(ChannelTestCase):

    def setUp(self):
        super().setUp()
        self.open_bus('read-write')
        self.ch = self.channel()
        self.request_ok(self.ch, RW)

    PREFETCHED_YES = re.compile(r"Prefetched polkit's answer on "
                                r"org\.example\.imageaccess\.open-image .*: yes")

    def assertRegrantAsksAgain(self):
        """Grants the image again: the yes that was voided does not come back.  GrantImage
        asks polkit ahead for the connections that opened the guest's images, so the channel
        may serve the request, but only on polkit's new answer, which is in the log before
        the daemon serves with it; until then the request goes to the bus."""
        before = len(self.PREFETCHED_YES.findall(self.bed.log_text('daemon')))
        self.grant(self.image, 'read-write')
        reply = self.ch.request(GUEST, self.image, RO, 0)
        for fd in reply.fds:
            os.close(fd)
        if reply.status == OK:
            self.assertEqual(len(reply.fds), 1, reply)
            self.assertGreater(len(self.PREFETCHED_YES.findall(self.bed.log_text('daemon'))),
                               before, 'served on the voided yes: %r' % (reply,))
        else:
            self.assertEqual((reply.status, reply.name, reply.fds), (USE_BUS, '', []), reply)

    def test_revoke(self):
        self.assertOk(self.mgr.manager('RevokeImage', 'ssa{sv}', [GUEST, self.image, {}]))
        self.assertChannelError(self.ch, RO, NOT_GRANTED)
        self.assertRegrantAsksAgain()

    def test_unregister(self):
        self.assertOk(self.mgr.manager('UnregisterGuest', 's', [GUEST]))
        self.assertChannelError(self.ch, RO, NOT_BOUND)
        self.assertOk(self.mgr.manager('RegisterGuest', 'sa{sv}',
                                       [GUEST, {'uid': {'$v': ['u', self.emu.uid]}}]))
        self.assertRegrantAsksAgain()

    def test_rule_change(self):
        self.bed.set_rules('40-deny.rules', DENY_OPEN_RULES)
        self.assertUseBus(self.ch, RO)
        self.assertError(self.emu.open_image(GUEST, self.image, 'read-only'), ACCESS_DENIED)
        self.assertUseBus(self.ch, RO)      # a no is not remembered either
        self.bed.remove_rules('40-deny.rules')
        self.assertUseBus(self.ch, RO)
        self.open_bus('read-only')
        self.request_ok(self.ch, RO)


    def test_bind(self):
        other = self.bed.agent('ia-emu2')
        self.assertOk(self.mgr.manager('BindProcess', 'sha{sv}',
                                       [GUEST, {'pidfd_of': other.pid}, {}]))
        self.assertUseBus(self.ch, RO)
        self.open_bus('read-only')
        self.request_ok(self.ch, RO)

    def test_polkitd_restart(self):
        self.bed.kill_polkitd()
        self.sync_daemon()
        self.assertUseBus(self.ch, RO)
        self.bed.start_polkitd()
        self.assertUseBus(self.ch, RO)


class CacheDisabledTests(ChannelTestCase):
    daemon_config = '[Polkit]\nDecisionCacheSec=0\n'

    def test_always_uses_bus(self):
        self.open_bus('read-write')
        ch = self.channel()
        self.assertUseBus(ch, RO)
        self.assertUseBus(ch, RW)


# ---- flooding ------------------------------------------------------------------------------

class FloodTests(ChannelTestCase):
    COUNT = 5000

    def flood(self, ch, mode):
        """Sends COUNT requests without reading a reply; returns how many were sent."""
        packet = pack_request(1, mode, GUEST, self.image)
        sent = 0
        for _ in range(self.COUNT):
            try:
                ch.send(packet)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += 1
        return sent

    def check_flood(self):
        self.sync_daemon()
        baseline = self.daemon_fd_count()
        ch = self.channel()
        self.flood(ch, RO)
        replies, _ = ch.wait_closed()
        self.assertLess(replies, self.COUNT, 'every request was answered')
        self.bed.wait_log('daemon', 'Closing the channel of %s: it does not read its replies'
                          % re.escape(self.emu.unique_name))
        ch.close()
        self.wait_daemon_fds(baseline, 'after a flood of requests')
        self.assertServes()             # (an OpenImage read-only over the bus)
        # and the connection may have a channel again, which works
        ch = self.channel()
        self.request_ok(ch, RO)

    def test_flood_of_use_bus(self):
        self.check_flood()

    def test_flood_of_opens(self):
        # every request is answered with an fd: none may pile up in the service
        self.open_bus('read-write')
        self.check_flood()


# ---- audit ---------------------------------------------------------------------------------

AUDIT_RE = re.compile(r"audit: (?P<event>\S+) (?P<result>allowed|denied) (?P<rest>.*)$")


class AuditTests(ChannelTestCase):

    def audit_lines(self, since):
        return [line for line in self.bed.log_text('daemon')[since:].splitlines()
                if AUDIT_RE.search(line)]

    def test_channel_audited(self):
        mark = len(self.bed.log_text('daemon'))
        self.channel()
        lines = self.audit_lines(mark)
        self.assertEqual(len(lines), 1, lines)
        self.assertRegex(lines[0], r"audit: channel allowed guest='vm1' uid=%d pid=%d sender=%s$"
                         % (self.emu.uid, self.emu.pid, re.escape(self.emu.unique_name)))
        emu2 = self.bed.agent('ia-emu2')
        mark = len(self.bed.log_text('daemon'))
        self.assertError(self.open_channel(emu2), NOT_BOUND)
        lines = self.audit_lines(mark)
        self.assertEqual(len(lines), 1, lines)
        self.assertRegex(lines[0], r"audit: channel denied guest='vm1' uid=%d pid=%d sender=%s "
                         r"reason='Caller .* is not bound to a guest named \\'vm1\\''$"
                         % (emu2.uid, emu2.pid, re.escape(emu2.unique_name)))

    def test_opens_on_channel_audited_as_owner(self):
        ch = self.channel()            # used by the test process (root) from here on
        mark = len(self.bed.log_text('daemon'))
        self.assertUseBus(ch, RO)
        self.assertEqual(self.audit_lines(mark), [], 'USE_BUS decides nothing')
        self.open_bus('read-write')
        self.assertRegex(self.audit_lines(mark)[-1],
                         r"audit: open allowed .* sender=%s$" % re.escape(self.emu.unique_name),
                         'an open on the bus is not marked')
        mark = len(self.bed.log_text('daemon'))
        self.request_ok(ch, RO)
        self.assertChannelError(ch, CREATE, NOT_GRANTED)
        lines = self.audit_lines(mark)
        self.assertEqual(len(lines), 2, lines)
        owner = r"uid=%d pid=%d sender=%s via=channel" % (self.emu.uid, self.emu.pid,
                                                          re.escape(self.emu.unique_name))
        self.assertRegex(lines[0], r"audit: open allowed guest='vm1' image='%s' mode=read-only %s$"
                         % (re.escape(self.image), owner))
        self.assertRegex(lines[1], r"audit: open denied guest='vm1' image='%s' mode=create %s "
                         r"reason='.*'$" % (re.escape(self.image), owner))


if __name__ == '__main__':
    testbed.main()

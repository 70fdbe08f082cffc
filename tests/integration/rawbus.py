#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""
A D-Bus client that writes the wire protocol itself, to send what no library will: method
calls that carry more fds than their arguments reference.  dbus-daemon passes up to 16 fds
with any message; the receiver holds all of them for as long as it holds the message.

    rawbus.py SOCKET GUEST CONNECTIONS CALLS FDS

sends CALLS BindProcess(GUEST, fd 0, {}) calls on each of CONNECTIONS connections, each call
carrying FDS fds (a pidfd, then /dev/null), without reading any reply; then waits $HOLD
seconds (default 3) with the connections open.  With $WARM set, each connection first makes
two calls and waits 1.5 s, so that the service knows its credentials before the flood.

    rawbus.py --open-without-fds SOCKET GUEST PATH

connects without negotiating fd passing, calls OpenImage(GUEST, PATH, 'read-only', {}) and
waits up to 5 s for an answer; prints {"answered": true|false}.  (dbus-daemon drops a reply
that carries an fd to such a connection.)
"""
import array
import os
import socket
import struct
import sys
import time


def pad(b, n):
    return b + b'\0' * ((-len(b)) % n)


class Marshal:
    """Little-endian D-Bus marshalling of the few types needed here."""

    def __init__(self):
        self.b = b''

    def align(self, n):
        self.b = pad(self.b, n)

    def y(self, v):
        self.b += struct.pack('<B', v)

    def u(self, v):
        self.align(4)
        self.b += struct.pack('<I', v)

    def s(self, v):
        v = v.encode()
        self.u(len(v))
        self.b += v + b'\0'

    def g(self, v):
        v = v.encode()
        self.y(len(v))
        self.b += v + b'\0'


def message(serial, path, iface, member, dest, sig, body, nfds):
    """A method call; the UNIX_FDS header says nfds whatever the body references."""
    fields = Marshal()

    def field(code, t, writer):
        fields.align(8)
        fields.y(code)
        fields.g(t)
        writer()
    field(1, 'o', lambda: fields.s(path))
    if iface:
        field(2, 's', lambda: fields.s(iface))
    field(3, 's', lambda: fields.s(member))
    field(6, 's', lambda: fields.s(dest))
    if sig:
        field(8, 'g', lambda: fields.g(sig))
    if nfds:
        field(9, 'u', lambda: fields.u(nfds))
    hdr = struct.pack('<cBBBII', b'l', 1, 0, 1, len(body), serial) + \
        struct.pack('<I', len(fields.b)) + fields.b
    return pad(hdr, 8) + body


class Conn:
    def __init__(self, path, fds=True):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.sock.sendall(b'\0AUTH EXTERNAL ' + str(os.geteuid()).encode().hex().encode() + b'\r\n')
        assert self.sock.recv(4096).startswith(b'OK'), 'authentication refused'
        if fds:
            self.sock.sendall(b'NEGOTIATE_UNIX_FD\r\n')
            assert self.sock.recv(4096).startswith(b'AGREE_UNIX_FD'), 'no fd passing'
        self.sock.sendall(b'BEGIN\r\n')
        self.serial = 1
        self.send(message(self.next(), '/org/freedesktop/DBus', 'org.freedesktop.DBus', 'Hello',
                          'org.freedesktop.DBus', '', b'', 0))
        # Until it answers Hello, dbus-daemon reads the socket as in authentication, with no
        # room for fds: a call carrying fds sent before then loses them, and dbus-daemon
        # drops the connection for it.
        assert self.sock.recv(4096), 'no reply to Hello'

    def next(self):
        self.serial += 1
        return self.serial

    def send(self, data, fds=()):
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array('i', fds))] if fds else []
        self.sock.sendmsg([data], anc)


def bind_process_body(guest):
    m = Marshal()
    m.s(guest)
    m.u(0)          # h: fd index 0
    m.u(0)          # a{sv}: empty
    m.align(8)
    return m.b


def open_without_fds(path, guest, image):
    c = Conn(path, fds=False)
    time.sleep(0.3)
    c.sock.setblocking(False)
    try:
        c.sock.recv(65536)          # Hello's reply and NameAcquired
    except BlockingIOError:
        pass
    c.sock.setblocking(True)
    m = Marshal()
    m.s(guest)
    m.s(image)
    m.s('read-only')
    m.u(0)          # a{sv}: empty
    m.align(8)
    c.send(message(c.next(), '/org/example/ImageAccess', 'org.example.ImageAccess', 'OpenImage',
                   'org.example.ImageAccess', 'sssa{sv}', m.b, 0))
    c.sock.settimeout(5)
    try:
        answered = bool(c.sock.recv(4096))
    except socket.timeout:
        answered = False
    print('{"answered": %s}' % ('true' if answered else 'false'), flush=True)


def main():
    if sys.argv[1] == '--open-without-fds':
        return open_without_fds(*sys.argv[2:5])
    path, guest = sys.argv[1], sys.argv[2]
    nconn, ncalls, nfds = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    fds = [os.pidfd_open(os.getpid())] + [os.open('/dev/null', os.O_RDONLY) for _ in range(nfds - 1)]
    conns = [Conn(path) for _ in range(nconn)]
    body = bind_process_body(guest)
    obj, mgr, name = '/org/example/ImageAccess', 'org.example.ImageAccess.Manager', 'org.example.ImageAccess'
    if os.environ.get('WARM'):
        for c in conns:
            c.send(message(c.next(), obj, 'org.freedesktop.DBus.Peer', 'Ping', name, '', b'', 0))
            c.send(message(c.next(), obj, mgr, 'ListGuests', name, '', b'', 0))
        time.sleep(1.5)
    for _ in range(ncalls):
        for c in conns:
            c.send(message(c.next(), obj, mgr, 'BindProcess', name, 'sha{sv}', body, nfds), fds)
    print('{"sent": %d}' % (nconn * ncalls), flush=True)
    time.sleep(float(os.environ.get('HOLD', '3')))


if __name__ == '__main__':
    main()

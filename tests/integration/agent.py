#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""
A D-Bus caller for the integration tests, speaking JSON lines on stdin/stdout.

testbed.py starts one agent per simulated caller with
    setpriv --reuid=U --regid=G --groups=... /usr/bin/python3 agent.py ADDRESS
so that the bus and polkit see a distinct real uid.  The agent keeps one dbus-python
connection to the private bus (its unique name is the caller polkit identifies) and every fd
it receives, so tests can check what a caller really got: access mode, CLOEXEC, the inode.

The same Caller class also runs inside the test process (testbed.LocalAgent), as root, so
both speak exactly the same protocol.

Protocol: one JSON object per line in, one per line out.  A reply is either
{"ok": VALUE} or {"error": NAME, "message": TEXT}; D-Bus errors keep their D-Bus name,
failures inside the agent are named "agent.<ExceptionType>".  See testbed.py (Agent) for the
commands and the JSON encoding of D-Bus values.
"""

import errno
import fcntl
import json
import os
import stat
import sys

import dbus
import dbus.bus
import dbus.lowlevel
import dbus.mainloop.glib
from gi.repository import GLib

DEFAULT_TIMEOUT = 60.0  # seconds; polkit calls may legitimately take > 15 s (polkitd 122 bug)

_ACCMODE = {os.O_RDONLY: 'O_RDONLY', os.O_WRONLY: 'O_WRONLY', os.O_RDWR: 'O_RDWR'}
_OPEN_FLAGS = {
    'O_RDONLY': os.O_RDONLY, 'O_WRONLY': os.O_WRONLY, 'O_RDWR': os.O_RDWR,
    'O_CREAT': os.O_CREAT, 'O_EXCL': os.O_EXCL, 'O_TRUNC': os.O_TRUNC,
    'O_APPEND': os.O_APPEND, 'O_NONBLOCK': os.O_NONBLOCK, 'O_DIRECT': os.O_DIRECT,
    'O_CLOEXEC': os.O_CLOEXEC, 'O_NOFOLLOW': os.O_NOFOLLOW, 'O_PATH': os.O_PATH,
    'O_DIRECTORY': os.O_DIRECTORY, 'O_NOCTTY': os.O_NOCTTY, 'O_SYNC': os.O_SYNC,
}
_STATUS_FLAGS = ['O_APPEND', 'O_NONBLOCK', 'O_DIRECT', 'O_SYNC', 'O_NOFOLLOW', 'O_PATH']


class AgentError(Exception):
    """A request the agent cannot carry out (bad arguments, unknown fd id, ...)."""


def _errno_name(e):
    return errno.errorcode.get(e.errno, str(e.errno))


def _bytes_arg(value):
    """JSON form of bytes: a str (UTF-8), a list of ints, or {"$bytes": HEX}."""
    if isinstance(value, dict) and '$bytes' in value:
        return bytes.fromhex(value['$bytes'])
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, list):
        return bytes(value)
    raise AgentError('cannot make bytes of %r' % (value,))


def _parse_open_flags(flags):
    if isinstance(flags, int):
        return flags
    value = 0
    for name in flags.split('|'):
        name = name.strip()
        if name not in _OPEN_FLAGS:
            raise AgentError('unknown open flag %r' % name)
        value |= _OPEN_FLAGS[name]
    return value


class Caller:
    """One D-Bus connection plus the fds received on it; handles protocol commands."""

    def __init__(self, address):
        self.address = address
        self.mainloop = dbus.mainloop.glib.DBusGMainLoop()
        self.context = GLib.MainContext.default()
        self.fds = {}        # id -> fd number owned by the caller
        self.next_fd_id = 1
        self.pending = {}    # token -> reply dict, or None while in flight
        self.next_token = 1
        self.match_rules = []
        self.signals = []
        self.conn = None
        self._connect()

    # ---- connection -----------------------------------------------------------------------
    def _connect(self):
        self.conn = dbus.bus.BusConnection(self.address, mainloop=self.mainloop)
        self.conn.add_message_filter(self._filter)
        for rule in self.match_rules:
            self.conn.add_match_string(rule)

    def _filter(self, conn, msg):
        if msg.get_type() == dbus.lowlevel.MESSAGE_TYPE_SIGNAL and not (
                msg.get_sender() == 'org.freedesktop.DBus' and
                msg.get_member() in ('NameAcquired', 'NameLost') and
                msg.get_args_list()[:1] == [conn.get_unique_name()]):
            self.signals.append({
                'sender': msg.get_sender(), 'path': msg.get_path(),
                'interface': msg.get_interface(), 'member': msg.get_member(),
                'args': [self._to_json(a, []) for a in msg.get_args_list()],
            })
        return dbus.lowlevel.HANDLER_RESULT_NOT_YET_HANDLED

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()

    # ---- fds ------------------------------------------------------------------------------
    def _keep_fd(self, fd):
        fd_id = self.next_fd_id
        self.next_fd_id += 1
        self.fds[fd_id] = fd
        return fd_id

    def _fd(self, fd_id):
        try:
            return self.fds[int(fd_id)]
        except (KeyError, ValueError, TypeError):
            raise AgentError('no fd with id %r' % (fd_id,)) from None

    def describe_fd(self, fd_id, read=None, write=None, offset=0):
        """What a caller can learn about a held fd; optionally read/write at offset.

        'cloexec' is this process's own descriptor flag.  FD_CLOEXEC belongs to the
        descriptor, not to the open file, so it does not travel over SCM_RIGHTS: for a
        received fd it says what the receiving library did (dbus-python dup()s, which
        clears it), never what the sender had.  The access mode and status flags (F_GETFL)
        do belong to the open file and are the sender's."""
        fd = self._fd(fd_id)
        st = os.fstat(fd)
        fl = fcntl.fcntl(fd, fcntl.F_GETFL)
        d = {
            'fd': int(fd_id), 'fdnum': fd,
            'st_dev': st.st_dev, 'st_ino': st.st_ino, 'st_mode': st.st_mode,
            'st_uid': st.st_uid, 'st_gid': st.st_gid, 'st_size': st.st_size,
            'type': ('reg' if stat.S_ISREG(st.st_mode) else 'blk' if stat.S_ISBLK(st.st_mode)
                     else 'dir' if stat.S_ISDIR(st.st_mode) else 'lnk' if stat.S_ISLNK(st.st_mode)
                     else 'other'),
            'flags': fl,
            'accmode': _ACCMODE.get(fl & os.O_ACCMODE, str(fl & os.O_ACCMODE)),
            'status_flags': [n for n in _STATUS_FLAGS if fl & _OPEN_FLAGS[n]],
            'cloexec': bool(fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC),
        }
        try:
            d['path'] = os.readlink('/proc/self/fd/%d' % fd)
        except OSError:
            pass
        if read is not None:
            try:
                d['read'] = {'ok': os.pread(fd, int(read), offset).hex()}
            except OSError as e:
                d['read'] = {'errno': _errno_name(e)}
        if write is not None:
            try:
                d['write'] = {'ok': os.pwrite(fd, _bytes_arg(write), offset)}
            except OSError as e:
                d['write'] = {'errno': _errno_name(e)}
        return d

    # ---- JSON <-> D-Bus -------------------------------------------------------------------
    def _fd_arg(self, value, opened):
        """An 'h' argument: {"fd": ID} | {"pidfd_of": PID} | {"open": PATH, "flags": F}."""
        if isinstance(value, dict) and 'fd' in value:
            return self._fd(value['fd'])
        if isinstance(value, dict) and 'pidfd_of' in value:
            pid = os.getpid() if value['pidfd_of'] == 'self' else int(value['pidfd_of'])
            fd = os.pidfd_open(pid)
        elif isinstance(value, dict) and 'open' in value:
            fd = os.open(value['open'], _parse_open_flags(value.get('flags', 'O_RDONLY'))
                         | os.O_CLOEXEC)
        else:
            raise AgentError('an "h" argument must be {"fd": id}, {"pidfd_of": pid} or '
                             '{"open": path}, not %r' % (value,))
        opened.append(fd)  # closed once the message is sent
        return fd

    def _to_dbus(self, sig, value, opened, variant_level=0):
        sig = str(sig)
        kw = {'variant_level': variant_level} if variant_level else {}
        c = sig[0]
        if c == 'v':
            if isinstance(value, dict) and '$v' in value:
                inner_sig, inner = value['$v']
                return self._to_dbus(inner_sig, inner, opened, variant_level + 1)
            # Untyped: guess like dbus-python does, but explicitly.
            if isinstance(value, bool):
                return self._to_dbus('b', value, opened, variant_level + 1)
            if isinstance(value, int):
                return self._to_dbus('i' if -2**31 <= value < 2**31 else 'x', value, opened,
                                     variant_level + 1)
            if isinstance(value, float):
                return self._to_dbus('d', value, opened, variant_level + 1)
            if isinstance(value, str):
                return self._to_dbus('s', value, opened, variant_level + 1)
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                return self._to_dbus('as', value, opened, variant_level + 1)
            if isinstance(value, dict):
                return self._to_dbus('a{sv}', value, opened, variant_level + 1)
            raise AgentError('cannot guess a variant type for %r; use {"$v": [sig, value]}'
                             % (value,))
        if c == 'a':
            elem = sig[1:]
            if elem == 'y':
                return dbus.ByteArray(_bytes_arg(value), **kw)
            if elem.startswith('{'):
                if not isinstance(value, dict):
                    raise AgentError('%s needs a JSON object, not %r' % (sig, value))
                ksig, vsig = list(dbus.Signature(elem[1:-1]))
                d = dbus.Dictionary(signature=elem[1:-1], **kw)
                for k, v in value.items():
                    if ksig in 'ynqiuxt':
                        k = int(k)
                    d[self._to_dbus(ksig, k, opened)] = self._to_dbus(vsig, v, opened)
                return d
            if not isinstance(value, list):
                raise AgentError('%s needs a JSON array, not %r' % (sig, value))
            return dbus.Array([self._to_dbus(elem, v, opened) for v in value],
                              signature=elem, **kw)
        if c == '(':
            members = list(dbus.Signature(sig[1:-1]))
            if not isinstance(value, list) or len(members) != len(value):
                raise AgentError('struct %s needs %d members, got %r' % (sig, len(members),
                                                                         value))
            return dbus.Struct([self._to_dbus(s, v, opened) for s, v in zip(members, value)],
                               signature=sig[1:-1], **kw)
        if c == 'h':
            return dbus.types.UnixFd(self._fd_arg(value, opened), **kw)  # dups the fd
        basic = {
            's': dbus.String, 'o': dbus.ObjectPath, 'g': dbus.Signature, 'b': dbus.Boolean,
            'y': dbus.Byte, 'n': dbus.Int16, 'q': dbus.UInt16, 'i': dbus.Int32,
            'u': dbus.UInt32, 'x': dbus.Int64, 't': dbus.UInt64, 'd': dbus.Double,
        }
        if c not in basic:
            raise AgentError('unsupported signature %r' % sig)
        return basic[c](value, **kw)

    def _to_json(self, value, new_fds):
        if isinstance(value, dbus.types.UnixFd):
            fd_id = self._keep_fd(value.take())
            new_fds.append(fd_id)
            return {'fd': fd_id}
        if isinstance(value, dbus.Boolean):
            return bool(value)
        if isinstance(value, (dbus.Struct, dbus.Array, list, tuple)):
            return [self._to_json(v, new_fds) for v in value]
        if isinstance(value, dbus.ByteArray):
            return list(bytes(value))
        if isinstance(value, dict):
            return {str(self._to_json(k, new_fds)): self._to_json(v, new_fds)
                    for k, v in value.items()}
        if isinstance(value, (dbus.String, dbus.ObjectPath, dbus.Signature, str)):
            return str(value)
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float):
            return float(value)
        return repr(value)

    # ---- calls ----------------------------------------------------------------------------
    def _message(self, req, opened):
        msg = dbus.lowlevel.MethodCallMessage(
            req.get('dest', 'org.example.ImageAccess'),
            req.get('path', '/org/example/ImageAccess'),
            req.get('iface', 'org.example.ImageAccess'),
            req['method'])
        sig = req.get('sig', '')
        args = req.get('args', [])
        types = list(dbus.Signature(sig))
        if len(types) != len(args):
            raise AgentError('signature %r takes %d arguments, got %d'
                             % (sig, len(types), len(args)))
        if types:
            msg.append(*[self._to_dbus(t, a, opened) for t, a in zip(types, args)],
                       signature=sig)
        if req.get('interactive'):
            msg.set_allow_interactive_authorization(True)
        if req.get('no_auto_start'):
            msg.set_auto_start(False)
        return msg

    def _reply_to_json(self, reply, req):
        if reply.get_type() == dbus.lowlevel.MESSAGE_TYPE_ERROR:
            args = reply.get_args_list()
            return {'error': reply.get_error_name(),
                    'message': str(args[0]) if args else ''}
        new_fds = []
        values = [self._to_json(v, new_fds) for v in reply.get_args_list()]
        res = {'ok': values}
        if new_fds:
            res['fds'] = {str(i): self.describe_fd(i, req.get('read'), req.get('write'),
                                                   req.get('offset', 0))
                          for i in new_fds}
        return res

    def call(self, req):
        opened = []
        try:
            msg = self._message(req, opened)
            timeout = float(req.get('timeout', DEFAULT_TIMEOUT))
            try:
                reply = self.conn.send_message_with_reply_and_block(msg, timeout)
            except dbus.exceptions.DBusException as e:
                return {'error': e.get_dbus_name() or 'agent.DBusException',
                        'message': e.get_dbus_message() or ''}
            return self._reply_to_json(reply, req)
        finally:
            for fd in opened:
                os.close(fd)

    def call_async(self, req):
        opened = []
        try:
            msg = self._message(req, opened)
            token = self.next_token
            self.next_token += 1
            self.pending[token] = None

            def on_reply(reply):
                self.pending[token] = self._reply_to_json(reply, req)

            self.conn.send_message_with_reply(msg, on_reply,
                                              float(req.get('timeout', DEFAULT_TIMEOUT)),
                                              require_main_loop=True)
            self.conn.flush()
            return {'ok': token}
        finally:
            for fd in opened:
                os.close(fd)

    def _iterate_until(self, done, timeout):
        """Run the GLib loop until done() or timeout seconds; returns done()."""
        timed_out = []
        source = GLib.timeout_add(max(0, int(timeout * 1000)), lambda: timed_out.append(1))
        try:
            while not done() and not timed_out:
                self.context.iteration(True)
        finally:
            if not timed_out:
                GLib.source_remove(source)
        while self.context.pending():  # also dispatch what is already queued
            self.context.iteration(False)
        return done()

    def wait(self, req):
        token = int(req['token'])
        if token not in self.pending:
            raise AgentError('no pending call %r' % token)
        if not self._iterate_until(lambda: self.pending[token] is not None,
                                   float(req.get('timeout', DEFAULT_TIMEOUT + 5))):
            return {'error': 'agent.Timeout', 'message': 'call %d still pending' % token}
        return self.pending.pop(token)

    def get_signals(self, req):
        count = int(req.get('count', 0))
        self._iterate_until(lambda: len(self.signals) >= count, float(req.get('timeout', 0)))
        got, self.signals = self.signals, []
        return {'ok': got}

    # ---- dispatch -------------------------------------------------------------------------
    def handle(self, req):
        cmd = req.get('cmd')
        try:
            if cmd == 'call':
                return self.call_async(req) if req.get('async') else self.call(req)
            if cmd == 'wait':
                return self.wait(req)
            if cmd == 'fd':
                return {'ok': self.describe_fd(req['fd'], req.get('read'), req.get('write'),
                                               req.get('offset', 0))}
            if cmd == 'close':
                os.close(self.fds.pop(int(req['fd'])))
                return {'ok': True}
            if cmd == 'open':
                fd = os.open(req['path'], _parse_open_flags(req.get('flags', 'O_RDONLY'))
                             | os.O_CLOEXEC, int(req.get('mode', 0o600)))
                return {'ok': self.describe_fd(self._keep_fd(fd))}
            if cmd == 'pidfd':
                return {'ok': self.describe_fd(self._keep_fd(os.pidfd_open(int(req['pid']))))}
            if cmd == 'fdcount':
                # listdir opens one fd of its own, which appears in the listing
                return {'ok': len(os.listdir('/proc/self/fd')) - 1}
            if cmd == 'pid':
                return {'ok': os.getpid()}
            if cmd == 'whoami':
                return {'ok': {'pid': os.getpid(), 'uid': os.getuid(), 'euid': os.geteuid(),
                               'gid': os.getgid(), 'egid': os.getegid(),
                               'groups': os.getgroups(),
                               'unique_name': self.conn.get_unique_name()}}
            if cmd == 'unique_name':
                return {'ok': self.conn.get_unique_name()}
            if cmd == 'reconnect':
                self.conn.close()
                self._connect()
                return {'ok': self.conn.get_unique_name()}
            if cmd == 'subscribe':
                self.conn.add_match_string(req['rule'])
                self.match_rules.append(req['rule'])
                return {'ok': True}
            if cmd == 'signals':
                return self.get_signals(req)
            raise AgentError('unknown command %r' % (cmd,))
        except dbus.exceptions.DBusException as e:
            return {'error': e.get_dbus_name() or 'agent.DBusException',
                    'message': e.get_dbus_message() or str(e)}
        except Exception as e:  # a bad request must not kill the agent
            return {'error': 'agent.' + type(e).__name__, 'message': str(e)}


def main():
    address = sys.argv[1] if len(sys.argv) > 1 else os.environ['DBUS_SYSTEM_BUS_ADDRESS']
    caller = Caller(address)
    out = sys.stdout
    out.write(json.dumps({'ready': {'pid': os.getpid(), 'uid': os.getuid(),
                                    'unique_name': caller.conn.get_unique_name()}}) + '\n')
    out.flush()
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
        except ValueError as e:
            res = {'error': 'agent.BadRequest', 'message': str(e)}
        else:
            if req.get('cmd') == 'exit':
                out.write(json.dumps({'ok': True}) + '\n')
                out.flush()
                break
            res = caller.handle(req)
        out.write(json.dumps(res) + '\n')
        out.flush()
    caller.close()


if __name__ == '__main__':
    main()

#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""
A fake polkit authority for the integration tests: owns org.freedesktop.PolicyKit1 on the
test bed's bus and answers CheckAuthorization the way the test asks, including the ways the
real polkitd must never be trusted to behave: errors, malformed replies, no reply at all.

The bus policy lets only user polkitd own the name, so run it as that user, after
TestBed.kill_polkitd():

    setpriv --reuid=polkitd --regid=polkitd --clear-groups /usr/bin/python3 fake_polkitd.py \
        ADDRESS [MODE]

Use start_fake_polkitd() from a test: it does that and waits for the name.

Modes (what CheckAuthorization gets back):
  allow         (true, false, {})
  deny          (false, false, {})
  challenge     (false, true, {})               is_challenge: authentication would help
  error         org.freedesktop.PolicyKit1.Error.Failed
  malformed     a reply of signature 's' instead of '(bba{ss})'
  unwrapped     'bba{ss}': the right values, not in a struct
  hold          no reply until Release() (a hung authority that one can count)

Control interface org.example.FakePolkit on the authority's object (anyone on the bus may call
PolicyKit1, so the test process can):
  SetMode(s mode)
  Release(s mode) -> u     answer every held call as `mode` (then new calls get `mode` too)
  Stats() -> a{sv}         calls, outstanding (held now), peak_outstanding, last_subject,
                           last_action, last_details (a{ss}), last_flags, actions (as)
"""

import signal
import sys

import dbus
import dbus.bus
import dbus.exceptions
import dbus.mainloop.glib
import dbus.service
from gi.repository import GLib

NAME = 'org.freedesktop.PolicyKit1'
PATH = '/org/freedesktop/PolicyKit1/Authority'
IFACE = 'org.freedesktop.PolicyKit1.Authority'
CONTROL_IFACE = 'org.example.FakePolkit'
MODES = ('allow', 'deny', 'challenge', 'error', 'malformed', 'unwrapped', 'hold')


class PolkitFailed(dbus.exceptions.DBusException):
    _dbus_error_name = 'org.freedesktop.PolicyKit1.Error.Failed'


class Authority(dbus.service.Object):
    def __init__(self, bus, mode):
        super().__init__(bus, PATH)
        self.mode = mode
        self.held = []          # (ok, err) of calls not answered yet
        self.calls = 0
        self.peak = 0
        self.last = {}
        self.actions = []

    def _answer(self, mode, ok, err):
        if mode == 'allow':
            ok(dbus.Struct((True, False, dbus.Dictionary({}, signature='ss')),
                           signature='bba{ss}'))
        elif mode == 'deny':
            ok(dbus.Struct((False, False, dbus.Dictionary({}, signature='ss')),
                           signature='bba{ss}'))
        elif mode == 'challenge':
            ok(dbus.Struct((False, True, dbus.Dictionary({}, signature='ss')),
                           signature='bba{ss}'))
        elif mode == 'error':
            err(PolkitFailed('fake polkitd: failing on purpose'))
        elif mode == 'malformed':
            ok(dbus.String('fake polkitd: this is not (bba{ss})'))
        elif mode == 'unwrapped':
            ok(dbus.Boolean(True), dbus.Boolean(False), dbus.Dictionary({}, signature='ss'))
        else:
            raise ValueError(mode)

    # No out_signature: the reply's signature is whatever the mode sends.
    @dbus.service.method(IFACE, in_signature='(sa{sv})sa{ss}us', async_callbacks=('ok', 'err'))
    def CheckAuthorization(self, subject, action_id, details, flags, cancellation_id, ok, err):
        self.calls += 1
        self.last = {
            'last_subject': dbus.Struct((subject[0], dbus.Dictionary(subject[1],
                                                                     signature='sv')),
                                        signature='sa{sv}', variant_level=1),
            'last_action': dbus.String(action_id, variant_level=1),
            'last_details': dbus.Dictionary(details, signature='ss', variant_level=1),
            'last_flags': dbus.UInt32(flags, variant_level=1),
        }
        self.actions.append(str(action_id))
        sys.stdout.write('fake polkitd: call %d: %s from %s flags=%d mode=%s\n'
                         % (self.calls, action_id,
                            subject[1].get('name') or 'pid %s' % subject[1].get('pid'),
                            flags, self.mode))
        sys.stdout.flush()
        if self.mode == 'hold':
            self.held.append((ok, err))
            self.peak = max(self.peak, len(self.held))
            return
        self._answer(self.mode, ok, err)

    @dbus.service.method(CONTROL_IFACE, in_signature='s', out_signature='')
    def SetMode(self, mode):
        if mode not in MODES:
            raise dbus.exceptions.DBusException('unknown mode %r' % mode)
        self.mode = str(mode)

    @dbus.service.method(CONTROL_IFACE, in_signature='s', out_signature='u')
    def Release(self, mode):
        if mode not in MODES or mode == 'hold':
            raise dbus.exceptions.DBusException('cannot release as %r' % mode)
        self.mode = str(mode)
        held, self.held = self.held, []
        for ok, err in held:
            self._answer(self.mode, ok, err)
        return len(held)

    @dbus.service.method(CONTROL_IFACE, in_signature='', out_signature='a{sv}')
    def Stats(self):
        d = dbus.Dictionary({
            'calls': dbus.UInt32(self.calls, variant_level=1),
            'outstanding': dbus.UInt32(len(self.held), variant_level=1),
            'peak_outstanding': dbus.UInt32(self.peak, variant_level=1),
            'mode': dbus.String(self.mode, variant_level=1),
            'actions': dbus.Array(self.actions, signature='s', variant_level=1),
        }, signature='sv')
        d.update(self.last)
        return d


def main():
    address = sys.argv[1]
    mode = sys.argv[2] if len(sys.argv) > 2 else 'allow'
    if mode not in MODES:
        sys.exit('unknown mode %r (known: %s)' % (mode, ', '.join(MODES)))
    dbus.mainloop.glib.DBusGMainLoop(set_as_default=True)
    bus = dbus.bus.BusConnection(address)
    loop = GLib.MainLoop()
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)
    authority = Authority(bus, mode)  # exported while referenced
    name = dbus.service.BusName(NAME, bus, do_not_queue=True)
    sys.stdout.write('fake polkitd: owning %s as uid %s, mode %s\n'
                     % (NAME, __import__('os').getuid(), mode))
    sys.stdout.flush()
    loop.run()
    del authority, name


if __name__ == '__main__':
    main()

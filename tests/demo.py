#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""
The main job, for a person to read: image-accessd on a private system bus with the real
polkitd and the project's own policy, two guests, and an emulator that opens its own image and
is refused another guest's.  Run through tests/run-demo.sh, which builds everything first.
"""

import os
import signal
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), 'integration'))
import testbed  # noqa: E402

GUEST_A, GUEST_B = 'demo-vm1', 'demo-vm2'


def say(text=''):
    print(text, flush=True)


def step(text):
    say()
    say('== ' + text)


def show(who, what, reply):
    if reply.ok:
        extra = ''
        if reply.fds:
            d = reply.fd(0)
            extra = ' -> fd (%s, %s)' % (d['accmode'], 'read: %r' % d['read'] if 'read' in d else
                                         'write: %s bytes' % d.get('write'))
        say('   %-8s %-52s OK%s' % (who, what, extra))
    else:
        say('   %-8s %-52s DENIED %s' % (who, what, reply.error.rsplit('.', 1)[-1]))
        say('   %-8s %-52s   "%s"' % ('', '', reply.message))


def main():
    daemon = os.environ.get('IA_DAEMON')
    if not daemon:
        sys.exit('IA_DAEMON is not set: run tests/run-demo.sh')

    step('Starting a private system bus, the real polkitd (project policy only) and image-accessd')
    bed = testbed.TestBed(daemon=daemon).start()
    try:
        bed.start_daemon()
        say('   bus:        %s' % bed.address)
        say('   polkitd:    pid %d, actions from policy/org.example.ImageAccess.policy' % bed.polkitd_pid)
        say('   daemon:     pid %d, state in %s' % (bed.daemon_pid, bed.state_dir))

        step('Images: root-owned, mode 0600, in a 0711 directory (like /var/lib/libvirt/images)')
        os.chmod(bed.images_dir, 0o711)
        disk_a = bed.make_image('%s.raw' % GUEST_A, data=b'boot sector of ' + GUEST_A.encode(), size=1 << 20)
        disk_b = bed.make_image('%s.raw' % GUEST_B, data=b'secrets of ' + GUEST_B.encode(), size=1 << 20)
        say('   %s\n   %s' % (disk_a, disk_b))

        emu_a = bed.agent('ia-emu1')
        say('   emulator of %s runs as ia-emu1 (uid %d), pid %d' % (GUEST_A, emu_a.uid, emu_a.pid))
        try:
            emu_a.open(disk_a, 'O_RDWR')
            say('   ia-emu1 opening %s itself: it worked, the demo is broken' % disk_a)
            sys.exit(1)
        except testbed.TestBedError as e:
            say('   ia-emu1 opening %s itself: %s' % (os.path.basename(disk_a),
                                                      str(e).rsplit(': ', 2)[-2]))

        step('The VM manager (root) registers the guests and grants their images')
        mgr = bed.local
        u1, u2 = bed.users['ia-emu1'].uid, bed.users['ia-emu2'].uid
        for what, method, sig, args in [
                ('RegisterGuest %s uid=%d' % (GUEST_A, u1), 'RegisterGuest', 'sa{sv}',
                 [GUEST_A, {'uid': {'$v': ['u', u1]}, 'description': 'demo guest A'}]),
                ('RegisterGuest %s uid=%d' % (GUEST_B, u2), 'RegisterGuest', 'sa{sv}',
                 [GUEST_B, {'uid': {'$v': ['u', u2]}}]),
                ('GrantImage %s %s read-write' % (GUEST_A, os.path.basename(disk_a)), 'GrantImage',
                 'sssa{sv}', [GUEST_A, disk_a, 'read-write', {}]),
                ('GrantImage %s %s read-only' % (GUEST_B, os.path.basename(disk_b)), 'GrantImage',
                 'sssa{sv}', [GUEST_B, disk_b, 'read-only', {}])]:
            show('manager', what, mgr.manager(method, sig, args))

        step('The emulator of %s asks the service (polkit decides, details name guest, image, mode)' % GUEST_A)
        show('ia-emu1', 'OpenImage %s %s read-write' % (GUEST_A, os.path.basename(disk_a)),
             emu_a.call('OpenImage', 'sssa{sv}', [GUEST_A, disk_a, 'read-write', {}], read=32))
        show('ia-emu1', 'OpenImage %s %s read-write' % (GUEST_A, os.path.basename(disk_b)),
             emu_a.call('OpenImage', 'sssa{sv}', [GUEST_A, disk_b, 'read-write', {}], read=32))
        show('ia-emu1', 'OpenImage %s %s read-only (claims B)' % (GUEST_B, os.path.basename(disk_b)),
             emu_a.call('OpenImage', 'sssa{sv}', [GUEST_B, disk_b, 'read-only', {}], read=32))
        show('ia-emu1', 'OpenImage %s ../%s read-only' % (GUEST_A, os.path.basename(disk_b)),
             emu_a.call('OpenImage', 'sssa{sv}',
                        [GUEST_A, os.path.join(bed.images_dir, '..', os.path.basename(disk_b)),
                         'read-only', {}]))

        step('A polkit admin restricts %s to read-only opens with a .rules file' % GUEST_A)
        rules = '''polkit.addRule(function(action, subject) {
    if (action.id == "org.example.imageaccess.open-image" &&
        action.lookup("guest") == "%s" && action.lookup("mode") != "read-only")
        return polkit.Result.NO;
});
''' % GUEST_A
        bed.set_rules('40-demo-readonly.rules', rules)
        say('   ' + rules.replace('\n', '\n   ').rstrip())
        show('ia-emu1', 'OpenImage %s %s read-write' % (GUEST_A, os.path.basename(disk_a)),
             emu_a.call('OpenImage', 'sssa{sv}', [GUEST_A, disk_a, 'read-write', {}]))
        show('ia-emu1', 'OpenImage %s %s read-only' % (GUEST_A, os.path.basename(disk_a)),
             emu_a.call('OpenImage', 'sssa{sv}', [GUEST_A, disk_a, 'read-only', {}], read=32))

        step('The service is killed with SIGKILL and restarted: guests and grants are still there')
        bed.restart_daemon(signal.SIGKILL)
        reply = mgr.manager('ListGrants', 's', [GUEST_A])
        for path, mode, props in reply.values[0]:
            say('   %s: %s %s' % (GUEST_A, mode, path))
        show('ia-emu1', 'OpenImage %s %s read-only' % (GUEST_A, os.path.basename(disk_a)),
             emu_a.call('OpenImage', 'sssa{sv}', [GUEST_A, disk_a, 'read-only', {}], read=32))

        step('The audit trail (daemon log)')
        for line in bed.log_text('daemon').splitlines():
            if 'audit:' in line:
                say('   ' + line.split('> ', 1)[-1])
        emu_a.exit()
    except Exception:
        bed.dump_logs()
        raise
    finally:
        bed.stop(check=False)
        bed.remove()
    say()
    say('Demo finished: everything it started has been stopped.')


if __name__ == '__main__':
    main()

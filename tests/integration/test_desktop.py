#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""
A person at a terminal, for real: image-accessctl run by a desktop user (not root) in tmux,
polkit's text agent asking for the administrator's password, the test typing it.

The bed's polkitd gives members of ia-operators auth_admin_keep for the manager actions, and
names ia-admin the administrator.  The user's shell runs in a mount namespace of its own with
the bed's passwd and group, a shadow file holding ia-admin's password, and the bed's bus
socket at /run/dbus/system_bus_socket: pkttyagent's polkit-agent-helper-1 is set-uid root,
clears its environment (so it finds the system bus only at the default path) and checks the
password with PAM (pam_unix reads /etc/shadow).  Nothing of the host is changed.
"""

import warnings

with warnings.catch_warnings():
    warnings.simplefilter('ignore', DeprecationWarning)
    import crypt  # Debian 12's python3 3.11 still has it; the bed needs a SHA-512 hash
import os
import re
import shlex
import subprocess
import sys
import termios
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qemuvm  # noqa: E402
import testbed  # noqa: E402

CTL = os.environ.get('IA_CTL')
TMUX = '/usr/bin/tmux'
PKTTYAGENT = '/usr/bin/pkttyagent'
ADMIN = testbed.User('ia-admin', 61090, 61090, gecos='image-access test administrator')
ADMIN_PASSWORD = 'correct horse 61090'
DESK = 'ia-op'          # member of ia-operators
PROMPT_FILE = os.environ.get('IA_DESKTOP_PROMPT_CAPTURE')   # where to save the screen, if set

RULES = '''\
polkit.addAdminRule(function(action, subject) {
    return ["unix-user:ia-admin"];
});
polkit.addRule(function(action, subject) {
    if (action.id.indexOf("org.example.imageaccess.") == 0 &&
        action.id != "org.example.imageaccess.open-image" &&
        subject.isInGroup("ia-operators"))
        return polkit.Result.AUTH_ADMIN_KEEP;
    return polkit.Result.NOT_HANDLED;
});
'''


def shadow_text(users, passwords):
    """The host's shadow plus a line per test user: a password hash where one is given,
    else locked."""
    with open('/etc/shadow') as f:
        text = f.read()
    if text and not text.endswith('\n'):
        text += '\n'
    for u in users:
        pw = passwords.get(u.name)
        hashed = crypt.crypt(pw, crypt.mksalt(crypt.METHOD_SHA512)) if pw else '!'
        text += '%s:%s:19000:0:99999:7:::\n' % (u.name, hashed)
    return text


def unwrap(text, cols=120):
    """Joins the lines that the terminal wrapped at @cols columns."""
    out = ''
    for line in text.split('\n'):
        out += line + ('' if len(line) == cols else '\n')
    return out


class Terminal:
    """A tmux session whose shell runs as a test user in the private namespace."""

    def __init__(self, bed, user, cols=120, rows=32):
        self.bed = bed
        self.sock = os.path.join(bed.runtime_dir, 'tmux.sock')
        shadow = os.path.join(bed.runtime_dir, 'shadow')
        with open(shadow, 'w') as f:
            f.write(shadow_text(bed.users.values(), {ADMIN.name: ADMIN_PASSWORD}))
        os.chmod(shadow, 0o600)
        u = bed.users[user]
        groups = ','.join(map(str, u.groups)) if u.groups else None
        # image-accessctl from the build on PATH, the bed's bus as the system bus, and the
        # GObject library's typelib for the Python manager of test_keep_within_one_process
        env = {'PATH': '%s:/usr/sbin:/usr/bin:/sbin:/bin' % os.path.dirname(CTL),
               'HOME': bed.runtime_dir, 'TERM': 'screen', 'LANG': 'C.UTF-8', 'PS1': '$ ',
               'DBUS_SYSTEM_BUS_ADDRESS': bed.address, testbed.RUN_TOKEN_VAR: bed.token}
        for var, src in (('GI_TYPELIB_PATH', 'IA_GI_TYPELIB_DIR'),
                         ('LD_LIBRARY_PATH', 'IA_GI_LIBRARY_PATH')):
            if os.environ.get(src):
                env[var] = os.environ[src]
        script = ' '.join([
            'set -e;',
            'mount --bind %s /etc/passwd;' % shlex.quote(bed.passwd_path),
            'mount --bind %s /etc/group;' % shlex.quote(bed.group_path),
            'mount --bind %s /etc/shadow;' % shlex.quote(shadow),
            'mount -t tmpfs -o mode=0755 ia-run-dbus /run/dbus;',
            ': > /run/dbus/system_bus_socket;',
            'mount --bind %s /run/dbus/system_bus_socket;' % shlex.quote(bed.socket_path),
            'cd /; exec setpriv --reuid=%d --regid=%d %s --' % (
                u.uid, u.gid, '--groups=' + groups if groups else '--clear-groups'),
            'env -i %s /bin/bash --norc --noprofile' % ' '.join(
                shlex.quote('%s=%s' % kv) for kv in env.items()),
        ])
        cmd = 'exec unshare -m --propagation private -- /bin/sh -c %s' % shlex.quote(script)
        self.tmux('new-session', '-d', '-s', 'desk', '-x', str(cols), '-y', str(rows), cmd)

    def tmux(self, *args, check=True):
        return subprocess.run([TMUX, '-S', self.sock, '-f', '/dev/null'] + list(args),
                              env=self.bed.base_env(), capture_output=True, text=True,
                              check=check, timeout=30)

    def close(self):
        """Kills the server and waits for it and the shell to be gone (the bed's teardown
        looks for processes of the bed)."""
        pids = self.tmux('display-message', '-p', '-t', 'desk', '#{pid} #{pane_pid}',
                         check=False).stdout.split()
        self.tmux('kill-server', check=False)
        deadline = time.monotonic() + 10
        for pid in pids:
            while os.path.exists('/proc/%s' % pid) and time.monotonic() < deadline:
                time.sleep(0.02)

    def screen(self):
        return self.tmux('capture-pane', '-p', '-t', 'desk').stdout

    def clear(self):
        self.tmux('send-keys', '-t', 'desk', 'clear', 'Enter')
        self.wait_for(r'\A\$ ?$', what='a cleared screen')
        self.tmux('clear-history', '-t', 'desk')

    def wait_echo_off(self, timeout=30):
        """Waits until the terminal stops echoing (the agent reads a password).  pkttyagent
        prints the prompt before it turns echo off, and turning it off flushes pending input
        (TCSAFLUSH): a password typed in between would be lost."""
        tty = self.tmux('display-message', '-p', '-t', 'desk', '#{pane_tty}').stdout.strip()
        fd = os.open(tty, os.O_RDONLY | os.O_NOCTTY | os.O_CLOEXEC)
        try:
            deadline = time.monotonic() + timeout
            while termios.tcgetattr(fd)[3] & termios.ECHO:
                if time.monotonic() > deadline:
                    raise AssertionError('the terminal still echoes after %d s' % timeout)
                time.sleep(0.02)
        finally:
            os.close(fd)

    def type(self, text, enter=True):
        self.tmux('send-keys', '-t', 'desk', '-l', text)
        if enter:
            self.tmux('send-keys', '-t', 'desk', 'Enter')

    def wait_for(self, pattern, timeout=30, what=None):
        """Waits until the screen (trailing blank lines dropped) matches the regex; returns
        the screen."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.screen().rstrip('\n') + '\n'
            text = re.sub(r'\n+\Z', '\n', text)
            if re.search(pattern, text.rstrip('\n'), re.M):
                return text
            if time.monotonic() > deadline:
                raise AssertionError('%s did not appear on the terminal within %d s; screen:\n%s'
                                     % (what or repr(pattern), timeout, text))
            time.sleep(0.05)

    def run(self, command, timeout=60):
        """Types a command and waits for the shell to come back; returns (screen, status)."""
        self.type(command + '; echo "[exit $?]"')
        text = self.wait_for(r'^\[exit (\d+)\]\n\$ ?$', timeout=timeout, what='the command\'s end')
        return text, int(re.findall(r'^\[exit (\d+)\]$', text, re.M)[-1])


class DesktopTestCase(testbed.IaTestCase):
    bed_options = {'rules': {'50-desktop.rules': RULES}, 'extra_users': [ADMIN]}

    def setUp(self):
        for path, pkg in ((CTL, 'image-accessctl (build)'), (TMUX, 'tmux'),
                          (PKTTYAGENT, 'polkitd')):
            if not path or not os.access(path, os.X_OK):
                raise AssertionError('%s not found: %s' % (path, pkg))
        super().setUp()
        self.term = Terminal(self.bed, DESK)
        self.addCleanup(self.term.close)
        self.term.wait_for(r'^\$ ?$', what='the shell prompt')

    def guests(self):
        return {g[0]: g[1] for g in self.assertOk(self.bed.local.manager('ListGuests'))[0]}

    def grants(self, guest):
        return {p: m for p, m, _ in self.assertOk(self.bed.local.manager('ListGrants', 's',
                                                                          [guest]))[0]}

    def authenticate(self, command, action, message, password=ADMIN_PASSWORD):
        """Types a command that polkit challenges; waits for the prompt, checks what it says,
        types the password.  Returns the screen at the prompt."""
        self.term.clear()
        self.term.type(command + '; echo "[exit $?]"')
        screen = self.term.wait_for(r'^Password: ?$', what='the password prompt')
        self.assertIn('==== AUTHENTICATING FOR %s ====' % action, screen)
        self.assertIn(message, screen)
        self.assertIn('Authenticating as: %s (ia-admin)' % ADMIN.gecos, screen)
        self.term.wait_echo_off()
        if password is not None:
            self.term.type(password)
        return screen

    def finish(self, timeout=60):
        """Waits for the command of authenticate() to end; returns (screen, exit status)."""
        # Not anchored at the shell's next prompt: after a timeout, the agent's set-uid
        # helper may still print its PAM failure once the shell is back.
        text = self.term.wait_for(r'^\[exit (\d+)\]$', timeout=timeout,
                                  what='the command\'s end')
        return text, int(re.findall(r'^\[exit (\d+)\]$', text, re.M)[-1])

    def assertSays(self, text, pattern):
        """The regex matches the screen with lines the terminal wrapped joined again."""
        self.assertRegex(unwrap(text), pattern)

    def polkit_log(self):
        return self.bed.log_text('polkitd')


class PromptTests(DesktopTestCase):

    def test_password_prompt_then_register_and_grant(self):
        screen = self.authenticate('image-accessctl register vm-desk --uid=%s' % DESK,
                                   'org.example.imageaccess.register-guest',
                                   'Authentication is required to register guest vm-desk')
        if PROMPT_FILE:
            with open(PROMPT_FILE, 'w') as f:
                f.write(screen)
        # the password is not echoed
        self.assertNotIn(ADMIN_PASSWORD, self.term.screen())
        text, status = self.finish()
        self.assertEqual(status, 0, text)
        self.assertIn('==== AUTHENTICATION COMPLETE ====', text)
        self.assertNotIn(ADMIN_PASSWORD, text)
        self.assertEqual(self.guests()['vm-desk']['uid'], self.bed.users[DESK].uid)

        path = self.bed.make_image('desk.img', b'desk')
        self.authenticate('image-accessctl grant vm-desk %s read-write' % path,
                          'org.example.imageaccess.grant-image',
                          'Authentication is required to grant guest vm-desk access to %s' % path)
        text, status = self.finish()
        self.assertEqual(status, 0, text)
        self.assertEqual(self.grants('vm-desk'), {path: 'read-write'})
        # polkitd says whom it authenticated, for whom
        self.assertRegex(self.polkit_log(), r'successfully authenticated as unix-user:ia-admin to '
                         r'gain TEMPORARY authorization for action '
                         r'org\.example\.imageaccess\.grant-image .*owned by unix-user:ia-op')

    def test_wrong_password_is_denied(self):
        self.authenticate('image-accessctl register vm-desk',
                          'org.example.imageaccess.register-guest',
                          'Authentication is required to register guest vm-desk',
                          password='not the password')
        text, status = self.finish()
        self.assertEqual(status, 3, text)   # IA_EXIT_DENIED
        self.assertIn('==== AUTHENTICATION FAILED ====', text)
        self.assertSays(text, r"Failed to register guest 'vm-desk': Authentication for action "
                               r"org\.example\.imageaccess\.register-guest failed")
        self.assertNotIn('vm-desk', self.guests())

    def test_no_agent_to_ask_is_named(self):
        """--ask-password without a terminal: interaction allowed, but no agent is started
        and none is registered, so nobody can be asked."""
        text, status = self.term.run('image-accessctl --ask-password register vm-n < /dev/null')
        self.assertEqual(status, 3, text)
        self.assertSays(text, 'no polkit authentication agent is there to ask for it')
        self.assertNotIn('vm-n', self.guests())

    def test_keep_is_per_process_without_logind(self):
        """auth_admin_keep: polkitd keeps the authorization for the subject's login session,
        and for the subject's process when it has none (no logind, as here and on many
        servers).  Two image-accessctl runs are two processes, so the second asks again."""
        for name in ('vm-a', 'vm-b'):
            self.authenticate('image-accessctl register %s' % name,
                              'org.example.imageaccess.register-guest',
                              'Authentication is required to register guest %s' % name)
            text, status = self.finish()
            self.assertEqual(status, 0, text)
        self.assertLessEqual({'vm-a', 'vm-b'}, set(self.guests()))

    def test_keep_within_one_process(self):
        """The second call of one process within the keep period asks nothing: a GLib manager
        (Python through gi.repository.ImageAccess, with pkttyagent registered for itself)
        registers three guests and the administrator types the password once."""
        script = os.path.join(self.bed.runtime_dir, 'desk-manager.py')
        with open(script, 'w') as f:
            f.write(KEEP_SCRIPT)
        os.chmod(script, 0o644)
        self.authenticate('%s %s vm-1 vm-2 vm-3' % (testbed.PYTHON, script),
                          'org.example.imageaccess.register-guest',
                          'Authentication is required to register guest vm-1')
        text, status = self.finish()
        self.assertEqual(status, 0, text)
        self.assertEqual(text.count('==== AUTHENTICATING FOR'), 1, text)
        self.assertIn('registered vm-3', text)
        self.assertLessEqual({'vm-1', 'vm-2', 'vm-3'}, set(self.guests()))

    def test_no_prompt_without_a_terminal_or_when_told(self):
        for command in ('image-accessctl --no-ask-password register vm-n',
                        'image-accessctl register vm-n < /dev/null'):
            self.term.clear()
            text, status = self.term.run(command)
            self.assertEqual(status, 3, text)
            self.assertNotIn('AUTHENTICATING', text)
            self.assertIn('needs authentication,', text)
        self.assertNotIn('vm-n', self.guests())
        self.assertNotIn('Registered Authentication Agent', self.polkit_log(),
                         'no agent is started where nobody is asked')


class InteractiveTimeoutTests(DesktopTestCase):
    """[Polkit] InteractiveTimeoutSec bounds the wait for a person; the prompt is withdrawn."""
    daemon_config = '[Polkit]\nInteractiveTimeoutSec=3\n'

    def test_nobody_types_the_password(self):
        self.authenticate('image-accessctl register vm-desk',
                          'org.example.imageaccess.register-guest',
                          'Authentication is required to register guest vm-desk',
                          password=None)
        start = time.monotonic()
        text, status = self.finish(timeout=30)
        self.assertEqual(status, 3, text)
        self.assertGreaterEqual(time.monotonic() - start, 2.5)
        self.assertSays(text, r"Failed to register guest 'vm-desk': No authentication for "
                               r"action org\.example\.imageaccess\.register-guest within 3 s")
        self.assertNotIn('vm-desk', self.guests())


class SessionVmTests(DesktopTestCase):
    """The Boxes-like case of docs/desktop.md: the desktop user plugs in a USB stick (a loop
    device stands in for it), authenticates once per action on the terminal, and the user's
    own QEMU, running as the user with the shim, opens the stick through the service."""

    def setUp(self):
        missing = qemuvm.missing_requirements()
        if missing:
            raise AssertionError(missing)
        super().setUp()
        self.stick_file = os.path.join(self.bed.runtime_dir, 'usb-stick.img')
        with open(self.stick_file, 'wb') as f:
            f.write(b'USB stick sector 0'.ljust(512, b'.'))
            f.truncate(4 << 20)
        self.stick = subprocess.run(['losetup', '--find', '--show', self.stick_file],
                                    check=True, capture_output=True, text=True).stdout.strip()
        self.addCleanup(subprocess.run, ['losetup', '--detach', self.stick], check=False)

    def test_usb_stick_for_the_users_own_qemu(self):
        st = os.stat(self.stick)
        self.assertEqual((st.st_uid, st.st_mode & 0o077), (0, 0),
                         'the device node is root\'s alone: the user cannot open it directly')
        self.authenticate('image-accessctl register vm-desk --uid=%s' % DESK,
                          'org.example.imageaccess.register-guest',
                          'Authentication is required to register guest vm-desk')
        text, status = self.finish()
        self.assertEqual(status, 0, text)
        self.authenticate('image-accessctl grant vm-desk %s read-write' % self.stick,
                          'org.example.imageaccess.grant-image',
                          'Authentication is required to grant guest vm-desk access to %s'
                          % self.stick)
        text, status = self.finish()
        self.assertEqual(status, 0, text)

        vm = qemuvm.Qemu(self.bed, DESK, guest='vm-desk', prefixes=[self.stick],
                         extra_args=['-blockdev', 'driver=host_device,filename=%s,node-name=f0'
                                     % self.stick,
                                     '-blockdev', 'driver=raw,file=f0,node-name=d0',
                                     '-device', 'virtio-blk-pci,drive=d0,id=vd0'])
        vm.start()
        self.addCleanup(vm.stop)
        self.assertIn('USB.stick.sector', vm.qemu_io(0, 'read -v 0 16'))
        out = vm.qemu_io(0, 'write -P 0x5a 4096 512')
        self.assertIn('wrote 512/512 bytes', out)
        vm.qemu_io(0, 'flush')
        with open(self.stick_file, 'rb') as f:
            f.seek(4096)
            self.assertEqual(f.read(512), b'\x5a' * 512, 'the guest\'s write is on the stick')
        self.assertRegex(self.bed.log_text('daemon'), r"open allowed guest='vm-desk'")


class DismissedPromptTests(testbed.IaTestCase):
    """A person who cancels the prompt: polkit reports "dismissed", and the call fails with
    AuthenticationFailed saying so.  pkttyagent cannot be made to cancel (end of input makes
    it abort, which is a failed authentication; Ctrl-C stops the caller too), so the agent
    here is a minimal one that answers every BeginAuthentication with polkit's Cancelled
    error, as a desktop agent's Cancel button does.  It runs in the manager's own process,
    registered for that process, and the manager is the GObject library through
    gi.repository, asynchronously on the same GLib main loop."""
    bed_options = {'rules': {'50-desktop.rules': RULES}, 'extra_users': [ADMIN]}

    def test_cancel_button(self):
        script = os.path.join(self.bed.runtime_dir, 'cancelling-agent.py')
        with open(script, 'w') as f:
            f.write(CANCELLING_AGENT)
        os.chmod(script, 0o644)
        u = self.bed.users[DESK]
        env = self.bed.base_env(GI_TYPELIB_PATH=os.environ.get('IA_GI_TYPELIB_DIR', ''),
                                LD_LIBRARY_PATH=os.environ.get('IA_GI_LIBRARY_PATH', ''))
        p = subprocess.run(['setpriv', '--reuid=%d' % u.uid, '--regid=%d' % u.gid,
                            '--groups=%s' % ','.join(map(str, u.groups)), '--',
                            testbed.PYTHON, script, 'vm-cancel'], env=env, capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.split('\n')[:3],
                         ['asked: org.example.imageaccess.register-guest',
                          'authentication-failed',
                          'Authentication for action org.example.imageaccess.register-guest '
                          'was cancelled'], p.stdout + p.stderr)
        guests = {g[0] for g in self.assertOk(self.bed.local.manager('ListGuests'))[0]}
        self.assertNotIn('vm-cancel', guests)


CANCELLING_AGENT = """\\
import os, sys
import dbus, dbus.service, dbus.mainloop.glib
import gi
gi.require_version('ImageAccess', '0.1')
from gi.repository import GLib, ImageAccess

dbus.mainloop.glib.DBusGMainLoop(set_as_default=True)
bus = dbus.SystemBus()
loop = GLib.MainLoop()


class Agent(dbus.service.Object):
    @dbus.service.method('org.freedesktop.PolicyKit1.AuthenticationAgent',
                         in_signature='sssa{ss}sa(sa{sv})', out_signature='')
    def BeginAuthentication(self, action_id, message, icon, details, cookie, identities):
        print('asked:', action_id, flush=True)
        raise dbus.exceptions.DBusException('the person pressed Cancel',
                                            name='org.freedesktop.PolicyKit1.Error.Cancelled')

    @dbus.service.method('org.freedesktop.PolicyKit1.AuthenticationAgent',
                         in_signature='s', out_signature='')
    def CancelAuthentication(self, cookie):
        pass


agent = Agent(bus, '/org/freedesktop/PolicyKit1/AuthenticationAgent')
with open('/proc/self/stat') as f:
    start_time = int(f.read().rsplit(')', 1)[1].split()[19])
authority = dbus.Interface(bus.get_object('org.freedesktop.PolicyKit1',
                                          '/org/freedesktop/PolicyKit1/Authority'),
                           'org.freedesktop.PolicyKit1.Authority')
authority.RegisterAuthenticationAgent(
    ('unix-process', {'pid': dbus.UInt32(os.getpid()), 'start-time': dbus.UInt64(start_time)}),
    'C.UTF-8', '/org/freedesktop/PolicyKit1/AuthenticationAgent')

client = ImageAccess.Client.new_sync(None, None)
client.set_allow_interactive_authorization(True)


def done(c, res):
    try:
        c.register_guest_finish(res)
        print('registered')
    except GLib.Error as e:
        print(ImageAccess.Error(e.code).value_nick)
        print(e.message)
    loop.quit()


client.register_guest(sys.argv[1], None, None, ImageAccess.UID_NONE, None, done)
loop.run()
"""


KEEP_SCRIPT = """\
# A VM manager as a desktop application would be: one process, interactive authorization.
import os, subprocess, sys
import gi
gi.require_version('ImageAccess', '0.1')
from gi.repository import ImageAccess

# polkit's text agent for this process; it closes the notify fd once registered
r, w = os.pipe()
agent = subprocess.Popen(['pkttyagent', '--process', str(os.getpid()), '--notify-fd', str(w)],
                         pass_fds=[w])
os.close(w)
os.read(r, 1)
os.close(r)
client = ImageAccess.Client.new_sync(None, None)
client.set_allow_interactive_authorization(True)
for name in sys.argv[1:]:
    client.register_guest_sync(name, None, None, ImageAccess.UID_NONE, None)
    print('registered', name, flush=True)
agent.terminate()
agent.wait()
"""


if __name__ == '__main__':
    testbed.main()

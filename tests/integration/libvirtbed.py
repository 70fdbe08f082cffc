# SPDX-License-Identifier: LGPL-2.1-or-later
"""
The real libvirtd 9.0 (Debian's libvirt-daemon-system) on top of a TestBed, without touching
the host: virtlogd and libvirtd run in one private mount namespace in which

  /etc/libvirt        is a copy of the host's config (hooks/ replaced by the test's, qemu.conf
                      with cgroup_controllers = [ ] so no machine/ cgroup appears on the host)
  /var/lib/libvirt    a fresh tree with the owners and modes Debian's postinst sets, except
                      qemu/ 0751 (QEMU as a static uid must reach its domain's master key)
  /var/cache/libvirt  a fresh tree (a QEMU capabilities cache may be copied in)
  /run/libvirt        a directory of the bed: virsh outside the namespace reaches the socket
  /var/log/libvirt    a directory of the bed: the test reads the QEMU logs

are bind mounts of directories under the bed's runtime dir.  virsh runs outside, with
-c qemu+unix:///system?socket=RUNTIME/libvirt/run/libvirt-sock.

    lv = LibvirtBed(bed, hooks={'image-access': HOOK_TEXT}).start()
    lv.virsh('define', xml_path)
    lv.stop()      # destroys every domain, stops both daemons, sweeps leftover QEMUs

Domains: domain_xml() writes the XML the tests and docs/libvirt.md use (TCG, a static DAC
label, images relabel='no', the shim in <qemu:commandline>, opted in through <metadata>).
"""

import os
import re
import shutil
import signal
import subprocess
import time

import testbed

LIBVIRTD = '/usr/sbin/libvirtd'
VIRTLOGD = '/usr/sbin/virtlogd'
VIRSH = '/usr/bin/virsh'
QEMU_SYSTEM = '/usr/bin/qemu-system-x86_64'
HOST_CAPS_CACHE = '/var/cache/libvirt/qemu/capabilities'
# Where the QEMU capabilities probe may be kept between beds (set by meson to a build-dir
# path): the first start of a domain takes 1.7 s with it, 4 s without.
CAPS_CACHE_VAR = 'IA_LIBVIRT_CAPS_CACHE'
LIBVIRT_QEMU_UID = 64055   # Debian's libvirt-qemu user; only its directories use it
START_TIMEOUT = 30.0

QEMU_NS = 'http://libvirt.org/schemas/domain/qemu/1.0'
IA_NS = 'https://example.org/image-access/libvirt/1'


def missing_requirements():
    for path, pkg in ((LIBVIRTD, 'libvirt-daemon-system'), (VIRTLOGD, 'libvirt-daemon-system'),
                      (VIRSH, 'libvirt-clients'), (QEMU_SYSTEM, 'qemu-system-x86')):
        if not os.access(path, os.X_OK):
            return '%s not found (install the Debian package %s)' % (path, pkg)
    return None


def _pid_alive(pid):
    """Whether @pid runs (not a zombie: virtlogd is not our child, init reaps it)."""
    try:
        with open('/proc/%d/stat' % pid) as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except (OSError, IndexError):
        return False


class VirshError(Exception):
    def __init__(self, argv, rc, out, err):
        super().__init__('virsh %s: exit %d: %s' % (' '.join(argv), rc, err.strip() or out))
        self.rc, self.out, self.err = rc, out, err


class LibvirtBed:
    """libvirtd + virtlogd in a private mount namespace, on a started TestBed.

    hooks: {NAME: TEXT} installed as /etc/libvirt/hooks/qemu.d/NAME (mode 0755); libvirtd
    reads the hooks dir only when it starts.
    Attributes: root (RUNTIME/libvirt), run_dir, log_dir, lib_dir, uri, libvirtd_pid.
    """

    def __init__(self, bed, hooks=None):
        self.bed = bed
        self.hooks = dict(hooks or {})
        self.root = os.path.join(bed.runtime_dir, 'libvirt')
        self.etc_dir = os.path.join(self.root, 'etc')
        self.lib_dir = os.path.join(self.root, 'lib')
        self.cache_dir = os.path.join(self.root, 'cache')
        self.run_dir = os.path.join(self.root, 'run')
        self.log_dir = os.path.join(self.root, 'log')
        self.socket = os.path.join(self.run_dir, 'libvirt-sock')
        self.uri = 'qemu+unix:///system?socket=' + self.socket
        self.libvirtd = None
        self.transcript = []   # (command, stdout, stderr, status) of every virsh run
        self._starts = 0
        self._made = False

    # ---- the tree -----------------------------------------------------------------------
    def _mkdir(self, path, mode, uid=0, gid=0):
        os.makedirs(path, exist_ok=True)
        os.chown(path, uid, gid)
        os.chmod(path, mode)

    def _make_tree(self):
        shutil.copytree('/etc/libvirt', self.etc_dir, symlinks=True,
                        ignore=shutil.ignore_patterns('hooks'))
        os.chmod(self.etc_dir, 0o755)
        self._mkdir(os.path.join(self.etc_dir, 'hooks'), 0o755)
        self._mkdir(os.path.join(self.etc_dir, 'hooks', 'qemu.d'), 0o755)
        for name, text in self.hooks.items():
            self.install_hook(name, text)
        conf = os.path.join(self.etc_dir, 'qemu.conf')
        with open(conf) as f:
            text = f.read()
        # libvirt's parser takes the first occurrence of a key: put ours first
        with open(conf, 'w') as f:
            f.write('# ia-testbed: no machine/ cgroups on the host, no QEMU probe of /dev/kvm\n'
                    'cgroup_controllers = [ ]\n' + text)
        lq = LIBVIRT_QEMU_UID
        for sub, mode, uid in (('', 0o755, 0), ('images', 0o711, 0), ('boot', 0o711, 0),
                               ('sanlock', 0o700, 0), ('qemu', 0o751, lq),
                               ('qemu/channel', 0o750, lq), ('qemu/channel/target', 0o750, lq),
                               ('qemu/snapshot', 0o750, lq), ('qemu/checkpoint', 0o750, lq),
                               ('qemu/save', 0o750, lq), ('qemu/dump', 0o750, lq),
                               ('qemu/nvram', 0o750, lq), ('qemu/ram', 0o750, lq)):
            self._mkdir(os.path.join(self.lib_dir, sub), mode, uid, 107 if uid else 0)
        self._mkdir(self.cache_dir, 0o711)
        self._mkdir(os.path.join(self.cache_dir, 'qemu'), 0o711)
        caps = os.path.join(self.cache_dir, 'qemu', 'capabilities')
        self._mkdir(caps, 0o755)
        src = os.environ.get(CAPS_CACHE_VAR)
        for d in (src, HOST_CAPS_CACHE):
            if d and os.path.isdir(d) and os.listdir(d):
                for fn in os.listdir(d):
                    if fn.endswith('.xml'):
                        shutil.copy(os.path.join(d, fn), caps)
                break
        self._mkdir(self.run_dir, 0o755)
        self._mkdir(self.log_dir, 0o755)
        self._made = True

    def install_hook(self, name, text):
        path = os.path.join(self.etc_dir, 'hooks', 'qemu.d', name)
        with open(path, 'w') as f:
            f.write(text)
        os.chmod(path, 0o755)
        return path

    # ---- the daemons --------------------------------------------------------------------
    def start(self):
        """Start virtlogd and libvirtd (once the tree exists, a restart keeps it)."""
        reason = missing_requirements()
        if reason:
            raise AssertionError(reason)  # CI installs everything: a missing tool is a failure
        if not self._made:
            self._make_tree()
        self._starts += 1
        mounts = ' '.join('mount --bind "%s" %s;' % (src, dst) for src, dst in (
            (self.etc_dir, '/etc/libvirt'), (self.lib_dir, '/var/lib/libvirt'),
            (self.cache_dir, '/var/cache/libvirt'), (self.run_dir, '/run/libvirt'),
            (self.log_dir, '/var/log/libvirt')))
        pid_v = os.path.join(self.run_dir, 'virtlogd.pid')
        pid_l = os.path.join(self.run_dir, 'libvirtd.pid')
        # virtlogd survives a libvirtd restart in the real world too: start it only once
        virtlogd = '' if self._virtlogd_alive() else '%s -d -p "%s";' % (VIRTLOGD, pid_v)
        script = 'set -e; mkdir -p /run/libvirt /var/log/libvirt; %s %s exec %s -p "%s"' % (
            mounts, virtlogd, LIBVIRTD, pid_l)
        env = self.bed.base_env()
        env.pop('DBUS_SYSTEM_BUS_ADDRESS', None)  # libvirtd stays off the bed's bus
        argv = ['unshare', '-m', '--propagation', 'private', '--', '/bin/sh', '-c', script]
        if self._starts > 1:
            # a restart joins the namespace of the first start, which virtlogd keeps alive:
            # the running QEMUs' paths are there
            argv = ['nsenter', '--mount=/proc/%d/ns/mnt' % self._virtlogd_pid(), '--',
                    LIBVIRTD, '-p', pid_l]
        self.libvirtd = self.bed._spawn('libvirtd', argv, env)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if not self.libvirtd.alive():
                raise testbed.TestBedError('libvirtd exited during start-up:\n%s'
                                           % testbed._tail(self.libvirtd.log_path))
            if os.path.exists(self.socket) and self._virtlogd_alive():
                r = subprocess.run([VIRSH, '-q', '-c', self.uri, 'uri'], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, timeout=START_TIMEOUT)
                if r.returncode == 0:
                    break
            if time.monotonic() > deadline:
                raise testbed.TestBedError('libvirtd did not answer within %.0f s:\n%s'
                                           % (START_TIMEOUT,
                                              testbed._tail(self.libvirtd.log_path)))
            time.sleep(0.05)
        return self

    def _virtlogd_pid(self):
        try:
            with open(os.path.join(self.run_dir, 'virtlogd.pid')) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def _virtlogd_alive(self):
        pid = self._virtlogd_pid()
        return pid is not None and _pid_alive(pid)

    @property
    def libvirtd_pid(self):
        return self.libvirtd.pid if self.libvirtd and self.libvirtd.alive() else None

    def stop_libvirtd(self):
        """SIGTERM libvirtd and wait: its domains keep running (as with systemctl restart)."""
        if self.libvirtd and self.libvirtd.alive():
            self.libvirtd.stop(signal.SIGTERM, grace=15)
        try:
            os.unlink(self.socket)
        except FileNotFoundError:
            pass

    def restart_libvirtd(self):
        self.stop_libvirtd()
        return self.start()

    def qemu_pids(self):
        """Pids of the QEMUs libvirtd started (their pid files in /run/libvirt/qemu)."""
        pids = []
        d = os.path.join(self.run_dir, 'qemu')
        if os.path.isdir(d):
            for fn in os.listdir(d):
                if fn.endswith('.pid'):
                    try:
                        with open(os.path.join(d, fn)) as f:
                            pids.append(int(f.read().strip()))
                    except (OSError, ValueError):
                        pass
        return pids

    def stop(self):
        """Destroy every domain, stop libvirtd and virtlogd, kill leftover QEMUs by pid."""
        leftovers = []
        if self.libvirtd_pid:
            r = self.virsh('list', '--name', check=False)
            for name in r.split():
                self.virsh('destroy', name, check=False)
        pids = self.qemu_pids()
        self.stop_libvirtd()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                leftovers.append(pid)
            except ProcessLookupError:
                pass
        # by the pid read now: virtlogd removes its pid file as soon as it starts to exit
        vpid = self._virtlogd_pid()
        if vpid and _pid_alive(vpid):
            os.kill(vpid, signal.SIGTERM)
            deadline = time.monotonic() + 5
            while _pid_alive(vpid) and time.monotonic() < deadline:
                time.sleep(0.02)
            if _pid_alive(vpid):
                os.kill(vpid, signal.SIGKILL)
                while _pid_alive(vpid):
                    time.sleep(0.02)
        # keep the capabilities the first start probed, for the next bed (beds run in
        # parallel: each file appears whole, by rename)
        dst = os.environ.get(CAPS_CACHE_VAR)
        caps = os.path.join(self.cache_dir, 'qemu', 'capabilities')
        if dst and os.path.isdir(caps):
            try:
                os.makedirs(dst, exist_ok=True)
                for fn in os.listdir(caps):
                    if fn.endswith('.xml') and not os.path.exists(os.path.join(dst, fn)):
                        tmp = os.path.join(dst, '.%s.%d' % (fn, os.getpid()))
                        shutil.copyfile(os.path.join(caps, fn), tmp)
                        os.rename(tmp, os.path.join(dst, fn))
            except OSError:
                pass
        return leftovers

    # ---- virsh --------------------------------------------------------------------------
    def virsh_result(self, *args, timeout=60):
        """(returncode, stdout, stderr) of virsh -c URI ARGS; every run goes to transcript."""
        argv = [VIRSH, '-q', '-c', self.uri] + list(args)
        r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout,
                           env=self.bed.base_env(LC_ALL='C'), universal_newlines=True)
        self.transcript.append(('$ virsh ' + ' '.join(args), r.stdout, r.stderr, r.returncode))
        return r.returncode, r.stdout, r.stderr

    def virsh(self, *args, check=True, timeout=60):
        """stdout of virsh ARGS; raises VirshError when check and it fails (without check:
        stdout and stderr together)."""
        rc, out, err = self.virsh_result(*args, timeout=timeout)
        if check and rc != 0:
            raise VirshError(list(args), rc, out, err)
        return out if check else out + err

    def qemu_log(self, domain):
        path = os.path.join(self.log_dir, 'qemu', domain + '.log')
        return testbed._tail(path) if os.path.exists(path) else '(no %s)' % path

    def libvirtd_log(self):
        return testbed._tail(self.libvirtd.log_path) if self.libvirtd else ''


def domain_xml(name, uid, disks, shim, bus_address, prefixes, directories=(), opt_in=True,
               uuid=None, label=True, relabel=False, shim_env=True):
    """The domain XML of docs/libvirt.md.  disks: [(target, path, fmt)]; directories: paths
    the guest may open files beneath (snapshot overlays).  relabel: libvirt chowns the images
    and the overlays it makes to the uid (without the service); shim_env: the shim in
    <qemu:commandline>."""
    disk_xml = ''
    for target, path, fmt in disks:
        disk_xml += ('    <disk type="file" device="disk">\n'
                     '      <driver name="qemu" type="%s"/>\n'
                     '      <source file="%s"/>\n'
                     '      <target dev="%s" bus="virtio"/>\n'
                     '    </disk>\n' % (fmt, path, target))
    meta = ''
    if opt_in:
        meta = ('  <metadata>\n'
                '    <ia:image-access xmlns:ia="%s">\n%s'
                '    </ia:image-access>\n'
                '  </metadata>\n' % (IA_NS, ''.join('      <ia:directory path="%s"/>\n' % d
                                                    for d in directories)))
    seclabel = ''
    if label:
        seclabel = ('  <seclabel type="static" model="dac" relabel="%s">\n'
                    '    <label>+%d:+%d</label>\n'
                    '  </seclabel>\n' % ('yes' if relabel else 'no', uid, uid))
    commandline = ''
    if shim_env:
        commandline = ('  <qemu:commandline>\n'
                       '    <qemu:env name="LD_PRELOAD" value="%s"/>\n'
                       '    <qemu:env name="IMAGE_ACCESS_GUEST" value="%s"/>\n'
                       '    <qemu:env name="IMAGE_ACCESS_PREFIXES" value="%s"/>\n'
                       '    <qemu:env name="IMAGE_ACCESS_BUS_ADDRESS" value="%s"/>\n'
                       '  </qemu:commandline>\n' % (shim, name, ':'.join(prefixes),
                                                    bus_address))
    return '''<domain type="qemu" xmlns:qemu="%(qns)s">
  <name>%(name)s</name>
%(uuid)s%(meta)s  <memory unit="MiB">64</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch="x86_64" machine="q35">hvm</type>
  </os>
  <devices>
    <emulator>%(qemu)s</emulator>
%(disks)s    <controller type="usb" model="none"/>
    <memballoon model="none"/>
  </devices>
%(seclabel)s%(commandline)s</domain>
''' % {'qns': QEMU_NS, 'name': name, 'meta': meta, 'qemu': QEMU_SYSTEM, 'disks': disk_xml,
       'seclabel': seclabel, 'commandline': commandline,
       'uuid': '  <uuid>%s</uuid>\n' % uuid if uuid else ''}

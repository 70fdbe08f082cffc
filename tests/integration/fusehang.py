# SPDX-License-Identifier: LGPL-2.1-or-later
"""
A FUSE file system that can stop answering: a hung NFS server or FUSE daemon, on demand.

It speaks the kernel's FUSE protocol on /dev/fuse directly (no libfuse, no package needed
beyond the kernel's fuse module), from a thread of the test process, and is mounted with
mount(2) by the test (root).  Mount it only after attackhelper.private_mounts(): then a test
that dies cannot leave the mount behind on the host.

    fs = fusehang.HangFS(mountpoint, files={'disk.img': 1 << 20})
    fs.hang('lookup')          # LOOKUP of a file never answered ('getattr', 'open' too)
    fs.resume()                # answer what was held, normally, and everything after
    fs.abort()                 # fail what was held with ENOTCONN: the connection is gone
    fs.close()                 # detach the mount, abort the connection, stop the thread

The root directory is node 1; files are regular, 0600, owned by root, and read as zeros.
Every entry and attribute is valid for 0 s, so each path walk asks again.
"""

import ctypes
import errno
import os
import select
import stat
import struct
import threading

FUSE_LOOKUP, FUSE_FORGET, FUSE_GETATTR, FUSE_OPEN, FUSE_READ = 1, 2, 3, 14, 15
FUSE_STATFS, FUSE_RELEASE, FUSE_FLUSH, FUSE_INIT, FUSE_INTERRUPT = 17, 18, 25, 26, 36
FUSE_ACCESS, FUSE_DESTROY, FUSE_BATCH_FORGET = 34, 38, 42
NO_REPLY = {FUSE_FORGET, FUSE_BATCH_FORGET, FUSE_INTERRUPT}
IN_HEADER = struct.Struct('<IIQQIIIHH')
OUT_HEADER = struct.Struct('<IiQ')
ATTR = struct.Struct('<QQQQQQIIIIIIIIII')
MAX_WRITE = 128 * 1024
MS_NOSUID, MS_NODEV, MNT_DETACH = 2, 4, 2

_libc = ctypes.CDLL(None, use_errno=True)


class HangFS:
    def __init__(self, mountpoint, files):
        self.mountpoint = mountpoint
        self.files = {name: (2 + i, size) for i, (name, size) in enumerate(sorted(files.items()))}
        self.nodes = {node: (name, size) for name, (node, size) in self.files.items()}
        self.hanging = set()        # 'lookup', 'getattr', 'open'
        self.held = []              # (opcode, unique, nodeid, body) not answered
        self.seen = []              # opcodes received, for the test
        self.lock = threading.Lock()
        self.stop = False
        self.fd = os.open('/dev/fuse', os.O_RDWR | os.O_CLOEXEC)
        opts = 'fd=%d,rootmode=40000,user_id=0,group_id=0,allow_other' % self.fd
        if _libc.mount(b'ia-hangfs', mountpoint.encode(), b'fuse', MS_NOSUID | MS_NODEV,
                       opts.encode()) != 0:
            e = ctypes.get_errno()
            os.close(self.fd)
            raise OSError(e, 'mount fuse on %s: %s' % (mountpoint, os.strerror(e)))
        self.mounted = True
        self.thread = threading.Thread(target=self._serve, name='hangfs', daemon=True)
        self.thread.start()

    # ---- control --------------------------------------------------------------------------
    def hang(self, *ops):
        with self.lock:
            self.hanging = set(ops)

    def held_count(self):
        with self.lock:
            return len(self.held)

    def resume(self):
        """Stop hanging and answer every held request as if nothing had happened."""
        with self.lock:
            self.hanging = set()
            held, self.held = self.held, []
        for opcode, unique, nodeid, body in held:
            self._answer(opcode, unique, nodeid, body)

    def fail_held(self, err=errno.EIO):
        with self.lock:
            held, self.held = self.held, []
        for _, unique, _, _ in held:
            self._reply(unique, -err)

    def close(self):
        """Detach the mount and abort the connection: held requests fail with ENOTCONN."""
        if self.mounted:
            _libc.umount2(self.mountpoint.encode(), MNT_DETACH)
            self.mounted = False
        self.stop = True
        self.thread.join(5)
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    abort = close

    # ---- protocol -------------------------------------------------------------------------
    def _reply(self, unique, error=0, payload=b''):
        try:
            os.write(self.fd, OUT_HEADER.pack(OUT_HEADER.size + len(payload), error, unique) + payload)
        except OSError:
            pass    # the request was interrupted, or the connection is gone

    def _attr(self, nodeid):
        if nodeid == 1:
            mode, size, nlink = stat.S_IFDIR | 0o755, 0, 2
        else:
            mode, size, nlink = stat.S_IFREG | 0o600, self.nodes[nodeid][1], 1
        return ATTR.pack(nodeid, size, (size + 511) // 512, 0, 0, 0, 0, 0, 0, mode, nlink,
                         0, 0, 0, 4096, 0)

    def _answer(self, opcode, unique, nodeid, body):
        if opcode == FUSE_INIT:
            major, minor, readahead, _flags = struct.unpack_from('<IIII', body)
            out = struct.pack('<IIIIHHIIHHI', 7, 31, readahead, 0, 16, 12, MAX_WRITE, 1, 0, 0, 0)
            self._reply(unique, 0, out + b'\0' * 28)
        elif opcode == FUSE_LOOKUP:
            name = body.split(b'\0', 1)[0].decode(errors='replace')
            if nodeid != 1 or name not in self.files:
                self._reply(unique, -errno.ENOENT)
            else:
                node = self.files[name][0]
                self._reply(unique, 0, struct.pack('<QQQQII', node, 1, 0, 0, 0, 0) + self._attr(node))
        elif opcode == FUSE_GETATTR:
            if nodeid != 1 and nodeid not in self.nodes:
                self._reply(unique, -errno.ENOENT)
            else:
                self._reply(unique, 0, struct.pack('<QII', 0, 0, 0) + self._attr(nodeid))
        elif opcode == FUSE_OPEN:
            self._reply(unique, 0, struct.pack('<QII', nodeid, 0, 0))
        elif opcode == FUSE_READ:
            _fh, offset, size = struct.unpack_from('<QQI', body)
            total = self.nodes.get(nodeid, ('', 0))[1]
            self._reply(unique, 0, b'\0' * max(0, min(size, total - offset)))
        elif opcode in (FUSE_RELEASE, FUSE_FLUSH, FUSE_ACCESS, FUSE_DESTROY):
            self._reply(unique, 0)
        else:
            self._reply(unique, -errno.ENOSYS)

    def _serve(self):
        names = {FUSE_LOOKUP: 'lookup', FUSE_GETATTR: 'getattr', FUSE_OPEN: 'open'}
        while not self.stop:
            try:
                if not select.select([self.fd], [], [], 0.1)[0]:
                    continue
                data = os.read(self.fd, MAX_WRITE + 8192)
            except OSError as e:
                if e.errno in (errno.ENOENT, errno.EINTR, errno.EAGAIN):
                    continue        # a request interrupted before we read it
                return              # ENODEV: unmounted, the connection is gone
            if len(data) < IN_HEADER.size:
                continue
            _len, opcode, unique, nodeid = IN_HEADER.unpack_from(data)[:4]
            body = data[IN_HEADER.size:]
            with self.lock:
                self.seen.append(opcode)
                if opcode in NO_REPLY:
                    continue
                # the root directory always answers: only the files hang
                if names.get(opcode) in self.hanging and not (opcode == FUSE_GETATTR and nodeid == 1):
                    self.held.append((opcode, unique, nodeid, body))
                    continue
            self._answer(opcode, unique, nodeid, body)

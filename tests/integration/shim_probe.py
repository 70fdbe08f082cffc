#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""
A process that opens files the way an emulator would, run as a test user with
libimageaccess-preload.so preloaded (test_preload.py).  Python's own start-up opens go
through the shim too, which is a test of its pass-through.

Protocol: one JSON request per line on stdin, one JSON answer per line on stdout.
  {"op": "open", "fn": "open64", "path": P, "flags": ["O_RDWR", ...], "dirfd": D}
      fn: open, open64, __open_2, __open64_2, openat, openat64, __openat_2, __openat64_2,
      creat, creat64 (called through ctypes: symbol lookup finds the preloaded ones first)
      dirfd: absent (AT_FDCWD) or a directory path (opened O_PATH|O_DIRECTORY first)
      → {"fd": N, ...describe(N)} or {"errno": "EACCES"}
  {"op": "describe", "fd": N}       → accmode, status flags, cloexec, st_uid, st_mode, size
  {"op": "write", "fd": N, "data": HEX, "offset": O} / {"op": "read", "fd": N, "n": K, ...}
  {"op": "close", "fd": N}
  {"op": "chdir", "path": P}
  {"op": "fork_open", "path": P, "flags": [...]}  open in a forked child (the parent has
      used its connection before): → the child's result and pid
  {"op": "threads", "path": P, "flags": [...], "threads": T, "count": C}  T threads × C
      opens (each closed again) → {"ok": n, "errors": {...}}
  {"op": "fdcount"}, {"op": "pid"}
"""

import ctypes
import errno
import json
import os
import sys
import threading

libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD = -100
FLAG_NAMES = ['O_RDONLY', 'O_WRONLY', 'O_RDWR', 'O_CREAT', 'O_EXCL', 'O_TRUNC', 'O_APPEND',
              'O_NONBLOCK', 'O_DIRECT', 'O_CLOEXEC', 'O_SYNC', 'O_DSYNC', 'O_NOCTTY',
              'O_NOFOLLOW', 'O_PATH', 'O_DIRECTORY', 'O_NOATIME', 'O_LARGEFILE']
STATUS_FLAGS = ['O_APPEND', 'O_NONBLOCK', 'O_DIRECT', 'O_NOATIME', 'O_DSYNC', 'O_SYNC']


def flags_of(names):
    f = 0
    for n in names:
        f |= getattr(os, n)
    return f


def call_open(fn, path, flags, dirfd=None, mode=0o600):
    p = path.encode()
    f = getattr(libc, fn)
    if fn in ('open', 'open64'):
        f.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_uint]
        return f(p, flags, mode)
    if fn in ('__open_2', '__open64_2'):
        f.argtypes = [ctypes.c_char_p, ctypes.c_int]
        return f(p, flags)
    if fn in ('creat', 'creat64'):
        f.argtypes = [ctypes.c_char_p, ctypes.c_uint]
        return f(p, mode)
    d = AT_FDCWD if dirfd is None else dirfd
    if fn in ('openat', 'openat64'):
        f.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint]
        return f(d, p, flags, mode)
    if fn in ('__openat_2', '__openat64_2'):
        f.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        return f(d, p, flags)
    raise ValueError('unknown function %s' % fn)


def describe(fd):
    fl = os.get_inheritable(fd)
    st = os.fstat(fd)
    flags = int(next(line for line in open('/proc/self/fdinfo/%d' % fd)
                     if line.startswith('flags:')).split()[1], 8)
    acc = {os.O_RDONLY: 'O_RDONLY', os.O_WRONLY: 'O_WRONLY', os.O_RDWR: 'O_RDWR'}[
        flags & os.O_ACCMODE]
    return {'fd': fd, 'accmode': acc, 'cloexec': not fl, 'st_uid': st.st_uid,
            'st_mode': st.st_mode & 0o7777, 'size': st.st_size, 'ino': st.st_ino,
            'status_flags': [n for n in STATUS_FLAGS
                             if (flags & getattr(os, n)) == getattr(os, n)]}


def do_open(req):
    dirfd = None
    if req.get('dirfd'):
        dirfd = os.open(req['dirfd'], os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = call_open(req.get('fn', 'open64'), req['path'], flags_of(req.get('flags', [])),
                       dirfd)
        if fd < 0:
            return {'errno': errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))}
        return describe(fd)
    finally:
        if dirfd is not None:
            os.close(dirfd)


def do_threads(req):
    flags = flags_of(req.get('flags', []))
    results = {'ok': 0, 'errors': {}, 'fds_seen': 0}
    lock = threading.Lock()
    seen = set()

    def worker():
        for _ in range(req['count']):
            fd = call_open('open64', req['path'], flags)
            e = ctypes.get_errno()
            with lock:
                if fd >= 0:
                    results['ok'] += 1
                    seen.add(fd)
                else:
                    name = errno.errorcode.get(e, str(e))
                    results['errors'][name] = results['errors'].get(name, 0) + 1
            if fd >= 0:
                os.close(fd)

    ts = [threading.Thread(target=worker) for _ in range(req['threads'])]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    results['fds_seen'] = len(seen)
    return results


def do_fork_open(req):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            res = do_open({'fn': 'open64', 'path': req['path'], 'flags': req.get('flags', [])})
            res['pid'] = os.getpid()
            os.write(w, json.dumps(res).encode())
        finally:
            os._exit(0)
    os.close(w)
    data = b''
    while True:
        chunk = os.read(r, 65536)
        if not chunk:
            break
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return json.loads(data)


def handle(req):
    op = req['op']
    if op == 'open':
        return do_open(req)
    if op == 'describe':
        return describe(req['fd'])
    if op == 'write':
        return {'n': os.pwrite(req['fd'], bytes.fromhex(req['data']), req.get('offset', 0))}
    if op == 'read':
        return {'data': os.pread(req['fd'], req['n'], req.get('offset', 0)).hex()}
    if op == 'close':
        os.close(req['fd'])
        return {}
    if op == 'chdir':
        os.chdir(req['path'])
        return {}
    if op == 'fork_open':
        return do_fork_open(req)
    if op == 'threads':
        return do_threads(req)
    if op == 'fdcount':
        return {'n': len(os.listdir('/proc/self/fd'))}
    if op == 'pid':
        return {'pid': os.getpid()}
    raise ValueError('unknown op %r' % op)


def main():
    sys.stdout.write(json.dumps({'ready': os.getpid()}) + '\n')
    sys.stdout.flush()
    for line in sys.stdin:
        try:
            res = handle(json.loads(line))
        except Exception as e:  # report, keep serving
            res = {'exception': '%s: %s' % (type(e).__name__, e)}
        sys.stdout.write(json.dumps(res) + '\n')
        sys.stdout.flush()


if __name__ == '__main__':
    main()

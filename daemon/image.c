/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * image.c — opening images safely.  No bus, no logging.
 *
 * The service runs as root and opens files on behalf of unprivileged callers, so every open
 * has to assume that whoever owns a directory on the path races against us:
 *
 *  1. The path is resolved with openat2(RESOLVE_NO_SYMLINKS|RESOLVE_NO_MAGICLINKS) into an
 *     O_PATH fd.  No symlink is followed in any component, and an O_PATH open has no side
 *     effects: it does not block on a FIFO and runs no driver open() for a device.
 *  2. fstat() on that fd decides the type.  Only regular files and block devices get further.
 *  3. The very same inode is reopened for I/O through /proc/self/fd/N with exactly the access
 *     mode asked for, and its (st_dev, st_ino) is compared with step 2.
 *
 * Creating works on an O_PATH fd of the parent directory: O_CREAT|O_EXCL refuses any existing
 * name (a dangling symlink included), and every later step addresses the new file by fd.
 *
 * File identity.  Grants and created-file records name an inode, not a path, and an inode
 * number is not a name for a file: ext4 gives a freed number to the next file created in the
 * same group, often at once, so "rm x; create x" or "rm dev; mknod dev b …" in the image
 * directory yields a different file with the same (st_dev, st_ino).  FileId (file-id.h) adds
 * what the kernel does not reuse:
 *  - the file handle of the inode (name_to_handle_at() on the O_PATH fd, AT_EMPTY_PATH, so
 *    nothing is opened).  It is the kernel's own answer to "is this still that file" (NFS
 *    uses it across reboots): on ext4, xfs and tmpfs/devtmpfs it holds the inode's generation,
 *    drawn at random for every new inode, on btrfs the never-reused object id and generation.
 *  - the birth time (statx STATX_BTIME), which a replacement cannot have earlier than now,
 *    so it differs from the pinned one unless the swap falls in the same clock tick as the
 *    original creation.
 * Both go into one 64-bit digest, FileId.tag.  Either alone would do on ext4; both together
 * also cover file systems that have only one of them.  We chose these over
 * FS_IOC_GETVERSION (the generation alone) because that ioctl needs a file opened for I/O
 * (a block device's driver would run) and is missing on tmpfs.  A block device's identity
 * also includes its device number (st_rdev) and every identity the file type, so a node
 * replaced by mknod of another device is refused even where there is no tag.
 * Fallback: on a file system with neither handles nor birth times (vfat, some FUSE file
 * systems, procfs) the tag is 0 and the identity is (dev, ino, type, rdev), as strong as the
 * file system allows; docs/security.md says so.  A record written before tags (state format
 * 1) has kind 0 and tag 0 and matches on (dev, ino) alone until it is pinned again.
 */

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "build-config.h"
#include "escape.h"
#include "image.h"
#include "macro.h"

/* How often image_create() retries when the name flips between "exists" and "gone". */
#define CREATE_ATTEMPTS_MAX 4

static const ImageOpenFlags image_open_flags_default = {};

/*
 * What RESOLVE_NO_SYMLINKS|RESOLVE_NO_MAGICLINKS does, by hand, for when openat2() is missing
 * (kernels before 5.6, valgrind before 3.22, seccomp filters that predate it): every
 * directory of the path is opened relative to the previous one with
 * O_PATH|O_DIRECTORY|O_NOFOLLOW, so no link, magic or not, is ever followed; a link where a
 * directory should be is -ELOOP.  The last component is opened with @flags, which must
 * include O_NOFOLLOW (the caller adds it).  @path is absolute, or relative
 * to @dir_fd; it has no "." or ".." components (path_is_valid() refused them).
 */
static int open_nofollow_walk(int dir_fd, const char *path, uint64_t flags) {
        ia_autofd int cur = -1;
        const char *p = path;
        int fd;

        if (path[0] == '/') {
                cur = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
                while (*p == '/')
                        p++;
        } else
                cur = fcntl(dir_fd, F_DUPFD_CLOEXEC, 3);
        if (cur < 0)
                return -errno;

        for (;;) {
                const char *slash = strchr(p, '/');
                g_autofree char *component = NULL;
                struct stat st;
                int next;

                if (!slash)
                        break;
                component = g_strndup(p, (gsize) (slash - p));
                next = openat(cur, component, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (next < 0) {
                        int e = errno;

                        if (e == ENOTDIR && fstatat(cur, component, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                            S_ISLNK(st.st_mode))
                                return -ELOOP;
                        return -e;
                }
                ia_safe_close(cur);
                cur = next;
                p = slash + 1;
                while (*p == '/')
                        p++;
        }

        fd = openat(cur, *p ? p : ".", (int) flags);
        if (fd < 0) {
                int e = errno;
                struct stat st;

                if (e == ENOTDIR && *p && fstatat(cur, p, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                    S_ISLNK(st.st_mode))
                        return -ELOOP;
                return -e;
        }
        return fd;
}

bool image_force_nofollow_walk = false;

#if HAVE_VALGRIND_VALGRIND_H && defined(__x86_64__) && defined(__LP64__)
#include <valgrind/valgrind.h>

typedef struct NativeOpenat2 {
        long dir_fd;
        const char *path;
        const struct open_how *how;
} NativeOpenat2;

/* Runs on the real CPU, outside valgrind, which calls it with its thread id first.  Outside
 * valgrind's world there is no thread pointer: no libc (errno is thread-local), no stack
 * protector (its canary is read through the thread pointer), no instrumentation that calls
 * into a runtime.  Returns the fd or -errno.  Such an fd is valgrind's to know nothing of: it
 * is not counted against the limit valgrind keeps for the program, nor tracked by
 * --track-fds; the open on the loop closes it before it returns to the loop. */
__attribute__((noinline, no_stack_protector, no_instrument_function,
               no_sanitize("address", "undefined")))
static unsigned long native_openat2(unsigned long tid, unsigned long arg) {
        const NativeOpenat2 *a = (const NativeOpenat2 *) arg;
        register long size __asm__("r10") = (long) sizeof(*a->how);
        long ret;

        (void) tid;
        __asm__ volatile ("syscall"
                          : "=a" (ret)
                          : "0" ((long) SYS_openat2), "D" (a->dir_fd), "S" (a->path), "d" (a->how),
                            "r" (size)
                          : "rcx", "r11", "memory");
        return (unsigned long) ret;
}

/* valgrind before 3.22 answers openat2() with ENOSYS, so under it every open went to a
 * worker, and neither memcheck nor callgrind ever saw the open on the loop that production
 * does.  A RESOLVE_CACHED resolve never waits, so running it natively cannot stall valgrind
 * (which runs one thread at a time); it writes no memory of ours, so memcheck misses nothing
 * but the check of the arguments it reads.  Returns the fd, or -1 with errno set. */
static long openat2_under_valgrind(int dir_fd, const char *path, const struct open_how *how) {
        NativeOpenat2 a = { dir_fd, path, how };
        long r;

        if (!(how->resolve & RESOLVE_CACHED) || !RUNNING_ON_VALGRIND) {
                errno = ENOSYS;
                return -1;
        }
        r = (long) VALGRIND_NON_SIMD_CALL1(native_openat2, &a);
        if (r < 0) {
                errno = (int) -r;
                return -1;
        }
        return r;
}
#else
static long openat2_under_valgrind(int dir_fd, const char *path, const struct open_how *how) {
        (void) dir_fd;
        (void) path;
        (void) how;
        errno = ENOSYS;
        return -1;
}
#endif

static int openat2_fd(int dir_fd, const char *path, uint64_t flags, uint64_t resolve) {
        struct open_how how = {
                .flags = flags,
                .resolve = resolve,
        };
        long fd;

        /* glibc 2.36 has no wrapper. */
        if (image_force_nofollow_walk) {
                fd = -1;
                errno = ENOSYS;
        } else
                fd = syscall(SYS_openat2, dir_fd, path, &how, sizeof(how));
        if (fd < 0 && errno == ENOSYS && !image_force_nofollow_walk)
                fd = openat2_under_valgrind(dir_fd, path, &how);
        if (fd >= 0)
                return (int) fd;
        if (errno != ENOSYS)
                return -errno;

        /* The walk below may wait on any directory of the path: not what a caller that
         * asked for RESOLVE_CACHED wants. */
        if (resolve & RESOLVE_CACHED)
                return -EAGAIN;
        /* Never a plain openat() of an untrusted path: it would follow every link. */
        if (resolve & RESOLVE_NO_SYMLINKS)
                /* RESOLVE_NO_SYMLINKS covers the last component too. */
                return open_nofollow_walk(dir_fd, path, flags | O_NOFOLLOW);
        if (resolve != 0)
                return -ENOSYS;
        fd = openat(dir_fd, path, (int) flags);
        return fd < 0 ? -errno : (int) fd;
}

static uint64_t tag_mix(uint64_t h, const void *p, size_t n) {
        const uint8_t *b = p;

        /* FNV-1a 64: nobody chooses these bytes (the kernel draws generations at random and
         * the clock gives birth times), so a plain mixing function is enough. */
        for (size_t i = 0; i < n; i++) {
                h ^= b[i];
                h *= UINT64_C(0x100000001b3);
        }
        return h;
}

/* The identity of the inode @fd refers to (an O_PATH fd is enough), whose fstat() is @st.
 * @stx: optional, a statx() of @fd asked for STATX_BTIME: then it is not asked again.
 * See "File identity" above. */
static int file_id_of(int fd, const struct stat *st, const struct statx *stx, FileId *ret) {
        struct {
                struct file_handle fh;
                unsigned char bytes[MAX_HANDLE_SZ];
        } handle = { .fh.handle_bytes = MAX_HANDLE_SZ };
        uint64_t tag = UINT64_C(0xcbf29ce484222325);
        struct statx own;
        bool any = false;
        int mount_id;

        if (name_to_handle_at(fd, "", &handle.fh, &mount_id, AT_EMPTY_PATH) >= 0) {
                tag = tag_mix(tag, &handle.fh.handle_type, sizeof(handle.fh.handle_type));
                tag = tag_mix(tag, handle.fh.f_handle, handle.fh.handle_bytes);
                any = true;
        } else if (errno != EOPNOTSUPP && errno != ENOSYS && errno != EOVERFLOW &&
                   errno != EPERM)
                return -errno;

        if (!stx && statx(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, STATX_BTIME, &own) >= 0)
                stx = &own;
        if (stx && (stx->stx_mask & STATX_BTIME)) {
                tag = tag_mix(tag, &stx->stx_btime.tv_sec, sizeof(stx->stx_btime.tv_sec));
                tag = tag_mix(tag, &stx->stx_btime.tv_nsec, sizeof(stx->stx_btime.tv_nsec));
                any = true;
        }

        *ret = (FileId) {
                .dev = (uint64_t) st->st_dev,
                .ino = (uint64_t) st->st_ino,
                .rdev = S_ISBLK(st->st_mode) ? (uint64_t) st->st_rdev : 0,
                /* 0 means "unknown": a digest that happens to be 0 becomes 1 */
                .tag = any ? (tag ?: 1) : 0,
                .kind = S_ISBLK(st->st_mode) ? 'b' : 'r',
        };
        return 0;
}

/*
 * One statx() for what fstat() gives and the birth time file_id_of() needs: the pin of an
 * open used to ask for both.  @flags: extra AT_ flags (AT_STATX_DONT_SYNC).
 */
static int stat_fd(int fd, int flags, struct stat *ret_st, struct statx *ret_stx) {
        struct statx stx;

        if (statx(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW | flags,
                  STATX_BASIC_STATS | STATX_BTIME, &stx) < 0)
                return -errno;

        *ret_st = (struct stat) {
                .st_dev = makedev(stx.stx_dev_major, stx.stx_dev_minor),
                .st_ino = stx.stx_ino,
                .st_mode = stx.stx_mode,
                .st_nlink = stx.stx_nlink,
                .st_uid = stx.stx_uid,
                .st_gid = stx.stx_gid,
                .st_rdev = makedev(stx.stx_rdev_major, stx.stx_rdev_minor),
                .st_size = (off_t) stx.stx_size,
                .st_blksize = (blksize_t) stx.stx_blksize,
                .st_blocks = (blkcnt_t) stx.stx_blocks,
                .st_atim = { stx.stx_atime.tv_sec, stx.stx_atime.tv_nsec },
                .st_mtim = { stx.stx_mtime.tv_sec, stx.stx_mtime.tv_nsec },
                .st_ctim = { stx.stx_ctime.tv_sec, stx.stx_ctime.tv_nsec },
        };
        if (ret_stx)
                *ret_stx = stx;
        return 0;
}

/*
 * Pins the inode at @path (relative to @dir_fd) as an O_PATH fd without following any link
 * and checks its type.  On success *ret_fd is a new O_PATH fd owned by the caller, and
 * *ret_id (optional) its identity.
 * @resolve: more RESOLVE_ flags (RESOLVE_CACHED); @stat_flags: more AT_ flags for statx().
 */
static int pin_inode_full(int dir_fd, const char *path, bool allow_block, uint64_t resolve,
                          int stat_flags, int *ret_fd, struct stat *ret_st, FileId *ret_id) {
        FileId id;
        int r;
        ia_autofd int fd = -1;
        struct stat st = {};      /* for gcc: stat_fd() sets it or fails */
        struct statx stx;

        /* With O_PATH|O_NOFOLLOW, RESOLVE_NO_SYMLINKS still refuses links in the directories
         * of the path with ELOOP, but a link as the last component is returned as an O_PATH fd
         * of the link itself (openat2(2)).  That is harmless, it is never reopened: the type
         * check below turns it into -ELOOP.  O_NOFOLLOW stays so that the last component is
         * never followed even if the resolve flags were to change. */
        fd = openat2_fd(dir_fd, path, O_PATH | O_CLOEXEC | O_NOFOLLOW,
                        RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | resolve);
        if (fd < 0)
                return fd;

        r = stat_fd(fd, stat_flags, &st, &stx);
        if (r < 0)
                return r;

        if (S_ISLNK(st.st_mode))
                return -ELOOP;
        /* Opening a FIFO can block, a socket cannot be opened, and opening a character
         * device runs its driver's open(), which may act (a tape rewinds): only these two.
         * The O_PATH open above did none of that. */
        if (!S_ISREG(st.st_mode) && !(allow_block && S_ISBLK(st.st_mode)))
                return -EMEDIUMTYPE;

        if (ret_id) {
                r = file_id_of(fd, &st, &stx, &id);
                if (r < 0)
                        return r;
                *ret_id = id;
        }

        *ret_fd = IA_TAKE_FD(fd);
        *ret_st = st;
        return 0;
}

static int pin_inode(int dir_fd, const char *path, bool allow_block, int *ret_fd,
                     struct stat *ret_st, FileId *ret_id) {
        return pin_inode_full(dir_fd, path, allow_block, 0, 0, ret_fd, ret_st, ret_id);
}

/* The directory the reopens go through: self/fd of the procfs at /proc, found at the first
 * reopen and held from then on (an O_PATH fd, shared by all threads, whose fd table it
 * lists).  Opening "N" beneath it spares each reopen the lookups of "self" and "fd": a
 * fifth of the reopen's cost, measured here.  "self" names the process that looked, so a
 * child must not use its copy: fork_child() drops it after fork(), and a child made any other
 * way (vfork(), clone()) must call image_forget_proc() before it opens an image.  The daemon
 * makes no children. */
static int proc_fd_dir = -1;
static pthread_once_t proc_atfork_once = PTHREAD_ONCE_INIT;

void image_forget_proc(void) {
        int fd = __atomic_exchange_n(&proc_fd_dir, -1, __ATOMIC_ACQ_REL);

        ia_safe_close(fd);
}

static void fork_child(void) {
        image_forget_proc();
}

static void register_fork_child(void) {
        (void) pthread_atfork(NULL, NULL, fork_child);
}

/* Return: an O_PATH fd of self/fd of the procfs at /proc (borrowed); -ENOSYS when /proc is
 * not a procfs (or missing); -ENOENT when that procfs does not show this process (one of
 * another PID namespace); -EXDEV when something is mounted on the way to self/fd; other
 * negative errno. */
static int proc_self_fd_dir(void) {
        int fd = __atomic_load_n(&proc_fd_dir, __ATOMIC_ACQUIRE), expected = -1;
        ia_autofd int root = -1;
        struct statfs sfs;

        if (fd >= 0)
                return fd;

        (void) pthread_once(&proc_atfork_once, register_fork_child);

        root = open("/proc", O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (root < 0)
                return errno == ENOENT ? -ENOSYS : -errno;
        if (fstatfs(root, &sfs) < 0)
                return -errno;
        if (sfs.f_type != PROC_SUPER_MAGIC)
                return -ENOSYS;
        /* "self" is the procfs's own link; whatever is mounted over it or over "fd" is
         * refused (RESOLVE_NO_XDEV), so self/fd is the one of the procfs just checked.  A
         * kernel without openat2() resolves it plainly, and then self/fd must at least be on
         * that same procfs (a bind mount of another directory of it would pass). */
        fd = openat2_fd(root, "self/fd", O_PATH | O_DIRECTORY | O_CLOEXEC,
                        RESOLVE_NO_XDEV | RESOLVE_NO_MAGICLINKS);
        if (fd == -ENOSYS) {
                struct stat root_st, st;

                fd = openat(root, "self/fd", O_PATH | O_DIRECTORY | O_CLOEXEC);
                if (fd < 0)
                        return -errno;
                if (fstat(root, &root_st) < 0 || fstat(fd, &st) < 0) {
                        int r = -errno;

                        ia_safe_close(fd);
                        return r;
                }
                if (st.st_dev != root_st.st_dev) {
                        ia_safe_close(fd);
                        return -EXDEV;
                }
        }
        if (fd < 0)
                return fd;
        /* Another thread may have been quicker: keep one. */
        if (!__atomic_compare_exchange_n(&proc_fd_dir, &expected, fd, false, __ATOMIC_ACQ_REL,
                                         __ATOMIC_ACQUIRE)) {
                ia_safe_close(fd);
                return expected;
        }
        return fd;
}

int image_setup(void) {
        int r = proc_self_fd_dir();

        return r < 0 ? r : 0;
}

/*
 * Reopens the inode pinned by @path_fd for I/O with @accmode (O_RDONLY or O_RDWR) and checks
 * that the new fd refers to @pinned.  On success *ret_fd is a new fd owned by the caller.
 */
static int reopen_pinned(int path_fd, const struct stat *pinned, int accmode,
                         const ImageOpenFlags *flags, int *ret_fd, struct stat *ret_st) {
        char name[3 * sizeof(int) + 1], digits[3 * sizeof(int)];
        size_t at = 0, n = 0;
        ia_autofd int fd = -1;
        struct stat st;
        bool nonblock;
        int fd_dir;

        /* The reopen goes through the magic link self/fd/N of a real procfs.  Without one
         * the path would either not exist (-ENOENT, which a caller would misread as "image
         * missing") or, worse, be an ordinary file system on which "self/fd/N" could be
         * anything, and opening it might block or run a driver before the dev/ino check below
         * could refuse it.  So fail with -ENOSYS instead: there is no safe fallback
         * (reopening by path again would reintroduce the race the O_PATH fd closes).  The
         * self/fd found at the first reopen is held, so a mount over /proc later changes
         * nothing, and no reopen has to look again.  The unit needs a /proc, which systemd
         * always provides. */
        fd_dir = proc_self_fd_dir();
        if (fd_dir < 0)
                return fd_dir;

        /* By hand: snprintf() cost a tenth of a warm open's own work. */
        assert(path_fd >= 0);
        for (unsigned v = (unsigned) path_fd; n == 0 || v > 0; v /= 10)
                digits[n++] = (char) ('0' + v % 10);
        while (n > 0)
                name[at++] = digits[--n];
        name[at] = '\0';

        /* No RESOLVE_ flags here: N is a magic link, and following it to the inode we
         * already checked is the whole point.  O_NONBLOCK so that the
         * open itself cannot wait (on a lease break, say); it is cleared again below.  Only
         * the owner of a file (or CAP_LEASE) can take a lease on it, so a regular file of
         * root's needs neither.  O_NOFOLLOW must not be used: it would refuse the magic
         * link. */
        nonblock = flags->nonblock || !S_ISREG(pinned->st_mode) || pinned->st_uid != 0;
        /* A block device opened for writing is opened exclusively: O_EXCL on a block device
         * claims it like a mount does, so a mounted device, one in a RAID, device-mapper or
         * swap, or one another guest holds read-write is refused (EBUSY), and nobody can
         * mount it while the guest has it.  Two writers of one device, one of them a file
         * system driver, would corrupt it.  Read-only opens claim nothing: reading a device
         * that is in use elsewhere harms no one but the reader, and QEMU opens backing
         * devices read-only while they are in use. */
        fd = openat2_fd(fd_dir, name,
                        (uint64_t) accmode | O_CLOEXEC | O_NOCTTY | (nonblock ? O_NONBLOCK : 0) |
                        (flags->direct ? O_DIRECT : 0) |
                        (S_ISBLK(pinned->st_mode) && accmode == O_RDWR ? O_EXCL : 0),
                        0);
        if (fd < 0)
                return fd;

        if (fstat(fd, &st) < 0)
                return -errno;

        /* Cannot differ with a real procfs, the fd table is shared by all our threads. */
        if (st.st_dev != pinned->st_dev || st.st_ino != pinned->st_ino)
                return -ESTALE;

        /* F_SETFL sets exactly these flags of the ones asked for above (it ignores the
         * access mode and the open-time flags), so they need not be read first. */
        if (nonblock && !flags->nonblock &&
            fcntl(fd, F_SETFL, flags->direct ? O_DIRECT : 0) < 0)
                return -errno;

        *ret_fd = IA_TAKE_FD(fd);
        *ret_st = st;
        return 0;
}

int image_stat(const char *path, struct stat *ret_st, FileId *ret_id) {
        ia_autofd int path_fd = -1;
        int r;

        assert(ret_st);

        r = path_is_valid(path, /* ret_reason= */ NULL);
        if (r < 0)
                return r;
        return pin_inode(AT_FDCWD, path, /* allow_block= */ true, &path_fd, ret_st, ret_id);
}

int image_open(const char *path, IaMode mode, const ImageOpenFlags *flags, int *ret_fd,
               struct stat *ret_st) {
        return image_open_pinned(path, mode, flags, /* expect= */ NULL, ret_fd, ret_st,
                                 /* ret_id= */ NULL);
}

int image_open_pinned(const char *path, IaMode mode, const ImageOpenFlags *flags,
                      const FileId *expect, int *ret_fd, struct stat *ret_st, FileId *ret_id) {
        ia_autofd int path_fd = -1, fd = -1;
        struct stat pinned, st;
        FileId id;
        int accmode, r;

        assert(ret_fd);

        if (!flags)
                flags = &image_open_flags_default;

        switch (mode) {
        case IA_MODE_READ_ONLY:
                accmode = O_RDONLY;
                break;
        case IA_MODE_READ_WRITE:
                accmode = O_RDWR;
                break;
        default:
                /* IA_MODE_CREATE included: creating is image_create()'s job. */
                return -EINVAL;
        }

        r = path_is_valid(path, /* ret_reason= */ NULL);
        if (r < 0)
                return r;

        r = pin_inode(AT_FDCWD, path, /* allow_block= */ true, &path_fd, &pinned, &id);
        if (r < 0)
                return r;

        /* Before the reopen: opening another block device than the one granted would run its
         * driver and, read-write, claim it. */
        if (expect && !file_id_matches(expect, &id))
                return -EXDEV;

        r = reopen_pinned(path_fd, &pinned, accmode, flags, &fd, &st);
        if (r < 0)
                return r;

        *ret_fd = IA_TAKE_FD(fd);
        if (ret_st)
                *ret_st = st;
        if (ret_id)
                *ret_id = id;
        return 0;
}

bool image_fs_cannot_hang(long f_type) {
        /* Local disk file systems and memory: their lookups and opens wait for a disk at
         * worst.  Everything else — NFS, CIFS, FUSE, 9p, Ceph, overlay (which can sit on any
         * of them) — may wait for a server or a daemon that does not answer. */
        switch (f_type) {
        case EXT4_SUPER_MAGIC:          /* ext2, ext3 and ext4 */
        case XFS_SUPER_MAGIC:
        case BTRFS_SUPER_MAGIC:
        case F2FS_SUPER_MAGIC:
        case TMPFS_MAGIC:
                return true;
        default:
                return false;
        }
}

int image_open_cached(const char *path, IaMode mode, const ImageOpenFlags *flags,
                      const FileId *expect, bool (*fs_cannot_hang)(dev_t dev, void *userdata),
                      void *userdata, int *ret_fd, int *ret_path_fd, struct stat *ret_st,
                      FileId *ret_id) {
        ia_autofd int path_fd = -1, fd = -1;
        struct stat pinned, st;
        FileId id;
        int r;

        assert(expect);
        assert(fs_cannot_hang);
        assert(ret_fd);

        if (!flags)
                flags = &image_open_flags_default;
        if (mode != IA_MODE_READ_ONLY && mode != IA_MODE_READ_WRITE)
                return -EAGAIN;

        /* RESOLVE_CACHED: the kernel resolves the path from its dentry cache or fails with
         * EAGAIN; no directory is read and no network file system revalidates anything.
         * AT_STATX_DONT_SYNC: NFS and FUSE answer from what they have cached, too.  Every
         * failure, whatever it is, goes to a worker, which gives the answer that counts. */
        r = pin_inode_full(AT_FDCWD, path, /* allow_block= */ false, RESOLVE_CACHED,
                           AT_STATX_DONT_SYNC, &path_fd, &pinned, &id);
        if (r < 0)
                return -EAGAIN;

        /* The I/O open below runs the file system's open(), and breaks a lease, which the
         * file's owner may hold: only root's files on file systems that cannot hang.  And
         * only the file granted: no other file is ever opened for I/O. */
        if (pinned.st_uid != 0 || !fs_cannot_hang(pinned.st_dev, userdata) ||
            !file_id_matches(expect, &id))
                return -EAGAIN;

        r = reopen_pinned(path_fd, &pinned,
                          mode == IA_MODE_READ_ONLY ? O_RDONLY : O_RDWR, flags, &fd, &st);
        if (r < 0)
                return -EAGAIN;

        *ret_fd = IA_TAKE_FD(fd);
        if (ret_path_fd)
                *ret_path_fd = IA_TAKE_FD(path_fd);
        if (ret_st)
                *ret_st = st;
        if (ret_id)
                *ret_id = id;
        return 0;
}

/*
 * Opens the parent directory of the valid path @path as an O_PATH fd, resolved like
 * image_open(), and returns the last component in *ret_name (pointing into @path).
 */
static int open_parent(const char *path, int *ret_dir_fd, const char **ret_name) {
        g_autofree char *parent = NULL;
        const char *slash;
        int dir_fd;

        slash = strrchr(path, '/');
        assert(slash);
        parent = slash == path ? g_strdup("/") : g_strndup(path, slash - path);

        /* No O_NOFOLLOW: a link as the last component of the parent must fail with ELOOP
         * as well, not become an O_PATH fd of the link. */
        dir_fd = openat2_fd(AT_FDCWD, parent, O_PATH | O_DIRECTORY | O_CLOEXEC,
                            RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
        if (dir_fd < 0)
                return dir_fd;

        *ret_dir_fd = dir_fd;
        *ret_name = slash + 1;
        return 0;
}

/* Unlinks @name in @dir_fd if it still is the inode described by @want. */
static int unlink_if_same(int dir_fd, const char *name, const struct stat *want) {
        struct stat st;

        if (fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return -errno;
        if (st.st_dev != want->st_dev || st.st_ino != want->st_ino)
                return -EPERM;

        if (unlinkat(dir_fd, name, 0) < 0)
                return -errno;

        return 0;
}

static int set_fd_flags(int fd, const ImageOpenFlags *flags) {
        int fl;

        if (!flags->direct && !flags->nonblock)
                return 0;

        fl = fcntl(fd, F_GETFL);
        if (fl < 0)
                return -errno;
        if (flags->direct)
                fl |= O_DIRECT;
        if (flags->nonblock)
                fl |= O_NONBLOCK;

        /* Fails with EINVAL when the file system cannot do O_DIRECT. */
        if (fcntl(fd, F_SETFL, fl) < 0)
                return -errno;

        return 0;
}

/*
 * Creates @name in @dir_fd.  Return: 0 and a new O_RDWR fd owned by the caller in *ret_fd;
 * -EEXIST when the name exists in any form; other negative errno, the file removed again.
 */
static int create_new(int dir_fd, const char *name, const ImageOpenFlags *flags, int *ret_fd,
                      struct stat *ret_st, FileId *ret_id) {
        ia_autofd int fd = -1;
        struct stat created, st;
        FileId id;
        int r;

        /* O_EXCL: never clobber, and never follow a link, not even a dangling one (with O_EXCL
         * the kernel refuses any existing name with EEXIST).  O_DIRECT is not passed here: a
         * file system without O_DIRECT support creates the file and only then fails the open,
         * and the file would be left behind; set_fd_flags() adds it by fd, with cleanup.
         * No data is allocated, so "disk full" can only fail this very call, which creates
         * nothing then. */
        fd = openat(dir_fd, name, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW,
                    0600);
        if (fd < 0)
                return -errno;

        /* From here on the file is ours and must go again on failure.  Without its identity
         * we could not tell our file from another one put under the name meanwhile, so if
         * this first fstat() fails, the (empty, 0600 or stricter) file stays rather than
         * risking the removal of somebody else's. */
        if (fstat(fd, &created) < 0)
                return -errno;

        /* Ownership and mode are defined, not inherited: a setgid directory would hand the
         * file the directory's group, and the umask (or a default ACL) would decide the
         * mode.  fchown() first, it may clear mode bits. */
        if (fchown(fd, geteuid(), getegid()) < 0) {
                r = -errno;
                goto fail;
        }
        /* A default ACL on the directory gives the new file an access ACL with its named
         * entries ("user:alice:rw-").  fchmod() only masks them (the group bits are the ACL
         * mask), and any later "chmod g+rw" would bring them back: remove the access ACL
         * altogether, so that the mode below is all there is.  No ACL (ENODATA) or no ACL
         * support (EOPNOTSUPP) is what we want anyway. */
        if (fremovexattr(fd, "system.posix_acl_access") < 0 && errno != ENODATA &&
            errno != EOPNOTSUPP) {
                r = -errno;
                goto fail;
        }
        if (fchmod(fd, 0600) < 0) {
                r = -errno;
                goto fail;
        }

        r = set_fd_flags(fd, flags);
        if (r < 0)
                goto fail;

        if (fstat(fd, &st) < 0) {
                r = -errno;
                goto fail;
        }

        r = file_id_of(fd, &st, NULL, &id);
        if (r < 0)
                goto fail;

        *ret_fd = IA_TAKE_FD(fd);
        *ret_st = st;
        *ret_id = id;
        return 0;

fail:
        (void) unlink_if_same(dir_fd, name, &created);
        return r;
}

/*
 * Opens the existing @name in @dir_fd O_RDWR if it is the regular file @own.
 * Return: 0 and a new fd owned by the caller; -EEXIST something else is there; -ENOENT gone.
 */
static int open_own(int dir_fd, const char *name, const ImageOpenFlags *flags,
                    const FileId *own, int *ret_fd, struct stat *ret_st, FileId *ret_id) {
        ia_autofd int path_fd = -1;
        struct stat pinned;
        FileId id;
        int r;

        /* Block devices are never "created by the service", only regular files. */
        r = pin_inode(dir_fd, name, /* allow_block= */ false, &path_fd, &pinned, &id);
        if (r == -ELOOP || r == -EMEDIUMTYPE)
                return -EEXIST;         /* a link, a FIFO, …: certainly not ours */
        if (r < 0)
                return r;

        /* Not just (dev, ino): a file made in place of ours after it was deleted may have
         * its inode number. */
        if (!file_id_matches(own, &id))
                return -EEXIST;

        r = reopen_pinned(path_fd, &pinned, O_RDWR, flags, ret_fd, ret_st);
        if (r < 0)
                return r;
        *ret_id = id;
        return 0;
}

int image_create(const char *path, const ImageOpenFlags *flags, const FileId *own, int *ret_fd,
                 bool *ret_created, struct stat *ret_st, FileId *ret_id) {
        ia_autofd int dir_fd = -1, fd = -1;
        const char *name;
        struct stat st;
        FileId id;
        bool created;
        int r;

        assert(ret_fd);

        if (!flags)
                flags = &image_open_flags_default;

        r = path_is_valid(path, /* ret_reason= */ NULL);
        if (r < 0)
                return r;

        r = open_parent(path, &dir_fd, &name);
        if (r < 0)
                return r;

        for (unsigned attempt = 1;; attempt++) {
                r = create_new(dir_fd, name, flags, &fd, &st, &id);
                if (r >= 0) {
                        created = true;
                        break;
                }
                if (r != -EEXIST || !own)
                        return r;

                r = open_own(dir_fd, name, flags, own, &fd, &st, &id);
                if (r >= 0) {
                        created = false;
                        break;
                }
                /* The name went away between O_EXCL and our look at it: create it after all.
                 * When it keeps flipping somebody plays games with the directory; at that
                 * point it did exist and was not provably ours. */
                if (r != -ENOENT)
                        return r;
                if (attempt >= CREATE_ATTEMPTS_MAX)
                        return -EEXIST;
        }

        *ret_fd = IA_TAKE_FD(fd);
        if (ret_created)
                *ret_created = created;
        if (ret_st)
                *ret_st = st;
        if (ret_id)
                *ret_id = id;
        return 0;
}

int image_writable_dir(const char *path, char **ret_dir, struct stat *ret_st) {
        const char *slash;

        assert(ret_dir);
        assert(ret_st);

        /* Each prefix that ends before a '/': "/", "/a", "/a/b" for "/a/b/c". */
        for (slash = path; slash; slash = strchr(slash + 1, '/')) {
                g_autofree char *dir = slash == path ? g_strdup("/") : g_strndup(path, slash - path);
                struct stat st;

                if (lstat(dir, &st) < 0)
                        return -errno;
                if (!S_ISDIR(st.st_mode))
                        return -ENOTDIR;
                if ((st.st_uid != 0 && (st.st_mode & S_IWUSR)) ||
                    (st.st_gid != 0 && (st.st_mode & S_IWGRP)) || (st.st_mode & S_IWOTH)) {
                        const char *next_end = strchr(slash + 1, '/');
                        g_autofree char *next = next_end ? g_strndup(path, next_end - path)
                                                         : g_strdup(path);
                        struct stat nst;

                        /* A sticky directory (/tmp) writable by others is not a risk when
                         * its entry on our path is root's: only root (and the directory's
                         * owner, root-owned here or caught above) may rename or remove it. */
                        if ((st.st_mode & S_ISVTX) && (st.st_uid == 0) &&
                            lstat(next, &nst) >= 0 && nst.st_uid == 0)
                                continue;
                        *ret_dir = g_steal_pointer(&dir);
                        *ret_st = st;
                        return 1;
                }
        }
        return 0;
}

int image_remove_created(const char *path, const FileId *own) {
        ia_autofd int dir_fd = -1, fd = -1;
        struct stat st, dir_st;
        const char *name;
        FileId id;
        int r;

        r = path_is_valid(path, /* ret_reason= */ NULL);
        if (r < 0)
                return r;

        r = open_parent(path, &dir_fd, &name);
        if (r < 0)
                return r;

        /* An O_PATH fd of the entry, for its identity; O_NOFOLLOW: a symlink is looked at,
         * never followed, and is not ours. */
        fd = openat(dir_fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EPERM;
        r = file_id_of(fd, &st, NULL, &id);
        if (r < 0)
                return r;
        /* Not (dev, ino) alone: "rm; create" in place would get our file's inode number. */
        if (!file_id_matches(own, &id))
                return -EPERM;

        /* In a sticky directory (/tmp-like) the kernel lets a user rename or unlink only
         * entries they own.  A file owned by the service is therefore pinned to its name
         * against everybody but the directory's owner, and the window below is closed; a file
         * owned by someone else (chowned after we created it) could be swapped by that user
         * for another entry they could not remove themselves, and we as root could. */
        if (fstat(dir_fd, &dir_st) < 0)
                return -errno;
        if ((dir_st.st_mode & S_ISVTX) && st.st_uid != geteuid())
                return -EPERM;

        /* Linux has no "unlink if it is this inode", so the name may change between the
         * fstatat() above and here.  That is acceptable: whoever can replace an entry of this
         * directory holds write permission on it and can unlink any of its entries
         * themselves, so our unlinkat() cannot remove anything they could not; sticky ones are
         * handled above.  unlinkat() removes a name, never data still linked elsewhere. */
        if (unlinkat(dir_fd, name, 0) < 0)
                return -errno;

        return 0;
}

int image_open_beneath(const char *dir, const FileId *dir_id, const char *path, IaMode mode,
                       const ImageOpenFlags *flags, int *ret_fd, bool *ret_created,
                       struct stat *ret_st, FileId *ret_id) {
        const uint64_t beneath = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS |
                                 RESOLVE_NO_XDEV;
        ia_autofd int dir_fd = -1, parent_fd = -1, path_fd = -1, fd = -1;
        g_autofree char *parent = NULL;
        struct stat st, pinned;
        const char *rel, *name;
        FileId id;
        size_t n;
        int r;

        assert(dir);
        assert(dir_id);
        assert(ret_fd);

        if (!flags)
                flags = &image_open_flags_default;

        r = path_is_valid(path, /* ret_reason= */ NULL);
        if (r < 0)
                return r;
        n = strlen(dir);
        if (strncmp(path, dir, n) != 0 || path[n] != '/')
                return -EINVAL;
        rel = path + n + 1;     /* valid, so no "..", no "//", not empty */

        /* The directory the grant is for, not whatever is at its name now. */
        dir_fd = openat2_fd(AT_FDCWD, dir, O_PATH | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW,
                            RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
        if (dir_fd < 0)
                return dir_fd;
        if (fstat(dir_fd, &st) < 0)
                return -errno;
        r = file_id_of(dir_fd, &st, NULL, &id);
        if (r < 0)
                return r;
        if (!file_id_matches(dir_id, &id))
                return -ESTALE;

        if (mode == IA_MODE_CREATE) {
                /* O_EXCL in the file's own directory beneath the granted one. */
                name = strrchr(rel, '/');
                if (name) {
                        parent = g_strndup(rel, (gsize) (name - rel));
                        name++;
                        parent_fd = openat2_fd(dir_fd, parent,
                                               O_PATH | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW,
                                               beneath);
                        if (parent_fd < 0)
                                return parent_fd;
                } else {
                        name = rel;
                        parent_fd = fcntl(dir_fd, F_DUPFD_CLOEXEC, 3);
                        if (parent_fd < 0)
                                return -errno;
                }
                r = create_new(parent_fd, name, flags, &fd, &st, &id);
                if (r < 0)
                        return r;
                if (ret_created)
                        *ret_created = true;
                goto done;
        }

        path_fd = openat2_fd(dir_fd, rel, O_PATH | O_CLOEXEC | O_NOFOLLOW, beneath);
        if (path_fd < 0)
                return path_fd;
        if (fstat(path_fd, &pinned) < 0)
                return -errno;
        if (S_ISLNK(pinned.st_mode))
                return -ELOOP;
        /* Regular files only: a device node beneath a directory is never meant as an image. */
        if (!S_ISREG(pinned.st_mode))
                return -EMEDIUMTYPE;
        /* A second name would make the file reachable from elsewhere: maybe it is another
         * guest's image, hard-linked in here. */
        if (pinned.st_nlink != 1)
                return -EMLINK;
        r = file_id_of(path_fd, &pinned, NULL, &id);
        if (r < 0)
                return r;

        r = reopen_pinned(path_fd, &pinned, mode == IA_MODE_READ_ONLY ? O_RDONLY : O_RDWR, flags,
                          &fd, &st);
        if (r < 0)
                return r;
        if (ret_created)
                *ret_created = false;
done:
        *ret_fd = IA_TAKE_FD(fd);
        if (ret_st)
                *ret_st = st;
        if (ret_id)
                *ret_id = id;
        return 0;
}

int image_stat_directory(const char *path, struct stat *ret_st, FileId *ret_id) {
        ia_autofd int fd = -1;
        struct stat st;
        FileId id;
        int r;

        assert(ret_st);

        r = path_is_valid(path, /* ret_reason= */ NULL);
        if (r < 0)
                return r;
        fd = openat2_fd(AT_FDCWD, path, O_PATH | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW,
                        RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
        if (fd < 0)
                return fd;
        if (fstat(fd, &st) < 0)
                return -errno;
        /* Whoever may write in it may put there what the guest then opens: a hard link to
         * something else, a file of their own.  Only the service's user may. */
        if (st.st_uid != geteuid() || (st.st_mode & (S_IWGRP | S_IWOTH)))
                return -EPERM;
        r = file_id_of(fd, &st, NULL, &id);
        if (r < 0)
                return r;
        *ret_st = st;
        if (ret_id)
                *ret_id = id;
        return 0;
}

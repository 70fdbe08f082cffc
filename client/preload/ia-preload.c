/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ia-preload.c — libimageaccess-preload.so, the LD_PRELOAD shim that makes an unmodified
 * emulator (QEMU) open its disk images through image-accessd.
 *
 * Every open of the open(2) family whose path lies under one of the configured prefixes is
 * sent to the service as OpenImage for the configured guest; the fd the service returns is
 * handed to the caller as if open(2) had made it.  Everything else goes to the next
 * definition of the symbol (libc) untouched.  docs/qemu.md is the user's guide; the
 * measured facts this is built on are in docs/qemu-open-patterns.md.
 *
 * Configuration, read once when the library is loaded:
 *   IMAGE_ACCESS_GUEST        the guest to claim (required to do anything)
 *   IMAGE_ACCESS_PREFIXES     absolute directories, ':'-separated (required)
 *   IMAGE_ACCESS_BUS_ADDRESS  a D-Bus address (optional; else $DBUS_SYSTEM_BUS_ADDRESS or
 *                             the system bus, as sd-bus finds it)
 *   IMAGE_ACCESS_DEBUG=1      one line per decision on stderr
 *   IMAGE_ACCESS_CHANNEL=0    every open through the bus daemon; by default repeated opens
 *                             go over a channel to the service (ia_client_set_use_channel())
 *
 * Constraints, and how they are met:
 *   - Thread-safe: one IaClient behind one mutex (sd-bus objects belong to one thread at a
 *     time).  Opens through the service are serialized; QEMU makes them with its big lock
 *     held anyway.
 *   - Fork-safe: sd-bus refuses a connection made by another process (-ECHILD).  A child
 *     abandons the parent's client (closing only its copy of the socket) and makes its own
 *     at its first brokered open; the mutex is re-initialized in the child by an atfork
 *     handler, so a fork while another thread held it cannot deadlock the child.
 *   - Recursion-safe: while the shim works, a thread-local flag sends every open of that
 *     thread (sd-bus reading /proc, the library's own files) straight to libc.
 *   - Small stack: QEMU opens images on coroutine stacks.  Paths are built on the heap; no
 *     PATH_MAX buffer lives on the stack.
 *   - Not async-signal-safe (it allocates and takes a mutex), as open(2) callers in signal
 *     handlers are not a use case of emulators.
 */

/* This file defines open(), open64() and friends under their own names: neither fortified
 * inline versions (_FORTIFY_SOURCE) nor the redirection of open to open64 (meson's
 * -D_FILE_OFFSET_BITS=64; all the same on 64-bit systems) may rename them. */
#undef _FORTIFY_SOURCE
#undef _FILE_OFFSET_BITS

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ia-client.h"
#include "ia-macro.h"

#define SHIM_EXPORT __attribute__((visibility("default")))

/* glibc's _FORTIFY_SOURCE entry points, declared by no public header. */
int __open_2(const char *path, int flags);
int __open64_2(const char *path, int flags);
int __openat_2(int dirfd, const char *path, int flags);
int __openat64_2(int dirfd, const char *path, int flags);

/* ---- the functions we stand in for ----------------------------------------------------- */

typedef int (*open_fn)(const char *path, int flags, ...);
typedef int (*open2_fn)(const char *path, int flags);
typedef int (*openat_fn)(int dirfd, const char *path, int flags, ...);
typedef int (*openat2_fn)(int dirfd, const char *path, int flags);
typedef int (*creat_fn)(const char *path, mode_t mode);

/* Resolved on first use (an open may come before our constructor runs, from another
 * library's constructor).  dlsym() does not open files, so this cannot recurse. */
#define REAL(type, name)                                                                   \
        static type real_##name(void) {                                                    \
                static type fn;                                                            \
                type f = __atomic_load_n(&fn, __ATOMIC_ACQUIRE);                           \
                if (!f) {                                                                  \
                        f = (type) dlsym(RTLD_NEXT, #name);                                \
                        __atomic_store_n(&fn, f, __ATOMIC_RELEASE);                        \
                }                                                                          \
                return f;                                                                  \
        }

REAL(open_fn, open)
REAL(open_fn, open64)
REAL(open2_fn, __open_2)
REAL(open2_fn, __open64_2)
REAL(openat_fn, openat)
REAL(openat_fn, openat64)
REAL(openat2_fn, __openat_2)
REAL(openat2_fn, __openat64_2)
REAL(creat_fn, creat)
REAL(creat_fn, creat64)

/* ---- configuration --------------------------------------------------------------------- */

static struct {
        char *guest;
        char **prefixes;        /* normalized, NULL-terminated */
        size_t *prefix_len;
        char *bus_address;      /* NULL: the system bus */
        bool debug;
        bool channel;
        bool active;
} cfg;

/* Non-zero while this thread is inside the shim: its opens go to libc. */
static __thread int in_shim __attribute__((tls_model("initial-exec")));

static pthread_mutex_t client_lock = PTHREAD_MUTEX_INITIALIZER;
static IaClient *client;                /* guarded by client_lock */
static pid_t client_pid;                /* the process that made client */
static int client_sock = -1;            /* its socket, and what it is, to close it in a child */
static dev_t client_sock_dev;
static ino_t client_sock_ino;
static bool warned_unreachable;
static bool warned_dropped;

static void say(const char *format, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *format, ...) {
        char *text = NULL;
        va_list ap;
        int n;

        va_start(ap, format);
        n = vasprintf(&text, format, ap);
        va_end(ap);
        if (n < 0)
                return;
        /* One write(2) per line: lines of threads do not interleave. */
        (void) !write(STDERR_FILENO, text, (size_t) n);
        free(text);
}

#define debug(...) do { if (cfg.debug) say("image-access-preload: " __VA_ARGS__); } while (0)

/* Lexical normalization of an absolute path: no "", "." or ".." components, no trailing '/'.
 * ".." at the root stays at the root, as the kernel does.  Returns a new string or NULL. */
static char *normalize(const char *abs) {
        size_t len = strlen(abs);
        char *out = malloc(len + 2);
        size_t o = 0;
        const char *p = abs;

        if (!out)
                return NULL;
        while (*p) {
                const char *start;
                size_t n;

                while (*p == '/')
                        p++;
                if (!*p)
                        break;
                start = p;
                while (*p && *p != '/')
                        p++;
                n = (size_t) (p - start);
                if (n == 1 && start[0] == '.')
                        continue;
                if (n == 2 && start[0] == '.' && start[1] == '.') {
                        while (o > 0 && out[o - 1] != '/')
                                o--;
                        if (o > 0)
                                o--;    /* the '/' before the dropped component */
                        continue;
                }
                out[o++] = '/';
                memcpy(out + o, start, n);
                o += n;
        }
        if (o == 0)
                out[o++] = '/';
        out[o] = '\0';
        return out;
}

/* secure_getenv(), as sd-bus reads DBUS_SYSTEM_BUS_ADDRESS: a set-uid program that happens to
 * load the shim takes no orders from its caller's environment (the shim stays inactive). */
static void config_load(void) {
        const char *guest = secure_getenv("IMAGE_ACCESS_GUEST");
        const char *prefixes = secure_getenv("IMAGE_ACCESS_PREFIXES");
        const char *address = secure_getenv("IMAGE_ACCESS_BUS_ADDRESS");
        const char *debug = secure_getenv("IMAGE_ACCESS_DEBUG");
        const char *channel = secure_getenv("IMAGE_ACCESS_CHANNEL");
        size_t n = 0, max = 1;
        char *copy, *save = NULL;

        cfg.debug = debug && debug[0] && strcmp(debug, "0") != 0;
        cfg.channel = !channel || strcmp(channel, "0") != 0;
        if (!guest || !guest[0] || !prefixes || !prefixes[0]) {
                if ((guest && guest[0]) || (prefixes && prefixes[0]))
                        say("image-access-preload: both IMAGE_ACCESS_GUEST and IMAGE_ACCESS_PREFIXES must be set; the shim is inactive\n");
                return;
        }
        for (const char *p = prefixes; *p; p++)
                if (*p == ':')
                        max++;
        cfg.prefixes = calloc(max + 1, sizeof(char *));
        cfg.prefix_len = calloc(max + 1, sizeof(size_t));
        cfg.guest = strdup(guest);
        copy = strdup(prefixes);
        if (!cfg.prefixes || !cfg.prefix_len || !cfg.guest || !copy) {
                say("image-access-preload: out of memory; the shim is inactive\n");
                free(copy);
                return;
        }
        for (char *tok = strtok_r(copy, ":", &save); tok; tok = strtok_r(NULL, ":", &save)) {
                char *norm;

                if (tok[0] != '/') {
                        say("image-access-preload: IMAGE_ACCESS_PREFIXES: '%s' is not an absolute path; ignored\n", tok);
                        continue;
                }
                norm = normalize(tok);
                if (!norm)
                        continue;
                cfg.prefixes[n] = norm;
                cfg.prefix_len[n] = strcmp(norm, "/") == 0 ? 0 : strlen(norm);
                n++;
        }
        free(copy);
        if (n == 0) {
                say("image-access-preload: IMAGE_ACCESS_PREFIXES names no absolute directory; the shim is inactive\n");
                return;
        }
        if (address && address[0])
                cfg.bus_address = strdup(address);
        cfg.active = true;
        if (cfg.debug) {
                say("image-access-preload: pid %d, guest '%s', bus %s%s\n", (int) getpid(), cfg.guest,
                    cfg.bus_address ?: "(system bus)", cfg.channel ? ", channel" : "");
                for (size_t i = 0; cfg.prefixes[i]; i++)
                        say("image-access-preload: prefix %s\n", cfg.prefixes[i]);
        }
}

static void atfork_child(void) {
        /* Another thread may have held the lock at fork(): it does not exist here. */
        pthread_mutex_init(&client_lock, NULL);
}

__attribute__((constructor))
static void shim_init(void) {
        in_shim++;
        config_load();
        if (cfg.active)
                (void) pthread_atfork(NULL, NULL, atfork_child);
        in_shim--;
}

/* ---- which opens are ours -------------------------------------------------------------- */

static bool under_prefix(const char *norm) {
        for (size_t i = 0; cfg.prefixes[i]; i++) {
                size_t n = cfg.prefix_len[i];

                if (strncmp(norm, cfg.prefixes[i], n) == 0 && (norm[n] == '/' || norm[n] == '\0'))
                        return true;
        }
        return false;
}

static char *join(const char *dir, const char *rel) {
        size_t a = strlen(dir), b = strlen(rel);
        char *s = malloc(a + b + 2);

        if (!s)
                return NULL;
        memcpy(s, dir, a);
        s[a] = '/';
        memcpy(s + a + 1, rel, b + 1);
        return s;
}

/* The normalized absolute path if this open is ours, else NULL. */
static char *claim(int dirfd, const char *path, int flags) {
        char *abs = NULL, *norm;

        if (!cfg.active || in_shim || !path || !path[0])
                return NULL;
        /* Not image opens, and nothing the service could give: O_PATH descriptors, directories
         * (O_TMPFILE includes O_DIRECTORY). */
        if (flags & (O_PATH | O_DIRECTORY))
                return NULL;

        if (path[0] == '/')
                norm = normalize(path);
        else {
                char *dir;

                if (dirfd == AT_FDCWD)
                        dir = getcwd(NULL, 0);
                else {
                        char link[40];
                        ssize_t n;

                        dir = malloc(PATH_MAX);
                        if (!dir)
                                return NULL;
                        snprintf(link, sizeof link, "/proc/self/fd/%d", dirfd);
                        n = readlink(link, dir, PATH_MAX - 1);
                        if (n <= 0 || dir[0] != '/') {
                                free(dir);
                                return NULL;    /* let libc give the right errno */
                        }
                        dir[n] = '\0';
                }
                if (!dir)
                        return NULL;
                abs = join(dir, path);
                free(dir);
                if (!abs)
                        return NULL;
                norm = normalize(abs);
                free(abs);
        }
        if (norm && !under_prefix(norm)) {
                free(norm);
                norm = NULL;
        }
        return norm;
}

/* ---- talking to the service ------------------------------------------------------------ */

/* Called with client_lock held.  Returns the client, or NULL with *ret_errno set. */
static IaClient *get_client(int *ret_errno) {
        pid_t pid = getpid();
        int r;

        if (client && client_pid != pid) {
                /* A child of the process that connected: sd-bus refuses to use that connection
                 * here, and unref'ing it could talk on the parent's socket.  Drop our copy of
                 * the socket (if it is still that socket) and forget the client. */
                struct stat st;

                if (client_sock >= 0 && fstat(client_sock, &st) == 0 &&
                    st.st_dev == client_sock_dev && st.st_ino == client_sock_ino)
                        (void) close(client_sock);
                debug("pid %d: forked from %d; opening a connection of its own\n", (int) pid,
                      (int) client_pid);
                client = NULL;
                client_sock = -1;
        }
        if (client)
                return client;

        r = cfg.bus_address ? ia_client_new_with_address(cfg.bus_address, &client)
                            : ia_client_new(&client);
        if (r < 0) {
                client = NULL;
                if (!warned_unreachable || cfg.debug)
                        say("image-access-preload: cannot connect to %s: %s; opens under the prefixes fail with ECONNREFUSED\n",
                            cfg.bus_address ?: "the system bus", strerror(-r));
                warned_unreachable = true;
                *ret_errno = r == -ENOMEM ? ENOMEM : ECONNREFUSED;
                return NULL;
        }
        client_pid = pid;
        /* QEMU opens each new overlay five times in a row with the big lock held: two bus
         * daemon hops fewer per open is most of what a brokered open costs. */
        if (cfg.channel)
                (void) ia_client_set_use_channel(client, true);
        return client;
}

/* Called with client_lock held, after each call: the socket may change on reconnection. */
static void note_socket(void) {
        struct stat st;
        int fd = ia_client_get_fd(client);

        if (fd >= 0 && fstat(fd, &st) == 0) {
                client_sock = fd;
                client_sock_dev = st.st_dev;
                client_sock_ino = st.st_ino;
        }
}

/* What open(2) would have said.  The emulator needs ENOENT for its probes of an overlay that
 * does not exist yet and EACCES for "you may not"; the rest keeps the library's errno. */
static int to_errno(int r, const IaError *e) {
        if (ia_error_has_name(e, IA_ERROR_NOT_GRANTED) ||
            ia_error_has_name(e, IA_ERROR_NOT_BOUND) ||
            ia_error_has_name(e, "org.freedesktop.DBus.Error.AccessDenied") ||
            ia_error_has_name(e, "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired"))
                return EACCES;
        if (ia_error_has_name(e, IA_ERROR_NOT_FOUND))
                return ENOENT;
        if (ia_error_has_name(e, IA_ERROR_FILE_EXISTS))
                return EEXIST;
        /* ENOENT made by the library itself is a bus socket that is not there (a reconnection
         * that failed), never an image: an emulator must not take it for "no such image". */
        if (r == -ENOENT)
                return ECONNREFUSED;
        return r < 0 ? -r : EIO;
}

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}

/* One OpenImage.  Returns the fd, or -errno. */
static int service_open(const char *path, IaImageMode mode, uint64_t options) {
        IaError e = {};
        IaClient *c;
        int fd = -1, r, err = 0;
        uint64_t t0 = cfg.debug ? now_usec() : 0;

        pthread_mutex_lock(&client_lock);
        c = get_client(&err);
        if (!c) {
                pthread_mutex_unlock(&client_lock);
                return -err;
        }
        r = ia_client_open(c, cfg.guest, path, mode, options, &e, &fd);
        note_socket();
        pthread_mutex_unlock(&client_lock);

        if (r < 0) {
                int errnum = to_errno(r, &e);

                /* No answer from the service, the connection itself failed: the emulator
                 * would report only "Transport endpoint is not connected".  The usual cause
                 * is a uid without a passwd entry, which dbus-daemon drops at once. */
                if ((!e.name || strncmp(e.name, "System.Error.", 13) == 0) &&
                    (r == -ENOTCONN || r == -ECONNRESET || r == -EPIPE || r == -ECONNREFUSED ||
                     r == -ENOENT) &&
                    (!__atomic_exchange_n(&warned_dropped, true, __ATOMIC_RELAXED) || cfg.debug))
                        say("image-access-preload: the bus refused or dropped the connection of "
                            "uid %u (%s); dbus-daemon drops a uid that has no passwd entry "
                            "(see docs/qemu.md); opens under the prefixes fail\n",
                            (unsigned) geteuid(), strerror(-r));

                debug("%s %s: %s (%s) -> %s, %" PRIu64 " us\n", ia_image_mode_to_string(mode), path,
                      e.name ?: "?", e.message ?: strerror(-r), strerrorname_np(errnum) ?: "?",
                      now_usec() - t0);
                ia_error_done(&e);
                return -errnum;
        }
        debug("%s %s: fd %d, %" PRIu64 " us\n", ia_image_mode_to_string(mode), path, fd,
              now_usec() - t0);
        return fd;
}

static bool exists(const char *path) {
        struct stat st;

        /* Needs only search permission on the directories: a 0711 image directory allows it
         * to anyone.  Where it fails, the service decides. */
        return stat(path, &st) == 0;
}

/* The open(2) semantics on top of OpenImage.  Returns the fd or -errno. */
static int shim_open(const char *path, int flags) {
        int acc = flags & O_ACCMODE;
        IaImageMode mode = acc == O_RDONLY ? IA_IMAGE_MODE_READ_ONLY : IA_IMAGE_MODE_READ_WRITE;
        uint64_t options = 0;
        ia_autofd int fd = -1;
        int fl;

        if (acc == O_ACCMODE)
                return -EINVAL;
        /* The service cannot set these on an open, and they cannot be added later. */
        if (flags & (O_SYNC | O_DSYNC)) {
                debug("%s: O_SYNC/O_DSYNC are not supported through the service\n", path);
                return -EINVAL;
        }
        if ((flags & O_TRUNC) && acc == O_RDONLY) {
                debug("%s: O_TRUNC with O_RDONLY is not supported through the service\n", path);
                return -EINVAL;
        }
        if (flags & O_DIRECT)
                options |= IA_OPEN_DIRECT;
        if (flags & O_NONBLOCK)
                options |= IA_OPEN_NONBLOCK;

        if (!(flags & O_CREAT)) {
                struct stat st;

                /* QEMU probes every new overlay with plain opens before it creates it and
                 * expects ENOENT: where the emulator itself sees nothing at the path, the
                 * service would say NotFound too, so save the round trip.  (A stat needs only
                 * search permission; it tells the emulator nothing it could not learn.) */
                if (stat(path, &st) < 0 && errno == ENOENT) {
                        debug("%s %s: ENOENT by stat, service not asked\n",
                              ia_image_mode_to_string(mode), path);
                        return -ENOENT;
                }
                fd = service_open(path, mode, options);
        } else if (flags & O_EXCL) {
                /* "create" may also reopen the file the service made for this guest before:
                 * that is not O_EXCL.  Where the file can be seen, say EEXIST ourselves. */
                if (exists(path))
                        return -EEXIST;
                fd = service_open(path, IA_IMAGE_MODE_CREATE, options);
        } else if (exists(path)) {
                /* O_CREAT of an existing file opens it; "create" would refuse a file the
                 * service did not make, and needs a stronger grant. */
                fd = service_open(path, mode, options);
                if (fd == -ENOENT)      /* it went away meanwhile */
                        fd = service_open(path, IA_IMAGE_MODE_CREATE, options);
        } else {
                fd = service_open(path, IA_IMAGE_MODE_CREATE, options);
                if (fd == -EEXIST)      /* there after all, made by someone else */
                        fd = service_open(path, mode, options);
                else if (fd == -EACCES) {
                        /* No create grant: an existing file we could not see may still be
                         * openable; otherwise "may not create" is the answer. */
                        int fd2 = service_open(path, mode, options);

                        if (fd2 >= 0)
                                fd = fd2;
                }
        }
        if (fd < 0)
                return fd;

        /* "create" opens read-write: give an O_RDONLY caller what it asked for. */
        if (acc == O_RDONLY && (fcntl(fd, F_GETFL) & O_ACCMODE) != O_RDONLY) {
                int ro = service_open(path, IA_IMAGE_MODE_READ_ONLY, options);

                fd = ia_safe_close(fd);
                if (ro < 0)
                        return ro;
                fd = ro;
        }
        if ((flags & O_TRUNC) && ftruncate(fd, 0) < 0)
                goto fail;
        fl = flags & (O_APPEND | O_NOATIME | O_ASYNC);
        if (fl && fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | fl) < 0)
                goto fail;
        /* The library's fds are O_CLOEXEC; open(2) without O_CLOEXEC makes an inheritable one. */
        if (!(flags & O_CLOEXEC) && fcntl(fd, F_SETFD, 0) < 0)
                goto fail;
        return IA_TAKE_FD(fd);

fail:
        return -errno;          /* the cleanup closes fd and keeps errno */
}

/* Runs an open that claim() accepted; sets errno like open(2). */
static int brokered(char *norm, int flags) {
        int fd, saved = errno;

        in_shim++;
        fd = shim_open(norm, flags);
        free(norm);
        in_shim--;
        if (fd < 0) {
                errno = -fd;
                return -1;
        }
        errno = saved;
        return fd;
}

/* ---- the interposed symbols ------------------------------------------------------------ */

#define NEEDS_MODE(flags) (((flags) & O_CREAT) || ((flags) & O_TMPFILE) == O_TMPFILE)

#define GET_MODE(flags, last)                                                              \
        mode_t mode = 0;                                                                   \
        if (NEEDS_MODE(flags)) {                                                           \
                va_list ap;                                                                \
                va_start(ap, last);                                                        \
                mode = va_arg(ap, mode_t);                                                 \
                va_end(ap);                                                                \
        }

SHIM_EXPORT int open(const char *path, int flags, ...) {
        GET_MODE(flags, flags);
        char *norm = claim(AT_FDCWD, path, flags);

        if (norm)
                return brokered(norm, flags);
        return real_open()(path, flags, mode);
}

SHIM_EXPORT int open64(const char *path, int flags, ...) {
        GET_MODE(flags, flags);
        char *norm = claim(AT_FDCWD, path, flags);

        if (norm)
                return brokered(norm, flags);
        return real_open64()(path, flags, mode);
}

SHIM_EXPORT int __open_2(const char *path, int flags) {
        char *norm = claim(AT_FDCWD, path, flags);

        if (norm)
                return brokered(norm, flags);
        return real___open_2()(path, flags);
}

SHIM_EXPORT int __open64_2(const char *path, int flags) {
        char *norm = claim(AT_FDCWD, path, flags);

        if (norm)
                return brokered(norm, flags);
        return real___open64_2()(path, flags);
}

SHIM_EXPORT int openat(int dirfd, const char *path, int flags, ...) {
        GET_MODE(flags, flags);
        char *norm = claim(dirfd, path, flags);

        if (norm)
                return brokered(norm, flags);
        return real_openat()(dirfd, path, flags, mode);
}

SHIM_EXPORT int openat64(int dirfd, const char *path, int flags, ...) {
        GET_MODE(flags, flags);
        char *norm = claim(dirfd, path, flags);

        if (norm)
                return brokered(norm, flags);
        return real_openat64()(dirfd, path, flags, mode);
}

SHIM_EXPORT int __openat_2(int dirfd, const char *path, int flags) {
        char *norm = claim(dirfd, path, flags);

        if (norm)
                return brokered(norm, flags);
        return real___openat_2()(dirfd, path, flags);
}

SHIM_EXPORT int __openat64_2(int dirfd, const char *path, int flags) {
        char *norm = claim(dirfd, path, flags);

        if (norm)
                return brokered(norm, flags);
        return real___openat64_2()(dirfd, path, flags);
}

SHIM_EXPORT int creat(const char *path, mode_t mode) {
        int flags = O_CREAT | O_WRONLY | O_TRUNC;
        char *norm = claim(AT_FDCWD, path, flags);

        if (norm)
                return brokered(norm, flags);
        return real_creat()(path, mode);
}

SHIM_EXPORT int creat64(const char *path, mode_t mode) {
        int flags = O_CREAT | O_WRONLY | O_TRUNC;
        char *norm = claim(AT_FDCWD, path, flags);

        if (norm)
                return brokered(norm, flags);
        return real_creat64()(path, mode);
}

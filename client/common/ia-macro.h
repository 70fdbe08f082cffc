/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ia-macro.h — the project's one set of cleanup and ownership helpers (private, not installed).
 * The daemon, libimageaccess, image-accessctl and the preload shim all include it.
 *
 * The idiom is GLib's g_auto* family.  This header adds what GLib lacks or what GLib-free code
 * needs, under the same names with an ia_ prefix, so that every owning local reads alike:
 *
 *   - ia_autofd and IA_TAKE_FD(), everywhere (GLib 2.74 has no g_autofd; g_steal_fd() leaves
 *     -1, and so does IA_TAKE_FD()).
 *   - ia_autofree, ia_autoptr(T), ia_auto(T) with IA_DEFINE_AUTOPTR_CLEANUP_FUNC() and
 *     IA_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(), and IA_TAKE_PTR(): only where GLib is not linked
 *     (libimageaccess promises emulators a GLib-free core; the shim is loaded into them).
 *     Code that links GLib uses g_autofree, g_autoptr(), g_auto() and g_steal_pointer().
 *
 * Nothing here includes GLib.
 */
#pragma once

#include <errno.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

static inline void ia_close_fdp(int *fd) {
        if (*fd >= 0) {
                int saved = errno;
                (void) close(*fd);
                errno = saved;
        }
        *fd = -1;
}

/* An owning fd local: closed when it goes out of scope unless taken with IA_TAKE_FD().  Closing
 * keeps errno, so "return -errno" after a failed call still reports that call. */
#define ia_autofd __attribute__((cleanup(ia_close_fdp)))

/* Moves ownership of an fd out of a variable and leaves -1 behind. */
#define IA_TAKE_FD(fd) ({ int _fd_ = (fd); (fd) = -1; _fd_; })

/* Closes an fd if it is one, keeping errno; returns -1 for "fd = ia_safe_close(fd)". */
static inline int ia_safe_close(int fd) {
        if (fd >= 0) {
                int saved = errno;
                (void) close(fd);
                errno = saved;
        }
        return -1;
}

/* Closes two fds (either may be -1), with one close_range() when they are neighbours, as two
 * opened one after the other usually are: where a system call costs more than the rest of a
 * close (the daemon's opens).  On any failure close_range() closed nothing (it refuses before
 * it closes), so each is closed on its own then. */
static inline void ia_close_pair(int a, int b) {
#ifdef SYS_close_range
        /* The system call: glibc has a wrapper only since 2.34. */
        if (a >= 0 && b >= 0 && (a == b + 1 || b == a + 1) &&
            syscall(SYS_close_range, (unsigned) (a < b ? a : b), (unsigned) (a < b ? b : a),
                    0U) == 0)
                return;
#endif
        ia_safe_close(a);
        ia_safe_close(b);
}

#define IA_ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))

/* ---- for code without GLib: g_autofree, g_autoptr() and g_auto() under ia_ names ---------- */

static inline void ia_freep(void *p) {
        free(*(void **) p);
}

#define ia_autofree __attribute__((cleanup(ia_freep)))

/* IA_DEFINE_AUTOPTR_CLEANUP_FUNC(T, unref) once per type, then "ia_autoptr(T) p = NULL;". */
#define IA_DEFINE_AUTOPTR_CLEANUP_FUNC(T, func)                         \
        static inline void ia_autoptr_cleanup_##T(T **p) {              \
                if (*p)                                                 \
                        (void) func(*p);                                \
        }
#define ia_autoptr(T) __attribute__((cleanup(ia_autoptr_cleanup_##T))) T *

/* IA_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(T, clear) once per type, then "ia_auto(T) v = {};". */
#define IA_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(T, func)                      \
        static inline void ia_auto_cleanup_##T(T *p) {                  \
                func(p);                                                \
        }
#define ia_auto(T) __attribute__((cleanup(ia_auto_cleanup_##T))) T

/* Moves ownership of a pointer out of a variable and leaves NULL behind. */
#define IA_TAKE_PTR(p) ({ __typeof__(p) _p_ = (p); (p) = NULL; _p_; })

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * macro.h — small helpers every module uses: the fd cleanup attribute (GLib 2.74 has no
 * g_autofd), fd ownership transfer, and cleanup registrations for sd-bus/sd-event types.
 */
#pragma once

#include <errno.h>
#include <unistd.h>
#include <glib.h>

static inline void ia_close_fdp(int *fd) {
        if (*fd >= 0) {
                int saved = errno;
                (void) close(*fd);
                errno = saved;
        }
        *fd = -1;
}

/* An owning fd local: closed when it goes out of scope unless taken with IA_TAKE_FD(). */
#define ia_autofd __attribute__((cleanup(ia_close_fdp)))

/* Moves ownership of an fd out of a variable and leaves -1 behind. */
#define IA_TAKE_FD(fd) ({ int _fd_ = (fd); (fd) = -1; _fd_; })

static inline int ia_safe_close(int fd) {
        if (fd >= 0) {
                int saved = errno;
                (void) close(fd);
                errno = saved;
        }
        return -1;
}

#define IA_ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ia-macro.h — cleanup helpers of libimageaccess (private, not installed).
 *
 * The project's idiom is GLib's g_auto* family (STYLE §0), but libimageaccess must not pull
 * GLib into every emulator that links it (ia-client.h promises a GLib-free core), so the core
 * uses the same pattern with the compiler's cleanup attribute directly, as sd-bus does.  The
 * GLib part (ia-client-glib.c) uses g_auto* as usual.
 */
#pragma once

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

static inline void ia_client_close_fdp(int *fd) {
        if (*fd >= 0) {
                int saved = errno;
                (void) close(*fd);
                errno = saved;
        }
        *fd = -EBADF;
}

static inline int ia_client_safe_close(int fd) {
        if (fd >= 0) {
                int saved = errno;
                (void) close(fd);
                errno = saved;
        }
        return -EBADF;
}

static inline void ia_client_freep(void *p) {
        free(*(void **) p);
}

static inline void ia_client_bus_message_unrefp(sd_bus_message **m) {
        sd_bus_message_unref(*m);
}

static inline void ia_client_bus_unrefp(sd_bus **b) {
        sd_bus_flush_close_unref(*b);
}

static inline void ia_client_bus_error_freep(sd_bus_error *e) {
        sd_bus_error_free(e);
}

/* Owning locals: released when they go out of scope unless taken. */
#define _ia_autofd_ __attribute__((cleanup(ia_client_close_fdp)))
#define _ia_autofree_ __attribute__((cleanup(ia_client_freep)))
#define _ia_auto_message_ __attribute__((cleanup(ia_client_bus_message_unrefp)))
#define _ia_auto_bus_ __attribute__((cleanup(ia_client_bus_unrefp)))
#define _ia_auto_bus_error_ __attribute__((cleanup(ia_client_bus_error_freep)))

/* Move ownership out of a variable, leaving "empty" behind. */
#define IA_TAKE_PTR(p) ({ __typeof__(p) _p_ = (p); (p) = NULL; _p_; })
/* Leaves -1, as the daemon's IA_TAKE_FD (daemon/macro.h) and GLib's g_steal_fd() do: one
 * meaning for one name. */
#define IA_TAKE_FD(fd) ({ int _fd_ = (fd); (fd) = -1; _fd_; })

#define IA_ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))


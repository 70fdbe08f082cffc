/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * sent-fd.c — the record of an fd sent on the bus (sent-fd.h).
 */
#include <string.h>
#include <glib.h>

#include "sent-fd.h"

void sent_fd_set(SentFd *s, uint64_t cookie, const char *guest, const char *image,
                 const char *mode, const char *sender, uid_t uid, pid_t pid) {
        size_t n_guest = strlen(guest) + 1, n_image = strlen(image) + 1, n_mode = strlen(mode) + 1;
        size_t n_sender = strlen(sender) + 1;
        char *p = g_malloc(n_guest + n_image + n_mode + n_sender);

        *s = (SentFd) {
                .cookie = cookie,
                .guest = memcpy(p, guest, n_guest),
                .image = memcpy(p + n_guest, image, n_image),
                .mode = memcpy(p + n_guest + n_image, mode, n_mode),
                .sender = memcpy(p + n_guest + n_image + n_mode, sender, n_sender),
                .uid = uid,
                .pid = pid,
        };
}

void sent_fd_clear(SentFd *s) {
        g_free(s->guest);
        *s = (SentFd) {};
}

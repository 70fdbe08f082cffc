/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * sent-fd.h — what the bus front-end remembers of an OpenImage reply that carried an fd, until
 * the bus could bounce it (bus-image-access.c audits a bounce as "open undelivered").  The
 * Manager holds the last SENT_FDS_MAX of them in a ring.  A value type: no bus, no Manager.
 */
#pragma once

#include <stdint.h>
#include <sys/types.h>

/* An OpenImage reply with an fd, as sent.  The four strings share one allocation, owned
 * through @guest (one malloc per open rather than four). */
typedef struct SentFd {
        uint64_t cookie;        /* 0: unused */
        char *guest;
        const char *image;
        const char *mode;
        const char *sender;
        uid_t uid;
        pid_t pid;
} SentFd;

/* A bounce comes back as soon as dbus-daemon reads the reply: this many replies sent in the
 * meantime is far more than the service can send before it reads its socket again. */
#define SENT_FDS_MAX 512

/* Fills @s with copies of the strings (in one allocation) and the rest as given; @s must be
 * unused (sent_fd_clear()). */
void sent_fd_set(SentFd *s, uint64_t cookie, const char *guest, const char *image,
                 const char *mode, const char *sender, uid_t uid, pid_t pid);

/* Frees the strings of @s and marks it unused. */
void sent_fd_clear(SentFd *s);

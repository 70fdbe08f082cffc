/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * open.h — the OpenImage pipeline behind its front-ends (bus-image-access.c for OpenImage on
 * the bus, channel.c for requests on a channel):
 *
 *     front-end: parse, validate, identify
 *     open_check()       bound to the guest, granted at least this mode, file made if create
 *     front-end: polkit  (the bus asks and parks; a channel takes only a cached yes)
 *     open_submit()      on the loop when nothing can make it wait (image_open_cached()),
 *                        else in a worker (a hung file system stalls only its requests)
 *     completion         after a worker: the grant again (a revoke that completed wins);
 *                        then pin or record the created file, one audit record, the
 *                        answer through the OpenSink
 *
 * The pipeline never sees how a request came or how its answer goes: each front-end hands
 * it an OpenSink.  No sd_bus_message below this line.
 */
#pragma once

#include <stdbool.h>
#include <systemd/sd-bus.h>

#include "image.h"
#include "manager.h"

/* Where the answer of one open goes, provided by its front-end.  The pipeline calls either
 * reply_error, or prepare_fd (when set) and then reply_fd, exactly once, and free at the
 * end in every case. */
typedef struct OpenSink {
        /* The bus connection the open is for: the sender, or the owner of the channel it came
         * on.  Borrowed from @userdata, valid until free. */
        const char *sender;
        bool via_channel;       /* audited as via=channel */
        /* Optional.  Readies an answer that carries @fd (borrowed).  Return: 0; negative errno
         * when it cannot (then the open is denied with it and reply_error follows). */
        int (*prepare_fd)(void *userdata, int fd);
        /* Sends the answer with @fd (borrowed: what goes out is the kernel's copy). */
        void (*reply_fd)(void *userdata, int fd);
        void (*reply_error)(void *userdata, const sd_bus_error *error);
        void (*free)(void *userdata);
        void *userdata;
} OpenSink;

/**
 * open_error: sets the named error of an open (or stat) of @path that failed.
 * @r: the negative errno it failed with.
 * Return: the negative errno sd_bus_error_setf() returns for @error.
 */
int open_error(sd_bus_error *error, int r, const char *guest, const char *path);

/* What open_check() found, for the rest of the open: looked up once.  Borrowed from the
 * registry: valid until the dispatch that called open_check() returns. */
typedef struct OpenTarget {
        Guest *guest;
        Grant *grant;           /* the path's own grant; or NULL and … */
        Grant *dir;             /* … the directory grant above it */
} OpenTarget;

/* The directory grant an open goes through (its path, borrowed), or NULL when the path has a
 * grant of its own: polkit gets it as the detail 'directory'. */
const char *open_directory(const OpenTarget *t);

/**
 * require_bound: may @c act as @guest's emulator?  An unknown guest and a guest the caller
 * is not bound to get the same answer: a caller learns nothing about guests not its own.
 * @event: the audit event of a denial ("open", "channel").
 * Return: 0 with *@ret_guest (borrowed); -ENOLINK with @error set, audited.
 */
int require_bound(Manager *m, const Caller *c, const char *event, const char *guest,
                  const char *path, const char *mode, Guest **ret_guest, sd_bus_error *error);

/**
 * open_check: the checks of an open that need neither polkit nor the file system, in this
 * order: the caller is bound to the guest, the guest has a grant of at least @mode for
 * @path, and the path is not a create grant's file that the service has not made yet.
 * Return: 0 go on, with *@ret; negative errno with @error set, audited.
 */
int open_check(Manager *m, const Caller *c, const char *guest, const char *path,
               IaMode mode, OpenTarget *ret, sd_bus_error *error);

/**
 * open_prefetch: the OpenImage of a connection's second image (a VM starting: one disk after
 * the other): asks polkit, in the background, about each of the guest's other file grants in
 * its mode (a create grant's made file: read-write), after the request's own question, so
 * that a VM with many disks does not start at one polkit round trip per disk.  Once per
 * connection; then a no-op (one flag).  A caller that opens one image asks about nothing
 * more.
 */
void open_prefetch(Manager *m, const Caller *c, const OpenTarget *t, const char *path);

/**
 * open_submit: carries out an open that passed open_check() and polkit, in the same
 * dispatch (@t must be current).  The pinned file of a grant, found from the kernel's caches
 * on a file system that cannot hang, is opened on the loop and answered before this returns;
 * every other open goes to a worker (a hung file system stalls only its own requests).
 * @c: the caller; c->peer must be set.
 * @sink: taken: the answer goes through it, or, on failure, it is freed here.
 * Return: 0; negative errno with @error set, audited (the front-end sends @error).
 */
int open_submit(Manager *m, const Caller *c, const OpenTarget *t, const char *guest,
                const char *path, IaMode mode, const ImageOpenFlags *flags,
                const OpenSink *sink, sd_bus_error *error);

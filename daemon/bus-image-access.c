/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bus-image-access.c — the handlers of org.example.ImageAccess: OpenImage (the bus front-end of
 * the open pipeline, open.h), OpenChannel, Version.  Each one runs in a fixed order:
 *     parse → validate → identify → authorize → act → audit → signal → reply.
 * Nothing with a side effect comes before authorize, because a handler whose polkit check is
 * pending runs a second time when the answer comes (authz.h).
 */
#include <errno.h>
#include <string.h>
#include <glib.h>

#include "audit.h"
#include "authz.h"
#include "build-config.h"
#include "bus-image-access.h"
#include "bus-util.h"
#include "channel.h"
#include "ia-common.h"
#include "image.h"
#include "log.h"
#include "macro.h"
#include "open.h"

/* ---- OpenImage ---------------------------------------------------------------------------- */

/* The bus front-end's OpenSink: the answer is the method return of @request. */
typedef struct BusOpenReply {
        Manager *m;
        sd_bus_message *request;        /* a reference */
        sd_bus_message *reply;          /* readied by bus_open_prepare_fd() */
        /* What to audit if the bus bounces the reply: the strings are @request's. */
        const char *guest, *image, *mode;
        uid_t uid;
        pid_t pid;
} BusOpenReply;

static void bus_open_free(void *userdata) {
        BusOpenReply *b = userdata;

        sd_bus_message_unref(b->request);
        sd_bus_message_unref(b->reply);
        g_free(b);
}

/* sd-bus duplicates the fd into the message, which fails at our fd limit (EMFILE). */
static int bus_open_prepare_fd(void *userdata, int fd) {
        BusOpenReply *b = userdata;
        int r;

        r = sd_bus_message_new_method_return(b->request, &b->reply);
        if (r < 0)
                return r;
        return sd_bus_message_append_basic(b->reply, 'h', &fd);
}

static void bus_open_reply_fd(void *userdata, int fd) {
        BusOpenReply *b = userdata;
        int r;

        SentFd *slot;
        uint64_t cookie;

        r = sd_bus_send(NULL, b->reply, &cookie);
        if (r < 0) {
                log_debug_errno(r, "Failed to send a file descriptor to %s, ignoring: %m",
                                sd_bus_message_get_sender(b->request));
                return;
        }

        /* "open allowed" is audited already: it means decided and sent.  Whether the bus
         * delivers it is known only if it does not: see on_bounce(). */
        slot = &b->m->sent_fds[b->m->sent_fds_next];
        b->m->sent_fds_next = (b->m->sent_fds_next + 1) % SENT_FDS_MAX;
        sent_fd_clear(slot);
        sent_fd_set(slot, cookie, b->guest, b->image, b->mode,
                    sd_bus_message_get_sender(b->request), b->uid, b->pid);
}

/*
 * dbus-daemon does not deliver a message with fds to a connection that did not negotiate fd
 * passing (a client library without it, a raw socket): it drops the message and sends the
 * sender an error, NotSupported, whose reply cookie is the dropped message's.  sd-bus hands
 * errors that answer none of our calls to filters, so this sees exactly those.  An open whose
 * reply bounced gets a second audit record, "open undelivered", with the bus's reason.
 */
static int on_bounce(sd_bus_message *msg, void *userdata, sd_bus_error *ret_error) {
        Manager *m = userdata;
        const sd_bus_error *e;
        uint64_t cookie;

        if (!sd_bus_message_is_method_error(msg, NULL) ||
            g_strcmp0(sd_bus_message_get_sender(msg), "org.freedesktop.DBus") != 0 ||
            sd_bus_message_get_reply_cookie(msg, &cookie) < 0)
                return 0;

        for (unsigned i = 0; i < SENT_FDS_MAX; i++) {
                SentFd *s = &m->sent_fds[i];
                g_autofree char *reason = NULL;

                if (s->cookie != cookie)
                        continue;
                e = sd_bus_message_get_error(msg);
                reason = g_strdup_printf("the bus did not deliver the file descriptor: %s: %s",
                                         e && e->name ? e->name : "?",
                                         e && e->message ? e->message : "");
                log_audit(&(AuditRecord) {
                        .event = "open",
                        .guest = s->guest,
                        .image = s->image,
                        .mode = s->mode,
                        .sender = s->sender,
                        .uid = s->uid,
                        .pid = s->pid,
                        .undelivered = true,
                        .reason = reason,
                });
                sent_fd_clear(s);
                return 0;
        }
        return 0;
}

static void bus_open_reply_error(void *userdata, const sd_bus_error *error) {
        BusOpenReply *b = userdata;

        reply_error(b->request, error);
}

static OpenSink bus_open_sink(Manager *m, sd_bus_message *request, const Caller *c,
                              const char *guest, const char *path, const char *mode) {
        BusOpenReply *b = g_new(BusOpenReply, 1);

        *b = (BusOpenReply) {
                .m = m,
                .request = sd_bus_message_ref(request),
                .guest = guest,
                .image = path,
                .mode = mode,
                .uid = c->euid,
                .pid = c->pid,
        };
        return (OpenSink) {
                .sender = sd_bus_message_get_sender(request),
                .prepare_fd = bus_open_prepare_fd,
                .reply_fd = bus_open_reply_fd,
                .reply_error = bus_open_reply_error,
                .free = bus_open_free,
                .userdata = b,
        };
}

static int method_open_image(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        const char *guest, *path, *mode_str;
        ImageOpenFlags flags = {};
        const OptionSpec options[] = {
                { "direct", 'b', &flags.direct },
                { "nonblock", 'b', &flags.nonblock },
        };
        Caller c;
        IaMode mode = _IA_MODE_INVALID;
        const char *dir;
        OpenTarget t;
        int r;

        /* One read_basic() per string: sd_bus_message_read() would parse "sss" first, and
         * this runs for every open. */
        r = sd_bus_message_read_basic(msg, 's', &guest);
        if (r > 0)
                r = sd_bus_message_read_basic(msg, 's', &path);
        if (r > 0)
                r = sd_bus_message_read_basic(msg, 's', &mode_str);
        if (r <= 0)
                return r < 0 ? r : -EBADMSG;      /* 0: fewer arguments (sd-bus checked) */
        r = parse_options(msg, options, G_N_ELEMENTS(options), error);
        if (r < 0)
                return r;

        r = validate_guest_name(guest, error);
        if (r >= 0)
                r = validate_path(path, error);
        if (r >= 0)
                r = validate_mode(mode_str, &mode, error);
        if (r < 0)
                return r;

        r = identify(m, msg, &c, error);
        if (r > 0)
                return r;
        if (r < 0)
                return deny("open", NULL, guest, path, mode_str, r, error);

        r = open_check(m, &c, guest, path, mode, &t, error);
        if (r < 0)
                return r;

        dir = open_directory(&t);
        r = authz_check(m, msg, &c, IA_ACTION_OPEN_IMAGE,
                        (const char *const[]) { "guest", guest, "image", path, "mode", mode_str,
                                                "guest-uuid", t.guest->uuid ?: "",
                                                dir ? "directory" : NULL, dir, NULL },
                        error);
        /* After the request's own question, so that polkitd answers that one first (and
         * not after a denial: the caller's Peer may be gone then, authz.h). */
        if (r >= 0)
                open_prefetch(m, &c, &t, path);
        if (r > 0)
                return r;
        if (r < 0)
                return deny("open", &c, guest, path, mode_str, r, error);

        OpenSink sink = bus_open_sink(m, msg, &c, guest, path, mode_str);
        r = open_submit(m, &c, &t, guest, path, mode, &flags, &sink, error);
        if (r < 0)
                return r;
        return 1;
}

/* ---- OpenChannel -------------------------------------------------------------------------- */

/* No polkit check: a channel gives nothing by itself.  Each open on it goes through every
 * check of OpenImage for this caller, and needs a polkit yes that OpenImage got (channel.h).
 * Asking for one needs a binding, so only an emulator can make the service hold sockets. */
static int method_open_channel(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        ia_autofd int fd = -1;
        const char *guest;
        Caller c;
        Guest *g;
        int r;

        r = sd_bus_message_read(msg, "s", &guest);
        if (r < 0)
                return r;
        r = parse_no_options(msg, error);
        if (r < 0)
                return r;
        r = validate_guest_name(guest, error);
        if (r < 0)
                return r;

        r = identify(m, msg, &c, error);
        if (r > 0)
                return r;
        if (r < 0)
                return deny("channel", NULL, guest, NULL, NULL, r, error);
        r = require_bound(m, &c, "channel", guest, NULL, NULL, &g, error);
        if (r < 0)
                return r;

        if (m->config.max_channels == 0) {
                /* Not a limit that may pass: libimageaccess stops asking. */
                sd_bus_error_set(error, SD_BUS_ERROR_NOT_SUPPORTED,
                                 "This service hands out no channels (MaxChannels=0): use OpenImage");
                return deny("channel", &c, guest, NULL, NULL, -EOPNOTSUPP, error);
        }
        r = channel_new(m, c.peer, &fd);
        if (r == -ENOBUFS)
                sd_bus_error_setf(error, IA_ERROR_LIMIT_EXCEEDED,
                                  "Too many channels: at most %d per connection and %u in all (MaxChannels)",
                                  CHANNELS_PER_PEER_MAX, m->config.max_channels);
        else if (r < 0)
                sd_bus_error_setf(error, IA_ERROR_IO, "Could not make a channel: %s", strerror(-r));
        if (r < 0)
                return deny("channel", &c, guest, NULL, NULL, r, error);

        audit("channel", &c, guest, NULL, NULL, true, NULL);
        return sd_bus_reply_method_return(msg, "h", fd);
}

/* ---- vtables ------------------------------------------------------------------------------ */

static int property_get_version(sd_bus *bus, const char *path, const char *interface,
                                const char *property, sd_bus_message *reply, void *userdata,
                                sd_bus_error *error) {
        return sd_bus_message_append(reply, "s", PACKAGE_VERSION);
}

static const sd_bus_vtable image_access_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_METHOD_WITH_ARGS("OpenImage",
                                SD_BUS_ARGS("s", guest, "s", path, "s", mode, "a{sv}", options),
                                SD_BUS_RESULT("h", fd),
                                method_open_image, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("OpenChannel",
                                SD_BUS_ARGS("s", guest, "a{sv}", options),
                                SD_BUS_RESULT("h", channel),
                                method_open_channel, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_PROPERTY("Version", "s", property_get_version, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_VTABLE_END,
};

int bus_image_access_register(Manager *m) {
        int r;

        r = sd_bus_add_filter(m->bus, /* slot= */ NULL, on_bounce, m);
        if (r < 0)
                return r;
        return sd_bus_add_object_vtable(m->bus, NULL, IA_OBJECT_PATH, IA_INTERFACE,
                                        image_access_vtable, m);
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bus-image-access.c — method handlers.  Each one runs in a fixed order:
 *     parse → validate → identify → authorize → act → audit → signal → reply.
 * Nothing with a side effect comes before authorize, because a handler whose polkit check is
 * pending runs a second time when the answer comes (authz.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>
#include <glib.h>

#include "authz.h"
#include "build-config.h"
#include "bus-image-access.h"
#include "channel.h"
#include "ia-common.h"
#include "identity.h"
#include "image.h"
#include "log.h"
#include "macro.h"
#include "workers.h"

/* ---- options ------------------------------------------------------------------------------ */

typedef struct OptionSpec {
        const char *key;
        char type;              /* 'b', 's' or 'u' */
        void *value;            /* bool*, const char** (borrowed from the message), uint32_t* */
        bool *present;          /* optional */
} OptionSpec;

static int parse_options(sd_bus_message *msg, const OptionSpec *specs, size_t n_specs,
                         sd_bus_error *error) {
        uint64_t seen = 0;
        int r;

        r = sd_bus_message_enter_container(msg, 'a', "{sv}");
        if (r < 0)
                return r;

        for (;;) {
                const char *key, *contents;
                const OptionSpec *spec = NULL;
                size_t i;
                char type;

                r = sd_bus_message_enter_container(msg, 'e', "sv");
                if (r < 0)
                        return r;
                if (r == 0)
                        break;
                r = sd_bus_message_read(msg, "s", &key);
                if (r < 0)
                        return r;

                for (i = 0; i < n_specs; i++)
                        if (g_str_equal(specs[i].key, key)) {
                                spec = &specs[i];
                                break;
                        }
                if (!spec) {
                        g_autoptr(GString) known = g_string_new(NULL);

                        for (size_t k = 0; k < n_specs; k++)
                                g_string_append_printf(known, "%s'%s'", k ? ", " : "", specs[k].key);
                        return sd_bus_error_setf(error, IA_ERROR_INVALID_OPTION,
                                                 "Unknown option '%.64s'%s%s%s", key,
                                                 n_specs ? " (known: " : "; this method takes none",
                                                 known->str, n_specs ? ")" : "");
                }
                if (seen & (UINT64_C(1) << i))
                        return sd_bus_error_setf(error, IA_ERROR_INVALID_OPTION,
                                                 "Option '%s' given twice", key);
                seen |= UINT64_C(1) << i;

                r = sd_bus_message_peek_type(msg, &type, &contents);
                if (r < 0)
                        return r;
                if (strlen(contents) != 1 || contents[0] != spec->type)
                        return sd_bus_error_setf(error, IA_ERROR_INVALID_OPTION,
                                                 "Option '%s' must be of type '%c', not '%.16s'",
                                                 key, spec->type, contents);
                r = sd_bus_message_enter_container(msg, 'v', contents);
                if (r < 0)
                        return r;
                if (spec->type == 'b') {
                        int b;

                        r = sd_bus_message_read_basic(msg, 'b', &b);
                        if (r >= 0)
                                *(bool *) spec->value = b;
                } else
                        r = sd_bus_message_read_basic(msg, spec->type, spec->value);
                if (r < 0)
                        return r;
                if (spec->present)
                        *spec->present = true;
                r = sd_bus_message_exit_container(msg);         /* v */
                if (r < 0)
                        return r;
                r = sd_bus_message_exit_container(msg);         /* e */
                if (r < 0)
                        return r;
        }

        return sd_bus_message_exit_container(msg);
}

static int parse_no_options(sd_bus_message *msg, sd_bus_error *error) {
        return parse_options(msg, NULL, 0, error);
}

/* ---- validation --------------------------------------------------------------------------- */

static int validate_guest_name(const char *name, sd_bus_error *error) {
        if (guest_name_is_valid(name))
                return 0;
        return sd_bus_error_setf(error, IA_ERROR_INVALID_NAME,
                                 "Invalid guest name '%.*s%s': use 1 to %d characters of A-Z a-z 0-9 _ . : + -, not starting with '.' or '-'",
                                 64, name, strlen(name) > 64 ? "…" : "", GUEST_NAME_MAX);
}

static int validate_path(const char *path, sd_bus_error *error) {
        const char *reason = NULL;
        int r;

        r = path_is_valid(path, &reason);
        if (r >= 0)
                return 0;
        return sd_bus_error_setf(error, IA_ERROR_INVALID_PATH, "Invalid image path '%.*s%s': %s",
                                 200, path, strlen(path) > 200 ? "…" : "",
                                 reason ?: (r == -ENAMETOOLONG ? "too long" : "not absolute and normalized"));
}

static int validate_mode(const char *s, IaMode *ret, sd_bus_error *error) {
        IaMode mode = ia_mode_from_string(s);

        if (mode < 0)
                return sd_bus_error_setf(error, IA_ERROR_INVALID_MODE,
                                         "Invalid mode '%.32s': use 'read-only', 'read-write' or 'create'", s);
        *ret = mode;
        return 0;
}

/* Return: 0 *@ret is the caller; 1 the request waits for the caller's credentials and is
 * dispatched again when they come (the handler returns 1 and does nothing else); negative
 * errno with @error set. */
static int identify(Manager *m, sd_bus_message *msg, Caller *ret, sd_bus_error *error) {
        int r = caller_from_message(m, msg, ret);

        if (r >= 0)
                return r;
        if (r == -ENOBUFS)
                return sd_bus_error_setf(error, IA_ERROR_LIMIT_EXCEEDED,
                                         "Too many requests of %s are waiting (at most %u per caller, %u in all)",
                                         sd_bus_message_get_sender(msg),
                                         m->config.max_pending_per_sender,
                                         m->config.max_pending_total);
        return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                                 "Could not establish the credentials of the caller; denied");
}

/* ---- audit -------------------------------------------------------------------------------- */

static void audit(const char *event, const Caller *c, const char *guest, const char *image,
                  const char *mode, bool allowed, const char *reason) {
        log_audit(&(AuditRecord) {
                .event = event,
                .guest = guest,
                .image = image,
                .mode = mode,
                .sender = c ? c->sender : NULL,
                .via = c && c->via_channel ? "channel" : NULL,
                .uid = c ? c->euid : (uid_t) -1,
                .pid = c ? c->pid : 0,
                .allowed = allowed,
                .reason = reason,
        });
}

/* Audits a denial with the error's text as the reason and returns the handler's result. */
static int deny(const char *event, const Caller *c, const char *guest, const char *image,
                const char *mode, int r, const sd_bus_error *error) {
        audit(event, c, guest, image, mode, false, error && error->message ? error->message : strerror(-r));
        return r;
}

/*
 * The identify and authorize steps of a handler, audited when they deny.
 * Return: 1 go on; 0 the request waits for the caller's credentials or for polkit (the
 *         handler returns 1 and does not reply); negative errno with @error set: denied.
 */
static int authorize(Manager *m, sd_bus_message *msg, const char *event, const char *action,
                     const char *const *details, const char *guest, const char *image,
                     const char *mode, Caller *ret_caller, sd_bus_error *error) {
        int r;

        r = identify(m, msg, ret_caller, error);
        if (r > 0)
                return 0;       /* waits for the credentials, as it would for polkit */
        if (r < 0)
                return deny(event, NULL, guest, image, mode, r, error);
        r = authz_check(m, msg, ret_caller, action, details, error);
        if (r < 0)
                return deny(event, ret_caller, guest, image, mode, r, error);
        return r;
}

/* Announces a change to guests or grants.  Cached polkit decisions are voided by the callers
 * that take access away (unregister, revoke, bind); polkit's answers do not depend on grants,
 * and the grant table is checked before the cache on every open, so a new grant keeps them. */
static void emit(Manager *m, const char *member, const char *guest) {
        int r;

        r = sd_bus_emit_signal(m->bus, IA_OBJECT_PATH, IA_MANAGER_INTERFACE, member, "s", guest);
        if (r < 0)
                log_warning_errno(r, "Failed to emit %s for guest '%s', ignoring: %m", member, guest);
}

/* ---- OpenImage ---------------------------------------------------------------------------- */

static int open_error(sd_bus_error *error, int r, const char *guest, const char *path) {
        switch (r) {
        case -ENOENT:
                return sd_bus_error_setf(error, IA_ERROR_NOT_FOUND, "Image '%s' does not exist", path);
        case -EEXIST:
                return sd_bus_error_setf(error, IA_ERROR_FILE_EXISTS,
                                         "'%s' exists and is not a file this service created for guest '%s'; it is not touched",
                                         path, guest);
        case -ELOOP:
                return sd_bus_error_setf(error, IA_ERROR_SYMLINK,
                                         "'%s' has a symbolic link in its path; links are never followed", path);
        case -EMEDIUMTYPE:
                return sd_bus_error_setf(error, IA_ERROR_WRONG_FILE_TYPE,
                                         "'%s' is not a regular file or a block device", path);
        case -ENOSPC:
        case -EDQUOT:
                return sd_bus_error_setf(error, IA_ERROR_NO_SPACE,
                                         "No space left to create '%s': %s", path, strerror(-r));
        case -ENAMETOOLONG:
        case -EINVAL:
                return sd_bus_error_setf(error, IA_ERROR_INVALID_PATH, "Invalid image path '%s': %s",
                                         path, strerror(-r));
        case -EROFS:
                /* Under the shipped unit, ProtectSystem=strict makes most of the tree read-only. */
                return sd_bus_error_setf(error, IA_ERROR_IO,
                                         "'%s' is on a read-only file system for the service; under systemd, add its directory to ReadWritePaths= of image-access.service",
                                         path);
        default:
                return sd_bus_error_setf(error, IA_ERROR_IO, "Could not open '%s': %s", path,
                                         strerror(-r));
        }
}

static void reply_error(sd_bus_message *request, const sd_bus_error *error) {
        int r = sd_bus_reply_method_error(request, error);

        if (r < 0)
                log_debug_errno(r, "Failed to send an error reply, ignoring: %m");
}

/* An open that came on a channel: where its answer goes (Job.context). */
typedef struct ChannelRequest {
        Channel *channel;       /* a reference */
        uint32_t serial;
} ChannelRequest;

static void channel_request_free(void *p) {
        ChannelRequest *cr = p;

        channel_unref(cr->channel);
        g_free(cr);
}

/* The bus connection an open is for: the sender, or the owner of the channel it came on. */
static const char *job_sender(const Job *j) {
        if (j->request)
                return sd_bus_message_get_sender(j->request);
        return channel_owner(((const ChannelRequest *) j->context)->channel);
}

static void open_reply_error(Job *j, const sd_bus_error *error) {
        const ChannelRequest *cr = j->context;

        if (j->request)
                reply_error(j->request, error);
        else
                channel_reply_error(cr->channel, cr->serial, error);
}

static void open_done(Job *j, void *userdata) {
        Manager *m = userdata;
        ia_auto_bus_error sd_bus_error error = SD_BUS_ERROR_NULL;
        const char *mode_str = ia_mode_to_string(j->mode);
        Peer *p = manager_get_peer(m, job_sender(j), false);
        Caller c = {
                .sender = job_sender(j),
                .euid = p ? p->euid : (uid_t) -1,
                .pid = p ? p->pid : 0,
                .peer = p,
                .via_channel = !j->request,
        };
        int r;

        if (p)
                manager_pending_dec(m, p);
        p = c.peer = NULL;      /* may be freed now */

        if (j->r < 0) {
                open_error(&error, j->r, j->guest, j->path);
                deny("open", &c, j->guest, j->path, mode_str, j->r, &error);
                open_reply_error(j, &error);
                return;
        }

        /* The grant may have been revoked, or the guest removed, while the file was opened:
         * a revoke that completed must win over an open that had not. */
        r = registry_check(m->registry, j->guest, j->path, j->mode);
        if (r < 0)
                sd_bus_error_setf(&error, IA_ERROR_NOT_GRANTED,
                                  "The grant of '%s' to guest '%s' was withdrawn while it was being opened",
                                  j->path, j->guest);
        else {
                Grant *grant = registry_get_grant(m->registry, j->guest, j->path);

                if (j->created) {
                        /* What we made is what the grant is for from now on (this pins it). */
                        r = registry_mark_created(m->registry, j->guest, j->path, j->st.st_dev,
                                                  j->st.st_ino);
                        if (r >= 0)
                                r = state_log_grant(m->state, j->guest, grant);
                        if (r < 0)
                                sd_bus_error_setf(&error, IA_ERROR_IO,
                                                  "Could not record that '%s' was created for guest '%s': %s",
                                                  j->path, j->guest, strerror(-r));
                } else if (!grant->pinned || grant->pinned_dev != (uint64_t) j->st.st_dev ||
                           grant->pinned_ino != (uint64_t) j->st.st_ino) {
                        /* Grants are for inodes, not names: whoever can rename in the directory
                         * could otherwise move another guest's image under this name. */
                        r = -EPERM;
                        sd_bus_error_setf(&error, IA_ERROR_NOT_GRANTED,
                                          grant->pinned ?
                                          "'%s' is not the file that was granted to guest '%s': it was replaced since (device or inode differ); the VM manager must grant it again" :
                                          "'%s' appeared after it was granted to guest '%s' and was not created by this service; refused",
                                          j->path, j->guest);
                }
        }
        if (r < 0) {
                if (j->created) {
                        /* We made it and nobody may keep it now.  Removing it touches the file
                         * system, so it goes to a worker like every other such operation. */
                        Job *rm = job_new(JOB_REMOVE_CREATED, j->path, j->guest, NULL);

                        rm->own_dev = j->st.st_dev;
                        rm->own_ino = j->st.st_ino;
                        (void) workers_submit(m->workers, rm);
                }
                j->fd = ia_safe_close(j->fd);
                deny("open", &c, j->guest, j->path, mode_str, r, &error);
                open_reply_error(j, &error);
                return;
        }

        if (!j->request) {
                const ChannelRequest *cr = j->context;

                /* The kernel passes a reference to the file; ours is closed with the job. */
                audit("open", &c, j->guest, j->path, mode_str, true, j->created ? "created" : NULL);
                channel_reply_fd(cr->channel, cr->serial, j->fd);
                return;
        }

        /* sd-bus duplicates the fd into the message; ours is closed with the job.  That
         * duplicate can fail (EMFILE at our fd limit): then the caller must hear so, not wait
         * for a reply that never comes. */
        g_autoptr(sd_bus_message) reply = NULL;
        r = sd_bus_message_new_method_return(j->request, &reply);
        if (r >= 0)
                r = sd_bus_message_append(reply, "h", j->fd);
        if (r < 0) {
                sd_bus_error_setf(&error, r == -EMFILE || r == -ENFILE ? IA_ERROR_LIMIT_EXCEEDED : IA_ERROR_IO,
                                  "Could not pass the file descriptor of '%s': %s", j->path, strerror(-r));
                deny("open", &c, j->guest, j->path, mode_str, r, &error);
                open_reply_error(j, &error);
                return;
        }
        audit("open", &c, j->guest, j->path, mode_str, true, j->created ? "created" : NULL);
        r = sd_bus_send(NULL, reply, NULL);
        if (r < 0)
                log_debug_errno(r, "Failed to send the fd of '%s' to %s, ignoring: %m", j->path, c.sender);
}

/* May @c act as @guest's emulator?  An unknown guest and a guest the caller is not bound to
 * get the same answer: a caller learns nothing about guests that are not its own.
 * Return: 0 with *@ret_guest; -ENOLINK with @error set, audited as @event. */
static int require_bound(Manager *m, const Caller *c, const char *event, const char *guest,
                         const char *path, const char *mode, Guest **ret_guest,
                         sd_bus_error *error) {
        Guest *g = registry_get_guest(m->registry, guest);

        if (!g || identity_check_bound(m, c, g) < 0) {
                sd_bus_error_setf(error, IA_ERROR_NOT_BOUND,
                                  "Caller %s (uid %u, pid %d) is not bound to a guest named '%s'",
                                  c->sender, (unsigned) c->euid, (int) c->pid, guest);
                return deny(event, c, guest, path, mode, -ENOLINK, error);
        }
        *ret_guest = g;
        return 0;
}

/*
 * The checks of an open that need neither polkit nor the file system, in this order: the
 * caller is bound to the guest, the guest has a grant of at least @mode for @path, and the
 * path is not a create grant's file that the service has not made yet.
 * Return: 0 go on, with *@ret_guest; negative errno with @error set, audited.
 */
static int open_check(Manager *m, const Caller *c, const char *guest, const char *path,
                      IaMode mode, Guest **ret_guest, sd_bus_error *error) {
        const char *mode_str = ia_mode_to_string(mode);
        Grant *grant;
        Guest *g;
        int r;

        r = require_bound(m, c, "open", guest, path, mode_str, &g, error);
        if (r < 0)
                return r;

        if (registry_check(m->registry, guest, path, mode) < 0) {
                grant = registry_get_grant(m->registry, guest, path);
                if (grant)
                        sd_bus_error_setf(error, IA_ERROR_NOT_GRANTED,
                                          "Guest '%s' may open '%s' only %s, not %s", guest, path,
                                          ia_mode_to_string(grant->mode), mode_str);
                else
                        sd_bus_error_setf(error, IA_ERROR_NOT_GRANTED,
                                          "Guest '%s' has no grant for '%s'", guest, path);
                return deny("open", c, guest, path, mode_str, -EPERM, error);
        }

        /* A create grant whose file the service has not made yet: any other open of the path
         * is refused whatever polkit would say (nothing there, or something that is not ours,
         * see open_done()), so neither polkit nor the file system is asked.  QEMU probes each
         * new overlay four times before it creates it. */
        grant = registry_get_grant(m->registry, guest, path);
        if (!grant->pinned && mode != IA_MODE_CREATE) {
                sd_bus_error_setf(error, IA_ERROR_NOT_FOUND,
                                  "'%s' does not exist yet: the service has not created it for guest '%s'",
                                  path, guest);
                return deny("open", c, guest, path, mode_str, -ENOENT, error);
        }

        *ret_guest = g;
        return 0;
}

/* Hands an authorized open to a worker; its answer goes to @msg, or to @cr's channel
 * (taken).  Return: 0; negative errno with @error set, audited. */
static int open_submit(Manager *m, const Caller *c, const char *guest, const char *path,
                       IaMode mode, const ImageOpenFlags *flags, sd_bus_message *msg,
                       ChannelRequest *cr, sd_bus_error *error) {
        const char *mode_str = ia_mode_to_string(mode);
        Grant *grant;
        Job *j;
        int r;

        if (g_strcmp0(c->peer->opened_guest, guest) != 0) {
                g_free(c->peer->opened_guest);
                c->peer->opened_guest = g_strdup(guest);
        }

        r = manager_pending_inc(m, c->peer);
        if (r < 0) {
                if (cr)
                        channel_request_free(cr);
                sd_bus_error_setf(error, IA_ERROR_LIMIT_EXCEEDED,
                                  "Too many opens of %s are in progress (at most %u)", c->sender,
                                  m->config.max_pending_per_sender);
                return deny("open", c, guest, path, mode_str, r, error);
        }

        j = job_new(mode == IA_MODE_CREATE ? JOB_CREATE : JOB_OPEN, path, guest, msg);
        j->mode = mode;
        j->flags = *flags;
        if (cr) {
                j->context = cr;
                j->context_free = channel_request_free;
        }
        grant = registry_get_grant(m->registry, guest, path);
        if (mode == IA_MODE_CREATE && grant && grant->created) {
                j->have_own = true;
                j->own_dev = grant->created_dev;
                j->own_ino = grant->created_ino;
        }
        j->done = open_done;
        j->userdata = m;
        r = workers_submit(m->workers, j);
        if (r < 0) {
                manager_pending_dec(m, c->peer);
                sd_bus_error_setf(error, IA_ERROR_IO, "Could not queue the open of '%s': %s",
                                  path, strerror(-r));
                return deny("open", c, guest, path, mode_str, r, error);
        }
        return 0;
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
        Guest *g;
        int r;

        r = sd_bus_message_read(msg, "sss", &guest, &path, &mode_str);
        if (r < 0)
                return r;
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
                return 1;
        if (r < 0)
                return deny("open", NULL, guest, path, mode_str, r, error);

        r = open_check(m, &c, guest, path, mode, &g, error);
        if (r < 0)
                return r;

        r = authz_check(m, msg, &c, IA_ACTION_OPEN_IMAGE,
                        (const char *const[]) { "guest", guest, "image", path, "mode", mode_str,
                                                "guest-uuid", g->uuid ?: "", NULL },
                        error);
        if (r == 0)
                return 1;
        if (r < 0)
                return deny("open", &c, guest, path, mode_str, r, error);

        r = open_submit(m, &c, guest, path, mode, &flags, msg, NULL, error);
        if (r < 0)
                return r;
        return 1;
}

void bus_open_image_channel(Manager *m, Channel *ch, const IaChannelParsedRequest *req) {
        static const IaMode modes[] = {
                [IA_CHANNEL_MODE_READ_ONLY] = IA_MODE_READ_ONLY,
                [IA_CHANNEL_MODE_READ_WRITE] = IA_MODE_READ_WRITE,
                [IA_CHANNEL_MODE_CREATE] = IA_MODE_CREATE,
        };
        ia_auto_bus_error sd_bus_error error = SD_BUS_ERROR_NULL;
        const char *guest = req->guest, *path = req->path;
        IaMode mode = modes[req->mode];         /* ia_channel_parse_request() checked it */
        const char *mode_str = ia_mode_to_string(mode);
        ImageOpenFlags flags = {
                .direct = req->options & IA_CHANNEL_OPTION_DIRECT,
                .nonblock = req->options & IA_CHANNEL_OPTION_NONBLOCK,
        };
        ChannelRequest *cr;
        Caller c;
        Guest *g;
        Peer *p;
        int r;

        /* The bus guarantees UTF-8 in strings; a channel does not. */
        if (!g_utf8_validate(guest, -1, NULL)) {
                sd_bus_error_set(&error, IA_ERROR_INVALID_NAME, "Invalid guest name: not UTF-8");
                goto fail;
        }
        if (!g_utf8_validate(path, -1, NULL)) {
                sd_bus_error_set(&error, IA_ERROR_INVALID_PATH, "Invalid image path: not UTF-8");
                goto fail;
        }
        r = validate_guest_name(guest, &error);
        if (r >= 0)
                r = validate_path(path, &error);
        if (r < 0)
                goto fail;

        /* The credentials are those the bus daemon gave for the owner when it asked for the
         * channel (OpenChannel needs them, and they cannot change). */
        p = manager_get_peer(m, channel_owner(ch), false);
        if (!p || p->gone || !p->have_creds) {
                sd_bus_error_setf(&error, SD_BUS_ERROR_ACCESS_DENIED,
                                  "The connection %s this channel speaks for has left the bus",
                                  channel_owner(ch));
                deny("open", &(Caller) { .sender = channel_owner(ch), .euid = (uid_t) -1,
                                         .via_channel = true },
                     guest, path, mode_str, -ECONNRESET, &error);
                goto fail;
        }
        c = (Caller) { .sender = p->name, .euid = p->euid, .pid = p->pid, .peer = p,
                       .via_channel = true };

        r = open_check(m, &c, guest, path, mode, &g, &error);
        if (r < 0)
                goto fail;

        /* Never a polkit check here: a request on a channel is answered at once, so that
         * one slow check never holds up the emulator's other opens behind it.  Without a
         * cached yes the client asks again with OpenImage, which parks for polkit and
         * carries the interactive-authorization flag. */
        if (!authz_check_cached(m, &c, IA_ACTION_OPEN_IMAGE,
                                (const char *const[]) { "guest", guest, "image", path,
                                                        "mode", mode_str,
                                                        "guest-uuid", g->uuid ?: "", NULL })) {
                log_debug("No cached polkit answer on '%s' %s for %s: asking it to use the bus",
                          path, mode_str, c.sender);
                channel_reply_use_bus(ch, req->serial, "polkit has not been asked yet");
                return;
        }

        log_debug("Opening '%s' %s for %s, asked on its channel", path, mode_str, c.sender);
        cr = g_new(ChannelRequest, 1);
        *cr = (ChannelRequest) { .channel = channel_ref(ch), .serial = req->serial };
        r = open_submit(m, &c, guest, path, mode, &flags, NULL, cr, &error);
        if (r >= 0)
                return;
fail:
        channel_reply_error(ch, req->serial, &error);
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
                return 1;
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

/* ---- RegisterGuest, UnregisterGuest ------------------------------------------------------- */

static int method_register_guest(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        const char *name, *uuid = NULL, *description = NULL;
        uint32_t uid = 0;
        bool has_uid = false;
        const OptionSpec options[] = {
                { "uuid", 's', &uuid },
                { "description", 's', &description },
                { "uid", 'u', &uid, &has_uid },
        };
        Guest *g;
        Caller c;
        int r;

        r = sd_bus_message_read(msg, "s", &name);
        if (r < 0)
                return r;
        r = parse_options(msg, options, G_N_ELEMENTS(options), error);
        if (r < 0)
                return r;

        r = validate_guest_name(name, error);
        if (r < 0)
                return r;
        if (uuid && !guest_uuid_is_valid(uuid))
                return sd_bus_error_setf(error, IA_ERROR_INVALID_OPTION,
                                         "Option 'uuid' is not a UUID: '%.64s'", uuid);
        if (description && !guest_description_is_valid(description))
                return sd_bus_error_setf(error, IA_ERROR_INVALID_OPTION,
                                         "Option 'description' must be UTF-8 text of at most %d bytes without control characters",
                                         GUEST_DESCRIPTION_MAX);
        if (has_uid && uid == (uint32_t) -1)
                return sd_bus_error_setf(error, IA_ERROR_INVALID_OPTION,
                                         "Option 'uid' must be a valid uid, not %u", uid);

        /* Rules may want to see which uid a guest is being bound to. */
        g_autofree char *uid_str = has_uid ? g_strdup_printf("%u", uid) : NULL;
        r = authorize(m, msg, "register", IA_ACTION_REGISTER_GUEST,
                      (const char *const[]) { "guest", name, uid_str ? "guest-uid" : NULL, uid_str, NULL },
                      name, NULL, NULL, &c, error);
        if (r <= 0)
                return r == 0 ? 1 : r;

        r = registry_add_guest(m->registry, name, uuid, description, has_uid, uid, &g);
        if (r == -EEXIST)
                sd_bus_error_setf(error, IA_ERROR_GUEST_EXISTS, "Guest '%s' is already registered", name);
        else if (r == -ENOBUFS)
                sd_bus_error_setf(error, IA_ERROR_LIMIT_EXCEEDED,
                                  "Cannot register guest '%s': the limit of %u guests is reached",
                                  name, m->config.limits.max_guests);
        if (r < 0)
                return deny("register", &c, name, NULL, NULL, r, error);

        r = state_log_add_guest(m->state, g);
        if (r < 0) {
                (void) registry_remove_guest(m->registry, name);
                sd_bus_error_setf(error, IA_ERROR_IO, "Could not save guest '%s': %s", name, strerror(-r));
                return deny("register", &c, name, NULL, NULL, r, error);
        }

        audit("register", &c, name, NULL, NULL, true, NULL);
        emit(m, "GuestRegistered", name);
        return sd_bus_reply_method_return(msg, NULL);
}

static int unknown_guest(sd_bus_error *error, const char *name) {
        return sd_bus_error_setf(error, IA_ERROR_UNKNOWN_GUEST, "No guest named '%s' is registered", name);
}

static int method_unregister_guest(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        const char *name;
        Caller c;
        int r;

        r = sd_bus_message_read(msg, "s", &name);
        if (r < 0)
                return r;
        r = validate_guest_name(name, error);
        if (r < 0)
                return r;

        r = authorize(m, msg, "unregister", IA_ACTION_UNREGISTER_GUEST,
                      (const char *const[]) { "guest", name, NULL },
                      name, NULL, NULL, &c, error);
        if (r <= 0)
                return r == 0 ? 1 : r;

        if (!registry_get_guest(m->registry, name))
                return deny("unregister", &c, name, NULL, NULL, unknown_guest(error, name), error);

        /* Persist first: removal cannot be undone in memory if the journal write fails. */
        r = state_log_remove_guest(m->state, name);
        if (r < 0) {
                sd_bus_error_setf(error, IA_ERROR_IO, "Could not save the removal of guest '%s': %s",
                                  name, strerror(-r));
                return deny("unregister", &c, name, NULL, NULL, r, error);
        }
        (void) registry_remove_guest(m->registry, name);
        manager_invalidate_decisions(m);

        audit("unregister", &c, name, NULL, NULL, true, NULL);
        emit(m, "GuestUnregistered", name);
        return sd_bus_reply_method_return(msg, NULL);
}

/* ---- BindProcess -------------------------------------------------------------------------- */

static int method_bind_process(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        const char *name;
        Binding *b;
        Guest *g;
        Caller c;
        int pidfd, r;

        r = sd_bus_message_read(msg, "sh", &name, &pidfd);
        if (r < 0)
                return r;
        r = parse_no_options(msg, error);
        if (r < 0)
                return r;
        r = validate_guest_name(name, error);
        if (r < 0)
                return r;

        r = authorize(m, msg, "bind", IA_ACTION_BIND_PROCESS,
                      (const char *const[]) { "guest", name, NULL },
                      name, NULL, NULL, &c, error);
        if (r <= 0)
                return r == 0 ? 1 : r;

        g = registry_get_guest(m->registry, name);
        if (!g)
                return deny("bind", &c, name, NULL, NULL, unknown_guest(error, name), error);

        /* @pidfd is borrowed from the message; the binding keeps a duplicate. */
        r = identity_bind_process(m, g, pidfd, &b);
        if (r == -EBADF || r == -EINVAL)
                sd_bus_error_setf(error, IA_ERROR_INVALID_PROCESS,
                                  "The file descriptor passed is not a pidfd (see pidfd_open(2))");
        else if (r == -ESRCH)
                sd_bus_error_setf(error, IA_ERROR_INVALID_PROCESS,
                                  "The process of the pidfd has exited or is not visible to the service");
        else if (r == -ENOBUFS)
                sd_bus_error_setf(error, IA_ERROR_LIMIT_EXCEEDED,
                                  "Guest '%s' already has %u bound processes", name,
                                  m->config.limits.max_bindings_per_guest);
        else if (r < 0)
                sd_bus_error_setf(error, IA_ERROR_IO, "Could not bind the process: %s", strerror(-r));
        if (r < 0)
                return deny("bind", &c, name, NULL, NULL, r, error);

        manager_invalidate_decisions(m);
        g_autofree char *reason = g_strdup_printf("process %d, uid %u", (int) b->pid, (unsigned) b->euid);
        audit("bind", &c, name, NULL, NULL, true, reason);
        return sd_bus_reply_method_return(msg, NULL);
}

/* ---- GrantImage, RevokeImage -------------------------------------------------------------- */

typedef struct CallContext {
        Manager *m;
        uid_t euid;
        pid_t pid;
        IaMode mode;
} CallContext;

/* A request that continues in a worker holds its place in its peer's pending count.  The
 * context is the job's (freed with it, also when the service stops with the job queued);
 * the done callback gets it as its userdata. */
static void call_context_attach(Job *j, Manager *m, const Caller *c, IaMode mode) {
        CallContext *ctx = g_new(CallContext, 1);

        *ctx = (CallContext) { .m = m, .euid = c->euid, .pid = c->pid, .mode = mode };
        j->userdata = j->context = ctx;
        j->context_free = g_free;
}

static Caller call_context_finish(CallContext *ctx, sd_bus_message *request) {
        Caller c = {
                .sender = sd_bus_message_get_sender(request),
                .euid = ctx->euid,
                .pid = ctx->pid,
        };
        Peer *p = manager_get_peer(ctx->m, c.sender, false);

        if (p)
                manager_pending_dec(ctx->m, p);
        return c;
}

/* The emulators that opened images of @g lately will most likely open the new grant soon,
 * in a hurry (a snapshot's prepare phase runs on QEMU's main loop): ask polkit now. */
static void prefetch_open_decisions(Manager *m, Guest *g, const char *path, const char *mode) {
        const char *const details[] = { "guest", g->name, "image", path, "mode", mode,
                                        "guest-uuid", g->uuid ?: "", NULL };
        GHashTableIter it;
        unsigned n = 0;
        Peer *p;

        g_hash_table_iter_init(&it, m->peers);
        while (n < 8 && g_hash_table_iter_next(&it, NULL, (gpointer *) &p)) {
                if (p->gone || g_strcmp0(p->opened_guest, g->name) != 0)
                        continue;
                authz_prefetch(m, p, IA_ACTION_OPEN_IMAGE, details);
                n++;
        }
}

/* GrantImage, second half: the grant is pinned to the inode found at the path now. */
static void grant_stat_done(Job *j, void *userdata) {
        CallContext *ctx = userdata;
        Manager *m = ctx->m;
        IaMode mode = ctx->mode;
        const char *mode_str = ia_mode_to_string(mode);
        ia_auto_bus_error sd_bus_error error = SD_BUS_ERROR_NULL;
        Caller c = call_context_finish(ctx, j->request);
        bool existed = false, exists = j->r >= 0;
        Grant old = {}, *grant;
        int r;

        if (!registry_get_guest(m->registry, j->guest)) {
                deny("grant", &c, j->guest, j->path, mode_str, unknown_guest(&error, j->guest), &error);
                return reply_error(j->request, &error);
        }
        if (j->r == -ENOENT && mode != IA_MODE_CREATE) {
                sd_bus_error_setf(&error, IA_ERROR_NOT_FOUND,
                                  "Cannot grant '%s' %s: it does not exist (grant mode 'create' for a file the guest is to make)",
                                  j->path, mode_str);
                deny("grant", &c, j->guest, j->path, mode_str, j->r, &error);
                return reply_error(j->request, &error);
        }
        if (j->r < 0 && j->r != -ENOENT) {
                open_error(&error, j->r, j->guest, j->path);
                deny("grant", &c, j->guest, j->path, mode_str, j->r, &error);
                return reply_error(j->request, &error);
        }

        grant = registry_get_grant(m->registry, j->guest, j->path);
        if (grant) {
                existed = true;
                old = *grant;
        }

        r = registry_grant(m->registry, j->guest, j->path, mode);
        if (r == -ENOBUFS)
                sd_bus_error_setf(&error, IA_ERROR_LIMIT_EXCEEDED, "Guest '%s' already has %u grants",
                                  j->guest, m->config.limits.max_grants_per_guest);
        else if (r < 0)
                sd_bus_error_setf(&error, IA_ERROR_IO, "Could not grant '%s': %s", j->path, strerror(-r));
        if (r < 0) {
                deny("grant", &c, j->guest, j->path, mode_str, r, &error);
                return reply_error(j->request, &error);
        }

        grant = registry_get_grant(m->registry, j->guest, j->path);
        grant->pinned = exists;
        grant->pinned_dev = exists ? (uint64_t) j->st.st_dev : 0;
        grant->pinned_ino = exists ? (uint64_t) j->st.st_ino : 0;

        if (!existed || old.mode != grant->mode || old.pinned != grant->pinned ||
            old.pinned_dev != grant->pinned_dev || old.pinned_ino != grant->pinned_ino) {
                r = state_log_grant(m->state, j->guest, grant);
                if (r < 0) {
                        if (existed) {
                                (void) registry_grant(m->registry, j->guest, j->path, old.mode);
                                grant->pinned = old.pinned;
                                grant->pinned_dev = old.pinned_dev;
                                grant->pinned_ino = old.pinned_ino;
                        } else
                                (void) registry_revoke(m->registry, j->guest, j->path, NULL);
                        sd_bus_error_setf(&error, IA_ERROR_IO, "Could not save the grant of '%s': %s",
                                          j->path, strerror(-r));
                        deny("grant", &c, j->guest, j->path, mode_str, r, &error);
                        return reply_error(j->request, &error);
                }
                emit(m, "GrantsChanged", j->guest);
        }

        audit("grant", &c, j->guest, j->path, mode_str, true, exists ? NULL : "not there yet");
        prefetch_open_decisions(m, registry_get_guest(m->registry, j->guest), j->path, mode_str);
        r = sd_bus_reply_method_return(j->request, NULL);
        if (r < 0)
                log_debug_errno(r, "Failed to reply to %s, ignoring: %m", c.sender);
}

static int method_grant_image(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        const char *name, *path, *mode_str;
        IaMode mode = _IA_MODE_INVALID;
        Caller c;
        Job *j;
        int r;

        r = sd_bus_message_read(msg, "sss", &name, &path, &mode_str);
        if (r < 0)
                return r;
        r = parse_no_options(msg, error);
        if (r < 0)
                return r;
        r = validate_guest_name(name, error);
        if (r >= 0)
                r = validate_path(path, error);
        if (r >= 0)
                r = validate_mode(mode_str, &mode, error);
        if (r < 0)
                return r;

        r = authorize(m, msg, "grant", IA_ACTION_GRANT_IMAGE,
                      (const char *const[]) { "guest", name, "image", path, "mode", mode_str, NULL },
                      name, path, mode_str, &c, error);
        if (r <= 0)
                return r == 0 ? 1 : r;

        if (!registry_get_guest(m->registry, name))
                return deny("grant", &c, name, path, mode_str, unknown_guest(error, name), error);

        /* Which inode is the grant for?  Looking costs a file system access, which may hang:
         * a worker does it, and grant_stat_done() finishes the call. */
        r = manager_pending_inc(m, c.peer);
        if (r < 0) {
                sd_bus_error_setf(error, IA_ERROR_LIMIT_EXCEEDED, "Too many requests of %s are in progress", c.sender);
                return deny("grant", &c, name, path, mode_str, r, error);
        }
        j = job_new(JOB_STAT, path, name, msg);
        j->done = grant_stat_done;
        call_context_attach(j, m, &c, mode);
        r = workers_submit(m->workers, j);
        if (r < 0) {
                manager_pending_dec(m, c.peer);
                return r;
        }
        return 1;
}

static int revoke_now(Manager *m, const Caller *c, const char *name, const char *path,
                      const char *what, sd_bus_error *error) {
        int r;

        r = state_log_revoke(m->state, name, path);
        if (r < 0) {
                sd_bus_error_setf(error, IA_ERROR_IO, "Could not save the revocation of '%s': %s",
                                  path, strerror(-r));
                return deny("revoke", c, name, path, NULL, r, error);
        }
        (void) registry_revoke(m->registry, name, path, NULL);
        manager_invalidate_decisions(m);
        audit("revoke", c, name, path, NULL, true, what);
        emit(m, "GrantsChanged", name);
        return 0;
}

static void revoke_remove_done(Job *j, void *userdata) {
        CallContext *ctx = userdata;
        Manager *m = ctx->m;
        ia_auto_bus_error sd_bus_error error = SD_BUS_ERROR_NULL;
        Caller c = call_context_finish(ctx, j->request);
        int r = j->r;

        if (r == -EPERM || (r < 0 && r != -ENOENT)) {
                if (r == -EPERM)
                        sd_bus_error_setf(&error, IA_ERROR_NOT_CREATED,
                                          "'%s' is no longer the file this service created for guest '%s' (device or inode differ); it was left alone and the grant kept",
                                          j->path, j->guest);
                else
                        sd_bus_error_setf(&error, IA_ERROR_IO, "Could not remove '%s': %s", j->path,
                                          strerror(-r));
                deny("revoke", &c, j->guest, j->path, NULL, r, &error);
                reply_error(j->request, &error);
                return;
        }

        /* Unless someone revoked it meanwhile, withdraw the grant now that the file is gone. */
        if (registry_get_grant(m->registry, j->guest, j->path) &&
            revoke_now(m, &c, j->guest, j->path,
                       r == -ENOENT ? "created file was already gone" : "created file removed",
                       &error) < 0) {
                reply_error(j->request, &error);
                return;
        }
        r = sd_bus_reply_method_return(j->request, NULL);
        if (r < 0)
                log_debug_errno(r, "Failed to reply to %s, ignoring: %m", c.sender);
}

static int method_revoke_image(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        const char *name, *path;
        bool remove_created = false;
        const OptionSpec options[] = {
                { "remove-created", 'b', &remove_created },
        };
        Grant *grant;
        Caller c;
        Job *j;
        int r;

        r = sd_bus_message_read(msg, "ss", &name, &path);
        if (r < 0)
                return r;
        r = parse_options(msg, options, G_N_ELEMENTS(options), error);
        if (r < 0)
                return r;
        r = validate_guest_name(name, error);
        if (r >= 0)
                r = validate_path(path, error);
        if (r < 0)
                return r;

        r = authorize(m, msg, "revoke", IA_ACTION_REVOKE_IMAGE,
                      (const char *const[]) { "guest", name, "image", path, NULL },
                      name, path, NULL, &c, error);
        if (r <= 0)
                return r == 0 ? 1 : r;

        if (!registry_get_guest(m->registry, name))
                return deny("revoke", &c, name, path, NULL, unknown_guest(error, name), error);
        grant = registry_get_grant(m->registry, name, path);
        if (!grant) {
                sd_bus_error_setf(error, IA_ERROR_NOT_GRANTED, "Guest '%s' has no grant for '%s'", name, path);
                return deny("revoke", &c, name, path, NULL, -EPERM, error);
        }

        if (!remove_created) {
                r = revoke_now(m, &c, name, path, NULL, error);
                if (r < 0)
                        return r;
                return sd_bus_reply_method_return(msg, NULL);
        }

        if (!grant->created) {
                sd_bus_error_setf(error, IA_ERROR_NOT_CREATED,
                                  "'%s' was not created by this service for guest '%s'; refusing to remove it (the grant is kept)",
                                  path, name);
                return deny("revoke", &c, name, path, NULL, -EPERM, error);
        }

        r = manager_pending_inc(m, c.peer);
        if (r < 0) {
                sd_bus_error_setf(error, IA_ERROR_LIMIT_EXCEEDED, "Too many requests of %s are in progress", c.sender);
                return deny("revoke", &c, name, path, NULL, r, error);
        }
        j = job_new(JOB_REMOVE_CREATED, path, name, msg);
        j->own_dev = grant->created_dev;
        j->own_ino = grant->created_ino;
        j->done = revoke_remove_done;
        call_context_attach(j, m, &c, _IA_MODE_INVALID);
        r = workers_submit(m->workers, j);
        if (r < 0) {
                manager_pending_dec(m, c.peer);
                return r;
        }
        return 1;
}

/* ---- ListGuests, ListGrants --------------------------------------------------------------- */

/* GLib 2.74 has no hash_values(). */
static GPtrArray *hash_values(GHashTable *h) {
        GPtrArray *a = g_ptr_array_sized_new(g_hash_table_size(h));
        GHashTableIter it;
        gpointer v;

        g_hash_table_iter_init(&it, h);
        while (g_hash_table_iter_next(&it, NULL, &v))
                g_ptr_array_add(a, v);
        return a;
}

static int compare_guests(gconstpointer a, gconstpointer b) {
        return strcmp((*(Guest *const *) a)->name, (*(Guest *const *) b)->name);
}

static int compare_grants(gconstpointer a, gconstpointer b) {
        return strcmp((*(Grant *const *) a)->path, (*(Grant *const *) b)->path);
}

/* "processes" is documented as the bound processes still running.  A binding outlives its
 * process until the next BindProcess prunes it, so an open pidfd proves nothing: a pidfd
 * polls readable once its process has exited (as in identity.c). */
static unsigned count_live_bindings(const Guest *g) {
        unsigned n = 0;

        for (guint i = 0; i < g->bindings->len; i++) {
                const Binding *b = g_ptr_array_index(g->bindings, i);
                struct pollfd pfd = { .fd = b->pidfd, .events = POLLIN };

                if (b->pidfd < 0 || poll(&pfd, 1, 0) < 0)
                        continue;
                n += !(pfd.revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL));
        }
        return n;
}

static int method_list_guests(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        g_autoptr(sd_bus_message) reply = NULL;
        g_autoptr(GPtrArray) guests = NULL;
        Caller c;
        int r;

        r = identify(m, msg, &c, error);
        if (r > 0)
                return 1;
        if (r < 0)
                return r;
        r = authz_check(m, msg, &c, IA_ACTION_LIST, (const char *const[]) { NULL }, error);
        if (r <= 0)
                return r == 0 ? 1 : r;

        guests = hash_values(m->registry->guests);
        g_ptr_array_sort(guests, compare_guests);

        r = sd_bus_message_new_method_return(msg, &reply);
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(reply, 'a', "(sa{sv})");
        if (r < 0)
                return r;
        for (guint i = 0; i < guests->len; i++) {
                const Guest *g = g_ptr_array_index(guests, i);

                r = sd_bus_message_open_container(reply, 'r', "sa{sv}");
                if (r >= 0)
                        r = sd_bus_message_append(reply, "s", g->name);
                if (r >= 0)
                        r = sd_bus_message_open_container(reply, 'a', "{sv}");
                if (r >= 0)
                        r = sd_bus_message_append(reply, "{sv}{sv}{sv}{sv}",
                                                  "uuid", "s", g->uuid ?: "",
                                                  "description", "s", g->description ?: "",
                                                  "grants", "u", (uint32_t) g_hash_table_size(g->grants),
                                                  "processes", "u", (uint32_t) count_live_bindings(g));
                if (r >= 0 && g->has_uid)
                        r = sd_bus_message_append(reply, "{sv}", "uid", "u", (uint32_t) g->uid);
                if (r >= 0)
                        r = sd_bus_message_close_container(reply);
                if (r >= 0)
                        r = sd_bus_message_close_container(reply);
                if (r < 0)
                        return r;
        }
        r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

static int method_list_grants(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        g_autoptr(sd_bus_message) reply = NULL;
        g_autoptr(GPtrArray) grants = NULL;
        const char *name;
        Guest *g;
        Caller c;
        int r;

        r = sd_bus_message_read(msg, "s", &name);
        if (r < 0)
                return r;
        r = validate_guest_name(name, error);
        if (r < 0)
                return r;
        r = identify(m, msg, &c, error);
        if (r > 0)
                return 1;
        if (r < 0)
                return r;
        r = authz_check(m, msg, &c, IA_ACTION_LIST, (const char *const[]) { "guest", name, NULL }, error);
        if (r <= 0)
                return r == 0 ? 1 : r;

        g = registry_get_guest(m->registry, name);
        if (!g)
                return unknown_guest(error, name);

        grants = hash_values(g->grants);
        g_ptr_array_sort(grants, compare_grants);

        r = sd_bus_message_new_method_return(msg, &reply);
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(reply, 'a', "(ssa{sv})");
        if (r < 0)
                return r;
        for (guint i = 0; i < grants->len; i++) {
                const Grant *gr = g_ptr_array_index(grants, i);

                r = sd_bus_message_open_container(reply, 'r', "ssa{sv}");
                if (r >= 0)
                        r = sd_bus_message_append(reply, "ss", gr->path, ia_mode_to_string(gr->mode));
                if (r >= 0)
                        r = sd_bus_message_open_container(reply, 'a', "{sv}");
                if (r >= 0)
                        r = sd_bus_message_append(reply, "{sv}{sv}", "created", "b", (int) gr->created,
                                                  "pinned", "b", (int) gr->pinned);
                /* Which file the grant is for, so that a manager (or "image-accessctl
                 * explain") can tell when the file at the path was replaced since. */
                if (r >= 0 && gr->pinned)
                        r = sd_bus_message_append(reply, "{sv}{sv}", "device", "t", gr->pinned_dev,
                                                  "inode", "t", gr->pinned_ino);
                if (r >= 0)
                        r = sd_bus_message_close_container(reply);
                if (r >= 0)
                        r = sd_bus_message_close_container(reply);
                if (r < 0)
                        return r;
        }
        r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
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

static const sd_bus_vtable manager_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_METHOD_WITH_ARGS("RegisterGuest",
                                SD_BUS_ARGS("s", name, "a{sv}", options),
                                SD_BUS_NO_RESULT,
                                method_register_guest, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("UnregisterGuest",
                                SD_BUS_ARGS("s", name),
                                SD_BUS_NO_RESULT,
                                method_unregister_guest, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("BindProcess",
                                SD_BUS_ARGS("s", guest, "h", pidfd, "a{sv}", options),
                                SD_BUS_NO_RESULT,
                                method_bind_process, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("GrantImage",
                                SD_BUS_ARGS("s", guest, "s", path, "s", mode, "a{sv}", options),
                                SD_BUS_NO_RESULT,
                                method_grant_image, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("RevokeImage",
                                SD_BUS_ARGS("s", guest, "s", path, "a{sv}", options),
                                SD_BUS_NO_RESULT,
                                method_revoke_image, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("ListGuests",
                                SD_BUS_NO_ARGS,
                                SD_BUS_RESULT("a(sa{sv})", guests),
                                method_list_guests, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("ListGrants",
                                SD_BUS_ARGS("s", guest),
                                SD_BUS_RESULT("a(ssa{sv})", grants),
                                method_list_grants, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_SIGNAL_WITH_ARGS("GuestRegistered", SD_BUS_ARGS("s", name), 0),
        SD_BUS_SIGNAL_WITH_ARGS("GuestUnregistered", SD_BUS_ARGS("s", name), 0),
        SD_BUS_SIGNAL_WITH_ARGS("GrantsChanged", SD_BUS_ARGS("s", guest), 0),
        SD_BUS_VTABLE_END,
};

int bus_image_access_register(Manager *m) {
        int r;

        r = sd_bus_add_object_vtable(m->bus, NULL, IA_OBJECT_PATH, IA_INTERFACE,
                                     image_access_vtable, m);
        if (r < 0)
                return r;
        return sd_bus_add_object_vtable(m->bus, NULL, IA_OBJECT_PATH, IA_MANAGER_INTERFACE,
                                        manager_vtable, m);
}

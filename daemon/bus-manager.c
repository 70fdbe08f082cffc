/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bus-manager.c — the handlers of org.example.ImageAccess.Manager: guests, bindings, grants.
 * Each one runs in a fixed order:
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

#include "audit.h"
#include "authz.h"
#include "bus-manager.h"
#include "bus-util.h"
#include "escape.h"
#include "ia-common.h"
#include "identity.h"
#include "image.h"
#include "log.h"
#include "macro.h"
#include "open.h"
#include "workers.h"

/* ---- RegisterGuest, UnregisterGuest ------------------------------------------------------- */

static int method_register_guest(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        const char *name, *uuid = NULL, *description = NULL;
        uint32_t uid = 0;
        bool has_uid = false, share_uid = false;
        const OptionSpec options[] = {
                { "uuid", 's', &uuid },
                { "description", 's', &description },
                { "uid", 'u', &uid, &has_uid },
                { "share-uid", 'b', &share_uid },
        };
        Guest *g, *other;
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
        if (uuid && !guest_uuid_is_valid(uuid)) {
                g_autofree char *shown = escape_string(uuid, 64);

                return sd_bus_error_setf(error, IA_ERROR_INVALID_OPTION,
                                         "Option 'uuid' is not a UUID: '%s'", shown);
        }
        if (description && !guest_description_is_valid(description))
                return sd_bus_error_setf(error, IA_ERROR_INVALID_OPTION,
                                         "Option 'description' must be UTF-8 text of at most %d bytes without control, line separator or bidi characters",
                                         GUEST_DESCRIPTION_MAX);
        if (has_uid && uid == (uint32_t) -1)
                return sd_bus_error_setf(error, IA_ERROR_INVALID_OPTION,
                                         "Option 'uid' must be a valid uid, not %u", uid);

        /* Rules may want to see which uid a guest is being bound to. */
        g_autofree char *uid_str = has_uid ? g_strdup_printf("%u", uid) : NULL;
        r = authorize(m, msg, "register", IA_ACTION_REGISTER_GUEST,
                      (const char *const[]) { "guest", name, uid_str ? "guest-uid" : NULL, uid_str, NULL },
                      name, NULL, NULL, &c, error);
        if (r != 0)
                return r;

        /* Every process of a bound uid is that guest's emulator: a uid bound to two guests
         * lets each open the other's images.  Only on request (after authorize: the answer
         * names another guest). */
        other = has_uid && !share_uid ? registry_find_guest_by_uid(m->registry, uid, name) : NULL;
        if (other) {
                sd_bus_error_setf(error, IA_ERROR_UID_IN_USE,
                                  "Cannot bind guest '%s' to uid %u: it is bound to guest '%s' (option 'share-uid' shares it)",
                                  name, (unsigned) uid, other->name);
                return deny("register", &c, name, NULL, NULL, -EADDRINUSE, error);
        }

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
        if (r != 0)
                return r;

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
        authz_invalidate_decisions(m);

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
        if (r != 0)
                return r;

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

        authz_invalidate_decisions(m);
        g_autofree char *reason = g_strdup_printf("process %d, uid %u", (int) b->pid, (unsigned) b->euid);
        audit("bind", &c, name, NULL, NULL, true, reason);
        return sd_bus_reply_method_return(msg, NULL);
}

/* ---- GrantImage, RevokeImage -------------------------------------------------------------- */

typedef struct CallContext {
        Manager *m;
        sd_bus_message *request;        /* a reference: the call the job answers */
        uid_t euid;
        pid_t pid;
        IaMode mode;
} CallContext;

static void call_context_free(void *p) {
        CallContext *ctx = p;

        sd_bus_message_unref(ctx->request);
        g_free(ctx);
}

/* A request that continues in a worker holds its place in its peer's pending count.  The
 * context is the job's (freed with it, also when the service stops with the job queued);
 * the done callback gets it as its userdata. */
static void call_context_attach(Job *j, Manager *m, sd_bus_message *request, const Caller *c,
                                IaMode mode) {
        CallContext *ctx = g_new(CallContext, 1);

        *ctx = (CallContext) { .m = m, .request = sd_bus_message_ref(request), .euid = c->euid,
                               .pid = c->pid, .mode = mode };
        j->userdata = j->context = ctx;
        j->context_free = call_context_free;
}

static Caller call_context_finish(CallContext *ctx) {
        Caller c = {
                .sender = sd_bus_message_get_sender(ctx->request),
                .euid = ctx->euid,
                .pid = ctx->pid,
        };
        Peer *p = peer_get(ctx->m, c.sender);

        if (p)
                peer_pending_dec(ctx->m, p);
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

/*
 * What makes a grant risky, as one line for the log and the audit record, or NULL.  GrantImage
 * warns and does not refuse (docs/security.md says why): a file with other hard links can be
 * reached and changed under another name, and granted under that name to another guest; a
 * file owned by a user other than root, the caller and the guest's uid can be rewritten by
 * that user; and whoever can write a directory on the path can replace the file between the
 * manager's decision and the grant, or later (the pin then refuses opens, but the guest
 * stops working).
 */
static char *grant_risks(const Job *j, const Caller *c, const Guest *g) {
        g_autoptr(GString) risks = g_string_new(NULL);

        if (j->r >= 0 && S_ISREG(j->st.st_mode) && j->st.st_nlink > 1)
                g_string_append_printf(risks, "; it has %ju hard links", (uintmax_t) j->st.st_nlink);
        if (j->r >= 0 && j->st.st_uid != 0 && j->st.st_uid != c->euid &&
            !(g->has_uid && j->st.st_uid == g->uid))
                g_string_append_printf(risks, "; it is owned by uid %u", (unsigned) j->st.st_uid);
        if (j->writable_dir) {
                const struct stat *d = &j->writable_dir_st;
                g_autofree char *shown = escape_string(j->writable_dir, 200);

                if (d->st_mode & S_IWOTH)
                        g_string_append_printf(risks, "; '%s' is writable by everyone", shown);
                else if (d->st_uid != 0 && (d->st_mode & S_IWUSR))
                        g_string_append_printf(risks, "; '%s' is writable by uid %u", shown,
                                               (unsigned) d->st_uid);
                else
                        g_string_append_printf(risks, "; '%s' is writable by gid %u", shown,
                                               (unsigned) d->st_gid);
        }
        if (risks->len == 0)
                return NULL;
        g_string_erase(risks, 0, 2);
        return g_string_free(g_steal_pointer(&risks), false);
}

/* GrantImage, second half: the grant is pinned to the inode found at the path now. */
/* Two guests' directory grants never nest: a file beneath one would be the other's too.
 * Return: 0; -EBUSY with @error set, audited. */
static int directory_overlap(Manager *m, const Caller *c, const char *guest, const char *path,
                             const char *mode_str, sd_bus_error *error) {
        const char *other_path = NULL;
        Guest *other = registry_find_directory_overlap(m->registry, path, guest, &other_path);

        if (!other)
                return 0;
        sd_bus_error_setf(error, IA_ERROR_DIRECTORY_IN_USE,
                          "Cannot grant directory '%s' to guest '%s': guest '%s' has a directory grant for '%s'",
                          path, guest, other->name, other_path);
        return deny("grant", c, guest, path, mode_str, -EBUSY, error);
}

static void grant_stat_done(Job *j, void *userdata) {
        CallContext *ctx = userdata;
        Manager *m = ctx->m;
        IaMode mode = ctx->mode;
        const char *mode_str = ia_mode_to_string(mode);
        g_auto(sd_bus_error) error = SD_BUS_ERROR_NULL;
        Caller c = call_context_finish(ctx);
        bool exists = j->r >= 0;
        GrantUndo undo;
        Grant *grant;
        int r;

        if (!registry_get_guest(m->registry, j->guest)) {
                deny("grant", &c, j->guest, j->path, mode_str, unknown_guest(&error, j->guest), &error);
                return reply_error(ctx->request, &error);
        }
        if (j->directory && j->r == -EPERM) {
                sd_bus_error_setf(&error, IA_ERROR_INVALID_PATH,
                                  "Cannot grant directory '%s': it must be owned by root and writable by nobody else",
                                  j->path);
                deny("grant", &c, j->guest, j->path, mode_str, j->r, &error);
                return reply_error(ctx->request, &error);
        }
        if (j->directory && j->r == -ENOTDIR) {
                sd_bus_error_setf(&error, IA_ERROR_WRONG_FILE_TYPE,
                                  "Cannot grant directory '%s': it is not a directory", j->path);
                deny("grant", &c, j->guest, j->path, mode_str, j->r, &error);
                return reply_error(ctx->request, &error);
        }
        if (j->r == -ENOENT && (mode != IA_MODE_CREATE || j->directory)) {
                sd_bus_error_setf(&error, IA_ERROR_NOT_FOUND,
                                  "Cannot grant '%s' %s: it does not exist (grant mode 'create' for a file the guest is to make)",
                                  j->path, mode_str);
                deny("grant", &c, j->guest, j->path, mode_str, j->r, &error);
                return reply_error(ctx->request, &error);
        }
        if (j->r < 0 && j->r != -ENOENT) {
                open_error(&error, j->r, j->guest, j->path);
                deny("grant", &c, j->guest, j->path, mode_str, j->r, &error);
                return reply_error(ctx->request, &error);
        }

        /* Checked again: another guest's directory grant may have come meanwhile. */
        if (j->directory && directory_overlap(m, &c, j->guest, j->path, mode_str, &error) < 0)
                return reply_error(ctx->request, &error);

        r = registry_grant_pinned(m->registry, j->guest, j->path, mode, exists ? &j->id : NULL,
                                  &undo, &grant);
        if (r >= 0 && grant->directory != j->directory) {
                /* a file grant becomes a directory grant or back: a change too */
                grant->directory = j->directory;
                r = 1;
        }
        if (r == -ENOBUFS)
                sd_bus_error_setf(&error, IA_ERROR_LIMIT_EXCEEDED, "Guest '%s' already has %u grants",
                                  j->guest, m->config.limits.max_grants_per_guest);
        else if (r < 0)
                sd_bus_error_setf(&error, IA_ERROR_IO, "Could not grant '%s': %s", j->path, strerror(-r));
        if (r < 0) {
                deny("grant", &c, j->guest, j->path, mode_str, r, &error);
                return reply_error(ctx->request, &error);
        }

        if (r > 0) {
                r = state_log_grant(m->state, j->guest, grant);
                if (r < 0) {
                        registry_undo_grant(m->registry, &undo);
                        sd_bus_error_setf(&error, IA_ERROR_IO, "Could not save the grant of '%s': %s",
                                          j->path, strerror(-r));
                        deny("grant", &c, j->guest, j->path, mode_str, r, &error);
                        return reply_error(ctx->request, &error);
                }
                emit(m, "GrantsChanged", j->guest);
        }

        const char *base = j->directory ? "directory" : exists ? NULL : "not there yet";
        g_autofree char *risks = grant_risks(j, &c, registry_get_guest(m->registry, j->guest));
        g_autofree char *reason = NULL;

        if (risks) {
                log_warning("Granted '%s' to guest '%s' %s, but it is risky: %s", j->path, j->guest,
                            mode_str, risks);
                reason = g_strconcat(base ?: "", base ? "; " : "", "risky: ", risks, NULL);
        }
        audit("grant", &c, j->guest, j->path, mode_str, true, reason ?: base);
        if (!j->directory)
                prefetch_open_decisions(m, registry_get_guest(m->registry, j->guest), j->path,
                                        mode_str);
        r = sd_bus_reply_method_return(ctx->request, NULL);
        if (r < 0)
                log_debug_errno(r, "Failed to reply to %s, ignoring: %m", c.sender);
}

static int method_grant_image(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        const char *name, *path, *mode_str;
        IaMode mode = _IA_MODE_INVALID;
        bool directory = false;
        const OptionSpec options[] = {
                { "directory", 'b', &directory },
        };
        Caller c;
        Job *j;
        int r;

        r = sd_bus_message_read(msg, "sss", &name, &path, &mode_str);
        if (r < 0)
                return r;
        r = parse_options(msg, options, G_N_ELEMENTS(options), error);
        if (r < 0)
                return r;
        r = validate_guest_name(name, error);
        if (r >= 0)
                r = validate_path(path, error);
        if (r >= 0)
                r = validate_mode(mode_str, &mode, error);
        if (r < 0)
                return r;

        /* A directory grant names the directory both as the image and as itself, so that a
         * rule written for file grants sees the path, and one for directories can tell. */
        r = authorize(m, msg, "grant", IA_ACTION_GRANT_IMAGE,
                      (const char *const[]) { "guest", name, "image", path, "mode", mode_str,
                                              directory ? "directory" : NULL, path, NULL },
                      name, path, mode_str, &c, error);
        if (r != 0)
                return r;

        if (!registry_get_guest(m->registry, name))
                return deny("grant", &c, name, path, mode_str, unknown_guest(error, name), error);
        if (directory) {
                r = directory_overlap(m, &c, name, path, mode_str, error);
                if (r < 0)
                        return r;
        }

        /* Which inode is the grant for?  Looking costs a file system access, which may hang:
         * a worker does it, and grant_stat_done() finishes the call. */
        r = peer_pending_inc(m, c.peer);
        if (r < 0) {
                sd_bus_error_setf(error, IA_ERROR_LIMIT_EXCEEDED, "Too many requests of %s are in progress", c.sender);
                return deny("grant", &c, name, path, mode_str, r, error);
        }
        j = job_new(JOB_STAT, path, name);
        j->directory = directory;
        j->done = grant_stat_done;
        call_context_attach(j, m, msg, &c, mode);
        r = workers_submit(m->workers, j);
        if (r < 0) {
                peer_pending_dec(m, c.peer);
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
        authz_invalidate_decisions(m);
        audit("revoke", c, name, path, NULL, true, what);
        emit(m, "GrantsChanged", name);
        return 0;
}

static void revoke_remove_done(Job *j, void *userdata) {
        CallContext *ctx = userdata;
        Manager *m = ctx->m;
        g_auto(sd_bus_error) error = SD_BUS_ERROR_NULL;
        Caller c = call_context_finish(ctx);
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
                reply_error(ctx->request, &error);
                return;
        }

        /* Unless someone revoked it meanwhile, withdraw the grant now that the file is gone. */
        if (registry_get_grant(m->registry, j->guest, j->path) &&
            revoke_now(m, &c, j->guest, j->path,
                       r == -ENOENT ? "created file was already gone" : "created file removed",
                       &error) < 0) {
                reply_error(ctx->request, &error);
                return;
        }
        r = sd_bus_reply_method_return(ctx->request, NULL);
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
        if (r != 0)
                return r;

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

        /* A create grant whose file the service never made (the emulator did not get that
         * far, e.g. an overlay of a failed snapshot): nothing to remove, and the cleanup is
         * one call whatever the emulator reached, so the grant goes. */
        if (!grant->created && !grant->pinned) {
                r = revoke_now(m, &c, name, path, "nothing was created", error);
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

        r = peer_pending_inc(m, c.peer);
        if (r < 0) {
                sd_bus_error_setf(error, IA_ERROR_LIMIT_EXCEEDED, "Too many requests of %s are in progress", c.sender);
                return deny("revoke", &c, name, path, NULL, r, error);
        }
        j = job_new(JOB_REMOVE_CREATED, path, name);
        j->own = grant->created_id;
        j->done = revoke_remove_done;
        call_context_attach(j, m, msg, &c, _IA_MODE_INVALID);
        r = workers_submit(m->workers, j);
        if (r < 0) {
                peer_pending_dec(m, c.peer);
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
        if (r != 0)
                return r;
        r = authz_check(m, msg, &c, IA_ACTION_LIST, (const char *const[]) { NULL }, error);
        if (r != 0)
                return r;

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

/* Subscribe: the change signals, unicast on IA_NOTIFY_INTERFACE, for callers that may list
 * guests (the same polkit action as ListGuests, with no detail). */
static int method_subscribe(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        Caller c;
        int r;

        r = identify(m, msg, &c, error);
        if (r != 0)
                return r;
        r = authz_check(m, msg, &c, IA_ACTION_LIST, (const char *const[]) { NULL }, error);
        if (r != 0)
                return r;
        c.peer->subscribed = true;
        log_debug("%s subscribed to changes", c.sender);
        return sd_bus_reply_method_return(msg, NULL);
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
        if (r != 0)
                return r;
        r = authz_check(m, msg, &c, IA_ACTION_LIST, (const char *const[]) { "guest", name, NULL }, error);
        if (r != 0)
                return r;

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
                if (r >= 0 && gr->directory)
                        r = sd_bus_message_append(reply, "{sv}", "directory", "b", 1);
                /* Which file the grant is for, so that a manager (or "image-accessctl
                 * explain") can tell when the file at the path was replaced since. */
                if (r >= 0 && gr->pinned)
                        r = sd_bus_message_append(reply, "{sv}{sv}", "device", "t", gr->pinned_id.dev,
                                                  "inode", "t", gr->pinned_id.ino);
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

/* ---- vtable ------------------------------------------------------------------------------- */

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
        SD_BUS_METHOD_WITH_ARGS("Subscribe",
                                SD_BUS_NO_ARGS,
                                SD_BUS_NO_RESULT,
                                method_subscribe, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_SIGNAL_WITH_ARGS("GuestRegistered", SD_BUS_ARGS("s", name), 0),
        SD_BUS_SIGNAL_WITH_ARGS("GuestUnregistered", SD_BUS_ARGS("s", name), 0),
        SD_BUS_SIGNAL_WITH_ARGS("GrantsChanged", SD_BUS_ARGS("s", guest), 0),
        SD_BUS_VTABLE_END,
};

static const sd_bus_vtable notify_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_SIGNAL_WITH_ARGS("GuestRegistered", SD_BUS_ARGS("s", name), 0),
        SD_BUS_SIGNAL_WITH_ARGS("GuestUnregistered", SD_BUS_ARGS("s", name), 0),
        SD_BUS_SIGNAL_WITH_ARGS("GrantsChanged", SD_BUS_ARGS("s", guest), 0),
        SD_BUS_VTABLE_END,
};

static void grants_changed(Manager *m, const char *guest) {
        emit(m, "GrantsChanged", guest);
}

int bus_manager_register(Manager *m) {
        int r;

        m->grants_changed = grants_changed;

        r = sd_bus_add_object_vtable(m->bus, NULL, IA_OBJECT_PATH, IA_MANAGER_INTERFACE,
                                     manager_vtable, m);
        if (r < 0)
                return r;
        return sd_bus_add_object_vtable(m->bus, NULL, IA_OBJECT_PATH, IA_NOTIFY_INTERFACE,
                                        notify_vtable, m);
}

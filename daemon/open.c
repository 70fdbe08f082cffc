/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * open.c — the OpenImage pipeline behind both front-ends (the bus, the channel): the checks
 * that need neither polkit nor the file system, the hand-over to a worker, and the completion
 * (the revoke race, pins, created files, the audit record, the answer).
 */
#include <assert.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <glib.h>

#include "audit.h"
#include "authz.h"
#include "ia-common.h"
#include "identity.h"
#include "log.h"
#include "macro.h"
#include "open.h"
#include "workers.h"

int open_error(sd_bus_error *error, int r, const char *guest, const char *path) {
        switch (r) {
        case -ENOENT:
                return sd_bus_error_setf(error, IA_ERROR_NOT_FOUND, "Image '%s' does not exist", path);
        case -EEXIST:
                return sd_bus_error_setf(error, IA_ERROR_FILE_EXISTS,
                                         "'%s' exists and is not a file this service created for guest '%s'; it is not touched",
                                         path, guest);
        case -EXDEV:
                /* image_open_pinned(): another file than the one granted is at the path. */
                return sd_bus_error_setf(error, IA_ERROR_NOT_GRANTED,
                                         "'%s' is not the file that was granted to guest '%s': it was replaced since (device, inode, generation or birth time differ); the VM manager must grant it again",
                                         path, guest);
        case -EBUSY:
                return sd_bus_error_setf(error, IA_ERROR_DEVICE_BUSY,
                                         "'%s' is a block device that is mounted or in exclusive use elsewhere; it is opened read-write only exclusively",
                                         path);
        case -EMLINK:
                /* image_open_beneath() */
                return sd_bus_error_setf(error, IA_ERROR_NOT_GRANTED,
                                         "'%s' has other names (hard links): a directory grant opens only files with one name",
                                         path);
        case -ESTALE:
                return sd_bus_error_setf(error, IA_ERROR_NOT_GRANTED,
                                         "'%s', or the directory granted above it, was replaced since it was granted; the VM manager must grant it again",
                                         path);
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

/* An open in a worker: the answer's way back.  Job.context, freed with the job. */
typedef struct OpenJob {
        OpenSink sink;
} OpenJob;

static void open_job_free(void *p) {
        OpenJob *oj = p;

        if (oj->sink.free)
                oj->sink.free(oj->sink.userdata);
        g_free(oj);
}

/*
 * A grant loaded from a state file of format 1 knows only (dev, ino) of its file.  The first
 * open that finds that file there records its full identity (and that of the created file,
 * if it is the same), so that from then on a file made in its place with the same inode
 * number is refused.  This trusts the file at the path once, as format 1 did every time.
 * Not saving it only means it is done again after a restart.
 */
static void upgrade_pin(Manager *m, const Job *j, Grant *grant) {
        int r;

        grant_upgrade_ids(grant, &j->id);
        r = state_log_grant(m->state, j->guest, grant);
        if (r < 0)
                log_warning_errno(r, "Failed to save the identity of '%s' for guest '%s', ignoring: %m",
                                  j->path, j->guest);
}

/* The completion checks of an open through a directory grant (Job.dir).  Return: 0, or
 * negative errno with @error set. */
static int open_done_beneath(Manager *m, Job *j, sd_bus_error *error) {
        Guest *g = registry_get_guest(m->registry, j->guest);
        Grant *dir = g ? registry_find_directory_grant(g, j->path) : NULL;
        Guest *owner;
        Grant *grant;
        int r;

        /* registry_check() passed, but maybe through a new grant for another directory. */
        if (!dir || g_strcmp0(dir->path, j->dir) != 0 || !dir->pinned ||
            !file_id_matches(&dir->pinned_id, &j->dir_id)) {
                sd_bus_error_setf(error, IA_ERROR_NOT_GRANTED,
                                  "The grant of directory '%s' to guest '%s' changed while '%s' was being opened",
                                  j->dir, j->guest, j->path);
                return -EPERM;
        }

        if (j->created) {
                /* A file of its own from now on: RevokeImage --remove-created and ListGrants
                 * know it, and its grant pins it. */
                r = registry_guest_grant(m->registry, g, j->path, IA_MODE_CREATE, &grant);
                if (r >= 0)
                        r = registry_mark_created(m->registry, j->guest, j->path, &j->id);
                if (r >= 0)
                        r = state_log_grant(m->state, j->guest, grant);
                if (r < 0) {
                        (void) registry_revoke(m->registry, j->guest, j->path, NULL);
                        sd_bus_error_setf(error, r == -ENOBUFS ? IA_ERROR_LIMIT_EXCEEDED : IA_ERROR_IO,
                                          "Could not record that '%s' was created for guest '%s': %s",
                                          j->path, j->guest, strerror(-r));
                        return r;
                }
                if (m->grants_changed)
                        m->grants_changed(m, j->guest);
                return 0;
        }

        /* A file granted to, or made for, another guest is that guest's, wherever it is. */
        owner = registry_find_file_owner(m->registry, &j->id, j->guest);
        if (owner) {
                sd_bus_error_setf(error, IA_ERROR_NOT_GRANTED,
                                  "'%s' beneath directory '%s' is a file of guest '%s'; refused",
                                  j->path, j->dir, owner->name);
                return -EPERM;
        }
        return 0;
}

/*
 * The end of every open, in a thread or on the loop: the revoke race, pins, created files,
 * the audit record and the answer through @sink.  @j: the open's result (@j->fd stays the
 * job's).  @grant: the grant the open went through when it ran on the loop in the same
 * dispatch as its checks, so that nothing can have changed since; NULL when it ran in a
 * thread, and is looked up again.
 */
static void open_complete(Manager *m, Job *j, const Caller *c, Grant *grant,
                          const OpenSink *sink) {
        g_auto(sd_bus_error) error = SD_BUS_ERROR_NULL;
        const char *mode_str = ia_mode_to_string(j->mode);
        int r = 0;

        if (j->r < 0) {
                open_error(&error, j->r, j->guest, j->path);
                deny("open", c, j->guest, j->path, mode_str, j->r, &error);
                sink->reply_error(sink->userdata, &error);
                return;
        }

        if (!grant) {
                /* The grant may have been revoked, or the guest removed, while the file was
                 * opened: a revoke that completed must win over an open that had not. */
                r = registry_check(m->registry, j->guest, j->path, j->mode);
                if (r < 0)
                        sd_bus_error_setf(&error, IA_ERROR_NOT_GRANTED,
                                          "The grant of '%s' to guest '%s' was withdrawn while it was being opened",
                                          j->path, j->guest);
                else if (j->dir)
                        r = open_done_beneath(m, j, &error);
                else if (!(grant = registry_get_grant(m->registry, j->guest, j->path))) {
                        /* Revoked, and a directory grant above it came meanwhile: the open
                         * did not go through that grant's rules. */
                        r = -EPERM;
                        sd_bus_error_setf(&error, IA_ERROR_NOT_GRANTED,
                                          "The grant of '%s' to guest '%s' changed while it was being opened",
                                          j->path, j->guest);
                }
        }
        if (grant) {
                if (j->created) {
                        /* What we made is what the grant is for from now on (this pins it). */
                        r = registry_mark_created(m->registry, j->guest, j->path, &j->id);
                        if (r >= 0)
                                r = state_log_grant(m->state, j->guest, grant);
                        if (r < 0)
                                sd_bus_error_setf(&error, IA_ERROR_IO,
                                                  "Could not record that '%s' was created for guest '%s': %s",
                                                  j->path, j->guest, strerror(-r));
                } else if (!grant->pinned || !file_id_matches(&grant->pinned_id, &j->id)) {
                        /* Grants are for inodes, not names: whoever can rename in the directory
                         * could otherwise move another guest's image under this name. */
                        r = -EPERM;
                        sd_bus_error_setf(&error, IA_ERROR_NOT_GRANTED,
                                          grant->pinned ?
                                          "'%s' is not the file that was granted to guest '%s': it was replaced since (device, inode, generation or birth time differ); the VM manager must grant it again" :
                                          "'%s' appeared after it was granted to guest '%s' and was not created by this service; refused",
                                          j->path, j->guest);
                } else if (grant->pinned_id.kind == 0)
                        upgrade_pin(m, j, grant);
        }
        if (r < 0) {
                if (j->created) {
                        /* We made it and nobody may keep it now.  Removing it touches the file
                         * system, so it goes to a worker like every other such operation. */
                        Job *rm = job_new(JOB_REMOVE_CREATED, j->path, j->guest);

                        rm->own = j->id;
                        (void) workers_submit(m->workers, rm);
                }
                j->fd = ia_safe_close(j->fd);
                deny("open", c, j->guest, j->path, mode_str, r, &error);
                sink->reply_error(sink->userdata, &error);
                return;
        }

        /* The front-end readies an answer with the fd before the open is audited as allowed:
         * readying can fail (a bus message takes a duplicate, which fails at our fd limit),
         * and then the caller must hear so, not wait for an answer that never comes.  Ours
         * is closed with the job. */
        if (sink->prepare_fd) {
                r = sink->prepare_fd(sink->userdata, j->fd);
                if (r < 0) {
                        sd_bus_error_setf(&error, r == -EMFILE || r == -ENFILE ? IA_ERROR_LIMIT_EXCEEDED : IA_ERROR_IO,
                                          "Could not pass the file descriptor of '%s': %s", j->path, strerror(-r));
                        deny("open", c, j->guest, j->path, mode_str, r, &error);
                        sink->reply_error(sink->userdata, &error);
                        return;
                }
        }
        audit("open", c, j->guest, j->path, mode_str, true, j->created ? "created" : NULL);
        sink->reply_fd(sink->userdata, j->fd);
}

/* The completion of an open in a thread. */
static void open_done(Job *j, void *userdata) {
        Manager *m = userdata;
        const OpenSink *sink = &((OpenJob *) j->context)->sink;
        Peer *p = peer_get(m, sink->sender);
        Caller c = {
                .sender = sink->sender,
                .euid = p ? p->euid : (uid_t) -1,
                .pid = p ? p->pid : 0,
                .peer = p,
                .via_channel = sink->via_channel,
        };

        if (p)
                peer_pending_dec(m, p);
        c.peer = NULL;          /* may be freed now */

        open_complete(m, j, &c, /* grant= */ NULL, sink);
}

int require_bound(Manager *m, const Caller *c, const char *event, const char *guest,
                  const char *path, const char *mode, Guest **ret_guest, sd_bus_error *error) {
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

int open_check(Manager *m, const Caller *c, const char *guest, const char *path,
               IaMode mode, OpenTarget *ret, sd_bus_error *error) {
        const char *mode_str = ia_mode_to_string(mode);
        Grant *grant, *dir = NULL;
        Guest *g;
        int r;

        r = require_bound(m, c, "open", guest, path, mode_str, &g, error);
        if (r < 0)
                return r;

        /* One lookup of the path's own grant; the directory grants above it only when it
         * has none (registry_check()'s rule: a granted directory is not a file to open). */
        grant = g_hash_table_lookup(g->grants, path);
        if (!grant)
                dir = registry_find_directory_grant(g, path);
        if ((grant && grant->directory) || !(grant ?: dir) ||
            !ia_mode_covers((grant ?: dir)->mode, mode)) {
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
         * see open_complete()), so neither polkit nor the file system is asked.  QEMU probes
         * each new overlay four times before it creates it. */
        if (grant && !grant->pinned && mode != IA_MODE_CREATE) {
                sd_bus_error_setf(error, IA_ERROR_NOT_FOUND,
                                  "'%s' does not exist yet: the service has not created it for guest '%s'",
                                  path, guest);
                return deny("open", c, guest, path, mode_str, -ENOENT, error);
        }

        *ret = (OpenTarget) { .guest = g, .grant = grant, .dir = dir };
        return 0;
}

/* How many of a guest's grants open_prefetch() asks about at most: authz_prefetch() keeps
 * itself within half of polkit's window anyway. */
#define PREFETCH_GRANTS_MAX 64

void open_prefetch(Manager *m, const Caller *c, const OpenTarget *t, const char *path) {
        /* The grants to ask about, nearest first (see below): kept sorted, at most this many. */
        struct {
                uint64_t distance;
                const Grant *grant;
        } picks[PREFETCH_GRANTS_MAX];
        uint64_t after = t->grant ? t->grant->serial : 0;
        GHashTableIter it;
        Grant *grant;
        unsigned n = 0;

        if (!c->peer || c->peer->guest_prefetched)
                return;
        /* Not for a caller that opens one image (image-accessctl open, a probe): asking about
         * all of the guest's images would load polkitd for nothing.  An emulator that starts
         * a VM opens its second disk right after the first. */
        if (!c->peer->first_image) {
                c->peer->first_image = g_strdup(path);
                return;
        }
        if (g_str_equal(c->peer->first_image, path))
                return;
        c->peer->guest_prefetched = true;
        g_clear_pointer(&c->peer->first_image, g_free);

        /* polkitd answers one question after the other, in the order they came.  An emulator
         * opens its disks in the order they were granted, so ask in that order, beginning
         * with the ones granted after this image (the ones before it were opened already),
         * and each answer is in before the emulator gets to its disk.  The distance from this
         * image's serial, in unsigned arithmetic, is that order with the wrap-around; one
         * pass keeps the nearest few, in a table whose hash order nobody can choose. */
        g_hash_table_iter_init(&it, t->guest->grants);
        while (g_hash_table_iter_next(&it, NULL, (gpointer *) &grant)) {
                uint64_t distance = grant->serial - after - 1;
                unsigned i;

                /* A directory grant's question names the file; a create grant's file is
                 * asked about when it is made, and once made it is reopened read-write, not
                 * made again.  The request's own image is the request's question. */
                if (grant->directory || !grant->pinned || grant == t->grant ||
                    g_str_equal(grant->path, path))
                        continue;
                if (n == PREFETCH_GRANTS_MAX && distance >= picks[n - 1].distance)
                        continue;
                if (n < PREFETCH_GRANTS_MAX)
                        n++;
                for (i = n - 1; i > 0 && picks[i - 1].distance > distance; i--)
                        picks[i] = picks[i - 1];
                picks[i].distance = distance;
                picks[i].grant = grant;
        }

        for (unsigned i = 0; i < n; i++)
                authz_prefetch(m, c->peer, IA_ACTION_OPEN_IMAGE,
                               (const char *const[]) { "guest", t->guest->name,
                                                       "image", picks[i].grant->path,
                                                       "mode", ia_mode_to_string(MIN(picks[i].grant->mode, IA_MODE_READ_WRITE)),
                                                       "guest-uuid", t->guest->uuid ?: "",
                                                       NULL });
}

const char *open_directory(const OpenTarget *t) {
        return t->dir ? t->dir->path : NULL;
}

/*
 * An open that cannot wait, done on the loop: the pinned file of a grant, found from the
 * kernel's caches, on a file system that cannot hang (image_open_cached()).  It spares the
 * round trip through a thread, which cost more than the open.  Return: true when it ran and
 * answered through @sink (taken then); false when the open must go to a thread.
 */
static bool open_on_loop(Manager *m, const Caller *c, const OpenTarget *t, const char *guest,
                         const char *path, IaMode mode, const ImageOpenFlags *flags,
                         const OpenSink *sink) {
        Job j = {
                .type = JOB_OPEN,
                .path = (char *) path,
                .guest = (char *) guest,
                .mode = mode,
                .fd = -1,
        };
        int path_fd = -1;

        if (!t->grant || !t->grant->pinned || mode == IA_MODE_CREATE)
                return false;
        if (image_open_cached(path, mode, flags, &t->grant->pinned_id, workers_fs_cannot_hang,
                              m->workers, &j.fd, &path_fd, &j.st, &j.id) < 0)
                return false;

        open_complete(m, &j, c, t->grant, sink);
        /* After the answer: the caller need not wait for our closes. */
        ia_close_pair(j.fd, path_fd);
        if (sink->free)
                sink->free(sink->userdata);
        return true;
}

int open_submit(Manager *m, const Caller *c, const OpenTarget *t, const char *guest,
                const char *path, IaMode mode, const ImageOpenFlags *flags,
                const OpenSink *sink, sd_bus_error *error) {
        const char *mode_str = ia_mode_to_string(mode);
        Job *j;
        int r;

        peer_set_opened_guest(c->peer, guest);

        if (open_on_loop(m, c, t, guest, path, mode, flags, sink))
                return 0;

        r = peer_pending_inc(m, c->peer);
        if (r < 0) {
                if (sink->free)
                        sink->free(sink->userdata);
                sd_bus_error_setf(error, IA_ERROR_LIMIT_EXCEEDED,
                                  "Too many opens of %s are in progress (at most %u)", c->sender,
                                  m->config.max_pending_per_sender);
                return deny("open", c, guest, path, mode_str, r, error);
        }

        OpenJob *oj = g_new(OpenJob, 1);
        *oj = (OpenJob) { .sink = *sink };
        j = job_new(mode == IA_MODE_CREATE ? JOB_CREATE : JOB_OPEN, path, guest);
        j->mode = mode;
        j->flags = *flags;
        j->context = oj;
        j->context_free = open_job_free;
        if (mode == IA_MODE_CREATE && t->grant && t->grant->created) {
                j->have_own = true;
                j->own = t->grant->created_id;
        } else if (t->grant && t->grant->pinned) {
                /* Checked by the worker before the file is opened for I/O, and again in
                 * open_complete() against the grant as it is then. */
                j->have_expect = true;
                j->expect = t->grant->pinned_id;
        } else if (!t->grant) {
                /* open_check() found a directory grant above @path. */
                assert(t->dir && t->dir->pinned);
                j->dir = g_strdup(t->dir->path);
                j->dir_id = t->dir->pinned_id;
        }
        j->done = open_done;
        j->userdata = m;
        r = workers_submit(m->workers, j);
        if (r < 0) {
                peer_pending_dec(m, c->peer);
                sd_bus_error_setf(error, IA_ERROR_IO, "Could not queue the open of '%s': %s",
                                  path, strerror(-r));
                return deny("open", c, guest, path, mode_str, r, error);
        }
        return 0;
}

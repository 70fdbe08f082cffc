/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ia-batch.c — IaBatch: the all-or-nothing set of opens of a snapshot-prepare transaction.
 *
 * Why it looks like this (see also the header, and the 2012 qemu-devel/libvirt thread "[RFC 0/5]
 * block: File descriptor passing using -open-hook-fd"):
 * phase 1 of a snapshot transaction obtains every fd it needs "with cleanup that avoids any
 * leaks on any failure", and must not keep the emulator's main loop waiting one round trip
 * after another.  So every OpenImage is sent at once on the one connection (the service and
 * polkit work on them concurrently), the batch completes only when every reply is in — a
 * create still in flight when we gave up could otherwise land after the cleanup — and on any
 * failure every fd received is closed and the files possibly created are reported.
 *
 * Lifetime: the caller's references (n_ref) and a pin held while calls are in flight are
 * separate, so that dropping the last caller reference can abort the batch while the pin
 * keeps it alive to swallow late replies.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ia-client-private.h"
#include "ia-error.h"
#include "ia-macro.h"

typedef enum EntryState {
        ENTRY_QUEUED,           /* not sent yet */
        ENTRY_IN_FLIGHT,
        ENTRY_OK,               /* fd holds the image */
        ENTRY_FAILED,           /* result and error say why */
        ENTRY_SKIPPED,          /* never sent: the batch failed or was aborted first */
} EntryState;

typedef struct BatchEntry {
        IaBatch *batch;
        char *path;
        IaImageMode mode;
        uint64_t flags;

        EntryState state;
        sd_bus_slot *slot;
        int fd;
        int result;
        IaError error;
} BatchEntry;

struct IaBatch {
        unsigned n_ref;         /* the caller's references */
        bool pinned;            /* calls in flight keep the batch alive */

        IaClient *client;
        char *guest;

        BatchEntry *entries;
        size_t n_entries;
        size_t n_allocated;
        size_t next_to_send;
        size_t n_in_flight;

        IaBatchState state;
        bool failed;            /* an entry failed: send no more, fail when all are in */

        IaBatchCallback callback;
        void *userdata;
        IaBatchCleanupCallback cleanup;
        void *cleanup_userdata;
        bool cleanup_done;

        int result;             /* of a failed or aborted batch */
        IaError error;
        size_t error_index;
};

static void batch_free(IaBatch *b) {
        for (size_t i = 0; i < b->n_entries; i++) {
                BatchEntry *e = b->entries + i;

                e->slot = sd_bus_slot_unref(e->slot);
                e->fd = ia_safe_close(e->fd);
                ia_error_done(&e->error);
                free(e->path);
        }
        free(b->entries);
        ia_error_done(&b->error);
        ia_client_unref(b->client);
        free(b->guest);
        free(b);
}

static void batch_maybe_free(IaBatch *b) {
        if (b->n_ref == 0 && !b->pinned)
                batch_free(b);
}

int ia_batch_new(IaClient *client, const char *guest, IaBatch **ret_batch) {
        IaBatch *b;

        if (!client || !ret_batch || !client_guest_name_is_valid(guest))
                return -EINVAL;

        b = calloc(1, sizeof(*b));
        if (!b)
                return -ENOMEM;
        b->guest = strdup(guest);
        if (!b->guest) {
                free(b);
                return -ENOMEM;
        }
        b->n_ref = 1;
        b->client = ia_client_ref(client);
        b->state = IA_BATCH_NEW;
        b->error_index = (size_t) -1;

        *ret_batch = b;
        return 0;
}

IaBatch *ia_batch_ref(IaBatch *batch) {
        if (batch)
                batch->n_ref++;
        return batch;
}

IaBatch *ia_batch_unref(IaBatch *batch) {
        if (!batch || batch->n_ref == 0)
                return NULL;
        if (--batch->n_ref > 0)
                return NULL;

        /* The last caller reference of an uncommitted batch: give up, leak nothing.  A pinned
         * batch lives on until its last reply is in (batch_complete()). */
        ia_batch_ref(batch);
        (void) ia_batch_abort(batch);
        batch->n_ref--;
        batch_maybe_free(batch);
        return NULL;
}

int ia_batch_add(IaBatch *batch, const char *path, IaImageMode mode, uint64_t flags) {
        BatchEntry *e;

        if (!batch || !client_path_is_valid(path) || !ia_image_mode_to_string(mode) ||
            (flags & ~(IA_OPEN_DIRECT | IA_OPEN_NONBLOCK)))
                return -EINVAL;
        if (batch->state != IA_BATCH_NEW)
                return -EBUSY;
        if (batch->n_entries >= IA_BATCH_MAX_IMAGES)
                return -E2BIG;

        if (batch->n_entries == batch->n_allocated) {
                size_t n = batch->n_allocated ? batch->n_allocated * 2 : 16;
                BatchEntry *p = reallocarray(batch->entries, n, sizeof(*p));

                if (!p)
                        return -ENOMEM;
                batch->entries = p;
                batch->n_allocated = n;
        }

        e = batch->entries + batch->n_entries;
        *e = (BatchEntry) {
                .batch = batch,
                .path = strdup(path),
                .mode = mode,
                .flags = flags,
                .state = ENTRY_QUEUED,
                .fd = -EBADF,
        };
        if (!e->path)
                return -ENOMEM;

        return (int) batch->n_entries++;
}

size_t ia_batch_get_n_images(IaBatch *batch) {
        return batch ? batch->n_entries : 0;
}

IaBatchState ia_batch_get_state(IaBatch *batch) {
        return batch ? batch->state : IA_BATCH_FAILED;
}

int ia_batch_set_cleanup_callback(IaBatch *batch, IaBatchCleanupCallback callback,
                                  void *userdata) {
        if (!batch)
                return -EINVAL;
        if (batch->cleanup_done)
                return -ESTALE;
        batch->cleanup = callback;
        batch->cleanup_userdata = userdata;
        return 0;
}

/* Whether the service may have created the entry's file: success, or no answer. */
static bool entry_maybe_created(const BatchEntry *e) {
        if (e->mode != IA_IMAGE_MODE_CREATE)
                return false;
        switch (e->state) {
        case ENTRY_OK:
        case ENTRY_IN_FLIGHT:
                return true;
        case ENTRY_FAILED:
                return ia_error_outcome_unknown(&e->error);
        default:
                return false;
        }
}

static int batch_created_paths(IaBatch *b, char ***ret) {
        size_t n = 0, k = 0;
        char **l;

        for (size_t i = 0; i < b->n_entries; i++)
                if (entry_maybe_created(b->entries + i))
                        n++;

        l = calloc(n + 1, sizeof(char *));
        if (!l)
                return -ENOMEM;
        for (size_t i = 0; i < b->n_entries; i++)
                if (entry_maybe_created(b->entries + i)) {
                        l[k] = strdup(b->entries[i].path);
                        if (!l[k])
                                return ia_strv_free(l), -ENOMEM;
                        k++;
                }

        *ret = l;
        return (int) n;
}

int ia_batch_dup_created_paths(IaBatch *batch, char ***ret_paths) {
        if (!batch || !ret_paths)
                return -EINVAL;
        return batch_created_paths(batch, ret_paths);
}

static void batch_close_fds(IaBatch *b) {
        for (size_t i = 0; i < b->n_entries; i++)
                b->entries[i].fd = ia_safe_close(b->entries[i].fd);
}

static void batch_run_cleanup(IaBatch *b) {
        char **paths = NULL;
        int n;

        if (b->cleanup_done)
                return;
        b->cleanup_done = true;
        if (!b->cleanup)
                return;

        n = batch_created_paths(b, &paths);
        if (n > 0)
                b->cleanup(b, b->guest, (const char *const *) paths, b->cleanup_userdata);
        else if (n < 0) {
                /* Out of memory for the list: still tell the caller, one path at a time,
                 * from the entries themselves. */
                for (size_t i = 0; i < b->n_entries; i++)
                        if (entry_maybe_created(b->entries + i)) {
                                const char *one[2] = { b->entries[i].path, NULL };
                                b->cleanup(b, b->guest, one, b->cleanup_userdata);
                        }
        }
        ia_strv_free(paths);
}

/* The deciding error: the lowest-index failure, its message prefixed with the image. */
static void batch_set_error(IaBatch *b) {
        for (size_t i = 0; i < b->n_entries; i++) {
                BatchEntry *e = b->entries + i;
                char *msg = NULL;

                if (e->state != ENTRY_FAILED)
                        continue;
                b->result = e->result;
                b->error_index = i;
                if (ia_error_copy(&b->error, &e->error) < 0) {
                        b->error.error = e->result;
                        return;
                }
                if (asprintf(&msg, "Batch of %zu images for guest '%s' failed at image %zu ('%s'): %s",
                             b->n_entries, b->guest, i, e->path,
                             e->error.message ?: "unknown error") >= 0) {
                        free(b->error.message);
                        b->error.message = msg;
                }
                return;
        }
        /* No entry failed (cannot happen when b->failed is set): keep a coherent state. */
        b->result = -EIO;
        ia_error_set_errnof(&b->error, -EIO, "Batch failed");
}

static int batch_send_more(IaBatch *b);

/* Every reply is in (or nothing more will be sent): finish the batch. */
static void batch_complete(IaBatch *b) {
        IaBatchCallback callback = NULL;
        int result = 0;

        if (b->n_in_flight > 0)
                return;

        /* Mark what was never sent. */
        for (size_t i = b->next_to_send; i < b->n_entries; i++)
                b->entries[i].state = ENTRY_SKIPPED;
        b->next_to_send = b->n_entries;

        if (b->state == IA_BATCH_ABORTED) {
                batch_close_fds(b);
                batch_run_cleanup(b);
        } else if (b->failed) {
                batch_close_fds(b);
                batch_set_error(b);
                b->state = IA_BATCH_FAILED;
                batch_run_cleanup(b);
                callback = b->callback;
                result = b->result;
        } else {
                b->state = IA_BATCH_READY;
                callback = b->callback;
        }

        /* The callback may drop the caller's last reference: the pin keeps b valid. */
        if (callback)
                callback(b, result, b->userdata);

        b->pinned = false;
        batch_maybe_free(b);
}

static void entry_fail(BatchEntry *e, int r, const char *what) {
        e->state = ENTRY_FAILED;
        e->result = r;
        ia_error_set_errnof(&e->error, r, "%s: %s", what, strerror(-r));
        e->batch->failed = true;
}

static int on_entry_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        BatchEntry *e = userdata;
        IaBatch *b = e->batch;
        int r;

        e->slot = sd_bus_slot_unref(e->slot);
        b->n_in_flight--;

        if (sd_bus_message_is_method_error(reply, NULL)) {
                e->state = ENTRY_FAILED;
                e->result = ia_error_set_bus(&e->error, sd_bus_message_get_error(reply), 0);
                b->failed = true;
        } else if (b->state == IA_BATCH_ABORTED) {
                /* The fd stays in the reply and is closed with it. */
                e->state = ENTRY_OK;
        } else {
                r = client_reply_dup_fd(reply, &e->fd);
                if (r < 0)
                        entry_fail(e, r, "Cannot take the fd from the reply");
                else
                        e->state = ENTRY_OK;
        }

        if (!b->failed && b->state == IA_BATCH_RUNNING)
                (void) batch_send_more(b);
        batch_complete(b);
        return 0;
}

/* Sends queued entries up to the in-flight window.  A failure to queue fails that entry (it
 * was never sent, so nothing can have been created for it) and stops sending. */
static int batch_send_more(IaBatch *b) {
        while (b->next_to_send < b->n_entries && b->n_in_flight < IA_BATCH_MAX_IN_FLIGHT) {
                ia_autoptr(sd_bus_message) m = NULL;
                BatchEntry *e = b->entries + b->next_to_send;
                int r;

                r = client_new_open_call(b->client, b->guest, e->path, e->mode, e->flags, &m);
                if (r >= 0)
                        r = sd_bus_call_async(sd_bus_message_get_bus(m), &e->slot, m,
                                              on_entry_reply, e, 0);
                b->next_to_send++;
                if (r < 0) {
                        entry_fail(e, r, "Cannot send the OpenImage call");
                        return r;
                }
                e->state = ENTRY_IN_FLIGHT;
                b->n_in_flight++;
        }
        return 0;
}

int ia_batch_start(IaBatch *batch, IaBatchCallback callback, void *userdata) {
        int r;

        if (!batch)
                return -EINVAL;
        if (batch->state != IA_BATCH_NEW)
                return -EBUSY;
        if (batch->n_entries == 0)
                return -ENODATA;

        batch->callback = callback;
        batch->userdata = userdata;
        batch->state = IA_BATCH_RUNNING;
        batch->pinned = true;

        r = batch_send_more(batch);
        if (r < 0 && batch->n_in_flight == 0) {
                /* Nothing went out: fail right here, without calling back from within. */
                batch->callback = NULL;
                batch_complete(batch);
                return r;
        }
        /* Either everything up to the window is queued, or some calls went out before a
         * failure: then the batch fails once their replies are in, through the callback. */
        return 0;
}

static bool batch_is_settled(void *userdata) {
        IaBatch *b = userdata;
        return b->state != IA_BATCH_RUNNING;
}

int ia_batch_run(IaBatch *batch, IaError *error) {
        int r;

        if (!batch)
                return ia_error_set_errnof(error, -EINVAL, "Invalid argument");

        ia_batch_ref(batch);
        r = ia_batch_start(batch, NULL, NULL);
        if (r >= 0 && batch->state == IA_BATCH_RUNNING) {
                r = client_run_until(batch->client, batch_is_settled, batch);
                if (r < 0) {
                        /* Cannot wait here (-EBUSY: called from a callback of this client):
                         * abort, the replies still due are swallowed by the loop later. */
                        ia_error_set_errnof(error, r, "Cannot wait for the batch: %s",
                                            strerror(-r));
                        (void) ia_batch_abort(batch);
                        ia_batch_unref(batch);
                        return r;
                }
        } else if (r < 0 && batch->state != IA_BATCH_FAILED) {
                ia_error_set_errnof(error, r, "Cannot start the batch: %s", strerror(-r));
                ia_batch_unref(batch);
                return r;
        }

        if (batch->state == IA_BATCH_FAILED) {
                r = batch->result;
                if (error)
                        (void) ia_error_copy(error, &batch->error);
        } else
                r = 0;
        ia_batch_unref(batch);
        return r;
}

int ia_batch_get_error(IaBatch *batch, IaError *error, size_t *ret_index) {
        if (!batch)
                return -EINVAL;
        if (batch->state != IA_BATCH_FAILED && batch->state != IA_BATCH_ABORTED)
                return 0;
        if (error)
                (void) ia_error_copy(error, &batch->error);
        if (ret_index)
                *ret_index = batch->error_index;
        return batch->result;
}

int ia_batch_get_image_result(IaBatch *batch, size_t index, IaError *error) {
        BatchEntry *e;

        if (!batch)
                return -EINVAL;
        if (index >= batch->n_entries)
                return -ERANGE;
        e = batch->entries + index;
        switch (e->state) {
        case ENTRY_QUEUED:
                return batch->state == IA_BATCH_NEW ? -ENODATA : -EINPROGRESS;
        case ENTRY_IN_FLIGHT:
                return -EINPROGRESS;
        case ENTRY_OK:
                return 0;
        case ENTRY_SKIPPED:
                if (error)
                        ia_error_set_errnof(error, -ECANCELED,
                                            "Not sent: the batch had already failed or was aborted");
                return -ECANCELED;
        case ENTRY_FAILED:
        default:
                if (error)
                        (void) ia_error_copy(error, &e->error);
                return e->result;
        }
}

int ia_batch_commit(IaBatch *batch, int *ret_fds, size_t n_fds) {
        if (!batch || !ret_fds)
                return -EINVAL;
        switch (batch->state) {
        case IA_BATCH_NEW:
        case IA_BATCH_RUNNING:
                return -EBUSY;
        case IA_BATCH_READY:
                break;
        default:
                return -ESTALE;
        }
        if (n_fds != batch->n_entries)
                return -EINVAL;

        for (size_t i = 0; i < n_fds; i++)
                ret_fds[i] = IA_TAKE_FD(batch->entries[i].fd);
        batch->state = IA_BATCH_COMMITTED;
        batch->cleanup_done = true;     /* the files are the caller's now */
        return 0;
}

int ia_batch_abort(IaBatch *batch) {
        if (!batch)
                return -EINVAL;

        switch (batch->state) {
        case IA_BATCH_COMMITTED:
                return -ESTALE;
        case IA_BATCH_FAILED:
        case IA_BATCH_ABORTED:
                return 0;       /* keep the error that decided */
        default:
                break;
        }

        batch->result = -ECANCELED;
        batch->error_index = (size_t) -1;
        ia_error_set_errnof(&batch->error, -ECANCELED, "The batch for guest '%s' was aborted",
                            batch->guest);

        switch (batch->state) {
        case IA_BATCH_NEW:
                batch->state = IA_BATCH_ABORTED;
                batch->cleanup_done = true;     /* nothing was sent */
                break;
        case IA_BATCH_READY:
                batch->state = IA_BATCH_ABORTED;
                batch_close_fds(batch);
                batch_run_cleanup(batch);
                break;
        case IA_BATCH_RUNNING:
                /* Close what arrived; the calls in flight stay in flight (a create we stopped
                 * listening to could still land after the cleanup), and their replies are
                 * swallowed as they come.  batch_complete() runs the cleanup hook once the
                 * last one is in. */
                batch->state = IA_BATCH_ABORTED;
                batch_close_fds(batch);
                if (batch->n_in_flight == 0)
                        batch_complete(batch);
                break;
        default:
                break;
        }
        return 0;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * workers.c — a GThreadPool for file system work and an eventfd that wakes the sd-event loop
 * when jobs finish.  Threads never touch the bus or the registry: they only run image.c.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <glib.h>

#include "macro.h"
#include "workers.h"

struct Workers {
        GThreadPool *pool;
        GAsyncQueue *done;      /* Job* finished by a thread, owned by the queue */
        int eventfd;
        sd_event_source *source;
        gint n_unfinished;      /* submitted and not yet pushed to done; atomic */
};

Job *job_new(JobType type, const char *path, const char *guest, sd_bus_message *request) {
        Job *j = g_new0(Job, 1);

        j->type = type;
        j->path = g_strdup(path);
        j->guest = g_strdup(guest);
        j->request = request ? sd_bus_message_ref(request) : NULL;
        j->fd = -1;
        return j;
}

Job *job_free(Job *j) {
        if (!j)
                return NULL;
        ia_safe_close(j->fd);
        g_free(j->path);
        g_free(j->guest);
        sd_bus_message_unref(j->request);
        g_free(j);
        return NULL;
}

static void job_run(gpointer data, gpointer user_data) {
        Job *j = data;
        Workers *w = user_data;
        uint64_t one = 1;

        switch (j->type) {
        case JOB_OPEN:
                j->r = image_open(j->path, j->mode, &j->flags, &j->fd, &j->st);
                break;
        case JOB_CREATE:
                j->r = image_create(j->path, &j->flags, j->have_own, j->own_dev, j->own_ino,
                                    &j->fd, &j->created, &j->st);
                break;
        case JOB_REMOVE_CREATED:
                j->r = image_remove_created(j->path, j->own_dev, j->own_ino);
                break;
        case JOB_STAT:
                j->r = image_stat(j->path, &j->st);
                break;
        }

        g_async_queue_push(w->done, j);
        /* An eventfd write only fails when the counter would overflow, which it cannot here. */
        (void) write(w->eventfd, &one, sizeof(one));
        (void) g_atomic_int_dec_and_test(&w->n_unfinished);
}

static int on_eventfd(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Workers *w = userdata;
        uint64_t n;
        Job *j;

        (void) read(fd, &n, sizeof(n));
        while ((j = g_async_queue_try_pop(w->done))) {
                if (j->done)
                        j->done(j, j->userdata);
                job_free(j);
        }
        return 0;
}

int workers_new(sd_event *event, unsigned max_threads, Workers **ret) {
        g_autoptr(GError) error = NULL;
        Workers *w = g_new0(Workers, 1);
        int r;

        w->eventfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (w->eventfd < 0) {
                r = -errno;
                workers_free(w);
                return r;
        }
        w->done = g_async_queue_new();
        w->pool = g_thread_pool_new(job_run, w, (int) max_threads, FALSE, &error);
        if (!w->pool) {
                workers_free(w);
                return -EAGAIN;
        }
        r = sd_event_add_io(event, &w->source, w->eventfd, EPOLLIN, on_eventfd, w);
        if (r < 0) {
                workers_free(w);
                return r;
        }
        *ret = w;
        return 0;
}

Workers *workers_free(Workers *w) {
        Job *j;

        if (!w)
                return NULL;
        if (w->pool) {
                /* Queued jobs are dropped.  A running job may hang for ever (an open on a
                 * dead NFS server): we must not wait for it at exit, and it must not push into
                 * a freed queue.  So with jobs still running, leave the pool, the queue and
                 * the eventfd to the process's exit. */
                g_thread_pool_free(w->pool, TRUE, FALSE);
                w->pool = NULL;
                /* A job whose result we already handled may still be between its push and
                 * its count going down: give those a moment, but never wait for a hung one. */
                for (unsigned i = 0; i < 100 && g_atomic_int_get(&w->n_unfinished) > 0; i++)
                        g_usleep(1000);
                if (g_atomic_int_get(&w->n_unfinished) > 0) {
                        sd_event_source_disable_unref(w->source);
                        return NULL;
                }
        }
        if (w->done) {
                while ((j = g_async_queue_try_pop(w->done)))
                        job_free(j);
                g_async_queue_unref(w->done);
        }
        sd_event_source_disable_unref(w->source);
        ia_safe_close(w->eventfd);
        g_free(w);
        return NULL;
}

int workers_submit(Workers *w, Job *j) {
        g_autoptr(GError) error = NULL;

        /* Counted before the push: a thread may pick the job up at once. */
        g_atomic_int_inc(&w->n_unfinished);
        if (!g_thread_pool_push(w->pool, j, &error)) {
                (void) g_atomic_int_dec_and_test(&w->n_unfinished);
                job_free(j);
                return -EAGAIN;
        }
        return 0;
}

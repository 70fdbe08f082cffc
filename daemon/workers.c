/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * workers.c — threads for file system work, and an eventfd that wakes the sd-event loop when
 * jobs finish.  Threads never touch the bus or the registry: they only run image.c.
 *
 * An open can hang (a dead NFS server, a stuck FUSE daemon), and it must stall only its own
 * request: that is why opens run in threads at all.  But most opens take microseconds, and
 * waking a thread per job (what a GThreadPool does while it has idle threads) costs more than
 * the open: under load the threads took turns on the CPUs, two context switches and five
 * futex calls per open, and the daemon became the busiest process on the bus.  So a job
 * wakes another thread only when no thread is ready to take it soon:
 *   - a thread that is awake and between jobs, or one whose current job started less than
 *     STALL_USEC ago, counts as ready: it will take the next job when it is done;
 *   - otherwise submitting wakes an idle thread, or starts a new one up to max_threads;
 *   - while jobs are queued, a timer on the loop checks every STALL_USEC, so that a job
 *     queued behind an open that then hangs gets a thread of its own after at most about
 *     2 × STALL_USEC, not never.
 * Under load one thread takes job after job without sleeping, and the loop is woken once
 * for many finished jobs (the eventfd is written only when the done list was empty).
 *
 * A guest whose image hangs must not take every thread: its emulator could ask for it again
 * and again until no thread is left for anybody else.  So at most max_per_guest jobs of one
 * guest run at once; its further jobs wait in the queue, and threads take the first job of a
 * guest below that limit.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>
#include <glib.h>

#include "macro.h"
#include "workers.h"

/* How long a job may run before the thread running it no longer counts as ready for the
 * next one.  Opens on local file systems take microseconds, on NFS about a millisecond. */
#define STALL_USEC (5 * 1000)

/* How many devices' file system kinds are remembered (a ring; a forgotten one is learned
 * again by its next open in a thread). */
#define FS_KNOWN_MAX 32

typedef enum WorkerState {
        WORKER_IDLE,            /* waiting on its condition for work */
        WORKER_READY,           /* awake (woken, started or between jobs), about to take a job */
        WORKER_BUSY,            /* running a job since busy_since */
} WorkerState;

typedef struct Worker {
        Workers *w;
        GThread *thread;
        pthread_cond_t wake;
        WorkerState state;      /* under w->lock */
        uint64_t busy_since;    /* CLOCK_MONOTONIC µs, when BUSY */
} Worker;

struct Workers {
        /* pthread's rather than GLib's mutex and conditions: GLib 2.74 implements its own
         * with futexes, which helgrind and ThreadSanitizer cannot see. */
        pthread_mutex_t lock;   /* guards everything up to the eventfd */
        GQueue queue;           /* Job* waiting for a thread (owned) */
        GQueue done;            /* Job* finished, for the loop (owned) */
        bool notified;          /* eventfd written since the loop last took the done list */
        bool exiting;
        GPtrArray *threads;     /* Worker* (owned; the threads are joined or left at exit) */
        unsigned max_threads;
        unsigned max_per_guest;
        GHashTable *running;    /* guest name → number of its jobs running (GUINT) */
        unsigned n_unfinished;  /* submitted and not yet in done */

        int eventfd;
        sd_event_source *source;
        sd_event_source *stall_timer;

        /* Loop only.  The file systems that opens in threads found, by device: whether each
         * one cannot hang (image_fs_cannot_hang()), for workers_fs_cannot_hang().  Forgotten
         * whenever the mount table changes: a device number names a file system only while
         * it is mounted. */
        struct {
                dev_t dev;
                bool cannot_hang;
        } fs_known[FS_KNOWN_MAX];
        unsigned n_fs_known, fs_known_next;
        int mountinfo_fd;
        sd_event_source *mountinfo_source;
};

static uint64_t now_usec(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}

Job *job_new(JobType type, const char *path, const char *guest) {
        Job *j = g_new0(Job, 1);

        j->type = type;
        j->path = g_strdup(path);
        j->guest = g_strdup(guest);
        j->fd = -1;
        return j;
}

Job *job_free(Job *j) {
        if (!j)
                return NULL;
        ia_safe_close(j->fd);
        g_free(j->path);
        g_free(j->guest);
        g_free(j->dir);
        g_free(j->writable_dir);
        if (j->context_free)
                j->context_free(j->context);
        g_free(j);
        return NULL;
}

static void job_run(Job *j) {
        struct statfs sfs;

        switch (j->type) {
        case JOB_OPEN:
                if (j->dir) {
                        j->r = image_open_beneath(j->dir, &j->dir_id, j->path, j->mode, &j->flags,
                                                  &j->fd, &j->created, &j->st, &j->id);
                        break;
                }
                j->r = image_open_pinned(j->path, j->mode, &j->flags,
                                         j->have_expect ? &j->expect : NULL, &j->fd, &j->st,
                                         &j->id);
                /* In a thread, where asking a hung file system only stalls this job. */
                if (j->learn_fs && j->r >= 0)
                        j->fs_type = fstatfs(j->fd, &sfs) >= 0 ? (long) sfs.f_type : 0;
                break;
        case JOB_CREATE:
                if (j->dir) {
                        j->r = image_open_beneath(j->dir, &j->dir_id, j->path, j->mode, &j->flags,
                                                  &j->fd, &j->created, &j->st, &j->id);
                        break;
                }
                j->r = image_create(j->path, &j->flags, j->have_own ? &j->own : NULL, &j->fd,
                                    &j->created, &j->st, &j->id);
                break;
        case JOB_REMOVE_CREATED:
                j->r = image_remove_created(j->path, &j->own);
                break;
        case JOB_STAT:
                j->r = j->directory ? image_stat_directory(j->path, &j->st, &j->id) :
                                      image_stat(j->path, &j->st, &j->id);
                /* For GrantImage's warning; also for a create grant's file not made yet. */
                if (j->r >= 0 || j->r == -ENOENT)
                        (void) image_writable_dir(j->path, &j->writable_dir, &j->writable_dir_st);
                break;
        }
}

/* Under w->lock: whether a thread may start @j now (its guest is below its share). */
static bool job_may_run(Workers *w, const Job *j) {
        return GPOINTER_TO_UINT(g_hash_table_lookup(w->running, j->guest ?: "")) < w->max_per_guest;
}

/* Under w->lock: queued jobs that a thread could start now. */
static unsigned n_runnable(Workers *w) {
        unsigned n = 0;

        for (GList *l = w->queue.head; l; l = l->next)
                n += job_may_run(w, l->data);
        return n;
}

/* Under w->lock: takes the first queued job a thread may start, and counts it as running. */
static Job *take_job(Workers *w) {
        for (GList *l = w->queue.head; l; l = l->next) {
                Job *j = l->data;
                const char *key = j->guest ?: "";

                if (!job_may_run(w, j))
                        continue;
                g_queue_delete_link(&w->queue, l);
                g_hash_table_replace(w->running, g_strdup(key),
                                     GUINT_TO_POINTER(GPOINTER_TO_UINT(g_hash_table_lookup(w->running, key)) + 1));
                return j;
        }
        return NULL;
}

/* Under w->lock. */
static void job_finished(Workers *w, const Job *j) {
        const char *key = j->guest ?: "";
        unsigned n = GPOINTER_TO_UINT(g_hash_table_lookup(w->running, key));

        if (n <= 1)
                g_hash_table_remove(w->running, key);
        else
                g_hash_table_replace(w->running, g_strdup(key), GUINT_TO_POINTER(n - 1));
}

/* Under w->lock. */
static bool have_ready_worker(Workers *w, uint64_t now) {
        for (guint i = 0; i < w->threads->len; i++) {
                Worker *t = g_ptr_array_index(w->threads, i);

                if (t->state == WORKER_READY ||
                    (t->state == WORKER_BUSY && now - t->busy_since < STALL_USEC))
                        return true;
        }
        return false;
}

/* Under w->lock: whether some queued job waits behind a running one (which may hang) rather
 * than for a thread that is about to take it.  Only then is the stall timer needed. */
static bool need_stall_check(Workers *w) {
        unsigned n_ready = 0;

        for (guint i = 0; i < w->threads->len; i++)
                n_ready += ((Worker *) g_ptr_array_index(w->threads, i))->state == WORKER_READY;
        /* Jobs of a guest at its limit wait for that guest's jobs, not for a thread. */
        return n_runnable(w) > n_ready;
}

static gpointer worker_main(gpointer data) {
        Worker *t = data;
        Workers *w = t->w;
        uint64_t one = 1;
        Job *j;

        pthread_mutex_lock(&w->lock);
        while (!w->exiting) {
                j = take_job(w);
                if (!j) {
                        t->state = WORKER_IDLE;
                        while (t->state == WORKER_IDLE && !w->exiting)
                                pthread_cond_wait(&t->wake, &w->lock);
                        continue;
                }
                t->state = WORKER_BUSY;
                t->busy_since = now_usec();
                pthread_mutex_unlock(&w->lock);

                job_run(j);

                pthread_mutex_lock(&w->lock);
                t->state = WORKER_READY;
                job_finished(w, j);
                g_queue_push_tail(&w->done, j);
                w->n_unfinished--;
                if (!w->notified) {
                        w->notified = true;
                        /* Woken, the loop takes the lock at once: do not hold it then. */
                        pthread_mutex_unlock(&w->lock);
                        /* Only fails when the counter would overflow, which it cannot here. */
                        (void) write(w->eventfd, &one, sizeof(one));
                        pthread_mutex_lock(&w->lock);
                }
        }
        pthread_mutex_unlock(&w->lock);
        return NULL;
}

/* Under w->lock: makes sure a thread will take the queued jobs soon.  An idle thread that is
 * to do so is marked ready and returned in *@ret_wake: signal it with wake_worker() once the
 * lock is released, or it wakes only to wait for the lock we hold.  Return: 0; -EAGAIN when
 * no thread runs at all and none could be started. */
static int ensure_ready_worker(Workers *w, Worker **ret_wake) {
        g_autoptr(GError) error = NULL;
        Worker *t;

        *ret_wake = NULL;
        if (n_runnable(w) == 0 || have_ready_worker(w, now_usec()))
                return 0;

        for (guint i = 0; i < w->threads->len; i++) {
                t = g_ptr_array_index(w->threads, i);
                if (t->state == WORKER_IDLE) {
                        t->state = WORKER_READY;
                        *ret_wake = t;
                        return 0;
                }
        }
        if (w->threads->len >= w->max_threads)
                /* Every thread is stuck in a job: the rest wait, as they would in any
                 * bounded pool, and the stall timer tries again. */
                return 0;

        t = g_new0(Worker, 1);
        t->w = w;
        t->state = WORKER_READY;
        pthread_cond_init(&t->wake, NULL);
        t->thread = g_thread_try_new("ia-worker", worker_main, t, &error);
        if (!t->thread) {
                pthread_cond_destroy(&t->wake);
                g_free(t);
                return w->threads->len > 0 ? 0 : -EAGAIN;
        }
        g_ptr_array_add(w->threads, t);
        return 0;
}

/* Without w->lock.  A thread waits only while its state is WORKER_IDLE, which it checks under
 * the lock, and ensure_ready_worker() changed it under the lock: no wake-up is lost.
 * Threads live until workers_free(). */
static void wake_worker(Worker *t) {
        if (t)
                pthread_cond_signal(&t->wake);
}

static void arm_stall_timer(Workers *w) {
        if (sd_event_source_set_time_relative(w->stall_timer, STALL_USEC) >= 0)
                (void) sd_event_source_set_enabled(w->stall_timer, SD_EVENT_ONESHOT);
}

static int on_stall_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Workers *w = userdata;
        Worker *wake;
        bool again;

        pthread_mutex_lock(&w->lock);
        (void) ensure_ready_worker(w, &wake);
        again = need_stall_check(w);
        pthread_mutex_unlock(&w->lock);
        wake_worker(wake);
        if (again)
                arm_stall_timer(w);
        return 0;
}

static int fs_lookup(Workers *w, dev_t dev) {
        for (unsigned i = 0; i < w->n_fs_known; i++)
                if (w->fs_known[i].dev == dev)
                        return w->fs_known[i].cannot_hang;
        return -ENOENT;
}

static void fs_learn(Workers *w, dev_t dev, bool cannot_hang) {
        unsigned i;

        /* Without a watch on the mount table nothing learned could ever be forgotten. */
        if (w->mountinfo_fd < 0 || fs_lookup(w, dev) >= 0)
                return;
        i = w->fs_known_next;
        w->fs_known_next = (i + 1) % FS_KNOWN_MAX;
        w->n_fs_known = MAX(w->n_fs_known, i + 1);
        w->fs_known[i].dev = dev;
        w->fs_known[i].cannot_hang = cannot_hang;
}

bool workers_fs_cannot_hang(dev_t dev, void *userdata) {
        return fs_lookup(userdata, dev) > 0;
}

/* The kernel flags /proc/self/mountinfo with EPOLLPRI once after each change of our mount
 * table: a device number learned before may now be another file system. */
static int on_mountinfo(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Workers *w = userdata;

        w->n_fs_known = w->fs_known_next = 0;
        return 0;
}

static int on_eventfd(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Workers *w = userdata;
        GQueue done;
        uint64_t n;
        Job *j;

        (void) read(fd, &n, sizeof(n));
        pthread_mutex_lock(&w->lock);
        done = w->done;
        g_queue_init(&w->done);
        w->notified = false;
        pthread_mutex_unlock(&w->lock);

        /* Done callbacks may submit jobs of their own: they run without the lock. */
        while ((j = g_queue_pop_head(&done))) {
                if (j->learn_fs && j->r >= 0)
                        fs_learn(w, j->st.st_dev, image_fs_cannot_hang(j->fs_type));
                if (j->done)
                        j->done(j, j->userdata);
                job_free(j);
        }
        return 0;
}

int workers_new(sd_event *event, unsigned max_threads, Workers **ret) {
        Workers *w = g_new0(Workers, 1);
        int r;

        pthread_mutex_init(&w->lock, NULL);
        g_queue_init(&w->queue);
        g_queue_init(&w->done);
        w->threads = g_ptr_array_new();
        w->max_threads = MAX(max_threads, 1u);
        /* A quarter, but at least two: one hung open of a guest never stalls its others. */
        w->max_per_guest = MAX(w->max_threads / 4, MIN(2u, w->max_threads));
        w->running = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
        /* Without it (no /proc), every open stays in a thread. */
        w->mountinfo_fd = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);
        if (w->mountinfo_fd >= 0 &&
            sd_event_add_io(event, &w->mountinfo_source, w->mountinfo_fd, EPOLLPRI, on_mountinfo,
                            w) < 0)
                w->mountinfo_fd = ia_safe_close(w->mountinfo_fd);
        w->eventfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (w->eventfd < 0) {
                r = -errno;
                workers_free(w);
                return r;
        }
        r = sd_event_add_io(event, &w->source, w->eventfd, EPOLLIN, on_eventfd, w);
        if (r >= 0)
                r = sd_event_add_time_relative(event, &w->stall_timer, CLOCK_MONOTONIC,
                                               STALL_USEC, 1000, on_stall_timer, w);
        if (r >= 0)
                r = sd_event_source_set_enabled(w->stall_timer, SD_EVENT_OFF);
        if (r < 0) {
                workers_free(w);
                return r;
        }
        *ret = w;
        return 0;
}

Workers *workers_free(Workers *w) {
        GQueue queued;
        bool running = false;
        Job *j;

        if (!w)
                return NULL;

        /* Queued jobs are dropped.  A running job may hang for ever (an open on a dead NFS
         * server): we must not wait for it at exit, and it must not push into a freed list.
         * So with jobs still running, leave the threads, the lists and the eventfd to the
         * process's exit.  Finished jobs drop their count in the same locked step that
         * hands them over, so a count above zero here means a job that is really running. */
        pthread_mutex_lock(&w->lock);
        w->exiting = true;
        queued = w->queue;
        g_queue_init(&w->queue);
        w->n_unfinished -= queued.length;
        running = w->n_unfinished > 0;
        for (guint i = 0; i < w->threads->len; i++)
                pthread_cond_signal(&((Worker *) g_ptr_array_index(w->threads, i))->wake);
        pthread_mutex_unlock(&w->lock);

        while ((j = g_queue_pop_head(&queued)))
                job_free(j);
        sd_event_source_disable_unref(w->stall_timer);
        w->stall_timer = NULL;
        sd_event_source_disable_unref(w->mountinfo_source);
        w->mountinfo_source = NULL;
        w->mountinfo_fd = ia_safe_close(w->mountinfo_fd);
        if (running) {
                sd_event_source_disable_unref(w->source);
                w->source = NULL;
                return NULL;
        }

        /* No job runs: every thread is on its way out. */
        for (guint i = 0; i < w->threads->len; i++) {
                Worker *t = g_ptr_array_index(w->threads, i);

                g_thread_join(t->thread);
                pthread_cond_destroy(&t->wake);
                g_free(t);
        }
        g_ptr_array_free(w->threads, TRUE);
        g_hash_table_unref(w->running);
        while ((j = g_queue_pop_head(&w->done)))
                job_free(j);
        sd_event_source_disable_unref(w->source);
        ia_safe_close(w->eventfd);
        pthread_mutex_destroy(&w->lock);
        g_free(w);
        return NULL;
}

int workers_submit(Workers *w, Job *j) {
        Worker *wake = NULL;
        bool check = false;
        int r;

        /* An open of a pinned file on a device not seen yet: find out what it is on. */
        j->learn_fs = j->type == JOB_OPEN && !j->dir && j->have_expect &&
                      fs_lookup(w, (dev_t) j->expect.dev) < 0;

        pthread_mutex_lock(&w->lock);
        g_queue_push_tail(&w->queue, j);
        w->n_unfinished++;
        r = ensure_ready_worker(w, &wake);
        if (r < 0) {
                g_queue_remove(&w->queue, j);
                w->n_unfinished--;
        } else
                check = need_stall_check(w);
        pthread_mutex_unlock(&w->lock);
        wake_worker(wake);
        if (r < 0) {
                job_free(j);
                return r;
        }
        /* The job waits behind one that may hang in it: look again in a while. */
        if (check && sd_event_source_get_enabled(w->stall_timer, NULL) == 0)
                arm_stall_timer(w);
        return 0;
}

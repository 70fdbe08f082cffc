/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests of workers.c: jobs run off the loop, their results come back on it, every fd
 * reaches the done callback or is closed, and nothing leaks when a pool is freed.
 */
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <glib.h>
#include <glib/gstdio.h>

#include "workers.h"

typedef struct Result {
        unsigned n_done;
        unsigned n_expected;
        GThread *loop_thread;
        bool ran_on_loop_thread;
        int r[8];
        int fd[8];
        sd_event *event;
} Result;

static unsigned count_fds(void) {
        g_autoptr(GDir) d = g_dir_open("/proc/self/fd", 0, NULL);
        unsigned n = 0;

        while (g_dir_read_name(d))
                n++;
        return n;
}

static void on_done(Job *j, void *userdata) {
        Result *res = userdata;
        unsigned i = res->n_done++;

        res->ran_on_loop_thread = g_thread_self() == res->loop_thread;
        res->r[i] = j->r;
        /* Take the fd, as the bus layer's reply does by duplicating it. */
        res->fd[i] = j->fd;
        j->fd = -1;
        if (res->n_done == res->n_expected)
                sd_event_exit(res->event, 0);
}

static void test_open_and_error(void) {
        g_autofree char *dir = g_dir_make_tmp("test-workers-XXXXXX", NULL);
        g_autofree char *file = g_build_filename(dir, "disk.raw", NULL);
        g_autofree char *missing = g_build_filename(dir, "missing.raw", NULL);
        sd_event *event = NULL;
        Workers *w = NULL;
        Result res = { .n_expected = 2, .loop_thread = g_thread_self() };
        unsigned before = count_fds();
        Job *j;

        g_assert_true(g_file_set_contents(file, "data", -1, NULL));
        g_assert_cmpint(sd_event_new(&event), >=, 0);
        res.event = event;
        g_assert_cmpint(workers_new(event, 4, &w), ==, 0);

        j = job_new(JOB_OPEN, file, "vm1");
        j->mode = IA_MODE_READ_ONLY;
        j->done = on_done;
        j->userdata = &res;
        g_assert_cmpint(workers_submit(w, j), ==, 0);

        j = job_new(JOB_OPEN, missing, "vm1");
        j->mode = IA_MODE_READ_ONLY;
        j->done = on_done;
        j->userdata = &res;
        g_assert_cmpint(workers_submit(w, j), ==, 0);

        g_assert_cmpint(sd_event_loop(event), ==, 0);
        g_assert_cmpuint(res.n_done, ==, 2);
        g_assert_true(res.ran_on_loop_thread);
        /* Order of completion is not defined: one succeeded, one is -ENOENT. */
        for (unsigned i = 0; i < 2; i++) {
                if (res.r[i] == 0) {
                        char buf[5] = {};

                        g_assert_cmpint(res.fd[i], >=, 0);
                        g_assert_cmpint(read(res.fd[i], buf, 4), ==, 4);
                        g_assert_cmpstr(buf, ==, "data");
                        g_assert_true(fcntl(res.fd[i], F_GETFD) & FD_CLOEXEC);
                        close(res.fd[i]);
                } else {
                        g_assert_cmpint(res.r[i], ==, -ENOENT);
                        g_assert_cmpint(res.fd[i], ==, -1);
                }
        }

        workers_free(w);
        sd_event_unref(event);
        g_assert_cmpuint(count_fds(), ==, before);
        g_unlink(file);
        g_rmdir(dir);
}

/* A job whose callback does not take its fd: job_free() must close it. */
static void on_done_ignore(Job *j, void *userdata) {
        Result *res = userdata;

        if (++res->n_done == res->n_expected)
                sd_event_exit(res->event, 0);
}

static void test_untaken_fd_closed(void) {
        g_autofree char *dir = g_dir_make_tmp("test-workers-XXXXXX", NULL);
        g_autofree char *file = g_build_filename(dir, "disk.raw", NULL);
        sd_event *event = NULL;
        Workers *w = NULL;
        Result res = { .n_expected = 50 };
        unsigned before = count_fds();

        g_assert_true(g_file_set_contents(file, "data", -1, NULL));
        g_assert_cmpint(sd_event_new(&event), >=, 0);
        res.event = event;
        g_assert_cmpint(workers_new(event, 8, &w), ==, 0);
        for (unsigned i = 0; i < res.n_expected; i++) {
                Job *j = job_new(JOB_OPEN, file, "vm1");

                j->mode = IA_MODE_READ_WRITE;
                j->done = on_done_ignore;
                j->userdata = &res;
                g_assert_cmpint(workers_submit(w, j), ==, 0);
        }
        g_assert_cmpint(sd_event_loop(event), ==, 0);
        g_assert_cmpuint(res.n_done, ==, res.n_expected);
        workers_free(w);
        sd_event_unref(event);
        g_assert_cmpuint(count_fds(), ==, before);
        g_unlink(file);
        g_rmdir(dir);
}

int main(int argc, char *argv[]) {
        g_test_init(&argc, &argv, NULL);
        /* The procfs fd image.c holds is opened here, not inside a test that counts fds. */
        g_assert_cmpint(image_setup(), ==, 0);
        g_test_add_func("/workers/open-and-error", test_open_and_error);
        g_test_add_func("/workers/untaken-fd-closed", test_untaken_fd_closed);
        return g_test_run();
}

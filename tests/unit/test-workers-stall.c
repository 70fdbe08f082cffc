/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit test of workers.c against a real hung file system: an open that never returns must
 * stall only its own job.  The pool lets one thread take job after job while they are quick
 * (workers.c), so this proves that a job queued behind a hung one still gets a thread.
 *
 * The hang is a FUSE mount whose server (this test) answers INIT and then nothing: a lookup
 * below it blocks in the kernel until the connection is aborted.  It is mounted in a mount
 * namespace of the test's own, so it goes away with the test whatever happens.  Needs root
 * and /dev/fuse; skipped otherwise.
 */
#include <errno.h>
#include <sched.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <glib.h>
#include <glib/gstdio.h>

#include "workers.h"

typedef struct State {
        sd_event *event;
        bool hung_done, quick_done;
        int hung_r, quick_r;
        uint64_t quick_usec;
} State;

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}

static void on_hung_done(Job *j, void *userdata) {
        State *s = userdata;

        s->hung_done = true;
        s->hung_r = j->r;
}

static void on_quick_done(Job *j, void *userdata) {
        State *s = userdata;

        s->quick_done = true;
        s->quick_r = j->r;
        s->quick_usec = now_usec();
}

/* Runs the loop until *@flag is set, for at most 10 s. */
static void run_until(sd_event *event, const bool *flag) {
        uint64_t deadline = now_usec() + 10 * G_USEC_PER_SEC;

        while (!*flag && now_usec() < deadline)
                g_assert_cmpint(sd_event_run(event, 100 * 1000), >=, 0);
}

/* Mounts a FUSE file system at @dir served by the returned /dev/fuse fd, and answers its INIT;
 * every later request stays unanswered.  Return: the fd, or -errno. */
static int mount_hung_fuse(const char *dir) {
        char opts[128], buf[FUSE_MIN_READ_BUFFER];
        struct fuse_in_header *in = (struct fuse_in_header *) buf;
        struct {
                struct fuse_out_header h;
                struct fuse_init_out init;
        } out = {};
        ssize_t n;
        int fd;

        fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        snprintf(opts, sizeof(opts), "fd=%d,rootmode=40000,user_id=0,group_id=0", fd);
        if (mount("ia-test-hung", dir, "fuse", MS_NOSUID | MS_NODEV, opts) < 0) {
                int e = errno;

                close(fd);
                return -e;
        }
        n = read(fd, buf, sizeof(buf));
        if (n < (ssize_t) sizeof(*in) || in->opcode != FUSE_INIT) {
                umount2(dir, MNT_DETACH);
                close(fd);
                return -EPROTO;
        }
        out.h.len = sizeof(out);
        out.h.unique = in->unique;
        out.init.major = FUSE_KERNEL_VERSION;
        out.init.minor = 26;    /* old enough for every kernel with openat2() */
        out.init.max_write = 4096;
        if (write(fd, &out, sizeof(out)) != sizeof(out)) {
                umount2(dir, MNT_DETACH);
                close(fd);
                return -EPROTO;
        }
        return fd;
}

static void test_hung_open_stalls_only_itself(void) {
        g_autofree char *dir = g_dir_make_tmp("test-workers-stall-XXXXXX", NULL);
        g_autofree char *mnt = g_build_filename(dir, "hung", NULL);
        g_autofree char *hung = g_build_filename(mnt, "disk.raw", NULL);
        g_autofree char *file = g_build_filename(dir, "disk.raw", NULL);
        State s = {};
        Workers *w = NULL;
        uint64_t t0;
        Job *j;
        int fuse_fd;

        if (geteuid() != 0 || access("/dev/fuse", R_OK | W_OK) < 0) {
                g_test_skip("needs root and /dev/fuse");
                return;
        }
        if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
                g_test_skip_printf("no mount namespace of our own: %s", g_strerror(errno));
                return;
        }
        g_assert_cmpint(g_mkdir(mnt, 0755), ==, 0);
        fuse_fd = mount_hung_fuse(mnt);
        if (fuse_fd < 0) {
                g_test_skip_printf("cannot mount a FUSE file system here: %s", g_strerror(-fuse_fd));
                g_rmdir(mnt);
                g_rmdir(dir);
                return;
        }
        g_assert_true(g_file_set_contents(file, "data", -1, NULL));
        g_assert_cmpint(sd_event_new(&s.event), >=, 0);
        g_assert_cmpint(workers_new(s.event, 4, &w), ==, 0);

        /* First the open that hangs, then one queued behind it. */
        j = job_new(JOB_OPEN, hung, "vm1");
        j->mode = IA_MODE_READ_ONLY;
        j->done = on_hung_done;
        j->userdata = &s;
        g_assert_cmpint(workers_submit(w, j), ==, 0);
        t0 = now_usec();
        j = job_new(JOB_OPEN, file, "vm1");
        j->mode = IA_MODE_READ_ONLY;
        j->done = on_quick_done;
        j->userdata = &s;
        g_assert_cmpint(workers_submit(w, j), ==, 0);

        run_until(s.event, &s.quick_done);
        g_assert_true(s.quick_done);
        g_assert_false(s.hung_done);
        g_assert_cmpint(s.quick_r, ==, 0);
        /* A few stall periods at most, even on a loaded machine. */
        g_assert_cmpuint(s.quick_usec - t0, <, 2 * G_USEC_PER_SEC);
        g_test_message("the open behind the hung one took %.1f ms", (s.quick_usec - t0) / 1000.0);

        /* End the hang: the aborted connection fails the lookup. */
        g_assert_cmpint(umount2(mnt, MNT_DETACH), ==, 0);
        close(fuse_fd);
        run_until(s.event, &s.hung_done);
        g_assert_true(s.hung_done);
        g_assert_cmpint(s.hung_r, <, 0);

        workers_free(w);
        sd_event_unref(s.event);
        g_unlink(file);
        g_rmdir(mnt);
        g_rmdir(dir);
}

int main(int argc, char *argv[]) {
        g_test_init(&argc, &argv, NULL);
        g_test_add_func("/workers/hung-open-stalls-only-itself", test_hung_open_stalls_only_itself);
        return g_test_run();
}

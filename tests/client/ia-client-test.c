/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ia-client-test — drives libimageaccess against a real image-accessd for
 * tests/integration/test_client.py, which runs it as an emulator (setpriv to the test user)
 * or as the VM manager (root) on the test bed's private bus.
 *
 * It writes one JSON object per line to stdout and reads "go" lines from stdin where a test
 * must act between steps (stop polkitd, kill the daemon).  It uses only the public API.
 *
 *   ia-client-test [--address=A] open-sync GUEST PATH MODE
 *   ia-client-test [--address=A] open-event GUEST PATH MODE TICK_MS
 *   ia-client-test [--address=A] open-glib GUEST PATH MODE TICK_MS
 *   ia-client-test [--address=A] batch [--loop=sync|event|glib] [--abort-after=K]
 *                  [--no-commit] [--repeat=N] [--wait] GUEST MODE:PATH...
 *   ia-client-test [--address=A] remove-created GUEST PATH...
 *   ia-client-test [--address=A] manager GUEST UID PATH
 *   ia-client-test [--address=A] manager-async event|glib GUEST UID PATH
 *                  (the calls of "manager" with ia_manager_*_async() on that loop, same keys)
 *   ia-client-test [--address=A] reconnect N
 *   ia-client-test [--address=A] open-channel N GUEST PATH:MODE...
 *                  (N rounds, each after a "go": every PATH:MODE opened with
 *                  ia_client_set_use_channel() on, one JSON line per open)
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib.h>
#include <systemd/sd-event.h>

#include "ia-client.h"
#include "ia-client-glib.h"

static const char *arg_address;

/* ---- output ---------------------------------------------------------------------------- */

static GString *out;

static void j_raw(const char *s) {
        g_string_append(out, s);
}

static void j_str(const char *s) {
        if (!s) {
                g_string_append(out, "null");
                return;
        }
        g_string_append_c(out, '"');
        for (const unsigned char *p = (const unsigned char *) s; *p; p++) {
                if (*p == '"' || *p == '\\')
                        g_string_append_printf(out, "\\%c", *p);
                else if (*p < 0x20)
                        g_string_append_printf(out, "\\u%04x", *p);
                else
                        g_string_append_c(out, (char) *p);
        }
        g_string_append_c(out, '"');
}

static void j_key(const char *k) {
        if (out->len > 0 && out->str[out->len - 1] != '{' && out->str[out->len - 1] != '[')
                g_string_append_c(out, ',');
        j_str(k);
        g_string_append_c(out, ':');
}

static void j_int(const char *k, long long v) {
        j_key(k);
        g_string_append_printf(out, "%lld", v);
}

static void j_kstr(const char *k, const char *v) {
        j_key(k);
        j_str(v);
}

static void j_bool(const char *k, bool v) {
        j_key(k);
        j_raw(v ? "true" : "false");
}

static void j_begin(void) {
        g_string_assign(out, "{");
}

static void j_end(void) {
        g_string_append(out, "}\n");
        fputs(out->str, stdout);
        fflush(stdout);
}

static void j_error(const char *k, const IaError *e) {
        j_key(k);
        if (!e || !e->name) {
                j_raw("null");
                return;
        }
        j_raw("{");
        j_kstr("name", e->name);
        j_kstr("message", e->message);
        j_int("errno", e->error);
        j_raw("}");
}

/* Description of an fd: what the test checks a caller really got. */
static void j_fd(const char *k, int fd) {
        struct stat st;
        int fl = fcntl(fd, F_GETFL), fdfl = fcntl(fd, F_GETFD);

        j_key(k);
        j_raw("{");
        j_int("fdnum", fd);
        if (fl >= 0)
                j_kstr("accmode", (fl & O_ACCMODE) == O_RDONLY ? "O_RDONLY" :
                                  (fl & O_ACCMODE) == O_RDWR ? "O_RDWR" : "O_WRONLY");
        j_bool("cloexec", fdfl >= 0 && (fdfl & FD_CLOEXEC));
        if (fstat(fd, &st) >= 0) {
                j_int("st_dev", (long long) st.st_dev);
                j_int("st_ino", (long long) st.st_ino);
                j_bool("reg", S_ISREG(st.st_mode));
        }
        j_raw("}");
}

static int count_fds(void) {
        DIR *d = opendir("/proc/self/fd");
        struct dirent *de;
        int n = 0;

        if (!d)
                return -errno;
        while ((de = readdir(d)))
                if (de->d_name[0] != '.')
                        n++;
        closedir(d);
        return n - 1;   /* the directory's own fd */
}

static void wait_go(void) {
        char line[64];

        if (!fgets(line, sizeof(line), stdin)) {
                fprintf(stderr, "stdin closed\n");
                exit(EXIT_FAILURE);
        }
}

static IaClient *client_new_or_die(void) {
        IaClient *c = NULL;
        int r = arg_address ? ia_client_new_with_address(arg_address, &c) : ia_client_new(&c);

        if (r < 0) {
                fprintf(stderr, "connect: %s\n", strerror(-r));
                exit(EXIT_FAILURE);
        }
        return c;
}

static int parse_mode(const char *s) {
        int m = ia_image_mode_from_string(s);

        if (m < 0) {
                fprintf(stderr, "bad mode '%s'\n", s);
                exit(EXIT_FAILURE);
        }
        return m;
}

/* ---- open-sync ---------------------------------------------------------------------------- */

static int cmd_open_sync(int argc, char **argv) {
        IaError error = {};
        IaClient *c;
        int fd = -1, r, before, after;

        if (argc != 4)
                return EXIT_FAILURE;
        before = count_fds();
        c = client_new_or_die();
        r = ia_client_open(c, argv[1], argv[2], parse_mode(argv[3]), 0, &error, &fd);

        j_begin();
        j_int("result", r);
        j_error("error", r < 0 ? &error : NULL);
        j_bool("error_errno_matches", r >= 0 || error.error == r);
        j_bool("fd_untouched_on_failure", r >= 0 || fd == -1);
        if (r >= 0) {
                j_fd("fd", fd);
                close(fd);
        }
        ia_error_done(&error);
        ia_client_unref(c);
        after = count_fds();
        j_int("fds_before", before);
        j_int("fds_after", after);
        j_end();
        return EXIT_SUCCESS;
}

/* ---- open-event / open-glib ----------------------------------------------------------------- */

typedef struct AsyncOpen {
        bool done;
        int result;
        int fd;
        IaError error;
        unsigned ticks;                 /* timer ticks so far */
        unsigned ticks_while_pending;   /* ticks seen before the reply */
        uint64_t tick_usec;
        sd_event *event;
        GMainLoop *loop;
} AsyncOpen;

static void on_open(IaClient *client, int result, int fd, const IaError *error, void *userdata) {
        AsyncOpen *a = userdata;

        a->done = true;
        a->result = result;
        a->fd = fd;
        a->ticks_while_pending = a->ticks;
        if (error) {
                /* Borrowed for the call: copy what we report later. */
                a->error.name = strdup(error->name);
                a->error.message = strdup(error->message);
                a->error.error = error->error;
        }
        if (a->event)
                sd_event_exit(a->event, 0);
        if (a->loop)
                g_main_loop_quit(a->loop);
}

static void async_report(AsyncOpen *a, int before, int r_start) {
        j_begin();
        j_int("start", r_start);
        j_int("result", a->result);
        j_error("error", a->result < 0 ? &a->error : NULL);
        j_int("ticks_while_pending", a->ticks_while_pending);
        if (a->result >= 0) {
                j_fd("fd", a->fd);
                close(a->fd);
        }
        ia_error_done(&a->error);
        j_int("fds_before", before);
}

static int on_tick_event(sd_event_source *s, uint64_t usec, void *userdata) {
        AsyncOpen *a = userdata;

        a->ticks++;
        (void) sd_event_source_set_time_relative(s, a->tick_usec);
        (void) sd_event_source_set_enabled(s, SD_EVENT_ON);
        return 0;
}

static int cmd_open_event(int argc, char **argv) {
        AsyncOpen a = { .fd = -1 };
        sd_event_source *tick = NULL;
        IaClient *c;
        int r, before;
        unsigned tick_ms;

        if (argc != 5)
                return EXIT_FAILURE;
        tick_ms = (unsigned) atoi(argv[4]);
        a.tick_usec = tick_ms * 1000ULL;
        before = count_fds();
        c = client_new_or_die();

        r = sd_event_new(&a.event);
        if (r < 0)
                return EXIT_FAILURE;
        r = ia_client_attach_event(c, a.event, 0);
        if (r < 0)
                return EXIT_FAILURE;
        /* Accuracy 1 µs: 0 would mean the default, 250 ms, and coalesce the ticks. */
        r = sd_event_add_time_relative(a.event, &tick, CLOCK_MONOTONIC, a.tick_usec, 1,
                                       on_tick_event, &a);
        if (r < 0)
                return EXIT_FAILURE;
        (void) sd_event_source_set_enabled(tick, SD_EVENT_ON);

        r = ia_client_open_async(c, argv[1], argv[2], parse_mode(argv[3]), 0, on_open, &a, NULL);
        j_begin();
        j_bool("started", r >= 0);
        j_end();
        if (r >= 0)
                (void) sd_event_loop(a.event);

        async_report(&a, before, r);
        sd_event_source_disable_unref(tick);
        ia_client_detach_event(c);
        ia_client_unref(c);
        sd_event_unref(a.event);
        j_int("fds_after", count_fds());
        j_end();
        return EXIT_SUCCESS;
}

static gboolean on_tick_glib(gpointer userdata) {
        AsyncOpen *a = userdata;

        a->ticks++;
        return G_SOURCE_CONTINUE;
}

static int cmd_open_glib(int argc, char **argv) {
        AsyncOpen a = { .fd = -1 };
        GMainContext *ctx;
        GSource *src, *tick;
        IaClient *c;
        int r, before;

        if (argc != 5)
                return EXIT_FAILURE;
        before = count_fds();
        c = client_new_or_die();

        /* A context of our own, as QEMU's iothreads have: nothing may rely on the default. */
        ctx = g_main_context_new();
        a.loop = g_main_loop_new(ctx, FALSE);
        src = ia_client_glib_attach(c, ctx, G_PRIORITY_DEFAULT);
        tick = g_timeout_source_new((guint) atoi(argv[4]));
        g_source_set_callback(tick, on_tick_glib, &a, NULL);
        g_source_attach(tick, ctx);

        r = ia_client_open_async(c, argv[1], argv[2], parse_mode(argv[3]), 0, on_open, &a, NULL);
        j_begin();
        j_bool("started", r >= 0);
        j_end();
        if (r >= 0)
                g_main_loop_run(a.loop);

        async_report(&a, before, r);
        g_source_destroy(tick);
        g_source_unref(tick);
        g_source_destroy(src);
        g_source_unref(src);
        ia_client_unref(c);
        g_main_loop_unref(a.loop);
        g_main_context_unref(ctx);
        j_int("fds_after", count_fds());
        j_end();
        return EXIT_SUCCESS;
}

/* ---- batch ------------------------------------------------------------------------------------- */

typedef struct BatchRun {
        bool done;
        int result;
        char **hook_paths;
        unsigned hook_calls;
} BatchRun;

static void on_batch(IaBatch *b, int result, void *userdata) {
        BatchRun *run = userdata;

        run->done = true;
        run->result = result;
}

static void on_cleanup(IaBatch *b, const char *guest, const char *const *paths, void *userdata) {
        BatchRun *run = userdata;

        run->hook_calls++;
        g_strfreev(run->hook_paths);
        run->hook_paths = g_strdupv((char **) paths);
}

static void j_strv(const char *k, char **l) {
        j_key(k);
        j_raw("[");
        for (size_t i = 0; l && l[i]; i++) {
                if (i > 0)
                        j_raw(",");
                j_str(l[i]);
        }
        j_raw("]");
}

static size_t n_settled(IaBatch *b) {
        size_t n = 0;

        for (size_t i = 0; i < ia_batch_get_n_images(b); i++)
                if (ia_batch_get_image_result(b, i, NULL) != -EINPROGRESS)
                        n++;
        return n;
}

/* Runs the client's connection (already attached to a loop, or not) until cond() holds. */
typedef enum LoopKind { LOOP_SYNC, LOOP_EVENT, LOOP_GLIB } LoopKind;

typedef struct Loop {
        LoopKind kind;
        IaClient *client;
        sd_event *event;
        GMainContext *ctx;
        GSource *src;
} Loop;

static void loop_iterate(Loop *l) {
        switch (l->kind) {
        case LOOP_EVENT:
                (void) sd_event_run(l->event, 100 * 1000);
                break;
        case LOOP_GLIB:
                (void) g_main_context_iteration(l->ctx, TRUE);
                break;
        case LOOP_SYNC:
                if (ia_client_process(l->client) == 0)
                        (void) ia_client_wait(l->client, 100 * 1000);
                break;
        }
}

static int run_one_batch(Loop *l, IaClient *c, const char *guest, int n_images, char **specs,
                         LoopKind kind, long abort_after, bool commit, int iteration) {
        BatchRun run = {};
        IaBatch *b = NULL;
        IaError error = {};
        char **created = NULL;
        int *fds = NULL, r, r_start = 0, before = count_fds();
        size_t failed_index = (size_t) -1, settled_at_abort = 0;
        bool aborted = false;
        gint64 t0;

        r = ia_batch_new(c, guest, &b);
        if (r < 0)
                return r;
        for (int i = 0; i < n_images; i++) {
                char *colon = strchr(specs[i], ':');

                if (!colon)
                        return -EINVAL;
                *colon = '\0';
                r = ia_batch_add(b, colon + 1, parse_mode(specs[i]), 0);
                *colon = ':';
                if (r != i)
                        return r < 0 ? r : -EIO;
        }
        (void) ia_batch_set_cleanup_callback(b, on_cleanup, &run);
        t0 = g_get_monotonic_time();

        if (kind == LOOP_SYNC && abort_after < 0) {
                r = ia_batch_run(b, &error);
                run.done = true;
                run.result = r;
        } else {
                r_start = ia_batch_start(b, on_batch, &run);
                j_begin();
                j_int("iteration", iteration);
                j_int("started", r_start);
                j_end();
                while (r_start >= 0 && !run.done) {
                        if (abort_after >= 0 && !aborted && n_settled(b) >= (size_t) abort_after) {
                                settled_at_abort = n_settled(b);
                                r = ia_batch_abort(b);
                                aborted = true;
                                if (r < 0)
                                        return r;
                        }
                        if (aborted && n_settled(b) == ia_batch_get_n_images(b))
                                break;
                        loop_iterate(l);
                }
                if (r_start < 0)
                        run.result = r_start;
                if (!aborted)
                        (void) ia_batch_get_error(b, &error, &failed_index);
                else
                        (void) ia_batch_get_error(b, &error, NULL);
        }
        if (!aborted && run.result < 0)
                (void) ia_batch_get_error(b, NULL, &failed_index);

        j_begin();
        j_int("iteration", iteration);
        j_int("result", aborted ? -ECANCELED : run.result);
        j_bool("aborted", aborted);
        j_int("state", ia_batch_get_state(b));
        j_error("error", (run.result < 0 || aborted) ? &error : NULL);
        j_int("failed_index", failed_index == (size_t) -1 ? -1 : (long long) failed_index);
        j_int("elapsed_us", g_get_monotonic_time() - t0);
        j_int("settled", (long long) n_settled(b));
        if (aborted)
                j_int("settled_at_abort", (long long) settled_at_abort);
        (void) ia_batch_dup_created_paths(b, &created);
        j_strv("created", created);
        j_int("hook_calls", run.hook_calls);
        j_strv("hook_paths", run.hook_paths);
        j_int("fds_before", before);
        j_int("fds_settled", count_fds());

        if (run.result >= 0 && !aborted && commit) {
                fds = g_new(int, n_images);
                r = ia_batch_commit(b, fds, (size_t) n_images);
                j_int("commit", r);
                j_int("fds_committed", count_fds());
                if (r >= 0) {
                        j_key("fds");
                        j_raw("[");
                        for (int i = 0; i < n_images; i++) {
                                if (i > 0)
                                        j_raw(",");
                                g_string_append(out, "{");
                                j_fd("d", fds[i]);
                                g_string_append(out, "}");
                                close(fds[i]);
                        }
                        j_raw("]");
                }
                g_free(fds);
        } else if (run.result >= 0 && !aborted) {
                /* Not committing: abort hands nothing out and reports the new files. */
                r = ia_batch_abort(b);
                j_int("abort", r);
                j_int("hook_calls_after_abort", run.hook_calls);
                j_strv("hook_paths_after_abort", run.hook_paths);
        }
        ia_batch_unref(b);
        j_int("fds_after", count_fds());
        j_end();

        ia_strv_free(created);
        g_strfreev(run.hook_paths);
        ia_error_done(&error);
        return 0;
}

static int cmd_batch(int argc, char **argv) {
        LoopKind kind = LOOP_EVENT;
        long abort_after = -1;
        int repeat = 1, i, r, before;
        bool commit = true, wait = false;
        Loop l = {};
        IaClient *c;

        for (i = 1; i < argc && g_str_has_prefix(argv[i], "--"); i++) {
                if (g_str_equal(argv[i], "--loop=sync"))
                        kind = LOOP_SYNC;
                else if (g_str_equal(argv[i], "--loop=event"))
                        kind = LOOP_EVENT;
                else if (g_str_equal(argv[i], "--loop=glib"))
                        kind = LOOP_GLIB;
                else if (g_str_has_prefix(argv[i], "--abort-after="))
                        abort_after = atol(argv[i] + strlen("--abort-after="));
                else if (g_str_equal(argv[i], "--no-commit"))
                        commit = false;
                else if (g_str_has_prefix(argv[i], "--repeat="))
                        repeat = atoi(argv[i] + strlen("--repeat="));
                else if (g_str_equal(argv[i], "--wait"))
                        wait = true;
                else
                        return EXIT_FAILURE;
        }
        if (argc - i < 2)
                return EXIT_FAILURE;

        before = count_fds();
        c = client_new_or_die();
        l.kind = kind;
        l.client = c;
        if (kind == LOOP_EVENT) {
                if (sd_event_new(&l.event) < 0 || ia_client_attach_event(c, l.event, 0) < 0)
                        return EXIT_FAILURE;
        } else if (kind == LOOP_GLIB) {
                l.ctx = g_main_context_new();
                l.src = ia_client_glib_attach(c, l.ctx, G_PRIORITY_DEFAULT);
        }

        for (int it = 0; it < repeat; it++) {
                if (wait) {
                        j_begin();
                        j_int("ready", it);
                        j_end();
                        wait_go();
                }
                r = run_one_batch(&l, c, argv[i], argc - i - 1, argv + i + 1, kind, abort_after,
                                  commit, it);
                if (r < 0) {
                        fprintf(stderr, "batch: %s\n", strerror(-r));
                        return EXIT_FAILURE;
                }
        }

        if (l.src) {
                g_source_destroy(l.src);
                g_source_unref(l.src);
        }
        ia_client_unref(c);
        if (l.ctx)
                g_main_context_unref(l.ctx);
        sd_event_unref(l.event);
        j_begin();
        j_int("fds_start", before);
        j_int("fds_end", count_fds());
        j_end();
        return EXIT_SUCCESS;
}

/* ---- manager side ---------------------------------------------------------------------------- */

static int cmd_remove_created(int argc, char **argv) {
        IaError error = {};
        IaClient *c;
        int r;

        if (argc < 3)
                return EXIT_FAILURE;
        c = client_new_or_die();
        r = ia_manager_remove_created(c, argv[1], (const char *const *) argv + 2, &error);
        j_begin();
        j_int("result", r);
        j_error("error", r < 0 ? &error : NULL);
        j_end();
        ia_error_done(&error);
        ia_client_unref(c);
        return EXIT_SUCCESS;
}

/* Every manager call once, against a guest that must not exist yet. */
static int cmd_manager(int argc, char **argv) {
        IaGuestInfo **guests = NULL;
        IaGrantInfo **grants = NULL;
        IaError error = {};
        char *version = NULL;
        const char *guest, *path;
        IaClient *c;
        int r;

        if (argc != 4)
                return EXIT_FAILURE;
        guest = argv[1];
        path = argv[3];
        c = client_new_or_die();

        j_begin();
        r = ia_client_get_version(c, &error, &version);
        j_int("version_r", r);
        j_kstr("version", version);
        free(version);

        r = ia_manager_register_guest(c, guest, "6f1c2a7e-9a4b-4c1e-8d2f-0a1b2c3d4e5f",
                                      "made by ia-client-test", (uid_t) atoi(argv[2]), &error);
        j_int("register", r);
        r = ia_manager_register_guest(c, guest, NULL, NULL, IA_UID_NONE, &error);
        j_int("register_again", r);
        j_error("register_again_error", r < 0 ? &error : NULL);

        r = ia_manager_grant_image(c, guest, path, IA_IMAGE_MODE_CREATE, &error);
        j_int("grant", r);
        r = ia_manager_bind_pid(c, guest, getpid(), &error);
        j_int("bind_pid", r);
        j_error("bind_pid_error", r < 0 ? &error : NULL);

        r = ia_manager_list_guests(c, &error, &guests);
        j_int("list_guests", r);
        for (int i = 0; r > 0 && guests[i]; i++)
                if (g_str_equal(guests[i]->name, guest)) {
                        j_kstr("guest_uuid", guests[i]->uuid);
                        j_kstr("guest_description", guests[i]->description);
                        j_int("guest_uid", guests[i]->uid == IA_UID_NONE ? -1 : (long long) guests[i]->uid);
                        j_int("guest_grants", guests[i]->n_grants);
                        j_int("guest_processes", guests[i]->n_processes);
                }
        guests = ia_guest_info_list_free(guests);

        r = ia_manager_list_grants(c, guest, &error, &grants);
        j_int("list_grants", r);
        for (int i = 0; r > 0 && grants[i]; i++) {
                j_kstr("grant_path", grants[i]->path);
                j_kstr("grant_mode", ia_image_mode_to_string(grants[i]->mode));
                j_bool("grant_created", grants[i]->created);
        }
        grants = ia_grant_info_list_free(grants);

        r = ia_manager_revoke_image(c, guest, path, IA_REVOKE_REMOVE_CREATED, &error);
        j_int("revoke_remove_uncreated", r);
        j_error("revoke_remove_uncreated_error", r < 0 ? &error : NULL);
        r = ia_manager_grant_image(c, guest, path, IA_IMAGE_MODE_CREATE, &error);
        j_int("grant_again", r);
        r = ia_manager_revoke_image(c, guest, path, 0, &error);
        j_int("revoke", r);
        r = ia_manager_revoke_image(c, guest, path, 0, &error);
        j_int("revoke_again", r);
        j_error("revoke_again_error", r < 0 ? &error : NULL);
        r = ia_manager_unregister_guest(c, guest, &error);
        j_int("unregister", r);
        r = ia_manager_unregister_guest(c, guest, &error);
        j_int("unregister_again", r);
        j_error("unregister_again_error", r < 0 ? &error : NULL);
        j_end();

        ia_error_done(&error);
        ia_client_unref(c);
        return EXIT_SUCCESS;
}

/* ---- manager side, asynchronous ---------------------------------------------------------- */

typedef struct Outcome {
        bool done;
        bool in_call;           /* inside the ia_manager_*_async() call itself */
        bool reentered;         /* a callback ran from within the call: a bug */
        int r;
        IaError error;
        IaGuestInfo **guests;
        IaGrantInfo **grants;
        IaPolkitAnswer answer;
} Outcome;

static void outcome_error(Outcome *o, const IaError *error) {
        o->reentered |= o->in_call;
        o->done = true;
        ia_error_done(&o->error);
        if (error) {
                o->error.name = g_strdup(error->name);
                o->error.message = g_strdup(error->message);
                o->error.error = error->error;
        }
}

static void on_manager(IaClient *client, int result, const IaError *error, void *userdata) {
        Outcome *o = userdata;

        o->r = result;
        outcome_error(o, error);
}

static void on_guests(IaClient *client, int result, IaGuestInfo **guests, const IaError *error,
                      void *userdata) {
        Outcome *o = userdata;

        o->r = result;
        o->guests = guests;
        outcome_error(o, error);
}

static void on_grants(IaClient *client, int result, IaGrantInfo **grants, const IaError *error,
                      void *userdata) {
        Outcome *o = userdata;

        o->r = result;
        o->grants = grants;
        outcome_error(o, error);
}

static void on_explain(IaClient *client, int result, IaPolkitAnswer answer,
                       const IaError *error, void *userdata) {
        Outcome *o = userdata;

        o->r = result;
        o->answer = answer;
        outcome_error(o, error);
}

/* Runs the loop until the outcome is in; the call's own return value if it failed at once. */
static int outcome_wait(Loop *l, Outcome *o, int r_start) {
        o->in_call = false;
        if (r_start < 0)
                return r_start;
        while (!o->done)
                loop_iterate(l);
        return o->r;
}

/* The error of the previous call is released before the next one starts. */
#define ASYNC(l, o, call) ({                                                          \
        ia_error_done(&(o)->error);                                                \
        *(o) = (Outcome) { .in_call = true };                                      \
        outcome_wait(l, o, (call));                                                \
})

static int cmd_manager_async(int argc, char **argv) {
        const char *guest, *path;
        const char *paths[2];
        g_autofree char *shared = NULL, *dir = NULL;
        IaPolkitAnswer sync_answer;
        IaRequest *req = NULL;
        bool reentered = false;
        IaError error = {};
        int r, before;
        Outcome o = {}, cancelled = {};
        Loop l = {};
        IaClient *c;

        if (argc != 5)
                return EXIT_FAILURE;
        guest = argv[2];
        path = argv[4];
        before = count_fds();
        c = client_new_or_die();
        l.client = c;
        if (g_str_equal(argv[1], "event")) {
                l.kind = LOOP_EVENT;
                if (sd_event_new(&l.event) < 0 || ia_client_attach_event(c, l.event, 0) < 0)
                        return EXIT_FAILURE;
        } else if (g_str_equal(argv[1], "glib")) {
                l.kind = LOOP_GLIB;
                l.ctx = g_main_context_new();
                l.src = ia_client_glib_attach(c, l.ctx, G_PRIORITY_DEFAULT);
        } else
                return EXIT_FAILURE;

        j_begin();
        r = ASYNC(&l, &o, ia_manager_register_guest_async(c, guest,
                                                          "6f1c2a7e-9a4b-4c1e-8d2f-0a1b2c3d4e5f",
                                                          "made by ia-client-test",
                                                          (uid_t) atoi(argv[3]), on_manager, &o,
                                                          NULL));
        reentered |= o.reentered;
        j_int("register", r);
        r = ASYNC(&l, &o, ia_manager_register_guest_async(c, guest, NULL, NULL, IA_UID_NONE,
                                                          on_manager, &o, NULL));
        reentered |= o.reentered;
        j_int("register_again", r);
        j_error("register_again_error", r < 0 ? &o.error : NULL);

        r = ASYNC(&l, &o, ia_manager_grant_image_async(c, guest, path, IA_IMAGE_MODE_CREATE,
                                                       on_manager, &o, NULL));
        reentered |= o.reentered;
        j_int("grant", r);
        r = ASYNC(&l, &o, ia_manager_bind_pid_async(c, guest, getpid(), on_manager, &o, NULL));
        reentered |= o.reentered;
        j_int("bind_pid", r);
        j_error("bind_pid_error", r < 0 ? &o.error : NULL);

        r = ASYNC(&l, &o, ia_manager_list_guests_async(c, on_guests, &o, NULL));
        reentered |= o.reentered;
        j_int("list_guests", r);
        for (int i = 0; r > 0 && o.guests[i]; i++)
                if (g_str_equal(o.guests[i]->name, guest)) {
                        j_kstr("guest_uuid", o.guests[i]->uuid);
                        j_kstr("guest_description", o.guests[i]->description);
                        j_int("guest_uid", o.guests[i]->uid == IA_UID_NONE ? -1 :
                                           (long long) o.guests[i]->uid);
                        j_int("guest_grants", o.guests[i]->n_grants);
                        j_int("guest_processes", o.guests[i]->n_processes);
                }
        o.guests = ia_guest_info_list_free(o.guests);

        r = ASYNC(&l, &o, ia_manager_list_grants_async(c, guest, on_grants, &o, NULL));
        reentered |= o.reentered;
        j_int("list_grants", r);
        for (int i = 0; r > 0 && o.grants[i]; i++) {
                j_kstr("grant_path", o.grants[i]->path);
                j_kstr("grant_mode", ia_image_mode_to_string(o.grants[i]->mode));
                j_bool("grant_created", o.grants[i]->created);
        }
        o.grants = ia_grant_info_list_free(o.grants);

        r = ASYNC(&l, &o, ia_manager_explain_polkit_async(c, guest, path, IA_IMAGE_MODE_CREATE,
                                                          NULL, (uid_t) atoi(argv[3]), 0,
                                                          on_explain, &o, NULL));
        reentered |= o.reentered;
        j_int("explain", r);
        j_int("explain_answer", o.answer);
        r = ia_manager_explain_polkit(c, guest, path, IA_IMAGE_MODE_CREATE, NULL,
                                      (uid_t) atoi(argv[3]), 0, &error, &sync_answer);
        j_int("explain_sync_answer", r < 0 ? r : (int) sync_answer);

        /* A cancelled request never calls back; one that was not sent fails at once. */
        r = ia_manager_list_guests_async(c, on_guests, &cancelled, &req);
        j_int("cancel_start", r);
        j_int("cancel", ia_request_cancel(req));
        j_bool("cancel_pending_after", ia_request_is_pending(req));
        req = ia_request_unref(req);
        r = ASYNC(&l, &o, ia_manager_list_grants_async(c, guest, on_grants, &o, NULL));
        o.grants = ia_grant_info_list_free(o.grants);
        j_bool("cancelled_called", cancelled.done);
        r = ASYNC(&l, &o, ia_manager_grant_image_async(c, guest, "relative", IA_IMAGE_MODE_CREATE,
                                                       on_manager, &o, NULL));
        j_int("grant_relative", r);
        j_bool("grant_relative_called", o.done);

        paths[0] = path;
        paths[1] = NULL;
        r = ASYNC(&l, &o, ia_manager_remove_created_async(c, guest, paths, on_manager, &o, NULL));
        reentered |= o.reentered;
        j_int("remove_created", r);
        /* that withdrew the grant of the never created path: grant it again for what follows */
        r = ASYNC(&l, &o, ia_manager_grant_image_async(c, guest, path, IA_IMAGE_MODE_CREATE,
                                                       on_manager, &o, NULL));
        reentered |= o.reentered;
        j_int("grant_after_remove", r);

        r = ASYNC(&l, &o, ia_manager_revoke_image_async(c, guest, path, IA_REVOKE_REMOVE_CREATED,
                                                        on_manager, &o, NULL));
        reentered |= o.reentered;
        j_int("revoke_remove_uncreated", r);
        j_error("revoke_remove_uncreated_error", r < 0 ? &o.error : NULL);
        r = ASYNC(&l, &o, ia_manager_grant_image_async(c, guest, path, IA_IMAGE_MODE_CREATE,
                                                       on_manager, &o, NULL));
        reentered |= o.reentered;
        j_int("grant_again", r);
        r = ASYNC(&l, &o, ia_manager_revoke_image_async(c, guest, path, 0, on_manager, &o, NULL));
        reentered |= o.reentered;
        j_int("revoke", r);
        r = ASYNC(&l, &o, ia_manager_revoke_image_async(c, guest, path, 0, on_manager, &o, NULL));
        reentered |= o.reentered;
        j_int("revoke_again", r);
        j_error("revoke_again_error", r < 0 ? &o.error : NULL);
        /* the flagged variants: one uid, one guest unless sharing is asked for; a directory */
        shared = g_strconcat(guest, "-shared", NULL);
        r = ASYNC(&l, &o, ia_manager_register_guest_full_async(c, shared, NULL, NULL,
                                                               (uid_t) atoi(argv[3]), 0,
                                                               on_manager, &o, NULL));
        reentered |= o.reentered;
        j_int("register_same_uid", r);
        j_error("register_same_uid_error", r < 0 ? &o.error : NULL);
        r = ASYNC(&l, &o, ia_manager_register_guest_full_async(c, shared, NULL, NULL,
                                                               (uid_t) atoi(argv[3]),
                                                               IA_REGISTER_SHARE_UID,
                                                               on_manager, &o, NULL));
        reentered |= o.reentered;
        j_int("register_shared", r);
        dir = g_path_get_dirname(path);
        r = ASYNC(&l, &o, ia_manager_grant_image_full_async(c, shared, dir,
                                                            IA_IMAGE_MODE_READ_ONLY,
                                                            IA_GRANT_DIRECTORY, on_manager, &o,
                                                            NULL));
        reentered |= o.reentered;
        j_int("grant_directory", r);
        j_error("grant_directory_error", r < 0 ? &o.error : NULL);
        r = ASYNC(&l, &o, ia_manager_list_grants_async(c, shared, on_grants, &o, NULL));
        reentered |= o.reentered;
        j_int("list_directory_grants", r);
        for (int i = 0; r > 0 && o.grants[i]; i++) {
                j_kstr("directory_grant_path", o.grants[i]->path);
                j_bool("directory_grant_is_directory", o.grants[i]->directory);
        }
        o.grants = ia_grant_info_list_free(o.grants);
        j_int("grant_bad_flags", ia_manager_grant_image_full_async(c, shared, dir,
                                                                   IA_IMAGE_MODE_READ_ONLY,
                                                                   UINT64_C(1) << 40, on_manager,
                                                                   &o, NULL));
        r = ASYNC(&l, &o, ia_manager_unregister_guest_async(c, shared, on_manager, &o, NULL));
        reentered |= o.reentered;
        j_int("unregister_shared", r);

        r = ASYNC(&l, &o, ia_manager_unregister_guest_async(c, guest, on_manager, &o, NULL));
        reentered |= o.reentered;
        j_int("unregister", r);
        r = ASYNC(&l, &o, ia_manager_unregister_guest_async(c, guest, on_manager, &o, NULL));
        reentered |= o.reentered;
        j_int("unregister_again", r);
        j_error("unregister_again_error", r < 0 ? &o.error : NULL);
        j_bool("reentered", reentered);
        ia_error_done(&o.error);
        ia_error_done(&error);

        if (l.src) {
                g_source_destroy(l.src);
                g_source_unref(l.src);
        }
        ia_client_unref(c);
        if (l.ctx)
                g_main_context_unref(l.ctx);
        sd_event_unref(l.event);
        j_int("fds_before", before);
        j_int("fds_after", count_fds());
        j_end();
        return EXIT_SUCCESS;
}

/* get_version N times, each after a "go": the test restarts the bus in between. */
static int cmd_reconnect(int argc, char **argv) {
        IaClient *c;
        int n;

        if (argc != 2)
                return EXIT_FAILURE;
        n = atoi(argv[1]);
        c = client_new_or_die();
        for (int i = 0; i < n; i++) {
                IaError error = {};
                char *version = NULL;
                int r;

                wait_go();
                r = ia_client_get_version(c, &error, &version);
                j_begin();
                j_int("i", i);
                j_int("result", r);
                j_error("error", r < 0 ? &error : NULL);
                j_int("fds", count_fds());
                j_end();
                free(version);
                ia_error_done(&error);
        }
        ia_client_unref(c);
        return EXIT_SUCCESS;
}

/* ---- open-channel ------------------------------------------------------------------------ */

static int cmd_open_channel(int argc, char **argv) {
        IaClient *c;
        int n;

        if (argc < 4)
                return EXIT_FAILURE;
        n = atoi(argv[1]);
        c = client_new_or_die();
        if (ia_client_set_use_channel(c, true) < 0)
                return EXIT_FAILURE;
        for (int i = 0; i < n; i++) {
                wait_go();
                for (int k = 3; k < argc; k++) {
                        g_autofree char *path = g_strdup(argv[k]);
                        char *colon = strrchr(path, ':');
                        IaError error = {};
                        int fd = -1, r;

                        if (!colon)
                                return EXIT_FAILURE;
                        *colon = '\0';
                        r = ia_client_open(c, argv[2], path, parse_mode(colon + 1), 0, &error, &fd);
                        j_begin();
                        j_int("i", i);
                        j_key("path");
                        j_str(path);
                        j_int("result", r);
                        j_error("error", r < 0 ? &error : NULL);
                        j_bool("error_errno_matches", r >= 0 || error.error == r);
                        if (r >= 0) {
                                j_fd("fd", fd);
                                close(fd);
                        }
                        j_int("fds", count_fds());
                        j_end();
                        ia_error_done(&error);
                }
        }
        ia_client_unref(c);
        j_begin();
        j_int("fds_at_end", count_fds());
        j_end();
        return EXIT_SUCCESS;
}

int main(int argc, char **argv) {
        int i = 1;

        out = g_string_new(NULL);
        if (i < argc && g_str_has_prefix(argv[i], "--address=")) {
                arg_address = argv[i] + strlen("--address=");
                i++;
        }
        if (i >= argc) {
                fprintf(stderr, "usage: see the head of ia-client-test.c\n");
                return EXIT_FAILURE;
        }
        argc -= i;
        argv += i;

        if (g_str_equal(argv[0], "open-sync"))
                return cmd_open_sync(argc, argv);
        if (g_str_equal(argv[0], "open-event"))
                return cmd_open_event(argc, argv);
        if (g_str_equal(argv[0], "open-glib"))
                return cmd_open_glib(argc, argv);
        if (g_str_equal(argv[0], "batch"))
                return cmd_batch(argc, argv);
        if (g_str_equal(argv[0], "remove-created"))
                return cmd_remove_created(argc, argv);
        if (g_str_equal(argv[0], "reconnect"))
                return cmd_reconnect(argc, argv);
        if (g_str_equal(argv[0], "open-channel"))
                return cmd_open_channel(argc, argv);
        if (g_str_equal(argv[0], "manager"))
                return cmd_manager(argc, argv);
        if (g_str_equal(argv[0], "manager-async"))
                return cmd_manager_async(argc, argv);
        fprintf(stderr, "unknown command '%s'\n", argv[0]);
        return EXIT_FAILURE;
}

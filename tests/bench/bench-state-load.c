/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bench-state-load.c — how long state_load() takes for a large registry.
 *
 *     bench-state-load [GUESTS [GRANTS-PER-GUEST [RUNS]]]     (default 10000 100 5)
 *
 * Builds GUESTS × GRANTS-PER-GUEST grants (every guest also has one binding with one admitted
 * connection, every tenth grant a created-inode record), writes them with
 * state_write_snapshot() into a temp directory, then loads that directory RUNS times into a
 * fresh registry and prints one JSON line per figure, e.g.
 *
 *     {"name":"state_load_1000000","unit":"ms","median":512.3,"min":...,"max":...,"n":5}
 *
 * "state_load_cpu_*" is the CPU time of the same loads: on a shared machine it moves less than
 * the wall-clock time.  The file is in the page cache (it was just written), so this measures
 * reading, checking, parsing and building the registry: what a restarted service pays.
 *
 * Every step runs in its own child of a parent that never allocates much, because that is
 * what a restart is: a load in a process that has just freed a million grants measures
 * malloc's consolidation of them instead, and a child of a process with a big heap pays
 * copy-on-write faults on it.  Not a meson test: run it by hand, in a --buildtype=release build.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <glib.h>

#include "registry.h"
#include "state.h"

typedef struct Result {
        int error;              /* negative errno, 0 */
        double wall_ms;
        double cpu_ms;
} Result;

static unsigned n_guests = 10000, n_grants = 100;
static RegistryLimits limits;

static double clock_ms(clockid_t id) {
        struct timespec ts;

        (void) clock_gettime(id, &ts);
        return (double) ts.tv_sec * 1e3 + (double) ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b) {
        double x = *(const double *) a, y = *(const double *) b;

        return (x > y) - (x < y);
}

static unsigned parse_arg(const char *s, const char *what) {
        char *end;
        unsigned long v;

        errno = 0;
        v = strtoul(s, &end, 10);
        if (errno != 0 || *end != '\0' || v == 0 || v > 10000000) {
                fprintf(stderr, "bad %s '%s'\n", what, s);
                exit(EXIT_FAILURE);
        }
        return (unsigned) v;
}

static void print_stats(const char *name, uint64_t total, double *v, unsigned n) {
        qsort(v, n, sizeof(double), cmp_double);
        printf("{\"name\":\"%s_%" PRIu64 "\",\"unit\":\"ms\",\"median\":%.1f,\"min\":%.1f,"
               "\"max\":%.1f,\"n\":%u}\n", name, total,
               n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2, v[0], v[n - 1], n);
}

/* Child: builds the registry and writes the snapshot. */
static int generate(const char *state, Result *ret) {
        g_autoptr(Registry) r = registry_new(&limits);
        double wall, cpu;
        int k;

        for (unsigned i = 0; i < n_guests; i++) {
                char name[32], path[128];
                Binding *b;

                snprintf(name, sizeof(name), "guest-%05u", i);
                k = registry_add_guest(r, name, "0f3c5a6e-1b2d-4c8e-9a7f-112233445566",
                                       "benchmark guest", false, 0, NULL);
                if (k < 0)
                        return k;
                for (unsigned j = 0; j < n_grants; j++) {
                        snprintf(path, sizeof(path), "/var/lib/libvirt/images/%s/disk-%03u.qcow2",
                                 name, j);
                        k = registry_grant(r, name, path, (IaMode) (j % _IA_MODE_MAX));
                        if (k < 0)
                                return k;
                        if (j % 10 == 0) {
                                k = registry_mark_created(r, name, path, &(FileId) { .dev = 2049, .ino = 1000000 + j });
                                if (k < 0)
                                        return k;
                        }
                }
                k = registry_add_binding(r, name, 1000 + (pid_t) i, 123456789, 107, -1, 0, &b);
                if (k < 0)
                        return k;
                k = binding_add_connection(b, ":1.42", &limits);
                if (k < 0)
                        return k;
        }

        wall = clock_ms(CLOCK_MONOTONIC);
        cpu = clock_ms(CLOCK_PROCESS_CPUTIME_ID);
        k = state_write_snapshot(r, state);
        ret->wall_ms = clock_ms(CLOCK_MONOTONIC) - wall;
        ret->cpu_ms = clock_ms(CLOCK_PROCESS_CPUTIME_ID) - cpu;
        return k;
}

/* Child: one load, not freed afterwards (that is not part of what is measured). */
static int load(const char *dir, Result *ret) {
        Registry *r = registry_new(&limits);
        State *s = NULL;
        char *message = NULL;
        uint64_t total = (uint64_t) n_guests * n_grants;
        double wall, cpu;
        int k;

        k = state_open(dir, &s);
        if (k < 0)
                return k;

        wall = clock_ms(CLOCK_MONOTONIC);
        cpu = clock_ms(CLOCK_PROCESS_CPUTIME_ID);
        k = state_load(s, r, &message);
        ret->wall_ms = clock_ms(CLOCK_MONOTONIC) - wall;
        ret->cpu_ms = clock_ms(CLOCK_PROCESS_CPUTIME_ID) - cpu;
        if (k < 0) {
                fprintf(stderr, "state_load: %s\n", message ? message : g_strerror(-k));
                return k;
        }
        if (r->n_grants != total) {
                fprintf(stderr, "loaded %" PRIu64 " grants, expected %" PRIu64 "\n",
                        r->n_grants, total);
                return -EBADMSG;
        }
        return 0;
}

static int in_child(int (*fn)(const char *, Result *), const char *arg, Result *ret) {
        int pipefd[2], status;
        ssize_t n;
        pid_t pid;

        if (pipe2(pipefd, O_CLOEXEC) < 0)
                return -errno;

        pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0) {
                Result res = {};

                res.error = fn(arg, &res);
                _exit(write(pipefd[1], &res, sizeof(res)) == sizeof(res) ? 0 : 1);
        }

        (void) close(pipefd[1]);
        n = read(pipefd[0], ret, sizeof(*ret));
        (void) close(pipefd[0]);
        if (waitpid(pid, &status, 0) < 0)
                return -errno;
        if (n != sizeof(*ret) || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
                return -ECHILD;
        return ret->error;
}

int main(int argc, char *argv[]) {
        unsigned runs = 5;
        g_autoptr(GError) error = NULL;
        g_autofree char *dir = NULL, *state = NULL, *journal = NULL;
        g_autofree double *wall = NULL, *cpu = NULL;
        Result res;
        uint64_t total;
        struct stat st;
        int k;

        if (argc > 1)
                n_guests = parse_arg(argv[1], "guest count");
        if (argc > 2)
                n_grants = parse_arg(argv[2], "grant count");
        if (argc > 3)
                runs = parse_arg(argv[3], "run count");
        if (argc > 4) {
                fprintf(stderr, "usage: %s [GUESTS [GRANTS-PER-GUEST [RUNS]]]\n", argv[0]);
                return EXIT_FAILURE;
        }
        total = (uint64_t) n_guests * n_grants;

        limits = REGISTRY_LIMITS_DEFAULT;
        limits.max_guests = MAX(limits.max_guests, n_guests);
        limits.max_grants_per_guest = MAX(limits.max_grants_per_guest, n_grants);

        dir = g_dir_make_tmp("bench-state-XXXXXX", &error);
        if (!dir) {
                fprintf(stderr, "cannot make a temp directory: %s\n", error->message);
                return EXIT_FAILURE;
        }
        state = g_build_filename(dir, "state", NULL);
        journal = g_build_filename(dir, "journal", NULL);

        k = in_child(generate, state, &res);
        if (k < 0) {
                fprintf(stderr, "generating the snapshot failed: %s\n", g_strerror(-k));
                goto finish;
        }
        print_stats("state_write_snapshot", total, &res.wall_ms, 1);

        wall = g_new(double, runs);
        cpu = g_new(double, runs);
        for (unsigned i = 0; i < runs; i++) {
                k = in_child(load, dir, &res);
                if (k < 0) {
                        fprintf(stderr, "load %u failed: %s\n", i, g_strerror(-k));
                        goto finish;
                }
                wall[i] = res.wall_ms;
                cpu[i] = res.cpu_ms;
        }
        print_stats("state_load", total, wall, runs);
        print_stats("state_load_cpu", total, cpu, runs);
        if (stat(state, &st) == 0)
                printf("{\"name\":\"state_snapshot_size_%" PRIu64 "\",\"unit\":\"bytes\","
                       "\"value\":%lld}\n", total, (long long) st.st_size);

finish:
        (void) unlink(state);
        (void) unlink(journal);
        (void) rmdir(dir);
        return k < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}

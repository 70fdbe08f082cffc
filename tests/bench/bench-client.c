/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bench-client.c — the load generator of the benchmarks (tests/bench/bench.py runs it).
 *
 * A caller written in C with sd-bus, so that what is measured is the service and the bus and
 * not the client: a Python caller costs more per call than the service does.
 *
 *     bench-client --call=open|ref|checks|channel|direct|polkit [OPTIONS]
 *
 *   --call=open       OpenImage(guest, path, mode, {}) on org.example.ImageAccess
 *   --call=ref        the same arguments to OpenFd() of bench-ref-service (the transport floor)
 *   --call=checks     the same to bench-ref-checks (the floor of a warm open that
 *                     keeps every check: the daemon's safe open and audit record, nothing else)
 *   --call=channel    ia_client_open() of libimageaccess with a channel (one at a time): the
 *                     service answers repeats without the bus daemon; the warm-up's first open
 *                     gets the channel and polkit's yes over the bus
 *   --call=direct     open(path, O_RDONLY|O_CLOEXEC) + close() in this process, no bus (the
 *                     physical floor; run it as root, as the service opens)
 *   --call=polkit     CheckAuthorization of org.example.imageaccess.open-image with the details
 *                     OpenImage passes (guest, image, mode, guest-uuid), about the subject
 *                     --subject=NAME (a bus name) or --subject-process=PID:START:UID (a
 *                     unix-process, as the service names a caller whose start time it knows)
 *   --guest=NAME --mode=MODE --uuid=UUID
 *   --path=PATH       repeatable: call i uses path i mod N (a batch over different images)
 *   --count=N         measured calls (after --warmup=N unmeasured ones)
 *   --in-flight=K     calls outstanding at once (pipelined on the one connection)
 *   --group=G         report the time of each group of G calls instead of each call: the next
 *                     group starts when the previous one is complete (--group=64 --in-flight=64
 *                     is a 64-image batch, --group=64 --in-flight=1 are 64 opens one after
 *                     the other)
 *   --sync            after the warm-up, print "ready" and wait for a line on stdin before the
 *                     measured calls (to start several clients together)
 *   --raw             add "samples": every measured time (µs), in the order measured
 *   --unique-name     print the connection's unique name, then wait for stdin to close (a
 *                     non-root subject for --call=polkit)
 *
 * Output: one JSON object on stdout: median, p99, mean, min, max (µs, of calls or groups),
 * n, errors (count) and error_names, start and end (CLOCK_MONOTONIC seconds, comparable
 * between processes), rate (completed calls per second), cpu_s (this process's CPU time).
 * The loop is bounded: every call carries a 60 s D-Bus timeout, and count ≤ 10,000,000.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <systemd/sd-bus.h>

#include "ia-client.h"

#define MAX_PATHS 4096
#define CALL_TIMEOUT_USEC (60ULL * 1000000ULL)

typedef enum CallType { CALL_OPEN, CALL_REF, CALL_CHECKS, CALL_POLKIT, CALL_DIRECT, CALL_CHANNEL } CallType;

static CallType call_type = CALL_OPEN;
static const char *guest = "bench", *mode = "read-only", *uuid = "", *subject = NULL;
static bool subject_is_process;
static uint32_t subject_pid;
static uint64_t subject_start;
static int32_t subject_uid;
static const char *paths[MAX_PATHS];
static unsigned n_paths;
static unsigned count = 1000, warmup = 0, in_flight = 1, group = 0;
static bool sync_start, print_unique_name, print_raw;

/* Run state. */
static sd_bus *bus;
static unsigned sent, done, n_errors, group_done;
static uint64_t *samples;       /* ns, per call or per group */
static unsigned n_samples;
static uint64_t group_start;
static bool measuring;

#define ERROR_NAMES_MAX 16
static struct { char *name; unsigned n; } error_names[ERROR_NAMES_MAX];

static uint64_t now_ns(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000000ULL + (uint64_t) ts.tv_nsec;
}

static void count_error(const char *name) {
        n_errors++;
        for (unsigned i = 0; i < ERROR_NAMES_MAX; i++) {
                if (!error_names[i].name) {
                        error_names[i].name = strdup(name ?: "?");
                        error_names[i].n = 1;
                        return;
                }
                if (strcmp(error_names[i].name, name ?: "?") == 0) {
                        error_names[i].n++;
                        return;
                }
        }
}

static int on_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        uint64_t t0 = (uint64_t) (uintptr_t) userdata;
        const sd_bus_error *e = sd_bus_message_get_error(reply);

        if (e)
                count_error(e->name);
        else if (call_type == CALL_POLKIT) {
                int authorized = 0, challenge = 0;

                if (sd_bus_message_enter_container(reply, 'r', "bba{ss}") < 0 ||
                    sd_bus_message_read(reply, "bb", &authorized, &challenge) < 0 || !authorized)
                        count_error("bench.NotAuthorized");
        } else {
                int fd;

                if (sd_bus_message_read(reply, "h", &fd) < 0 || fd < 0)
                        count_error("bench.NoFd");
                /* The fd belongs to the reply message and is closed with it. */
        }

        done++;
        if (measuring) {
                if (group == 0)
                        samples[n_samples++] = now_ns() - t0;
                else if (++group_done == group) {
                        samples[n_samples++] = now_ns() - group_start;
                        group_done = 0;
                }
        }
        return 0;
}

static int send_one(unsigned i) {
        sd_bus_message *m = NULL;
        const char *path = paths[i % n_paths];
        int r;

        switch (call_type) {
        case CALL_OPEN:
                r = sd_bus_message_new_method_call(bus, &m, "org.example.ImageAccess",
                                                   "/org/example/ImageAccess",
                                                   "org.example.ImageAccess", "OpenImage");
                if (r >= 0)
                        r = sd_bus_message_append(m, "sssa{sv}", guest, path, mode, 0);
                break;
        case CALL_REF:
        case CALL_CHECKS:
                r = sd_bus_message_new_method_call(bus, &m,
                                                   call_type == CALL_CHECKS ?
                                                   "org.example.ImageAccessBench.Checks" :
                                                   "org.example.ImageAccessBench",
                                                   "/org/example/ImageAccessBench",
                                                   "org.example.ImageAccessBench", "OpenFd");
                if (r >= 0)
                        r = sd_bus_message_append(m, "sssa{sv}", guest, path, mode, 0);
                break;
        case CALL_POLKIT:
                r = sd_bus_message_new_method_call(bus, &m, "org.freedesktop.PolicyKit1",
                                                   "/org/freedesktop/PolicyKit1/Authority",
                                                   "org.freedesktop.PolicyKit1.Authority",
                                                   "CheckAuthorization");
                if (r < 0)
                        break;
                r = subject_is_process ?
                        sd_bus_message_append(m, "(sa{sv})", "unix-process", 3,
                                              "pid", "u", subject_pid,
                                              "start-time", "t", subject_start,
                                              "uid", "i", subject_uid) :
                        sd_bus_message_append(m, "(sa{sv})", "system-bus-name", 1,
                                              "name", "s", subject);
                if (r >= 0)
                        r = sd_bus_message_append(m, "sa{ss}us",
                                                  "org.example.imageaccess.open-image", 4,
                                                  "guest", guest, "image", path, "mode", mode,
                                                  "guest-uuid", uuid, 0, "");
                break;
        default:
                r = -EINVAL;
        }
        if (r >= 0)
                r = sd_bus_call_async(bus, NULL, m, on_reply, (void *) (uintptr_t) now_ns(),
                                      CALL_TIMEOUT_USEC);
        sd_bus_message_unref(m);
        return r;
}

/* --call=direct: the same file opened and closed @n times, each timed. */
static int run_direct(unsigned n) {
        for (unsigned i = 0; i < n; i++) {
                uint64_t t0 = now_ns();
                int fd = open(paths[i % n_paths], O_RDONLY | O_CLOEXEC | O_NOCTTY);

                if (fd < 0)
                        count_error("bench.OpenFailed");
                else
                        close(fd);
                if (measuring)
                        samples[n_samples++] = now_ns() - t0;
        }
        return 0;
}

/* --call=channel: synchronous opens through libimageaccess, which uses its channel. */
static IaClient *ia;

static int run_channel(unsigned n) {
        for (unsigned i = 0; i < n; i++) {
                IaError e = {};
                uint64_t t0 = now_ns();
                int fd = -1, r;

                r = ia_client_open(ia, guest, paths[i % n_paths], ia_image_mode_from_string(mode),
                                   0, &e, &fd);
                if (r < 0)
                        count_error(e.name);
                else
                        close(fd);
                ia_error_done(&e);
                if (measuring)
                        samples[n_samples++] = now_ns() - t0;
        }
        return 0;
}

/* Sends @n calls, at most in_flight outstanding (and, with groups, never across a group
 * boundary), and returns once all are answered. */
static int run_calls(unsigned n) {
        unsigned base_sent = sent, base_done = done;
        int r;

        if (call_type == CALL_DIRECT)
                return run_direct(n);
        if (call_type == CALL_CHANNEL)
                return run_channel(n);

        while (done - base_done < n) {
                while (sent - base_sent < n && sent - done < in_flight &&
                       (group == 0 || !measuring ||
                        (sent - base_sent) / group == (done - base_done) / group)) {
                        if (group && measuring && (sent - base_sent) % group == 0)
                                group_start = now_ns();
                        r = send_one(sent);
                        if (r < 0)
                                return r;
                        sent++;
                }
                r = sd_bus_process(bus, NULL);
                if (r < 0)
                        return r;
                if (r > 0)
                        continue;
                r = sd_bus_wait(bus, UINT64_MAX);
                if (r < 0 && r != -EINTR)
                        return r;
        }
        return 0;
}

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;

        return (x > y) - (x < y);
}

static double pct(const uint64_t *v, unsigned n, double p) {
        /* Nearest rank. */
        unsigned k = (unsigned) (p * n + 0.999999);

        if (n == 0)
                return 0;
        if (k < 1)
                k = 1;
        if (k > n)
                k = n;
        return (double) v[k - 1] / 1000.0;
}

static double median(const uint64_t *v, unsigned n) {
        if (n == 0)
                return 0;
        return n % 2 ? v[n / 2] / 1000.0 : (v[n / 2 - 1] + v[n / 2]) / 2000.0;
}

static unsigned parse_uint(const char *s, const char *what, unsigned max) {
        char *end;
        unsigned long v;

        errno = 0;
        v = strtoul(s, &end, 10);
        if (errno || *end || v > max) {
                fprintf(stderr, "bench-client: bad %s '%s'\n", what, s);
                exit(2);
        }
        return (unsigned) v;
}

static void parse_args(int argc, char *argv[]) {
        static const struct option options[] = {
                { "call", required_argument, NULL, 'c' },
                { "guest", required_argument, NULL, 'g' },
                { "path", required_argument, NULL, 'p' },
                { "mode", required_argument, NULL, 'm' },
                { "uuid", required_argument, NULL, 'u' },
                { "subject", required_argument, NULL, 's' },
                { "subject-process", required_argument, NULL, 'P' },
                { "count", required_argument, NULL, 'n' },
                { "warmup", required_argument, NULL, 'w' },
                { "in-flight", required_argument, NULL, 'k' },
                { "group", required_argument, NULL, 'G' },
                { "sync", no_argument, NULL, 'S' },
                { "unique-name", no_argument, NULL, 'U' },
                { "raw", no_argument, NULL, 'R' },
                {}
        };
        int c;

        while ((c = getopt_long(argc, argv, "", options, NULL)) >= 0)
                switch (c) {
                case 'c':
                        if (strcmp(optarg, "open") == 0)
                                call_type = CALL_OPEN;
                        else if (strcmp(optarg, "ref") == 0)
                                call_type = CALL_REF;
                        else if (strcmp(optarg, "checks") == 0)
                                call_type = CALL_CHECKS;
                        else if (strcmp(optarg, "polkit") == 0)
                                call_type = CALL_POLKIT;
                        else if (strcmp(optarg, "direct") == 0)
                                call_type = CALL_DIRECT;
                        else if (strcmp(optarg, "channel") == 0)
                                call_type = CALL_CHANNEL;
                        else {
                                fprintf(stderr, "bench-client: unknown --call=%s\n", optarg);
                                exit(2);
                        }
                        break;
                case 'g': guest = optarg; break;
                case 'p':
                        if (n_paths == MAX_PATHS) {
                                fprintf(stderr, "bench-client: too many --path\n");
                                exit(2);
                        }
                        paths[n_paths++] = optarg;
                        break;
                case 'm': mode = optarg; break;
                case 'u': uuid = optarg; break;
                case 's': subject = optarg; break;
                case 'P':
                        if (sscanf(optarg, "%" SCNu32 ":%" SCNu64 ":%" SCNd32, &subject_pid,
                                   &subject_start, &subject_uid) != 3) {
                                fprintf(stderr, "bench-client: --subject-process=PID:START:UID\n");
                                exit(2);
                        }
                        subject = optarg;
                        subject_is_process = true;
                        break;
                case 'n': count = parse_uint(optarg, "count", 10000000); break;
                case 'w': warmup = parse_uint(optarg, "warmup", 10000000); break;
                case 'k': in_flight = parse_uint(optarg, "in-flight", 4096); break;
                case 'G': group = parse_uint(optarg, "group", 4096); break;
                case 'S': sync_start = true; break;
                case 'U': print_unique_name = true; break;
                case 'R': print_raw = true; break;
                default:
                        exit(2);
                }
        if (!print_unique_name && n_paths == 0) {
                fprintf(stderr, "bench-client: --path is needed\n");
                exit(2);
        }
        if (call_type == CALL_POLKIT && !subject && !print_unique_name) {
                fprintf(stderr, "bench-client: --call=polkit needs --subject\n");
                exit(2);
        }
        if (in_flight == 0)
                in_flight = 1;
        if (group && count % group) {
                fprintf(stderr, "bench-client: --count must be a multiple of --group\n");
                exit(2);
        }
        if (group && in_flight > group)
                in_flight = group;
}

int main(int argc, char *argv[]) {
        struct rusage ru;
        uint64_t t_start, t_end;
        double cpu, sum = 0;
        int r;

        parse_args(argc, argv);

        if (call_type == CALL_CHANNEL) {
                r = ia_client_new(&ia);
                if (r >= 0)
                        r = ia_client_set_use_channel(ia, true);
        } else
                r = call_type == CALL_DIRECT ? 0 : sd_bus_open_system(&bus);
        if (r < 0) {
                fprintf(stderr, "bench-client: cannot connect to the bus: %s\n", strerror(-r));
                return 1;
        }

        if (print_unique_name) {
                const char *name;
                char buf[64];

                r = sd_bus_get_unique_name(bus, &name);
                if (r < 0)
                        return 1;
                printf("%s\n", name);
                fflush(stdout);
                while (fgets(buf, sizeof(buf), stdin))
                        ;
                sd_bus_flush_close_unref(bus);
                return 0;
        }

        samples = calloc(count ? count : 1, sizeof(uint64_t));
        if (!samples)
                return 1;

        r = run_calls(warmup);
        if (r < 0) {
                fprintf(stderr, "bench-client: warm-up failed: %s\n", strerror(-r));
                return 1;
        }
        /* Warm-up errors are not what is measured (but say so). */
        if (n_errors)
                fprintf(stderr, "bench-client: %u errors during the warm-up\n", n_errors);
        n_errors = 0;
        for (unsigned i = 0; i < ERROR_NAMES_MAX; i++) {
                free(error_names[i].name);
                error_names[i].name = NULL;
        }

        if (sync_start) {
                char buf[64];

                printf("ready\n");
                fflush(stdout);
                if (!fgets(buf, sizeof(buf), stdin))
                        return 1;
        }

        measuring = true;
        t_start = now_ns();
        r = run_calls(count);
        t_end = now_ns();
        if (r < 0) {
                fprintf(stderr, "bench-client: calls failed: %s\n", strerror(-r));
                return 1;
        }

        getrusage(RUSAGE_SELF, &ru);
        cpu = ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
              (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;

        if (print_raw) {
                printf("{\"samples\":[");
                for (unsigned i = 0; i < n_samples; i++)
                        printf("%s%.3f", i ? "," : "", samples[i] / 1000.0);
                printf("],");
        } else
                printf("{");

        qsort(samples, n_samples, sizeof(uint64_t), cmp_u64);
        for (unsigned i = 0; i < n_samples; i++)
                sum += samples[i] / 1000.0;

        printf("\"median\":%.3f,\"p99\":%.3f,\"mean\":%.3f,\"min\":%.3f,\"max\":%.3f,"
               "\"n\":%u,\"calls\":%u,\"errors\":%u,\"error_names\":{",
               median(samples, n_samples), pct(samples, n_samples, 0.99),
               n_samples ? sum / n_samples : 0.0, pct(samples, n_samples, 0.0),
               pct(samples, n_samples, 1.0), n_samples, count, n_errors);
        for (unsigned i = 0; i < ERROR_NAMES_MAX && error_names[i].name; i++)
                printf("%s\"%s\":%u", i ? "," : "", error_names[i].name, error_names[i].n);
        printf("},\"start\":%.6f,\"end\":%.6f,\"rate\":%.1f,\"cpu_s\":%.3f}\n",
               t_start / 1e9, t_end / 1e9,
               t_end > t_start ? count / ((t_end - t_start) / 1e9) : 0.0, cpu);

        if (bus)
                sd_bus_flush_close_unref(bus);
        ia_client_unref(ia);
        free(samples);
        return 0;
}

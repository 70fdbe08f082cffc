/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ia-attack.c — the hostile callers of tests/integration/test_attacks.py and test_faults.py.
 *
 * Python is too slow to race the kernel or to make 100,000 calls in a test's time, so the
 * attacks that need speed are here, in C with sd-bus.  Each mode prints one JSON object on
 * stdout when it is done.  Every loop is bounded by --max-seconds (default 60).
 *
 *   ia-attack swap --a=PATH --b=PATH [--min=N] [--reached=F] [--until=F]
 *       renameat2(RENAME_EXCHANGE) of A and B in a tight loop: at least N times, and on until F
 *       exists; creates --reached when N is reached.  Ends on an even count (A and B back).
 *   ia-attack open-loop --address=A --guest=G --path=P --mode=M [--dev=D --ino=I]
 *                       [--min=N] [--in-flight=K] [--reached=F] [--until=F]
 *       OpenImage(G, P, M, {}) pipelined K deep, at least N calls and on until F exists.  Every
 *       fd received is checked: (st_dev, st_ino) must be (D, I) and the access mode exactly M's.
 *   ia-attack disconnect --address=A --guest=G --path=P --mode=M [--count=N] [--max-delay-us=U]
 *       N times: connect, send OpenImage without waiting, wait 0..U µs, close.
 *   ia-attack monitor --address=A [--until=F]
 *       BecomeMonitor (root): prints every OpenImage call and every reply whose signature has
 *       an fd, one JSON object per line, until F exists.
 *   ia-attack fdspam --address=A --guest=G --path=P [--count=N] [--fds=16]
 *       N calls, each carrying --fds unsolicited fds in ways the service must refuse.
 *   ia-attack conns --address=A --guest=G --path=P --mode=M [--count=N]
 *       N connections at once, one OpenImage on each, all in flight together.
 *   ia-attack modecheck --address=A --guest=G --path=P
 *       OpenImage read-only, then every way to write through or upgrade the fd.
 *   ia-attack manager-loop --address=A --image=P --image2=P2 --dir=D [--pause=F] [--until=F]
 *       A VM manager's steady work, for the kill storms: for guest ks<k>, k = 0, 1, …:
 *       RegisterGuest, GrantImage(P, read-only), GrantImage(P2, read-write),
 *       GrantImage(D/new-<k>.img, create), RevokeImage(P2).  Each call is repeated until it is
 *       answered for good (the service may be down); a success (or GuestExists / NotGranted
 *       for a repeated register / revoke) prints {"ack": [k, step]}.  While F exists it
 *       stops between calls and writes F.paused with the step it has not finished.
 *   ia-attack random --address=A --spec=FILE [--seed=S] [--count=N]
 *       N random calls (valid, invalid, wrong types, random fds, random names and option
 *       dicts), every fd received checked against a model of the grants (see the spec format
 *       at load_spec()).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <systemd/sd-bus.h>

#define BUS_NAME "org.example.ImageAccess"
#define OBJ_PATH "/org/example/ImageAccess"
#define IFACE "org.example.ImageAccess"
#define MGR_IFACE "org.example.ImageAccess.Manager"
#define CALL_TIMEOUT_USEC (30ULL * 1000000ULL)

#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

/* ---- options ------------------------------------------------------------------------------ */

static const char *opt_address, *opt_guest, *opt_path, *opt_mode = "read-only", *opt_a, *opt_b;
static const char *opt_reached, *opt_until, *opt_spec, *opt_image, *opt_image2, *opt_dir, *opt_pause;
static unsigned long long opt_min, opt_count = 1000, opt_in_flight = 8, opt_max_delay_us = 2000;
static unsigned long long opt_dev, opt_ino, opt_seed = 1, opt_fds = 16;
static double opt_max_seconds = 60;
static bool opt_have_ino;

/* ---- small helpers ------------------------------------------------------------------------ */

static double now(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static bool file_exists(const char *p) {
        return p && access(p, F_OK) == 0;
}

static void touch(const char *p) {
        int fd;

        if (!p)
                return;
        fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (fd >= 0)
                close(fd);
}

static void die(const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        fputs("ia-attack: ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
        exit(2);
}

/* xorshift64*: reproducible from --seed. */
static uint64_t rng_state = 1;

static uint64_t rnd(void) {
        rng_state ^= rng_state >> 12;
        rng_state ^= rng_state << 25;
        rng_state ^= rng_state >> 27;
        return rng_state * UINT64_C(2685821657736338717);
}

static unsigned rndn(unsigned n) {
        return n ? (unsigned) (rnd() % n) : 0;
}

static bool chance(unsigned percent) {
        return rndn(100) < percent;
}

static void json_str(FILE *f, const char *s) {
        fputc('"', f);
        for (; s && *s; s++) {
                unsigned char c = (unsigned char) *s;

                if (c == '"' || c == '\\')
                        fprintf(f, "\\%c", c);
                else if (c < 0x20 || c >= 0x7f)
                        fprintf(f, "\\u%04x", c);
                else
                        fputc(c, f);
        }
        fputc('"', f);
}

/* Error names and how often each was seen. */
typedef struct Counts {
        char *name[64];
        unsigned long long n[64];
        unsigned len;
} Counts;

static void count(Counts *c, const char *name) {
        for (unsigned i = 0; i < c->len; i++)
                if (strcmp(c->name[i], name) == 0) {
                        c->n[i]++;
                        return;
                }
        if (c->len == 64) {
                c->n[63]++;     /* "other" */
                return;
        }
        c->name[c->len] = strdup(c->len == 63 ? "other" : name);
        c->n[c->len++] = 1;
}

static void counts_free(Counts *c) {
        for (unsigned i = 0; i < c->len; i++)
                free(c->name[i]);
        c->len = 0;
}

static void json_counts(FILE *f, const Counts *c) {
        fputc('{', f);
        for (unsigned i = 0; i < c->len; i++) {
                if (i)
                        fputs(", ", f);
                json_str(f, c->name[i]);
                fprintf(f, ": %llu", c->n[i]);
        }
        fputc('}', f);
}

static sd_bus *connect_bus(const char *address) {
        sd_bus *bus = NULL;
        int r;

        r = sd_bus_new(&bus);
        if (r >= 0)
                r = sd_bus_set_address(bus, address);
        if (r >= 0)
                r = sd_bus_set_bus_client(bus, true);
        if (r >= 0)
                r = sd_bus_negotiate_fds(bus, true);
        if (r >= 0)
                r = sd_bus_start(bus);
        if (r < 0)
                die("cannot connect to %s: %s", address, strerror(-r));
        return bus;
}

static int expected_accmode(const char *mode) {
        return strcmp(mode, "read-only") == 0 ? O_RDONLY : O_RDWR;
}

/* Wrong-allow details, at most 20 kept. */
static char *wrong[20];
static unsigned long long n_wrong;

static void report_wrong(const char *fmt, ...) {
        va_list ap;

        n_wrong++;
        if (n_wrong > 20)
                return;
        va_start(ap, fmt);
        if (vasprintf(&wrong[n_wrong - 1], fmt, ap) < 0)
                wrong[n_wrong - 1] = NULL;
        va_end(ap);
}

static void json_wrong(FILE *f) {
        fprintf(f, "\"wrong_allows\": %llu, \"wrong\": [", n_wrong);
        for (unsigned long long i = 0; i < n_wrong && i < 20; i++) {
                if (i)
                        fputs(", ", f);
                json_str(f, wrong[i] ?: "?");
                free(wrong[i]);
                wrong[i] = NULL;
        }
        fputc(']', f);
}

/* ---- swap --------------------------------------------------------------------------------- */

static int mode_swap(void) {
        unsigned long long n = 0, errors = 0;
        int last_errno = 0;
        double t0 = now();
        bool reached = false, timed_out = false;

        if (!opt_a || !opt_b)
                die("swap needs --a and --b");
        for (;;) {
                if (syscall(SYS_renameat2, AT_FDCWD, opt_a, AT_FDCWD, opt_b, RENAME_EXCHANGE) < 0) {
                        errors++;
                        last_errno = errno;
                        if (errors > 1000)
                                break;
                } else
                        n++;
                if ((n & 1023) == 0) {
                        if (!reached && n >= opt_min) {
                                reached = true;
                                touch(opt_reached);
                        }
                        if (reached && (!opt_until || file_exists(opt_until)))
                                break;
                        if (now() - t0 > opt_max_seconds) {
                                timed_out = true;
                                break;
                        }
                }
        }
        /* An even number of exchanges puts both names back. */
        if (n & 1) {
                if (syscall(SYS_renameat2, AT_FDCWD, opt_a, AT_FDCWD, opt_b, RENAME_EXCHANGE) == 0)
                        n++;
        }
        printf("{\"swaps\": %llu, \"errors\": %llu, \"last_errno\": %d, \"seconds\": %.3f, \"timed_out\": %s}\n",
               n, errors, last_errno, now() - t0, timed_out ? "true" : "false");
        return errors > 1000 ? 1 : 0;
}

/* ---- open-loop ---------------------------------------------------------------------------- */

typedef struct LoopState {
        unsigned long long sent, replies, ok, in_flight;
        Counts errors;
        double max_latency;
        double backoff_until;   /* the service is not on the bus: do not spin */
} LoopState;

typedef struct LoopCall {
        LoopState *s;
        double t0;
} LoopCall;

static void check_fd(int fd, const char *what) {
        struct stat st;
        int fl;

        if (fstat(fd, &st) < 0) {
                report_wrong("%s: fstat of the fd received failed: %s", what, strerror(errno));
                return;
        }
        if (opt_have_ino && ((unsigned long long) st.st_dev != opt_dev ||
                             (unsigned long long) st.st_ino != opt_ino))
                report_wrong("%s: fd for dev %llu ino %llu, granted was dev %llu ino %llu", what,
                             (unsigned long long) st.st_dev, (unsigned long long) st.st_ino,
                             opt_dev, opt_ino);
        fl = fcntl(fd, F_GETFL);
        if (fl < 0 || (fl & O_ACCMODE) != expected_accmode(opt_mode))
                report_wrong("%s: fd access mode 0%o, asked for %s", what, fl & O_ACCMODE, opt_mode);
}

static int on_loop_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        LoopCall *c = userdata;
        LoopState *s = c->s;
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        double lat = now() - c->t0;
        int fd, r;

        if (lat > s->max_latency)
                s->max_latency = lat;
        s->replies++;
        s->in_flight--;
        if (e) {
                count(&s->errors, e->name);
                if (strcmp(e->name, SD_BUS_ERROR_SERVICE_UNKNOWN) == 0 ||
                    strcmp(e->name, SD_BUS_ERROR_NAME_HAS_NO_OWNER) == 0)
                        s->backoff_until = now() + 0.002;
        } else {
                r = sd_bus_message_read(reply, "h", &fd);
                if (r < 0)
                        count(&s->errors, "ia-attack.BadReply");
                else {
                        s->ok++;
                        check_fd(fd, "OpenImage");
                }
        }
        free(c);
        return 0;
}

static int mode_open_loop(void) {
        sd_bus *bus;
        LoopState s = {};
        double t0 = now(), last_check = 0;
        bool reached = false, timed_out = false, stop = false;
        int r;

        if (!opt_address || !opt_guest || !opt_path)
                die("open-loop needs --address, --guest and --path");
        bus = connect_bus(opt_address);

        while (!stop || s.in_flight > 0) {
                while (!stop && s.in_flight < opt_in_flight && now() >= s.backoff_until) {
                        LoopCall *c = calloc(1, sizeof(*c));
                        sd_bus_message *m = NULL;

                        c->s = &s;
                        c->t0 = now();
                        r = sd_bus_message_new_method_call(bus, &m, BUS_NAME, OBJ_PATH, IFACE, "OpenImage");
                        if (r >= 0)
                                r = sd_bus_message_append(m, "sssa{sv}", opt_guest, opt_path, opt_mode, 0);
                        if (r >= 0)
                                r = sd_bus_call_async(bus, NULL, m, on_loop_reply, c, CALL_TIMEOUT_USEC);
                        sd_bus_message_unref(m);
                        if (r < 0) {
                                free(c);
                                count(&s.errors, "ia-attack.SendFailed");
                                usleep(1000);
                                break;
                        }
                        s.sent++;
                        s.in_flight++;
                }
                r = sd_bus_process(bus, NULL);
                if (r < 0) {
                        count(&s.errors, "ia-attack.ConnectionLost");
                        break;
                }
                if (r == 0) {
                        r = sd_bus_wait(bus, s.backoff_until > now() ? 2000 : 100000);
                        if (r < 0) {
                                count(&s.errors, "ia-attack.ConnectionLost");
                                break;
                        }
                }
                if (now() - last_check > 0.005) {
                        last_check = now();
                        if (!reached && s.replies >= opt_min) {
                                reached = true;
                                touch(opt_reached);
                        }
                        if (reached && (!opt_until || file_exists(opt_until)))
                                stop = true;
                        if (now() - t0 > opt_max_seconds) {
                                timed_out = true;
                                stop = true;
                                if (now() - t0 > opt_max_seconds + 35)
                                        break;  /* replies that never come: a hang */
                        }
                }
        }

        printf("{\"calls\": %llu, \"replies\": %llu, \"ok\": %llu, \"denied\": %llu, \"errors\": ",
               s.sent, s.replies, s.ok, s.replies - s.ok);
        json_counts(stdout, &s.errors);
        printf(", \"max_latency\": %.3f, \"seconds\": %.3f, \"timed_out\": %s, \"unanswered\": %llu, ",
               s.max_latency, now() - t0, timed_out ? "true" : "false", s.in_flight);
        json_wrong(stdout);
        printf("}\n");
        counts_free(&s.errors);
        sd_bus_flush_close_unref(bus);
        return 0;
}

/* ---- disconnect --------------------------------------------------------------------------- */

static int mode_disconnect(void) {
        unsigned long long sent = 0, failed = 0;
        double t0 = now();

        if (!opt_address || !opt_guest || !opt_path)
                die("disconnect needs --address, --guest and --path");
        rng_state = opt_seed | 1;
        for (unsigned long long i = 0; i < opt_count && now() - t0 < opt_max_seconds; i++) {
                sd_bus *bus = connect_bus(opt_address);
                unsigned how = rndn(8);
                int r;

                r = sd_bus_call_method_async(bus, NULL, BUS_NAME, OBJ_PATH, IFACE, "OpenImage",
                                             NULL, NULL, "sssa{sv}", opt_guest, opt_path, opt_mode, 0);
                if (r < 0) {
                        failed++;
                        sd_bus_close_unref(bus);
                        continue;
                }
                sent++;
                /* Mostly: the call is on its way, then the caller vanishes at a random moment
                 * (before, during or after the service works on it).  Sometimes the caller
                 * vanishes before the call has even left (during authentication). */
                if (how != 0)
                        (void) sd_bus_flush(bus);
                if (how >= 2)
                        usleep(rndn((unsigned) opt_max_delay_us + 1));
                sd_bus_close_unref(bus);
        }
        printf("{\"sent\": %llu, \"failed\": %llu, \"seconds\": %.3f}\n", sent, failed, now() - t0);
        return 0;
}

/* ---- monitor ------------------------------------------------------------------------------ */

static int mode_monitor(void) {
        sd_bus *bus = NULL;
        sd_bus_message *m = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        double t0 = now();
        int r;

        if (!opt_address)
                die("monitor needs --address");
        r = sd_bus_new(&bus);
        if (r >= 0)
                r = sd_bus_set_address(bus, opt_address);
        if (r >= 0)
                r = sd_bus_set_monitor(bus, true);
        if (r >= 0)
                r = sd_bus_set_bus_client(bus, true);
        if (r >= 0)
                r = sd_bus_negotiate_fds(bus, true);
        if (r >= 0)
                r = sd_bus_start(bus);
        if (r < 0)
                die("monitor: cannot connect: %s", strerror(-r));
        r = sd_bus_call_method(bus, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                               "org.freedesktop.DBus.Monitoring", "BecomeMonitor", &error, NULL,
                               "asu", 0, (uint32_t) 0);
        if (r < 0)
                die("monitor: BecomeMonitor: %s", error.message ?: strerror(-r));
        printf("{\"monitoring\": true}\n");
        fflush(stdout);

        while (!file_exists(opt_until) && now() - t0 < opt_max_seconds) {
                r = sd_bus_process(bus, &m);
                if (r < 0)
                        break;
                if (m) {
                        uint8_t type = 0;
                        const char *sig = sd_bus_message_get_signature(m, true) ?: "";
                        uint64_t serial = 0, reply_serial = 0;

                        (void) sd_bus_message_get_type(m, &type);
                        (void) sd_bus_message_get_cookie(m, &serial);
                        (void) sd_bus_message_get_reply_cookie(m, &reply_serial);
                        if (type == SD_BUS_MESSAGE_METHOD_CALL &&
                            sd_bus_message_get_member(m) &&
                            strcmp(sd_bus_message_get_member(m), "OpenImage") == 0) {
                                printf("{\"call\": ");
                                json_str(stdout, sd_bus_message_get_sender(m));
                                printf(", \"serial\": %" PRIu64 "}\n", serial);
                        } else if (type != SD_BUS_MESSAGE_METHOD_CALL && strchr(sig, 'h')) {
                                printf("{\"fd_message\": ");
                                json_str(stdout, sd_bus_message_get_sender(m));
                                printf(", \"destination\": ");
                                json_str(stdout, sd_bus_message_get_destination(m));
                                printf(", \"type\": %u, \"reply_serial\": %" PRIu64 ", \"signature\": ",
                                       type, reply_serial);
                                json_str(stdout, sig);
                                printf("}\n");
                        }
                        m = sd_bus_message_unref(m);
                        continue;
                }
                if (r == 0)
                        (void) sd_bus_wait(bus, 20000);
        }
        printf("{\"done\": true}\n");
        sd_bus_close_unref(bus);
        return 0;
}

/* ---- fdspam ------------------------------------------------------------------------------- */

static int append_fd_option(sd_bus_message *m, const char *key, int fd) {
        int r = sd_bus_message_open_container(m, 'e', "sv");

        if (r >= 0)
                r = sd_bus_message_append(m, "s", key);
        if (r >= 0)
                r = sd_bus_message_append(m, "v", "h", fd);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        return r;
}

static int mode_fdspam(void) {
        sd_bus *bus;
        Counts errors = {};
        unsigned long long ok = 0, calls = 0;
        double t0 = now();
        int fd;

        if (!opt_address || !opt_guest || !opt_path)
                die("fdspam needs --address, --guest and --path");
        fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                die("/dev/null: %m");
        bus = connect_bus(opt_address);

        for (unsigned long long i = 0; i < opt_count && now() - t0 < opt_max_seconds; i++) {
                sd_bus_message *m = NULL, *reply = NULL;
                sd_bus_error error = SD_BUS_ERROR_NULL;
                unsigned kind = (unsigned) (i % 4);
                char key[32];
                int r;

                if (kind == 3)
                        r = sd_bus_message_new_method_call(bus, &m, BUS_NAME, OBJ_PATH, MGR_IFACE, "BindProcess");
                else
                        r = sd_bus_message_new_method_call(bus, &m, BUS_NAME, OBJ_PATH, IFACE, "OpenImage");
                if (r < 0)
                        die("new call: %s", strerror(-r));
                if (kind == 3)
                        r = sd_bus_message_append(m, "sh", opt_guest, fd);
                else
                        r = sd_bus_message_append(m, "sss", opt_guest, opt_path, opt_mode);
                if (r >= 0)
                        r = sd_bus_message_open_container(m, 'a', "{sv}");
                for (unsigned k = 0; r >= 0 && k < opt_fds - (kind == 3); k++) {
                        /* 0: unknown keys; 1: a known key with an fd for a value first;
                         * 2: an array of fds inside one variant; 3: BindProcess's extra. */
                        if (kind == 2) {
                                if (k > 0)
                                        break;
                                r = sd_bus_message_open_container(m, 'e', "sv");
                                if (r >= 0)
                                        r = sd_bus_message_append(m, "s", "direct");
                                if (r >= 0)
                                        r = sd_bus_message_open_container(m, 'v', "ah");
                                if (r >= 0)
                                        r = sd_bus_message_open_container(m, 'a', "h");
                                for (unsigned f = 0; r >= 0 && f < opt_fds; f++)
                                        r = sd_bus_message_append(m, "h", fd);
                                if (r >= 0)
                                        r = sd_bus_message_close_container(m);
                                if (r >= 0)
                                        r = sd_bus_message_close_container(m);
                                if (r >= 0)
                                        r = sd_bus_message_close_container(m);
                                continue;
                        }
                        snprintf(key, sizeof(key), kind == 1 && k == 0 ? "direct" : "fd%u", k);
                        r = append_fd_option(m, key, fd);
                }
                if (r >= 0)
                        r = sd_bus_message_close_container(m);
                if (r < 0)
                        die("building call %llu: %s", i, strerror(-r));
                r = sd_bus_call(bus, m, CALL_TIMEOUT_USEC, &error, &reply);
                calls++;
                if (r < 0)
                        count(&errors, error.name ?: "ia-attack.LocalError");
                else
                        ok++;
                sd_bus_error_free(&error);
                sd_bus_message_unref(reply);
                sd_bus_message_unref(m);
        }
        printf("{\"calls\": %llu, \"ok\": %llu, \"errors\": ", calls, ok);
        json_counts(stdout, &errors);
        printf(", \"seconds\": %.3f}\n", now() - t0);
        counts_free(&errors);
        sd_bus_flush_close_unref(bus);
        close(fd);
        return 0;
}

/* ---- conns -------------------------------------------------------------------------------- */

typedef struct ConnCall {
        bool done;
        unsigned long long *ok;
        Counts *errors;
} ConnCall;

static int on_conn_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        ConnCall *c = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        int fd;

        c->done = true;
        if (e)
                count(c->errors, e->name);
        else if (sd_bus_message_read(reply, "h", &fd) < 0)
                count(c->errors, "ia-attack.BadReply");
        else {
                (*c->ok)++;
                check_fd(fd, "OpenImage");
        }
        return 0;
}

static int mode_conns(void) {
        unsigned long long n = opt_count, ok = 0, connected = 0, pending;
        sd_bus **buses = calloc(n, sizeof(sd_bus *));
        ConnCall *calls = calloc(n, sizeof(ConnCall));
        struct pollfd *pfds = calloc(n, sizeof(struct pollfd));
        Counts errors = {};
        double t0 = now();
        int r;

        if (!opt_address || !opt_guest || !opt_path)
                die("conns needs --address, --guest and --path");
        for (unsigned long long i = 0; i < n; i++) {
                r = sd_bus_new(&buses[i]);
                if (r >= 0)
                        r = sd_bus_set_address(buses[i], opt_address);
                if (r >= 0)
                        r = sd_bus_set_bus_client(buses[i], true);
                if (r >= 0)
                        r = sd_bus_negotiate_fds(buses[i], true);
                if (r >= 0)
                        r = sd_bus_start(buses[i]);
                if (r < 0) {
                        count(&errors, "ia-attack.ConnectFailed");
                        buses[i] = sd_bus_unref(buses[i]);
                        calls[i].done = true;
                        continue;
                }
                calls[i].ok = &ok;
                calls[i].errors = &errors;
                r = sd_bus_call_method_async(buses[i], NULL, BUS_NAME, OBJ_PATH, IFACE, "OpenImage",
                                             on_conn_reply, &calls[i], "sssa{sv}", opt_guest,
                                             opt_path, opt_mode, 0);
                if (r < 0) {
                        count(&errors, "ia-attack.SendFailed");
                        calls[i].done = true;
                        continue;
                }
                connected++;
        }
        for (;;) {
                pending = 0;
                for (unsigned long long i = 0; i < n; i++) {
                        pfds[i].fd = -1;
                        if (!buses[i] || calls[i].done)
                                continue;
                        while ((r = sd_bus_process(buses[i], NULL)) > 0)
                                ;
                        if (r < 0) {
                                count(&errors, "ia-attack.ConnectionLost");
                                calls[i].done = true;
                                continue;
                        }
                        if (calls[i].done)
                                continue;
                        pending++;
                        pfds[i].fd = sd_bus_get_fd(buses[i]);
                        pfds[i].events = (short) sd_bus_get_events(buses[i]);
                }
                if (pending == 0 || now() - t0 > opt_max_seconds)
                        break;
                (void) poll(pfds, n, 10);
        }
        printf("{\"connections\": %llu, \"ok\": %llu, \"unanswered\": %llu, \"errors\": ",
               connected, ok, pending);
        json_counts(stdout, &errors);
        printf(", \"seconds\": %.3f, ", now() - t0);
        json_wrong(stdout);
        printf("}\n");
        for (unsigned long long i = 0; i < n; i++)
                sd_bus_flush_close_unref(buses[i]);
        counts_free(&errors);
        free(buses);
        free(calls);
        free(pfds);
        return 0;
}

/* ---- modecheck ---------------------------------------------------------------------------- */

static const char *errno_name(int e) {
        switch (e) {
        case 0: return "ok";
        case EBADF: return "EBADF";
        case EINVAL: return "EINVAL";
        case EACCES: return "EACCES";
        case EPERM: return "EPERM";
        case EROFS: return "EROFS";
        case ENOENT: return "ENOENT";
        case ELOOP: return "ELOOP";
        case EXDEV: return "EXDEV";
        case EOPNOTSUPP: return "EOPNOTSUPP";
        default: return strerror(e);
        }
}

static void json_errno(const char *key, int ok_or_errno, bool first) {
        printf("%s\"%s\": \"%s\"", first ? "" : ", ", key, errno_name(ok_or_errno));
}

#define TRY(expr) ((expr) < 0 ? errno : 0)

static int mode_modecheck(void) {
        sd_bus *bus;
        sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        char proc[64], buf[8] = "XXXXXXXX";
        struct stat st;
        int r, fd, fl, fd2;
        void *p;

        if (!opt_address || !opt_guest || !opt_path)
                die("modecheck needs --address, --guest and --path");
        bus = connect_bus(opt_address);
        r = sd_bus_call_method(bus, BUS_NAME, OBJ_PATH, IFACE, "OpenImage", &error, &reply,
                               "sssa{sv}", opt_guest, opt_path, "read-only", 0);
        if (r < 0) {
                printf("{\"open\": ");
                json_str(stdout, error.name);
                printf("}\n");
                return 1;
        }
        r = sd_bus_message_read(reply, "h", &fd);
        if (r < 0)
                die("reply: %s", strerror(-r));
        fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);    /* ours, the message keeps its own */
        if (fd < 0 || fstat(fd, &st) < 0)
                die("fd: %m");

        printf("{\"open\": \"ok\", \"st_dev\": %llu, \"st_ino\": %llu",
               (unsigned long long) st.st_dev, (unsigned long long) st.st_ino);
        fl = fcntl(fd, F_GETFL);
        printf(", \"accmode\": %d", fl & O_ACCMODE);
        json_errno("write", TRY(write(fd, buf, sizeof(buf))), false);
        json_errno("pwrite", TRY(pwrite(fd, buf, sizeof(buf), 0)), false);
        json_errno("ftruncate", TRY(ftruncate(fd, 0)), false);
        json_errno("ftruncate_grow", TRY(ftruncate(fd, st.st_size + 4096)), false);
        json_errno("fallocate", TRY(fallocate(fd, 0, 0, 4096)), false);
        /* F_SETFL ignores the access mode bits: the fd stays read-only. */
        json_errno("setfl_rdwr", TRY(fcntl(fd, F_SETFL, O_RDWR | O_APPEND)), false);
        fl = fcntl(fd, F_GETFL);
        printf(", \"accmode_after_setfl\": %d", fl & O_ACCMODE);
        json_errno("write_after_setfl", TRY(write(fd, buf, sizeof(buf))), false);
        p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        json_errno("mmap_shared_write", p == MAP_FAILED ? errno : 0, false);
        if (p != MAP_FAILED)
                munmap(p, 4096);
        p = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
        if (p != MAP_FAILED) {
                json_errno("mprotect_write", TRY(mprotect(p, 4096, PROT_READ | PROT_WRITE)), false);
                munmap(p, 4096);
        }
        /* Reopening the fd through its magic link checks the inode's permissions again. */
        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
        fd2 = open(proc, O_RDWR | O_CLOEXEC);
        json_errno("proc_reopen_rdwr", fd2 < 0 ? errno : 0, false);
        if (fd2 >= 0)
                close(fd2);
        snprintf(proc, sizeof(proc), "/dev/fd/%d", fd);
        fd2 = open(proc, O_WRONLY | O_CLOEXEC);
        json_errno("devfd_reopen_wronly", fd2 < 0 ? errno : 0, false);
        if (fd2 >= 0)
                close(fd2);
        json_errno("fchmod", TRY(fchmod(fd, 0666)), false);
        json_errno("fchown", TRY(fchown(fd, getuid(), getgid())), false);
        printf("}\n");
        close(fd);
        sd_bus_message_unref(reply);
        sd_bus_flush_close_unref(bus);
        return 0;
}

/* ---- random ------------------------------------------------------------------------------- */

/*
 * The spec file, one item per line:
 *   guest NAME                    a guest name to use in calls
 *   path PATH                     a path to use in calls
 *   own NAME                      a guest this caller may change (RegisterGuest, GrantImage, …);
 *                                 mutating calls with valid arguments name only these
 *   uid U                         a value for RegisterGuest's uid option
 *   myuid U                       this caller's uid (a guest registered with it binds us)
 *   bound NAME                    the model starts with guest NAME bound to us
 *   exists NAME                   the model starts with guest NAME registered, not bound to us
 *   grant NAME PATH MODE DEV INO  the model starts with this grant (pinned to DEV:INO; 0 0: not)
 *   fdfile PATH                   a file to open (read-only) as one of the random fds
 *   manager PERCENT               share of calls to Manager methods with valid arguments
 */

#define MAXN 256

typedef struct MGrant {
        char *path;
        int mode;               /* 0 ro, 1 rw, 2 create */
        bool pinned;
        /* Not pinned as far as we know, but a create open whose answer we did not wait for
         * went out: the service may have made the file and pinned the grant to it. */
        bool maybe_created;
        unsigned long long dev, ino;
} MGrant;

typedef struct MGuest {
        char *name;
        bool exists, bound, tainted;
        MGrant grants[MAXN];
        unsigned n_grants;
} MGuest;

static char *guests[MAXN], *paths[MAXN], *own[MAXN];
static unsigned n_guests, n_paths, n_own;
static unsigned long long uids[MAXN];
static unsigned n_uids;
static unsigned long long myuid;
static MGuest model[MAXN];
static unsigned n_model;
static int fdpool[64];
static unsigned n_fdpool;
static unsigned manager_percent = 20;

static const char *modes[] = { "read-only", "read-write", "create" };

static int mode_index(const char *s) {
        for (int i = 0; i < 3; i++)
                if (strcmp(s, modes[i]) == 0)
                        return i;
        return -1;
}

static MGuest *model_guest(const char *name, bool create) {
        for (unsigned i = 0; i < n_model; i++)
                if (strcmp(model[i].name, name) == 0)
                        return &model[i];
        if (!create || n_model == MAXN)
                return NULL;
        model[n_model].name = strdup(name);
        return &model[n_model++];
}

static MGrant *model_grant(MGuest *g, const char *path, bool create) {
        for (unsigned i = 0; i < g->n_grants; i++)
                if (strcmp(g->grants[i].path, path) == 0)
                        return &g->grants[i];
        if (!create || g->n_grants == MAXN)
                return NULL;
        memset(&g->grants[g->n_grants], 0, sizeof(MGrant));
        g->grants[g->n_grants].path = strdup(path);
        return &g->grants[g->n_grants++];
}

static void model_revoke(MGuest *g, const char *path) {
        for (unsigned i = 0; i < g->n_grants; i++)
                if (strcmp(g->grants[i].path, path) == 0) {
                        free(g->grants[i].path);
                        g->grants[i] = g->grants[--g->n_grants];
                        return;
                }
}

static bool is_own(const char *name) {
        for (unsigned i = 0; i < n_own; i++)
                if (strcmp(own[i], name) == 0)
                        return true;
        return false;
}

static void load_spec(const char *file) {
        char line[8192];
        FILE *f = fopen(file, "re");

        if (!f)
                die("%s: %m", file);
        while (fgets(line, sizeof(line), f)) {
                char *save = NULL, *kw, *a, *b, *c, *d, *e;

                line[strcspn(line, "\n")] = 0;
                kw = strtok_r(line, " ", &save);
                if (!kw || kw[0] == '#')
                        continue;
                a = strtok_r(NULL, " ", &save);
                if (!a)
                        die("spec: '%s' needs an argument", kw);
                if (strcmp(kw, "guest") == 0 && n_guests < MAXN)
                        guests[n_guests++] = strdup(a);
                else if (strcmp(kw, "path") == 0 && n_paths < MAXN)
                        paths[n_paths++] = strdup(a);
                else if (strcmp(kw, "own") == 0 && n_own < MAXN)
                        own[n_own++] = strdup(a);
                else if (strcmp(kw, "uid") == 0 && n_uids < MAXN)
                        uids[n_uids++] = strtoull(a, NULL, 10);
                else if (strcmp(kw, "myuid") == 0)
                        myuid = strtoull(a, NULL, 10);
                else if (strcmp(kw, "manager") == 0)
                        manager_percent = (unsigned) strtoul(a, NULL, 10);
                else if (strcmp(kw, "bound") == 0 || strcmp(kw, "exists") == 0) {
                        MGuest *g = model_guest(a, true);

                        g->exists = true;
                        g->bound = strcmp(kw, "bound") == 0;
                } else if (strcmp(kw, "grant") == 0) {
                        MGuest *g = model_guest(a, true);
                        MGrant *gr;

                        b = strtok_r(NULL, " ", &save);
                        c = strtok_r(NULL, " ", &save);
                        d = strtok_r(NULL, " ", &save);
                        e = strtok_r(NULL, " ", &save);
                        if (!b || !c || !d || !e || mode_index(c) < 0)
                                die("spec: bad grant line");
                        gr = model_grant(g, b, true);
                        gr->mode = mode_index(c);
                        gr->dev = strtoull(d, NULL, 10);
                        gr->ino = strtoull(e, NULL, 10);
                        gr->pinned = gr->dev || gr->ino;
                } else if (strcmp(kw, "fdfile") == 0 && n_fdpool < 64) {
                        int fd = open(a, O_RDONLY | O_CLOEXEC | O_NONBLOCK);

                        if (fd >= 0)
                                fdpool[n_fdpool++] = fd;
                } else
                        die("spec: unknown line '%s'", kw);
        }
        fclose(f);
}

static void make_fd_pool(void) {
        int p[2], fd;

        if (pipe2(p, O_CLOEXEC) == 0 && n_fdpool + 2 <= 64) {
                fdpool[n_fdpool++] = p[0];
                fdpool[n_fdpool++] = p[1];
        }
        fd = eventfd(0, EFD_CLOEXEC);
        if (fd >= 0 && n_fdpool < 64)
                fdpool[n_fdpool++] = fd;
        fd = (int) syscall(SYS_pidfd_open, getpid(), 0);
        if (fd >= 0 && n_fdpool < 64)
                fdpool[n_fdpool++] = fd;
        fd = (int) syscall(SYS_pidfd_open, getppid(), 0);
        if (fd >= 0 && n_fdpool < 64)
                fdpool[n_fdpool++] = fd;
        fd = memfd_create("ia-attack", MFD_CLOEXEC);
        if (fd >= 0 && n_fdpool < 64)
                fdpool[n_fdpool++] = fd;
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0 && n_fdpool < 64)
                fdpool[n_fdpool++] = fd;
        fd = open("/", O_PATH | O_CLOEXEC);
        if (fd >= 0 && n_fdpool < 64)
                fdpool[n_fdpool++] = fd;
        if (n_fdpool == 0)
                die("no fds for the pool");
}

static char junkbuf[8][8192];

static const char *random_string(void) {
        static const char *const fixed[] = {
                "", "read-only", "read-write", "create", "READ-ONLY", "read-only ", "x", ".", "-",
                "vm1", "/", "//", "/.", "/..", "relative/path", "/a/../b", "/a/./b", "/a//b", "/a/",
                "a:b+c.d_e-f", "\xc3\xa9t\xc3\xa9", "/tmp/\xe2\x80\x8b", "%s%n%x", "' OR 1=1 --",
                "a\tb", "line\nbreak", "\x7f", "direct", "nonblock", "uuid", "uid", "description",
                "remove-created", "00000000-0000-0000-0000-000000000000",
                "6a1b4a0e-2b5c-4d0e-9f3a-1c2d3e4f5a6b",
        };
        unsigned k = rndn(10);

        if (k < 3 && n_paths)
                return paths[rndn(n_paths)];
        if (k < 5 && n_guests)
                return guests[rndn(n_guests)];
        if (k < 8)
                return fixed[rndn(sizeof(fixed) / sizeof(fixed[0]))];
        /* Generated: long runs, long components, many components. */
        char *b = junkbuf[rndn(8)];
        unsigned len = rndn(5) == 0 ? 4096 + rndn(100) : rndn(300);
        unsigned style = rndn(4);

        for (unsigned i = 0; i < len && i < sizeof(junkbuf[0]) - 1; i++) {
                if (style == 0)
                        b[i] = (char) ('a' + rndn(26));
                else if (style == 1)
                        b[i] = i % 2 ? 'a' : '/';
                else if (style == 2)
                        b[i] = (i % 257 == 0) ? '/' : 'c';
                else
                        b[i] = (char) (0x20 + rndn(0x5f));
        }
        b[len < sizeof(junkbuf[0]) ? len : sizeof(junkbuf[0]) - 1] = 0;
        if (style != 3)
                b[0] = '/';
        return b;
}

/* Length of the single complete type at the start of s. */
static size_t complete_type_len(const char *s) {
        size_t n, depth;

        switch (s[0]) {
        case 'a':
                return 1 + complete_type_len(s + 1);
        case '(':
        case '{':
                depth = 0;
                for (n = 0; s[n]; n++) {
                        if (s[n] == '(' || s[n] == '{')
                                depth++;
                        else if (s[n] == ')' || s[n] == '}') {
                                if (--depth == 0)
                                        return n + 1;
                        }
                }
                return n;
        default:
                return s[0] ? 1 : 0;
        }
}

static const char *const variant_types[] = {
        "b", "s", "u", "i", "h", "as", "ay", "a{sv}", "x", "t", "d", "o", "g", "y", "n", "q", "v",
        "(si)", "ah",
};

/* fds in the message being built: dbus-daemon disconnects a sender of more than 16. */
static unsigned fds_in_message;

static int append_random(sd_bus_message *m, const char *sig, size_t len, unsigned depth) {
        char sub[256];
        int r = 0;

        if (len >= sizeof(sub))
                return -EINVAL;
        switch (sig[0]) {
        case 'y': { uint8_t v = (uint8_t) rnd(); return sd_bus_message_append_basic(m, 'y', &v); }
        case 'b': { int v = (int) rndn(2); return sd_bus_message_append_basic(m, 'b', &v); }
        case 'n': { int16_t v = (int16_t) rnd(); return sd_bus_message_append_basic(m, 'n', &v); }
        case 'q': { uint16_t v = (uint16_t) rnd(); return sd_bus_message_append_basic(m, 'q', &v); }
        case 'i': { int32_t v = (int32_t) rnd(); return sd_bus_message_append_basic(m, 'i', &v); }
        case 'u': {
                uint32_t v = chance(50) && n_uids ? (uint32_t) uids[rndn(n_uids)] : (uint32_t) rnd();
                return sd_bus_message_append_basic(m, 'u', &v);
        }
        case 'x': { int64_t v = (int64_t) rnd(); return sd_bus_message_append_basic(m, 'x', &v); }
        case 't': { uint64_t v = rnd(); return sd_bus_message_append_basic(m, 't', &v); }
        case 'd': { double v = (double) (int64_t) rnd() / 7.0; return sd_bus_message_append_basic(m, 'd', &v); }
        case 's': return sd_bus_message_append_basic(m, 's', random_string());
        case 'o': return sd_bus_message_append_basic(m, 'o', chance(50) ? OBJ_PATH : "/");
        case 'g': return sd_bus_message_append_basic(m, 'g', chance(50) ? "a{sv}" : "h");
        case 'h': {
                int fd = fdpool[rndn(n_fdpool)];

                fds_in_message++;
                return sd_bus_message_append_basic(m, 'h', &fd);
        }
        case 'v': {
                const char *t = depth > 3 ? "s" : variant_types[rndn(sizeof(variant_types) / sizeof(variant_types[0]))];

                if (strchr(t, 'h') && fds_in_message >= 8)
                        t = "u";

                r = sd_bus_message_open_container(m, 'v', t);
                if (r >= 0)
                        r = append_random(m, t, strlen(t), depth + 1);
                if (r >= 0)
                        r = sd_bus_message_close_container(m);
                return r;
        }
        case 'a': {
                size_t el = complete_type_len(sig + 1);
                unsigned n = depth > 3 ? 0 : (chance(5) ? 64 + rndn(64) : rndn(4));

                /* dbus-daemon allows 16 fds per message on a system bus */
                if (strchr(sig + 1, 'h') && n > 3)
                        n = fds_in_message >= 8 ? 0 : 3;

                memcpy(sub, sig + 1, el);
                sub[el] = 0;
                r = sd_bus_message_open_container(m, 'a', sub);
                for (unsigned i = 0; r >= 0 && i < n; i++)
                        r = append_random(m, sub, el, depth + 1);
                if (r >= 0)
                        r = sd_bus_message_close_container(m);
                return r;
        }
        case '(':
        case '{': {
                memcpy(sub, sig + 1, len - 2);
                sub[len - 2] = 0;
                r = sd_bus_message_open_container(m, sig[0] == '(' ? 'r' : 'e', sub);
                for (size_t i = 0; r >= 0 && i < len - 2;) {
                        size_t n = complete_type_len(sub + i);

                        if (sig[0] == '{' && i == 0 && sub[0] == 's' && chance(70)) {
                                static const char *const keys[] = {
                                        "direct", "nonblock", "uuid", "description", "uid",
                                        "remove-created", "x", "",
                                };
                                r = sd_bus_message_append_basic(m, 's', keys[rndn(8)]);
                        } else
                                r = append_random(m, sub + i, n, depth + 1);
                        i += n;
                }
                if (r >= 0)
                        r = sd_bus_message_close_container(m);
                return r;
        }
        default:
                return -EINVAL;
        }
}

static int append_random_sig(sd_bus_message *m, const char *sig) {
        int r = 0;

        fds_in_message = 0;

        for (size_t i = 0; r >= 0 && sig[i];) {
                size_t n = complete_type_len(sig + i);

                r = append_random(m, sig + i, n, 0);
                i += n;
        }
        return r;
}

/* A random options dict, mostly sensible for the method. */
static int append_options(sd_bus_message *m, const char *method) {
        int r = sd_bus_message_open_container(m, 'a', "{sv}");
        unsigned n = chance(60) ? 0 : rndn(4);

        fds_in_message = 0;

        for (unsigned i = 0; r >= 0 && i < n; i++) {
                unsigned k = rndn(10);

                if (strcmp(method, "OpenImage") == 0 && k < 6)
                        r = sd_bus_message_append(m, "{sv}", k < 3 ? "direct" : "nonblock", "b", (int) rndn(2));
                else if (strcmp(method, "RegisterGuest") == 0 && k < 3)
                        r = sd_bus_message_append(m, "{sv}", "uid", "u",
                                                  (uint32_t) (n_uids ? uids[rndn(n_uids)] : rnd()));
                else if (strcmp(method, "RegisterGuest") == 0 && k < 5)
                        r = sd_bus_message_append(m, "{sv}", "uuid", "s",
                                                  chance(50) ? "6a1b4a0e-2b5c-4d0e-9f3a-1c2d3e4f5a6b" : random_string());
                else if (strcmp(method, "RegisterGuest") == 0 && k < 6)
                        r = sd_bus_message_append(m, "{sv}", "description", "s", random_string());
                else if (strcmp(method, "RevokeImage") == 0 && k < 6)
                        r = sd_bus_message_append(m, "{sv}", "remove-created", "b", (int) rndn(2));
                else
                        r = append_random(m, "{sv}", 4, 1);
        }
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        return r;
}

typedef enum CallKind {
        K_OPEN,         /* OpenImage, plausible arguments */
        K_MANAGER,      /* a Manager method, plausible arguments */
        K_WRONG_SIG,    /* a real method, random signature */
        K_RANDOM,       /* random interface/member/signature */
        K_OTHER_IFACE,  /* Properties, Introspectable, Peer */
} CallKind;

typedef struct RandomStats {
        unsigned long long calls, ok, fds, noreply_sent, timeouts, manager_ok, build_failed;
        Counts errors;
} RandomStats;

/* As the service's guest_name_is_valid(). */
static bool guest_name_valid(const char *s) {
        size_t n = strlen(s);

        if (n == 0 || n > 128 || s[0] == '.' || s[0] == '-')
                return false;
        for (size_t i = 0; i < n; i++)
                if (!strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:+-", s[i]))
                        return false;
        return true;
}

/* The input signature of a Manager method that changes state, or NULL. */
static const char *mutating_signature(const char *member) {
        static const char *const table[][2] = {
                { "RegisterGuest", "sa{sv}" }, { "UnregisterGuest", "s" },
                { "BindProcess", "sha{sv}" }, { "GrantImage", "sssa{sv}" },
                { "RevokeImage", "ssa{sv}" },
        };

        for (size_t i = 0; member && i < sizeof(table) / sizeof(table[0]); i++)
                if (strcmp(member, table[i][0]) == 0)
                        return table[i][1];
        return NULL;
}

static const char *pick_guest(bool mutating) {
        if (mutating && !chance(10))
                return own[rndn(n_own)];
        if (chance(85))
                return guests[rndn(n_guests)];
        return random_string();
}

static const char *pick_path(void) {
        return chance(90) ? paths[rndn(n_paths)] : random_string();
}

static const char *pick_mode(void) {
        return chance(92) ? modes[rndn(3)] : random_string();
}

/* A call's arguments, kept for checking the model once the reply is in. */
typedef struct Args {
        const char *method;
        char guest[8192], path[8192], mode[64];
        bool remove_created, has_uid, valid;
        uint32_t uid;
} Args;

static void model_check_fd(const Args *a, int fd) {
        MGuest *g = model_guest(a->guest, false);
        MGrant *gr = g ? model_grant(g, a->path, false) : NULL;
        int want = mode_index(a->mode), fl;
        struct stat st, lst;

        if (fstat(fd, &st) < 0) {
                report_wrong("OpenImage(%s, %s, %s): fstat failed: %s", a->guest, a->path, a->mode,
                             strerror(errno));
                return;
        }
        if (g && g->tainted)
                return;
        if (!g || !g->exists || !g->bound) {
                report_wrong("OpenImage(%s, %s, %s): an fd, but the caller is not bound to the guest",
                             a->guest, a->path, a->mode);
                return;
        }
        if (!gr || want < 0 || gr->mode < want) {
                report_wrong("OpenImage(%s, %s, %s): an fd, but the grant is %s", a->guest, a->path,
                             a->mode, gr ? modes[gr->mode] : "missing");
                return;
        }
        fl = fcntl(fd, F_GETFL);
        if ((fl & O_ACCMODE) != expected_accmode(a->mode))
                report_wrong("OpenImage(%s, %s, %s): access mode 0%o", a->guest, a->path, a->mode,
                             fl & O_ACCMODE);
        if (gr->pinned) {
                if ((unsigned long long) st.st_dev != gr->dev || (unsigned long long) st.st_ino != gr->ino)
                        report_wrong("OpenImage(%s, %s, %s): inode %llu:%llu, the grant is for %llu:%llu",
                                     a->guest, a->path, a->mode, (unsigned long long) st.st_dev,
                                     (unsigned long long) st.st_ino, gr->dev, gr->ino);
                return;
        }
        /* Not pinned: only a file the service just created for a create grant, now or for a
         * create open whose answer we did not wait for. */
        if ((want != 2 && !gr->maybe_created) || gr->mode != 2 || !S_ISREG(st.st_mode) ||
            st.st_uid != 0 ||
            (st.st_mode & 07777) != 0600 || lstat(a->path, &lst) < 0 ||
            lst.st_dev != st.st_dev || lst.st_ino != st.st_ino) {
                report_wrong("OpenImage(%s, %s, %s): an unpinned grant gave inode %llu:%llu (mode 0%o, uid %u) which is not a new file of the service",
                             a->guest, a->path, a->mode, (unsigned long long) st.st_dev,
                             (unsigned long long) st.st_ino, st.st_mode & 07777, st.st_uid);
                return;
        }
        gr->pinned = true;
        gr->dev = st.st_dev;
        gr->ino = st.st_ino;
}

static void model_apply(const Args *a) {
        MGuest *g;
        MGrant *gr;
        struct stat st;

        if (strcmp(a->method, "RegisterGuest") == 0) {
                g = model_guest(a->guest, true);
                if (!g)
                        return;
                for (unsigned i = 0; i < g->n_grants; i++)
                        free(g->grants[i].path);
                g->n_grants = 0;
                g->exists = true;
                g->bound = a->has_uid && a->uid == myuid;
        } else if (strcmp(a->method, "UnregisterGuest") == 0) {
                g = model_guest(a->guest, false);
                if (g) {
                        for (unsigned i = 0; i < g->n_grants; i++)
                                free(g->grants[i].path);
                        g->n_grants = 0;
                        g->exists = g->bound = false;
                }
        } else if (strcmp(a->method, "GrantImage") == 0) {
                g = model_guest(a->guest, true);
                gr = g ? model_grant(g, a->path, true) : NULL;
                if (!gr) {
                        if (g)
                                g->tainted = true;
                        return;
                }
                gr->mode = mode_index(a->mode);
                gr->maybe_created = false;
                gr->pinned = lstat(a->path, &st) == 0;
                gr->dev = gr->pinned ? (unsigned long long) st.st_dev : 0;
                gr->ino = gr->pinned ? (unsigned long long) st.st_ino : 0;
        } else if (strcmp(a->method, "RevokeImage") == 0) {
                g = model_guest(a->guest, false);
                if (g)
                        model_revoke(g, a->path);
        }
}

static int build_call(sd_bus *bus, sd_bus_message **ret, Args *a, CallKind *ret_kind) {
        static const char *const mgr_methods[] = {
                "RegisterGuest", "UnregisterGuest", "BindProcess", "GrantImage", "RevokeImage",
                "ListGuests", "ListGrants",
        };
        static const char *const all_methods[] = {
                "OpenImage", "RegisterGuest", "UnregisterGuest", "BindProcess", "GrantImage",
                "RevokeImage", "ListGuests", "ListGrants",
        };
        static const char *const sigs[] = {
                "", "s", "ss", "sss", "sssa{sv}", "ssss", "sssa{ss}", "sssa{sv}s", "ua{sv}", "sa{sv}",
                "sh", "sha{sv}", "shh", "sua{sv}", "hhhh", "v", "av", "a{sv}", "as", "ay", "(sss)",
                "sssv", "ssa{sv}", "sssah", "x", "ssssssssssss", "a{sv}a{sv}", "ssg", "sso",
        };
        sd_bus_message *m = NULL;
        unsigned pick = rndn(100);
        CallKind kind;
        int r;

        memset(a, 0, offsetof(Args, guest));
        a->guest[0] = a->path[0] = a->mode[0] = 0;
        a->remove_created = a->has_uid = a->valid = false;

        if (pick < 50)
                kind = K_OPEN;
        else if (pick < 50 + manager_percent)
                kind = K_MANAGER;
        else if (pick < 85)
                kind = K_WRONG_SIG;
        else if (pick < 95)
                kind = K_RANDOM;
        else
                kind = K_OTHER_IFACE;
        *ret_kind = kind;

        if (kind == K_OPEN || kind == K_MANAGER) {
                const char *method = kind == K_OPEN ? "OpenImage" : mgr_methods[rndn(7)];
                bool mutating = strcmp(method, "ListGuests") != 0 && strcmp(method, "ListGrants") != 0 &&
                                strcmp(method, "OpenImage") != 0;

                a->method = method;
                r = sd_bus_message_new_method_call(bus, &m, BUS_NAME, OBJ_PATH,
                                                   kind == K_OPEN ? IFACE : MGR_IFACE, method);
                if (r < 0)
                        return r;
                snprintf(a->guest, sizeof(a->guest), "%s", pick_guest(mutating));
                snprintf(a->path, sizeof(a->path), "%s", pick_path());
                snprintf(a->mode, sizeof(a->mode), "%s", pick_mode());
                if (kind == K_OPEN && chance(50)) {
                        /* Half of the opens aim at what the model says is granted, so that
                         * many calls get as far as a real open. */
                        MGuest *g = &model[rndn(n_model ?: 1)];

                        if (n_model && g->exists && g->bound && g->n_grants) {
                                snprintf(a->guest, sizeof(a->guest), "%s", g->name);
                                snprintf(a->path, sizeof(a->path), "%s", g->grants[rndn(g->n_grants)].path);
                        }
                }
                /* Valid arguments change only guests this caller owns: the model of the
                 * other callers must stay true. */
                if (mutating && n_own && guest_name_valid(a->guest) && !is_own(a->guest))
                        snprintf(a->guest, sizeof(a->guest), "%s", own[rndn(n_own)]);

                if (strcmp(method, "OpenImage") == 0 || strcmp(method, "GrantImage") == 0) {
                        r = sd_bus_message_append(m, "sss", a->guest, a->path, a->mode);
                        if (r >= 0 && strcmp(method, "OpenImage") == 0)
                                r = append_options(m, method);
                        else if (r >= 0)
                                r = chance(90) ? sd_bus_message_append(m, "a{sv}", 0) : append_options(m, method);
                } else if (strcmp(method, "RegisterGuest") == 0) {
                        unsigned n = rndn(3);

                        r = sd_bus_message_append(m, "s", a->guest);
                        if (r >= 0)
                                r = sd_bus_message_open_container(m, 'a', "{sv}");
                        if (r >= 0 && n >= 1 && n_uids) {
                                a->has_uid = true;
                                a->uid = (uint32_t) uids[rndn(n_uids)];
                                r = sd_bus_message_append(m, "{sv}", "uid", "u", a->uid);
                        }
                        if (r >= 0 && n >= 2)
                                r = sd_bus_message_append(m, "{sv}", "uuid", "s",
                                                          "6a1b4a0e-2b5c-4d0e-9f3a-1c2d3e4f5a6b");
                        if (r >= 0)
                                r = sd_bus_message_close_container(m);
                } else if (strcmp(method, "UnregisterGuest") == 0 || strcmp(method, "ListGrants") == 0)
                        r = sd_bus_message_append(m, "s", a->guest);
                else if (strcmp(method, "BindProcess") == 0) {
                        int fd = fdpool[rndn(n_fdpool)];

                        r = sd_bus_message_append(m, "sh", a->guest, fd);
                        if (r >= 0)
                                r = chance(90) ? sd_bus_message_append(m, "a{sv}", 0) : append_options(m, method);
                } else if (strcmp(method, "RevokeImage") == 0) {
                        r = sd_bus_message_append(m, "ss", a->guest, a->path);
                        if (r >= 0) {
                                a->remove_created = chance(30);
                                r = a->remove_created ?
                                        sd_bus_message_append(m, "a{sv}", 1, "remove-created", "b", 1) :
                                        append_options(m, method);
                        }
                } else
                        r = 0;  /* ListGuests */
                a->valid = true;
        } else if (kind == K_WRONG_SIG) {
                a->method = all_methods[rndn(8)];
                r = sd_bus_message_new_method_call(bus, &m, BUS_NAME, OBJ_PATH,
                                                   strcmp(a->method, "OpenImage") == 0 ? IFACE : MGR_IFACE,
                                                   a->method);
                if (r >= 0)
                        r = append_random_sig(m, sigs[rndn(sizeof(sigs) / sizeof(sigs[0]))]);
        } else if (kind == K_RANDOM) {
                static const char *const ifaces[] = {
                        IFACE, MGR_IFACE, "org.example.ImageAccess.Nope", "org.freedesktop.DBus.Properties",
                        NULL,
                };
                static const char *const objs[] = {
                        OBJ_PATH, "/", "/org/example/ImageAccess/x", "/org/example", OBJ_PATH "/Manager",
                };
                char member[40];
                unsigned len = 1 + rndn(30);

                for (unsigned i = 0; i < len; i++)
                        member[i] = (char) (i == 0 ? 'A' + rndn(26) : (chance(80) ? 'a' + rndn(26) : '0' + rndn(10)));
                member[len] = 0;
                if (chance(30))
                        snprintf(member, sizeof(member), "%s", all_methods[rndn(8)]);
                a->method = "random";
                r = sd_bus_message_new_method_call(bus, &m, BUS_NAME, objs[rndn(5)], ifaces[rndn(5)], member);
                if (r >= 0)
                        r = append_random_sig(m, sigs[rndn(sizeof(sigs) / sizeof(sigs[0]))]);
        } else {
                unsigned k = rndn(6);

                a->method = "other";
                if (k == 0)
                        r = sd_bus_message_new_method_call(bus, &m, BUS_NAME, OBJ_PATH,
                                                           "org.freedesktop.DBus.Introspectable", "Introspect");
                else if (k == 1)
                        r = sd_bus_message_new_method_call(bus, &m, BUS_NAME, OBJ_PATH,
                                                           "org.freedesktop.DBus.Peer", "Ping");
                else {
                        static const char *const members[] = { "Get", "GetAll", "Set", "Get" };

                        r = sd_bus_message_new_method_call(bus, &m, BUS_NAME, OBJ_PATH,
                                                           "org.freedesktop.DBus.Properties", members[k - 2]);
                        if (r >= 0 && k == 3)
                                r = sd_bus_message_append(m, "s", chance(50) ? IFACE : MGR_IFACE);
                        else if (r >= 0 && k == 4)
                                r = sd_bus_message_append(m, "ssv", IFACE, "Version", "s", random_string());
                        else if (r >= 0)
                                r = sd_bus_message_append(m, "ss", chance(50) ? IFACE : random_string(),
                                                          chance(50) ? "Version" : random_string());
                }
        }
        if (r < 0) {
                sd_bus_message_unref(m);
                return r;
        }
        /* A random call that happens to be a valid state change of the caller's own making
         * would leave the model behind: a caller that may change state does not send those. */
        if (!a->valid && n_own > 0) {
                const char *sig = mutating_signature(sd_bus_message_get_member(m));

                if (sig && strcmp(sig, sd_bus_message_get_signature(m, true)) == 0) {
                        sd_bus_message_unref(m);
                        return -EAGAIN;
                }
        }
        *ret = m;
        return 0;
}

static int mode_random(void) {
        sd_bus *bus;
        RandomStats s = {};
        double t0 = now();

        if (!opt_address || !opt_spec)
                die("random needs --address and --spec");
        rng_state = opt_seed * UINT64_C(0x9e3779b97f4a7c15) | 1;
        load_spec(opt_spec);
        make_fd_pool();
        if (n_guests == 0 || n_paths == 0)
                die("spec: needs guests and paths");
        bus = connect_bus(opt_address);

        while (s.calls < opt_count && now() - t0 < opt_max_seconds) {
                sd_bus_message *m = NULL, *reply = NULL;
                sd_bus_error error = SD_BUS_ERROR_NULL;
                static Args a;
                CallKind kind;
                double c0;
                int r, fd;

                r = build_call(bus, &m, &a, &kind);
                if (r < 0) {
                        /* sd-bus refused to build it (invalid UTF-8, a bad object path, …):
                         * nothing was sent. */
                        s.build_failed++;
                        continue;
                }
                if (chance(2)) {
                        /* Fire and forget: the service must not leak what it cannot reply to. */
                        (void) sd_bus_message_set_expect_reply(m, 0);
                        r = sd_bus_send(bus, m, NULL);
                        sd_bus_message_unref(m);
                        if (r < 0)
                                die("send: %s", strerror(-r));
                        s.calls++;
                        s.noreply_sent++;
                        /* A method that changes state and expects no reply: the model cannot
                         * know whether it applied.  OpenImage changes state only when it
                         * creates: the grant may be pinned to the new file from then on. */
                        if (a.valid && strcmp(a.method, "OpenImage") == 0) {
                                MGuest *g = model_guest(a.guest, false);
                                MGrant *gr = g ? model_grant(g, a.path, false) : NULL;

                                if (gr && !gr->pinned && mode_index(a.mode) == 2)
                                        gr->maybe_created = true;
                        } else if (a.valid && strncmp(a.method, "List", 4) != 0) {
                                MGuest *g = model_guest(a.guest, true);

                                if (g)
                                        g->tainted = true;
                        }
                        continue;
                }
                c0 = now();
                r = sd_bus_call(bus, m, CALL_TIMEOUT_USEC, &error, &reply);
                s.calls++;
                if (r < 0) {
                        const char *name = error.name ?: "ia-attack.LocalError";

                        count(&s.errors, name);
                        if (now() - c0 > 25 || strcmp(name, SD_BUS_ERROR_NO_REPLY) == 0 ||
                            strcmp(name, SD_BUS_ERROR_TIMEOUT) == 0)
                                s.timeouts++;
                        if (strcmp(name, SD_BUS_ERROR_SERVICE_UNKNOWN) == 0 ||
                            strcmp(name, SD_BUS_ERROR_NAME_HAS_NO_OWNER) == 0)
                                die("the service is gone after %llu calls: %s", s.calls,
                                    error.message ?: strerror(-r));
                        if (r == -ECONNRESET || r == -ENOTCONN)
                                die("the bus dropped this caller after %llu calls, the last %s.%s(%s): %s",
                                    s.calls, sd_bus_message_get_interface(m) ?: "",
                                    sd_bus_message_get_member(m) ?: "",
                                    sd_bus_message_get_signature(m, true) ?: "", strerror(-r));
                } else {
                        const char *member = sd_bus_message_get_member(m);

                        s.ok++;
                        if (!a.valid && strchr(sd_bus_message_get_signature(reply, true), 'h')) {
                                /* A random call that was an OpenImage after all: check it
                                 * like one. */
                                const char *g = NULL, *p = NULL, *md = NULL;

                                (void) sd_bus_message_rewind(m, true);
                                if (!member || strcmp(member, "OpenImage") != 0 ||
                                    sd_bus_message_read(m, "sss", &g, &p, &md) < 0)
                                        report_wrong("%s with signature '%s' returned '%s'",
                                                     member ?: "?", sd_bus_message_get_signature(m, true),
                                                     sd_bus_message_get_signature(reply, true));
                                else {
                                        a.method = "OpenImage";
                                        a.valid = true;
                                        snprintf(a.guest, sizeof(a.guest), "%s", g);
                                        snprintf(a.path, sizeof(a.path), "%s", p);
                                        snprintf(a.mode, sizeof(a.mode), "%s", md);
                                }
                        } else if (!a.valid && mutating_signature(member))
                                report_wrong("%s with random arguments (signature '%s') succeeded",
                                             member, sd_bus_message_get_signature(m, true));
                        if (a.valid && strcmp(a.method, "OpenImage") == 0) {
                                if (sd_bus_message_read(reply, "h", &fd) > 0) {
                                        s.fds++;
                                        model_check_fd(&a, fd);
                                }
                        } else if (a.valid) {
                                if (strncmp(a.method, "List", 4) != 0)
                                        s.manager_ok++;
                                if (!is_own(a.guest) && strncmp(a.method, "List", 4) != 0 &&
                                    strcmp(a.method, "BindProcess") != 0)
                                        report_wrong("%s(%s) succeeded for a guest this caller does not own",
                                                     a.method, a.guest);
                                model_apply(&a);
                        }
                }
                sd_bus_error_free(&error);
                sd_bus_message_unref(reply);
                sd_bus_message_unref(m);
        }

        /* The service is still serving at the end. */
        {
                sd_bus_error error = SD_BUS_ERROR_NULL;
                int r = sd_bus_call_method(bus, BUS_NAME, OBJ_PATH, "org.freedesktop.DBus.Peer",
                                           "Ping", &error, NULL, "");

                printf("{\"calls\": %llu, \"ok\": %llu, \"fds\": %llu, \"no_reply_sent\": %llu, "
                       "\"timeouts\": %llu, \"manager_ok\": %llu, \"not_built\": %llu, "
                       "\"alive_at_end\": %s, \"seconds\": %.3f, \"errors\": ",
                       s.calls, s.ok, s.fds, s.noreply_sent, s.timeouts, s.manager_ok,
                       s.build_failed, r >= 0 ? "true" : "false", now() - t0);
                json_counts(stdout, &s.errors);
                printf(", ");
                json_wrong(stdout);
                printf("}\n");
                sd_bus_error_free(&error);
        }
        counts_free(&s.errors);
        for (unsigned i = 0; i < n_model; i++) {
                for (unsigned k = 0; k < model[i].n_grants; k++)
                        free(model[i].grants[k].path);
                free(model[i].name);
        }
        for (unsigned i = 0; i < n_guests; i++)
                free(guests[i]);
        for (unsigned i = 0; i < n_paths; i++)
                free(paths[i]);
        for (unsigned i = 0; i < n_own; i++)
                free(own[i]);
        sd_bus_flush_close_unref(bus);
        return 0;
}

/* ---- manager-loop ------------------------------------------------------------------------- */

static bool is_transient(const char *name) {
        static const char *const transient[] = {
                SD_BUS_ERROR_SERVICE_UNKNOWN, SD_BUS_ERROR_NAME_HAS_NO_OWNER, SD_BUS_ERROR_NO_REPLY,
                SD_BUS_ERROR_TIMEOUT, SD_BUS_ERROR_DISCONNECTED,
        };

        for (size_t i = 0; i < sizeof(transient) / sizeof(transient[0]); i++)
                if (strcmp(name, transient[i]) == 0)
                        return true;
        return false;
}

static int mode_manager_loop(void) {
        sd_bus *bus;
        Counts errors = {};
        unsigned long long acked = 0, attempts = 0;
        double t0 = now(), max_latency = 0;
        char paused[4096], newpath[4096], guest[64];
        int status = 0;

        if (!opt_address || !opt_image || !opt_image2 || !opt_dir)
                die("manager-loop needs --address, --image, --image2 and --dir");
        snprintf(paused, sizeof(paused), "%s.paused", opt_pause ?: "/nonexistent");
        bus = connect_bus(opt_address);

        for (unsigned k = 0; !file_exists(opt_until) && now() - t0 < opt_max_seconds; k++) {
                snprintf(guest, sizeof(guest), "ks%u", k);
                snprintf(newpath, sizeof(newpath), "%s/new-%u.img", opt_dir, k);
                for (unsigned step = 0; step < 5 && !file_exists(opt_until);) {
                        sd_bus_error error = SD_BUS_ERROR_NULL;
                        double c0;
                        int r;

                        if (opt_pause && file_exists(opt_pause)) {
                                char tmp[4200];
                                FILE *f;

                                /* Written aside and renamed: the test reads it as soon as it
                                 * exists. */
                                snprintf(tmp, sizeof(tmp), "%s.tmp", paused);
                                f = fopen(tmp, "we");
                                if (f) {
                                        fprintf(f, "{\"pending\": [%u, %u]}\n", k, step);
                                        fclose(f);
                                        (void) rename(tmp, paused);
                                }
                                while (file_exists(opt_pause) && now() - t0 < opt_max_seconds)
                                        usleep(1000);
                                (void) unlink(paused);
                        }
                        c0 = now();
                        attempts++;
                        switch (step) {
                        case 0:
                                r = sd_bus_call_method(bus, BUS_NAME, OBJ_PATH, MGR_IFACE, "RegisterGuest",
                                                       &error, NULL, "sa{sv}", guest, 0);
                                break;
                        case 1:
                        case 2:
                        case 3:
                                r = sd_bus_call_method(bus, BUS_NAME, OBJ_PATH, MGR_IFACE, "GrantImage",
                                                       &error, NULL, "sssa{sv}", guest,
                                                       step == 1 ? opt_image : step == 2 ? opt_image2 : newpath,
                                                       modes[step - 1], 0);
                                break;
                        default:
                                r = sd_bus_call_method(bus, BUS_NAME, OBJ_PATH, MGR_IFACE, "RevokeImage",
                                                       &error, NULL, "ssa{sv}", guest, opt_image2, 0);
                                break;
                        }
                        if (now() - c0 > max_latency)
                                max_latency = now() - c0;
                        if (r < 0 && error.name &&
                            ((step == 0 && strcmp(error.name, "org.example.ImageAccess.Error.GuestExists") == 0) ||
                             (step == 4 && strcmp(error.name, "org.example.ImageAccess.Error.NotGranted") == 0)))
                                r = 0;  /* the killed service had done it before it could say so */
                        if (r >= 0) {
                                printf("{\"ack\": [%u, %u]}\n", k, step);
                                acked++;
                                step++;
                        } else {
                                const char *name = error.name ?: "ia-attack.LocalError";

                                count(&errors, name);
                                if (!is_transient(name)) {
                                        fprintf(stderr, "ia-attack: %s step %u: %s: %s\n", guest, step, name,
                                                error.message ?: "");
                                        status = 1;
                                        sd_bus_error_free(&error);
                                        goto done;
                                }
                                usleep(2000);
                        }
                        sd_bus_error_free(&error);
                }
        }
done:
        printf("{\"acked\": %llu, \"attempts\": %llu, \"max_latency\": %.3f, \"seconds\": %.3f, \"errors\": ",
               acked, attempts, max_latency, now() - t0);
        json_counts(stdout, &errors);
        printf("}\n");
        counts_free(&errors);
        sd_bus_flush_close_unref(bus);
        return status;
}

/* ---- main --------------------------------------------------------------------------------- */

int main(int argc, char *argv[]) {
        static const struct option options[] = {
                { "address",      required_argument, NULL, 'A' },
                { "guest",        required_argument, NULL, 'g' },
                { "path",         required_argument, NULL, 'p' },
                { "mode",         required_argument, NULL, 'm' },
                { "a",            required_argument, NULL, 'a' },
                { "b",            required_argument, NULL, 'b' },
                { "min",          required_argument, NULL, 'n' },
                { "count",        required_argument, NULL, 'c' },
                { "in-flight",    required_argument, NULL, 'k' },
                { "reached",      required_argument, NULL, 'R' },
                { "until",        required_argument, NULL, 'U' },
                { "dev",          required_argument, NULL, 'd' },
                { "ino",          required_argument, NULL, 'i' },
                { "max-delay-us", required_argument, NULL, 'D' },
                { "max-seconds",  required_argument, NULL, 'T' },
                { "seed",         required_argument, NULL, 's' },
                { "spec",         required_argument, NULL, 'S' },
                { "fds",          required_argument, NULL, 'F' },
                { "image",        required_argument, NULL, 'I' },
                { "image2",       required_argument, NULL, 'J' },
                { "dir",          required_argument, NULL, 'L' },
                { "pause",        required_argument, NULL, 'P' },
                {}
        };
        const char *mode;
        int c;

        if (argc < 2)
                die("usage: ia-attack MODE [OPTIONS]");
        mode = argv[1];
        optind = 2;
        while ((c = getopt_long(argc, argv, "", options, NULL)) >= 0)
                switch (c) {
                case 'A': opt_address = optarg; break;
                case 'g': opt_guest = optarg; break;
                case 'p': opt_path = optarg; break;
                case 'm': opt_mode = optarg; break;
                case 'a': opt_a = optarg; break;
                case 'b': opt_b = optarg; break;
                case 'n': opt_min = strtoull(optarg, NULL, 10); break;
                case 'c': opt_count = strtoull(optarg, NULL, 10); break;
                case 'k': opt_in_flight = strtoull(optarg, NULL, 10); break;
                case 'R': opt_reached = optarg; break;
                case 'U': opt_until = optarg; break;
                case 'd': opt_dev = strtoull(optarg, NULL, 10); opt_have_ino = true; break;
                case 'i': opt_ino = strtoull(optarg, NULL, 10); opt_have_ino = true; break;
                case 'D': opt_max_delay_us = strtoull(optarg, NULL, 10); break;
                case 'T': opt_max_seconds = strtod(optarg, NULL); break;
                case 's': opt_seed = strtoull(optarg, NULL, 10); break;
                case 'S': opt_spec = optarg; break;
                case 'F': opt_fds = strtoull(optarg, NULL, 10); break;
                case 'I': opt_image = optarg; break;
                case 'J': opt_image2 = optarg; break;
                case 'L': opt_dir = optarg; break;
                case 'P': opt_pause = optarg; break;
                default: return 2;
                }
        if (opt_in_flight == 0 || opt_in_flight > 100000 || opt_count > 10000000 || opt_fds > 253)
                die("option out of range");
        setvbuf(stdout, NULL, _IOLBF, 0);
        signal(SIGPIPE, SIG_IGN);

        if (strcmp(mode, "swap") == 0)
                return mode_swap();
        if (strcmp(mode, "open-loop") == 0)
                return mode_open_loop();
        if (strcmp(mode, "disconnect") == 0)
                return mode_disconnect();
        if (strcmp(mode, "monitor") == 0)
                return mode_monitor();
        if (strcmp(mode, "fdspam") == 0)
                return mode_fdspam();
        if (strcmp(mode, "conns") == 0)
                return mode_conns();
        if (strcmp(mode, "modecheck") == 0)
                return mode_modecheck();
        if (strcmp(mode, "random") == 0)
                return mode_random();
        if (strcmp(mode, "manager-loop") == 0)
                return mode_manager_loop();
        die("unknown mode '%s'", mode);
}

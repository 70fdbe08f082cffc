/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bench-batch.c — a snapshot-prepare batch through libimageaccess (IaBatch), timed.
 *
 *     bench-batch --guest=NAME --path=PATH… [--count=N] [--warmup=N] [--raw]
 *
 * Each round builds an IaBatch of every --path (read-only), runs it (all OpenImage calls
 * pipelined on the client's connection, ia_batch_run() returns when every reply is in),
 * commits it and closes the fds: what an emulator does in a snapshot transaction's prepare
 * phase.  Output: one JSON object like bench-client's (µs per batch).  Bounded: --count
 * rounds, each call with the library's 60 s timeout.
 */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "ia-client.h"

#define MAX_PATHS IA_BATCH_MAX_IMAGES

static const char *guest = "bench";
static const char *paths[MAX_PATHS];
static unsigned n_paths, count = 10, warmup = 1;
static bool print_raw;

static uint64_t now_ns(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000000ULL + (uint64_t) ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;

        return (x > y) - (x < y);
}

/* One batch; returns 0 or the negative errno, with the error's name in *ret_name. */
static int run_batch(IaClient *client, char **ret_name) {
        IaError error = {};
        IaBatch *batch = NULL;
        int fds[MAX_PATHS], r;

        r = ia_batch_new(client, guest, &batch);
        for (unsigned i = 0; r >= 0 && i < n_paths; i++)
                r = ia_batch_add(batch, paths[i], IA_IMAGE_MODE_READ_ONLY, 0);
        if (r >= 0)
                r = ia_batch_run(batch, &error);
        if (r >= 0)
                r = ia_batch_commit(batch, fds, n_paths);
        if (r >= 0)
                for (unsigned i = 0; i < n_paths; i++)
                        close(fds[i]);
        if (r < 0 && ret_name)
                *ret_name = strdup(error.name ?: "bench.BatchFailed");
        ia_error_done(&error);
        ia_batch_unref(batch);
        return r;
}

int main(int argc, char *argv[]) {
        static const struct option options[] = {
                { "guest", required_argument, NULL, 'g' },
                { "path", required_argument, NULL, 'p' },
                { "count", required_argument, NULL, 'n' },
                { "warmup", required_argument, NULL, 'w' },
                { "raw", no_argument, NULL, 'R' },
                {}
        };
        IaClient *client = NULL;
        uint64_t *samples, t_start, t_end;
        unsigned n_errors = 0;
        char *error_name = NULL;
        struct rusage ru;
        double sum = 0;
        int c, r;

        while ((c = getopt_long(argc, argv, "", options, NULL)) >= 0)
                switch (c) {
                case 'g': guest = optarg; break;
                case 'p':
                        if (n_paths == MAX_PATHS)
                                return 2;
                        paths[n_paths++] = optarg;
                        break;
                case 'n': count = (unsigned) strtoul(optarg, NULL, 10); break;
                case 'w': warmup = (unsigned) strtoul(optarg, NULL, 10); break;
                case 'R': print_raw = true; break;
                default: return 2;
                }
        if (n_paths == 0 || count == 0 || count > 100000 || warmup > 100000) {
                fprintf(stderr, "bench-batch: need --path, and 1 <= --count <= 100000\n");
                return 2;
        }

        r = ia_client_new(&client);
        if (r < 0) {
                fprintf(stderr, "bench-batch: cannot connect: %s\n", strerror(-r));
                return 1;
        }
        for (unsigned i = 0; i < warmup; i++)
                (void) run_batch(client, NULL);

        samples = calloc(count, sizeof(uint64_t));
        if (!samples)
                return 1;
        t_start = now_ns();
        for (unsigned i = 0; i < count; i++) {
                uint64_t t0 = now_ns();

                if (run_batch(client, error_name ? NULL : &error_name) < 0)
                        n_errors++;
                samples[i] = now_ns() - t0;
        }
        t_end = now_ns();
        getrusage(RUSAGE_SELF, &ru);

        if (print_raw) {
                printf("{\"samples\":[");
                for (unsigned i = 0; i < count; i++)
                        printf("%s%.3f", i ? "," : "", samples[i] / 1000.0);
                printf("],");
        } else
                printf("{");
        qsort(samples, count, sizeof(uint64_t), cmp_u64);
        for (unsigned i = 0; i < count; i++)
                sum += samples[i] / 1000.0;
        printf("\"median\":%.3f,\"p99\":%.3f,\"mean\":%.3f,\"min\":%.3f,\"max\":%.3f,\"n\":%u,"
               "\"calls\":%u,\"errors\":%u,\"error_names\":{",
               count % 2 ? samples[count / 2] / 1000.0 :
                           (samples[count / 2 - 1] + samples[count / 2]) / 2000.0,
               samples[(99 * count + 99) / 100 - 1] / 1000.0, sum / count,
               samples[0] / 1000.0, samples[count - 1] / 1000.0, count, count * n_paths,
               n_errors);
        if (error_name)
                printf("\"%s\":%u", error_name, n_errors);
        printf("},\"start\":%.6f,\"end\":%.6f,\"rate\":%.1f,\"cpu_s\":%.3f}\n",
               t_start / 1e9, t_end / 1e9, count * n_paths / ((t_end - t_start) / 1e9),
               ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
               (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6);

        free(error_name);
        free(samples);
        ia_client_unref(client);
        return 0;
}

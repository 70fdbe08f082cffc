/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * main.c — image-accessd: command line, configuration, then the manager's loop.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "build-config.h"
#include "config.h"
#include "image.h"
#include "log.h"
#include "channel.h"
#include "manager.h"

/* Every parked request holds its message and any fds in it, and every open holds one more for
 * a moment.  The soft limit of 1024 that service managers set for select()'s sake is far too
 * low for that, and we never use select(): raise it to the hard limit (systemd does the same
 * for its own services). */
static void bump_nofile_limit(void) {
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= rl.rlim_max)
                return;
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
                log_warning_errno(errno, "Failed to raise the fd limit, ignoring: %m");
}

/* What one waiting request may hold: the fds of its message (dbus-daemon passes at most 16 per
 * message, and a caller may attach them whether or not the method takes any) and, while it
 * is opened, the O_PATH fd, the open fd and the copy in the reply. */
#define FDS_PER_PENDING (16 + 3)
/* Ours (bus, event loop, journal, state dir, eventfd, …), a compaction's, and the fds of
 * the message being read.  At the limit, sd-bus cannot receive a message with fds: it drops
 * the bus connection, and we exit. */
#define FDS_RESERVED 96

/* Requests waiting for polkit or for an open hold their messages, and with them every fd the
 * callers attached: any local user can park MaxPendingTotal requests of 16 fds each.  Never
 * let that reach the fd limit. */
static void fit_to_fd_limit(Config *c) {
        struct rlimit rl;
        rlim_t fit;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY)
                return;
        /* Each channel holds one fd for as long as it is open, and the fds of the replies
         * waiting unread in it count against the same limit (fds in flight of our uid): at
         * most a quarter of the limit goes to them. */
        if (c->max_channels > rl.rlim_cur / 4 / (1 + CHANNEL_QUEUED_MAX)) {
                rlim_t fit_channels = rl.rlim_cur / 4 / (1 + CHANNEL_QUEUED_MAX);

                log_notice("The fd limit of %llu allows at most %llu channels; lowering MaxChannels from %u",
                           (unsigned long long) rl.rlim_cur, (unsigned long long) fit_channels,
                           c->max_channels);
                c->max_channels = (unsigned) fit_channels;
        }
        fit = rl.rlim_cur > FDS_RESERVED + c->max_channels + FDS_PER_PENDING ?
              (rl.rlim_cur - FDS_RESERVED - c->max_channels) / FDS_PER_PENDING : 1;
        if (c->max_pending_total <= fit)
                return;
        log_notice("The fd limit of %llu allows at most %llu requests waiting at once; lowering MaxPendingTotal from %u",
                   (unsigned long long) rl.rlim_cur, (unsigned long long) fit, c->max_pending_total);
        c->max_pending_total = (unsigned) fit;
        if (c->max_pending_per_sender > c->max_pending_total)
                c->max_pending_per_sender = c->max_pending_total;
}

static void help(void) {
        printf("Usage: image-accessd [OPTIONS…]\n\n"
               "Opens disk images for virtual machines on behalf of their emulators.\n\n"
               "  -h --help                 Show this help\n"
               "     --version              Show the version\n"
               "     --bus-address=ADDRESS  Connect to this bus instead of the system bus\n"
               "     --state-dir=DIR        Keep guests and grants here (default: %s)\n"
               "     --config=FILE          Read this configuration file (default: %s)\n"
               "     --log-level=LEVEL      err, warning, notice, info or debug (default: info)\n"
               "     --log-target=TARGET    auto, console or journal (default: auto)\n\n"
               "See image-accessd(8).\n", DEFAULT_STATE_DIR, DEFAULT_CONFIG_FILE);
}

int main(int argc, char *argv[]) {
        enum {
                ARG_VERSION = 0x100,
                ARG_BUS_ADDRESS,
                ARG_STATE_DIR,
                ARG_CONFIG,
                ARG_LOG_LEVEL,
                ARG_LOG_TARGET,
        };
        static const struct option options[] = {
                { "help",        no_argument,       NULL, 'h' },
                { "version",     no_argument,       NULL, ARG_VERSION },
                { "bus-address", required_argument, NULL, ARG_BUS_ADDRESS },
                { "state-dir",   required_argument, NULL, ARG_STATE_DIR },
                { "config",      required_argument, NULL, ARG_CONFIG },
                { "log-level",   required_argument, NULL, ARG_LOG_LEVEL },
                { "log-target",  required_argument, NULL, ARG_LOG_TARGET },
                {}
        };
        const char *bus_address = NULL, *state_dir = NULL, *config_file = NULL;
        int log_level = LOG_INFO, log_target = LOG_TARGET_AUTO;
        g_autofree char *error = NULL;
        g_autoptr(Manager) m = NULL;
        Config config;
        int c, r;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return EXIT_SUCCESS;
                case ARG_VERSION:
                        printf("image-accessd %s\n", PACKAGE_VERSION);
                        return EXIT_SUCCESS;
                case ARG_BUS_ADDRESS:
                        bus_address = optarg;
                        break;
                case ARG_STATE_DIR:
                        if (optarg[0] != '/') {
                                fprintf(stderr, "--state-dir= needs an absolute path, not '%s'\n", optarg);
                                return EXIT_FAILURE;
                        }
                        state_dir = optarg;
                        break;
                case ARG_CONFIG:
                        config_file = optarg;
                        break;
                case ARG_LOG_LEVEL:
                        log_level = log_level_from_string(optarg);
                        if (log_level < 0) {
                                fprintf(stderr, "Unknown log level '%s'\n", optarg);
                                return EXIT_FAILURE;
                        }
                        break;
                case ARG_LOG_TARGET:
                        log_target = log_target_from_string(optarg);
                        if (log_target < 0) {
                                fprintf(stderr, "Unknown log target '%s'\n", optarg);
                                return EXIT_FAILURE;
                        }
                        break;
                default:
                        return EXIT_FAILURE;
                }
        if (optind < argc) {
                fprintf(stderr, "image-accessd takes no arguments, only options\n");
                return EXIT_FAILURE;
        }

        log_setup(log_level, log_target);
        bump_nofile_limit();

        r = image_setup();
        if (r < 0) {
                if (r == -ENOENT)
                        log_error("The procfs on /proc does not show this process (is it another PID namespace's?); every open of an image reopens through /proc/self/fd");
                else if (r == -EXDEV)
                        log_error("Something is mounted over /proc/self or /proc/self/fd, which every open of an image reopens through");
                else
                        log_error_errno(r, "No procfs on /proc, which every open of an image needs: %m");
                return EXIT_FAILURE;
        }

        config_init(&config);
        r = config_load_file(&config, config_file ?: DEFAULT_CONFIG_FILE, !config_file, &error);
        if (r < 0) {
                log_error("Invalid configuration: %s", error);
                config_done(&config);
                return EXIT_FAILURE;
        }
        if (state_dir) {
                g_free(config.state_dir);
                config.state_dir = g_strdup(state_dir);
        }
        fit_to_fd_limit(&config);

        r = manager_new(&config, &m);
        config_done(&config);
        if (r < 0) {
                log_error_errno(r, "Failed to set up: %m");
                return EXIT_FAILURE;
        }
        r = manager_start(m, bus_address);
        if (r < 0)
                return EXIT_FAILURE;
        r = manager_run(m);
        /* After the workers: nothing opens an image any more, and no fd is left behind. */
        g_clear_pointer(&m, manager_free);
        image_forget_proc();
        return r;
}

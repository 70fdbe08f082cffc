/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bench-ref-service.c — the transport floor of the benchmarks: the smallest sd-bus service
 * that answers a method call with an fd.
 *
 *     bench-ref-service FILE
 *     bench-ref-checks FILE       (this file built with REF_CHECKS)
 *
 * Owns org.example.ImageAccessBench on the system bus ($DBUS_SYSTEM_BUS_ADDRESS; the test
 * bed's bus allows that name through tests/bench/bench-ref.conf) and exports
 * /org/example/ImageAccessBench with one method,
 *
 *     OpenFd(s guest, s path, s mode, a{sv} options) → (h fd)
 *
 * which takes the arguments of OpenImage (so the bus carries messages of the same size and
 * the caller builds the same message) and returns FILE, opened once at start-up: no check,
 * no open, no thread.  Like image-accessd it runs sd-bus on an sd-event loop, and sd-bus
 * duplicates the fd into each reply.  Whatever OpenImage costs above this is the service's own
 * work (checks, polkit, the worker thread, the open, the audit line).  Exits on SIGTERM or
 * when the bus goes away.
 *
 * bench-ref-checks: the floor of a warm OpenImage that keeps every check.  It owns
 * org.example.ImageAccessBench.Checks instead, and each call does the file work of a warm
 * open and nothing else, with the daemon's own code: it checks the path (path_is_valid()),
 * opens it as image-accessd opens a granted file on its loop (image_open_cached(): the
 * O_PATH pin of the path, the type, owner, file system and identity checks, the reopen),
 * writes the audit record the daemon writes (log_audit(), to stderr), replies with the fd
 * and closes its own.  No grant, no decision cache, no connection bookkeeping.  So the
 * daemon's CPU per warm open over this one's is what its own bookkeeping costs, and this
 * one's over the plain reference's is what the checks cost.  Only FILE may be asked for,
 * read-only; it is pinned at start-up.  The plain reference is built without any of this,
 * so that it stays the transport alone.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#ifdef REF_CHECKS
#include <sys/stat.h>
#include <sys/statfs.h>

#include "file-id.h"
#include "ia-macro.h"
#include "image.h"
#include "log.h"
#include "mode.h"
#include "path.h"

#define REF_NAME "org.example.ImageAccessBench.Checks"
#define PROG "bench-ref-checks"
#else
#define REF_NAME "org.example.ImageAccessBench"
#define PROG "bench-ref-service"
#endif
#define REF_PATH "/org/example/ImageAccessBench"
#define REF_INTERFACE "org.example.ImageAccessBench"

static int file_fd = -1;
static const char *file_path;

#ifdef REF_CHECKS
static FileId file_id;
static bool file_fs_cannot_hang;

static bool fs_cannot_hang(dev_t dev, void *userdata) {
        return file_fs_cannot_hang;
}

/* A warm open of @path as image-accessd does it on its loop, its audit record, the reply. */
static int open_checked(sd_bus_message *m, const char *guest, const char *path,
                        const char *mode_str, sd_bus_error *error) {
        int fd = -1, path_fd = -1, r;

        /* Read-only, and only the file given: this service runs as root on the bus. */
        if (strcmp(path, file_path) != 0 || ia_mode_from_string(mode_str) != IA_MODE_READ_ONLY)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "Only '%s', read-only", file_path);
        r = path_is_valid(path, /* ret_reason= */ NULL);
        if (r < 0)
                return sd_bus_error_set_errno(error, r);
        /* Where the daemon would go to a worker (the file system can hang, or the path is
         * not all in the kernel's caches just now), the same checks run here on the loop
         * (image_open_pinned()): the floor has no thread. */
        if (!file_fs_cannot_hang ||
            image_open_cached(path, IA_MODE_READ_ONLY, NULL, &file_id, fs_cannot_hang, NULL,
                              &fd, &path_fd, NULL, NULL) < 0)
                r = image_open_pinned(path, IA_MODE_READ_ONLY, NULL, &file_id, &fd, NULL, NULL);
        if (r < 0)
                return sd_bus_error_setf(error, SD_BUS_ERROR_FAILED,
                                         "'%s' cannot be opened: %s", path,
                                         strerror(-r));
        /* The daemon's record.  Its uid and pid, which the daemon has from its connection
         * records, stay 0: a few characters fewer. */
        log_audit(&(AuditRecord) {
                .event = "open",
                .guest = guest,
                .image = path,
                .mode = mode_str,
                .sender = sd_bus_message_get_sender(m),
                .allowed = true,
        });
        r = sd_bus_reply_method_return(m, "h", fd);
        ia_close_pair(fd, path_fd);
        return r;
}
#endif

static int method_open_fd(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        const char *guest, *path, *mode;
        int r;

        r = sd_bus_message_read(m, "sss", &guest, &path, &mode);
        if (r < 0)
                return r;
        r = sd_bus_message_skip(m, "a{sv}");
        if (r < 0)
                return r;
#ifdef REF_CHECKS
        return open_checked(m, guest, path, mode, error);
#else
        return sd_bus_reply_method_return(m, "h", file_fd);
#endif
}

static const sd_bus_vtable ref_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_METHOD_WITH_ARGS("OpenFd",
                                SD_BUS_ARGS("s", guest, "s", path, "s", mode, "a{sv}", options),
                                SD_BUS_RESULT("h", fd),
                                method_open_fd, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_VTABLE_END,
};

int main(int argc, char *argv[]) {
        sd_event *event = NULL;
        sd_bus *bus = NULL;
        sigset_t mask;
        int r;

        if (argc != 2) {
                fprintf(stderr, "usage: %s FILE\n", argv[0]);
                return 2;
        }
        file_path = argv[1];
        file_fd = open(file_path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (file_fd < 0) {
                fprintf(stderr, PROG ": cannot open '%s': %m\n", file_path);
                return 1;
        }
#ifdef REF_CHECKS
        {
                struct statfs sfs;
                struct stat st;

                log_setup(LOG_INFO, LOG_TARGET_CONSOLE);
                r = image_setup();
                if (r >= 0)
                        r = image_stat(file_path, &st, &file_id);
                if (r >= 0 && fstatfs(file_fd, &sfs) < 0)
                        r = -errno;
                if (r < 0) {
                        fprintf(stderr, PROG ": cannot pin '%s': %s\n", file_path, strerror(-r));
                        return 1;
                }
                file_fs_cannot_hang = image_fs_cannot_hang((long) sfs.f_type);
        }
#endif

        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigprocmask(SIG_BLOCK, &mask, NULL);

        r = sd_event_default(&event);
        if (r >= 0)
                r = sd_event_add_signal(event, NULL, SIGTERM, NULL, NULL);
        if (r >= 0)
                r = sd_event_add_signal(event, NULL, SIGINT, NULL, NULL);
        if (r >= 0)
                r = sd_bus_open_system(&bus);
        if (r >= 0)
                r = sd_bus_add_object_vtable(bus, NULL, REF_PATH, REF_INTERFACE, ref_vtable, NULL);
        if (r >= 0)
                r = sd_bus_attach_event(bus, event, SD_EVENT_PRIORITY_NORMAL);
        if (r >= 0)
                r = sd_bus_set_exit_on_disconnect(bus, true);
        if (r >= 0)
                r = sd_bus_request_name(bus, REF_NAME, 0);
        if (r < 0) {
                fprintf(stderr, PROG ": setting up failed: %s\n", strerror(-r));
                return 1;
        }

        r = sd_event_loop(event);
        sd_bus_flush_close_unref(bus);
        sd_event_unref(event);
        close(file_fd);
        return r < 0 ? 1 : 0;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bench-ref-service.c — the transport floor of the benchmarks: the smallest sd-bus service
 * that answers a method call with an fd.
 *
 *     bench-ref-service FILE
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

#define REF_NAME "org.example.ImageAccessBench"
#define REF_PATH "/org/example/ImageAccessBench"

static int file_fd = -1;

static int method_open_fd(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        const char *guest, *path, *mode;
        int r;

        r = sd_bus_message_read(m, "sss", &guest, &path, &mode);
        if (r < 0)
                return r;
        r = sd_bus_message_skip(m, "a{sv}");
        if (r < 0)
                return r;
        return sd_bus_reply_method_return(m, "h", file_fd);
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
        file_fd = open(argv[1], O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (file_fd < 0) {
                fprintf(stderr, "bench-ref-service: cannot open '%s': %m\n", argv[1]);
                return 1;
        }

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
                r = sd_bus_add_object_vtable(bus, NULL, REF_PATH, REF_NAME, ref_vtable, NULL);
        if (r >= 0)
                r = sd_bus_attach_event(bus, event, SD_EVENT_PRIORITY_NORMAL);
        if (r >= 0)
                r = sd_bus_set_exit_on_disconnect(bus, true);
        if (r >= 0)
                r = sd_bus_request_name(bus, REF_NAME, 0);
        if (r < 0) {
                fprintf(stderr, "bench-ref-service: setting up failed: %s\n", strerror(-r));
                return 1;
        }

        r = sd_event_loop(event);
        sd_bus_flush_close_unref(bus);
        sd_event_unref(event);
        close(file_fd);
        return r < 0 ? 1 : 0;
}

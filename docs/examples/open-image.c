/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * open-image.c — the synchronous open, where a block layer calls open(2).
 *
 *   open-image GUEST PATH MODE [TIMES]
 *
 * Opens PATH through image-accessd as the emulator of GUEST, then shows what it got; with
 * TIMES, opens it that many times, as a block layer that reopens its images does.  Run it
 * as the guest's emulator: its uid bound with `image-accessctl register GUEST --uid=...`, or
 * its process bound with BindProcess.  Exit status: 0 opened, 1 refused, 2 usage.
 *
 * Build: cc open-image.c $(pkg-config --cflags --libs imageaccess) -o open-image
 */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ia-client.h>

int main(int argc, char *argv[]) {
        IaClient *client = NULL;
        IaError error = {};
        char head[16] = "";
        struct stat st;
        ssize_t n;
        int mode, fd = -1, r, times = 1;

        if (argc != 4 && argc != 5) {
                fprintf(stderr, "usage: %s GUEST PATH MODE [TIMES]\n", argv[0]);
                return 2;
        }
        if (argc == 5)
                times = atoi(argv[4]);
        if (times < 1) {
                fprintf(stderr, "TIMES must be a positive number\n");
                return 2;
        }
        mode = ia_image_mode_from_string(argv[3]);
        if (mode < 0) {
                fprintf(stderr, "Unknown mode '%s'\n", argv[3]);
                return 2;
        }

        /* One connection per emulator; $DBUS_SYSTEM_BUS_ADDRESS is honoured. */
        r = ia_client_new(&client);
        if (r < 0) {
                fprintf(stderr, "Cannot connect to the system bus: %s\n", strerror(-r));
                return 1;
        }

        /* Opening the same images again and again: let the service answer the repeats
         * without the bus daemon.  Nothing else changes. */
        if (times > 1)
                ia_client_set_use_channel(client, true);

        for (int i = 0; i < times; i++) {
                if (fd >= 0)
                        close(fd);
                /* Instead of open(path, O_RDONLY or O_RDWR).  It blocks until the service
                 * answered, polkit included; see open-async.c for a block layer that must
                 * not block. */
                r = ia_client_open(client, argv[1], argv[2], (IaImageMode) mode, 0, &error, &fd);
                if (r < 0) {
                        /* The name says which check refused (NotBound, NotGranted,
                         * AccessDenied...), the message says it for people; r is the matching
                         * errno. */
                        fprintf(stderr, "Cannot open %s: %s (%s)\n", argv[2], error.message,
                                error.name);
                        ia_error_done(&error);
                        ia_client_unref(client);
                        return 1;
                }
        }
        ia_client_unref(client);        /* the fd does not need the connection */

        /* The fd is ours: O_CLOEXEC, O_RDONLY or O_RDWR as asked, like one from open(2). */
        if (fstat(fd, &st) < 0) {
                fprintf(stderr, "fstat: %s\n", strerror(errno));
                close(fd);
                return 1;
        }
        n = pread(fd, head, sizeof(head) - 1, 0);
        head[n > 0 ? n : 0] = '\0';
        head[strcspn(head, "\n")] = '\0';
        printf("opened %s %s: %lld bytes, %s, cloexec=%s, starts with '%s'\n", argv[2],
               argv[3], (long long) st.st_size,
               (fcntl(fd, F_GETFL) & O_ACCMODE) == O_RDONLY ? "O_RDONLY" : "O_RDWR",
               fcntl(fd, F_GETFD) & FD_CLOEXEC ? "yes" : "no", head);
        close(fd);
        return 0;
}

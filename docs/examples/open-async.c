/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * open-async.c — opens without blocking, on an sd-event loop.
 *
 *   open-async GUEST PATH...
 *
 * Asks for every PATH read-only at once; the loop keeps running while the service asks
 * polkit, and each answer arrives in a callback in whatever order the service finishes.
 * Exit status: 0 when every image was opened, 1 otherwise.
 *
 * Build: cc open-async.c $(pkg-config --cflags --libs imageaccess libsystemd) -o open-async
 */

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <systemd/sd-event.h>

#include <ia-client.h>

typedef struct Pending {
        const char *path;
        unsigned *left;         /* shared countdown: the loop ends at 0 */
        unsigned *failed;
        sd_event *event;
} Pending;

/* Runs from the loop, once per image.  On success fd is ours. */
static void opened(IaClient *client, int result, int fd, const IaError *error, void *userdata) {
        Pending *p = userdata;
        struct stat st;

        if (result < 0) {
                printf("%s: refused: %s\n", p->path, error->name);
                (*p->failed)++;
        } else {
                if (fstat(fd, &st) == 0)
                        printf("%s: opened, %lld bytes\n", p->path, (long long) st.st_size);
                close(fd);      /* a block layer would keep it */
        }
        if (--*p->left == 0)
                sd_event_exit(p->event, 0);
}

int main(int argc, char *argv[]) {
        IaClient *client = NULL;
        sd_event *event = NULL;
        Pending pending[64];
        unsigned left = 0, failed = 0;
        int r;

        if (argc < 3 || argc - 2 > 64) {
                fprintf(stderr, "usage: %s GUEST PATH... (at most 64)\n", argv[0]);
                return 2;
        }

        r = sd_event_default(&event);
        if (r >= 0)
                r = ia_client_new(&client);
        /* From now on the connection is served by the loop, like any other source. */
        if (r >= 0)
                r = ia_client_attach_event(client, event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0) {
                fprintf(stderr, "Cannot set up: %s\n", strerror(-r));
                return 1;
        }

        for (int i = 2; i < argc; i++) {
                pending[i - 2] = (Pending) { argv[i], &left, &failed, event };
                /* The call is on its way when this returns; NULL for the request makes it
                 * fire-and-forget (keep an IaRequest to be able to cancel it). */
                r = ia_client_open_async(client, argv[1], argv[i], IA_IMAGE_MODE_READ_ONLY, 0,
                                         opened, &pending[i - 2], /* ret_request= */ NULL);
                if (r < 0) {
                        printf("%s: not sent: %s\n", argv[i], strerror(-r));
                        failed++;
                        continue;
                }
                left++;
        }

        if (left > 0) {
                printf("%u opens in flight\n", left);
                fflush(stdout);
                r = sd_event_loop(event);
        }

        ia_client_unref(client);
        sd_event_unref(event);
        return r < 0 || failed > 0 ? 1 : 0;
}

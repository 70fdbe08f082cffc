/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * snapshot-batch.c — the prepare phase of a snapshot: every new overlay, or none.
 *
 *   snapshot-batch GUEST OVERLAY...
 *
 * Creates all OVERLAYs through image-accessd in one IaBatch (mode create: the VM manager
 * granted them with `image-accessctl grant GUEST OVERLAY create`).  If every open succeeds,
 * the fds are committed and a header is written to each, as an emulator would format its
 * overlays.  If one fails, nothing is kept, and the files the service may already have
 * created are reported on stdout as "cleanup PATH" lines: removing them is the VM manager's
 * job (vm-manager.c reads these lines), because an emulator has no right to remove files.
 * Exit status: 0 prepared, 1 failed.
 *
 * Build: cc snapshot-batch.c $(pkg-config --cflags --libs imageaccess) -o snapshot-batch
 */

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <ia-client.h>

/* Called once when the batch failed, with every reply in: the list is final. */
static void report_cleanup(IaBatch *batch, const char *guest, const char *const *created_paths,
                           void *userdata) {
        for (size_t i = 0; created_paths[i]; i++)
                printf("cleanup %s\n", created_paths[i]);
        fflush(stdout);
}

int main(int argc, char *argv[]) {
        IaClient *client = NULL;
        IaBatch *batch = NULL;
        IaError error = {};
        size_t n = (size_t) argc - 2, failed_index;
        int fds[64];
        int r;

        if (argc < 3 || n > 64) {
                fprintf(stderr, "usage: %s GUEST OVERLAY... (at most 64)\n", argv[0]);
                return 2;
        }

        r = ia_client_new(&client);
        if (r >= 0)
                r = ia_batch_new(client, argv[1], &batch);
        for (size_t i = 0; r >= 0 && i < n; i++)
                r = ia_batch_add(batch, argv[i + 2], IA_IMAGE_MODE_CREATE, 0);
        if (r >= 0)
                r = ia_batch_set_cleanup_callback(batch, report_cleanup, NULL);
        if (r < 0) {
                fprintf(stderr, "Cannot set up the batch: %s\n", strerror(-r));
                return 1;
        }

        /* All N calls go out at once and the service works on them concurrently; this
         * returns when every reply is in.  An event-driven emulator uses ia_batch_start()
         * with a callback instead (glib-loop.c). */
        r = ia_batch_run(batch, &error);
        if (r < 0) {
                /* Every fd received was closed already; report_cleanup() has run. */
                (void) ia_batch_get_error(batch, NULL, &failed_index);
                fprintf(stderr, "Snapshot not prepared: %s\n", error.message);
                if (failed_index != (size_t) -1)
                        fprintf(stderr, "The first image that failed: %s\n",
                                argv[failed_index + 2]);
                ia_error_done(&error);
                ia_batch_unref(batch);
                ia_client_unref(client);
                return 1;
        }

        /* All or nothing, again: either every fd is ours now or none. */
        r = ia_batch_commit(batch, fds, n);
        ia_batch_unref(batch);
        ia_client_unref(client);
        if (r < 0) {
                fprintf(stderr, "Cannot commit: %s\n", strerror(-r));
                return 1;
        }

        for (size_t i = 0; i < n; i++) {
                static const char header[] = "overlay\n";

                if (pwrite(fds[i], header, sizeof(header) - 1, 0) != sizeof(header) - 1)
                        fprintf(stderr, "Cannot write %s\n", argv[i + 2]);
                close(fds[i]);
        }
        printf("prepared %zu overlay%s\n", n, n == 1 ? "" : "s");
        return 0;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * glib-loop.c — staying asynchronous inside a GLib main loop, as QEMU's is.
 *
 *   glib-loop GUEST DISK OVERLAY...
 *
 * Attaches the client to the default GMainContext, then, without ever blocking the loop:
 * opens DISK read-write (ia_client_open_async) and, once it is open, prepares a snapshot
 * by creating every OVERLAY in one batch (ia_batch_start).  A timer keeps firing meanwhile,
 * standing for everything else the loop serves (guest I/O, the monitor).
 * Exit status: 0 when both steps succeeded, 1 otherwise.
 *
 * Build: cc glib-loop.c $(pkg-config --cflags --libs imageaccess-glib) -o glib-loop
 */

#include <unistd.h>

#include <glib.h>
#include <ia-client-glib.h>

typedef struct App {
        GMainLoop *loop;
        IaClient *client;
        IaBatch *batch;         /* ours until the end: the last reference aborts a batch */
        const char *guest;
        char **overlays;
        int disk_fd;
        int status;
        unsigned ticks;
} App;

static gboolean tick(gpointer userdata) {
        App *app = userdata;

        app->ticks++;
        return G_SOURCE_CONTINUE;
}

static void cleanup_needed(IaBatch *batch, const char *guest, const char *const *paths,
                           void *userdata) {
        /* Forward to the VM manager (for QEMU: a QMP event); it removes them. */
        for (size_t i = 0; paths[i]; i++)
                g_print("cleanup %s\n", paths[i]);
}

static void snapshot_prepared(IaBatch *batch, int result, void *userdata) {
        App *app = userdata;
        size_t n = ia_batch_get_n_images(batch);
        g_autofree int *fds = g_new(int, n);

        if (result < 0) {
                IaError error = {};

                (void) ia_batch_get_error(batch, &error, NULL);
                g_print("snapshot failed: %s\n", error.message);
                ia_error_done(&error);
                app->status = 1;
        } else if (ia_batch_commit(batch, fds, n) >= 0) {
                g_print("snapshot prepared: %zu overlay%s\n", n, n == 1 ? "" : "s");
                for (size_t i = 0; i < n; i++)
                        close(fds[i]);  /* an emulator would format and use them */
        } else
                app->status = 1;
        g_main_loop_quit(app->loop);
}

static void disk_opened(IaClient *client, int result, int fd, const IaError *error,
                        void *userdata) {
        App *app = userdata;
        int r;

        if (result < 0) {
                g_print("disk refused: %s\n", error->message);
                app->status = 1;
                g_main_loop_quit(app->loop);
                return;
        }
        g_print("disk opened\n");
        app->disk_fd = fd;

        /* Next step, still from the loop: the batch calls go out now, the loop goes on. */
        r = ia_batch_new(client, app->guest, &app->batch);
        for (size_t i = 0; r >= 0 && app->overlays[i]; i++)
                r = ia_batch_add(app->batch, app->overlays[i], IA_IMAGE_MODE_CREATE, 0);
        if (r >= 0)
                r = ia_batch_set_cleanup_callback(app->batch, cleanup_needed, app);
        if (r >= 0)
                r = ia_batch_start(app->batch, snapshot_prepared, app);
        if (r < 0) {
                g_print("cannot start the snapshot: %s\n", g_strerror(-r));
                app->status = 1;
                g_main_loop_quit(app->loop);
        }
}

int main(int argc, char *argv[]) {
        App app = { .disk_fd = -1 };
        GSource *source;
        int r;

        if (argc < 4) {
                g_printerr("usage: %s GUEST DISK OVERLAY...\n", argv[0]);
                return 2;
        }
        app.guest = argv[1];
        app.overlays = argv + 3;
        app.loop = g_main_loop_new(NULL, FALSE);

        r = ia_client_new(&app.client);
        if (r < 0) {
                g_printerr("Cannot connect to the system bus: %s\n", g_strerror(-r));
                return 1;
        }
        /* The connection is now one more source of the default context. */
        source = ia_client_glib_attach(app.client, NULL, G_PRIORITY_DEFAULT);
        g_timeout_add(10, tick, &app);

        r = ia_client_open_async(app.client, app.guest, argv[2], IA_IMAGE_MODE_READ_WRITE, 0,
                                 disk_opened, &app, /* ret_request= */ NULL);
        if (r < 0) {
                g_printerr("Cannot send the open: %s\n", g_strerror(-r));
                return 1;
        }
        g_main_loop_run(app.loop);

        g_print("the timer fired %u time%s meanwhile\n", app.ticks, app.ticks == 1 ? "" : "s");
        if (app.disk_fd >= 0)
                close(app.disk_fd);
        ia_batch_unref(app.batch);      /* committed or failed by now: nothing to abort */
        g_source_destroy(source);
        g_source_unref(source);
        ia_client_unref(app.client);
        g_main_loop_unref(app.loop);
        return app.status;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ia-client-glib.c — a GSource that drives an IaClient's connection from a GMainContext
 * (libimageaccess-glib).
 *
 * The sd-bus recipe for foreign loops, through the public API only: poll the fd of
 * ia_client_get_fd() for ia_client_get_events(), wake up at ia_client_get_timeout() (absolute
 * CLOCK_MONOTONIC µs, the clock of g_get_monotonic_time() on Linux), and call
 * ia_client_process() until it has nothing left.  Both are re-read before every poll, because
 * they change with what is queued and, after a reconnection, with the connection.
 */

#include <poll.h>

#include "ia-client-glib.h"

/* Bound one dispatch so that a flood of replies cannot starve the context's other sources. */
#define DISPATCH_MAX 64

typedef struct IaGlibSource {
        GSource source;
        IaClient *client;
        gpointer tag;           /* of the polled fd, NULL when not polling */
        int fd;
} IaGlibSource;

static GIOCondition events_to_condition(int events) {
        GIOCondition c = 0;

        if (events & POLLIN)
                c |= G_IO_IN;
        if (events & POLLOUT)
                c |= G_IO_OUT;
        return c;
}

static void source_update_fd(IaGlibSource *s) {
        int fd = ia_client_get_fd(s->client);
        int events = ia_client_get_events(s->client);

        if (fd != s->fd || fd < 0) {
                if (s->tag)
                        g_source_remove_unix_fd(&s->source, s->tag);
                s->tag = NULL;
                s->fd = -1;
                if (fd >= 0) {
                        s->tag = g_source_add_unix_fd(&s->source, fd, 0);
                        s->fd = fd;
                }
        }
        if (s->tag)
                /* G_IO_HUP and G_IO_ERR are always reported: a lost connection is noticed. */
                g_source_modify_unix_fd(&s->source, s->tag,
                                        events >= 0 ? events_to_condition(events) : 0);
}

static gboolean source_prepare(GSource *source, gint *timeout) {
        IaGlibSource *s = (IaGlibSource *) source;
        uint64_t until;
        gint64 now;

        source_update_fd(s);

        *timeout = -1;
        if (ia_client_get_timeout(s->client, &until) < 0 || until == UINT64_MAX)
                return FALSE;
        now = g_get_monotonic_time();
        if (until <= (uint64_t) now) {
                *timeout = 0;
                return TRUE;
        }
        /* Round up: waking a millisecond early would only spin once more. */
        *timeout = (gint) MIN((until - (uint64_t) now + 999) / 1000, (uint64_t) G_MAXINT);
        return FALSE;
}

static gboolean source_check(GSource *source) {
        IaGlibSource *s = (IaGlibSource *) source;
        uint64_t until;

        if (s->tag && g_source_query_unix_fd(source, s->tag) != 0)
                return TRUE;
        return ia_client_get_timeout(s->client, &until) >= 0 && until != UINT64_MAX &&
               until <= (uint64_t) g_get_monotonic_time();
}

static gboolean source_dispatch(GSource *source, GSourceFunc callback, gpointer user_data) {
        IaGlibSource *s = (IaGlibSource *) source;

        /* Keep the client alive through callbacks that might drop other references. */
        ia_client_ref(s->client);
        for (int i = 0; i < DISPATCH_MAX; i++)
                if (ia_client_process(s->client) <= 0)
                        break;
        ia_client_unref(s->client);

        /* Errors of the connection are reported to the calls in flight, not here; the source
         * stays, and picks up the next connection after a reconnection. */
        return G_SOURCE_CONTINUE;
}

static void source_finalize(GSource *source) {
        IaGlibSource *s = (IaGlibSource *) source;

        s->client = ia_client_unref(s->client);
}

static GSourceFuncs source_funcs = {
        .prepare = source_prepare,
        .check = source_check,
        .dispatch = source_dispatch,
        .finalize = source_finalize,
};

GSource *ia_client_glib_source_new(IaClient *client) {
        IaGlibSource *s;

        g_return_val_if_fail(client, NULL);

        s = (IaGlibSource *) g_source_new(&source_funcs, sizeof(IaGlibSource));
        s->client = ia_client_ref(client);
        s->fd = -1;
        g_source_set_name(&s->source, "libimageaccess");
        return &s->source;
}

GSource *ia_client_glib_attach(IaClient *client, GMainContext *context, int priority) {
        GSource *source;

        g_return_val_if_fail(client, NULL);

        source = ia_client_glib_source_new(client);
        g_source_set_priority(source, priority);
        g_source_attach(source, context);
        return source;
}

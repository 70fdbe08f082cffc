/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ia-client-glib.h — run an IaClient on a GLib main context (libimageaccess-glib).
 *
 * QEMU's main loop, and many VM managers', is GLib.  This part is a separate small library so
 * that ia-client.h and libimageaccess stay free of GLib.  It uses only the public API of
 * ia-client.h: the GSource polls ia_client_get_fd() for ia_client_get_events(), wakes up at
 * ia_client_get_timeout(), and dispatches with ia_client_process().  Nothing it does blocks:
 * an ia_client_open_async() or ia_batch_start() issued on a client attached here completes
 * from the context's dispatch, while the loop keeps serving its other sources.
 *
 * The source follows reconnections (the fd is looked up again before every poll).  Attach a
 * client to one loop only: one GSource, or ia_client_attach_event(), not both.
 */
#pragma once

#include <glib.h>

#include "ia-client.h"

G_BEGIN_DECLS

/**
 * ia_client_glib_source_new() - a GSource that processes a client's connection
 * @client: the client (the source takes its own reference, dropped when the source is
 *          finalized)
 *
 * Attach it with g_source_attach(); stop with g_source_destroy().  The default priority is
 * G_PRIORITY_DEFAULT.
 *
 * Return: a new, unattached GSource with one reference, owned by the caller (g_source_unref());
 * NULL only if @client is NULL.
 */
GSource *ia_client_glib_source_new(IaClient *client);

/**
 * ia_client_glib_attach() - create the source and attach it to a context
 * @client: the client (the source takes its own reference)
 * @context: the context (borrowed); NULL for the global default context
 * @priority: the source's priority, e.g. G_PRIORITY_DEFAULT
 *
 * Return: the attached source; the caller owns one reference to it (g_source_destroy() then
 * g_source_unref() to stop, or just g_source_unref() to leave it running until the context
 * goes away).  NULL only if @client is NULL.
 */
GSource *ia_client_glib_attach(IaClient *client, GMainContext *context, int priority);

G_END_DECLS

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ia-client-private.h — the insides of IaClient shared by ia-client.c, ia-batch.c and
 * ia-manager.c (private, not installed; nothing here is exported: the version script lists
 * only the public API).
 */
#pragma once

#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "ia-client.h"
#include "ia-macro.h"

/* The sd-bus types the library's locals own (ia-macro.h: GLib's g_autoptr() without GLib). */
IA_DEFINE_AUTOPTR_CLEANUP_FUNC(sd_bus, sd_bus_flush_close_unref)
IA_DEFINE_AUTOPTR_CLEANUP_FUNC(sd_bus_message, sd_bus_message_unref)
IA_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(sd_bus_error, sd_bus_error_free)

#define IA_CLIENT_DEFAULT_TIMEOUT_USEC (60ULL * 1000000ULL)
/* With interactive authorization a person may be typing a password: above the service's
 * [Polkit] InteractiveTimeoutSec default (300 s), which then answers first. */
#define IA_CLIENT_INTERACTIVE_TIMEOUT_USEC (600ULL * 1000000ULL)

struct IaClient {
        unsigned n_ref;

        sd_bus *bus;            /* the current connection; NULL only while reconnecting */
        sd_bus *closing_bus;    /* a lost connection still delivering its failures */
        char *address;          /* NULL: the system bus */
        bool connecting;        /* guards against reconnecting from within a reconnect */

        uint64_t timeout_usec;          /* the one in effect */
        uint64_t timeout_set_usec;      /* set by the caller; 0: the default */
        bool allow_interactive;

        sd_event *event;        /* attached loop, reapplied to every new connection */
        int64_t event_priority;
        uint64_t bus_generation;        /* bumped with every new connection */

        /* The channel (ia-client-channel.c): synchronous opens that skip the bus daemon. */
        bool use_channel;
        int channel_fd;                 /* -1: none */
        pid_t channel_pid;              /* the process that asked for it */
        uint64_t channel_bus_generation;/* the connection it speaks for */
        uint32_t channel_serial;
        uint64_t channel_retry_usec;    /* no OpenChannel before this (CLOCK_MONOTONIC) */
        uint8_t *channel_buf;           /* packets and the texts of a reply; with the channel */
};

/* The connection to use for a new call: the current one, or a new one if it was lost (then
 * the lost one is drained first where possible, so that its calls fail before new ones go
 * out).  Borrowed. */
int client_get_bus(IaClient *c, sd_bus **ret_bus);

/* A method call on the service's object with the client's flags applied. */
int client_new_method_call(IaClient *c, const char *interface, const char *member,
                           sd_bus_message **ret);

/* OpenImage(guest, path, mode, options) ready to send. */
int client_new_open_call(IaClient *c, const char *guest, const char *path, IaImageMode mode,
                         uint64_t flags, sd_bus_message **ret);

/* Reads the "h" of an OpenImage reply — borrowed from the message — and returns a duplicate
 * (F_DUPFD_CLOEXEC, >= 3) owned by the caller. */
int client_reply_dup_fd(sd_bus_message *reply, int *ret_fd);

/* Runs the connection until done(userdata) is true.  -EBUSY when called from a callback of
 * the same connection (sd-bus does not nest processing). */
int client_run_until(IaClient *c, bool (*done)(void *userdata), void *userdata);

/* A synchronous open over the channel, asking the service for one first if needed.
 * Return: 1 opened (*ret_fd owned by the caller); 0 not decided there: use OpenImage on the
 * bus; negative errno with @error set: refused or failed, as OpenImage would have. */
int client_channel_open(IaClient *c, const char *guest, const char *path, IaImageMode mode,
                        uint64_t flags, IaError *error, int *ret_fd);
/* Closes the channel (if any); the next open asks for a new one. */
void client_channel_drop(IaClient *c);

/* Validation shared by the entry points. */
bool client_guest_name_is_valid(const char *name);
bool client_path_is_valid(const char *path);

/* ---- IaRequest: one asynchronous operation (ia-client.c) ----------------------------------
 *
 * A request is pending from client_request_send() until its reply is handled or it is
 * cancelled.  complete() turns the reply into the outcome and calls the caller's callback
 * (stored untyped: complete() knows its type).  Operations made of several calls
 * (ia_manager_remove_created_async()) keep their calls in @data, are "sent" with a NULL
 * message, and call client_request_complete(req, NULL) themselves when the last reply is in. */

typedef void (*RequestCompleteFunc)(IaRequest *req, IaClient *client, sd_bus_message *reply);

struct IaRequest {
        unsigned n_ref;
        IaClient *client;       /* referenced while pending */
        sd_bus_slot *slot;      /* the call in flight, NULL once completed or cancelled */
        RequestCompleteFunc complete;
        void (*callback)(void);
        void *userdata;
        void *data;             /* owned; freed with free_data() when the request ends */
        void (*free_data)(void *data);
        bool pending;
        bool floating;          /* owns itself until completion */
};

/* A new request holding a reference to @c; *ret is owned by the caller until sent. */
int client_request_new(IaClient *c, RequestCompleteFunc complete, void (*callback)(void),
                       void *userdata, IaRequest **ret);
/* Sends @m (if not NULL) with @req as its completion and hands @req over: to
 * *ret_request, or to itself (floating) if ret_request is NULL.  On failure @req is freed. */
int client_request_send(IaRequest *req, sd_bus_message *m, IaRequest **ret_request);
/* Runs req->complete(req, client, reply) and ends the request. */
void client_request_complete(IaRequest *req, sd_bus_message *reply);
/* Fills @error from an error reply: the negative errno, or 0 if @reply is no error. */
int client_reply_error(sd_bus_message *reply, IaError *error);

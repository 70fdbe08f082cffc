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

#define IA_CLIENT_DEFAULT_TIMEOUT_USEC (60ULL * 1000000ULL)

struct IaClient {
        unsigned n_ref;

        sd_bus *bus;            /* the current connection; NULL only while reconnecting */
        sd_bus *closing_bus;    /* a lost connection still delivering its failures */
        char *address;          /* NULL: the system bus */
        bool connecting;        /* guards against reconnecting from within a reconnect */

        uint64_t timeout_usec;
        bool allow_interactive;

        sd_event *event;        /* attached loop, reapplied to every new connection */
        int64_t event_priority;
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

/* Validation shared by the entry points. */
bool client_guest_name_is_valid(const char *name);
bool client_path_is_valid(const char *path);

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * manager.h — the daemon's context: event loop, bus connection, registry, persisted state,
 * the peers seen on the bus, pending polkit queries and the open workers.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>
#include <glib.h>

#include "authz.h"
#include "config.h"
#include "registry.h"
#include "state.h"

typedef struct Workers Workers;

G_DEFINE_AUTOPTR_CLEANUP_FUNC(sd_bus, sd_bus_flush_close_unref);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(sd_bus_message, sd_bus_message_unref);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(sd_bus_creds, sd_bus_creds_unref);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(sd_event, sd_event_unref);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(sd_event_source, sd_event_source_disable_unref);
static inline void ia_bus_error_free(sd_bus_error *e) {
        sd_bus_error_free(e);
}
#define ia_auto_bus_error __attribute__((cleanup(ia_bus_error_free)))

/* A connection on the bus, as far as we know it.  Keyed by its unique name, which the bus
 * never hands out twice, so nothing here can be inherited by a later connection. */
typedef struct Peer {
        char *name;             /* owned */
        /* Position in the order in which connections appeared on the bus (NameOwnerChanged);
         * 0 for connections that were there before we started watching. */
        uint64_t seq;
        bool have_creds;
        uid_t euid;
        pid_t pid;
        /* The bus is asked for the credentials asynchronously (identity.c): requests that
         * arrive before the answer wait here (sd_bus_message*, referenced), each counted in
         * n_pending. */
        bool creds_asked;
        GQueue creds_waiting;
        unsigned n_pending;     /* requests of this peer parked in polkit or in a worker */
        bool gone;              /* left the bus; kept alive only by pending requests */
        /* polkit's yeses to this connection (NULL until the first).  Dies with the peer, so
         * a decision never outlives its connection. */
        AuthzCache *decisions;
        /* The guest this connection last opened an image for: grants to that guest prefetch
         * polkit's answer for it (authz_prefetch()). */
        char *opened_guest;
        unsigned n_channels;    /* its OpenImage channels (channel.h) */
} Peer;

/* Who sent a message: taken from the bus daemon's view of the connection, never from /proc. */
typedef struct Caller {
        const char *sender;     /* borrowed from the message */
        uid_t euid;
        pid_t pid;
        Peer *peer;             /* borrowed */
        bool via_channel;       /* asked on an OpenImage channel (audited so) */
} Caller;

typedef struct Manager {
        sd_event *event;
        sd_bus *bus;
        Config config;
        Registry *registry;
        State *state;

        GHashTable *peers;              /* unique name → Peer* (owned) */
        uint64_t peer_seq;

        Authz authz;                    /* polkit checks in progress, and the generation */
        /* Requests given back to the bus's read queue once their caller's credentials came
         * (or could not be had): sd_bus_message* → CredsRequeued* (owned, identity.c). */
        GHashTable *creds_requeued;
        unsigned n_pending_total;

        Workers *workers;
        sd_bus_slot *name_owner_slot;
        /* The check for connections that left unannounced (identity_sweep_start()). */
        sd_event_source *sweep_timer;
        sd_bus_slot *sweep_slot;        /* its ListNames in flight, if any */

        GHashTable *channels;           /* Channel* (a reference each), see channel.h */
        unsigned n_channels;
} Manager;

/**
 * manager_new:
 * @config: taken (moved into the manager; @config is reset).
 * @ret: owned by the caller, free with manager_free().
 */
int manager_new(Config *config, Manager **ret);
Manager *manager_free(Manager *m);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(Manager, manager_free);

/* Loads state, connects to the bus at @bus_address (NULL: the system bus), exports the
 * object and takes the name.  Logs its errors. */
int manager_start(Manager *m, const char *bus_address);
/* Runs the loop until SIGTERM/SIGINT or the bus goes away.  Return: exit status. */
int manager_run(Manager *m);

/* Borrowed; NULL when @create is false and the peer is unknown. */
Peer *manager_get_peer(Manager *m, const char *name, bool create);
/* Counts a parked request against its peer and the total.  Return: 0; -ENOBUFS at a limit. */
int manager_pending_inc(Manager *m, Peer *p);
void manager_pending_dec(Manager *m, Peer *p);
/* Every cached polkit decision is void from now on. */
void manager_invalidate_decisions(Manager *m);

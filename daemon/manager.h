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
#include "peer.h"
#include "registry.h"
#include "sent-fd.h"
#include "state.h"

typedef struct Workers Workers;

G_DEFINE_AUTOPTR_CLEANUP_FUNC(sd_bus, sd_bus_flush_close_unref);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(sd_bus_message, sd_bus_message_unref);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(sd_bus_creds, sd_bus_creds_unref);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(sd_event, sd_event_unref);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(sd_event_source, sd_event_source_disable_unref);
/* g_auto(sd_bus_error) error = SD_BUS_ERROR_NULL: the daemon's one cleanup vocabulary is
 * GLib's g_auto* family, plus ia_autofd (macro.h) until GLib 2.76's g_autofd. */
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(sd_bus_error, sd_bus_error_free);

/* Who sent a message: taken from the bus daemon's view of the connection, never from /proc. */
typedef struct Caller {
        const char *sender;     /* borrowed from the message */
        uid_t euid;
        pid_t pid;
        Peer *peer;             /* borrowed */
        bool via_channel;       /* asked on an OpenImage channel (audited so) */
} Caller;

/* The one "waiting" convention of the request path.  A step of a handler (identify(),
 * authorize(), authz_check(), caller_from_message()) returns 0 to go on, a negative errno to
 * refuse, or REQUEST_PARKED when the request waits (for the caller's credentials or for
 * polkit) and will be dispatched again: the handler then returns that value as it is (sd-bus
 * takes 1 as "handled") and does nothing else, so `if (r != 0) return r;` is the whole rule. */
#define REQUEST_PARKED 1

typedef struct Manager {
        sd_event *event;
        sd_bus *bus;
        Config config;
        Registry *registry;
        State *state;

        GHashTable *peers;              /* unique name → Peer* (owned, peer.h) */
        uint64_t peer_seq;              /* the last Peer.seq handed out */
        /* Told when a connection leaves and when its Peer is freed (peer_watch()). */
        const PeerWatch *peer_watches[PEER_WATCHES_MAX];
        unsigned n_peer_watches;

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

        /* The last OpenImage replies that carried an fd, by cookie, in case the bus bounces
         * one (bus-image-access.c): a ring, the oldest overwritten. */
        SentFd sent_fds[SENT_FDS_MAX];
        unsigned sent_fds_next;

        /* Set by the Manager interface's front-end when it registers (bus-manager.c): the
         * pipeline announces a grant it made (a file created through a directory grant)
         * without calling up into a front-end.  NULL: nobody to tell. */
        void (*grants_changed)(struct Manager *m, const char *guest);
        /* The bus connection broke: the loop ends with a failure (manager_run()). */
        bool bus_lost;
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

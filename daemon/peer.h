/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * peer.h — the connections on the bus, as far as the service knows them (Manager.peers).
 * This module alone creates a Peer, frees it, and handles its connection leaving the bus;
 * others read its fields and count their requests in and out with peer_pending_inc()/_dec().
 *
 * A Peer lives while its connection is on the bus, and after that while requests of it are
 * still pending (parked for credentials or polkit, or in a worker): peer_pending_dec() of the
 * last one frees a Peer that is gone.  So a borrowed Peer* is valid until the next
 * peer_pending_dec() or peer_left() on it, and no longer.
 *
 * The modules that keep something per connection (authz: its checks and decisions; channel:
 * the channels) are above this one: they register a PeerWatch at start-up, and this module
 * tells them when a connection leaves and when its Peer is freed, without calling up.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <glib.h>

typedef struct Manager Manager;
typedef struct AuthzCache AuthzCache;   /* authz.h */

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
        /* The start time of process @pid (field 22 of /proc/PID/stat), 0 until known: with
         * @pid and @euid it names the process to polkit (peer_process()). */
        uint64_t starttime;
        /* The process that made the connection is gone, or @pid names another one now. */
        bool process_gone;
        /* The bus hands out pidfds (BusCreds.bus_has_pidfd): polkit may pin the bus name to
         * the process better than a start time can, so it is asked about the bus name. */
        bool bus_pins_process;
        /* CLOCK_BOOTTIME when this Peer was made: the connection existed then, so the process
         * that made it had started before. */
        uint64_t created_usec;
        /* The bus is asked for the credentials asynchronously (identity.c): requests that
         * arrive before the answer wait here (sd_bus_message*, referenced), each counted in
         * n_pending. */
        bool creds_asked;
        GQueue creds_waiting;
        unsigned n_pending;     /* requests of this peer parked in polkit or in a worker */
        bool gone;              /* left the bus; kept alive only by pending requests */
        /* polkit's yeses to this connection (authz.c's; NULL until the first).  authz frees
         * it when the Peer is freed (PeerWatch.freed), so a decision never outlives its
         * connection. */
        AuthzCache *decisions;
        /* The guest this connection last opened an image for: grants to that guest prefetch
         * polkit's answer for it (authz_prefetch()). */
        char *opened_guest;
        /* open_prefetch(): the image of its first OpenImage (owned), until it asks for another
         * one; then polkit is asked about its guest's grants, once. */
        char *first_image;
        bool guest_prefetched;
        unsigned n_channels;    /* its OpenImage channels (channel.h) */
        /* Called Manager.Subscribe and polkit allowed it to list guests: gets the change
         * signals unicast on IA_NOTIFY_INTERFACE (emit()) until it leaves. */
        bool subscribed;
} Peer;

/* What a module above keeps per connection, and how it lets go of it (peer_watch()). */
typedef struct PeerWatch {
        /* The connection @name left the bus.  Called before its Peer (if any) is marked gone,
         * so the Peer may still be found; may free a Peer that was gone already. */
        void (*left)(Manager *m, const char *name);
        /* @p is being freed: after it left and its last request ended, or at exit. */
        void (*freed)(Peer *p);
} PeerWatch;

#define PEER_WATCHES_MAX 4

/* The table for Manager.peers: unique name → Peer* (owned; freed with peer_free_all()). */
GHashTable *peer_table_new(void);
/* Frees every Peer (telling the watches) and the table, at exit. */
void peer_free_all(Manager *m);

/* Registers @w (borrowed; static) at start-up.  Watches are told in the order registered. */
void peer_watch(Manager *m, const PeerWatch *w);

/* Borrowed; NULL if @name is not known. */
Peer *peer_get(Manager *m, const char *name);
/* Borrowed; made (with no credentials yet) if @name is not known. */
Peer *peer_get_or_add(Manager *m, const char *name);

/* The bus says @name appeared (NameOwnerChanged): it gets the next sequence number, which
 * orders it against bindings (identity.c). */
void peer_appeared(Manager *m, const char *name);
/* The connection @name left the bus (NameOwnerChanged, or found missing): the watches let go
 * of it (its queued polkit checks, its channels), its bindings go; the Peer is freed now, or
 * with its last pending request. */
void peer_left(Manager *m, const char *name);

/* Counts a parked request against @p and the total.  Return: 0; -ENOBUFS at a limit. */
int peer_pending_inc(Manager *m, Peer *p);
/* A request of @p is done.  May free @p (when it is gone and this was its last). */
void peer_pending_dec(Manager *m, Peer *p);

/* @p was admitted as the bound process that started at @starttime (identity.c): a start time
 * proved by the binding's pidfd. */
void peer_set_start_time(Peer *p, uint64_t starttime);
/**
 * peer_process: the start time of the process that made @p's connection, which with its pid
 * and uid names it to polkit: the binding's once admitted, else read from /proc once.  A
 * process that started after the Peer was made cannot be the one that connected: its pid was
 * reused.
 * Return: 0; -ENODATA no credentials; -ESRCH that process is gone (and stays so); another
 *         negative errno when /proc could not be read (EMFILE at our fd limit): nothing is
 *         known, ask again.
 */
int peer_process(Peer *p, uint64_t *ret_starttime);
/* polkit could not find @starttime's process behind @p: true (and remembered) when it is
 * gone or replaced, false when it is still there (polkit failed for another reason) or /proc
 * could not be read. */
bool peer_process_vanished(Peer *p, uint64_t starttime);

/* Remembers that @p last opened an image of @guest (authz_prefetch()). */
void peer_set_opened_guest(Peer *p, const char *guest);

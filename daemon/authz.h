/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * authz.h — asynchronous polkit checks, in the shape of systemd's bus-polkit: the first
 * dispatch of a method sends CheckAuthorization and parks the message; when polkit answers,
 * the handler runs again, this time getting the answer (from a defer event: the bus's read
 * queue would cost four system calls more).  The event loop never waits for polkitd.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-bus.h>
#include <glib.h>

#include "peer.h"

typedef struct Caller Caller;

/* The state of polkit checks, one per service (Manager.authz).  The decisions themselves
 * are cached per connection (Peer.decisions, an AuthzCache). */
typedef struct Authz {
        /* sd_bus_message* → AuthzQuery* (owned); a prefetch, which has no message, is its
         * own key. */
        GHashTable *queries;
        GQueue waiting;                 /* AuthzQuery* not yet sent (borrowed) */
        unsigned in_flight;             /* CheckAuthorization calls outstanding */
        unsigned n_prefetch;            /* queries asked by authz_prefetch(), not a request */
        /* Bumped whenever a cached decision may have become wrong: polkit's Changed signal,
         * polkitd restarting, any change to guests, grants or bindings. */
        uint64_t generation;
        /* The unique name that owns org.freedesktop.PolicyKit1: "" none, NULL not known yet
         * (owned).  Only its Changed signals count (see authz_watch_polkit()). */
        char *polkit_owner;
        sd_bus_slot *owner_query;       /* GetNameOwner of polkit's name, at most one */
        /* The handler that runs again now, and its userdata (authz.c): a question it asks
         * next is answered to the same handler. */
        sd_bus_message_handler_t rerun_handler;
        void *rerun_userdata;
        uint64_t query_serial;          /* the last AuthzQuery.serial given */
} Authz;

void authz_init(Authz *a);
/* Frees every query (their requests get no answer), at shutdown. */
void authz_done(Authz *a);

/* ---- the decision cache of one connection: pure, no bus (tests/unit/test-authz.c) ---------- */

/*
 * polkit's yeses to one connection, reused for the same action and details (guest, image,
 * uuid) while the generation they were given in is current and they have not expired.  A
 * yes for a mode covers the weaker ones (ia_mode_covers()): the "mode" detail is not part of
 * the key but of the entry.  At most AUTHZ_CACHE_MAX entries (then it starts afresh).
 */
typedef struct AuthzCache AuthzCache;
#define AUTHZ_CACHE_MAX 1024

AuthzCache *authz_cache_new(void);
AuthzCache *authz_cache_free(AuthzCache *c);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(AuthzCache, authz_cache_free);
/**
 * authz_cache_lookup: is there a current yes for @action with @details?
 * @details: NULL-terminated key, value… list, with a "mode" (else never a hit).
 * @generation: the current Authz.generation; entries of older ones are dropped.
 * @now_usec: CLOCK_MONOTONIC; expired entries are dropped.
 */
bool authz_cache_lookup(AuthzCache *c, const char *action, const char *const *details,
                        uint64_t generation, uint64_t now_usec);
/**
 * authz_cache_remember: records a yes for @action with @details, valid in @generation until
 * @now_usec + @lifetime_usec.  A current entry of a stronger mode is kept.
 */
void authz_cache_remember(AuthzCache *c, const char *action, const char *const *details,
                          uint64_t generation, uint64_t now_usec, uint64_t lifetime_usec);
/* How many entries it holds, expired ones included. */
unsigned authz_cache_size(const AuthzCache *c);

/* ---- checks ---------------------------------------------------------------------------- */

/**
 * authz_check: is @caller allowed @action with @details for message @msg?
 * @details: NULL-terminated key, value, key, value… list; borrowed.
 * Callers with euid 0 are allowed without asking polkit (polkit allows uid 0 for every
 * action before any rule runs; see docs/polkit.md).
 * Return: 0 allowed; REQUEST_PARKED the check is in progress and @msg is parked (manager.h);
 *         negative errno with @ret_error set: -EACCES denied,
 *         -EPERM interactive authorization required, -EHOSTDOWN polkit did not answer,
 *         -ENOBUFS too many pending requests, -ESTALE the request changed between dispatches,
 *         -ECONNRESET the caller left the bus before its answered request ran again
 *         (@caller->peer may be freed then: use nothing of it).
 */
int authz_check(Manager *m, sd_bus_message *msg, const Caller *caller, const char *action,
                const char *const *details, sd_bus_error *ret_error);

/**
 * authz_check_cached: authz_check() without asking polkit — for requests on a channel,
 * which never wait.  True for euid 0, and when @caller's decision cache holds a yes for
 * @action with @details (the same entry authz_check() would reuse).
 */
bool authz_check_cached(Manager *m, const Caller *caller, const char *action,
                        const char *const *details);

/**
 * authz_prefetch: asks polkit now, in the background, what it will be asked when @p opens
 * with @details, so that the answer is in @p's decision cache when the open comes (a VM
 * manager grants overlays right before a snapshot; the emulator then opens each one on its
 * main loop).  Does nothing for root, for peers without credentials, when the answer is
 * already cached or the question asked, or while polkit is busy with real requests.  A
 * request that asks the same before the answer is in takes the question over (authz_check()).
 */
void authz_prefetch(Manager *m, Peer *p, const char *action, const char *const *details);

/* Subscribes to polkit's Changed signal, which voids cached decisions, and asks who owns
 * polkit's name. */
int authz_watch_polkit(Manager *m);

/* polkit's name has a new owner (@owner, "" for none): a new polkitd may have loaded other
 * rules, so every cached decision is void.  From the bus's NameOwnerChanged (identity.c). */
void authz_polkit_owner_changed(Manager *m, const char *owner);

/* Every cached polkit decision is void from now on: polkit's rules changed, or guests,
 * grants or bindings did. */
void authz_invalidate_decisions(Manager *m);

/* What a connection leaving means to authz (peer.h): its queued checks are dropped (they
 * will not be answered), and its decisions are freed with its Peer.  Registered at start-up
 * (manager_new()). */
extern const PeerWatch authz_peer_watch;

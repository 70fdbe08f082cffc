/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * authz.h — asynchronous polkit checks, in the shape of systemd's bus-polkit: the first
 * dispatch of a method sends CheckAuthorization and parks the message; when polkit answers,
 * the message is put back into the bus's read queue and the handler runs again, this time
 * getting the answer.  The event loop never waits for polkitd.
 */
#pragma once

#include <systemd/sd-bus.h>
#include "manager.h"

/**
 * authz_check: is @caller allowed @action with @details for message @msg?
 * @details: NULL-terminated key, value, key, value… list; borrowed.
 * Callers with euid 0 are allowed without asking polkit (polkit allows uid 0 for every
 * action before any rule runs; see docs/polkit.md).
 * Return: 1 allowed; 0 the check is in progress and @msg is parked: return 1 from the
 *         handler without replying; negative errno with @ret_error set: -EACCES denied,
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
 * already cached, or while polkit is busy with real requests.
 */
void authz_prefetch(Manager *m, Peer *p, const char *action, const char *const *details);

/* Subscribes to polkit's Changed signal, which voids cached decisions. */
int authz_watch_polkit(Manager *m);

/* The connection @sender left the bus: drop its queued checks (they will not be answered). */
void authz_forget_sender(Manager *m, const char *sender);
/* Frees every query, at shutdown. */
void authz_flush(Manager *m);
/* The value destructor of Manager.polkit_queries. */
void authz_query_free(gpointer q);

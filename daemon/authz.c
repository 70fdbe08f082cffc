/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * authz.c — asynchronous polkit CheckAuthorization with a bounded number in flight.
 *
 * dbus-daemon refuses more than 128 pending replies per connection, and our connection
 * carries every check of every caller: so at most max_polkit_in_flight are sent at once and
 * the rest wait in a FIFO.  A query is keyed by the request message it belongs to (the query
 * holds a reference, so the pointer cannot be reused while it exists).  When the answer
 * comes, a defer event runs the method's handler again (on_defer_rerun()), which takes the
 * answer and frees the query; a query the handler did not take is freed right after it.  A
 * request whose handler is not known (none asks outside a bus dispatch today) goes back to
 * the bus's read queue instead, and an idle-priority defer event frees its query after.
 *
 * A "yes" may be reused for the same connection, action and details for a short while
 * (DecisionCacheSec): QEMU opens each new overlay seven times during one snapshot, and seven
 * polkit round trips would cost more than the whole transaction.  This is safe because the
 * decision is remembered only
 *   - for the very connection polkit judged (unique names are never reused; the cache dies
 *     with the peer when it leaves the bus),
 *   - for exactly the same action and details (guest, image, mode, uuid),
 *   - until anything that could change the answer happens: polkit's Changed signal (rules,
 *     actions or sessions changed), polkitd restarting, or any change to guests, grants or
 *     bindings (Authz.generation), and
 *   - for at most DecisionCacheSec, which bounds the life of an answer from a rule that looks
 *     at something polkit does not signal (the time of day, a file).
 * Denials are never reused: a caller asking again after a rule change gets a fresh answer.
 *
 * Only open-image answers are reused, and only when the call did not allow interaction: a yes
 * won by authenticating must not be kept (that is what *_keep does, and the manager actions
 * deliberately are not *_keep), and manager calls are rare enough to ask every time.  A known
 * limit: polkitd does not signal changes to /etc/group, so a rule that checks group membership
 * may see a removed member's yes reused for up to DecisionCacheSec.
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <glib.h>

#include "authz.h"
#include "hash.h"
#include "ia-common.h"
#include "log.h"
#include "manager.h"

typedef enum QueryState {
        QUERY_WAITING,          /* in Authz.waiting */
        QUERY_IN_FLIGHT,        /* CheckAuthorization sent */
        QUERY_DONE,             /* answered; the handler runs again */
} QueryState;

typedef struct Decision {
        uint64_t generation;
        uint64_t expires_usec;          /* CLOCK_MONOTONIC */
        IaMode mode;                    /* the "mode" detail that polkit said yes to */
} Decision;

struct AuthzCache {
        GHashTable *decisions;          /* decision_key() → Decision* (owned) */
};

typedef struct AuthzQuery {
        Manager *m;
        sd_bus_message *request;        /* ref */
        char *sender;
        Peer *peer;                     /* borrowed; its n_pending counts this query */
        /* The subject polkit is asked about: the caller's process (pid, start time, uid) when
         * its start time is known, else its bus name (query_send()). */
        pid_t pid;
        uint64_t starttime;
        uid_t euid;
        char *action;
        GStrv details;                  /* key, value, … */
        bool interactive;
        /* The second, interactive question: polkit answered "challenge" to the first (never
         * interactive, so bounded by TimeoutSec), and the caller allowed interaction.  It
         * waits for a person, so it has InteractiveTimeoutSec and is outside the window of
         * MaxPolkitInFlight: people typing passwords must not stall emulators' checks. */
        bool challenge_step;
        bool counted;                   /* counted in Authz.in_flight */
        char *cancel_id;                /* of the interactive question, to withdraw it */
        QueryState state;
        sd_bus_slot *slot;
        sd_event_source *defer;
        /* The method handler that asked, and its userdata (the Manager: every vtable's), to
         * run it again when the answer is in (query_complete()).  NULL: through the bus's read
         * queue instead. */
        sd_bus_message_handler_t handler;
        void *userdata;
        int result;                     /* 1 allowed, or negative errno */
        sd_bus_error error;
        uint64_t generation;            /* Authz.generation when asked */
        uint64_t serial;                /* Authz.query_serial: tells this query from a newer one */
        /* CLOCK_MONOTONIC: TimeoutSec from when the request arrived, not from when its turn
         * came.  With polkitd hung, a queue behind a full window would otherwise wait one
         * timeout per window. */
        uint64_t deadline_usec;
        /* Asked by authz_prefetch(), not by a request: not counted in its peer's pending
         * requests, so it can never cost the peer a slot of its own. */
        bool prefetch;
} AuthzQuery;

/* The key leaves out the "mode" detail, which goes into the Decision instead (see
 * decision_cached()).  Newline cannot occur in any detail: paths, names and uuids are
 * validated first. */
/* A key lives on the stack when it fits (a lookup runs for every open; the heap and a GString
 * for it were a twentieth of one), else on the heap. */
typedef struct DecisionKey {
        char stack[512];
        char *heap;             /* owned, or NULL */
        const char *str;        /* stack or heap */
} DecisionKey;

static void decision_key_done(DecisionKey *k) {
        g_free(k->heap);
}
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(DecisionKey, decision_key_done);

static void decision_key(DecisionKey *k, const char *action, const char *const *details,
                         IaMode *ret_mode) {
        size_t at = strlen(action), size = sizeof(k->stack);
        char *buf = k->stack;

        /* One pass, measuring each string once: this runs for every open.  A key too long for
         * the stack moves to the heap (paths are at most IMAGE_PATH_MAX). */
        *ret_mode = _IA_MODE_INVALID;
        if (at >= size)
                buf = k->heap = g_malloc(size = at + 1);
        memcpy(buf, action, at);
        for (size_t i = 0; details && details[i] && details[i + 1]; i += 2) {
                const char *name = details[i], *value = details[i + 1];
                size_t n = strlen(name), v;

                if (n == 4 && memcmp(name, "mode", 4) == 0) {
                        *ret_mode = ia_mode_from_string(value);
                        continue;
                }
                v = strlen(value);
                if (at + 2 + n + v >= size) {
                        size = MAX(2 * size, at + 2 + n + v + 1);
                        if (k->heap)
                                buf = k->heap = g_realloc(k->heap, size);
                        else
                                buf = k->heap = memcpy(g_malloc(size), k->stack, at);
                }
                buf[at++] = '\n';
                memcpy(buf + at, name, n);
                at += n;
                buf[at++] = '\n';
                memcpy(buf + at, value, v);
                at += v;
        }
        buf[at] = '\0';
        k->str = buf;
}

AuthzCache *authz_cache_new(void) {
        AuthzCache *c = g_new(AuthzCache, 1);

        c->decisions = g_hash_table_new_full(str_hash_seeded, g_str_equal, g_free, g_free);
        return c;
}

AuthzCache *authz_cache_free(AuthzCache *c) {
        if (!c)
                return NULL;
        g_hash_table_unref(c->decisions);
        g_free(c);
        return NULL;
}

unsigned authz_cache_size(const AuthzCache *c) {
        return g_hash_table_size(c->decisions);
}

bool authz_cache_lookup(AuthzCache *c, const char *action, const char *const *details,
                        uint64_t generation, uint64_t now_usec) {
        g_auto(DecisionKey) key = {};
        IaMode mode;
        Decision *d;

        decision_key(&key, action, details, &mode);
        d = g_hash_table_lookup(c->decisions, key.str);
        if (!d)
                return false;
        if (d->generation != generation || now_usec >= d->expires_usec) {
                g_hash_table_remove(c->decisions, key.str);
                return false;
        }
        /* A yes for a mode covers the weaker ones, as a grant does: an O_RDWR fd can do all
         * that an O_RDONLY one can, and "create" hands out O_RDWR.  QEMU opens a new overlay
         * read-only, to create it, read-write and read-only again: one check, not three.
         * docs/polkit.md asks rules to be monotone in the mode accordingly. */
        return mode >= 0 && d->mode >= 0 && ia_mode_covers(d->mode, mode);
}

void authz_cache_remember(AuthzCache *c, const char *action, const char *const *details,
                          uint64_t generation, uint64_t now_usec, uint64_t lifetime_usec) {
        IaMode mode;
        Decision *d;

        if (g_hash_table_size(c->decisions) >= AUTHZ_CACHE_MAX)
                g_hash_table_remove_all(c->decisions);

        g_auto(DecisionKey) key = {};
        decision_key(&key, action, details, &mode);
        Decision *old = g_hash_table_lookup(c->decisions, key.str);

        /* Keep the stronger of two valid yeses. */
        if (old && old->generation == generation && now_usec < old->expires_usec &&
            old->mode >= 0 && (mode < 0 || ia_mode_covers(old->mode, mode)))
                return;
        d = g_new(Decision, 1);
        d->generation = generation;
        d->expires_usec = now_usec + lifetime_usec;
        d->mode = mode;
        g_hash_table_replace(c->decisions, g_strdup(key.str), d);
}

static uint64_t now_usec(Manager *m) {
        uint64_t t = 0;

        (void) sd_event_now(m->event, CLOCK_MONOTONIC, &t);
        return t;
}

static bool decision_cached(Manager *m, Peer *p, const char *action, const char *const *details) {
        if (!p->decisions || m->config.decision_cache_usec == 0)
                return false;
        return authz_cache_lookup(p->decisions, action, details, m->authz.generation, now_usec(m));
}

static void decision_remember(AuthzQuery *q) {
        Manager *m = q->m;

        if (!q->peer || q->peer->gone || m->config.decision_cache_usec == 0)
                return;
        if (q->interactive || !g_str_equal(q->action, IA_ACTION_OPEN_IMAGE))
                return;
        /* Something changed while polkitd was thinking: do not keep this answer. */
        if (q->generation != m->authz.generation)
                return;
        if (!q->peer->decisions)
                q->peer->decisions = authz_cache_new();
        authz_cache_remember(q->peer->decisions, q->action, (const char *const *) q->details,
                             q->generation, now_usec(m), m->config.decision_cache_usec);
}

/* Withdraws an interactive question (the agent's prompt goes away); nobody waits for the
 * answer. */
static void query_cancel_challenge(AuthzQuery *q) {
        int r;

        r = sd_bus_call_method_async(q->m->bus, NULL, "org.freedesktop.PolicyKit1",
                                     "/org/freedesktop/PolicyKit1/Authority",
                                     "org.freedesktop.PolicyKit1.Authority",
                                     "CancelCheckAuthorization", NULL, NULL, "s", q->cancel_id);
        if (r < 0)
                log_debug_errno(r, "Failed to withdraw polkit check %s, ignoring: %m",
                                q->cancel_id);
}

static void query_uncount(AuthzQuery *q) {
        if (q->counted)
                q->m->authz.in_flight--;
        q->counted = false;
}

static void query_free(AuthzQuery *q) {
        if (!q)
                return;
        if (q->state == QUERY_WAITING)
                g_queue_remove(&q->m->authz.waiting, q);
        if (q->slot) {
                /* Cancelled while in flight: the reply will be dropped by sd-bus.  A person
                 * may be looking at the prompt of an interactive one: withdraw it. */
                sd_bus_slot_unref(q->slot);
                if (q->challenge_step)
                        query_cancel_challenge(q);
        }
        query_uncount(q);
        g_free(q->cancel_id);
        if (q->prefetch)
                q->m->authz.n_prefetch--;
        else if (q->peer)
                peer_pending_dec(q->m, q->peer);
        sd_event_source_disable_unref(q->defer);
        sd_bus_message_unref(q->request);
        sd_bus_error_free(&q->error);
        g_free(q->sender);
        g_free(q->action);
        g_strfreev(q->details);
        g_free(q);
}

/* Queries are keyed by their request message; a prefetch has none and is its own key. */
static gpointer query_key(AuthzQuery *q) {
        return q->request ? (gpointer) q->request : (gpointer) q;
}

static void query_remove(AuthzQuery *q) {
        /* Removing from the table frees it (the table owns its values). */
        g_hash_table_remove(q->m->authz.queries, query_key(q));
}

static int on_defer_free(sd_event_source *s, void *userdata) {
        query_remove(userdata);
        return 0;
}

/* The answer is in: run the request's handler again, as sd-bus would dispatch it (and answer
 * with an error as sd-bus would when it fails), from the event loop and not from inside a bus
 * callback.  The handler and its userdata are no object that can go away meanwhile (the
 * pattern of CVE-2020-1712): static functions and the Manager.  Going through the bus's read
 * queue instead (sd_bus_enqueue_for_read()) costs four system calls more per check: sd-bus
 * stops polling its socket and arms a timer to fire at once (an interrupt), then undoes both.
 * At normal priority, as the bus: pending sources of one priority run in the order they
 * became pending, so neither starves the other. */
static int on_defer_rerun(sd_event_source *s, void *userdata) {
        AuthzQuery *q = userdata;
        Manager *m = q->m;
        g_autoptr(sd_bus_message) msg = sd_bus_message_ref(q->request);
        sd_bus_message_handler_t handler = q->handler;
        g_auto(sd_bus_error) error = SD_BUS_ERROR_NULL;
        uint64_t serial = q->serial;
        int r;

        q->defer = sd_event_source_disable_unref(q->defer);
        r = sd_bus_message_rewind(msg, true);
        if (r >= 0) {
                /* Copied: the handler may free q, then ask another question. */
                m->authz.rerun_handler = handler;
                m->authz.rerun_userdata = q->userdata;
                r = handler(msg, m->authz.rerun_userdata, &error);
                m->authz.rerun_handler = NULL;
                m->authz.rerun_userdata = NULL;
        }
        if (r < 0)
                (void) sd_bus_reply_method_errno(msg, r, &error);
        else if (sd_bus_error_is_set(&error))
                (void) sd_bus_reply_method_error(msg, &error);

        /* A handler that stopped before it asked for its answer (the guest went meanwhile,
         * say) left it here.  Only that query: one the handler made anew for the same request
         * waits for its own answer (its own re-run, if it failed at once). */
        q = g_hash_table_lookup(m->authz.queries, msg);
        if (q && q->serial == serial)
                query_remove(q);
        return 0;
}

static void send_next(Manager *m);

/* The answer is in (q->result, q->error): hand the request back to the bus.  Does not send
 * the next query; callers do, so that a run of failures never recurses. */
static void query_complete(AuthzQuery *q) {
        Manager *m = q->m;
        int r;

        q->slot = sd_bus_slot_unref(q->slot);
        query_uncount(q);
        q->state = QUERY_DONE;

        if (!q->request)
                log_debug("Prefetched polkit's answer on %s for %s: %s", q->action, q->sender,
                          q->result == 1 ? "yes" : "no");
        if (!q->request || (q->peer && q->peer->gone)) {
                /* A prefetch (its answer is in the peer's cache by now), or nobody is there to
                 * answer: do not run the handler again. */
                query_remove(q);
                return;
        }

        if (q->handler)
                r = sd_event_add_defer(m->event, &q->defer, on_defer_rerun, q);
        else {
                r = sd_bus_enqueue_for_read(m->bus, q->request);
                if (r >= 0)
                        r = sd_event_add_defer(m->event, &q->defer, on_defer_free, q);
                if (r >= 0)
                        r = sd_event_source_set_priority(q->defer, SD_EVENT_PRIORITY_IDLE);
        }
        if (r < 0) {
                log_error_errno(r, "Failed to re-enqueue a request after its polkit check: %m");
                query_remove(q);
        }
}

static void query_finish(AuthzQuery *q) {
        Manager *m = q->m;

        query_complete(q);
        send_next(m);
}

static int query_send(AuthzQuery *q);

/* Reads polkit's details after the two booleans: whether the person dismissed the prompt. */
static int read_dismissed(sd_bus_message *reply, bool *ret_dismissed) {
        const char *k, *v;
        int r;

        *ret_dismissed = false;
        r = sd_bus_message_enter_container(reply, 'a', "{ss}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_read(reply, "{ss}", &k, &v)) > 0)
                if (g_str_equal(k, "polkit.dismissed") && g_str_equal(v, "true"))
                        *ret_dismissed = true;
        return r;
}

/* The answer to the interactive question, once a person was (to be) asked. */
static void challenge_answered(AuthzQuery *q, const sd_bus_error *e, int authorized,
                               int challenge, bool dismissed) {
        Manager *m = q->m;

        if (authorized) {
                q->result = 1;
                return;
        }
        q->result = -EACCES;
        if (e && (sd_bus_error_has_name(e, SD_BUS_ERROR_NO_REPLY) ||
                  sd_bus_error_has_name(e, SD_BUS_ERROR_TIMEOUT))) {
                query_cancel_challenge(q);
                sd_bus_error_setf(&q->error, IA_ERROR_AUTH_FAILED,
                                  "No authentication for action %s within %" PRIu64 " s",
                                  q->action, m->config.polkit_interactive_timeout_usec / G_USEC_PER_SEC);
        } else if (e) {
                q->result = -EHOSTDOWN;
                sd_bus_error_setf(&q->error, IA_ERROR_AUTH_UNAVAILABLE,
                                  "The authorization service could not decide on action %s (%s), so it is denied",
                                  q->action, e->name);
        } else if (dismissed)
                sd_bus_error_setf(&q->error, IA_ERROR_AUTH_FAILED,
                                  "Authentication for action %s was cancelled", q->action);
        else if (challenge)
                /* polkit found no agent to ask: nobody could have typed a password. */
                sd_bus_error_setf(&q->error, IA_ERROR_AUTH_FAILED,
                                  "Action %s needs authentication, and no polkit authentication agent is there to ask for it",
                                  q->action);
        else
                sd_bus_error_setf(&q->error, IA_ERROR_AUTH_FAILED,
                                  "Authentication for action %s failed", q->action);
}

/* polkit wants a password and the caller allows a prompt: ask again, interactively, with a
 * person's timeout and outside the window.  Returns 0 when the question is out. */
static int query_ask_person(AuthzQuery *q) {
        static uint64_t serial;
        Manager *m = q->m;

        q->slot = sd_bus_slot_unref(q->slot);
        query_uncount(q);
        q->challenge_step = true;
        q->cancel_id = g_strdup_printf("image-access-%" PRIu64, ++serial);
        q->deadline_usec = now_usec(m) + m->config.polkit_interactive_timeout_usec;
        return query_send(q);
}

/* The caller's connection outlived the process that made it (a child holds it now): polkit
 * would be asked about a process that is not there, or about whoever has its pid now. */
static int process_gone(Peer *p, const char *action, sd_bus_error *ret_error) {
        log_debug("The process %d that made connection %s is gone: %s denied", (int) p->pid,
                  p->name, action);
        sd_bus_error_setf(ret_error, SD_BUS_ERROR_ACCESS_DENIED,
                          "The process that made connection %s (pid %d) is gone; polkit is not asked about action %s for another process",
                          p->name, (int) p->pid, action);
        return -EACCES;
}

static int on_check_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        AuthzQuery *q = userdata;
        const sd_bus_error *e;
        int authorized = 0, challenge = 0, r;
        bool dismissed = false;

        e = sd_bus_message_get_error(reply);
        if (e && q->challenge_step) {
                challenge_answered(q, e, 0, 0, false);
                query_finish(q);
                return 0;
        }
        if (e && !q->challenge_step && q->starttime != 0 && q->peer &&
            peer_process_vanished(q->peer, q->starttime)) {
                /* polkitd found the process gone or replaced (its pid reused), which it says
                 * with an error of no fixed name (reading /proc failed, or the start time
                 * differs): that is a denial, and not worth a warning, which anyone could cause
                 * at will. */
                q->result = -EACCES;
                (void) process_gone(q->peer, q->action, &q->error);
                query_finish(q);
                return 0;
        }
        if (e) {
                /* polkitd absent, died, timed out or refused us: fail closed. */
                log_warning("polkit check of %s for %s failed: %s: %s", q->action, q->sender,
                            e->name, e->message ?: "");
                q->result = -EHOSTDOWN;
                sd_bus_error_setf(&q->error, IA_ERROR_AUTH_UNAVAILABLE,
                                  "The authorization service could not decide on action %s (%s), so it is denied",
                                  q->action, e->name);
                query_finish(q);
                return 0;
        }

        /* Entering checks the type of the whole answer, the details included; only the
         * interactive question's details are read (a cold open's reading was 11,000
         * instructions of its 115,000). */
        r = sd_bus_message_enter_container(reply, 'r', "bba{ss}");
        if (r >= 0)
                r = sd_bus_message_read_basic(reply, 'b', &authorized);
        if (r >= 0)
                r = sd_bus_message_read_basic(reply, 'b', &challenge);
        if (r >= 0 && q->challenge_step)
                r = read_dismissed(reply, &dismissed);
        if (r < 0) {
                q->result = -EHOSTDOWN;
                sd_bus_error_setf(&q->error, IA_ERROR_AUTH_UNAVAILABLE,
                                  "The authorization service sent a malformed answer for action %s, so it is denied",
                                  q->action);
        } else if (q->challenge_step)
                challenge_answered(q, NULL, authorized, challenge, dismissed);
        else if (!authorized && challenge && q->interactive) {
                r = query_ask_person(q);
                if (r >= 0) {
                        /* This one left the window: the next waiting query may go. */
                        send_next(q->m);
                        return 0;
                }
                q->result = -EHOSTDOWN;
                sd_bus_error_setf(&q->error, IA_ERROR_AUTH_UNAVAILABLE,
                                  "Could not ask the authorization service about action %s: %s",
                                  q->action, strerror(-r));
        } else if (authorized) {
                q->result = 1;
                decision_remember(q);
        }
        else if (challenge) {
                q->result = -EPERM;
                sd_bus_error_setf(&q->error, SD_BUS_ERROR_INTERACTIVE_AUTHORIZATION_REQUIRED,
                                  "Action %s needs authentication, and the call did not allow interactive authorization",
                                  q->action);
        } else {
                q->result = -EACCES;
                sd_bus_error_setf(&q->error, SD_BUS_ERROR_ACCESS_DENIED,
                                  "Not authorized by polkit for action %s", q->action);
        }

        query_finish(q);
        return 0;
}

static int query_send(AuthzQuery *q) {
        Manager *m = q->m;
        g_autoptr(sd_bus_message) call = NULL;
        int r;

        r = sd_bus_message_new_method_call(m->bus, &call, "org.freedesktop.PolicyKit1",
                                           "/org/freedesktop/PolicyKit1/Authority",
                                           "org.freedesktop.PolicyKit1.Authority",
                                           "CheckAuthorization");
        if (r < 0)
                return r;
        /* The caller's process, as the bus daemon saw it connect, when we know its start time:
         * what polkitd 122 would make of the bus name, without asking the bus about it.  For
         * a bus name it asks dbus-daemon, synchronously, for the pid and the uid each time it
         * looks at the subject: about ten round trips per check, 40 % of its CPU.  (It still
         * asks once about the caller, us.) */
        if (q->starttime != 0)
                r = sd_bus_message_append(call, "(sa{sv})", "unix-process", 3,
                                          "pid", "u", (uint32_t) q->pid,
                                          "start-time", "t", q->starttime,
                                          "uid", "i", (int32_t) q->euid);
        else
                r = sd_bus_message_append(call, "(sa{sv})", "system-bus-name", 1,
                                          "name", "s", q->sender);
        /* Element by element: sd_bus_message_append() parses its format for every call, a
         * fifth of the cost of building this message. */
        if (r >= 0)
                r = sd_bus_message_append_basic(call, 's', q->action);
        if (r >= 0)
                r = sd_bus_message_open_container(call, 'a', "{ss}");
        for (char **d = q->details; r >= 0 && d && d[0] && d[1]; d += 2) {
                r = sd_bus_message_open_container(call, 'e', "ss");
                if (r >= 0)
                        r = sd_bus_message_append_basic(call, 's', d[0]);
                if (r >= 0)
                        r = sd_bus_message_append_basic(call, 's', d[1]);
                if (r >= 0)
                        r = sd_bus_message_close_container(call);
        }
        if (r >= 0)
                r = sd_bus_message_close_container(call);
        /* Flag 1 = AllowUserInteraction: only for the second question (see challenge_step).
         * The first never prompts, so that only a real challenge waits for a person. */
        if (r >= 0)
                r = sd_bus_message_append_basic(call, 'u', &(uint32_t) { q->challenge_step ? 1 : 0 });
        if (r >= 0)
                r = sd_bus_message_append_basic(call, 's', q->challenge_step ? q->cancel_id : "");
        if (r < 0)
                return r;

        uint64_t now = now_usec(m);
        if (now >= q->deadline_usec)
                return -ETIMEDOUT;
        r = sd_bus_call_async(m->bus, &q->slot, call, on_check_reply, q, q->deadline_usec - now);
        if (r < 0)
                return r;
        q->state = QUERY_IN_FLIGHT;
        if (!q->challenge_step) {
                m->authz.in_flight++;
                q->counted = true;
        }
        log_debug("Asking polkit about %s for %s%s", q->action, q->sender,
                  q->challenge_step ? ", who may be asked for a password" : "");
        return 0;
}

static void send_next(Manager *m) {
        AuthzQuery *q;
        int r;

        while (m->authz.in_flight < m->config.max_polkit_in_flight &&
               (q = g_queue_pop_head(&m->authz.waiting))) {
                q->state = QUERY_IN_FLIGHT; /* popped: query_free must not touch the queue */
                r = query_send(q);
                if (r < 0) {
                        q->result = -EHOSTDOWN;
                        if (r == -ETIMEDOUT)
                                sd_bus_error_setf(&q->error, IA_ERROR_AUTH_UNAVAILABLE,
                                                  "The authorization service did not answer about action %s within %" PRIu64 " s, so it is denied",
                                                  q->action, m->config.polkit_timeout_usec / G_USEC_PER_SEC);
                        else
                                sd_bus_error_setf(&q->error, IA_ERROR_AUTH_UNAVAILABLE,
                                                  "Could not ask the authorization service about action %s: %s",
                                                  q->action, strerror(-r));
                        /* Re-dispatch so that the caller gets the error. */
                        query_complete(q);
                }
        }
}

static bool details_equal(char **a, const char *const *b) {
        size_t i;

        for (i = 0; a && a[i] && b && b[i]; i++)
                if (!g_str_equal(a[i], b[i]))
                        return false;
        return (!a || !a[i]) && (!b || !b[i]);
}

/* Which method handler asked about @msg: the one run again (on_defer_rerun()), or the one
 * sd-bus is running for @msg itself (not a reply, match or filter callback that happens to
 * be running). */
static void query_set_handler(AuthzQuery *q, sd_bus_message *msg) {
        Authz *a = &q->m->authz;

        if (a->rerun_handler) {
                q->handler = a->rerun_handler;
                q->userdata = a->rerun_userdata;
        } else if (sd_bus_get_current_message(q->m->bus) == msg &&
                   sd_bus_message_is_method_call(msg, NULL, NULL) > 0) {
                q->handler = sd_bus_get_current_handler(q->m->bus);
                q->userdata = sd_bus_get_current_userdata(q->m->bus);
        } else
                q->handler = NULL;
        /* Only the Manager outlives every query: anything else goes through the read queue,
         * where sd-bus finds the object anew. */
        if (q->userdata != q->m)
                q->handler = NULL;
}

/* The subject of @q: @p's process, whose start time peer_process() gave (0 without
 * credentials, which a request always has), or its bus name: without a start time, or on a
 * bus that hands out pidfds, with which polkit 124 and later pin the name. */
static void query_set_subject(AuthzQuery *q, Peer *p, uint64_t starttime) {
        q->pid = p->pid;
        q->euid = p->euid;
        q->starttime = p->bus_pins_process ? 0 : starttime;
}

/* An unanswered question of @p's that asks exactly this (a prefetch only, with
 * @prefetch_only).  A linear look: only while prefetches are out, or for one. */
static AuthzQuery *find_question(Manager *m, Peer *p, const char *action,
                                 const char *const *details, bool prefetch_only) {
        GHashTableIter it;
        AuthzQuery *q;

        g_hash_table_iter_init(&it, m->authz.queries);
        while (g_hash_table_iter_next(&it, NULL, (gpointer *) &q))
                if ((q->prefetch || !prefetch_only) && q->peer == p && q->state != QUERY_DONE &&
                    !q->challenge_step && g_str_equal(q->action, action) &&
                    details_equal(q->details, details))
                        return q;
        return NULL;
}

int authz_check(Manager *m, sd_bus_message *msg, const Caller *caller, const char *action,
                const char *const *details, sd_bus_error *ret_error) {
        uint64_t starttime = 0;
        AuthzQuery *q;
        int r;

        if (caller->euid == 0)
                return 0;

        q = g_hash_table_lookup(m->authz.queries, msg);
        if (q) {
                if (q->state != QUERY_DONE)
                        return REQUEST_PARKED;
                if (!g_str_equal(q->action, action) || !details_equal(q->details, details)) {
                        /* The handler asked a different question the second time: the state
                         * it is based on changed.  Never apply an answer to another question. */
                        query_remove(q);
                        sd_bus_error_setf(ret_error, SD_BUS_ERROR_ACCESS_DENIED,
                                          "The request changed while it was being authorized; try again");
                        return -ESTALE;
                }
                if (q->peer && q->peer->gone) {
                        /* The caller left after its answer came and before its handler ran
                         * again (its NameOwnerChanged was dispatched in between): act for
                         * nobody.  Removing the query may also free the Peer
                         * that caller->peer points to, so the handler must stop here. */
                        query_remove(q);
                        sd_bus_error_setf(ret_error, SD_BUS_ERROR_ACCESS_DENIED,
                                          "Caller %s left the bus before its request was carried out",
                                          caller->sender);
                        return -ECONNRESET;
                }
                r = q->result;          /* 1 yes, or negative errno */
                if (r < 0)
                        sd_bus_error_copy(ret_error, &q->error);
                query_remove(q);
                return r < 0 ? r : 0;
        }

        if (decision_cached(m, caller->peer, action, details)) {
                log_debug("Reusing polkit's yes on %s for %s", action, caller->sender);
                return 0;
        }

        r = peer_process(caller->peer, &starttime);
        if (r == -ESRCH)
                return process_gone(caller->peer, action, ret_error);
        if (r < 0 && r != -ENODATA) {
                sd_bus_error_setf(ret_error, r == -EMFILE || r == -ENFILE ? IA_ERROR_LIMIT_EXCEEDED : IA_ERROR_IO,
                                  "Could not read the start time of process %d: %s",
                                  (int) caller->peer->pid, strerror(-r));
                return r;
        }

        r = peer_pending_inc(m, caller->peer);
        if (r < 0) {
                sd_bus_error_setf(ret_error, IA_ERROR_LIMIT_EXCEEDED,
                                  "Too many requests of %s are waiting (at most %u per caller, %u in all)",
                                  caller->sender, m->config.max_pending_per_sender,
                                  m->config.max_pending_total);
                return r;
        }

        /* The very question a prefetch asked already: the request takes it over, so that
         * polkitd is not asked twice and the answer comes as soon as it can. */
        q = m->authz.n_prefetch > 0 ? find_question(m, caller->peer, action, details, true) : NULL;
        if (q) {
                g_hash_table_steal(m->authz.queries, q);
                q->prefetch = false;
                q->request = sd_bus_message_ref(msg);
                query_set_handler(q, msg);
                q->interactive = sd_bus_message_get_allow_interactive_authorization(msg) > 0;
                g_hash_table_insert(m->authz.queries, msg, q);
                m->authz.n_prefetch--;
                if (q->state == QUERY_WAITING) {
                        /* A request goes before the prefetches queued with it. */
                        g_queue_remove(&m->authz.waiting, q);
                        g_queue_push_head(&m->authz.waiting, q);
                }
                log_debug("Request of %s takes over the prefetch on %s", caller->sender, action);
                return REQUEST_PARKED;
        }

        q = g_new0(AuthzQuery, 1);
        q->m = m;
        q->serial = ++m->authz.query_serial;
        q->request = sd_bus_message_ref(msg);
        query_set_handler(q, msg);
        q->sender = g_strdup(caller->sender);
        q->peer = caller->peer;
        query_set_subject(q, caller->peer, starttime);
        q->action = g_strdup(action);
        q->details = g_strdupv((char **) details);
        q->interactive = sd_bus_message_get_allow_interactive_authorization(msg) > 0;
        q->state = QUERY_WAITING;
        q->error = SD_BUS_ERROR_NULL;
        q->generation = m->authz.generation;
        q->deadline_usec = now_usec(m) + m->config.polkit_timeout_usec;
        g_hash_table_insert(m->authz.queries, msg, q);
        g_queue_push_tail(&m->authz.waiting, q);

        send_next(m);
        return REQUEST_PARKED;
}

bool authz_check_cached(Manager *m, const Caller *caller, const char *action,
                        const char *const *details) {
        return caller->euid == 0 || decision_cached(m, caller->peer, action, details);
}

static const char *detail_value(const char *const *details, const char *name) {
        for (size_t i = 0; details && details[i] && details[i + 1]; i += 2)
                if (g_str_equal(details[i], name))
                        return details[i + 1];
        return NULL;
}

void authz_prefetch(Manager *m, Peer *p, const char *action, const char *const *details) {
        uint64_t starttime = 0;
        AuthzQuery *q;
        int r;

        if (m->config.decision_cache_usec == 0 || p->gone || !p->have_creds || p->euid == 0)
                return;
        /* Never crowd out real requests: prefetch only while polkit is lightly used. */
        if (m->authz.in_flight + g_queue_get_length(&m->authz.waiting) >=
            m->config.max_polkit_in_flight / 2)
                return;
        if (decision_cached(m, p, action, details) || find_question(m, p, action, details, false))
                return;
        r = peer_process(p, &starttime);
        if (r < 0 && r != -ENODATA)
                return;

        q = g_new0(AuthzQuery, 1);
        q->m = m;
        q->serial = ++m->authz.query_serial;
        q->prefetch = true;
        q->sender = g_strdup(p->name);
        q->peer = p;
        query_set_subject(q, p, starttime);
        q->action = g_strdup(action);
        q->details = g_strdupv((char **) details);
        q->state = QUERY_WAITING;
        q->error = SD_BUS_ERROR_NULL;
        q->generation = m->authz.generation;
        q->deadline_usec = now_usec(m) + m->config.polkit_timeout_usec;
        g_hash_table_insert(m->authz.queries, q, q);
        g_queue_push_tail(&m->authz.waiting, q);
        m->authz.n_prefetch++;
        log_debug("Prefetching polkit's answer on %s for %s about '%s'", action, p->name,
                  detail_value(details, "image") ?: "");
        send_next(m);
}

/* PeerWatch.left: the connection @sender left the bus, so its queued checks will not be
 * answered: drop them. */
static void authz_forget_sender(Manager *m, const char *sender) {
        GHashTableIter it;
        AuthzQuery *q;

        g_hash_table_iter_init(&it, m->authz.queries);
        while (g_hash_table_iter_next(&it, NULL, (gpointer *) &q)) {
                if (!g_str_equal(q->sender, sender))
                        continue;
                /* Queued ones never reach polkitd; in-flight ones finish and are dropped in
                 * query_complete() because the peer is gone.  An in-flight prefetch does not
                 * keep its peer alive (it is not a request of the peer's), so it lets go of it
                 * here, before the peer may be freed. */
                if (q->state == QUERY_WAITING)
                        g_hash_table_iter_remove(&it);
                else if (q->prefetch)
                        q->peer = NULL;
        }
}

/* PeerWatch.freed: a connection's decisions die with its Peer. */
static void authz_peer_freed(Peer *p) {
        authz_cache_free(p->decisions);
}

const PeerWatch authz_peer_watch = {
        .left = authz_forget_sender,
        .freed = authz_peer_freed,
};

void authz_invalidate_decisions(Manager *m) {
        m->authz.generation++;
}

static int ask_polkit_owner(Manager *m);

static int on_polkit_changed(sd_bus_message *msg, void *userdata, sd_bus_error *ret_error) {
        Manager *m = userdata;
        const char *sender = sd_bus_message_get_sender(msg);

        /* The match names no sender (authz_watch_polkit()), so anyone may send this.  From
         * another name than the owner we know, it is a forgery, or polkitd was replaced and
         * the NameOwnerChanged that said so was lost (a full queue drops signals): ask the
         * bus, and on_polkit_owner() voids the decisions if the owner did change.  While the
         * owner is not known, believing a forger only costs some questions again. */
        if (m->authz.polkit_owner && !g_str_equal(sender ?: "", m->authz.polkit_owner)) {
                log_debug("polkit's Changed signal came from %s, which does not own its name: asking the bus who does",
                          sender ?: "?");
                (void) ask_polkit_owner(m);
                return 0;
        }
        log_debug("polkit's configuration changed; forgetting cached decisions");
        authz_invalidate_decisions(m);
        return 0;
}

void authz_polkit_owner_changed(Manager *m, const char *owner) {
        g_free(m->authz.polkit_owner);
        m->authz.polkit_owner = g_strdup(owner);
        authz_invalidate_decisions(m);
}

static int on_polkit_owner(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Manager *m = userdata;
        const char *owner = NULL;
        bool changed;

        m->authz.owner_query = sd_bus_slot_unref(m->authz.owner_query);

        if (sd_bus_message_is_method_error(reply, "org.freedesktop.DBus.Error.NameHasNoOwner"))
                owner = "";
        else if (sd_bus_message_is_method_error(reply, NULL) ||
                 sd_bus_message_read_basic(reply, 's', &owner) <= 0) {
                /* No answer (a timeout, a limit): not known, so every Changed counts. */
                log_debug("Could not learn who owns polkit's name: %s",
                          sd_bus_message_get_error(reply) ? sd_bus_message_get_error(reply)->name : "bad reply");
                g_clear_pointer(&m->authz.polkit_owner, g_free);
                return 0;
        }

        /* A NameOwnerChanged that the bus sent after this answer has not been read yet, one
         * sent before it is older: this is current either way. */
        changed = m->authz.polkit_owner && !g_str_equal(m->authz.polkit_owner, owner);
        g_free(m->authz.polkit_owner);
        m->authz.polkit_owner = g_strdup(owner);
        if (changed) {
                log_debug("polkit's name has another owner, %s; forgetting cached decisions",
                          owner[0] ? owner : "none");
                authz_invalidate_decisions(m);
        }
        return 0;
}

static int ask_polkit_owner(Manager *m) {
        if (m->authz.owner_query)
                return 0;
        return sd_bus_call_method_async(m->bus, &m->authz.owner_query, "org.freedesktop.DBus",
                                        "/org/freedesktop/DBus", "org.freedesktop.DBus",
                                        "GetNameOwner", on_polkit_owner, m,
                                        "s", "org.freedesktop.PolicyKit1");
}

int authz_watch_polkit(Manager *m) {
        int r;

        /* No sender in the match: sd-bus cannot tell which unique name a well-known one
         * stands for, so it ran such a match's tree for every message we received (some 400
         * instructions each, under callgrind).  on_polkit_changed() checks the sender against
         * the owner, which NameOwnerChanged keeps current.  Asynchronous: polkitd need not be
         * running for us to start. */
        r = sd_bus_match_signal_async(m->bus, NULL, NULL, "/org/freedesktop/PolicyKit1/Authority",
                                      "org.freedesktop.PolicyKit1.Authority", "Changed",
                                      on_polkit_changed, NULL, m);
        if (r < 0)
                return r;
        return ask_polkit_owner(m);
}

static void query_free_cb(gpointer q) {
        query_free(q);
}

void authz_init(Authz *a) {
        *a = (Authz) {
                .queries = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL, query_free_cb),
        };
        g_queue_init(&a->waiting);
}

void authz_done(Authz *a) {
        if (!a->queries)
                return;
        /* Freeing a query touches the queue and the window: empty the table first. */
        g_hash_table_remove_all(a->queries);
        g_clear_pointer(&a->queries, g_hash_table_unref);
        g_clear_pointer(&a->polkit_owner, g_free);
        a->owner_query = sd_bus_slot_unref(a->owner_query);
}

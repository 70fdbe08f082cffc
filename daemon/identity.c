/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * identity.c — caller credentials and guest bindings.
 *
 * The bus daemon tells us a connection's uid and pid as the kernel recorded them when the
 * connection was made (SO_PEERCRED).  A pid alone proves nothing: the process that made a
 * connection may have exited and its pid been given to the emulator since.  So a process
 * binding admits a connection only if
 *   - its pid equals the bound pidfd's pid and that process has not exited (the pidfd says
 *     so without any race: it refers to one process, never to a later owner of the pid),
 *   - its uid equals the process's effective uid when it was bound, and
 *   - the connection appeared on the bus (NameOwnerChanged, which reaches us in bus order)
 *     after the binding was made.  A connection left over from an earlier owner of the pid
 *     was on the bus before the binding, and is refused.
 * Once admitted, the connection itself is bound (unique names are never reused on a bus).
 * docs/identity.md has the whole story, including what this does not stop.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <glib.h>

#include "authz.h"
#include "ia-proc.h"
#include "identity.h"
#include "log.h"
#include "macro.h"
#include "peer.h"

static int on_name_owner_changed(sd_bus_message *msg, void *userdata, sd_bus_error *ret_error) {
        Manager *m = userdata;
        const char *name, *old_owner, *new_owner;
        int r;

        /* Only the bus itself sends as org.freedesktop.DBus: no connection may own that
         * name, and the bus sets every sender. */
        if (!g_str_equal(sd_bus_message_get_sender(msg) ?: "", "org.freedesktop.DBus")) {
                log_debug("Ignoring a NameOwnerChanged signal from %s, which is not the bus",
                          sd_bus_message_get_sender(msg) ?: "?");
                return 0;
        }
        r = sd_bus_message_read(msg, "sss", &name, &old_owner, &new_owner);
        if (r < 0)
                return 0;
        if (g_str_equal(name, "org.freedesktop.PolicyKit1")) {
                authz_polkit_owner_changed(m, new_owner);
                return 0;
        }
        if (name[0] != ':')
                return 0;

        if (old_owner[0] == '\0' && new_owner[0] != '\0') {
                peer_appeared(m, name);
        } else if (new_owner[0] == '\0')
                peer_left(m, name);
        return 0;
}

int identity_watch_bus(Manager *m) {
        /* Synchronous on purpose: no connection may appear unseen after this returns. */
        /* No sender in the match: sd-bus cannot tell which unique name a well-known one stands
         * for, so it ran such a match's tree for every message we received (some 700
         * instructions each, under callgrind).  on_name_owner_changed() checks the sender instead. */
        return sd_bus_match_signal(m->bus, &m->name_owner_slot, NULL,
                                   "/org/freedesktop/DBus", "org.freedesktop.DBus",
                                   "NameOwnerChanged", on_name_owner_changed, m);
}

/*
 * The credentials of a connection are asked of the bus once, asynchronously.  A synchronous
 * call would be simpler, but while it waits sd-bus reads every message that arrives into
 * its queue, with every fd attached to it: a flood of calls carrying 16 fds each, from
 * connections whose first call makes us ask, took us to the fd limit, where sd-bus drops
 * the bus connection.  So a request of a connection whose credentials are not known yet
 * waits, counted like one that waits for polkit, and is given back to the bus's read queue
 * when the answer comes; identify() then finds the answer.
 */
typedef struct CredsRequeued {
        Manager *m;
        sd_bus_message *msg;    /* the key in Manager.creds_requeued (that table's reference) */
        Peer *peer;             /* kept alive by the pending count this request still holds */
        bool failed;
        /* After the dispatch: a request whose handler did not come back to identify() (none
         * does that today) gives its pending count back here instead of leaking it. */
        sd_event_source *defer;
} CredsRequeued;

void creds_requeued_free(void *p) {
        CredsRequeued *rq = p;

        sd_event_source_disable_unref(rq->defer);
        g_free(rq);
}

static int on_requeued_idle(sd_event_source *s, void *userdata) {
        CredsRequeued *rq = userdata;
        Manager *m = rq->m;
        Peer *p = rq->peer;

        log_debug("A request of %s was not dispatched again after its credentials came; dropping it",
                  p->name);
        g_hash_table_remove(m->creds_requeued, rq->msg);        /* frees rq and this source */
        peer_pending_dec(m, p);                              /* may free p */
        return 0;
}

typedef struct CredsQuery {
        Manager *m;
        char *name;
} CredsQuery;

static void creds_query_free(void *userdata) {
        CredsQuery *q = userdata;

        g_free(q->name);
        g_free(q);
}

int creds_parse(sd_bus_message *reply, BusCreds *ret) {
        bool have_uid = false, have_pid = false;
        int r;

        *ret = (BusCreds) {};
        r = sd_bus_message_get_error(reply) ? -EIO : sd_bus_message_enter_container(reply, 'a', "{sv}");
        while (r > 0) {
                const char *key;

                r = sd_bus_message_enter_container(reply, 'e', "sv");
                if (r <= 0)
                        break;
                r = sd_bus_message_read(reply, "s", &key);
                if (r >= 0 && (g_str_equal(key, "UnixUserID") || g_str_equal(key, "ProcessID"))) {
                        uint32_t v;

                        r = sd_bus_message_read(reply, "v", "u", &v);
                        if (r >= 0 && key[0] == 'U') {
                                ret->uid = (uid_t) v;
                                have_uid = true;
                        } else if (r >= 0) {
                                ret->pid = (pid_t) v;
                                have_pid = true;
                        }
                } else if (r >= 0 && g_str_equal(key, "ProcessFD")) {
                        /* Only that there is one (the message keeps the fd and closes it). */
                        r = sd_bus_message_skip(reply, "v");
                        if (r >= 0)
                                ret->bus_has_pidfd = true;
                } else if (r >= 0)
                        r = sd_bus_message_skip(reply, "v");
                if (r >= 0)
                        r = sd_bus_message_exit_container(reply);
                if (r >= 0)
                        r = 1;
        }
        if (r < 0)
                return r;
        return have_uid && have_pid && ret->pid > 0 ? 0 : -ENODATA;
}

static int on_creds_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        CredsQuery *q = userdata;
        Manager *m = q->m;
        Peer *p = peer_get(m, q->name);
        BusCreds creds;
        sd_bus_message *msg;
        int r;

        if (!p)         /* cannot be: its waiting requests keep it */
                return 0;
        p->creds_asked = false;

        if (creds_parse(reply, &creds) >= 0) {
                p->euid = creds.uid;
                p->pid = creds.pid;
                p->bus_pins_process = creds.bus_has_pidfd;
                p->have_creds = true;
        } else
                log_debug("No credentials for %s: %s", q->name,
                          sd_bus_message_get_error(reply) ? sd_bus_message_get_error(reply)->message : "incomplete answer");

        /* Back to the read queue, in order; each keeps its pending count until identify()
         * (or the idle cleanup after the dispatch) gives it back. */
        while ((msg = g_queue_pop_head(&p->creds_waiting))) {
                CredsRequeued *rq = g_new(CredsRequeued, 1);

                *rq = (CredsRequeued) { .m = m, .msg = msg, .peer = p, .failed = !p->have_creds };
                r = sd_bus_enqueue_for_read(m->bus, msg);
                if (r >= 0)
                        r = sd_event_add_defer(m->event, &rq->defer, on_requeued_idle, rq);
                if (r >= 0)
                        /* After the bus, whose dispatch of the requeued message comes first. */
                        r = sd_event_source_set_priority(rq->defer, SD_EVENT_PRIORITY_IDLE);
                if (r < 0) {
                        /* Not requeued, or requeued without its entry: dispatched again, it
                         * starts afresh as any first request of this peer. */
                        log_warning_errno(r, "Failed to requeue a request of %s, dropping it: %m", q->name);
                        creds_requeued_free(rq);
                        sd_bus_message_unref(msg);
                        peer_pending_dec(m, p);
                        continue;
                }
                g_hash_table_replace(m->creds_requeued, msg, rq);       /* takes our reference */
        }
        return 0;
}

int caller_from_message(Manager *m, sd_bus_message *msg, Caller *ret) {
        const char *sender = sd_bus_message_get_sender(msg);
        CredsRequeued *rq;
        Peer *p;
        int r;

        if (!sender)
                return -EPERM;

        rq = g_hash_table_lookup(m->creds_requeued, msg);
        if (rq) {
                /* Requeued after the answer: its pending count is ours to give back. */
                bool failed = rq->failed;

                p = rq->peer;
                g_hash_table_remove(m->creds_requeued, msg);
                if (failed || p->gone || !p->have_creds) {
                        peer_pending_dec(m, p);      /* may free p */
                        return -EPERM;
                }
                peer_pending_dec(m, p);              /* not gone: p stays */
        } else
                p = peer_get_or_add(m, sender);

        if (!p->have_creds) {
                /* Wait for the bus's answer, counted like a request waiting for polkit. */
                r = peer_pending_inc(m, p);
                if (r < 0)
                        return r;
                if (!p->creds_asked) {
                        CredsQuery *q = g_new0(CredsQuery, 1);
                        sd_bus_slot *slot = NULL;

                        q->m = m;
                        q->name = g_strdup(sender);
                        r = sd_bus_call_method_async(m->bus, &slot, "org.freedesktop.DBus",
                                                     "/org/freedesktop/DBus", "org.freedesktop.DBus",
                                                     "GetConnectionCredentials", on_creds_reply, q,
                                                     "s", sender);
                        if (r < 0) {
                                creds_query_free(q);
                                peer_pending_dec(m, p);
                                return log_debug_errno(r, "Cannot ask for the credentials of %s: %m", sender), -EPERM;
                        }
                        (void) sd_bus_slot_set_destroy_callback(slot, creds_query_free);
                        (void) sd_bus_slot_set_floating(slot, true);
                        sd_bus_slot_unref(slot);
                        p->creds_asked = true;
                }
                g_queue_push_tail(&p->creds_waiting, sd_bus_message_ref(msg));
                return REQUEST_PARKED;
        }

        *ret = (Caller) {
                .sender = sender,
                .euid = p->euid,
                .pid = p->pid,
                .peer = p,
        };
        return 0;
}

static bool pidfd_alive(int pidfd) {
        struct pollfd pfd = { .fd = pidfd, .events = POLLIN };

        /* A pidfd polls readable once its process has exited. */
        if (pidfd < 0)
                return false;
        if (poll(&pfd, 1, 0) < 0)
                return false;
        return !(pfd.revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL));
}

static int pidfd_get_pid(int pidfd, pid_t *ret) {
        char path[64], line[256];
        FILE *f;
        int r = -EBADF;

        snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", pidfd);
        f = fopen(path, "re");
        if (!f)
                return -errno;
        while (fgets(line, sizeof(line), f)) {
                long pid;

                if (strncmp(line, "Pid:", 4) != 0)
                        continue;
                pid = strtol(line + 4, NULL, 10);
                if (pid <= 0)
                        r = -ESRCH;     /* -1 exited, 0 in a pid namespace we cannot see */
                else {
                        *ret = (pid_t) pid;
                        r = 0;
                }
                break;
        }
        fclose(f);
        return r;
}

/* Reads what a binding needs about the process behind @pidfd; the final liveness check
 * proves the /proc data belonged to that process and not to a successor of its pid. */
static int pidfd_describe(int pidfd, pid_t *ret_pid, uint64_t *ret_starttime, uid_t *ret_euid) {
        pid_t pid;
        int r;

        r = pidfd_get_pid(pidfd, &pid);
        if (r < 0)
                return r;
        r = ia_proc_get_start_time(pid, ret_starttime);
        if (r < 0)
                return r;
        r = ia_proc_get_euid(pid, ret_euid);
        if (r < 0)
                return r;
        if (!pidfd_alive(pidfd))
                return -ESRCH;
        *ret_pid = pid;
        return 0;
}

static void prune_dead_bindings(Manager *m, Guest *g) {
        for (guint i = g->bindings->len; i > 0; i--) {
                Binding *b = g_ptr_array_index(g->bindings, i - 1);
                pid_t pid = b->pid;
                uint64_t starttime = b->starttime;

                if (pidfd_alive(b->pidfd))
                        continue;
                if (registry_remove_binding(m->registry, g->name, b) >= 0)
                        (void) state_log_remove_binding(m->state, g->name, pid, starttime);
        }
}

int identity_check_bound(Manager *m, const Caller *c, Guest *g) {
        int r;

        if (g->has_uid && c->euid == g->uid)
                return 0;

        for (guint i = 0; i < g->bindings->len; i++) {
                Binding *b = g_ptr_array_index(g->bindings, i);

                if (binding_has_connection(b, c->sender)) {
                        /* Also after a restart, which restores admissions but not Peers. */
                        if (b->pid == c->pid)
                                peer_set_start_time(c->peer, b->starttime);
                        return 0;
                }
        }

        /* A connection that has left the bus (its request was answered after it went) is
         * never admitted: its name would linger in the binding. */
        if (c->peer->gone)
                return -ENOLINK;

        for (guint i = 0; i < g->bindings->len; i++) {
                Binding *b = g_ptr_array_index(g->bindings, i);
                uid_t euid_now;

                if (b->pid != c->pid)
                        continue;
                if (c->peer->seq <= b->bind_seq) {
                        log_notice("Connection %s (pid %d) is older than the binding of pid %d to guest '%s': refused, it may belong to an earlier owner of the pid",
                                   c->sender, (int) c->pid, (int) b->pid, g->name);
                        continue;
                }
                /* The uid is compared now, not at bind time: managers bind between fork and
                 * exec, often before the child drops to the emulator's uid.  Read from /proc,
                 * then the pidfd proves the pid still named the bound process while we read. */
                if (ia_proc_get_euid(b->pid, &euid_now) < 0 || !pidfd_alive(b->pidfd))
                        continue;
                if (euid_now != c->euid) {
                        log_notice("Connection %s has uid %u, bound process %d of guest '%s' runs as %u: refused",
                                   c->sender, (unsigned) c->euid, (int) b->pid, g->name, (unsigned) euid_now);
                        continue;
                }

                r = binding_add_connection(b, c->sender, &m->registry->limits);
                if (r < 0)
                        return log_warning_errno(r, "Binding of pid %d to guest '%s' has too many connections; refusing %s",
                                                 (int) b->pid, g->name, c->sender), -ENOLINK;
                r = state_log_add_connection(m->state, g->name, b->pid, b->starttime, c->sender);
                if (r < 0) {
                        binding_remove_connection(b, c->sender);
                        return log_error_errno(r, "Failed to persist the admission of %s: %m", c->sender), -ENOLINK;
                }
                peer_set_start_time(c->peer, b->starttime);
                log_debug("Admitted %s as pid %d of guest '%s'", c->sender, (int) b->pid, g->name);
                return 0;
        }

        return -ENOLINK;
}

int identity_bind_process(Manager *m, Guest *g, int pidfd, Binding **ret) {
        ia_autofd int fd = -1;
        uint64_t starttime;
        pid_t pid;
        uid_t euid;
        int r;

        r = pidfd_describe(pidfd, &pid, &starttime, &euid);
        if (r < 0)
                return r;

        fd = fcntl(pidfd, F_DUPFD_CLOEXEC, 3);
        if (fd < 0)
                return -errno;

        prune_dead_bindings(m, g);

        /* bind_seq: every connection we learn of from now on has a larger seq. */
        r = registry_add_binding(m->registry, g->name, pid, starttime, euid, IA_TAKE_FD(fd),
                                 m->peer_seq, ret);
        if (r < 0)
                return r;
        r = state_log_add_binding(m->state, g->name, *ret);
        if (r < 0) {
                (void) registry_remove_binding(m->registry, g->name, *ret);
                return r;
        }
        return 0;
}

/* The names in a ListNames reply.  Return: 0 and a set (owned by the caller); negative errno. */
static int names_from_reply(sd_bus_message *reply, GHashTable **ret) {
        g_autoptr(GHashTable) names = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
        const char *name;
        int r;

        r = sd_bus_message_enter_container(reply, 'a', "s");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_read(reply, "s", &name)) > 0)
                g_hash_table_add(names, g_strdup(name));
        if (r < 0)
                return r;
        *ret = g_steal_pointer(&names);
        return 0;
}

static int list_bus_names(Manager *m, GHashTable **ret) {
        g_autoptr(sd_bus_message) reply = NULL;
        g_auto(sd_bus_error) error = SD_BUS_ERROR_NULL;
        int r;

        r = sd_bus_call_method(m->bus, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                               "org.freedesktop.DBus", "ListNames", &error, &reply, NULL);
        if (r < 0)
                return r;
        return names_from_reply(reply, ret);
}

int identity_restore(Manager *m) {
        g_autoptr(GHashTable) names = NULL;
        GHashTableIter it;
        Guest *g;
        int r;

        r = list_bus_names(m, &names);
        if (r < 0)
                return log_error_errno(r, "Failed to list the bus's connections: %m");

        g_hash_table_iter_init(&it, m->registry->guests);
        while (g_hash_table_iter_next(&it, NULL, (gpointer *) &g)) {
                for (guint i = g->bindings->len; i > 0; i--) {
                        Binding *b = g_ptr_array_index(g->bindings, i - 1);
                        ia_autofd int fd = -1;
                        uint64_t starttime = 0;
                        pid_t pid = b->pid;

                        for (guint k = b->connections->len; k > 0; k--) {
                                const char *c = g_ptr_array_index(b->connections, k - 1);

                                if (!g_hash_table_contains(names, c))
                                        binding_remove_connection(b, c);
                        }
                        if (b->pidfd >= 0)
                                continue;

                        fd = (int) syscall(SYS_pidfd_open, pid, 0);
                        if (fd >= 0 && fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
                                fd = ia_safe_close(fd);
                        if (fd >= 0 && ia_proc_get_start_time(pid, &starttime) >= 0 &&
                            starttime == b->starttime && pidfd_alive(fd)) {
                                b->pidfd = IA_TAKE_FD(fd);
                                b->bind_seq = m->peer_seq;
                                continue;
                        }

                        log_info("Bound process %d of guest '%s' is gone; dropping its binding",
                                 (int) pid, g->name);
                        starttime = b->starttime;
                        if (registry_remove_binding(m->registry, g->name, b) >= 0)
                                (void) state_log_remove_binding(m->state, g->name, pid, starttime);
                }
        }
        return 0;
}

/*
 * dbus-daemon queues at most 64 fds (max_outgoing_unix_fds) for a receiver that has not read
 * them yet, and drops whatever else comes for it meanwhile, signals included.  Any local user
 * can fill our queue that way (a few calls carrying 16 fds each), so a NameOwnerChanged telling
 * us that a connection left may never come.  Unique names are never reused, so nobody could
 * pass for the connection we missed; but its peer, its channels and its place among its
 * binding's connections (MaxConnectionsPerBinding) would stay, and an emulator that reconnects
 * while the queue is full would run out of places.  So we compare what we know with the
 * bus's list of names from time to time.
 *
 * Why a name missing from the reply has left: dbus-daemon answers ListNames in order with
 * what it sends us, and sd-bus dispatches in the order it reads (requeued requests come back
 * behind, never ahead; a request that authz runs again after polkit's answer was dispatched
 * once before, so its connection was there even earlier, and a connection that left is never
 * admitted).  So every message dispatched before the reply came from a connection that was on
 * the bus before the list was made.  This holds as long as peers are created and
 * connections admitted only while dispatching a message of that connection: never create a
 * peer from a name given as an argument or from a channel.
 */
#define SWEEP_INTERVAL_USEC (30 * G_USEC_PER_SEC)

static void sweep_names(Manager *m, GHashTable *names, GHashTable *ret_missing) {
        GHashTableIter it;
        const char *name;
        Peer *p;
        Guest *g;

        g_hash_table_iter_init(&it, m->peers);
        while (g_hash_table_iter_next(&it, (gpointer *) &name, (gpointer *) &p))
                if (!p->gone && !g_hash_table_contains(names, name))
                        g_hash_table_add(ret_missing, g_strdup(name));

        /* Connections restored from the state directory have no peer until they call. */
        g_hash_table_iter_init(&it, m->registry->guests);
        while (g_hash_table_iter_next(&it, NULL, (gpointer *) &g))
                for (guint i = 0; i < g->bindings->len; i++) {
                        Binding *b = g_ptr_array_index(g->bindings, i);

                        for (guint k = 0; k < b->connections->len; k++) {
                                const char *c = g_ptr_array_index(b->connections, k);

                                if (!g_hash_table_contains(names, c))
                                        g_hash_table_add(ret_missing, g_strdup(c));
                        }
                }
}

static int on_sweep_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Manager *m = userdata;
        g_autoptr(GHashTable) names = NULL;
        g_autoptr(GHashTable) missing = NULL;
        GHashTableIter it;
        const char *name;
        int r;

        m->sweep_slot = sd_bus_slot_unref(m->sweep_slot);

        if (sd_bus_message_is_method_error(reply, NULL)) {
                /* Our queue may be full right now: try again at the next round. */
                log_debug("Could not list the bus's names: %s",
                          sd_bus_message_get_error(reply)->message ?: "");
                return 0;
        }
        r = names_from_reply(reply, &names);
        if (r < 0) {
                log_debug_errno(r, "Could not read the bus's names: %m");
                return 0;
        }

        missing = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
        sweep_names(m, names, missing);
        if (g_hash_table_size(missing) == 0)
                return 0;
        /* Collected first: forgetting removes peers from the table walked above. */
        g_hash_table_iter_init(&it, missing);
        while (g_hash_table_iter_next(&it, (gpointer *) &name, NULL)) {
                log_debug("Connection %s is no longer on the bus, though we were not told", name);
                peer_left(m, name);
        }
        log_notice("Forgot %u connection(s) that left the bus unannounced (a lost NameOwnerChanged)",
                   g_hash_table_size(missing));
        return 0;
}

static int on_sweep_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;
        int r;

        r = sd_event_source_set_time_relative(s, SWEEP_INTERVAL_USEC);
        if (r >= 0)
                r = sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
        if (r < 0)
                log_warning_errno(r, "Failed to schedule the next check for connections that left unannounced; no more checks: %m");

        /* Nothing to compare; and one question at a time. */
        if (m->sweep_slot ||
            (g_hash_table_size(m->peers) == 0 && g_hash_table_size(m->registry->guests) == 0))
                return 0;
        r = sd_bus_call_method_async(m->bus, &m->sweep_slot, "org.freedesktop.DBus",
                                     "/org/freedesktop/DBus", "org.freedesktop.DBus", "ListNames",
                                     on_sweep_reply, m, NULL);
        if (r < 0)
                log_debug_errno(r, "Could not ask for the bus's names: %m");
        return 0;
}

int identity_sweep_start(Manager *m) {
        return sd_event_add_time_relative(m->event, &m->sweep_timer, CLOCK_MONOTONIC,
                                          SWEEP_INTERVAL_USEC, SWEEP_INTERVAL_USEC / 10,
                                          on_sweep_timer, m);
}

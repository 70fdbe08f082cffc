/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * peer.c — the connections on the bus: the table, their sequence numbers, their pending
 * requests, and what happens when one leaves (peer.h).
 */
#include <errno.h>
#include <time.h>
#include <unistd.h>
#include <systemd/sd-bus.h>

#include "ia-proc.h"
#include "log.h"
#include "manager.h"
#include "peer.h"

static void message_unref(gpointer p) {
        sd_bus_message_unref(p);
}

static void peer_free(Manager *m, Peer *p) {
        for (unsigned i = 0; i < m->n_peer_watches; i++)
                if (m->peer_watches[i]->freed)
                        m->peer_watches[i]->freed(p);
        g_free(p->name);
        g_queue_clear_full(&p->creds_waiting, message_unref);
        g_free(p->opened_guest);
        g_free(p->first_image);
        g_free(p);
}

/* Takes @p out of the table and frees it. */
static void peer_remove(Manager *m, Peer *p) {
        g_hash_table_steal(m->peers, p->name);
        peer_free(m, p);
}

GHashTable *peer_table_new(void) {
        /* No value destructor: freeing a Peer tells the watches, which needs the Manager. */
        return g_hash_table_new(g_str_hash, g_str_equal);
}

void peer_free_all(Manager *m) {
        GHashTableIter it;
        Peer *p;

        if (!m->peers)
                return;
        g_hash_table_iter_init(&it, m->peers);
        while (g_hash_table_iter_next(&it, NULL, (gpointer *) &p)) {
                g_hash_table_iter_steal(&it);
                peer_free(m, p);
        }
        g_clear_pointer(&m->peers, g_hash_table_unref);
}

void peer_watch(Manager *m, const PeerWatch *w) {
        g_assert(m->n_peer_watches < PEER_WATCHES_MAX);
        m->peer_watches[m->n_peer_watches++] = w;
}

Peer *peer_get(Manager *m, const char *name) {
        return g_hash_table_lookup(m->peers, name);
}

static uint64_t now_boottime_usec(void) {
        struct timespec ts;

        if (clock_gettime(CLOCK_BOOTTIME, &ts) < 0)
                return UINT64_MAX;
        return (uint64_t) ts.tv_sec * 1000000U + (uint64_t) ts.tv_nsec / 1000U;
}

Peer *peer_get_or_add(Manager *m, const char *name) {
        Peer *p = g_hash_table_lookup(m->peers, name);

        if (p)
                return p;
        p = g_new0(Peer, 1);
        p->name = g_strdup(name);
        p->created_usec = now_boottime_usec();
        g_hash_table_insert(m->peers, p->name, p);
        return p;
}

void peer_appeared(Manager *m, const char *name) {
        Peer *p = g_hash_table_lookup(m->peers, name);

        if (!p) {
                p = peer_get_or_add(m, name);
                p->seq = ++m->peer_seq;
        }
}

void peer_left(Manager *m, const char *name) {
        Peer *p;
        unsigned n;

        /* authz drops the connection's queued polkit checks, channel closes its channels. */
        for (unsigned i = 0; i < m->n_peer_watches; i++)
                if (m->peer_watches[i]->left)
                        m->peer_watches[i]->left(m, name);
        n = registry_forget_connection(m->registry, name);
        if (n > 0)
                log_debug("Connection %s left the bus; forgot it in %u binding(s)", name, n);
        /* Looked up only now: dropping its polkit queries may have freed a peer already gone. */
        p = g_hash_table_lookup(m->peers, name);
        if (!p)
                return;
        p->gone = true;
        if (p->n_pending == 0)
                peer_remove(m, p);
}

int peer_pending_inc(Manager *m, Peer *p) {
        if (p->n_pending >= m->config.max_pending_per_sender ||
            m->n_pending_total >= m->config.max_pending_total)
                return -ENOBUFS;
        p->n_pending++;
        m->n_pending_total++;
        return 0;
}

void peer_pending_dec(Manager *m, Peer *p) {
        g_assert(p->n_pending > 0);
        p->n_pending--;
        m->n_pending_total--;
        if (p->gone && p->n_pending == 0)
                peer_remove(m, p);
}

void peer_set_start_time(Peer *p, uint64_t starttime) {
        p->starttime = starttime;
        p->process_gone = false;
}

int peer_process(Peer *p, uint64_t *ret_starttime) {
        static long ticks;
        uint64_t st;

        if (!p->have_creds || p->pid <= 0)
                return -ENODATA;
        if (p->process_gone)
                return -ESRCH;
        if (p->starttime == 0) {
                int r;

                if (ticks <= 0)
                        ticks = sysconf(_SC_CLK_TCK);
                if (ticks <= 0)
                        return -EIO;
                r = ia_proc_get_start_time(p->pid, &st);
                if (r < 0 && r != -ESRCH)
                        return r;       /* EMFILE at our fd limit, say: nothing is known */
                /* Field 22 counts clock ticks of CLOCK_BOOTTIME, rounded down. */
                if (r < 0 || st == 0 || st * 1000000U / (uint64_t) ticks > p->created_usec) {
                        p->process_gone = true;
                        return -ESRCH;
                }
                p->starttime = st;
        }
        *ret_starttime = p->starttime;
        return 0;
}

bool peer_process_vanished(Peer *p, uint64_t starttime) {
        uint64_t now;
        int r;

        if (p->process_gone)
                return true;
        r = ia_proc_get_start_time(p->pid, &now);
        if ((r >= 0 && now == starttime) || (r < 0 && r != -ESRCH))
                return false;   /* still there, or nothing is known */
        p->process_gone = true;
        return true;
}

void peer_set_opened_guest(Peer *p, const char *guest) {
        if (g_strcmp0(p->opened_guest, guest) == 0)
                return;
        g_free(p->opened_guest);
        p->opened_guest = g_strdup(guest);
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * peer.c — the connections on the bus: the table, their sequence numbers, their pending
 * requests, and what happens when one leaves (peer.h).
 */
#include <errno.h>
#include <systemd/sd-bus.h>

#include "authz.h"
#include "channel.h"
#include "log.h"
#include "manager.h"
#include "peer.h"

static void message_unref(gpointer p) {
        sd_bus_message_unref(p);
}

static void peer_free(gpointer p) {
        Peer *peer = p;

        g_free(peer->name);
        g_queue_clear_full(&peer->creds_waiting, message_unref);
        authz_cache_free(peer->decisions);
        g_free(peer->opened_guest);
        g_free(peer->first_image);
        g_free(peer);
}

GHashTable *peer_table_new(void) {
        return g_hash_table_new_full(g_str_hash, g_str_equal, NULL, peer_free);
}

Peer *peer_get(Manager *m, const char *name) {
        return g_hash_table_lookup(m->peers, name);
}

Peer *peer_get_or_add(Manager *m, const char *name) {
        Peer *p = g_hash_table_lookup(m->peers, name);

        if (p)
                return p;
        p = g_new0(Peer, 1);
        p->name = g_strdup(name);
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

        authz_forget_sender(m, name);
        n = registry_forget_connection(m->registry, name);
        if (n > 0)
                log_debug("Connection %s left the bus; forgot it in %u binding(s)", name, n);
        /* Looked up only now: dropping its polkit queries may have freed a peer already gone. */
        p = g_hash_table_lookup(m->peers, name);
        if (!p)
                return;
        if (p->n_channels > 0)
                channel_close_owner(m, name);
        p->gone = true;
        if (p->n_pending == 0)
                g_hash_table_remove(m->peers, name);
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
                g_hash_table_remove(m->peers, p->name);
}

void peer_set_opened_guest(Peer *p, const char *guest) {
        if (g_strcmp0(p->opened_guest, guest) == 0)
                return;
        g_free(p->opened_guest);
        p->opened_guest = g_strdup(guest);
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * manager.c — the daemon's context and its lifetime: state, bus, name, loop.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <systemd/sd-daemon.h>
#include <glib.h>

#include "authz.h"
#include "bus-image-access.h"
#include "bus-manager.h"
#include "channel.h"
#include "ia-common.h"
#include "identity.h"
#include "log.h"
#include "manager.h"
#include "workers.h"

static void message_unref(gpointer p) {
        sd_bus_message_unref(p);
}

int manager_new(Config *config, Manager **ret) {
        g_autoptr(Manager) m = g_new0(Manager, 1);
        int r;

        m->config = *config;
        *config = (Config) {};
        authz_init(&m->authz);
        m->peers = peer_table_new();
        /* What a connection leaving means to the modules above peer.c, in this order: its
         * queued polkit checks go first (which may free a Peer that was gone already), then
         * its channels. */
        peer_watch(m, &authz_peer_watch);
        peer_watch(m, &channel_peer_watch);
        m->creds_requeued = g_hash_table_new_full(g_direct_hash, g_direct_equal,
                                                  message_unref, creds_requeued_free);
        m->registry = registry_new(&m->config.limits);
        m->channels = g_hash_table_new_full(g_direct_hash, g_direct_equal,
                                            (GDestroyNotify) channel_unref, NULL);

        r = sd_event_default(&m->event);
        if (r < 0)
                return r;
        r = workers_new(m->event, m->config.max_open_threads, &m->workers);
        if (r < 0)
                return r;

        *ret = g_steal_pointer(&m);
        return 0;
}

Manager *manager_free(Manager *m) {
        if (!m)
                return NULL;

        /* Channels count against their peers: close them while the peers are known.  Their
         * requests in workers keep a reference and are dropped by workers_free(). */
        if (m->channels) {
                channel_close_all(m);
                g_hash_table_unref(m->channels);
        }
        /* Queries hold bus messages and bus slots: free them while the bus is still there. */
        authz_done(&m->authz);
        workers_free(m->workers);
        sd_bus_slot_unref(m->name_owner_slot);
        sd_bus_slot_unref(m->sweep_slot);
        sd_event_source_disable_unref(m->sweep_timer);
        g_clear_pointer(&m->creds_requeued, g_hash_table_unref);
        sd_bus_flush_close_unref(m->bus);
        sd_event_unref(m->event);
        peer_free_all(m);
        registry_free(m->registry);
        state_free(m->state);
        config_done(&m->config);
        for (unsigned i = 0; i < SENT_FDS_MAX; i++)
                sent_fd_clear(&m->sent_fds[i]);
        g_free(m);
        return NULL;
}

static void move_aside(const char *dir, const char *name) {
        g_autofree char *from = g_build_filename(dir, name, NULL);
        g_autofree char *to = g_strdup_printf("%s.corrupt", from);

        if (rename(from, to) >= 0)
                log_notice("Kept the unreadable '%s' as '%s' for inspection", from, to);
        else if (errno != ENOENT)
                log_warning_errno(errno, "Failed to move '%s' aside, ignoring: %m", from);
}

static int load_state(Manager *m) {
        g_autofree char *error = NULL;
        int r;

        r = state_open(m->config.state_dir, &m->state);
        if (r == -EBUSY) {
                /* Another service (on another bus, say) uses the same state: running on it
                 * would lose one service's grants to the other's at the next restart. */
                pid_t holder = state_lock_holder(m->config.state_dir);

                if (holder > 0)
                        return log_error_errno(r, "The state directory '%s' is in use by another image-accessd, pid %d; refusing to start",
                                               m->config.state_dir, (int) holder);
                return log_error_errno(r, "The state directory '%s' is in use by another image-accessd; refusing to start",
                                       m->config.state_dir);
        }
        if (r < 0)
                return log_error_errno(r, "Failed to open the state directory '%s': %m",
                                       m->config.state_dir);

        r = state_load(m->state, m->registry, &error);
        if (r == -EBADMSG) {
                /* Fail closed: nothing granted rather than a half-loaded table. */
                log_error("State in '%s' is corrupt: %s. Starting with no guests and no grants.",
                          m->config.state_dir, error ?: "unknown error");
                state_free(g_steal_pointer(&m->state));
                move_aside(m->config.state_dir, "state");
                move_aside(m->config.state_dir, "journal");
                r = state_open(m->config.state_dir, &m->state);
                if (r < 0)
                        return log_error_errno(r, "Failed to reopen the state directory: %m");
                /* A State refuses every write (-EROFS) until state_load() succeeded on it: load
                 * the now empty directory, or nothing (not even the bus id) could be recorded.
                 * If the corrupt files could not be moved aside, this fails again: exit. */
                g_clear_pointer(&error, g_free);
                r = state_load(m->state, m->registry, &error);
                if (r < 0)
                        return log_error_errno(r, "Failed to start afresh in '%s' after the corrupt state: %s",
                                               m->config.state_dir, error ?: strerror(-r));
                return 0;
        }
        if (r < 0)
                return log_error_errno(r, "Failed to load state from '%s': %s", m->config.state_dir,
                                       error ?: strerror(-r));

        if (state_n_retired(m->state) > 0)
                log_warning("Dropped %u grant(s) and description(s) from '%s' whose path or text holds a control, line separator or bidi character, which this version refuses",
                            state_n_retired(m->state), m->config.state_dir);
        log_info("Loaded %u guest(s) and %" G_GUINT64_FORMAT " grant(s) from '%s'",
                 g_hash_table_size(m->registry->guests), m->registry->n_grants, m->config.state_dir);
        return 0;
}

static int connect_bus(Manager *m, const char *address) {
        int r;

        if (!address)
                return sd_bus_open_system(&m->bus);

        r = sd_bus_new(&m->bus);
        if (r < 0)
                return r;
        r = sd_bus_set_address(m->bus, address);
        if (r < 0)
                return r;
        r = sd_bus_set_bus_client(m->bus, true);
        if (r < 0)
                return r;
        /* Fds in and out: OpenImage replies with one, BindProcess receives one. */
        r = sd_bus_negotiate_fds(m->bus, true);
        if (r < 0)
                return r;
        return sd_bus_start(m->bus);
}

static int update_bus_id(Manager *m) {
        sd_id128_t id;
        char s[SD_ID128_STRING_MAX];
        int r;

        r = sd_bus_get_bus_id(m->bus, &id);
        if (r < 0)
                return r;
        sd_id128_to_string(id, s);
        if (g_strcmp0(m->registry->bus_id, s) == 0)
                return 0;
        /* Unique names recorded on another bus instance mean nothing here. */
        registry_set_bus_id(m->registry, s);
        return state_log_bus_id(m->state, s);
}

/* The first thing the loop does when it ends, before sd-bus's own exit source closes the
 * bus: if the bus is closed already, the connection broke (sd-bus ended the loop for
 * exit-on-disconnect).  Rather than a match on sd-bus's local Disconnected signal, which
 * sd-bus would run for every message we receive. */
static int on_loop_exit(sd_event_source *s, void *userdata) {
        Manager *m = userdata;

        if (sd_bus_is_open(m->bus) <= 0)
                m->bus_lost = true;
        return 0;
}

static int on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Manager *m = userdata;

        log_info("Received %s, exiting", strsignal((int) si->ssi_signo));
        return sd_event_exit(m->event, EXIT_SUCCESS);
}

int manager_start(Manager *m, const char *bus_address) {
        sd_event_source *s = NULL;
        sigset_t mask;
        int r;

        r = load_state(m);
        if (r < 0)
                return r;

        r = connect_bus(m, bus_address);
        if (r < 0)
                return log_error_errno(r, "Failed to connect to the bus%s%s: %m",
                                       bus_address ? " at " : "", bus_address ?: "");

        r = identity_watch_bus(m);
        if (r < 0)
                return log_error_errno(r, "Failed to watch the bus's connections: %m");

        r = authz_watch_polkit(m);
        if (r < 0)
                return log_error_errno(r, "Failed to watch polkit: %m");

        r = bus_image_access_register(m);
        if (r >= 0)
                r = bus_manager_register(m);
        if (r < 0)
                return log_error_errno(r, "Failed to export the object: %m");

        r = update_bus_id(m);
        if (r < 0)
                return log_error_errno(r, "Failed to record the bus id: %m");

        r = identity_restore(m);
        if (r < 0)
                return r;

        r = sd_bus_attach_event(m->bus, m->event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0)
                return log_error_errno(r, "Failed to attach the bus to the event loop: %m");
        r = identity_sweep_start(m);
        if (r < 0)
                return log_error_errno(r, "Failed to start checking for connections that left: %m");
        /* Without the bus we cannot serve anyone: exit, and let systemd or bus activation
         * start us again; everything needed is in the state directory. */
        r = sd_bus_set_exit_on_disconnect(m->bus, true);
        if (r < 0)
                return log_error_errno(r, "Failed to set exit-on-disconnect: %m");
        r = sd_event_add_exit(m->event, &s, on_loop_exit, m);
        if (r >= 0)
                r = sd_event_source_set_priority(s, SD_EVENT_PRIORITY_IMPORTANT);
        if (r >= 0)
                r = sd_event_source_set_floating(s, true);
        s = sd_event_source_unref(s);
        if (r < 0)
                return log_error_errno(r, "Failed to watch the end of the loop: %m");

        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        r = sd_event_add_signal(m->event, NULL, SIGTERM, on_signal, m);
        if (r >= 0)
                r = sd_event_add_signal(m->event, NULL, SIGINT, on_signal, m);
        if (r < 0)
                return log_error_errno(r, "Failed to watch signals: %m");
        (void) signal(SIGPIPE, SIG_IGN);

        r = sd_bus_request_name(m->bus, IA_BUS_NAME, 0);
        if (r < 0)
                return log_error_errno(r, "Failed to acquire the name %s: %m", IA_BUS_NAME);

        log_info("Serving %s on %s (state in '%s')", IA_BUS_NAME, bus_address ?: "the system bus",
                 m->config.state_dir);
        (void) sd_notify(false, "READY=1\nSTATUS=Serving");
        return 0;
}

int manager_run(Manager *m) {
        int r, code;

        r = sd_event_loop(m->event);
        code = r < 0 ? EXIT_FAILURE : r;
        if (r < 0)
                log_error_errno(r, "Event loop failed: %m");
        else if (m->bus_lost) {
                /* Whatever else asked the loop to exit in the same iteration (a SIGTERM). */
                code = EXIT_FAILURE;
                log_error("Lost the connection to the bus; exiting with status %d so that the service manager starts image-accessd again",
                          code);
        }

        (void) sd_notify(false, "STOPPING=1");
        /* Leave a compact snapshot behind; the journal is already durable, so a failure here
         * loses nothing. */
        r = state_maybe_compact(m->state, m->registry, true);
        if (r < 0)
                log_warning_errno(r, "Failed to write a snapshot at exit, ignoring: %m");
        return code;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-peer.c — unit tests for daemon/peer.c: a Peer's life.  Sequence numbers in order of
 * appearance, the pending limits (per connection and in all), and the rule that a connection
 * that left lives on exactly as long as its pending requests, and what the modules above
 * (authz, channel) are told through their PeerWatch.  No bus: a Manager that was never
 * started.
 */
#include <errno.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <glib.h>

#include "ia-proc.h"
#include "manager.h"
#include "peer.h"

static Manager *new_manager(unsigned per_sender, unsigned total) {
        Manager *m = NULL;
        Config c;

        config_init(&c);
        c.max_pending_per_sender = per_sender;
        c.max_pending_total = total;
        g_assert_cmpint(manager_new(&c, &m), ==, 0);
        return m;
}

static void test_appear_in_order(void) {
        g_autoptr(Manager) m = new_manager(4, 8);
        Peer *a, *b;

        g_assert_null(peer_get(m, ":1.7"));
        peer_appeared(m, ":1.7");
        peer_appeared(m, ":1.8");
        a = peer_get(m, ":1.7");
        b = peer_get(m, ":1.8");
        g_assert_nonnull(a);
        g_assert_nonnull(b);
        g_assert_cmpuint(a->seq, <, b->seq);
        /* Seen twice (e.g. a sweep): keeps its place. */
        peer_appeared(m, ":1.7");
        g_assert_true(peer_get(m, ":1.7") == a);
        g_assert_cmpuint(a->seq, <, b->seq);
        /* Known before we watched the bus: no place in the order. */
        g_assert_cmpuint(peer_get_or_add(m, ":1.2")->seq, ==, 0);
        g_assert_true(peer_get_or_add(m, ":1.7") == a);
}

static void test_pending_limits(void) {
        g_autoptr(Manager) m = new_manager(2, 3);
        Peer *a = peer_get_or_add(m, ":1.1");
        Peer *b = peer_get_or_add(m, ":1.2");

        g_assert_cmpint(peer_pending_inc(m, a), ==, 0);
        g_assert_cmpint(peer_pending_inc(m, a), ==, 0);
        g_assert_cmpint(peer_pending_inc(m, a), ==, -ENOBUFS);     /* per connection */
        g_assert_cmpuint(a->n_pending, ==, 2);
        g_assert_cmpint(peer_pending_inc(m, b), ==, 0);
        g_assert_cmpint(peer_pending_inc(m, b), ==, -ENOBUFS);     /* in all */
        g_assert_cmpuint(m->n_pending_total, ==, 3);
        peer_pending_dec(m, a);
        g_assert_cmpint(peer_pending_inc(m, b), ==, 0);
        peer_pending_dec(m, a);
        peer_pending_dec(m, b);
        peer_pending_dec(m, b);
        g_assert_cmpuint(m->n_pending_total, ==, 0);
        /* Not gone: a peer without requests stays. */
        g_assert_true(peer_get(m, ":1.1") == a);
}

static void test_left_idle(void) {
        g_autoptr(Manager) m = new_manager(4, 8);

        peer_appeared(m, ":1.1");
        peer_left(m, ":1.1");
        g_assert_null(peer_get(m, ":1.1"));
        /* Unknown ones are fine too (a sweep and NameOwnerChanged may both report it). */
        peer_left(m, ":1.1");
        peer_left(m, ":1.99");
}

static void test_left_with_pending(void) {
        g_autoptr(Manager) m = new_manager(4, 8);
        Peer *p;

        peer_appeared(m, ":1.1");
        p = peer_get(m, ":1.1");
        peer_set_opened_guest(p, "vm1");
        g_assert_cmpint(peer_pending_inc(m, p), ==, 0);
        g_assert_cmpint(peer_pending_inc(m, p), ==, 0);
        peer_left(m, ":1.1");
        /* Kept for the requests still out, marked gone. */
        g_assert_true(peer_get(m, ":1.1") == p);
        g_assert_true(p->gone);
        peer_pending_dec(m, p);
        g_assert_true(peer_get(m, ":1.1") == p);
        peer_pending_dec(m, p);          /* the last one frees it */
        g_assert_null(peer_get(m, ":1.1"));
        g_assert_cmpuint(m->n_pending_total, ==, 0);
}

/* A watch that writes down what it is told, and whether the Peer could still be found then. */
static GString *told;
static Manager *told_m;

static void watch_left(Manager *m, const char *name) {
        Peer *p = peer_get(m, name);

        g_assert_true(m == told_m);
        g_string_append_printf(told, "left %s%s;", name, p ? (p->gone ? " (gone)" : " (known)") : "");
}

static void watch_freed(Peer *p) {
        g_string_append_printf(told, "freed %s;", p->name);
}

static const PeerWatch test_watch = { .left = watch_left, .freed = watch_freed };

static void test_watch_told(void) {
        g_autoptr(Manager) m = new_manager(4, 8);
        Peer *p;

        told = g_string_new(NULL);
        told_m = m;
        g_assert_cmpuint(m->n_peer_watches, ==, 2);     /* authz's and channel's */
        peer_watch(m, &test_watch);

        /* Idle: told it left while it can still be found, then freed at once. */
        peer_appeared(m, ":1.1");
        peer_left(m, ":1.1");
        g_assert_cmpstr(told->str, ==, "left :1.1 (known);freed :1.1;");

        /* With requests out: freed with the last one, not before. */
        g_string_truncate(told, 0);
        p = peer_get_or_add(m, ":1.2");
        g_assert_cmpint(peer_pending_inc(m, p), ==, 0);
        peer_left(m, ":1.2");
        g_assert_cmpstr(told->str, ==, "left :1.2 (known);");
        peer_pending_dec(m, p);
        g_assert_cmpstr(told->str, ==, "left :1.2 (known);freed :1.2;");

        /* Never seen: told anyway (a module may hold something under the name alone). */
        g_string_truncate(told, 0);
        peer_left(m, ":1.3");
        g_assert_cmpstr(told->str, ==, "left :1.3;");

        /* At exit every Peer still known is freed through the watches. */
        g_string_truncate(told, 0);
        peer_get_or_add(m, ":1.4");
        g_clear_pointer(&m, manager_free);
        g_assert_cmpstr(told->str, ==, "freed :1.4;");
        g_string_free(told, TRUE);
        told = NULL;
}

static void test_opened_guest(void) {
        g_autoptr(Manager) m = new_manager(4, 8);
        Peer *p = peer_get_or_add(m, ":1.1");

        g_assert_null(p->opened_guest);
        peer_set_opened_guest(p, "vm1");
        g_assert_cmpstr(p->opened_guest, ==, "vm1");
        peer_set_opened_guest(p, "vm1");
        g_assert_cmpstr(p->opened_guest, ==, "vm1");
        peer_set_opened_guest(p, "vm2");
        g_assert_cmpstr(p->opened_guest, ==, "vm2");
}

/* The process that names a connection to polkit: the binding's start time when admitted,
 * else /proc's, read once; gone when it has exited or started after the connection existed
 * (its pid was reused), and gone for good. */
static void test_process(void) {
        g_autoptr(Manager) m = new_manager(4, 8);
        Peer *p = peer_get_or_add(m, ":1.1");
        uint64_t mine, st = 0;
        pid_t child;
        int pipefd[2];

        g_assert_cmpint(ia_proc_get_start_time(getpid(), &mine), ==, 0);
        g_assert_cmpint(peer_process(p, &st), ==, -ENODATA);   /* no credentials yet */
        p->have_creds = true;
        p->pid = getpid();
        g_assert_cmpint(peer_process(p, &st), ==, 0);
        g_assert_cmpuint(st, ==, mine);
        g_assert_false(peer_process_vanished(p, mine));
        peer_set_start_time(p, mine + 1);                       /* the binding's wins */
        g_assert_cmpint(peer_process(p, &st), ==, 0);
        g_assert_cmpuint(st, ==, mine + 1);
        g_assert_true(peer_process_vanished(p, mine + 1));     /* not what /proc says */
        g_assert_cmpint(peer_process(p, &st), ==, -ESRCH);     /* and so it stays */

        /* A process that exited. */
        child = fork();
        g_assert_cmpint(child, >=, 0);
        if (child == 0)
                _exit(0);
        g_assert_cmpint(waitpid(child, NULL, 0), ==, child);
        p = peer_get_or_add(m, ":1.2");
        p->have_creds = true;
        p->pid = child;
        g_assert_cmpint(peer_process(p, &st), ==, -ESRCH);

        /* A live process that started after the connection was seen: not the one that made
         * it.  The Peer is made a few clock ticks before the child. */
        p = peer_get_or_add(m, ":1.3");
        g_usleep(50 * 1000);
        g_assert_cmpint(pipe(pipefd), ==, 0);
        child = fork();
        g_assert_cmpint(child, >=, 0);
        if (child == 0) {
                char c;
                close(pipefd[1]);
                (void) read(pipefd[0], &c, 1);
                _exit(0);
        }
        close(pipefd[0]);
        p->have_creds = true;
        p->pid = child;
        g_assert_cmpint(peer_process(p, &st), ==, -ESRCH);
        close(pipefd[1]);
        g_assert_cmpint(waitpid(child, NULL, 0), ==, child);

        /* /proc unreadable (no free fd): nothing is known, nothing remembered. */
        {
                struct rlimit old, low;
                int fds[64], n = 0;

                p = peer_get_or_add(m, ":1.4");
                p->have_creds = true;
                p->pid = getpid();
                g_assert_cmpint(getrlimit(RLIMIT_NOFILE, &old), ==, 0);
                low = (struct rlimit) { .rlim_cur = 32, .rlim_max = old.rlim_max };
                g_assert_cmpint(setrlimit(RLIMIT_NOFILE, &low), ==, 0);
                while (n < 64 && (fds[n] = dup(0)) >= 0)
                        n++;
                g_assert_cmpint(errno, ==, EMFILE);
                g_assert_cmpint(peer_process(p, &st), ==, -EMFILE);
                g_assert_false(peer_process_vanished(p, mine));
                while (n > 0)
                        close(fds[--n]);
                g_assert_cmpint(setrlimit(RLIMIT_NOFILE, &old), ==, 0);
                g_assert_cmpint(peer_process(p, &st), ==, 0);
                g_assert_cmpuint(st, ==, mine);
        }
}

int main(int argc, char *argv[]) {
        g_test_init(&argc, &argv, NULL);
        g_test_add_func("/peer/appear-in-order", test_appear_in_order);
        g_test_add_func("/peer/pending-limits", test_pending_limits);
        g_test_add_func("/peer/left-idle", test_left_idle);
        g_test_add_func("/peer/left-with-pending", test_left_with_pending);
        g_test_add_func("/peer/opened-guest", test_opened_guest);
        g_test_add_func("/peer/process", test_process);
        g_test_add_func("/peer/watch-told", test_watch_told);
        return g_test_run();
}

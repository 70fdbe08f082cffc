/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-identity.c — what the service takes from the bus's answer about a connection
 * (creds_parse()): the uid and pid it decides with, and whether the bus hands out pidfds, in
 * which case polkit is asked about the bus name (docs/polkit.md, "The subject").  dbus-daemon
 * 1.14 sends no ProcessFD, so this is where the newer buses' answer is tried.  No connection:
 * the messages are built on a bus that was never started.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <glib.h>
#include <systemd/sd-bus.h>

#include "identity.h"
#include "manager.h"

/* A GetConnectionCredentials answer with the given entries; -1 leaves a field out. */
static sd_bus_message *creds_message(sd_bus *bus, int64_t uid, int64_t pid, int pidfd) {
        sd_bus_message *m = NULL;

        g_assert_cmpint(sd_bus_message_new_method_call(bus, &m, "org.example.Test", "/",
                                                       "org.example.Test", "Creds"), >=, 0);
        g_assert_cmpint(sd_bus_message_open_container(m, 'a', "{sv}"), >=, 0);
        if (uid >= 0)
                g_assert_cmpint(sd_bus_message_append(m, "{sv}", "UnixUserID", "u", (uint32_t) uid), >=, 0);
        g_assert_cmpint(sd_bus_message_append(m, "{sv}", "LinuxSecurityLabel", "ay", 3, "x\0y"), >=, 0);
        if (pidfd >= 0)
                g_assert_cmpint(sd_bus_message_append(m, "{sv}", "ProcessFD", "h", pidfd), >=, 0);
        if (pid >= 0)
                g_assert_cmpint(sd_bus_message_append(m, "{sv}", "ProcessID", "u", (uint32_t) pid), >=, 0);
        g_assert_cmpint(sd_bus_message_close_container(m), >=, 0);
        g_assert_cmpint(sd_bus_message_seal(m, 1, 0), >=, 0);
        g_assert_cmpint(sd_bus_message_rewind(m, true), >=, 0);
        return m;
}

static void test_creds_parse(void) {
        g_autoptr(sd_bus) bus = NULL;
        BusCreds c;
        int fd, sv[2];

        /* Messages need a bus that is at least opening: one end of a socketpair, where the
         * authentication never finishes (nobody answers). */
        g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), ==, 0);
        g_assert_cmpint(sd_bus_new(&bus), >=, 0);
        g_assert_cmpint(sd_bus_set_fd(bus, sv[0], sv[0]), >=, 0);
        g_assert_cmpint(sd_bus_negotiate_fds(bus, true), >=, 0);
        g_assert_cmpint(sd_bus_start(bus), >=, 0);

        g_autoptr(sd_bus_message) plain = creds_message(bus, 61002, 4242, -1);
        g_assert_cmpint(creds_parse(plain, &c), ==, 0);
        g_assert_cmpuint(c.uid, ==, 61002);
        g_assert_cmpint(c.pid, ==, 4242);
        g_assert_false(c.bus_has_pidfd);

        fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        g_assert_cmpint(fd, >=, 0);
        g_autoptr(sd_bus_message) newer = creds_message(bus, 0, 7, fd);
        close(fd);      /* the message holds its own copy */
        g_assert_cmpint(creds_parse(newer, &c), ==, 0);
        g_assert_cmpuint(c.uid, ==, 0);
        g_assert_cmpint(c.pid, ==, 7);
        g_assert_true(c.bus_has_pidfd);

        g_autoptr(sd_bus_message) no_pid = creds_message(bus, 61002, -1, -1);
        g_assert_cmpint(creds_parse(no_pid, &c), ==, -ENODATA);
        g_autoptr(sd_bus_message) no_uid = creds_message(bus, -1, 4242, -1);
        g_assert_cmpint(creds_parse(no_uid, &c), ==, -ENODATA);
        g_autoptr(sd_bus_message) pid0 = creds_message(bus, 61002, 0, -1);
        g_assert_cmpint(creds_parse(pid0, &c), ==, -ENODATA);
        close(sv[1]);   /* sv[0] is the bus's */
}

int main(int argc, char *argv[]) {
        g_test_init(&argc, &argv, NULL);
        g_test_add_func("/identity/creds-parse", test_creds_parse);
        return g_test_run();
}

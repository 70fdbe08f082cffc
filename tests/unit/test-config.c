/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests of config.c: defaults, valid keys, and every kind of bad file changing nothing. */
#include <string.h>
#include <unistd.h>
#include <glib.h>
#include <glib/gstdio.h>

#include "config.h"

static char *write_tmp(const char *contents) {
        g_autoptr(GError) error = NULL;
        char *path = NULL;
        int fd = g_file_open_tmp("test-config-XXXXXX.conf", &path, &error);

        g_assert_no_error(error);
        g_assert_true(g_file_set_contents(path, contents, -1, &error));
        g_assert_no_error(error);
        close(fd);
        return path;
}

static void test_defaults(void) {
        Config c;

        config_init(&c);
        g_assert_cmpuint(c.limits.max_guests, ==, 16384);
        g_assert_cmpuint(c.max_polkit_in_flight, ==, 64);
        /* polkitd 122 can stall 15 s: the timeout must be above that. */
        g_assert_cmpuint(c.polkit_timeout_usec, >, 15 * G_USEC_PER_SEC);
        g_assert_nonnull(c.state_dir);
        config_done(&c);
}

static void test_missing(void) {
        g_autofree char *error = NULL;
        Config c;

        config_init(&c);
        g_assert_cmpint(config_load_file(&c, "/nonexistent/image-access.conf", true, NULL), ==, 0);
        g_assert_cmpint(config_load_file(&c, "/nonexistent/image-access.conf", false, &error), ==, -ENOENT);
        g_assert_nonnull(strstr(error, "/nonexistent/image-access.conf"));
        config_done(&c);
}

static void test_valid(void) {
        g_autofree char *path = write_tmp("[Daemon]\nStateDirectory=/tmp/x\n"
                                          "[Limits]\nMaxGuests=10\nMaxPolkitInFlight=8\n"
                                          "[Polkit]\nTimeoutSec=30\nInteractiveTimeoutSec=900\n"
                                          "DecisionCacheSec=0\n");
        Config c;

        config_init(&c);
        g_assert_cmpint(config_load_file(&c, path, false, NULL), ==, 0);
        g_assert_cmpstr(c.state_dir, ==, "/tmp/x");
        g_assert_cmpuint(c.limits.max_guests, ==, 10);
        g_assert_cmpuint(c.max_polkit_in_flight, ==, 8);
        g_assert_cmpuint(c.polkit_timeout_usec, ==, 30 * G_USEC_PER_SEC);
        g_assert_cmpuint(c.polkit_interactive_timeout_usec, ==, 900 * G_USEC_PER_SEC);
        g_assert_cmpuint(c.decision_cache_usec, ==, 0);
        config_done(&c);
        g_unlink(path);
}

static void test_invalid(void) {
        static const char *const bad[] = {
                "[Limits]\nMaxGuests=0\n",
                "[Limits]\nMaxGuests=ten\n",
                "[Limits]\nMaxGuests=-1\n",
                "[Limits]\nMaxPolkitInFlight=500\n",     /* above the bus's 128 pending replies */
                "[Limits]\nMaxGuest=10\n",               /* typo: unknown key */
                "[Limit]\nMaxGuests=10\n",               /* unknown group */
                "[Daemon]\nStateDirectory=relative\n",
                "[Polkit]\nTimeoutSec=0\n",
                "[Polkit]\nInteractiveTimeoutSec=0\n",
                "[Polkit]\nInteractiveTimeoutSec=86401\n",
                "[Polkit]\nDecisionCacheSec=3601\n",
                "not a key file",
        };

        for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
                g_autofree char *path = write_tmp(bad[i]);
                g_autofree char *error = NULL;
                Config c;

                config_init(&c);
                g_assert_cmpint(config_load_file(&c, path, false, &error), ==, -EINVAL);
                g_assert_nonnull(error);
                g_assert_nonnull(strstr(error, path));
                /* Nothing applied. */
                g_assert_cmpuint(c.limits.max_guests, ==, 16384);
                g_assert_cmpuint(c.max_polkit_in_flight, ==, 64);
                config_done(&c);
                g_unlink(path);
        }
}

int main(int argc, char *argv[]) {
        g_test_init(&argc, &argv, NULL);
        g_test_add_func("/config/defaults", test_defaults);
        g_test_add_func("/config/missing", test_missing);
        g_test_add_func("/config/valid", test_valid);
        g_test_add_func("/config/invalid", test_invalid);
        return g_test_run();
}

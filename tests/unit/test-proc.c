/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests of client/common/ia-proc.c, the /proc parser of the service and the library. */
#include <errno.h>
#include <stdbool.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <glib.h>

#include "ia-proc.h"

/* A stat line whose field N holds the number N, after a command name made to mislead:
 * spaces, parentheses and digits.  Field 22 is the start time; 21 is the one before it. */
static char *numbered_stat(const char *comm, int n_fields) {
        GString *s = g_string_new("1 (");

        g_string_append(s, comm);
        g_string_append(s, ")");
        for (int field = 3; field <= n_fields; field++)
                g_string_append_printf(s, " %d", field);
        g_string_append_c(s, '\n');
        return g_string_free(s, false);
}

static void test_field_22(void) {
        const char *comms[] = { "qemu", "a b", ") 7 8 (", "x) (y", "))", "" };

        for (size_t i = 0; i < G_N_ELEMENTS(comms); i++) {
                g_autofree char *text = numbered_stat(comms[i], 52);
                uint64_t v = 0;

                g_assert_cmpint(ia_proc_parse_start_time(text, &v), ==, 0);
                g_assert_cmpuint(v, ==, 22);
        }
}

static void test_malformed(void) {
        g_autofree char *short_text = numbered_stat("qemu", 21);
        g_autofree char *exact = numbered_stat("qemu", 22);
        uint64_t v = 7;

        g_assert_cmpint(ia_proc_parse_start_time(short_text, &v), ==, -EIO);
        g_assert_cmpint(ia_proc_parse_start_time("1 qemu 2 3", &v), ==, -EIO);
        g_autofree char *not_number = numbered_stat("qemu", 30);
        char *f22 = strstr(not_number, " 22 ");

        f22[1] = 'x';   /* " x2 " */
        g_assert_cmpint(ia_proc_parse_start_time(not_number, &v), ==, -EIO);
        g_assert_cmpuint(v, ==, 7);     /* untouched on failure */
        g_assert_cmpint(ia_proc_parse_start_time(exact, &v), ==, 0);
        g_assert_cmpuint(v, ==, 22);
}

/* The real file: a child started after us has a start time at least ours; a reaped pid has
 * none; the effective uid is ours. */
static void test_live(void) {
        uint64_t mine, child_start;
        uid_t euid;
        pid_t child;

        g_assert_cmpint(ia_proc_get_start_time(getpid(), &mine), ==, 0);
        g_assert_cmpuint(mine, >, 0);
        g_assert_cmpint(ia_proc_get_euid(getpid(), &euid), ==, 0);
        g_assert_cmpuint(euid, ==, geteuid());

        child = fork();
        g_assert_cmpint(child, >=, 0);
        if (child == 0) {
                pause();
                _exit(0);
        }
        g_assert_cmpint(ia_proc_get_start_time(child, &child_start), ==, 0);
        g_assert_cmpuint(child_start, >=, mine);
        g_assert_cmpint(kill(child, SIGKILL), ==, 0);
        g_assert_cmpint(waitpid(child, NULL, 0), ==, child);
        g_assert_cmpint(ia_proc_get_start_time(child, &child_start), ==, -ESRCH);
        g_assert_cmpint(ia_proc_get_euid(child, &euid), ==, -ESRCH);
}

int main(int argc, char **argv) {
        g_test_init(&argc, &argv, NULL);
        g_test_add_func("/proc/field-22", test_field_22);
        g_test_add_func("/proc/malformed", test_malformed);
        g_test_add_func("/proc/live", test_live);
        return g_test_run();
}

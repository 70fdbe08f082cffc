/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests of log.c: level parsing, and audit records that a hostile value cannot forge. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <glib.h>

#include "log.h"

/* Runs @func with stderr redirected to a temporary file and returns what it wrote. */
static char *capture_stderr(void (*func)(const void *), const void *arg) {
        g_autofree char *path = NULL;
        char *out = NULL;
        int tmp, saved;

        tmp = g_file_open_tmp("test-log-XXXXXX", &path, NULL);
        g_assert_cmpint(tmp, >=, 0);
        fflush(stderr);
        saved = dup(STDERR_FILENO);
        g_assert_cmpint(dup2(tmp, STDERR_FILENO), ==, STDERR_FILENO);
        func(arg);
        fflush(stderr);
        g_assert_cmpint(dup2(saved, STDERR_FILENO), ==, STDERR_FILENO);
        close(saved);
        close(tmp);
        g_assert_true(g_file_get_contents(path, &out, NULL, NULL));
        unlink(path);
        return out;
}

static void test_levels(void) {
        g_assert_cmpint(log_level_from_string("err"), ==, LOG_ERR);
        g_assert_cmpint(log_level_from_string("debug"), ==, LOG_DEBUG);
        g_assert_cmpint(log_level_from_string("info"), ==, LOG_INFO);
        g_assert_cmpint(log_level_from_string("verbose"), ==, -EINVAL);
        g_assert_cmpint(log_level_from_string(NULL), ==, -EINVAL);
        g_assert_cmpint(log_target_from_string("journal"), ==, LOG_TARGET_JOURNAL);
        g_assert_cmpint(log_target_from_string("syslog"), ==, -EINVAL);
}

static void emit_audit(const void *arg) {
        log_audit(arg);
}

static void test_audit_fields(void) {
        AuditRecord a = {
                .event = "open", .guest = "vm1", .image = "/img/a b.qcow2", .mode = "read-write",
                .sender = ":1.42", .uid = 61002, .pid = 4242, .allowed = true,
        };
        g_autofree char *out = capture_stderr(emit_audit, &a);

        g_assert_nonnull(strstr(out, "audit: open allowed guest='vm1' image='/img/a b.qcow2' "
                                     "mode=read-write uid=61002 pid=4242 sender=:1.42\n"));
        /* Exactly one line per record. */
        g_assert_cmpint(strchr(out, '\n') - out + 1, ==, (long) strlen(out));

        /* A request on a channel says so, between the caller and the reason. */
        a.via = "channel";
        a.allowed = false;
        a.reason = "no";
        g_free(out);
        out = capture_stderr(emit_audit, &a);
        g_assert_nonnull(strstr(out, "audit: open denied guest='vm1' image='/img/a b.qcow2' "
                                     "mode=read-write uid=61002 pid=4242 sender=:1.42 via=channel "
                                     "reason='no'\n"));
}

static void test_audit_hostile_values(void) {
        AuditRecord a = {
                .event = "open", .guest = "vm1", .mode = "read-only", .sender = ":1.7",
                .image = "/img/x' uid=0 pid=1 reason='ok",
                .reason = "line\naudit: open allowed guest='vm2'",
                .uid = 61003, .pid = 99, .allowed = false,
        };
        g_autofree char *out = capture_stderr(emit_audit, &a);

        /* The quote is escaped, so the forged "uid=0" stays inside the image value ... */
        g_assert_nonnull(strstr(out, "image='/img/x\\' uid=0 pid=1 reason=\\'ok'"));
        g_assert_nonnull(strstr(out, " uid=61003 pid=99 "));
        /* ... and the newline cannot start a second record. */
        g_assert_nonnull(strstr(out, "line\\x0aaudit:"));
        g_assert_cmpint(strchr(out, '\n') - out + 1, ==, (long) strlen(out));
}

static void emit_info(const void *arg);

/* Unicode line breaks, C1 controls, bidi overrides and broken UTF-8 in a value, and in a
 * plain log message: shown escaped, so a reader that splits on U+2028 or NEL sees one record. */
static void test_audit_unicode_breaks(void) {
        AuditRecord a = {
                .event = "open", .guest = "vm1", .sender = ":1.7", .uid = 1000, .pid = 7,
                .image = "/i\xe2\x80\xa8" "audit: open allowed guest='vm1' image='/etc/shadow'"
                         "\xc2\x85\xe2\x80\xae" "\xff",
                .mode = "read\xe2\x80\xa9",
                .reason = "NotBound\xc2\x9b",
        };
        g_autofree char *out = capture_stderr(emit_audit, &a);
        g_autofree char *msg = capture_stderr(emit_info, "refused '/a\xe2\x80\xa8" "b\x85'");

        g_assert_nonnull(strstr(out, "image='/i\\u2028audit: open allowed guest=\\'vm1\\' "
                                     "image=\\'/etc/shadow\\'\\u0085\\u202e\\xff'"));
        g_assert_nonnull(strstr(out, "mode=read\\u2029 "));
        g_assert_nonnull(strstr(out, "reason='NotBound\\u009b'"));
        g_assert_true(g_utf8_validate(out, -1, NULL));
        g_assert_null(strstr(out, "\xe2\x80\xa8"));
        g_assert_null(strstr(out, "\xc2\x85"));
        g_assert_cmpint(strchr(out, '\n') - out + 1, ==, (long) strlen(out));

        g_assert_nonnull(strstr(msg, "refused \\'/a\\u2028b\\x85\\'\n"));
        g_assert_true(g_utf8_validate(msg, -1, NULL));
}

static void emit_info(const void *arg) {
        log_info("%s", (const char *) arg);
}

/* A quieter log level drops ordinary lines, never the audit trail. */
static void test_audit_ignores_level(void) {
        AuditRecord a = { .event = "grant", .guest = "vm1", .allowed = true };
        g_autofree char *out = NULL, *info = NULL;

        log_setup(LOG_WARNING, LOG_TARGET_CONSOLE);
        out = capture_stderr(emit_audit, &a);
        info = capture_stderr(emit_info, "chatter");
        log_setup(LOG_INFO, LOG_TARGET_CONSOLE);
        g_assert_nonnull(strstr(out, "audit: grant allowed guest='vm1'"));
        g_assert_cmpstr(info, ==, "");
}

int main(int argc, char *argv[]) {
        g_test_init(&argc, &argv, NULL);
        log_setup(LOG_INFO, LOG_TARGET_CONSOLE);
        g_test_add_func("/log/levels", test_levels);
        g_test_add_func("/log/audit/fields", test_audit_fields);
        g_test_add_func("/log/audit/hostile-values", test_audit_hostile_values);
        g_test_add_func("/log/audit/ignores-level", test_audit_ignores_level);
        g_test_add_func("/log/audit/unicode-breaks", test_audit_unicode_breaks);
        return g_test_run();
}

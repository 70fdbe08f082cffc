/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * log.c — console and journal logging, and the audit record.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/uio.h>
#include <unistd.h>
#include <systemd/sd-journal.h>
#include <glib.h>

#include "escape.h"
#include "log.h"

static int log_max_level = LOG_INFO;
static LogTarget log_target = LOG_TARGET_CONSOLE;

static const char *const level_names[] = {
        [LOG_EMERG] = "emerg", [LOG_ALERT] = "alert", [LOG_CRIT] = "crit", [LOG_ERR] = "err",
        [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice", [LOG_INFO] = "info",
        [LOG_DEBUG] = "debug",
};

void log_setup(int max_level, LogTarget target) {
        log_max_level = max_level;
        if (target == LOG_TARGET_AUTO)
                /* systemd sets JOURNAL_STREAM when stderr goes to the journal. */
                target = getenv("JOURNAL_STREAM") ? LOG_TARGET_JOURNAL : LOG_TARGET_CONSOLE;
        log_target = target;
}

int log_get_max_level(void) {
        return log_max_level;
}

int log_level_from_string(const char *s) {
        for (size_t i = 0; i < G_N_ELEMENTS(level_names); i++)
                if (s && level_names[i] && strcmp(s, level_names[i]) == 0)
                        return (int) i;
        return -EINVAL;
}

int log_target_from_string(const char *s) {
        if (g_strcmp0(s, "auto") == 0)
                return LOG_TARGET_AUTO;
        if (g_strcmp0(s, "console") == 0)
                return LOG_TARGET_CONSOLE;
        if (g_strcmp0(s, "journal") == 0)
                return LOG_TARGET_JOURNAL;
        return -EINVAL;
}

/* Writes @v in decimal into @buf (no NUL).  Return: the length. */
static size_t format_decimal(char *buf, size_t size, long long v) {
        char tmp[24];
        unsigned long long u = v < 0 ? 0ULL - (unsigned long long) v : (unsigned long long) v;
        size_t n = 0, len = 0;

        do {
                tmp[n++] = (char) ('0' + u % 10);
                u /= 10;
        } while (u > 0 && n < sizeof(tmp));
        if (v < 0 && len < size)
                buf[len++] = '-';
        while (n > 0 && len < size)
                buf[len++] = tmp[--n];
        return len;
}

static void append_decimal(GString *s, long long v) {
        char buf[24];

        g_string_append_len(s, buf, (gssize) format_decimal(buf, sizeof(buf), v));
}

static void log_write(int level, const char *message, const char *const *fields) {
        if (log_target == LOG_TARGET_JOURNAL) {
                struct iovec iov[16];
                g_autofree char *msg = g_strconcat("MESSAGE=", message, NULL);
                g_autofree char *prio = g_strdup_printf("PRIORITY=%d", level);
                size_t n = 0;

                iov[n++] = (struct iovec) { msg, strlen(msg) };
                iov[n++] = (struct iovec) { prio, strlen(prio) };
                for (size_t i = 0; fields && fields[i] && n < G_N_ELEMENTS(iov); i++)
                        iov[n++] = (struct iovec) { (char *) fields[i], strlen(fields[i]) };
                if (sd_journal_sendv(iov, (int) n) >= 0)
                        return;
                /* The journal is gone: fall through to stderr rather than lose the line. */
        }

        /* "image-accessd[PID]: <level> message\n" in one writev(): one write, as fprintf() on
         * the unbuffered stderr made it, without formatting (this runs for every audit
         * record, and printf's machinery was a tenth of an open). */
        char pid[24];
        const char *lvl = level_names[level];
        struct iovec iov[] = {
                { (char *) "image-accessd[", strlen("image-accessd[") },
                { pid, format_decimal(pid, sizeof(pid), (long long) getpid()) },
                { (char *) "]: <", 4 },
                { (char *) lvl, strlen(lvl) },
                { (char *) "> ", 2 },
                { (char *) message, strlen(message) },
                { (char *) "\n", 1 },
        };
        ssize_t k;

        do
                k = writev(STDERR_FILENO, iov, G_N_ELEMENTS(iov));
        while (k < 0 && errno == EINTR);
}

int log_internal(int level, int error, const char *format, ...) {
        int e = error < 0 ? -error : error;

        if (level > log_max_level)
                return -e;

        va_list ap;
        va_start(ap, format);
        errno = e;      /* for %m */
        g_autofree char *message = g_strdup_vprintf(format, ap);
        va_end(ap);

        /* Messages quote caller-supplied names and paths.  Those are validated before most
         * messages are written, but not before all (a refused value is named in its own
         * message): a message with anything escape.h calls unsafe is escaped as a whole, so
         * it stays one line of text for every reader. */
        if (!escape_is_safe(message, -1)) {
                g_autofree char *escaped = escape_string(message, (size_t) -1);

                log_write(level, escaped, NULL);
                return -e;
        }
        log_write(level, message, NULL);
        return -e;
}

/* Appends @s as the inside of a '…' value of an audit line, escaped with escape_append():
 * the image path is chosen by the caller (and reasons quote it), so without escaping a path
 * such as "/x' uid=0 pid=1 '" would end its value early and forge fields of its own record,
 * and a C1 NEL or U+2028 in it would start a forged record for readers that split lines on
 * them.  Validation refuses such paths, but a refused path is audited too. */
static void audit_append_quoted(GString *q, const char *s) {
        escape_append(q, s, /* max_bytes= */ (size_t) -1);
}

/* A journal field "NAME=value" with the value escaped like the audit line's. */
static char *journal_field(const char *name, const char *value) {
        GString *f = g_string_new(name);

        escape_append(f, value ?: "", /* max_bytes= */ (size_t) -1);
        return g_string_free(f, false);
}

void log_audit(const AuditRecord *a) {
        g_autoptr(GString) line = NULL;

        /* Not subject to --log-level: the audit trail is not verbosity, and a quieter log
         * must not silently drop it. */

        /* One line a person can read and grep; key=value with user strings quoted (and
         * escaped, see audit_append_quoted()).  Built by appending rather than with printf,
         * and the journal fields only for the journal: this runs for every OpenImage, and
         * formatting both every time was a third of the daemon's instructions per open. */
        line = g_string_sized_new(256);
        g_string_append(line, "audit: ");
        g_string_append(line, a->event);
        g_string_append(line, a->undelivered ? " undelivered guest='" :
                              a->allowed ? " allowed guest='" : " denied guest='");
        audit_append_quoted(line, a->guest ?: "");
        g_string_append_c(line, '\'');
        if (a->image) {
                g_string_append(line, " image='");
                audit_append_quoted(line, a->image);
                g_string_append_c(line, '\'');
        }
        if (a->mode) {
                g_string_append(line, " mode=");
                audit_append_quoted(line, a->mode);
        }
        g_string_append(line, " uid=");
        append_decimal(line, (long long) (unsigned) a->uid);
        g_string_append(line, " pid=");
        append_decimal(line, (long long) a->pid);
        g_string_append(line, " sender=");
        audit_append_quoted(line, a->sender ?: "-");
        if (a->via) {
                g_string_append(line, " via=");
                audit_append_quoted(line, a->via);
        }
        if (a->reason) {
                g_string_append(line, " reason='");
                audit_append_quoted(line, a->reason);
                g_string_append_c(line, '\'');
        }

        if (log_target != LOG_TARGET_JOURNAL) {
                log_write(LOG_INFO, line->str, NULL);
                return;
        }

        g_autofree char *f_event = g_strconcat("IA_EVENT=", a->event, NULL);
        g_autofree char *f_guest = journal_field("IA_GUEST=", a->guest);
        g_autofree char *f_image = journal_field("IA_IMAGE=", a->image);
        g_autofree char *f_mode = journal_field("IA_MODE=", a->mode);
        g_autofree char *f_uid = g_strdup_printf("IA_CALLER_UID=%u", (unsigned) a->uid);
        g_autofree char *f_pid = g_strdup_printf("IA_CALLER_PID=%d", (int) a->pid);
        g_autofree char *f_result = g_strconcat("IA_RESULT=", a->undelivered ? "undelivered" :
                                                a->allowed ? "allowed" : "denied", NULL);
        g_autofree char *f_reason = journal_field("IA_REASON=", a->reason);
        g_autofree char *f_via = a->via ? journal_field("IA_VIA=", a->via) : NULL;
        const char *fields[] = { f_event, f_guest, f_image, f_mode, f_uid, f_pid, f_result,
                                 f_reason, f_via /* last: NULL ends the list early */, NULL };

        log_write(LOG_INFO, line->str, fields);
}

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

/* getpid() is a system call each time (glibc does not cache it), and the daemon never
 * forks (image.c's held /proc/self/fd relies on that too): asked once. */
static pid_t our_pid(void) {
        static pid_t pid;

        if (pid == 0)
                pid = getpid();
        return pid;
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
                { pid, format_decimal(pid, sizeof(pid), (long long) our_pid()) },
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

/*
 * An audit line, built in place: a record of an open fits the buffer on the stack, a longer
 * one moves to the heap.  Appending is a memcpy(): this runs for every OpenImage, and the
 * GString calls it replaced were a tenth of the daemon's instructions per open.
 */
typedef struct Line {
        char stack[512];
        char *buf;              /* stack, or heap (owned) */
        size_t len, size;
} Line;

static void line_init(Line *l) {
        l->buf = l->stack;
        l->len = 0;
        l->size = sizeof(l->stack);
}

static void line_done(Line *l) {
        if (l->buf != l->stack)
                g_free(l->buf);
}

static void line_grow(Line *l, size_t n) {
        size_t size = MAX(l->size * 2, l->len + n + 1);

        if (l->buf == l->stack)
                l->buf = memcpy(g_malloc(size), l->stack, l->len);
        else
                l->buf = g_realloc(l->buf, size);
        l->size = size;
}

/* Inline, and without a NUL after each piece (line_str() adds it): a record is some twenty
 * pieces, and each was a call. */
static inline void line_put(Line *l, const char *s, size_t n) {
        if (G_UNLIKELY(l->len + n >= l->size))
                line_grow(l, n);
        memcpy(l->buf + l->len, s, n);
        l->len += n;
}

/* There is always room for the NUL: line_put() leaves a byte. */
static const char *line_str(Line *l) {
        l->buf[l->len] = '\0';
        return l->buf;
}

#define line_put_literal(l, s) line_put((l), "" s "", sizeof(s) - 1)

static void line_put_decimal(Line *l, long long v) {
        char buf[24];

        line_put(l, buf, format_decimal(buf, sizeof(buf), v));
}

/* The bytes line_put_quoted() copies as they are: printable ASCII but ' and \. */
static const bool byte_plain[256] = {
        [0x20 ... '\'' - 1] = true,
        ['\'' + 1 ... '\\' - 1] = true,
        ['\\' + 1 ... 0x7e] = true,
};

/* Appends @s as the inside of a '…' value of an audit line, escaped with escape_append():
 * the image path is chosen by the caller (and reasons quote it), so without escaping a path
 * such as "/x' uid=0 pid=1 '" would end its value early and forge fields of its own record,
 * and a C1 NEL or U+2028 in it would start a forged record for readers that split lines on
 * them.  Validation refuses such paths, but a refused path is audited too.  Printable ASCII
 * without ' and \ reads the same escaped: it is copied as it is. */
static void line_put_quoted(Line *l, const char *s) {
        const char *p = s;

        while (byte_plain[(unsigned char) *p])
                p++;
        if (*p == '\0') {
                line_put(l, s, (size_t) (p - s));
                return;
        }

        g_autofree char *escaped = escape_string(s, (size_t) -1);
        line_put(l, escaped, strlen(escaped));
}

/* A journal field "NAME=value" with the value escaped like the audit line's. */
static char *journal_field(const char *name, const char *value) {
        GString *f = g_string_new(name);

        escape_append(f, value ?: "", /* max_bytes= */ (size_t) -1);
        return g_string_free(f, false);
}

void log_audit(const AuditRecord *a) {
        Line line;

        /* Not subject to --log-level: the audit trail is not verbosity, and a quieter log
         * must not silently drop it. */

        /* One line a person can read and grep; key=value with user strings quoted (and
         * escaped, see line_put_quoted()).  Built by appending rather than with printf, and
         * the journal fields only for the journal: this runs for every OpenImage. */
        line_init(&line);
        line_put_literal(&line, "audit: ");
        line_put(&line, a->event, strlen(a->event));
        if (a->undelivered)
                line_put_literal(&line, " undelivered guest='");
        else if (a->allowed)
                line_put_literal(&line, " allowed guest='");
        else
                line_put_literal(&line, " denied guest='");
        line_put_quoted(&line, a->guest ?: "");
        line_put_literal(&line, "'");
        if (a->image) {
                line_put_literal(&line, " image='");
                line_put_quoted(&line, a->image);
                line_put_literal(&line, "'");
        }
        if (a->mode) {
                line_put_literal(&line, " mode=");
                line_put_quoted(&line, a->mode);
        }
        line_put_literal(&line, " uid=");
        line_put_decimal(&line, (long long) (unsigned) a->uid);
        line_put_literal(&line, " pid=");
        line_put_decimal(&line, (long long) a->pid);
        line_put_literal(&line, " sender=");
        line_put_quoted(&line, a->sender ?: "-");
        if (a->via) {
                line_put_literal(&line, " via=");
                line_put_quoted(&line, a->via);
        }
        if (a->reason) {
                line_put_literal(&line, " reason='");
                line_put_quoted(&line, a->reason);
                line_put_literal(&line, "'");
        }

        if (log_target != LOG_TARGET_JOURNAL) {
                log_write(LOG_INFO, line_str(&line), NULL);
                line_done(&line);
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

        log_write(LOG_INFO, line_str(&line), fields);
        line_done(&line);
}

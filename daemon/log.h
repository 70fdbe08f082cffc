/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * log.h — the daemon's logging: to stderr in the foreground, or to the journal with
 * structured fields.  The audit trail (one record per grant, revoke and open decision) goes
 * through log_audit().  Only the bus layer and main.c log; core modules return errors.
 */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <syslog.h>
#include <sys/types.h>

typedef enum LogTarget {
        LOG_TARGET_AUTO,        /* journal if stderr is connected to it (JOURNAL_STREAM), else console */
        LOG_TARGET_CONSOLE,
        LOG_TARGET_JOURNAL,
} LogTarget;

void log_setup(int max_level, LogTarget target);
int log_get_max_level(void);
/* "err", "warning", "notice", "info", "debug" → LOG_*; -EINVAL otherwise. */
int log_level_from_string(const char *s);
int log_target_from_string(const char *s);

/* Logs at @level; "%m" in @format expands to strerror(-@error).  Return: -abs(@error). */
int log_internal(int level, int error, const char *format, ...) __attribute__((format(printf, 3, 4)));

#define log_debug(...)   ((void) log_internal(LOG_DEBUG, 0, __VA_ARGS__))
#define log_info(...)    ((void) log_internal(LOG_INFO, 0, __VA_ARGS__))
#define log_notice(...)  ((void) log_internal(LOG_NOTICE, 0, __VA_ARGS__))
#define log_warning(...) ((void) log_internal(LOG_WARNING, 0, __VA_ARGS__))
#define log_error(...)   ((void) log_internal(LOG_ERR, 0, __VA_ARGS__))
#define log_debug_errno(e, ...)   log_internal(LOG_DEBUG, (e), __VA_ARGS__)
#define log_warning_errno(e, ...) log_internal(LOG_WARNING, (e), __VA_ARGS__)
#define log_error_errno(e, ...)   log_internal(LOG_ERR, (e), __VA_ARGS__)

typedef struct AuditRecord {
        const char *event;      /* "open", "grant", "revoke", "register", "unregister", "bind" */
        const char *guest;
        const char *image;      /* may be NULL */
        const char *mode;       /* may be NULL */
        const char *sender;     /* unique bus name, may be NULL */
        const char *via;        /* "channel" for a request on an OpenImage channel; NULL: the bus */
        uid_t uid;
        pid_t pid;
        bool allowed;
        /* An fd that was allowed and sent, and that the bus did not deliver: the record says
         * "undelivered" instead of allowed/denied. */
        bool undelivered;
        const char *reason;     /* why, for denials and errors; may be NULL */
} AuditRecord;

/* One record at LOG_INFO, whatever the log level: a line "audit: …" and, in the journal, IA_*
 * fields. */
void log_audit(const AuditRecord *a);

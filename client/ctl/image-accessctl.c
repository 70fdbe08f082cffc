/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * image-accessctl — the command-line client of image-accessd.
 *
 * Built on the public API of libimageaccess only (ia-client.h): the CLI is the library's first
 * user, so whatever it needs, a VM manager or an emulator can do too.  GLib is used for
 * strings and cleanups only.
 *
 * Errors are one line on stderr; the exit status says what kind of failure it was (see
 * help_main() and image-accessctl(1)), so that scripts can tell "denied" from "no such guest".
 */

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib.h>
#include <systemd/sd-login.h>

#include "build-config.h"
#include "ia-client.h"
#include "ia-macro.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

/* Exit status; documented in help_main() and data/image-accessctl.1. */
enum {
        IA_EXIT_OK = 0,
        IA_EXIT_FAILURE = 1,
        IA_EXIT_USAGE = 2,
        IA_EXIT_DENIED = 3,
        IA_EXIT_NOT_FOUND = 4,
        IA_EXIT_EXISTS = 5,
        IA_EXIT_CANNOT_EXECUTE = 126,   /* open: as sh(1) and env(1) */
        IA_EXIT_COMMAND_NOT_FOUND = 127,
};

G_DEFINE_AUTOPTR_CLEANUP_FUNC(IaClient, ia_client_unref)

static void ia_error_clear(IaError *e) {
        ia_error_done(e);
}
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(IaError, ia_error_clear)

/* The library's NULL-terminated lists, owned as GStrv is: g_auto(IaGuestInfoList). */
typedef IaGuestInfo **IaGuestInfoList;
typedef IaGrantInfo **IaGrantInfoList;
G_DEFINE_AUTO_CLEANUP_FREE_FUNC(IaGuestInfoList, ia_guest_info_list_free, NULL)
G_DEFINE_AUTO_CLEANUP_FREE_FUNC(IaGrantInfoList, ia_grant_info_list_free, NULL)

/* ---- options ---------------------------------------------------------------------------------- */

enum {
        ARG_VERSION = 0x100,
        ARG_ADDRESS,
        ARG_JSON,
        ARG_ASK_PASSWORD,
        ARG_NO_ASK_PASSWORD,
        /* From here on: options that only some verbs take (Verb.options is a mask of them). */
        ARG_NO_LEGEND,
        ARG_UUID,
        ARG_DESCRIPTION,
        ARG_UID,
        ARG_USER,
        ARG_REMOVE_CREATED,
        ARG_GUEST,
        ARG_MODE,
        ARG_DIRECT,
        ARG_NONBLOCK,
        ARG_FD,
        ARG_SHARE_UID,
        ARG_DIRECTORY,
        _ARG_MAX,
};

#define OPT(a) (1u << ((a) - ARG_NO_LEGEND))

static const struct option options[] = {
        { "help",            no_argument,       NULL, 'h'                 },
        { "version",         no_argument,       NULL, ARG_VERSION         },
        { "address",         required_argument, NULL, ARG_ADDRESS         },
        { "json",            no_argument,       NULL, ARG_JSON            },
        { "ask-password",    no_argument,       NULL, ARG_ASK_PASSWORD    },
        { "no-ask-password", no_argument,       NULL, ARG_NO_ASK_PASSWORD },
        { "no-legend",       no_argument,       NULL, ARG_NO_LEGEND       },
        { "uuid",            required_argument, NULL, ARG_UUID            },
        { "description",     required_argument, NULL, ARG_DESCRIPTION     },
        { "uid",             required_argument, NULL, ARG_UID             },
        { "user",            required_argument, NULL, ARG_USER            },
        { "remove-created",  no_argument,       NULL, ARG_REMOVE_CREATED  },
        { "share-uid",       no_argument,       NULL, ARG_SHARE_UID       },
        { "directory",       no_argument,       NULL, ARG_DIRECTORY       },
        { "guest",           required_argument, NULL, ARG_GUEST           },
        { "mode",            required_argument, NULL, ARG_MODE            },
        { "direct",          no_argument,       NULL, ARG_DIRECT          },
        { "nonblock",        no_argument,       NULL, ARG_NONBLOCK        },
        { "fd",              required_argument, NULL, ARG_FD              },
        {}
};

typedef struct Args {
        const char *address;
        bool json;
        int ask_password;       /* -1: when stdin is a terminal */
        bool legend;
        const char *uuid;
        const char *description;
        const char *uid;        /* --uid=UID|USER as given */
        const char *user;
        bool remove_created;
        const char *guest;
        const char *mode;
        bool direct;
        bool nonblock;
        int fd;
        bool share_uid;
        bool directory;
        unsigned seen;          /* OPT() of every verb option given */
        char **args;            /* positional arguments after the verb (borrowed from argv) */
        size_t n_args;
        char **command;         /* open: everything after "--" */
} Args;

/* ---- small helpers ------------------------------------------------------------------------------ */

static int errorf(int status, const char *format, ...) G_GNUC_PRINTF(2, 3);
static int errorf(int status, const char *format, ...) {
        va_list ap;

        va_start(ap, format);
        (void) vfprintf(stderr, format, ap);
        va_end(ap);
        (void) fputc('\n', stderr);
        return status;
}

/* The exit status for a failure reported by the library: by D-Bus error name where there is
 * one (the name is what the service decided), else by errno. */
static int exit_status_of(const IaError *e, int r) {
        static const struct {
                const char *name;
                int status;
        } names[] = {
                { IA_ERROR_INVALID_NAME,                                 IA_EXIT_USAGE },
                { IA_ERROR_INVALID_PATH,                                 IA_EXIT_USAGE },
                { IA_ERROR_INVALID_MODE,                                 IA_EXIT_USAGE },
                { IA_ERROR_INVALID_OPTION,                               IA_EXIT_USAGE },
                { "org.freedesktop.DBus.Error.InvalidArgs",              IA_EXIT_USAGE },
                { "org.freedesktop.DBus.Error.AccessDenied",             IA_EXIT_DENIED },
                { "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired", IA_EXIT_DENIED },
                { IA_ERROR_AUTH_UNAVAILABLE,                             IA_EXIT_DENIED },
                { IA_ERROR_AUTH_FAILED,                                  IA_EXIT_DENIED },
                { IA_ERROR_NOT_BOUND,                                    IA_EXIT_DENIED },
                { IA_ERROR_NOT_GRANTED,                                  IA_EXIT_DENIED },
                { IA_ERROR_NOT_CREATED,                                  IA_EXIT_DENIED },
                { IA_ERROR_UNKNOWN_GUEST,                                IA_EXIT_NOT_FOUND },
                { IA_ERROR_NOT_FOUND,                                    IA_EXIT_NOT_FOUND },
                { IA_ERROR_INVALID_PROCESS,                              IA_EXIT_NOT_FOUND },
                { IA_ERROR_GUEST_EXISTS,                                 IA_EXIT_EXISTS },
                { IA_ERROR_UID_IN_USE,                                   IA_EXIT_EXISTS },
                { IA_ERROR_DIRECTORY_IN_USE,                             IA_EXIT_EXISTS },
                { IA_ERROR_FILE_EXISTS,                                  IA_EXIT_EXISTS },
        };

        for (size_t i = 0; i < G_N_ELEMENTS(names); i++)
                if (ia_error_has_name(e, names[i].name))
                        return names[i].status;
        if (e && e->name && !g_str_has_prefix(e->name, "System.Error."))
                return IA_EXIT_FAILURE;         /* some other bus or service error */

        switch (r) {
        case -EINVAL:
                return IA_EXIT_USAGE;
        case -EACCES:
        case -EPERM:
                return IA_EXIT_DENIED;
        case -ESRCH:
                return IA_EXIT_NOT_FOUND;
        case -EEXIST:
                return IA_EXIT_EXISTS;
        default:
                return IA_EXIT_FAILURE;
        }
}

/* "Failed to X: <the service's message>" and the matching exit status. */
static int fail(const IaError *e, int r, const char *format, ...) G_GNUC_PRINTF(3, 4);
static int fail(const IaError *e, int r, const char *format, ...) {
        g_autofree char *what = NULL;
        va_list ap;

        va_start(ap, format);
        what = g_strdup_vprintf(format, ap);
        va_end(ap);
        (void) fprintf(stderr, "%s: %s\n", what,
                       e && e->message ? e->message : g_strerror(-r));
        return exit_status_of(e, r);
}

/* ---- polkit agent -------------------------------------------------------------------------------
 *
 * As systemd's tools do (spawn-polkit-agent.c in systemd): a non-root caller on a terminal
 * whose call may need authentication gets polkit's text agent, pkttyagent, registered for this
 * process (its parent) before the first call goes out, so that an auth_admin rule prompts on
 * the terminal instead of failing with InteractiveAuthorizationRequired.  pkttyagent closes
 * its --notify-fd once registered; we wait for that, so the first call cannot race the
 * registration.  Root needs no agent (polkit authorizes uid 0), and without a terminal there is
 * nobody to ask.
 *
 * --fallback (a desktop session's own agent keeps precedence) only inside a login session:
 * polkitd 122 (get_authentication_agent_for_subject()) drops a fallback agent when the subject
 * has no session, so on a host without logind, or from a process outside any session, a
 * fallback agent would never be asked, and there is no session agent to defer to anyway. */

static pid_t agent_pid;

/* Bounds the wait for the agent's registration: an agent that hangs must not hang us. */
#define AGENT_REGISTER_TIMEOUT_MS (30 * 1000)

static void polkit_agent_close(void) {
        if (agent_pid <= 0)
                return;
        /* Tell the agent we are done, and reap it. */
        (void) kill(agent_pid, SIGTERM);
        while (waitpid(agent_pid, NULL, 0) < 0 && errno == EINTR)
                ;
        agent_pid = 0;
}

static void polkit_agent_open(const Args *a) {
        char notify_fd[16];
        bool in_session = false;
        int pipe_fd[2];
        struct pollfd p;
        pid_t pid;

        if (agent_pid > 0 || geteuid() == 0 || !isatty(STDIN_FILENO))
                return;

        if (pipe2(pipe_fd, O_CLOEXEC) < 0)
                return;
        (void) snprintf(notify_fd, sizeof(notify_fd), "%d", pipe_fd[1]);

        pid = fork();
        if (pid < 0) {
                (void) close(pipe_fd[0]);
                (void) close(pipe_fd[1]);
                return;
        }
        if (pid == 0) {
                /* The child keeps the write end across exec, nothing else of ours. */
                int flags = fcntl(pipe_fd[1], F_GETFD);

                if (flags < 0 || fcntl(pipe_fd[1], F_SETFD, flags & ~FD_CLOEXEC) < 0)
                        _exit(EXIT_FAILURE);
                /* The agent must register on the bus the calls go to. */
                if (a->address && setenv("DBUS_SYSTEM_BUS_ADDRESS", a->address, 1) < 0)
                        _exit(EXIT_FAILURE);
                execl(POLKIT_AGENT_BINARY_PATH, POLKIT_AGENT_BINARY_PATH,
                      "--notify-fd", notify_fd, in_session ? "--fallback" : (char *) NULL,
                      (char *) NULL);
                _exit(EXIT_FAILURE);
        }

        agent_pid = pid;
        (void) close(pipe_fd[1]);
        /* Registered (or gone: the pipe closes with the agent either way). */
        p = (struct pollfd) { .fd = pipe_fd[0], .events = POLLHUP };
        while (poll(&p, 1, AGENT_REGISTER_TIMEOUT_MS) < 0 && errno == EINTR)
                ;
        (void) close(pipe_fd[0]);
}

static int connect_client(const Args *a, IaClient **ret) {
        g_autoptr(IaClient) c = NULL;
        bool ask;
        int r;

        r = a->address ? ia_client_new_with_address(a->address, &c) : ia_client_new(&c);
        if (r < 0)
                /* Not "not found" even for -ENOENT: the bus is missing, not an object. */
                return errorf(IA_EXIT_FAILURE, "Failed to connect to %s: %s",
                              a->address ? a->address : "the system bus", g_strerror(-r));

        ask = a->ask_password >= 0 ? a->ask_password : isatty(STDIN_FILENO) > 0;
        (void) ia_client_set_allow_interactive_authorization(c, ask);
        if (ask)
                polkit_agent_open(a);

        *ret = g_steal_pointer(&c);
        return IA_EXIT_OK;
}

static int parse_mode(const char *s, IaImageMode *ret) {
        int m = ia_image_mode_from_string(s);

        if (m < 0)
                return errorf(IA_EXIT_USAGE,
                              "Invalid mode '%s': expected read-only, read-write or create", s);
        *ret = (IaImageMode) m;
        return IA_EXIT_OK;
}

static int check_absolute(const char *path) {
        if (path[0] != '/')
                return errorf(IA_EXIT_USAGE, "Image path '%s' is not absolute", path);
        return IA_EXIT_OK;
}

static bool parse_number(const char *s, unsigned long max, unsigned long *ret) {
        unsigned long v;
        char *end;

        if (!g_ascii_isdigit(s[0]))
                return false;
        errno = 0;
        v = strtoul(s, &end, 10);
        if (errno != 0 || *end != '\0' || v > max)
                return false;
        *ret = v;
        return true;
}

/* A uid given as a number or as a user name (looked up in this system's user database). */
static int parse_uid_or_user(const char *s, uid_t *ret) {
        unsigned long v;
        struct passwd *pw;

        if (parse_number(s, (uid_t) -2, &v)) {
                *ret = (uid_t) v;
                return IA_EXIT_OK;
        }
        if (s[0] == '\0' || g_ascii_isdigit(s[0]))
                return errorf(IA_EXIT_USAGE, "Invalid uid '%s'", s);
        errno = 0;
        pw = getpwnam(s);
        if (!pw)
                return errorf(IA_EXIT_NOT_FOUND, "Unknown user '%s'%s%s", s,
                              errno != 0 ? ": " : "", errno != 0 ? g_strerror(errno) : "");
        *ret = pw->pw_uid;
        return IA_EXIT_OK;
}

/* ---- JSON output (keys are stable: scripts rely on them) ------------------------------------- */

static void json_string(GString *s, const char *v) {
        g_autofree char *valid = NULL;

        if (!v) {
                g_string_append(s, "null");
                return;
        }
        /* JSON is UTF-8: a path with invalid bytes gets U+FFFD in their place. */
        if (!g_utf8_validate(v, -1, NULL))
                v = valid = g_utf8_make_valid(v, -1);
        g_string_append_c(s, '"');
        for (const char *p = v; *p; p++) {
                unsigned char ch = (unsigned char) *p;

                if (ch == '"' || ch == '\\')
                        g_string_append_printf(s, "\\%c", ch);
                else if (ch == '\n')
                        g_string_append(s, "\\n");
                else if (ch == '\t')
                        g_string_append(s, "\\t");
                else if (ch < 0x20 || ch == 0x7f)
                        g_string_append_printf(s, "\\u%04x", ch);
                else
                        g_string_append_c(s, (char) ch);
        }
        g_string_append_c(s, '"');
}

static void json_key(GString *s, bool *first, const char *key) {
        if (!*first)
                g_string_append(s, ", ");
        *first = false;
        json_string(s, key);
        g_string_append(s, ": ");
}

static void json_kv_str(GString *s, bool *first, const char *key, const char *v) {
        json_key(s, first, key);
        json_string(s, v);
}

static void json_kv_uint(GString *s, bool *first, const char *key, uint64_t v) {
        json_key(s, first, key);
        g_string_append_printf(s, "%" G_GUINT64_FORMAT, v);
}

static void json_kv_uid(GString *s, bool *first, const char *key, uid_t v) {
        if (v == IA_UID_NONE) {
                json_key(s, first, key);
                g_string_append(s, "null");
        } else
                json_kv_uint(s, first, key, v);
}

static void json_kv_bool(GString *s, bool *first, const char *key, bool v) {
        json_key(s, first, key);
        g_string_append(s, v ? "true" : "false");
}

/* ---- tables ------------------------------------------------------------------------------------ */

typedef struct Table {
        size_t n_columns;
        GPtrArray *cells;       /* row-major, n_columns per row; the first row is the header */
} Table;

static Table *table_new(size_t n_columns, ...) {
        Table *t = g_new0(Table, 1);
        va_list ap;

        t->n_columns = n_columns;
        t->cells = g_ptr_array_new_with_free_func(g_free);
        va_start(ap, n_columns);
        for (size_t i = 0; i < n_columns; i++)
                g_ptr_array_add(t->cells, g_strdup(va_arg(ap, const char *)));
        va_end(ap);
        return t;
}

static void table_free(Table *t) {
        if (!t)
                return;
        g_ptr_array_unref(t->cells);
        g_free(t);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC(Table, table_free)

/* Takes @cell. */
static void table_add_take(Table *t, char *cell) {
        g_ptr_array_add(t->cells, cell);
}

static size_t table_n_rows(const Table *t) {
        return t->cells->len / t->n_columns - 1;
}

static size_t text_width(const char *s) {
        return g_utf8_validate(s, -1, NULL) ? (size_t) g_utf8_strlen(s, -1) : strlen(s);
}

static void table_print(const Table *t, bool legend) {
        g_autofree size_t *width = g_new0(size_t, t->n_columns);
        size_t n_rows = t->cells->len / t->n_columns;

        for (size_t i = 0; i < t->cells->len; i++) {
                size_t w = text_width(t->cells->pdata[i]);

                width[i % t->n_columns] = MAX(width[i % t->n_columns], w);
        }
        for (size_t row = legend ? 0 : 1; row < n_rows; row++) {
                g_autoptr(GString) line = g_string_new(NULL);

                for (size_t col = 0; col < t->n_columns; col++) {
                        const char *c = t->cells->pdata[row * t->n_columns + col];

                        g_string_append(line, c);
                        if (col + 1 < t->n_columns)
                                for (size_t k = text_width(c); k < width[col] + 2; k++)
                                        g_string_append_c(line, ' ');
                }
                /* The last column may be empty: no trailing blanks. */
                while (line->len > 0 && line->str[line->len - 1] == ' ')
                        g_string_truncate(line, line->len - 1);
                (void) puts(line->str);
        }
}

/* ---- verbs --------------------------------------------------------------------------------------- */

static int verb_register(Args *a) {
        g_autoptr(IaClient) c = NULL;
        g_auto(IaError) e = {};
        uid_t uid = IA_UID_NONE;
        int r;

        if (a->uid) {
                r = parse_uid_or_user(a->uid, &uid);
                if (r != IA_EXIT_OK)
                        return r;
        }
        if (a->share_uid && !a->uid)
                return errorf(IA_EXIT_USAGE, "Option '--share-uid' needs '--uid'");
        r = connect_client(a, &c);
        if (r != IA_EXIT_OK)
                return r;

        r = ia_manager_register_guest_full(c, a->args[0], a->uuid, a->description, uid,
                                           a->share_uid ? IA_REGISTER_SHARE_UID : 0, &e);
        if (r < 0)
                return fail(&e, r, "Failed to register guest '%s'", a->args[0]);
        return IA_EXIT_OK;
}

static int verb_unregister(Args *a) {
        g_autoptr(IaClient) c = NULL;
        g_auto(IaError) e = {};
        int r;

        r = connect_client(a, &c);
        if (r != IA_EXIT_OK)
                return r;
        r = ia_manager_unregister_guest(c, a->args[0], &e);
        if (r < 0)
                return fail(&e, r, "Failed to unregister guest '%s'", a->args[0]);
        return IA_EXIT_OK;
}

static int verb_bind(Args *a) {
        g_autoptr(IaClient) c = NULL;
        g_auto(IaError) e = {};
        ia_autofd int pidfd = -1;
        unsigned long pid;
        int r;

        if (!parse_number(a->args[1], INT_MAX, &pid) || pid == 0)
                return errorf(IA_EXIT_USAGE, "Invalid PID '%s'", a->args[1]);

        /* The pidfd pins the process from here on: if it exits before the service has it, the
         * service says InvalidProcess rather than binding whatever reuses the pid. */
        pidfd = (int) syscall(SYS_pidfd_open, (pid_t) pid, 0);
        if (pidfd < 0) {
                if (errno == ESRCH)
                        return errorf(IA_EXIT_NOT_FOUND, "No process with PID %lu", pid);
                return errorf(IA_EXIT_FAILURE, "Failed to open a pidfd of PID %lu: %s", pid,
                              g_strerror(errno));
        }

        r = connect_client(a, &c);
        if (r != IA_EXIT_OK)
                return r;
        r = ia_manager_bind_process(c, a->args[0], pidfd, &e);
        if (r < 0)
                return fail(&e, r, "Failed to bind PID %lu to guest '%s'", pid, a->args[0]);
        return IA_EXIT_OK;
}

static int verb_grant(Args *a) {
        g_autoptr(IaClient) c = NULL;
        g_auto(IaError) e = {};
        IaImageMode mode = IA_IMAGE_MODE_READ_ONLY;
        int r;

        r = check_absolute(a->args[1]);
        if (r == IA_EXIT_OK)
                r = parse_mode(a->args[2], &mode);
        if (r == IA_EXIT_OK)
                r = connect_client(a, &c);
        if (r != IA_EXIT_OK)
                return r;

        r = ia_manager_grant_image_full(c, a->args[0], a->args[1], mode,
                                        a->directory ? IA_GRANT_DIRECTORY : 0, &e);
        if (r < 0)
                return fail(&e, r, "Failed to grant '%s' to guest '%s'", a->args[1], a->args[0]);
        return IA_EXIT_OK;
}

static int verb_revoke(Args *a) {
        g_autoptr(IaClient) c = NULL;
        g_auto(IaError) e = {};
        int r;

        r = check_absolute(a->args[1]);
        if (r == IA_EXIT_OK)
                r = connect_client(a, &c);
        if (r != IA_EXIT_OK)
                return r;

        r = ia_manager_revoke_image(c, a->args[0], a->args[1],
                                    a->remove_created ? IA_REVOKE_REMOVE_CREATED : 0, &e);
        if (r < 0)
                return fail(&e, r, "Failed to revoke '%s' from guest '%s'", a->args[1],
                            a->args[0]);
        return IA_EXIT_OK;
}

static int list_guests(Args *a, IaClient *c) {
        g_auto(IaGuestInfoList) guests = NULL;
        g_auto(IaError) e = {};
        int r;

        r = ia_manager_list_guests(c, &e, &guests);
        if (r < 0)
                return fail(&e, r, "Failed to list guests");

        if (a->json) {
                g_autoptr(GString) s = g_string_new("[");

                for (IaGuestInfo **g = guests; *g; g++) {
                        bool first = true;

                        g_string_append(s, g == guests ? "\n  {" : ",\n  {");
                        json_kv_str(s, &first, "name", (*g)->name);
                        json_kv_str(s, &first, "uuid", (*g)->uuid);
                        json_kv_str(s, &first, "description", (*g)->description);
                        json_kv_uid(s, &first, "uid", (*g)->uid);
                        json_kv_uint(s, &first, "grants", (*g)->n_grants);
                        json_kv_uint(s, &first, "processes", (*g)->n_processes);
                        g_string_append_c(s, '}');
                }
                g_string_append(s, guests[0] ? "\n]" : "]");
                (void) puts(s->str);
                return IA_EXIT_OK;
        }

        if (!guests[0]) {
                if (a->legend)
                        (void) puts("No guests.");
                return IA_EXIT_OK;
        }

        g_autoptr(Table) t = table_new(6, "GUEST", "UID", "PROCESSES", "GRANTS", "UUID",
                                       "DESCRIPTION");
        for (IaGuestInfo **g = guests; *g; g++) {
                table_add_take(t, g_strdup((*g)->name));
                table_add_take(t, (*g)->uid == IA_UID_NONE ? g_strdup("-") :
                                  g_strdup_printf("%u", (unsigned) (*g)->uid));
                table_add_take(t, g_strdup_printf("%u", (*g)->n_processes));
                table_add_take(t, g_strdup_printf("%u", (*g)->n_grants));
                table_add_take(t, g_strdup((*g)->uuid ?: "-"));
                table_add_take(t, g_strdup((*g)->description ?: ""));
        }
        table_print(t, a->legend);
        if (a->legend)
                (void) printf("\n%zu guest%s listed.\n", table_n_rows(t),
                              table_n_rows(t) == 1 ? "" : "s");
        return IA_EXIT_OK;
}

static int list_grants(Args *a, IaClient *c, const char *guest) {
        g_auto(IaGrantInfoList) grants = NULL;
        g_auto(IaError) e = {};
        int r;

        r = ia_manager_list_grants(c, guest, &e, &grants);
        if (r < 0)
                return fail(&e, r, "Failed to list the grants of guest '%s'", guest);

        if (a->json) {
                g_autoptr(GString) s = g_string_new("[");

                for (IaGrantInfo **g = grants; *g; g++) {
                        bool first = true;

                        g_string_append(s, g == grants ? "\n  {" : ",\n  {");
                        json_kv_str(s, &first, "path", (*g)->path);
                        json_kv_str(s, &first, "mode", ia_image_mode_to_string((*g)->mode));
                        json_kv_bool(s, &first, "created", (*g)->created);
                        if ((*g)->directory)
                                json_kv_bool(s, &first, "directory", true);
                        g_string_append_c(s, '}');
                }
                g_string_append(s, grants[0] ? "\n]" : "]");
                (void) puts(s->str);
                return IA_EXIT_OK;
        }

        if (!grants[0]) {
                if (a->legend)
                        (void) printf("Guest '%s' has no grants.\n", guest);
                return IA_EXIT_OK;
        }

        g_autoptr(Table) t = table_new(3, "PATH", "MODE", "CREATED");
        for (IaGrantInfo **g = grants; *g; g++) {
                /* A directory grant shows as DIR/, as ls -F does. */
                table_add_take(t, g_strconcat((*g)->path, (*g)->directory ? "/" : "", NULL));
                table_add_take(t, g_strdup(ia_image_mode_to_string((*g)->mode) ?: "unknown"));
                table_add_take(t, g_strdup((*g)->created ? "yes" : "no"));
        }
        table_print(t, a->legend);
        if (a->legend)
                (void) printf("\n%zu grant%s listed.\n", table_n_rows(t),
                              table_n_rows(t) == 1 ? "" : "s");
        return IA_EXIT_OK;
}

static int verb_list(Args *a) {
        g_autoptr(IaClient) c = NULL;
        int r;

        r = connect_client(a, &c);
        if (r != IA_EXIT_OK)
                return r;
        return a->n_args > 0 ? list_grants(a, c, a->args[0]) : list_guests(a, c);
}

static int verb_open(Args *a) {
        g_autoptr(IaClient) c = NULL;
        g_auto(IaError) e = {};
        ia_autofd int fd = -1;
        IaImageMode mode = IA_IMAGE_MODE_READ_ONLY;
        int r;

        if (!a->guest)
                return errorf(IA_EXIT_USAGE, "open needs --guest=GUEST");
        if (!a->mode)
                return errorf(IA_EXIT_USAGE, "open needs --mode=MODE");
        if (!a->command || !a->command[0])
                return errorf(IA_EXIT_USAGE, "open needs a command after '--'");
        r = parse_mode(a->mode, &mode);
        if (r == IA_EXIT_OK)
                r = check_absolute(a->args[0]);
        if (r == IA_EXIT_OK)
                r = connect_client(a, &c);
        if (r != IA_EXIT_OK)
                return r;

        r = ia_client_open(c, a->guest, a->args[0], mode,
                           (a->direct ? IA_OPEN_DIRECT : 0) | (a->nonblock ? IA_OPEN_NONBLOCK : 0),
                           &e, &fd);
        if (r < 0)
                return fail(&e, r, "Failed to open '%s' for guest '%s'", a->args[0], a->guest);

        /* Close the bus connection first: the command must not inherit it, and its fd number
         * must not be taken for N below. */
        c = ia_client_unref(g_steal_pointer(&c));

        /* Every fd of ours is CLOEXEC; only the image at N is inherited.  dup2() leaves the
         * new fd without FD_CLOEXEC; if the fd already is N, clear the flag by hand. */
        if (fd == a->fd) {
                int flags = fcntl(fd, F_GETFD);

                if (flags < 0 || fcntl(fd, F_SETFD, flags & ~FD_CLOEXEC) < 0)
                        return errorf(IA_EXIT_FAILURE, "Failed to clear FD_CLOEXEC on fd %d: %s",
                                      fd, g_strerror(errno));
        } else if (dup2(fd, a->fd) < 0)
                return errorf(IA_EXIT_FAILURE, "Failed to move the image to fd %d: %s", a->fd,
                              g_strerror(errno));
        else
                fd = ia_safe_close(fd);

        /* The command is not ours to authenticate for. */
        polkit_agent_close();
        (void) fflush(stdout);
        execvp(a->command[0], a->command);
        r = errno;
        if (a->fd <= STDERR_FILENO)
                /* stderr may be the image now: say nothing rather than write into it. */
                return r == ENOENT ? IA_EXIT_COMMAND_NOT_FOUND : IA_EXIT_CANNOT_EXECUTE;
        return errorf(r == ENOENT ? IA_EXIT_COMMAND_NOT_FOUND : IA_EXIT_CANNOT_EXECUTE,
                      "Failed to execute '%s': %s", a->command[0], g_strerror(r));
}

/* ---- explain ----------------------------------------------------------------------------------- */

typedef enum Result {
        RESULT_PASS,
        RESULT_FAIL,
        RESULT_UNKNOWN,
} Result;

static const char *const result_names[] = {
        [RESULT_PASS] = "pass",
        [RESULT_FAIL] = "fail",
        [RESULT_UNKNOWN] = "unknown",
};

/* One layer of the decision: its result, one sentence why, and its facts as JSON members. */
typedef struct Layer {
        const char *name;
        Result result;
        char *reason;
        GString *facts;
        bool first_fact;
} Layer;

static void layer_init(Layer *l, const char *name) {
        *l = (Layer) { .name = name, .result = RESULT_UNKNOWN, .facts = g_string_new(NULL),
                       .first_fact = true };
}

static void layer_done(Layer *l) {
        g_free(l->reason);
        g_string_free(l->facts, true);
}

static void layer_set(Layer *l, Result result, const char *format, ...) G_GNUC_PRINTF(3, 4);
static void layer_set(Layer *l, Result result, const char *format, ...) {
        va_list ap;

        l->result = result;
        g_free(l->reason);
        va_start(ap, format);
        l->reason = g_strdup_vprintf(format, ap);
        va_end(ap);
}

/* Whether a path is absolute and normalized as the service demands (daemon: validate_path()):
 * no '.', '..', empty components or trailing '/', at most 4095 bytes, components at most 255.
 * Returns NULL or why not. */
static const char *path_problem(const char *path) {
        const char *p;

        if (path[0] != '/')
                return "it is not absolute";
        if (strlen(path) > 4095)
                return "it is longer than 4095 bytes";
        if (strcmp(path, "/") == 0)
                return "it is the root directory";
        for (p = path; *p;) {
                const char *c = p + 1, *end = strchrnul(c, '/');
                size_t n = (size_t) (end - c);

                if (n == 0)
                        return *end ? "it contains '//'" : "it ends in '/'";
                if ((n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
                        return "it contains a '.' or '..' component";
                if (n > 255)
                        return "a component is longer than 255 bytes";
                p = end;
        }
        return NULL;
}

static const char *file_type_name(mode_t m) {
        switch (m & S_IFMT) {
        case S_IFREG:
                return "regular";
        case S_IFBLK:
                return "block";
        case S_IFDIR:
                return "directory";
        case S_IFCHR:
                return "character-device";
        case S_IFIFO:
                return "fifo";
        case S_IFSOCK:
                return "socket";
        case S_IFLNK:
                return "symlink";
        default:
                return "unknown";
        }
}

/* What the grant table says about the image, for the path layer: the service opens only the
 * file a grant is pinned to (daemon/open.c). */
typedef struct GrantFacts {
        bool found;
        bool created;
        bool pinned;
        uint64_t device;
        uint64_t inode;
} GrantFacts;

/* (d) the path: what the service's open would find there, as root in this mount namespace. */
static void explain_path(Layer *l, const char *path, IaImageMode mode, const GrantFacts *gf) {
        bool created_for_guest = gf->created;
        g_autofree char *prefix = NULL, *dir = NULL;
        const char *problem, *symlink_at = NULL, *type = NULL;
        bool exists = false;
        struct statvfs sv;
        struct stat st;

        problem = path_problem(path);
        if (problem) {
                layer_set(l, RESULT_FAIL, "'%s' is not a valid image path: %s (InvalidPath)",
                          path, problem);
                goto facts;
        }

        /* Walk down component by component with lstat(): the service follows no symlink in
         * any component, so the first link met decides. */
        prefix = g_strdup(path);
        for (char *slash = strchr(prefix + 1, '/');; slash = strchr(slash + 1, '/')) {
                bool last = !slash;

                if (slash)
                        *slash = '\0';
                if (lstat(prefix, &st) < 0) {
                        int err = errno;

                        if (err == ENOENT && last && mode == IA_IMAGE_MODE_CREATE)
                                break;  /* to be created: checked below */
                        if (err == ENOENT && last)
                                layer_set(l, RESULT_FAIL, "'%s' does not exist (NotFound)", path);
                        else if (err == ENOENT)
                                layer_set(l, RESULT_FAIL,
                                          "directory '%s' does not exist; the service creates "
                                          "no directories", prefix);
                        else
                                layer_set(l, RESULT_FAIL, "cannot look at '%s': %s", prefix,
                                          g_strerror(err));
                        goto facts;
                }
                if (S_ISLNK(st.st_mode)) {
                        symlink_at = g_intern_string(prefix);
                        layer_set(l, RESULT_FAIL,
                                  "'%s' is a symbolic link; the service follows none, in any "
                                  "component (SymlinkRefused)", prefix);
                        if (last) {
                                exists = true;
                                type = "symlink";
                        }
                        goto facts;
                }
                if (last) {
                        exists = true;
                        type = file_type_name(st.st_mode);
                        break;
                }
                if (!S_ISDIR(st.st_mode)) {
                        layer_set(l, RESULT_FAIL, "'%s' is not a directory", prefix);
                        goto facts;
                }
                *slash = '/';
        }

        if (exists && !S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
                layer_set(l, RESULT_FAIL,
                          "'%s' is a %s; only regular files and block devices are opened "
                          "(WrongFileType)", path, type);
                goto facts;
        }
        /* As the service decides it: a grant not pinned yet is a create grant whose file the
         * service has not made, and only a create opens it; a pinned grant opens only the
         * file it is pinned to, whatever else was put at the path since. */
        if (gf->found && !gf->pinned && mode != IA_IMAGE_MODE_CREATE) {
                layer_set(l, RESULT_FAIL, "'%s' does not exist yet for this guest: the service "
                          "has not created it, and only a create opens it (NotFound)", path);
                goto facts;
        }
        if (exists && gf->found && gf->pinned &&
            (mode != IA_IMAGE_MODE_CREATE || created_for_guest) &&
            ((uint64_t) st.st_dev != gf->device || (uint64_t) st.st_ino != gf->inode)) {
                layer_set(l, RESULT_FAIL, "'%s' is not the file that was granted: it was replaced "
                          "since (device or inode differ); the VM manager must grant it again "
                          "(NotGranted)", path);
                goto facts;
        }
        if (exists && mode == IA_IMAGE_MODE_CREATE && !created_for_guest) {
                layer_set(l, RESULT_FAIL,
                          "'%s' exists and the service did not create it for this guest; "
                          "create never touches such a file (FileExists)", path);
                goto facts;
        }

        /* A writable open needs a writable file system (for the service, under systemd, also
         * ReadWritePaths= of its unit, which this cannot see). */
        dir = exists ? g_strdup(path) : g_path_get_dirname(path);
        if (mode != IA_IMAGE_MODE_READ_ONLY && statvfs(dir, &sv) == 0 && (sv.f_flag & ST_RDONLY)) {
                layer_set(l, RESULT_FAIL, "'%s' is on a read-only file system", dir);
                goto facts;
        }

        if (!exists)
                layer_set(l, RESULT_PASS, "'%s' does not exist yet; the open creates it "
                          "(root-owned, mode 0600), no symbolic link on the way", path);
        else if (mode == IA_IMAGE_MODE_CREATE)
                layer_set(l, RESULT_PASS, "'%s' exists and the service created it for this "
                          "guest; the open reopens it", path);
        else
                layer_set(l, RESULT_PASS, "'%s' is a %s, no symbolic link on the way", path,
                          S_ISREG(st.st_mode) ? "regular file" : "block device");

facts:
        json_kv_bool(l->facts, &l->first_fact, "exists", exists);
        json_kv_str(l->facts, &l->first_fact, "type", type);
        json_kv_str(l->facts, &l->first_fact, "symlink", symlink_at);
}

/* (a) registration and the grant table. */
static int explain_grant(Layer *l, IaClient *c, const IaGuestInfo *g, const char *guest,
                         const char *path, IaImageMode mode, GrantFacts *ret_facts) {
        g_auto(IaGrantInfoList) grants = NULL;
        g_auto(IaError) e = {};
        const IaGrantInfo *found = NULL, *dir = NULL;
        int r;

        *ret_facts = (GrantFacts) {};
        if (!g) {
                layer_set(l, RESULT_FAIL, "guest '%s' is not registered", guest);
                json_kv_bool(l->facts, &l->first_fact, "registered", false);
                json_kv_str(l->facts, &l->first_fact, "granted_mode", NULL);
                json_kv_bool(l->facts, &l->first_fact, "created", false);
                return IA_EXIT_OK;
        }

        r = ia_manager_list_grants(c, guest, &e, &grants);
        if (r < 0)
                return fail(&e, r, "Failed to list the grants of guest '%s'", guest);
        for (IaGrantInfo **i = grants; *i; i++)
                if (strcmp((*i)->path, path) == 0)
                        found = *i;
        /* Without a grant of its own, the nearest directory grant above the path (as the
         * service decides). */
        if (!found)
                for (IaGrantInfo **i = grants; *i; i++) {
                        size_t n = strlen((*i)->path);

                        if ((*i)->directory && strncmp((*i)->path, path, n) == 0 &&
                            path[n] == '/' && (!dir || strlen(dir->path) < n))
                                dir = *i;
                }

        if (found && found->directory)
                layer_set(l, RESULT_FAIL, "'%s' is a directory granted to guest '%s'; only the "
                          "files beneath it are opened (NotGranted)", path, guest);
        else if (!found && dir && (dir->mode == IA_IMAGE_MODE_UNKNOWN || dir->mode < mode))
                layer_set(l, RESULT_FAIL, "guest '%s' may open files beneath directory '%s' only "
                          "%s, not %s (NotGranted)", guest, dir->path,
                          ia_image_mode_to_string(dir->mode) ?: "in an unknown mode",
                          ia_image_mode_to_string(mode));
        else if (!found && dir)
                layer_set(l, RESULT_PASS, "guest '%s' holds a %s grant for directory '%s' above "
                          "it (the file must be a regular file with one name, and no other "
                          "guest's)", guest, ia_image_mode_to_string(dir->mode), dir->path);
        else if (!found)
                layer_set(l, RESULT_FAIL, "guest '%s' has no grant for '%s' (NotGranted)", guest,
                          path);
        else if (found->mode == IA_IMAGE_MODE_UNKNOWN || found->mode < mode)
                layer_set(l, RESULT_FAIL, "guest '%s' may open '%s' only %s, not %s (NotGranted)",
                          guest, path, ia_image_mode_to_string(found->mode) ?: "in an unknown mode",
                          ia_image_mode_to_string(mode));
        else
                layer_set(l, RESULT_PASS, "guest '%s' holds a %s grant for '%s'%s", guest,
                          ia_image_mode_to_string(found->mode), path,
                          found->mode > mode ? ", which covers this mode" : "");

        json_kv_bool(l->facts, &l->first_fact, "registered", true);
        json_kv_str(l->facts, &l->first_fact, "granted_mode",
                    found ? ia_image_mode_to_string(found->mode) :
                    dir ? ia_image_mode_to_string(dir->mode) : NULL);
        if (dir)
                json_kv_str(l->facts, &l->first_fact, "directory", dir->path);
        json_kv_bool(l->facts, &l->first_fact, "created", found && found->created);
        if (found)
                *ret_facts = (GrantFacts) { .found = true, .created = found->created,
                                            .pinned = found->pinned, .device = found->device,
                                            .inode = found->inode };
        return IA_EXIT_OK;
}

/* (b) the binding: would a caller with this uid count as the guest's emulator? */
static void explain_binding(Layer *l, const IaGuestInfo *g, const char *guest, uid_t uid,
                            bool uid_given) {
        if (!g)
                layer_set(l, RESULT_FAIL, "guest '%s' is not registered, so nothing is bound "
                          "to it (NotBound)", guest);
        else if (g->uid != IA_UID_NONE && uid == g->uid)
                layer_set(l, RESULT_PASS, "uid %u is bound to guest '%s': every process of that "
                          "uid counts as its emulator", (unsigned) uid, guest);
        else if (g->n_processes > 0 && !uid_given)
                layer_set(l, RESULT_PASS, "%u running process%s %s bound to guest '%s'; their "
                          "new bus connections count as its emulator", g->n_processes,
                          g->n_processes == 1 ? "" : "es", g->n_processes == 1 ? "is" : "are",
                          guest);
        else if (g->n_processes > 0)
                layer_set(l, RESULT_UNKNOWN, "uid %u is not the guest's uid, but %u process%s "
                          "%s bound to guest '%s': allowed only for one of them, if it runs "
                          "with uid %u", (unsigned) uid, g->n_processes,
                          g->n_processes == 1 ? "" : "es", g->n_processes == 1 ? "is" : "are",
                          guest, (unsigned) uid);
        else if (g->uid != IA_UID_NONE)
                layer_set(l, RESULT_FAIL, "uid %u is not bound to guest '%s' (it is bound to uid "
                          "%u and to no running process) (NotBound)", (unsigned) uid, guest,
                          (unsigned) g->uid);
        else
                layer_set(l, RESULT_FAIL, "no uid and no running process is bound to guest "
                          "'%s': every open fails (NotBound)", guest);

        json_kv_uid(l->facts, &l->first_fact, "bound_uid", g ? g->uid : IA_UID_NONE);
        json_kv_uint(l->facts, &l->first_fact, "processes", g ? g->n_processes : 0);
}

/* (c) polkit, asked directly with the details the service passes. */
static void explain_polkit(Layer *l, IaClient *c, const IaGuestInfo *g, const char *guest,
                           const char *path, IaImageMode mode, uid_t uid) {
        g_auto(IaError) e = {};
        IaPolkitAnswer answer;
        const char *answer_name = NULL;
        int r;

        if (uid == IA_UID_NONE)
                layer_set(l, RESULT_UNKNOWN, "no uid to ask polkit about: guest '%s' is not bound "
                          "to a uid; pass --uid=UID of the emulator", guest);
        else if (uid == 0) {
                layer_set(l, RESULT_PASS, "uid 0: the service does not ask polkit (polkit "
                          "authorizes root before any rule)");
                answer_name = "yes";
        } else {
                r = ia_manager_explain_polkit(c, guest, path, mode, g ? g->uuid : NULL, uid,
                                              /* pid= */ 0, &e, &answer);
                if (r < 0 && (ia_error_has_name(&e, "org.freedesktop.DBus.Error.ServiceUnknown") ||
                              ia_error_has_name(&e, "org.freedesktop.DBus.Error.NameHasNoOwner")))
                        layer_set(l, RESULT_FAIL, "polkit is not running: the service denies "
                                  "every open (AuthorizationUnavailable)");
                else if (r < 0)
                        layer_set(l, RESULT_UNKNOWN, "could not ask polkit: %s",
                                  e.message ?: g_strerror(-r));
                else if (answer == IA_POLKIT_AUTHORIZED) {
                        layer_set(l, RESULT_PASS, "polkit authorizes %s for uid %u",
                                  IA_ACTION_OPEN_IMAGE, (unsigned) uid);
                        answer_name = "yes";
                } else if (answer == IA_POLKIT_CHALLENGE) {
                        layer_set(l, RESULT_FAIL, "polkit wants authentication for %s, which an "
                                  "emulator cannot give (InteractiveAuthorizationRequired)",
                                  IA_ACTION_OPEN_IMAGE);
                        answer_name = "challenge";
                } else {
                        layer_set(l, RESULT_FAIL, "polkit denies %s for uid %u (AccessDenied)",
                                  IA_ACTION_OPEN_IMAGE, (unsigned) uid);
                        answer_name = "no";
                }
        }

        json_kv_str(l->facts, &l->first_fact, "action", IA_ACTION_OPEN_IMAGE);
        json_kv_uid(l->facts, &l->first_fact, "uid", uid);
        json_kv_str(l->facts, &l->first_fact, "answer", answer_name);
}

static int verb_explain(Args *a) {
        g_auto(IaGuestInfoList) guests = NULL;
        g_autoptr(IaClient) c = NULL;
        g_auto(IaError) e = {};
        const IaGuestInfo *g = NULL;
        Layer layers[4];
        const char *path = a->args[0], *verdict;
        uid_t uid = IA_UID_NONE;
        GrantFacts grant_facts = {};
        bool any_fail = false, any_unknown = false;
        IaImageMode mode = IA_IMAGE_MODE_READ_ONLY;
        int r;

        if (!a->guest)
                return errorf(IA_EXIT_USAGE, "explain needs --guest=GUEST");
        if (!a->mode)
                return errorf(IA_EXIT_USAGE, "explain needs --mode=MODE");
        if (a->uid && a->user)
                return errorf(IA_EXIT_USAGE, "--uid and --user exclude each other");
        r = parse_mode(a->mode, &mode);
        if (r == IA_EXIT_OK)
                r = check_absolute(path);
        if (r == IA_EXIT_OK && (a->uid || a->user))
                r = parse_uid_or_user(a->uid ?: a->user, &uid);
        if (r == IA_EXIT_OK)
                r = connect_client(a, &c);
        if (r != IA_EXIT_OK)
                return r;

        r = ia_manager_list_guests(c, &e, &guests);
        if (r < 0)
                return fail(&e, r, "Failed to list guests");
        for (IaGuestInfo **i = guests; *i; i++)
                if (strcmp((*i)->name, a->guest) == 0)
                        g = *i;
        bool uid_given = uid != IA_UID_NONE;
        if (!uid_given && g)
                uid = g->uid;

        layer_init(&layers[0], "grant");
        layer_init(&layers[1], "binding");
        layer_init(&layers[2], "polkit");
        layer_init(&layers[3], "path");

        r = explain_grant(&layers[0], c, g, a->guest, path, mode, &grant_facts);
        if (r == IA_EXIT_OK) {
                explain_binding(&layers[1], g, a->guest, uid, uid_given);
                explain_polkit(&layers[2], c, g, a->guest, path, mode, uid);
                explain_path(&layers[3], path, mode, &grant_facts);

                for (size_t i = 0; i < G_N_ELEMENTS(layers); i++) {
                        any_fail = any_fail || layers[i].result == RESULT_FAIL;
                        any_unknown = any_unknown || layers[i].result == RESULT_UNKNOWN;
                }
                verdict = any_fail ? "denied" : any_unknown ? "unknown" : "allowed";

                if (a->json) {
                        g_autoptr(GString) s = g_string_new("{\n  ");
                        bool first;

                        /* One top-level member per line, for people reading it. */
                        first = true;
                        json_kv_str(s, &first, "guest", a->guest);
                        g_string_append(s, ",\n  ");
                        first = true;
                        json_kv_str(s, &first, "image", path);
                        g_string_append(s, ",\n  ");
                        first = true;
                        json_kv_str(s, &first, "mode", ia_image_mode_to_string(mode));
                        g_string_append(s, ",\n  ");
                        first = true;
                        json_kv_uid(s, &first, "uid", uid);
                        g_string_append(s, ",\n  ");
                        first = true;
                        json_kv_str(s, &first, "verdict", verdict);
                        g_string_append(s, ",\n  ");
                        first = true;
                        json_key(s, &first, "layers");
                        g_string_append(s, "{");
                        for (size_t i = 0; i < G_N_ELEMENTS(layers); i++) {
                                bool lfirst = true;

                                g_string_append(s, i == 0 ? "\n    " : ",\n    ");
                                json_string(s, layers[i].name);
                                g_string_append(s, ": {");
                                json_kv_str(s, &lfirst, "result", result_names[layers[i].result]);
                                json_kv_str(s, &lfirst, "reason", layers[i].reason);
                                if (layers[i].facts->len > 0)
                                        g_string_append_printf(s, ", %s", layers[i].facts->str);
                                g_string_append_c(s, '}');
                        }
                        g_string_append(s, "\n  }\n}");
                        (void) puts(s->str);
                } else {
                        if (uid != IA_UID_NONE)
                                (void) printf("Guest %s, image %s, mode %s, emulator uid %u:\n\n",
                                              a->guest, path, ia_image_mode_to_string(mode),
                                              (unsigned) uid);
                        else
                                (void) printf("Guest %s, image %s, mode %s:\n\n", a->guest, path,
                                              ia_image_mode_to_string(mode));
                        for (size_t i = 0; i < G_N_ELEMENTS(layers); i++)
                                (void) printf("  %-8s %-8s %s\n", layers[i].name,
                                              layers[i].result == RESULT_FAIL ? "FAIL" :
                                              result_names[layers[i].result],
                                              layers[i].reason);
                        (void) printf("\nVerdict: %s\n", verdict);
                }
                r = any_fail ? IA_EXIT_DENIED : any_unknown ? IA_EXIT_FAILURE : IA_EXIT_OK;
        }

        for (size_t i = 0; i < G_N_ELEMENTS(layers); i++)
                layer_done(&layers[i]);
        return r;
}

/* ---- verb table and help ------------------------------------------------------------------------ */

typedef struct Verb {
        const char *name;
        size_t min_args, max_args;      /* after the verb */
        unsigned options;               /* OPT() of the verb options it takes */
        int (*run)(Args *a);
        const char *synopsis;
        const char *help;
} Verb;

static const Verb verbs[] = {
        { "register", 1, 1, OPT(ARG_UUID) | OPT(ARG_DESCRIPTION) | OPT(ARG_UID) | OPT(ARG_SHARE_UID),
          verb_register,
          "register NAME [--uuid=UUID] [--description=TEXT] [--uid=UID|USER [--share-uid]]",
          "Register a guest.  With --uid, every process running with that uid counts as the\n"
          "guest's emulator (strongest when each guest has a uid of its own).\n\n"
          "      --uuid=UUID          The guest's UUID, passed to polkit as guest-uuid\n"
          "      --description=TEXT   Free text, at most 1024 bytes\n"
          "      --uid=UID|USER       Bind the guest to this uid; refused when another guest\n"
          "                           is bound to it\n"
          "      --share-uid          Bind it even so: each guest's emulator can then open\n"
          "                           the other's images\n" },
        { "unregister", 1, 1, 0, verb_unregister,
          "unregister NAME",
          "Remove a guest with all its grants and bindings.  Files the service created for it\n"
          "stay on disk: remove them first with 'revoke --remove-created'.\n" },
        { "bind", 2, 2, 0, verb_bind,
          "bind NAME PID",
          "Bind a running process to a guest as its emulator, through a pidfd of PID.  Only\n"
          "connections the process opens after the bind count.  A VM manager binds best\n"
          "between fork() and exec() with the library (ia_manager_bind_process()).\n" },
        { "grant", 3, 3, OPT(ARG_DIRECTORY), verb_grant,
          "grant NAME PATH MODE [--directory]",
          "Allow a guest to open PATH (absolute, normalized) in MODE: read-only, read-write\n"
          "or create (create covers read-write covers read-only).  The grant is for the file\n"
          "at PATH now, which must exist for read-only and read-write; a create grant may\n"
          "name a file yet to be made, and is then for the file the service makes.  Granting\n"
          "a granted path again changes its mode and takes the file now at PATH.\n\n"
          "      --directory          PATH is a directory (owned by root, writable by nobody\n"
          "                           else): the guest may open the regular files with one\n"
          "                           name beneath it in MODE, such as the snapshot overlays\n"
          "                           its manager makes there.  A file's own grant takes\n"
          "                           precedence; two guests' directory grants never nest.\n"
          "                           'list NAME' shows it as PATH/\n" },
        { "revoke", 2, 2, OPT(ARG_REMOVE_CREATED), verb_revoke,
          "revoke NAME PATH [--remove-created]",
          "Withdraw a grant.  Descriptors already handed out stay valid.\n\n"
          "      --remove-created     Also remove the file, if the service created it for\n"
          "                           this guest and it is still that very inode\n" },
        { "list", 0, 1, OPT(ARG_NO_LEGEND), verb_list,
          "list [NAME] [--json] [--no-legend]",
          "Without NAME, list the guests: name, bound uid, running bound processes, number of\n"
          "grants, UUID, description.  With NAME, list that guest's grants: path, mode, and\n"
          "whether the service created the file.\n\n"
          "      --json               One JSON array; guests have the keys name, uuid,\n"
          "                           description, uid (null: none), grants, processes;\n"
          "                           grants the keys path, mode, created\n"
          "      --no-legend          No header and no footer\n" },
        { "open", 1, 1, OPT(ARG_GUEST) | OPT(ARG_MODE) | OPT(ARG_DIRECT) | OPT(ARG_NONBLOCK) |
                        OPT(ARG_FD), verb_open,
          "open --guest=GUEST --mode=MODE [--direct] [--nonblock] [--fd=N] IMAGE -- COMMAND...",
          "Open IMAGE through the service as an emulator of GUEST, then execute COMMAND with\n"
          "the image at fd N; no other fd of this program is inherited.  The exit status is\n"
          "COMMAND's.  Example:\n\n"
          "  image-accessctl open --guest=vm1 --mode=read-only /images/vm1.qcow2 -- \\\n"
          "          qemu-img info /dev/fd/3\n\n"
          "Opening /dev/fd/3 opens the file again, which needs read access to the file itself\n"
          "(not to its directory); QEMU's -add-fd uses the fd and needs none.\n\n"
          "      --guest=GUEST        The guest this process is bound to\n"
          "      --mode=MODE          read-only, read-write or create\n"
          "      --direct             Open with O_DIRECT\n"
          "      --nonblock           Leave O_NONBLOCK set on the fd\n"
          "      --fd=N               The fd number COMMAND gets the image at (default 3)\n" },
        { "explain", 1, 1, OPT(ARG_GUEST) | OPT(ARG_MODE) | OPT(ARG_UID) | OPT(ARG_USER),
          verb_explain,
          "explain --guest=GUEST --mode=MODE IMAGE [--uid=UID|--user=USER] [--json]",
          "Say why an emulator's open of IMAGE for GUEST in MODE would be allowed or denied\n"
          "today, layer by layer: grant (is the guest registered, does a grant cover the path\n"
          "and mode), binding (is the uid or a process bound), polkit (its answer for\n"
          "org.example.imageaccess.open-image, asked as a process of the uid outside any\n"
          "login session), path (does it exist, its type, any symbolic link).  Needs root.\n"
          "Exit status: 0 allowed, 3 denied, 1 undecided (a layer could not tell).\n\n"
          "      --guest=GUEST        The guest\n"
          "      --mode=MODE          read-only, read-write or create\n"
          "      --uid=UID|USER       The emulator's uid (default: the guest's bound uid)\n"
          "      --user=USER          The same, by name\n"
          "      --json               One JSON object: guest, image, mode, uid, verdict\n"
          "                           (allowed, denied, unknown) and layers.grant, .binding,\n"
          "                           .polkit, .path, each with result (pass, fail, unknown),\n"
          "                           reason and the layer's facts\n" },
};

static const Verb *find_verb(const char *name) {
        for (size_t i = 0; i < G_N_ELEMENTS(verbs); i++)
                if (strcmp(verbs[i].name, name) == 0)
                        return &verbs[i];
        return NULL;
}

static int help_main(void) {
        (void) printf(
                "image-accessctl [OPTIONS...] COMMAND ...\n\n"
                "Manage image-accessd: guests, what they may open, and opening images.\n\n"
                "Guests and grants (VM managers; root, or polkit's manager actions):\n"
                "  register NAME             Register a guest (--uuid, --description, --uid)\n"
                "  unregister NAME           Remove a guest with its grants and bindings\n"
                "  bind NAME PID             Bind a running process to a guest\n"
                "  grant NAME PATH MODE      Allow a guest to open PATH in MODE\n"
                "  revoke NAME PATH          Withdraw a grant (--remove-created)\n"
                "  list [NAME]               List the guests, or one guest's grants (default)\n\n"
                "Emulators:\n"
                "  open IMAGE -- COMMAND...  Open IMAGE through the service and run COMMAND\n"
                "                            with it (--guest, --mode, --fd, ...)\n\n"
                "Administrators:\n"
                "  explain IMAGE             Why an emulator's open would be allowed or denied\n"
                "                            (--guest, --mode, --uid)\n\n"
                "Options:\n"
                "  -h --help                 Show this help; 'COMMAND --help' for a command\n"
                "     --version              Show the version\n"
                "     --address=ADDRESS      Use this D-Bus address instead of the system bus\n"
                "     --json                 Print list and explain as JSON\n"
                "     --no-ask-password      Never let polkit ask for a password\n"
                "     --ask-password         Let polkit ask even when stdin is no terminal\n"
                "                            (default: only when it is one)\n\n"
                "Exit status:\n"
                "  0  success; explain: the open would be allowed\n"
                "  1  failure; explain: a layer could not tell\n"
                "  2  usage error, or an argument the service calls invalid\n"
                "  3  denied: not authorized, not bound, not granted\n"
                "  4  not found: no such guest, image file, process or user\n"
                "  5  already exists: the guest, or the file to create\n"
                "  open: COMMAND's status once it runs; 126 it cannot run, 127 not found\n\n"
                "See image-accessctl(1).\n");
        return IA_EXIT_OK;
}

static int help_verb(const Verb *v) {
        (void) printf("image-accessctl %s\n\n%s", v->synopsis, v->help);
        (void) printf("\nGlobal options: --address=ADDRESS, --json, --[no-]ask-password.\n"
                      "See 'image-accessctl --help' for the exit status.\n");
        return IA_EXIT_OK;
}

static const char *option_name(int c) {
        for (const struct option *o = options; o->name; o++)
                if (o->val == c)
                        return o->name;
        return "?";
}

/* Options may come before or after the verb and between arguments (as in systemctl); "--"
 * ends them, and for open everything after it is the command. */
static int parse_argv(int argc, char *argv[], Args *a, const Verb **ret_verb, bool *ret_help) {
        g_autoptr(GPtrArray) positional = g_ptr_array_new();
        bool help = false, version = false, dashdash = false;
        int c, prev = 1;
        const Verb *v;

        opterr = 0;
        /* '-': non-options come back as 1, in order, with no permutation; so what stopped the
         * scan is known exactly (a "--" that is an option's value is not the separator). */
        while ((c = getopt_long(argc, argv, "-:h", options, NULL)) != -1) {
                switch (c) {
                case 1:
                        g_ptr_array_add(positional, optarg);
                        break;
                case 'h':
                        help = true;
                        break;
                case ARG_VERSION:
                        version = true;
                        break;
                case ARG_ADDRESS:
                        if (optarg[0] == '\0')
                                return errorf(IA_EXIT_USAGE, "--address needs a D-Bus address");
                        a->address = optarg;
                        break;
                case ARG_JSON:
                        a->json = true;
                        break;
                case ARG_ASK_PASSWORD:
                        a->ask_password = 1;
                        break;
                case ARG_NO_ASK_PASSWORD:
                        a->ask_password = 0;
                        break;
                case ARG_NO_LEGEND:
                        a->legend = false;
                        break;
                case ARG_UUID:
                        a->uuid = optarg;
                        break;
                case ARG_DESCRIPTION:
                        a->description = optarg;
                        break;
                case ARG_UID:
                        a->uid = optarg;
                        break;
                case ARG_USER:
                        a->user = optarg;
                        break;
                case ARG_REMOVE_CREATED:
                        a->remove_created = true;
                        break;
                case ARG_SHARE_UID:
                        a->share_uid = true;
                        break;
                case ARG_DIRECTORY:
                        a->directory = true;
                        break;
                case ARG_GUEST:
                        a->guest = optarg;
                        break;
                case ARG_MODE:
                        a->mode = optarg;
                        break;
                case ARG_DIRECT:
                        a->direct = true;
                        break;
                case ARG_NONBLOCK:
                        a->nonblock = true;
                        break;
                case ARG_FD: {
                        unsigned long n;

                        if (!parse_number(optarg, INT_MAX, &n))
                                return errorf(IA_EXIT_USAGE, "Invalid fd number '%s'", optarg);
                        a->fd = (int) n;
                        break;
                }
                case ':':
                        return errorf(IA_EXIT_USAGE, "Option '%s' needs a value",
                                      argv[optind - 1]);
                case '?':
                default:
                        if (optopt != 0 && g_str_has_prefix(argv[optind - 1], "--"))
                                /* A known long option given a value: "--json=1" */
                                return errorf(IA_EXIT_USAGE, "Option '--%s' takes no value",
                                              option_name(optopt));
                        if (optopt != 0)
                                return errorf(IA_EXIT_USAGE, "Unknown option '-%c'", optopt);
                        return errorf(IA_EXIT_USAGE, "Unknown option '%s'", argv[optind - 1]);
                }
                if (c >= ARG_NO_LEGEND && c < _ARG_MAX)
                        a->seen |= OPT(c);
                prev = optind;
        }
        /* getopt stepped over one more argument than it handed out: the "--". */
        dashdash = optind > prev;

        if (version) {
                (void) printf("image-accessctl %s\n", PACKAGE_VERSION);
                *ret_help = true;
                return IA_EXIT_OK;
        }

        if (positional->len == 0) {
                if (help) {
                        *ret_help = true;
                        return help_main();
                }
                if (optind < argc)
                        return errorf(IA_EXIT_USAGE, "Missing command before '%s'", argv[optind]);
                v = find_verb("list");         /* as systemctl: no command lists */
        } else {
                v = find_verb(positional->pdata[0]);
                if (!v)
                        return errorf(IA_EXIT_USAGE, "Unknown command '%s'",
                                      (const char *) positional->pdata[0]);
                g_ptr_array_remove_index(positional, 0);
        }
        if (help) {
                *ret_help = true;
                return help_verb(v);
        }

        if (strcmp(v->name, "open") == 0) {
                if (!dashdash || optind >= argc)
                        return errorf(IA_EXIT_USAGE, "open needs '-- COMMAND [ARGUMENTS...]' "
                                      "after the image");
                a->command = argv + optind;
        } else
                for (int i = optind; i < argc; i++)
                        g_ptr_array_add(positional, argv[i]);

        for (int o = ARG_NO_LEGEND; o < _ARG_MAX; o++)
                if ((a->seen & OPT(o)) && !(v->options & OPT(o)))
                        return errorf(IA_EXIT_USAGE, "Option '--%s' does not apply to '%s'",
                                      option_name(o), v->name);

        if (positional->len < v->min_args || positional->len > v->max_args)
                return errorf(IA_EXIT_USAGE, "'%s' takes %s%zu argument%s, got %u", v->name,
                              v->min_args == v->max_args ? "" : "at most ", v->max_args,
                              v->max_args == 1 ? "" : "s", positional->len);

        g_ptr_array_add(positional, NULL);
        a->n_args = positional->len - 1;
        a->args = (char **) g_ptr_array_free(g_steal_pointer(&positional), false);
        *ret_verb = v;
        *ret_help = false;
        return IA_EXIT_OK;
}

int main(int argc, char *argv[]) {
        Args a = {
                .ask_password = -1,
                .legend = true,
                .fd = 3,
        };
        const Verb *v = NULL;
        bool done = false;
        int r;

        r = parse_argv(argc, argv, &a, &v, &done);
        if (r != IA_EXIT_OK || done)
                return r;

        r = v->run(&a);
        polkit_agent_close();
        g_free(a.args);
        return r;
}

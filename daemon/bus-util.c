/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bus-util.c — the steps every method handler shares (bus-util.h): reading options,
 * validating arguments, identifying and authorizing the caller, signals, error replies.
 */
#include <errno.h>
#include <string.h>
#include <glib.h>

#include "audit.h"
#include "authz.h"
#include "bus-util.h"
#include "escape.h"
#include "ia-common.h"
#include "identity.h"
#include "image.h"
#include "log.h"
#include "macro.h"
#include "peer.h"

/* ---- options ------------------------------------------------------------------------------ */

int parse_options(sd_bus_message *msg, const OptionSpec *specs, size_t n_specs,
                  sd_bus_error *error) {
        uint64_t seen = 0;
        int r;

        r = sd_bus_message_enter_container(msg, 'a', "{sv}");
        if (r < 0)
                return r;
        /* Most calls pass none: asking for an entry of an empty array costs more than the
         * rest of this function (and this runs for every open). */
        if (sd_bus_message_at_end(msg, /* complete= */ false) > 0)
                return sd_bus_message_exit_container(msg);

        for (;;) {
                const char *key, *contents;
                const OptionSpec *spec = NULL;
                size_t i;
                char type;

                r = sd_bus_message_enter_container(msg, 'e', "sv");
                if (r < 0)
                        return r;
                if (r == 0)
                        break;
                r = sd_bus_message_read(msg, "s", &key);
                if (r < 0)
                        return r;

                for (i = 0; i < n_specs; i++)
                        if (g_str_equal(specs[i].key, key)) {
                                spec = &specs[i];
                                break;
                        }
                if (!spec) {
                        g_autoptr(GString) known = g_string_new(NULL);
                        g_autofree char *shown = escape_string(key, 64);

                        for (size_t k = 0; k < n_specs; k++)
                                g_string_append_printf(known, "%s'%s'", k ? ", " : "", specs[k].key);
                        return sd_bus_error_setf(error, IA_ERROR_INVALID_OPTION,
                                                 "Unknown option '%s'%s%s%s", shown,
                                                 n_specs ? " (known: " : "; this method takes none",
                                                 known->str, n_specs ? ")" : "");
                }
                if (seen & (UINT64_C(1) << i))
                        return sd_bus_error_setf(error, IA_ERROR_INVALID_OPTION,
                                                 "Option '%s' given twice", key);
                seen |= UINT64_C(1) << i;

                r = sd_bus_message_peek_type(msg, &type, &contents);
                if (r < 0)
                        return r;
                if (strlen(contents) != 1 || contents[0] != spec->type)
                        return sd_bus_error_setf(error, IA_ERROR_INVALID_OPTION,
                                                 "Option '%s' must be of type '%c', not '%.16s'",
                                                 key, spec->type, contents);
                r = sd_bus_message_enter_container(msg, 'v', contents);
                if (r < 0)
                        return r;
                if (spec->type == 'b') {
                        int b;

                        r = sd_bus_message_read_basic(msg, 'b', &b);
                        if (r >= 0)
                                *(bool *) spec->value = b;
                } else
                        r = sd_bus_message_read_basic(msg, spec->type, spec->value);
                if (r < 0)
                        return r;
                if (spec->present)
                        *spec->present = true;
                r = sd_bus_message_exit_container(msg);         /* v */
                if (r < 0)
                        return r;
                r = sd_bus_message_exit_container(msg);         /* e */
                if (r < 0)
                        return r;
        }

        return sd_bus_message_exit_container(msg);
}

int parse_no_options(sd_bus_message *msg, sd_bus_error *error) {
        return parse_options(msg, NULL, 0, error);
}

/* ---- validation --------------------------------------------------------------------------- */

/* The refused values are named in their errors, escaped (escape.h) and cut at a character
 * boundary: a refused value is by definition one that may hold anything. */
int validate_guest_name(const char *name, sd_bus_error *error) {
        g_autofree char *shown = NULL;

        if (guest_name_is_valid(name))
                return 0;
        shown = escape_string(name, 64);
        return sd_bus_error_setf(error, IA_ERROR_INVALID_NAME,
                                 "Invalid guest name '%s': use 1 to %d characters of A-Z a-z 0-9 _ . : + -, not starting with '.' or '-'",
                                 shown, GUEST_NAME_MAX);
}

int validate_path(const char *path, sd_bus_error *error) {
        g_autofree char *shown = NULL;
        const char *reason = NULL;
        int r;

        r = path_is_valid(path, &reason);
        if (r >= 0)
                return 0;
        shown = escape_string(path, 200);
        return sd_bus_error_setf(error, IA_ERROR_INVALID_PATH, "Invalid image path '%s': %s", shown,
                                 reason ?: (r == -ENAMETOOLONG ? "too long" : "not absolute and normalized"));
}

int validate_mode(const char *s, IaMode *ret, sd_bus_error *error) {
        IaMode mode = ia_mode_from_string(s);
        g_autofree char *shown = NULL;

        if (mode < 0) {
                shown = escape_string(s, 32);
                return sd_bus_error_setf(error, IA_ERROR_INVALID_MODE,
                                         "Invalid mode '%s': use 'read-only', 'read-write' or 'create'", shown);
        }
        *ret = mode;
        return 0;
}

/* Return: 0 *@ret is the caller; REQUEST_PARKED the request waits for the caller's
 * credentials and is dispatched again when they come; negative errno with @error set. */
int identify(Manager *m, sd_bus_message *msg, Caller *ret, sd_bus_error *error) {
        int r = caller_from_message(m, msg, ret);

        if (r >= 0)
                return r;
        if (r == -ENOBUFS)
                return sd_bus_error_setf(error, IA_ERROR_LIMIT_EXCEEDED,
                                         "Too many requests of %s are waiting (at most %u per caller, %u in all)",
                                         sd_bus_message_get_sender(msg),
                                         m->config.max_pending_per_sender,
                                         m->config.max_pending_total);
        return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                                 "Could not establish the credentials of the caller; denied");
}

/*
 * The identify and authorize steps of a handler, audited when they deny.
 * Return: 0 go on; REQUEST_PARKED the request waits for the caller's credentials or for
 *         polkit; negative errno with @error set: denied.
 */
int authorize(Manager *m, sd_bus_message *msg, const char *event, const char *action,
              const char *const *details, const char *guest, const char *image,
              const char *mode, Caller *ret_caller, sd_bus_error *error) {
        int r;

        r = identify(m, msg, ret_caller, error);
        if (r < 0)
                return deny(event, NULL, guest, image, mode, r, error);
        if (r != 0)
                return r;
        r = authz_check(m, msg, ret_caller, action, details, error);
        if (r < 0)
                return deny(event, ret_caller, guest, image, mode, r, error);
        return r;
}

/* Announces a change to guests or grants.  Cached polkit decisions are voided by the callers
 * that take access away (unregister, revoke, bind); polkit's answers do not depend on grants,
 * and the grant table is checked before the cache on every open, so a new grant keeps them. */
void emit(Manager *m, const char *member, const char *guest) {
        GHashTableIter it;
        gpointer v;
        int r;

        /* The broadcast: the bus policy delivers it to root only. */
        r = sd_bus_emit_signal(m->bus, IA_OBJECT_PATH, IA_MANAGER_INTERFACE, member, "s", guest);
        if (r < 0)
                log_warning_errno(r, "Failed to emit %s for guest '%s', ignoring: %m", member, guest);

        /* A unicast copy to each subscriber that polkit allowed to list guests; nobody else
         * learns the name.  Root has the broadcast already. */
        g_hash_table_iter_init(&it, m->peers);
        while (g_hash_table_iter_next(&it, NULL, &v)) {
                Peer *p = v;
                g_autoptr(sd_bus_message) s = NULL;

                if (!p->subscribed || p->gone || (p->have_creds && p->euid == 0))
                        continue;
                r = sd_bus_message_new_signal(m->bus, &s, IA_OBJECT_PATH, IA_NOTIFY_INTERFACE,
                                              member);
                if (r >= 0)
                        r = sd_bus_message_set_destination(s, p->name);
                if (r >= 0)
                        r = sd_bus_message_append(s, "s", guest);
                if (r >= 0)
                        r = sd_bus_send(m->bus, s, NULL);
                if (r < 0)
                        log_warning_errno(r, "Failed to send %s to subscriber %s, ignoring: %m",
                                          member, p->name);
        }
}

void reply_error(sd_bus_message *request, const sd_bus_error *error) {
        int r = sd_bus_reply_method_error(request, error);

        if (r < 0)
                log_debug_errno(r, "Failed to send an error reply, ignoring: %m");
}

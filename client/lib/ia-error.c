/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ia-error.c — the errno ↔ D-Bus error map of image-access, and IaError.
 *
 * The map follows the comments of ia-common.h exactly: several names share an errno on
 * purpose (every Invalid* is EINVAL to a POSIX caller); the name tells a person which
 * argument was wrong, which is why IaError keeps the name and the service's message too.
 */

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ia-error.h"
#include "ia-macro.h"

const sd_bus_error_map ia_error_map[] = {
        SD_BUS_ERROR_MAP(IA_ERROR_UNKNOWN_GUEST,    ESRCH),
        SD_BUS_ERROR_MAP(IA_ERROR_GUEST_EXISTS,     EEXIST),
        SD_BUS_ERROR_MAP(IA_ERROR_UID_IN_USE,       EADDRINUSE),
        SD_BUS_ERROR_MAP(IA_ERROR_DIRECTORY_IN_USE, EBUSY),
        SD_BUS_ERROR_MAP(IA_ERROR_NOT_GRANTED,      EPERM),
        SD_BUS_ERROR_MAP(IA_ERROR_NOT_BOUND,        ENOLINK),
        SD_BUS_ERROR_MAP(IA_ERROR_INVALID_NAME,     EINVAL),
        SD_BUS_ERROR_MAP(IA_ERROR_INVALID_PATH,     EINVAL),
        SD_BUS_ERROR_MAP(IA_ERROR_INVALID_MODE,     EINVAL),
        SD_BUS_ERROR_MAP(IA_ERROR_INVALID_OPTION,   EINVAL),
        SD_BUS_ERROR_MAP(IA_ERROR_INVALID_PROCESS,  ESRCH),
        SD_BUS_ERROR_MAP(IA_ERROR_FILE_EXISTS,      EEXIST),
        SD_BUS_ERROR_MAP(IA_ERROR_NOT_FOUND,        ENOENT),
        SD_BUS_ERROR_MAP(IA_ERROR_WRONG_FILE_TYPE,  EMEDIUMTYPE),
        SD_BUS_ERROR_MAP(IA_ERROR_SYMLINK,          ELOOP),
        SD_BUS_ERROR_MAP(IA_ERROR_NOT_CREATED,      EPERM),
        SD_BUS_ERROR_MAP(IA_ERROR_LIMIT_EXCEEDED,   ENOBUFS),
        SD_BUS_ERROR_MAP(IA_ERROR_NO_SPACE,         ENOSPC),
        SD_BUS_ERROR_MAP(IA_ERROR_AUTH_UNAVAILABLE, EHOSTDOWN),
        SD_BUS_ERROR_MAP(IA_ERROR_AUTH_FAILED, EACCES),
        SD_BUS_ERROR_MAP(IA_ERROR_IO,               EIO),
        SD_BUS_ERROR_MAP(IA_ERROR_DEVICE_BUSY,      EBUSY),
        SD_BUS_ERROR_MAP_END
};

int ia_error_map_register(void) {
        /* sd-bus keeps a process-wide list of extra maps; adding the same map again is a
         * no-op (returns 0), so every IaClient may call this. */
        return sd_bus_error_add_map(ia_error_map);
}

void ia_error_done(IaError *error) {
        if (!error)
                return;
        free(error->name);
        free(error->message);
        *error = (IaError) {};
}

bool ia_error_has_name(const IaError *error, const char *name) {
        return error && error->name && name && strcmp(error->name, name) == 0;
}

int ia_error_name_to_errno(const char *name) {
        if (!name)
                return -EINVAL;
        (void) ia_error_map_register();
        sd_bus_error e = SD_BUS_ERROR_MAKE_CONST(name, NULL);
        int r = sd_bus_error_get_errno(&e);
        return r > 0 ? -r : -EIO;
}

static int error_fill(IaError *error, const char *name, const char *message, int r) {
        char *n = NULL, *m = NULL;

        n = strdup(name ?: "System.Error.EIO");
        m = strdup(message ?: name ?: "Unknown error");
        ia_error_done(error);
        /* Under memory pressure keep what fits: the errno is the part that must survive. */
        error->name = n;
        error->message = m;
        error->error = r;
        return r;
}

int ia_error_set_bus(IaError *error, const sd_bus_error *bus_error, int r) {
        if (r >= 0) {
                int e = sd_bus_error_get_errno(bus_error);
                r = e > 0 ? -e : -EIO;
        }
        if (!error)
                return r;
        if (!sd_bus_error_is_set(bus_error))
                return ia_error_set_errnof(error, r, "%s", strerror(-r));
        return error_fill(error, bus_error->name, bus_error->message, r);
}

int ia_error_set_errnof(IaError *error, int r, const char *format, ...) {
        ia_autofree char *text = NULL, *name = NULL;
        const char *symbol;
        va_list ap;

        if (!error)
                return r;
        va_start(ap, format);
        if (vasprintf(&text, format, ap) < 0)
                text = NULL;
        va_end(ap);
        /* Errors made here are named as sd-bus names a bare errno it cannot map
         * ("System.Error.ENOENT"): never a name the service or the bus could have sent, so a
         * caller can tell "the library refused" from "the service refused". */
        symbol = strerrorname_np(-r);
        if (asprintf(&name, "System.Error.%s", symbol ?: "EIO") < 0)
                name = NULL;
        return error_fill(error, name, text ?: strerror(-r), r);
}

int ia_error_copy(IaError *dst, const IaError *src) {
        char *n = NULL, *m = NULL;

        if (src->name && !(n = strdup(src->name)))
                return -ENOMEM;
        if (src->message && !(m = strdup(src->message))) {
                free(n);
                return -ENOMEM;
        }
        ia_error_done(dst);
        dst->name = n;
        dst->message = m;
        dst->error = src->error;
        return 0;
}

bool ia_error_outcome_unknown(const IaError *error) {
        static const char *const refusals[] = {
                SD_BUS_ERROR_ACCESS_DENIED,
                SD_BUS_ERROR_INTERACTIVE_AUTHORIZATION_REQUIRED,
                SD_BUS_ERROR_SERVICE_UNKNOWN,
                SD_BUS_ERROR_NAME_HAS_NO_OWNER,
                SD_BUS_ERROR_UNKNOWN_METHOD,
                SD_BUS_ERROR_UNKNOWN_OBJECT,
                SD_BUS_ERROR_UNKNOWN_INTERFACE,
                SD_BUS_ERROR_INVALID_ARGS,
                SD_BUS_ERROR_LIMITS_EXCEEDED,
        };

        if (!error || !error->name)
                return true;
        /* Every error of the service is a refusal: it removes what it created before replying
         * with one (daemon: open_done()). */
        if (strncmp(error->name, IA_ERROR_PREFIX, strlen(IA_ERROR_PREFIX)) == 0)
                return false;
        for (size_t i = 0; i < IA_ELEMENTSOF(refusals); i++)
                if (strcmp(error->name, refusals[i]) == 0)
                        return false;
        /* NoReply (timeout, or the service died mid-call), Disconnected, and anything else:
         * the service may have acted. */
        return true;
}

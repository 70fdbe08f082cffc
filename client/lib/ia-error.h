/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ia-error.h — the D-Bus error name ↔ errno map of image-access, and IaError helpers
 * (private, not installed).  The map is plain data so that the daemon may compile ia-error.c
 * in as well; the helpers are for libimageaccess.
 */
#pragma once

#include <systemd/sd-bus.h>

#include "ia-client.h"

/* Every IA_ERROR_* name of ia-common.h with the errno documented there. */
extern const sd_bus_error_map ia_error_map[];

/* Registers ia_error_map with sd-bus (process-wide, idempotent). */
int ia_error_map_register(void);

/* Fills @error (optional) from a D-Bus error and returns @r (a negative errno; if @r is 0 the
 * errno sd-bus maps the name to).  Frees what @error held. */
int ia_error_set_bus(IaError *error, const sd_bus_error *bus_error, int r);

/* Fills @error (optional) with a library-made error named as sd-bus names errnos
 * ("System.Error.EINVAL") and a formatted message; returns @r (negative). */
int ia_error_set_errnof(IaError *error, int r, const char *format, ...)
        __attribute__((format(printf, 3, 4)));

/* Deep copy of @src into @dst (both non-NULL); returns 0 or -ENOMEM. */
int ia_error_copy(IaError *dst, const IaError *src);

/* Whether an error reply means the call's outcome at the service is unknown: the service
 * may or may not have acted (no reply, lost connection), as opposed to a refusal. */
bool ia_error_outcome_unknown(const IaError *error);

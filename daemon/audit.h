/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * audit.h — the audit trail: one record per decision (grant, revoke, open, channel, ...),
 * written by log_audit() with the caller as the bus daemon saw it.  Used by the front-ends
 * and by the open pipeline, which decides the outcome of an open after the worker is done.
 */
#pragma once

#include <stdbool.h>
#include <systemd/sd-bus.h>

#include "manager.h"

/* Records that @event by @c (NULL: not identified) on @guest/@image/@mode was allowed or
 * denied, for @reason (NULL: none). */
void audit(const char *event, const Caller *c, const char *guest, const char *image,
           const char *mode, bool allowed, const char *reason);

/* Records a denial with @error's text as the reason (else strerror(-@r)).  Return: @r, so
 * that a handler can `return deny(...)`. */
int deny(const char *event, const Caller *c, const char *guest, const char *image,
         const char *mode, int r, const sd_bus_error *error);

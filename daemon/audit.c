/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * audit.c — one audit record per decision, from the caller's view (audit.h).
 */
#include <string.h>

#include "audit.h"
#include "log.h"

void audit(const char *event, const Caller *c, const char *guest, const char *image,
           const char *mode, bool allowed, const char *reason) {
        log_audit(&(AuditRecord) {
                .event = event,
                .guest = guest,
                .image = image,
                .mode = mode,
                .sender = c ? c->sender : NULL,
                .via = c && c->via_channel ? "channel" : NULL,
                .uid = c ? c->euid : (uid_t) -1,
                .pid = c ? c->pid : 0,
                .allowed = allowed,
                .reason = reason,
        });
}

int deny(const char *event, const Caller *c, const char *guest, const char *image,
         const char *mode, int r, const sd_bus_error *error) {
        audit(event, c, guest, image, mode, false, error && error->message ? error->message : strerror(-r));
        return r;
}

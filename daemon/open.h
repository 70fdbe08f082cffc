/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * open.h — the OpenImage pipeline shared by its front-ends (bus-image-access.c for the bus,
 * channel.c for channels): open_check() → the front-end's polkit step → open_submit(); the
 * worker's completion checks the grant again, pins or records the file, audits once and
 * answers.
 */
#pragma once

#include <stdint.h>
#include <systemd/sd-bus.h>

#include "channel.h"
#include "image.h"
#include "manager.h"

/* An open that came on a channel: where its answer goes (Job.context). */
typedef struct ChannelRequest {
        Channel *channel;       /* a reference */
        uint32_t serial;
} ChannelRequest;

void channel_request_free(void *p);

int require_bound(Manager *m, const Caller *c, const char *event, const char *guest,
                  const char *path, const char *mode, Guest **ret_guest, sd_bus_error *error);
int open_check(Manager *m, const Caller *c, const char *guest, const char *path,
               IaMode mode, Guest **ret_guest, sd_bus_error *error);
int open_submit(Manager *m, const Caller *c, const char *guest, const char *path,
                IaMode mode, const ImageOpenFlags *flags, sd_bus_message *msg,
                ChannelRequest *cr, sd_bus_error *error);

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bus-util.h — the steps the method handlers of both interfaces share: options, argument
 * validation, identify and authorize (audited when they deny), signals, error replies.
 * Their comments in bus-util.c say what each returns.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <systemd/sd-bus.h>

#include "manager.h"

/* One key of an a{sv} options argument that a method knows. */
typedef struct OptionSpec {
        const char *key;
        char type;              /* 'b', 's' or 'u' */
        void *value;            /* bool*, const char** (borrowed from the message), uint32_t* */
        bool *present;          /* optional */
} OptionSpec;

int parse_options(sd_bus_message *msg, const OptionSpec *specs, size_t n_specs,
                  sd_bus_error *error);
int parse_no_options(sd_bus_message *msg, sd_bus_error *error);

int validate_guest_name(const char *name, sd_bus_error *error);
int validate_path(const char *path, sd_bus_error *error);
int validate_mode(const char *s, IaMode *ret, sd_bus_error *error);

int identify(Manager *m, sd_bus_message *msg, Caller *ret, sd_bus_error *error);
int authorize(Manager *m, sd_bus_message *msg, const char *event, const char *action,
              const char *const *details, const char *guest, const char *image,
              const char *mode, Caller *ret_caller, sd_bus_error *error);

void emit(Manager *m, const char *member, const char *guest);

/* Sends @error as the reply to @request; a failure to send is only logged. */
void reply_error(sd_bus_message *request, const sd_bus_error *error);

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * config.h — the daemon's configuration: compiled-in defaults, then the optional GKeyFile
 * (/etc/image-access/image-access.conf), then the command line.  No bus.
 */
#pragma once

#include <stdint.h>
#include "registry.h"

typedef struct Config {
        char *state_dir;                /* owned */
        RegistryLimits limits;
        unsigned max_polkit_in_flight;  /* CheckAuthorization calls outstanding at once */
        unsigned max_pending_per_sender;/* requests parked (polkit or open) per caller */
        unsigned max_pending_total;
        unsigned max_open_threads;      /* threads that open files, each may hang on its own */
        unsigned max_channels;          /* OpenImage channels open at once; 0: none */
        uint64_t polkit_timeout_usec;   /* a check no person answers */
        uint64_t polkit_interactive_timeout_usec; /* a check waiting for a person's password */
        uint64_t decision_cache_usec;   /* how long a polkit "yes" may be reused; 0: never */
} Config;

/* Fills in the defaults. */
void config_init(Config *c);
void config_done(Config *c);

/**
 * config_load_file: applies the keys of @path on top of @c.
 * @missing_ok: a missing file is not an error (the default path).
 * @ret_error: optional, owned by the caller (g_free): what was wrong, with the key.
 * Return: 0; -ENOENT (when !@missing_ok); -EINVAL unknown group or key, a value out of range
 *         or not a number.  On error @c is unchanged.
 */
int config_load_file(Config *c, const char *path, bool missing_ok, char **ret_error);

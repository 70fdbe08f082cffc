/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * config.c — GKeyFile → Config.  Unknown keys are errors, not ignored: a typo in a limit
 * must not silently leave the default in place.
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <glib.h>

#include "config.h"
#include "build-config.h"

void config_init(Config *c) {
        *c = (Config) {
                .state_dir = g_strdup(DEFAULT_STATE_DIR),
                .limits = REGISTRY_LIMITS_DEFAULT,
                .max_polkit_in_flight = 64,
                .max_pending_per_sender = 256,
                .max_pending_total = 4096,
                .max_open_threads = 32,
                .max_channels = 256,
                .polkit_timeout_usec = 25 * G_USEC_PER_SEC,
                /* A person reads the prompt, finds the password, may mistype it once. */
                .polkit_interactive_timeout_usec = 300 * G_USEC_PER_SEC,
                .decision_cache_usec = 5 * G_USEC_PER_SEC,
        };
}

void config_done(Config *c) {
        g_clear_pointer(&c->state_dir, g_free);
}

typedef struct UintKey {
        const char *group, *key;
        size_t offset;
        unsigned min, max;
} UintKey;

static const UintKey uint_keys[] = {
        { "Limits", "MaxGuests", offsetof(Config, limits.max_guests), 1, 1000000 },
        { "Limits", "MaxGrantsPerGuest", offsetof(Config, limits.max_grants_per_guest), 1, 1000000 },
        { "Limits", "MaxBindingsPerGuest", offsetof(Config, limits.max_bindings_per_guest), 1, 4096 },
        { "Limits", "MaxPolkitInFlight", offsetof(Config, max_polkit_in_flight), 1, 120 },
        { "Limits", "MaxPendingPerSender", offsetof(Config, max_pending_per_sender), 1, 65536 },
        { "Limits", "MaxPendingTotal", offsetof(Config, max_pending_total), 1, 1000000 },
        { "Limits", "MaxOpenThreads", offsetof(Config, max_open_threads), 1, 1024 },
        { "Limits", "MaxChannels", offsetof(Config, max_channels), 0, 65536 },
};

static int parse_uint(const char *s, unsigned min, unsigned max, unsigned *ret) {
        guint64 v;

        if (!g_ascii_string_to_unsigned(s, 10, min, max, &v, NULL))
                return -EINVAL;
        *ret = (unsigned) v;
        return 0;
}

/* Keys whose value is seconds, stored as µs. */
typedef struct SecondsKey {
        const char *group, *key;
        unsigned min, max;
        size_t offset;
} SecondsKey;

static const SecondsKey seconds_keys[] = {
        { "Polkit", "TimeoutSec", 1, 3600, offsetof(Config, polkit_timeout_usec) },
        { "Polkit", "InteractiveTimeoutSec", 1, 86400,
          offsetof(Config, polkit_interactive_timeout_usec) },
        { "Polkit", "DecisionCacheSec", 0, 3600, offsetof(Config, decision_cache_usec) },
};

int config_load_file(Config *c, const char *path, bool missing_ok, char **ret_error) {
        g_autoptr(GKeyFile) kf = g_key_file_new();
        g_autoptr(GError) error = NULL;
        Config n = *c;

        if (!g_key_file_load_from_file(kf, path, G_KEY_FILE_NONE, &error)) {
                if (g_error_matches(error, G_FILE_ERROR, G_FILE_ERROR_NOENT)) {
                        if (missing_ok)
                                return 0;
                        if (ret_error)
                                *ret_error = g_strdup_printf("'%s' does not exist", path);
                        return -ENOENT;
                }
                if (ret_error)
                        *ret_error = g_strdup_printf("'%s': %s", path, error->message);
                return -EINVAL;
        }

        g_auto(GStrv) groups = g_key_file_get_groups(kf, NULL);
        for (char **g = groups; *g; g++) {
                g_auto(GStrv) keys = g_key_file_get_keys(kf, *g, NULL, NULL);

                for (char **k = keys; k && *k; k++) {
                        g_autofree char *value = g_key_file_get_string(kf, *g, *k, NULL);
                        bool known = false;

                        for (size_t i = 0; i < G_N_ELEMENTS(uint_keys); i++) {
                                const UintKey *u = &uint_keys[i];

                                if (!g_str_equal(u->group, *g) || !g_str_equal(u->key, *k))
                                        continue;
                                known = true;
                                if (!value || parse_uint(value, u->min, u->max,
                                                         (unsigned *) ((char *) &n + u->offset)) < 0) {
                                        if (ret_error)
                                                *ret_error = g_strdup_printf(
                                                        "'%s': [%s] %s='%s' is not a number from %u to %u",
                                                        path, *g, *k, value ?: "", u->min, u->max);
                                        return -EINVAL;
                                }
                        }

                        for (size_t i = 0; i < G_N_ELEMENTS(seconds_keys); i++) {
                                const SecondsKey *u = seconds_keys + i;
                                unsigned sec;

                                if (!g_str_equal(u->group, *g) || !g_str_equal(u->key, *k))
                                        continue;
                                known = true;
                                if (!value || parse_uint(value, u->min, u->max, &sec) < 0) {
                                        if (ret_error)
                                                *ret_error = g_strdup_printf(
                                                        "'%s': [%s] %s='%s' is not a number from %u to %u",
                                                        path, *g, *k, value ?: "", u->min, u->max);
                                        return -EINVAL;
                                }
                                *(uint64_t *) ((char *) &n + u->offset) =
                                        (uint64_t) sec * G_USEC_PER_SEC;
                        }

                        if (g_str_equal(*g, "Daemon") && g_str_equal(*k, "StateDirectory")) {
                                known = true;
                                if (!value || !g_path_is_absolute(value)) {
                                        if (ret_error)
                                                *ret_error = g_strdup_printf(
                                                        "'%s': [Daemon] StateDirectory='%s' is not an absolute path",
                                                        path, value ?: "");
                                        return -EINVAL;
                                }
                        }

                        if (!known) {
                                if (ret_error)
                                        *ret_error = g_strdup_printf("'%s': unknown key [%s] %s",
                                                                     path, *g, *k);
                                return -EINVAL;
                        }
                }
        }

        g_autofree char *state_dir = g_key_file_get_string(kf, "Daemon", "StateDirectory", NULL);
        if (state_dir) {
                g_free(c->state_dir);
                n.state_dir = g_steal_pointer(&state_dir);
        }
        *c = n;
        return 0;
}

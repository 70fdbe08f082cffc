/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * mode.c — the modes of an open, their bus spelling and their order (mode.h).
 */
#include <string.h>

#include "ia-channel.h"
#include "mode.h"

/* A channel request carries the mode as this number: no table between the two. */
_Static_assert((int) IA_MODE_READ_ONLY == (int) IA_CHANNEL_MODE_READ_ONLY &&
               (int) IA_MODE_READ_WRITE == (int) IA_CHANNEL_MODE_READ_WRITE &&
               (int) IA_MODE_CREATE == (int) IA_CHANNEL_MODE_CREATE,
               "the channel's modes are IaMode's");

static const char *const mode_table[_IA_MODE_MAX] = {
        [IA_MODE_READ_ONLY] = "read-only",
        [IA_MODE_READ_WRITE] = "read-write",
        [IA_MODE_CREATE] = "create",
};

/**
 * ia_mode_from_string: parses a mode as spelled on the bus.
 * @s: "read-only", "read-write" or "create"; may be NULL.
 *
 * Return: the mode; _IA_MODE_INVALID (-EINVAL) for anything else, NULL included.
 */
IaMode ia_mode_from_string(const char *s) {
        if (!s)
                return _IA_MODE_INVALID;

        for (IaMode m = 0; m < _IA_MODE_MAX; m++)
                if (strcmp(s, mode_table[m]) == 0)
                        return m;

        return _IA_MODE_INVALID;
}

/**
 * ia_mode_to_string: the bus spelling of @mode.
 * @mode: any value.
 *
 * Return: a static string for a valid mode, NULL otherwise.
 */
const char *ia_mode_to_string(IaMode mode) {
        if (mode < 0 || mode >= _IA_MODE_MAX)
                return NULL;

        return mode_table[mode];
}

/**
 * ia_mode_covers: does a grant of @granted allow an open in @wanted?  create ⊇ read-write ⊇
 * read-only.
 * @granted: the mode of the grant.
 * @wanted: the mode asked for.
 *
 * Return: true if so; false also when either is not a valid mode.
 */
bool ia_mode_covers(IaMode granted, IaMode wanted) {
        /* An invalid value on either side covers nothing: fail closed. */
        if (granted < 0 || granted >= _IA_MODE_MAX || wanted < 0 || wanted >= _IA_MODE_MAX)
                return false;

        /* The enum is ordered weakest first, so "covers" is plain comparison. */
        return granted >= wanted;
}

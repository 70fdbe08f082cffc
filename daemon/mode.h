/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * mode.h — how an image may be opened, the one mode enum of the daemon: grants, opens,
 * polkit's "mode" detail and the channel's wire value (client/common/ia-channel.h, whose
 * IA_CHANNEL_MODE_* equal these) all use IaMode.
 */
#pragma once

#include <errno.h>
#include <stdbool.h>

typedef enum IaMode {
        IA_MODE_READ_ONLY,
        IA_MODE_READ_WRITE,
        IA_MODE_CREATE,
        _IA_MODE_MAX,
        _IA_MODE_INVALID = -EINVAL,
} IaMode;

/* "read-only" → IA_MODE_READ_ONLY, …; anything else (also NULL) → -EINVAL. */
IaMode ia_mode_from_string(const char *s);
/* Static string for a valid mode, NULL otherwise. */
const char *ia_mode_to_string(IaMode mode);
/* True when a grant of @granted allows an open in @wanted (create ⊇ read-write ⊇ read-only). */
bool ia_mode_covers(IaMode granted, IaMode wanted);

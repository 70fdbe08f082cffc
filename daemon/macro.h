/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * macro.h — the daemon's cleanup vocabulary: GLib's g_auto* family, plus ia_autofd,
 * IA_TAKE_FD() and the other helpers of client/common/ia-macro.h, which the library, the CLI
 * and the preload shim share.  No definitions of its own, so that each concept has one.
 */
#pragma once

#include <glib.h>

#include "ia-macro.h"

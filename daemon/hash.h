/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * hash.h — the string hash of the daemon's tables of names and paths (hash.c says why not
 * g_str_hash()).  No bus, no I/O.
 */
#pragma once

#include <glib.h>

/* A GHashFunc for NUL-terminated strings, with a random seed drawn once per process: use
 * with g_str_equal(). */
guint str_hash_seeded(gconstpointer v);

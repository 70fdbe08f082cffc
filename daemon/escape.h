/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * escape.h — the one place that decides which text a caller may put in front of a reader of
 * our logs, audit records, journal fields and error messages, and how anything else is shown.
 *
 * A string is "safe" when it is valid UTF-8 and holds none of the code points for which
 * escape_unichar_is_unsafe() is true: C0 controls and DEL, C1 controls (U+0080–U+009F, U+0085
 * NEL among them), the Unicode line and paragraph separators U+2028/U+2029, and the bidi
 * controls (U+061C, U+200E, U+200F, U+202A–U+202E, U+2066–U+2069).  Each of these can end a
 * record for some reader (a terminal, a tool that splits on Unicode line breaks) or make the
 * text a person sees differ from the bytes (a right-to-left override).  Paths and names with
 * such code points are refused at validation (path_is_valid(), guest_description_is_valid());
 * escaping is for the strings that reach a log before or without validation, such as the
 * refused value itself.  Pure: no I/O, no logging.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <glib.h>

/* True for the code points listed above. */
bool escape_unichar_is_unsafe(gunichar c);

/* True when the first @len bytes of @s (all of it up to the NUL for @len < 0) are valid
 * UTF-8 without an unsafe code point or a NUL.  A NULL @s is not safe. */
bool escape_is_safe(const char *s, gssize len);

/**
 * escape_append: appends @s to @out so that the result is safe whatever @s holds: '\' becomes
 * "\\", '\'' becomes "\'" (so a value can sit between single quotes and not end them early),
 * every C0 control, DEL and every byte that is not part of valid UTF-8 becomes "\xNN", and
 * every other unsafe code point "\uNNNN".  Everything else is copied unchanged, so a safe
 * value without '\' or '\'' reads the same.  The escaping is unambiguous: a reader can undo it.
 * @s: may be NULL (appends nothing).
 * @max_bytes: at most this many bytes of @s are shown, cut at a character boundary, with "…"
 *             after a cut; (size_t) -1 for all.
 */
void escape_append(GString *out, const char *s, size_t max_bytes);

/* escape_append() into a new string; owned by the caller (g_free()).  Never NULL. */
char *escape_string(const char *s, size_t max_bytes);

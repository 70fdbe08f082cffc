/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * path.h — what an image path may be.  The rule is applied where a path enters (the bus,
 * a channel, the registry, the state file), before anything opens it (image.h).
 */
#pragma once

#define IMAGE_PATH_MAX 4095     /* bytes, without the NUL: PATH_MAX - 1 */
#define IMAGE_NAME_MAX 255      /* bytes per component */

/**
 * path_is_valid: absolute, normalized, bounded.  Refuses: relative or empty paths, "/" alone,
 * "//", "/./", "/../", a trailing '/', a component "." or "..", a component longer than
 * IMAGE_NAME_MAX, a path longer than IMAGE_PATH_MAX, control characters (0x01–0x1f, 0x7f),
 * bytes that are not UTF-8, and the other code points escape_unichar_is_unsafe() (escape.h)
 * names: C1 controls, U+2028/U+2029, bidi controls.
 * Return: 0 valid; -EINVAL with *ret_reason (static string, optional) saying why;
 *         -ENAMETOOLONG for the length limits (*ret_reason is set as well).  A NULL @path is
 *         -EINVAL.  *ret_reason is left alone when the path is valid.
 */
int path_is_valid(const char *path, const char **ret_reason);

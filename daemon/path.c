/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * path.c — validating image paths (path.h).  No bus, no I/O.
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <glib.h>

#include "escape.h"
#include "path.h"

static int invalid_path(const char **ret_reason, int error, const char *reason) {
        if (ret_reason)
                *ret_reason = reason;
        return -error;
}

enum {
        BYTE_PLAIN,             /* printable ASCII but '/' */
        BYTE_END,               /* '/' or NUL: a component ends */
        BYTE_CONTROL,           /* C0 or DEL */
        BYTE_HIGH,              /* ≥ 0x80: part of a UTF-8 sequence, checked below */
};

static const unsigned char byte_class[256] = {
        [0x00] = BYTE_END,
        [0x01 ... 0x1f] = BYTE_CONTROL,
        ['/'] = BYTE_END,
        [0x7f] = BYTE_CONTROL,
        [0x80 ... 0xff] = BYTE_HIGH,
};

int path_is_valid(const char *path, const char **ret_reason) {
        bool ascii = true, control = false;
        size_t len;

        if (!path || path[0] == '\0')
                return invalid_path(ret_reason, EINVAL, "empty path");

        /* strnlen(): never walk further than one byte past the limit of an unbounded string. */
        len = strnlen(path, IMAGE_PATH_MAX + 1);
        if (len > IMAGE_PATH_MAX)
                return invalid_path(ret_reason, ENAMETOOLONG, "path too long");

        if (path[0] != '/')
                return invalid_path(ret_reason, EINVAL, "path is not absolute");
        if (len == 1)
                return invalid_path(ret_reason, EINVAL, "path is the root directory");

        /* One pass over the bytes (this runs for every open); each component is judged at
         * the '/' or NUL that ends it, in this order: empty, too long, "." or "..", a control
         * character in it.  Bytes of no interest are skipped through a table, one load and
         * one test each. */
        for (size_t i = 1, start = 1;; i++) {
                unsigned char ch;
                size_t n;

                while (byte_class[(unsigned char) path[i]] == BYTE_PLAIN)
                        i++;
                ch = (unsigned char) path[i];
                if (byte_class[ch] == BYTE_CONTROL) {
                        control = true;
                        continue;
                }
                if (byte_class[ch] == BYTE_HIGH) {
                        ascii = false;
                        continue;
                }
                n = i - start;
                if (n == 0)
                        return invalid_path(ret_reason, EINVAL,
                                            ch == '\0' ? "trailing '/'" : "empty component");
                if (n > IMAGE_NAME_MAX)
                        return invalid_path(ret_reason, ENAMETOOLONG, "component too long");
                if (path[start] == '.' && (n == 1 || (n == 2 && path[start + 1] == '.')))
                        return invalid_path(ret_reason, EINVAL, "'.' or '..' component");
                if (control)
                        return invalid_path(ret_reason, EINVAL, "control character");
                if (ch == '\0')
                        break;
                start = i + 1;
        }

        /* Beyond C0: a path is written into audit records and logs, and a C1 control, a
         * Unicode line separator or a bidi override in it would let whoever chose it forge or
         * disguise a record for some reader.  Such names are refused outright (escaping is the
         * last line of defence, not the first); so are bytes that are not UTF-8, which no
         * reader can show faithfully.  D-Bus refuses non-UTF-8 strings already, the channel
         * protocol does too, but this is the rule, not they. */
        if (ascii)
                return 0;       /* printable ASCII: nothing below can refuse it */
        if (!g_utf8_validate(path, (gssize) len, NULL))
                return invalid_path(ret_reason, EINVAL, "not valid UTF-8");
        if (!escape_is_safe(path, (gssize) len))
                return invalid_path(ret_reason, EINVAL,
                                    "control, line separator or bidi control character");

        return 0;
}

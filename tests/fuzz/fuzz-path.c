/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzz target: path_is_valid() on any bytes.  Checks its promises, not just that it survives. */
#include <assert.h>
#include <stdint.h>
#include <string.h>
#include <glib.h>

#include "escape.h"
#include "image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        g_autofree char *path = g_strndup((const char *) data, size);
        const char *reason = NULL;
        int r;

        r = path_is_valid(path, &reason);
        if (r < 0) {
                assert(r == -EINVAL || r == -ENAMETOOLONG);
                assert(reason);
                return 0;
        }

        /* What a valid path must be, whatever the implementation does. */
        assert(path[0] == '/');
        assert(strlen(path) <= IMAGE_PATH_MAX);
        assert(!strstr(path, "//"));
        assert(!strstr(path, "/./") && !strstr(path, "/../"));
        assert(!g_str_has_suffix(path, "/") && !g_str_has_suffix(path, "/.") &&
               !g_str_has_suffix(path, "/.."));
        for (const char *p = path; *p; p++)
                assert((unsigned char) *p >= 0x20 && *p != 0x7f);
        /* Nothing a log reader could take for a line break, a control or a bidi override. */
        assert(escape_is_safe(path, -1));
        return 0;
}

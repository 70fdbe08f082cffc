/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzz target: the configuration file parser.  On error nothing may have changed. */
#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>
#include <glib.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        g_autofree char *error = NULL;
        char path[64];
        Config c, before;
        int fd, r;

        fd = memfd_create("fuzz-config", MFD_CLOEXEC);
        assert(fd >= 0);
        assert(write(fd, data, size) == (ssize_t) size);
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);

        config_init(&c);
        before = c;
        r = config_load_file(&c, path, false, &error);
        if (r < 0) {
                assert(error);
                assert(c.max_polkit_in_flight == before.max_polkit_in_flight);
                assert(c.limits.max_guests == before.limits.max_guests);
                assert(c.state_dir == before.state_dir);
        } else {
                assert(c.max_polkit_in_flight >= 1 && c.max_polkit_in_flight <= 120);
                assert(c.state_dir && c.state_dir[0] == '/');
        }
        config_done(&c);
        close(fd);
        return 0;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ia-proc.c — the /proc parser the service (identity.c) and the library (ia-explain.c) share.
 * Plain C: the library links no GLib.
 */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ia-proc.h"

#define START_TIME_FIELD 22

/* Reads a small /proc file whole into @buf (NUL-terminated). */
static int read_proc_file(pid_t pid, const char *name, char *buf, size_t size) {
        char path[64];
        size_t n = 0;
        int fd;

        (void) snprintf(path, sizeof(path), "/proc/%d/%s", (int) pid, name);
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return errno == ENOENT ? -ESRCH : -errno;
        while (n < size - 1) {
                ssize_t k = read(fd, buf + n, size - 1 - n);

                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0) {
                        int r = errno == ESRCH ? -ESRCH : -errno;

                        (void) close(fd);
                        return r;
                }
                if (k == 0)
                        break;
                n += (size_t) k;
        }
        (void) close(fd);
        buf[n] = '\0';
        return 0;
}

int ia_proc_parse_start_time(const char *stat, uint64_t *ret) {
        const char *p = strrchr(stat, ')');
        char *end;
        uint64_t v;

        if (!p)
                return -EIO;
        /* p is at the end of field 2; each space starts the next field */
        for (int field = 3; field <= START_TIME_FIELD; field++) {
                p = strchr(p + 1, ' ');
                if (!p)
                        return -EIO;
        }
        errno = 0;
        v = strtoull(p + 1, &end, 10);
        if (errno != 0 || end == p + 1 || (*end != ' ' && *end != '\n' && *end != '\0'))
                return -EIO;
        *ret = v;
        return 0;
}

int ia_proc_get_start_time(pid_t pid, uint64_t *ret) {
        char buf[4096];
        int r;

        r = read_proc_file(pid, "stat", buf, sizeof(buf));
        if (r < 0)
                return r;
        return ia_proc_parse_start_time(buf, ret);
}

int ia_proc_get_euid(pid_t pid, uid_t *ret) {
        char buf[8192];
        const char *p;
        unsigned ruid, euid;
        int r;

        r = read_proc_file(pid, "status", buf, sizeof(buf));
        if (r < 0)
                return r;
        p = strncmp(buf, "Uid:", 4) == 0 ? buf : strstr(buf, "\nUid:");
        if (!p)
                return -EIO;
        if (*p == '\n')
                p++;
        if (sscanf(p + 4, "%u %u", &ruid, &euid) != 2)
                return -EIO;
        *ret = (uid_t) euid;
        return 0;
}

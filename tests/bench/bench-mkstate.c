/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bench-mkstate.c — writes a daemon state snapshot of a given size, for the scale benchmarks.
 *
 *     bench-mkstate SNAPSHOT GUESTS GRANTS-PER-GUEST UID IMAGE…
 *
 * SNAPSHOT is written with state_write_snapshot() (put it at STATE-DIR/state, with no
 * journal next to it).  The registry holds GUESTS guests with GRANTS-PER-GUEST grants each:
 * guest "bench" is bound to UID (RegisterGuest's uid option) and holds read-write grants of
 * the IMAGE paths (real files, pinned to their inodes as GrantImage does: the benchmark opens
 * them) plus filler grants up to
 * GRANTS-PER-GUEST; the other guests, "guest-00001"…, hold filler grants of paths that need
 * not exist.  Every guest has a uuid, as VM managers register them.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <glib.h>

#include "registry.h"
#include "state.h"

static unsigned parse_arg(const char *s, const char *what, unsigned long max) {
        char *end;
        unsigned long v;

        errno = 0;
        v = strtoul(s, &end, 10);
        if (errno != 0 || *end != '\0' || v > max) {
                fprintf(stderr, "bench-mkstate: bad %s '%s'\n", what, s);
                exit(2);
        }
        return (unsigned) v;
}

static void uuid_of(unsigned i, char ret[static 37]) {
        snprintf(ret, 37, "%08x-1b2d-4c8e-9a7f-%012x", i, i * 2654435761u);
}

int main(int argc, char *argv[]) {
        RegistryLimits limits = REGISTRY_LIMITS_DEFAULT;
        g_autoptr(Registry) r = NULL;
        unsigned n_guests, n_grants, uid, n_images;
        char uuid[37];
        int k;

        if (argc < 5) {
                fprintf(stderr, "usage: %s SNAPSHOT GUESTS GRANTS-PER-GUEST UID IMAGE…\n", argv[0]);
                return 2;
        }
        n_guests = parse_arg(argv[2], "guest count", 1000000);
        n_grants = parse_arg(argv[3], "grant count", 1000000);
        uid = parse_arg(argv[4], "uid", 0xfffffffeUL);
        n_images = (unsigned) argc - 5;
        if (n_guests < 1 || n_images > n_grants) {
                fprintf(stderr, "bench-mkstate: need at least one guest and no more images than grants\n");
                return 2;
        }
        limits.max_guests = MAX(limits.max_guests, n_guests);
        limits.max_grants_per_guest = MAX(limits.max_grants_per_guest, n_grants);
        r = registry_new(&limits);

        for (unsigned i = 0; i < n_guests; i++) {
                char name[32], path[160];

                if (i == 0)
                        snprintf(name, sizeof(name), "bench");
                else
                        snprintf(name, sizeof(name), "guest-%05u", i);
                uuid_of(i, uuid);
                k = registry_add_guest(r, name, uuid, "benchmark guest", i == 0, i == 0 ? uid : 0,
                                       NULL);
                if (k < 0)
                        goto fail;
                for (unsigned j = 0; j < n_grants; j++) {
                        if (i == 0 && j < n_images) {
                                struct stat st;

                                if (stat(argv[5 + j], &st) < 0) {
                                        k = -errno;
                                        goto fail;
                                }
                                k = registry_grant(r, name, argv[5 + j], IA_MODE_READ_WRITE);
                                if (k >= 0)
                                        k = registry_pin_grant(r, name, argv[5 + j], &(FileId) { .dev = (uint64_t) st.st_dev, .ino = (uint64_t) st.st_ino });
                        } else {
                                snprintf(path, sizeof(path),
                                         "/var/lib/libvirt/images/%s/disk-%03u.qcow2", name, j);
                                k = registry_grant(r, name, path, (IaMode) (j % _IA_MODE_MAX));
                        }
                        if (k < 0)
                                goto fail;
                }
        }

        k = state_write_snapshot(r, argv[1]);
        if (k < 0)
                goto fail;
        return 0;

fail:
        fprintf(stderr, "bench-mkstate: %s\n", g_strerror(-k));
        return 1;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-registry.c — unit tests for daemon/registry.c: validators, guests, grants, bindings,
 * connections, limits (every one refuses with -ENOBUFS and changes nothing) and pidfd
 * ownership.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <glib.h>

#include "image.h"
#include "macro.h"
#include "registry.h"

#define UUID "0f3c5a6e-1b2d-4c8e-9a7f-112233445566"

/* An fd that stands in for a pidfd: the registry never looks at what it is. */
static int fake_pidfd(void) {
        int fd = open("/dev/null", O_RDONLY|O_CLOEXEC);

        g_assert_cmpint(fd, >=, 0);
        return fd;
}

static bool fd_is_open(int fd) {
        return fcntl(fd, F_GETFD) >= 0;
}

/* dbus-broker's trick: a closed fd number is the next one handed out again. */
static void assert_fd_closed(int fd) {
        ia_autofd int again = -1;

        g_assert_false(fd_is_open(fd));
        again = fake_pidfd();
        g_assert_cmpint(again, ==, fd);
}

static Registry *new_with_guest(const RegistryLimits *limits, const char *name) {
        Registry *r = registry_new(limits);

        g_assert_cmpint(registry_add_guest(r, name, NULL, NULL, false, 0, NULL), ==, 0);
        return r;
}

/* ---- modes ------------------------------------------------------------------------------ */

static void test_mode_strings(void) {
        g_assert_cmpint(ia_mode_from_string("read-only"), ==, IA_MODE_READ_ONLY);
        g_assert_cmpint(ia_mode_from_string("read-write"), ==, IA_MODE_READ_WRITE);
        g_assert_cmpint(ia_mode_from_string("create"), ==, IA_MODE_CREATE);

        g_assert_cmpint(ia_mode_from_string(NULL), ==, -EINVAL);
        g_assert_cmpint(ia_mode_from_string(""), ==, -EINVAL);
        g_assert_cmpint(ia_mode_from_string("Read-Only"), ==, -EINVAL);
        g_assert_cmpint(ia_mode_from_string("read-only "), ==, -EINVAL);
        g_assert_cmpint(ia_mode_from_string("rw"), ==, -EINVAL);

        for (IaMode m = 0; m < _IA_MODE_MAX; m++)
                g_assert_cmpint(ia_mode_from_string(ia_mode_to_string(m)), ==, m);
        g_assert_null(ia_mode_to_string(_IA_MODE_MAX));
        g_assert_null(ia_mode_to_string(_IA_MODE_INVALID));
        g_assert_null(ia_mode_to_string(-1));
}

static void test_mode_covers(void) {
        g_assert_true(ia_mode_covers(IA_MODE_READ_ONLY, IA_MODE_READ_ONLY));
        g_assert_false(ia_mode_covers(IA_MODE_READ_ONLY, IA_MODE_READ_WRITE));
        g_assert_false(ia_mode_covers(IA_MODE_READ_ONLY, IA_MODE_CREATE));
        g_assert_true(ia_mode_covers(IA_MODE_READ_WRITE, IA_MODE_READ_ONLY));
        g_assert_true(ia_mode_covers(IA_MODE_READ_WRITE, IA_MODE_READ_WRITE));
        g_assert_false(ia_mode_covers(IA_MODE_READ_WRITE, IA_MODE_CREATE));
        g_assert_true(ia_mode_covers(IA_MODE_CREATE, IA_MODE_READ_ONLY));
        g_assert_true(ia_mode_covers(IA_MODE_CREATE, IA_MODE_READ_WRITE));
        g_assert_true(ia_mode_covers(IA_MODE_CREATE, IA_MODE_CREATE));

        /* Invalid values on either side cover nothing. */
        g_assert_false(ia_mode_covers(_IA_MODE_INVALID, IA_MODE_READ_ONLY));
        g_assert_false(ia_mode_covers(IA_MODE_CREATE, _IA_MODE_INVALID));
        g_assert_false(ia_mode_covers(_IA_MODE_MAX, IA_MODE_READ_ONLY));
        g_assert_false(ia_mode_covers(IA_MODE_CREATE, _IA_MODE_MAX));
}

/* ---- validators ------------------------------------------------------------------------- */

static void test_name_valid(void) {
        char name[GUEST_NAME_MAX + 2];

        g_assert_true(guest_name_is_valid("vm1"));
        g_assert_true(guest_name_is_valid("a"));
        g_assert_true(guest_name_is_valid("Fedora_40.x86-64:test+1"));
        g_assert_true(guest_name_is_valid("0"));
        g_assert_true(guest_name_is_valid("_x"));
        g_assert_true(guest_name_is_valid("x."));

        g_assert_false(guest_name_is_valid(NULL));
        g_assert_false(guest_name_is_valid(""));
        g_assert_false(guest_name_is_valid(".hidden"));
        g_assert_false(guest_name_is_valid("-option"));
        g_assert_false(guest_name_is_valid("a b"));
        g_assert_false(guest_name_is_valid("a/b"));
        g_assert_false(guest_name_is_valid("a\nb"));
        g_assert_false(guest_name_is_valid("caf\xc3\xa9"));
        g_assert_false(guest_name_is_valid("a\"b"));
        g_assert_false(guest_name_is_valid("a*"));

        memset(name, 'n', sizeof(name));
        name[GUEST_NAME_MAX] = '\0';
        g_assert_true(guest_name_is_valid(name));
        name[GUEST_NAME_MAX] = 'n';
        name[GUEST_NAME_MAX + 1] = '\0';
        g_assert_false(guest_name_is_valid(name));
}

static void test_uuid_valid(void) {
        g_assert_true(guest_uuid_is_valid(UUID));
        g_assert_true(guest_uuid_is_valid("0F3C5A6E-1B2D-4C8E-9A7F-112233445566"));
        g_assert_true(guest_uuid_is_valid("00000000-0000-0000-0000-000000000000"));

        g_assert_false(guest_uuid_is_valid(NULL));
        g_assert_false(guest_uuid_is_valid(""));
        g_assert_false(guest_uuid_is_valid("0f3c5a6e1b2d4c8e9a7f112233445566"));
        g_assert_false(guest_uuid_is_valid("{0f3c5a6e-1b2d-4c8e-9a7f-112233445566}"));
        g_assert_false(guest_uuid_is_valid("0f3c5a6e-1b2d-4c8e-9a7f-11223344556"));
        g_assert_false(guest_uuid_is_valid("0f3c5a6e-1b2d-4c8e-9a7f-1122334455667"));
        g_assert_false(guest_uuid_is_valid("0f3c5a6e-1b2d-4c8e-9a7f-11223344556g"));
        g_assert_false(guest_uuid_is_valid("0f3c5a6e-1b2d-4c8e+9a7f-112233445566"));
        g_assert_false(guest_uuid_is_valid("0f3c5a6e11b2d-4c8e-9a7f-112233445566"));
}

static void test_description_valid(void) {
        g_autofree char *longest = g_strnfill(GUEST_DESCRIPTION_MAX, 'd');
        g_autofree char *too_long = g_strnfill(GUEST_DESCRIPTION_MAX + 1, 'd');
        g_autofree char *long_utf8 = NULL;

        g_assert_true(guest_description_is_valid(""));
        g_assert_true(guest_description_is_valid("Fedora 40 build VM"));
        g_assert_true(guest_description_is_valid("caf\xc3\xa9 \xe2\x80\x94 \xf0\x9f\x92\xbe"));
        g_assert_true(guest_description_is_valid("quotes \" and \\ are fine"));
        g_assert_true(guest_description_is_valid(longest));

        g_assert_false(guest_description_is_valid(NULL));
        g_assert_false(guest_description_is_valid(too_long));
        g_assert_false(guest_description_is_valid("line\nbreak"));
        g_assert_false(guest_description_is_valid("tab\there"));
        g_assert_false(guest_description_is_valid("esc\x1b[31m"));
        g_assert_false(guest_description_is_valid("del\x7f"));
        g_assert_false(guest_description_is_valid("c1 \xc2\x9b"));    /* U+009B CSI */
        g_assert_false(guest_description_is_valid("bad \xff utf8"));
        g_assert_false(guest_description_is_valid("overlong \xc0\xaf"));
        g_assert_false(guest_description_is_valid("truncated \xe2\x80"));

        /* The limit is in bytes, not characters: 342 × 3 bytes = 1026 > 1024. */
        {
                GString *s = g_string_new(NULL);

                for (unsigned i = 0; i < 342; i++)
                        g_string_append(s, "\xe2\x82\xac");
                long_utf8 = g_string_free(s, FALSE);
        }
        g_assert_false(guest_description_is_valid(long_utf8));
}

static void test_unique_name_valid(void) {
        g_autofree char *a = g_strnfill(252, 'a');
        g_autofree char *longest = g_strconcat(":1.", a, NULL);
        g_autofree char *too_long = g_strconcat(longest, "a", NULL);

        g_assert_true(bus_unique_name_is_valid(":1.42"));
        g_assert_true(bus_unique_name_is_valid(":1.0"));
        g_assert_true(bus_unique_name_is_valid(":abc.d_e-f.9"));

        g_assert_false(bus_unique_name_is_valid(NULL));
        g_assert_false(bus_unique_name_is_valid(""));
        g_assert_false(bus_unique_name_is_valid(":"));
        g_assert_false(bus_unique_name_is_valid(":1"));
        g_assert_false(bus_unique_name_is_valid(":1."));
        g_assert_false(bus_unique_name_is_valid(":.1"));
        g_assert_false(bus_unique_name_is_valid(":1..2"));
        g_assert_false(bus_unique_name_is_valid("1.42"));
        g_assert_false(bus_unique_name_is_valid("org.example.ImageAccess"));
        g_assert_false(bus_unique_name_is_valid(":1.4 2"));
        g_assert_false(bus_unique_name_is_valid(":1.4\n"));

        g_assert_cmpuint(strlen(longest), ==, 255);
        g_assert_true(bus_unique_name_is_valid(longest));
        g_assert_false(bus_unique_name_is_valid(too_long));
}

/* ---- guests ----------------------------------------------------------------------------- */

static void test_guest_add(void) {
        g_autoptr(Registry) r = registry_new(NULL);
        Guest *g = NULL;

        g_assert_cmpuint(r->limits.max_guests, ==, REGISTRY_LIMITS_DEFAULT.max_guests);
        g_assert_cmpuint(r->limits.max_grants_per_guest, ==,
                         REGISTRY_LIMITS_DEFAULT.max_grants_per_guest);

        g_assert_cmpint(registry_add_guest(r, "vm1", UUID, "first VM", true, 1000, &g), ==, 0);
        g_assert_nonnull(g);
        g_assert_true(registry_get_guest(r, "vm1") == g);
        g_assert_cmpstr(g->name, ==, "vm1");
        g_assert_cmpstr(g->uuid, ==, UUID);
        g_assert_cmpstr(g->description, ==, "first VM");
        g_assert_true(g->has_uid);
        g_assert_cmpuint(g->uid, ==, 1000);
        g_assert_cmpuint(g_hash_table_size(g->grants), ==, 0);
        g_assert_cmpuint(g->bindings->len, ==, 0);

        g_assert_cmpint(registry_add_guest(r, "vm2", NULL, NULL, false, 0, NULL), ==, 0);
        g = registry_get_guest(r, "vm2");
        g_assert_nonnull(g);
        g_assert_null(g->uuid);
        g_assert_null(g->description);
        g_assert_false(g->has_uid);

        /* uid 0 is a real uid. */
        g_assert_cmpint(registry_add_guest(r, "vm3", NULL, "", true, 0, &g), ==, 0);
        g_assert_true(g->has_uid);
        g_assert_cmpuint(g->uid, ==, 0);
        g_assert_cmpstr(g->description, ==, "");

        g_assert_cmpuint(g_hash_table_size(r->guests), ==, 3);
        g_assert_null(registry_get_guest(r, "vm4"));
        g_assert_null(registry_get_guest(r, NULL));
        g_assert_null(registry_get_guest(r, "VM1"));
}

static void test_guest_by_uid(void) {
        g_autoptr(Registry) r = registry_new(NULL);

        g_assert_null(registry_find_guest_by_uid(r, 1000, NULL));
        g_assert_cmpint(registry_add_guest(r, "vm2", NULL, NULL, true, 1000, NULL), ==, 0);
        g_assert_cmpint(registry_add_guest(r, "vm1", NULL, NULL, true, 1000, NULL), ==, 0);
        g_assert_cmpint(registry_add_guest(r, "vm3", NULL, NULL, true, 1001, NULL), ==, 0);
        g_assert_cmpint(registry_add_guest(r, "vm4", NULL, NULL, false, 0, NULL), ==, 0);

        g_assert_cmpstr(registry_find_guest_by_uid(r, 1000, NULL)->name, ==, "vm1");
        g_assert_cmpstr(registry_find_guest_by_uid(r, 1000, "vm1")->name, ==, "vm2");
        g_assert_cmpstr(registry_find_guest_by_uid(r, 1001, "vm1")->name, ==, "vm3");
        g_assert_null(registry_find_guest_by_uid(r, 1001, "vm3"));
        /* a guest without a uid is bound to none, also not to 0 */
        g_assert_null(registry_find_guest_by_uid(r, 0, NULL));
        g_assert_cmpint(registry_remove_guest(r, "vm1"), ==, 0);
        g_assert_cmpint(registry_remove_guest(r, "vm2"), ==, 0);
        g_assert_null(registry_find_guest_by_uid(r, 1000, NULL));
}

static void test_directory_grant(void) {
        g_autoptr(Registry) r = registry_new(NULL);
        const char *other = NULL;
        Grant *d, *f;

        g_assert_cmpint(registry_add_guest(r, "vm1", NULL, NULL, false, 0, NULL), ==, 0);
        g_assert_cmpint(registry_add_guest(r, "vm2", NULL, NULL, false, 0, NULL), ==, 0);
        g_assert_cmpint(registry_guest_grant(r, registry_get_guest(r, "vm1"), "/img/vm1",
                                             IA_MODE_READ_WRITE, &d), ==, 1);
        d->directory = true;
        g_assert_cmpint(registry_guest_grant(r, registry_get_guest(r, "vm1"), "/img/vm1/base",
                                             IA_MODE_READ_ONLY, &f), ==, 1);

        /* beneath, at any depth; not the directory itself, not a sibling with its prefix */
        g_assert_cmpint(registry_check(r, "vm1", "/img/vm1/ov", IA_MODE_READ_WRITE), ==, 0);
        g_assert_cmpint(registry_check(r, "vm1", "/img/vm1/a/b", IA_MODE_READ_ONLY), ==, 0);
        g_assert_cmpint(registry_check(r, "vm1", "/img/vm1/ov", IA_MODE_CREATE), ==, -EPERM);
        g_assert_cmpint(registry_check(r, "vm1", "/img/vm1", IA_MODE_READ_ONLY), ==, -EPERM);
        g_assert_cmpint(registry_check(r, "vm1", "/img/vm10/x", IA_MODE_READ_ONLY), ==, -EPERM);
        g_assert_cmpint(registry_check(r, "vm2", "/img/vm1/ov", IA_MODE_READ_ONLY), ==, -EPERM);
        /* a file's own grant takes precedence */
        g_assert_cmpint(registry_check(r, "vm1", "/img/vm1/base", IA_MODE_READ_WRITE), ==, -EPERM);
        g_assert_true(registry_find_directory_grant(registry_get_guest(r, "vm1"), "/img/vm1/a/b") == d);
        g_assert_null(registry_find_directory_grant(registry_get_guest(r, "vm1"), "/img"));

        /* nesting across guests, either way; the guest itself is not in the way */
        g_assert_true(registry_find_directory_overlap(r, "/img/vm1", "vm2", &other) ==
                      registry_get_guest(r, "vm1"));
        g_assert_cmpstr(other, ==, "/img/vm1");
        g_assert_nonnull(registry_find_directory_overlap(r, "/img", "vm2", NULL));
        g_assert_nonnull(registry_find_directory_overlap(r, "/img/vm1/sub", "vm2", NULL));
        g_assert_null(registry_find_directory_overlap(r, "/img/vm10", "vm2", NULL));
        g_assert_null(registry_find_directory_overlap(r, "/img/vm1", "vm1", NULL));

        f->pinned = true;
        f->pinned_id = (FileId) { .dev = 8, .ino = 42, .tag = 7, .kind = 'r' };
        g_assert_true(registry_find_file_owner(r, &f->pinned_id, "vm2") ==
                      registry_get_guest(r, "vm1"));
        g_assert_null(registry_find_file_owner(r, &f->pinned_id, "vm1"));
        g_assert_null(registry_find_file_owner(r, &(FileId) { .dev = 8, .ino = 43, .tag = 7,
                                                              .kind = 'r' }, "vm2"));
        /* the same inode number, another file (its tag differs) */
        g_assert_null(registry_find_file_owner(r, &(FileId) { .dev = 8, .ino = 42, .tag = 9,
                                                              .kind = 'r' }, "vm2"));
}

static void test_guest_invalid(void) {
        g_autoptr(Registry) r = registry_new(NULL);
        Guest *g = (Guest *) 0x1;

        g_assert_cmpint(registry_add_guest(r, NULL, NULL, NULL, false, 0, &g), ==, -EINVAL);
        g_assert_cmpint(registry_add_guest(r, "", NULL, NULL, false, 0, &g), ==, -EINVAL);
        g_assert_cmpint(registry_add_guest(r, "a b", NULL, NULL, false, 0, &g), ==, -EINVAL);
        g_assert_cmpint(registry_add_guest(r, "vm", "nope", NULL, false, 0, &g), ==, -EINVAL);
        g_assert_cmpint(registry_add_guest(r, "vm", NULL, "a\nb", false, 0, &g), ==, -EINVAL);
        g_assert_cmpint(registry_add_guest(r, "vm", NULL, NULL, true, (uid_t) -1, &g), ==,
                        -EINVAL);

        /* Nothing was added and the output parameter is untouched. */
        g_assert_cmpuint(g_hash_table_size(r->guests), ==, 0);
        g_assert_true(g == (Guest *) 0x1);
}

static void test_guest_duplicate(void) {
        g_autoptr(Registry) r = registry_new(NULL);
        Guest *g;

        g_assert_cmpint(registry_add_guest(r, "vm", UUID, "one", false, 0, &g), ==, 0);
        g_assert_cmpint(registry_add_guest(r, "vm", NULL, "two", true, 5, NULL), ==, -EEXIST);

        /* The first registration is unchanged. */
        g_assert_true(registry_get_guest(r, "vm") == g);
        g_assert_cmpstr(g->description, ==, "one");
        g_assert_false(g->has_uid);
        g_assert_cmpuint(g_hash_table_size(r->guests), ==, 1);
}

static void test_guest_limit(void) {
        RegistryLimits limits = REGISTRY_LIMITS_DEFAULT;
        g_autoptr(Registry) r = NULL;

        limits.max_guests = 3;
        r = registry_new(&limits);

        for (unsigned i = 0; i < 3; i++) {
                g_autofree char *name = g_strdup_printf("vm%u", i);

                g_assert_cmpint(registry_add_guest(r, name, NULL, NULL, false, 0, NULL), ==, 0);
        }
        g_assert_cmpint(registry_add_guest(r, "vm3", NULL, NULL, false, 0, NULL), ==, -ENOBUFS);
        g_assert_null(registry_get_guest(r, "vm3"));
        g_assert_cmpuint(g_hash_table_size(r->guests), ==, 3);

        /* A taken name is still reported as such at the limit. */
        g_assert_cmpint(registry_add_guest(r, "vm0", NULL, NULL, false, 0, NULL), ==, -EEXIST);

        /* Removing one makes room again. */
        g_assert_cmpint(registry_remove_guest(r, "vm1"), ==, 0);
        g_assert_cmpint(registry_add_guest(r, "vm3", NULL, NULL, false, 0, NULL), ==, 0);
}

static void test_guest_limit_zero(void) {
        RegistryLimits limits = REGISTRY_LIMITS_DEFAULT;
        g_autoptr(Registry) r = NULL;

        limits.max_guests = 0;
        r = registry_new(&limits);
        g_assert_cmpint(registry_add_guest(r, "vm", NULL, NULL, false, 0, NULL), ==, -ENOBUFS);
}

static void test_guest_remove(void) {
        g_autoptr(Registry) r = new_with_guest(NULL, "vm");
        int fd1 = fake_pidfd(), fd2 = fake_pidfd();

        g_assert_cmpint(registry_add_guest(r, "other", NULL, NULL, false, 0, NULL), ==, 0);
        g_assert_cmpint(registry_grant(r, "vm", "/a", IA_MODE_READ_ONLY), ==, 1);
        g_assert_cmpint(registry_grant(r, "vm", "/b", IA_MODE_CREATE), ==, 1);
        g_assert_cmpint(registry_grant(r, "other", "/a", IA_MODE_READ_ONLY), ==, 1);
        g_assert_cmpint(registry_add_binding(r, "vm", 100, 1, 1000, fd1, 1, NULL), ==, 0);
        g_assert_cmpint(registry_add_binding(r, "vm", 101, 1, 1000, fd2, 2, NULL), ==, 0);
        g_assert_cmpuint(r->n_grants, ==, 3);

        g_assert_cmpint(registry_remove_guest(r, "vm"), ==, 0);
        g_assert_null(registry_get_guest(r, "vm"));
        g_assert_cmpuint(r->n_grants, ==, 1);

        /* Its pidfds are closed (fd2 first: the lowest free number is reused first). */
        g_assert_false(fd_is_open(fd1));
        g_assert_false(fd_is_open(fd2));
        assert_fd_closed(MIN(fd1, fd2));

        g_assert_cmpint(registry_remove_guest(r, "vm"), ==, -ESRCH);
        g_assert_cmpint(registry_remove_guest(r, NULL), ==, -ESRCH);
        g_assert_nonnull(registry_get_guest(r, "other"));
        g_assert_cmpint(registry_check(r, "other", "/a", IA_MODE_READ_ONLY), ==, 0);
}

static void test_guest_clear(void) {
        g_autoptr(Registry) r = new_with_guest(NULL, "vm");
        int fd = fake_pidfd();

        g_assert_cmpint(registry_grant(r, "vm", "/a", IA_MODE_READ_ONLY), ==, 1);
        g_assert_cmpint(registry_add_binding(r, "vm", 100, 1, 1000, fd, 1, NULL), ==, 0);
        registry_set_bus_id(r, "bus");

        registry_clear(r);
        g_assert_cmpuint(g_hash_table_size(r->guests), ==, 0);
        g_assert_cmpuint(r->n_grants, ==, 0);
        g_assert_null(r->bus_id);
        assert_fd_closed(fd);

        /* Usable again. */
        g_assert_cmpint(registry_add_guest(r, "vm", NULL, NULL, false, 0, NULL), ==, 0);
}

/* ---- grants ----------------------------------------------------------------------------- */

static void test_grant_add(void) {
        g_autoptr(Registry) r = new_with_guest(NULL, "vm");
        Grant *grant;

        g_assert_cmpint(registry_grant(r, "vm", "/var/lib/images/a.qcow2", IA_MODE_READ_WRITE),
                        ==, 1);
        grant = registry_get_grant(r, "vm", "/var/lib/images/a.qcow2");
        g_assert_nonnull(grant);
        g_assert_cmpstr(grant->path, ==, "/var/lib/images/a.qcow2");
        g_assert_cmpint(grant->mode, ==, IA_MODE_READ_WRITE);
        g_assert_false(grant->created);
        g_assert_cmpuint(r->n_grants, ==, 1);

        /* Paths are compared byte for byte: no normalization behind the caller's back. */
        g_assert_null(registry_get_grant(r, "vm", "/var/lib/images/A.qcow2"));
        g_assert_null(registry_get_grant(r, "vm", "/var/lib/images"));
        g_assert_null(registry_get_grant(r, "vm", NULL));
        g_assert_null(registry_get_grant(r, "nobody", "/var/lib/images/a.qcow2"));

        /* Hostile but valid path bytes. */
        g_assert_cmpint(registry_grant(r, "vm", "/img/with space/\"q\"/back\\slash/caf\xc3\xa9",
                                       IA_MODE_READ_ONLY), ==, 1);
        g_assert_nonnull(registry_get_grant(r, "vm",
                                            "/img/with space/\"q\"/back\\slash/caf\xc3\xa9"));
        g_assert_cmpuint(r->n_grants, ==, 2);
}

static void test_grant_duplicate(void) {
        g_autoptr(Registry) r = new_with_guest(NULL, "vm");

        g_assert_cmpint(registry_grant(r, "vm", "/a", IA_MODE_READ_ONLY), ==, 1);
        g_assert_cmpint(registry_grant(r, "vm", "/a", IA_MODE_READ_ONLY), ==, 0);
        g_assert_cmpuint(g_hash_table_size(registry_get_guest(r, "vm")->grants), ==, 1);
        g_assert_cmpuint(r->n_grants, ==, 1);
}

static void test_grant_change_mode(void) {
        g_autoptr(Registry) r = new_with_guest(NULL, "vm");
        Grant *grant;

        g_assert_cmpint(registry_grant(r, "vm", "/a", IA_MODE_CREATE), ==, 1);
        g_assert_cmpint(registry_mark_created(r, "vm", "/a", &(FileId) { .dev = 2049, .ino = 1234567 }), ==, 0);
        grant = registry_get_grant(r, "vm", "/a");

        g_assert_cmpint(registry_grant(r, "vm", "/a", IA_MODE_READ_ONLY), ==, 1);
        /* Changed in place: same object, and the created record is kept. */
        g_assert_true(registry_get_grant(r, "vm", "/a") == grant);
        g_assert_cmpint(grant->mode, ==, IA_MODE_READ_ONLY);
        g_assert_true(grant->created);
        g_assert_cmpuint(grant->created_id.dev, ==, 2049);
        g_assert_cmpuint(grant->created_id.ino, ==, 1234567);
        g_assert_cmpuint(r->n_grants, ==, 1);

        g_assert_cmpint(registry_check(r, "vm", "/a", IA_MODE_READ_WRITE), ==, -EPERM);
        g_assert_cmpint(registry_grant(r, "vm", "/a", IA_MODE_READ_WRITE), ==, 1);
        g_assert_cmpint(registry_check(r, "vm", "/a", IA_MODE_READ_WRITE), ==, 0);
}

static void test_grant_invalid_path(void) {
        g_autoptr(Registry) r = new_with_guest(NULL, "vm");
        g_autofree char *x = g_strnfill(IMAGE_NAME_MAX + 1, 'x');
        g_autofree char *long_component = g_strconcat("/", x, NULL);
        GString *long_path = g_string_new(NULL);
        static const char *const bad[] = {
                "", "relative", "./a", "/", "//a", "/a//b", "/a/./b", "/a/../b", "/a/", "/.",
                "/..", "/a/.", "/a/..", "/a\nb", "/a\tb", "/a\x7f", "/a\x01", "/a\x1f",
        };

        for (size_t i = 0; i < IA_ELEMENTSOF(bad); i++) {
                g_test_message("bad path #%zu", i);
                g_assert_cmpint(registry_grant(r, "vm", bad[i], IA_MODE_READ_ONLY), ==, -EINVAL);
        }
        g_assert_cmpint(registry_grant(r, "vm", NULL, IA_MODE_READ_ONLY), ==, -EINVAL);

        /* Length limits are -ENAMETOOLONG from path_is_valid(), -EINVAL from here. */
        g_assert_cmpint(registry_grant(r, "vm", long_component, IA_MODE_READ_ONLY), ==, -EINVAL);
        while (long_path->len <= IMAGE_PATH_MAX)
                g_string_append(long_path, "/abcdefghijklmnopqrstuvwxyz");
        g_assert_cmpint(registry_grant(r, "vm", long_path->str, IA_MODE_READ_ONLY), ==, -EINVAL);
        g_string_free(long_path, TRUE);

        /* Also for an unknown guest: the arguments are checked first. */
        g_assert_cmpint(registry_grant(r, "nobody", "/a/", IA_MODE_READ_ONLY), ==, -EINVAL);

        g_assert_cmpuint(g_hash_table_size(registry_get_guest(r, "vm")->grants), ==, 0);
        g_assert_cmpuint(r->n_grants, ==, 0);
}

static void test_grant_invalid_mode(void) {
        g_autoptr(Registry) r = new_with_guest(NULL, "vm");

        g_assert_cmpint(registry_grant(r, "vm", "/a", _IA_MODE_INVALID), ==, -EINVAL);
        g_assert_cmpint(registry_grant(r, "vm", "/a", _IA_MODE_MAX), ==, -EINVAL);
        g_assert_cmpint(registry_grant(r, "vm", "/a", 42), ==, -EINVAL);
        g_assert_null(registry_get_grant(r, "vm", "/a"));

        /* Changing an existing grant to an invalid mode changes nothing either. */
        g_assert_cmpint(registry_grant(r, "vm", "/a", IA_MODE_READ_WRITE), ==, 1);
        g_assert_cmpint(registry_grant(r, "vm", "/a", _IA_MODE_INVALID), ==, -EINVAL);
        g_assert_cmpint(registry_get_grant(r, "vm", "/a")->mode, ==, IA_MODE_READ_WRITE);
}

static void test_grant_unknown_guest(void) {
        g_autoptr(Registry) r = new_with_guest(NULL, "vm");

        g_assert_cmpint(registry_grant(r, "nobody", "/a", IA_MODE_READ_ONLY), ==, -ESRCH);
        g_assert_cmpint(registry_grant(r, NULL, "/a", IA_MODE_READ_ONLY), ==, -ESRCH);
        g_assert_cmpuint(r->n_grants, ==, 0);
}

static void test_grant_limit(void) {
        RegistryLimits limits = REGISTRY_LIMITS_DEFAULT;
        g_autoptr(Registry) r = NULL;

        limits.max_grants_per_guest = 4;
        r = new_with_guest(&limits, "vm");
        g_assert_cmpint(registry_add_guest(r, "other", NULL, NULL, false, 0, NULL), ==, 0);

        for (unsigned i = 0; i < 4; i++) {
                g_autofree char *path = g_strdup_printf("/img/%u", i);

                g_assert_cmpint(registry_grant(r, "vm", path, IA_MODE_READ_ONLY), ==, 1);
        }
        g_assert_cmpint(registry_grant(r, "vm", "/img/4", IA_MODE_READ_ONLY), ==, -ENOBUFS);
        g_assert_null(registry_get_grant(r, "vm", "/img/4"));
        g_assert_cmpuint(r->n_grants, ==, 4);

        /* At the limit, changing an existing grant still works: it allocates nothing. */
        g_assert_cmpint(registry_grant(r, "vm", "/img/0", IA_MODE_CREATE), ==, 1);
        g_assert_cmpint(registry_grant(r, "vm", "/img/0", IA_MODE_CREATE), ==, 0);

        /* The limit is per guest. */
        g_assert_cmpint(registry_grant(r, "other", "/img/4", IA_MODE_READ_ONLY), ==, 1);

        g_assert_cmpint(registry_revoke(r, "vm", "/img/1", NULL), ==, 0);
        g_assert_cmpint(registry_grant(r, "vm", "/img/4", IA_MODE_READ_ONLY), ==, 1);
        g_assert_cmpuint(r->n_grants, ==, 5);
}

static void test_revoke(void) {
        g_autoptr(Registry) r = new_with_guest(NULL, "vm");
        g_autoptr(Grant) grant = NULL;

        g_assert_cmpint(registry_grant(r, "vm", "/a", IA_MODE_CREATE), ==, 1);
        g_assert_cmpint(registry_grant(r, "vm", "/b", IA_MODE_READ_ONLY), ==, 1);
        g_assert_cmpint(registry_mark_created(r, "vm", "/a", &(FileId) { .dev = 1, .ino = 2 }), ==, 0);

        /* The revoked grant is handed over with its created record. */
        g_assert_cmpint(registry_revoke(r, "vm", "/a", &grant), ==, 0);
        g_assert_nonnull(grant);
        g_assert_cmpstr(grant->path, ==, "/a");
        g_assert_true(grant->created);
        g_assert_cmpuint(grant->created_id.dev, ==, 1);
        g_assert_cmpuint(grant->created_id.ino, ==, 2);
        g_assert_null(registry_get_grant(r, "vm", "/a"));
        g_assert_cmpint(registry_check(r, "vm", "/a", IA_MODE_READ_ONLY), ==, -EPERM);
        g_assert_cmpuint(r->n_grants, ==, 1);

        /* Without @ret_grant it is freed (valgrind checks). */
        g_assert_cmpint(registry_revoke(r, "vm", "/b", NULL), ==, 0);
        g_assert_cmpuint(r->n_grants, ==, 0);

        g_assert_cmpint(registry_revoke(r, "vm", "/a", NULL), ==, -ENOENT);
        g_assert_cmpint(registry_revoke(r, "vm", NULL, NULL), ==, -ENOENT);
        g_assert_cmpint(registry_revoke(r, "nobody", "/a", NULL), ==, -ESRCH);

        g_assert_null(grant_free(NULL));
}

static void test_check(void) {
        g_autoptr(Registry) r = new_with_guest(NULL, "vm");

        g_assert_cmpint(registry_grant(r, "vm", "/ro", IA_MODE_READ_ONLY), ==, 1);
        g_assert_cmpint(registry_grant(r, "vm", "/rw", IA_MODE_READ_WRITE), ==, 1);
        g_assert_cmpint(registry_grant(r, "vm", "/cr", IA_MODE_CREATE), ==, 1);

        g_assert_cmpint(registry_check(r, "vm", "/ro", IA_MODE_READ_ONLY), ==, 0);
        g_assert_cmpint(registry_check(r, "vm", "/ro", IA_MODE_READ_WRITE), ==, -EPERM);
        g_assert_cmpint(registry_check(r, "vm", "/ro", IA_MODE_CREATE), ==, -EPERM);
        g_assert_cmpint(registry_check(r, "vm", "/rw", IA_MODE_READ_ONLY), ==, 0);
        g_assert_cmpint(registry_check(r, "vm", "/rw", IA_MODE_READ_WRITE), ==, 0);
        g_assert_cmpint(registry_check(r, "vm", "/rw", IA_MODE_CREATE), ==, -EPERM);
        g_assert_cmpint(registry_check(r, "vm", "/cr", IA_MODE_CREATE), ==, 0);
        g_assert_cmpint(registry_check(r, "vm", "/cr", IA_MODE_READ_WRITE), ==, 0);

        g_assert_cmpint(registry_check(r, "vm", "/cr", _IA_MODE_INVALID), ==, -EPERM);
        g_assert_cmpint(registry_check(r, "vm", "/none", IA_MODE_READ_ONLY), ==, -EPERM);
        g_assert_cmpint(registry_check(r, "vm", NULL, IA_MODE_READ_ONLY), ==, -EPERM);
        g_assert_cmpint(registry_check(r, "vm", "/ro/", IA_MODE_READ_ONLY), ==, -EPERM);
        g_assert_cmpint(registry_check(r, "nobody", "/ro", IA_MODE_READ_ONLY), ==, -ESRCH);

        /* Grants are per guest. */
        g_assert_cmpint(registry_add_guest(r, "other", NULL, NULL, false, 0, NULL), ==, 0);
        g_assert_cmpint(registry_check(r, "other", "/ro", IA_MODE_READ_ONLY), ==, -EPERM);
}

static void test_mark_created(void) {
        g_autoptr(Registry) r = new_with_guest(NULL, "vm");
        Grant *grant;

        g_assert_cmpint(registry_grant(r, "vm", "/a", IA_MODE_CREATE), ==, 1);
        g_assert_cmpint(registry_mark_created(r, "vm", "/a", &(FileId) { .dev = UINT64_MAX, .ino = UINT64_MAX - 1 }), ==, 0);
        grant = registry_get_grant(r, "vm", "/a");
        g_assert_true(grant->created);
        g_assert_cmpuint(grant->created_id.dev, ==, UINT64_MAX);
        g_assert_cmpuint(grant->created_id.ino, ==, UINT64_MAX - 1);

        g_assert_cmpint(registry_mark_created(r, "vm", "/b", &(FileId) { .dev = 1, .ino = 2 }), ==, -ENOENT);
        g_assert_cmpint(registry_mark_created(r, "nobody", "/a", &(FileId) { .dev = 1, .ino = 2 }), ==, -ESRCH);
        g_assert_cmpuint(grant->created_id.dev, ==, UINT64_MAX);
}

/* A regular file's identity, as image.c records it. */
#define ID(d, i) ((FileId) { .dev = (d), .ino = (i), .kind = 'r' })

/* GrantImage's change: mode and pin in one step, "changed" only when either changed, and an
 * undo that leaves the registry exactly as it was. */
static void test_grant_pinned(void) {
        g_autoptr(Registry) r = new_with_guest(NULL, "vm");
        GrantUndo undo;
        Grant *grant = NULL;

        g_assert_cmpint(registry_grant_pinned(r, "vm", "/a", IA_MODE_READ_ONLY, &ID(5, 6), &undo, &grant), ==, 1);
        g_assert_nonnull(grant);
        g_assert_true(grant->pinned);
        g_assert_cmpuint(grant->pinned_id.dev, ==, 5);
        g_assert_cmpuint(grant->pinned_id.ino, ==, 6);
        g_assert_cmpint(registry_grant_pinned(r, "vm", "/a", IA_MODE_READ_ONLY, &ID(5, 6), NULL, NULL), ==, 0);
        /* Another inode at the path is a change, as is a new mode. */
        g_assert_cmpint(registry_grant_pinned(r, "vm", "/a", IA_MODE_READ_ONLY, &ID(5, 7), NULL, NULL), ==, 1);
        g_assert_cmpint(registry_grant_pinned(r, "vm", "/a", IA_MODE_READ_WRITE, &ID(5, 7), NULL, NULL), ==, 1);
        /* Unpinned: a create grant whose file is not there yet. */
        g_assert_cmpint(registry_grant_pinned(r, "vm", "/b", IA_MODE_CREATE, NULL, NULL, &grant), ==, 1);
        g_assert_false(grant->pinned);
        g_assert_cmpuint(grant->pinned_id.ino, ==, 0);

        g_assert_cmpint(registry_grant_pinned(r, "nobody", "/a", IA_MODE_READ_ONLY, &ID(1, 2), NULL,
                                              NULL), ==, -ESRCH);
        g_assert_cmpint(registry_grant_pinned(r, "vm", "a", IA_MODE_READ_ONLY, &ID(1, 2), NULL, NULL), ==, -EINVAL);
        g_assert_cmpuint(r->n_grants, ==, 2);
}

static void test_grant_undo(void) {
        g_autoptr(Registry) r = new_with_guest(NULL, "vm");
        GrantUndo undo;
        Grant *grant;

        /* A new grant: undone, it is gone and counted out. */
        g_assert_cmpint(registry_grant_pinned(r, "vm", "/a", IA_MODE_READ_ONLY, &ID(1, 2), &undo, NULL), ==, 1);
        g_assert_cmpuint(r->n_grants, ==, 1);
        registry_undo_grant(r, &undo);
        g_assert_null(registry_get_grant(r, "vm", "/a"));
        g_assert_cmpuint(r->n_grants, ==, 0);

        /* A changed grant: undone, mode, pin and "created" record are what they were. */
        g_assert_cmpint(registry_grant(r, "vm", "/b", IA_MODE_CREATE), ==, 1);
        g_assert_cmpint(registry_mark_created(r, "vm", "/b", &ID(3, 4)), ==, 0);
        g_assert_cmpint(registry_grant_pinned(r, "vm", "/b", IA_MODE_READ_ONLY, &ID(3, 9), &undo, NULL), ==, 1);
        grant = registry_get_grant(r, "vm", "/b");
        g_assert_cmpint(grant->mode, ==, IA_MODE_READ_ONLY);
        g_assert_cmpuint(grant->pinned_id.ino, ==, 9);
        g_assert_true(grant->created);
        registry_undo_grant(r, &undo);
        g_assert_true(registry_get_grant(r, "vm", "/b") == grant);
        g_assert_cmpstr(grant->path, ==, "/b");
        g_assert_cmpint(grant->mode, ==, IA_MODE_CREATE);
        g_assert_true(grant->pinned);
        g_assert_cmpuint(grant->pinned_id.dev, ==, 3);
        g_assert_cmpuint(grant->pinned_id.ino, ==, 4);
        g_assert_true(grant->created);
        g_assert_cmpuint(grant->created_id.ino, ==, 4);
        g_assert_cmpuint(r->n_grants, ==, 1);
}

/* A grant as state.c recorded it: every field, added or put over the one there. */
static void test_grant_load(void) {
        g_autoptr(Registry) r = new_with_guest(NULL, "vm");
        Guest *g = registry_get_guest(r, "vm");
        Grant *grant = NULL;

        g_assert_cmpint(registry_load_grant(r, g,
                                            &(Grant) { .path = (char *) "/a", .mode = IA_MODE_CREATE,
                                                       .created = true, .created_id = ID(1, 2),
                                                       .pinned = true, .pinned_id = ID(1, 2) },
                                            &grant), ==, 1);
        g_assert_nonnull(grant);
        g_assert_true(grant->created);
        g_assert_cmpuint(grant->created_id.ino, ==, 2);
        g_assert_true(grant->pinned);
        g_assert_cmpuint(grant->pinned_id.dev, ==, 1);
        /* The same mode again: 0, which a snapshot reads as a duplicate; the record wins. */
        g_assert_cmpint(registry_load_grant(r, g,
                                            &(Grant) { .path = (char *) "/a", .mode = IA_MODE_CREATE },
                                            NULL), ==, 0);
        g_assert_false(grant->created);
        g_assert_false(grant->pinned);
        g_assert_cmpint(registry_load_grant(r, g,
                                            &(Grant) { .path = (char *) "a", .mode = IA_MODE_CREATE },
                                            NULL), ==, -EINVAL);
        g_assert_cmpuint(r->n_grants, ==, 1);
}

/* ---- bindings --------------------------------------------------------------------------- */

static void test_binding_add(void) {
        g_autoptr(Registry) r = new_with_guest(NULL, "vm");
        int fd = fake_pidfd();
        Binding *b = NULL;

        g_assert_cmpint(registry_add_binding(r, "vm", 1234, 98765, 107, fd, 7, &b), ==, 0);
        g_assert_nonnull(b);
        g_assert_cmpint(b->pid, ==, 1234);
        g_assert_cmpuint(b->starttime, ==, 98765);
        g_assert_cmpuint(b->euid, ==, 107);
        g_assert_cmpint(b->pidfd, ==, fd);
        g_assert_cmpuint(b->bind_seq, ==, 7);
        g_assert_cmpuint(b->connections->len, ==, 0);
        g_assert_true(registry_get_binding(r, "vm", 1234, 98765) == b);
        g_assert_null(registry_get_binding(r, "vm", 1234, 98766));
        g_assert_null(registry_get_binding(r, "vm", 1235, 98765));
        g_assert_null(registry_get_binding(r, "nobody", 1234, 98765));

        /* Restored from state: no pidfd. */
        g_assert_cmpint(registry_add_binding(r, "vm", 1235, 1, 107, -1, 0, &b), ==, 0);
        g_assert_cmpint(b->pidfd, ==, -1);
        g_assert_cmpuint(registry_get_guest(r, "vm")->bindings->len, ==, 2);

        /* The same pid with another starttime is another process. */
        g_assert_cmpint(registry_add_binding(r, "vm", 1234, 11111, 107, -1, 0, NULL), ==, 0);
        g_assert_cmpuint(registry_get_guest(r, "vm")->bindings->len, ==, 3);

        /* The registry owns the fd: freeing it closes the fd. */
        g_clear_pointer(&r, registry_free);
        assert_fd_closed(fd);
}

static void test_binding_replace(void) {
        g_autoptr(Registry) r = new_with_guest(NULL, "vm");
        int fd1 = fake_pidfd(), fd2 = fake_pidfd();
        Binding *b1, *b2;

        g_assert_cmpint(registry_add_binding(r, "vm", 1234, 5, 100, fd1, 1, &b1), ==, 0);
        g_assert_cmpint(binding_add_connection(b1, ":1.7", &r->limits), ==, 0);

        g_assert_cmpint(registry_add_binding(r, "vm", 1234, 5, 200, fd2, 2, &b2), ==, 0);
        g_assert_true(b1 == b2);
        g_assert_cmpuint(registry_get_guest(r, "vm")->bindings->len, ==, 1);
        g_assert_cmpint(b2->pidfd, ==, fd2);
        g_assert_cmpuint(b2->euid, ==, 200);
        g_assert_cmpuint(b2->bind_seq, ==, 2);
        /* The connections are kept, the old pidfd is closed. */
        g_assert_true(binding_has_connection(b2, ":1.7"));
        g_assert_false(fd_is_open(fd1));
        g_assert_true(fd_is_open(fd2));
        assert_fd_closed(fd1);
}

static void test_binding_limit(void) {
        RegistryLimits limits = REGISTRY_LIMITS_DEFAULT;
        g_autoptr(Registry) r = NULL;
        int fd;

        limits.max_bindings_per_guest = 2;
        r = new_with_guest(&limits, "vm");

        g_assert_cmpint(registry_add_binding(r, "vm", 1, 1, 0, -1, 0, NULL), ==, 0);
        g_assert_cmpint(registry_add_binding(r, "vm", 2, 1, 0, -1, 0, NULL), ==, 0);

        /* Refused, and the pidfd taken is closed all the same. */
        fd = fake_pidfd();
        g_assert_cmpint(registry_add_binding(r, "vm", 3, 1, 0, fd, 0, NULL), ==, -ENOBUFS);
        assert_fd_closed(fd);
        g_assert_null(registry_get_binding(r, "vm", 3, 1));
        g_assert_cmpuint(registry_get_guest(r, "vm")->bindings->len, ==, 2);

        /* Replacing an existing binding needs no room. */
        fd = fake_pidfd();
        g_assert_cmpint(registry_add_binding(r, "vm", 2, 1, 0, fd, 9, NULL), ==, 0);
        g_assert_cmpint(registry_get_binding(r, "vm", 2, 1)->pidfd, ==, fd);
}

static void test_binding_errors(void) {
        g_autoptr(Registry) r = new_with_guest(NULL, "vm");
        Binding *b = (Binding *) 0x1;
        int fd;

        fd = fake_pidfd();
        g_assert_cmpint(registry_add_binding(r, "nobody", 1, 1, 0, fd, 0, &b), ==, -ESRCH);
        assert_fd_closed(fd);

        fd = fake_pidfd();
        g_assert_cmpint(registry_add_binding(r, "vm", 0, 1, 0, fd, 0, &b), ==, -EINVAL);
        assert_fd_closed(fd);

        fd = fake_pidfd();
        g_assert_cmpint(registry_add_binding(r, "vm", -5, 1, 0, fd, 0, &b), ==, -EINVAL);
        assert_fd_closed(fd);

        g_assert_true(b == (Binding *) 0x1);
        g_assert_cmpuint(registry_get_guest(r, "vm")->bindings->len, ==, 0);
}

static void test_binding_remove(void) {
        g_autoptr(Registry) r = new_with_guest(NULL, "vm");
        int fd = fake_pidfd();
        Binding *b, *other;

        g_assert_cmpint(registry_add_guest(r, "vm2", NULL, NULL, false, 0, NULL), ==, 0);
        g_assert_cmpint(registry_add_binding(r, "vm", 10, 1, 0, fd, 0, &b), ==, 0);
        g_assert_cmpint(registry_add_binding(r, "vm2", 11, 1, 0, -1, 0, &other), ==, 0);

        g_assert_cmpint(registry_remove_binding(r, "nobody", b), ==, -ESRCH);
        /* Another guest's binding is not this guest's to remove. */
        g_assert_cmpint(registry_remove_binding(r, "vm", other), ==, -ENOENT);
        g_assert_cmpint(registry_remove_binding(r, "vm", NULL), ==, -ENOENT);
        g_assert_true(fd_is_open(fd));

        g_assert_cmpint(registry_remove_binding(r, "vm", b), ==, 0);
        g_assert_null(registry_get_binding(r, "vm", 10, 1));
        assert_fd_closed(fd);
        g_assert_nonnull(registry_get_binding(r, "vm2", 11, 1));
}

/* ---- connections ------------------------------------------------------------------------ */

static void test_connection_add_remove(void) {
        g_autoptr(Registry) r = new_with_guest(NULL, "vm");
        Binding *b;

        g_assert_cmpint(registry_add_binding(r, "vm", 10, 1, 0, -1, 0, &b), ==, 0);

        g_assert_cmpint(binding_add_connection(b, ":1.1", &r->limits), ==, 0);
        g_assert_cmpint(binding_add_connection(b, ":1.2", NULL), ==, 0);
        g_assert_cmpint(binding_add_connection(b, ":1.1", &r->limits), ==, 0);
        g_assert_cmpuint(b->connections->len, ==, 2);
        g_assert_true(binding_has_connection(b, ":1.1"));
        g_assert_true(binding_has_connection(b, ":1.2"));
        g_assert_false(binding_has_connection(b, ":1.3"));
        g_assert_false(binding_has_connection(b, NULL));

        g_assert_cmpint(binding_add_connection(b, "org.example.Name", NULL), ==, -EINVAL);
        g_assert_cmpint(binding_add_connection(b, NULL, NULL), ==, -EINVAL);
        g_assert_cmpint(binding_add_connection(b, "", NULL), ==, -EINVAL);
        g_assert_cmpuint(b->connections->len, ==, 2);

        g_assert_true(binding_remove_connection(b, ":1.1"));
        g_assert_false(binding_remove_connection(b, ":1.1"));
        g_assert_false(binding_remove_connection(b, NULL));
        g_assert_false(binding_has_connection(b, ":1.1"));
        g_assert_true(binding_has_connection(b, ":1.2"));
        g_assert_cmpuint(b->connections->len, ==, 1);
}

static void test_connection_limit(void) {
        RegistryLimits limits = REGISTRY_LIMITS_DEFAULT;
        g_autoptr(Registry) r = NULL;
        Binding *b;

        limits.max_connections_per_binding = 3;
        r = new_with_guest(&limits, "vm");
        g_assert_cmpint(registry_add_binding(r, "vm", 10, 1, 0, -1, 0, &b), ==, 0);

        g_assert_cmpint(binding_add_connection(b, ":1.1", &r->limits), ==, 0);
        g_assert_cmpint(binding_add_connection(b, ":1.2", &r->limits), ==, 0);
        g_assert_cmpint(binding_add_connection(b, ":1.3", &r->limits), ==, 0);
        g_assert_cmpint(binding_add_connection(b, ":1.4", &r->limits), ==, -ENOBUFS);
        g_assert_false(binding_has_connection(b, ":1.4"));
        g_assert_cmpuint(b->connections->len, ==, 3);

        /* Already present is not an addition. */
        g_assert_cmpint(binding_add_connection(b, ":1.2", &r->limits), ==, 0);

        g_assert_true(binding_remove_connection(b, ":1.2"));
        g_assert_cmpint(binding_add_connection(b, ":1.4", &r->limits), ==, 0);
}

static void test_connection_forget(void) {
        g_autoptr(Registry) r = new_with_guest(NULL, "vm");
        Binding *b1, *b2, *b3;

        g_assert_cmpint(registry_add_guest(r, "vm2", NULL, NULL, false, 0, NULL), ==, 0);
        g_assert_cmpint(registry_add_binding(r, "vm", 10, 1, 0, -1, 0, &b1), ==, 0);
        g_assert_cmpint(registry_add_binding(r, "vm", 11, 1, 0, -1, 0, &b2), ==, 0);
        g_assert_cmpint(registry_add_binding(r, "vm2", 12, 1, 0, -1, 0, &b3), ==, 0);
        g_assert_cmpint(binding_add_connection(b1, ":1.5", NULL), ==, 0);
        g_assert_cmpint(binding_add_connection(b1, ":1.6", NULL), ==, 0);
        g_assert_cmpint(binding_add_connection(b2, ":1.5", NULL), ==, 0);
        g_assert_cmpint(binding_add_connection(b3, ":1.5", NULL), ==, 0);

        g_assert_cmpuint(registry_forget_connection(r, ":1.5"), ==, 3);
        g_assert_false(binding_has_connection(b1, ":1.5"));
        g_assert_false(binding_has_connection(b2, ":1.5"));
        g_assert_false(binding_has_connection(b3, ":1.5"));
        g_assert_true(binding_has_connection(b1, ":1.6"));

        g_assert_cmpuint(registry_forget_connection(r, ":1.5"), ==, 0);
        g_assert_cmpuint(registry_forget_connection(r, NULL), ==, 0);
}

static void test_bus_id(void) {
        g_autoptr(Registry) r = new_with_guest(NULL, "vm");
        Binding *b;

        g_assert_null(r->bus_id);
        g_assert_cmpint(registry_add_binding(r, "vm", 10, 1, 0, -1, 0, &b), ==, 0);

        registry_set_bus_id(r, "0123456789abcdef0123456789abcdef");
        g_assert_cmpstr(r->bus_id, ==, "0123456789abcdef0123456789abcdef");
        g_assert_cmpint(binding_add_connection(b, ":1.5", NULL), ==, 0);

        /* The same bus: names stay admitted. */
        registry_set_bus_id(r, "0123456789abcdef0123456789abcdef");
        g_assert_true(binding_has_connection(b, ":1.5"));

        /* Another bus instance: ":1.5" may be anyone there. */
        registry_set_bus_id(r, "fedcba9876543210fedcba9876543210");
        g_assert_cmpstr(r->bus_id, ==, "fedcba9876543210fedcba9876543210");
        g_assert_cmpuint(b->connections->len, ==, 0);

        g_assert_cmpint(binding_add_connection(b, ":1.5", NULL), ==, 0);
        registry_set_bus_id(r, NULL);
        g_assert_null(r->bus_id);
        g_assert_cmpuint(b->connections->len, ==, 0);
}

/* ---- scale ------------------------------------------------------------------------------ */

static void test_scale(void) {
        g_autoptr(Registry) r = registry_new(NULL);
        const unsigned n_guests = 500, n_grants = 20;

        for (unsigned i = 0; i < n_guests; i++) {
                g_autofree char *name = g_strdup_printf("guest-%05u", i);

                g_assert_cmpint(registry_add_guest(r, name, NULL, NULL, false, 0, NULL), ==, 0);
                for (unsigned j = 0; j < n_grants; j++) {
                        g_autofree char *path = g_strdup_printf("/img/%u/%u.qcow2", i, j);

                        g_assert_cmpint(registry_grant(r, name, path, IA_MODE_READ_WRITE), ==, 1);
                }
        }
        g_assert_cmpuint(r->n_grants, ==, (uint64_t) n_guests * n_grants);

        for (unsigned i = 0; i < n_guests; i += 7) {
                g_autofree char *name = g_strdup_printf("guest-%05u", i);
                g_autofree char *path = g_strdup_printf("/img/%u/%u.qcow2", i, i % n_grants);
                g_autofree char *other = g_strdup_printf("/img/%u/%u.qcow2", i + 1, 0);

                g_assert_cmpint(registry_check(r, name, path, IA_MODE_READ_WRITE), ==, 0);
                g_assert_cmpint(registry_check(r, name, other, IA_MODE_READ_ONLY), ==, -EPERM);
        }

        for (unsigned i = 0; i < n_guests; i += 2) {
                g_autofree char *name = g_strdup_printf("guest-%05u", i);

                g_assert_cmpint(registry_remove_guest(r, name), ==, 0);
        }
        g_assert_cmpuint(r->n_grants, ==, (uint64_t) (n_guests / 2) * n_grants);
}

int main(int argc, char *argv[]) {
        g_test_init(&argc, &argv, NULL);

        g_test_add_func("/registry/mode/strings", test_mode_strings);
        g_test_add_func("/registry/mode/covers", test_mode_covers);
        g_test_add_func("/registry/valid/name", test_name_valid);
        g_test_add_func("/registry/valid/uuid", test_uuid_valid);
        g_test_add_func("/registry/valid/description", test_description_valid);
        g_test_add_func("/registry/valid/unique-name", test_unique_name_valid);
        g_test_add_func("/registry/guest/add", test_guest_add);
        g_test_add_func("/registry/guest/by-uid", test_guest_by_uid);
        g_test_add_func("/registry/grant/directory", test_directory_grant);
        g_test_add_func("/registry/guest/invalid", test_guest_invalid);
        g_test_add_func("/registry/guest/duplicate", test_guest_duplicate);
        g_test_add_func("/registry/guest/limit", test_guest_limit);
        g_test_add_func("/registry/guest/limit-zero", test_guest_limit_zero);
        g_test_add_func("/registry/guest/remove", test_guest_remove);
        g_test_add_func("/registry/guest/clear", test_guest_clear);
        g_test_add_func("/registry/grant/add", test_grant_add);
        g_test_add_func("/registry/grant/duplicate", test_grant_duplicate);
        g_test_add_func("/registry/grant/change-mode", test_grant_change_mode);
        g_test_add_func("/registry/grant/invalid-path", test_grant_invalid_path);
        g_test_add_func("/registry/grant/invalid-mode", test_grant_invalid_mode);
        g_test_add_func("/registry/grant/unknown-guest", test_grant_unknown_guest);
        g_test_add_func("/registry/grant/limit", test_grant_limit);
        g_test_add_func("/registry/grant/revoke", test_revoke);
        g_test_add_func("/registry/grant/check", test_check);
        g_test_add_func("/registry/grant/mark-created", test_mark_created);
        g_test_add_func("/registry/grant/pinned", test_grant_pinned);
        g_test_add_func("/registry/grant/undo", test_grant_undo);
        g_test_add_func("/registry/grant/load", test_grant_load);
        g_test_add_func("/registry/binding/add", test_binding_add);
        g_test_add_func("/registry/binding/replace", test_binding_replace);
        g_test_add_func("/registry/binding/limit", test_binding_limit);
        g_test_add_func("/registry/binding/errors", test_binding_errors);
        g_test_add_func("/registry/binding/remove", test_binding_remove);
        g_test_add_func("/registry/connection/add-remove", test_connection_add_remove);
        g_test_add_func("/registry/connection/limit", test_connection_limit);
        g_test_add_func("/registry/connection/forget", test_connection_forget);
        g_test_add_func("/registry/bus-id", test_bus_id);
        g_test_add_func("/registry/scale", test_scale);

        return g_test_run();
}

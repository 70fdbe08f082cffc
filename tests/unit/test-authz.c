/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-authz.c — unit tests for the decision cache of daemon/authz.c (AuthzCache): which
 * polkit yes may be reused for which later question.  Mode coverage, expiry, invalidation
 * by generation, keys (action and every detail but the mode), per-connection caches, the
 * size bound.  The polkit round trips themselves are tested against the real polkitd
 * (tests/integration/test_decision_cache.py).
 */
#include <glib.h>

#include "authz.h"
#include "ia-common.h"

#define SEC 1000000ULL
#define LIFETIME (5 * SEC)

/* The details OpenImage asks polkit with, for @mode. */
#define DETAILS(image, mode) \
        ((const char *const[]) { "guest", "vm1", "image", image, "mode", mode, \
                                 "guest-uuid", "", NULL })

static bool hit(AuthzCache *c, const char *image, const char *mode, uint64_t gen, uint64_t now) {
        return authz_cache_lookup(c, IA_ACTION_OPEN_IMAGE, DETAILS(image, mode), gen, now);
}

static void remember(AuthzCache *c, const char *image, const char *mode, uint64_t gen,
                     uint64_t now) {
        authz_cache_remember(c, IA_ACTION_OPEN_IMAGE, DETAILS(image, mode), gen, now, LIFETIME);
}

static void test_empty(void) {
        g_autoptr(AuthzCache) c = authz_cache_new();

        g_assert_false(hit(c, "/i/a.qcow2", "read-only", 0, 0));
        g_assert_cmpuint(authz_cache_size(c), ==, 0);
}

/* A yes for a mode covers the weaker ones, never a stronger one. */
static void test_mode_coverage(void) {
        g_autoptr(AuthzCache) c = authz_cache_new();

        remember(c, "/i/a.qcow2", "read-write", 1, 0);
        g_assert_true(hit(c, "/i/a.qcow2", "read-only", 1, 1));
        g_assert_true(hit(c, "/i/a.qcow2", "read-write", 1, 1));
        g_assert_false(hit(c, "/i/a.qcow2", "create", 1, 1));

        remember(c, "/i/b.qcow2", "read-only", 1, 0);
        g_assert_true(hit(c, "/i/b.qcow2", "read-only", 1, 1));
        g_assert_false(hit(c, "/i/b.qcow2", "read-write", 1, 1));
        g_assert_false(hit(c, "/i/b.qcow2", "create", 1, 1));

        remember(c, "/i/c.qcow2", "create", 1, 0);
        g_assert_true(hit(c, "/i/c.qcow2", "read-only", 1, 1));
        g_assert_true(hit(c, "/i/c.qcow2", "read-write", 1, 1));
        g_assert_true(hit(c, "/i/c.qcow2", "create", 1, 1));
}

/* An invalid or missing mode is never a hit, and a yes without a mode covers nothing. */
static void test_mode_invalid(void) {
        g_autoptr(AuthzCache) c = authz_cache_new();

        remember(c, "/i/a.qcow2", "read-write", 1, 0);
        g_assert_false(hit(c, "/i/a.qcow2", "bogus", 1, 1));
        g_assert_false(authz_cache_lookup(c, IA_ACTION_OPEN_IMAGE,
                                          (const char *const[]) { "guest", "vm1", "image", "/i/a.qcow2",
                                                                  "guest-uuid", "", NULL },
                                          1, 1));

        remember(c, "/i/b.qcow2", "bogus", 1, 0);
        g_assert_false(hit(c, "/i/b.qcow2", "read-only", 1, 1));
}

/* Keep the stronger of two current yeses; a weaker one does not replace it. */
static void test_stronger_kept(void) {
        g_autoptr(AuthzCache) c = authz_cache_new();

        remember(c, "/i/a.qcow2", "read-write", 1, 0);
        remember(c, "/i/a.qcow2", "read-only", 1, 1);
        g_assert_true(hit(c, "/i/a.qcow2", "read-write", 1, 2));
        /* ... but a stronger one does replace a weaker one. */
        remember(c, "/i/a.qcow2", "create", 1, 2);
        g_assert_true(hit(c, "/i/a.qcow2", "create", 1, 3));
        g_assert_cmpuint(authz_cache_size(c), ==, 1);
}

/* A weaker yes replaces a stronger one that is no longer current (expired or voided). */
static void test_stale_replaced(void) {
        g_autoptr(AuthzCache) c = authz_cache_new();

        remember(c, "/i/a.qcow2", "read-write", 1, 0);
        remember(c, "/i/a.qcow2", "read-only", 2, 1);
        g_assert_true(hit(c, "/i/a.qcow2", "read-only", 2, 2));
        g_assert_false(hit(c, "/i/a.qcow2", "read-write", 2, 2));

        remember(c, "/i/b.qcow2", "read-write", 2, 0);
        remember(c, "/i/b.qcow2", "read-only", 2, LIFETIME);
        g_assert_false(hit(c, "/i/b.qcow2", "read-write", 2, LIFETIME + 1));
        g_assert_true(hit(c, "/i/b.qcow2", "read-only", 2, LIFETIME + 1));
}

/* A yes lives for its lifetime, not a microsecond more, and is dropped when found expired. */
static void test_expiry(void) {
        g_autoptr(AuthzCache) c = authz_cache_new();

        remember(c, "/i/a.qcow2", "read-only", 1, 10 * SEC);
        g_assert_true(hit(c, "/i/a.qcow2", "read-only", 1, 10 * SEC));
        g_assert_true(hit(c, "/i/a.qcow2", "read-only", 1, 10 * SEC + LIFETIME - 1));
        g_assert_false(hit(c, "/i/a.qcow2", "read-only", 1, 10 * SEC + LIFETIME));
        g_assert_cmpuint(authz_cache_size(c), ==, 0);
        /* Gone for good, even if the clock were to read earlier again. */
        g_assert_false(hit(c, "/i/a.qcow2", "read-only", 1, 10 * SEC));
}

/* Anything that may change polkit's answer bumps the generation: older yeses are void. */
static void test_invalidation(void) {
        g_autoptr(AuthzCache) c = authz_cache_new();

        remember(c, "/i/a.qcow2", "read-only", 7, 0);
        remember(c, "/i/b.qcow2", "read-only", 7, 0);
        g_assert_true(hit(c, "/i/a.qcow2", "read-only", 7, 1));
        g_assert_false(hit(c, "/i/a.qcow2", "read-only", 8, 1));
        g_assert_cmpuint(authz_cache_size(c), ==, 1);
        /* No way back: a current generation never revives an entry of another. */
        g_assert_false(hit(c, "/i/b.qcow2", "read-only", 6, 1));
        g_assert_false(hit(c, "/i/b.qcow2", "read-only", 7, 1));
}

/* The key is the action and every detail but the mode. */
static void test_keys(void) {
        g_autoptr(AuthzCache) c = authz_cache_new();

        remember(c, "/i/a.qcow2", "read-write", 1, 0);
        g_assert_false(hit(c, "/i/b.qcow2", "read-only", 1, 1));
        g_assert_false(hit(c, "/i/a.qcow", "read-only", 1, 1));
        g_assert_false(authz_cache_lookup(c, IA_ACTION_OPEN_IMAGE,
                                          (const char *const[]) { "guest", "vm2", "image", "/i/a.qcow2",
                                                                  "mode", "read-only", "guest-uuid", "", NULL },
                                          1, 1));
        g_assert_false(authz_cache_lookup(c, IA_ACTION_OPEN_IMAGE,
                                          (const char *const[]) { "guest", "vm1", "image", "/i/a.qcow2",
                                                                  "mode", "read-only",
                                                                  "guest-uuid", "0f3c5a6e-1b2d-4c8e-9a7f-112233445566", NULL },
                                          1, 1));
        g_assert_false(authz_cache_lookup(c, IA_ACTION_GRANT_IMAGE, DETAILS("/i/a.qcow2", "read-only"),
                                          1, 1));
        g_assert_true(hit(c, "/i/a.qcow2", "read-only", 1, 1));
}

/* A key longer than the stack buffer (a path near IMAGE_PATH_MAX) works the same. */
static void test_long_key(void) {
        g_autoptr(AuthzCache) c = authz_cache_new();
        g_autofree char *a = g_strnfill(3000, 'a');
        g_autofree char *b = g_strnfill(3000, 'a');
        g_autofree char *image_a = NULL, *image_b = NULL;

        b[2999] = 'b';
        image_a = g_strconcat("/i/", a, NULL);
        image_b = g_strconcat("/i/", b, NULL);
        remember(c, image_a, "read-write", 1, 0);
        g_assert_true(hit(c, image_a, "read-only", 1, 1));
        g_assert_false(hit(c, image_b, "read-only", 1, 1));
        g_assert_false(hit(c, image_a, "create", 1, 1));
        g_assert_false(hit(c, image_a, "read-only", 2, 1));
        g_assert_cmpuint(authz_cache_size(c), ==, 0);
}

/* Each connection has its own cache: a yes to one is never a yes to another. */
static void test_per_connection(void) {
        g_autoptr(AuthzCache) emu1 = authz_cache_new();
        g_autoptr(AuthzCache) emu2 = authz_cache_new();

        remember(emu1, "/i/a.qcow2", "read-write", 1, 0);
        g_assert_true(hit(emu1, "/i/a.qcow2", "read-write", 1, 1));
        g_assert_false(hit(emu2, "/i/a.qcow2", "read-only", 1, 1));
        g_assert_cmpuint(authz_cache_size(emu2), ==, 0);
}

/* At the bound the cache starts afresh rather than growing. */
static void test_bound(void) {
        g_autoptr(AuthzCache) c = authz_cache_new();

        for (unsigned i = 0; i < AUTHZ_CACHE_MAX; i++) {
                g_autofree char *image = g_strdup_printf("/i/%u.qcow2", i);

                remember(c, image, "read-only", 1, 0);
        }
        g_assert_cmpuint(authz_cache_size(c), ==, AUTHZ_CACHE_MAX);
        g_assert_true(hit(c, "/i/0.qcow2", "read-only", 1, 1));
        remember(c, "/i/new.qcow2", "read-only", 1, 1);
        g_assert_cmpuint(authz_cache_size(c), ==, 1);
        g_assert_false(hit(c, "/i/0.qcow2", "read-only", 1, 2));
        g_assert_true(hit(c, "/i/new.qcow2", "read-only", 1, 2));
}

int main(int argc, char *argv[]) {
        g_test_init(&argc, &argv, NULL);
        g_test_add_func("/authz/cache/empty", test_empty);
        g_test_add_func("/authz/cache/mode-coverage", test_mode_coverage);
        g_test_add_func("/authz/cache/mode-invalid", test_mode_invalid);
        g_test_add_func("/authz/cache/stronger-kept", test_stronger_kept);
        g_test_add_func("/authz/cache/stale-replaced", test_stale_replaced);
        g_test_add_func("/authz/cache/expiry", test_expiry);
        g_test_add_func("/authz/cache/invalidation", test_invalidation);
        g_test_add_func("/authz/cache/keys", test_keys);
        g_test_add_func("/authz/cache/long-key", test_long_key);
        g_test_add_func("/authz/cache/per-connection", test_per_connection);
        g_test_add_func("/authz/cache/bound", test_bound);
        return g_test_run();
}

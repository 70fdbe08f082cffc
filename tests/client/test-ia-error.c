/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-ia-error — the error map of libimageaccess gives every name of ia-common.h the errno
 * documented there, and IaError behaves as its kernel-doc says.  No bus needed.
 */

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "ia-client.h"

static void test_map(void) {
        static const struct {
                const char *name;
                int err;
        } cases[] = {
                { IA_ERROR_UNKNOWN_GUEST,    ESRCH },
                { IA_ERROR_GUEST_EXISTS,     EEXIST },
                { IA_ERROR_NOT_GRANTED,      EPERM },
                { IA_ERROR_NOT_BOUND,        ENOLINK },
                { IA_ERROR_INVALID_NAME,     EINVAL },
                { IA_ERROR_INVALID_PATH,     EINVAL },
                { IA_ERROR_INVALID_MODE,     EINVAL },
                { IA_ERROR_INVALID_OPTION,   EINVAL },
                { IA_ERROR_INVALID_PROCESS,  ESRCH },
                { IA_ERROR_FILE_EXISTS,      EEXIST },
                { IA_ERROR_NOT_FOUND,        ENOENT },
                { IA_ERROR_WRONG_FILE_TYPE,  EMEDIUMTYPE },
                { IA_ERROR_SYMLINK,          ELOOP },
                { IA_ERROR_NOT_CREATED,      EPERM },
                { IA_ERROR_LIMIT_EXCEEDED,   ENOBUFS },
                { IA_ERROR_NO_SPACE,         ENOSPC },
                { IA_ERROR_DEVICE_BUSY,      EBUSY },
                { IA_ERROR_AUTH_UNAVAILABLE, EHOSTDOWN },
                { IA_ERROR_IO,               EIO },
                /* standard names keep sd-bus's mapping */
                { "org.freedesktop.DBus.Error.AccessDenied", EACCES },
                { "org.freedesktop.DBus.Error.NoReply",      ETIMEDOUT },
                { "org.example.ImageAccess.Error.NoSuchName", EIO },
        };

        for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
                g_test_message("%s", cases[i].name);
                g_assert_cmpint(ia_error_name_to_errno(cases[i].name), ==, -cases[i].err);
        }
        g_assert_cmpint(ia_error_name_to_errno(NULL), ==, -EINVAL);
}

static void test_ia_error(void) {
        IaError e = {};

        g_assert_false(ia_error_has_name(&e, IA_ERROR_NOT_GRANTED));
        g_assert_false(ia_error_has_name(NULL, IA_ERROR_NOT_GRANTED));
        e.name = strdup(IA_ERROR_NOT_GRANTED);
        e.message = strdup("no");
        e.error = -EPERM;
        g_assert_true(ia_error_has_name(&e, IA_ERROR_NOT_GRANTED));
        ia_error_done(&e);
        g_assert_null(e.name);
        g_assert_null(e.message);
        g_assert_cmpint(e.error, ==, 0);
        ia_error_done(&e);
        ia_error_done(NULL);
}

static void test_modes(void) {
        for (int m = IA_IMAGE_MODE_READ_ONLY; m <= IA_IMAGE_MODE_CREATE; m++)
                g_assert_cmpint(ia_image_mode_from_string(ia_image_mode_to_string(m)), ==, m);
        g_assert_cmpstr(ia_image_mode_to_string(IA_IMAGE_MODE_READ_ONLY), ==, IA_MODE_READ_ONLY_STR);
        g_assert_cmpstr(ia_image_mode_to_string(IA_IMAGE_MODE_CREATE), ==, IA_MODE_CREATE_STR);
        g_assert_null(ia_image_mode_to_string(IA_IMAGE_MODE_UNKNOWN));
        g_assert_cmpint(ia_image_mode_from_string("rw"), ==, -EINVAL);
        g_assert_cmpint(ia_image_mode_from_string(NULL), ==, -EINVAL);
}

static void test_bad_arguments(void) {
        IaClient *c = (IaClient *) 0x1; /* never dereferenced: checks come first */
        IaError e = {};
        int fd = 12345;

        g_assert_cmpint(ia_client_new(NULL), ==, -EINVAL);
        g_assert_cmpint(ia_client_new_with_address("", &c), ==, -EINVAL);
        g_assert_cmpint(ia_client_open(NULL, "g", "/x", IA_IMAGE_MODE_READ_ONLY, 0, &e, &fd), ==,
                        -EINVAL);
        g_assert_cmpint(fd, ==, 12345);  /* ret_* untouched on failure */
        g_assert_cmpstr(e.name, ==, "System.Error.EINVAL");
        g_assert_cmpint(e.error, ==, -EINVAL);
        ia_error_done(&e);
        g_assert_null(ia_client_unref(NULL));
        g_assert_null(ia_batch_unref(NULL));
        g_assert_null(ia_request_unref(NULL));
        g_assert_null(ia_strv_free(NULL));
        g_assert_null(ia_guest_info_list_free(NULL));
        g_assert_null(ia_grant_info_list_free(NULL));
}

int main(int argc, char **argv) {
        g_test_init(&argc, &argv, NULL);
        g_test_add_func("/ia-error/map", test_map);
        g_test_add_func("/ia-error/ia-error", test_ia_error);
        g_test_add_func("/ia-client/modes", test_modes);
        g_test_add_func("/ia-client/bad-arguments", test_bad_arguments);
        return g_test_run();
}

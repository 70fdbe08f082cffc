/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * gdbus-proxy-test — opens an image through a proxy that gdbus-codegen generated from the
 * installed interface XML (dbus-interfaces/org.example.ImageAccess.xml), as a GDBus program
 * that does not use libimageaccess would.  The org.gtk.GDBus.C.UnixFD annotation of
 * OpenImage is what gives the generated call a GUnixFDList to receive the fd in.
 *
 *   gdbus-proxy-test ADDRESS GUEST PATH MODE
 *
 * Prints one JSON object: {"fd": N, "accmode": "O_RDONLY"|"O_RDWR", "cloexec": bool} or
 * {"error": "D-Bus error name", "message": "..."}.
 */

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>

#include <gio/gio.h>
#include <gio/gunixfdlist.h>

#include "ia-gdbus.h"

int main(int argc, char **argv) {
        g_autoptr(GDBusConnection) bus = NULL;
        g_autoptr(IaGdbusImageAccess) proxy = NULL;
        g_autoptr(GUnixFDList) fds = NULL;
        g_autoptr(GVariant) handle = NULL;
        g_autoptr(GError) error = NULL;
        g_autofree char *remote = NULL;
        int fd, fl, fdfl;

        if (argc != 5) {
                fprintf(stderr, "usage: gdbus-proxy-test ADDRESS GUEST PATH MODE\n");
                return EXIT_FAILURE;
        }
        bus = g_dbus_connection_new_for_address_sync(
                argv[1], G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_CLIENT |
                G_DBUS_CONNECTION_FLAGS_MESSAGE_BUS_CONNECTION, NULL, NULL, &error);
        if (bus)
                proxy = ia_gdbus_image_access_proxy_new_sync(
                        bus, G_DBUS_PROXY_FLAGS_DO_NOT_LOAD_PROPERTIES, "org.example.ImageAccess",
                        "/org/example/ImageAccess", NULL, &error);
        if (proxy) {
                GVariantBuilder options;

                g_variant_builder_init(&options, G_VARIANT_TYPE("a{sv}"));
                (void) ia_gdbus_image_access_call_open_image_sync(
                        proxy, argv[2], argv[3], argv[4], g_variant_builder_end(&options),
                        /* fd_list= */ NULL, &handle, &fds, NULL, &error);
        }
        if (error) {
                remote = g_dbus_error_get_remote_error(error);
                g_dbus_error_strip_remote_error(error);
                printf("{\"error\": \"%s\", \"message\": \"%s\"}\n", remote ?: "local",
                       error->message);
                return EXIT_SUCCESS;
        }

        /* The handle is an index into the fd list; _get() returns a duplicate we own. */
        fd = g_unix_fd_list_get(fds, g_variant_get_handle(handle), &error);
        if (fd < 0) {
                printf("{\"error\": \"local\", \"message\": \"%s\"}\n", error->message);
                return EXIT_SUCCESS;
        }
        fl = fcntl(fd, F_GETFL);
        fdfl = fcntl(fd, F_GETFD);
        printf("{\"fd\": %d, \"accmode\": \"%s\", \"cloexec\": %s}\n", fd,
               (fl & O_ACCMODE) == O_RDONLY ? "O_RDONLY" :
               (fl & O_ACCMODE) == O_RDWR ? "O_RDWR" : "O_WRONLY",
               fdfl >= 0 && (fdfl & FD_CLOEXEC) ? "true" : "false");
        close(fd);
        return EXIT_SUCCESS;
}

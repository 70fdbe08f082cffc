/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ia-gobject.h — the GObject face of libimageaccess (libimageaccess-gobject), for GLib
 * programs and, through GObject Introspection (ImageAccess-0.1), for Python, GJS and Vala.
 *
 * libimageaccess's own headers carry no GLib type, so this is a separate small library on
 * top of its public API.  Its names use the ImageAccess / image_access_ prefix rather than
 * Ia / ia_: the plain library owns ia_client_*, and the introspected names read naturally
 * (ImageAccess.Client, ImageAccess.Error.NOT_GRANTED).
 *
 * Every call exists as _sync (blocks; may wait minutes when polkit asks a person for a
 * password) and as an asynchronous pair (GAsyncReadyCallback + GCancellable, then _finish).
 * Asynchronous calls complete in the thread-default main context of the thread that made
 * the client; use a client from that thread only.  Cancelling a pending call gives
 * G_IO_ERROR_CANCELLED at once; the service may still carry the call out, and an fd that
 * arrives after cancellation is closed by the library.
 *
 * Errors: named errors of the service map to IMAGE_ACCESS_ERROR codes; the message is the
 * service's.  Errors without a code of their own are IMAGE_ACCESS_ERROR_FAILED, with the
 * D-Bus name at the head of the message.
 */
#pragma once

#include <gio/gio.h>

#include "ia-gobject-enums.h"

G_BEGIN_DECLS

/**
 * IMAGE_ACCESS_UID_NONE:
 *
 * "No uid": a guest bound to no uid (only to processes).  Uids are gint64 in this API so
 * that every uid and this value fit in a type every language binding has.
 */
#define IMAGE_ACCESS_UID_NONE (-1)

/**
 * ImageAccessMode:
 * @IMAGE_ACCESS_MODE_UNKNOWN: a mode this library does not know (only in listings)
 * @IMAGE_ACCESS_MODE_READ_ONLY: "read-only": the fd is O_RDONLY
 * @IMAGE_ACCESS_MODE_READ_WRITE: "read-write": the fd is O_RDWR
 * @IMAGE_ACCESS_MODE_CREATE: "create": the service creates the file; the fd is O_RDWR
 *
 * How an image is opened; a grant of a mode covers the weaker ones.
 */
typedef enum {
        IMAGE_ACCESS_MODE_UNKNOWN = -1,
        IMAGE_ACCESS_MODE_READ_ONLY = 0,
        IMAGE_ACCESS_MODE_READ_WRITE = 1,
        IMAGE_ACCESS_MODE_CREATE = 2,
} ImageAccessMode;

/**
 * ImageAccessOpenFlags:
 * @IMAGE_ACCESS_OPEN_FLAGS_NONE: none
 * @IMAGE_ACCESS_OPEN_FLAGS_DIRECT: O_DIRECT
 * @IMAGE_ACCESS_OPEN_FLAGS_NONBLOCK: keep O_NONBLOCK
 *
 * Options of image_access_client_open_image().
 */
typedef enum /*< flags >*/ {
        IMAGE_ACCESS_OPEN_FLAGS_NONE = 0,
        IMAGE_ACCESS_OPEN_FLAGS_DIRECT = 1 << 0,
        IMAGE_ACCESS_OPEN_FLAGS_NONBLOCK = 1 << 1,
} ImageAccessOpenFlags;

/**
 * ImageAccessRevokeFlags:
 * @IMAGE_ACCESS_REVOKE_FLAGS_NONE: none
 * @IMAGE_ACCESS_REVOKE_FLAGS_REMOVE_CREATED: also remove the file the service created for
 *   the grant (only if it is still that very inode)
 *
 * Options of image_access_client_revoke_image().
 */
typedef enum /*< flags >*/ {
        IMAGE_ACCESS_REVOKE_FLAGS_NONE = 0,
        IMAGE_ACCESS_REVOKE_FLAGS_REMOVE_CREATED = 1 << 0,
} ImageAccessRevokeFlags;

/**
 * ImageAccessPolkitAnswer:
 * @IMAGE_ACCESS_POLKIT_ANSWER_NOT_AUTHORIZED: no
 * @IMAGE_ACCESS_POLKIT_ANSWER_AUTHORIZED: yes
 * @IMAGE_ACCESS_POLKIT_ANSWER_CHALLENGE: only after authentication (an emulator's
 *   OpenImage then fails with InteractiveAuthorizationRequired)
 *
 * What polkit answers for an emulator's OpenImage (image_access_client_explain_polkit()).
 */
typedef enum {
        IMAGE_ACCESS_POLKIT_ANSWER_NOT_AUTHORIZED = 0,
        IMAGE_ACCESS_POLKIT_ANSWER_AUTHORIZED = 1,
        IMAGE_ACCESS_POLKIT_ANSWER_CHALLENGE = 2,
} ImageAccessPolkitAnswer;

/**
 * ImageAccessError:
 * @IMAGE_ACCESS_ERROR_FAILED: any other error; the message starts with its D-Bus name
 * @IMAGE_ACCESS_ERROR_UNKNOWN_GUEST: org.example.ImageAccess.Error.UnknownGuest
 * @IMAGE_ACCESS_ERROR_GUEST_EXISTS: ...GuestExists
 * @IMAGE_ACCESS_ERROR_NOT_GRANTED: ...NotGranted
 * @IMAGE_ACCESS_ERROR_NOT_BOUND: ...NotBound
 * @IMAGE_ACCESS_ERROR_INVALID_NAME: ...InvalidName
 * @IMAGE_ACCESS_ERROR_INVALID_PATH: ...InvalidPath
 * @IMAGE_ACCESS_ERROR_INVALID_MODE: ...InvalidMode
 * @IMAGE_ACCESS_ERROR_INVALID_OPTION: ...InvalidOption
 * @IMAGE_ACCESS_ERROR_INVALID_PROCESS: ...InvalidProcess
 * @IMAGE_ACCESS_ERROR_FILE_EXISTS: ...FileExists
 * @IMAGE_ACCESS_ERROR_NOT_FOUND: ...NotFound
 * @IMAGE_ACCESS_ERROR_WRONG_FILE_TYPE: ...WrongFileType
 * @IMAGE_ACCESS_ERROR_SYMLINK_REFUSED: ...SymlinkRefused
 * @IMAGE_ACCESS_ERROR_NOT_CREATED_BY_SERVICE: ...NotCreatedByService
 * @IMAGE_ACCESS_ERROR_LIMIT_EXCEEDED: ...LimitExceeded
 * @IMAGE_ACCESS_ERROR_NO_SPACE: ...NoSpace
 * @IMAGE_ACCESS_ERROR_AUTHORIZATION_UNAVAILABLE: ...AuthorizationUnavailable
 * @IMAGE_ACCESS_ERROR_IO: ...IOError
 * @IMAGE_ACCESS_ERROR_ACCESS_DENIED: org.freedesktop.DBus.Error.AccessDenied (polkit said no)
 * @IMAGE_ACCESS_ERROR_INTERACTIVE_AUTHORIZATION_REQUIRED:
 *   org.freedesktop.DBus.Error.InteractiveAuthorizationRequired (polkit wants a password and
 *   the client did not allow interactive authorization)
 * @IMAGE_ACCESS_ERROR_AUTHENTICATION_FAILED: ...AuthenticationFailed (polkit asked a person,
 *   who cancelled, typed a wrong password or did not answer in time; or no agent was there)
 * @IMAGE_ACCESS_ERROR_NO_REPLY: org.freedesktop.DBus.Error.NoReply (timeout, or the service
 *   died: the call may or may not have been carried out)
 * @IMAGE_ACCESS_ERROR_SERVICE_UNKNOWN: the service is not running and cannot be started
 * @IMAGE_ACCESS_ERROR_INVALID_ARGUMENT: the library refused an argument before sending
 * @IMAGE_ACCESS_ERROR_DEVICE_BUSY: ...DeviceBusy (a read-write open of a block device that
 *   is mounted or claimed by someone else)
 *
 * Error codes of the IMAGE_ACCESS_ERROR domain.
 */
typedef enum {
        IMAGE_ACCESS_ERROR_FAILED,
        IMAGE_ACCESS_ERROR_UNKNOWN_GUEST,
        IMAGE_ACCESS_ERROR_GUEST_EXISTS,
        IMAGE_ACCESS_ERROR_NOT_GRANTED,
        IMAGE_ACCESS_ERROR_NOT_BOUND,
        IMAGE_ACCESS_ERROR_INVALID_NAME,
        IMAGE_ACCESS_ERROR_INVALID_PATH,
        IMAGE_ACCESS_ERROR_INVALID_MODE,
        IMAGE_ACCESS_ERROR_INVALID_OPTION,
        IMAGE_ACCESS_ERROR_INVALID_PROCESS,
        IMAGE_ACCESS_ERROR_FILE_EXISTS,
        IMAGE_ACCESS_ERROR_NOT_FOUND,
        IMAGE_ACCESS_ERROR_WRONG_FILE_TYPE,
        IMAGE_ACCESS_ERROR_SYMLINK_REFUSED,
        IMAGE_ACCESS_ERROR_NOT_CREATED_BY_SERVICE,
        IMAGE_ACCESS_ERROR_LIMIT_EXCEEDED,
        IMAGE_ACCESS_ERROR_NO_SPACE,
        IMAGE_ACCESS_ERROR_AUTHORIZATION_UNAVAILABLE,
        IMAGE_ACCESS_ERROR_IO,
        IMAGE_ACCESS_ERROR_ACCESS_DENIED,
        IMAGE_ACCESS_ERROR_INTERACTIVE_AUTHORIZATION_REQUIRED,
        IMAGE_ACCESS_ERROR_AUTHENTICATION_FAILED,
        IMAGE_ACCESS_ERROR_NO_REPLY,
        IMAGE_ACCESS_ERROR_SERVICE_UNKNOWN,
        IMAGE_ACCESS_ERROR_INVALID_ARGUMENT,
        IMAGE_ACCESS_ERROR_DEVICE_BUSY,
} ImageAccessError;

/**
 * IMAGE_ACCESS_ERROR:
 *
 * The error domain of libimageaccess-gobject.
 */
#define IMAGE_ACCESS_ERROR (image_access_error_quark())
GQuark image_access_error_quark(void);

/**
 * image_access_error_from_dbus_name:
 * @name: a D-Bus error name
 *
 * Returns: the code @name maps to, #IMAGE_ACCESS_ERROR_FAILED for names without one.
 */
ImageAccessError image_access_error_from_dbus_name(const char *name);

/**
 * ImageAccessGuest:
 * @name: the guest name
 * @uuid: (nullable): its UUID
 * @description: (nullable): free text
 * @uid: the uid it is bound to, or #IMAGE_ACCESS_UID_NONE
 * @n_grants: number of grants
 * @n_processes: bound processes still running
 *
 * One guest of image_access_client_list_guests().
 */
typedef struct {
        char *name;
        char *uuid;
        char *description;
        gint64 uid;
        guint32 n_grants;
        guint32 n_processes;
} ImageAccessGuest;

GType image_access_guest_get_type(void);
#define IMAGE_ACCESS_TYPE_GUEST (image_access_guest_get_type())
ImageAccessGuest *image_access_guest_copy(const ImageAccessGuest *guest);
void image_access_guest_free(ImageAccessGuest *guest);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(ImageAccessGuest, image_access_guest_free)

/**
 * ImageAccessGrant:
 * @path: the granted path
 * @mode: the mode granted
 * @created: the service created the file for this guest
 * @pinned: the grant is tied to the file (@device, @inode); false only for a create grant
 *   whose file the service has not made yet
 * @device: st_dev of the file
 * @inode: st_ino of the file
 *
 * One grant of image_access_client_list_grants().
 */
typedef struct {
        char *path;
        ImageAccessMode mode;
        gboolean created;
        gboolean pinned;
        guint64 device;
        guint64 inode;
} ImageAccessGrant;

GType image_access_grant_get_type(void);
#define IMAGE_ACCESS_TYPE_GRANT (image_access_grant_get_type())
ImageAccessGrant *image_access_grant_copy(const ImageAccessGrant *grant);
void image_access_grant_free(ImageAccessGrant *grant);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(ImageAccessGrant, image_access_grant_free)

#define IMAGE_ACCESS_TYPE_CLIENT (image_access_client_get_type())
G_DECLARE_FINAL_TYPE(ImageAccessClient, image_access_client, IMAGE_ACCESS, CLIENT, GObject)

ImageAccessClient *image_access_client_new_sync(const char *address, GCancellable *cancellable,
                                                GError **error);

const char *image_access_client_get_address(ImageAccessClient *client);
gboolean image_access_client_get_allow_interactive_authorization(ImageAccessClient *client);
void image_access_client_set_allow_interactive_authorization(ImageAccessClient *client,
                                                             gboolean allow);
guint64 image_access_client_get_timeout(ImageAccessClient *client);
void image_access_client_set_timeout(ImageAccessClient *client, guint64 usec);

/* ---- opening an image (emulators) ---- */

int image_access_client_open_image_sync(ImageAccessClient *client, const char *guest,
                                        const char *path, ImageAccessMode mode,
                                        ImageAccessOpenFlags flags, GCancellable *cancellable,
                                        GError **error);
void image_access_client_open_image(ImageAccessClient *client, const char *guest,
                                    const char *path, ImageAccessMode mode,
                                    ImageAccessOpenFlags flags, GCancellable *cancellable,
                                    GAsyncReadyCallback callback, gpointer user_data);
int image_access_client_open_image_finish(ImageAccessClient *client, GAsyncResult *result,
                                          GError **error);

/* ---- manager calls (VM managers) ---- */

gboolean image_access_client_register_guest_sync(ImageAccessClient *client, const char *name,
                                                 const char *uuid, const char *description,
                                                 gint64 uid, GCancellable *cancellable,
                                                 GError **error);
void image_access_client_register_guest(ImageAccessClient *client, const char *name,
                                        const char *uuid, const char *description,
                                        gint64 uid, GCancellable *cancellable,
                                        GAsyncReadyCallback callback, gpointer user_data);
gboolean image_access_client_register_guest_finish(ImageAccessClient *client,
                                                   GAsyncResult *result, GError **error);

gboolean image_access_client_unregister_guest_sync(ImageAccessClient *client, const char *name,
                                                   GCancellable *cancellable, GError **error);
void image_access_client_unregister_guest(ImageAccessClient *client, const char *name,
                                          GCancellable *cancellable,
                                          GAsyncReadyCallback callback, gpointer user_data);
gboolean image_access_client_unregister_guest_finish(ImageAccessClient *client,
                                                     GAsyncResult *result, GError **error);

gboolean image_access_client_bind_process_sync(ImageAccessClient *client, const char *guest,
                                               int pidfd, GCancellable *cancellable,
                                               GError **error);
void image_access_client_bind_process(ImageAccessClient *client, const char *guest, int pidfd,
                                      GCancellable *cancellable, GAsyncReadyCallback callback,
                                      gpointer user_data);
gboolean image_access_client_bind_process_finish(ImageAccessClient *client,
                                                 GAsyncResult *result, GError **error);

gboolean image_access_client_grant_image_sync(ImageAccessClient *client, const char *guest,
                                              const char *path, ImageAccessMode mode,
                                              GCancellable *cancellable, GError **error);
void image_access_client_grant_image(ImageAccessClient *client, const char *guest,
                                     const char *path, ImageAccessMode mode,
                                     GCancellable *cancellable, GAsyncReadyCallback callback,
                                     gpointer user_data);
gboolean image_access_client_grant_image_finish(ImageAccessClient *client,
                                                GAsyncResult *result, GError **error);

gboolean image_access_client_revoke_image_sync(ImageAccessClient *client, const char *guest,
                                               const char *path, ImageAccessRevokeFlags flags,
                                               GCancellable *cancellable, GError **error);
void image_access_client_revoke_image(ImageAccessClient *client, const char *guest,
                                      const char *path, ImageAccessRevokeFlags flags,
                                      GCancellable *cancellable, GAsyncReadyCallback callback,
                                      gpointer user_data);
gboolean image_access_client_revoke_image_finish(ImageAccessClient *client,
                                                 GAsyncResult *result, GError **error);

GPtrArray *image_access_client_list_guests_sync(ImageAccessClient *client,
                                                GCancellable *cancellable, GError **error);
void image_access_client_list_guests(ImageAccessClient *client, GCancellable *cancellable,
                                     GAsyncReadyCallback callback, gpointer user_data);
GPtrArray *image_access_client_list_guests_finish(ImageAccessClient *client,
                                                  GAsyncResult *result, GError **error);

GPtrArray *image_access_client_list_grants_sync(ImageAccessClient *client, const char *guest,
                                                GCancellable *cancellable, GError **error);
void image_access_client_list_grants(ImageAccessClient *client, const char *guest,
                                     GCancellable *cancellable, GAsyncReadyCallback callback,
                                     gpointer user_data);
GPtrArray *image_access_client_list_grants_finish(ImageAccessClient *client,
                                                  GAsyncResult *result, GError **error);

ImageAccessPolkitAnswer image_access_client_explain_polkit_sync(ImageAccessClient *client,
                                                                const char *guest,
                                                                const char *path,
                                                                ImageAccessMode mode,
                                                                const char *guest_uuid,
                                                                gint64 uid, int pid,
                                                                GCancellable *cancellable,
                                                                GError **error);
void image_access_client_explain_polkit(ImageAccessClient *client, const char *guest,
                                        const char *path, ImageAccessMode mode,
                                        const char *guest_uuid, gint64 uid, int pid,
                                        GCancellable *cancellable, GAsyncReadyCallback callback,
                                        gpointer user_data);
ImageAccessPolkitAnswer image_access_client_explain_polkit_finish(ImageAccessClient *client,
                                                                  GAsyncResult *result,
                                                                  GError **error);

G_END_DECLS

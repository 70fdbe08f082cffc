/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ia-gobject.c — ImageAccessClient: libimageaccess wrapped as a GObject, with GTask-based
 * asynchronous calls, a GError domain, and boxed listing types (libimageaccess-gobject).
 *
 * Only the public API of libimageaccess and libimageaccess-glib is used.  The IaClient is
 * driven by a GSource in the thread-default main context of the thread that made the client;
 * every asynchronous call is one IaRequest whose callback returns the GTask.  Cancellation
 * is a GCancellable source in the same context (not a "cancelled" handler, which could run in
 * another thread or from inside g_cancellable_cancel()): it cancels the IaRequest, so a late
 * reply and its fd are dropped by the library, and returns G_IO_ERROR_CANCELLED.
 */

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "ia-client.h"
#include "ia-client-glib.h"
#include "ia-common.h"
#include "ia-gobject.h"

struct _ImageAccessClient {
        GObject parent;

        char *address;                  /* NULL: the system bus */
        gboolean allow_interactive;
        guint64 timeout_usec;
        IaClient *ia;                   /* NULL until initialized */
        GSource *source;                /* drives @ia in @context */
        GMainContext *context;
};

enum {
        PROP_0,
        PROP_ADDRESS,
        PROP_ALLOW_INTERACTIVE_AUTHORIZATION,
        PROP_TIMEOUT,
        N_PROPS,
};

static GParamSpec *props[N_PROPS];

static void initable_iface_init(GInitableIface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE(ImageAccessClient, image_access_client, G_TYPE_OBJECT,
                              G_IMPLEMENT_INTERFACE(G_TYPE_INITABLE, initable_iface_init))

/* ---- errors --------------------------------------------------------------------------------- */

G_DEFINE_QUARK(image-access-error-quark, image_access_error)

static const struct {
        const char *name;
        ImageAccessError code;
} error_names[] = {
        { IA_ERROR_UNKNOWN_GUEST, IMAGE_ACCESS_ERROR_UNKNOWN_GUEST },
        { IA_ERROR_GUEST_EXISTS, IMAGE_ACCESS_ERROR_GUEST_EXISTS },
        { IA_ERROR_NOT_GRANTED, IMAGE_ACCESS_ERROR_NOT_GRANTED },
        { IA_ERROR_NOT_BOUND, IMAGE_ACCESS_ERROR_NOT_BOUND },
        { IA_ERROR_INVALID_NAME, IMAGE_ACCESS_ERROR_INVALID_NAME },
        { IA_ERROR_INVALID_PATH, IMAGE_ACCESS_ERROR_INVALID_PATH },
        { IA_ERROR_INVALID_MODE, IMAGE_ACCESS_ERROR_INVALID_MODE },
        { IA_ERROR_INVALID_OPTION, IMAGE_ACCESS_ERROR_INVALID_OPTION },
        { IA_ERROR_INVALID_PROCESS, IMAGE_ACCESS_ERROR_INVALID_PROCESS },
        { IA_ERROR_FILE_EXISTS, IMAGE_ACCESS_ERROR_FILE_EXISTS },
        { IA_ERROR_NOT_FOUND, IMAGE_ACCESS_ERROR_NOT_FOUND },
        { IA_ERROR_WRONG_FILE_TYPE, IMAGE_ACCESS_ERROR_WRONG_FILE_TYPE },
        { IA_ERROR_SYMLINK, IMAGE_ACCESS_ERROR_SYMLINK_REFUSED },
        { IA_ERROR_NOT_CREATED, IMAGE_ACCESS_ERROR_NOT_CREATED_BY_SERVICE },
        { IA_ERROR_LIMIT_EXCEEDED, IMAGE_ACCESS_ERROR_LIMIT_EXCEEDED },
        { IA_ERROR_NO_SPACE, IMAGE_ACCESS_ERROR_NO_SPACE },
        { IA_ERROR_AUTH_UNAVAILABLE, IMAGE_ACCESS_ERROR_AUTHORIZATION_UNAVAILABLE },
        { IA_ERROR_IO, IMAGE_ACCESS_ERROR_IO },
        { IA_ERROR_DEVICE_BUSY, IMAGE_ACCESS_ERROR_DEVICE_BUSY },
        { IA_ERROR_AUTH_FAILED, IMAGE_ACCESS_ERROR_AUTHENTICATION_FAILED },
        { "org.freedesktop.DBus.Error.AccessDenied", IMAGE_ACCESS_ERROR_ACCESS_DENIED },
        { "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired",
          IMAGE_ACCESS_ERROR_INTERACTIVE_AUTHORIZATION_REQUIRED },
        { "org.freedesktop.DBus.Error.NoReply", IMAGE_ACCESS_ERROR_NO_REPLY },
        { "org.freedesktop.DBus.Error.ServiceUnknown", IMAGE_ACCESS_ERROR_SERVICE_UNKNOWN },
        { "System.Error.EINVAL", IMAGE_ACCESS_ERROR_INVALID_ARGUMENT },
};

ImageAccessError image_access_error_from_dbus_name(const char *name) {
        g_return_val_if_fail(name, IMAGE_ACCESS_ERROR_FAILED);

        for (size_t i = 0; i < G_N_ELEMENTS(error_names); i++)
                if (g_str_equal(name, error_names[i].name))
                        return error_names[i].code;
        return IMAGE_ACCESS_ERROR_FAILED;
}

/* A GError (owned by the caller) for a failure of the plain library. */
static GError *error_new(int r, const IaError *e) {
        ImageAccessError code;

        if (!e || !e->name)
                return g_error_new(IMAGE_ACCESS_ERROR,
                                   r == -EINVAL ? IMAGE_ACCESS_ERROR_INVALID_ARGUMENT :
                                                  IMAGE_ACCESS_ERROR_FAILED,
                                   "%s", g_strerror(-r));
        code = image_access_error_from_dbus_name(e->name);
        if (code == IMAGE_ACCESS_ERROR_FAILED)
                /* No code of its own: keep the name, people and logs need it. */
                return g_error_new(IMAGE_ACCESS_ERROR, code, "%s: %s", e->name,
                                   e->message ?: g_strerror(-r));
        return g_error_new_literal(IMAGE_ACCESS_ERROR, code, e->message ?: g_strerror(-r));
}

static gboolean set_error(GError **error, int r, IaError *e) {
        g_propagate_error(error, error_new(r, e));
        ia_error_done(e);
        return FALSE;
}

/* ---- boxed types ------------------------------------------------------------------------------ */

ImageAccessGuest *image_access_guest_copy(const ImageAccessGuest *guest) {
        ImageAccessGuest *g;

        g_return_val_if_fail(guest, NULL);
        g = g_new0(ImageAccessGuest, 1);
        *g = *guest;
        g->name = g_strdup(guest->name);
        g->uuid = g_strdup(guest->uuid);
        g->description = g_strdup(guest->description);
        return g;
}

void image_access_guest_free(ImageAccessGuest *guest) {
        if (!guest)
                return;
        g_free(guest->name);
        g_free(guest->uuid);
        g_free(guest->description);
        g_free(guest);
}

G_DEFINE_BOXED_TYPE(ImageAccessGuest, image_access_guest, image_access_guest_copy,
                    image_access_guest_free)

ImageAccessGrant *image_access_grant_copy(const ImageAccessGrant *grant) {
        ImageAccessGrant *g;

        g_return_val_if_fail(grant, NULL);
        g = g_new0(ImageAccessGrant, 1);
        *g = *grant;
        g->path = g_strdup(grant->path);
        return g;
}

void image_access_grant_free(ImageAccessGrant *grant) {
        if (!grant)
                return;
        g_free(grant->path);
        g_free(grant);
}

G_DEFINE_BOXED_TYPE(ImageAccessGrant, image_access_grant, image_access_grant_copy,
                    image_access_grant_free)

/* The library's lists, copied into GPtrArrays that own their elements.  Takes @list. */
static GPtrArray *guests_to_array(IaGuestInfo **list) {
        GPtrArray *a = g_ptr_array_new_with_free_func((GDestroyNotify) image_access_guest_free);

        for (IaGuestInfo **i = list; i && *i; i++) {
                ImageAccessGuest *g = g_new0(ImageAccessGuest, 1);

                g->name = g_strdup((*i)->name);
                g->uuid = g_strdup((*i)->uuid);
                g->description = g_strdup((*i)->description);
                g->uid = (*i)->uid == IA_UID_NONE ? IMAGE_ACCESS_UID_NONE : (gint64) (*i)->uid;
                g->n_grants = (*i)->n_grants;
                g->n_processes = (*i)->n_processes;
                g_ptr_array_add(a, g);
        }
        ia_guest_info_list_free(list);
        return a;
}

static GPtrArray *grants_to_array(IaGrantInfo **list) {
        GPtrArray *a = g_ptr_array_new_with_free_func((GDestroyNotify) image_access_grant_free);

        for (IaGrantInfo **i = list; i && *i; i++) {
                ImageAccessGrant *g = g_new0(ImageAccessGrant, 1);

                g->path = g_strdup((*i)->path);
                g->mode = (ImageAccessMode) (*i)->mode;
                g->created = (*i)->created;
                g->pinned = (*i)->pinned;
                g->device = (*i)->device;
                g->inode = (*i)->inode;
                g_ptr_array_add(a, g);
        }
        ia_grant_info_list_free(list);
        return a;
}

/* The two libraries spell modes and flags alike; these say so where the compiler sees it. */
G_STATIC_ASSERT((int) IMAGE_ACCESS_MODE_READ_ONLY == (int) IA_IMAGE_MODE_READ_ONLY);
G_STATIC_ASSERT((int) IMAGE_ACCESS_MODE_READ_WRITE == (int) IA_IMAGE_MODE_READ_WRITE);
G_STATIC_ASSERT((int) IMAGE_ACCESS_MODE_CREATE == (int) IA_IMAGE_MODE_CREATE);
G_STATIC_ASSERT((int) IMAGE_ACCESS_MODE_UNKNOWN == (int) IA_IMAGE_MODE_UNKNOWN);
G_STATIC_ASSERT(IMAGE_ACCESS_OPEN_FLAGS_DIRECT == IA_OPEN_DIRECT);
G_STATIC_ASSERT(IMAGE_ACCESS_OPEN_FLAGS_NONBLOCK == IA_OPEN_NONBLOCK);
G_STATIC_ASSERT(IMAGE_ACCESS_REVOKE_FLAGS_REMOVE_CREATED == IA_REVOKE_REMOVE_CREATED);
G_STATIC_ASSERT((int) IMAGE_ACCESS_POLKIT_ANSWER_CHALLENGE == (int) IA_POLKIT_CHALLENGE);
G_STATIC_ASSERT((int) IMAGE_ACCESS_POLKIT_ANSWER_AUTHORIZED == (int) IA_POLKIT_AUTHORIZED);

/* IMAGE_ACCESS_UID_NONE, and anything that is no uid_t, is "none"; the service refuses the
 * latter anyway, as it refuses (uid_t) -1. */
static uid_t uid_from_g(gint64 uid) {
        return uid < 0 || uid >= (gint64) IA_UID_NONE ? IA_UID_NONE : (uid_t) uid;
}

/* ---- the object ---------------------------------------------------------------------------------- */

static void image_access_client_init(ImageAccessClient *self) {
}

static void image_access_client_finalize(GObject *object) {
        ImageAccessClient *self = IMAGE_ACCESS_CLIENT(object);

        if (self->source) {
                g_source_destroy(self->source);
                g_source_unref(self->source);
        }
        ia_client_unref(self->ia);
        g_clear_pointer(&self->context, g_main_context_unref);
        g_free(self->address);
        G_OBJECT_CLASS(image_access_client_parent_class)->finalize(object);
}

static void image_access_client_get_property(GObject *object, guint id, GValue *value,
                                             GParamSpec *pspec) {
        ImageAccessClient *self = IMAGE_ACCESS_CLIENT(object);

        switch (id) {
        case PROP_ADDRESS:
                g_value_set_string(value, self->address);
                break;
        case PROP_ALLOW_INTERACTIVE_AUTHORIZATION:
                g_value_set_boolean(value, self->allow_interactive);
                break;
        case PROP_TIMEOUT:
                g_value_set_uint64(value, self->timeout_usec);
                break;
        default:
                G_OBJECT_WARN_INVALID_PROPERTY_ID(object, id, pspec);
        }
}

static void image_access_client_set_property(GObject *object, guint id, const GValue *value,
                                             GParamSpec *pspec) {
        ImageAccessClient *self = IMAGE_ACCESS_CLIENT(object);

        switch (id) {
        case PROP_ADDRESS:
                g_free(self->address);
                self->address = g_value_dup_string(value);
                break;
        case PROP_ALLOW_INTERACTIVE_AUTHORIZATION:
                image_access_client_set_allow_interactive_authorization(
                        self, g_value_get_boolean(value));
                break;
        case PROP_TIMEOUT:
                image_access_client_set_timeout(self, g_value_get_uint64(value));
                break;
        default:
                G_OBJECT_WARN_INVALID_PROPERTY_ID(object, id, pspec);
        }
}

static void image_access_client_class_init(ImageAccessClientClass *klass) {
        GObjectClass *object_class = G_OBJECT_CLASS(klass);

        object_class->finalize = image_access_client_finalize;
        object_class->get_property = image_access_client_get_property;
        object_class->set_property = image_access_client_set_property;

        /**
         * ImageAccessClient:address:
         *
         * The D-Bus address of the bus to use; %NULL for the system bus.
         */
        props[PROP_ADDRESS] =
                g_param_spec_string("address", NULL, NULL, NULL,
                                    G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY |
                                    G_PARAM_STATIC_STRINGS);
        /**
         * ImageAccessClient:allow-interactive-authorization:
         *
         * Whether polkit may ask a person for a password (calls made from now on carry
         * ALLOW_INTERACTIVE_AUTHORIZATION).  For interactive tools only, never emulators.
         */
        props[PROP_ALLOW_INTERACTIVE_AUTHORIZATION] =
                g_param_spec_boolean("allow-interactive-authorization", NULL, NULL, FALSE,
                                     G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY |
                                     G_PARAM_STATIC_STRINGS);
        /**
         * ImageAccessClient:timeout:
         *
         * The method call timeout in µs; 0 for the library's default.
         */
        props[PROP_TIMEOUT] =
                g_param_spec_uint64("timeout", NULL, NULL, 0, G_MAXUINT64, 0,
                                    G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY |
                                    G_PARAM_STATIC_STRINGS);
        g_object_class_install_properties(object_class, N_PROPS, props);
}

static gboolean image_access_client_initable_init(GInitable *initable,
                                                  GCancellable *cancellable, GError **error) {
        ImageAccessClient *self = IMAGE_ACCESS_CLIENT(initable);
        IaClient *ia = NULL;
        int r;

        if (self->ia)
                return TRUE;
        if (g_cancellable_set_error_if_cancelled(cancellable, error))
                return FALSE;
        r = ia_client_new_with_address(self->address, &ia);
        if (r < 0) {
                g_set_error(error, IMAGE_ACCESS_ERROR, IMAGE_ACCESS_ERROR_FAILED,
                            "Cannot connect to the bus: %s", g_strerror(-r));
                return FALSE;
        }
        (void) ia_client_set_allow_interactive_authorization(ia, self->allow_interactive);
        (void) ia_client_set_timeout(ia, self->timeout_usec);
        self->ia = ia;
        self->context = g_main_context_ref_thread_default();
        self->source = ia_client_glib_attach(ia, self->context, G_PRIORITY_DEFAULT);
        return TRUE;
}

static void initable_iface_init(GInitableIface *iface) {
        iface->init = image_access_client_initable_init;
}

/**
 * image_access_client_new_sync:
 * @address: (nullable): a D-Bus address; %NULL for the system bus
 * @cancellable: (nullable): checked before connecting
 * @error: return location for an error
 *
 * Connects to image-accessd.  Asynchronous calls of the new client complete in the
 * thread-default main context of the calling thread.
 *
 * Returns: (transfer full): a new client, or %NULL with @error set
 */
ImageAccessClient *image_access_client_new_sync(const char *address, GCancellable *cancellable,
                                                GError **error) {
        return g_initable_new(IMAGE_ACCESS_TYPE_CLIENT, cancellable, error, "address", address,
                              NULL);
}

/**
 * image_access_client_get_address:
 * @client: the client
 *
 * Returns: (nullable) (transfer none): the bus address, %NULL for the system bus
 */
const char *image_access_client_get_address(ImageAccessClient *client) {
        g_return_val_if_fail(IMAGE_ACCESS_IS_CLIENT(client), NULL);
        return client->address;
}

/**
 * image_access_client_get_allow_interactive_authorization:
 * @client: the client
 *
 * Returns: the #ImageAccessClient:allow-interactive-authorization property
 */
gboolean image_access_client_get_allow_interactive_authorization(ImageAccessClient *client) {
        g_return_val_if_fail(IMAGE_ACCESS_IS_CLIENT(client), FALSE);
        return client->allow_interactive;
}

/**
 * image_access_client_set_allow_interactive_authorization:
 * @client: the client
 * @allow: whether polkit may ask for a password
 *
 * Sets #ImageAccessClient:allow-interactive-authorization.
 */
void image_access_client_set_allow_interactive_authorization(ImageAccessClient *client,
                                                             gboolean allow) {
        g_return_if_fail(IMAGE_ACCESS_IS_CLIENT(client));
        allow = !!allow;
        if (client->allow_interactive == allow)
                return;
        client->allow_interactive = allow;
        if (client->ia)
                (void) ia_client_set_allow_interactive_authorization(client->ia, allow);
        g_object_notify_by_pspec(G_OBJECT(client), props[PROP_ALLOW_INTERACTIVE_AUTHORIZATION]);
}

/**
 * image_access_client_get_timeout:
 * @client: the client
 *
 * Returns: the #ImageAccessClient:timeout property (µs; 0: the default)
 */
guint64 image_access_client_get_timeout(ImageAccessClient *client) {
        g_return_val_if_fail(IMAGE_ACCESS_IS_CLIENT(client), 0);
        return client->timeout_usec;
}

/**
 * image_access_client_set_timeout:
 * @client: the client
 * @usec: the method call timeout in µs; 0 for the default (60 s)
 *
 * An interactive tool sets more than the time a person takes to type a password.
 */
void image_access_client_set_timeout(ImageAccessClient *client, guint64 usec) {
        g_return_if_fail(IMAGE_ACCESS_IS_CLIENT(client));
        if (client->timeout_usec == usec)
                return;
        client->timeout_usec = usec;
        if (client->ia)
                (void) ia_client_set_timeout(client->ia, usec);
        g_object_notify_by_pspec(G_OBJECT(client), props[PROP_TIMEOUT]);
}

/* ---- asynchronous calls: one GTask per IaRequest ------------------------------------------------ */

typedef struct Call {
        IaRequest *request;     /* our reference; NULL once ended */
        GSource *cancel_source; /* in the client's context, while pending */
} Call;

static void call_free(Call *call) {
        if (call->cancel_source) {
                g_source_destroy(call->cancel_source);
                g_source_unref(call->cancel_source);
        }
        ia_request_unref(call->request);
        g_free(call);
}

/* Ends the wait of a task; the caller returns its result next and drops the pending
 * reference. */
static void call_end(GTask *task) {
        Call *call = g_task_get_task_data(task);

        if (call->cancel_source) {
                g_source_destroy(call->cancel_source);
                g_clear_pointer(&call->cancel_source, g_source_unref);
        }
}

static gboolean on_cancelled(GCancellable *cancellable, gpointer user_data) {
        GTask *task = user_data;
        Call *call = g_task_get_task_data(task);

        /* Only if still pending: the library then never calls back (so we return the task
         * here) and drops a late reply with its fd. */
        if (ia_request_cancel(call->request) > 0) {
                call_end(task);
                g_task_return_new_error(task, G_IO_ERROR, G_IO_ERROR_CANCELLED,
                                        "Operation was cancelled");
                g_object_unref(task);   /* the pending reference */
        }
        return G_SOURCE_REMOVE;
}

/* A task for an asynchronous call, or NULL when it already completed (not connected, or
 * cancelled before it started). */
static GTask *call_new(ImageAccessClient *self, GCancellable *cancellable,
                       GAsyncReadyCallback callback, gpointer user_data, gpointer tag) {
        GTask *task = g_task_new(self, cancellable, callback, user_data);

        g_task_set_source_tag(task, tag);
        g_task_set_task_data(task, g_new0(Call, 1), (GDestroyNotify) call_free);
        if (g_task_return_error_if_cancelled(task)) {
                g_object_unref(task);
                return NULL;
        }
        if (!self->ia) {
                g_task_return_new_error(task, IMAGE_ACCESS_ERROR, IMAGE_ACCESS_ERROR_FAILED,
                                        "The client is not initialized");
                g_object_unref(task);
                return NULL;
        }
        return task;
}

/* After the library's *_async() call: on failure, completes the task; on success, the task's
 * reference is the pending one, dropped by the callback or on_cancelled(). */
static void call_started(ImageAccessClient *self, GTask *task, int r) {
        GCancellable *cancellable = g_task_get_cancellable(task);
        Call *call = g_task_get_task_data(task);

        if (r < 0) {
                g_task_return_error(task, error_new(r, NULL));
                g_object_unref(task);
                return;
        }
        if (cancellable) {
                call->cancel_source = g_cancellable_source_new(cancellable);
                g_source_set_callback(call->cancel_source, G_SOURCE_FUNC(on_cancelled), task,
                                      NULL);
                g_source_attach(call->cancel_source, self->context);
        }
}

static void on_manager_done(IaClient *client, int result, const IaError *error, void *userdata) {
        GTask *task = userdata;

        call_end(task);
        if (result < 0)
                g_task_return_error(task, error_new(result, error));
        else
                g_task_return_boolean(task, TRUE);
        g_object_unref(task);
}

static gboolean finish_boolean(ImageAccessClient *client, GAsyncResult *result, gpointer tag,
                               GError **error) {
        g_return_val_if_fail(g_task_is_valid(result, client), FALSE);
        g_return_val_if_fail(g_task_get_source_tag(G_TASK(result)) == tag, FALSE);
        return g_task_propagate_boolean(G_TASK(result), error);
}

static gboolean sync_precheck(ImageAccessClient *self, GCancellable *cancellable,
                              GError **error) {
        if (g_cancellable_set_error_if_cancelled(cancellable, error))
                return FALSE;
        if (!self->ia) {
                g_set_error_literal(error, IMAGE_ACCESS_ERROR, IMAGE_ACCESS_ERROR_FAILED,
                                    "The client is not initialized");
                return FALSE;
        }
        return TRUE;
}

/* ---- OpenImage ----------------------------------------------------------------------------------- */

/* The fd of a task's result: closed if the result is never taken (a caller that did not call
 * _finish, or a cancelled task). */
static void fd_box_free(gpointer p) {
        int *fd = p;

        if (*fd >= 0)
                (void) close(*fd);
        g_free(fd);
}

/**
 * image_access_client_open_image_sync:
 * @client: the client
 * @guest: the guest the caller is bound to
 * @path: absolute, normalized path of the image
 * @mode: how to open it
 * @flags: options
 * @cancellable: (nullable): checked before the call is sent; a call in progress cannot be
 *   cancelled (use image_access_client_open_image())
 * @error: return location for an error
 *
 * Opens an image granted to @guest, blocking until the service answers.
 *
 * Returns: a new O_CLOEXEC file descriptor (>= 3) owned by the caller, who must close it;
 *   -1 with @error set on failure
 */
int image_access_client_open_image_sync(ImageAccessClient *client, const char *guest,
                                        const char *path, ImageAccessMode mode,
                                        ImageAccessOpenFlags flags, GCancellable *cancellable,
                                        GError **error) {
        IaError e = {};
        int fd = -1, r;

        g_return_val_if_fail(IMAGE_ACCESS_IS_CLIENT(client), -1);
        if (!sync_precheck(client, cancellable, error))
                return -1;
        r = ia_client_open(client->ia, guest, path, (IaImageMode) mode, flags, &e, &fd);
        if (r < 0)
                return set_error(error, r, &e), -1;
        return fd;
}

static void on_open_done(IaClient *client, int result, int fd, const IaError *error,
                         void *userdata) {
        GTask *task = userdata;

        call_end(task);
        if (result < 0)
                g_task_return_error(task, error_new(result, error));
        else if (g_cancellable_is_cancelled(g_task_get_cancellable(task))) {
                /* Cancelled after the reply was read but before the cancellation source ran:
                 * _finish reports G_IO_ERROR_CANCELLED, so the fd would only wait for the
                 * task's end in the result; close it now. */
                (void) close(fd);
                g_task_return_new_error(task, G_IO_ERROR, G_IO_ERROR_CANCELLED,
                                        "Operation was cancelled");
        } else {
                int *box = g_new(int, 1);

                *box = fd;
                g_task_return_pointer(task, box, fd_box_free);
        }
        g_object_unref(task);
}

/**
 * image_access_client_open_image:
 * @client: the client
 * @guest: the guest the caller is bound to
 * @path: absolute, normalized path of the image
 * @mode: how to open it
 * @flags: options
 * @cancellable: (nullable): cancels the call; an fd that arrives later is closed
 * @callback: (scope async): called when the call completes
 * @user_data: (closure): data for @callback
 *
 * Opens an image without blocking; finish with image_access_client_open_image_finish().
 */
void image_access_client_open_image(ImageAccessClient *client, const char *guest,
                                    const char *path, ImageAccessMode mode,
                                    ImageAccessOpenFlags flags, GCancellable *cancellable,
                                    GAsyncReadyCallback callback, gpointer user_data) {
        Call *call;
        GTask *task;
        int r;

        g_return_if_fail(IMAGE_ACCESS_IS_CLIENT(client));
        task = call_new(client, cancellable, callback, user_data, image_access_client_open_image);
        if (!task)
                return;
        call = g_task_get_task_data(task);
        r = ia_client_open_async(client->ia, guest, path, (IaImageMode) mode, flags,
                                 on_open_done, task, &call->request);
        call_started(client, task, r);
}

/**
 * image_access_client_open_image_finish:
 * @client: the client
 * @result: the result passed to the callback
 * @error: return location for an error
 *
 * Returns: a new O_CLOEXEC file descriptor (>= 3) now owned by the caller, who must close
 *   it; -1 with @error set on failure.  An fd whose result is never finished is closed by the
 *   library.
 */
int image_access_client_open_image_finish(ImageAccessClient *client, GAsyncResult *result,
                                          GError **error) {
        g_autofree int *box = NULL;

        g_return_val_if_fail(g_task_is_valid(result, client), -1);
        g_return_val_if_fail(g_task_get_source_tag(G_TASK(result)) ==
                             image_access_client_open_image, -1);
        box = g_task_propagate_pointer(G_TASK(result), error);
        return box ? *box : -1;
}

/* ---- manager calls ---------------------------------------------------------------------------- */

/**
 * image_access_client_register_guest_sync:
 * @client: the client
 * @name: the guest name
 * @uuid: (nullable): the guest's UUID
 * @description: (nullable): free text
 * @uid: bind the guest to this uid, or #IMAGE_ACCESS_UID_NONE
 * @cancellable: (nullable): checked before the call is sent
 * @error: return location for an error
 *
 * RegisterGuest, blocking.
 *
 * Returns: %TRUE, or %FALSE with @error set
 */
gboolean image_access_client_register_guest_sync(ImageAccessClient *client, const char *name,
                                                 const char *uuid, const char *description,
                                                 gint64 uid, GCancellable *cancellable,
                                                 GError **error) {
        IaError e = {};
        int r;

        g_return_val_if_fail(IMAGE_ACCESS_IS_CLIENT(client), FALSE);
        if (!sync_precheck(client, cancellable, error))
                return FALSE;
        r = ia_manager_register_guest(client->ia, name, uuid, description, uid_from_g(uid), &e);
        return r < 0 ? set_error(error, r, &e) : TRUE;
}

/**
 * image_access_client_register_guest:
 * @client: the client
 * @name: the guest name
 * @uuid: (nullable): the guest's UUID
 * @description: (nullable): free text
 * @uid: bind the guest to this uid, or #IMAGE_ACCESS_UID_NONE
 * @cancellable: (nullable): cancels the wait (the service may still register the guest)
 * @callback: (scope async): called when the call completes
 * @user_data: (closure): data for @callback
 *
 * RegisterGuest without blocking.
 */
void image_access_client_register_guest(ImageAccessClient *client, const char *name,
                                        const char *uuid, const char *description,
                                        gint64 uid, GCancellable *cancellable,
                                        GAsyncReadyCallback callback, gpointer user_data) {
        GTask *task;
        Call *call;

        g_return_if_fail(IMAGE_ACCESS_IS_CLIENT(client));
        task = call_new(client, cancellable, callback, user_data,
                        image_access_client_register_guest);
        if (!task)
                return;
        call = g_task_get_task_data(task);
        call_started(client, task,
                     ia_manager_register_guest_async(client->ia, name, uuid, description,
                                                     uid_from_g(uid), on_manager_done, task,
                                                     &call->request));
}

/**
 * image_access_client_register_guest_finish:
 * @client: the client
 * @result: the result passed to the callback
 * @error: return location for an error
 *
 * Returns: %TRUE, or %FALSE with @error set
 */
gboolean image_access_client_register_guest_finish(ImageAccessClient *client,
                                                   GAsyncResult *result, GError **error) {
        return finish_boolean(client, result, image_access_client_register_guest, error);
}

/**
 * image_access_client_unregister_guest_sync:
 * @client: the client
 * @name: the guest name
 * @cancellable: (nullable): checked before the call is sent
 * @error: return location for an error
 *
 * UnregisterGuest, blocking.
 *
 * Returns: %TRUE, or %FALSE with @error set
 */
gboolean image_access_client_unregister_guest_sync(ImageAccessClient *client, const char *name,
                                                   GCancellable *cancellable, GError **error) {
        IaError e = {};
        int r;

        g_return_val_if_fail(IMAGE_ACCESS_IS_CLIENT(client), FALSE);
        if (!sync_precheck(client, cancellable, error))
                return FALSE;
        r = ia_manager_unregister_guest(client->ia, name, &e);
        return r < 0 ? set_error(error, r, &e) : TRUE;
}

/**
 * image_access_client_unregister_guest:
 * @client: the client
 * @name: the guest name
 * @cancellable: (nullable): cancels the wait
 * @callback: (scope async): called when the call completes
 * @user_data: (closure): data for @callback
 *
 * UnregisterGuest without blocking.
 */
void image_access_client_unregister_guest(ImageAccessClient *client, const char *name,
                                          GCancellable *cancellable,
                                          GAsyncReadyCallback callback, gpointer user_data) {
        GTask *task;
        Call *call;

        g_return_if_fail(IMAGE_ACCESS_IS_CLIENT(client));
        task = call_new(client, cancellable, callback, user_data,
                        image_access_client_unregister_guest);
        if (!task)
                return;
        call = g_task_get_task_data(task);
        call_started(client, task,
                     ia_manager_unregister_guest_async(client->ia, name, on_manager_done, task,
                                                       &call->request));
}

/**
 * image_access_client_unregister_guest_finish:
 * @client: the client
 * @result: the result passed to the callback
 * @error: return location for an error
 *
 * Returns: %TRUE, or %FALSE with @error set
 */
gboolean image_access_client_unregister_guest_finish(ImageAccessClient *client,
                                                     GAsyncResult *result, GError **error) {
        return finish_boolean(client, result, image_access_client_unregister_guest, error);
}

/**
 * image_access_client_bind_process_sync:
 * @client: the client
 * @guest: the guest
 * @pidfd: a pidfd of the emulator, borrowed: the caller keeps and closes it
 * @cancellable: (nullable): checked before the call is sent
 * @error: return location for an error
 *
 * BindProcess, blocking.
 *
 * Returns: %TRUE, or %FALSE with @error set
 */
gboolean image_access_client_bind_process_sync(ImageAccessClient *client, const char *guest,
                                               int pidfd, GCancellable *cancellable,
                                               GError **error) {
        IaError e = {};
        int r;

        g_return_val_if_fail(IMAGE_ACCESS_IS_CLIENT(client), FALSE);
        if (!sync_precheck(client, cancellable, error))
                return FALSE;
        r = ia_manager_bind_process(client->ia, guest, pidfd, &e);
        return r < 0 ? set_error(error, r, &e) : TRUE;
}

/**
 * image_access_client_bind_process:
 * @client: the client
 * @guest: the guest
 * @pidfd: a pidfd of the emulator, borrowed: the message carries its own duplicate, so the
 *   caller may close it as soon as this returns
 * @cancellable: (nullable): cancels the wait
 * @callback: (scope async): called when the call completes
 * @user_data: (closure): data for @callback
 *
 * BindProcess without blocking.
 */
void image_access_client_bind_process(ImageAccessClient *client, const char *guest, int pidfd,
                                      GCancellable *cancellable, GAsyncReadyCallback callback,
                                      gpointer user_data) {
        GTask *task;
        Call *call;

        g_return_if_fail(IMAGE_ACCESS_IS_CLIENT(client));
        task = call_new(client, cancellable, callback, user_data,
                        image_access_client_bind_process);
        if (!task)
                return;
        call = g_task_get_task_data(task);
        call_started(client, task,
                     ia_manager_bind_process_async(client->ia, guest, pidfd, on_manager_done,
                                                   task, &call->request));
}

/**
 * image_access_client_bind_process_finish:
 * @client: the client
 * @result: the result passed to the callback
 * @error: return location for an error
 *
 * Returns: %TRUE, or %FALSE with @error set
 */
gboolean image_access_client_bind_process_finish(ImageAccessClient *client,
                                                 GAsyncResult *result, GError **error) {
        return finish_boolean(client, result, image_access_client_bind_process, error);
}

/**
 * image_access_client_grant_image_sync:
 * @client: the client
 * @guest: the guest
 * @path: absolute, normalized path
 * @mode: the mode granted
 * @cancellable: (nullable): checked before the call is sent
 * @error: return location for an error
 *
 * GrantImage, blocking.
 *
 * Returns: %TRUE, or %FALSE with @error set
 */
gboolean image_access_client_grant_image_sync(ImageAccessClient *client, const char *guest,
                                              const char *path, ImageAccessMode mode,
                                              GCancellable *cancellable, GError **error) {
        IaError e = {};
        int r;

        g_return_val_if_fail(IMAGE_ACCESS_IS_CLIENT(client), FALSE);
        if (!sync_precheck(client, cancellable, error))
                return FALSE;
        r = ia_manager_grant_image(client->ia, guest, path, (IaImageMode) mode, &e);
        return r < 0 ? set_error(error, r, &e) : TRUE;
}

/**
 * image_access_client_grant_image:
 * @client: the client
 * @guest: the guest
 * @path: absolute, normalized path
 * @mode: the mode granted
 * @cancellable: (nullable): cancels the wait
 * @callback: (scope async): called when the call completes
 * @user_data: (closure): data for @callback
 *
 * GrantImage without blocking.
 */
void image_access_client_grant_image(ImageAccessClient *client, const char *guest,
                                     const char *path, ImageAccessMode mode,
                                     GCancellable *cancellable, GAsyncReadyCallback callback,
                                     gpointer user_data) {
        GTask *task;
        Call *call;

        g_return_if_fail(IMAGE_ACCESS_IS_CLIENT(client));
        task = call_new(client, cancellable, callback, user_data,
                        image_access_client_grant_image);
        if (!task)
                return;
        call = g_task_get_task_data(task);
        call_started(client, task,
                     ia_manager_grant_image_async(client->ia, guest, path, (IaImageMode) mode,
                                                  on_manager_done, task, &call->request));
}

/**
 * image_access_client_grant_image_finish:
 * @client: the client
 * @result: the result passed to the callback
 * @error: return location for an error
 *
 * Returns: %TRUE, or %FALSE with @error set
 */
gboolean image_access_client_grant_image_finish(ImageAccessClient *client,
                                                GAsyncResult *result, GError **error) {
        return finish_boolean(client, result, image_access_client_grant_image, error);
}

/**
 * image_access_client_revoke_image_sync:
 * @client: the client
 * @guest: the guest
 * @path: the granted path
 * @flags: options
 * @cancellable: (nullable): checked before the call is sent
 * @error: return location for an error
 *
 * RevokeImage, blocking.  Descriptors already handed out stay valid.
 *
 * Returns: %TRUE, or %FALSE with @error set
 */
gboolean image_access_client_revoke_image_sync(ImageAccessClient *client, const char *guest,
                                               const char *path, ImageAccessRevokeFlags flags,
                                               GCancellable *cancellable, GError **error) {
        IaError e = {};
        int r;

        g_return_val_if_fail(IMAGE_ACCESS_IS_CLIENT(client), FALSE);
        if (!sync_precheck(client, cancellable, error))
                return FALSE;
        r = ia_manager_revoke_image(client->ia, guest, path, flags, &e);
        return r < 0 ? set_error(error, r, &e) : TRUE;
}

/**
 * image_access_client_revoke_image:
 * @client: the client
 * @guest: the guest
 * @path: the granted path
 * @flags: options
 * @cancellable: (nullable): cancels the wait
 * @callback: (scope async): called when the call completes
 * @user_data: (closure): data for @callback
 *
 * RevokeImage without blocking.
 */
void image_access_client_revoke_image(ImageAccessClient *client, const char *guest,
                                      const char *path, ImageAccessRevokeFlags flags,
                                      GCancellable *cancellable, GAsyncReadyCallback callback,
                                      gpointer user_data) {
        GTask *task;
        Call *call;

        g_return_if_fail(IMAGE_ACCESS_IS_CLIENT(client));
        task = call_new(client, cancellable, callback, user_data,
                        image_access_client_revoke_image);
        if (!task)
                return;
        call = g_task_get_task_data(task);
        call_started(client, task,
                     ia_manager_revoke_image_async(client->ia, guest, path, flags,
                                                   on_manager_done, task, &call->request));
}

/**
 * image_access_client_revoke_image_finish:
 * @client: the client
 * @result: the result passed to the callback
 * @error: return location for an error
 *
 * Returns: %TRUE, or %FALSE with @error set
 */
gboolean image_access_client_revoke_image_finish(ImageAccessClient *client,
                                                 GAsyncResult *result, GError **error) {
        return finish_boolean(client, result, image_access_client_revoke_image, error);
}

/* ---- listings ------------------------------------------------------------------------------------ */

/**
 * image_access_client_list_guests_sync:
 * @client: the client
 * @cancellable: (nullable): checked before the call is sent
 * @error: return location for an error
 *
 * ListGuests, blocking.
 *
 * Returns: (transfer container) (element-type ImageAccessGuest): the guests sorted by name
 *   (the array owns its elements), or %NULL with @error set
 */
GPtrArray *image_access_client_list_guests_sync(ImageAccessClient *client,
                                                GCancellable *cancellable, GError **error) {
        IaGuestInfo **list = NULL;
        IaError e = {};
        int r;

        g_return_val_if_fail(IMAGE_ACCESS_IS_CLIENT(client), NULL);
        if (!sync_precheck(client, cancellable, error))
                return NULL;
        r = ia_manager_list_guests(client->ia, &e, &list);
        if (r < 0)
                return set_error(error, r, &e), NULL;
        return guests_to_array(list);
}

static void on_guests_done(IaClient *client, int result, IaGuestInfo **guests,
                           const IaError *error, void *userdata) {
        GTask *task = userdata;

        call_end(task);
        if (result < 0)
                g_task_return_error(task, error_new(result, error));
        else
                g_task_return_pointer(task, guests_to_array(guests),
                                      (GDestroyNotify) g_ptr_array_unref);
        g_object_unref(task);
}

/**
 * image_access_client_list_guests:
 * @client: the client
 * @cancellable: (nullable): cancels the wait
 * @callback: (scope async): called when the call completes
 * @user_data: (closure): data for @callback
 *
 * ListGuests without blocking.
 */
void image_access_client_list_guests(ImageAccessClient *client, GCancellable *cancellable,
                                     GAsyncReadyCallback callback, gpointer user_data) {
        GTask *task;
        Call *call;

        g_return_if_fail(IMAGE_ACCESS_IS_CLIENT(client));
        task = call_new(client, cancellable, callback, user_data,
                        image_access_client_list_guests);
        if (!task)
                return;
        call = g_task_get_task_data(task);
        call_started(client, task,
                     ia_manager_list_guests_async(client->ia, on_guests_done, task,
                                                  &call->request));
}

/**
 * image_access_client_list_guests_finish:
 * @client: the client
 * @result: the result passed to the callback
 * @error: return location for an error
 *
 * Returns: (transfer container) (element-type ImageAccessGuest): the guests, or %NULL with
 *   @error set
 */
GPtrArray *image_access_client_list_guests_finish(ImageAccessClient *client,
                                                  GAsyncResult *result, GError **error) {
        g_return_val_if_fail(g_task_is_valid(result, client), NULL);
        return g_task_propagate_pointer(G_TASK(result), error);
}

/**
 * image_access_client_list_grants_sync:
 * @client: the client
 * @guest: the guest
 * @cancellable: (nullable): checked before the call is sent
 * @error: return location for an error
 *
 * ListGrants, blocking.
 *
 * Returns: (transfer container) (element-type ImageAccessGrant): the grants sorted by path
 *   (the array owns its elements), or %NULL with @error set
 */
GPtrArray *image_access_client_list_grants_sync(ImageAccessClient *client, const char *guest,
                                                GCancellable *cancellable, GError **error) {
        IaGrantInfo **list = NULL;
        IaError e = {};
        int r;

        g_return_val_if_fail(IMAGE_ACCESS_IS_CLIENT(client), NULL);
        if (!sync_precheck(client, cancellable, error))
                return NULL;
        r = ia_manager_list_grants(client->ia, guest, &e, &list);
        if (r < 0)
                return set_error(error, r, &e), NULL;
        return grants_to_array(list);
}

static void on_grants_done(IaClient *client, int result, IaGrantInfo **grants,
                           const IaError *error, void *userdata) {
        GTask *task = userdata;

        call_end(task);
        if (result < 0)
                g_task_return_error(task, error_new(result, error));
        else
                g_task_return_pointer(task, grants_to_array(grants),
                                      (GDestroyNotify) g_ptr_array_unref);
        g_object_unref(task);
}

/**
 * image_access_client_list_grants:
 * @client: the client
 * @guest: the guest
 * @cancellable: (nullable): cancels the wait
 * @callback: (scope async): called when the call completes
 * @user_data: (closure): data for @callback
 *
 * ListGrants without blocking.
 */
void image_access_client_list_grants(ImageAccessClient *client, const char *guest,
                                     GCancellable *cancellable, GAsyncReadyCallback callback,
                                     gpointer user_data) {
        GTask *task;
        Call *call;

        g_return_if_fail(IMAGE_ACCESS_IS_CLIENT(client));
        task = call_new(client, cancellable, callback, user_data,
                        image_access_client_list_grants);
        if (!task)
                return;
        call = g_task_get_task_data(task);
        call_started(client, task,
                     ia_manager_list_grants_async(client->ia, guest, on_grants_done, task,
                                                  &call->request));
}

/**
 * image_access_client_list_grants_finish:
 * @client: the client
 * @result: the result passed to the callback
 * @error: return location for an error
 *
 * Returns: (transfer container) (element-type ImageAccessGrant): the grants, or %NULL with
 *   @error set
 */
GPtrArray *image_access_client_list_grants_finish(ImageAccessClient *client,
                                                  GAsyncResult *result, GError **error) {
        g_return_val_if_fail(g_task_is_valid(result, client), NULL);
        return g_task_propagate_pointer(G_TASK(result), error);
}

/* ---- explain ------------------------------------------------------------------------------------- */

/**
 * image_access_client_explain_polkit_sync:
 * @client: the client; the calling process must run as root
 * @guest: the guest
 * @path: the image
 * @mode: the mode asked for
 * @guest_uuid: (nullable): the guest's UUID as registered
 * @uid: the emulator's uid, or #IMAGE_ACCESS_UID_NONE to take the effective uid of @pid
 * @pid: an emulator process, or 0 for "a process of @uid outside any login session"
 * @cancellable: (nullable): checked before the call is sent
 * @error: return location for an error
 *
 * What polkit answers today for an emulator's OpenImage (see ia_manager_explain_polkit()).
 *
 * Returns: polkit's answer; #IMAGE_ACCESS_POLKIT_ANSWER_NOT_AUTHORIZED with @error set on
 *   failure
 */
ImageAccessPolkitAnswer image_access_client_explain_polkit_sync(ImageAccessClient *client,
                                                                const char *guest,
                                                                const char *path,
                                                                ImageAccessMode mode,
                                                                const char *guest_uuid,
                                                                gint64 uid, int pid,
                                                                GCancellable *cancellable,
                                                                GError **error) {
        IaPolkitAnswer answer = IA_POLKIT_NOT_AUTHORIZED;
        IaError e = {};
        int r;

        g_return_val_if_fail(IMAGE_ACCESS_IS_CLIENT(client), 0);
        if (!sync_precheck(client, cancellable, error))
                return IMAGE_ACCESS_POLKIT_ANSWER_NOT_AUTHORIZED;
        r = ia_manager_explain_polkit(client->ia, guest, path, (IaImageMode) mode, guest_uuid,
                                      uid_from_g(uid), pid, &e, &answer);
        if (r < 0)
                return set_error(error, r, &e), IMAGE_ACCESS_POLKIT_ANSWER_NOT_AUTHORIZED;
        return (ImageAccessPolkitAnswer) answer;
}

static void on_explain_done(IaClient *client, int result, IaPolkitAnswer answer,
                            const IaError *error, void *userdata) {
        GTask *task = userdata;

        call_end(task);
        if (result < 0)
                g_task_return_error(task, error_new(result, error));
        else
                g_task_return_int(task, answer);
        g_object_unref(task);
}

/**
 * image_access_client_explain_polkit:
 * @client: the client; the calling process must run as root
 * @guest: the guest
 * @path: the image
 * @mode: the mode asked for
 * @guest_uuid: (nullable): the guest's UUID as registered
 * @uid: the emulator's uid, or #IMAGE_ACCESS_UID_NONE
 * @pid: an emulator process, or 0
 * @cancellable: (nullable): cancels the wait
 * @callback: (scope async): called when the call completes
 * @user_data: (closure): data for @callback
 *
 * image_access_client_explain_polkit_sync() without blocking.
 */
void image_access_client_explain_polkit(ImageAccessClient *client, const char *guest,
                                        const char *path, ImageAccessMode mode,
                                        const char *guest_uuid, gint64 uid, int pid,
                                        GCancellable *cancellable, GAsyncReadyCallback callback,
                                        gpointer user_data) {
        GTask *task;
        Call *call;

        g_return_if_fail(IMAGE_ACCESS_IS_CLIENT(client));
        task = call_new(client, cancellable, callback, user_data,
                        image_access_client_explain_polkit);
        if (!task)
                return;
        call = g_task_get_task_data(task);
        call_started(client, task,
                     ia_manager_explain_polkit_async(client->ia, guest, path, (IaImageMode) mode,
                                                     guest_uuid, uid_from_g(uid), pid,
                                                     on_explain_done, task, &call->request));
}

/**
 * image_access_client_explain_polkit_finish:
 * @client: the client
 * @result: the result passed to the callback
 * @error: return location for an error
 *
 * Returns: polkit's answer; #IMAGE_ACCESS_POLKIT_ANSWER_NOT_AUTHORIZED with @error set on
 *   failure
 */
ImageAccessPolkitAnswer image_access_client_explain_polkit_finish(ImageAccessClient *client,
                                                                  GAsyncResult *result,
                                                                  GError **error) {
        g_autoptr(GError) e = NULL;
        gssize v;

        g_return_val_if_fail(g_task_is_valid(result, client), 0);
        v = g_task_propagate_int(G_TASK(result), &e);
        if (e) {
                g_propagate_error(error, g_steal_pointer(&e));
                return IMAGE_ACCESS_POLKIT_ANSWER_NOT_AUTHORIZED;
        }
        return (ImageAccessPolkitAnswer) v;
}

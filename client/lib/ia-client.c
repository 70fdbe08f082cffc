/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ia-client.c — IaClient: the connection to image-accessd, its event-loop hooks, and opening
 * one image synchronously or asynchronously (IaRequest).
 *
 * Non-logging, like the whole library: every failure is returned as a negative errno plus,
 * where the caller asked for it, an IaError with the D-Bus name and message.
 */

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "ia-client-private.h"
#include "ia-error.h"
#include "ia-macro.h"

/* ---- small things ------------------------------------------------------------------------ */

const char *ia_image_mode_to_string(IaImageMode mode) {
        switch (mode) {
        case IA_IMAGE_MODE_READ_ONLY:
                return IA_MODE_READ_ONLY_STR;
        case IA_IMAGE_MODE_READ_WRITE:
                return IA_MODE_READ_WRITE_STR;
        case IA_IMAGE_MODE_CREATE:
                return IA_MODE_CREATE_STR;
        default:
                return NULL;
        }
}

int ia_image_mode_from_string(const char *s) {
        if (!s)
                return -EINVAL;
        if (strcmp(s, IA_MODE_READ_ONLY_STR) == 0)
                return IA_IMAGE_MODE_READ_ONLY;
        if (strcmp(s, IA_MODE_READ_WRITE_STR) == 0)
                return IA_IMAGE_MODE_READ_WRITE;
        if (strcmp(s, IA_MODE_CREATE_STR) == 0)
                return IA_IMAGE_MODE_CREATE;
        return -EINVAL;
}

char **ia_strv_free(char **l) {
        if (l)
                for (char **i = l; *i; i++)
                        free(*i);
        free(l);
        return NULL;
}

bool client_guest_name_is_valid(const char *name) {
        /* The service checks the full grammar and names the problem; here only what would make
         * a call impossible or pointless to send. */
        return name && name[0] != '\0' && strlen(name) <= 128;
}

bool client_path_is_valid(const char *path) {
        return path && path[0] == '/' && strlen(path) <= 4095;
}

/* ---- the connection ------------------------------------------------------------------------ */

static int bus_open(IaClient *c, sd_bus **ret) {
        ia_autoptr(sd_bus) bus = NULL;
        int r;

        if (c->address) {
                r = sd_bus_new(&bus);
                if (r < 0)
                        return r;
                r = sd_bus_set_address(bus, c->address);
                if (r < 0)
                        return r;
                r = sd_bus_set_bus_client(bus, true);
                if (r < 0)
                        return r;
                r = sd_bus_set_description(bus, "libimageaccess");
                if (r < 0)
                        return r;
                r = sd_bus_negotiate_fds(bus, true);
                if (r < 0)
                        return r;
                r = sd_bus_start(bus);
                if (r < 0)
                        return r;
        } else {
                /* Honours $DBUS_SYSTEM_BUS_ADDRESS (secure_getenv) like every sd-bus user. */
                r = sd_bus_open_system_with_description(&bus, "libimageaccess");
                if (r < 0)
                        return r;
        }

        /* The caller's loop exiting must not close our connection: the client owns it. */
        r = sd_bus_set_close_on_exit(bus, false);
        if (r < 0)
                return r;
        r = sd_bus_set_method_call_timeout(bus, c->timeout_usec);
        if (r < 0)
                return r;
        r = sd_bus_set_allow_interactive_authorization(bus, c->allow_interactive);
        if (r < 0)
                return r;
        if (c->event) {
                r = sd_bus_attach_event(bus, c->event, c->event_priority);
                if (r < 0)
                        return r;
        }

        *ret = IA_TAKE_PTR(bus);
        return 0;
}

static void bus_drop(sd_bus *bus) {
        if (!bus)
                return;
        (void) sd_bus_detach_event(bus);
        sd_bus_flush_close_unref(bus);
}

/* Delivers the synthesized failures of a lost connection to their callbacks.  Returns true
 * when the connection is done with (closed and drained). */
static bool bus_drain(sd_bus *bus) {
        for (;;) {
                int r = sd_bus_process(bus, NULL);
                if (r == -EBUSY)
                        /* Called from a callback of this very connection: sd-bus does not
                         * nest.  The rest is delivered by the loop (ia_client_process() or
                         * the attached loop) later. */
                        return false;
                if (r <= 0)
                        return true;
        }
}

/* Whether the peer hung up.  sd-bus notices only when it processes the connection, which a
 * program using synchronous calls alone never does between calls: one poll() here lets the
 * first call after a restart of the bus go out on a new connection instead of failing. */
static bool bus_hung_up(sd_bus *bus) {
        struct pollfd p = { .fd = sd_bus_get_fd(bus) };

        if (p.fd < 0)
                return true;
        if (poll(&p, 1, 0) <= 0)
                return false;
        return p.revents & (POLLHUP | POLLERR | POLLNVAL);
}

int client_get_bus(IaClient *c, sd_bus **ret_bus) {
        sd_bus *bus = NULL;
        int r;

        if (c->closing_bus && bus_drain(c->closing_bus))
                c->closing_bus = (bus_drop(c->closing_bus), NULL);

        if (c->bus && sd_bus_is_open(c->bus) > 0 && !bus_hung_up(c->bus)) {
                *ret_bus = c->bus;
                return 0;
        }
        if (c->connecting)
                /* A callback run while a lost connection is drained below. */
                return -ENOTCONN;

        /* The connection was lost.  Fail its calls in flight before anything new goes out,
         * so that batches see "failed" before a retry starts. */
        c->connecting = true;
        if (c->bus) {
                sd_bus *old = IA_TAKE_PTR(c->bus);

                if (bus_drain(old))
                        bus_drop(old);
                else if (c->closing_bus) {
                        /* Two lost connections with undelivered failures: try again from
                         * outside the callback. */
                        c->bus = old;
                        c->connecting = false;
                        return -EBUSY;
                } else
                        c->closing_bus = old;  /* kept attached: the loop finishes it */
        }
        r = bus_open(c, &bus);
        c->connecting = false;
        if (r < 0)
                return r;

        c->bus = bus;
        c->bus_generation++;    /* a channel made on the lost connection died with it */
        *ret_bus = bus;
        return 0;
}

static int client_new_internal(const char *address, IaClient **ret_client) {
        IaClient *c;
        int r;

        (void) ia_error_map_register();

        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->n_ref = 1;
        c->timeout_usec = IA_CLIENT_DEFAULT_TIMEOUT_USEC;
        c->channel_fd = -1;
        if (address) {
                c->address = strdup(address);
                if (!c->address) {
                        free(c);
                        return -ENOMEM;
                }
        }

        r = bus_open(c, &c->bus);
        if (r < 0) {
                free(c->address);
                free(c);
                return r;
        }

        *ret_client = c;
        return 0;
}

int ia_client_new(IaClient **ret_client) {
        if (!ret_client)
                return -EINVAL;
        return client_new_internal(NULL, ret_client);
}

int ia_client_new_with_address(const char *address, IaClient **ret_client) {
        if (!ret_client)
                return -EINVAL;
        if (address && address[0] == '\0')
                return -EINVAL;
        return client_new_internal(address, ret_client);
}

IaClient *ia_client_ref(IaClient *client) {
        if (client)
                client->n_ref++;
        return client;
}

IaClient *ia_client_unref(IaClient *client) {
        if (!client || --client->n_ref > 0)
                return NULL;

        client_channel_drop(client);
        bus_drop(client->closing_bus);
        bus_drop(client->bus);
        sd_event_unref(client->event);
        free(client->address);
        free(client);
        return NULL;
}

static void client_apply_timeout(IaClient *client) {
        client->timeout_usec = client->timeout_set_usec ?:
                client->allow_interactive ? IA_CLIENT_INTERACTIVE_TIMEOUT_USEC :
                                            IA_CLIENT_DEFAULT_TIMEOUT_USEC;
        if (client->bus)
                (void) sd_bus_set_method_call_timeout(client->bus, client->timeout_usec);
}

int ia_client_set_timeout(IaClient *client, uint64_t usec) {
        if (!client)
                return -EINVAL;
        client->timeout_set_usec = usec;
        client_apply_timeout(client);
        return 0;
}

int ia_client_set_allow_interactive_authorization(IaClient *client, bool b) {
        if (!client)
                return -EINVAL;
        client->allow_interactive = b;
        if (client->bus)
                (void) sd_bus_set_allow_interactive_authorization(client->bus, b);
        client_apply_timeout(client);
        return 0;
}

int client_new_method_call(IaClient *c, const char *interface, const char *member,
                           sd_bus_message **ret) {
        sd_bus *bus;
        int r;

        r = client_get_bus(c, &bus);
        if (r < 0)
                return r;
        /* sd-bus applies the bus's allow-interactive setting to new method calls. */
        return sd_bus_message_new_method_call(bus, ret, IA_BUS_NAME, IA_OBJECT_PATH, interface,
                                              member);
}

int client_run_until(IaClient *c, bool (*done)(void *userdata), void *userdata) {
        int r;

        while (!done(userdata)) {
                r = ia_client_process(c);
                if (r < 0)
                        return r;
                if (r > 0)
                        continue;
                if (done(userdata))
                        break;
                r = ia_client_wait(c, UINT64_MAX);
                if (r < 0)
                        return r;
        }
        return 0;
}

int ia_client_get_version(IaClient *client, IaError *error, char **ret_version) {
        ia_auto(sd_bus_error) e = SD_BUS_ERROR_NULL;
        char *v = NULL;
        sd_bus *bus;
        int r;

        if (!client || !ret_version)
                return ia_error_set_errnof(error, -EINVAL, "Invalid argument");
        r = client_get_bus(client, &bus);
        if (r < 0)
                return ia_error_set_errnof(error, r, "Cannot connect to the bus: %s", strerror(-r));
        r = sd_bus_get_property_string(bus, IA_BUS_NAME, IA_OBJECT_PATH, IA_INTERFACE, "Version",
                                       &e, &v);
        if (r < 0)
                return ia_error_set_bus(error, &e, r);
        *ret_version = v;
        return 0;
}

/* ---- event loops ------------------------------------------------------------------------------ */

int ia_client_attach_event(IaClient *client, struct sd_event *event, int64_t priority) {
        sd_event *e = NULL;
        int r;

        if (!client)
                return -EINVAL;
        if (client->event)
                return -EBUSY;

        if (event)
                e = sd_event_ref(event);
        else {
                r = sd_event_default(&e);
                if (r < 0)
                        return r;
        }
        if (client->bus) {
                r = sd_bus_attach_event(client->bus, e, priority);
                if (r < 0) {
                        sd_event_unref(e);
                        return r;
                }
        }
        client->event = e;
        client->event_priority = priority;
        return 0;
}

int ia_client_detach_event(IaClient *client) {
        if (!client)
                return -EINVAL;
        if (client->bus)
                (void) sd_bus_detach_event(client->bus);
        if (client->closing_bus)
                (void) sd_bus_detach_event(client->closing_bus);
        client->event = sd_event_unref(client->event);
        return 0;
}

struct sd_event *ia_client_get_event(IaClient *client) {
        return client ? client->event : NULL;
}

int ia_client_get_fd(IaClient *client) {
        if (!client)
                return -EINVAL;
        if (!client->bus)
                return -ENOTCONN;
        return sd_bus_get_fd(client->bus);
}

int ia_client_get_events(IaClient *client) {
        if (!client)
                return -EINVAL;
        if (!client->bus)
                return -ENOTCONN;
        return sd_bus_get_events(client->bus);
}

int ia_client_get_timeout(IaClient *client, uint64_t *ret_usec) {
        uint64_t t;
        int r;

        if (!client || !ret_usec)
                return -EINVAL;
        if (client->closing_bus) {
                /* Failures of a lost connection wait to be delivered: process now. */
                *ret_usec = 0;
                return 0;
        }
        if (!client->bus)
                return -ENOTCONN;
        r = sd_bus_get_timeout(client->bus, &t);
        if (r < 0)
                return r;
        *ret_usec = t;
        return 0;
}

int ia_client_process(IaClient *client) {
        int r;

        if (!client)
                return -EINVAL;

        if (client->closing_bus) {
                if (bus_drain(client->closing_bus))
                        client->closing_bus = (bus_drop(client->closing_bus), NULL);
                return 1;
        }
        if (!client->bus)
                return -ENOTCONN;

        ia_client_ref(client);
        r = sd_bus_process(client->bus, NULL);
        ia_client_unref(client);
        /* A connection that is closed and drained has nothing more to do: the next operation
         * reconnects.  Not an error for the loop. */
        if (r == -ENOTCONN || r == -ECONNRESET)
                return 0;
        return r;
}

int ia_client_wait(IaClient *client, uint64_t timeout_usec) {
        int r;

        if (!client)
                return -EINVAL;
        if (client->closing_bus)
                return 1;
        if (!client->bus)
                return -ENOTCONN;
        r = sd_bus_wait(client->bus, timeout_usec);
        if (r == -ENOTCONN || r == -ECONNRESET)
                return 1; /* let process() see the closed state */
        return r;
}

/* ---- OpenImage ----------------------------------------------------------------------------------- */

int client_new_open_call(IaClient *c, const char *guest, const char *path, IaImageMode mode,
                         uint64_t flags, sd_bus_message **ret) {
        ia_autoptr(sd_bus_message) m = NULL;
        const char *mode_str = ia_image_mode_to_string(mode);
        int r;

        if (!client_guest_name_is_valid(guest) || !client_path_is_valid(path) || !mode_str)
                return -EINVAL;
        if (flags & ~(IA_OPEN_DIRECT | IA_OPEN_NONBLOCK))
                return -EINVAL;

        r = client_new_method_call(c, IA_INTERFACE, "OpenImage", &m);
        if (r < 0)
                return r;
        r = sd_bus_message_append(m, "sss", guest, path, mode_str);
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(m, 'a', "{sv}");
        if (r < 0)
                return r;
        /* Only options that are set: an older service knows every key we send. */
        if (flags & IA_OPEN_DIRECT) {
                r = sd_bus_message_append(m, "{sv}", "direct", "b", 1);
                if (r < 0)
                        return r;
        }
        if (flags & IA_OPEN_NONBLOCK) {
                r = sd_bus_message_append(m, "{sv}", "nonblock", "b", 1);
                if (r < 0)
                        return r;
        }
        r = sd_bus_message_close_container(m);
        if (r < 0)
                return r;

        *ret = IA_TAKE_PTR(m);
        return 0;
}

int client_reply_dup_fd(sd_bus_message *reply, int *ret_fd) {
        int fd, copy, r;

        r = sd_bus_message_read(reply, "h", &fd);
        if (r < 0)
                return r;
        /* The fd belongs to the message and dies with it: hand out our own duplicate. */
        copy = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (copy < 0)
                return -errno;
        *ret_fd = copy;
        return 0;
}

static int open_args_error(IaError *error, const char *guest, const char *path, IaImageMode mode,
                           uint64_t flags) {
        if (!client_guest_name_is_valid(guest))
                return ia_error_set_errnof(error, -EINVAL, "Invalid guest name");
        if (!client_path_is_valid(path))
                return ia_error_set_errnof(error, -EINVAL, "Image path must be absolute: '%s'",
                                           path ?: "(null)");
        if (!ia_image_mode_to_string(mode))
                return ia_error_set_errnof(error, -EINVAL, "Invalid mode %d", (int) mode);
        if (flags & ~(IA_OPEN_DIRECT | IA_OPEN_NONBLOCK))
                return ia_error_set_errnof(error, -EINVAL, "Unknown open flags 0x%llx",
                                           (unsigned long long) flags);
        return 0;
}

int ia_client_open(IaClient *client, const char *guest, const char *path, IaImageMode mode,
                   uint64_t flags, IaError *error, int *ret_fd) {
        ia_auto(sd_bus_error) e = SD_BUS_ERROR_NULL;
        ia_autoptr(sd_bus_message) m = NULL;
        ia_autoptr(sd_bus_message) reply = NULL;
        sd_bus *bus;
        int fd, r;

        if (!client || !ret_fd)
                return ia_error_set_errnof(error, -EINVAL, "Invalid argument");
        r = open_args_error(error, guest, path, mode, flags);
        if (r < 0)
                return r;

        if (client->use_channel) {
                r = client_channel_open(client, guest, path, mode, flags, error, ret_fd);
                if (r != 0)
                        return r < 0 ? r : 0;
        }

        r = client_new_open_call(client, guest, path, mode, flags, &m);
        if (r < 0)
                return ia_error_set_errnof(error, r, "Cannot make the OpenImage call: %s",
                                           strerror(-r));
        bus = sd_bus_message_get_bus(m);
        r = sd_bus_call(bus, m, 0, &e, &reply);
        if (r < 0)
                return ia_error_set_bus(error, &e, r);

        r = client_reply_dup_fd(reply, &fd);
        if (r < 0)
                return ia_error_set_errnof(error, r, "Cannot take the fd of '%s' from the reply: %s",
                                           path, strerror(-r));
        *ret_fd = fd;
        return 0;
}

/* ---- IaRequest ------------------------------------------------------------------------------------ */

static IaRequest *request_free(IaRequest *req) {
        sd_bus_slot_unref(req->slot);
        if (req->free_data)
                req->free_data(req->data);
        ia_client_unref(req->client);
        free(req);
        return NULL;
}

IaRequest *ia_request_ref(IaRequest *request) {
        if (request)
                request->n_ref++;
        return request;
}

IaRequest *ia_request_unref(IaRequest *request) {
        if (!request || --request->n_ref > 0)
                return NULL;
        /* Dropping the slot cancels the call in sd-bus: a reply arriving later is freed with
         * its fds, which therefore never reach anyone. */
        return request_free(request);
}

/* Ends a request: it is no longer pending, its calls are cancelled (their replies, fds
 * included, are dropped by sd-bus), and a floating request lets go of itself.  free_data()
 * takes NULL. */
static void request_end(IaRequest *req) {
        req->pending = false;
        req->slot = sd_bus_slot_unref(req->slot);
        if (req->free_data)
                req->data = (req->free_data(req->data), NULL);
        req->client = ia_client_unref(req->client);
        if (req->floating) {
                req->floating = false;
                ia_request_unref(req);
        }
}

int ia_request_cancel(IaRequest *request) {
        if (!request)
                return -EINVAL;
        if (!request->pending)
                return 0;
        request_end(request);
        return 1;
}

bool ia_request_is_pending(IaRequest *request) {
        return request && request->pending;
}

int client_request_new(IaClient *c, RequestCompleteFunc complete, void (*callback)(void),
                       void *userdata, IaRequest **ret) {
        IaRequest *req = calloc(1, sizeof(*req));

        if (!req)
                return -ENOMEM;
        req->n_ref = 1;
        req->client = ia_client_ref(c);
        req->complete = complete;
        req->callback = callback;
        req->userdata = userdata;
        *ret = req;
        return 0;
}

void client_request_complete(IaRequest *req, sd_bus_message *reply) {
        IaClient *client;

        /* The callback may drop the caller's reference; ours keeps req alive until we return,
         * and the client stays referenced through the callback. */
        ia_request_ref(req);
        client = ia_client_ref(req->client);
        req->pending = false;
        req->slot = sd_bus_slot_unref(req->slot);
        req->complete(req, client, reply);
        ia_client_unref(client);
        request_end(req);
        ia_request_unref(req);
}

static int on_request_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        client_request_complete(userdata, reply);
        return 0;
}

int client_request_send(IaRequest *req, sd_bus_message *m, IaRequest **ret_request) {
        int r;

        if (m) {
                r = sd_bus_call_async(sd_bus_message_get_bus(m), &req->slot, m,
                                      on_request_reply, req, 0);
                if (r < 0) {
                        request_free(req);
                        return r;
                }
        }
        req->pending = true;
        if (ret_request)
                *ret_request = req;
        else
                req->floating = true;
        return 0;
}

/* Fills @error (zero-initialized by the caller) from an error reply.  Returns the negative
 * errno, or 0 if @reply is not an error. */
int client_reply_error(sd_bus_message *reply, IaError *error) {
        if (!sd_bus_message_is_method_error(reply, NULL))
                return 0;
        return ia_error_set_bus(error, sd_bus_message_get_error(reply), 0);
}

static void open_complete(IaRequest *req, IaClient *client, sd_bus_message *reply) {
        IaOpenCallback callback = (IaOpenCallback) req->callback;
        IaError error = {};
        int fd = -EBADF, r;

        r = client_reply_error(reply, &error);
        if (r >= 0) {
                r = client_reply_dup_fd(reply, &fd);
                if (r < 0)
                        ia_error_set_errnof(&error, r, "Cannot take the fd from the reply: %s",
                                            strerror(-r));
        }
        callback(client, r, r >= 0 ? IA_TAKE_FD(fd) : -EBADF, r < 0 ? &error : NULL,
                 req->userdata);
        ia_error_done(&error);
}

int ia_client_open_async(IaClient *client, const char *guest, const char *path,
                         IaImageMode mode, uint64_t flags, IaOpenCallback callback,
                         void *userdata, IaRequest **ret_request) {
        ia_autoptr(sd_bus_message) m = NULL;
        IaRequest *req;
        int r;

        if (!client || !callback)
                return -EINVAL;
        r = open_args_error(NULL, guest, path, mode, flags);
        if (r < 0)
                return r;

        r = client_new_open_call(client, guest, path, mode, flags, &m);
        if (r < 0)
                return r;
        r = client_request_new(client, open_complete, (void (*)(void)) callback, userdata, &req);
        if (r < 0)
                return r;
        return client_request_send(req, m, ret_request);
}

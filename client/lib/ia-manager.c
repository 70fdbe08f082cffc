/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ia-manager.c — the Manager side of libimageaccess: guests, bindings, grants, listings, and
 * the cleanup of files a failed snapshot batch left behind (ia_manager_remove_created()).
 *
 * Every call is built by one function and sent two ways: synchronously (managers with worker
 * threads, one IaClient per thread; every call may wait for polkit) and asynchronously
 * through an IaRequest (GUI managers, whose polkit check may wait for a person).
 */

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "ia-client-private.h"
#include "ia-error.h"
#include "ia-macro.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

/* Sends a prepared call and waits; the reply is dropped.  Fills @error. */
static int call_simple(IaClient *c, sd_bus_message *m, IaError *error) {
        ia_auto(sd_bus_error) e = SD_BUS_ERROR_NULL;
        int r;

        r = sd_bus_call(sd_bus_message_get_bus(m), m, 0, &e, NULL);
        if (r < 0)
                return ia_error_set_bus(error, &e, r);
        return 0;
}

static int new_call(IaClient *c, const char *member, IaError *error, sd_bus_message **ret) {
        int r = client_new_method_call(c, IA_MANAGER_INTERFACE, member, ret);
        if (r < 0)
                return ia_error_set_errnof(error, r, "Cannot make the %s call: %s", member,
                                           strerror(-r));
        return 0;
}

static int build_error(IaError *error, int r, const char *member) {
        return ia_error_set_errnof(error, r, "Cannot build the %s call: %s", member,
                                   strerror(-r));
}

static int build_register(IaClient *client, const char *name, const char *uuid,
                          const char *description, uid_t uid, uint64_t flags, IaError *error,
                          sd_bus_message **ret) {
        ia_autoptr(sd_bus_message) m = NULL;
        int r;

        if (!client || !client_guest_name_is_valid(name))
                return ia_error_set_errnof(error, -EINVAL, "Invalid guest name");

        r = new_call(client, "RegisterGuest", error, &m);
        if (r < 0)
                return r;
        r = sd_bus_message_append(m, "s", name);
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "{sv}");
        if (r >= 0 && uuid)
                r = sd_bus_message_append(m, "{sv}", "uuid", "s", uuid);
        if (r >= 0 && description)
                r = sd_bus_message_append(m, "{sv}", "description", "s", description);
        if (r >= 0 && uid != IA_UID_NONE)
                r = sd_bus_message_append(m, "{sv}", "uid", "u", (uint32_t) uid);
        if (r >= 0 && (flags & IA_REGISTER_SHARE_UID))
                r = sd_bus_message_append(m, "{sv}", "share-uid", "b", 1);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r < 0)
                return build_error(error, r, "RegisterGuest");
        *ret = IA_TAKE_PTR(m);
        return 0;
}

int ia_manager_register_guest(IaClient *client, const char *name, const char *uuid,
                              const char *description, uid_t uid, IaError *error) {
        return ia_manager_register_guest_full(client, name, uuid, description, uid,
                                              /* flags= */ 0, error);
}

int ia_manager_register_guest_full(IaClient *client, const char *name, const char *uuid,
                                   const char *description, uid_t uid, uint64_t flags,
                                   IaError *error) {
        ia_autoptr(sd_bus_message) m = NULL;
        int r;

        if (flags & ~IA_REGISTER_SHARE_UID)
                return ia_error_set_errnof(error, -EINVAL, "Unknown flags 0x%llx",
                                           (unsigned long long) flags);
        r = build_register(client, name, uuid, description, uid, flags, error, &m);
        if (r < 0)
                return r;
        return call_simple(client, m, error);
}

/* A call whose one argument is a guest name (UnregisterGuest, ListGrants). */
static int build_guest_call(IaClient *client, const char *member, const char *name,
                            IaError *error, sd_bus_message **ret) {
        ia_autoptr(sd_bus_message) m = NULL;
        int r;

        if (!client || !client_guest_name_is_valid(name))
                return ia_error_set_errnof(error, -EINVAL, "Invalid guest name");

        r = new_call(client, member, error, &m);
        if (r < 0)
                return r;
        r = sd_bus_message_append(m, "s", name);
        if (r < 0)
                return build_error(error, r, member);
        *ret = IA_TAKE_PTR(m);
        return 0;
}

int ia_manager_unregister_guest(IaClient *client, const char *name, IaError *error) {
        ia_autoptr(sd_bus_message) m = NULL;
        int r;

        r = build_guest_call(client, "UnregisterGuest", name, error, &m);
        if (r < 0)
                return r;
        return call_simple(client, m, error);
}

static int build_bind(IaClient *client, const char *guest, int pidfd, IaError *error,
                      sd_bus_message **ret) {
        ia_autoptr(sd_bus_message) m = NULL;
        int r;

        if (!client || !client_guest_name_is_valid(guest) || pidfd < 0)
                return ia_error_set_errnof(error, -EINVAL, "Invalid argument");

        r = new_call(client, "BindProcess", error, &m);
        if (r < 0)
                return r;
        /* sd-bus duplicates the fd into the message: the caller keeps its own. */
        r = sd_bus_message_append(m, "sha{sv}", guest, pidfd, 0);
        if (r < 0)
                return build_error(error, r, "BindProcess");
        *ret = IA_TAKE_PTR(m);
        return 0;
}

int ia_manager_bind_process(IaClient *client, const char *guest, int pidfd, IaError *error) {
        ia_autoptr(sd_bus_message) m = NULL;
        int r;

        r = build_bind(client, guest, pidfd, error, &m);
        if (r < 0)
                return r;
        return call_simple(client, m, error);
}

/* A pidfd of @pid, owned by the caller. */
static int open_pidfd(pid_t pid, IaError *error, int *ret_pidfd) {
        int pidfd;

        if (pid <= 0)
                return ia_error_set_errnof(error, -EINVAL, "Invalid pid %d", (int) pid);
        pidfd = (int) syscall(SYS_pidfd_open, pid, 0);
        if (pidfd < 0)
                return ia_error_set_errnof(error, -errno, "Cannot open a pidfd of %d: %m",
                                           (int) pid);
        *ret_pidfd = pidfd;
        return 0;
}

int ia_manager_bind_pid(IaClient *client, const char *guest, pid_t pid, IaError *error) {
        ia_autofd int pidfd = -EBADF;
        int r;

        r = open_pidfd(pid, error, &pidfd);
        if (r < 0)
                return r;
        return ia_manager_bind_process(client, guest, pidfd, error);
}

static int build_grant(IaClient *client, const char *guest, const char *path,
                       IaImageMode mode, uint64_t flags, IaError *error, sd_bus_message **ret) {
        ia_autoptr(sd_bus_message) m = NULL;
        const char *mode_str = ia_image_mode_to_string(mode);
        int r;

        if (!client || !client_guest_name_is_valid(guest) || !client_path_is_valid(path) ||
            !mode_str)
                return ia_error_set_errnof(error, -EINVAL, "Invalid argument");

        r = new_call(client, "GrantImage", error, &m);
        if (r < 0)
                return r;
        if (flags & IA_GRANT_DIRECTORY)
                r = sd_bus_message_append(m, "sssa{sv}", guest, path, mode_str, 1, "directory", "b", 1);
        else
                r = sd_bus_message_append(m, "sssa{sv}", guest, path, mode_str, 0);
        if (r < 0)
                return build_error(error, r, "GrantImage");
        *ret = IA_TAKE_PTR(m);
        return 0;
}

int ia_manager_grant_image(IaClient *client, const char *guest, const char *path,
                           IaImageMode mode, IaError *error) {
        ia_autoptr(sd_bus_message) m = NULL;
        int r;

        r = build_grant(client, guest, path, mode, /* flags= */ 0, error, &m);
        if (r < 0)
                return r;
        return call_simple(client, m, error);
}

int ia_manager_grant_image_full(IaClient *client, const char *guest, const char *path,
                                IaImageMode mode, uint64_t flags, IaError *error) {
        ia_autoptr(sd_bus_message) m = NULL;
        int r;

        if (flags & ~IA_GRANT_DIRECTORY)
                return ia_error_set_errnof(error, -EINVAL, "Unknown flags 0x%llx",
                                           (unsigned long long) flags);
        r = build_grant(client, guest, path, mode, flags, error, &m);
        if (r < 0)
                return r;
        return call_simple(client, m, error);
}

static int new_revoke_call(IaClient *c, const char *guest, const char *path, uint64_t flags,
                           IaError *error, sd_bus_message **ret) {
        ia_autoptr(sd_bus_message) m = NULL;
        int r;

        r = new_call(c, "RevokeImage", error, &m);
        if (r < 0)
                return r;
        if (flags & IA_REVOKE_REMOVE_CREATED)
                r = sd_bus_message_append(m, "ssa{sv}", guest, path, 1, "remove-created", "b", 1);
        else
                r = sd_bus_message_append(m, "ssa{sv}", guest, path, 0);
        if (r < 0)
                return build_error(error, r, "RevokeImage");
        *ret = IA_TAKE_PTR(m);
        return 0;
}

static int build_revoke(IaClient *client, const char *guest, const char *path,
                        uint64_t flags, IaError *error, sd_bus_message **ret) {
        if (!client || !client_guest_name_is_valid(guest) || !client_path_is_valid(path) ||
            (flags & ~IA_REVOKE_REMOVE_CREATED))
                return ia_error_set_errnof(error, -EINVAL, "Invalid argument");
        return new_revoke_call(client, guest, path, flags, error, ret);
}

int ia_manager_revoke_image(IaClient *client, const char *guest, const char *path,
                            uint64_t flags, IaError *error) {
        ia_autoptr(sd_bus_message) m = NULL;
        int r;

        r = build_revoke(client, guest, path, flags, error, &m);
        if (r < 0)
                return r;
        return call_simple(client, m, error);
}

/* ---- remove-created for a whole batch ------------------------------------------------------------ */

typedef struct RemoveState {
        size_t n_pending;
        int n_removed;
        int first_error;
        IaError *error;
} RemoveState;

typedef struct RemoveCall {
        RemoveState *state;
        sd_bus_slot *slot;
} RemoveCall;

/* Tallies one RevokeImage reply.  Returns whether it counts as cleaned. */
static void remove_tally(RemoveState *s, const sd_bus_error *e, int r) {
        IaError tmp = {};

        if (r >= 0) {
                s->n_removed++;
                return;
        }
        /* "Nothing of ours to clean here": already revoked, or never created. */
        if (sd_bus_error_has_name(e, IA_ERROR_NOT_GRANTED) ||
            sd_bus_error_has_name(e, IA_ERROR_NOT_CREATED))
                return;
        if (s->first_error < 0)
                return;
        s->first_error = ia_error_set_bus(s->error ?: &tmp, e, r);
        ia_error_done(&tmp);
}

static int on_remove_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        RemoveCall *call = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(reply);

        call->slot = sd_bus_slot_unref(call->slot);
        remove_tally(call->state, e, e ? -sd_bus_error_get_errno(e) : 0);
        call->state->n_pending--;
        return 0;
}

static bool remove_done(void *userdata) {
        RemoveState *s = userdata;
        return s->n_pending == 0;
}

int ia_manager_remove_created(IaClient *client, const char *guest, const char *const *paths,
                              IaError *error) {
        RemoveState s = { .error = error };
        RemoveCall *calls = NULL;
        size_t n = 0;
        sd_bus *bus;
        int r;

        if (!client || !client_guest_name_is_valid(guest) || !paths)
                return ia_error_set_errnof(error, -EINVAL, "Invalid argument");
        for (; paths[n]; n++)
                if (!client_path_is_valid(paths[n]))
                        return ia_error_set_errnof(error, -EINVAL, "Invalid path '%s'", paths[n]);
        if (n == 0)
                return 0;

        r = client_get_bus(client, &bus);
        if (r < 0)
                return ia_error_set_errnof(error, r, "Cannot connect to the bus: %s", strerror(-r));

        if (sd_bus_get_current_message(bus)) {
                /* Called from a callback of this connection: sd-bus cannot process nested, so
                 * no pipelining here; sd_bus_call() may wait for its own reply. */
                for (size_t i = 0; i < n; i++) {
                        ia_auto(sd_bus_error) e = SD_BUS_ERROR_NULL;
                        ia_autoptr(sd_bus_message) m = NULL;

                        r = new_revoke_call(client, guest, paths[i], IA_REVOKE_REMOVE_CREATED,
                                            error, &m);
                        if (r < 0)
                                return r;
                        r = sd_bus_call(bus, m, 0, &e, NULL);
                        remove_tally(&s, &e, r);
                }
                return s.first_error < 0 ? s.first_error : s.n_removed;
        }

        /* All calls at once: the service and polkit work on them concurrently.  Batches are
         * bounded (IA_BATCH_MAX_IMAGES); send in windows to stay below the bus's limit of
         * pending replies per connection. */
        calls = calloc(n, sizeof(*calls));
        if (!calls)
                return ia_error_set_errnof(error, -ENOMEM, "Out of memory");

        for (size_t start = 0; start < n; start += IA_BATCH_MAX_IN_FLIGHT) {
                size_t end = start + IA_BATCH_MAX_IN_FLIGHT < n ? start + IA_BATCH_MAX_IN_FLIGHT : n;

                for (size_t i = start; i < end; i++) {
                        ia_autoptr(sd_bus_message) m = NULL;

                        calls[i].state = &s;
                        r = new_revoke_call(client, guest, paths[i], IA_REVOKE_REMOVE_CREATED,
                                            NULL, &m);
                        if (r >= 0)
                                r = sd_bus_call_async(bus, &calls[i].slot, m, on_remove_reply,
                                                      calls + i, 0);
                        if (r < 0) {
                                ia_auto(sd_bus_error) e = SD_BUS_ERROR_NULL;

                                (void) sd_bus_error_set_errno(&e, -r);
                                remove_tally(&s, &e, r);
                                continue;
                        }
                        s.n_pending++;
                }

                r = client_run_until(client, remove_done, &s);
                if (r < 0) {
                        /* Cannot wait: cancel what is in flight (the slots' replies are then
                         * dropped) and report. */
                        for (size_t i = 0; i < n; i++)
                                calls[i].slot = sd_bus_slot_unref(calls[i].slot);
                        free(calls);
                        return ia_error_set_errnof(error, r, "Cannot wait for the replies: %s",
                                                   strerror(-r));
                }
        }

        free(calls);
        return s.first_error < 0 ? s.first_error : s.n_removed;
}

/* ---- listings --------------------------------------------------------------------------------------- */

static char *dup_nonempty(const char *s) {
        return s && s[0] ? strdup(s) : NULL;
}

static void guest_info_free(IaGuestInfo *g) {
        if (!g)
                return;
        free(g->name);
        free(g->uuid);
        free(g->description);
        free(g);
}

IaGuestInfo **ia_guest_info_list_free(IaGuestInfo **list) {
        if (list)
                for (IaGuestInfo **i = list; *i; i++)
                        guest_info_free(*i);
        free(list);
        return NULL;
}

static void grant_info_free(IaGrantInfo *g) {
        if (!g)
                return;
        free(g->path);
        free(g);
}

IaGrantInfo **ia_grant_info_list_free(IaGrantInfo **list) {
        if (list)
                for (IaGrantInfo **i = list; *i; i++)
                        grant_info_free(*i);
        free(list);
        return NULL;
}

/* Appends @p to a NULL-terminated array of pointers. */
static int ptr_array_push(void ***array, size_t *n, void *p) {
        void **a = reallocarray(*array, *n + 2, sizeof(void *));

        if (!a)
                return -ENOMEM;
        a[(*n)++] = p;
        a[*n] = NULL;
        *array = a;
        return 0;
}

/* Reads one a{sv} of guest properties into @g; unknown keys are skipped (a newer service may
 * add some). */
static int read_guest_props(sd_bus_message *m, IaGuestInfo *g) {
        int r;

        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                const char *key, *s;
                uint32_t u;

                r = sd_bus_message_read(m, "s", &key);
                if (r < 0)
                        return r;
                if (strcmp(key, "uuid") == 0 || strcmp(key, "description") == 0) {
                        r = sd_bus_message_read(m, "v", "s", &s);
                        if (r < 0)
                                return r;
                        char **dst = key[0] == 'u' ? &g->uuid : &g->description;
                        free(*dst);
                        *dst = dup_nonempty(s);
                        if (s[0] && !*dst)
                                return -ENOMEM;
                } else if (strcmp(key, "uid") == 0 || strcmp(key, "grants") == 0 ||
                           strcmp(key, "processes") == 0) {
                        r = sd_bus_message_read(m, "v", "u", &u);
                        if (r < 0)
                                return r;
                        if (key[0] == 'u')
                                g->uid = (uid_t) u;
                        else if (key[0] == 'g')
                                g->n_grants = u;
                        else
                                g->n_processes = u;
                } else {
                        r = sd_bus_message_skip(m, "v");
                        if (r < 0)
                                return r;
                }
                r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        return sd_bus_message_exit_container(m);
}

/* Parses a ListGuests reply.  Returns the number of guests with *ret_list owned by the
 * caller, or a negative errno with @error filled. */
static int parse_guests(sd_bus_message *reply, IaError *error, IaGuestInfo ***ret_list) {
        IaGuestInfo **list = NULL;
        size_t n = 0;
        int r;

        list = calloc(1, sizeof(*list));
        if (!list)
                return ia_error_set_errnof(error, -ENOMEM, "Out of memory");

        r = sd_bus_message_enter_container(reply, 'a', "(sa{sv})");
        while (r >= 0 && (r = sd_bus_message_enter_container(reply, 'r', "sa{sv}")) > 0) {
                IaGuestInfo *g;
                const char *name;

                r = sd_bus_message_read(reply, "s", &name);
                if (r < 0)
                        break;
                g = calloc(1, sizeof(*g));
                if (!g || !(g->name = strdup(name))) {
                        guest_info_free(g);
                        r = -ENOMEM;
                        break;
                }
                g->uid = IA_UID_NONE;
                r = read_guest_props(reply, g);
                if (r >= 0)
                        r = ptr_array_push((void ***) &list, &n, g);
                if (r < 0) {
                        guest_info_free(g);
                        break;
                }
                r = sd_bus_message_exit_container(reply);
        }
        if (r >= 0)
                r = sd_bus_message_exit_container(reply);
        if (r < 0) {
                ia_guest_info_list_free(list);
                return ia_error_set_errnof(error, r, "Cannot parse the ListGuests reply: %s",
                                           strerror(-r));
        }

        *ret_list = list;
        return (int) n;
}

/* Parses a ListGrants reply, as parse_guests(). */
static int parse_grants(sd_bus_message *reply, IaError *error, IaGrantInfo ***ret_list) {
        IaGrantInfo **list = NULL;
        size_t n = 0;
        int r;

        list = calloc(1, sizeof(*list));
        if (!list)
                return ia_error_set_errnof(error, -ENOMEM, "Out of memory");

        r = sd_bus_message_enter_container(reply, 'a', "(ssa{sv})");
        while (r >= 0 && (r = sd_bus_message_enter_container(reply, 'r', "ssa{sv}")) > 0) {
                const char *path, *mode;
                IaGrantInfo *g;

                r = sd_bus_message_read(reply, "ss", &path, &mode);
                if (r < 0)
                        break;
                g = calloc(1, sizeof(*g));
                if (!g || !(g->path = strdup(path))) {
                        grant_info_free(g);
                        r = -ENOMEM;
                        break;
                }
                r = ia_image_mode_from_string(mode);
                g->mode = r >= 0 ? (IaImageMode) r : IA_IMAGE_MODE_UNKNOWN;

                r = sd_bus_message_enter_container(reply, 'a', "{sv}");
                while (r >= 0 && (r = sd_bus_message_enter_container(reply, 'e', "sv")) > 0) {
                        const char *key;
                        int b;

                        r = sd_bus_message_read(reply, "s", &key);
                        if (r >= 0 && strcmp(key, "created") == 0) {
                                r = sd_bus_message_read(reply, "v", "b", &b);
                                g->created = b;
                        } else if (r >= 0 && strcmp(key, "pinned") == 0) {
                                r = sd_bus_message_read(reply, "v", "b", &b);
                                g->pinned = b;
                        } else if (r >= 0 && strcmp(key, "directory") == 0) {
                                r = sd_bus_message_read(reply, "v", "b", &b);
                                g->directory = b;
                        } else if (r >= 0 && strcmp(key, "device") == 0)
                                r = sd_bus_message_read(reply, "v", "t", &g->device);
                        else if (r >= 0 && strcmp(key, "inode") == 0)
                                r = sd_bus_message_read(reply, "v", "t", &g->inode);
                        else if (r >= 0)
                                r = sd_bus_message_skip(reply, "v");
                        if (r >= 0)
                                r = sd_bus_message_exit_container(reply);
                }
                if (r >= 0)
                        r = sd_bus_message_exit_container(reply);
                if (r >= 0)
                        r = ptr_array_push((void ***) &list, &n, g);
                if (r < 0) {
                        grant_info_free(g);
                        break;
                }
                r = sd_bus_message_exit_container(reply);
        }
        if (r >= 0)
                r = sd_bus_message_exit_container(reply);
        if (r < 0) {
                ia_grant_info_list_free(list);
                return ia_error_set_errnof(error, r, "Cannot parse the ListGrants reply: %s",
                                           strerror(-r));
        }

        *ret_list = list;
        return (int) n;
}

/* Sends a prepared call and waits for the reply, owned by the caller.  Fills @error. */
static int call_reply(sd_bus_message *m, IaError *error, sd_bus_message **ret_reply) {
        ia_auto(sd_bus_error) e = SD_BUS_ERROR_NULL;
        int r;

        r = sd_bus_call(sd_bus_message_get_bus(m), m, 0, &e, ret_reply);
        if (r < 0)
                return ia_error_set_bus(error, &e, r);
        return 0;
}

int ia_manager_list_guests(IaClient *client, IaError *error, IaGuestInfo ***ret_guests) {
        ia_autoptr(sd_bus_message) m = NULL;
        ia_autoptr(sd_bus_message) reply = NULL;
        int r;

        if (!client || !ret_guests)
                return ia_error_set_errnof(error, -EINVAL, "Invalid argument");

        r = new_call(client, "ListGuests", error, &m);
        if (r < 0)
                return r;
        r = call_reply(m, error, &reply);
        if (r < 0)
                return r;
        return parse_guests(reply, error, ret_guests);
}

int ia_manager_list_grants(IaClient *client, const char *guest, IaError *error,
                           IaGrantInfo ***ret_grants) {
        ia_autoptr(sd_bus_message) m = NULL;
        ia_autoptr(sd_bus_message) reply = NULL;
        int r;

        if (!ret_grants)
                return ia_error_set_errnof(error, -EINVAL, "Invalid argument");
        r = build_guest_call(client, "ListGrants", guest, error, &m);
        if (r < 0)
                return r;
        r = call_reply(m, error, &reply);
        if (r < 0)
                return r;
        return parse_grants(reply, error, ret_grants);
}

/* ---- asynchronous variants ------------------------------------------------------------------------
 *
 * The same calls, built by the same functions, sent with sd_bus_call_async(): they complete
 * from whatever processes the client's connection (sd-event, GLib, or ia_client_process()). */

static int send_async(IaClient *client, sd_bus_message *m, RequestCompleteFunc complete,
                      void (*callback)(void), void *userdata, IaRequest **ret_request) {
        IaRequest *req;
        int r;

        r = client_request_new(client, complete, callback, userdata, &req);
        if (r < 0)
                return r;
        return client_request_send(req, m, ret_request);
}

static void simple_complete(IaRequest *req, IaClient *client, sd_bus_message *reply) {
        IaManagerCallback callback = (IaManagerCallback) req->callback;
        IaError error = {};
        int r;

        r = client_reply_error(reply, &error);
        callback(client, r, r < 0 ? &error : NULL, req->userdata);
        ia_error_done(&error);
}

#define SEND_SIMPLE(client, m, callback, userdata, ret_request)                                  \
        send_async(client, m, simple_complete, (void (*)(void)) (callback), userdata, ret_request)

int ia_manager_register_guest_async(IaClient *client, const char *name, const char *uuid,
                                    const char *description, uid_t uid,
                                    IaManagerCallback callback, void *userdata,
                                    IaRequest **ret_request) {
        return ia_manager_register_guest_full_async(client, name, uuid, description, uid,
                                                    /* flags= */ 0, callback, userdata,
                                                    ret_request);
}

int ia_manager_register_guest_full_async(IaClient *client, const char *name, const char *uuid,
                                         const char *description, uid_t uid, uint64_t flags,
                                         IaManagerCallback callback, void *userdata,
                                         IaRequest **ret_request) {
        ia_autoptr(sd_bus_message) m = NULL;
        int r;

        if (!callback || (flags & ~IA_REGISTER_SHARE_UID))
                return -EINVAL;
        r = build_register(client, name, uuid, description, uid, flags, /* error= */ NULL, &m);
        if (r < 0)
                return r;
        return SEND_SIMPLE(client, m, callback, userdata, ret_request);
}

int ia_manager_unregister_guest_async(IaClient *client, const char *name,
                                      IaManagerCallback callback, void *userdata,
                                      IaRequest **ret_request) {
        ia_autoptr(sd_bus_message) m = NULL;
        int r;

        if (!callback)
                return -EINVAL;
        r = build_guest_call(client, "UnregisterGuest", name, /* error= */ NULL, &m);
        if (r < 0)
                return r;
        return SEND_SIMPLE(client, m, callback, userdata, ret_request);
}

int ia_manager_bind_process_async(IaClient *client, const char *guest, int pidfd,
                                  IaManagerCallback callback, void *userdata,
                                  IaRequest **ret_request) {
        ia_autoptr(sd_bus_message) m = NULL;
        int r;

        if (!callback)
                return -EINVAL;
        /* The message holds its own duplicate of @pidfd from here on. */
        r = build_bind(client, guest, pidfd, /* error= */ NULL, &m);
        if (r < 0)
                return r;
        return SEND_SIMPLE(client, m, callback, userdata, ret_request);
}

int ia_manager_bind_pid_async(IaClient *client, const char *guest, pid_t pid,
                              IaManagerCallback callback, void *userdata,
                              IaRequest **ret_request) {
        ia_autofd int pidfd = -EBADF;
        int r;

        r = open_pidfd(pid, /* error= */ NULL, &pidfd);
        if (r < 0)
                return r;
        return ia_manager_bind_process_async(client, guest, pidfd, callback, userdata,
                                             ret_request);
}

int ia_manager_grant_image_async(IaClient *client, const char *guest, const char *path,
                                 IaImageMode mode, IaManagerCallback callback, void *userdata,
                                 IaRequest **ret_request) {
        return ia_manager_grant_image_full_async(client, guest, path, mode, /* flags= */ 0,
                                                 callback, userdata, ret_request);
}

int ia_manager_grant_image_full_async(IaClient *client, const char *guest, const char *path,
                                      IaImageMode mode, uint64_t flags,
                                      IaManagerCallback callback, void *userdata,
                                      IaRequest **ret_request) {
        ia_autoptr(sd_bus_message) m = NULL;
        int r;

        if (!callback || (flags & ~IA_GRANT_DIRECTORY))
                return -EINVAL;
        r = build_grant(client, guest, path, mode, flags, /* error= */ NULL, &m);
        if (r < 0)
                return r;
        return SEND_SIMPLE(client, m, callback, userdata, ret_request);
}

int ia_manager_revoke_image_async(IaClient *client, const char *guest, const char *path,
                                  uint64_t flags, IaManagerCallback callback, void *userdata,
                                  IaRequest **ret_request) {
        ia_autoptr(sd_bus_message) m = NULL;
        int r;

        if (!callback)
                return -EINVAL;
        r = build_revoke(client, guest, path, flags, /* error= */ NULL, &m);
        if (r < 0)
                return r;
        return SEND_SIMPLE(client, m, callback, userdata, ret_request);
}

static void guests_complete(IaRequest *req, IaClient *client, sd_bus_message *reply) {
        IaGuestListCallback callback = (IaGuestListCallback) req->callback;
        IaGuestInfo **list = NULL;
        IaError error = {};
        int r;

        r = client_reply_error(reply, &error);
        if (r >= 0)
                r = parse_guests(reply, &error, &list);
        /* The list goes to the callback, which frees it. */
        callback(client, r, r >= 0 ? IA_TAKE_PTR(list) : NULL, r < 0 ? &error : NULL,
                 req->userdata);
        ia_error_done(&error);
}

int ia_manager_list_guests_async(IaClient *client, IaGuestListCallback callback,
                                 void *userdata, IaRequest **ret_request) {
        ia_autoptr(sd_bus_message) m = NULL;
        int r;

        if (!client || !callback)
                return -EINVAL;
        r = new_call(client, "ListGuests", /* error= */ NULL, &m);
        if (r < 0)
                return r;
        return send_async(client, m, guests_complete, (void (*)(void)) callback, userdata,
                          ret_request);
}

static void grants_complete(IaRequest *req, IaClient *client, sd_bus_message *reply) {
        IaGrantListCallback callback = (IaGrantListCallback) req->callback;
        IaGrantInfo **list = NULL;
        IaError error = {};
        int r;

        r = client_reply_error(reply, &error);
        if (r >= 0)
                r = parse_grants(reply, &error, &list);
        callback(client, r, r >= 0 ? IA_TAKE_PTR(list) : NULL, r < 0 ? &error : NULL,
                 req->userdata);
        ia_error_done(&error);
}

int ia_manager_list_grants_async(IaClient *client, const char *guest,
                                 IaGrantListCallback callback, void *userdata,
                                 IaRequest **ret_request) {
        ia_autoptr(sd_bus_message) m = NULL;
        int r;

        if (!callback)
                return -EINVAL;
        r = build_guest_call(client, "ListGrants", guest, /* error= */ NULL, &m);
        if (r < 0)
                return r;
        return send_async(client, m, grants_complete, (void (*)(void)) callback, userdata,
                          ret_request);
}

/* remove-created, asynchronously: the calls of ia_manager_remove_created(), at most
 * IA_BATCH_MAX_IN_FLIGHT in flight, the next sent as each reply comes in.  The job lives in
 * the request's data, so cancelling the request cancels every call in flight. */

typedef struct RemoveJob RemoveJob;

typedef struct RemoveJobCall {
        RemoveJob *job;
        sd_bus_slot *slot;
} RemoveJobCall;

struct RemoveJob {
        IaRequest *req;         /* borrowed: the request owns the job */
        char *guest;
        char **paths;
        size_t n, next;
        RemoveJobCall *calls;
        RemoveState state;
        IaError error;
};

static void remove_job_free(void *data) {
        RemoveJob *job = data;

        if (!job)
                return;
        for (size_t i = 0; i < job->n; i++)
                sd_bus_slot_unref(job->calls[i].slot);
        free(job->calls);
        ia_strv_free(job->paths);
        free(job->guest);
        ia_error_done(&job->error);
        free(job);
}

static int on_remove_job_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error);

/* Sends calls until the window is full or every path went out. */
static void remove_job_send(RemoveJob *job) {
        sd_bus *bus;
        int r;

        while (job->next < job->n && job->state.n_pending < IA_BATCH_MAX_IN_FLIGHT) {
                ia_autoptr(sd_bus_message) m = NULL;
                RemoveJobCall *call = job->calls + job->next;

                call->job = job;
                r = new_revoke_call(job->req->client, job->guest, job->paths[job->next],
                                    IA_REVOKE_REMOVE_CREATED, NULL, &m);
                job->next++;
                if (r >= 0) {
                        bus = sd_bus_message_get_bus(m);
                        r = sd_bus_call_async(bus, &call->slot, m, on_remove_job_reply, call, 0);
                }
                if (r < 0) {
                        ia_auto(sd_bus_error) e = SD_BUS_ERROR_NULL;

                        (void) sd_bus_error_set_errno(&e, -r);
                        remove_tally(&job->state, &e, r);
                        continue;
                }
                job->state.n_pending++;
        }
}

static void remove_job_complete(IaRequest *req, IaClient *client, sd_bus_message *reply) {
        IaManagerCallback callback = (IaManagerCallback) req->callback;
        RemoveJob *job = req->data;
        int r = job->state.first_error < 0 ? job->state.first_error : job->state.n_removed;

        callback(client, r, r < 0 ? &job->error : NULL, req->userdata);
}

static int on_remove_job_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        RemoveJobCall *call = userdata;
        RemoveJob *job = call->job;
        const sd_bus_error *e = sd_bus_message_get_error(reply);

        call->slot = sd_bus_slot_unref(call->slot);
        remove_tally(&job->state, e, e ? -sd_bus_error_get_errno(e) : 0);
        job->state.n_pending--;
        remove_job_send(job);
        if (job->state.n_pending == 0 && job->next == job->n)
                /* Ends the request, which frees the job: nothing of it is used after this. */
                client_request_complete(job->req, NULL);
        return 0;
}

int ia_manager_remove_created_async(IaClient *client, const char *guest,
                                    const char *const *paths, IaManagerCallback callback,
                                    void *userdata, IaRequest **ret_request) {
        RemoveJob *job;
        IaRequest *req;
        sd_bus *bus;
        size_t n = 0;
        int r;

        if (!client || !client_guest_name_is_valid(guest) || !paths || !callback)
                return -EINVAL;
        for (; paths[n]; n++)
                if (!client_path_is_valid(paths[n]))
                        return -EINVAL;
        if (n == 0)
                return -ENODATA;
        r = client_get_bus(client, &bus);
        if (r < 0)
                return r;

        job = calloc(1, sizeof(*job));
        if (!job)
                return -ENOMEM;
        job->n = n;
        job->state.error = &job->error;
        job->guest = strdup(guest);
        job->calls = calloc(n, sizeof(*job->calls));
        job->paths = calloc(n + 1, sizeof(char *));
        for (size_t i = 0; job->paths && i < n; i++)
                if (!(job->paths[i] = strdup(paths[i]))) {
                        job->paths = ia_strv_free(job->paths);
                        break;
                }
        if (!job->guest || !job->calls || !job->paths) {
                remove_job_free(job);
                return -ENOMEM;
        }

        r = client_request_new(client, remove_job_complete, (void (*)(void)) callback, userdata,
                               &req);
        if (r < 0) {
                remove_job_free(job);
                return r;
        }
        req->data = job;
        req->free_data = remove_job_free;
        job->req = req;

        remove_job_send(job);
        if (job->state.n_pending == 0) {
                /* Not one call went out: fail now (the callback is never called). */
                r = job->state.first_error < 0 ? job->state.first_error : -ENOTCONN;
                ia_request_unref(req);
                return r;
        }
        return client_request_send(req, /* m= */ NULL, ret_request);
}

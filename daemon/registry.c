/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * registry.c — the guests, their grants and their bound emulator processes.
 *
 * Pure logic: no bus, no I/O, no logging above debug.  Guests are a hash table keyed by name
 * and each guest's grants a hash table keyed by path, so a lookup costs the same with ten
 * guests as with ten thousand.  The keys are borrowed from the values (Guest.name, Grant.path),
 * which is why nothing here ever inserts over an existing key: GHashTable would keep the old
 * key, pointing into the value it just freed.
 */
#include <assert.h>
#include <string.h>

#include "escape.h"
#include "hash.h"
#include "macro.h"
#include "path.h"
#include "registry.h"

/* The D-Bus specification caps every name, unique names included, at 255 bytes. */
#define BUS_NAME_MAX 255

/**
 * guest_name_is_valid: 1..GUEST_NAME_MAX bytes of [A-Za-z0-9_.:+-], not starting with '.' or
 * '-'.
 * @name: may be NULL.
 *
 * Return: true if valid.
 */
bool guest_name_is_valid(const char *name) {
        size_t n;

        if (!name)
                return false;

        n = strlen(name);
        if (n == 0 || n > GUEST_NAME_MAX)
                return false;

        /* A leading '-' would read as an option to the CLI, a leading '.' as a hidden file
         * wherever a name ends up in a file name. */
        if (name[0] == '.' || name[0] == '-')
                return false;

        for (size_t i = 0; i < n; i++)
                if (!g_ascii_isalnum(name[i]) && !strchr("_.:+-", name[i]))
                        return false;

        return true;
}

/**
 * guest_uuid_is_valid: the 36-character 8-4-4-4-12 form, hex digits of either case.
 * @uuid: may be NULL.
 *
 * Return: true if valid.
 */
bool guest_uuid_is_valid(const char *uuid) {
        if (!uuid || strlen(uuid) != 36)
                return false;

        for (size_t i = 0; i < 36; i++) {
                if (i == 8 || i == 13 || i == 18 || i == 23) {
                        if (uuid[i] != '-')
                                return false;
                } else if (!g_ascii_isxdigit(uuid[i]))
                        return false;
        }

        return true;
}

/**
 * guest_description_is_valid: valid UTF-8 of at most GUEST_DESCRIPTION_MAX bytes without
 * control characters (C0, DEL and C1), line separators or bidi controls (escape_is_safe()).
 * @description: may be NULL.
 *
 * Return: true if valid.
 */
bool guest_description_is_valid(const char *description) {
        if (!description)
                return false;

        if (strlen(description) > GUEST_DESCRIPTION_MAX)
                return false;

        /* C0, DEL, C1, line separators and bidi controls: none belongs in a line of
         * `image-accessctl list` output or in a log message (escape.h says why each). */
        return escape_is_safe(description, -1);
}

/**
 * bus_unique_name_is_valid: is @name a unique bus name, as the D-Bus specification defines
 * it: ':', then at least two non-empty '.'-separated elements of [A-Za-z0-9_-], at most 255
 * bytes in all?
 * @name: may be NULL.
 *
 * Return: true if so.
 */
bool bus_unique_name_is_valid(const char *name) {
        size_t n, elements = 0;
        bool empty = true;

        if (!name || name[0] != ':')
                return false;

        n = strlen(name);
        if (n > BUS_NAME_MAX)
                return false;

        for (size_t i = 1; i < n; i++) {
                if (name[i] == '.') {
                        if (empty)
                                return false;
                        elements++;
                        empty = true;
                } else if (g_ascii_isalnum(name[i]) || name[i] == '_' || name[i] == '-')
                        empty = false;
                else
                        return false;
        }
        if (empty)
                return false;
        elements++;

        return elements >= 2;
}

/**
 * grant_free: frees a grant handed out by registry_revoke().
 * @g: may be NULL; owned by the caller, freed here together with its path.
 *
 * Return: NULL.
 */
Grant *grant_free(Grant *g) {
        if (!g)
                return NULL;

        /* The path is part of the same allocation. */
        g_free(g);
        return NULL;
}

static void grant_free_void(gpointer p) {
        (void) grant_free(p);
}

static Binding *binding_free(Binding *b) {
        if (!b)
                return NULL;

        b->pidfd = ia_safe_close(b->pidfd);
        if (b->connections)
                g_ptr_array_unref(b->connections);
        g_free(b);
        return NULL;
}

static void binding_free_void(gpointer p) {
        (void) binding_free(p);
}

static Guest *guest_free(Guest *g) {
        if (!g)
                return NULL;

        if (g->grants)
                g_hash_table_unref(g->grants);
        if (g->bindings)
                g_ptr_array_unref(g->bindings);
        g_free(g->name);
        g_free(g->uuid);
        g_free(g->description);
        g_free(g);
        return NULL;
}

static void guest_free_void(gpointer p) {
        (void) guest_free(p);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC(Guest, guest_free);

/**
 * registry_new: creates an empty registry.
 * @limits: copied; NULL means REGISTRY_LIMITS_DEFAULT.
 *
 * Return: a new registry owned by the caller, free with registry_free().  Never NULL.
 */
Registry *registry_new(const RegistryLimits *limits) {
        Registry *r = g_new0(Registry, 1);

        r->limits = limits ? *limits : REGISTRY_LIMITS_DEFAULT;
        r->guests = g_hash_table_new_full(str_hash_seeded, g_str_equal, NULL, guest_free_void);
        return r;
}

/**
 * registry_free: frees @r with every guest, grant and binding, closing the bindings' pidfds.
 * @r: may be NULL.
 *
 * Return: NULL.
 */
Registry *registry_free(Registry *r) {
        if (!r)
                return NULL;

        g_hash_table_unref(r->guests);
        g_free(r->bus_id);
        g_free(r);
        return NULL;
}

/**
 * registry_clear: removes every guest (closing the bindings' pidfds) and the bus id, so that
 * @r is as registry_new() made it.  The limits stay.
 * @r: the registry.
 */
void registry_clear(Registry *r) {
        assert(r);

        g_hash_table_remove_all(r->guests);
        g_clear_pointer(&r->bus_id, g_free);
        r->n_grants = 0;
}

/**
 * registry_add_guest: registers a guest.
 * @r: the registry.
 * @name: checked with guest_name_is_valid(); copied.
 * @uuid: may be NULL; checked with guest_uuid_is_valid(); copied.
 * @description: may be NULL; checked with guest_description_is_valid(); copied.
 * @has_uid: whether the guest is bound to @uid.
 * @uid: the uid binding; (uid_t) -1 is refused, it is the "no uid" value of chown() and
 *       setresuid() and never a real caller.
 * @ret: optional; on success a pointer to the new guest, borrowed from @r.
 *
 * Return: 0; -EINVAL invalid name, uuid, description or uid; -EEXIST the name is taken;
 *         -ENOBUFS the registry already holds max_guests guests.  Nothing changes on failure.
 */
int registry_add_guest(Registry *r, const char *name, const char *uuid, const char *description,
                       bool has_uid, uid_t uid, Guest **ret) {
        g_autoptr(Guest) g = NULL;
        Guest *borrowed;

        assert(r);

        if (!guest_name_is_valid(name))
                return -EINVAL;
        if (uuid && !guest_uuid_is_valid(uuid))
                return -EINVAL;
        if (description && !guest_description_is_valid(description))
                return -EINVAL;
        if (has_uid && uid == (uid_t) -1)
                return -EINVAL;

        if (g_hash_table_contains(r->guests, name))
                return -EEXIST;
        if (g_hash_table_size(r->guests) >= r->limits.max_guests)
                return -ENOBUFS;

        g = g_new0(Guest, 1);
        g->name = g_strdup(name);
        g->uuid = g_strdup(uuid);
        g->description = g_strdup(description);
        g->has_uid = has_uid;
        g->uid = has_uid ? uid : (uid_t) -1;
        g->grants = g_hash_table_new_full(str_hash_seeded, g_str_equal, NULL, grant_free_void);
        g->bindings = g_ptr_array_new_with_free_func(binding_free_void);

        borrowed = g;
        g_hash_table_insert(r->guests, borrowed->name, g_steal_pointer(&g));
        if (ret)
                *ret = borrowed;
        return 0;
}

/**
 * registry_remove_guest: removes the guest @name with its grants and bindings, closing the
 * bindings' pidfds.
 * @r: the registry.
 * @name: the guest.
 *
 * Return: 0; -ESRCH no such guest.
 */
int registry_remove_guest(Registry *r, const char *name) {
        Guest *g;

        assert(r);

        g = registry_get_guest(r, name);
        if (!g)
                return -ESRCH;

        r->n_grants -= g_hash_table_size(g->grants);
        g_hash_table_remove(r->guests, name);
        return 0;
}

/**
 * registry_get_guest: looks a guest up by name.
 * @r: the registry.
 * @name: may be NULL.
 *
 * Return: the guest, borrowed from @r (valid until it is removed), or NULL.
 */
Guest *registry_get_guest(Registry *r, const char *name) {
        assert(r);

        if (!name)
                return NULL;

        return g_hash_table_lookup(r->guests, name);
}

Guest *registry_find_guest_by_uid(Registry *r, uid_t uid, const char *except) {
        GHashTableIter it;
        Guest *g, *found = NULL;

        assert(r);

        /* A linear scan: registrations are rare, and max_guests bounds it. */
        g_hash_table_iter_init(&it, r->guests);
        while (g_hash_table_iter_next(&it, NULL, (gpointer *) &g)) {
                if (!g->has_uid || g->uid != uid || g_strcmp0(g->name, except) == 0)
                        continue;
                if (!found || strcmp(g->name, found->name) < 0)
                        found = g;
        }
        return found;
}

gint grant_serial_compare(gconstpointer a, gconstpointer b) {
        const Grant *x = *(Grant *const *) a, *y = *(Grant *const *) b;

        return x->serial < y->serial ? -1 : x->serial > y->serial;
}

/* The part of registry_grant() after validation. */
static int guest_put_grant(Registry *r, Guest *g, const char *path, IaMode mode,
                           Grant **ret_grant) {
        Grant *existing, *grant;
        size_t n;

        existing = g_hash_table_lookup(g->grants, path);
        if (existing) {
                if (ret_grant)
                        *ret_grant = existing;
                if (existing->mode == mode)
                        return 0;
                existing->mode = mode;
                return 1;
        }

        if (g_hash_table_size(g->grants) >= r->limits.max_grants_per_guest)
                return -ENOBUFS;

        /* One allocation for the grant and its path: at a million grants, the second malloc()
         * was a tenth of the time it takes to load them. */
        n = strlen(path) + 1;
        grant = g_malloc0(sizeof(Grant) + n);
        grant->path = memcpy((char *) (grant + 1), path, n);
        grant->mode = mode;
        grant->serial = ++r->grant_serial;
        g_hash_table_insert(g->grants, grant->path, grant);
        r->n_grants++;
        if (ret_grant)
                *ret_grant = grant;
        return 1;
}

/**
 * registry_grant: adds a grant or changes its mode.  Changing the mode keeps the "created"
 * record: the file is still the one the service made for this guest.
 * @r: the registry.
 * @guest: the guest's name.
 * @path: checked with path_is_valid(); copied.
 * @mode: a valid IaMode.
 *
 * Return: 1 added or changed; 0 already exactly so; -EINVAL bad mode, or a path that
 *         path_is_valid() refuses (also for its -ENAMETOOLONG: to a caller both mean "this
 *         is not a path we accept"); -ESRCH unknown guest; -ENOBUFS the guest already has
 *         max_grants_per_guest grants.  Nothing changes on failure.
 */
int registry_grant(Registry *r, const char *guest, const char *path, IaMode mode) {
        Guest *g;

        assert(r);

        /* The arguments first: an invalid path is -EINVAL whether or not the guest exists. */
        if (!ia_mode_to_string(mode))
                return -EINVAL;
        if (path_is_valid(path, /* ret_reason= */ NULL) < 0)
                return -EINVAL;

        g = registry_get_guest(r, guest);
        if (!g)
                return -ESRCH;

        return guest_put_grant(r, g, path, mode, NULL);
}

/**
 * registry_guest_grant: registry_grant() for a guest already looked up (state.c loads a
 * million grants this way without a guest lookup per grant).
 * @r: the registry.
 * @g: a guest of @r.
 * @path: checked with path_is_valid(); copied.
 * @mode: a valid IaMode.
 * @ret_grant: optional; on success (0 or 1) the grant, borrowed from @r.
 *
 * Return: as registry_grant(), without -ESRCH.
 */
int registry_guest_grant(Registry *r, Guest *g, const char *path, IaMode mode,
                         Grant **ret_grant) {
        assert(r);
        assert(g);

        if (!ia_mode_to_string(mode))
                return -EINVAL;
        if (path_is_valid(path, /* ret_reason= */ NULL) < 0)
                return -EINVAL;

        return guest_put_grant(r, g, path, mode, ret_grant);
}

/**
 * registry_load_grant: a grant as state.c recorded it, with its "created" and "pinned"
 * records: added, or put over the guest's grant for the same path.
 * @r: the registry.
 * @g: a guest of @r.
 * @record: the grant: path (checked with path_is_valid(), copied), mode, both records and
 *          whether it is a directory grant.
 * @ret_grant: optional; on success the grant, borrowed from @r.
 *
 * Return: as registry_guest_grant() for @record's path and mode (0: a grant of that mode was
 *         there already).  Nothing changes on failure.
 */
int registry_load_grant(Registry *r, Guest *g, const Grant *record, Grant **ret_grant) {
        Grant *grant;
        int k;

        k = registry_guest_grant(r, g, record->path, record->mode, &grant);
        if (k < 0)
                return k;
        grant->created = record->created;
        grant->created_id = record->created_id;
        grant->pinned = record->pinned;
        grant->pinned_id = record->pinned_id;
        grant->directory = record->directory;
        if (ret_grant)
                *ret_grant = grant;
        return k;
}

/**
 * registry_grant_pinned: GrantImage's change in one step: grants @path to @guest for @mode,
 * pinned to the file @pinned_id found there, or unpinned when @pinned_id is NULL (a create
 * grant for a file not there yet).  The "created" record is kept, as by registry_grant().
 * @ret_undo: optional; on success receives what registry_undo_grant() needs to put the
 *            grant back as it was, e.g. when it could not be persisted.
 * @ret_grant: optional; on success the grant, borrowed from @r.
 *
 * Return: 1 added, or its mode or pin changed; 0 already exactly so; otherwise as
 *         registry_grant().  Nothing changes on failure.
 */
int registry_grant_pinned(Registry *r, const char *guest, const char *path, IaMode mode,
                          const FileId *pinned_id, GrantUndo *ret_undo, Grant **ret_grant) {
        GrantUndo undo = {};
        Grant *grant;
        int k;

        assert(r);

        grant = registry_get_grant(r, guest, path);
        if (grant) {
                undo.existed = true;
                undo.old = *grant;
                undo.old.path = NULL;
        }
        k = registry_grant(r, guest, path, mode);
        if (k < 0)
                return k;
        grant = registry_get_grant(r, guest, path);
        assert(grant);
        grant->pinned = pinned_id;
        grant->pinned_id = pinned_id ? *pinned_id : (FileId) {};

        undo.guest = registry_get_guest(r, guest);
        undo.grant = grant;
        if (ret_undo)
                *ret_undo = undo;
        if (ret_grant)
                *ret_grant = grant;
        return !undo.existed || undo.old.mode != grant->mode || undo.old.pinned != grant->pinned ||
               !file_id_equal(&undo.old.pinned_id, &grant->pinned_id);
}

/**
 * grant_upgrade_ids: a grant of a state file of format 1 knows only (dev, ino) of its file:
 * @found, the full identity of the file found there, becomes its pin, and its "created"
 * record too when that names the same file.
 */
void grant_upgrade_ids(Grant *grant, const FileId *found) {
        assert(grant);

        if (grant->created && grant->created_id.kind == 0 &&
            grant->created_id.dev == found->dev && grant->created_id.ino == found->ino)
                grant->created_id = *found;
        grant->pinned_id = *found;
}

/**
 * registry_undo_grant: puts back what registry_grant_pinned() changed: the grant as it was,
 * or no grant.  Only right after that call, before anything else changes @r.
 */
void registry_undo_grant(Registry *r, const GrantUndo *undo) {
        assert(r);
        assert(undo->guest && undo->grant);

        if (undo->existed) {
                char *path = undo->grant->path;

                *undo->grant = undo->old;
                undo->grant->path = path;
                return;
        }
        if (g_hash_table_remove(undo->guest->grants, undo->grant->path))
                r->n_grants--;
}

/**
 * registry_revoke: removes a grant.
 * @r: the registry.
 * @guest: the guest's name.
 * @path: the granted path.
 * @ret_grant: optional; on success receives the removed grant, owned by the caller (free with
 *             grant_free()): its "created" record says whether there is a file to remove.
 *             Freed here when NULL.
 *
 * Return: 0; -ESRCH unknown guest; -ENOENT no such grant.
 */
int registry_revoke(Registry *r, const char *guest, const char *path, Grant **ret_grant) {
        gpointer key, value;
        Guest *g;

        assert(r);

        g = registry_get_guest(r, guest);
        if (!g)
                return -ESRCH;

        if (!path || !g_hash_table_steal_extended(g->grants, path, &key, &value))
                return -ENOENT;

        r->n_grants--;
        if (ret_grant)
                *ret_grant = value;
        else
                (void) grant_free(value);
        return 0;
}

/**
 * registry_get_grant: looks up @guest's grant for @path.
 * @r: the registry.
 * @guest: the guest's name.
 * @path: the path.
 *
 * Return: the grant, borrowed from @r (valid until it is revoked), or NULL.
 */
Grant *registry_get_grant(Registry *r, const char *guest, const char *path) {
        Guest *g;

        assert(r);

        g = registry_get_guest(r, guest);
        if (!g || !path)
                return NULL;

        return g_hash_table_lookup(g->grants, path);
}

/**
 * registry_check: does @guest's grant for @path cover @mode?
 * @r: the registry.
 * @guest: the guest's name.
 * @path: the path, compared byte for byte with the granted one.
 * @mode: the mode wanted; an invalid one is never covered.
 *
 * Return: 0 yes; -ESRCH unknown guest; -EPERM no grant, or its mode does not cover @mode.
 */
int registry_check(Registry *r, const char *guest, const char *path, IaMode mode) {
        Guest *g;
        Grant *grant;

        assert(r);

        g = registry_get_guest(r, guest);
        if (!g)
                return -ESRCH;

        grant = path ? g_hash_table_lookup(g->grants, path) : NULL;
        if (grant && grant->directory)
                return -EPERM;
        if (!grant && path)
                grant = registry_find_directory_grant(g, path);
        if (!grant || !ia_mode_covers(grant->mode, mode))
                return -EPERM;

        return 0;
}

Grant *registry_find_directory_grant(Guest *g, const char *path) {
        g_autofree char *p = NULL;
        char *slash;

        assert(g);

        if (!path || path[0] != '/')
                return NULL;

        /* Each ancestor once, nearest first: bounded by the path's length (IMAGE_PATH_MAX). */
        p = g_strdup(path);
        while ((slash = strrchr(p, '/')) && slash != p) {
                Grant *grant;

                *slash = '\0';
                grant = g_hash_table_lookup(g->grants, p);
                if (grant && grant->directory)
                        return grant;
        }
        return NULL;
}

/* Is @a @b, or a directory above it?  Both are valid paths (no trailing '/'). */
static bool path_is_at_or_above(const char *a, const char *b) {
        size_t n = strlen(a);

        return strncmp(a, b, n) == 0 && (b[n] == '\0' || b[n] == '/');
}

/* The first grant of a guest other than @except for which @match() is true, and its guest. */
static Guest *find_others_grant(Registry *r, const char *except,
                                bool (*match)(const Grant *grant, const void *data),
                                const void *data, Grant **ret_grant) {
        GHashTableIter gi, ti;
        Guest *g;
        Grant *grant;

        g_hash_table_iter_init(&gi, r->guests);
        while (g_hash_table_iter_next(&gi, NULL, (gpointer *) &g)) {
                if (g_strcmp0(g->name, except) == 0)
                        continue;
                g_hash_table_iter_init(&ti, g->grants);
                while (g_hash_table_iter_next(&ti, NULL, (gpointer *) &grant))
                        if (match(grant, data)) {
                                if (ret_grant)
                                        *ret_grant = grant;
                                return g;
                        }
        }
        return NULL;
}

static bool directory_overlaps(const Grant *grant, const void *path) {
        return grant->directory && (path_is_at_or_above(grant->path, path) ||
                                    path_is_at_or_above(path, grant->path));
}

Guest *registry_find_directory_overlap(Registry *r, const char *path, const char *except,
                                       const char **ret_path) {
        Grant *grant = NULL;
        Guest *g;

        assert(r);
        assert(path);

        g = find_others_grant(r, except, directory_overlaps, path, &grant);
        if (g && ret_path)
                *ret_path = grant->path;
        return g;
}

static bool is_file(const Grant *grant, const void *id) {
        return (grant->pinned && file_id_matches(&grant->pinned_id, id)) ||
               (grant->created && file_id_matches(&grant->created_id, id));
}

Guest *registry_find_file_owner(Registry *r, const FileId *id, const char *except) {
        assert(r);
        assert(id);

        return find_others_grant(r, except, is_file, id, NULL);
}

/**
 * registry_mark_created: records that the service created @path's inode for @guest, so that
 * a later RevokeImage may remove that very inode and no other.
 * @r: the registry.
 * @guest: the guest's name.
 * @path: a granted path.
 * @id: the identity of the inode.
 *
 * Return: 0; -ESRCH unknown guest; -ENOENT no grant for @path.
 */
int registry_pin_grant(Registry *r, const char *guest, const char *path, const FileId *id) {
        Grant *grant;

        assert(r);

        if (!registry_get_guest(r, guest))
                return -ESRCH;
        grant = registry_get_grant(r, guest, path);
        if (!grant)
                return -ENOENT;
        grant->pinned = true;
        grant->pinned_id = *id;
        return 0;
}

int registry_mark_created(Registry *r, const char *guest, const char *path, const FileId *id) {
        Grant *grant;

        assert(r);

        if (!registry_get_guest(r, guest))
                return -ESRCH;

        grant = registry_get_grant(r, guest, path);
        if (!grant)
                return -ENOENT;

        grant->created = true;
        grant->created_id = *id;
        /* What the service made is what the grant is for from now on. */
        grant->pinned = true;
        grant->pinned_id = *id;
        return 0;
}

static Binding *guest_find_binding(Guest *g, pid_t pid, uint64_t starttime) {
        /* Linear: a guest has at most max_bindings_per_guest (default 64) bindings. */
        for (guint i = 0; i < g->bindings->len; i++) {
                Binding *b = g_ptr_array_index(g->bindings, i);

                if (b->pid == pid && b->starttime == starttime)
                        return b;
        }

        return NULL;
}

/**
 * registry_add_binding: binds an emulator process to @guest.
 * @r: the registry.
 * @guest: the guest's name.
 * @pid: the process, > 0.
 * @starttime: its start time (field 22 of /proc/PID/stat).
 * @euid: its euid when bound.
 * @pidfd: taken: owned by the binding on success, closed on failure; -1 allowed (restored
 *         from state).
 * @bind_seq: the bus connection sequence number when bound.
 * @ret: optional; on success the binding, borrowed from @r.
 *
 * A binding for the same pid and starttime already present is replaced in place: it gets
 * @pidfd (its old pidfd is closed), @euid and @bind_seq, and keeps its connections.
 *
 * Return: 0; -EINVAL @pid ≤ 0; -ESRCH unknown guest; -ENOBUFS the guest already has
 *         max_bindings_per_guest bindings.
 */
int registry_add_binding(Registry *r, const char *guest, pid_t pid, uint64_t starttime,
                         uid_t euid, int pidfd, uint64_t bind_seq, Binding **ret) {
        ia_autofd int fd = pidfd;
        Guest *g;
        Binding *b;

        assert(r);

        if (pid <= 0)
                return -EINVAL;

        g = registry_get_guest(r, guest);
        if (!g)
                return -ESRCH;

        b = guest_find_binding(g, pid, starttime);
        if (b) {
                (void) ia_safe_close(b->pidfd);
                b->pidfd = IA_TAKE_FD(fd);
                b->euid = euid;
                b->bind_seq = bind_seq;
                if (ret)
                        *ret = b;
                return 0;
        }

        if (g->bindings->len >= r->limits.max_bindings_per_guest)
                return -ENOBUFS;

        b = g_new0(Binding, 1);
        b->pid = pid;
        b->starttime = starttime;
        b->euid = euid;
        b->connections = g_ptr_array_new_with_free_func(g_free);
        b->pidfd = IA_TAKE_FD(fd);
        b->bind_seq = bind_seq;
        g_ptr_array_add(g->bindings, b);

        if (ret)
                *ret = b;
        return 0;
}

/**
 * registry_get_binding: looks up @guest's binding of the process (@pid, @starttime).
 * @r: the registry.
 * @guest: the guest's name.
 * @pid, @starttime: the process.
 *
 * Return: the binding, borrowed from @r (valid until it is removed), or NULL.
 */
Binding *registry_get_binding(Registry *r, const char *guest, pid_t pid, uint64_t starttime) {
        Guest *g;

        assert(r);

        g = registry_get_guest(r, guest);
        if (!g)
                return NULL;

        return guest_find_binding(g, pid, starttime);
}

/**
 * registry_remove_binding: removes @b from @guest and frees it, closing its pidfd.
 * @r: the registry.
 * @guest: the guest's name.
 * @b: the binding; compared by pointer, never dereferenced unless it is @guest's.
 *
 * Return: 0; -ESRCH unknown guest; -ENOENT @b is not one of @guest's bindings.
 */
int registry_remove_binding(Registry *r, const char *guest, Binding *b) {
        Guest *g;

        assert(r);

        g = registry_get_guest(r, guest);
        if (!g)
                return -ESRCH;

        if (!b || !g_ptr_array_remove(g->bindings, b))
                return -ENOENT;

        return 0;
}

/**
 * binding_add_connection: admits the bus connection @unique_name as @b's process.
 * @b: the binding.
 * @unique_name: a unique bus name such as ":1.42"; copied.
 * @limits: the registry's limits; NULL means REGISTRY_LIMITS_DEFAULT.
 *
 * Return: 0 added; 0 also if already present; -EINVAL not a unique bus name; -ENOBUFS @b
 *         already has max_connections_per_binding connections.
 */
int binding_add_connection(Binding *b, const char *unique_name, const RegistryLimits *limits) {
        RegistryLimits l = limits ? *limits : REGISTRY_LIMITS_DEFAULT;

        assert(b);

        if (!bus_unique_name_is_valid(unique_name))
                return -EINVAL;

        if (binding_has_connection(b, unique_name))
                return 0;

        if (b->connections->len >= l.max_connections_per_binding)
                return -ENOBUFS;

        g_ptr_array_add(b->connections, g_strdup(unique_name));
        return 0;
}

/**
 * binding_remove_connection: forgets @unique_name as @b's process.
 * @b: the binding.
 * @unique_name: the unique bus name.
 *
 * Return: true if it was there and is removed.
 */
bool binding_remove_connection(Binding *b, const char *unique_name) {
        assert(b);

        if (!unique_name)
                return false;

        /* Linear: bounded by max_connections_per_binding (default 16). */
        for (guint i = 0; i < b->connections->len; i++)
                if (strcmp(g_ptr_array_index(b->connections, i), unique_name) == 0) {
                        g_ptr_array_remove_index_fast(b->connections, i);
                        return true;
                }

        return false;
}

/**
 * binding_has_connection: is @unique_name admitted as @b's process?
 * @b: the binding.
 * @unique_name: the unique bus name.
 *
 * Return: true if so.
 */
bool binding_has_connection(const Binding *b, const char *unique_name) {
        assert(b);

        if (!unique_name)
                return false;

        for (guint i = 0; i < b->connections->len; i++)
                if (strcmp(g_ptr_array_index(b->connections, i), unique_name) == 0)
                        return true;

        return false;
}

/**
 * registry_forget_connection: drops @unique_name from every binding of every guest, because
 * the connection left the bus.
 * @r: the registry.
 * @unique_name: the unique bus name.
 *
 * This walks every binding: O(guests × bindings).  It runs once per disconnect, not per
 * OpenImage, and a walk over 10,000 guests is tens of microseconds; an index from name to
 * bindings would cost memory and bookkeeping on every admit for little gain.
 *
 * Return: the number of bindings it was removed from.
 */
unsigned registry_forget_connection(Registry *r, const char *unique_name) {
        GHashTableIter iter;
        gpointer value;
        unsigned n = 0;

        assert(r);

        if (!unique_name)
                return 0;

        g_hash_table_iter_init(&iter, r->guests);
        while (g_hash_table_iter_next(&iter, NULL, &value)) {
                Guest *g = value;

                for (guint i = 0; i < g->bindings->len; i++)
                        if (binding_remove_connection(g_ptr_array_index(g->bindings, i),
                                                      unique_name))
                                n++;
        }

        return n;
}

/**
 * registry_set_bus_id: sets the id of the bus that the admitted connection names belong to.
 * @r: the registry.
 * @bus_id: copied; may be NULL (unknown).
 *
 * When it differs from the previous one, every binding's connection list is cleared: unique
 * names are only unique within one bus instance, and ":1.42" on a restarted bus may be anyone.
 */
void registry_set_bus_id(Registry *r, const char *bus_id) {
        GHashTableIter iter;
        gpointer value;

        assert(r);

        if (g_strcmp0(r->bus_id, bus_id) == 0)
                return;

        g_hash_table_iter_init(&iter, r->guests);
        while (g_hash_table_iter_next(&iter, NULL, &value)) {
                Guest *g = value;

                for (guint i = 0; i < g->bindings->len; i++) {
                        Binding *b = g_ptr_array_index(g->bindings, i);

                        g_ptr_array_set_size(b->connections, 0);
                }
        }

        g_free(r->bus_id);
        r->bus_id = g_strdup(bus_id);
}

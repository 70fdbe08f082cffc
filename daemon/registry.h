/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * registry.h — the guests, their grants and their bound emulator processes.
 *
 * Pure logic: no bus, no I/O, no logging above debug.  Everything here is what the service
 * persists (state.c) plus the runtime-only fields marked as such.  Every table a caller can
 * grow has a limit from RegistryLimits; exceeding it is -ENOBUFS and changes nothing.
 */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <glib.h>

#include "file-id.h"
#include "mode.h"

typedef struct RegistryLimits {
        unsigned max_guests;             /* default 16384 */
        unsigned max_grants_per_guest;   /* default 4096 */
        unsigned max_bindings_per_guest; /* default 64: bound processes per guest */
        unsigned max_connections_per_binding; /* default 16: admitted bus connections */
} RegistryLimits;

#define REGISTRY_LIMITS_DEFAULT ((RegistryLimits) {    \
        .max_guests = 16384,                           \
        .max_grants_per_guest = 4096,                  \
        .max_bindings_per_guest = 64,                  \
        .max_connections_per_binding = 16,             \
})

#define GUEST_NAME_MAX 128
#define GUEST_DESCRIPTION_MAX 1024

typedef struct Grant {
        char *path;             /* absolute, normalized; part of the Grant's own allocation: freed
                                 * by grant_free(), never on its own, never replaced */
        IaMode mode;
        /* Set when the service created this file for the guest (mode create): the identity of
         * the inode it created, so that RevokeImage removes only that very file. */
        bool created;
        FileId created_id;
        /* The inode the grant is for: the file at the path when it was granted, or the file the
         * service created for it.  An open that finds another inode at the path (the granted
         * file was renamed away and another moved in) is refused.  Unset only for a create
         * grant whose file does not exist yet. */
        bool pinned;
        FileId pinned_id;
        /* A directory grant: the guest may open files beneath the directory at @path (pinned
         * like a file), in @mode, without a grant per file.  For files its manager makes
         * there, such as libvirt's snapshot overlays.  A file grant of a path beneath it
         * takes precedence (a backing file granted read-only stays read-only). */
        bool directory;
        /* When it was first granted, in the registry's count (a later change of its mode or
         * pin keeps it): a VM manager grants a guest's disks in the order its emulator opens
         * them, and asking polkit ahead goes in that order. */
        uint64_t serial;
} Grant;

/* An emulator process bound with BindProcess().  See docs/identity.md for why each field. */
typedef struct Binding {
        pid_t pid;
        uint64_t starttime;     /* field 22 of /proc/PID/stat: tells a reused pid apart */
        uid_t euid;             /* the process's euid when bound; a caller must have the same */
        /* Unique bus names (":1.42") already admitted as this process: owned strings.  Only
         * meaningful on the bus whose id is Registry.bus_id. */
        GPtrArray *connections;
        /* Runtime only, never persisted: */
        int pidfd;              /* owned; -1 when restored from state and not yet reopened */
        uint64_t bind_seq;      /* connection sequence number when bound (see identity.c) */
} Binding;

typedef struct Guest {
        char *name;             /* owned */
        char *uuid;             /* owned, may be NULL */
        char *description;      /* owned, may be NULL */
        bool has_uid;           /* bound to a uid: any caller with this euid is the guest */
        uid_t uid;
        GHashTable *grants;     /* path (borrowed from Grant) → Grant* (owned) */
        GPtrArray *bindings;    /* Binding* (owned) */
} Guest;

typedef struct Registry {
        RegistryLimits limits;
        GHashTable *guests;     /* name (borrowed from Guest) → Guest* (owned) */
        char *bus_id;           /* owned, may be NULL: the bus the admitted names belong to */
        uint64_t n_grants;      /* total over all guests */
        uint64_t grant_serial;  /* of the last grant made (Grant.serial) */
} Registry;

/* A GCompareFunc for a GPtrArray of Grant*: the order in which they were made. */
gint grant_serial_compare(gconstpointer a, gconstpointer b);

Registry *registry_new(const RegistryLimits *limits);
Registry *registry_free(Registry *r);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(Registry, registry_free);
/* Removes every guest (closing pidfds) and the bus id; the limits stay. */
void registry_clear(Registry *r);

/* Guest names: 1..GUEST_NAME_MAX bytes of [A-Za-z0-9_.:+-], not starting with '.' or '-'. */
bool guest_name_is_valid(const char *name);
/* UUIDs: the 36-character 8-4-4-4-12 lower- or upper-case hex form. */
bool guest_uuid_is_valid(const char *uuid);
/* Descriptions: ≤ GUEST_DESCRIPTION_MAX bytes for which escape_is_safe() holds. */
bool guest_description_is_valid(const char *description);
/* Unique bus names such as ":1.42", as the D-Bus specification defines them. */
bool bus_unique_name_is_valid(const char *name);

/**
 * registry_add_guest:
 * @uuid, @description: may be NULL; copied.
 * @has_uid, @uid: optional uid binding.
 * @ret: optional, borrowed pointer to the new guest.
 * Return: 0; -EINVAL invalid name/uuid/description (or has_uid with uid (uid_t) -1);
 *         -EEXIST name taken; -ENOBUFS at max_guests.
 */
int registry_add_guest(Registry *r, const char *name, const char *uuid, const char *description,
                       bool has_uid, uid_t uid, Guest **ret);
/* Return: 0; -ESRCH unknown guest.  Frees its grants and bindings (closing their pidfds). */
int registry_remove_guest(Registry *r, const char *name);
/* Borrowed, or NULL. */
Guest *registry_get_guest(Registry *r, const char *name);
/* A guest other than @except (a name, may be NULL) that is bound to @uid: borrowed, or NULL.
 * When several are (registered with sharing), the first in name order. */
Guest *registry_find_guest_by_uid(Registry *r, uid_t uid, const char *except);

/**
 * registry_grant: adds a grant or changes its mode.  Changing the mode of a grant keeps its
 * "created" record.
 * Return: 1 added or changed; 0 already exactly so; -ESRCH unknown guest; -EINVAL bad mode
 *         or a path that path_is_valid() (path.h) refuses; -ENOBUFS at max_grants_per_guest.
 */
int registry_grant(Registry *r, const char *guest, const char *path, IaMode mode);
/* registry_grant() for a guest already looked up; @ret_grant optional, borrowed.  Return: as
 * registry_grant() without -ESRCH. */
int registry_guest_grant(Registry *r, Guest *g, const char *path, IaMode mode,
                         Grant **ret_grant);
/* registry_load_grant: a grant as state.c recorded it (path, mode, created and pinned
 * records), added or put over the one there.  Return: as registry_guest_grant(). */
int registry_load_grant(Registry *r, Guest *g, const Grant *record, Grant **ret_grant);

/* What registry_undo_grant() needs; filled in by registry_grant_pinned(). */
typedef struct GrantUndo {
        Guest *guest;           /* borrowed */
        Grant *grant;           /* borrowed: the grant as changed */
        bool existed;
        Grant old;              /* its fields before (path NULL) */
} GrantUndo;

/**
 * registry_grant_pinned: grants @path to @guest for @mode and pins it to @pinned_id, or
 * unpins it (NULL); the "created" record is kept.  @ret_undo, @ret_grant optional.
 * Return: 1 added, or mode or pin changed; 0 already exactly so; as registry_grant() else.
 */
int registry_grant_pinned(Registry *r, const char *guest, const char *path, IaMode mode,
                          const FileId *pinned_id, GrantUndo *ret_undo, Grant **ret_grant);
/* A format-1 grant (only dev, ino known) learns the full identity @found of its file. */
void grant_upgrade_ids(Grant *grant, const FileId *found);
/* Puts back what the registry_grant_pinned() that filled @undo changed; right after it only. */
void registry_undo_grant(Registry *r, const GrantUndo *undo);
/**
 * registry_revoke:
 * @ret_grant: optional; on success receives the removed grant, owned by the caller
 *             (free with grant_free()).
 * Return: 0; -ESRCH unknown guest; -ENOENT no such grant.
 */
int registry_revoke(Registry *r, const char *guest, const char *path, Grant **ret_grant);
/* Borrowed, or NULL. */
Grant *registry_get_grant(Registry *r, const char *guest, const char *path);
/**
 * registry_check: does @guest's grant for @path cover @mode?  The grant is @path's own, or
 * when it has none, a directory grant above it.  A directory grant's own path is never
 * covered: it is not a file to open.
 * Return: 0 yes; -ESRCH unknown guest; -EPERM no grant or mode not covered.
 */
int registry_check(Registry *r, const char *guest, const char *path, IaMode mode);
/* @g's directory grant that @path lies beneath (the nearest), or NULL: borrowed.  Only for a
 * path that has no grant of its own. */
Grant *registry_find_directory_grant(Guest *g, const char *path);
/* A guest other than @except with a directory grant for @path, for a directory above it or
 * for one beneath it: borrowed, or NULL.  Directory grants of two guests never nest, so
 * that a file beneath one is no other guest's through a directory grant. */
Guest *registry_find_directory_overlap(Registry *r, const char *path, const char *except,
                                       const char **ret_path);
/* A guest other than @except with a grant pinned to, or a file created as, the file @id
 * (file_id_matches()): borrowed, or NULL.  Linear in the number of grants. */
Guest *registry_find_file_owner(Registry *r, const FileId *id, const char *except);
/* Records that the service created @path's inode for @guest.  Return: 0; -ESRCH; -ENOENT. */
int registry_mark_created(Registry *r, const char *guest, const char *path, const FileId *id);

/* Records the inode @path's grant is for.  Return: 0; -ESRCH unknown guest; -ENOENT no grant. */
int registry_pin_grant(Registry *r, const char *guest, const char *path, const FileId *id);

Grant *grant_free(Grant *g);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(Grant, grant_free);

/**
 * registry_add_binding: binds an emulator process to @guest.
 * @pidfd: taken (closed on failure too); -1 allowed (restored from state).
 * @ret: optional, borrowed.
 * Return: 0; -EINVAL pid ≤ 0; -ESRCH unknown guest; -ENOBUFS at max_bindings_per_guest.
 *         A binding for the same pid and starttime already present is replaced (its
 *         connections are kept).
 */
int registry_add_binding(Registry *r, const char *guest, pid_t pid, uint64_t starttime,
                         uid_t euid, int pidfd, uint64_t bind_seq, Binding **ret);
/* Borrowed, or NULL. */
Binding *registry_get_binding(Registry *r, const char *guest, pid_t pid, uint64_t starttime);
/* Removes the binding (closing its pidfd).  Return: 0; -ESRCH; -ENOENT. */
int registry_remove_binding(Registry *r, const char *guest, Binding *b);
/* Return: 0 added; 0 also if present; -EINVAL not a unique bus name (":1.42");
 * -ENOBUFS at max_connections_per_binding.  Name copied; @limits NULL means the defaults. */
int binding_add_connection(Binding *b, const char *unique_name, const RegistryLimits *limits);
/* Return: true if removed. */
bool binding_remove_connection(Binding *b, const char *unique_name);
bool binding_has_connection(const Binding *b, const char *unique_name);
/* Drops @unique_name from every binding of every guest (the connection left the bus).
 * Return: number of bindings it was removed from. */
unsigned registry_forget_connection(Registry *r, const char *unique_name);
/* Sets bus_id (copied); when it differs from the previous one, every binding's connection
 * list is cleared, since unique names are only unique within one bus instance. */
void registry_set_bus_id(Registry *r, const char *bus_id);

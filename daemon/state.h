/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * state.h — persisting the Registry so that guests, grants, created-file records and process
 * bindings survive a restart (crash, upgrade, kill -9).  No bus, no logging above debug.
 *
 * On disk, in the state directory: "state", a checksummed snapshot, and "journal", appended
 * records each with its own checksum; "lock", locked by the one service that uses them.  Every write that a caller is told succeeded has been
 * fsync()ed.  Snapshots are written as temp file + fsync + rename + fsync(dir).
 */
#pragma once

#include "registry.h"

typedef struct State State;

/**
 * state_open: opens (creating if needed) the state directory @dir (absolute; made 0700) and
 * locks it (the file "lock") for as long as the State lives.
 * @ret: owned by the caller, free with state_free().
 * Return: 0; -EBUSY another State holds the lock; negative errno.
 */
int state_open(const char *dir, State **ret);
/* Who holds @dir when state_open() says -EBUSY: a pid, or 0 when it cannot be told. */
pid_t state_lock_holder(const char *dir);
State *state_free(State *s);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(State, state_free);

/**
 * state_load: loads the snapshot and replays the journal into @r, which must be empty.
 * All or nothing: on any error @r is left empty, and *ret_error (optional, owned by the
 * caller, g_free) says what was wrong, with the file and line.
 * A torn last journal record (no terminating newline: a write that was never acknowledged)
 * is dropped and not an error.
 * Return: 0 loaded (also when there is no state yet); -EBADMSG corrupt or truncated
 *         snapshot, bad checksum, unknown version, a record that does not apply; other
 *         negative errno for I/O.
 */
int state_load(State *s, Registry *r, char **ret_error);
/* How many values the last state_load() dropped because the current rules refuse them (a
 * path or a description with a C1 control, a line separator or a bidi control): the grants
 * are gone, the descriptions empty.  The caller should say so. */
unsigned state_n_retired(const State *s);

/* Journal records: each returns 0 once the record is durable, or negative errno: -EINVAL a
 * value that could never be loaded again (so it is not written); -EROFS no successful
 * state_load() yet (a state that failed to load is never written over); -EIO an earlier write
 * failed in a way that leaves the journal's tail uncertain, until state_maybe_compact()
 * succeeds. */
int state_log_add_guest(State *s, const Guest *g);
int state_log_remove_guest(State *s, const char *name);
int state_log_grant(State *s, const char *guest, const Grant *grant);   /* add or change */
int state_log_revoke(State *s, const char *guest, const char *path);
int state_log_add_binding(State *s, const char *guest, const Binding *b);
int state_log_remove_binding(State *s, const char *guest, pid_t pid, uint64_t starttime);
int state_log_add_connection(State *s, const char *guest, pid_t pid, uint64_t starttime,
                             const char *unique_name);
int state_log_bus_id(State *s, const char *bus_id);
/* registry_forget_connection(): the connection left the bus. */
int state_log_forget_connection(State *s, const char *unique_name);

/**
 * state_maybe_compact: writes a fresh snapshot of @r and empties the journal when the journal
 * has grown past max(1 MiB, the snapshot's size); @force does it regardless.
 * Return: 1 compacted; 0 not needed; negative errno (the journal stays valid then).
 */
int state_maybe_compact(State *s, const Registry *r, bool force);

/* Writes a snapshot of @r to @path atomically (for tools and benchmarks that prepare state). */
int state_write_snapshot(const Registry *r, const char *path);

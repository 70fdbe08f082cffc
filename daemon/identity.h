/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * identity.h — who is calling, and is it the emulator of the guest it names?
 *
 * See docs/identity.md for the design and the pid-reuse attack it stops.
 */
#pragma once

#include "manager.h"

/* Subscribes to NameOwnerChanged so that peers are ordered by their arrival on the bus. */
int identity_watch_bus(Manager *m);
/* After a restart: reopen pidfds of restored bindings (dropping those whose process is gone
 * or whose pid now names another process), and forget admitted connections that are no
 * longer on the bus. */
int identity_restore(Manager *m);
/**
 * identity_sweep_start: every 30 s, compares the connections we know with the bus's
 * ListNames and forgets those that left without a NameOwnerChanged reaching us (dbus-daemon
 * drops signals for a receiver whose queue is full).  The timer is Manager.sweep_timer.
 * Return: 0; negative errno.
 */
int identity_sweep_start(Manager *m);

/**
 * caller_from_message: the sender's uid and pid as the bus daemon saw them when it
 * connected (SO_PEERCRED), never augmented from /proc.  Asked of the bus once per peer,
 * asynchronously: until the answer is in, @msg waits (counted in its peer's pending requests)
 * and is given back to the bus's read queue, to be dispatched again, when it comes.
 * Return: 0; REQUEST_PARKED @msg waits (manager.h); -ENOBUFS too many requests wait; -EPERM
 *         when the credentials cannot be had (deny).
 */
int caller_from_message(Manager *m, sd_bus_message *msg, Caller *ret);
/* What the bus says about a connection (GetConnectionCredentials). */
typedef struct BusCreds {
        uid_t uid;
        pid_t pid;
        /* It handed out a pidfd too ("ProcessFD": dbus-daemon 1.15.7 and later, dbus-broker
         * 34 and later), with which polkit 124 and later pin a bus name to its process. */
        bool bus_has_pidfd;
} BusCreds;
/* Parses a GetConnectionCredentials reply.  Return: 0; -ENODATA without a uid and a pid;
 * -EIO an error reply; other negative errno for a malformed one. */
int creds_parse(sd_bus_message *reply, BusCreds *ret);

/* The value destructor of Manager.creds_requeued. */
void creds_requeued_free(void *p);

/**
 * identity_check_bound: may @c act as @g's emulator?  Admits (and records) a new connection
 * of a bound process on its first call.
 * Return: 0 yes; -ENOLINK no.
 */
int identity_check_bound(Manager *m, const Caller *c, Guest *g);

/**
 * identity_bind_process: binds the process behind @pidfd to @g.
 * @pidfd: borrowed; the binding keeps its own duplicate.
 * Return: 0; -EBADF not a pidfd; -ESRCH the process has exited or is in another pid
 *         namespace; -ENOBUFS too many bindings; other negative errno.
 */
int identity_bind_process(Manager *m, Guest *g, int pidfd, Binding **ret);

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ia-client.h — libimageaccess, the client library of image-accessd.
 *
 * Two audiences:
 *   - emulators (QEMU and the like) open the disk images granted to their guest, one at a time
 *     (ia_client_open(), ia_client_open_async()) or as an all-or-nothing batch for a snapshot
 *     transaction (IaBatch);
 *   - VM managers register guests, bind emulator processes, grant and revoke images, list them,
 *     and clean up after a failed snapshot (ia_manager_*()).
 *
 * Conventions (those of sd-bus):
 *   - Functions return a negative errno on failure, 0 (or a documented non-negative value) on
 *     success.  Output parameters are called ret_*, come last and are left untouched on
 *     failure.  The error map of ia-error.c is registered when the first IaClient is made, so
 *     the service's error names come back as the errnos listed in ia-common.h
 *     (org.example.ImageAccess.Error.NotGranted → -EPERM, ...).
 *   - Functions that talk to the service take an optional `IaError *error` just before the
 *     ret_* parameters: on failure it receives the D-Bus error name and the service's message
 *     (people need the message text, not only an errno).  Pass NULL if not interested.
 *   - Every fd the library hands out is a new O_CLOEXEC descriptor (F_DUPFD_CLOEXEC, >= 3)
 *     owned by whoever receives it; the kernel-doc of each function says so again.  Every fd
 *     the library is given is borrowed: the caller keeps it.
 *   - An IaClient and everything made from it (IaRequest, IaBatch) belong to one thread at a
 *     time.  The library never logs and never calls exit()/abort().
 *
 * No GLib type appears here: the GLib main loop integration is the separate
 * ia-client-glib.h / libimageaccess-glib.  sd-bus and sd-event objects appear only as
 * pointers to incomplete structs, so this header needs no libsystemd headers either.
 *
 * Snapshot batches and files created for them — the design:
 *   An emulator preparing a snapshot (QEMU's `transaction` with several blockdev-snapshot-sync)
 *   needs N new overlay files, all or none.  IaBatch sends all N OpenImage calls at once,
 *   pipelined on the one connection (not one round trip after the other), and completes when
 *   every reply is in.  If any open failed, the batch closes every fd it received.  But files
 *   the service created for "create" entries cannot be removed by the emulator: removing them
 *   is RevokeImage with remove-created, a Manager method gated by the revoke-image polkit
 *   action, which the (unprivileged, confined) emulator must not hold — an emulator that could
 *   remove files could remove its guest's live disks.  So the batch *reports* the paths it may
 *   have made (ia_batch_dup_created_paths(), and the cleanup hook set with
 *   ia_batch_set_cleanup_callback(), called once when a batch fails or is aborted), the
 *   emulator forwards them to its VM manager over the channel they already share (QMP events
 *   for QEMU/libvirt), and the manager removes them with ia_manager_remove_created().  The
 *   service's own check (the file must still be the very inode it created for this guest)
 *   makes the report safe even if an emulator lies or errs: it can only name files the
 *   service created for its own guest.  A manager that lost the report finds the same files
 *   with ia_manager_list_grants() (IaGrantInfo.created).
 *   To make the report definitive, a failed or aborted batch waits for the replies of the
 *   calls still in flight (it never cancels them): a cancelled create could otherwise land
 *   after the manager's cleanup and leave an orphan.  The wait runs on the caller's event
 *   loop and never blocks it.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ia-common.h"

#ifdef __cplusplus
extern "C" {
#endif

struct sd_bus;
struct sd_event;

/* ---- common types ------------------------------------------------------------------------ */

/**
 * IaImageMode - how an image is opened; a grant of a mode covers every weaker one.
 * @IA_IMAGE_MODE_UNKNOWN: a mode this library version does not know (only in listings)
 * @IA_IMAGE_MODE_READ_ONLY: "read-only", the fd is O_RDONLY
 * @IA_IMAGE_MODE_READ_WRITE: "read-write", the fd is O_RDWR
 * @IA_IMAGE_MODE_CREATE: "create": the service creates the file (root, 0600, never over a file
 *                        it did not create for this guest) and the fd is O_RDWR
 */
typedef enum IaImageMode {
        IA_IMAGE_MODE_UNKNOWN = -1,
        IA_IMAGE_MODE_READ_ONLY = 0,
        IA_IMAGE_MODE_READ_WRITE,
        IA_IMAGE_MODE_CREATE,
} IaImageMode;

/* Flags of ia_client_open(), ia_client_open_async() and ia_batch_add(). */
#define IA_OPEN_DIRECT          (UINT64_C(1) << 0) /* option 'direct': O_DIRECT */
#define IA_OPEN_NONBLOCK        (UINT64_C(1) << 1) /* option 'nonblock': keep O_NONBLOCK */

/* Flags of ia_manager_revoke_image(). */
#define IA_REVOKE_REMOVE_CREATED (UINT64_C(1) << 0) /* option 'remove-created' */

/* Flags of ia_manager_grant_image_full(). */
#define IA_GRANT_DIRECTORY      (UINT64_C(1) << 0) /* option 'directory' */

/* Flags of ia_manager_register_guest_full(). */
#define IA_REGISTER_SHARE_UID   (UINT64_C(1) << 0) /* option 'share-uid' */

/* "No uid" for ia_manager_register_guest() and IaGuestInfo.uid. */
#define IA_UID_NONE ((uid_t) -1)

/* Limits of one batch (an unbounded resource is a bug). */
#define IA_BATCH_MAX_IMAGES     4096
/* Calls of one batch in flight at once: below dbus-daemon's pending-replies limit (128) and the
 * service's per-sender limit.  Batches up to this size are sent in one go. */
#define IA_BATCH_MAX_IN_FLIGHT  64

/**
 * IaError - the error of one failed operation.
 * @name: D-Bus error name, e.g. "org.example.ImageAccess.Error.NotGranted"; errors made by the
 *        library itself are named "System.Error.<ERRNO>" ("System.Error.EINVAL"), as sd-bus
 *        names errnos it cannot map: never a name the service or the bus sends
 * @message: human-readable text (the service's message where there is one)
 * @error: the negative errno the failed function returned
 *
 * Zero-initialize (`IaError e = {};`) before first use; free the strings with ia_error_done().
 * A function that fails frees what @name/@message held before and fills them anew; one that
 * succeeds leaves the struct alone.  Both strings are owned by the struct.
 */
typedef struct IaError {
        char *name;
        char *message;
        int error;
        void *_reserved[2];
} IaError;

/**
 * ia_error_done() - free the strings of an IaError and zero it
 * @error: the error (NULL is fine)
 *
 * The struct itself belongs to the caller and is not freed.
 */
void ia_error_done(IaError *error);

/**
 * ia_error_has_name() - whether an error carries a given D-Bus error name
 * @error: the error (NULL: false)
 * @name: an error name, e.g. IA_ERROR_NOT_GRANTED (borrowed)
 *
 * Return: true if @error is set and named @name.
 */
bool ia_error_has_name(const IaError *error, const char *name);

/**
 * ia_error_name_to_errno() - the errno the library's error map gives a D-Bus error name
 * @name: an error name (borrowed)
 *
 * Covers the names of ia-common.h and the standard names sd-bus knows.
 *
 * Return: the negative errno, e.g. -EPERM for IA_ERROR_NOT_GRANTED; -EIO for names nobody
 * mapped; -EINVAL if @name is NULL.
 */
int ia_error_name_to_errno(const char *name);

/**
 * ia_image_mode_to_string() - D-Bus spelling of a mode
 * @mode: the mode
 *
 * Return: a static string ("read-only", "read-write", "create"), NULL for an invalid mode.
 */
const char *ia_image_mode_to_string(IaImageMode mode);

/**
 * ia_image_mode_from_string() - parse a mode
 * @s: "read-only", "read-write" or "create" (borrowed)
 *
 * Return: the mode, or -EINVAL (also for NULL).
 */
int ia_image_mode_from_string(const char *s);

/**
 * ia_strv_free() - free a NULL-terminated array of strings the library returned
 * @l: the array (NULL is fine)
 *
 * Return: NULL.
 */
char **ia_strv_free(char **l);

/* ---- the client ---------------------------------------------------------------------------- */

typedef struct IaClient IaClient;

/**
 * ia_client_new() - connect to image-accessd on the system bus
 * @ret_client: on success, a new client with one reference, owned by the caller
 *
 * The system bus is found as sd-bus finds it: $DBUS_SYSTEM_BUS_ADDRESS (read with
 * secure_getenv(), so ignored in set-uid programs), else /run/dbus/system_bus_socket.  The
 * connection is made here; if it is lost later, the next operation reconnects.
 *
 * Return: 0; -ENOMEM; or the negative errno of the failed connection (-ENOENT, -ECONNREFUSED,
 * -EACCES, ...).
 */
int ia_client_new(IaClient **ret_client);

/**
 * ia_client_new_with_address() - connect to image-accessd on a given bus
 * @address: a D-Bus address, e.g. "unix:path=/tmp/x/bus" (copied); NULL means ia_client_new()
 * @ret_client: on success, a new client with one reference, owned by the caller
 *
 * For tests and for hosts whose system bus lives elsewhere.  The connection is a bus client
 * connection (Hello is sent) as for the system bus.
 *
 * Return: as ia_client_new(); -EINVAL for an unparsable address.
 */
int ia_client_new_with_address(const char *address, IaClient **ret_client);

/**
 * ia_client_ref() - take a reference
 * @client: the client (NULL is fine)
 *
 * Return: @client.
 */
IaClient *ia_client_ref(IaClient *client);

/**
 * ia_client_unref() - drop a reference
 * @client: the client (NULL is fine)
 *
 * Pending requests (IaRequest) and batches hold references of their own, so a client stays
 * alive until they are finished or dropped; with the last reference the connection is
 * flushed and closed and detached from any event loop.
 *
 * Return: NULL.
 */
IaClient *ia_client_unref(IaClient *client);

/**
 * ia_client_set_timeout() - timeout of every method call made from now on
 * @client: the client
 * @usec: microseconds; 0 restores the default: 60 s (polkit checks may legitimately take more
 *        than 15 s, and the service itself waits up to 25 s for polkit), or 600 s while
 *        interactive authorization is allowed (a person may be typing a password; the
 *        service waits [Polkit] InteractiveTimeoutSec for that, 300 s by default)
 *
 * Return: 0.
 */
int ia_client_set_timeout(IaClient *client, uint64_t usec);

/**
 * ia_client_set_allow_interactive_authorization() - let polkit ask for a password
 * @client: the client
 * @b: true to set ALLOW_INTERACTIVE_AUTHORIZATION on every call made from now on
 *
 * Without it a manager call that polkit would answer with a challenge fails with
 * org.freedesktop.DBus.Error.InteractiveAuthorizationRequired.  With it, polkit asks the
 * caller's authentication agent; a cancelled, failed or unanswered authentication (or no
 * agent to ask) fails with org.example.ImageAccess.Error.AuthenticationFailed (-EACCES).
 * Unless ia_client_set_timeout() set one, calls then wait up to 600 s.  Use it in
 * interactive tools only, never in emulators.
 *
 * Return: 0.
 */
int ia_client_set_allow_interactive_authorization(IaClient *client, bool b);

/**
 * ia_client_set_use_channel() - let synchronous opens skip the bus daemon
 * @client: the client
 * @b: true to use a channel from now on, false to close it and use the bus only
 *
 * With a channel, ia_client_open() sends its request straight to the service over a socket
 * of its own instead of through the bus daemon, which takes two hops and most of the time
 * of a repeated open off the emulator's critical path.  The first ia_client_open() after
 * this asks the service for the channel (method OpenChannel, which needs the caller to be
 * bound to the guest it names); if that fails, opens go over the bus and the client asks
 * again a second later.
 *
 * Nothing changes in what is allowed: every open on the channel is checked as an OpenImage
 * from this client's bus connection.  The service answers on the channel only opens it can
 * decide without polkit (a yes polkit gave this connection earlier and that is still
 * cached); the others are repeated as OpenImage on the bus transparently, so the results
 * and errors are those of ia_client_open() without a channel.  The channel closes with the
 * bus connection; a reconnection gets a new one.
 *
 * Only ia_client_open() uses it: ia_client_open_async() and batches always use the bus.
 * The channel is a socket the client owns (O_CLOEXEC); a child made with fork() never uses
 * its parent's.  Meant for emulators that open the same images again and again, like
 * QEMU during a snapshot (libimageaccess-preload.so turns it on).
 *
 * Since: 0.1
 *
 * Return: 0; -EINVAL if @client is NULL.
 */
int ia_client_set_use_channel(IaClient *client, bool b);

/**
 * ia_client_get_version() - Version property of the running image-accessd
 * @client: the client
 * @error: on failure, the error (optional)
 * @ret_version: on success, a newly allocated string owned by the caller (free())
 *
 * Return: 0 or a negative errno.
 */
int ia_client_get_version(IaClient *client, IaError *error, char **ret_version);

/* ---- event loops ----------------------------------------------------------------------------
 *
 * Asynchronous operations make progress only while the client's connection is processed:
 * attach it to an sd-event loop (ia_client_attach_event()), to a GLib main context
 * (ia-client-glib.h), or drive it from any poll() loop with ia_client_get_fd(),
 * ia_client_get_events(), ia_client_get_timeout() and ia_client_process().  Use one of these
 * per client.  Synchronous calls work in every case (they wait for their own reply only).
 */

/**
 * ia_client_attach_event() - process the client's connection on an sd-event loop
 * @client: the client
 * @event: the loop (borrowed: the client takes its own reference); NULL for sd_event_default()
 * @priority: priority of the I/O and time sources (SD_EVENT_PRIORITY_NORMAL is 0)
 *
 * The attachment survives reconnections: a new connection is attached to the same loop.
 *
 * Return: 0; -EBUSY if already attached; or a negative errno from sd-event.
 */
int ia_client_attach_event(IaClient *client, struct sd_event *event, int64_t priority);

/**
 * ia_client_detach_event() - stop processing on the sd-event loop
 * @client: the client
 *
 * Return: 0, also when it was not attached.
 */
int ia_client_detach_event(IaClient *client);

/**
 * ia_client_get_event() - the loop the client is attached to
 * @client: the client
 *
 * Return: the loop (borrowed, valid while attached), or NULL.
 */
struct sd_event *ia_client_get_event(IaClient *client);

/**
 * ia_client_get_fd() - the fd to poll for the client's connection
 * @client: the client
 *
 * The fd stays owned by the client and changes after a reconnection: ask again before each
 * poll.
 *
 * Return: the fd, or -ENOTCONN when the connection is closed.
 */
int ia_client_get_fd(IaClient *client);

/**
 * ia_client_get_events() - the poll() events to wait for on ia_client_get_fd()
 * @client: the client
 *
 * Return: a POLLIN/POLLOUT mask, or -ENOTCONN.
 */
int ia_client_get_events(IaClient *client);

/**
 * ia_client_get_timeout() - when ia_client_process() must be called at the latest
 * @client: the client
 * @ret_usec: on success, an absolute CLOCK_MONOTONIC time in µs (0: now; UINT64_MAX: no
 *            timeout)
 *
 * Return: 0, or -ENOTCONN when there is no connection.
 */
int ia_client_get_timeout(IaClient *client, uint64_t *ret_usec);

/**
 * ia_client_process() - process the connection once: read, write, dispatch callbacks
 * @client: the client
 *
 * Callbacks of IaRequest and IaBatch run from here.  A connection found closed fails every
 * call in flight (their callbacks see the error) and is replaced at the next operation.
 *
 * Return: > 0 if something was done (call again), 0 if idle, or a negative errno.
 */
int ia_client_process(IaClient *client);

/**
 * ia_client_wait() - wait for the connection to need processing
 * @client: the client
 * @timeout_usec: relative timeout in µs, UINT64_MAX for none
 *
 * Return: > 0 when there is something to process, 0 on timeout, or a negative errno.
 */
int ia_client_wait(IaClient *client, uint64_t timeout_usec);

/* ---- opening one image (emulator side) ------------------------------------------------------ */

/**
 * ia_client_open() - open an image, synchronously
 * @client: the client
 * @guest: the guest the caller is bound to (borrowed)
 * @path: absolute, normalized path of the image (borrowed)
 * @mode: how to open it
 * @flags: IA_OPEN_DIRECT, IA_OPEN_NONBLOCK
 * @error: on failure, the error (optional)
 * @ret_fd: on success, a new O_CLOEXEC fd (>= 3) owned by the caller, who must close() it
 *
 * Blocks until the service answers (polkit may take seconds); event-driven callers use
 * ia_client_open_async().
 *
 * Return: 0 or a negative errno, among them (errno ← error name): -ENOLINK NotBound,
 * -EPERM NotGranted, -EINVAL Invalid*, -ENOENT NotFound, -EEXIST FileExists,
 * -ELOOP SymlinkRefused, -EMEDIUMTYPE WrongFileType, -ENOSPC NoSpace, -EBUSY DeviceBusy,
 * -EIO IOError, -ENOBUFS LimitExceeded, -EHOSTDOWN AuthorizationUnavailable, -EACCES AccessDenied,
 * -ETIMEDOUT NoReply (timeout, or the service died), -EHOSTUNREACH ServiceUnknown.
 */
int ia_client_open(IaClient *client, const char *guest, const char *path, IaImageMode mode,
                   uint64_t flags, IaError *error, int *ret_fd);

typedef struct IaRequest IaRequest;

/**
 * IaOpenCallback - completion of ia_client_open_async()
 * @client: the client (borrowed)
 * @result: 0 on success, else a negative errno as for ia_client_open()
 * @fd: on success a new O_CLOEXEC fd (>= 3) now owned by the callback, which must close() it
 *      or keep it; on failure -EBADF
 * @error: on failure the error, borrowed for the duration of the call; NULL on success
 * @userdata: as given to ia_client_open_async()
 *
 * Called exactly once per request unless the request is cancelled first.
 */
typedef void (*IaOpenCallback)(IaClient *client, int result, int fd, const IaError *error,
                               void *userdata);

/**
 * ia_client_open_async() - open an image without blocking
 * @client: the client
 * @guest: the guest (borrowed; copied into the message before returning)
 * @path: the image (borrowed; copied)
 * @mode: how to open it
 * @flags: IA_OPEN_DIRECT, IA_OPEN_NONBLOCK
 * @callback: called when the reply arrives, from the client's event processing; never from
 *            within this function
 * @userdata: passed to @callback (borrowed; must stay valid until the callback ran or the
 *            request was cancelled)
 * @ret_request: optional.  NULL makes the request "floating": owned by itself until it
 *               completes.  Otherwise, on success, a reference owned by the caller, who
 *               drops it with ia_request_unref() — which cancels the request if still pending.
 *
 * The call is sent at once; the caller's loop keeps running while the service asks polkit.
 * Cancelling a "create" open may leave a file the service created; the VM manager sees it in
 * ia_manager_list_grants() and removes it with ia_manager_remove_created().
 *
 * Return: 0 (the callback will report the outcome), or a negative errno if the call could not
 * be sent (then @callback is never called): -EINVAL, -ENOMEM, -ENOTCONN.
 */
int ia_client_open_async(IaClient *client, const char *guest, const char *path,
                         IaImageMode mode, uint64_t flags, IaOpenCallback callback,
                         void *userdata, IaRequest **ret_request);

/**
 * ia_request_ref() - take a reference
 * @request: the request (NULL is fine)
 *
 * Return: @request.
 */
IaRequest *ia_request_ref(IaRequest *request);

/**
 * ia_request_unref() - drop a reference; the last one cancels a pending request
 * @request: the request (NULL is fine)
 *
 * After cancellation the callback is not called; an fd that arrives later is closed by the
 * library (it never reaches the caller).
 *
 * Return: NULL.
 */
IaRequest *ia_request_unref(IaRequest *request);

/**
 * ia_request_cancel() - cancel a pending request, keeping the reference
 * @request: the request
 *
 * Return: 1 if it was pending and is now cancelled, 0 if it had already completed.
 */
int ia_request_cancel(IaRequest *request);

/**
 * ia_request_is_pending() - whether the reply has not been delivered yet
 * @request: the request
 *
 * Return: true while pending.
 */
bool ia_request_is_pending(IaRequest *request);

/* ---- snapshot-prepare batches (emulator side) ----------------------------------------------- */

typedef struct IaBatch IaBatch;

/**
 * IaBatchState - where a batch is
 * @IA_BATCH_NEW: images may be added
 * @IA_BATCH_RUNNING: the calls are in flight
 * @IA_BATCH_READY: every open succeeded; the batch holds the fds until ia_batch_commit()
 * @IA_BATCH_FAILED: some open failed; every fd received was closed
 * @IA_BATCH_COMMITTED: the fds were handed to the caller
 * @IA_BATCH_ABORTED: ia_batch_abort() was called (or the last reference dropped); every fd
 *                    received was closed
 */
typedef enum IaBatchState {
        IA_BATCH_NEW,
        IA_BATCH_RUNNING,
        IA_BATCH_READY,
        IA_BATCH_FAILED,
        IA_BATCH_COMMITTED,
        IA_BATCH_ABORTED,
} IaBatchState;

/**
 * IaBatchCallback - completion of ia_batch_start()
 * @batch: the batch (borrowed; take a reference to keep it beyond the call)
 * @result: 0 when every open succeeded (state IA_BATCH_READY: call ia_batch_commit() or
 *          ia_batch_abort()), else the negative errno of the failure (state IA_BATCH_FAILED;
 *          details from ia_batch_get_error())
 * @userdata: as given to ia_batch_start()
 *
 * Called once, after every reply is in, unless the batch was aborted before.
 */
typedef void (*IaBatchCallback)(IaBatch *batch, int result, void *userdata);

/**
 * IaBatchCleanupCallback - files of a failed or aborted batch that the VM manager must remove
 * @batch: the batch (borrowed)
 * @guest: the guest of the batch (borrowed, valid during the call)
 * @created_paths: NULL-terminated list of paths (borrowed, valid during the call): every
 *                 "create" image whose open succeeded or whose outcome is unknown (no reply:
 *                 the service may have created it).  Never empty: the hook is not called when
 *                 there is nothing to clean.
 * @userdata: as given to ia_batch_set_cleanup_callback()
 *
 * Called once, when the batch ends failed or aborted and every reply is in, before the
 * completion callback.  Forward the list to the VM manager, which removes the files with
 * ia_manager_remove_created(); the emulator itself has no right to.
 */
typedef void (*IaBatchCleanupCallback)(IaBatch *batch, const char *guest,
                                       const char *const *created_paths, void *userdata);

/**
 * ia_batch_new() - start describing a batch of opens for one guest
 * @client: the client (the batch takes a reference)
 * @guest: the guest (copied)
 * @ret_batch: on success, a new batch with one reference, owned by the caller
 *
 * Return: 0, -EINVAL (bad guest name), -ENOMEM.
 */
int ia_batch_new(IaClient *client, const char *guest, IaBatch **ret_batch);

/**
 * ia_batch_ref() - take a reference
 * @batch: the batch (NULL is fine)
 *
 * Return: @batch.
 */
IaBatch *ia_batch_ref(IaBatch *batch);

/**
 * ia_batch_unref() - drop a reference
 * @batch: the batch (NULL is fine)
 *
 * Dropping the last reference of a batch that was not committed aborts it (see
 * ia_batch_abort()); calls still in flight keep the batch's internals alive until their
 * replies are in, so that the cleanup hook reports a definitive list.  Nothing leaks: fds
 * are closed as they arrive.
 *
 * Return: NULL.
 */
IaBatch *ia_batch_unref(IaBatch *batch);

/**
 * ia_batch_add() - add an image to open
 * @batch: a batch in state IA_BATCH_NEW
 * @path: absolute path (copied)
 * @mode: how to open it; IA_IMAGE_MODE_CREATE for new snapshot overlays
 * @flags: IA_OPEN_DIRECT, IA_OPEN_NONBLOCK
 *
 * Return: the index of the image in the batch (>= 0; the order of ia_batch_commit()'s
 * array); -EBUSY if the batch was started; -EINVAL; -E2BIG beyond IA_BATCH_MAX_IMAGES;
 * -ENOMEM.
 */
int ia_batch_add(IaBatch *batch, const char *path, IaImageMode mode, uint64_t flags);

/**
 * ia_batch_get_n_images() - number of images added
 * @batch: the batch
 *
 * Return: the number.
 */
size_t ia_batch_get_n_images(IaBatch *batch);

/**
 * ia_batch_get_state() - the state of the batch
 * @batch: the batch
 *
 * Return: an IaBatchState.
 */
IaBatchState ia_batch_get_state(IaBatch *batch);

/**
 * ia_batch_set_cleanup_callback() - set the hook that reports files to clean up
 * @batch: a batch not yet finished
 * @callback: the hook, NULL to unset
 * @userdata: passed to @callback (borrowed)
 *
 * Return: 0, or -ESTALE if the batch already finished.
 */
int ia_batch_set_cleanup_callback(IaBatch *batch, IaBatchCleanupCallback callback,
                                  void *userdata);

/**
 * ia_batch_start() - send every open at once
 * @batch: a batch in state IA_BATCH_NEW with at least one image
 * @callback: called once every reply is in (optional; poll ia_batch_get_state() otherwise)
 * @userdata: passed to @callback (borrowed)
 *
 * All calls are queued on the connection before this returns (up to IA_BATCH_MAX_IN_FLIGHT;
 * the rest follow as replies come in), and the service works on them concurrently.  The
 * batch keeps itself alive while calls are in flight, but that is not a reference of yours:
 * dropping your last reference aborts the batch (ia_batch_abort()), and @callback is then
 * never called.  Keep a reference until @callback has run.
 *
 * Return: 0; -EBUSY if already started; -ENODATA if empty; -ENOTCONN, -ENOMEM if the calls
 * could not be queued (then the batch is IA_BATCH_FAILED and no call is left in flight).
 */
int ia_batch_start(IaBatch *batch, IaBatchCallback callback, void *userdata);

/**
 * ia_batch_run() - start the batch and wait until every reply is in
 * @batch: a batch in state IA_BATCH_NEW
 * @error: on failure, the error (optional); its message names the failed image
 *
 * Processes the client's connection itself: other callbacks of the same client may run.
 *
 * Return: 0 (state IA_BATCH_READY: commit or abort next), or the negative errno of the failure
 * (state IA_BATCH_FAILED, every fd closed, the cleanup hook already called).
 */
int ia_batch_run(IaBatch *batch, IaError *error);

/**
 * ia_batch_get_error() - why the batch failed
 * @batch: the batch
 * @error: receives a copy of the deciding error, owned by the caller (optional)
 * @ret_index: receives the index of the image whose open failed first in add order, or
 *             (size_t) -1 when no single image is at fault (optional)
 *
 * The deciding error is that of the lowest-index image that failed; its message is prefixed
 * with the image's index and path.  A service that died mid-batch shows up as
 * org.freedesktop.DBus.Error.NoReply on every image still in flight.
 *
 * Return: 0 if the batch has not failed (nothing is set), else the negative errno of the
 * failure (-ECANCELED for an aborted batch).
 */
int ia_batch_get_error(IaBatch *batch, IaError *error, size_t *ret_index);

/**
 * ia_batch_get_image_result() - outcome of one image
 * @batch: the batch
 * @index: as returned by ia_batch_add()
 * @error: on failure of that image, a copy of its error, owned by the caller (optional)
 *
 * Return: 0 if the image was opened, -EINPROGRESS while its reply is outstanding, -ENODATA
 * before the batch starts, -ERANGE for a bad index, or the image's negative errno.
 */
int ia_batch_get_image_result(IaBatch *batch, size_t index, IaError *error);

/**
 * ia_batch_dup_created_paths() - the files this batch may have made
 * @batch: the batch
 * @ret_paths: on success, a NULL-terminated list owned by the caller (ia_strv_free())
 *
 * The "create" images whose open succeeded, plus (while not every reply is in, or when a
 * reply never came) those whose outcome is unknown.  After a failure or abort: what the VM
 * manager must remove (ia_manager_remove_created()).  After success: the new overlays.
 *
 * Return: the number of paths (>= 0), or -ENOMEM.
 */
int ia_batch_dup_created_paths(IaBatch *batch, char ***ret_paths);

/**
 * ia_batch_commit() - hand every fd over to the caller
 * @batch: a batch in state IA_BATCH_READY
 * @ret_fds: array of at least @n_fds ints; on success ret_fds[i] is the fd of the image with
 *           index i: a new O_CLOEXEC fd (>= 3) owned by the caller from now on
 * @n_fds: must equal ia_batch_get_n_images()
 *
 * All or nothing: on failure no fd was handed over and the batch still holds them.
 *
 * Return: 0; -EBUSY while running; -ESTALE if failed, aborted or committed already; -EINVAL if
 * @n_fds is wrong.
 */
int ia_batch_commit(IaBatch *batch, int *ret_fds, size_t n_fds);

/**
 * ia_batch_abort() - give up, at any point before commit
 * @batch: the batch
 *
 * Closes every fd received, discards fds that arrive later, never calls the completion
 * callback afterwards, and calls the cleanup hook once every reply is in (at once if none is
 * outstanding) when there are files to clean.  Never blocks.
 *
 * Return: 0; 0 too if already failed or aborted (idempotent); -ESTALE if committed.
 */
int ia_batch_abort(IaBatch *batch);

/* ---- manager side (VM managers) ----------------------------------------------------------------
 *
 * Each call is gated by its own polkit action (uid 0 is always authorized).  Every call comes
 * in two forms: synchronous (blocks until the service answered, which may take as long as a
 * person needs to type a password when interactive authorization is allowed), and
 * ia_manager_*_async(), which returns at once and reports through a callback from the
 * client's event processing (sd-event, GLib, or ia_client_process(): see "event loops").  A
 * multi-threaded manager uses one IaClient per thread.
 */

/**
 * ia_manager_register_guest() - RegisterGuest
 * @client: the client
 * @name: the guest name, 1-128 of [A-Za-z0-9_.:+-], not starting with '.' or '-' (borrowed)
 * @uuid: the guest's UUID, passed to polkit as guest-uuid (borrowed; NULL: none)
 * @description: free text, at most 1024 bytes (borrowed; NULL: none)
 * @uid: bind the guest to this uid (every process of the uid counts as its emulator), or
 *       IA_UID_NONE
 * @error: on failure, the error (optional)
 *
 * Return: 0, or -EEXIST GuestExists, -EINVAL, -ENOBUFS, -EACCES, ...
 */
int ia_manager_register_guest(IaClient *client, const char *name, const char *uuid,
                              const char *description, uid_t uid, IaError *error);

/**
 * ia_manager_register_guest_full() - RegisterGuest with flags
 * @client, @name, @uuid, @description, @uid, @error: as for ia_manager_register_guest()
 * @flags: IA_REGISTER_SHARE_UID: bind @uid even if another guest is bound to it (the service
 *         refuses that by default: each guest's emulator could open the other's images)
 *
 * Return: as ia_manager_register_guest(), and -EADDRINUSE UidInUse: @uid is bound to another
 * guest and IA_REGISTER_SHARE_UID is not set; -EINVAL for unknown flags.
 */
int ia_manager_register_guest_full(IaClient *client, const char *name, const char *uuid,
                                   const char *description, uid_t uid, uint64_t flags,
                                   IaError *error);

/**
 * ia_manager_unregister_guest() - UnregisterGuest
 * @client: the client
 * @name: the guest (borrowed)
 * @error: on failure, the error (optional)
 *
 * Files the service created for the guest stay on disk: remove them first with
 * ia_manager_remove_created().
 *
 * Return: 0, or -ESRCH UnknownGuest, -EINVAL, -EACCES, ...
 */
int ia_manager_unregister_guest(IaClient *client, const char *name, IaError *error);

/**
 * ia_manager_bind_process() - BindProcess: bind an emulator process to a guest
 * @client: the client
 * @guest: the guest (borrowed)
 * @pidfd: a pidfd of the emulator (pidfd_open(2)); borrowed: the caller keeps and closes it,
 *         the service keeps a duplicate of its own
 * @error: on failure, the error (optional)
 *
 * Best called between fork() and exec() of the emulator.
 *
 * Return: 0, or -ESRCH (UnknownGuest, InvalidProcess), -ENOBUFS, -EACCES, ...
 */
int ia_manager_bind_process(IaClient *client, const char *guest, int pidfd, IaError *error);

/**
 * ia_manager_bind_pid() - BindProcess for a pid
 * @client: the client
 * @guest: the guest (borrowed)
 * @pid: the emulator's pid; a pidfd is opened here and closed before returning
 * @error: on failure, the error (optional)
 *
 * Only safe against pid reuse while @pid is the caller's unreaped child.
 *
 * Return: as ia_manager_bind_process(); -ESRCH if @pid does not exist.
 */
int ia_manager_bind_pid(IaClient *client, const char *guest, pid_t pid, IaError *error);

/**
 * ia_manager_grant_image() - GrantImage: allow a guest to open an image in a mode
 * @client: the client
 * @guest: the guest (borrowed)
 * @path: absolute, normalized path (borrowed); need not exist for create grants
 * @mode: the mode granted (covers the weaker ones)
 * @error: on failure, the error (optional)
 *
 * Return: 0, or -ESRCH UnknownGuest, -EINVAL, -ENOBUFS, -EACCES, ...
 */
int ia_manager_grant_image(IaClient *client, const char *guest, const char *path,
                           IaImageMode mode, IaError *error);

/**
 * ia_manager_grant_image_full() - GrantImage with flags
 * @client, @guest, @path, @mode, @error: as for ia_manager_grant_image()
 * @flags: IA_GRANT_DIRECTORY: @path is a directory (owned by root, writable by nobody else);
 *         the guest may open the regular files with one name beneath it in @mode, without
 *         a grant per file (for files its manager makes there, such as snapshot overlays).
 *         A file's own grant takes precedence.  Two guests' directory grants never nest.
 *
 * Return: as ia_manager_grant_image(); and -EBUSY DirectoryInUse: another guest has a
 * directory grant for @path, above it or beneath it; -EINVAL for unknown flags.
 */
int ia_manager_grant_image_full(IaClient *client, const char *guest, const char *path,
                                IaImageMode mode, uint64_t flags, IaError *error);

/**
 * ia_manager_revoke_image() - RevokeImage: withdraw a grant
 * @client: the client
 * @guest: the guest (borrowed)
 * @path: the granted path (borrowed)
 * @flags: IA_REVOKE_REMOVE_CREATED to also remove the file the service created for this
 *         grant (only if it is still that very inode)
 * @error: on failure, the error (optional)
 *
 * Descriptors already handed out stay valid.
 *
 * Return: 0, or -ESRCH UnknownGuest, -EPERM (NotGranted; NotCreatedByService: nothing removed,
 * the grant stays), -EINVAL, -EACCES, ...
 */
int ia_manager_revoke_image(IaClient *client, const char *guest, const char *path,
                            uint64_t flags, IaError *error);

/**
 * ia_manager_remove_created() - clean up after a failed or aborted snapshot batch
 * @client: the client
 * @guest: the guest of the batch (borrowed)
 * @paths: NULL-terminated list of paths, as the batch reported them (borrowed)
 * @error: on failure, the first error that counts (optional)
 *
 * RevokeImage with remove-created for every path, all calls pipelined.  Each removed file's
 * grant is withdrawn with it, and so is the grant of a path the create never reached: grant
 * again before retrying the snapshot.  Answers that mean "nothing to clean here" are not
 * failures: NotGranted (already revoked) and NotCreatedByService (the file at the path is not
 * the service's; that grant stays).
 *
 * Return: the number of paths cleaned up (file removed or already gone, or never created)
 * (>= 0), or the negative errno of the first other failure (the remaining paths are still
 * tried).
 */
int ia_manager_remove_created(IaClient *client, const char *guest, const char *const *paths,
                              IaError *error);

/**
 * IaGuestInfo - one entry of ia_manager_list_guests()
 * @name: guest name
 * @uuid: UUID, NULL if none
 * @description: free text, NULL if none
 * @uid: the uid the guest is bound to, or IA_UID_NONE
 * @n_grants: number of grants
 * @n_processes: bound processes still running
 *
 * Allocated by the library; fields may be added at the end in later versions.
 */
typedef struct IaGuestInfo {
        char *name;
        char *uuid;
        char *description;
        uid_t uid;
        uint32_t n_grants;
        uint32_t n_processes;
} IaGuestInfo;

/**
 * IaGrantInfo - one entry of ia_manager_list_grants()
 * @path: the granted path
 * @mode: the mode granted (IA_IMAGE_MODE_UNKNOWN for a mode this library does not know)
 * @created: the service created the file for this guest (a candidate for remove-created)
 *
 * Allocated by the library; fields may be added at the end in later versions.
 */
typedef struct IaGrantInfo {
        char *path;
        IaImageMode mode;
        bool created;
        /* The file the grant is for (st_dev, st_ino); pinned is false only for a create grant
         * whose file the service has not made yet.  A file at the path with another identity
         * was put there after the grant, and opens of it are refused. */
        bool pinned;
        uint64_t device;
        uint64_t inode;
        /* A directory grant: the guest may open the files beneath @path (since 0.4). */
        bool directory;
} IaGrantInfo;

/**
 * ia_manager_list_guests() - ListGuests
 * @client: the client
 * @error: on failure, the error (optional)
 * @ret_guests: on success, a NULL-terminated array sorted by name, owned by the caller
 *              (ia_guest_info_list_free())
 *
 * Return: the number of guests (>= 0), or -EACCES, ...
 */
int ia_manager_list_guests(IaClient *client, IaError *error, IaGuestInfo ***ret_guests);

/**
 * ia_guest_info_list_free() - free what ia_manager_list_guests() returned
 * @list: the array (NULL is fine)
 *
 * Return: NULL.
 */
IaGuestInfo **ia_guest_info_list_free(IaGuestInfo **list);

/**
 * ia_manager_list_grants() - ListGrants
 * @client: the client
 * @guest: the guest (borrowed)
 * @error: on failure, the error (optional)
 * @ret_grants: on success, a NULL-terminated array sorted by path, owned by the caller
 *              (ia_grant_info_list_free())
 *
 * Return: the number of grants (>= 0), or -ESRCH UnknownGuest, -EINVAL, -EACCES, ...
 */
int ia_manager_list_grants(IaClient *client, const char *guest, IaError *error,
                           IaGrantInfo ***ret_grants);

/**
 * ia_grant_info_list_free() - free what ia_manager_list_grants() returned
 * @list: the array (NULL is fine)
 *
 * Return: NULL.
 */
IaGrantInfo **ia_grant_info_list_free(IaGrantInfo **list);

/* ---- explaining a decision (administrators) ----------------------------------------------- */

/**
 * IaPolkitAnswer - what polkit answered to ia_manager_explain_polkit()
 * @IA_POLKIT_NOT_AUTHORIZED: no: OpenImage fails with AccessDenied
 * @IA_POLKIT_AUTHORIZED: yes
 * @IA_POLKIT_CHALLENGE: only after authentication: an OpenImage call without
 *                       ALLOW_INTERACTIVE_AUTHORIZATION (every emulator's) fails with
 *                       InteractiveAuthorizationRequired
 */
typedef enum IaPolkitAnswer {
        IA_POLKIT_NOT_AUTHORIZED = 0,
        IA_POLKIT_AUTHORIZED = 1,
        IA_POLKIT_CHALLENGE = 2,
} IaPolkitAnswer;

/**
 * ia_manager_explain_polkit() - what polkit answers today for an emulator's OpenImage
 * @client: the client; the calling process must run as uid 0 (polkitd takes details only
 *          from root)
 * @guest: the guest (borrowed)
 * @path: the image (borrowed)
 * @mode: the mode asked for
 * @guest_uuid: the guest's UUID as registered (borrowed), or NULL for none; sent as the
 *              service sends it ("" for none)
 * @uid: the emulator's uid, or IA_UID_NONE to take the effective uid of @pid
 * @pid: an emulator process to ask about, or 0 for "a process of @uid outside any login
 *       session", which is how emulators run (rules then see subject.pid == 1, no session,
 *       not local, not active)
 * @error: on failure, the error (optional)
 * @ret_answer: on success, polkit's answer
 *
 * Asks org.freedesktop.PolicyKit1.Authority.CheckAuthorization directly (not the service),
 * never interactively, for action org.example.imageaccess.open-image with the details the
 * service passes (guest, image, mode, guest-uuid) and a unix-process subject.  The service
 * asks about the emulator's bus name instead, which polkit resolves to the same uid, pid and
 * session; rules that look at anything else may answer the service differently.  The
 * service never asks polkit about callers with uid 0; polkit authorizes uid 0 anyway.
 * Nothing is checked but polkit: not the guest, the binding, the grant or the path.
 *
 * Return: 0; -EINVAL (bad argument, or @uid and @pid both unset); -ESRCH if @pid does not
 * exist; -EHOSTUNREACH if polkit is not on the bus; -EIO for an error polkit returned (for
 * example "Only trusted callers ... can pass details" when not run as root), with its name
 * and message in @error.
 */
int ia_manager_explain_polkit(IaClient *client, const char *guest, const char *path,
                              IaImageMode mode, const char *guest_uuid, uid_t uid, pid_t pid,
                              IaError *error, IaPolkitAnswer *ret_answer);

/* ---- manager side, asynchronous -----------------------------------------------------------------
 *
 * Common to every ia_manager_*_async() function:
 *   - Arguments are as for the synchronous call; strings are borrowed and copied into the
 *     message before the function returns, and a pidfd is borrowed (the message holds its own
 *     duplicate).
 *   - @callback is required and is called exactly once from the client's event processing,
 *     never from within the function — unless the request is cancelled first.
 *   - @userdata is passed to @callback (borrowed: it must stay valid until the callback ran or
 *     the request was cancelled).
 *   - @ret_request is optional: NULL makes the request "floating" (it owns itself until it
 *     completes); otherwise, on success, *ret_request is a reference owned by the caller, who
 *     drops it with ia_request_unref() — which cancels the request if still pending.  A
 *     cancelled call may still have been carried out by the service.
 *   - Return: 0 (the callback will report the outcome), or a negative errno if the call could
 *     not be sent (then @callback is never called): -EINVAL, -ENOMEM, -ENOTCONN, ...
 *   - The result the callback sees is what the synchronous call would have returned.
 *
 * Since: 0.1
 */

/**
 * IaManagerCallback - completion of a manager call that returns no data
 * @client: the client (borrowed)
 * @result: 0 (or, for ia_manager_remove_created_async(), the number of files removed or
 *          already gone) on success; else a negative errno as for the synchronous call
 * @error: on failure the error, borrowed for the duration of the call; NULL on success
 * @userdata: as given to the call
 */
typedef void (*IaManagerCallback)(IaClient *client, int result, const IaError *error,
                                  void *userdata);

/**
 * IaGuestListCallback - completion of ia_manager_list_guests_async()
 * @client: the client (borrowed)
 * @result: the number of guests (>= 0), or a negative errno
 * @guests: on success a NULL-terminated array sorted by name, now owned by the callback
 *          (ia_guest_info_list_free()); NULL on failure
 * @error: on failure the error, borrowed for the duration of the call; NULL on success
 * @userdata: as given to the call
 */
typedef void (*IaGuestListCallback)(IaClient *client, int result, IaGuestInfo **guests,
                                    const IaError *error, void *userdata);

/**
 * IaGrantListCallback - completion of ia_manager_list_grants_async()
 * @client: the client (borrowed)
 * @result: the number of grants (>= 0), or a negative errno
 * @grants: on success a NULL-terminated array sorted by path, now owned by the callback
 *          (ia_grant_info_list_free()); NULL on failure
 * @error: on failure the error, borrowed for the duration of the call; NULL on success
 * @userdata: as given to the call
 */
typedef void (*IaGrantListCallback)(IaClient *client, int result, IaGrantInfo **grants,
                                    const IaError *error, void *userdata);

/**
 * IaExplainCallback - completion of ia_manager_explain_polkit_async()
 * @client: the client (borrowed)
 * @result: 0 or a negative errno as for ia_manager_explain_polkit()
 * @answer: polkit's answer (meaningful only when @result is 0)
 * @error: on failure the error, borrowed for the duration of the call; NULL on success
 * @userdata: as given to the call
 */
typedef void (*IaExplainCallback)(IaClient *client, int result, IaPolkitAnswer answer,
                                  const IaError *error, void *userdata);

/**
 * ia_manager_register_guest_async() - RegisterGuest without blocking
 * @client: the client
 * @name: as for ia_manager_register_guest() (borrowed, copied)
 * @uuid: as for ia_manager_register_guest() (borrowed, copied; NULL: none)
 * @description: as for ia_manager_register_guest() (borrowed, copied; NULL: none)
 * @uid: the uid to bind the guest to, or IA_UID_NONE
 * @callback: called with the outcome
 * @userdata: passed to @callback (borrowed)
 * @ret_request: optional; see the section's head
 *
 * Return: 0, or a negative errno (the callback is then never called).
 */
int ia_manager_register_guest_async(IaClient *client, const char *name, const char *uuid,
                                    const char *description, uid_t uid,
                                    IaManagerCallback callback, void *userdata,
                                    IaRequest **ret_request);

/**
 * ia_manager_register_guest_full_async() - RegisterGuest with flags, without blocking
 * @client, @name, @uuid, @description, @uid, @callback, @userdata, @ret_request: as for
 *         ia_manager_register_guest_async() (strings borrowed and copied)
 * @flags: as for ia_manager_register_guest_full()
 *
 * Return: 0, or a negative errno, -EINVAL for unknown flags (the callback is then never
 * called).  The callback gets -EADDRINUSE UidInUse as ia_manager_register_guest_full() does.
 */
int ia_manager_register_guest_full_async(IaClient *client, const char *name, const char *uuid,
                                         const char *description, uid_t uid, uint64_t flags,
                                         IaManagerCallback callback, void *userdata,
                                         IaRequest **ret_request);

/**
 * ia_manager_unregister_guest_async() - UnregisterGuest without blocking
 * @client: the client
 * @name: the guest (borrowed, copied)
 * @callback: called with the outcome
 * @userdata: passed to @callback (borrowed)
 * @ret_request: optional; see the section's head
 *
 * Return: 0, or a negative errno (the callback is then never called).
 */
int ia_manager_unregister_guest_async(IaClient *client, const char *name,
                                      IaManagerCallback callback, void *userdata,
                                      IaRequest **ret_request);

/**
 * ia_manager_bind_process_async() - BindProcess without blocking
 * @client: the client
 * @guest: the guest (borrowed, copied)
 * @pidfd: a pidfd of the emulator; borrowed: the caller keeps and closes it (at once, if it
 *         likes: the message carries its own duplicate)
 * @callback: called with the outcome
 * @userdata: passed to @callback (borrowed)
 * @ret_request: optional; see the section's head
 *
 * Return: 0, or a negative errno (the callback is then never called).
 */
int ia_manager_bind_process_async(IaClient *client, const char *guest, int pidfd,
                                  IaManagerCallback callback, void *userdata,
                                  IaRequest **ret_request);

/**
 * ia_manager_bind_pid_async() - BindProcess for a pid, without blocking
 * @client: the client
 * @guest: the guest (borrowed, copied)
 * @pid: the emulator's pid; a pidfd is opened here and closed before returning
 * @callback: called with the outcome
 * @userdata: passed to @callback (borrowed)
 * @ret_request: optional; see the section's head
 *
 * Return: 0, or a negative errno (-ESRCH if @pid does not exist; the callback is then never
 * called).
 */
int ia_manager_bind_pid_async(IaClient *client, const char *guest, pid_t pid,
                              IaManagerCallback callback, void *userdata,
                              IaRequest **ret_request);

/**
 * ia_manager_grant_image_async() - GrantImage without blocking
 * @client: the client
 * @guest: the guest (borrowed, copied)
 * @path: absolute, normalized path (borrowed, copied)
 * @mode: the mode granted
 * @callback: called with the outcome
 * @userdata: passed to @callback (borrowed)
 * @ret_request: optional; see the section's head
 *
 * Return: 0, or a negative errno (the callback is then never called).
 */
int ia_manager_grant_image_async(IaClient *client, const char *guest, const char *path,
                                 IaImageMode mode, IaManagerCallback callback, void *userdata,
                                 IaRequest **ret_request);

/**
 * ia_manager_grant_image_full_async() - GrantImage with flags, without blocking
 * @client, @guest, @path, @mode, @callback, @userdata, @ret_request: as for
 *         ia_manager_grant_image_async() (strings borrowed and copied)
 * @flags: as for ia_manager_grant_image_full()
 *
 * Return: 0, or a negative errno, -EINVAL for unknown flags (the callback is then never
 * called).  The callback gets -EBUSY DirectoryInUse as ia_manager_grant_image_full() does.
 */
int ia_manager_grant_image_full_async(IaClient *client, const char *guest, const char *path,
                                      IaImageMode mode, uint64_t flags,
                                      IaManagerCallback callback, void *userdata,
                                      IaRequest **ret_request);

/**
 * ia_manager_revoke_image_async() - RevokeImage without blocking
 * @client: the client
 * @guest: the guest (borrowed, copied)
 * @path: the granted path (borrowed, copied)
 * @flags: 0 or IA_REVOKE_REMOVE_CREATED
 * @callback: called with the outcome
 * @userdata: passed to @callback (borrowed)
 * @ret_request: optional; see the section's head
 *
 * Return: 0, or a negative errno (the callback is then never called).
 */
int ia_manager_revoke_image_async(IaClient *client, const char *guest, const char *path,
                                  uint64_t flags, IaManagerCallback callback, void *userdata,
                                  IaRequest **ret_request);

/**
 * ia_manager_remove_created_async() - ia_manager_remove_created() without blocking
 * @client: the client
 * @guest: the guest of the batch (borrowed, copied)
 * @paths: NULL-terminated list of paths (borrowed; copied before returning)
 * @callback: called once every reply is in, with the number of files removed or already
 *            gone, or the first failure that counts (as ia_manager_remove_created())
 * @userdata: passed to @callback (borrowed)
 * @ret_request: optional; see the section's head.  Cancelling cancels every call in flight.
 *
 * Return: 0; -ENODATA for an empty list; or a negative errno (the callback is then never
 * called).
 */
int ia_manager_remove_created_async(IaClient *client, const char *guest,
                                    const char *const *paths, IaManagerCallback callback,
                                    void *userdata, IaRequest **ret_request);

/**
 * ia_manager_list_guests_async() - ListGuests without blocking
 * @client: the client
 * @callback: called with the list, which it then owns
 * @userdata: passed to @callback (borrowed)
 * @ret_request: optional; see the section's head
 *
 * Return: 0, or a negative errno (the callback is then never called).
 */
int ia_manager_list_guests_async(IaClient *client, IaGuestListCallback callback,
                                 void *userdata, IaRequest **ret_request);

/**
 * ia_manager_list_grants_async() - ListGrants without blocking
 * @client: the client
 * @guest: the guest (borrowed, copied)
 * @callback: called with the list, which it then owns
 * @userdata: passed to @callback (borrowed)
 * @ret_request: optional; see the section's head
 *
 * Return: 0, or a negative errno (the callback is then never called).
 */
int ia_manager_list_grants_async(IaClient *client, const char *guest,
                                 IaGrantListCallback callback, void *userdata,
                                 IaRequest **ret_request);

/**
 * ia_manager_explain_polkit_async() - ia_manager_explain_polkit() without blocking
 * @client: the client; the calling process must run as uid 0
 * @guest: the guest (borrowed, copied)
 * @path: the image (borrowed, copied)
 * @mode: the mode asked for
 * @guest_uuid: the guest's UUID (borrowed, copied), or NULL
 * @uid: the emulator's uid, or IA_UID_NONE to take the effective uid of @pid
 * @pid: an emulator process, or 0 (see ia_manager_explain_polkit()); read before returning
 * @callback: called with polkit's answer
 * @userdata: passed to @callback (borrowed)
 * @ret_request: optional; see the section's head
 *
 * Return: 0, or a negative errno (-EINVAL, -ESRCH, ...; the callback is then never called).
 */
int ia_manager_explain_polkit_async(IaClient *client, const char *guest, const char *path,
                                    IaImageMode mode, const char *guest_uuid, uid_t uid,
                                    pid_t pid, IaExplainCallback callback, void *userdata,
                                    IaRequest **ret_request);

#ifdef __cplusplus
}
#endif

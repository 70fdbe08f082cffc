/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * channel.h — OpenImage channels: a SOCK_SEQPACKET socket pair per bound emulator that
 * carries the opens the service can decide without polkit, skipping the bus daemon's two
 * hops (client/common/ia-channel.h has the wire format, docs/emulator-guide.md the why).
 *
 * A channel speaks for the bus connection that asked for it (its owner): every request on
 * it is checked exactly as an OpenImage from that connection — its credentials, its binding
 * to the guest named, the grant table — and needs a polkit "yes" for that connection that is
 * still in the decision cache (or a root owner).  Without one the answer is "use the bus",
 * never a guess.  The channel dies with its owner's bus connection.
 */
#pragma once

#include <stdint.h>
#include <systemd/sd-bus.h>

#include "ia-channel.h"
#include "manager.h"

/* At most this many channels per bus connection: one per emulator process is enough. */
#define CHANNELS_PER_PEER_MAX 2
/* Replies (each with its fd) that may wait unread in one channel before it is closed: what
 * the send buffer holds.  main.c keeps MaxChannels times this below the fd limit. */
#define CHANNEL_QUEUED_MAX 12

typedef struct Channel Channel;

/**
 * channel_new: makes a channel for @owner and returns the client's end.
 * @ret_fd: the client's end (O_CLOEXEC), owned by the caller, who passes it on and closes it.
 * Return: 0; -ENOBUFS at a limit; negative errno.
 */
int channel_new(Manager *m, Peer *owner, int *ret_fd);

/* What a connection leaving means to the channels (peer.h): they close with it (requests in
 * workers are dropped).  Registered at start-up (manager_new()). */
extern const PeerWatch channel_peer_watch;

/* Closes every channel, at shutdown. */
void channel_close_all(Manager *m);

Channel *channel_ref(Channel *ch);
void channel_unref(Channel *ch);
/* The unique bus name the channel speaks for (borrowed). */
const char *channel_owner(const Channel *ch);

/* Replies to request @serial: the image's fd (borrowed; a copy goes out), or an error, or
 * "use the bus".  A reply the client does not take closes the channel. */
void channel_reply_fd(Channel *ch, uint32_t serial, int fd);
void channel_reply_error(Channel *ch, uint32_t serial, const sd_bus_error *error);
void channel_reply_use_bus(Channel *ch, uint32_t serial, const char *why);

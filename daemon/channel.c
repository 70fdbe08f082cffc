/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * channel.c — the sockets of OpenImage channels: making them, reading requests, sending
 * replies, closing them.  What a request may do is decided by the same pipeline as OpenImage
 * (open.h).
 *
 * Why not a peer-to-peer D-Bus connection?  sd-bus collects the fds a peer attaches to a
 * message it has not finished sending, without a bound: a client could fill our fd table
 * one byte at a time.  Here every request is one packet of at most IA_CHANNEL_PACKET_MAX
 * bytes, read into a fixed buffer with no room for ancillary data, so an fd sent to us is
 * dropped by the kernel and never enters this process; and a request is answered or parked
 * before the next is read, within the owner's MaxPendingPerSender.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "audit.h"
#include "authz.h"
#include "bus-util.h"
#include "channel.h"
#include "ia-common.h"
#include "log.h"
#include "macro.h"
#include "open.h"

/* Requests read per wake-up before others get their turn on the loop. */
#define CHANNEL_BURST 16
/* Send buffer of our end (the kernel doubles it): room for about ten replies. */
#define CHANNEL_SNDBUF 4096

struct Channel {
        unsigned n_ref;         /* the manager's while open, one per request in a worker */
        Manager *m;             /* NULL once closed */
        int fd;                 /* our end; -1 once closed */
        sd_event_source *io;
        char *owner;
};

Channel *channel_ref(Channel *ch) {
        ch->n_ref++;
        return ch;
}

void channel_unref(Channel *ch) {
        if (!ch || --ch->n_ref > 0)
                return;
        sd_event_source_disable_unref(ch->io);
        ia_safe_close(ch->fd);
        g_free(ch->owner);
        g_free(ch);
}

const char *channel_owner(const Channel *ch) {
        return ch->owner;
}

static void channel_close(Channel *ch, int level, const char *why) {
        Manager *m = ch->m;
        Peer *p;

        if (!m)
                return;
        log_internal(level, 0, "Closing the channel of %s: %s", ch->owner, why);
        ch->m = NULL;
        ch->io = sd_event_source_disable_unref(ch->io);
        ch->fd = ia_safe_close(ch->fd);
        p = peer_get(m, ch->owner);
        if (p && p->n_channels > 0)
                p->n_channels--;
        m->n_channels--;
        g_hash_table_remove(m->channels, ch);   /* drops the manager's reference */
}

static void channel_send(Channel *ch, const void *buf, size_t len, int fd) {
        union {
                struct cmsghdr h;
                uint8_t buf[CMSG_SPACE(sizeof(int))];
        } control = {};
        struct iovec iov = { .iov_base = (void *) buf, .iov_len = len };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

        if (ch->fd < 0)
                return;         /* closed while the request was in a worker */
        if (fd >= 0) {
                struct cmsghdr *c;

                mh.msg_control = &control;
                mh.msg_controllen = sizeof(control);
                c = CMSG_FIRSTHDR(&mh);
                c->cmsg_level = SOL_SOCKET;
                c->cmsg_type = SCM_RIGHTS;
                c->cmsg_len = CMSG_LEN(sizeof(int));
                memcpy(CMSG_DATA(c), &fd, sizeof(int));
        }
        if (sendmsg(ch->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0)
                return;
        /* EAGAIN: the client sends requests and does not read the replies.  Queuing them
         * here would hold their fds in this process without a bound. */
        channel_close(ch, LOG_NOTICE, errno == EAGAIN ? "it does not read its replies" : strerror(errno));
}

void channel_reply_fd(Channel *ch, uint32_t serial, int fd) {
        uint8_t buf[sizeof(IaChannelReply) + IA_CHANNEL_TEXT_MAX];
        size_t n = ia_channel_format_reply(buf, serial, IA_CHANNEL_OK, NULL, NULL);

        channel_send(ch, buf, n, fd);
}

void channel_reply_error(Channel *ch, uint32_t serial, const sd_bus_error *error) {
        uint8_t buf[sizeof(IaChannelReply) + IA_CHANNEL_TEXT_MAX];
        size_t n = ia_channel_format_reply(buf, serial, IA_CHANNEL_ERROR, error->name,
                                           error->message);

        channel_send(ch, buf, n, -1);
}

void channel_reply_use_bus(Channel *ch, uint32_t serial, const char *why) {
        uint8_t buf[sizeof(IaChannelReply) + IA_CHANNEL_TEXT_MAX];
        size_t n = ia_channel_format_reply(buf, serial, IA_CHANNEL_USE_BUS, NULL, why);

        channel_send(ch, buf, n, -1);
}

/* ---- the channel's front-end of the open pipeline ------------------------------------------ */

/* The channel's OpenSink: the answer is a packet on @channel for request @serial. */
typedef struct ChannelRequest {
        Channel *channel;       /* a reference */
        uint32_t serial;
} ChannelRequest;

static void channel_request_free(void *userdata) {
        ChannelRequest *cr = userdata;

        channel_unref(cr->channel);
        g_free(cr);
}

/* The kernel passes a reference to the file; the pipeline closes its own. */
static void channel_request_reply_fd(void *userdata, int fd) {
        ChannelRequest *cr = userdata;

        channel_reply_fd(cr->channel, cr->serial, fd);
}

static void channel_request_reply_error(void *userdata, const sd_bus_error *error) {
        ChannelRequest *cr = userdata;

        channel_reply_error(cr->channel, cr->serial, error);
}

static OpenSink channel_request_sink(Channel *ch, uint32_t serial) {
        ChannelRequest *cr = g_new(ChannelRequest, 1);

        *cr = (ChannelRequest) { .channel = channel_ref(ch), .serial = serial };
        return (OpenSink) {
                .sender = ch->owner,
                .via_channel = true,
                .reply_fd = channel_request_reply_fd,
                .reply_error = channel_request_reply_error,
                .free = channel_request_free,
                .userdata = cr,
        };
}

/* One request from @ch: every check of OpenImage for the channel's owner, then the pipeline. */
static void channel_open_image(Manager *m, Channel *ch, const IaChannelParsedRequest *req) {
        g_auto(sd_bus_error) error = SD_BUS_ERROR_NULL;
        const char *guest = req->guest, *path = req->path;
        /* ia_channel_parse_request() checked it; the wire values are IaMode's (mode.c). */
        IaMode mode = (IaMode) req->mode;
        const char *mode_str = ia_mode_to_string(mode);
        ImageOpenFlags flags = {
                .direct = req->options & IA_CHANNEL_OPTION_DIRECT,
                .nonblock = req->options & IA_CHANNEL_OPTION_NONBLOCK,
        };
        Caller c;
        const char *dir;
        OpenTarget t;
        Peer *p;
        int r;

        /* The bus guarantees UTF-8 in strings; a channel does not. */
        if (!g_utf8_validate(guest, -1, NULL)) {
                sd_bus_error_set(&error, IA_ERROR_INVALID_NAME, "Invalid guest name: not UTF-8");
                goto fail;
        }
        if (!g_utf8_validate(path, -1, NULL)) {
                sd_bus_error_set(&error, IA_ERROR_INVALID_PATH, "Invalid image path: not UTF-8");
                goto fail;
        }
        r = validate_guest_name(guest, &error);
        if (r >= 0)
                r = validate_path(path, &error);
        if (r < 0)
                goto fail;

        /* The credentials are those the bus daemon gave for the owner when it asked for the
         * channel (OpenChannel needs them, and they cannot change). */
        p = peer_get(m, channel_owner(ch));
        if (!p || p->gone || !p->have_creds) {
                sd_bus_error_setf(&error, SD_BUS_ERROR_ACCESS_DENIED,
                                  "The connection %s this channel speaks for has left the bus",
                                  channel_owner(ch));
                deny("open", &(Caller) { .sender = channel_owner(ch), .euid = (uid_t) -1,
                                         .via_channel = true },
                     guest, path, mode_str, -ECONNRESET, &error);
                goto fail;
        }
        c = (Caller) { .sender = p->name, .euid = p->euid, .pid = p->pid, .peer = p,
                       .via_channel = true };

        r = open_check(m, &c, guest, path, mode, &t, &error);
        if (r < 0)
                goto fail;

        /* Never a polkit check here: a request on a channel is answered at once, so that
         * one slow check never holds up the emulator's other opens behind it.  Without a
         * cached yes the client asks again with OpenImage, which parks for polkit and
         * carries the interactive-authorization flag. */
        dir = open_directory(&t);
        if (!authz_check_cached(m, &c, IA_ACTION_OPEN_IMAGE,
                                (const char *const[]) { "guest", guest, "image", path,
                                                        "mode", mode_str,
                                                        "guest-uuid", t.guest->uuid ?: "",
                                                        dir ? "directory" : NULL, dir, NULL })) {
                log_debug("No cached polkit answer on '%s' %s for %s: asking it to use the bus",
                          path, mode_str, c.sender);
                channel_reply_use_bus(ch, req->serial, "polkit has not been asked yet");
                return;
        }

        log_debug("Opening '%s' %s for %s, asked on its channel", path, mode_str, c.sender);
        OpenSink sink = channel_request_sink(ch, req->serial);
        r = open_submit(m, &c, &t, guest, path, mode, &flags, &sink, &error);
        if (r >= 0)
                return;
fail:
        channel_reply_error(ch, req->serial, &error);
}

static int on_channel_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Channel *ch = channel_ref(userdata);

        for (unsigned i = 0; i < CHANNEL_BURST && ch->m; i++) {
                uint8_t buf[IA_CHANNEL_PACKET_MAX];
                struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };
                /* No msg_control: fds attached by the client are discarded by the kernel. */
                struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
                IaChannelParsedRequest req;
                ssize_t n;

                n = recvmsg(ch->fd, &mh, MSG_DONTWAIT);
                if (n < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                break;
                        channel_close(ch, LOG_DEBUG, strerror(errno));
                        break;
                }
                if (n == 0) {
                        channel_close(ch, LOG_DEBUG, "the client closed it");
                        break;
                }
                if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
                        channel_close(ch, LOG_NOTICE, mh.msg_flags & MSG_TRUNC ?
                                      "a request larger than the protocol allows" :
                                      "a request with file descriptors attached");
                        break;
                }
                if (ia_channel_parse_request(buf, (size_t) n, &req) < 0) {
                        channel_close(ch, LOG_NOTICE, "a malformed request");
                        break;
                }
                channel_open_image(ch->m, ch, &req);
        }
        channel_unref(ch);
        return 0;
}

int channel_new(Manager *m, Peer *owner, int *ret_fd) {
        ia_autofd int ours = -1, theirs = -1;
        int sv[2], r;
        Channel *ch;

        if (owner->n_channels >= CHANNELS_PER_PEER_MAX || m->n_channels >= m->config.max_channels)
                return -ENOBUFS;
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
                return -errno;
        ours = sv[0];
        theirs = sv[1];
        /* Only our end: the client's may block in its own reads. */
        if (fcntl(ours, F_SETFL, O_NONBLOCK) < 0)
                return -errno;
        /* Replies the client has not read wait in the kernel, an fd in each, counted against
         * our uid's fds in flight (RLIMIT_NOFILE, as the unit gives no CAP_SYS_RESOURCE).  The
         * library has one request out at a time: a small buffer holds about ten replies, and
         * a client that lets them pile up loses its channel at the next (channel_send()). */
        if (setsockopt(ours, SOL_SOCKET, SO_SNDBUF, &(int) { CHANNEL_SNDBUF }, sizeof(int)) < 0)
                return -errno;

        ch = g_new0(Channel, 1);
        ch->n_ref = 1;
        ch->m = m;
        ch->fd = IA_TAKE_FD(ours);
        ch->owner = g_strdup(owner->name);
        r = sd_event_add_io(m->event, &ch->io, ch->fd, EPOLLIN, on_channel_io, ch);
        if (r < 0) {
                channel_unref(ch);
                return r;
        }
        (void) sd_event_source_set_description(ch->io, "channel");
        g_hash_table_add(m->channels, ch);
        owner->n_channels++;
        m->n_channels++;
        log_debug("Opened a channel for %s (%u of its %d)", owner->name, owner->n_channels,
                  CHANNELS_PER_PEER_MAX);
        *ret_fd = IA_TAKE_FD(theirs);
        return 0;
}

/* PeerWatch.left: the bus connection @name left; its channels close with it (requests in
 * workers are dropped). */
static void channel_close_owner(Manager *m, const char *name) {
        g_autoptr(GPtrArray) mine = g_ptr_array_new();
        Peer *p = peer_get(m, name);
        GHashTableIter it;
        Channel *ch;

        if (!p || p->n_channels == 0)
                return;

        g_hash_table_iter_init(&it, m->channels);
        while (g_hash_table_iter_next(&it, (gpointer *) &ch, NULL))
                if (g_str_equal(ch->owner, name))
                        g_ptr_array_add(mine, ch);
        for (unsigned i = 0; i < mine->len; i++)
                channel_close(mine->pdata[i], LOG_DEBUG, "its connection left the bus");
}

const PeerWatch channel_peer_watch = {
        .left = channel_close_owner,
};

void channel_close_all(Manager *m) {
        g_autoptr(GPtrArray) all = g_ptr_array_new();
        GHashTableIter it;
        Channel *ch;

        g_hash_table_iter_init(&it, m->channels);
        while (g_hash_table_iter_next(&it, (gpointer *) &ch, NULL))
                g_ptr_array_add(all, ch);
        for (unsigned i = 0; i < all->len; i++)
                channel_close(all->pdata[i], LOG_DEBUG, "the service is stopping");
}

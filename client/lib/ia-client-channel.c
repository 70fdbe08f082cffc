/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ia-client-channel.c — synchronous opens over a channel (ia-channel.h): one packet to the
 * service and one back, instead of four hops through the bus daemon.
 *
 * The channel is only a faster road to the same decision.  The service answers on it only
 * what it can decide without polkit; everything else comes back as "use the bus", and the
 * open is made again as OpenImage, which is the authority.  Any trouble with the channel
 * (the service restarted, a reply that does not parse) drops it, and the open goes over the
 * bus.  Repeating an open is harmless: a "create" of the file the service made for this
 * guest reopens that file.
 */

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ia-channel.h"
#include "ia-client-private.h"
#include "ia-error.h"
#include "ia-macro.h"

/* After a failed OpenChannel (not bound yet, a limit), this long on the bus before the next
 * attempt. */
#define CHANNEL_RETRY_USEC (1000ULL * 1000ULL)

_Static_assert((int) IA_IMAGE_MODE_READ_ONLY == (int) IA_CHANNEL_MODE_READ_ONLY &&
               (int) IA_IMAGE_MODE_READ_WRITE == (int) IA_CHANNEL_MODE_READ_WRITE &&
               (int) IA_IMAGE_MODE_CREATE == (int) IA_CHANNEL_MODE_CREATE,
               "the channel's modes are IaImageMode's");

/* The buffer: one packet, then the name and message of a reply. */
#define CHANNEL_BUF_SIZE (IA_CHANNEL_PACKET_MAX + 2 * (IA_CHANNEL_TEXT_MAX + 1))

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000;
}

int ia_client_set_use_channel(IaClient *client, bool b) {
        if (!client)
                return -EINVAL;
        client->use_channel = b;
        if (!b)
                client_channel_drop(client);
        return 0;
}

void client_channel_drop(IaClient *c) {
        /* In a forked child the fd is a copy of the parent's socket: closing the copy does
         * not disturb the parent. */
        if (c->channel_fd >= 0)
                (void) close(c->channel_fd);
        c->channel_fd = -1;
        free(c->channel_buf);
        c->channel_buf = NULL;
}

/* Asks the service for a channel (OpenChannel).  Return: 0; negative errno: go on without. */
static int channel_get(IaClient *c, const char *guest) {
        ia_auto(sd_bus_error) e = SD_BUS_ERROR_NULL;
        ia_autoptr(sd_bus_message) m = NULL;
        ia_autoptr(sd_bus_message) reply = NULL;
        sd_bus *bus;
        int fd = -1, r;

        r = client_get_bus(c, &bus);
        if (r < 0)
                return r;
        if (c->channel_fd >= 0 && c->channel_pid == getpid() &&
            c->channel_bus_generation == c->bus_generation)
                return 0;
        client_channel_drop(c);         /* made by our parent, or on a lost connection */
        if (now_usec() < c->channel_retry_usec)
                return -EAGAIN;

        r = client_new_method_call(c, IA_INTERFACE, "OpenChannel", &m);
        if (r >= 0)
                r = sd_bus_message_append(m, "sa{sv}", guest, 0);
        if (r >= 0)
                r = sd_bus_call(bus, m, 0, &e, &reply);
        if (r >= 0)
                r = client_reply_dup_fd(reply, &fd);
        if (r >= 0) {
                c->channel_buf = malloc(CHANNEL_BUF_SIZE);
                if (!c->channel_buf) {
                        (void) close(fd);
                        r = -ENOMEM;
                }
        }
        if (r < 0) {
                /* A service without channels (older, or MaxChannels=0) never gives one: stop
                 * asking.  Otherwise (not bound yet, a limit) try again later. */
                c->channel_retry_usec = sd_bus_error_has_names(&e, SD_BUS_ERROR_UNKNOWN_METHOD,
                                                               SD_BUS_ERROR_NOT_SUPPORTED) ?
                                        UINT64_MAX : now_usec() + CHANNEL_RETRY_USEC;
                return r;
        }

        c->channel_fd = fd;
        c->channel_pid = getpid();
        c->channel_bus_generation = c->bus_generation;
        return 0;
}

/* Waits for the reply to @serial.  Return: 1 with the reply's length in *ret_len and its fd
 * (or -1) in *ret_fd; 0 timed out; negative errno: the channel is broken. */
static int channel_receive(IaClient *c, uint32_t serial, size_t *ret_len, int *ret_fd) {
        uint64_t now0 = now_usec();
        uint64_t deadline = c->timeout_usec > UINT64_MAX - now0 ? UINT64_MAX : now0 + c->timeout_usec;

        for (;;) {
                union {
                        struct cmsghdr h;
                        uint8_t buf[CMSG_SPACE(sizeof(int) * 4)];
                } control;
                struct iovec iov = { .iov_base = c->channel_buf, .iov_len = IA_CHANNEL_PACKET_MAX };
                struct msghdr mh = {
                        .msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = &control,
                        .msg_controllen = sizeof(control),
                };
                struct pollfd p = { .fd = c->channel_fd, .events = POLLIN };
                uint64_t now = now_usec(), wait_ms;
                IaChannelReply h;
                int fd = -1, n_fds = 0;
                ssize_t n;

                if (now >= deadline)
                        return 0;
                /* At most a minute per poll(): the ms count must fit an int. */
                wait_ms = (deadline - now + 999) / 1000;
                n = poll(&p, 1, (int) (wait_ms < 60000 ? wait_ms : 60000));
                if (n < 0 && errno != EINTR)
                        return -errno;
                if (n <= 0)
                        continue;

                n = recvmsg(c->channel_fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
                if (n < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                continue;
                        return -errno;
                }
                for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
                        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
                                continue;
                        for (size_t i = 0; i < (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
                                int x;

                                memcpy(&x, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
                                if (n_fds++ == 0)
                                        fd = x;
                                else
                                        (void) close(x);
                        }
                }
                if (n == 0) {
                        if (fd >= 0)
                                (void) close(fd);
                        return -ECONNRESET;     /* the service went away */
                }
                if (n_fds > 1 || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) ||
                    (size_t) n < sizeof(h)) {
                        if (fd >= 0)
                                (void) close(fd);
                        return -EBADMSG;
                }
                memcpy(&h, c->channel_buf, sizeof(h));
                if (h.magic == IA_CHANNEL_MAGIC && h.serial != serial) {
                        /* The late answer to a request that timed out: not ours. */
                        if (fd >= 0)
                                (void) close(fd);
                        continue;
                }
                *ret_len = (size_t) n;
                *ret_fd = fd;
                return 1;
        }
}

int client_channel_open(IaClient *c, const char *guest, const char *path, IaImageMode mode,
                        uint64_t flags, IaError *error, int *ret_fd) {
        uint32_t serial, status, options = 0;
        char *name, *message;
        size_t len = 0;
        int n, r, fd = -1;

        if (channel_get(c, guest) < 0)
                return 0;

        if (flags & IA_OPEN_DIRECT)
                options |= IA_CHANNEL_OPTION_DIRECT;
        if (flags & IA_OPEN_NONBLOCK)
                options |= IA_CHANNEL_OPTION_NONBLOCK;
        serial = ++c->channel_serial;
        n = ia_channel_format_request(c->channel_buf, serial, (uint32_t) mode, options, guest, path);
        if (n < 0)
                return 0;       /* the bus will say what is wrong with it */
        if (send(c->channel_fd, c->channel_buf, (size_t) n, MSG_NOSIGNAL) != n) {
                client_channel_drop(c);
                return 0;
        }

        r = channel_receive(c, serial, &len, &fd);
        if (r == 0) {
                /* Like a method call timing out: the service may still carry it out. */
                client_channel_drop(c);
                return ia_error_set_errnof(error, -ETIMEDOUT,
                                           "No answer from the service on the channel within %llu ms",
                                           (unsigned long long) (c->timeout_usec / 1000));
        }
        if (r < 0) {
                client_channel_drop(c);
                return 0;
        }

        name = (char *) c->channel_buf + IA_CHANNEL_PACKET_MAX;
        message = name + IA_CHANNEL_TEXT_MAX + 1;
        if (ia_channel_parse_reply(c->channel_buf, len, &serial, &status, name, message) < 0 ||
            (status == IA_CHANNEL_OK) != (fd >= 0)) {
                if (fd >= 0)
                        (void) close(fd);
                client_channel_drop(c);
                return 0;
        }

        switch (status) {
        case IA_CHANNEL_OK:
                if (fd < 3) {
                        /* Never hand out 0, 1 or 2: a caller would mistake it for stdio. */
                        int copy = fcntl(fd, F_DUPFD_CLOEXEC, 3), saved = -errno;

                        (void) close(fd);
                        if (copy < 0)
                                return ia_error_set_errnof(error, saved, "Cannot take the fd of '%s': %s",
                                                           path, strerror(-saved));
                        fd = copy;
                }
                *ret_fd = fd;
                return 1;
        case IA_CHANNEL_ERROR: {
                const sd_bus_error e = SD_BUS_ERROR_MAKE_CONST(name[0] ? name : SD_BUS_ERROR_FAILED,
                                                               message);

                return ia_error_set_bus(error, &e, 1);
        }
        default:
                return 0;       /* IA_CHANNEL_USE_BUS */
        }
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ia-channel.c — packing and checking channel packets (ia-channel.h).  Pure functions, no
 * I/O: shared by the service, the client library and the fuzzer.
 */
#include <assert.h>
#include <errno.h>
#include <string.h>

#include "ia-channel.h"

/* Copies @len bytes at @src into @dst (@size bytes) with a NUL; refuses embedded NULs. */
static int copy_string(char *dst, size_t size, const uint8_t *src, size_t len) {
        if (len >= size || memchr(src, 0, len))
                return -EBADMSG;
        memcpy(dst, src, len);
        dst[len] = 0;
        return 0;
}

int ia_channel_parse_request(const void *buf, size_t len, IaChannelParsedRequest *ret) {
        const uint8_t *p = buf;
        IaChannelRequest h;

        if (len < sizeof(h) || len > IA_CHANNEL_PACKET_MAX)
                return -EBADMSG;
        memcpy(&h, p, sizeof(h));       /* the buffer need not be aligned */
        if (h.magic != IA_CHANNEL_MAGIC)
                return -EBADMSG;
        if (h.mode > IA_CHANNEL_MODE_CREATE || (h.options & ~IA_CHANNEL_OPTIONS_ALL))
                return -EBADMSG;
        /* Each length is bounded by the packet before they are added: no overflow. */
        if (h.guest_len > len - sizeof(h) || h.path_len > len - sizeof(h) ||
            (size_t) h.guest_len + h.path_len != len - sizeof(h))
                return -EBADMSG;
        if (copy_string(ret->guest, sizeof(ret->guest), p + sizeof(h), h.guest_len) < 0 ||
            copy_string(ret->path, sizeof(ret->path), p + sizeof(h) + h.guest_len, h.path_len) < 0)
                return -EBADMSG;
        ret->serial = h.serial;
        ret->mode = h.mode;
        ret->options = h.options;
        return 0;
}

int ia_channel_format_request(void *buf, uint32_t serial, uint32_t mode, uint32_t options,
                              const char *guest, const char *path) {
        size_t gl = strlen(guest), pl = strlen(path);
        IaChannelRequest h = {
                .magic = IA_CHANNEL_MAGIC,
                .serial = serial,
                .mode = mode,
                .options = options,
        };
        uint8_t *p = buf;

        if (mode > IA_CHANNEL_MODE_CREATE || (options & ~IA_CHANNEL_OPTIONS_ALL))
                return -EINVAL;
        if (gl >= sizeof(((IaChannelParsedRequest *) NULL)->guest) ||
            pl >= sizeof(((IaChannelParsedRequest *) NULL)->path))
                return -ENAMETOOLONG;
        h.guest_len = (uint32_t) gl;
        h.path_len = (uint32_t) pl;
        memcpy(p, &h, sizeof(h));
        memcpy(p + sizeof(h), guest, gl);
        memcpy(p + sizeof(h) + gl, path, pl);
        return (int) (sizeof(h) + gl + pl);
}

/* The length of the longest prefix of @s, at most @max bytes, that does not end inside a
 * UTF-8 sequence. */
static size_t utf8_cut(const char *s, size_t max) {
        size_t n = strlen(s);

        if (n <= max)
                return n;
        while (max > 0 && ((unsigned char) s[max] & 0xc0) == 0x80)
                max--;
        return max;
}

size_t ia_channel_format_reply(void *buf, uint32_t serial, uint32_t status, const char *name,
                               const char *message) {
        IaChannelReply h = {
                .magic = IA_CHANNEL_MAGIC,
                .serial = serial,
                .status = status,
        };
        uint8_t *p = buf;

        assert(status <= IA_CHANNEL_USE_BUS);
        name = name ?: "";
        message = message ?: "";
        h.name_len = (uint32_t) utf8_cut(name, IA_CHANNEL_TEXT_MAX / 4);
        h.message_len = (uint32_t) utf8_cut(message, IA_CHANNEL_TEXT_MAX - h.name_len);
        memcpy(p, &h, sizeof(h));
        memcpy(p + sizeof(h), name, h.name_len);
        memcpy(p + sizeof(h) + h.name_len, message, h.message_len);
        return sizeof(h) + h.name_len + h.message_len;
}

int ia_channel_parse_reply(const void *buf, size_t len, uint32_t *ret_serial,
                           uint32_t *ret_status, char *ret_name, char *ret_message) {
        const uint8_t *p = buf;
        IaChannelReply h;

        if (len < sizeof(h))
                return -EBADMSG;
        memcpy(&h, p, sizeof(h));
        if (h.magic != IA_CHANNEL_MAGIC || h.status > IA_CHANNEL_USE_BUS)
                return -EBADMSG;
        if (h.name_len > IA_CHANNEL_TEXT_MAX || h.message_len > IA_CHANNEL_TEXT_MAX ||
            (size_t) h.name_len + h.message_len > IA_CHANNEL_TEXT_MAX ||
            (size_t) h.name_len + h.message_len != len - sizeof(h))
                return -EBADMSG;
        if (h.status == IA_CHANNEL_OK && len != sizeof(h))
                return -EBADMSG;        /* an fd, and nothing to say */
        if (copy_string(ret_name, IA_CHANNEL_TEXT_MAX + 1, p + sizeof(h), h.name_len) < 0 ||
            copy_string(ret_message, IA_CHANNEL_TEXT_MAX + 1, p + sizeof(h) + h.name_len,
                        h.message_len) < 0)
                return -EBADMSG;
        *ret_serial = h.serial;
        *ret_status = h.status;
        return 0;
}

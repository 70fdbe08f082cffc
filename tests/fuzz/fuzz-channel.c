/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Fuzz target: channel packets (ia-channel.c), the bytes an unprivileged peer writes to the
 * service.  The input is parsed as a request and as a reply.  A request that parses must
 * re-format to the very same bytes (one encoding per request: nothing in a packet is ignored);
 * a reply that parses must hold strings within IA_CHANNEL_TEXT_MAX, and re-formatting it may
 * only cut its strings, at UTF-8 character boundaries.
 */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <glib.h>

#include "ia-channel.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_request(const uint8_t *data, size_t size) {
        static uint8_t buf[IA_CHANNEL_PACKET_MAX];
        IaChannelParsedRequest req;
        int r;

        r = ia_channel_parse_request(data, size, &req);
        if (r < 0) {
                assert(r == -EBADMSG);
                return;
        }
        assert(size >= sizeof(IaChannelRequest) && size <= IA_CHANNEL_PACKET_MAX);
        assert(req.mode <= IA_CHANNEL_MODE_CREATE);
        assert(!(req.options & ~IA_CHANNEL_OPTIONS_ALL));
        assert(strlen(req.guest) < sizeof(req.guest));
        assert(strlen(req.path) < sizeof(req.path));

        r = ia_channel_format_request(buf, req.serial, req.mode, req.options, req.guest, req.path);
        assert(r >= 0);
        assert((size_t) r == size);
        assert(memcmp(buf, data, size) == 0);
}

static void check_reply(const uint8_t *data, size_t size) {
        static char name[IA_CHANNEL_TEXT_MAX + 1], message[IA_CHANNEL_TEXT_MAX + 1];
        static char name2[IA_CHANNEL_TEXT_MAX + 1], message2[IA_CHANNEL_TEXT_MAX + 1];
        static uint8_t buf[sizeof(IaChannelReply) + IA_CHANNEL_TEXT_MAX];
        uint32_t serial, status, serial2, status2;
        size_t nl, ml, n;
        int r;

        r = ia_channel_parse_reply(data, size, &serial, &status, name, message);
        if (r < 0) {
                assert(r == -EBADMSG);
                return;
        }
        nl = strlen(name);
        ml = strlen(message);
        assert(nl <= IA_CHANNEL_TEXT_MAX);
        assert(ml <= IA_CHANNEL_TEXT_MAX);
        assert(nl + ml <= IA_CHANNEL_TEXT_MAX);
        assert(status != IA_CHANNEL_OK || nl + ml == 0);
        assert(status <= IA_CHANNEL_USE_BUS);
        /* No NUL inside: the strings are all of the packet after the header. */
        assert(sizeof(IaChannelReply) + nl + ml == size);

        /* Re-formatting keeps what fits and cuts the rest, never inside a UTF-8 character. */
        n = ia_channel_format_reply(buf, serial, status, name, message);
        assert(n <= sizeof(buf));
        r = ia_channel_parse_reply(buf, n, &serial2, &status2, name2, message2);
        assert(r == 0);
        assert(serial2 == serial && status2 == status);
        assert(strlen(name2) + strlen(message2) <= IA_CHANNEL_TEXT_MAX);
        assert(strncmp(name, name2, strlen(name2)) == 0);
        assert(strncmp(message, message2, strlen(message2)) == 0);
        if (g_utf8_validate(name, -1, NULL))
                assert(g_utf8_validate(name2, -1, NULL));
        if (g_utf8_validate(message, -1, NULL))
                assert(g_utf8_validate(message2, -1, NULL));
        /* Nothing cut: the same bytes. */
        if (n == size)
                assert(memcmp(buf, data, size) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        check_request(data, size);
        check_reply(data, size);
        return 0;
}

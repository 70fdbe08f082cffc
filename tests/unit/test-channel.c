/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests of ia-channel.c, the packet format of OpenImage channels.  The service reads
 * requests from an unprivileged peer, so the parser is tested against every kind of packet it
 * must refuse (each built by hand, as one change to a packet that is first shown to parse), and
 * both formatters against their parsers.  Replies are cut to IA_CHANNEL_TEXT_MAX: the cut must
 * never split a UTF-8 character, or the client would hand invalid UTF-8 to D-Bus.
 */
#include <errno.h>
#include <string.h>
#include <glib.h>

#include "ia-channel.h"

#define GUEST_LONGEST 255       /* the longest guest name a request carries */
#define PATH_LONGEST 4096       /* the longest path a request carries */

G_STATIC_ASSERT(sizeof(IaChannelRequest) == 24);
G_STATIC_ASSERT(sizeof(IaChannelReply) == 20);

/* A buffer with room for anything the tests build, plus one byte in front so that packets can
 * also be handed over unaligned. */
typedef struct Packet {
        guint8 raw[2 * IA_CHANNEL_PACKET_MAX + 8];
        size_t len;
} Packet;

/* A request built field by field, without ia_channel_format_request(). */
static void build_request(Packet *pk, uint32_t magic, uint32_t serial, uint32_t mode,
                          uint32_t options, uint32_t guest_len, uint32_t path_len,
                          const void *guest, size_t guest_bytes, const void *path, size_t path_bytes) {
        IaChannelRequest h = {
                .magic = magic,
                .serial = serial,
                .mode = mode,
                .options = options,
                .guest_len = guest_len,
                .path_len = path_len,
        };

        g_assert_cmpuint(sizeof(h) + guest_bytes + path_bytes, <=, sizeof(pk->raw));
        memcpy(pk->raw, &h, sizeof(h));
        if (guest_bytes > 0)
                memcpy(pk->raw + sizeof(h), guest, guest_bytes);
        if (path_bytes > 0)
                memcpy(pk->raw + sizeof(h) + guest_bytes, path, path_bytes);
        pk->len = sizeof(h) + guest_bytes + path_bytes;
}

static void build_valid_request(Packet *pk, const char *guest, const char *path) {
        build_request(pk, IA_CHANNEL_MAGIC, 7, IA_CHANNEL_MODE_READ_WRITE, IA_CHANNEL_OPTION_DIRECT,
                      strlen(guest), strlen(path), guest, strlen(guest), path, strlen(path));
}

static int parse_request(const Packet *pk, IaChannelParsedRequest *ret) {
        return ia_channel_parse_request(pk->raw, pk->len, ret);
}

static void assert_request_rejected(const Packet *pk, const char *what) {
        IaChannelParsedRequest parsed;

        if (g_test_verbose())
                g_test_message("request: %s", what);
        g_assert_cmpint(parse_request(pk, &parsed), ==, -EBADMSG);
}

/* Rewrites one header field of a built packet. */
static void set_field(Packet *pk, size_t offset, uint32_t value) {
        memcpy(pk->raw + offset, &value, sizeof(value));
}

static char *repeat(const char *unit, size_t n) {
        GString *s = g_string_new(NULL);

        for (size_t i = 0; i < n; i++)
                g_string_append(s, unit);
        return g_string_free(s, FALSE);
}

/* ---- requests ----------------------------------------------------------------------------- */

static void test_magic_bytes(void) {
        guint8 buf[IA_CHANNEL_PACKET_MAX];
        int n;

        n = ia_channel_format_request(buf, 1, IA_CHANNEL_MODE_READ_ONLY, 0, "g", "/p");
        g_assert_cmpint(n, ==, 24 + 1 + 2);
#if G_BYTE_ORDER == G_LITTLE_ENDIAN
        g_assert_cmpmem(buf, 4, "IAC1", 4);
#else
        g_assert_cmpmem(buf, 4, "1CAI", 4);
#endif
}

static void check_request_round_trip(uint32_t serial, uint32_t mode, uint32_t options,
                                     const char *guest, const char *path) {
        guint8 buf[IA_CHANNEL_PACKET_MAX];
        IaChannelParsedRequest parsed;
        IaChannelRequest h;
        int n;

        memset(buf, 0xa5, sizeof(buf));
        n = ia_channel_format_request(buf, serial, mode, options, guest, path);
        g_assert_cmpint(n, ==, (int) (sizeof(h) + strlen(guest) + strlen(path)));

        /* The layout of ia-channel.h, read back independently of the parser. */
        memcpy(&h, buf, sizeof(h));
        g_assert_cmphex(h.magic, ==, IA_CHANNEL_MAGIC);
        g_assert_cmpuint(h.serial, ==, serial);
        g_assert_cmpuint(h.mode, ==, mode);
        g_assert_cmphex(h.options, ==, options);
        g_assert_cmpuint(h.guest_len, ==, strlen(guest));
        g_assert_cmpuint(h.path_len, ==, strlen(path));
        g_assert_cmpmem(buf + sizeof(h), h.guest_len, guest, strlen(guest));
        g_assert_cmpmem(buf + sizeof(h) + h.guest_len, h.path_len, path, strlen(path));

        memset(&parsed, 0x5a, sizeof(parsed));
        g_assert_cmpint(ia_channel_parse_request(buf, n, &parsed), ==, 0);
        g_assert_cmpuint(parsed.serial, ==, serial);
        g_assert_cmpuint(parsed.mode, ==, mode);
        g_assert_cmphex(parsed.options, ==, options);
        g_assert_cmpstr(parsed.guest, ==, guest);
        g_assert_cmpstr(parsed.path, ==, path);
}

static void test_request_round_trip(void) {
        static const uint32_t modes[] = {
                IA_CHANNEL_MODE_READ_ONLY, IA_CHANNEL_MODE_READ_WRITE, IA_CHANNEL_MODE_CREATE,
        };
        static const uint32_t options[] = {
                0, IA_CHANNEL_OPTION_DIRECT, IA_CHANNEL_OPTION_NONBLOCK, IA_CHANNEL_OPTIONS_ALL,
        };
        static const uint32_t serials[] = { 0, 1, 0x7fffffff, 0xffffffff };
        g_autofree char *long_guest = repeat("g", GUEST_LONGEST);
        g_autofree char *long_path = NULL;

        long_path = repeat("p", PATH_LONGEST);
        long_path[0] = '/';

        for (size_t m = 0; m < G_N_ELEMENTS(modes); m++)
                for (size_t o = 0; o < G_N_ELEMENTS(options); o++)
                        check_request_round_trip(serials[(m + o) % G_N_ELEMENTS(serials)], modes[m],
                                                 options[o], "vm-1", "/srv/images/disk.qcow2");
        for (size_t s = 0; s < G_N_ELEMENTS(serials); s++)
                check_request_round_trip(serials[s], IA_CHANNEL_MODE_READ_ONLY, 0, "g", "/p");

        /* Empty strings: the service refuses them, but the format carries them. */
        check_request_round_trip(3, IA_CHANNEL_MODE_READ_ONLY, 0, "", "");
        check_request_round_trip(3, IA_CHANNEL_MODE_READ_ONLY, 0, "g", "");
        check_request_round_trip(3, IA_CHANNEL_MODE_READ_ONLY, 0, "", "/p");
        /* The longest strings, alone and together. */
        check_request_round_trip(4, IA_CHANNEL_MODE_CREATE, IA_CHANNEL_OPTIONS_ALL, long_guest, "/p");
        check_request_round_trip(4, IA_CHANNEL_MODE_CREATE, IA_CHANNEL_OPTIONS_ALL, "g", long_path);
        check_request_round_trip(4, IA_CHANNEL_MODE_CREATE, IA_CHANNEL_OPTIONS_ALL, long_guest, long_path);
        /* Bytes that are not ASCII pass unchanged (validation is the service's job). */
        check_request_round_trip(5, IA_CHANNEL_MODE_READ_ONLY, 0, "g\xff\x01", "/é/\x7f");
}

/* The parser copies the header out of the buffer: it need not be aligned. */
static void test_request_unaligned(void) {
        Packet pk;
        IaChannelParsedRequest parsed;

        build_valid_request(&pk, "vm", "/img");
        memmove(pk.raw + 1, pk.raw, pk.len);
        g_assert_cmpint(ia_channel_parse_request(pk.raw + 1, pk.len, &parsed), ==, 0);
        g_assert_cmpuint(parsed.serial, ==, 7);
        g_assert_cmpstr(parsed.guest, ==, "vm");
        g_assert_cmpstr(parsed.path, ==, "/img");
}

static void test_request_parse_rejects(void) {
        const size_t o_magic = G_STRUCT_OFFSET(IaChannelRequest, magic);
        const size_t o_mode = G_STRUCT_OFFSET(IaChannelRequest, mode);
        const size_t o_options = G_STRUCT_OFFSET(IaChannelRequest, options);
        const size_t o_guest_len = G_STRUCT_OFFSET(IaChannelRequest, guest_len);
        const size_t o_path_len = G_STRUCT_OFFSET(IaChannelRequest, path_len);
        g_autofree char *guest_255 = repeat("g", GUEST_LONGEST);
        g_autofree char *guest_256 = repeat("g", GUEST_LONGEST + 1);
        g_autofree char *path_4096 = repeat("p", PATH_LONGEST);
        g_autofree char *path_4097 = repeat("p", PATH_LONGEST + 1);
        g_autofree char *big = NULL;
        IaChannelParsedRequest parsed;
        Packet pk;

        memset(&pk, 0, sizeof(pk));
        /* The base of every case below parses; each case changes one thing. */
        build_valid_request(&pk, "vm", "/img");
        g_assert_cmpint(parse_request(&pk, &parsed), ==, 0);

        /* Too short for the header.  A bare header (both strings empty) is well-formed, so any
         * shorter packet is refused for its size alone. */
        build_request(&pk, IA_CHANNEL_MAGIC, 1, 0, 0, 0, 0, NULL, 0, NULL, 0);
        g_assert_cmpint(parse_request(&pk, &parsed), ==, 0);
        for (size_t l = 0; l < sizeof(IaChannelRequest); l++) {
                /* Exactly @l bytes on the heap: a read past them shows under ASan/valgrind. */
                g_autofree void *shorter = g_memdup2(pk.raw, l);

                g_assert_cmpint(ia_channel_parse_request(shorter, l, &parsed), ==, -EBADMSG);
        }

        /* Larger than IA_CHANNEL_PACKET_MAX, with lengths that add up. */
        build_request(&pk, IA_CHANNEL_MAGIC, 1, 0, 0, 0, IA_CHANNEL_PACKET_MAX + 1 - 24,
                      NULL, 0, NULL, 0);
        big = repeat("p", IA_CHANNEL_PACKET_MAX + 1 - 24);
        memcpy(pk.raw + 24, big, strlen(big));
        pk.len = IA_CHANNEL_PACKET_MAX + 1;
        assert_request_rejected(&pk, "larger than IA_CHANNEL_PACKET_MAX");
        pk.len = sizeof(pk.raw);
        set_field(&pk, o_path_len, sizeof(pk.raw) - 24);
        assert_request_rejected(&pk, "much larger than IA_CHANNEL_PACKET_MAX");

        /* Wrong magic: off by one, byte-swapped (the other endianness), zero. */
        static const uint32_t bad_magic[] = {
                IA_CHANNEL_MAGIC ^ 1, IA_CHANNEL_MAGIC ^ 0x80000000, GUINT32_SWAP_LE_BE_CONSTANT(IA_CHANNEL_MAGIC), 0,
        };
        for (size_t i = 0; i < G_N_ELEMENTS(bad_magic); i++) {
                build_valid_request(&pk, "vm", "/img");
                set_field(&pk, o_magic, bad_magic[i]);
                assert_request_rejected(&pk, "bad magic");
        }

        /* Unknown modes. */
        static const uint32_t bad_mode[] = { 3, 4, 0x80000000, 0xffffffff };
        for (size_t i = 0; i < G_N_ELEMENTS(bad_mode); i++) {
                build_valid_request(&pk, "vm", "/img");
                set_field(&pk, o_mode, bad_mode[i]);
                assert_request_rejected(&pk, "unknown mode");
        }

        /* Unknown option bits, alone and next to known ones. */
        for (unsigned bit = 2; bit < 32; bit++) {
                build_valid_request(&pk, "vm", "/img");
                set_field(&pk, o_options, UINT32_C(1) << bit);
                assert_request_rejected(&pk, "unknown option bit");
                set_field(&pk, o_options, IA_CHANNEL_OPTIONS_ALL | (UINT32_C(1) << bit));
                assert_request_rejected(&pk, "unknown option bit with known ones");
        }

        /* Lengths that do not add up to the packet ("vm" + "/img": 6 bytes after the header). */
        build_valid_request(&pk, "vm", "/img");
        set_field(&pk, o_guest_len, 3);
        assert_request_rejected(&pk, "guest_len one too many");
        build_valid_request(&pk, "vm", "/img");
        set_field(&pk, o_path_len, 3);
        assert_request_rejected(&pk, "path_len one too few");
        build_valid_request(&pk, "vm", "/img");
        pk.raw[pk.len++] = 'x';
        assert_request_rejected(&pk, "a trailing byte");
        build_valid_request(&pk, "vm", "/img");
        pk.len--;
        assert_request_rejected(&pk, "one byte missing");
        build_valid_request(&pk, "vm", "/img");
        set_field(&pk, o_guest_len, 0);
        set_field(&pk, o_path_len, 0);
        assert_request_rejected(&pk, "no lengths, but a payload");

        /* Lengths whose sum wraps around in 32 bits to the payload's length (6). */
        static const uint32_t wrap[][2] = {
                { 0xffffffff, 7 },
                { 7, 0xffffffff },
                { 0xfffffffa, 12 },
                { 0x80000000, 0x80000006 },
        };
        for (size_t i = 0; i < G_N_ELEMENTS(wrap); i++) {
                build_valid_request(&pk, "vm", "/img");
                set_field(&pk, o_guest_len, wrap[i][0]);
                set_field(&pk, o_path_len, wrap[i][1]);
                g_assert_cmpuint((uint32_t) (wrap[i][0] + wrap[i][1]), ==, 6);
                assert_request_rejected(&pk, "lengths that overflow");
        }

        /* A NUL inside the guest name or the path, at the start, inside, at the end. */
        static const struct {
                const char *bytes;
                size_t guest_len, path_len;
        } nul[] = {
                { "\0m/img", 2, 4 },
                { "v\0/img", 2, 4 },
                { "vm\0img", 2, 4 },
                { "vm/i\0g", 2, 4 },
                { "vm/im\0", 2, 4 },
        };
        for (size_t i = 0; i < G_N_ELEMENTS(nul); i++) {
                build_request(&pk, IA_CHANNEL_MAGIC, 7, 0, 0, nul[i].guest_len, nul[i].path_len,
                              nul[i].bytes, nul[i].guest_len + nul[i].path_len, NULL, 0);
                assert_request_rejected(&pk, "embedded NUL");
        }

        /* Strings one byte longer than IaChannelParsedRequest holds; the longest ones parse. */
        build_valid_request(&pk, guest_255, path_4096);
        g_assert_cmpint(parse_request(&pk, &parsed), ==, 0);
        g_assert_cmpuint(strlen(parsed.guest), ==, GUEST_LONGEST);
        g_assert_cmpuint(strlen(parsed.path), ==, PATH_LONGEST);
        build_valid_request(&pk, guest_256, "/img");
        assert_request_rejected(&pk, "guest of 256 bytes");
        build_valid_request(&pk, guest_256, path_4096);
        assert_request_rejected(&pk, "guest of 256 bytes, path of 4096");
        build_valid_request(&pk, "vm", path_4097);
        assert_request_rejected(&pk, "path of 4097 bytes");
        build_valid_request(&pk, guest_255, path_4097);
        assert_request_rejected(&pk, "guest of 255 bytes, path of 4097");
}

static void test_request_format_errors(void) {
        g_autofree char *guest_255 = repeat("g", GUEST_LONGEST);
        g_autofree char *guest_256 = repeat("g", GUEST_LONGEST + 1);
        g_autofree char *path_4096 = repeat("p", PATH_LONGEST);
        g_autofree char *path_4097 = repeat("p", PATH_LONGEST + 1);
        guint8 buf[IA_CHANNEL_PACKET_MAX];

        /* The limits themselves fit. */
        g_assert_cmpint(ia_channel_format_request(buf, 1, 0, 0, guest_255, path_4096), ==,
                        24 + GUEST_LONGEST + PATH_LONGEST);

        g_assert_cmpint(ia_channel_format_request(buf, 1, 0, 0, guest_256, "/p"), ==, -ENAMETOOLONG);
        g_assert_cmpint(ia_channel_format_request(buf, 1, 0, 0, "g", path_4097), ==, -ENAMETOOLONG);
        g_assert_cmpint(ia_channel_format_request(buf, 1, 0, 0, guest_256, path_4097), ==, -ENAMETOOLONG);

        g_assert_cmpint(ia_channel_format_request(buf, 1, 3, 0, "g", "/p"), ==, -EINVAL);
        g_assert_cmpint(ia_channel_format_request(buf, 1, 0xffffffff, 0, "g", "/p"), ==, -EINVAL);
        for (unsigned bit = 2; bit < 32; bit++)
                g_assert_cmpint(ia_channel_format_request(buf, 1, 0, UINT32_C(1) << bit, "g", "/p"), ==,
                                -EINVAL);
        g_assert_cmpint(ia_channel_format_request(buf, 1, 0, ~UINT32_C(0), "g", "/p"), ==, -EINVAL);
}

/* ---- replies ------------------------------------------------------------------------------ */

typedef struct ParsedReply {
        uint32_t serial, status;
        char name[IA_CHANNEL_TEXT_MAX + 1];
        char message[IA_CHANNEL_TEXT_MAX + 1];
} ParsedReply;

static int parse_reply(const void *buf, size_t len, ParsedReply *r) {
        memset(r, 'X', sizeof(*r));     /* so that an absent string must be written as "" */
        return ia_channel_parse_reply(buf, len, &r->serial, &r->status, r->name, r->message);
}

static void build_reply(Packet *pk, uint32_t magic, uint32_t serial, uint32_t status,
                        uint32_t name_len, uint32_t message_len, const void *text, size_t text_bytes) {
        IaChannelReply h = {
                .magic = magic,
                .serial = serial,
                .status = status,
                .name_len = name_len,
                .message_len = message_len,
        };

        g_assert_cmpuint(sizeof(h) + text_bytes, <=, sizeof(pk->raw));
        memcpy(pk->raw, &h, sizeof(h));
        if (text_bytes > 0)
                memcpy(pk->raw + sizeof(h), text, text_bytes);
        pk->len = sizeof(h) + text_bytes;
}

static void assert_reply_rejected(const Packet *pk, const char *what) {
        ParsedReply r;

        if (g_test_verbose())
                g_test_message("reply: %s", what);
        g_assert_cmpint(parse_reply(pk->raw, pk->len, &r), ==, -EBADMSG);
}

static void check_reply_round_trip(uint32_t serial, uint32_t status, const char *name,
                                   const char *message) {
        guint8 buf[sizeof(IaChannelReply) + IA_CHANNEL_TEXT_MAX];
        size_t nl = name ? strlen(name) : 0, ml = message ? strlen(message) : 0;
        IaChannelReply h;
        ParsedReply r;
        size_t n;

        n = ia_channel_format_reply(buf, serial, status, name, message);
        g_assert_cmpuint(n, ==, sizeof(h) + nl + ml);
        memcpy(&h, buf, sizeof(h));
        g_assert_cmphex(h.magic, ==, IA_CHANNEL_MAGIC);
        g_assert_cmpuint(h.serial, ==, serial);
        g_assert_cmpuint(h.status, ==, status);
        g_assert_cmpuint(h.name_len, ==, nl);
        g_assert_cmpuint(h.message_len, ==, ml);

        g_assert_cmpint(parse_reply(buf, n, &r), ==, 0);
        g_assert_cmpuint(r.serial, ==, serial);
        g_assert_cmpuint(r.status, ==, status);
        g_assert_cmpstr(r.name, ==, name ?: "");
        g_assert_cmpstr(r.message, ==, message ?: "");
}

static void test_reply_round_trip(void) {
        static const char denied[] = "org.freedesktop.DBus.Error.AccessDenied";

        check_reply_round_trip(1, IA_CHANNEL_OK, NULL, NULL);
        check_reply_round_trip(2, IA_CHANNEL_ERROR, denied, "Not authorized to open /srv/a.img");
        check_reply_round_trip(3, IA_CHANNEL_USE_BUS, NULL, NULL);
        check_reply_round_trip(0xffffffff, IA_CHANNEL_ERROR, denied, NULL);
        check_reply_round_trip(0, IA_CHANNEL_ERROR, NULL, "message only");
        check_reply_round_trip(4, IA_CHANNEL_ERROR, "", "");
        check_reply_round_trip(5, IA_CHANNEL_ERROR, denied, "UTF-8 intact: é € 😀");
}

static void test_reply_unaligned(void) {
        guint8 buf[1 + sizeof(IaChannelReply) + IA_CHANNEL_TEXT_MAX];
        ParsedReply r;
        size_t n;

        n = ia_channel_format_reply(buf + 1, 9, IA_CHANNEL_ERROR, "a.b", "c");
        g_assert_cmpint(parse_reply(buf + 1, n, &r), ==, 0);
        g_assert_cmpuint(r.serial, ==, 9);
        g_assert_cmpstr(r.name, ==, "a.b");
        g_assert_cmpstr(r.message, ==, "c");
}

/* Formats, parses back and checks the promises of a cut: at most IA_CHANNEL_TEXT_MAX bytes
 * together, each string a prefix of what was given, valid UTF-8 when given valid UTF-8. */
static void format_cut(const char *name, const char *message, ParsedReply *r) {
        guint8 buf[sizeof(IaChannelReply) + IA_CHANNEL_TEXT_MAX + 64];
        IaChannelReply h;
        size_t n;

        memset(buf, 0xa5, sizeof(buf));
        n = ia_channel_format_reply(buf, 11, IA_CHANNEL_ERROR, name, message);
        g_assert_cmpuint(n, <=, sizeof(IaChannelReply) + IA_CHANNEL_TEXT_MAX);
        /* Nothing written past the packet. */
        for (size_t i = n; i < sizeof(buf); i++)
                g_assert_cmphex(buf[i], ==, 0xa5);
        memcpy(&h, buf, sizeof(h));
        g_assert_cmpuint(h.name_len + h.message_len, <=, IA_CHANNEL_TEXT_MAX);
        g_assert_cmpuint(n, ==, sizeof(h) + h.name_len + h.message_len);

        g_assert_cmpint(parse_reply(buf, n, r), ==, 0);
        g_assert_cmpuint(strlen(r->name), ==, h.name_len);
        g_assert_cmpuint(strlen(r->message), ==, h.message_len);
        g_assert_true(g_str_has_prefix(name, r->name));
        g_assert_true(g_str_has_prefix(message, r->message));
        g_assert_true(g_utf8_validate(r->name, -1, NULL));
        g_assert_true(g_utf8_validate(r->message, -1, NULL));
}

static void test_reply_cut(void) {
        /* Characters of 2, 3 and 4 bytes, so that every cut position meets a sequence. */
        static const char *const units[] = { "é", "€", "😀" };
        ParsedReply r;

        /* "é" repeated, no name: 1024 is even, the cut falls between two characters. */
        {
                g_autofree char *msg = repeat("é", IA_CHANNEL_TEXT_MAX);

                format_cut("", msg, &r);
                g_assert_cmpstr(r.name, ==, "");
                g_assert_cmpuint(strlen(r.message), ==, IA_CHANNEL_TEXT_MAX);
        }

        /* The same with a NULL name, and with a message that fits exactly or by one byte. */
        {
                g_autofree char *exact = repeat("é", IA_CHANNEL_TEXT_MAX / 2);
                g_autofree char *over = g_strconcat(exact, "x", NULL);
                guint8 buf[sizeof(IaChannelReply) + IA_CHANNEL_TEXT_MAX];
                size_t n;

                n = ia_channel_format_reply(buf, 1, IA_CHANNEL_ERROR, NULL, exact);
                g_assert_cmpuint(n, ==, sizeof(IaChannelReply) + IA_CHANNEL_TEXT_MAX);
                g_assert_cmpint(parse_reply(buf, n, &r), ==, 0);
                g_assert_cmpstr(r.message, ==, exact);
                n = ia_channel_format_reply(buf, 1, IA_CHANNEL_ERROR, NULL, over);
                g_assert_cmpuint(n, ==, sizeof(IaChannelReply) + IA_CHANNEL_TEXT_MAX);
                g_assert_cmpint(parse_reply(buf, n, &r), ==, 0);
                g_assert_cmpstr(r.message, ==, exact);
        }

        /* A short name is kept whole and the message is cut to the room left — at every offset
         * modulo the character's size, so that the cut lands inside a sequence and must back
         * off, but by less than one character (the longest prefix that fits). */
        for (size_t u = 0; u < G_N_ELEMENTS(units); u++) {
                size_t unit = strlen(units[u]);
                g_autofree char *msg = repeat(units[u], IA_CHANNEL_TEXT_MAX);

                for (size_t k = 0; k < 2 * unit + 1; k++) {
                        g_autofree char *name = repeat("n", k + 1);

                        format_cut(name, msg, &r);
                        g_assert_cmpstr(r.name, ==, name);
                        g_assert_cmpuint(strlen(r.message) % unit, ==, 0);
                        g_assert_cmpuint(strlen(r.message), <=, IA_CHANNEL_TEXT_MAX - (k + 1));
                        g_assert_cmpuint(strlen(r.message), >, IA_CHANNEL_TEXT_MAX - (k + 1) - unit);
                }

                /* A message that starts with ASCII so that the cut is not at a multiple of the
                 * unit from the start of the message. */
                for (size_t k = 1; k < unit + 1; k++) {
                        g_autofree char *prefix = repeat("m", k);
                        g_autofree char *shifted = g_strconcat(prefix, msg, NULL);

                        format_cut("a.b", shifted, &r);
                        g_assert_cmpstr(r.name, ==, "a.b");
                        g_assert_cmpuint((strlen(r.message) - k) % unit, ==, 0);
                        g_assert_cmpuint(strlen(r.message), >, IA_CHANNEL_TEXT_MAX - 3 - unit);
                }
        }

        /* Both too long: cut both, together within the limit, neither inside a character. */
        for (size_t u = 0; u < G_N_ELEMENTS(units); u++) {
                g_autofree char *name = repeat(units[u], IA_CHANNEL_TEXT_MAX);
                g_autofree char *msg = repeat(units[u], IA_CHANNEL_TEXT_MAX);

                format_cut(name, msg, &r);
                g_assert_cmpuint(strlen(r.name) % strlen(units[u]), ==, 0);
                g_assert_cmpuint(strlen(r.message) % strlen(units[u]), ==, 0);
                g_assert_cmpuint(strlen(r.name), >, 0);
        }

        /* A long name with no message. */
        {
                g_autofree char *name = repeat("€", IA_CHANNEL_TEXT_MAX);

                format_cut(name, "", &r);
                g_assert_cmpuint(strlen(r.name), >, 0);
                g_assert_cmpuint(strlen(r.name) % 3, ==, 0);
                g_assert_cmpstr(r.message, ==, "");
        }
}

static void test_reply_parse_rejects(void) {
        const size_t o_magic = G_STRUCT_OFFSET(IaChannelReply, magic);
        const size_t o_status = G_STRUCT_OFFSET(IaChannelReply, status);
        const size_t o_name_len = G_STRUCT_OFFSET(IaChannelReply, name_len);
        const size_t o_message_len = G_STRUCT_OFFSET(IaChannelReply, message_len);
        g_autofree char *text_1025 = repeat("t", IA_CHANNEL_TEXT_MAX + 1);
        ParsedReply r;
        Packet pk;

#define BASE() build_reply(&pk, IA_CHANNEL_MAGIC, 5, IA_CHANNEL_ERROR, 3, 3, "a.bmsg", 6)
        BASE();
        g_assert_cmpint(parse_reply(pk.raw, pk.len, &r), ==, 0);
        g_assert_cmpstr(r.name, ==, "a.b");
        g_assert_cmpstr(r.message, ==, "msg");

        /* Too short: a bare header is a well-formed OK reply, anything shorter is not. */
        build_reply(&pk, IA_CHANNEL_MAGIC, 5, IA_CHANNEL_OK, 0, 0, NULL, 0);
        g_assert_cmpint(parse_reply(pk.raw, pk.len, &r), ==, 0);
        g_assert_cmpuint(r.status, ==, IA_CHANNEL_OK);
        g_assert_cmpstr(r.name, ==, "");
        g_assert_cmpstr(r.message, ==, "");
        for (size_t l = 0; l < sizeof(IaChannelReply); l++) {
                g_autofree void *shorter = g_memdup2(pk.raw, l);

                g_assert_cmpint(parse_reply(shorter, l, &r), ==, -EBADMSG);
        }

        static const uint32_t bad_magic[] = {
                IA_CHANNEL_MAGIC ^ 1, GUINT32_SWAP_LE_BE_CONSTANT(IA_CHANNEL_MAGIC), 0,
        };
        for (size_t i = 0; i < G_N_ELEMENTS(bad_magic); i++) {
                BASE();
                set_field(&pk, o_magic, bad_magic[i]);
                assert_reply_rejected(&pk, "bad magic");
        }

        static const uint32_t bad_status[] = { 3, 4, 0x80000000, 0xffffffff };
        for (size_t i = 0; i < G_N_ELEMENTS(bad_status); i++) {
                BASE();
                set_field(&pk, o_status, bad_status[i]);
                assert_reply_rejected(&pk, "unknown status");
        }

        /* Lengths that do not add up to the packet. */
        BASE();
        set_field(&pk, o_name_len, 4);
        assert_reply_rejected(&pk, "name_len one too many");
        BASE();
        set_field(&pk, o_message_len, 2);
        assert_reply_rejected(&pk, "message_len one too few");
        BASE();
        pk.raw[pk.len++] = 'x';
        assert_reply_rejected(&pk, "a trailing byte");
        BASE();
        pk.len--;
        assert_reply_rejected(&pk, "one byte missing");

        /* Lengths whose sum wraps around in 32 bits to the payload's length (6). */
        static const uint32_t wrap[][2] = {
                { 0xffffffff, 7 },
                { 7, 0xffffffff },
                { 0x80000000, 0x80000006 },
        };
        for (size_t i = 0; i < G_N_ELEMENTS(wrap); i++) {
                BASE();
                set_field(&pk, o_name_len, wrap[i][0]);
                set_field(&pk, o_message_len, wrap[i][1]);
                g_assert_cmpuint((uint32_t) (wrap[i][0] + wrap[i][1]), ==, 6);
                assert_reply_rejected(&pk, "lengths that overflow");
        }

        /* A string longer than IA_CHANNEL_TEXT_MAX, in a packet whose lengths add up; the
         * longest that fits parses. */
        build_reply(&pk, IA_CHANNEL_MAGIC, 5, IA_CHANNEL_ERROR, IA_CHANNEL_TEXT_MAX, 0,
                    text_1025, IA_CHANNEL_TEXT_MAX);
        g_assert_cmpint(parse_reply(pk.raw, pk.len, &r), ==, 0);
        g_assert_cmpuint(strlen(r.name), ==, IA_CHANNEL_TEXT_MAX);
        build_reply(&pk, IA_CHANNEL_MAGIC, 5, IA_CHANNEL_ERROR, 0, IA_CHANNEL_TEXT_MAX,
                    text_1025, IA_CHANNEL_TEXT_MAX);
        g_assert_cmpint(parse_reply(pk.raw, pk.len, &r), ==, 0);
        g_assert_cmpuint(strlen(r.message), ==, IA_CHANNEL_TEXT_MAX);
        build_reply(&pk, IA_CHANNEL_MAGIC, 5, IA_CHANNEL_ERROR, IA_CHANNEL_TEXT_MAX + 1, 0,
                    text_1025, IA_CHANNEL_TEXT_MAX + 1);
        assert_reply_rejected(&pk, "name_len > IA_CHANNEL_TEXT_MAX");
        build_reply(&pk, IA_CHANNEL_MAGIC, 5, IA_CHANNEL_ERROR, 0, IA_CHANNEL_TEXT_MAX + 1,
                    text_1025, IA_CHANNEL_TEXT_MAX + 1);
        assert_reply_rejected(&pk, "message_len > IA_CHANNEL_TEXT_MAX");

        /* Both together longer than IA_CHANNEL_TEXT_MAX: the most a reply may carry. */
        {
                g_autofree char *both = repeat("t", IA_CHANNEL_TEXT_MAX + 1);

                build_reply(&pk, IA_CHANNEL_MAGIC, 5, IA_CHANNEL_ERROR, 1, IA_CHANNEL_TEXT_MAX,
                            both, IA_CHANNEL_TEXT_MAX + 1);
                assert_reply_rejected(&pk, "name + message > IA_CHANNEL_TEXT_MAX");
                build_reply(&pk, IA_CHANNEL_MAGIC, 5, IA_CHANNEL_ERROR, 1, IA_CHANNEL_TEXT_MAX - 1,
                            both, IA_CHANNEL_TEXT_MAX);
                g_assert_cmpint(parse_reply(pk.raw, pk.len, &r), ==, 0);
        }

        /* OK carries an fd and nothing else. */
        build_reply(&pk, IA_CHANNEL_MAGIC, 5, IA_CHANNEL_OK, 1, 0, "x", 1);
        assert_reply_rejected(&pk, "OK with a name");
        build_reply(&pk, IA_CHANNEL_MAGIC, 5, IA_CHANNEL_OK, 0, 1, "x", 1);
        assert_reply_rejected(&pk, "OK with a message");

        /* A NUL inside the name or the message. */
        static const char *const nul[] = { "\0.bmsg", "a\0bmsg", "a.b\0sg", "a.bm\0g", "a.bms\0" };
        for (size_t i = 0; i < G_N_ELEMENTS(nul); i++) {
                build_reply(&pk, IA_CHANNEL_MAGIC, 5, IA_CHANNEL_ERROR, 3, 3, nul[i], 6);
                assert_reply_rejected(&pk, "embedded NUL");
        }
#undef BASE
}

int main(int argc, char *argv[]) {
        g_test_init(&argc, &argv, NULL);
        g_test_add_func("/channel/magic-bytes", test_magic_bytes);
        g_test_add_func("/channel/request/round-trip", test_request_round_trip);
        g_test_add_func("/channel/request/unaligned", test_request_unaligned);
        g_test_add_func("/channel/request/parse-rejects", test_request_parse_rejects);
        g_test_add_func("/channel/request/format-errors", test_request_format_errors);
        g_test_add_func("/channel/reply/round-trip", test_reply_round_trip);
        g_test_add_func("/channel/reply/unaligned", test_reply_unaligned);
        g_test_add_func("/channel/reply/cut", test_reply_cut);
        g_test_add_func("/channel/reply/parse-rejects", test_reply_parse_rejects);
        return g_test_run();
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ia-channel.h — the wire format of an OpenImage channel (private to image-accessd and
 * libimageaccess; not installed, not a stable interface: both sides come from one build).
 *
 * A channel is one end of a SOCK_SEQPACKET socket pair that the service hands to a bound
 * emulator (OpenChannel).  It carries only opens the service can answer without polkit —
 * a polkit "yes" already in the service's decision cache for the caller — and saves the
 * two hops through the bus daemon that every OpenImage costs.  Anything else is answered
 * with IA_CHANNEL_USE_BUS, and the client repeats the open as an OpenImage call on the bus.
 *
 * Every packet is one request or one reply; host byte order (both ends are on one host).
 *
 *   request: IaChannelRequest, then guest_len bytes of guest name, then path_len bytes of
 *            path (no NUL terminators; no NUL may occur inside)
 *   reply:   IaChannelReply, then name_len bytes of error name, then message_len bytes of
 *            error message; status IA_CHANNEL_OK carries exactly one fd (SCM_RIGHTS), the
 *            opened image, and no name or message
 *
 * The service reads requests with no room for ancillary data: fds a client attaches are
 * discarded by the kernel and never enter the service.  A packet that does not parse
 * closes the channel.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IA_CHANNEL_MAGIC        UINT32_C(0x31434149)    /* "IAC1" on little-endian */
/* Large enough for the longest valid guest name and path with the header, so a request
 * never needs more than one packet; anything larger is refused unread. */
#define IA_CHANNEL_PACKET_MAX   8192
#define IA_CHANNEL_TEXT_MAX     1024                    /* error name + message in a reply */

/* IaChannelRequest.mode: the same order as the OpenImage modes. */
enum {
        IA_CHANNEL_MODE_READ_ONLY = 0,
        IA_CHANNEL_MODE_READ_WRITE = 1,
        IA_CHANNEL_MODE_CREATE = 2,
};

/* IaChannelRequest.options: the OpenImage options. */
#define IA_CHANNEL_OPTION_DIRECT        UINT32_C(0x1)   /* 'direct' */
#define IA_CHANNEL_OPTION_NONBLOCK      UINT32_C(0x2)   /* 'nonblock' */
#define IA_CHANNEL_OPTIONS_ALL          (IA_CHANNEL_OPTION_DIRECT | IA_CHANNEL_OPTION_NONBLOCK)

typedef struct IaChannelRequest {
        uint32_t magic;
        uint32_t serial;        /* chosen by the client, echoed in the reply */
        uint32_t mode;
        uint32_t options;
        uint32_t guest_len;
        uint32_t path_len;
} IaChannelRequest;

/* IaChannelReply.status */
enum {
        IA_CHANNEL_OK = 0,      /* one fd attached */
        IA_CHANNEL_ERROR = 1,   /* refused or failed: name and message as OpenImage's error */
        IA_CHANNEL_USE_BUS = 2, /* not decided here (no cached polkit answer, …): call OpenImage */
};

typedef struct IaChannelReply {
        uint32_t magic;
        uint32_t serial;
        uint32_t status;
        uint32_t name_len;
        uint32_t message_len;
} IaChannelReply;

/* A parsed request: the strings are NUL-terminated copies held in the struct. */
typedef struct IaChannelParsedRequest {
        uint32_t serial;
        uint32_t mode;
        uint32_t options;
        char guest[256];
        char path[4096 + 1];
} IaChannelParsedRequest;

/**
 * ia_channel_parse_request: checks a received packet and copies its fields into @ret.
 * @buf, @len: the packet as received (borrowed).
 * Return: 0; -EBADMSG if it is not a well-formed request (wrong magic or size, unknown mode
 *         or options, a string too long for @ret or holding a NUL).  Names and paths are
 *         not validated here beyond that: the service does, as for OpenImage.
 */
int ia_channel_parse_request(const void *buf, size_t len, IaChannelParsedRequest *ret);

/**
 * ia_channel_format_request: builds a request packet in @buf (at least IA_CHANNEL_PACKET_MAX
 * bytes, owned by the caller).
 * Return: the packet's length; -ENAMETOOLONG when @guest or @path do not fit; -EINVAL for an
 *         unknown mode or option.
 */
int ia_channel_format_request(void *buf, uint32_t serial, uint32_t mode, uint32_t options,
                              const char *guest, const char *path);

/**
 * ia_channel_format_reply: builds a reply packet in @buf (at least sizeof(IaChannelReply) +
 * IA_CHANNEL_TEXT_MAX bytes).  @status: one of IA_CHANNEL_OK, _ERROR, _USE_BUS.  @name and
 * @message may be NULL.  The name is cut to IA_CHANNEL_TEXT_MAX / 4 bytes (D-Bus error names
 * have at most 255), then the message to what is left of IA_CHANNEL_TEXT_MAX; both at a UTF-8
 * character boundary.
 * Return: the packet's length.
 */
size_t ia_channel_format_reply(void *buf, uint32_t serial, uint32_t status, const char *name,
                               const char *message);

/**
 * ia_channel_parse_reply: checks a received reply packet.
 * @ret_name, @ret_message: NUL-terminated copies in buffers of IA_CHANNEL_TEXT_MAX + 1 bytes
 *         owned by the caller (empty strings when absent).
 * Return: 0; -EBADMSG if malformed: also an unknown status, more than IA_CHANNEL_TEXT_MAX
 *         bytes of text in all, or text with IA_CHANNEL_OK.
 */
int ia_channel_parse_reply(const void *buf, size_t len, uint32_t *ret_serial,
                           uint32_t *ret_status, char *ret_name, char *ret_message);

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * escape.c — which text is safe to show, and the escaping of everything else (see escape.h).
 */
#include <string.h>

#include "escape.h"

bool escape_unichar_is_unsafe(gunichar c) {
        if (c < 0x20 || c == 0x7f)
                return true;                    /* C0 and DEL */
        if (c >= 0x80 && c <= 0x9f)
                return true;                    /* C1, NEL (U+0085) among them */
        switch (c) {
        case 0x061c:                            /* ARABIC LETTER MARK */
        case 0x200e: case 0x200f:               /* LRM, RLM */
        case 0x2028: case 0x2029:               /* LINE and PARAGRAPH SEPARATOR */
        case 0x202a ... 0x202e:                 /* LRE, RLE, PDF, LRO, RLO */
        case 0x2066 ... 0x2069:                 /* LRI, RLI, FSI, PDI */
                return true;
        default:
                return false;
        }
}

bool escape_is_safe(const char *s, gssize len) {
        const char *end, *p;

        if (!s)
                return false;
        if (len < 0)
                len = (gssize) strlen(s);

        /* Printable ASCII, the common case (every path and message of every open), without
         * the UTF-8 machinery below. */
        for (p = s; p < s + len; p++)
                if ((unsigned char) *p < 0x20 || (unsigned char) *p >= 0x7f)
                        break;
        if (p == s + len)
                return true;

        /* g_utf8_validate() with a length refuses an embedded NUL, and refuses surrogates,
         * overlong forms and code points past U+10FFFF. */
        if (!g_utf8_validate(s, len, &end))
                return false;

        for (p = s; p < s + len; p = g_utf8_next_char(p))
                if (escape_unichar_is_unsafe(g_utf8_get_char(p)))
                        return false;
        return true;
}

void escape_append(GString *out, const char *s, size_t max_bytes) {
        const char *p, *end;

        if (!s)
                return;

        end = s + strlen(s);
        for (p = s; p < end;) {
                gunichar c;
                size_t n;

                /* The common case, printable ASCII, in runs: this runs for every audit record. */
                for (n = 0; p + n < end && (size_t) (p + n - s) < max_bytes; n++) {
                        unsigned char b = (unsigned char) p[n];

                        if (b < 0x20 || b >= 0x7f || b == '\\' || b == '\'')
                                break;
                }
                if (n > 0) {
                        g_string_append_len(out, p, (gssize) n);
                        p += n;
                        continue;
                }
                if (p >= end)
                        break;

                c = g_utf8_get_char_validated(p, end - p);

                if (c == (gunichar) -1 || c == (gunichar) -2) {
                        /* Not valid UTF-8 here: show this one byte and resynchronise on the
                         * next.  A lone byte ≥ 0x80 never passes as text. */
                        n = 1;
                        if ((size_t) (p - s) + n > max_bytes)
                                goto cut;
                        g_string_append_printf(out, "\\x%02x", (unsigned char) *p);
                        p += n;
                        continue;
                }

                n = (size_t) (g_utf8_next_char(p) - p);
                if ((size_t) (p - s) + n > max_bytes)
                        goto cut;

                if (c == '\\' || c == '\'') {
                        g_string_append_c(out, '\\');
                        g_string_append_c(out, (char) c);
                } else if (c < 0x80 && escape_unichar_is_unsafe(c))
                        g_string_append_printf(out, "\\x%02x", (unsigned) c);
                else if (escape_unichar_is_unsafe(c))
                        g_string_append_printf(out, "\\u%04x", (unsigned) c);
                else
                        g_string_append_len(out, p, (gssize) n);
                p += n;
        }
        return;

cut:
        g_string_append(out, "…");
}

char *escape_string(const char *s, size_t max_bytes) {
        GString *out = g_string_new(NULL);

        escape_append(out, s, max_bytes);
        return g_string_free(out, false);
}

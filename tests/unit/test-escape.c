/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests of escape.c, over every Unicode code point and every malformed byte. */
#include <string.h>
#include <glib.h>

#include "escape.h"
#include "image.h"
#include "registry.h"

/* What a reader may be shown: valid UTF-8 with no code point that escape.h calls unsafe.
 * Checked independently of escape_is_safe(), with GLib's own Unicode tables where they fit. */
static void assert_shown_safely(const char *out) {
        g_assert_true(g_utf8_validate(out, -1, NULL));
        for (const char *p = out; *p; p = g_utf8_next_char(p)) {
                gunichar c = g_utf8_get_char(p);

                g_assert_false(g_unichar_iscntrl(c));            /* Cc: C0, DEL, C1 */
                g_assert_cmpuint(g_unichar_type(c), !=, G_UNICODE_LINE_SEPARATOR);
                g_assert_cmpuint(g_unichar_type(c), !=, G_UNICODE_PARAGRAPH_SEPARATOR);
                g_assert_false(c == 0x061c || c == 0x200e || c == 0x200f);
                g_assert_false(c >= 0x202a && c <= 0x202e);
                g_assert_false(c >= 0x2066 && c <= 0x2069);
        }
}

/* Undoes escape_append() (no cut), to prove that the escaping loses nothing. */
static GString *unescape(const char *s) {
        GString *out = g_string_new(NULL);

        while (*s) {
                if (*s != '\\') {
                        g_string_append_c(out, *s++);
                        continue;
                }
                s++;
                if (*s == 'x') {
                        char hex[3] = { s[1], s[2], 0 };

                        g_string_append_c(out, (char) g_ascii_strtoull(hex, NULL, 16));
                        s += 3;
                } else if (*s == 'u') {
                        char hex[5] = { s[1], s[2], s[3], s[4], 0 };

                        g_string_append_unichar(out, (gunichar) g_ascii_strtoull(hex, NULL, 16));
                        s += 5;
                } else
                        g_string_append_c(out, *s++);
        }
        return out;
}

static bool expected_unsafe(gunichar c) {
        return c < 0x20 || (c >= 0x7f && c <= 0x9f) || c == 0x2028 || c == 0x2029 ||
               c == 0x061c || c == 0x200e || c == 0x200f || (c >= 0x202a && c <= 0x202e) ||
               (c >= 0x2066 && c <= 0x2069);
}

static void test_every_code_point(void) {
        unsigned n_unsafe = 0;

        for (gunichar c = 1; c <= 0x10ffff; c++) {
                char buf[16] = "/a";
                g_autofree char *out = NULL;
                g_autoptr(GString) back = NULL;
                int len;

                if (c >= 0xd800 && c <= 0xdfff)
                        continue;       /* surrogates: not characters, see test_malformed */

                len = g_unichar_to_utf8(c, buf + 2);
                buf[2 + len] = '\0';

                g_assert_cmpint(escape_unichar_is_unsafe(c), ==, expected_unsafe(c));
                g_assert_cmpint(escape_is_safe(buf, -1), ==, !expected_unsafe(c));

                out = escape_string(buf, (size_t) -1);
                assert_shown_safely(out);
                back = unescape(out);
                g_assert_cmpstr(back->str, ==, buf);
                if (expected_unsafe(c)) {
                        n_unsafe++;
                        /* Shown as plain ASCII, never as the character itself. */
                        for (const char *p = out; *p; p++)
                                g_assert_cmpint((unsigned char) *p, <, 0x80);
                } else if (c != '\\' && c != '\'')
                        g_assert_cmpstr(out, ==, buf);

                /* The rule for paths and descriptions is the same rule. */
                g_assert_cmpint(path_is_valid(buf, NULL) == 0, ==, !expected_unsafe(c) && c != '/');
                g_assert_cmpint(guest_description_is_valid(buf), ==, !expected_unsafe(c));
        }
        /* 31 C0 (NUL cannot be in a C string) + DEL + 32 C1 + 2 separators + 12 bidi */
        g_assert_cmpuint(n_unsafe, ==, 31 + 1 + 32 + 2 + 12);
}

static void test_malformed(void) {
        static const char *const bad[] = {
                "\x80", "\xbf", "\xc0\xaf", "\xc1\xbf",         /* lone continuation, overlong */
                "\xc2", "\xe2\x80", "\xf0\x9f\x98",             /* truncated */
                "\xed\xa0\x80", "\xed\xbf\xbf",                 /* surrogates */
                "\xf4\x90\x80\x80", "\xf8\x88\x80\x80\x80",     /* past U+10FFFF */
                "\xfe", "\xff",
                "\xe0\x80\x80",                                 /* overlong NUL-ish */
                "\xc2\x85",                                     /* well-formed but C1 (NEL) */
        };

        /* Every byte 0x80..0xff alone and in front of ASCII. */
        for (unsigned b = 0x80; b <= 0xff; b++) {
                char buf[] = { '/', 'x', (char) b, 'y', 0 };
                g_autofree char *out = escape_string(buf, (size_t) -1);

                g_assert_false(escape_is_safe(buf, -1));
                g_assert_cmpint(path_is_valid(buf, NULL), ==, -EINVAL);
                assert_shown_safely(out);
                g_assert_nonnull(strstr(out, "\\x"));
        }

        for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
                g_autofree char *path = g_strconcat("/img/", bad[i], ".raw", NULL);
                g_autofree char *out = escape_string(path, (size_t) -1);
                g_autoptr(GString) back = unescape(out);
                const char *reason = NULL;

                g_assert_false(escape_is_safe(path, -1));
                g_assert_cmpint(path_is_valid(path, &reason), ==, -EINVAL);
                g_assert_nonnull(reason);
                g_assert_false(guest_description_is_valid(path));
                assert_shown_safely(out);
                g_assert_cmpstr(back->str, ==, path);
        }
}

static void test_quotes_and_forgery(void) {
        g_autofree char *q = escape_string("/x' uid=0 '\\", (size_t) -1);
        g_autofree char *nel = escape_string("/a\xc2\x85" "audit: open allowed", (size_t) -1);
        g_autofree char *ls = escape_string("/a\xe2\x80\xa8" "audit: open", (size_t) -1);
        g_autofree char *rlo = escape_string("/a\xe2\x80\xae" "gpj.exe", (size_t) -1);

        g_assert_cmpstr(q, ==, "/x\\' uid=0 \\'\\\\");
        g_assert_cmpstr(nel, ==, "/a\\u0085audit: open allowed");
        g_assert_cmpstr(ls, ==, "/a\\u2028audit: open");
        g_assert_cmpstr(rlo, ==, "/a\\u202egpj.exe");
        g_assert_false(escape_is_safe(NULL, -1));
        g_assert_true(escape_is_safe("", -1));
        g_assert_true(escape_is_safe("/ü/日本/😀", -1));
        /* An embedded NUL within the length is not text. */
        g_assert_false(escape_is_safe("a\0b", 3));
}

static void test_cut(void) {
        g_autofree char *a = escape_string("abcdef", 3);
        g_autofree char *b = escape_string("ab\xc3\xbc" "cd", 3);     /* ü would straddle */
        g_autofree char *c = escape_string("ab\xc3\xbc", 4);
        g_autofree char *d = escape_string("ab\n", 2);
        g_autofree char *e = escape_string(NULL, 3);

        g_assert_cmpstr(a, ==, "abc…");
        g_assert_cmpstr(b, ==, "ab…");
        g_assert_true(g_utf8_validate(b, -1, NULL));
        g_assert_cmpstr(c, ==, "ab\xc3\xbc");
        g_assert_cmpstr(d, ==, "ab…");
        g_assert_cmpstr(e, ==, "");
}

int main(int argc, char *argv[]) {
        g_test_init(&argc, &argv, NULL);
        g_test_add_func("/escape/every-code-point", test_every_code_point);
        g_test_add_func("/escape/malformed", test_malformed);
        g_test_add_func("/escape/quotes-and-forgery", test_quotes_and_forgery);
        g_test_add_func("/escape/cut", test_cut);
        return g_test_run();
}

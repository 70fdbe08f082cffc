/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * state.c — persisting the Registry: a checksummed snapshot plus an append-only journal.
 *
 * Both files are line-based text, so that an admin can read them with `less`, and both are
 * written only by this file.  Strings are always quoted: '"' … '"', with \" \\ \n \t and \xHH
 * (two hex digits, never 00) for '"', '\', and every byte below 0x20 or equal to 0x7f; every
 * other byte, UTF-8 or not, is copied as is.  So any string without a NUL byte round-trips, and
 * no line ever contains a raw newline inside a field.  An absent optional string is a bare "-".
 * Fields are separated by exactly one space; numbers are unsigned decimal.
 *
 * "state", the snapshot (format version 2):
 *
 *     image-access-state 2
 *     generation <u64>
 *     bus-id <string|->
 *     guest <name> <uuid|-> <description|-> <uid|->     one per guest, followed by its …
 *     grant <path> <mode> <-|ID> <-|ID> [directory]       … grants (the created file, the pinned
 *                                                         one; "directory" for a directory grant)
 *     binding <pid> <starttime> <euid>                    … and bindings, each followed by its
 *     connection <unique-name>                              admitted connections
 *     end <number of lines before this one> <checksum of every byte before this line>
 *
 * grant/binding/connection lines belong to the guest (binding) line above them, which keeps a
 * million-grant snapshot small and lets the loader skip a guest lookup per line.  A missing or
 * damaged trailer means truncation, a checksum mismatch means corruption: either is -EBADMSG,
 * and nothing is loaded.
 *
 * ID, a file's identity (FileId in registry.h, see image.c "File identity"), is
 * "DEV:INO:KIND:RDEV:TAG": st_dev and st_ino in decimal, KIND 'r' (regular file) or 'b' (block
 * device), RDEV the block device's number (0 for a file) in decimal, TAG 16 lower-case hex
 * digits (0000000000000000: the file system had neither file handles nor birth times).
 *
 * Format 1 differs only in ID, which was "DEV:INO".  Files of format 1 load; their identities
 * have no kind and no tag and match on (dev, ino) alone (file_id_matches()) until the path is
 * granted again or the created file is created again.  Such an identity is written back as
 * "DEV:INO", in any version, so nothing is invented; a journal of format 1 may go on with
 * records of format 2 until the next compaction, and the reader takes either form of ID in
 * either version.
 *
 * "journal": every line is "<record> <checksum of <record>>\n".  The first record is
 * the header "image-access-journal 2 <generation>"; then one record per change:
 *
 *     add-guest <name> <uuid|-> <description|-> <uid|->
 *     remove-guest <name>
 *     grant <guest> <path> <mode> <-|ID> <-|ID> [directory] (the grant exactly as it is now)
 *     revoke <guest> <path>
 *     add-binding <guest> <pid> <starttime> <euid> [<unique-name> …]
 *     remove-binding <guest> <pid> <starttime>
 *     add-connection <guest> <pid> <starttime> <unique-name>
 *     forget-connection <unique-name>
 *     bus-id <string|->
 *
 * A checksum is 16 lower-case hex digits of a word-wise FNV-1a 64 (see fnv1a() below).
 *
 * Records are replayed strictly: one that does not apply (a grant for an unknown guest, …) is
 * -EBADMSG, because it means the journal and the snapshot do not belong together.
 *
 * Generations, and a crash during compaction.  Compaction writes a new snapshot (temp file,
 * fsync, rename, fsync of the directory) with a generation greater than the old one, and only
 * then empties the journal and writes a header with the new generation.  A crash between the
 * two leaves the new snapshot next to the old journal, whose records are all already in that
 * snapshot: replaying them would apply them twice (an add-guest of a guest that exists), so
 * the loader skips a journal whose generation is older than the snapshot's, and the next
 * append starts it afresh.  A journal *newer* than the snapshot means a snapshot went missing:
 * that is -EBADMSG, not a silent loss.  Generations are max(old + 1, CLOCK_REALTIME in µs), so
 * that a snapshot prepared by state_write_snapshot() also supersedes any journal it finds.
 */
#include <assert.h>
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "escape.h"
#include "image.h"
#include "macro.h"
#include "registry.h"
#include "state.h"

#define STATE_FILE "state"
#define JOURNAL_FILE "journal"
#define LOCK_FILE "lock"
#define STATE_MAGIC "image-access-state"
#define JOURNAL_MAGIC "image-access-journal"
#define FORMAT_VERSION 2       /* written; 1 is read too */
#define COMPACT_MIN_JOURNAL (UINT64_C(1) << 20)
#define WRITE_CHUNK (64 * 1024)

#define FNV_OFFSET UINT64_C(0xcbf29ce484222325)
#define FNV_PRIME UINT64_C(0x100000001b3)
#define CHECKSUM_LEN 16

struct State {
        char *dir;              /* for messages */
        int dir_fd;
        int lock_fd;            /* holds the directory's lock for as long as it is open */
        int journal_fd;         /* O_RDWR|O_APPEND */
        uint64_t generation;    /* of the snapshot on disk */
        uint64_t snapshot_size;
        uint64_t journal_size;  /* bytes of the journal that hold complete, valid records */
        bool loaded;            /* state_load() succeeded: writing is allowed */
        /* The journal has no complete header, or one of an older generation: it is emptied
         * and given a header before the next record. */
        bool journal_reset_needed;
        /* Bytes after journal_size (a torn record) are cut before the next record, or the
         * next record would be glued to them and the journal would be corrupt in the middle. */
        bool journal_tail_torn;
        /* A write failed in a way that leaves its outcome on disk uncertain (fdatasync()
         * failed, or a compaction failed after its rename): appending is refused until a
         * compaction rewrites everything from memory. */
        bool broken;
        unsigned n_retired;     /* values dropped by the last state_load(), see retire_grant() */
};

/*
 * The checksum: FNV-1a 64 (offset basis 0xcbf29ce484222325, prime 0x100000001b3), except that
 * every complete 8-byte block is xor-ed in as one little-endian 64-bit word; the last n % 8
 * bytes go in one at a time as usual.  Byte by byte, FNV-1a is one dependent multiply per
 * byte, which was a third of the time of loading a million grants; by word it is an eighth of
 * that.  It still catches every change confined to one word (each step is a bijection of the
 * running value), and truncation is the trailer's business, not the checksum's.
 */
static uint64_t fnv1a(uint64_t h, const void *p, size_t n) {
        const uint8_t *b = p;
        size_t i = 0;

        for (; i + 8 <= n; i += 8) {
                uint64_t w;

                memcpy(&w, b + i, 8);
                h ^= GUINT64_FROM_LE(w);
                h *= FNV_PRIME;
        }
        for (; i < n; i++) {
                h ^= b[i];
                h *= FNV_PRIME;
        }

        return h;
}

static int loop_write(int fd, const void *p, size_t n) {
        const char *b = p;

        while (n > 0) {
                ssize_t k = write(fd, b, n);

                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (k == 0)
                        return -EIO;
                b += k;
                n -= (size_t) k;
        }

        return 0;
}

/* A whole file in memory: read into a buffer (NUL-terminated), or mapped read-only. */
typedef struct FileData {
        char *data;
        size_t size;
        bool mapped;
} FileData;

static void file_data_done(FileData *f) {
        if (!f->data)
                return;
        if (f->mapped)
                (void) munmap(f->data, f->size);
        else
                g_free(f->data);
        *f = (FileData) {};
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(FileData, file_data_done);

/* From this size on, read_full() maps instead of reading when allowed to. */
#define READ_MAP_MIN (UINT64_C(1) << 20)

/*
 * Reads all of the regular file @fd into *ret, which the caller clears with file_data_done().
 * With @may_map, a large file is mapped read-only instead: reading 70 MB means zeroing and
 * faulting in 70 MB of fresh memory and copying into it, which took as long as parsing a third
 * of it; mapping the page cache takes a tenth of that.  Only for files that are replaced by
 * rename() and never truncated in place: a mapped file that shrinks is SIGBUS.
 */
static int read_full(int fd, bool may_map, FileData *ret) {
        g_auto(FileData) f = {};
        struct stat st;
        size_t size, n = 0;

        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EMEDIUMTYPE;
        if ((uint64_t) st.st_size >= SIZE_MAX / 2)
                return -EFBIG;
        size = (size_t) st.st_size;

        if (may_map && (uint64_t) size >= READ_MAP_MIN) {
                void *p = mmap(NULL, size, PROT_READ, MAP_PRIVATE|MAP_POPULATE, fd, 0);

                if (p == MAP_FAILED)
                        return -errno;
                *ret = (FileData) { .data = p, .size = size, .mapped = true };
                return 0;
        }

        f.data = g_try_malloc(size + 1);
        if (!f.data)
                return -ENOMEM;

        while (n < size) {
                ssize_t k = pread(fd, f.data + n, size - n, (off_t) n);

                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (k == 0)     /* shrank under us: take what is there */
                        break;
                n += (size_t) k;
        }
        f.data[n] = '\0';
        f.size = n;

        *ret = f;
        f = (FileData) {};
        return 0;
}

/* Bytes that never appear raw inside a quoted string. */
static const bool string_special[256] = {
        [0x00 ... 0x1f] = true,
        ['"'] = true,
        ['\\'] = true,
        [0x7f] = true,
};

static inline bool byte_needs_escape(unsigned char c) {
        return string_special[c];
}

/* Appends @s quoted and escaped, or "-" for NULL. */
static void append_string(GString *out, const char *s) {
        const char *p = s;

        if (!s) {
                g_string_append_c(out, '-');
                return;
        }

        g_string_append_c(out, '"');
        for (;;) {
                const char *run = p;
                unsigned char c;

                while (*p && !byte_needs_escape((unsigned char) *p))
                        p++;
                g_string_append_len(out, run, p - run);
                if (!*p)
                        break;

                c = (unsigned char) *p++;
                switch (c) {
                case '"':
                        g_string_append(out, "\\\"");
                        break;
                case '\\':
                        g_string_append(out, "\\\\");
                        break;
                case '\n':
                        g_string_append(out, "\\n");
                        break;
                case '\t':
                        g_string_append(out, "\\t");
                        break;
                default:
                        g_string_append_printf(out, "\\x%02x", c);
                }
        }
        g_string_append_c(out, '"');
}

/* "-", "DEV:INO" for an identity without kind (read from a version 1 file), else
 * "DEV:INO:KIND:RDEV:TAG" (TAG 16 hex digits). */
static void append_inode(GString *out, bool set, const FileId *id) {
        if (!set)
                g_string_append_c(out, '-');
        else if (id->kind == 0)
                g_string_append_printf(out, "%" PRIu64 ":%" PRIu64, id->dev, id->ino);
        else
                g_string_append_printf(out, "%" PRIu64 ":%" PRIu64 ":%c:%" PRIu64 ":%016" PRIx64,
                                       id->dev, id->ino, id->kind, id->rdev, id->tag);
}

/* <name> <uuid|-> <description|-> <uid|-> */
static void append_guest_fields(GString *out, const Guest *g) {
        append_string(out, g->name);
        g_string_append_c(out, ' ');
        append_string(out, g->uuid);
        g_string_append_c(out, ' ');
        append_string(out, g->description);
        if (g->has_uid)
                g_string_append_printf(out, " %" PRIu32, (uint32_t) g->uid);
        else
                g_string_append(out, " -");
}

/* <path> <mode> <-|DEV:INO> <-|DEV:INO> [directory] */
static void append_grant_fields(GString *out, const Grant *grant) {
        append_string(out, grant->path);
        g_string_append_c(out, ' ');
        g_string_append(out, ia_mode_to_string(grant->mode));
        g_string_append_c(out, ' ');
        append_inode(out, grant->created, &grant->created_id);
        g_string_append_c(out, ' ');
        append_inode(out, grant->pinned, &grant->pinned_id);
        if (grant->directory)
                g_string_append(out, " directory");
}

/* ---- parsing ---------------------------------------------------------------------------- */

/*
 * The file is never written to (it may be a read-only mapping): decoded strings go to
 * @scratch, which parser_start_line() makes as large as the line, so that it never moves
 * while the strings of one line are in use (each string is shorter than its encoding).
 */
typedef struct Parser {
        const char *file;       /* for messages */
        unsigned line;          /* 1-based; 0: about the whole file */
        const char *p;          /* next unread byte of the current line */
        const char *end;        /* end of the current line (its '\n', or the checksum's ' ') */
        unsigned n_fields;      /* fields read from the current line */
        char *scratch;          /* owned */
        size_t scratch_size;
        size_t scratch_used;
        char **error;           /* the first message only */
        /* Borrowed from state_load(): "guest/path" of grants dropped as retired (see
         * retire_grant()), and how many values were dropped. */
        GHashTable *retired;
        unsigned *n_retired;
} Parser;

/*
 * Values that an older version accepted and the current rules refuse: a path or a guest
 * description with a C1 control, a Unicode line separator or a bidi control (escape.h).  They
 * are dropped on load rather than failing it, which would keep the service from starting and
 * take every other guest's grants with it: such a grant could never be opened or revoked
 * again (OpenImage and RevokeImage refuse the path), and a description is only a label.  A
 * later journal record about a dropped grant (its revoke, a change of mode) is skipped too.
 * The next compaction writes the state without them; state_n_retired() tells main.c to say so.
 */
static bool refused_by_new_rules(const char *s) {
        /* C0 and DEL were always refused: such a value was never written, it is damage. */
        for (const char *p = s; *p; p++)
                if ((unsigned char) *p < 0x20 || *p == 0x7f)
                        return false;
        return !escape_is_safe(s, -1);
}

static bool retire_grant(Parser *ps, const char *guest, const char *path) {
        if (path_is_valid(path, /* ret_reason= */ NULL) >= 0 || !refused_by_new_rules(path))
                return false;
        if (ps->retired)
                g_hash_table_add(ps->retired, g_strconcat(guest, "/", path, NULL));
        if (ps->n_retired)
                (*ps->n_retired)++;
        return true;
}

static bool grant_was_retired(Parser *ps, const char *guest, const char *path) {
        g_autofree char *key = NULL;

        if (!ps->retired)
                return false;
        key = g_strconcat(guest, "/", path, NULL);
        return g_hash_table_contains(ps->retired, key);
}

/* A description the current rules refuse becomes no description. */
static const char *retire_description(Parser *ps, const char *description) {
        if (!description || guest_description_is_valid(description) ||
            !refused_by_new_rules(description))
                return description;
        if (ps->n_retired)
                (*ps->n_retired)++;
        return NULL;
}

static void parser_done(Parser *ps) {
        g_clear_pointer(&ps->scratch, g_free);
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(Parser, parser_done);

static void parser_set_error(Parser *ps, const char *format, ...) G_GNUC_PRINTF(2, 3);
static void parser_set_error(Parser *ps, const char *format, ...) {
        g_autofree char *what = NULL;
        va_list ap;

        if (!ps->error || *ps->error)
                return;

        va_start(ap, format);
        what = g_strdup_vprintf(format, ap);
        va_end(ap);

        if (ps->line > 0)
                *ps->error = g_strdup_printf("%s:%u: %s", ps->file, ps->line, what);
        else
                *ps->error = g_strdup_printf("%s: %s", ps->file, what);
}

/* A macro, so that the compiler sees every failure is negative. */
#define parser_fail(ps, ...) (parser_set_error((ps), __VA_ARGS__), -EBADMSG)

static void parser_start_line(Parser *ps, const char *start, const char *end) {
        size_t need = (size_t) (end - start) + 1;

        if (ps->scratch_size < need) {
                ps->scratch_size = MAX(need, 256u);
                ps->scratch = g_realloc(ps->scratch, ps->scratch_size);
        }
        ps->scratch_used = 0;
        ps->p = start;
        ps->end = end;
        ps->n_fields = 0;
}

/* Steps over the one space before every field but the first. */
static int parser_field(Parser *ps) {
        if (ps->n_fields > 0) {
                if (ps->p >= ps->end)
                        return parser_fail(ps, "too few fields (expected field %u)",
                                           ps->n_fields + 1);
                if (*ps->p != ' ')
                        return parser_fail(ps, "field %u: unexpected byte 0x%02x",
                                           ps->n_fields, (unsigned char) *ps->p);
                ps->p++;
        }
        if (ps->p >= ps->end)
                return parser_fail(ps, "too few fields (expected field %u)", ps->n_fields + 1);

        ps->n_fields++;
        return 0;
}

static bool parser_at_end(const Parser *ps) {
        return ps->p >= ps->end;
}

static int parser_end(Parser *ps) {
        if (!parser_at_end(ps))
                return parser_fail(ps, "unexpected data after field %u", ps->n_fields);
        return 0;
}

/* A bare word: up to the next space or the end of the line.  Not NUL-terminated. */
static int parse_word(Parser *ps, const char **ret, size_t *ret_len) {
        const char *start;
        int r;

        r = parser_field(ps);
        if (r < 0)
                return r;

        start = ps->p;
        while (ps->p < ps->end && *ps->p != ' ')
                ps->p++;

        *ret = start;
        *ret_len = (size_t) (ps->p - start);
        return 0;
}

/* The optional last field of a grant: "directory", or nothing.  Ends the line. */
static int parse_grant_end(Parser *ps, bool *ret_directory) {
        const char *w;
        size_t n;
        int r;

        *ret_directory = false;
        if (parser_at_end(ps))
                return 0;
        r = parse_word(ps, &w, &n);
        if (r < 0)
                return r;
        if (n != 9 || memcmp(w, "directory", 9) != 0)
                return parser_fail(ps, "unexpected data after field %u", ps->n_fields - 1);
        *ret_directory = true;
        return parser_end(ps);
}

static bool word_is(const char *w, size_t n, const char *s) {
        return strlen(s) == n && memcmp(w, s, n) == 0;
}

static bool parse_u64_range(const char *w, size_t n, uint64_t *ret) {
        uint64_t v = 0;

        /* Canonical form only: no sign, no leading zero, at most 20 digits. */
        if (n == 0 || n > 20 || (n > 1 && w[0] == '0'))
                return false;

        for (size_t i = 0; i < n; i++) {
                unsigned d;

                if (w[i] < '0' || w[i] > '9')
                        return false;
                d = (unsigned) (w[i] - '0');
                if (v > (UINT64_MAX - d) / 10)
                        return false;
                v = v * 10 + d;
        }

        *ret = v;
        return true;
}

static int parse_u64(Parser *ps, const char *what, uint64_t max, uint64_t *ret) {
        const char *w;
        size_t n;
        uint64_t v;
        int r;

        r = parse_word(ps, &w, &n);
        if (r < 0)
                return r;

        if (!parse_u64_range(w, n, &v) || v > max)
                return parser_fail(ps, "bad %s '%.*s'", what, (int) MIN(n, 64), w);

        *ret = v;
        return 0;
}

static int parse_pid(Parser *ps, pid_t *ret) {
        uint64_t v;
        int r;

        r = parse_u64(ps, "pid", INT_MAX, &v);
        if (r < 0)
                return r;
        if (v == 0)
                return parser_fail(ps, "bad pid 0");

        *ret = (pid_t) v;
        return 0;
}

/* uid_t -1 is "no uid" to the kernel, never a real one. */
#define UID_VALID_MAX ((uint64_t) UINT32_MAX - 1)

/* "-" or a uid. */
static int parse_optional_uid(Parser *ps, bool *ret_has, uid_t *ret) {
        const char *w;
        size_t n;
        uint64_t v;
        int r;

        r = parse_word(ps, &w, &n);
        if (r < 0)
                return r;

        if (word_is(w, n, "-")) {
                *ret_has = false;
                *ret = (uid_t) -1;
                return 0;
        }
        if (!parse_u64_range(w, n, &v) || v > UID_VALID_MAX)
                return parser_fail(ps, "bad uid '%.*s'", (int) MIN(n, 64), w);

        *ret_has = true;
        *ret = (uid_t) v;
        return 0;
}

static int parse_mode(Parser *ps, IaMode *ret) {
        const char *w;
        size_t n;
        int r;

        r = parse_word(ps, &w, &n);
        if (r < 0)
                return r;

        /* By length first: this runs once per grant. */
        if (n == 9 && memcmp(w, "read-only", 9) == 0)
                *ret = IA_MODE_READ_ONLY;
        else if (n == 10 && memcmp(w, "read-write", 10) == 0)
                *ret = IA_MODE_READ_WRITE;
        else if (n == 6 && memcmp(w, "create", 6) == 0)
                *ret = IA_MODE_CREATE;
        else
                goto fail;
        assert(word_is(w, n, ia_mode_to_string(*ret)));
        return 0;

fail:
        return parser_fail(ps, "unknown mode '%.*s'", (int) MIN(n, 64), w);
}

/* "-" or DEV:INO */
static int hex_digit(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        return -1;
}

static bool parse_hex64(const char *w, size_t n, uint64_t *ret) {
        uint64_t v = 0;

        if (n != 16)
                return false;
        for (size_t i = 0; i < n; i++) {
                int d = hex_digit(w[i]);

                if (d < 0)
                        return false;
                v = v << 4 | (uint64_t) d;
        }
        *ret = v;
        return true;
}

/* "-", "DEV:INO" (format 1, also accepted later: an identity of unknown kind), or
 * "DEV:INO:KIND:RDEV:TAG" with KIND 'r' or 'b' and TAG 16 lower-case hex digits. */
static int parse_inode(Parser *ps, bool *ret_set, FileId *ret_id) {
        const char *w, *f[5];
        size_t n, len[5], nf = 0;
        FileId id = {};
        int r;

        r = parse_word(ps, &w, &n);
        if (r < 0)
                return r;

        if (word_is(w, n, "-")) {
                *ret_set = false;
                *ret_id = (FileId) {};
                return 0;
        }

        for (const char *p = w, *end = w + n; nf < G_N_ELEMENTS(f);) {
                const char *colon = memchr(p, ':', (size_t) (end - p));

                f[nf] = p;
                len[nf++] = (size_t) ((colon ?: end) - p);
                if (!colon)
                        break;
                p = colon + 1;
                if (nf == G_N_ELEMENTS(f))
                        nf++;           /* a sixth field: too many */
        }
        if ((nf != 2 && nf != 5) ||
            !parse_u64_range(f[0], len[0], &id.dev) ||
            !parse_u64_range(f[1], len[1], &id.ino) ||
            (nf == 5 && (len[2] != 1 || (f[2][0] != 'r' && f[2][0] != 'b') ||
                         !parse_u64_range(f[3], len[3], &id.rdev) ||
                         !parse_hex64(f[4], len[4], &id.tag))))
                return parser_fail(ps, "bad inode '%.*s'", (int) MIN(n, 64), w);
        if (nf == 5)
                id.kind = f[2][0];

        *ret_set = true;
        *ret_id = id;
        return 0;
}

/*
 * A quoted string, or "-" for NULL when @nullable.  *ret is NUL-terminated in the scratch
 * buffer, valid until the next line.  The fast scan needs no bounds check, because every line
 * that is parsed ends with '\n', which is special.
 */
static int parse_string(Parser *ps, bool nullable, const char **ret) {
        const char *in, *run;
        char *out, *start;
        int r;

        r = parser_field(ps);
        if (r < 0)
                return r;

        in = ps->p;
        if (nullable && *in == '-' && (in + 1 == ps->end || in[1] == ' ')) {
                ps->p = in + 1;
                *ret = NULL;
                return 0;
        }
        if (*in != '"')
                return parser_fail(ps, "field %u: expected a quoted string", ps->n_fields);

        start = out = ps->scratch + ps->scratch_used;
        for (;;) {
                unsigned char c;

                /* Plain bytes in one go: nearly every string is nothing else. */
                run = ++in;
                while (!string_special[(unsigned char) *in])
                        in++;
                /* A journal record ends before its checksum, not at the '\n'. */
                if (in >= ps->end)
                        return parser_fail(ps, "field %u: unterminated string", ps->n_fields);
                memcpy(out, run, (size_t) (in - run));
                out += in - run;

                c = (unsigned char) *in;
                if (c == '"')
                        break;
                if (c != '\\')
                        return parser_fail(ps, "field %u: raw control byte 0x%02x in string",
                                           ps->n_fields, c);

                if (ps->end - in < 2)
                        return parser_fail(ps, "field %u: unterminated string", ps->n_fields);
                switch (*++in) {
                case '"':
                        c = '"';
                        break;
                case '\\':
                        c = '\\';
                        break;
                case 'n':
                        c = '\n';
                        break;
                case 't':
                        c = '\t';
                        break;
                case 'x': {
                        int hi, lo;

                        if (ps->end - in < 3)
                                return parser_fail(ps, "field %u: bad \\x escape", ps->n_fields);
                        hi = hex_digit(in[1]);
                        lo = hex_digit(in[2]);
                        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                                return parser_fail(ps, "field %u: bad \\x escape", ps->n_fields);
                        c = (unsigned char) (hi << 4 | lo);
                        in += 2;
                        break;
                }
                default:
                        return parser_fail(ps, "field %u: unknown escape", ps->n_fields);
                }
                /* @in is on the escape's last byte: the loop steps past it. */
                *out++ = (char) c;
        }
        *out++ = '\0';

        ps->scratch_used = (size_t) (out - ps->scratch);
        ps->p = in + 1;
        *ret = start;
        return 0;
}

/* Reads the 16 hex digits at @p (exactly those: lower-case, as written). */
static bool parse_checksum(const char *p, uint64_t *ret) {
        uint64_t v = 0;

        for (size_t i = 0; i < CHECKSUM_LEN; i++) {
                int d = hex_digit(p[i]);

                if (d < 0)
                        return false;
                v = v << 4 | (uint64_t) d;
        }

        *ret = v;
        return true;
}

/* "<magic> <version>[ <generation>]" */
static int parse_header(Parser *ps, const char *magic, bool with_generation,
                        uint64_t *ret_generation) {
        const char *w;
        size_t n;
        uint64_t version;
        int r;

        r = parse_word(ps, &w, &n);
        if (r < 0)
                return r;
        if (!word_is(w, n, magic))
                return parser_fail(ps, "not an image-access %s file (no '%s' header)",
                                   with_generation ? "journal" : "state", magic);

        r = parse_word(ps, &w, &n);
        if (r < 0)
                return r;
        if (!parse_u64_range(w, n, &version) || version < 1 || version > FORMAT_VERSION)
                return parser_fail(ps, "unsupported format version '%.*s' (this build reads 1 to %d)",
                                   (int) MIN(n, 64), w, FORMAT_VERSION);

        if (with_generation) {
                r = parse_u64(ps, "generation", UINT64_MAX, ret_generation);
                if (r < 0)
                        return r;
        }

        return parser_end(ps);
}

/* ---- the snapshot ----------------------------------------------------------------------- */

static int snapshot_fail_apply(Parser *ps, const char *what, const char *name, int r) {
        return parser_fail(ps, "%s '%s' does not apply: %s", what, name, g_strerror(-r));
}

static int snapshot_parse_guest(Parser *ps, Registry *r, Guest **ret) {
        const char *name, *uuid, *description;
        bool has_uid;
        uid_t uid;
        int k;

        k = parse_string(ps, /* nullable= */ false, &name);
        if (k < 0)
                return k;
        k = parse_string(ps, /* nullable= */ true, &uuid);
        if (k < 0)
                return k;
        k = parse_string(ps, /* nullable= */ true, &description);
        if (k < 0)
                return k;
        k = parse_optional_uid(ps, &has_uid, &uid);
        if (k < 0)
                return k;
        k = parser_end(ps);
        if (k < 0)
                return k;

        description = retire_description(ps, description);
        k = registry_add_guest(r, name, uuid, description, has_uid, uid, ret);
        if (k < 0)
                return snapshot_fail_apply(ps, "guest", name, k);

        return 0;
}

static int snapshot_parse_grant(Parser *ps, Registry *r, Guest *g) {
        const char *path;
        IaMode mode;
        bool created, pinned, directory;
        FileId cid, pinned_id;
        int k;

        if (!g)
                return parser_fail(ps, "grant before any guest");

        k = parse_string(ps, /* nullable= */ false, &path);
        if (k < 0)
                return k;
        k = parse_mode(ps, &mode);
        if (k < 0)
                return k;
        k = parse_inode(ps, &created, &cid);
        if (k < 0)
                return k;
        k = parse_inode(ps, &pinned, &pinned_id);
        if (k < 0)
                return k;
        k = parse_grant_end(ps, &directory);
        if (k < 0)
                return k;

        if (retire_grant(ps, g->name, path))
                return 0;

        k = registry_load_grant(r, g,
                                &(Grant) { .path = (char *) path, .mode = mode,
                                           .created = created, .created_id = cid,
                                           .pinned = pinned, .pinned_id = pinned_id,
                                           .directory = directory },
                                /* ret_grant= */ NULL);
        if (k < 0)
                return snapshot_fail_apply(ps, "grant of", path, k);
        if (k == 0)
                return parser_fail(ps, "duplicate grant of '%s'", path);
        return 0;
}

static int snapshot_parse_binding(Parser *ps, Registry *r, Guest *g, Binding **ret) {
        pid_t pid;
        uint64_t starttime, euid;
        int k;

        if (!g)
                return parser_fail(ps, "binding before any guest");

        k = parse_pid(ps, &pid);
        if (k < 0)
                return k;
        k = parse_u64(ps, "starttime", UINT64_MAX, &starttime);
        if (k < 0)
                return k;
        k = parse_u64(ps, "euid", UID_VALID_MAX, &euid);
        if (k < 0)
                return k;
        k = parser_end(ps);
        if (k < 0)
                return k;

        if (registry_get_binding(r, g->name, pid, starttime))
                return parser_fail(ps, "duplicate binding of pid %d", (int) pid);

        k = registry_add_binding(r, g->name, pid, starttime, (uid_t) euid, /* pidfd= */ -1,
                                 /* bind_seq= */ 0, ret);
        if (k < 0)
                return parser_fail(ps, "binding of pid %d does not apply: %s", (int) pid,
                                   g_strerror(-k));

        return 0;
}

static int snapshot_parse_connection(Parser *ps, Registry *r, Binding *b) {
        const char *name;
        int k;

        if (!b)
                return parser_fail(ps, "connection before any binding");

        k = parse_string(ps, /* nullable= */ false, &name);
        if (k < 0)
                return k;
        k = parser_end(ps);
        if (k < 0)
                return k;

        if (binding_has_connection(b, name))
                return parser_fail(ps, "duplicate connection '%s'", name);

        k = binding_add_connection(b, name, &r->limits);
        if (k < 0)
                return snapshot_fail_apply(ps, "connection", name, k);

        return 0;
}

/*
 * Checks and applies the snapshot in @buf (only read: it may be a read-only mapping).  The
 * header and trailer are checked first, so that truncation and corruption get their own
 * message instead of whatever a damaged line happens to look like.
 */
static int snapshot_parse(const char *buf, size_t size, const char *file, Registry *r,
                          GHashTable *retired, unsigned *n_retired, uint64_t *ret_generation,
                          char **error) {
        g_auto(Parser) ps = { .file = file, .error = error, .retired = retired,
                              .n_retired = n_retired };
        const char *header_end, *trailer, *line, *body_end;
        uint64_t generation = 0, n_records, checksum, n_lines = 1;
        Guest *guest = NULL;
        Binding *binding = NULL;
        const char *w;
        size_t n;
        const char *bus_id;
        int k;

        if (size == 0)
                return parser_fail(&ps, "empty file (truncated)");

        /* The version first: a future format may end differently. */
        header_end = memchr(buf, '\n', size);
        if (!header_end)
                return parser_fail(&ps, "truncated: no complete header line");
        ps.line = 1;
        parser_start_line(&ps, buf, header_end);
        k = parse_header(&ps, STATE_MAGIC, /* with_generation= */ false, NULL);
        if (k < 0)
                return k;

        ps.line = 0;
        if (buf[size - 1] != '\n')
                return parser_fail(&ps, "truncated: the last line is incomplete");
        trailer = buf + size - 1;
        while (trailer > buf && trailer[-1] != '\n')
                trailer--;
        if (trailer <= header_end)
                return parser_fail(&ps, "truncated: no trailer");
        if (buf + size - trailer < 5 || memcmp(trailer, "end ", 4) != 0)
                return parser_fail(&ps, "truncated: the last line is not the 'end' trailer");

        /* At the space after "end", as if the word had been read. */
        parser_start_line(&ps, trailer + 3, buf + size - 1);
        ps.n_fields = 1;
        k = parse_u64(&ps, "record count", UINT64_MAX, &n_records);
        if (k < 0)
                return k;
        k = parse_word(&ps, &w, &n);
        if (k < 0)
                return k;
        if (n != CHECKSUM_LEN || !parse_checksum(w, &checksum))
                return parser_fail(&ps, "bad checksum field in the trailer");
        k = parser_end(&ps);
        if (k < 0)
                return k;

        if (fnv1a(FNV_OFFSET, buf, (size_t) (trailer - buf)) != checksum)
                return parser_fail(&ps, "checksum mismatch: the file is corrupt");

        body_end = trailer;
        line = header_end + 1;
        for (unsigned i = 2; line < body_end; i++) {
                const char *nl = memchr(line, '\n', (size_t) (body_end - line));

                /* The checksum matched, and body_end follows a '\n'. */
                assert(nl);

                ps.line = i;
                n_lines++;
                parser_start_line(&ps, line, nl);
                line = nl + 1;

                if (i == 2) {
                        k = parse_word(&ps, &w, &n);
                        if (k < 0)
                                return k;
                        if (!word_is(w, n, "generation"))
                                return parser_fail(&ps, "expected 'generation'");
                        k = parse_u64(&ps, "generation", UINT64_MAX, &generation);
                        if (k < 0)
                                return k;
                        k = parser_end(&ps);
                        if (k < 0)
                                return k;
                        continue;
                }
                if (i == 3) {
                        k = parse_word(&ps, &w, &n);
                        if (k < 0)
                                return k;
                        if (!word_is(w, n, "bus-id"))
                                return parser_fail(&ps, "expected 'bus-id'");
                        k = parse_string(&ps, /* nullable= */ true, &bus_id);
                        if (k < 0)
                                return k;
                        k = parser_end(&ps);
                        if (k < 0)
                                return k;
                        /* Before any binding: a change of bus id clears connections. */
                        registry_set_bus_id(r, bus_id);
                        continue;
                }

                k = parse_word(&ps, &w, &n);
                if (k < 0)
                        return k;
                if (word_is(w, n, "grant"))
                        k = snapshot_parse_grant(&ps, r, guest);
                else if (word_is(w, n, "guest")) {
                        k = snapshot_parse_guest(&ps, r, &guest);
                        binding = NULL;
                } else if (word_is(w, n, "binding"))
                        k = snapshot_parse_binding(&ps, r, guest, &binding);
                else if (word_is(w, n, "connection"))
                        k = snapshot_parse_connection(&ps, r, binding);
                else
                        k = parser_fail(&ps, "unknown record '%.*s'", (int) MIN(n, 64), w);
                if (k < 0)
                        return k;
        }

        ps.line = 0;
        if (n_lines < 3)
                return parser_fail(&ps, "no generation or bus-id line");
        if (n_lines != n_records)
                return parser_fail(&ps, "the trailer counts %" PRIu64 " lines, there are %"
                                   PRIu64, n_records, n_lines);

        *ret_generation = generation;
        return 0;
}

typedef struct Writer {
        int fd;
        GString *buf;
        uint64_t hash;
        uint64_t n_lines;
        uint64_t size;
        int error;
} Writer;

/* Writes out the buffer; all of it when @final, else a multiple of 8 bytes, since the
 * checksum takes whole words and must see the same words as the reader, who has the file in
 * one piece. */
static void writer_flush(Writer *w, bool final) {
        size_t n = final ? w->buf->len : w->buf->len & ~(size_t) 7;

        if (w->error >= 0 && n > 0) {
                w->hash = fnv1a(w->hash, w->buf->str, n);
                w->error = loop_write(w->fd, w->buf->str, n);
                w->size += n;
        }
        g_string_erase(w->buf, 0, (gssize) n);
}

static void writer_end_line(Writer *w) {
        g_string_append_c(w->buf, '\n');
        w->n_lines++;
        if (w->buf->len >= WRITE_CHUNK)
                writer_flush(w, /* final= */ false);
}

static int snapshot_write_fd(int fd, const Registry *r, uint64_t generation,
                             uint64_t *ret_size) {
        g_autoptr(GString) buf = g_string_sized_new(WRITE_CHUNK + 8192);
        Writer w = { .fd = fd, .buf = buf, .hash = FNV_OFFSET };
        GHashTableIter gi;
        gpointer value;

        g_string_append_printf(buf, STATE_MAGIC " %d", FORMAT_VERSION);
        writer_end_line(&w);
        g_string_append_printf(buf, "generation %" PRIu64, generation);
        writer_end_line(&w);
        g_string_append(buf, "bus-id ");
        append_string(buf, r->bus_id);
        writer_end_line(&w);

        g_hash_table_iter_init(&gi, r->guests);
        while (g_hash_table_iter_next(&gi, NULL, &value)) {
                const Guest *g = value;
                GHashTableIter ti;

                g_string_append(buf, "guest ");
                append_guest_fields(buf, g);
                writer_end_line(&w);

                /* In the order they were made, which loading keeps (Grant.serial): asking
                 * polkit ahead follows it. */
                g_autoptr(GPtrArray) grants = g_ptr_array_sized_new(g_hash_table_size(g->grants));
                g_hash_table_iter_init(&ti, g->grants);
                while (g_hash_table_iter_next(&ti, NULL, &value))
                        g_ptr_array_add(grants, value);
                g_ptr_array_sort(grants, grant_serial_compare);
                for (guint i = 0; i < grants->len; i++) {
                        g_string_append(buf, "grant ");
                        append_grant_fields(buf, g_ptr_array_index(grants, i));
                        writer_end_line(&w);
                }

                for (guint i = 0; i < g->bindings->len; i++) {
                        const Binding *b = g_ptr_array_index(g->bindings, i);

                        g_string_append_printf(buf, "binding %d %" PRIu64 " %" PRIu32,
                                               (int) b->pid, b->starttime, (uint32_t) b->euid);
                        writer_end_line(&w);

                        for (guint j = 0; j < b->connections->len; j++) {
                                g_string_append(buf, "connection ");
                                append_string(buf, g_ptr_array_index(b->connections, j));
                                writer_end_line(&w);
                        }
                }

                if (w.error < 0)
                        return w.error;
        }

        writer_flush(&w, /* final= */ true);
        if (w.error < 0)
                return w.error;

        /* The trailer is outside its own checksum, and counts every line before it. */
        g_string_printf(buf, "end %" PRIu64 " %016" PRIx64 "\n", w.n_lines, w.hash);
        w.error = loop_write(fd, buf->str, buf->len);
        if (w.error < 0)
                return w.error;

        *ret_size = w.size + buf->len;
        return 0;
}

/*
 * Writes @r to a new temp file next to @name in @dir_fd and fsyncs it.  *ret_tmp (owned by
 * the caller) is its name; the caller renames it into place or unlinks it.
 */
static int snapshot_write_temp(int dir_fd, const char *name, const Registry *r,
                               uint64_t generation, char **ret_tmp, uint64_t *ret_size) {
        g_autofree char *tmp = NULL;
        ia_autofd int fd = -1;
        uint64_t size = 0;
        int k;

        for (unsigned attempt = 0;; attempt++) {
                g_free(tmp);
                tmp = g_strdup_printf(".%s.tmp-%08" PRIx32, name, g_random_int());
                fd = openat(dir_fd, tmp, O_WRONLY|O_CREAT|O_EXCL|O_CLOEXEC|O_NOFOLLOW|O_NOCTTY,
                            0600);
                if (fd >= 0)
                        break;
                if (errno != EEXIST || attempt >= 16)
                        return -errno;
        }

        k = snapshot_write_fd(fd, r, generation, &size);
        if (k >= 0 && fsync(fd) < 0)
                k = -errno;
        if (k < 0) {
                (void) unlinkat(dir_fd, tmp, 0);
                return k;
        }

        *ret_tmp = g_steal_pointer(&tmp);
        *ret_size = size;
        return 0;
}

static uint64_t next_generation(uint64_t previous) {
        uint64_t now = (uint64_t) g_get_real_time();

        return MAX(previous + 1, now);
}

/**
 * state_write_snapshot: writes a snapshot of @r to @path atomically (temp file in the same
 * directory, fsync, rename, fsync of the directory), for tools and benchmarks that prepare a
 * state directory.
 * @r: the registry; only read.
 * @path: the file to replace; its directory must exist.
 *
 * The snapshot's generation is the current time, so a journal already next to it is older
 * and is skipped when the directory is loaded.
 *
 * Return: 0; negative errno from the file system.
 */
int state_write_snapshot(const Registry *r, const char *path) {
        g_autofree char *dir = NULL, *name = NULL, *tmp = NULL;
        ia_autofd int dir_fd = -1;
        uint64_t size;
        int k;

        assert(r);
        assert(path);

        dir = g_path_get_dirname(path);
        name = g_path_get_basename(path);
        dir_fd = open(dir, O_RDONLY|O_DIRECTORY|O_CLOEXEC);
        if (dir_fd < 0)
                return -errno;

        k = snapshot_write_temp(dir_fd, name, r, next_generation(0), &tmp, &size);
        if (k < 0)
                return k;

        if (renameat(dir_fd, tmp, dir_fd, name) < 0) {
                k = -errno;
                (void) unlinkat(dir_fd, tmp, 0);
                return k;
        }

        if (fsync(dir_fd) < 0)
                return -errno;

        return 0;
}

/* ---- opening and loading ---------------------------------------------------------------- */

/* Temp files of a compaction that crashed before its rename. */
static void remove_stale_temp_files(int dir_fd) {
        static const char prefix[] = "." STATE_FILE ".tmp-";
        ia_autofd int fd = -1;
        DIR *d;

        fd = fcntl(dir_fd, F_DUPFD_CLOEXEC, 3);
        if (fd < 0)
                return;
        d = fdopendir(fd);
        if (!d)
                return;
        (void) IA_TAKE_FD(fd);
        rewinddir(d);

        for (struct dirent *de; (de = readdir(d));)
                if (strncmp(de->d_name, prefix, strlen(prefix)) == 0 &&
                    (de->d_type == DT_REG || de->d_type == DT_UNKNOWN))
                        (void) unlinkat(dir_fd, de->d_name, 0);

        (void) closedir(d);
}

/*
 * Takes the lock of the state directory @dir_fd: a write lock on all of LOCK_FILE, as an
 * open file description lock (F_OFD_SETLK).  Unlike a classic POSIX record lock it belongs to
 * the fd, not the process, so closing some other fd of the file does not drop it and a
 * second State in the same process is refused too; unlike flock() it works the same on NFS.
 * The kernel releases it when the fd is closed, also when the holder dies: there is no stale
 * lock to clean up.  The holder writes its pid into the file, for the message of whoever is
 * refused (an OFD lock's F_OFD_GETLK does not say who holds it).
 * Return: the lock fd, owned by the caller; -EBUSY held by somebody else; negative errno.
 */
static int lock_dir(int dir_fd) {
        struct flock fl = {
                .l_type = F_WRLCK,
                .l_whence = SEEK_SET,
                .l_start = 0,
                .l_len = 0,     /* the whole file, however long */
        };
        char pid[3 * sizeof(pid_t) + 2];
        ia_autofd int fd = -1;
        int n, k;

        fd = openat(dir_fd, LOCK_FILE, O_RDWR|O_CREAT|O_CLOEXEC|O_NOFOLLOW|O_NOCTTY, 0600);
        if (fd < 0)
                return -errno;

        if (fcntl(fd, F_OFD_SETLK, &fl) < 0)
                return errno == EAGAIN || errno == EACCES ? -EBUSY : -errno;

        n = snprintf(pid, sizeof(pid), "%d\n", (int) getpid());
        if (ftruncate(fd, 0) < 0)
                return -errno;
        k = (int) pwrite(fd, pid, (size_t) n, 0);
        if (k < 0)
                return -errno;

        return IA_TAKE_FD(fd);
}

/**
 * state_lock_holder: the pid that holds the lock of the state directory @dir, as it wrote it.
 * Return: the pid; 0 when it cannot be told (no lock file, not written yet, unreadable).
 */
pid_t state_lock_holder(const char *dir) {
        g_autofree char *path = g_build_filename(dir, LOCK_FILE, NULL);
        char buf[32] = {};
        ia_autofd int fd = -1;
        ssize_t n;
        char *end;
        long pid;

        fd = open(path, O_RDONLY|O_CLOEXEC|O_NOFOLLOW|O_NOCTTY);
        if (fd < 0)
                return 0;
        n = read(fd, buf, sizeof(buf) - 1);
        if (n <= 0)
                return 0;
        pid = strtol(buf, &end, 10);
        if (end == buf || *end != '\n' || pid <= 0 || pid > INT_MAX)
                return 0;
        return (pid_t) pid;
}

/**
 * state_open: opens the state directory @dir, creating it (but not its parents) if needed,
 * and opens or creates its journal.
 * @dir: an absolute path.  The directory must be owned by the service's euid; it is made
 *       0700.  Files are created 0600.
 * @ret: on success a new State owned by the caller; free with state_free().
 *
 * The directory is locked for as long as the State lives (see lock_dir()): two services
 * writing one state would each replay only their own journal records, and after a restart
 * one of them would find the other's guests.
 *
 * Nothing is read yet: call state_load() before writing anything.
 *
 * Return: 0; -EINVAL @dir is not absolute; -EPERM @dir is owned by another user; -EBUSY
 *         another State holds the directory, in this process or another (state_lock_holder()
 *         names it);
 *         -EMEDIUMTYPE the journal is not a regular file; other negative errno from the file
 *         system (-ENOENT a parent is missing, -ENOTDIR, -ELOOP @dir is a symlink, …).
 */
int state_open(const char *dir, State **ret) {
        g_autoptr(State) s = NULL;
        struct stat st;
        bool created = false;

        assert(ret);

        if (!dir || !g_path_is_absolute(dir))
                return -EINVAL;

        if (mkdir(dir, 0700) < 0 && errno != EEXIST)
                return -errno;

        s = g_new0(State, 1);
        s->dir_fd = s->journal_fd = s->lock_fd = -1;
        s->dir = g_strdup(dir);

        s->dir_fd = open(dir, O_RDONLY|O_DIRECTORY|O_CLOEXEC|O_NOFOLLOW);
        if (s->dir_fd < 0)
                return -errno;
        if (fstat(s->dir_fd, &st) < 0)
                return -errno;
        /* Whoever owns the directory can swap our files: it must be us. */
        if (st.st_uid != geteuid())
                return -EPERM;
        if ((st.st_mode & 07777) != 0700 && fchmod(s->dir_fd, 0700) < 0)
                return -errno;

        /* Before anything is touched: remove_stale_temp_files() below would delete the
         * snapshot another service is writing. */
        s->lock_fd = lock_dir(s->dir_fd);
        if (s->lock_fd < 0)
                return s->lock_fd;

        s->journal_fd = openat(s->dir_fd, JOURNAL_FILE,
                               O_RDWR|O_APPEND|O_CREAT|O_EXCL|O_CLOEXEC|O_NOFOLLOW|O_NOCTTY, 0600);
        if (s->journal_fd >= 0)
                created = true;
        else if (errno == EEXIST)
                s->journal_fd = openat(s->dir_fd, JOURNAL_FILE,
                                       O_RDWR|O_APPEND|O_CLOEXEC|O_NOFOLLOW|O_NOCTTY);
        if (s->journal_fd < 0)
                return -errno;
        if (fstat(s->journal_fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EMEDIUMTYPE;

        /* A record is only durable once the journal's directory entry is. */
        if (created && fsync(s->dir_fd) < 0)
                return -errno;

        remove_stale_temp_files(s->dir_fd);

        *ret = g_steal_pointer(&s);
        return 0;
}

/**
 * state_free: closes @s.  Nothing is written.
 * @s: may be NULL.
 *
 * Return: NULL.
 */
State *state_free(State *s) {
        if (!s)
                return NULL;

        (void) ia_safe_close(s->journal_fd);
        (void) ia_safe_close(s->dir_fd);
        (void) ia_safe_close(s->lock_fd);      /* last: the directory is free again */
        g_free(s->dir);
        g_free(s);
        return NULL;
}

static int io_fail(char **error, const char *file, const char *what, int r) {
        if (error && !*error)
                *error = g_strdup_printf("%s: %s: %s", file, what, g_strerror(-r));
        return r;
}

static int load_snapshot(State *s, Registry *r, GHashTable *retired, uint64_t *ret_generation,
                         uint64_t *ret_size, char **error) {
        g_autofree char *file = g_build_filename(s->dir, STATE_FILE, NULL);
        g_auto(FileData) f = {};
        ia_autofd int fd = -1;
        int k;

        fd = openat(s->dir_fd, STATE_FILE, O_RDONLY|O_CLOEXEC|O_NOFOLLOW|O_NOCTTY);
        if (fd < 0) {
                if (errno == ENOENT) {
                        /* No snapshot yet: everything there is is in the journal. */
                        *ret_generation = 0;
                        *ret_size = 0;
                        return 0;
                }
                return io_fail(error, file, "cannot open", -errno);
        }

        k = read_full(fd, /* may_map= */ true, &f);
        if (k < 0)
                return io_fail(error, file, "cannot read", k);

        k = snapshot_parse(f.data, f.size, file, r, retired, &s->n_retired, ret_generation, error);
        if (k < 0)
                return k;

        *ret_size = f.size;
        return 0;
}

/* ---- the journal ------------------------------------------------------------------------ */

static int journal_fail_apply(Parser *ps, const char *record, int r) {
        return parser_fail(ps, "'%s' does not apply: %s", record, g_strerror(-r));
}

static int journal_apply(Parser *ps, Registry *r) {
        const char *w;
        size_t n;
        const char *guest, *path, *name = NULL;
        pid_t pid;
        uint64_t starttime, euid;
        Binding *b;
        int k;

        k = parse_word(ps, &w, &n);
        if (k < 0)
                return k;

        if (word_is(w, n, "grant")) {
                IaMode mode;
                bool created, pinned, directory;
                FileId cid, pinned_id;
                Guest *g;

                if ((k = parse_string(ps, /* nullable= */ false, &guest)) < 0 ||
                    (k = parse_string(ps, /* nullable= */ false, &path)) < 0 ||
                    (k = parse_mode(ps, &mode)) < 0 ||
                    (k = parse_inode(ps, &created, &cid)) < 0 ||
                    (k = parse_inode(ps, &pinned, &pinned_id)) < 0 ||
                    (k = parse_grant_end(ps, &directory)) < 0)
                        return k;

                if (registry_get_guest(r, guest) && retire_grant(ps, guest, path))
                        return 0;

                /* The record is the grant as it was: "created" too, set or not. */
                g = registry_get_guest(r, guest);
                k = g ? registry_load_grant(r, g,
                                            &(Grant) { .path = (char *) path, .mode = mode,
                                                       .created = created, .created_id = cid,
                                                       .pinned = pinned, .pinned_id = pinned_id,
                                                       .directory = directory },
                                            /* ret_grant= */ NULL)
                      : -ESRCH;
                if (k < 0)
                        return journal_fail_apply(ps, "grant", k);
                return 0;
        }

        if (word_is(w, n, "revoke")) {
                if ((k = parse_string(ps, /* nullable= */ false, &guest)) < 0 ||
                    (k = parse_string(ps, /* nullable= */ false, &path)) < 0 ||
                    (k = parser_end(ps)) < 0)
                        return k;

                if (grant_was_retired(ps, guest, path))
                        return 0;

                k = registry_revoke(r, guest, path, /* ret_grant= */ NULL);
                if (k < 0)
                        return journal_fail_apply(ps, "revoke", k);
                return 0;
        }

        if (word_is(w, n, "add-guest")) {
                const char *uuid, *description;
                bool has_uid;
                uid_t uid;

                if ((k = parse_string(ps, /* nullable= */ false, &name)) < 0 ||
                    (k = parse_string(ps, /* nullable= */ true, &uuid)) < 0 ||
                    (k = parse_string(ps, /* nullable= */ true, &description)) < 0 ||
                    (k = parse_optional_uid(ps, &has_uid, &uid)) < 0 ||
                    (k = parser_end(ps)) < 0)
                        return k;

                description = retire_description(ps, description);
                k = registry_add_guest(r, name, uuid, description, has_uid, uid, /* ret= */ NULL);
                if (k < 0)
                        return journal_fail_apply(ps, "add-guest", k);
                return 0;
        }

        if (word_is(w, n, "remove-guest")) {
                if ((k = parse_string(ps, /* nullable= */ false, &name)) < 0 ||
                    (k = parser_end(ps)) < 0)
                        return k;

                k = registry_remove_guest(r, name);
                if (k < 0)
                        return journal_fail_apply(ps, "remove-guest", k);
                return 0;
        }

        if (word_is(w, n, "add-binding")) {
                if ((k = parse_string(ps, /* nullable= */ false, &guest)) < 0 ||
                    (k = parse_pid(ps, &pid)) < 0 ||
                    (k = parse_u64(ps, "starttime", UINT64_MAX, &starttime)) < 0 ||
                    (k = parse_u64(ps, "euid", UID_VALID_MAX, &euid)) < 0)
                        return k;

                k = registry_add_binding(r, guest, pid, starttime, (uid_t) euid,
                                         /* pidfd= */ -1, /* bind_seq= */ 0, &b);
                if (k < 0)
                        return journal_fail_apply(ps, "add-binding", k);

                while (!parser_at_end(ps)) {
                        k = parse_string(ps, /* nullable= */ false, &name);
                        if (k < 0)
                                return k;
                        k = binding_add_connection(b, name, &r->limits);
                        if (k < 0)
                                return journal_fail_apply(ps, "add-binding", k);
                }
                return 0;
        }

        if (word_is(w, n, "remove-binding") || word_is(w, n, "add-connection")) {
                bool add = word_is(w, n, "add-connection");

                if ((k = parse_string(ps, /* nullable= */ false, &guest)) < 0 ||
                    (k = parse_pid(ps, &pid)) < 0 ||
                    (k = parse_u64(ps, "starttime", UINT64_MAX, &starttime)) < 0)
                        return k;
                if (add && (k = parse_string(ps, /* nullable= */ false, &name)) < 0)
                        return k;
                if ((k = parser_end(ps)) < 0)
                        return k;

                if (!registry_get_guest(r, guest))
                        return journal_fail_apply(ps, add ? "add-connection" : "remove-binding",
                                                  -ESRCH);
                b = registry_get_binding(r, guest, pid, starttime);
                if (!b)
                        return journal_fail_apply(ps, add ? "add-connection" : "remove-binding",
                                                  -ENOENT);

                k = add ? binding_add_connection(b, name, &r->limits) :
                          registry_remove_binding(r, guest, b);
                if (k < 0)
                        return journal_fail_apply(ps, add ? "add-connection" : "remove-binding",
                                                  k);
                return 0;
        }

        if (word_is(w, n, "forget-connection")) {
                if ((k = parse_string(ps, /* nullable= */ false, &name)) < 0 ||
                    (k = parser_end(ps)) < 0)
                        return k;

                (void) registry_forget_connection(r, name);
                return 0;
        }

        if (word_is(w, n, "bus-id")) {
                const char *bus_id;

                if ((k = parse_string(ps, /* nullable= */ true, &bus_id)) < 0 ||
                    (k = parser_end(ps)) < 0)
                        return k;

                registry_set_bus_id(r, bus_id);
                return 0;
        }

        return parser_fail(ps, "unknown record '%.*s'", (int) MIN(n, 64), w);
}

/*
 * Checks and replays the journal in @buf over @r.  On success *ret_valid is the length of
 * the complete records (a torn last line is not counted), and *ret_reset whether the journal
 * must be started afresh (no complete header, or an older generation).
 */
static int journal_parse(const char *buf, size_t size, const char *file, uint64_t generation,
                         Registry *r, GHashTable *retired, unsigned *n_retired,
                         size_t *ret_valid, bool *ret_reset, char **error) {
        g_auto(Parser) ps = { .file = file, .error = error, .retired = retired,
                              .n_retired = n_retired };
        size_t off = 0;
        bool header = false;
        int k;

        for (unsigned i = 1; off < size; i++) {
                const char *line = buf + off, *nl, *payload_end;
                uint64_t checksum;

                nl = memchr(line, '\n', size - off);
                if (!nl)
                        /* A write that never completed, so never acknowledged: dropped. */
                        break;

                ps.line = i;
                if (nl - line < CHECKSUM_LEN + 1 || nl[-CHECKSUM_LEN - 1] != ' ')
                        return parser_fail(&ps, "no checksum");
                payload_end = nl - CHECKSUM_LEN - 1;
                if (!parse_checksum(payload_end + 1, &checksum))
                        return parser_fail(&ps, "bad checksum field");
                if (fnv1a(FNV_OFFSET, line, (size_t) (payload_end - line)) != checksum)
                        return parser_fail(&ps, "checksum mismatch: the record is corrupt");

                parser_start_line(&ps, line, payload_end);
                off = (size_t) (nl - buf) + 1;

                if (!header) {
                        uint64_t g;

                        k = parse_header(&ps, JOURNAL_MAGIC, /* with_generation= */ true, &g);
                        if (k < 0)
                                return k;
                        if (g > generation)
                                return parser_fail(&ps, "generation %" PRIu64 " is newer than "
                                                   "the snapshot's (%" PRIu64 "): the snapshot "
                                                   "it belongs to is missing", g, generation);
                        if (g < generation) {
                                /* A compaction crashed after its rename: everything in here
                                 * is already in the snapshot. */
                                *ret_valid = 0;
                                *ret_reset = true;
                                return 0;
                        }
                        header = true;
                        continue;
                }

                k = journal_apply(&ps, r);
                if (k < 0)
                        return k;
        }

        *ret_valid = header ? off : 0;
        *ret_reset = !header;
        return 0;
}

static int load_journal(State *s, Registry *r, GHashTable *retired, uint64_t generation,
                        char **error) {
        g_autofree char *file = g_build_filename(s->dir, JOURNAL_FILE, NULL);
        g_auto(FileData) f = {};
        size_t valid;
        bool reset;
        int k;

        k = read_full(s->journal_fd, /* may_map= */ false, &f);
        if (k < 0)
                return io_fail(error, file, "cannot read", k);

        k = journal_parse(f.data, f.size, file, generation, r, retired, &s->n_retired, &valid,
                          &reset, error);
        if (k < 0)
                return k;

        s->journal_size = valid;
        s->journal_reset_needed = reset;
        s->journal_tail_torn = valid != f.size;
        return 0;
}

/**
 * state_load: loads the snapshot and replays the journal into @r.
 * @s: the state.
 * @r: must be empty (no guests, no bus id).
 * @ret_error: optional; on failure a message naming the file, the line and what is wrong,
 *             owned by the caller (g_free).  Untouched on success.
 *
 * All or nothing: on failure @r is left empty, and @s refuses to write (-EROFS) so that the
 * damaged files stay as they are for inspection.  A torn last journal line (no terminating
 * newline: a write that was never acknowledged) is dropped, and cut off before the next
 * record is appended.
 *
 * Return: 0 loaded (also when there is no state yet); -ENOTEMPTY @r is not empty (left
 *         alone); -EBADMSG corrupt or truncated snapshot, bad checksum, unknown version, a
 *         record that does not apply (also one beyond @r's limits), a journal newer than the
 *         snapshot; -ENOMEM; other negative errno for I/O.
 */
int state_load(State *s, Registry *r, char **ret_error) {
        g_autoptr(GHashTable) retired = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                                              NULL);
        g_autofree char *error = NULL;
        uint64_t generation = 0, snapshot_size = 0;
        int k;

        assert(s);
        assert(r);

        if (g_hash_table_size(r->guests) > 0 || r->bus_id)
                return -ENOTEMPTY;

        s->loaded = false;
        s->n_retired = 0;

        k = load_snapshot(s, r, retired, &generation, &snapshot_size, &error);
        if (k >= 0)
                k = load_journal(s, r, retired, generation, &error);
        if (k < 0) {
                registry_clear(r);
                if (ret_error)
                        *ret_error = g_steal_pointer(&error);
                return k;
        }

        s->generation = generation;
        s->snapshot_size = snapshot_size;
        s->broken = false;
        s->loaded = true;
        return 0;
}

unsigned state_n_retired(const State *s) {
        return s->n_retired;
}

/* Empties the journal and writes its header.  Not synced: the record that follows is. */
static int journal_reset(State *s) {
        g_autoptr(GString) line = g_string_new(NULL);
        int k;

        if (ftruncate(s->journal_fd, 0) < 0)
                return -errno;
        s->journal_size = 0;
        s->journal_tail_torn = false;

        g_string_printf(line, JOURNAL_MAGIC " %d %" PRIu64, FORMAT_VERSION, s->generation);
        g_string_append_printf(line, " %016" PRIx64 "\n",
                               fnv1a(FNV_OFFSET, line->str, line->len));
        k = loop_write(s->journal_fd, line->str, line->len);
        if (k < 0) {
                /* Leave it empty rather than with half a header. */
                (void) ftruncate(s->journal_fd, 0);
                return k;
        }

        s->journal_size = line->len;
        s->journal_reset_needed = false;
        return 0;
}

/* Appends @record (without checksum or newline) and makes it durable. */
static int journal_append(State *s, GString *record) {
        int k;

        if (!s->loaded)
                return -EROFS;
        if (s->broken)
                return -EIO;

        if (s->journal_reset_needed) {
                k = journal_reset(s);
                if (k < 0)
                        return k;
        } else if (s->journal_tail_torn) {
                if (ftruncate(s->journal_fd, (off_t) s->journal_size) < 0)
                        return -errno;
                s->journal_tail_torn = false;
        }

        g_string_append_printf(record, " %016" PRIx64 "\n",
                               fnv1a(FNV_OFFSET, record->str, record->len));

        k = loop_write(s->journal_fd, record->str, record->len);
        if (k < 0) {
                /* A short write (ENOSPC) would glue the next record to half of this one. */
                if (ftruncate(s->journal_fd, (off_t) s->journal_size) < 0)
                        s->broken = true;
                return k;
        }

        if (fdatasync(s->journal_fd) < 0) {
                k = -errno;
                /* The caller is told this record did not happen and will undo it in memory,
                 * but whether it reaches the disk is now unknown (and Linux forgets a failed
                 * writeback).  Remove it as well as we can, and refuse further records until
                 * a compaction rewrites the truth from memory. */
                (void) ftruncate(s->journal_fd, (off_t) s->journal_size);
                s->broken = true;
                return k;
        }

        s->journal_size += record->len;
        return 0;
}

/**
 * state_log_add_guest: records that @g was registered: its name, uuid, description and uid
 * binding (its grants and bindings have records of their own).
 * @s: the state.
 * @g: the guest; only read.
 *
 * Return: 0 once durable; -EINVAL invalid fields; -EROFS, -EIO (see state.h); other negative
 *         errno from the file system.
 */
int state_log_add_guest(State *s, const Guest *g) {
        g_autoptr(GString) rec = g_string_new("add-guest ");

        assert(s);
        assert(g);

        if (!guest_name_is_valid(g->name) ||
            (g->uuid && !guest_uuid_is_valid(g->uuid)) ||
            (g->description && !guest_description_is_valid(g->description)) ||
            (g->has_uid && g->uid == (uid_t) -1))
                return -EINVAL;

        append_guest_fields(rec, g);
        return journal_append(s, rec);
}

/**
 * state_log_remove_guest: records that the guest @name was removed.
 * @s: the state.
 * @name: the guest's name.
 *
 * Return: as state_log_add_guest().
 */
int state_log_remove_guest(State *s, const char *name) {
        g_autoptr(GString) rec = g_string_new("remove-guest ");

        assert(s);

        if (!guest_name_is_valid(name))
                return -EINVAL;

        append_string(rec, name);
        return journal_append(s, rec);
}

/**
 * state_log_grant: records @guest's grant as it is now (added, mode changed, or marked
 * created).
 * @s: the state.
 * @guest: the guest's name.
 * @grant: only read.
 *
 * Return: as state_log_add_guest().
 */
int state_log_grant(State *s, const char *guest, const Grant *grant) {
        g_autoptr(GString) rec = g_string_new("grant ");

        assert(s);
        assert(grant);

        if (!guest_name_is_valid(guest) || path_is_valid(grant->path, NULL) < 0 ||
            !ia_mode_to_string(grant->mode))
                return -EINVAL;

        append_string(rec, guest);
        g_string_append_c(rec, ' ');
        append_grant_fields(rec, grant);
        return journal_append(s, rec);
}

/**
 * state_log_revoke: records that @guest's grant of @path was revoked.
 * @s: the state.
 * @guest: the guest's name.
 * @path: the path.
 *
 * Return: as state_log_add_guest().
 */
int state_log_revoke(State *s, const char *guest, const char *path) {
        g_autoptr(GString) rec = g_string_new("revoke ");

        assert(s);

        if (!guest_name_is_valid(guest) || path_is_valid(path, NULL) < 0)
                return -EINVAL;

        append_string(rec, guest);
        g_string_append_c(rec, ' ');
        append_string(rec, path);
        return journal_append(s, rec);
}

static int append_process(GString *rec, const char *guest, pid_t pid, uint64_t starttime) {
        if (!guest_name_is_valid(guest) || pid <= 0)
                return -EINVAL;

        append_string(rec, guest);
        g_string_append_printf(rec, " %d %" PRIu64, (int) pid, starttime);
        return 0;
}

/**
 * state_log_add_binding: records @b (pid, starttime, euid and its admitted connections) as
 * bound to @guest.  Its pidfd and bind_seq are runtime only and not recorded.
 * @s: the state.
 * @guest: the guest's name.
 * @b: only read.
 *
 * Return: as state_log_add_guest().
 */
int state_log_add_binding(State *s, const char *guest, const Binding *b) {
        g_autoptr(GString) rec = g_string_new("add-binding ");
        int k;

        assert(s);
        assert(b);

        k = append_process(rec, guest, b->pid, b->starttime);
        if (k < 0)
                return k;
        if (b->euid == (uid_t) -1)
                return -EINVAL;
        g_string_append_printf(rec, " %" PRIu32, (uint32_t) b->euid);

        for (guint i = 0; i < b->connections->len; i++) {
                const char *name = g_ptr_array_index(b->connections, i);

                if (!bus_unique_name_is_valid(name))
                        return -EINVAL;
                g_string_append_c(rec, ' ');
                append_string(rec, name);
        }

        return journal_append(s, rec);
}

/**
 * state_log_remove_binding: records that @guest's binding of (@pid, @starttime) was removed.
 * @s: the state.
 * @guest: the guest's name.
 * @pid, @starttime: the process.
 *
 * Return: as state_log_add_guest().
 */
int state_log_remove_binding(State *s, const char *guest, pid_t pid, uint64_t starttime) {
        g_autoptr(GString) rec = g_string_new("remove-binding ");
        int k;

        assert(s);

        k = append_process(rec, guest, pid, starttime);
        if (k < 0)
                return k;

        return journal_append(s, rec);
}

/**
 * state_log_add_connection: records that @unique_name was admitted as the process (@pid,
 * @starttime) bound to @guest.
 * @s: the state.
 * @guest: the guest's name.
 * @pid, @starttime: the binding's process.
 * @unique_name: the bus connection.
 *
 * Return: as state_log_add_guest().
 */
int state_log_add_connection(State *s, const char *guest, pid_t pid, uint64_t starttime,
                             const char *unique_name) {
        g_autoptr(GString) rec = g_string_new("add-connection ");
        int k;

        assert(s);

        k = append_process(rec, guest, pid, starttime);
        if (k < 0)
                return k;
        if (!bus_unique_name_is_valid(unique_name))
                return -EINVAL;

        g_string_append_c(rec, ' ');
        append_string(rec, unique_name);
        return journal_append(s, rec);
}

/**
 * state_log_forget_connection: records that @unique_name left the bus, so that a restart does
 * not bring it back into every binding's connection list (where it would count against
 * max_connections_per_binding).
 * @s: the state.
 * @unique_name: the bus connection.
 *
 * Return: as state_log_add_guest().
 */
int state_log_forget_connection(State *s, const char *unique_name) {
        g_autoptr(GString) rec = g_string_new("forget-connection ");

        assert(s);

        if (!bus_unique_name_is_valid(unique_name))
                return -EINVAL;

        append_string(rec, unique_name);
        return journal_append(s, rec);
}

/**
 * state_log_bus_id: records the bus id (replaying it clears the connection lists when it
 * differs, as registry_set_bus_id() does).
 * @s: the state.
 * @bus_id: may be NULL.
 *
 * Return: as state_log_add_guest().
 */
int state_log_bus_id(State *s, const char *bus_id) {
        g_autoptr(GString) rec = g_string_new("bus-id ");

        assert(s);

        append_string(rec, bus_id);
        return journal_append(s, rec);
}

/**
 * state_maybe_compact: writes a fresh snapshot of @r and empties the journal when the journal
 * has grown past max(1 MiB, the snapshot's size), when @force, or after a write failure.
 * @s: the state.
 * @r: the registry as it is now; only read.
 * @force: compact regardless of size.
 *
 * See the top of this file for why a crash between the two steps is harmless.
 *
 * Return: 1 compacted; 0 not needed; -EROFS no successful state_load() yet; other negative
 *         errno (the files on disk still load to the state before the call, or to @r; when
 *         the failure came after the new snapshot was in place, records are refused with
 *         -EIO until a later compaction succeeds).
 */
int state_maybe_compact(State *s, const Registry *r, bool force) {
        g_autofree char *tmp = NULL;
        uint64_t generation, size;
        int k;

        assert(s);
        assert(r);

        if (!s->loaded)
                return -EROFS;
        if (!force && !s->broken && s->journal_size <= MAX(COMPACT_MIN_JOURNAL, s->snapshot_size))
                return 0;

        generation = next_generation(s->generation);
        k = snapshot_write_temp(s->dir_fd, STATE_FILE, r, generation, &tmp, &size);
        if (k < 0)
                return k;

        if (renameat(s->dir_fd, tmp, s->dir_fd, STATE_FILE) < 0) {
                k = -errno;
                (void) unlinkat(s->dir_fd, tmp, 0);
                return k;
        }

        /* From here on the snapshot on disk may be the new one: the journal is stale. */
        s->generation = generation;
        s->snapshot_size = size;
        s->journal_reset_needed = true;

        /* Until the rename is durable, the old snapshot may come back after a crash: keep the
         * old journal that goes with it, and accept no records (they would land in a journal
         * that the new snapshot makes stale, or next to a snapshot that is not there). */
        if (fsync(s->dir_fd) < 0) {
                k = -errno;
                s->broken = true;
                return k;
        }

        k = journal_reset(s);
        if (k >= 0 && fdatasync(s->journal_fd) < 0)
                k = -errno;
        if (k < 0) {
                s->broken = true;
                return k;
        }

        s->broken = false;
        return 1;
}

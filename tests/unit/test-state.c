/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-state.c — unit tests for daemon/state.c: round trips of every persisted field (hostile
 * bytes included), detection of truncation and corruption of the snapshot, torn and corrupt
 * journal records, compaction and a crash in the middle of it, and that a failed load leaves
 * the registry empty and the files untouched.
 *
 * Some tests write files by hand.  They compute the checksums themselves (word-wise FNV-1a 64,
 * as the format comment in state.c specifies), so they check the format, not only that state.c
 * agrees with itself.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <glib.h>
#include <glib/gstdio.h>

#include "macro.h"
#include "registry.h"
#include "state.h"

#define UUID "0f3c5a6e-1b2d-4c8e-9a7f-112233445566"

/* ---- helpers ---------------------------------------------------------------------------- */

static char *make_tmp_dir(void) {
        g_autoptr(GError) error = NULL;
        char *dir = g_dir_make_tmp("test-state-XXXXXX", &error);

        g_assert_no_error(error);
        return dir;
}

static void rm_rf(const char *dir) {
        g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
        const char *name;

        if (!d)
                return;
        while ((name = g_dir_read_name(d))) {
                g_autofree char *p = g_build_filename(dir, name, NULL);

                if (g_file_test(p, G_FILE_TEST_IS_DIR) && !g_file_test(p, G_FILE_TEST_IS_SYMLINK))
                        rm_rf(p);
                else
                        g_assert_cmpint(g_unlink(p), ==, 0);
        }
        g_assert_cmpint(g_rmdir(dir), ==, 0);
}

/* A temp directory that is removed when the test ends. */
typedef struct TmpDir {
        char *path;
} TmpDir;

static void tmp_dir_free(TmpDir *t) {
        rm_rf(t->path);
        g_free(t->path);
        g_free(t);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC(TmpDir, tmp_dir_free);

static TmpDir *tmp_dir_new(void) {
        TmpDir *t = g_new0(TmpDir, 1);

        t->path = make_tmp_dir();
        return t;
}

static char *file_in(const char *dir, const char *name) {
        return g_build_filename(dir, name, NULL);
}

static void write_file(const char *dir, const char *name, const void *data, size_t len) {
        g_autofree char *p = file_in(dir, name);
        ia_autofd int fd = open(p, O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC, 0600);

        g_assert_cmpint(fd, >=, 0);
        g_assert_cmpint(write(fd, data, len), ==, (ssize_t) len);
}

static void append_file(const char *dir, const char *name, const char *data) {
        g_autofree char *p = file_in(dir, name);
        ia_autofd int fd = open(p, O_WRONLY|O_APPEND|O_CLOEXEC);

        g_assert_cmpint(fd, >=, 0);
        g_assert_cmpint(write(fd, data, strlen(data)), ==, (ssize_t) strlen(data));
}

static char *read_file(const char *dir, const char *name, size_t *ret_len) {
        g_autofree char *p = file_in(dir, name);
        g_autoptr(GError) error = NULL;
        char *data = NULL;
        gsize len = 0;

        g_assert_true(g_file_get_contents(p, &data, &len, &error));
        g_assert_no_error(error);
        if (ret_len)
                *ret_len = len;
        return data;
}

static bool file_exists(const char *dir, const char *name) {
        g_autofree char *p = file_in(dir, name);

        return access(p, F_OK) == 0;
}

static mode_t file_mode(const char *path) {
        struct stat st;

        g_assert_cmpint(lstat(path, &st), ==, 0);
        return st.st_mode & 07777;
}

/* FNV-1a 64, with every complete 8-byte block taken as one little-endian word. */
static uint64_t fnv1a(const char *p, size_t n) {
        uint64_t h = UINT64_C(0xcbf29ce484222325);
        size_t i = 0;

        for (; i + 8 <= n; i += 8) {
                uint64_t w = 0;

                for (unsigned b = 0; b < 8; b++)
                        w |= (uint64_t) (uint8_t) p[i + b] << (8 * b);
                h ^= w;
                h *= UINT64_C(0x100000001b3);
        }
        for (; i < n; i++) {
                h ^= (uint8_t) p[i];
                h *= UINT64_C(0x100000001b3);
        }
        return h;
}

/* Appends the trailer to a hand-written snapshot body. */
static char *seal_snapshot(const char *body) {
        unsigned lines = 0;

        for (const char *p = body; *p; p++)
                if (*p == '\n')
                        lines++;

        return g_strdup_printf("%send %u %016" PRIx64 "\n", body, lines,
                               fnv1a(body, strlen(body)));
}

/* A journal line with its checksum. */
static char *journal_line(const char *record) {
        return g_strdup_printf("%s %016" PRIx64 "\n", record, fnv1a(record, strlen(record)));
}

static char *journal_of(const char *first, ...) G_GNUC_NULL_TERMINATED;
static char *journal_of(const char *first, ...) {
        GString *s = g_string_new(NULL);
        va_list ap;

        va_start(ap, first);
        for (const char *rec = first; rec; rec = va_arg(ap, const char *)) {
                g_autofree char *l = journal_line(rec);

                g_string_append(s, l);
        }
        va_end(ap);
        return g_string_free(s, FALSE);
}

/* Opens @dir and loads it into a new registry.  Returns state_load()'s result.  While a
 * writing State of the test still holds @dir's lock, the snapshot and journal are loaded from
 * a copy instead: what a service restarted after a crash of the writer would find. */
static int load_dir(const char *dir, const RegistryLimits *limits, Registry **ret,
                    char **ret_error) {
        g_autoptr(State) s = NULL;
        g_autoptr(Registry) r = registry_new(limits);
        g_autofree char *copy = NULL;
        int k;

        k = state_open(dir, &s);
        if (k == -EBUSY) {
                copy = make_tmp_dir();
                for (size_t i = 0; i < 2; i++) {
                        const char *name = (const char *const[]) { "state", "journal" }[i];
                        g_autofree char *data = NULL;
                        size_t len;

                        if (!file_exists(dir, name))
                                continue;
                        data = read_file(dir, name, &len);
                        write_file(copy, name, data, len);
                }
                k = state_open(copy, &s);
        }
        g_assert_cmpint(k, ==, 0);
        k = state_load(s, r, ret_error);
        if (copy)
                rm_rf(copy);
        *ret = g_steal_pointer(&r);
        return k;
}

static void assert_load_fails(const char *dir, const char *what) {
        g_autoptr(Registry) r = NULL;
        g_autofree char *error = NULL;

        g_assert_cmpint(load_dir(dir, NULL, &r, &error), ==, -EBADMSG);
        g_assert_nonnull(error);
        if (what && !strstr(error, what))
                g_error("message '%s' does not mention '%s'", error, what);
        /* Fail closed. */
        g_assert_cmpuint(g_hash_table_size(r->guests), ==, 0);
        g_assert_cmpuint(r->n_grants, ==, 0);
        g_assert_null(r->bus_id);
}

/*
 * Offsets to damage a file of @len bytes at: every one of the first and last 48 bytes (the
 * header and the trailer), and about 250 spread over the rest, so that the test stays quick
 * under valgrind on a busy machine.
 */
static bool damage_offset(size_t i, size_t len) {
        size_t step = MAX(len / 250, (size_t) 1);

        return i < 48 || i + 48 >= len || i % step == 0;
}

static bool connections_equal(const Binding *a, const Binding *b) {
        if (a->connections->len != b->connections->len)
                return false;
        for (guint i = 0; i < a->connections->len; i++)
                if (!binding_has_connection(b, g_ptr_array_index(a->connections, i)))
                        return false;
        return true;
}

/* Deep comparison of everything persisted.  @loaded must show the runtime-only fields as
 * restored (pidfd -1, bind_seq 0). */
static void assert_file_id_equal(const FileId *a, const FileId *b) {
        g_assert_cmpuint(a->dev, ==, b->dev);
        g_assert_cmpuint(a->ino, ==, b->ino);
        g_assert_cmpuint(a->rdev, ==, b->rdev);
        g_assert_cmpuint(a->tag, ==, b->tag);
        g_assert_cmpint(a->kind, ==, b->kind);
}

static void assert_registry_equal(Registry *expected, Registry *loaded) {
        GHashTableIter gi;
        gpointer value;

        g_assert_cmpstr(expected->bus_id, ==, loaded->bus_id);
        g_assert_cmpuint(g_hash_table_size(expected->guests), ==,
                         g_hash_table_size(loaded->guests));
        g_assert_cmpuint(expected->n_grants, ==, loaded->n_grants);

        g_hash_table_iter_init(&gi, expected->guests);
        while (g_hash_table_iter_next(&gi, NULL, &value)) {
                Guest *e = value, *l = registry_get_guest(loaded, e->name);
                GHashTableIter ti;

                g_assert_nonnull(l);
                g_assert_cmpstr(e->uuid, ==, l->uuid);
                g_assert_cmpstr(e->description, ==, l->description);
                g_assert_cmpint(e->has_uid, ==, l->has_uid);
                if (e->has_uid)
                        g_assert_cmpuint(e->uid, ==, l->uid);

                g_assert_cmpuint(g_hash_table_size(e->grants), ==, g_hash_table_size(l->grants));
                g_hash_table_iter_init(&ti, e->grants);
                while (g_hash_table_iter_next(&ti, NULL, &value)) {
                        Grant *eg = value;
                        Grant *lg = g_hash_table_lookup(l->grants, eg->path);

                        g_assert_nonnull(lg);
                        g_assert_cmpstr(eg->path, ==, lg->path);
                        g_assert_cmpint(eg->mode, ==, lg->mode);
                        g_assert_cmpint(eg->created, ==, lg->created);
                        if (eg->created)
                                assert_file_id_equal(&eg->created_id, &lg->created_id);
                        g_assert_cmpint(eg->pinned, ==, lg->pinned);
                        if (eg->pinned)
                                assert_file_id_equal(&eg->pinned_id, &lg->pinned_id);
                }

                g_assert_cmpuint(e->bindings->len, ==, l->bindings->len);
                for (guint i = 0; i < e->bindings->len; i++) {
                        Binding *eb = g_ptr_array_index(e->bindings, i);
                        Binding *lb = registry_get_binding(loaded, e->name, eb->pid,
                                                           eb->starttime);

                        g_assert_nonnull(lb);
                        g_assert_cmpuint(eb->euid, ==, lb->euid);
                        g_assert_true(connections_equal(eb, lb));
                        g_assert_cmpint(lb->pidfd, ==, -1);
                        g_assert_cmpuint(lb->bind_seq, ==, 0);
                }
        }
}

/* ---- building a registry and logging every change, as the daemon does ------------------- */

static void do_add_guest(Registry *r, State *s, const char *name, const char *uuid,
                         const char *description, bool has_uid, uid_t uid) {
        Guest *g;

        g_assert_cmpint(registry_add_guest(r, name, uuid, description, has_uid, uid, &g), ==, 0);
        if (s)
                g_assert_cmpint(state_log_add_guest(s, g), ==, 0);
}

static void do_grant(Registry *r, State *s, const char *guest, const char *path, IaMode mode) {
        g_assert_cmpint(registry_grant(r, guest, path, mode), >=, 0);
        if (s)
                g_assert_cmpint(state_log_grant(s, guest, registry_get_grant(r, guest, path)), ==,
                                0);
}

static void do_mark_created(Registry *r, State *s, const char *guest, const char *path,
                            uint64_t dev, uint64_t ino) {
        g_assert_cmpint(registry_mark_created(r, guest, path, &(FileId) { .dev = dev, .ino = ino }), ==, 0);
        if (s)
                g_assert_cmpint(state_log_grant(s, guest, registry_get_grant(r, guest, path)), ==,
                                0);
}

static void do_revoke(Registry *r, State *s, const char *guest, const char *path) {
        g_assert_cmpint(registry_revoke(r, guest, path, NULL), ==, 0);
        if (s)
                g_assert_cmpint(state_log_revoke(s, guest, path), ==, 0);
}

static Binding *do_bind(Registry *r, State *s, const char *guest, pid_t pid, uint64_t starttime,
                        uid_t euid) {
        Binding *b;

        /* A real fd, so that the test also shows it is not persisted. */
        g_assert_cmpint(registry_add_binding(r, guest, pid, starttime, euid,
                                             open("/dev/null", O_RDONLY|O_CLOEXEC), 42, &b), ==, 0);
        if (s)
                g_assert_cmpint(state_log_add_binding(s, guest, b), ==, 0);
        return b;
}

static void do_connect(Registry *r, State *s, const char *guest, Binding *b, const char *name) {
        g_assert_cmpint(binding_add_connection(b, name, &r->limits), ==, 0);
        if (s)
                g_assert_cmpint(state_log_add_connection(s, guest, b->pid, b->starttime, name),
                                ==, 0);
}

static void do_unbind(Registry *r, State *s, const char *guest, Binding *b) {
        pid_t pid = b->pid;
        uint64_t starttime = b->starttime;

        g_assert_cmpint(registry_remove_binding(r, guest, b), ==, 0);
        if (s)
                g_assert_cmpint(state_log_remove_binding(s, guest, pid, starttime), ==, 0);
}

static void do_forget(Registry *r, State *s, const char *name) {
        g_assert_cmpuint(registry_forget_connection(r, name), >, 0);
        if (s)
                g_assert_cmpint(state_log_forget_connection(s, name), ==, 0);
}

static void do_remove_guest(Registry *r, State *s, const char *name) {
        g_assert_cmpint(registry_remove_guest(r, name), ==, 0);
        if (s)
                g_assert_cmpint(state_log_remove_guest(s, name), ==, 0);
}

static void do_bus_id(Registry *r, State *s, const char *bus_id) {
        registry_set_bus_id(r, bus_id);
        if (s)
                g_assert_cmpint(state_log_bus_id(s, bus_id), ==, 0);
}

/* Every byte from 0x01 to 0xff: the escaping must carry any string without NUL. */
static char *all_bytes(void) {
        char *s = g_malloc(256);

        for (unsigned i = 1; i < 256; i++)
                s[i - 1] = (char) i;
        s[255] = '\0';
        return s;
}

static const char *const hostile_paths[] = {
        "/images/with space/a b.qcow2",
        "/images/\"double\" and 'single' quotes",
        "/images/back\\slash\\",
        "/images/\\x41 not an escape \\n",
        "/images/caf\xc3\xa9/\xf0\x9f\x92\xbe \xe2\x80\x94 disk.raw",
        "/images/-",
        "/images/ leading and trailing space ",
        "/images/%s%n%x",
        "/images/end 5 0123456789abcdef",
        "/images/# comment-like",
        "/dev/sdb",
};

/* Exercises every field and every record type; @s (optional) gets the journal records. */
static void populate(Registry *r, State *s) {
        g_autofree char *bus_id = all_bytes();
        Binding *b, *gone;

        /* The bus id first: changing it clears connections. */
        do_bus_id(r, s, "not the final one");
        do_bus_id(r, s, bus_id);

        do_add_guest(r, s, "vm1", UUID, "Fedora 40 \xe2\x80\x94 caf\xc3\xa9 \"q\" \\ back", true,
                     1000);
        do_add_guest(r, s, "vm2", NULL, NULL, false, 0);
        do_add_guest(r, s, "vm3", "0F3C5A6E-1B2D-4C8E-9A7F-112233445566", "", true, 0);
        do_add_guest(r, s, "Vm:4+x_y.z-w", NULL, "d", true, UINT32_MAX - 1);
        do_add_guest(r, s, "doomed", NULL, NULL, false, 0);

        for (size_t i = 0; i < G_N_ELEMENTS(hostile_paths); i++)
                do_grant(r, s, "vm1", hostile_paths[i], (IaMode) (i % _IA_MODE_MAX));
        do_grant(r, s, "vm2", "/images/overlay.qcow2", IA_MODE_CREATE);
        g_assert_cmpint(registry_mark_created(r, "vm2", "/images/overlay.qcow2",
                                              &(FileId) { UINT64_MAX, UINT64_MAX - 1, 0,
                                                          UINT64_C(0x0123456789abcdef), 'r' }),
                        ==, 0);
        if (s)
                g_assert_cmpint(state_log_grant(s, "vm2", registry_get_grant(r, "vm2", "/images/overlay.qcow2")), ==, 0);
        do_grant(r, s, "vm2", "/images/zero.qcow2", IA_MODE_CREATE);
        do_mark_created(r, s, "vm2", "/images/zero.qcow2", 0, 0);
        /* A mode change keeps the created record. */
        do_grant(r, s, "vm2", "/images/zero.qcow2", IA_MODE_READ_ONLY);
        do_grant(r, s, "vm2", "/images/revoked", IA_MODE_READ_WRITE);
        /* A pinned grant that the service did not create. */
        do_grant(r, s, "vm2", "/images/base.qcow2", IA_MODE_READ_ONLY);
        g_assert_cmpint(registry_pin_grant(r, "vm2", "/images/base.qcow2",
                                           &(FileId) { 64769, UINT64_MAX, UINT64_MAX, 1, 'b' }), ==, 0);
        if (s)
                g_assert_cmpint(state_log_grant(s, "vm2", registry_get_grant(r, "vm2", "/images/base.qcow2")), ==, 0);
        do_revoke(r, s, "vm2", "/images/revoked");
        do_grant(r, s, "doomed", "/images/doomed", IA_MODE_READ_WRITE);

        b = do_bind(r, s, "vm1", 1234, UINT64_MAX, 107);
        do_connect(r, s, "vm1", b, ":1.42");
        do_connect(r, s, "vm1", b, ":1.43");
        do_connect(r, s, "vm1", b, ":1.44");
        do_forget(r, s, ":1.43");
        b = do_bind(r, s, "vm1", INT_MAX, 0, 0);
        do_connect(r, s, "vm1", b, ":abc.d_e-f");
        gone = do_bind(r, s, "vm1", 77, 1, 1);
        do_unbind(r, s, "vm1", gone);
        do_bind(r, s, "vm3", 1, 1, UINT32_MAX - 1);
        b = do_bind(r, s, "doomed", 9, 9, 9);
        do_connect(r, s, "doomed", b, ":1.9");

        do_remove_guest(r, s, "doomed");
}

/* ---- opening ---------------------------------------------------------------------------- */

static void test_open_creates(void) {
        g_autoptr(TmpDir) t = tmp_dir_new();
        g_autofree char *dir = file_in(t->path, "state-dir");
        g_autofree char *journal = file_in(dir, "journal");
        g_autoptr(State) s = NULL;
        g_autoptr(GDir) fds = NULL;
        const char *name;
        unsigned ours = 0;

        g_assert_cmpint(state_open(dir, &s), ==, 0);
        g_assert_cmpuint(file_mode(dir), ==, 0700);
        g_assert_cmpuint(file_mode(journal), ==, 0600);

        /* Every fd that refers to the state directory is close-on-exec. */
        fds = g_dir_open("/proc/self/fd", 0, NULL);
        g_assert_nonnull(fds);
        while ((name = g_dir_read_name(fds))) {
                g_autofree char *link = g_strconcat("/proc/self/fd/", name, NULL);
                g_autofree char *target = g_file_read_link(link, NULL);

                if (!target || !g_str_has_prefix(target, dir))
                        continue;
                ours++;
                g_assert_cmpint(fcntl(atoi(name), F_GETFD) & FD_CLOEXEC, ==, FD_CLOEXEC);
        }
        /* the directory, the journal, the lock */
        g_assert_cmpuint(ours, ==, 3);
}

/* One State per directory: a second one is refused while the first lives, in this process
 * and in another, and the refusal can name the holder; freeing (or dying) releases it. */
static void test_open_locked(void) {
        g_autoptr(TmpDir) t = tmp_dir_new();
        State *s = NULL, *s2 = (State *) 0x1;
        int status, pipefd[2];
        pid_t child;
        char c;

        g_assert_cmpint(state_open(t->path, &s), ==, 0);
        g_assert_cmpint(state_open(t->path, &s2), ==, -EBUSY);
        g_assert_true(s2 == (State *) 0x1);
        g_assert_cmpint(state_lock_holder(t->path), ==, getpid());

        child = fork();
        g_assert_cmpint(child, >=, 0);
        if (child == 0) {
                State *other = NULL;

                _exit(state_open(t->path, &other) == -EBUSY ? 0 : 1);
        }
        g_assert_cmpint(waitpid(child, &status, 0), ==, child);
        g_assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);

        state_free(s);
        g_assert_cmpint(state_open(t->path, &s2), ==, 0);
        state_free(s2);

        /* A holder that dies without freeing releases it too, and names itself while alive. */
        g_assert_cmpint(pipe(pipefd), ==, 0);
        child = fork();
        g_assert_cmpint(child, >=, 0);
        if (child == 0) {
                State *held = NULL;

                if (state_open(t->path, &held) < 0)
                        _exit(1);
                (void) write(pipefd[1], "x", 1);
                pause();
                _exit(0);
        }
        g_assert_cmpint(read(pipefd[0], &c, 1), ==, 1);
        g_assert_cmpint(state_open(t->path, &s2), ==, -EBUSY);
        g_assert_cmpint(state_lock_holder(t->path), ==, child);
        g_assert_cmpint(kill(child, SIGKILL), ==, 0);
        g_assert_cmpint(waitpid(child, &status, 0), ==, child);
        g_assert_cmpint(state_open(t->path, &s2), ==, 0);
        state_free(s2);
        close(pipefd[0]);
        close(pipefd[1]);
}

static void test_open_fixes_mode(void) {
        g_autoptr(TmpDir) t = tmp_dir_new();
        g_autoptr(State) s = NULL;

        g_assert_cmpint(chmod(t->path, 0755), ==, 0);
        g_assert_cmpint(state_open(t->path, &s), ==, 0);
        g_assert_cmpuint(file_mode(t->path), ==, 0700);
}

static void test_open_errors(void) {
        g_autoptr(TmpDir) t = tmp_dir_new();
        g_autofree char *missing = g_build_filename(t->path, "no", "such", NULL);
        g_autofree char *link = file_in(t->path, "link");
        g_autofree char *sub = file_in(t->path, "sub");
        g_autofree char *journal = file_in(sub, "journal");
        State *s = (State *) 0x1;

        g_assert_cmpint(state_open("relative/dir", &s), ==, -EINVAL);
        g_assert_cmpint(state_open("", &s), ==, -EINVAL);
        g_assert_cmpint(state_open(missing, &s), ==, -ENOENT);

        /* A symlink as the directory is refused. */
        g_assert_cmpint(symlink(t->path, link), ==, 0);
        g_assert_cmpint(state_open(link, &s), <, 0);

        /* So is a journal that is not a regular file (here a symlink: never followed). */
        g_assert_cmpint(mkdir(sub, 0700), ==, 0);
        g_assert_cmpint(symlink("/dev/null", journal), ==, 0);
        g_assert_cmpint(state_open(sub, &s), <, 0);

        g_assert_true(s == (State *) 0x1);
        g_assert_null(state_free(NULL));
}

static void test_open_removes_stale_temp(void) {
        g_autoptr(TmpDir) t = tmp_dir_new();
        g_autoptr(State) s = NULL;

        write_file(t->path, ".state.tmp-0badf00d", "half a snapshot", 15);
        write_file(t->path, "unrelated", "x", 1);
        g_assert_cmpint(state_open(t->path, &s), ==, 0);
        g_assert_false(file_exists(t->path, ".state.tmp-0badf00d"));
        g_assert_true(file_exists(t->path, "unrelated"));
}

/* ---- loading ---------------------------------------------------------------------------- */

static void test_load_nothing(void) {
        g_autoptr(TmpDir) t = tmp_dir_new();
        g_autoptr(Registry) r = NULL;
        g_autofree char *error = NULL;

        g_assert_cmpint(load_dir(t->path, NULL, &r, &error), ==, 0);
        g_assert_null(error);
        g_assert_cmpuint(g_hash_table_size(r->guests), ==, 0);
        g_assert_null(r->bus_id);
}

/* Paths and descriptions that an older version accepted and this one refuses (a C1 control,
 * U+2028, a bidi override, bytes that are not UTF-8) are dropped on load, counted, and the
 * rest of the state loads: a revoke of a dropped grant in the journal is no damage. */
static void test_load_retired(void) {
        g_autoptr(TmpDir) t = tmp_dir_new();
        g_autoptr(Registry) r = NULL;
        g_autoptr(State) s = NULL;
        g_autofree char *error = NULL;
        g_autofree char *snapshot = seal_snapshot(
                "image-access-state 1\ngeneration 1\nbus-id -\n"
                "guest \"vm\" - \"web \xe2\x80\xa8 audit: forged\" -\n"
                "grant \"/a\xe2\x80\xa8" "b\" read-only - -\n"
                "grant \"/ok\" read-write - -\n"
                "guest \"vm2\" - \"fine\" -\n"
                "grant \"/x\xe2\x80\xae" "gpj.exe\" read-only - -\n");
        g_autofree char *journal = journal_of(
                "image-access-journal 1 1",
                "add-guest \"vm3\" - \"nel \xc2\x85\" -",
                "grant \"vm\" \"/c\xc2\x85\" create - -",
                "grant \"vm\" \"/raw\xff\" read-only - -",
                "revoke \"vm\" \"/a\xe2\x80\xa8" "b\"",
                "grant \"vm\" \"/c\xc2\x85\" read-only - -",
                "revoke \"vm\" \"/c\xc2\x85\"",
                "grant \"vm3\" \"/ok2\" read-only - -", NULL);

        write_file(t->path, "state", snapshot, strlen(snapshot));
        write_file(t->path, "journal", journal, strlen(journal));
        r = registry_new(NULL);
        g_assert_cmpint(state_open(t->path, &s), ==, 0);
        g_assert_cmpint(state_load(s, r, &error), ==, 0);
        g_assert_null(error);
        /* 2 descriptions, 2 snapshot grants, 3 journal grants */
        g_assert_cmpuint(state_n_retired(s), ==, 7);
        g_assert_null(registry_get_guest(r, "vm")->description);
        g_assert_cmpstr(registry_get_guest(r, "vm2")->description, ==, "fine");
        g_assert_null(registry_get_guest(r, "vm3")->description);
        g_assert_cmpuint(r->n_grants, ==, 2);
        g_assert_nonnull(registry_get_grant(r, "vm", "/ok"));
        g_assert_nonnull(registry_get_grant(r, "vm3", "/ok2"));

        /* What was always refused is still damage, not something to drop quietly. */
        g_free(journal);
        journal = journal_of("image-access-journal 1 1", "grant \"vm\" \"/a\\x01\" read-only - -",
                             NULL);
        write_file(t->path, "journal", journal, strlen(journal));
        assert_load_fails(t->path, "'grant' does not apply");
}

/* Identities: format 2's "DEV:INO:KIND:RDEV:TAG", format 1's "DEV:INO" (no kind, no tag:
 * matched on (dev, ino) alone, and written back as it was), and what is not an identity. */
static void test_load_file_ids(void) {
        g_autoptr(TmpDir) t = tmp_dir_new();
        g_autoptr(Registry) r = NULL;
        g_autofree char *v1 = seal_snapshot(
                "image-access-state 1\ngeneration 1\nbus-id -\nguest \"vm\" - - -\n"
                "grant \"/old\" create 2049:12 2049:12\n");
        g_autofree char *journal = journal_of(
                "image-access-journal 1 1",
                "grant \"vm\" \"/new\" read-write - 2049:13:b:2048:00000000deadbeef",
                "grant \"vm\" \"/reg\" read-only - 2049:14:r:0:0000000000000000", NULL);
        static const char *const bad[] = {
                "2049", "2049:", ":1", "1:2:r", "1:2:r:0", "1:2:x:0:0000000000000000",
                "1:2:r:0:000000000000000", "1:2:r:0:0000000000000000:1", "1:2:rr:0:0000000000000000",
                "1:2:r:0:000000000000000G", "1:2:r:-1:0000000000000000", "1:2:R:0:0000000000000000",
        };
        Grant *g;

        write_file(t->path, "state", v1, strlen(v1));
        write_file(t->path, "journal", journal, strlen(journal));
        g_assert_cmpint(load_dir(t->path, NULL, &r, NULL), ==, 0);
        g = registry_get_grant(r, "vm", "/old");
        assert_file_id_equal(&g->created_id, &(FileId) { .dev = 2049, .ino = 12 });
        assert_file_id_equal(&g->pinned_id, &(FileId) { .dev = 2049, .ino = 12 });
        g = registry_get_grant(r, "vm", "/new");
        g_assert_false(g->created);
        assert_file_id_equal(&g->pinned_id, &(FileId) { 2049, 13, 2048, 0xdeadbeef, 'b' });
        g = registry_get_grant(r, "vm", "/reg");
        assert_file_id_equal(&g->pinned_id, &(FileId) { 2049, 14, 0, 0, 'r' });

        for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
                g_autofree char *rec = g_strdup_printf("grant \"vm\" \"/x\" read-only - %s", bad[i]);
                g_autofree char *j = journal_of("image-access-journal 1 1", rec, NULL);

                g_test_message("case %s", bad[i]);
                write_file(t->path, "journal", j, strlen(j));
                assert_load_fails(t->path, "bad inode");
        }
}

static void test_load_not_empty(void) {
        g_autoptr(TmpDir) t = tmp_dir_new();
        g_autoptr(State) s = NULL;
        g_autoptr(Registry) r = registry_new(NULL);

        g_assert_cmpint(state_open(t->path, &s), ==, 0);
        g_assert_cmpint(registry_add_guest(r, "vm", NULL, NULL, false, 0, NULL), ==, 0);
        g_assert_cmpint(state_load(s, r, NULL), ==, -ENOTEMPTY);
        /* Left alone. */
        g_assert_nonnull(registry_get_guest(r, "vm"));

        registry_clear(r);
        registry_set_bus_id(r, "x");
        g_assert_cmpint(state_load(s, r, NULL), ==, -ENOTEMPTY);
}

static void test_write_before_load(void) {
        g_autoptr(TmpDir) t = tmp_dir_new();
        g_autoptr(State) s = NULL;
        g_autoptr(Registry) r = registry_new(NULL);
        size_t len;
        g_autofree char *journal = NULL;

        g_assert_cmpint(state_open(t->path, &s), ==, 0);
        g_assert_cmpint(state_log_bus_id(s, "x"), ==, -EROFS);
        g_assert_cmpint(state_log_remove_guest(s, "vm"), ==, -EROFS);
        g_assert_cmpint(state_maybe_compact(s, r, true), ==, -EROFS);
        g_assert_false(file_exists(t->path, "state"));
        journal = read_file(t->path, "journal", &len);
        g_assert_cmpuint(len, ==, 0);
}

/* After a failed load nothing is written over the evidence. */
static void test_failed_load_refuses_writes(void) {
        g_autoptr(TmpDir) t = tmp_dir_new();
        g_autoptr(State) s = NULL;
        g_autoptr(Registry) r = registry_new(NULL);
        g_autofree char *garbage = g_strdup("image-access-state 1\ngeneration 1\n");
        g_autofree char *after = NULL;

        write_file(t->path, "state", garbage, strlen(garbage));
        g_assert_cmpint(state_open(t->path, &s), ==, 0);
        g_assert_cmpint(state_load(s, r, NULL), ==, -EBADMSG);
        g_assert_cmpint(state_log_bus_id(s, "x"), ==, -EROFS);
        g_assert_cmpint(state_maybe_compact(s, r, true), ==, -EROFS);

        after = read_file(t->path, "state", NULL);
        g_assert_cmpstr(after, ==, garbage);
}

/* ---- round trips ------------------------------------------------------------------------ */

static void test_round_trip_journal(void) {
        g_autoptr(TmpDir) t = tmp_dir_new();
        g_autoptr(Registry) ref = registry_new(NULL), loaded = NULL;
        g_autoptr(State) s = NULL;
        g_autofree char *error = NULL;

        g_assert_cmpint(state_open(t->path, &s), ==, 0);
        g_assert_cmpint(state_load(s, ref, NULL), ==, 0);
        populate(ref, s);
        g_assert_false(file_exists(t->path, "state"));

        g_assert_cmpint(load_dir(t->path, NULL, &loaded, &error), ==, 0);
        g_assert_null(error);
        assert_registry_equal(ref, loaded);
}

static void test_round_trip_snapshot(void) {
        g_autoptr(TmpDir) t = tmp_dir_new();
        g_autofree char *path = file_in(t->path, "state");
        g_autoptr(Registry) ref = registry_new(NULL), loaded = NULL;
        g_autofree char *error = NULL;

        populate(ref, NULL);
        g_assert_cmpint(state_write_snapshot(ref, path), ==, 0);
        g_assert_cmpuint(file_mode(path), ==, 0600);

        g_assert_cmpint(load_dir(t->path, NULL, &loaded, &error), ==, 0);
        g_assert_null(error);
        assert_registry_equal(ref, loaded);

        /* Writing a loaded registry again gives the same registry (no drift). */
        g_assert_cmpint(state_write_snapshot(loaded, path), ==, 0);
        g_clear_pointer(&loaded, registry_free);
        g_assert_cmpint(load_dir(t->path, NULL, &loaded, NULL), ==, 0);
        assert_registry_equal(ref, loaded);
}

/* The paths of @guest's grants in the order they were made (Grant.serial). */
static GPtrArray *grants_in_order(Registry *r, const char *guest) {
        Guest *g = registry_get_guest(r, guest);
        GPtrArray *grants = g_ptr_array_new(), *paths = g_ptr_array_new();
        GHashTableIter it;
        gpointer value;

        g_assert_nonnull(g);
        g_hash_table_iter_init(&it, g->grants);
        while (g_hash_table_iter_next(&it, NULL, &value))
                g_ptr_array_add(grants, value);
        g_ptr_array_sort(grants, grant_serial_compare);
        for (guint i = 0; i < grants->len; i++)
                g_ptr_array_add(paths, ((Grant *) grants->pdata[i])->path);
        g_ptr_array_unref(grants);
        return paths;
}

/* Asking polkit ahead follows the order of a guest's grants (open.c): a snapshot keeps it,
 * whatever order the table holds them in. */
static void test_snapshot_keeps_grant_order(void) {
        g_autoptr(TmpDir) t = tmp_dir_new();
        g_autofree char *path = file_in(t->path, "state");
        g_autoptr(Registry) ref = registry_new(NULL), loaded = NULL;
        g_autoptr(GPtrArray) before = NULL, after = NULL;
        g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);

        do_add_guest(ref, NULL, "vm1", NULL, NULL, false, 0);
        /* Not in the order of their names, nor of any hash of them. */
        for (unsigned i = 0; i < 40; i++)
                g_ptr_array_add(names, g_strdup_printf("/images/disk-%u.qcow2", (i * 17) % 40));
        for (guint i = 0; i < names->len; i++)
                do_grant(ref, NULL, "vm1", names->pdata[i], IA_MODE_READ_WRITE);
        before = grants_in_order(ref, "vm1");
        g_assert_cmpuint(before->len, ==, names->len);
        for (guint i = 0; i < names->len; i++)
                g_assert_cmpstr(before->pdata[i], ==, names->pdata[i]);

        g_assert_cmpint(state_write_snapshot(ref, path), ==, 0);
        g_assert_cmpint(load_dir(t->path, NULL, &loaded, NULL), ==, 0);
        after = grants_in_order(loaded, "vm1");
        g_assert_cmpuint(after->len, ==, names->len);
        for (guint i = 0; i < names->len; i++)
                g_assert_cmpstr(after->pdata[i], ==, names->pdata[i]);
}

static void test_round_trip_empty(void) {
        g_autoptr(TmpDir) t = tmp_dir_new();
        g_autofree char *path = file_in(t->path, "state");
        g_autoptr(Registry) ref = registry_new(NULL), loaded = NULL;

        g_assert_cmpint(state_write_snapshot(ref, path), ==, 0);
        g_assert_cmpint(load_dir(t->path, NULL, &loaded, NULL), ==, 0);
        assert_registry_equal(ref, loaded);
}

/* Large enough (> 1 MiB) that state.c maps the snapshot instead of reading it. */
static void test_round_trip_large(void) {
        g_autoptr(TmpDir) t = tmp_dir_new();
        g_autofree char *path = file_in(t->path, "state");
        g_autoptr(Registry) ref = registry_new(NULL), loaded = NULL;
        const unsigned n_guests = 200, n_grants = 50;
        g_autofree char *data = NULL;
        size_t len;

        for (unsigned i = 0; i < n_guests; i++) {
                g_autofree char *name = g_strdup_printf("guest-%04u", i);
                Binding *b;

                do_add_guest(ref, NULL, name, i % 2 ? UUID : NULL, i % 3 ? "a guest" : NULL,
                             i % 5 == 0, 1000 + i);
                for (unsigned j = 0; j < n_grants; j++) {
                        g_autofree char *p = NULL;

                        p = g_strdup_printf("/var/lib/libvirt/images/a storage pool with a "
                                            "rather long name/%s/disk %02u.qcow2", name, j);

                        do_grant(ref, NULL, name, p, (IaMode) ((i + j) % _IA_MODE_MAX));
                        if (j % 10 == 0)
                                do_mark_created(ref, NULL, name, p, i, j);
                }
                b = do_bind(ref, NULL, name, 1000 + i, i * 7, 107);
                do_connect(ref, NULL, name, b, ":1.1");
        }
        g_assert_cmpuint(ref->n_grants, ==, n_guests * n_grants);

        g_assert_cmpint(state_write_snapshot(ref, path), ==, 0);
        g_assert_cmpint(load_dir(t->path, NULL, &loaded, NULL), ==, 0);
        assert_registry_equal(ref, loaded);

        /* The mapped file is checked like a read one. */
        data = read_file(t->path, "state", &len);
        g_assert_cmpuint(len, >, 1u << 20);
        for (size_t cut = len / 3; cut < len; cut += len / 7) {
                write_file(t->path, "state", data, cut);
                assert_load_fails(t->path, "truncated");
        }
        for (size_t i = 7; i < len; i += len / 5) {
                data[i] ^= 0x04;
                write_file(t->path, "state", data, len);
                assert_load_fails(t->path, "state");
                data[i] ^= 0x04;
        }
        write_file(t->path, "state", data, len - 1);
        assert_load_fails(t->path, "truncated");
}

static void test_log_invalid(void) {
        g_autoptr(TmpDir) t = tmp_dir_new();
        g_autoptr(State) s = NULL;
        g_autoptr(Registry) r = registry_new(NULL);
        Grant bad_grant = { .path = (char *) "/a/../b", .mode = IA_MODE_READ_ONLY };
        Grant bad_mode = { .path = (char *) "/a", .mode = _IA_MODE_MAX };
        Guest bad_guest = { .name = (char *) "-x" };
        Binding *b;
        size_t before, after;
        g_autofree char *j1 = NULL, *j2 = NULL;

        g_assert_cmpint(state_open(t->path, &s), ==, 0);
        g_assert_cmpint(state_load(s, r, NULL), ==, 0);
        do_add_guest(r, s, "vm", NULL, NULL, false, 0);
        b = do_bind(r, s, "vm", 5, 5, 5);
        j1 = read_file(t->path, "journal", &before);

        /* Values that could never be loaded again are not written. */
        g_assert_cmpint(state_log_add_guest(s, &bad_guest), ==, -EINVAL);
        g_assert_cmpint(state_log_remove_guest(s, "a b"), ==, -EINVAL);
        g_assert_cmpint(state_log_grant(s, "vm", &bad_grant), ==, -EINVAL);
        g_assert_cmpint(state_log_grant(s, "vm", &bad_mode), ==, -EINVAL);
        g_assert_cmpint(state_log_grant(s, "", &bad_mode), ==, -EINVAL);
        g_assert_cmpint(state_log_revoke(s, "vm", "relative"), ==, -EINVAL);
        g_assert_cmpint(state_log_remove_binding(s, "vm", 0, 1), ==, -EINVAL);
        g_assert_cmpint(state_log_add_connection(s, "vm", 5, 5, "not:unique"), ==, -EINVAL);
        g_assert_cmpint(state_log_add_connection(s, "vm", 5, 5, NULL), ==, -EINVAL);
        g_assert_cmpint(state_log_forget_connection(s, ":1"), ==, -EINVAL);
        b->euid = (uid_t) -1;
        g_assert_cmpint(state_log_add_binding(s, "vm", b), ==, -EINVAL);

        j2 = read_file(t->path, "journal", &after);
        g_assert_cmpuint(before, ==, after);
}

/* ---- the snapshot: truncation, corruption, versions ------------------------------------- */

static void test_snapshot_truncated(void) {
        g_autoptr(TmpDir) t = tmp_dir_new();
        g_autofree char *path = file_in(t->path, "state");
        g_autoptr(Registry) ref = registry_new(NULL);
        g_autofree char *data = NULL;
        size_t len;

        populate(ref, NULL);
        g_assert_cmpint(state_write_snapshot(ref, path), ==, 0);
        data = read_file(t->path, "state", &len);
        g_assert_cmpuint(len, >, 500);

        /* Lengths short of the whole file, from empty to one byte short. */
        for (size_t cut = 0; cut < len; cut++) {
                if (!damage_offset(cut, len))
                        continue;
                write_file(t->path, "state", data, cut);
                assert_load_fails(t->path, "state");
        }

        write_file(t->path, "state", data, len);
        {
                g_autoptr(Registry) loaded = NULL;

                g_assert_cmpint(load_dir(t->path, NULL, &loaded, NULL), ==, 0);
                assert_registry_equal(ref, loaded);
        }
}

static void test_snapshot_truncated_messages(void) {
        g_autoptr(TmpDir) t = tmp_dir_new();
        g_autofree char *path = file_in(t->path, "state");
        g_autoptr(Registry) ref = registry_new(NULL);
        g_autofree char *data = NULL;
        const char *trailer;
        size_t len;

        populate(ref, NULL);
        g_assert_cmpint(state_write_snapshot(ref, path), ==, 0);
        data = read_file(t->path, "state", &len);
        trailer = g_strrstr(data, "\nend ") + 1;

        write_file(t->path, "state", data, 0);
        assert_load_fails(t->path, "empty");
        write_file(t->path, "state", data, 10);
        assert_load_fails(t->path, "truncated");
        /* Cut at a line boundary: every line is complete, the trailer is missing. */
        write_file(t->path, "state", data, (size_t) (trailer - data));
        assert_load_fails(t->path, "trailer");
        write_file(t->path, "state", data, len - 1);
        assert_load_fails(t->path, "truncated");
}

static void test_snapshot_flipped_byte(void) {
        g_autoptr(TmpDir) t = tmp_dir_new();
        g_autofree char *path = file_in(t->path, "state");
        g_autoptr(Registry) ref = registry_new(NULL);
        g_autofree char *data = NULL;
        size_t len;

        populate(ref, NULL);
        g_assert_cmpint(state_write_snapshot(ref, path), ==, 0);
        data = read_file(t->path, "state", &len);

        for (size_t i = 0; i < len; i++) {
                /* The lowest and the highest bit, in turn. */
                char flip = i % 2 ? 0x01 : (char) 0x80;

                if (!damage_offset(i, len))
                        continue;
                data[i] ^= flip;
                write_file(t->path, "state", data, len);
                assert_load_fails(t->path, "state");
                data[i] ^= flip;
        }
}

static void test_snapshot_checksum_message(void) {
        g_autoptr(TmpDir) t = tmp_dir_new();
        g_autofree char *path = file_in(t->path, "state");
        g_autoptr(Registry) ref = registry_new(NULL);
        g_autofree char *data = NULL;
        char *p;
        size_t len;

        populate(ref, NULL);
        g_assert_cmpint(state_write_snapshot(ref, path), ==, 0);
        data = read_file(t->path, "state", &len);

        /* One letter of a path, which still parses: only the checksum can tell. */
        p = strstr(data, "overlay.qcow2");
        g_assert_nonnull(p);
        p[0] = 'O';
        write_file(t->path, "state", data, len);
        assert_load_fails(t->path, "checksum mismatch");
}

static void test_snapshot_unknown_version(void) {
        g_autoptr(TmpDir) t = tmp_dir_new();
        g_autofree char *v3 = seal_snapshot("image-access-state 3\ngeneration 1\nbus-id -\n");
        g_autofree char *v0 = seal_snapshot("image-access-state 0\ngeneration 1\nbus-id -\n");
        g_autofree char *magic = seal_snapshot("image-access-stat 1\ngeneration 1\nbus-id -\n");
        g_autofree char *ok = seal_snapshot("image-access-state 1\ngeneration 1\nbus-id -\n");
        g_autoptr(Registry) r = NULL;

        /* The version is checked before anything else, even with a valid checksum. */
        write_file(t->path, "state", v3, strlen(v3));
        assert_load_fails(t->path, "version '3'");
        write_file(t->path, "state", v0, strlen(v0));
        assert_load_fails(t->path, "version '0'");
        write_file(t->path, "state", magic, strlen(magic));
        assert_load_fails(t->path, "not an image-access state file");

        /* The hand-written version 1 file is accepted: the format is what state.c says. */
        write_file(t->path, "state", ok, strlen(ok));
        g_assert_cmpint(load_dir(t->path, NULL, &r, NULL), ==, 0);
}

/* Hand-written snapshots with a valid checksum whose content is wrong. */
static void test_snapshot_bad_records(void) {
        static const struct {
                const char *body;
                const char *what;
        } cases[] = {
                { "image-access-state 1\nbus-id -\ngeneration 1\n", "expected 'generation'" },
                { "image-access-state 1\ngeneration 1\n", "no generation or bus-id" },
                { "image-access-state 1\ngeneration x\nbus-id -\n", "bad generation" },
                { "image-access-state 1\ngeneration 01\nbus-id -\n", "bad generation" },
                { "image-access-state 1\ngeneration 1\nbus-id -\ngrant \"/a\" read-only - -\n",
                  "before any guest" },
                { "image-access-state 1\ngeneration 1\nbus-id -\nguest \"vm\" - - -\n"
                  "grant \"/a/../b\" read-only - -\n", "does not apply" },
                { "image-access-state 1\ngeneration 1\nbus-id -\nguest \"vm\" - - -\n"
                  "grant \"/a\" read-only - -\ngrant \"/a\" read-only - -\n", "duplicate grant" },
                { "image-access-state 1\ngeneration 1\nbus-id -\nguest \"vm\" - - -\n"
                  "grant \"/a\" sideways - -\n", "unknown mode" },
                { "image-access-state 1\ngeneration 1\nbus-id -\nguest \"vm\" - - -\n"
                  "grant \"/a\" read-only 1: -\n", "bad inode" },
                { "image-access-state 1\ngeneration 1\nbus-id -\nguest \"vm\" - - -\n"
                  "guest \"vm\" - - -\n", "does not apply" },
                { "image-access-state 1\ngeneration 1\nbus-id -\nguest \"a b\" - - -\n",
                  "does not apply" },
                { "image-access-state 1\ngeneration 1\nbus-id -\nguest \"vm\" - - 4294967295\n",
                  "bad uid" },
                { "image-access-state 1\ngeneration 1\nbus-id -\nguest \"vm\" - - -\n"
                  "connection \":1.1\"\n", "before any binding" },
                { "image-access-state 1\ngeneration 1\nbus-id -\nguest \"vm\" - - -\n"
                  "binding 0 1 1\n", "bad pid" },
                { "image-access-state 1\ngeneration 1\nbus-id -\nguest \"vm\" - - -\n"
                  "binding 1 1 1\nbinding 1 1 2\n", "duplicate binding" },
                { "image-access-state 1\ngeneration 1\nbus-id -\nguest \"vm\" - - -\n"
                  "binding 1 1 1\nconnection \":1.1\"\nconnection \":1.1\"\n",
                  "duplicate connection" },
                { "image-access-state 1\ngeneration 1\nbus-id -\nguest \"vm\" - - -\n"
                  "binding 1 1 1\nconnection \"name\"\n", "does not apply" },
                { "image-access-state 1\ngeneration 1\nbus-id -\nguest \"vm\" - - -\n"
                  "binding 1 1 1\nguest \"vm2\" - - -\nconnection \":1.1\"\n",
                  "before any binding" },
                { "image-access-state 1\ngeneration 1\nbus-id -\nfrobnicate\n",
                  "unknown record" },
                { "image-access-state 1\ngeneration 1\nbus-id -\nguest \"vm\"  - - -\n",
                  "expected a quoted string" },
                { "image-access-state 1\ngeneration 1\nbus-id -\nguest \"vm\" - - - \n",
                  "unexpected data" },
                { "image-access-state 1\ngeneration 1\nbus-id -\nguest \"vm\" - - - x\n",
                  "unexpected data" },
                { "image-access-state 1\ngeneration 1\nbus-id -\nguest \"vm - - -\n",
                  "unterminated" },
                { "image-access-state 1\ngeneration 1\nbus-id -\nguest \"v\\x00m\" - - -\n",
                  "escape" },
                { "image-access-state 1\ngeneration 1\nbus-id -\nguest \"v\\qm\" - - -\n",
                  "unknown escape" },
                { "image-access-state 1\ngeneration 1\nbus-id -\nguest \"v\tm\" - - -\n",
                  "raw control byte" },
                { "image-access-state 1\ngeneration 1\nbus-id \"x\ny\"\n", "unterminated" },
        };
        g_autoptr(TmpDir) t = tmp_dir_new();

        for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
                g_autofree char *data = seal_snapshot(cases[i].body);

                g_test_message("case %zu", i);
                write_file(t->path, "state", data, strlen(data));
                assert_load_fails(t->path, cases[i].what);
        }
}

static void test_snapshot_line_numbers(void) {
        g_autoptr(TmpDir) t = tmp_dir_new();
        g_autofree char *data = seal_snapshot("image-access-state 1\ngeneration 1\nbus-id -\n"
                                              "guest \"vm\" - - -\ngrant \"/a\" read-only - -\n"
                                              "grant \"/b\" write-only - -\n");
        g_autofree char *expected = g_strdup_printf("%s/state:6: unknown mode 'write-only'",
                                                    t->path);
        g_autoptr(Registry) r = NULL;
        g_autofree char *error = NULL;

        write_file(t->path, "state", data, strlen(data));
        g_assert_cmpint(load_dir(t->path, NULL, &r, &error), ==, -EBADMSG);
        g_assert_cmpstr(error, ==, expected);
}

/* A state beyond the limits of the registry it is loaded into does not half-load. */
static void test_snapshot_limits(void) {
        g_autoptr(TmpDir) t = tmp_dir_new();
        g_autofree char *path = file_in(t->path, "state");
        g_autoptr(Registry) ref = registry_new(NULL), r = NULL;
        RegistryLimits limits = REGISTRY_LIMITS_DEFAULT;
        g_autofree char *error = NULL;

        populate(ref, NULL);
        g_assert_cmpint(state_write_snapshot(ref, path), ==, 0);

        limits.max_grants_per_guest = 3;
        g_assert_cmpint(load_dir(t->path, &limits, &r, &error), ==, -EBADMSG);
        g_assert_nonnull(strstr(error, "does not apply"));
        g_assert_cmpuint(g_hash_table_size(r->guests), ==, 0);
        g_assert_cmpuint(r->n_grants, ==, 0);

        g_clear_pointer(&r, registry_free);
        g_clear_pointer(&error, g_free);
        limits = REGISTRY_LIMITS_DEFAULT;
        limits.max_connections_per_binding = 1;
        g_assert_cmpint(load_dir(t->path, &limits, &r, &error), ==, -EBADMSG);
        g_assert_cmpuint(g_hash_table_size(r->guests), ==, 0);
}

/* ---- the journal ------------------------------------------------------------------------ */

static void test_journal_torn_last_line(void) {
        g_autoptr(TmpDir) t = tmp_dir_new();
        g_autoptr(Registry) ref = registry_new(NULL);
        g_autoptr(State) s = NULL;
        g_autofree char *partial = journal_line("add-guest \"torn\" - - -");

        g_assert_cmpint(state_open(t->path, &s), ==, 0);
        g_assert_cmpint(state_load(s, ref, NULL), ==, 0);
        populate(ref, s);
        g_clear_pointer(&s, state_free);

        /* A complete record but for its newline: the write was never acknowledged. */
        partial[strlen(partial) - 1] = '\0';
        append_file(t->path, "journal", partial);

        {
                g_autoptr(Registry) loaded = registry_new(NULL);
                g_autofree char *error = NULL;

                g_assert_cmpint(state_open(t->path, &s), ==, 0);
                g_assert_cmpint(state_load(s, loaded, &error), ==, 0);
                g_assert_null(error);
                assert_registry_equal(ref, loaded);
                g_assert_null(registry_get_guest(loaded, "torn"));

                /* The next record is not glued to the torn one: it is cut off first. */
                do_add_guest(ref, NULL, "after", NULL, NULL, false, 0);
                do_add_guest(loaded, s, "after", NULL, NULL, false, 0);
                g_clear_pointer(&s, state_free);
        }
        {
                g_autoptr(Registry) loaded = NULL;
                g_autofree char *journal = read_file(t->path, "journal", NULL);

                g_assert_null(strstr(journal, "torn"));
                g_assert_cmpint(load_dir(t->path, NULL, &loaded, NULL), ==, 0);
                assert_registry_equal(ref, loaded);
        }
}

static void test_journal_torn_header(void) {
        g_autoptr(TmpDir) t = tmp_dir_new();
        g_autoptr(State) s = NULL;
        g_autoptr(Registry) r = registry_new(NULL), loaded = NULL;

        write_file(t->path, "journal", "image-access-jour", 17);
        g_assert_cmpint(state_open(t->path, &s), ==, 0);
        g_assert_cmpint(state_load(s, r, NULL), ==, 0);
        do_add_guest(r, s, "vm", NULL, NULL, false, 0);
        g_clear_pointer(&s, state_free);

        g_assert_cmpint(load_dir(t->path, NULL, &loaded, NULL), ==, 0);
        assert_registry_equal(r, loaded);
}

static void test_journal_bad_line(void) {
        g_autoptr(TmpDir) t = tmp_dir_new();
        g_autoptr(Registry) ref = registry_new(NULL);
        g_autoptr(State) s = NULL;
        g_autofree char *data = NULL, *where = NULL;
        char *line3;
        size_t len;

        g_assert_cmpint(state_open(t->path, &s), ==, 0);
        g_assert_cmpint(state_load(s, ref, NULL), ==, 0);
        populate(ref, s);
        g_clear_pointer(&s, state_free);
        data = read_file(t->path, "journal", &len);

        /* A flipped byte in line 3, in the middle of the journal. */
        line3 = strchr(strchr(data, '\n') + 1, '\n') + 1;
        line3[3] ^= 0x20;
        write_file(t->path, "journal", data, len);
        where = g_strdup_printf("%s/journal:3: checksum mismatch", t->path);
        assert_load_fails(t->path, where);
        line3[3] ^= 0x20;

        /* A bad *complete* last line is corruption too, not a torn write. */
        write_file(t->path, "journal", data, len);
        append_file(t->path, "journal", "add-guest \"x\" - - - 0000000000000000\n");
        assert_load_fails(t->path, "checksum mismatch");

        write_file(t->path, "journal", data, len);
        append_file(t->path, "journal", "no checksum at all\n");
        assert_load_fails(t->path, "no checksum");

        /* A lost newline merges two records into one bad line. */
        {
                char *nl = strchr(line3, '\n');

                *nl = ' ';
                write_file(t->path, "journal", data, len);
                assert_load_fails(t->path, "journal:3:");
                *nl = '\n';
        }

        /* Every byte of the journal but the final newline matters. */
        for (size_t i = 0; i + 1 < len; i++) {
                if (!damage_offset(i, len))
                        continue;
                data[i] ^= 0x01;
                write_file(t->path, "journal", data, len);
                assert_load_fails(t->path, "journal");
                data[i] ^= 0x01;
        }
}

static void test_journal_does_not_apply(void) {
        g_autoptr(TmpDir) t = tmp_dir_new();
        static const struct {
                const char *record;
                const char *what;
        } cases[] = {
                { "revoke \"vm\" \"/nope\"", "'revoke' does not apply" },
                { "grant \"nobody\" \"/a\" read-only - -", "'grant' does not apply" },
                { "grant \"vm\" \"/a/\" read-only - -", "'grant' does not apply" },
                { "add-guest \"vm\" - - -", "'add-guest' does not apply" },
                { "remove-guest \"nobody\"", "'remove-guest' does not apply" },
                { "remove-binding \"vm\" 1 1", "'remove-binding' does not apply" },
                { "add-connection \"vm\" 1 1 \":1.1\"", "'add-connection' does not apply" },
                { "add-binding \"vm\" 1 1 1 \":1.1\" \"bad\"", "'add-binding' does not apply" },
                { "add-binding \"vm\" 0 1 1", "bad pid" },
                { "add-binding \"vm\" 1 1 4294967295", "bad euid" },
                { "bus-id", "too few fields" },
                { "launch-missiles", "unknown record" },
                { "image-access-journal 1 0", "unknown record" },
        };

        for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
                g_autofree char *journal = journal_of("image-access-journal 1 0",
                                                      "add-guest \"vm\" - - -",
                                                      cases[i].record, NULL);

                g_test_message("case %zu", i);
                write_file(t->path, "journal", journal, strlen(journal));
                assert_load_fails(t->path, cases[i].what);
        }
}

static void test_journal_unknown_version(void) {
        g_autoptr(TmpDir) t = tmp_dir_new();
        g_autofree char *v3 = journal_of("image-access-journal 3 0", "add-guest \"vm\" - - -",
                                         NULL);
        g_autofree char *magic = journal_of("image-access-jour 1 0", NULL);
        g_autofree char *ok = journal_of("image-access-journal 1 0", "add-guest \"vm\" - - -",
                                         NULL);
        g_autoptr(Registry) r = NULL;

        write_file(t->path, "journal", v3, strlen(v3));
        assert_load_fails(t->path, "version '3'");
        write_file(t->path, "journal", magic, strlen(magic));
        assert_load_fails(t->path, "not an image-access journal file");

        write_file(t->path, "journal", ok, strlen(ok));
        g_assert_cmpint(load_dir(t->path, NULL, &r, NULL), ==, 0);
        g_assert_nonnull(registry_get_guest(r, "vm"));
}

/* A journal without the snapshot it belongs to is a loss, reported, not ignored. */
static void test_journal_newer_than_snapshot(void) {
        g_autoptr(TmpDir) t = tmp_dir_new();
        g_autofree char *journal = journal_of("image-access-journal 1 5", "add-guest \"vm\" - - -",
                                              NULL);
        g_autofree char *snapshot = seal_snapshot("image-access-state 1\ngeneration 4\n"
                                                  "bus-id -\n");

        write_file(t->path, "journal", journal, strlen(journal));
        assert_load_fails(t->path, "newer than the snapshot");
        write_file(t->path, "state", snapshot, strlen(snapshot));
        assert_load_fails(t->path, "newer than the snapshot");
}

/* A snapshot prepared by a tool supersedes whatever journal is in the directory. */
static void test_write_snapshot_supersedes_journal(void) {
        g_autoptr(TmpDir) t = tmp_dir_new();
        g_autofree char *path = file_in(t->path, "state");
        g_autofree char *journal = journal_of("image-access-journal 1 0", "add-guest \"old\" - - -",
                                              NULL);
        g_autoptr(Registry) ref = registry_new(NULL), loaded = NULL;

        write_file(t->path, "journal", journal, strlen(journal));
        populate(ref, NULL);
        g_assert_cmpint(state_write_snapshot(ref, path), ==, 0);
        g_assert_cmpint(load_dir(t->path, NULL, &loaded, NULL), ==, 0);
        assert_registry_equal(ref, loaded);
}

/* ---- compaction ------------------------------------------------------------------------- */

static void test_compact_equal(void) {
        g_autoptr(TmpDir) t = tmp_dir_new();
        g_autofree char *path = file_in(t->path, "state");
        g_autoptr(Registry) ref = registry_new(NULL), loaded = NULL;
        g_autoptr(State) s = NULL;
        g_autofree char *journal = NULL;
        g_autoptr(GDir) d = NULL;
        const char *name;
        size_t len;

        g_assert_cmpint(state_open(t->path, &s), ==, 0);
        g_assert_cmpint(state_load(s, ref, NULL), ==, 0);
        populate(ref, s);

        /* Small journal: nothing to do unless forced. */
        g_assert_cmpint(state_maybe_compact(s, ref, false), ==, 0);
        g_assert_false(file_exists(t->path, "state"));
        g_assert_cmpint(state_maybe_compact(s, ref, true), ==, 1);
        g_assert_cmpuint(file_mode(path), ==, 0600);

        /* The journal is down to its header; no temp file is left behind. */
        journal = read_file(t->path, "journal", &len);
        g_assert_true(g_str_has_prefix(journal, "image-access-journal 2 "));
        g_assert_nonnull(strchr(journal, '\n'));
        g_assert_cmpuint(strchr(journal, '\n') - journal + 1, ==, len);
        d = g_dir_open(t->path, 0, NULL);
        while ((name = g_dir_read_name(d)))
                g_assert_true(g_str_equal(name, "state") || g_str_equal(name, "journal") ||
                              g_str_equal(name, "lock"));

        g_assert_cmpint(load_dir(t->path, NULL, &loaded, NULL), ==, 0);
        assert_registry_equal(ref, loaded);
        g_clear_pointer(&loaded, registry_free);

        /* Records after a compaction land in the new journal. */
        do_add_guest(ref, s, "late", NULL, NULL, true, 5);
        do_grant(ref, s, "late", "/late", IA_MODE_READ_ONLY);
        do_revoke(ref, s, "vm1", hostile_paths[0]);
        g_assert_cmpint(load_dir(t->path, NULL, &loaded, NULL), ==, 0);
        assert_registry_equal(ref, loaded);
        g_clear_pointer(&loaded, registry_free);

        /* And a second compaction. */
        g_assert_cmpint(state_maybe_compact(s, ref, true), ==, 1);
        g_assert_cmpint(load_dir(t->path, NULL, &loaded, NULL), ==, 0);
        assert_registry_equal(ref, loaded);
}

/*
 * The crash between the two steps of a compaction: the new snapshot is in place, the old
 * journal was never emptied.  Its records are all in the snapshot; replaying them would fail
 * (add-guest of an existing guest) or double-apply.
 */
static void test_compact_crash_between(void) {
        g_autoptr(TmpDir) t = tmp_dir_new();
        g_autoptr(Registry) ref = registry_new(NULL), loaded = NULL;
        g_autoptr(State) s = NULL;
        g_autofree char *old_journal = NULL;
        size_t len;

        g_assert_cmpint(state_open(t->path, &s), ==, 0);
        g_assert_cmpint(state_load(s, ref, NULL), ==, 0);
        populate(ref, s);
        old_journal = read_file(t->path, "journal", &len);

        g_assert_cmpint(state_maybe_compact(s, ref, true), ==, 1);
        g_clear_pointer(&s, state_free);
        write_file(t->path, "journal", old_journal, len);

        {
                g_autoptr(Registry) r = registry_new(NULL);
                g_autofree char *error = NULL;

                g_assert_cmpint(state_open(t->path, &s), ==, 0);
                g_assert_cmpint(state_load(s, r, &error), ==, 0);
                g_assert_null(error);
                assert_registry_equal(ref, r);

                /* The stale journal is started afresh by the next record, not appended to. */
                do_add_guest(ref, NULL, "after-crash", NULL, NULL, false, 0);
                do_add_guest(r, s, "after-crash", NULL, NULL, false, 0);
                g_clear_pointer(&s, state_free);
        }

        g_assert_cmpint(load_dir(t->path, NULL, &loaded, NULL), ==, 0);
        assert_registry_equal(ref, loaded);

        /* The same with a torn record at the end of the stale journal. */
        g_clear_pointer(&loaded, registry_free);
        g_clear_pointer(&old_journal, g_free);
        g_assert_cmpint(state_open(t->path, &s), ==, 0);
        loaded = registry_new(NULL);
        g_assert_cmpint(state_load(s, loaded, NULL), ==, 0);
        old_journal = read_file(t->path, "journal", &len);
        g_assert_cmpint(state_maybe_compact(s, loaded, true), ==, 1);
        g_clear_pointer(&s, state_free);
        write_file(t->path, "journal", old_journal, len);
        append_file(t->path, "journal", "revoke \"vm1\" \"/dev/s");
        g_clear_pointer(&loaded, registry_free);
        g_assert_cmpint(load_dir(t->path, NULL, &loaded, NULL), ==, 0);
        assert_registry_equal(ref, loaded);
}

/* The automatic threshold: max(1 MiB, snapshot size). */
static void test_compact_threshold(void) {
        g_autoptr(TmpDir) t = tmp_dir_new();
        g_autoptr(Registry) r = registry_new(NULL), loaded = NULL;
        g_autoptr(State) s = NULL;
        GString *journal = g_string_new(NULL);
        g_autofree char *data = NULL;
        size_t len;

        /* Hand-written, because 20,000 fdatasync()ed appends take a while on a real disk. */
        {
                g_autofree char *header = journal_line("image-access-journal 1 0");
                g_autofree char *guest = journal_line("add-guest \"vm\" - - -");

                g_string_append(journal, header);
                g_string_append(journal, guest);
        }
        for (unsigned i = 0; journal->len <= (1u << 20); i++) {
                g_autofree char *rec = g_strdup_printf("grant \"vm\" \"/img/%u\" read-only - -",
                                                       i % 100);
                g_autofree char *line = journal_line(rec);

                g_string_append(journal, line);
        }
        write_file(t->path, "journal", journal->str, journal->len);
        g_string_free(journal, TRUE);

        g_assert_cmpint(state_open(t->path, &s), ==, 0);
        g_assert_cmpint(state_load(s, r, NULL), ==, 0);
        g_assert_cmpuint(r->n_grants, ==, 100);
        g_assert_cmpint(state_maybe_compact(s, r, false), ==, 1);
        g_assert_cmpint(state_maybe_compact(s, r, false), ==, 0);

        data = read_file(t->path, "journal", &len);
        g_assert_cmpuint(len, <, 100);
        g_assert_cmpint(load_dir(t->path, NULL, &loaded, NULL), ==, 0);
        assert_registry_equal(r, loaded);
}

int main(int argc, char *argv[]) {
        g_test_init(&argc, &argv, NULL);

        g_test_add_func("/state/open/creates", test_open_creates);
        g_test_add_func("/state/open/fixes-mode", test_open_fixes_mode);
        g_test_add_func("/state/open/errors", test_open_errors);
        g_test_add_func("/state/open/removes-stale-temp", test_open_removes_stale_temp);
        g_test_add_func("/state/open/locked", test_open_locked);
        g_test_add_func("/state/load/nothing", test_load_nothing);
        g_test_add_func("/state/load/not-empty", test_load_not_empty);
        g_test_add_func("/state/load/retired", test_load_retired);
        g_test_add_func("/state/load/file-ids", test_load_file_ids);
        g_test_add_func("/state/load/write-before-load", test_write_before_load);
        g_test_add_func("/state/load/failed-load-refuses-writes", test_failed_load_refuses_writes);
        g_test_add_func("/state/round-trip/journal", test_round_trip_journal);
        g_test_add_func("/state/round-trip/snapshot", test_round_trip_snapshot);
        g_test_add_func("/state/snapshot/grant-order", test_snapshot_keeps_grant_order);
        g_test_add_func("/state/round-trip/empty", test_round_trip_empty);
        g_test_add_func("/state/round-trip/large", test_round_trip_large);
        g_test_add_func("/state/round-trip/log-invalid", test_log_invalid);
        g_test_add_func("/state/snapshot/truncated", test_snapshot_truncated);
        g_test_add_func("/state/snapshot/truncated-messages", test_snapshot_truncated_messages);
        g_test_add_func("/state/snapshot/flipped-byte", test_snapshot_flipped_byte);
        g_test_add_func("/state/snapshot/checksum-message", test_snapshot_checksum_message);
        g_test_add_func("/state/snapshot/unknown-version", test_snapshot_unknown_version);
        g_test_add_func("/state/snapshot/bad-records", test_snapshot_bad_records);
        g_test_add_func("/state/snapshot/line-numbers", test_snapshot_line_numbers);
        g_test_add_func("/state/snapshot/limits", test_snapshot_limits);
        g_test_add_func("/state/snapshot/supersedes-journal",
                        test_write_snapshot_supersedes_journal);
        g_test_add_func("/state/journal/torn-last-line", test_journal_torn_last_line);
        g_test_add_func("/state/journal/torn-header", test_journal_torn_header);
        g_test_add_func("/state/journal/bad-line", test_journal_bad_line);
        g_test_add_func("/state/journal/does-not-apply", test_journal_does_not_apply);
        g_test_add_func("/state/journal/unknown-version", test_journal_unknown_version);
        g_test_add_func("/state/journal/newer-than-snapshot", test_journal_newer_than_snapshot);
        g_test_add_func("/state/compact/equal", test_compact_equal);
        g_test_add_func("/state/compact/crash-between", test_compact_crash_between);
        g_test_add_func("/state/compact/threshold", test_compact_threshold);

        return g_test_run();
}

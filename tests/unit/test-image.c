/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-image.c — unit tests for image.c: path validation, the safe open (no symlinks, only
 * regular files and block devices, exact access mode, CLOEXEC), create and remove.
 *
 * Meant to run as root (mknod, chown, mount namespaces); tests that need root skip without
 * it.  Every test runs in its own temporary directory, and the fixture checks that the number
 * of open fds is the same before and after, so an fd leaked on any path fails the test.
 */

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <glib.h>

#include "image.h"
#include "macro.h"

#define NOBODY_ID 65534

typedef struct Fixture {
        char *dir;              /* realpath of the temporary directory */
        unsigned n_fds;
} Fixture;

static unsigned count_fds(void) {
        g_autoptr(GDir) d = NULL;
        unsigned n = 0;

        /* The GDir's own fd is counted too, but the same every time. */
        d = g_dir_open("/proc/self/fd", 0, NULL);
        g_assert_nonnull(d);
        while (g_dir_read_name(d))
                n++;

        return n;
}

static void fixture_setup(Fixture *f, gconstpointer data) {
        g_autoptr(GError) error = NULL;
        g_autofree char *tmp = NULL;

        tmp = g_dir_make_tmp("test-image-XXXXXX", &error);
        g_assert_no_error(error);
        /* $TMPDIR may contain a symlink, which every function here rightly refuses. */
        f->dir = realpath(tmp, NULL);
        g_assert_nonnull(f->dir);

        f->n_fds = count_fds();
}

static int rm_one(const char *path, const struct stat *st, int type, struct FTW *ftw) {
        if (remove(path) < 0)
                g_warning("remove(%s): %m", path);
        return 0;
}

static void fixture_teardown(Fixture *f, gconstpointer data) {
        g_assert_cmpuint(count_fds(), ==, f->n_fds);

        g_assert_cmpint(nftw(f->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS), ==, 0);
        free(f->dir);
}

static char *tpath(Fixture *f, const char *name) {
        return g_build_filename(f->dir, name, NULL);
}

static void write_file(const char *path, const char *content) {
        g_autoptr(GError) error = NULL;

        g_assert_true(g_file_set_contents(path, content, -1, &error));
        g_assert_no_error(error);
}

static void assert_content(const char *path, const char *expected) {
        g_autoptr(GError) error = NULL;
        g_autofree char *content = NULL;

        g_assert_true(g_file_get_contents(path, &content, NULL, &error));
        g_assert_no_error(error);
        g_assert_cmpstr(content, ==, expected);
}

static void assert_absent(const char *path) {
        struct stat st;

        g_assert_cmpint(lstat(path, &st), <, 0);
        g_assert_cmpint(errno, ==, ENOENT);
}

static void assert_fd_mode(int fd, int accmode) {
        int fl, fdfl;

        fl = fcntl(fd, F_GETFL);
        g_assert_cmpint(fl, >=, 0);
        g_assert_cmpint(fl & O_ACCMODE, ==, accmode);
        g_assert_cmpint(fl & O_NONBLOCK, ==, 0);

        fdfl = fcntl(fd, F_GETFD);
        g_assert_cmpint(fdfl, >=, 0);
        g_assert_true(fdfl & FD_CLOEXEC);
}

static bool need_root(void) {
        if (geteuid() == 0)
                return true;

        g_test_skip("needs root");
        return false;
}

/*
 * Runs @func in a forked child (for mount namespaces: the mounts vanish with the child).
 * @func returns 0 for success, 77 for "skipped", anything else for failure; a failed
 * g_assert in the child aborts it, which fails the test as well.
 */
static void run_in_child(Fixture *f, int (*func)(Fixture *f)) {
        int status;
        pid_t pid;

        pid = fork();
        g_assert_cmpint(pid, >=, 0);
        if (pid == 0)
                _exit(func(f));

        g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
        g_assert_true(WIFEXITED(status));
        if (WEXITSTATUS(status) == 77) {
                g_test_skip("cannot set up a private mount namespace");
                return;
        }
        g_assert_cmpint(WEXITSTATUS(status), ==, 0);
}

static int enter_private_mount_ns(void) {
        if (unshare(CLONE_NEWNS) < 0)
                return -errno;
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                return -errno;
        return 0;
}

/* ---- path_is_valid -------------------------------------------------------------------- */

static void test_path_valid(void) {
        static const char *const good[] = {
                "/a",
                "/a/b",
                "/var/lib/images/disk.qcow2",
                "/a/.b",
                "/a/..b",
                "/a/b.",
                "/a/...",
                "/a b/c d",
                "/caf\xc3\xa9/\xe2\x82\xac.img",     /* UTF-8: "/café/€.img" */
        };
        g_autofree char *name255 = NULL, *long_ok = NULL;
        const char *reason = "untouched";
        GString *s;

        for (size_t i = 0; i < G_N_ELEMENTS(good); i++) {
                g_test_message("valid: '%s'", good[i]);
                g_assert_cmpint(path_is_valid(good[i], &reason), ==, 0);
                g_assert_cmpstr(reason, ==, "untouched");
                g_assert_cmpint(path_is_valid(good[i], NULL), ==, 0);
        }

        /* A component of exactly IMAGE_NAME_MAX bytes. */
        name255 = g_strnfill(IMAGE_NAME_MAX, 'x');
        s = g_string_new("/");
        g_string_append(s, name255);
        g_assert_cmpint(path_is_valid(s->str, NULL), ==, 0);
        g_string_free(s, TRUE);

        /* A path of exactly IMAGE_PATH_MAX bytes, in components of 100. */
        s = g_string_new(NULL);
        while (s->len + 101 <= IMAGE_PATH_MAX) {
                g_string_append_c(s, '/');
                g_string_append_len(s, name255, 100);
        }
        g_string_append_c(s, '/');
        while (s->len < IMAGE_PATH_MAX)
                g_string_append_c(s, 'y');
        long_ok = g_string_free(s, FALSE);
        g_assert_cmpuint(strlen(long_ok), ==, IMAGE_PATH_MAX);
        g_assert_cmpint(path_is_valid(long_ok, NULL), ==, 0);
}

static void test_path_invalid(void) {
        static const struct {
                const char *path;
                int error;
        } bad[] = {
                { "",            EINVAL },
                { "relative",    EINVAL },
                { "a/b",         EINVAL },
                { "./a",         EINVAL },
                { "/",           EINVAL },
                { "//",          EINVAL },
                { "//a",         EINVAL },
                { "/a//b",       EINVAL },
                { "/a/./b",      EINVAL },
                { "/a/../b",     EINVAL },
                { "/a/",         EINVAL },
                { "/a/.",        EINVAL },
                { "/a/..",       EINVAL },
                { "/.",          EINVAL },
                { "/..",         EINVAL },
                { "/../a",       EINVAL },
                { "/a\nb",       EINVAL },
                { "/a\tb",       EINVAL },
                { "/a\x01",      EINVAL },
                { "/\x1f/b",     EINVAL },
                { "/a/b\x7f",    EINVAL },
                { "/a/\x1b[31m", EINVAL },
        };
        g_autofree char *name256 = NULL;
        const char *reason;
        GString *s;

        for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
                g_autofree char *escaped = g_strescape(bad[i].path, NULL);

                g_test_message("invalid: '%s'", escaped);
                reason = NULL;
                g_assert_cmpint(path_is_valid(bad[i].path, &reason), ==, -bad[i].error);
                g_assert_nonnull(reason);
                g_assert_cmpint(path_is_valid(bad[i].path, NULL), ==, -bad[i].error);
        }

        reason = NULL;
        g_assert_cmpint(path_is_valid(NULL, &reason), ==, -EINVAL);
        g_assert_nonnull(reason);

        /* A component of IMAGE_NAME_MAX + 1 bytes, last or in the middle. */
        name256 = g_strnfill(IMAGE_NAME_MAX + 1, 'x');
        s = g_string_new("/");
        g_string_append(s, name256);
        reason = NULL;
        g_assert_cmpint(path_is_valid(s->str, &reason), ==, -ENAMETOOLONG);
        g_assert_nonnull(reason);
        g_string_append(s, "/b");
        g_assert_cmpint(path_is_valid(s->str, NULL), ==, -ENAMETOOLONG);
        g_string_free(s, TRUE);

        /* A path of IMAGE_PATH_MAX + 1 bytes made of valid components. */
        s = g_string_new(NULL);
        while (s->len < IMAGE_PATH_MAX + 1) {
                g_string_append_c(s, '/');
                g_string_append_len(s, name256, 99);
        }
        g_string_truncate(s, IMAGE_PATH_MAX + 1);
        g_assert_cmpint(path_is_valid(s->str, NULL), ==, -ENAMETOOLONG);
        /* ... and much longer. */
        g_string_append(s, "/more/and/more");
        g_assert_cmpint(path_is_valid(s->str, NULL), ==, -ENAMETOOLONG);
        g_string_free(s, TRUE);
}

/* ---- image_open: what is allowed ------------------------------------------------------ */

static void test_open_regular_ro(Fixture *f, gconstpointer data) {
        g_autofree char *p = tpath(f, "disk.img");
        ia_autofd int fd = -1;
        struct stat st, lst;
        char buf[16] = {};


        write_file(p, "hello");
        g_assert_cmpint(stat(p, &lst), ==, 0);

        g_assert_cmpint(image_open(p, IA_MODE_READ_ONLY, NULL, &fd, &st), ==, 0);
        g_assert_cmpint(fd, >=, 0);
        assert_fd_mode(fd, O_RDONLY);
        g_assert_cmpuint(st.st_dev, ==, lst.st_dev);
        g_assert_cmpuint(st.st_ino, ==, lst.st_ino);

        g_assert_cmpint(read(fd, buf, sizeof(buf) - 1), ==, 5);
        g_assert_cmpstr(buf, ==, "hello");

        /* The fd has exactly the mode asked for: no write through a read-only fd. */
        g_assert_cmpint(write(fd, "x", 1), ==, -1);
        g_assert_cmpint(errno, ==, EBADF);
        g_assert_cmpint(ftruncate(fd, 0), ==, -1);
        assert_content(p, "hello");

        /* ret_st is optional. */
        fd = ia_safe_close(fd);
        g_assert_cmpint(image_open(p, IA_MODE_READ_ONLY, NULL, &fd, NULL), ==, 0);
        assert_fd_mode(fd, O_RDONLY);
}

static void test_open_regular_rw(Fixture *f, gconstpointer data) {
        g_autofree char *p = tpath(f, "disk.img");
        ia_autofd int fd = -1;
        char buf[16] = {};
        struct stat st;


        write_file(p, "hello");

        g_assert_cmpint(image_open(p, IA_MODE_READ_WRITE, NULL, &fd, &st), ==, 0);
        assert_fd_mode(fd, O_RDWR);
        g_assert_true(S_ISREG(st.st_mode));

        /* Opened without truncation, and writable. */
        g_assert_cmpint(st.st_size, ==, 5);
        g_assert_cmpint(pwrite(fd, "J", 1, 0), ==, 1);
        g_assert_cmpint(pread(fd, buf, sizeof(buf) - 1, 0), ==, 5);
        g_assert_cmpstr(buf, ==, "Jello");
        assert_content(p, "Jello");
}

static void test_open_flags(Fixture *f, gconstpointer data) {
        g_autofree char *p = tpath(f, "disk.img");
        ImageOpenFlags flags = { .nonblock = true };
        ia_autofd int fd = -1;
        int fl, r;


        write_file(p, "hello");

        /* nonblock keeps O_NONBLOCK, without it the flag is cleared (assert_fd_mode). */
        g_assert_cmpint(image_open(p, IA_MODE_READ_ONLY, &flags, &fd, NULL), ==, 0);
        fl = fcntl(fd, F_GETFL);
        g_assert_cmpint(fl & O_NONBLOCK, ==, O_NONBLOCK);
        g_assert_cmpint(fl & O_DIRECT, ==, 0);
        g_assert_cmpint(fl & O_ACCMODE, ==, O_RDONLY);
        fd = ia_safe_close(fd);

        flags = (ImageOpenFlags) { .direct = true };
        r = image_open(p, IA_MODE_READ_WRITE, &flags, &fd, NULL);
        if (r == -EINVAL) {
                g_test_message("temporary directory's file system has no O_DIRECT");
                return;
        }
        g_assert_cmpint(r, ==, 0);
        fl = fcntl(fd, F_GETFL);
        g_assert_cmpint(fl & O_DIRECT, ==, O_DIRECT);
        g_assert_cmpint(fl & O_NONBLOCK, ==, 0);
        g_assert_cmpint(fl & O_ACCMODE, ==, O_RDWR);
}

static void test_open_blockdev(Fixture *f, gconstpointer data) {
        g_autofree char *p = tpath(f, "loop");
        ia_autofd int fd = -1;
        struct stat st;
        int r;

        if (!need_root())
                return;

        /* A loop device node: major 7, minor 0. */
        if (mknod(p, S_IFBLK | 0600, makedev(7, 0)) < 0) {
                g_test_skip("cannot mknod a block device");
                return;
        }

        r = image_open(p, IA_MODE_READ_ONLY, NULL, &fd, &st);
        /* Whatever the device says, the type check let it through. */
        g_assert_cmpint(r, !=, -EMEDIUMTYPE);
        if (r == -ENXIO) {
                g_test_message("loop0 does not exist, only the type check was tested");
                return;
        }
        g_assert_cmpint(r, ==, 0);
        g_assert_true(S_ISBLK(st.st_mode));
        g_assert_cmpuint(st.st_rdev, ==, makedev(7, 0));
        assert_fd_mode(fd, O_RDONLY);
}

/* ---- file identity ---------------------------------------------------------------------- */

/* The identity of a regular file: kind, no rdev, and on every file system the tests run on
 * (ext4, xfs, btrfs, tmpfs, overlayfs) a tag.  A file made again under the same name is
 * another file even if it gets the same inode number: here the number is forced by
 * comparing against the same (dev, ino) with another tag. */
static void test_identity_regular(Fixture *f, gconstpointer data) {
        g_autofree char *p = tpath(f, "disk.img");
        ia_autofd int fd = -1;
        FileId id, again, other, opened;
        struct stat st;

        write_file(p, "one");
        g_assert_cmpint(image_stat(p, &st, &id), ==, 0);
        g_assert_cmpint(id.kind, ==, 'r');
        g_assert_cmpuint(id.rdev, ==, 0);
        g_assert_cmpuint(id.dev, ==, (uint64_t) st.st_dev);
        g_assert_cmpuint(id.ino, ==, (uint64_t) st.st_ino);
        g_assert_cmpuint(id.tag, !=, 0);

        /* Stable: the same file gives the same identity, also through an open. */
        g_assert_cmpint(image_stat(p, &st, &again), ==, 0);
        g_assert_true(memcmp(&id, &again, sizeof(id)) == 0);
        g_assert_cmpint(image_open_pinned(p, IA_MODE_READ_ONLY, NULL, &id, &fd, NULL, &opened), ==, 0);
        g_assert_true(file_id_matches(&id, &opened));
        fd = ia_safe_close(fd);

        /* Same (dev, ino), another generation or birth: refused before any open. */
        other = id;
        other.tag ^= 1;
        g_assert_cmpint(image_open_pinned(p, IA_MODE_READ_WRITE, NULL, &other, &fd, NULL, NULL),
                        ==, -EXDEV);
        g_assert_cmpint(fd, ==, -1);
        g_assert_cmpint(image_remove_created(p, &other), ==, -EPERM);
        g_assert_cmpint(image_create(p, NULL, &other, &fd, NULL, NULL, NULL), ==, -EEXIST);
        assert_content(p, "one");

        /* Deleted and made again: whatever its inode number, not the pinned file. */
        g_assert_cmpint(unlink(p), ==, 0);
        write_file(p, "two");
        g_assert_cmpint(image_stat(p, &st, &again), ==, 0);
        g_assert_false(file_id_matches(&id, &again));
        g_assert_cmpint(image_open_pinned(p, IA_MODE_READ_ONLY, NULL, &id, &fd, NULL, NULL),
                        ==, -EXDEV);
        g_assert_cmpint(image_remove_created(p, &id), ==, -EPERM);
        assert_content(p, "two");

        /* A record from before tags matches on (dev, ino) alone. */
        g_assert_true(file_id_matches(&(FileId) { .dev = again.dev, .ino = again.ino }, &again));
        g_assert_false(file_id_matches(&(FileId) { .dev = again.dev, .ino = again.ino + 1 }, &again));
        g_assert_cmpint(image_remove_created(p, &again), ==, 0);
        assert_absent(p);
}

/* A block device node replaced by mknod of another device at the same place: refused even
 * with the same inode number and without a tag, by kind and device number. */
static void test_identity_blockdev(Fixture *f, gconstpointer data) {
        g_autofree char *p = tpath(f, "dev");
        FileId id, swapped;
        struct stat st;

        g_assert_true(file_id_matches(&(FileId) { 1, 2, makedev(7, 0), 0, 'b' },
                                      &(FileId) { 1, 2, makedev(7, 0), 0, 'b' }));
        g_assert_false(file_id_matches(&(FileId) { 1, 2, makedev(7, 0), 0, 'b' },
                                       &(FileId) { 1, 2, makedev(8, 0), 0, 'b' }));
        g_assert_false(file_id_matches(&(FileId) { 1, 2, 0, 0, 'r' },
                                       &(FileId) { 1, 2, makedev(8, 0), 0, 'b' }));

        if (!need_root())
                return;
        if (mknod(p, S_IFBLK | 0600, makedev(7, 0)) < 0) {
                g_test_skip("cannot mknod a block device");
                return;
        }
        g_assert_cmpint(image_stat(p, &st, &id), ==, 0);
        g_assert_cmpint(id.kind, ==, 'b');
        g_assert_cmpuint(id.rdev, ==, makedev(7, 0));

        g_assert_cmpint(unlink(p), ==, 0);
        g_assert_cmpint(mknod(p, S_IFBLK | 0600, makedev(7, 1)), ==, 0);
        g_assert_cmpint(image_stat(p, &st, &swapped), ==, 0);
        g_assert_false(file_id_matches(&id, &swapped));
        /* even if the file system had handed out the same inode number and had no tags */
        id.ino = swapped.ino;
        id.tag = swapped.tag = 0;
        g_assert_false(file_id_matches(&id, &swapped));
}

/* ---- image_open: what is refused ------------------------------------------------------ */

static void test_open_bad_args(Fixture *f, gconstpointer data) {
        g_autofree char *p = tpath(f, "disk.img");
        g_autofree char *long_name = g_strnfill(IMAGE_NAME_MAX + 1, 'z');
        g_autofree char *too_long = tpath(f, long_name);
        int fd = 4711;

        write_file(p, "hello");

        g_assert_cmpint(image_open(p, IA_MODE_CREATE, NULL, &fd, NULL), ==, -EINVAL);
        g_assert_cmpint(image_open(p, _IA_MODE_MAX, NULL, &fd, NULL), ==, -EINVAL);
        g_assert_cmpint(image_open(p, _IA_MODE_INVALID, NULL, &fd, NULL), ==, -EINVAL);
        g_assert_cmpint(image_open("relative", IA_MODE_READ_ONLY, NULL, &fd, NULL), ==, -EINVAL);
        g_assert_cmpint(image_open("/a/../b", IA_MODE_READ_ONLY, NULL, &fd, NULL), ==, -EINVAL);
        g_assert_cmpint(image_open("", IA_MODE_READ_ONLY, NULL, &fd, NULL), ==, -EINVAL);

        g_assert_cmpint(image_open(too_long, IA_MODE_READ_ONLY, NULL, &fd, NULL),
                        ==, -ENAMETOOLONG);

        /* ret_fd is untouched on failure. */
        g_assert_cmpint(fd, ==, 4711);
}

static void test_open_missing(Fixture *f, gconstpointer data) {
        g_autofree char *p = tpath(f, "missing.img");
        g_autofree char *q = tpath(f, "missing-dir/disk.img");
        g_autofree char *file = tpath(f, "file");
        g_autofree char *r = tpath(f, "file/disk.img");
        int fd = -1;


        g_assert_cmpint(image_open(p, IA_MODE_READ_ONLY, NULL, &fd, NULL), ==, -ENOENT);
        g_assert_cmpint(image_open(p, IA_MODE_READ_WRITE, NULL, &fd, NULL), ==, -ENOENT);
        g_assert_cmpint(image_open(q, IA_MODE_READ_ONLY, NULL, &fd, NULL), ==, -ENOENT);

        write_file(file, "x");
        g_assert_cmpint(image_open(r, IA_MODE_READ_ONLY, NULL, &fd, NULL), ==, -ENOTDIR);
        g_assert_cmpint(fd, ==, -1);
}

static void test_open_symlink_final(Fixture *f, gconstpointer data) {
        g_autofree char *target = tpath(f, "disk.img");
        g_autofree char *link = tpath(f, "link.img");
        g_autofree char *dangling = tpath(f, "dangling.img");
        g_autofree char *dirlink = tpath(f, "dirlink");
        ia_autofd int fd = -1;


        write_file(target, "hello");
        g_assert_cmpint(symlink(target, link), ==, 0);
        g_assert_cmpint(symlink("nowhere", dangling), ==, 0);
        g_assert_cmpint(symlink(f->dir, dirlink), ==, 0);

        /* Allowed: the target itself. */
        g_assert_cmpint(image_open(target, IA_MODE_READ_ONLY, NULL, &fd, NULL), ==, 0);
        fd = ia_safe_close(fd);

        /* Refused: a link as the last component, whatever it points to. */
        g_assert_cmpint(image_open(link, IA_MODE_READ_ONLY, NULL, &fd, NULL), ==, -ELOOP);
        g_assert_cmpint(image_open(link, IA_MODE_READ_WRITE, NULL, &fd, NULL), ==, -ELOOP);
        g_assert_cmpint(image_open(dangling, IA_MODE_READ_ONLY, NULL, &fd, NULL), ==, -ELOOP);
        g_assert_cmpint(image_open(dirlink, IA_MODE_READ_ONLY, NULL, &fd, NULL), ==, -ELOOP);
        g_assert_cmpint(fd, ==, -1);
}

static void test_open_symlink_intermediate(Fixture *f, gconstpointer data) {
        g_autofree char *real = tpath(f, "real");
        g_autofree char *real_file = tpath(f, "real/sub/disk.img");
        g_autofree char *sub = tpath(f, "real/sub");
        g_autofree char *link = tpath(f, "link");
        g_autofree char *via_link = tpath(f, "link/sub/disk.img");
        g_autofree char *sublink = tpath(f, "real/sublink");
        g_autofree char *via_sublink = tpath(f, "real/sublink/disk.img");
        ia_autofd int fd = -1;


        g_assert_cmpint(mkdir(real, 0755), ==, 0);
        g_assert_cmpint(mkdir(sub, 0755), ==, 0);
        write_file(real_file, "hello");
        g_assert_cmpint(symlink(real, link), ==, 0);
        g_assert_cmpint(symlink("sub", sublink), ==, 0);

        g_assert_cmpint(image_open(real_file, IA_MODE_READ_ONLY, NULL, &fd, NULL), ==, 0);
        fd = ia_safe_close(fd);

        /* Absolute and relative links, first or later in the path. */
        g_assert_cmpint(image_open(via_link, IA_MODE_READ_ONLY, NULL, &fd, NULL), ==, -ELOOP);
        g_assert_cmpint(image_open(via_link, IA_MODE_READ_WRITE, NULL, &fd, NULL), ==, -ELOOP);
        g_assert_cmpint(image_open(via_sublink, IA_MODE_READ_ONLY, NULL, &fd, NULL), ==, -ELOOP);
        g_assert_cmpint(fd, ==, -1);
}

static void test_open_magic_link(Fixture *f, gconstpointer data) {
        g_autofree char *p = tpath(f, "disk.img");
        g_autofree char *magic = NULL;
        ia_autofd int own = -1;
        int fd = -1;


        /* /proc/self is a symlink and fd/N a magic link: neither may be used by a caller. */
        write_file(p, "hello");
        own = open(p, O_RDONLY | O_CLOEXEC);
        g_assert_cmpint(own, >=, 0);

        magic = g_strdup_printf("/proc/self/fd/%i", own);
        g_assert_cmpint(image_open(magic, IA_MODE_READ_ONLY, NULL, &fd, NULL), ==, -ELOOP);
        g_clear_pointer(&magic, g_free);
        magic = g_strdup_printf("/proc/%i/fd/%i", (int) getpid(), own);
        g_assert_cmpint(image_open(magic, IA_MODE_READ_ONLY, NULL, &fd, NULL), ==, -ELOOP);
        g_assert_cmpint(fd, ==, -1);
}

static void test_open_fifo(Fixture *f, gconstpointer data) {
        g_autofree char *p = tpath(f, "fifo");
        int fd = -1;


        g_assert_cmpint(mkfifo(p, 0600), ==, 0);

        /* A real open of a FIFO without a writer would block: SIGALRM ends the test then. */
        alarm(10);
        g_assert_cmpint(image_open(p, IA_MODE_READ_ONLY, NULL, &fd, NULL), ==, -EMEDIUMTYPE);
        g_assert_cmpint(image_open(p, IA_MODE_READ_WRITE, NULL, &fd, NULL), ==, -EMEDIUMTYPE);
        alarm(0);
        g_assert_cmpint(fd, ==, -1);
}

static void test_open_socket(Fixture *f, gconstpointer data) {
        g_autofree char *p = tpath(f, "sock");
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        ia_autofd int s = -1;
        int fd = -1;


        g_assert_cmpuint(strlen(p), <, sizeof(sa.sun_path));
        strcpy(sa.sun_path, p);
        s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        g_assert_cmpint(s, >=, 0);
        g_assert_cmpint(bind(s, (struct sockaddr *) &sa, sizeof(sa)), ==, 0);
        g_assert_cmpint(listen(s, 1), ==, 0);

        g_assert_cmpint(image_open(p, IA_MODE_READ_ONLY, NULL, &fd, NULL), ==, -EMEDIUMTYPE);
        g_assert_cmpint(image_open(p, IA_MODE_READ_WRITE, NULL, &fd, NULL), ==, -EMEDIUMTYPE);
        g_assert_cmpint(fd, ==, -1);
}

static void test_open_directory(Fixture *f, gconstpointer data) {
        g_autofree char *p = tpath(f, "dir");
        int fd = -1;


        g_assert_cmpint(mkdir(p, 0755), ==, 0);
        g_assert_cmpint(image_open(p, IA_MODE_READ_ONLY, NULL, &fd, NULL), ==, -EMEDIUMTYPE);
        g_assert_cmpint(image_open(p, IA_MODE_READ_WRITE, NULL, &fd, NULL), ==, -EMEDIUMTYPE);
        g_assert_cmpint(image_open(f->dir, IA_MODE_READ_ONLY, NULL, &fd, NULL), ==, -EMEDIUMTYPE);
        g_assert_cmpint(fd, ==, -1);
}

static void test_open_chardev(Fixture *f, gconstpointer data) {
        g_autofree char *p = tpath(f, "null");
        struct stat st;
        int fd = -1;


        if (lstat("/dev/null", &st) == 0 && S_ISCHR(st.st_mode)) {
                g_assert_cmpint(image_open("/dev/null", IA_MODE_READ_ONLY, NULL, &fd, NULL),
                                ==, -EMEDIUMTYPE);
                g_assert_cmpint(image_open("/dev/null", IA_MODE_READ_WRITE, NULL, &fd, NULL),
                                ==, -EMEDIUMTYPE);
        }

        if (!need_root())
                return;

        /* Our own node for /dev/null (1:3), in case /dev is unusual. */
        g_assert_cmpint(mknod(p, S_IFCHR | 0600, makedev(1, 3)), ==, 0);
        g_assert_cmpint(image_open(p, IA_MODE_READ_ONLY, NULL, &fd, NULL), ==, -EMEDIUMTYPE);
        g_assert_cmpint(image_open(p, IA_MODE_READ_WRITE, NULL, &fd, NULL), ==, -EMEDIUMTYPE);
        g_assert_cmpint(fd, ==, -1);
}

static int child_open_no_proc(Fixture *f) {
        g_autofree char *p = tpath(f, "disk.img");
        int fd = -1;

        write_file(p, "hello");

        if (enter_private_mount_ns() < 0)
                return 77;
        /* The procfs found at the first reopen is held: hiding /proc later changes nothing. */
        g_assert_cmpint(image_open(p, IA_MODE_READ_ONLY, NULL, &fd, NULL), ==, 0);
        fd = ia_safe_close(fd);
        /* Hide procfs behind an empty tmpfs: the reopen must fail clearly, not fall back. */
        if (mount("tmpfs", "/proc", "tmpfs", 0, "size=64k") < 0)
                return 77;
        g_assert_cmpint(image_open(p, IA_MODE_READ_WRITE, NULL, &fd, NULL), ==, 0);
        fd = ia_safe_close(fd);

        /* Before any reopen, a /proc that is not a procfs is an error. */
        image_forget_proc();
        g_assert_cmpint(image_open(p, IA_MODE_READ_ONLY, NULL, &fd, NULL), ==, -ENOSYS);
        g_assert_cmpint(image_open(p, IA_MODE_READ_WRITE, NULL, &fd, NULL), ==, -ENOSYS);
        g_assert_cmpint(fd, ==, -1);

        /* Not mounted at all. */
        if (umount2("/proc", MNT_DETACH) < 0 || umount2("/proc", MNT_DETACH) < 0)
                return 0;
        g_assert_cmpint(image_open(p, IA_MODE_READ_ONLY, NULL, &fd, NULL), ==, -ENOSYS);
        return 0;
}

static void test_open_no_proc(Fixture *f, gconstpointer data) {
        if (!need_root())
                return;
        run_in_child(f, child_open_no_proc);
}

/* Something mounted over self/fd would take the place of the process's fd table: refused
 * when the directory is looked for, not followed. */
static int child_open_proc_fd_covered(Fixture *f) {
        g_autofree char *p = tpath(f, "disk.img"), *fd_dir = NULL;
        int fd = -1;

        write_file(p, "hello");
        if (enter_private_mount_ns() < 0)
                return 77;
        fd_dir = g_strdup_printf("/proc/%d/fd", (int) getpid());
        if (mount("tmpfs", fd_dir, "tmpfs", 0, "size=64k") < 0)
                return 77;
        image_forget_proc();
        g_assert_cmpint(image_setup(), ==, -EXDEV);
        g_assert_cmpint(image_open(p, IA_MODE_READ_ONLY, NULL, &fd, NULL), ==, -EXDEV);
        g_assert_cmpint(fd, ==, -1);
        return 0;
}

static void test_open_proc_fd_covered(Fixture *f, gconstpointer data) {
        if (!need_root())
                return;
        run_in_child(f, child_open_proc_fd_covered);
}

/* The directory reopens go through is the self/fd of the process that looked for it: a child
 * of fork() that used its parent's would reopen the parent's fd of that number (here: none,
 * so -ENOENT; in general another file, which only the dev/ino check would catch). */
static int child_open_after_fork(Fixture *f) {
        g_autofree char *p = tpath(f, "disk.img");
        struct stat st, lst;
        char buf[8] = {};
        int fd = -1;

        g_assert_cmpint(image_open(p, IA_MODE_READ_ONLY, NULL, &fd, &st), ==, 0);
        g_assert_cmpint(lstat(p, &lst), ==, 0);
        g_assert_cmpuint(st.st_ino, ==, lst.st_ino);
        g_assert_cmpint(pread(fd, buf, sizeof(buf) - 1, 0), ==, 5);
        g_assert_cmpstr(buf, ==, "hello");
        ia_safe_close(fd);
        return 0;
}

static void test_open_after_fork(Fixture *f, gconstpointer data) {
        g_autofree char *p = tpath(f, "disk.img");
        int fd = -1;

        write_file(p, "hello");
        /* Now the parent holds the directory. */
        g_assert_cmpint(image_open(p, IA_MODE_READ_ONLY, NULL, &fd, NULL), ==, 0);
        ia_safe_close(fd);
        run_in_child(f, child_open_after_fork);
}

/* ---- image_create --------------------------------------------------------------------- */

static void assert_created_file(const char *p, int fd, const struct stat *st) {
        struct stat lst;

        assert_fd_mode(fd, O_RDWR);
        g_assert_cmpint(lstat(p, &lst), ==, 0);
        g_assert_true(S_ISREG(lst.st_mode));
        g_assert_cmpuint(lst.st_dev, ==, st->st_dev);
        g_assert_cmpuint(lst.st_ino, ==, st->st_ino);
        g_assert_cmpint(lst.st_mode & 07777, ==, 0600);
        g_assert_cmpint(st->st_mode & 07777, ==, 0600);
        g_assert_cmpuint(lst.st_uid, ==, geteuid());
        g_assert_cmpuint(lst.st_gid, ==, getegid());
        g_assert_cmpint(lst.st_size, ==, 0);
        /* No access ACL: the mode is all there is (see test_create_default_acl). */
        g_assert_cmpint(lgetxattr(p, "system.posix_acl_access", NULL, 0), <, 0);
        g_assert_true(errno == ENODATA || errno == EOPNOTSUPP);
}

/* A default ACL on the directory that names another user: the created file must not keep
 * that entry, masked or not, or a later "chmod g+rw" would give that user the image. */
static void test_create_default_acl(Fixture *f, gconstpointer data) {
        g_autofree char *sub = tpath(f, "acl-dir");
        g_autofree char *p = g_build_filename(sub, "new.img", NULL);
        /* The kernel's xattr form (posix_acl_xattr.h): a version, then (tag, perm, id)
         * entries: user:: rwx, user:65534: rw, group:: r, mask:: rw, other:: none. */
        struct {
                uint32_t version;
                struct { uint16_t tag, perm; uint32_t id; } e[5];
        } acl = { 2, { { 0x01, 7, -1 }, { 0x02, 6, 65534 }, { 0x04, 4, -1 }, { 0x10, 6, -1 },
                       { 0x20, 0, -1 } } };
        ia_autofd int fd = -1;
        struct stat st;

        g_assert_cmpint(mkdir(sub, 0700), ==, 0);
        if (setxattr(sub, "system.posix_acl_default", &acl, sizeof(acl), 0) < 0) {
                g_assert_cmpint(errno, ==, EOPNOTSUPP);
                g_test_skip("no POSIX ACLs on this file system");
                return;
        }
        g_assert_cmpint(image_create(p, NULL, NULL, &fd, NULL, &st, NULL), ==, 0);
        assert_created_file(p, fd, &st);
        /* and chmod g+rw gives nobody anything */
        g_assert_cmpint(chmod(p, 0660), ==, 0);
        g_assert_cmpint(lgetxattr(p, "system.posix_acl_access", NULL, 0), <, 0);
        g_assert_cmpint(errno, ==, ENODATA);
}

static void test_create_new(Fixture *f, gconstpointer data) {
        g_autofree char *p = tpath(f, "new.img");
        g_autofree char *q = tpath(f, "new2.img");
        ia_autofd int fd = -1;
        bool created = false;
        struct stat st;
        mode_t old;


        /* umask 0 must not make it world-writable ... */
        old = umask(0);
        g_assert_cmpint(image_create(p, NULL, NULL, &fd, &created, &st, NULL), ==, 0);
        umask(old);
        g_assert_true(created);
        assert_created_file(p, fd, &st);
        g_assert_cmpint(write(fd, "data", 4), ==, 4);
        fd = ia_safe_close(fd);
        assert_content(p, "data");

        /* ... nor umask 0777 unusable; ret_created and ret_st are optional. */
        old = umask(0777);
        g_assert_cmpint(image_create(q, NULL, NULL, &fd, NULL, NULL, NULL), ==, 0);
        umask(old);
        g_assert_cmpint(fstat(fd, &st), ==, 0);
        assert_created_file(q, fd, &st);
}

static void test_create_setgid_dir(Fixture *f, gconstpointer data) {
        g_autofree char *d = tpath(f, "shared");
        g_autofree char *p = tpath(f, "shared/new.img");
        ia_autofd int fd = -1;
        struct stat st;
        mode_t old;

        if (!need_root())
                return;

        /* A setgid directory of another group would hand that group the new file. */
        g_assert_cmpint(mkdir(d, 0777), ==, 0);
        g_assert_cmpint(chown(d, (uid_t) -1, NOBODY_ID), ==, 0);
        g_assert_cmpint(chmod(d, 02777), ==, 0);

        old = umask(0);
        g_assert_cmpint(image_create(p, NULL, NULL, &fd, NULL, &st, NULL), ==, 0);
        umask(old);
        assert_created_file(p, fd, &st);
        g_assert_cmpuint(st.st_gid, !=, NOBODY_ID);
}

static void test_create_exists(Fixture *f, gconstpointer data) {
        g_autofree char *p = tpath(f, "disk.img");
        bool created = true;
        struct stat st;
        int fd = -1;


        write_file(p, "precious");
        g_assert_cmpint(stat(p, &st), ==, 0);

        g_assert_cmpint(image_create(p, NULL, NULL, &fd, &created, NULL, NULL), ==, -EEXIST);
        /* A record of a different inode does not make it ours. */
        g_assert_cmpint(image_create(p, NULL, &(FileId) { .dev = st.st_dev, .ino = st.st_ino + 1 }, &fd, &created, NULL, NULL),
                        ==, -EEXIST);
        g_assert_cmpint(image_create(p, NULL, &(FileId) { .dev = st.st_dev + 1, .ino = st.st_ino }, &fd, &created, NULL, NULL),
                        ==, -EEXIST);
        g_assert_cmpint(fd, ==, -1);
        g_assert_true(created);         /* untouched */
        assert_content(p, "precious");
}

static void test_create_dangling_symlink(Fixture *f, gconstpointer data) {
        g_autofree char *target = tpath(f, "target.img");
        g_autofree char *link = tpath(f, "link.img");
        g_autofree char *rlink = tpath(f, "rlink.img");
        struct stat lst;
        int fd = -1;


        g_assert_cmpint(symlink(target, link), ==, 0);
        g_assert_cmpint(symlink("target.img", rlink), ==, 0);

        g_assert_cmpint(image_create(link, NULL, NULL, &fd, NULL, NULL, NULL), ==, -EEXIST);
        g_assert_cmpint(image_create(rlink, NULL, NULL, &fd, NULL, NULL, NULL), ==, -EEXIST);
        assert_absent(target);

        /* Even a record naming the link's own inode does not make a link ours. */
        g_assert_cmpint(lstat(link, &lst), ==, 0);
        g_assert_cmpint(image_create(link, NULL, &(FileId) { .dev = lst.st_dev, .ino = lst.st_ino }, &fd, NULL, NULL, NULL),
                        ==, -EEXIST);
        assert_absent(target);
        g_assert_cmpint(fd, ==, -1);

        /* A link to an existing file is refused the same way and leaves the file alone. */
        write_file(target, "precious");
        g_assert_cmpint(image_create(link, NULL, NULL, &fd, NULL, NULL, NULL), ==, -EEXIST);
        assert_content(target, "precious");
}

static void test_create_own(Fixture *f, gconstpointer data) {
        g_autofree char *p = tpath(f, "own.img");
        ia_autofd int fd = -1;
        bool created = false;
        struct stat st, st2;
        char buf[16] = {};


        g_assert_cmpint(image_create(p, NULL, NULL, &fd, &created, &st, NULL), ==, 0);
        g_assert_true(created);
        g_assert_cmpint(write(fd, "data", 4), ==, 4);
        fd = ia_safe_close(fd);

        /* Matching record: reopened read-write, not truncated, not recreated. */
        g_assert_cmpint(image_create(p, NULL, &(FileId) { .dev = st.st_dev, .ino = st.st_ino }, &fd, &created, &st2, NULL),
                        ==, 0);
        g_assert_false(created);
        assert_fd_mode(fd, O_RDWR);
        g_assert_cmpuint(st2.st_ino, ==, st.st_ino);
        g_assert_cmpint(st2.st_size, ==, 4);
        g_assert_cmpint(pread(fd, buf, sizeof(buf) - 1, 0), ==, 4);
        g_assert_cmpstr(buf, ==, "data");
        g_assert_cmpint(pwrite(fd, "D", 1, 0), ==, 1);
        fd = ia_safe_close(fd);
        assert_content(p, "Data");

        /* Mismatching record: refused, content intact. */
        g_assert_cmpint(image_create(p, NULL, &(FileId) { .dev = st.st_dev, .ino = st.st_ino + 1 }, &fd, &created,
                                     NULL, NULL), ==, -EEXIST);
        assert_content(p, "Data");

        /* A missing file with a stale record is simply created. */
        g_assert_cmpint(unlink(p), ==, 0);
        g_assert_cmpint(image_create(p, NULL, &(FileId) { .dev = st.st_dev, .ino = st.st_ino }, &fd, &created, NULL, NULL),
                        ==, 0);
        g_assert_true(created);
}

static void test_create_own_not_regular(Fixture *f, gconstpointer data) {
        g_autofree char *p = tpath(f, "fifo");
        struct stat st;
        int fd = -1;


        /* Even with a matching record only a regular file is reopened (and nothing blocks). */
        g_assert_cmpint(mkfifo(p, 0600), ==, 0);
        g_assert_cmpint(lstat(p, &st), ==, 0);
        alarm(10);
        g_assert_cmpint(image_create(p, NULL, &(FileId) { .dev = st.st_dev, .ino = st.st_ino }, &fd, NULL, NULL, NULL),
                        ==, -EEXIST);
        alarm(0);
        g_assert_cmpint(fd, ==, -1);
}

static void test_create_bad_parent(Fixture *f, gconstpointer data) {
        g_autofree char *real = tpath(f, "real");
        g_autofree char *link = tpath(f, "link");
        g_autofree char *via_link = tpath(f, "link/new.img");
        g_autofree char *in_real = tpath(f, "real/new.img");
        g_autofree char *missing = tpath(f, "missing/new.img");
        g_autofree char *file = tpath(f, "file");
        g_autofree char *under_file = tpath(f, "file/new.img");
        ia_autofd int fd = -1;


        g_assert_cmpint(mkdir(real, 0755), ==, 0);
        g_assert_cmpint(symlink(real, link), ==, 0);
        write_file(file, "x");

        g_assert_cmpint(image_create(via_link, NULL, NULL, &fd, NULL, NULL, NULL), ==, -ELOOP);
        assert_absent(in_real);
        g_assert_cmpint(image_create(missing, NULL, NULL, &fd, NULL, NULL, NULL), ==, -ENOENT);
        g_assert_cmpint(image_create(under_file, NULL, NULL, &fd, NULL, NULL, NULL),
                        ==, -ENOTDIR);
        g_assert_cmpint(image_create("/proc/self/new.img", NULL, NULL, &fd, NULL, NULL, NULL),
                        ==, -ELOOP);
        g_assert_cmpint(image_create("new.img", NULL, NULL, &fd, NULL, NULL, NULL), ==, -EINVAL);
        g_assert_cmpint(image_create("/", NULL, NULL, &fd, NULL, NULL, NULL), ==, -EINVAL);
        g_assert_cmpint(fd, ==, -1);

        /* Allowed: the real directory. */
        g_assert_cmpint(image_create(in_real, NULL, NULL, &fd, NULL, NULL, NULL), ==, 0);
}

static void test_create_direct(Fixture *f, gconstpointer data) {
        g_autofree char *p = tpath(f, "direct.img");
        ImageOpenFlags flags = { .direct = true, .nonblock = true };
        ia_autofd int fd = -1;
        int fl, r;


        r = image_create(p, &flags, NULL, &fd, NULL, NULL, NULL);
        if (r == -EINVAL) {
                g_test_message("temporary directory's file system has no O_DIRECT");
                assert_absent(p);
                return;
        }
        g_assert_cmpint(r, ==, 0);
        fl = fcntl(fd, F_GETFL);
        g_assert_cmpint(fl & O_ACCMODE, ==, O_RDWR);
        g_assert_cmpint(fl & O_DIRECT, ==, O_DIRECT);
        g_assert_cmpint(fl & O_NONBLOCK, ==, O_NONBLOCK);
}

static int child_create_rollback(Fixture *f) {
        g_autofree char *mnt = tpath(f, "mnt");
        g_autofree char *p = tpath(f, "mnt/direct.img");
        g_autoptr(GDir) d = NULL;
        ImageOpenFlags flags = { .direct = true };
        int fd = -1, r;

        g_assert_cmpint(mkdir(mnt, 0755), ==, 0);
        if (enter_private_mount_ns() < 0)
                return 77;
        /* ramfs has no O_DIRECT: the create succeeds, adding O_DIRECT then fails. */
        if (mount("ramfs", mnt, "ramfs", 0, NULL) < 0)
                return 77;

        r = image_create(p, &flags, NULL, &fd, NULL, NULL, NULL);
        if (r == 0) {
                g_test_message("ramfs supports O_DIRECT here, rollback not exercised");
                return 77;
        }
        g_assert_cmpint(r, ==, -EINVAL);
        g_assert_cmpint(fd, ==, -1);

        /* Nothing left behind. */
        assert_absent(p);
        d = g_dir_open(mnt, 0, NULL);
        g_assert_nonnull(d);
        g_assert_null(g_dir_read_name(d));
        return 0;
}

static void test_create_rollback(Fixture *f, gconstpointer data) {
        if (!need_root())
                return;
        run_in_child(f, child_create_rollback);
}

static int child_create_enospc(Fixture *f) {
        g_autofree char *mnt = tpath(f, "mnt");
        g_autofree char *p = tpath(f, "mnt/new.img");
        g_autofree char *q = tpath(f, "mnt/other.img");
        g_autoptr(GDir) d = NULL;
        ia_autofd int fd = -1;

        g_assert_cmpint(mkdir(mnt, 0755), ==, 0);
        if (enter_private_mount_ns() < 0)
                return 77;
        /* Room for the root directory and one more inode. */
        if (mount("tmpfs", mnt, "tmpfs", 0, "size=64k,nr_inodes=2") < 0)
                return 77;

        g_assert_cmpint(image_create(p, NULL, NULL, &fd, NULL, NULL, NULL), ==, 0);
        fd = ia_safe_close(fd);

        /* Full: refused, and nothing left behind. */
        g_assert_cmpint(image_create(q, NULL, NULL, &fd, NULL, NULL, NULL), ==, -ENOSPC);
        g_assert_cmpint(fd, ==, -1);
        assert_absent(q);

        d = g_dir_open(mnt, 0, NULL);
        g_assert_nonnull(d);
        g_assert_cmpstr(g_dir_read_name(d), ==, "new.img");
        g_assert_null(g_dir_read_name(d));
        return 0;
}

static void test_create_enospc(Fixture *f, gconstpointer data) {
        if (!need_root())
                return;
        run_in_child(f, child_create_enospc);
}

/* ---- image_remove_created ------------------------------------------------------------- */

static void create_one(const char *p, struct stat *ret_st) {
        ia_autofd int fd = -1;

        g_assert_cmpint(image_create(p, NULL, NULL, &fd, NULL, ret_st, NULL), ==, 0);
}

static void test_remove_match(Fixture *f, gconstpointer data) {
        g_autofree char *p = tpath(f, "own.img");
        g_autofree char *q = tpath(f, "missing/own.img");
        struct stat st;


        create_one(p, &st);
        g_assert_cmpint(image_remove_created(p, &(FileId) { .dev = st.st_dev, .ino = st.st_ino }), ==, 0);
        assert_absent(p);

        /* Gone: -ENOENT, also when the directory is gone. */
        g_assert_cmpint(image_remove_created(p, &(FileId) { .dev = st.st_dev, .ino = st.st_ino }), ==, -ENOENT);
        g_assert_cmpint(image_remove_created(q, &(FileId) { .dev = st.st_dev, .ino = st.st_ino }), ==, -ENOENT);
}

static void test_remove_replaced(Fixture *f, gconstpointer data) {
        g_autofree char *p = tpath(f, "own.img");
        g_autofree char *other = tpath(f, "other.img");
        ia_autofd int keep = -1;
        struct stat st, ost;


        create_one(p, &st);
        /* Keep the original inode alive, so the replacement cannot reuse its number. */
        keep = open(p, O_RDONLY | O_CLOEXEC);
        g_assert_cmpint(keep, >=, 0);

        write_file(other, "someone else's");
        g_assert_cmpint(rename(other, p), ==, 0);
        g_assert_cmpint(stat(p, &ost), ==, 0);
        g_assert_cmpuint(ost.st_ino, !=, st.st_ino);

        g_assert_cmpint(image_remove_created(p, &(FileId) { .dev = st.st_dev, .ino = st.st_ino }), ==, -EPERM);
        assert_content(p, "someone else's");

        /* Allowed with the replacement's identity: proves -EPERM came from the check. */
        g_assert_cmpint(image_remove_created(p, &(FileId) { .dev = ost.st_dev, .ino = ost.st_ino }), ==, 0);
        assert_absent(p);
}

static void test_remove_symlink(Fixture *f, gconstpointer data) {
        g_autofree char *d = tpath(f, "real");
        g_autofree char *p = tpath(f, "real/own.img");
        g_autofree char *link = tpath(f, "link.img");
        g_autofree char *dirlink = tpath(f, "dirlink");
        g_autofree char *via_dirlink = tpath(f, "dirlink/own.img");
        struct stat st, lst;


        g_assert_cmpint(mkdir(d, 0755), ==, 0);
        create_one(p, &st);
        g_assert_cmpint(symlink(p, link), ==, 0);
        g_assert_cmpint(symlink(d, dirlink), ==, 0);

        /* A link to our file is not our file; neither is the link's own inode. */
        g_assert_cmpint(image_remove_created(link, &(FileId) { .dev = st.st_dev, .ino = st.st_ino }), ==, -EPERM);
        g_assert_cmpint(lstat(link, &lst), ==, 0);
        g_assert_cmpint(image_remove_created(link, &(FileId) { .dev = lst.st_dev, .ino = lst.st_ino }), ==, -EPERM);
        g_assert_cmpint(lstat(link, &lst), ==, 0);

        /* A link in the directories of the path. */
        g_assert_cmpint(image_remove_created(via_dirlink, &(FileId) { .dev = st.st_dev, .ino = st.st_ino }), ==, -ELOOP);
        g_assert_cmpint(lstat(p, &lst), ==, 0);
}

static void test_remove_not_regular(Fixture *f, gconstpointer data) {
        g_autofree char *p = tpath(f, "fifo");
        g_autofree char *d = tpath(f, "dir");
        struct stat st;


        g_assert_cmpint(mkfifo(p, 0600), ==, 0);
        g_assert_cmpint(lstat(p, &st), ==, 0);
        g_assert_cmpint(image_remove_created(p, &(FileId) { .dev = st.st_dev, .ino = st.st_ino }), ==, -EPERM);
        g_assert_cmpint(lstat(p, &st), ==, 0);

        g_assert_cmpint(mkdir(d, 0755), ==, 0);
        g_assert_cmpint(lstat(d, &st), ==, 0);
        g_assert_cmpint(image_remove_created(d, &(FileId) { .dev = st.st_dev, .ino = st.st_ino }), ==, -EPERM);
        g_assert_cmpint(lstat(d, &st), ==, 0);
}

static void test_remove_sticky(Fixture *f, gconstpointer data) {
        g_autofree char *d = tpath(f, "sticky");
        g_autofree char *p = tpath(f, "sticky/own.img");
        struct stat st;

        if (!need_root())
                return;

        g_assert_cmpint(mkdir(d, 0777), ==, 0);
        g_assert_cmpint(chmod(d, 01777), ==, 0);
        create_one(p, &st);

        /* Owned by somebody else now: that user could swap it, refuse. */
        g_assert_cmpint(chown(p, NOBODY_ID, NOBODY_ID), ==, 0);
        g_assert_cmpint(image_remove_created(p, &(FileId) { .dev = st.st_dev, .ino = st.st_ino }), ==, -EPERM);
        g_assert_cmpint(lstat(p, &st), ==, 0);

        /* Ours again: allowed. */
        g_assert_cmpint(chown(p, geteuid(), getegid()), ==, 0);
        g_assert_cmpint(image_remove_created(p, &(FileId) { .dev = st.st_dev, .ino = st.st_ino }), ==, 0);
        assert_absent(p);
}

static void test_remove_invalid(Fixture *f, gconstpointer data) {
        g_autofree char *p = tpath(f, "own.img");
        g_autofree char *dotdot = tpath(f, "x/../own.img");
        struct stat st;


        create_one(p, &st);
        g_assert_cmpint(image_remove_created(dotdot, &(FileId) { .dev = st.st_dev, .ino = st.st_ino }), ==, -EINVAL);
        g_assert_cmpint(image_remove_created("own.img", &(FileId) { .dev = st.st_dev, .ino = st.st_ino }), ==, -EINVAL);
        g_assert_cmpint(image_remove_created("/", &(FileId) { .dev = st.st_dev, .ino = st.st_ino }), ==, -EINVAL);
        g_assert_cmpint(lstat(p, &st), ==, 0);
}

/* ---- image_open_cached: the open on the event loop ----------------------------------- */

static bool fs_yes(dev_t dev, void *userdata) {
        unsigned *asked = userdata;

        (*asked)++;
        return true;
}

static bool fs_no(dev_t dev, void *userdata) {
        return false;
}

static void test_open_cached(Fixture *f, gconstpointer data) {
        g_autofree char *p = tpath(f, "disk.img");
        g_autofree char *sub = tpath(f, "sub");
        g_autofree char *link = tpath(f, "link");
        g_autofree char *via_link = tpath(f, "link/disk.img");
        g_autofree char *in_sub = tpath(f, "sub/disk.img");
        ia_autofd int fd = -1;
        FileId id, opened, other;
        struct stat st;
        unsigned asked = 0;

        write_file(p, "one");
        g_assert_cmpint(image_stat(p, &st, &id), ==, 0);

        /* Nothing can make it wait: opened, with exactly the access asked for. */
        g_assert_cmpint(image_open_cached(p, IA_MODE_READ_ONLY, NULL, &id, fs_yes, &asked, &fd,
                                          NULL, &st, &opened), ==, image_force_nofollow_walk ? -EAGAIN : 0);
        if (image_force_nofollow_walk) {
                /* Without openat2() there is no RESOLVE_CACHED: every open is a worker's. */
                g_assert_cmpint(fd, ==, -1);
                return;
        }
        assert_fd_mode(fd, O_RDONLY);
        g_assert_true(file_id_matches(&id, &opened));
        g_assert_cmpuint(asked, ==, 1);
        fd = ia_safe_close(fd);
        g_assert_cmpint(image_open_cached(p, IA_MODE_READ_WRITE, NULL, &id, fs_yes, &asked, &fd,
                                          NULL, NULL, NULL), ==, 0);
        assert_fd_mode(fd, O_RDWR);
        fd = ia_safe_close(fd);

        /* The O_PATH fd it went through, for the caller to close after it answered. */
        {
                ia_autofd int path_fd = -1;
                struct stat a, b;

                g_assert_cmpint(image_open_cached(p, IA_MODE_READ_ONLY, NULL, &id, fs_yes, &asked,
                                                  &fd, &path_fd, NULL, NULL), ==, 0);
                g_assert_cmpint(path_fd, >=, 0);
                g_assert_true(fcntl(path_fd, F_GETFL) & O_PATH);
                g_assert_cmpint(fstat(fd, &a), ==, 0);
                g_assert_cmpint(fstat(path_fd, &b), ==, 0);
                g_assert_true(a.st_dev == b.st_dev && a.st_ino == b.st_ino);
                fd = ia_safe_close(fd);
        }

        /* A file system not known to be safe, another file than the pinned one, a create:
         * left to a worker, and nothing opened. */
        g_assert_cmpint(image_open_cached(p, IA_MODE_READ_ONLY, NULL, &id, fs_no, NULL, &fd,
                                          NULL, NULL, NULL), ==, -EAGAIN);
        other = id;
        other.tag ^= 1;
        g_assert_cmpint(image_open_cached(p, IA_MODE_READ_ONLY, NULL, &other, fs_yes, &asked,
                                          &fd, NULL, NULL, NULL), ==, -EAGAIN);
        g_assert_cmpint(image_open_cached(p, IA_MODE_CREATE, NULL, &id, fs_yes, &asked, &fd,
                                          NULL, NULL, NULL), ==, -EAGAIN);
        g_assert_cmpint(fd, ==, -1);

        /* Links are never followed, also here; errors are the worker's to give. */
        g_assert_cmpint(mkdir(sub, 0700), ==, 0);
        g_assert_cmpint(rename(p, in_sub), ==, 0);
        g_assert_cmpint(symlink("sub", link), ==, 0);
        g_assert_cmpint(image_open_cached(via_link, IA_MODE_READ_ONLY, NULL, &id, fs_yes, &asked,
                                          &fd, NULL, NULL, NULL), ==, -EAGAIN);
        g_assert_cmpint(image_open_cached(p, IA_MODE_READ_ONLY, NULL, &id, fs_yes, &asked, &fd,
                                          NULL, NULL, NULL), ==, -EAGAIN);
        g_assert_cmpint(fd, ==, -1);

        /* Another owner could hold a lease that the open would wait to break. */
        if (geteuid() == 0) {
                g_assert_cmpint(chown(in_sub, NOBODY_ID, NOBODY_ID), ==, 0);
                g_assert_cmpint(image_stat(in_sub, &st, &id), ==, 0);
                g_assert_cmpint(image_open_cached(in_sub, IA_MODE_READ_ONLY, NULL, &id, fs_yes,
                                                  &asked, &fd, NULL, NULL, NULL), ==, -EAGAIN);
                g_assert_cmpint(fd, ==, -1);
        }
}

static void test_fs_cannot_hang(void) {
        g_assert_true(image_fs_cannot_hang(EXT4_SUPER_MAGIC));
        g_assert_true(image_fs_cannot_hang(XFS_SUPER_MAGIC));
        g_assert_true(image_fs_cannot_hang(BTRFS_SUPER_MAGIC));
        g_assert_true(image_fs_cannot_hang(TMPFS_MAGIC));
        g_assert_false(image_fs_cannot_hang(NFS_SUPER_MAGIC));
        g_assert_false(image_fs_cannot_hang(FUSE_SUPER_MAGIC));
        g_assert_false(image_fs_cannot_hang(OVERLAYFS_SUPER_MAGIC));
        g_assert_false(image_fs_cannot_hang(0xFE534D42));       /* SMB2 */
        g_assert_false(image_fs_cannot_hang(0));
}

#define ADD(path, func) g_test_add(path, Fixture, NULL, fixture_setup, func, fixture_teardown)

int main(int argc, char *argv[]) {
        g_test_init(&argc, &argv, NULL);
        /* The same tests once more on the path that kernels and valgrind without openat2()
         * take: meson runs this binary a second time with IA_TEST_FORCE_WALK=1. */
        if (g_getenv("IA_TEST_FORCE_WALK"))
                image_force_nofollow_walk = true;
        /* The procfs fd image.c holds is opened here, not inside a test that counts fds. */
        g_assert_cmpint(image_setup(), ==, 0);

        g_test_add_func("/image/path/valid", test_path_valid);
        g_test_add_func("/image/path/invalid", test_path_invalid);

        ADD("/image/open/regular-ro", test_open_regular_ro);
        ADD("/image/open/regular-rw", test_open_regular_rw);
        ADD("/image/open/flags", test_open_flags);
        ADD("/image/open/blockdev", test_open_blockdev);
        ADD("/image/open/bad-args", test_open_bad_args);
        ADD("/image/open/missing", test_open_missing);
        ADD("/image/open/symlink-final", test_open_symlink_final);
        ADD("/image/open/symlink-intermediate", test_open_symlink_intermediate);
        ADD("/image/open/magic-link", test_open_magic_link);
        ADD("/image/open/fifo", test_open_fifo);
        ADD("/image/open/socket", test_open_socket);
        ADD("/image/open/directory", test_open_directory);
        ADD("/image/open/chardev", test_open_chardev);
        ADD("/image/open/no-proc", test_open_no_proc);
        ADD("/image/open/after-fork", test_open_after_fork);
        ADD("/image/open/proc-fd-covered", test_open_proc_fd_covered);
        ADD("/image/open/cached", test_open_cached);
        g_test_add_func("/image/open/fs-cannot-hang", test_fs_cannot_hang);
        ADD("/image/identity/regular", test_identity_regular);
        ADD("/image/identity/blockdev", test_identity_blockdev);

        ADD("/image/create/new", test_create_new);
        ADD("/image/create/setgid-dir", test_create_setgid_dir);
        ADD("/image/create/default-acl", test_create_default_acl);
        ADD("/image/create/exists", test_create_exists);
        ADD("/image/create/dangling-symlink", test_create_dangling_symlink);
        ADD("/image/create/own", test_create_own);
        ADD("/image/create/own-not-regular", test_create_own_not_regular);
        ADD("/image/create/bad-parent", test_create_bad_parent);
        ADD("/image/create/direct", test_create_direct);
        ADD("/image/create/rollback", test_create_rollback);
        ADD("/image/create/enospc", test_create_enospc);

        ADD("/image/remove/match", test_remove_match);
        ADD("/image/remove/replaced", test_remove_replaced);
        ADD("/image/remove/symlink", test_remove_symlink);
        ADD("/image/remove/not-regular", test_remove_not_regular);
        ADD("/image/remove/sticky", test_remove_sticky);
        ADD("/image/remove/invalid", test_remove_invalid);

        return g_test_run();
}

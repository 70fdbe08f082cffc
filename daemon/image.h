/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * image.h — opening images safely (the paths are path.h's).  No bus, no logging above debug.
 *
 * Every open resolves the path with openat2(RESOLVE_NO_SYMLINKS|RESOLVE_NO_MAGICLINKS), so no
 * symlink is followed in any component; the inode is checked with fstat() on an O_PATH fd
 * before it is opened for I/O (a FIFO or a character device is never opened for real), and
 * reopened through /proc/self/fd with exactly the access mode asked for.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>
#include "file-id.h"
#include "mode.h"
#include "path.h"

typedef struct ImageOpenFlags {
        bool direct;            /* O_DIRECT */
        bool nonblock;          /* keep O_NONBLOCK on the returned fd */
} ImageOpenFlags;

/**
 * image_open: opens @path for @mode.
 * @mode: IA_MODE_READ_ONLY → O_RDONLY; IA_MODE_READ_WRITE → O_RDWR; IA_MODE_CREATE → see
 *        image_create(); image_open() itself refuses IA_MODE_CREATE with -EINVAL.
 * @flags: may be NULL (all false).
 * @ret_fd: on success a new fd owned by the caller: O_CLOEXEC, the exact access mode asked for.
 * @ret_st: optional, the fstat() of the opened file.
 * Return: 0; -EINVAL invalid path; -ENOENT missing; -ELOOP a symlink in the path;
 *         -EMEDIUMTYPE not a regular file or block device; -ENOSYS no openat2() or no procfs
 *         on /proc at the first reopen, which holds on to it (both are required, there is
 *         no fallback); -ESTALE the inode reopened
 *         through /proc is not the one checked; other negative errno from the kernel
 *         (-EACCES, -EROFS, -ENAMETOOLONG, -EINVAL for O_DIRECT where unsupported, …);
 *         -EBUSY a block device opened read-write (always with O_EXCL) is mounted or claimed
 *         exclusively elsewhere.
 */
int image_open(const char *path, IaMode mode, const ImageOpenFlags *flags, int *ret_fd,
               struct stat *ret_st);

/**
 * image_open_pinned: image_open(), for the file @expect only.
 * @expect: optional; when the inode at @path does not match it (file_id_matches()), nothing
 *          is opened for I/O and the result is -EXDEV.
 * @ret_id: optional; the identity of the opened file.
 * Return: as image_open(), and -EXDEV another file than @expect is at @path.
 */
int image_open_pinned(const char *path, IaMode mode, const ImageOpenFlags *flags,
                      const FileId *expect, int *ret_fd, struct stat *ret_st, FileId *ret_id);

/**
 * image_open_cached: image_open_pinned() for the event loop, which must never wait: it opens
 * only when nothing can make it wait, and otherwise leaves the open to a thread.
 * The path must resolve from the kernel's dentry cache alone (RESOLVE_CACHED), the inode must
 * be @expect, a regular file owned by root (nobody else can hold a lease that the open would
 * have to break), on a device for which @fs_cannot_hang says yes.  Block devices, whose
 * driver's open() may wait, never qualify.
 * @path: a valid path (path_is_valid()): the front-ends checked it, and this runs on every
 *        open, so it does not check again.
 * @fs_cannot_hang: whether the file system of @dev is one image_fs_cannot_hang() names; the
 *                  caller knows from earlier opens in threads (the question itself would
 *                  wait on a hung file system).
 * @ret_path_fd: optional: the O_PATH fd the file was found through, owned by the caller, who
 *               can close it after it answered (a close less before the answer); NULL
 *               closes it here.
 * Return: 0, with *@ret_fd (owned by the caller, as for image_open()), *@ret_path_fd,
 *         *@ret_st and *@ret_id (the last three optional); -EAGAIN when it could have
 *         waited, or when anything failed: image_open_pinned() in a worker then gives the
 *         answer.
 */
int image_open_cached(const char *path, IaMode mode, const ImageOpenFlags *flags,
                      const FileId *expect, bool (*fs_cannot_hang)(dev_t dev, void *userdata),
                      void *userdata, int *ret_fd, int *ret_path_fd, struct stat *ret_st,
                      FileId *ret_id);

/* Whether a file system of statfs() type @f_type cannot hang (local disks and memory, not
 * NFS, FUSE and the like): opens on it may run on the event loop. */
bool image_fs_cannot_hang(long f_type);

/**
 * image_stat: the identity and type of the inode at @path, resolved like image_open() (no
 * link followed anywhere) and without opening it for I/O.
 * @ret_id: optional; the FileId (file-id.h) a grant of @path is pinned to.
 * Return: 0; -EINVAL invalid path; -ENOENT; -ELOOP; -EMEDIUMTYPE not a regular file or block
 *         device; other negative errno.
 */
int image_stat(const char *path, struct stat *ret_st, FileId *ret_id);

/**
 * image_create: creates @path as a new regular file (O_CREAT|O_EXCL: never clobbers anything,
 * never follows a link, also not a dangling one), owned by the service's uid and gid with
 * permissions 0600 and no ACL (a default ACL of the directory is not inherited), and opens
 * it O_RDWR.  The parent directory is resolved like image_open().
 * If @path exists and is the file @own (file_id_matches()) — a file the service created
 * earlier for the same guest — it is opened O_RDWR instead, without truncation; pass @own =
 * NULL when there is no such record.
 * @flags: as for image_open().
 * @ret_fd: as for image_open().
 * @ret_created: optional; true when this call created the file.
 * @ret_st: optional.
 * @ret_id: optional; the identity of the file opened (to record as the created file).
 * Return: 0; -EEXIST exists and is not the service's own (also a symlink, dangling or not,
 *         and an own inode that is no longer a regular file); -ELOOP a symlink in the parent
 *         path; -ENOTDIR the parent is not a directory; errors as for image_open();
 *         -ENOSPC/-EDQUOT when the file system is full.  When this call created the file and
 *         then fails, it unlinks it again if the name still refers to that inode: nothing of
 *         ours is left behind, and nothing else is removed.
 */
int image_create(const char *path, const ImageOpenFlags *flags, const FileId *own, int *ret_fd,
                 bool *ret_created, struct stat *ret_st, FileId *ret_id);

/**
 * image_remove_created: removes @path only if it is a regular file that matches @own
 * (file_id_matches(): a file made in its place with its inode number is not it).  No link is
 * followed.  In a sticky directory (S_ISVTX) the file must
 * also still be owned by the service's euid.
 * Return: 0 removed; -ENOENT already gone; -EPERM it is another inode, not a regular file (a
 *         symlink as last component, too), or in a sticky directory not owned by the service
 *         (left alone in every case); -ELOOP a symlink in the parent path; -EINVAL /
 *         -ENAMETOOLONG invalid path; other negative errno.
 */
/**
 * image_writable_dir: the first directory on @path's way from "/" that a user other than root
 * can write to: owned by a uid other than 0 (and writable by it), writable by a group other
 * than 0, or writable by everybody; a root-owned sticky directory (/tmp) counts only when its
 * entry on the path is not root's.  Whoever can write there can replace what is below it;
 * GrantImage warns about such grants (docs/security.md).  Symlinks are not followed.
 * @ret_dir: on 1, the directory, owned by the caller (g_free()).
 * @ret_st: on 1, its lstat().
 * Return: 1 found; 0 every directory is writable by root only; negative errno.
 */
int image_writable_dir(const char *path, char **ret_dir, struct stat *ret_st);

/**
 * image_setup: finds the directory every reopen goes through (see image_open()), self/fd
 * of the procfs at /proc, now, and holds on to it: the daemon calls it at start-up, so that a
 * /proc that is not a procfs stops it there rather than failing each open.  Optional: the
 * first reopen does it too.  A child of fork() lets go of its copy and looks again; a child
 * made any other way (vfork(), clone()) must call image_forget_proc() first.
 * Return: 0; -ENOSYS /proc is not a procfs; -ENOENT that procfs does not show this process
 * (it is another PID namespace's); -EXDEV something is mounted over its self/fd; other
 * negative errno.
 */
int image_setup(void);

/* Tests only: behave as if the kernel had no openat2(), to test the fallback. */
extern bool image_force_nofollow_walk;

/* Lets go of the directory that reopens go through (image_setup()); the next reopen looks
 * for it at /proc again.  The daemon calls it at exit, once its manager is freed, so that it leaves
 * no fd open; tests call it to see the first look again. */
void image_forget_proc(void);

int image_remove_created(const char *path, const FileId *own);

/**
 * image_open_beneath: opens (or creates) @path through a directory grant for @dir.
 * @dir: the granted directory, a valid path; @path must lie beneath it.
 * @dir_id: the directory the grant is pinned to; another one at @dir is -ESTALE.
 * @mode: read-only, read-write, or create (a new file, as image_create() makes it).
 * @flags: as for image_open().
 * @ret_fd: on success a new fd owned by the caller, O_CLOEXEC.
 * @ret_created: optional; true when this call created the file.
 * @ret_st, @ret_id: optional; the file opened.
 * The part of @path below @dir is resolved from the pinned directory with RESOLVE_BENEATH,
 * RESOLVE_NO_SYMLINKS, RESOLVE_NO_MAGICLINKS and RESOLVE_NO_XDEV: no link anywhere, no other
 * file system.  Only regular files with one name (st_nlink 1) are opened.
 * Return: 0; -EINVAL invalid path, or not beneath @dir; -ESTALE the directory was replaced;
 *         -ELOOP a symlink; -EXDEV a mount point crossed; -EMEDIUMTYPE not a regular file;
 *         -EMLINK the file has other names; -EEXIST (create) the name exists; other errors
 *         as for image_open() and image_create().
 */
int image_open_beneath(const char *dir, const FileId *dir_id, const char *path, IaMode mode,
                       const ImageOpenFlags *flags, int *ret_fd, bool *ret_created,
                       struct stat *ret_st, FileId *ret_id);

/**
 * image_stat_directory: the identity of the directory at @path, resolved like image_open(),
 * for a directory grant.
 * Return: 0; -EINVAL invalid path; -ENOENT; -ELOOP; -ENOTDIR not a directory; -EPERM not
 *         owned by the service's euid, or writable by its group or others.
 */
int image_stat_directory(const char *path, struct stat *ret_st, FileId *ret_id);

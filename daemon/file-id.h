/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * file-id.h — the identity of a file, as grants pin it (registry.h) and opens check it
 * (image.h).  Its own header so that neither of those includes the other.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

/*
 * Which file a grant or a created-file record is for.  (dev, ino) alone is not enough: file
 * systems hand a freed inode number to the next file created (ext4 does so at once), so a
 * file deleted and made again in place, or a device node replaced by mknod, would pass for
 * the one pinned.  @tag tells such files apart: a digest of the kernel's file handle for the
 * inode (name_to_handle_at(), which carries the inode's generation on file systems that reuse
 * numbers) and of its birth time (statx STATX_BTIME), where the file system has them.  See
 * image.c "File identity" for the choice and the fallback.
 */
typedef struct FileId {
        uint64_t dev;
        uint64_t ino;
        uint64_t rdev;          /* a block device's device number; 0 for a regular file */
        uint64_t tag;           /* 0: unknown (a record from before tags, or no handle and no
                                 * birth time on this file system) */
        char kind;              /* 'r' regular file, 'b' block device; 0 unknown (old record) */
} FileId;

/* Does @found (just looked at) match @pinned?  Fields @pinned does not know (kind 0, tag 0:
 * from an older state file) are not compared; everything else must be equal. */
bool file_id_matches(const FileId *pinned, const FileId *found);

/* Are @a and @b the same identity, field by field?  Not memcmp(): the struct has padding after
 * @kind whose bytes are whatever the memory held. */
static inline bool file_id_equal(const FileId *a, const FileId *b) {
        return a->dev == b->dev && a->ino == b->ino && a->rdev == b->rdev && a->tag == b->tag &&
               a->kind == b->kind;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * file-id.c — comparing file identities (file-id.h).
 */
#include "file-id.h"

bool file_id_matches(const FileId *pinned, const FileId *found) {
        if (pinned->dev != found->dev || pinned->ino != found->ino)
                return false;
        /* A record from before kinds and tags knows only (dev, ino): as before. */
        if (pinned->kind != 0 && (pinned->kind != found->kind || pinned->rdev != found->rdev))
                return false;
        if (pinned->tag != 0 && pinned->tag != found->tag)
                return false;
        /* A tag where the record had none: the file system gained handles or birth times
         * (a newer kernel), or the record is old; the kind and numbers still match. */
        return true;
}

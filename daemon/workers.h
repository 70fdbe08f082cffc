/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * workers.h — file system work off the event loop.  An open can hang (NFS, FUSE); it must
 * stall only its own request, so every open, create and remove that could wait runs in a
 * thread of a bounded pool and its result comes back to the loop through an eventfd.  The
 * workers also remember which devices hold file systems that cannot hang, so that the
 * pipeline (open.c) may open there on the loop.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <systemd/sd-event.h>

#include "image.h"

typedef enum JobType {
        JOB_OPEN,
        JOB_CREATE,
        JOB_REMOVE_CREATED,
        JOB_STAT,               /* image_stat(): what a grant is pinned to */
} JobType;

typedef struct Job Job;
typedef struct Workers Workers;
typedef void (*JobDoneFunc)(Job *j, void *userdata);

struct Job {
        /* Input, owned by the job. */
        JobType type;
        char *path;
        IaMode mode;
        ImageOpenFlags flags;
        bool have_own;
        FileId own;             /* JOB_CREATE with have_own, JOB_REMOVE_CREATED */
        bool have_expect;
        FileId expect;          /* JOB_OPEN with have_expect: the file the grant is pinned to */
        /* JOB_OPEN, JOB_CREATE: through the directory grant for @dir (owned), pinned to
         * @dir_id (image_open_beneath()).  JOB_STAT: @directory asks for
         * image_stat_directory(). */
        char *dir;
        FileId dir_id;
        bool directory;

        /* Output. */
        int r;                  /* 0 or negative errno */
        int fd;                 /* owned by the job until the done callback takes it */
        bool created;
        struct stat st;
        FileId id;              /* of the file opened, created or looked at */
        /* JOB_OPEN: set by workers_submit() for a device it does not know yet; then
         * @fs_type is the statfs() type of the file opened (0 unknown). */
        bool learn_fs;
        long fs_type;
        /* JOB_STAT: image_writable_dir() of the path, owned; NULL when there is none. */
        char *writable_dir;
        struct stat writable_dir_st;

        /* Context for the done callback, owned by the job. */
        char *guest;
        JobDoneFunc done;
        void *userdata;
        /* Optional, released with the job: who asked and where the answer goes (the job
         * knows no front-end: open.h's OpenSink, bus-manager.c's CallContext). */
        void *context;
        void (*context_free)(void *context);
};

/* Allocates a job; @path and @guest are copied. */
Job *job_new(JobType type, const char *path, const char *guest);
Job *job_free(Job *j);

/* @ret: owned by the caller, free with workers_free(), which waits for running jobs. */
int workers_new(sd_event *event, unsigned max_threads, Workers **ret);
Workers *workers_free(Workers *w);
/* Queues @j (taken); its done callback runs later on the loop, then the job is freed. */
int workers_submit(Workers *w, Job *j);

/*
 * workers_fs_cannot_hang: whether an open on device @dev may run on the loop instead: an
 * earlier open in a thread found a file system there that cannot hang
 * (image_fs_cannot_hang()), and the mount table has not changed since.  A device not seen
 * yet is a no: asking its file system could itself hang.  @userdata: the Workers; the
 * signature is image_open_cached()'s.
 */
bool workers_fs_cannot_hang(dev_t dev, void *userdata);

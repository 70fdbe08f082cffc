/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vm-manager.c — a guest's life as a VM manager sees it.
 *
 *   vm-manager [--uid=UID] GUEST DISK [OVERLAY...] -- EMULATOR [ARGUMENT...]
 *
 *  1. registers GUEST;
 *  2. grants DISK read-write and each OVERLAY create (snapshot overlays, not made yet);
 *  3. forks the emulator and binds it between fork and exec, through a pidfd.  The child
 *     drops to UID first and says so: the binding records the process's uid at bind time,
 *     and the emulator's connection must have that uid;
 *  4. reads the emulator's stdout: a line "cleanup PATH" reports a file a failed snapshot
 *     left behind (snapshot-batch.c prints them); every other line is passed through;
 *  5. when the emulator has exited, removes the reported files (ia_manager_remove_created:
 *     only files the service created for this guest, still the same inode), lists what is
 *     left granted, and unregisters GUEST.
 *
 * Run as root (or with polkit rules for the manager actions).  Exit status: the emulator's,
 * or 1 if the manager itself failed.
 *
 * Build: cc vm-manager.c $(pkg-config --cflags --libs imageaccess) -o vm-manager
 */

#define _GNU_SOURCE 1           /* pipe2(), setresuid() */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ia-client.h>

#define MAX_PATHS 64

static int fail(const char *what, IaError *error) {
        fprintf(stderr, "%s: %s\n", what, error->message);
        ia_error_done(error);
        return 1;
}

/* The child: become the emulator's uid, tell the parent, wait until it has bound us, then
 * exec.  Both waits matter: a bind before the uid change records the wrong uid, and a bus
 * connection the emulator opened before the bind would not count. */
static void run_emulator(const int ready[2], const int go[2], const int out[2], uid_t uid,
                         char **argv) {
        char byte = 'r';

        close(ready[0]);
        close(go[1]);           /* so that the read below ends if the parent dies */
        close(out[0]);
        if (dup2(out[1], STDOUT_FILENO) < 0)
                _exit(127);
        if (uid != (uid_t) -1 &&
            (setgroups(0, NULL) < 0 || setresgid(uid, uid, uid) < 0 ||
             setresuid(uid, uid, uid) < 0))
                _exit(127);
        if (write(ready[1], &byte, 1) != 1 || read(go[0], &byte, 1) != 1)
                _exit(127);     /* the parent could not bind us */
        execvp(argv[0], argv);
        _exit(127);
}

int main(int argc, char *argv[]) {
        IaClient *client = NULL;
        IaGrantInfo **grants = NULL;
        IaError error = {};
        uid_t uid = (uid_t) -1;
        char *reported[MAX_PATHS + 1] = {};
        size_t n_reported = 0;
        int ready[2], go[2], out[2], pidfd, status, arg = 1, r;
        char byte;
        char line[4200];
        const char *guest, *disk;
        char **overlays, **emulator;
        FILE *from_emulator;
        pid_t pid;

        if (arg < argc && strncmp(argv[arg], "--uid=", 6) == 0)
                uid = (uid_t) strtoul(argv[arg++] + 6, NULL, 10);
        for (emulator = argv + arg; *emulator && strcmp(*emulator, "--") != 0; emulator++)
                ;
        if (argc - arg < 2 || !*emulator || !emulator[1] || emulator - argv < arg + 2) {
                fprintf(stderr, "usage: %s [--uid=UID] GUEST DISK [OVERLAY...] -- EMULATOR...\n",
                        argv[0]);
                return 2;
        }
        *emulator++ = NULL;     /* ends the OVERLAY list */
        guest = argv[arg];
        disk = argv[arg + 1];
        overlays = argv + arg + 2;

        r = ia_client_new(&client);
        if (r < 0) {
                fprintf(stderr, "Cannot connect to the system bus: %s\n", strerror(-r));
                return 1;
        }

        /* 1, 2: the guest and what it may open.  No uid binding: we bind the process. */
        r = ia_manager_register_guest(client, guest, /* uuid= */ NULL, "example guest",
                                      IA_UID_NONE, &error);
        if (r < 0)
                return fail("RegisterGuest", &error);
        r = ia_manager_grant_image(client, guest, disk, IA_IMAGE_MODE_READ_WRITE, &error);
        for (char **o = overlays; r >= 0 && *o; o++)
                r = ia_manager_grant_image(client, guest, *o, IA_IMAGE_MODE_CREATE, &error);
        if (r < 0)
                return fail("GrantImage", &error);

        /* 3: fork, bind between fork and exec, let it go. */
        if (pipe2(ready, O_CLOEXEC) < 0 || pipe2(go, O_CLOEXEC) < 0 ||
            pipe2(out, O_CLOEXEC) < 0) {
                perror("pipe2");
                return 1;
        }
        pid = fork();
        if (pid < 0) {
                perror("fork");
                return 1;
        }
        if (pid == 0)
                run_emulator(ready, go, out, uid, emulator);
        close(ready[1]);
        close(go[0]);
        close(out[1]);
        if (read(ready[0], &byte, 1) != 1) {
                fprintf(stderr, "The emulator process could not drop its privileges\n");
                (void) waitpid(pid, NULL, 0);
                return 1;
        }
        close(ready[0]);

        /* Our unreaped child: its pid cannot be reused, so this pidfd is surely the child. */
        pidfd = (int) syscall(SYS_pidfd_open, pid, 0);
        if (pidfd < 0) {
                perror("pidfd_open");
                return 1;
        }
        r = ia_manager_bind_process(client, guest, pidfd, &error);
        close(pidfd);           /* the service keeps its own duplicate */
        if (r < 0) {
                close(go[1]);           /* the child reads EOF and exits unexecuted */
                (void) waitpid(pid, NULL, 0);
                return fail("BindProcess", &error);
        }
        if (write(go[1], "g", 1) != 1) {
                perror("write");
                return 1;
        }
        close(go[1]);

        /* 4: the emulator's reports. */
        from_emulator = fdopen(out[0], "r");
        while (from_emulator && fgets(line, sizeof(line), from_emulator)) {
                line[strcspn(line, "\n")] = '\0';
                if (strncmp(line, "cleanup /", 9) == 0 && n_reported < MAX_PATHS)
                        reported[n_reported++] = strdup(line + 8);
                else
                        printf("emulator: %s\n", line);
        }
        if (from_emulator)
                fclose(from_emulator);
        (void) waitpid(pid, &status, 0);
        printf("emulator exited with status %d\n",
               WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));

        /* 5: clean up what a failed snapshot left behind.  "Not granted" and "not created by
         * the service" answers count as nothing to clean, not as failures. */
        if (n_reported > 0) {
                r = ia_manager_remove_created(client, guest, (const char *const *) reported,
                                              &error);
                if (r < 0)
                        fprintf(stderr, "remove-created: %s\n", error.message);
                else
                        printf("removed %d file(s) the failed snapshot left behind\n", r);
                ia_error_done(&error);
                for (size_t i = 0; i < n_reported; i++)
                        free(reported[i]);
        }

        /* What is left: a successful snapshot's overlays are the guest's disks now. */
        r = ia_manager_list_grants(client, guest, &error, &grants);
        if (r >= 0) {
                for (IaGrantInfo **g = grants; *g; g++)
                        printf("grant %s %s%s\n", (*g)->path, ia_image_mode_to_string((*g)->mode),
                               (*g)->created ? " (created by the service)" : "");
                ia_grant_info_list_free(grants);
        }
        ia_error_done(&error);

        r = ia_manager_unregister_guest(client, guest, &error);
        if (r < 0)
                return fail("UnregisterGuest", &error);
        ia_client_unref(client);
        return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

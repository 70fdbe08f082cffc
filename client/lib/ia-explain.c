/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ia-explain.c — ask polkit what it answers today for an emulator's OpenImage, for tools that
 * explain a decision (image-accessctl explain).  The one place the library talks to polkitd
 * itself; the service remains the only judge of real opens.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ia-client-private.h"
#include "ia-error.h"
#include "ia-macro.h"
#include "ia-proc.h"

#define POLKIT_BUS_NAME    "org.freedesktop.PolicyKit1"
#define POLKIT_OBJECT_PATH "/org/freedesktop/PolicyKit1/Authority"
#define POLKIT_INTERFACE   "org.freedesktop.PolicyKit1.Authority"

/* CheckAuthorization for an emulator's OpenImage, ready to send on the client's bus. */
static int build_explain(IaClient *client, const char *guest, const char *path,
                         IaImageMode mode, const char *guest_uuid, uid_t uid, pid_t pid,
                         IaError *error, sd_bus_message **ret) {
        ia_autoptr(sd_bus_message) m = NULL;
        const char *mode_str = ia_image_mode_to_string(mode);
        uint64_t start_time;
        uid_t euid;
        sd_bus *bus;
        int r;

        if (!client || !guest || !path || !mode_str || pid < 0 ||
            (uid == IA_UID_NONE && pid == 0))
                return ia_error_set_errnof(error, -EINVAL, "Invalid argument");

        /* pid 0: "some process of @uid outside any login session".  pid 1 stands in for it:
         * it exists, has no session, and polkit takes the uid from the subject, not from the
         * process (the caller is root, so polkit lets it name any subject). */
        r = ia_proc_get_start_time(pid > 0 ? pid : 1, &start_time);
        if (r >= 0)
                r = ia_proc_get_euid(pid > 0 ? pid : 1, &euid);
        if (r < 0) {
                if (r == -ESRCH)
                        return ia_error_set_errnof(error, r, "No process with pid %d", (int) pid);
                return ia_error_set_errnof(error, r, "Cannot read /proc/%d: %s",
                                           (int) (pid > 0 ? pid : 1), strerror(-r));
        }
        if (uid == IA_UID_NONE)
                uid = euid;

        r = client_get_bus(client, &bus);
        if (r < 0)
                return ia_error_set_errnof(error, r, "Cannot connect to the bus: %s",
                                           strerror(-r));
        r = sd_bus_message_new_method_call(bus, &m, POLKIT_BUS_NAME, POLKIT_OBJECT_PATH,
                                           POLKIT_INTERFACE, "CheckAuthorization");
        if (r >= 0)
                r = sd_bus_message_append(m, "(sa{sv})s", "unix-process", 3,
                                          "pid", "u", (uint32_t) (pid > 0 ? pid : 1),
                                          "start-time", "t", start_time,
                                          "uid", "i", (int32_t) uid,
                                          IA_ACTION_OPEN_IMAGE);
        /* The details exactly as the service sends them (daemon: method_open_image()). */
        if (r >= 0)
                r = sd_bus_message_append(m, "a{ss}", 4,
                                          "guest", guest,
                                          "image", path,
                                          "mode", mode_str,
                                          "guest-uuid", guest_uuid ?: "");
        /* Flags 0: never interactive; a challenge is reported, not answered.  No cancel id. */
        if (r >= 0)
                r = sd_bus_message_append(m, "us", (uint32_t) 0, "");
        if (r < 0)
                return ia_error_set_errnof(error, r, "Cannot build the CheckAuthorization call: %s",
                                           strerror(-r));
        *ret = IA_TAKE_PTR(m);
        return 0;
}

static int parse_explain(sd_bus_message *reply, IaError *error, IaPolkitAnswer *ret_answer) {
        int authorized, challenge, r;

        r = sd_bus_message_enter_container(reply, 'r', "bba{ss}");
        if (r >= 0)
                r = sd_bus_message_read(reply, "bb", &authorized, &challenge);
        if (r < 0)
                return ia_error_set_errnof(error, -EBADMSG,
                                           "polkit sent a malformed CheckAuthorization reply");

        *ret_answer = authorized ? IA_POLKIT_AUTHORIZED :
                      challenge ? IA_POLKIT_CHALLENGE : IA_POLKIT_NOT_AUTHORIZED;
        return 0;
}

int ia_manager_explain_polkit(IaClient *client, const char *guest, const char *path,
                              IaImageMode mode, const char *guest_uuid, uid_t uid, pid_t pid,
                              IaError *error, IaPolkitAnswer *ret_answer) {
        ia_auto(sd_bus_error) e = SD_BUS_ERROR_NULL;
        ia_autoptr(sd_bus_message) m = NULL;
        ia_autoptr(sd_bus_message) reply = NULL;
        int r;

        if (!ret_answer)
                return ia_error_set_errnof(error, -EINVAL, "Invalid argument");
        r = build_explain(client, guest, path, mode, guest_uuid, uid, pid, error, &m);
        if (r < 0)
                return r;
        r = sd_bus_call(sd_bus_message_get_bus(m), m, 0, &e, &reply);
        if (r < 0)
                return ia_error_set_bus(error, &e, r);
        return parse_explain(reply, error, ret_answer);
}

static void explain_complete(IaRequest *req, IaClient *client, sd_bus_message *reply) {
        IaExplainCallback callback = (IaExplainCallback) req->callback;
        IaPolkitAnswer answer = IA_POLKIT_NOT_AUTHORIZED;
        IaError error = {};
        int r;

        r = client_reply_error(reply, &error);
        if (r >= 0)
                r = parse_explain(reply, &error, &answer);
        callback(client, r, answer, r < 0 ? &error : NULL, req->userdata);
        ia_error_done(&error);
}

int ia_manager_explain_polkit_async(IaClient *client, const char *guest, const char *path,
                                    IaImageMode mode, const char *guest_uuid, uid_t uid,
                                    pid_t pid, IaExplainCallback callback, void *userdata,
                                    IaRequest **ret_request) {
        ia_autoptr(sd_bus_message) m = NULL;
        IaRequest *req;
        int r;

        if (!callback)
                return -EINVAL;
        r = build_explain(client, guest, path, mode, guest_uuid, uid, pid, /* error= */ NULL,
                          &m);
        if (r < 0)
                return r;
        r = client_request_new(client, explain_complete, (void (*)(void)) callback, userdata,
                               &req);
        if (r < 0)
                return r;
        return client_request_send(req, m, ret_request);
}

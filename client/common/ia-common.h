/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ia-common.h — names shared by image-accessd and its clients: the bus name, object path,
 * interfaces, modes, polkit actions and error names.  This is the one place they are spelled.
 */
#pragma once

#define IA_BUS_NAME             "org.example.ImageAccess"
#define IA_OBJECT_PATH          "/org/example/ImageAccess"
#define IA_INTERFACE            "org.example.ImageAccess"
#define IA_MANAGER_INTERFACE    "org.example.ImageAccess.Manager"
/* The Manager signals again, sent only to the connections that subscribed (Manager.Subscribe):
 * the bus policy lets any caller receive these, and the service never broadcasts them. */
#define IA_NOTIFY_INTERFACE     "org.example.ImageAccess.Notify"

/* Modes, weakest first: a grant of a mode also covers every weaker one. */
#define IA_MODE_READ_ONLY_STR   "read-only"
#define IA_MODE_READ_WRITE_STR  "read-write"
#define IA_MODE_CREATE_STR      "create"

/* polkit actions: one per method family, so .rules can tell them apart. */
#define IA_ACTION_OPEN_IMAGE       "org.example.imageaccess.open-image"
#define IA_ACTION_REGISTER_GUEST   "org.example.imageaccess.register-guest"
#define IA_ACTION_UNREGISTER_GUEST "org.example.imageaccess.unregister-guest"
#define IA_ACTION_BIND_PROCESS     "org.example.imageaccess.bind-process"
#define IA_ACTION_GRANT_IMAGE      "org.example.imageaccess.grant-image"
#define IA_ACTION_REVOKE_IMAGE     "org.example.imageaccess.revoke-image"
#define IA_ACTION_LIST             "org.example.imageaccess.list"

/*
 * Error names.  The errno after each is what sd_bus_error_get_errno() gives a client once the
 * map in ia-error.c is registered; several names share an errno on purpose (they are all
 * "invalid argument" to a POSIX caller), the name tells a person which argument.
 */
#define IA_ERROR_PREFIX           "org.example.ImageAccess.Error."
#define IA_ERROR_UNKNOWN_GUEST    IA_ERROR_PREFIX "UnknownGuest"        /* ESRCH */
#define IA_ERROR_GUEST_EXISTS     IA_ERROR_PREFIX "GuestExists"         /* EEXIST */
#define IA_ERROR_UID_IN_USE       IA_ERROR_PREFIX "UidInUse"            /* EADDRINUSE */
#define IA_ERROR_DIRECTORY_IN_USE IA_ERROR_PREFIX "DirectoryInUse"      /* EBUSY */
#define IA_ERROR_NOT_GRANTED      IA_ERROR_PREFIX "NotGranted"          /* EPERM */
#define IA_ERROR_NOT_BOUND        IA_ERROR_PREFIX "NotBound"            /* ENOLINK */
#define IA_ERROR_INVALID_NAME     IA_ERROR_PREFIX "InvalidName"         /* EINVAL */
#define IA_ERROR_INVALID_PATH     IA_ERROR_PREFIX "InvalidPath"         /* EINVAL */
#define IA_ERROR_INVALID_MODE     IA_ERROR_PREFIX "InvalidMode"         /* EINVAL */
#define IA_ERROR_INVALID_OPTION   IA_ERROR_PREFIX "InvalidOption"       /* EINVAL */
#define IA_ERROR_INVALID_PROCESS  IA_ERROR_PREFIX "InvalidProcess"      /* ESRCH */
#define IA_ERROR_FILE_EXISTS      IA_ERROR_PREFIX "FileExists"          /* EEXIST */
#define IA_ERROR_NOT_FOUND        IA_ERROR_PREFIX "NotFound"            /* ENOENT */
#define IA_ERROR_WRONG_FILE_TYPE  IA_ERROR_PREFIX "WrongFileType"       /* EMEDIUMTYPE */
#define IA_ERROR_SYMLINK          IA_ERROR_PREFIX "SymlinkRefused"      /* ELOOP */
#define IA_ERROR_NOT_CREATED      IA_ERROR_PREFIX "NotCreatedByService" /* EPERM */
#define IA_ERROR_LIMIT_EXCEEDED   IA_ERROR_PREFIX "LimitExceeded"       /* ENOBUFS */
#define IA_ERROR_NO_SPACE         IA_ERROR_PREFIX "NoSpace"             /* ENOSPC */
#define IA_ERROR_AUTH_UNAVAILABLE IA_ERROR_PREFIX "AuthorizationUnavailable" /* EHOSTDOWN */
/* polkit asked a person, who cancelled, typed a wrong password, or did not answer in time;
 * or no authentication agent was there to ask. */
#define IA_ERROR_AUTH_FAILED      IA_ERROR_PREFIX "AuthenticationFailed" /* EACCES */
#define IA_ERROR_IO               IA_ERROR_PREFIX "IOError"             /* EIO */
/* A read-write open of a block device that is mounted or claimed (O_EXCL) by someone else. */
#define IA_ERROR_DEVICE_BUSY      IA_ERROR_PREFIX "DeviceBusy"          /* EBUSY */

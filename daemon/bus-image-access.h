/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bus-image-access.h — the D-Bus interface org.example.ImageAccess (OpenImage, OpenChannel,
 * Version) on the service's object.  The Manager interface is bus-manager.h's.
 */
#pragma once

#include "manager.h"

int bus_image_access_register(Manager *m);

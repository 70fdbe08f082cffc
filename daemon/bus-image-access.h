/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bus-image-access.h — the D-Bus object: the vtables of org.example.ImageAccess and
 * org.example.ImageAccess.Manager.  The only module that reads or writes D-Bus messages of
 * our interfaces.
 */
#pragma once

#include "manager.h"

int bus_image_access_register(Manager *m);

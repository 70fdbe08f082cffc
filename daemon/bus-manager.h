/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bus-manager.h — the D-Bus interface org.example.ImageAccess.Manager (guests, bindings,
 * grants) on the service's object.
 */
#pragma once

#include "manager.h"

int bus_manager_register(Manager *m);

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Fuzz target: sequences of registry operations against a model.  Each input byte pair is an
 * operation and an argument; names and paths come from small fixed sets so that operations
 * collide.  After every step the registry must agree with the model and with its own counts.
 */
#include <assert.h>
#include <stdint.h>
#include <glib.h>

#include "registry.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const guests[] = { "vm1", "vm2", "vm-3", "", "-bad", "x/y" };
static const char *const paths[] = { "/a", "/a/b", "/img/vm1.qcow2", "relative", "/a/../b", "/a/" };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        RegistryLimits limits = { .max_guests = 4, .max_grants_per_guest = 3,
                                  .max_bindings_per_guest = 2, .max_connections_per_binding = 2 };
        g_autoptr(Registry) r = registry_new(&limits);
        /* The model: "guest\npath" → mode+1, and the set of guests. */
        g_autoptr(GHashTable) model = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
        g_autoptr(GHashTable) model_guests = g_hash_table_new(g_str_hash, g_str_equal);

        for (size_t i = 0; i + 1 < size; i += 2) {
                const char *guest = guests[data[i + 1] % G_N_ELEMENTS(guests)];
                const char *path = paths[(data[i + 1] >> 3) % G_N_ELEMENTS(paths)];
                IaMode mode = (IaMode) ((data[i + 1] >> 6) % _IA_MODE_MAX);
                g_autofree char *key = g_strconcat(guest, "\n", path, NULL);
                bool known = g_hash_table_contains(model_guests, guest);
                int ret;

                switch (data[i] % 5) {
                case 0:
                        ret = registry_add_guest(r, guest, NULL, NULL, false, 0, NULL);
                        if (!guest_name_is_valid(guest))
                                assert(ret == -EINVAL);
                        else if (known)
                                assert(ret == -EEXIST);
                        else if (g_hash_table_size(model_guests) >= limits.max_guests)
                                assert(ret == -ENOBUFS);
                        else {
                                assert(ret == 0);
                                g_hash_table_add(model_guests, (gpointer) guest);
                        }
                        break;
                case 1:
                        ret = registry_remove_guest(r, guest);
                        assert(known ? ret == 0 : ret < 0);
                        if (known) {
                                GHashTableIter it;
                                const char *k;
                                g_autofree char *prefix = g_strconcat(guest, "\n", NULL);

                                g_hash_table_remove(model_guests, guest);
                                g_hash_table_iter_init(&it, model);
                                while (g_hash_table_iter_next(&it, (gpointer *) &k, NULL))
                                        if (g_str_has_prefix(k, prefix))
                                                g_hash_table_iter_remove(&it);
                        }
                        break;
                case 2:
                        ret = registry_grant(r, guest, path, mode);
                        if (ret >= 0) {
                                assert(known);
                                g_hash_table_replace(model, g_steal_pointer(&key), GINT_TO_POINTER(mode + 1));
                        }
                        break;
                case 3:
                        ret = registry_revoke(r, guest, path, NULL);
                        assert((ret == 0) == g_hash_table_contains(model, key));
                        g_hash_table_remove(model, key);
                        break;
                case 4: {
                        gpointer v = g_hash_table_lookup(model, key);

                        ret = registry_check(r, guest, path, mode);
                        assert((ret == 0) == (v && ia_mode_covers(GPOINTER_TO_INT(v) - 1, mode)));
                        break;
                }
                }
                assert(r->n_grants == g_hash_table_size(model));
                assert(g_hash_table_size(r->guests) == g_hash_table_size(model_guests));
        }
        return 0;
}

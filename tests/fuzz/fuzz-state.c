/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Fuzz target: loading a state directory whose snapshot or journal holds any bytes.  Loading
 * is all or nothing: on error the registry is empty (the service fails closed).
 * Input: a first byte 'J' puts the rest in the journal, anything else in the snapshot.
 */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>
#include <glib.h>
#include <glib/gstdio.h>

#include "state.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *dir;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        g_autoptr(Registry) r = registry_new(&REGISTRY_LIMITS_DEFAULT);
        g_autoptr(State) s = NULL;
        g_autofree char *error = NULL, *state_file = NULL, *journal_file = NULL;
        bool journal = size > 0 && data[0] == 'J';
        int ret;

        if (!dir)
                dir = g_dir_make_tmp("fuzz-state-XXXXXX", NULL);
        assert(dir);
        state_file = g_build_filename(dir, "state", NULL);
        journal_file = g_build_filename(dir, "journal", NULL);
        (void) g_unlink(state_file);
        (void) g_unlink(journal_file);

        if (journal)
                assert(g_file_set_contents(journal_file, (const char *) data + 1, (gssize) size - 1, NULL));
        else
                assert(g_file_set_contents(state_file, (const char *) data, (gssize) size, NULL));

        assert(state_open(dir, &s) == 0);
        ret = state_load(s, r, &error);
        if (ret < 0) {
                assert(error);
                assert(g_hash_table_size(r->guests) == 0);
                assert(r->n_grants == 0);
        } else {
                GHashTableIter it;
                Guest *g;
                uint64_t n = 0;

                g_hash_table_iter_init(&it, r->guests);
                while (g_hash_table_iter_next(&it, NULL, (gpointer *) &g)) {
                        assert(guest_name_is_valid(g->name));
                        n += g_hash_table_size(g->grants);
                }
                assert(n == r->n_grants);
        }
        return 0;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The standalone driver for the fuzz targets when not built with libFuzzer: feeds every file
 * named on the command line (directories are read recursively) to LLVMFuzzerTestOneInput(),
 * so that the corpora replay as ordinary tests in every build (the systemd and fwupd way).
 */
#include <stdint.h>
#include <stdio.h>
#include <glib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static unsigned run_path(const char *path) {
        g_autofree char *contents = NULL;
        gsize len;
        unsigned n = 0;

        if (g_file_test(path, G_FILE_TEST_IS_DIR)) {
                g_autoptr(GDir) d = g_dir_open(path, 0, NULL);
                const char *name;

                while (d && (name = g_dir_read_name(d))) {
                        g_autofree char *child = g_build_filename(path, name, NULL);

                        n += run_path(child);
                }
                return n;
        }
        if (!g_file_get_contents(path, &contents, &len, NULL)) {
                fprintf(stderr, "cannot read '%s'\n", path);
                return 0;
        }
        (void) LLVMFuzzerTestOneInput((const uint8_t *) contents, len);
        return 1;
}

int main(int argc, char *argv[]) {
        unsigned n = 0;

        for (int i = 1; i < argc; i++)
                n += run_path(argv[i]);
        printf("%u inputs replayed\n", n);
        return n > 0 ? 0 : 1;   /* an empty corpus is a broken test, not a pass */
}

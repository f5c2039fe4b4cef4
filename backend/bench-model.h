/* bench-model.h: random-weight full-size models for `impasto bench`. */
#pragma once

#include <glib.h>

/* Write a random-weight fp16 checkpoint with every tensor of a shape table. */
gboolean imp_bench_build_model (const char *table_path, const char *out_path, GError **error);
/* The cached model for a shape table under $XDG_CACHE_HOME/impasto/bench/,
 * built on first use (and when the table is newer). */
char *imp_bench_model_path (const char *table_path, GError **error);

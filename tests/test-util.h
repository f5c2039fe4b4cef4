/* test-util.h: small helpers shared by the test programs. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* The golden data folder (IMPASTO_GOLDEN_DIR, else the configured default), or
 * NULL when it does not exist. */
const char *test_golden_dir (void);
const char *test_golden_sdxl_dir (void);

/* Skip the current GTest case loudly when the golden data is missing. Returns
 * the folder or NULL (after g_test_skip). */
const char *test_require_golden (void);

/* Normalised error used across the project: max |a - e| / rms(e).
 * Returns +inf when NaN/Inf parity differs. */
double test_max_err_over_rms (const float *actual, const float *expected, gsize n);

/* Deterministic pseudo-random floats in [lo, hi) (xorshift, seeded). */
void test_fill_random (float *dst, gsize n, guint64 seed, float lo, float hi);

G_END_DECLS

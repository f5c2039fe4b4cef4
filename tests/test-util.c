#include "config.h"
#include "test-util.h"

#include <math.h>

static const char *
dir_from (const char *env, const char *fallback)
{
  const char *d = g_getenv (env);
  if (d == NULL || *d == '\0')
    d = fallback;
  if (!g_file_test (d, G_FILE_TEST_IS_DIR))
    return NULL;
  return d;
}

const char *
test_golden_dir (void)
{
  return dir_from ("IMPASTO_GOLDEN_DIR", IMPASTO_GOLDEN_DIR);
}

const char *
test_golden_sdxl_dir (void)
{
  return dir_from ("IMPASTO_GOLDEN_SDXL_DIR", IMPASTO_GOLDEN_SDXL_DIR);
}

const char *
test_require_golden (void)
{
  const char *d = test_golden_dir ();
  if (d == NULL)
    g_test_skip ("golden data not found: set IMPASTO_GOLDEN_DIR or put it at ../shared/golden");
  return d;
}

double
test_max_err_over_rms (const float *actual, const float *expected, gsize n)
{
  double max_err = 0.0, sum_sq = 0.0;
  for (gsize i = 0; i < n; i++)
    {
      gboolean ea = isfinite (actual[i]), ee = isfinite (expected[i]);
      if (ea != ee)
        return INFINITY;
      if (!ee)
        continue;
      double d = fabs ((double) actual[i] - (double) expected[i]);
      if (d > max_err)
        max_err = d;
      sum_sq += (double) expected[i] * expected[i];
    }
  double rms = n ? sqrt (sum_sq / n) : 0.0;
  if (rms == 0.0)
    return max_err == 0.0 ? 0.0 : INFINITY;
  return max_err / rms;
}

void
test_fill_random (float *dst, gsize n, guint64 seed, float lo, float hi)
{
  guint64 s = seed * 0x9E3779B97F4A7C15ull + 1;
  for (gsize i = 0; i < n; i++)
    {
      s ^= s << 13;
      s ^= s >> 7;
      s ^= s << 17;
      double u = (double) (s >> 11) / (double) (1ull << 53);
      dst[i] = (float) (lo + (hi - lo) * u);
    }
}

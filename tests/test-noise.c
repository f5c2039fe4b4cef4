/* test-noise: the seeded generator against PyTorch's CPU torch.randn (golden
 * `noise` cases) and data-independent properties of the stream. */
#include "config.h"

#include "sched-golden.h"
#include "sd-noise.h"
#include "test-util.h"

#include <math.h>
#include <string.h>

/* The C++ standard requires the 10000th output of a default-constructed
 * std::mt19937 (seed 5489) to be 4123659995. */
static void
test_mt19937 (void)
{
  g_autoptr (SdNoise) g = sd_noise_new (5489);
  guint32 v = 0;
  for (int i = 0; i < 10000; i++)
    v = sd_noise_next_u32 (g);
  g_assert_cmpuint (v, ==, 4123659995u);
}

static void
test_stream (void)
{
  g_autoptr (SdNoise) g = sd_noise_new (42);
  float a[64], b[64], c[5], d[5];

  /* reseeding restarts the stream; seeds are taken mod 2^32 */
  sd_noise_randn (g, a, 64);
  sd_noise_seed (g, 42 + (G_GUINT64_CONSTANT (1) << 32));
  sd_noise_randn (g, b, 64);
  g_assert_cmpmem (a, sizeof a, b, sizeof b);
  g_assert_cmpuint (sd_noise_get_seed (g), ==, 42 + (G_GUINT64_CONSTANT (1) << 32));

  /* scalar path: one pair serves two values, also across calls, and 5 = 2 + 3 */
  sd_noise_seed (g, 7);
  sd_noise_randn (g, c, 5);
  sd_noise_seed (g, 7);
  sd_noise_randn (g, d, 2);
  sd_noise_randn (g, d + 2, 3);
  g_assert_cmpmem (c, sizeof c, d, sizeof d);

  /* a tail block redraws 16 uniforms: 17 values consume 17 + 16 outputs */
  g_autoptr (SdNoise) h = sd_noise_new (3);
  g_autoptr (SdNoise) k = sd_noise_new (3);
  float e[17];
  sd_noise_randn (h, e, 17);
  for (int i = 0; i < 33; i++)
    sd_noise_next_u32 (k);
  g_assert_cmpuint (sd_noise_next_u32 (h), ==, sd_noise_next_u32 (k));

  /* a plausible normal distribution */
  gsize n = 1 << 16;
  g_autofree float *v = g_new (float, n);
  sd_noise_randn (g, v, n);
  double sum = 0, sq = 0;
  for (gsize i = 0; i < n; i++)
    {
      g_assert_true (isfinite (v[i]));
      sum += v[i];
      sq += (double)v[i] * v[i];
    }
  g_assert_cmpfloat (fabs (sum / n), <, 0.02);
  g_assert_cmpfloat (fabs (sq / n - 1.0), <, 0.03);
}

static void
check_output (JsonObject *c, const char *name, const float *actual, const float *expected, gsize n,
              double *worst)
{
  double bound = sg_tolerance (c, name);
  double err = test_max_err_over_rms (actual, expected, n);
  double max_abs = sg_max_abs (actual, expected, n);
  gsize same = sg_bit_identical (actual, expected, n);
  g_test_message ("%s %s [%" G_GSIZE_FORMAT
                  "]: err %.3g (bound %.3g), max abs %.3g, %" G_GSIZE_FORMAT "/%" G_GSIZE_FORMAT
                  " bit-identical (%.1f%%)",
                  sg_str (c, "id"), name, n, err, bound, max_abs, same, n, 100.0 * same / n);
  if (!(err <= bound))
    {
      g_test_message ("  first values (actual/expected): %.9g/%.9g %.9g/%.9g", actual[0],
                      expected[0], n > 1 ? actual[1] : 0.f, n > 1 ? expected[1] : 0.f);
      g_test_fail ();
    }
  *worst = fmax (*worst, err);
}

static void
test_golden (void)
{
  const char *dir = test_golden_sdxl_dir ();
  if (dir == NULL)
    {
      g_test_skip ("SDXL golden data (noise cases) not found: set IMPASTO_GOLDEN_SDXL_DIR or "
                   "put it at ../shared/golden-sdxl");
      return;
    }
  g_autoptr (SgManifest) m = sg_manifest_load (dir);
  if (m == NULL)
    return;
  g_autoptr (GPtrArray) cases = sg_manifest_cases (m, "noise");
  if (cases->len == 0)
    {
      g_test_message ("%s: no noise cases", dir);
      g_test_fail ();
      return;
    }
  double worst = 0.0;
  guint n_outputs = 0;
  for (guint ci = 0; ci < cases->len; ci++)
    {
      JsonObject *c = cases->pdata[ci];
      JsonObject *params = sg_obj (c, "params");
      g_assert_true (json_object_has_member (params, "seed"));
      /* Seeds go up to 2^32 - 1: json-glib reads them as int64. */
      guint64 seed = (guint64)json_object_get_int_member (params, "seed");
      g_autoptr (SdSafetensors) st = sg_open_case (m, c);
      g_autoptr (SdNoise) g = sd_noise_new (seed);
      JsonArray *outputs = json_object_get_array_member (c, "outputs");
      /* Outputs named randn_<shape> are each freshly seeded; draw<k> continue
       * one stream in order (golden-sdxl README, "noise"). */
      for (guint oi = 0; oi < json_array_get_length (outputs); oi++)
        {
          JsonObject *o = json_array_get_object_element (outputs, oi);
          const char *name = sg_str (o, "name");
          gsize n = 0;
          g_autofree float *expected = sg_read (st, name, &n);
          g_autofree float *actual = g_new (float, n);
          if (g_str_has_prefix (name, "randn_"))
            sd_noise_seed (g, seed);
          else
            g_assert_true (g_str_has_prefix (name, "draw"));
          sd_noise_randn (g, actual, n);
          check_output (c, name, actual, expected, n, &worst);
          n_outputs++;
        }
    }
  g_test_message ("noise: %u outputs of %u cases, worst err %.3g", n_outputs, cases->len, worst);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/noise/mt19937", test_mt19937);
  g_test_add_func ("/noise/stream", test_stream);
  g_test_add_func ("/noise/golden", test_golden);
  return g_test_run ();
}

/* sd-noise.c: PyTorch's CPU normal generator (see sd-noise.h for the stream).
 *
 * References: PyTorch 1.13 aten/src/ATen/core/MT19937RNGEngine.h (the engine),
 * CPUGeneratorImpl.cpp (random64, the cached double normal),
 * native/cpu/DistributionTemplates.h (normal_fill / normal_fill_16 for numel
 * >= 16, normal_distribution<double> otherwise); M. Matsumoto and T. Nishimura,
 * "Mersenne Twister", ACM TOMACS 8 (1998) for MT19937.
 */
#include "config.h"

#include "sd-noise.h"

#include <math.h>

#define MT_N 624
#define MT_M 397

struct _SdNoise
{
  guint32 mt[MT_N];
  int mti;             /* next state word to temper; MT_N = twist first */
  gboolean has_cached; /* scalar path: the second value of a Box-Muller pair */
  double cached;
  guint64 seed;
};

void
sd_noise_seed (SdNoise *g, guint64 seed)
{
  g_return_if_fail (g != NULL);
  g->seed = seed;
  /* init_genrand on the low 32 bits (PyTorch: seed & 0xffffffff) */
  g->mt[0] = (guint32)seed;
  for (int i = 1; i < MT_N; i++)
    g->mt[i] = 1812433253u * (g->mt[i - 1] ^ (g->mt[i - 1] >> 30)) + (guint32)i;
  g->mti = MT_N;
  g->has_cached = FALSE;
  g->cached = 0.0;
}

SdNoise *
sd_noise_new (guint64 seed)
{
  SdNoise *g = g_new0 (SdNoise, 1);
  sd_noise_seed (g, seed);
  return g;
}

void
sd_noise_free (SdNoise *g)
{
  g_free (g);
}

guint64
sd_noise_get_seed (const SdNoise *g)
{
  return g->seed;
}

static void
mt_twist (SdNoise *g)
{
  const guint32 upper = 0x80000000u, lower = 0x7fffffffu, matrix_a = 0x9908b0dfu;
  guint32 *mt = g->mt;
  for (int k = 0; k < MT_N; k++)
    {
      guint32 y = (mt[k] & upper) | (mt[(k + 1) % MT_N] & lower);
      mt[k] = mt[(k + MT_M) % MT_N] ^ (y >> 1) ^ ((y & 1u) ? matrix_a : 0u);
    }
  g->mti = 0;
}

guint32
sd_noise_next_u32 (SdNoise *g)
{
  if (g->mti >= MT_N)
    mt_twist (g);
  guint32 y = g->mt[g->mti++];
  y ^= y >> 11;
  y ^= (y << 7) & 0x9d2c5680u;
  y ^= (y << 15) & 0xefc60000u;
  y ^= y >> 18;
  return y;
}

static guint64
next_u64 (SdNoise *g)
{
  guint64 hi = sd_noise_next_u32 (g);
  guint64 lo = sd_noise_next_u32 (g);
  return (hi << 32) | lo;
}

/* uniform_real_distribution<float> (0, 1): 24 random bits * 2^-24. */
static float
uniform_f32 (SdNoise *g)
{
  return (float)(sd_noise_next_u32 (g) & 0xFFFFFFu) * (1.0f / 16777216.0f);
}

/* normal_fill_16: Box-Muller in float32 over 8 pairs (u[j], u[j + 8]). */
static void
normal_fill_16 (float *data)
{
  for (int j = 0; j < 8; j++)
    {
      const float u1 = 1.0f - data[j]; /* [0, 1) -> (0, 1] for log */
      const float u2 = data[j + 8];
      const float radius = sqrtf (-2.0f * logf (u1));
      /* 2.0f * c10::pi<double> * u2: double product rounded to float */
      const float theta = (float)(2.0 * G_PI * (double)u2);
      data[j] = radius * cosf (theta);
      data[j + 8] = radius * sinf (theta);
    }
}

/* normal_distribution<double>: one value of a double Box-Muller pair, the other
 * cached for the next call. */
static double
normal_f64 (SdNoise *g)
{
  if (g->has_cached)
    {
      g->has_cached = FALSE;
      return g->cached;
    }
  const double scale = 1.0 / 9007199254740992.0; /* 2^-53 */
  const guint64 mask = (G_GUINT64_CONSTANT (1) << 53) - 1;
  double u1 = (double)(next_u64 (g) & mask) * scale;
  double u2 = (double)(next_u64 (g) & mask) * scale;
  double r = sqrt (-2.0 * log (1.0 - u2));
  double theta = 2.0 * G_PI * u1;
  g->cached = r * sin (theta);
  g->has_cached = TRUE;
  return r * cos (theta);
}

void
sd_noise_randn (SdNoise *g, float *out, gsize n)
{
  g_return_if_fail (g != NULL);
  if (n == 0)
    return;
  g_return_if_fail (out != NULL);

  if (n < 16)
    {
      for (gsize i = 0; i < n; i++)
        out[i] = (float)normal_f64 (g);
      return;
    }
  for (gsize i = 0; i < n; i++)
    out[i] = uniform_f32 (g);
  for (gsize i = 0; i + 16 <= n; i += 16)
    normal_fill_16 (out + i);
  if (n % 16 != 0)
    {
      /* PyTorch recomputes the last 16 values from 16 fresh uniforms. */
      float *tail = out + n - 16;
      for (int i = 0; i < 16; i++)
        tail[i] = uniform_f32 (g);
      normal_fill_16 (tail);
    }
}

gboolean
sd_noise_step_fn (gpointer data, int index, float *out, gsize n, GError **error)
{
  sd_noise_randn ((SdNoise *)data, out, n);
  return TRUE;
}

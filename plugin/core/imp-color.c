/* imp-color.c: colour matching of a generated region to its surroundings,
 * per channel mean / deviation transfer in CIE L*a*b* (Reinhard et al. 2001,
 * "Color Transfer between Images", with Lab in place of their lalphabeta: both
 * are decorrelated opponent spaces; Lab is the one artists know). */
#include "imp-core.h"

#include <math.h>
#include <string.h>

/* sRGB (IEC 61966-2-1) primaries, D65 white; matrices from Bruce Lindbloom's
 * tables, the inverse pair to 7 digits. */
static const double M_RGB2XYZ[3][3] = {
  { 0.4124564, 0.3575761, 0.1804375 },
  { 0.2126729, 0.7151522, 0.0721750 },
  { 0.0193339, 0.1191920, 0.9503041 },
};
static const double M_XYZ2RGB[3][3] = {
  { 3.2404542, -1.5371385, -0.4985314 },
  { -0.9692660, 1.8760108, 0.0415560 },
  { 0.0556434, -0.2040259, 1.0572252 },
};
static const double WHITE[3] = { 0.95047, 1.0, 1.08883 };

#define MIN_WEIGHT 16.0

static double srgb_lut[256]; /* sRGB u8 -> linear */

static void
init_lut (void)
{
  static gsize done = 0;
  if (g_once_init_enter (&done))
    {
      for (int i = 0; i < 256; i++)
        {
          const double v = i / 255.0;
          srgb_lut[i] = v <= 0.04045 ? v / 12.92 : pow ((v + 0.055) / 1.055, 2.4);
        }
      g_once_init_leave (&done, 1);
    }
}

static inline double
lab_f (double t)
{
  /* CIE 1976: cube root above (6/29)^3, linear below. */
  const double d = 6.0 / 29.0;
  return t > d * d * d ? cbrt (t) : t / (3.0 * d * d) + 4.0 / 29.0;
}

static inline double
lab_finv (double t)
{
  const double d = 6.0 / 29.0;
  return t > d ? t * t * t : 3.0 * d * d * (t - 4.0 / 29.0);
}

static inline void
rgb_to_lab (const guint8 *p, float *lab)
{
  const double r = srgb_lut[p[0]], g = srgb_lut[p[1]], b = srgb_lut[p[2]];
  double f[3];
  for (int i = 0; i < 3; i++)
    f[i] = lab_f ((M_RGB2XYZ[i][0] * r + M_RGB2XYZ[i][1] * g + M_RGB2XYZ[i][2] * b) / WHITE[i]);
  lab[0] = (float) (116.0 * f[1] - 16.0);
  lab[1] = (float) (500.0 * (f[0] - f[1]));
  lab[2] = (float) (200.0 * (f[1] - f[2]));
}

static inline guint8
encode_srgb (double v)
{
  double e;
  if (!(v > 0.0))
    return 0;
  if (v >= 1.0)
    return 255;
  e = v <= 0.0031308 ? 12.92 * v : 1.055 * pow (v, 1.0 / 2.4) - 0.055;
  return (guint8) CLAMP ((int) floor (e * 255.0 + 0.5), 0, 255);
}

static inline void
lab_to_rgb (const double *lab, guint8 *p)
{
  const double fy = (lab[0] + 16.0) / 116.0;
  const double fx = fy + lab[1] / 500.0;
  const double fz = fy - lab[2] / 200.0;
  const double xyz[3] = { WHITE[0] * lab_finv (fx), WHITE[1] * lab_finv (fy),
                          WHITE[2] * lab_finv (fz) };
  for (int i = 0; i < 3; i++)
    p[i] = encode_srgb (M_XYZ2RGB[i][0] * xyz[0] + M_XYZ2RGB[i][1] * xyz[1]
                        + M_XYZ2RGB[i][2] * xyz[2]);
}

typedef struct
{
  double w, s[3], ss[3];
} Stats;

static inline void
stats_add (Stats *st, const float *lab, double w)
{
  st->w += w;
  for (int c = 0; c < 3; c++)
    {
      st->s[c] += w * lab[c];
      st->ss[c] += w * lab[c] * lab[c];
    }
}

static void
stats_finish (const Stats *st, double mean[3], double sd[3])
{
  for (int c = 0; c < 3; c++)
    {
      mean[c] = st->s[c] / st->w;
      sd[c] = sqrt (MAX (st->ss[c] / st->w - mean[c] * mean[c], 0.0));
    }
}

gboolean
imp_color_match (SdImage *gen, const SdImage *orig, const float *mask, double strength,
                 ImpColorMatchMode mode)
{
  const int w = gen->width, h = gen->height;
  g_autofree float *gen_lab = NULL;
  Stats sg = { 0 }, so = { 0 };
  double mg[3], dg[3], mo[3], dO[3], k[3];

  g_return_val_if_fail (gen != NULL && orig != NULL && mask != NULL, FALSE);
  g_return_val_if_fail (orig->width == w && orig->height == h, FALSE);
  g_return_val_if_fail (gen->channels >= 3 && orig->channels >= 3, FALSE);
  if (!(strength > 0.0))
    return FALSE;
  strength = MIN (strength, 1.0);
  init_lut ();

  gen_lab = g_new (float, (gsize) w * h * 3);
  for (int y = 0; y < h; y++)
    {
      const guint8 *pg = sd_image_row (gen, y);
      const guint8 *po = sd_image_row (orig, y);
      const float *m = mask + (gsize) y * w;
      float *lab = gen_lab + (gsize) y * w * 3;
      for (int x = 0; x < w; x++, pg += gen->channels, po += orig->channels, lab += 3)
        {
          const double a = m[x] > 0.0f ? MIN (m[x], 1.0f) : 0.0; /* NaN -> ring */
          /* Transparent original pixels have no colour worth matching. */
          const double alpha = orig->channels == 4 ? po[3] / 255.0 : 1.0;
          const double ring = (1.0 - a) * alpha;
          rgb_to_lab (pg, lab);
          if (ring > 0.0)
            {
              float ol[3];
              rgb_to_lab (po, ol);
              stats_add (&so, ol, ring);
            }
          if (mode == IMP_COLOR_MATCH_RING ? ring > 0.0 : a > 0.0)
            stats_add (&sg, lab, mode == IMP_COLOR_MATCH_RING ? ring : a);
        }
    }
  if (so.w < MIN_WEIGHT || sg.w < MIN_WEIGHT)
    return FALSE;
  stats_finish (&sg, mg, dg);
  stats_finish (&so, mo, dO);
  for (int c = 0; c < 3; c++)
    /* Bound the contrast change: a flat ring (sky, a wall) must not blow up
     * the texture of what was generated. */
    k[c] = dg[c] > 1e-3 ? CLAMP (dO[c] / dg[c], 0.5, 2.0) : 1.0;

  for (int y = 0; y < h; y++)
    {
      guint8 *pg = sd_image_row (gen, y);
      const float *lab = gen_lab + (gsize) y * w * 3;
      for (int x = 0; x < w; x++, pg += gen->channels, lab += 3)
        {
          double out[3];
          for (int c = 0; c < 3; c++)
            {
              const double t = mo[c] + (lab[c] - mg[c]) * k[c];
              out[c] = lab[c] + strength * (t - lab[c]);
            }
          lab_to_rgb (out, pg);
        }
    }
  return TRUE;
}

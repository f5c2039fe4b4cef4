/* sd-image-resample.c: separable resampling with area filtering.
 *
 * For each axis, output pixel i covers input coordinate center = (i + 0.5) *
 * in/out (pixel j spans [j, j + 1)). The filter is evaluated at (j + 0.5 -
 * center) / s with s = max(in/out, 1): when reducing, the kernel is stretched
 * so it integrates over the whole footprint of the output pixel instead of
 * point-sampling the input (the scheme of Pillow's ImagingResample and
 * libvips' reduce). Weights are normalised per output pixel, which also
 * handles the image border (the window is cut, not padded).
 *
 * The two passes are streamed: horizontally filtered rows are kept in a ring
 * of as many rows as the vertical kernel has taps, so memory is O(taps x
 * output width) and every input row is filtered once.
 */
#include "sd-image.h"
#include "sd-error.h"

#include <math.h>
#include <string.h>

typedef struct
{
  int *start; /* first input index per output index */
  int *count; /* taps per output index */
  float *w;   /* [out][max_taps] */
  int max_taps;
} Contribs;

static double
sinc (double x)
{
  if (x == 0.0)
    return 1.0;
  x *= G_PI;
  return sin (x) / x;
}

static double
filter_eval (SdResampleFilter f, double x)
{
  x = fabs (x);
  switch (f)
    {
    case SD_RESAMPLE_BILINEAR:
      return x < 1.0 ? 1.0 - x : 0.0;
    case SD_RESAMPLE_LANCZOS3:
      return x < 3.0 ? sinc (x) * sinc (x / 3.0) : 0.0;
    default:
      return 0.0;
    }
}

static void
contribs_clear (Contribs *c)
{
  g_free (c->start);
  g_free (c->count);
  g_free (c->w);
  memset (c, 0, sizeof *c);
}

static gboolean
contribs_init (Contribs *c, int in, int out, SdResampleFilter f, GError **error)
{
  const double scale = (double) in / out;
  const double fscale = MAX (scale, 1.0);
  const double support = (f == SD_RESAMPLE_LANCZOS3 ? 3.0 : 1.0) * fscale;
  double *tmp;
  gsize n;

  memset (c, 0, sizeof *c);
  c->max_taps = f == SD_RESAMPLE_NEAREST ? 1 : (int) ceil (2.0 * support) + 2;
  if (!g_size_checked_mul (&n, (gsize) out, (gsize) c->max_taps)
      || (c->w = g_try_new (float, n)) == NULL)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_OUT_OF_MEMORY, "out of memory for resampling");
      return FALSE;
    }
  c->start = g_new (int, out);
  c->count = g_new (int, out);
  tmp = g_new (double, c->max_taps);
  for (int i = 0; i < out; i++)
    {
      const double center = (i + 0.5) * scale;
      float *w = c->w + (gsize) i * c->max_taps;
      int lo, hi, a, b;
      double sum = 0.0;

      if (f == SD_RESAMPLE_NEAREST)
        {
          c->start[i] = MIN ((int) center, in - 1);
          c->count[i] = 1;
          w[0] = 1.0f;
          continue;
        }
      lo = MAX ((int) floor (center - support + 0.5), 0);
      hi = MIN ((int) floor (center + support + 0.5), in);
      hi = MIN (hi, lo + c->max_taps);
      for (int j = lo; j < hi; j++)
        {
          tmp[j - lo] = filter_eval (f, (j + 0.5 - center) / fscale);
          sum += tmp[j - lo];
        }
      if (hi <= lo || sum == 0.0)
        {
          /* Cannot happen for these filters; keep a sane fallback. */
          c->start[i] = CLAMP ((int) center, 0, in - 1);
          c->count[i] = 1;
          w[0] = 1.0f;
          continue;
        }
      /* Drop zero taps at the ends (the support is rounded outwards). */
      a = 0;
      b = hi - lo;
      while (b - a > 1 && tmp[a] == 0.0)
        a++;
      while (b - a > 1 && tmp[b - 1] == 0.0)
        b--;
      c->start[i] = lo + a;
      c->count[i] = b - a;
      for (int j = a; j < b; j++)
        w[j - a] = (float) (tmp[j] / sum);
    }
  g_free (tmp);
  return TRUE;
}

/* out[0..n) += k * in[0..n), blocked so gcc -O2 vectorises it (SLP). */
static inline void
axpy (float *restrict out, const float *restrict in, float k, gsize n)
{
  gsize x = 0;
  for (; x + 8 <= n; x += 8)
    for (int i = 0; i < 8; i++)
      out[x + i] += k * in[x + i];
  for (; x < n; x++)
    out[x] += k * in[x];
}

static void
hpass (const Contribs *cx, const float *restrict in, float *restrict out, int dw, int ch)
{
  for (int x = 0; x < dw; x++)
    {
      const float *w = cx->w + (gsize) x * cx->max_taps;
      const float *s = in + (gsize) cx->start[x] * ch;
      const int n = cx->count[x];
      float *o = out + (gsize) x * ch;

      switch (ch)
        {
        case 1:
          {
            float a = 0.0f;
            for (int k = 0; k < n; k++)
              a += w[k] * s[k];
            o[0] = a;
            break;
          }
        case 3:
          {
            float a = 0.0f, b = 0.0f, c = 0.0f;
            for (int k = 0; k < n; k++, s += 3)
              {
                a += w[k] * s[0];
                b += w[k] * s[1];
                c += w[k] * s[2];
              }
            o[0] = a;
            o[1] = b;
            o[2] = c;
            break;
          }
        case 4:
          {
            float a = 0.0f, b = 0.0f, c = 0.0f, d = 0.0f;
            for (int k = 0; k < n; k++, s += 4)
              {
                a += w[k] * s[0];
                b += w[k] * s[1];
                c += w[k] * s[2];
                d += w[k] * s[3];
              }
            o[0] = a;
            o[1] = b;
            o[2] = c;
            o[3] = d;
            break;
          }
        default:
          for (int c = 0; c < ch; c++)
            {
              float a = 0.0f;
              for (int k = 0; k < n; k++)
                a += w[k] * s[(gsize) k * ch + c];
              o[c] = a;
            }
        }
    }
}

typedef void (*LoadRowFunc) (gconstpointer src, int y, float *out);
typedef void (*StoreRowFunc) (gpointer dst, int y, const float *in);

static gboolean
resample_core (int sw, int sh, int dw, int dh, int ch, SdResampleFilter f, LoadRowFunc load,
               gconstpointer src, StoreRowFunc store, gpointer dst, GError **error)
{
  Contribs cx, cy;
  gsize in_row, out_row, ring_size;
  float *ring = NULL, *row = NULL, *acc = NULL;
  int *slot_row = NULL;
  int nslots;
  gboolean ok = FALSE;

  if (sw <= 0 || sh <= 0 || dw <= 0 || dh <= 0 || ch <= 0)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG, "cannot resample %dx%d to %dx%d", sw,
                   sh, dw, dh);
      return FALSE;
    }
  if (!contribs_init (&cx, sw, dw, f, error))
    return FALSE;
  if (!contribs_init (&cy, sh, dh, f, error))
    {
      contribs_clear (&cx);
      return FALSE;
    }
  nslots = MIN (cy.max_taps, sh);
  if (!g_size_checked_mul (&in_row, (gsize) sw, (gsize) ch)
      || !g_size_checked_mul (&out_row, (gsize) dw, (gsize) ch)
      || !g_size_checked_mul (&ring_size, out_row, (gsize) nslots)
      || (ring = g_try_new (float, ring_size)) == NULL
      || (row = g_try_new (float, in_row)) == NULL || (acc = g_try_new (float, out_row)) == NULL)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_OUT_OF_MEMORY,
                   "out of memory resampling %dx%d to %dx%d", sw, sh, dw, dh);
      goto out;
    }
  slot_row = g_new (int, nslots);
  for (int i = 0; i < nslots; i++)
    slot_row[i] = -1;

  for (int y = 0; y < dh; y++)
    {
      const float *w = cy.w + (gsize) y * cy.max_taps;
      const int y0 = cy.start[y], n = cy.count[y];

      /* The window [y0, y0 + n) only moves down, and n <= nslots, so the
       * rows it needs map to distinct slots and an evicted row is never
       * needed again. */
      for (int k = 0; k < n; k++)
        {
          const int r = y0 + k, s = r % nslots;
          if (slot_row[s] != r)
            {
              load (src, r, row);
              hpass (&cx, row, ring + (gsize) s * out_row, dw, ch);
              slot_row[s] = r;
            }
        }
      memset (acc, 0, out_row * sizeof (float));
      for (int k = 0; k < n; k++)
        axpy (acc, ring + (gsize) ((y0 + k) % nslots) * out_row, w[k], out_row);
      store (dst, y, acc);
    }
  ok = TRUE;

out:
  contribs_clear (&cx);
  contribs_clear (&cy);
  g_free (ring);
  g_free (row);
  g_free (acc);
  g_free (slot_row);
  return ok;
}

/* ---- float data ----------------------------------------------------------------- */

typedef struct
{
  const float *data;
  gsize row_len;
} FloatSrc;

typedef struct
{
  float *data;
  gsize row_len;
} FloatDst;

static void
load_f32 (gconstpointer p, int y, float *out)
{
  const FloatSrc *s = p;
  memcpy (out, s->data + (gsize) y * s->row_len, s->row_len * sizeof (float));
}

static void
store_f32 (gpointer p, int y, const float *in)
{
  FloatDst *d = p;
  memcpy (d->data + (gsize) y * d->row_len, in, d->row_len * sizeof (float));
}

gboolean
sd_resample_f32 (const float *src, int sw, int sh, int channels, float *dst, int dw, int dh,
                 SdResampleFilter filter, GError **error)
{
  FloatSrc s = { src, (gsize) MAX (sw, 0) * MAX (channels, 0) };
  FloatDst d = { dst, (gsize) MAX (dw, 0) * MAX (channels, 0) };

  g_return_val_if_fail (src != NULL && dst != NULL, FALSE);
  return resample_core (sw, sh, dw, dh, channels, filter, load_f32, &s, store_f32, &d, error);
}

/* ---- 8-bit images ---------------------------------------------------------------------- */

typedef struct
{
  const SdImage *img;
  gboolean premultiply;
} ImgSrc;

typedef struct
{
  SdImage *img;
  gboolean premultiply;
} ImgDst;

static void
load_u8 (gconstpointer p, int y, float *out)
{
  const ImgSrc *s = p;
  const guint8 *row = sd_image_row (s->img, y);
  const gsize n = (gsize) s->img->width * s->img->channels;

  if (!s->premultiply)
    {
      for (gsize i = 0; i < n; i++)
        out[i] = row[i];
      return;
    }
  for (gsize i = 0; i < n; i += 4)
    {
      const float a = row[i + 3] * (1.0f / 255.0f);
      out[i + 0] = row[i + 0] * a;
      out[i + 1] = row[i + 1] * a;
      out[i + 2] = row[i + 2] * a;
      out[i + 3] = row[i + 3];
    }
}

static inline guint8
to_u8 (float v)
{
  if (!(v > 0.0f))
    return 0;
  if (v >= 255.0f)
    return 255;
  return (guint8) (v + 0.5f);
}

static void
store_u8 (gpointer p, int y, const float *in)
{
  ImgDst *d = p;
  guint8 *row = sd_image_row (d->img, y);
  const gsize n = (gsize) d->img->width * d->img->channels;

  if (!d->premultiply)
    {
      for (gsize i = 0; i < n; i++)
        row[i] = to_u8 (in[i]);
      return;
    }
  for (gsize i = 0; i < n; i += 4)
    {
      const guint8 a = to_u8 (in[i + 3]);
      if (a == 0)
        {
          row[i] = row[i + 1] = row[i + 2] = row[i + 3] = 0;
          continue;
        }
      const float inv = 255.0f / in[i + 3];
      row[i + 0] = to_u8 (in[i + 0] * inv);
      row[i + 1] = to_u8 (in[i + 1] * inv);
      row[i + 2] = to_u8 (in[i + 2] * inv);
      row[i + 3] = a;
    }
}

SdImage *
sd_image_resample (const SdImage *img, int width, int height, SdResampleFilter filter,
                   GError **error)
{
  ImgSrc s;
  ImgDst d;
  SdImage *out;

  g_return_val_if_fail (img != NULL, NULL);
  out = sd_image_new (width, height, img->channels, error);
  if (out == NULL)
    return NULL;
  s.img = img;
  s.premultiply = img->channels == 4 && filter != SD_RESAMPLE_NEAREST;
  d.img = out;
  d.premultiply = s.premultiply;
  if (!resample_core (img->width, img->height, width, height, img->channels, filter, load_u8, &s,
                      store_u8, &d, error))
    {
      sd_image_free (out);
      return NULL;
    }
  return out;
}

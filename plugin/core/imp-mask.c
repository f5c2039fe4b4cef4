/* imp-mask.c: selection masks - conversion, grow (exact Euclidean distance),
 * feather (separable gaussian), and the model / layer masks of an inpaint. */
#include "imp-core.h"

#include <math.h>
#include <string.h>

float *
imp_mask_from_u8 (const guint8 *src, gsize stride, int width, int height)
{
  float *m;

  g_return_val_if_fail (src != NULL && width > 0 && height > 0, NULL);
  m = g_new (float, (gsize) width * height);
  for (int y = 0; y < height; y++)
    {
      const guint8 *s = src + (gsize) y * stride;
      float *d = m + (gsize) y * width;
      for (int x = 0; x < width; x++)
        d[x] = (float) s[x] / 255.0f;
    }
  return m;
}

void
imp_mask_to_u8 (const float *mask, int width, int height, guint8 *dst, gsize stride)
{
  g_return_if_fail (mask != NULL && dst != NULL);
  for (int y = 0; y < height; y++)
    {
      const float *s = mask + (gsize) y * width;
      guint8 *d = dst + (gsize) y * stride;
      for (int x = 0; x < width; x++)
        {
          const float v = s[x];
          d[x] = !(v > 0.0f) ? 0 : v >= 1.0f ? 255 : (guint8) (v * 255.0f + 0.5f);
        }
    }
}

void
imp_mask_threshold (float *mask, gsize n, float threshold)
{
  g_return_if_fail (mask != NULL || n == 0);
  for (gsize i = 0; i < n; i++)
    mask[i] = mask[i] >= threshold ? 1.0f : 0.0f;
}

/* ---- grow -------------------------------------------------------------------------- */

#define FAR G_MAXINT32

/* One row of the squared Euclidean distance transform: d[q] = min over p of
 * (q - p)^2 + f[p], over the sites with f[p] != FAR, by the lower envelope of
 * parabolas (Felzenszwalb & Huttenlocher 2012, algorithm DT(f)). v and z are
 * scratch of n and n + 1 entries. */
static void
edt_row (const gint32 *f, int n, double *d, int *v, double *z)
{
  int k = -1;

  for (int q = 0; q < n; q++)
    {
      double s;
      if (f[q] == FAR)
        continue;
      if (k < 0)
        {
          k = 0;
          v[0] = q;
          z[0] = -HUGE_VAL;
          z[1] = HUGE_VAL;
          continue;
        }
      for (;;)
        {
          const int p = v[k];
          s = (((double) f[q] + (double) q * q) - ((double) f[p] + (double) p * p))
              / (2.0 * (q - p));
          if (s > z[k]) /* always true at k == 0, where z[0] = -inf */
            break;
          k--;
        }
      k++;
      v[k] = q;
      z[k] = s;
      z[k + 1] = HUGE_VAL;
    }
  if (k < 0)
    {
      for (int q = 0; q < n; q++)
        d[q] = HUGE_VAL;
      return;
    }
  for (int q = 0, j = 0; q < n; q++)
    {
      while (z[j + 1] < q)
        j++;
      d[q] = (double) (q - v[j]) * (q - v[j]) + f[v[j]];
    }
}

void
imp_mask_grow (float *mask, int width, int height, int radius)
{
  const gint64 far_rows = (gint64) radius + 2; /* beyond this, distance is irrelevant */
  gint32 *g, *last;
  double *d, *z;
  int *v;

  g_return_if_fail (mask != NULL || width <= 0 || height <= 0);
  if (radius <= 0 || width <= 0 || height <= 0)
    return;
  /* Beyond the image diagonal every pixel is within reach anyway. */
  radius = (int) MIN ((gint64) radius, (gint64) width + height);

  /* Column pass: squared distance to the nearest selected pixel in the same
   * column (FAR when more than radius + 1 rows away), two sweeps over rows
   * so memory is read in order. */
  g = g_new (gint32, (gsize) width * height);
  last = g_new (gint32, width);
  for (int x = 0; x < width; x++)
    last[x] = -1;
  for (int y = 0; y < height; y++)
    {
      const float *m = mask + (gsize) y * width;
      gint32 *gr = g + (gsize) y * width;
      for (int x = 0; x < width; x++)
        {
          if (m[x] >= 0.5f)
            last[x] = y;
          gr[x] = (last[x] >= 0 && y - last[x] <= far_rows) ? (y - last[x]) * (y - last[x]) : FAR;
        }
    }
  for (int x = 0; x < width; x++)
    last[x] = -1;
  for (int y = height - 1; y >= 0; y--)
    {
      const float *m = mask + (gsize) y * width;
      gint32 *gr = g + (gsize) y * width;
      for (int x = 0; x < width; x++)
        {
          if (m[x] >= 0.5f)
            last[x] = y;
          if (last[x] >= 0 && last[x] - y <= far_rows)
            {
              const gint32 dd = (last[x] - y) * (last[x] - y);
              if (dd < gr[x])
                gr[x] = dd;
            }
        }
    }

  /* Row pass: exact 2-D squared distance, then the coverage of a disc of
   * the given radius around the selected pixels. */
  d = g_new (double, width);
  v = g_new (int, width);
  z = g_new (double, (gsize) width + 1);
  for (int y = 0; y < height; y++)
    {
      float *m = mask + (gsize) y * width;
      edt_row (g + (gsize) y * width, width, d, v, z);
      for (int x = 0; x < width; x++)
        {
          double c;
          if (d[x] >= (double) (radius + 1) * (radius + 1))
            continue;
          c = radius + 1.0 - sqrt (d[x]);
          c = MIN (c, 1.0);
          if (c > m[x])
            m[x] = (float) c;
        }
    }
  g_free (g);
  g_free (last);
  g_free (d);
  g_free (v);
  g_free (z);
}

/* ---- feather ------------------------------------------------------------------------ */

/* out[x] = k0 * c[x] + sum_j k[j] * (a_j[x] + b_j[x]) is built from these
 * two kernels, blocked so gcc -O2 vectorises them (SLP on the fixed 8-wide
 * inner loop). */
static inline void
scale_row (float *restrict out, const float *restrict in, float k, gsize n)
{
  gsize x = 0;
  for (; x + 8 <= n; x += 8)
    for (int i = 0; i < 8; i++)
      out[x + i] = k * in[x + i];
  for (; x < n; x++)
    out[x] = k * in[x];
}

static inline void
axpy2_row (float *restrict out, const float *a, const float *b, float k, gsize n)
{
  gsize x = 0;
  for (; x + 8 <= n; x += 8)
    for (int i = 0; i < 8; i++)
      out[x + i] += k * (a[x + i] + b[x + i]);
  for (; x < n; x++)
    out[x] += k * (a[x] + b[x]);
}

/* Is the row constant? Sets *value. */
static gboolean
row_constant (const float *r, int n, float *value)
{
  const float v = r[0];
  for (int i = 1; i < n; i++)
    if (r[i] != v)
      return FALSE;
  *value = v;
  return TRUE;
}

void
imp_mask_feather (float *mask, int width, int height, double radius)
{
  double sigma, sum;
  int R;
  float *k, *tmp, *pad, *cval;
  int *run;

  g_return_if_fail (mask != NULL || width <= 0 || height <= 0);
  if (!(radius > 0.0) || width <= 0 || height <= 0)
    return;
  sigma = MIN (radius, IMP_FEATHER_MAX) / 3.5; /* GIMP: gimp_gegl_apply_feather */
  R = MAX ((int) ceil (3.0 * sigma), 1);

  /* Sampled gaussian, normalised to sum 1 over [-R, R]. */
  k = g_new (float, R + 1);
  {
    g_autofree double *kd = g_new (double, R + 1);
    sum = 0.0;
    for (int j = 0; j <= R; j++)
      {
        kd[j] = exp (-(double) j * j / (2.0 * sigma * sigma));
        sum += j == 0 ? kd[j] : 2.0 * kd[j];
      }
    for (int j = 0; j <= R; j++)
      k[j] = (float) (kd[j] / sum);
  }

  tmp = g_new (float, (gsize) width * height);
  pad = g_new (float, (gsize) width + 2 * R);
  cval = g_new (float, height);
  run = g_new (int, height);

  /* Horizontal pass into tmp. A constant row stays exactly constant (the
   * common case: rows entirely outside or inside the selection). Runs of
   * equal constant rows are numbered for the vertical pass. */
  for (int y = 0; y < height; y++)
    {
      const float *src = mask + (gsize) y * width;
      float *out = tmp + (gsize) y * width;
      float c = 0.0f;
      gboolean is_const = row_constant (src, width, &c);

      if (is_const)
        for (int x = 0; x < width; x++)
          out[x] = c;
      else
        {
          for (int i = 0; i < R; i++)
            {
              pad[i] = src[0];
              pad[R + width + i] = src[width - 1];
            }
          memcpy (pad + R, src, (gsize) width * sizeof (float));
          scale_row (out, pad + R, k[0], width);
          for (int j = 1; j <= R; j++)
            axpy2_row (out, pad + R + j, pad + R - j, k[j], width);
        }
      cval[y] = c;
      if (y > 0 && is_const && run[y - 1] >= 0 && cval[y - 1] == c)
        run[y] = run[y - 1];
      else
        run[y] = is_const ? y : -1 - y; /* distinct ids; negative = not constant */
    }

  /* Vertical pass back into mask, edges repeated. */
  for (int y = 0; y < height; y++)
    {
      float *out = mask + (gsize) y * width;
      const int lo = MAX (y - R, 0), hi = MIN (y + R, height - 1);

      if (run[lo] >= 0 && run[lo] == run[hi])
        {
          /* Every row the kernel touches is the same constant. */
          for (int x = 0; x < width; x++)
            out[x] = cval[y];
          continue;
        }
      scale_row (out, tmp + (gsize) y * width, k[0], width);
      for (int j = 1; j <= R; j++)
        {
          const int a = MIN (y + j, height - 1), b = MAX (y - j, 0);
          axpy2_row (out, tmp + (gsize) a * width, tmp + (gsize) b * width, k[j], width);
        }
      for (int x = 0; x < width; x++)
        out[x] = CLAMP (out[x], 0.0f, 1.0f);
    }

  g_free (k);
  g_free (tmp);
  g_free (pad);
  g_free (cval);
  g_free (run);
}

/* ---- the inpaint masks ------------------------------------------------------------------ */

void
imp_inpaint_masks (const ImpInpaintOptions *o, const float *selection, int width, int height,
                   float *model_mask, float *layer_mask)
{
  const gsize n = (gsize) width * height;
  g_autofree float *grown = NULL;

  g_return_if_fail (o != NULL && selection != NULL && width > 0 && height > 0);
  grown = g_memdup2 (selection, n * sizeof (float));
  imp_mask_grow (grown, width, height, o->grow);
  if (model_mask != NULL)
    {
      memcpy (model_mask, grown, n * sizeof (float));
      imp_mask_threshold (model_mask, n, 0.5f);
    }
  if (layer_mask != NULL)
    {
      memcpy (layer_mask, grown, n * sizeof (float));
      imp_mask_feather (layer_mask, width, height, o->feather);
      /* Keep the layer mask in [0, 1] even without a feather (selection
       * values from a caller could be out of range). */
      for (gsize i = 0; i < n; i++)
        layer_mask[i] = layer_mask[i] > 0.0f ? MIN (layer_mask[i], 1.0f) : 0.0f;
    }
}

/* norm.c: reference GroupNorm, LayerNorm and softmax. Two-pass statistics in
 * double; biased variance as PyTorch. */
#include "reference.h"

#include <math.h>

static double
silu (double v)
{
  return v / (1.0 + exp (-v));
}

void
ref_group_norm (const float *x, const float *gamma, const float *beta, float *y, int n, int c,
                gint64 hw, int groups, float eps, gboolean silu_after)
{
  int cpg = c / groups;
  gint64 count = cpg * hw;
  for (int b = 0; b < n; b++)
    for (int g = 0; g < groups; g++)
      {
        gsize base = ((gsize) b * c + (gsize) g * cpg) * hw;
        double s = 0.0;
        for (gint64 i = 0; i < count; i++)
          s += x[base + i];
        double mean = s / count;
        double s2 = 0.0;
        for (gint64 i = 0; i < count; i++)
          s2 += (x[base + i] - mean) * (x[base + i] - mean);
        double rstd = 1.0 / sqrt (s2 / count + eps);
        for (gint64 i = 0; i < count; i++)
          {
            int ch = g * cpg + (int) (i / hw);
            double v = (x[base + i] - mean) * rstd * gamma[ch] + beta[ch];
            y[base + i] = (float) (silu_after ? silu (v) : v);
          }
      }
}

void
ref_layer_norm (const float *x, const float *gamma, const float *beta, float *y, gint64 rows,
                int c, float eps)
{
  for (gint64 r = 0; r < rows; r++)
    {
      const float *xr = x + r * c;
      double s = 0.0;
      for (int i = 0; i < c; i++)
        s += xr[i];
      double mean = s / c;
      double s2 = 0.0;
      for (int i = 0; i < c; i++)
        s2 += (xr[i] - mean) * (xr[i] - mean);
      double rstd = 1.0 / sqrt (s2 / c + eps);
      for (int i = 0; i < c; i++)
        y[r * c + i] = (float) ((xr[i] - mean) * rstd * gamma[i] + beta[i]);
    }
}

void
ref_softmax (const float *x, float *y, gint64 rows, int c, float scale)
{
  for (gint64 r = 0; r < rows; r++)
    {
      const float *xr = x + r * c;
      double m = -INFINITY;
      for (int i = 0; i < c; i++)
        m = fmax (m, (double) scale * xr[i]);
      /* torch.softmax: a NaN anywhere in the row makes the row NaN */
      for (int i = 0; i < c; i++)
        if (isnan (xr[i]))
          m = NAN;
      double s = 0.0;
      for (int i = 0; i < c; i++)
        s += exp ((double) scale * xr[i] - m);
      for (int i = 0; i < c; i++)
        y[r * c + i] = (float) (exp ((double) scale * xr[i] - m) / s);
    }
}

/* copy.c: reference data movement (copy, cast, permute, concat, slice,
 * upsample) and embeddings. */
#include "reference.h"

#include <math.h>
#include <string.h>

void
ref_copy (const float *x, float *y, gsize n)
{
  memcpy (y, x, n * sizeof (float));
}

void
ref_cast (const float *x, float *y, gsize n, int dtype)
{
  /* 0 = IVK_F32, 1 = IVK_F16; the runtime refuses float <-> int casts */
  g_return_if_fail (dtype == 0 || dtype == 1);
  for (gsize i = 0; i < n; i++)
    y[i] = dtype == 1 ? ref_round_f16 (x[i]) : x[i];
}

/* contiguous strides of a shape */
static void
strides_of (int ndim, const gint64 *shape, gint64 *str)
{
  gint64 s = 1;
  for (int i = ndim - 1; i >= 0; i--)
    {
      str[i] = s;
      s *= shape[i];
    }
}

void
ref_permute (const float *x, float *out, int ndim, const gint64 *shape, const int *perm)
{
  gint64 xs[4], os[4] = { 1, 1, 1, 1 }, idx[4] = { 0, 0, 0, 0 };
  strides_of (ndim, shape, xs);
  gint64 n = 1;
  for (int i = 0; i < ndim; i++)
    {
      os[i] = shape[perm[i]];
      n *= os[i];
    }
  for (gint64 o = 0; o < n; o++)
    {
      /* idx = multi-index of o in the output shape */
      gint64 r = o;
      for (int i = ndim - 1; i >= 0; i--)
        {
          idx[i] = r % os[i];
          r /= os[i];
        }
      gint64 src = 0;
      for (int i = 0; i < ndim; i++)
        src += idx[i] * xs[perm[i]];
      out[o] = x[src];
    }
}

void
ref_concat (const float *a, const float *b, float *out, int ndim, const gint64 *shape_a,
            const gint64 *shape_b, int axis)
{
  gint64 outer = 1, inner = 1;
  for (int i = 0; i < axis; i++)
    outer *= shape_a[i];
  for (int i = axis + 1; i < ndim; i++)
    inner *= shape_a[i];
  gint64 la = shape_a[axis] * inner, lb = shape_b[axis] * inner;
  for (gint64 o = 0; o < outer; o++)
    {
      memcpy (out + o * (la + lb), a + o * la, la * sizeof (float));
      memcpy (out + o * (la + lb) + la, b + o * lb, lb * sizeof (float));
    }
}

void
ref_slice (const float *x, float *out, int ndim, const gint64 *shape, int axis, gint64 start,
           gint64 len)
{
  gint64 outer = 1, inner = 1;
  for (int i = 0; i < axis; i++)
    outer *= shape[i];
  for (int i = axis + 1; i < ndim; i++)
    inner *= shape[i];
  for (gint64 o = 0; o < outer; o++)
    memcpy (out + o * len * inner, x + (o * shape[axis] + start) * inner,
            len * inner * sizeof (float));
}

void
ref_upsample_nearest2x (const float *x, float *y, gint64 planes, int h, int w)
{
  for (gint64 p = 0; p < planes; p++)
    for (int oy = 0; oy < 2 * h; oy++)
      for (int ox = 0; ox < 2 * w; ox++)
        y[(p * 2 * h + oy) * 2 * w + ox] = x[(p * h + oy / 2) * w + ox / 2];
}

void
ref_embedding (const gint32 *ids, const float *table, float *out, gsize n_ids, int rows, int c)
{
  for (gsize t = 0; t < n_ids; t++)
    {
      gint32 id = CLAMP (ids[t], 0, rows - 1);
      memcpy (out + t * c, table + (gsize) id * c, c * sizeof (float));
    }
}

void
ref_timestep_embedding (const float *t, float *out, gsize n, int dim, gboolean flip_sin_to_cos,
                        float freq_shift, float max_period)
{
  int half = dim / 2;
  for (gsize r = 0; r < n; r++)
    {
      float *row = out + r * dim;
      for (int k = 0; k < half; k++)
        {
          /* diffusers computes the frequencies and the argument in float32:
           * mirror those roundings, then take sin/cos in double */
          float exponent = ((float) -log ((double) max_period) * (float) k) / ((float) half - freq_shift);
          float freq = (float) exp ((double) exponent);
          float arg = t[r] * freq;
          double s = sin ((double) arg), c = cos ((double) arg);
          row[k] = (float) (flip_sin_to_cos ? c : s);
          row[half + k] = (float) (flip_sin_to_cos ? s : c);
        }
      if (dim % 2)
        row[dim - 1] = 0.0f;
    }
}

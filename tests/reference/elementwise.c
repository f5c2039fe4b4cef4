/* elementwise.c: reference unary ops, broadcasting binary ops and GEGLU.
 * Formulas follow PyTorch's, so infinities and NaN propagate the same way
 * (e.g. silu(-inf) = -inf * sigmoid(-inf) = NaN, as torch gives). */
#include "reference.h"

#include <math.h>

static double
gelu (double v)
{
  return 0.5 * v * (1.0 + erf (v * M_SQRT1_2));
}

static double
unary (double v, RefUnaryOp op, double alpha, double beta)
{
  switch (op)
    {
    case REF_UNARY_SILU:
      return v / (1.0 + exp (-v));
    case REF_UNARY_GELU:
      return gelu (v);
    case REF_UNARY_QUICK_GELU:
      return v / (1.0 + exp (-1.702 * v));
    case REF_UNARY_EXP:
      return exp (v);
    case REF_UNARY_SCALE:
      return alpha * v + beta;
    case REF_UNARY_CLAMP:
      /* torch.clamp keeps NaN (fmin/fmax would drop it) */
      return isnan (v) ? v : v < alpha ? alpha : v > beta ? beta : v;
    case REF_UNARY_TANH:
      return tanh (v);
    case REF_UNARY_SIGMOID:
      return 1.0 / (1.0 + exp (-v));
    }
  g_return_val_if_reached (NAN);
}

void
ref_unary (const float *x, float *y, gsize n, RefUnaryOp op, float alpha, float beta)
{
  for (gsize i = 0; i < n; i++)
    y[i] = (float) unary (x[i], op, alpha, beta);
}

void
ref_binary (const float *a, const gint64 sa[4], const float *b, const gint64 sb[4], float *out,
            RefBinaryOp op)
{
  gint64 so[4];
  for (int d = 0; d < 4; d++)
    so[d] = MAX (sa[d], sb[d]);
  gsize o = 0;
  for (gint64 i0 = 0; i0 < so[0]; i0++)
    for (gint64 i1 = 0; i1 < so[1]; i1++)
      for (gint64 i2 = 0; i2 < so[2]; i2++)
        for (gint64 i3 = 0; i3 < so[3]; i3++)
          {
            /* a broadcast dimension (size 1) always reads index 0 */
            gint64 ia = (((sa[0] == 1 ? 0 : i0) * sa[1] + (sa[1] == 1 ? 0 : i1)) * sa[2]
                         + (sa[2] == 1 ? 0 : i2)) * sa[3] + (sa[3] == 1 ? 0 : i3);
            gint64 ib = (((sb[0] == 1 ? 0 : i0) * sb[1] + (sb[1] == 1 ? 0 : i1)) * sb[2]
                         + (sb[2] == 1 ? 0 : i2)) * sb[3] + (sb[3] == 1 ? 0 : i3);
            double va = a[ia], vb = b[ib];
            double v = op == REF_BINARY_ADD ? va + vb : op == REF_BINARY_SUB ? va - vb : va * vb;
            out[o++] = (float) v;
          }
}

void
ref_geglu (const float *x, float *y, gint64 rows, int f)
{
  for (gint64 r = 0; r < rows; r++)
    for (int c = 0; c < f; c++)
      {
        double h = x[r * 2 * f + c];
        double gate = x[r * 2 * f + f + c];
        y[r * f + c] = (float) (h * gelu (gate));
      }
}

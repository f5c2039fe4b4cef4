/* matmul.c: reference GEMM and Linear. */
#include "reference.h"

void
ref_matmul (const float *a, const float *b, const float *bias, const float *residual, float *out,
            int batch, int m, int n, int k, gboolean b_batched, gboolean trans_b, float alpha)
{
  for (int bb = 0; bb < batch; bb++)
    {
      const float *ab = a + (gsize) bb * m * k;
      const float *bm = b + (b_batched ? (gsize) bb * k * n : 0);
      for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++)
          {
            double acc = 0.0;
            for (int kk = 0; kk < k; kk++)
              {
                double bv = trans_b ? bm[(gsize) j * k + kk] : bm[(gsize) kk * n + j];
                acc += (double) ab[(gsize) i * k + kk] * bv;
              }
            acc *= alpha;
            gsize o = ((gsize) bb * m + i) * n + j;
            if (bias)
              acc += bias[j];
            if (residual)
              acc += residual[o];
            out[o] = (float) acc;
          }
    }
}

void
ref_linear (const float *x, const float *w, const float *bias, float *out, int rows, int in,
            int out_features)
{
  ref_matmul (x, w, bias, NULL, out, 1, rows, out_features, in, FALSE, TRUE, 1.0f);
}

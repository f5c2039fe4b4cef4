/* attention.c: reference multi-head scaled-dot-product attention
 * (torch.nn.functional.scaled_dot_product_attention per head), with the full
 * score row materialised and a plain max-subtracted softmax in double. */
#include "reference.h"

#include <math.h>

void
ref_attention (const float *q, const float *k, const float *v, float *out, int batch, int tq,
               int tk, int heads, int d, gint64 q_rs, gint64 k_rs, gint64 v_rs, float scale,
               gboolean causal)
{
  double *s = g_new (double, tk);
  for (int b = 0; b < batch; b++)
    for (int h = 0; h < heads; h++)
      for (int i = 0; i < tq; i++)
        {
          const float *qr = q + ((gsize) b * tq + i) * q_rs + (gsize) h * d;
          int n = causal ? MIN (i + 1, tk) : tk;
          double m = -INFINITY;
          gboolean nan = FALSE;
          for (int j = 0; j < n; j++)
            {
              const float *kr = k + ((gsize) b * tk + j) * k_rs + (gsize) h * d;
              double acc = 0.0;
              for (int c = 0; c < d; c++)
                acc += (double) qr[c] * kr[c];
              s[j] = acc * scale;
              if (isnan (s[j]))
                nan = TRUE;
              m = fmax (m, s[j]);
            }
          if (nan)
            m = NAN;
          double l = 0.0;
          for (int j = 0; j < n; j++)
            {
              s[j] = exp (s[j] - m);
              l += s[j];
            }
          float *orow = out + ((gsize) b * tq + i) * ((gsize) heads * d) + (gsize) h * d;
          for (int c = 0; c < d; c++)
            {
              double acc = 0.0;
              for (int j = 0; j < n; j++)
                acc += s[j] * v[((gsize) b * tk + j) * v_rs + (gsize) h * d + c];
              orow[c] = (float) (acc / l);
            }
        }
  g_free (s);
}

/* half.c: fp16 rounding for the reference, written independently of the
 * runtime's bit-twiddling converter (vulkan/ivk-half.h) so the two check each
 * other: here the value is scaled so that one binary16 ulp is 1, rounded with
 * nearbyint (ties to even in the default rounding mode) and scaled back. */
#include "reference.h"

#include <math.h>

float
ref_round_f16 (float x)
{
  if (isnan (x) || isinf (x) || x == 0.0f)
    return x;
  double ax = fabs ((double) x);
  /* 65504 is the largest binary16; the midpoint to the next binade (65520)
   * and above round to infinity. */
  if (ax >= 65520.0)
    return copysignf (INFINITY, x);
  int e;
  frexp (ax, &e); /* ax = m * 2^e, m in [0.5, 1) */
  /* 11 significant bits for normals; subnormals have a fixed ulp of 2^-24 */
  int ulp_exp = MAX (e - 11, -24);
  double r = nearbyint (ldexp (ax, -ulp_exp));
  return (float) copysign (ldexp (r, ulp_exp), (double) x);
}

void
ref_round_f16_array (float *x, gsize n)
{
  for (gsize i = 0; i < n; i++)
    x[i] = ref_round_f16 (x[i]);
}

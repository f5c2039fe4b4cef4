/* conv.c: reference 2-D convolution (torch.nn.functional.conv2d, zero padding,
 * with an optional nearest-2x upsample of the input first, as diffusers'
 * Upsample2D does before its conv). */
#include "reference.h"

int
ref_conv_out_size (int in, int k, int stride, int pad_lo, int pad_hi)
{
  return (in + pad_lo + pad_hi - k) / stride + 1;
}

void
ref_conv2d (const float *x, const float *w, const float *bias, const float *residual, float *y,
            int n, int cin, int h, int wd, int cout, int kh, int kw, const RefConvParams *p)
{
  int eh = p->upsample ? 2 * h : h; /* effective input size */
  int ew = p->upsample ? 2 * wd : wd;
  int oh = ref_conv_out_size (eh, kh, p->stride, p->pad_top, p->pad_bottom);
  int ow = ref_conv_out_size (ew, kw, p->stride, p->pad_left, p->pad_right);
  for (int b = 0; b < n; b++)
    for (int co = 0; co < cout; co++)
      for (int oy = 0; oy < oh; oy++)
        for (int ox = 0; ox < ow; ox++)
          {
            double acc = 0.0;
            for (int ci = 0; ci < cin; ci++)
              for (int ky = 0; ky < kh; ky++)
                for (int kx = 0; kx < kw; kx++)
                  {
                    int iy = oy * p->stride + ky - p->pad_top;
                    int ix = ox * p->stride + kx - p->pad_left;
                    if (iy < 0 || iy >= eh || ix < 0 || ix >= ew)
                      continue; /* zero padding */
                    if (p->upsample)
                      {
                        iy /= 2;
                        ix /= 2;
                      }
                    double xv = x[(((gsize) b * cin + ci) * h + iy) * wd + ix];
                    double wv = w[(((gsize) co * cin + ci) * kh + ky) * kw + kx];
                    acc += xv * wv;
                  }
            if (bias)
              acc += bias[co];
            gsize o = (((gsize) b * cout + co) * oh + oy) * ow + ox;
            if (residual)
              acc += residual[o];
            y[o] = (float) acc;
          }
}

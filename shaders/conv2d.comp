#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
// 2-D convolution as an implicit GEMM (no im2col buffer): rows = output
// channels, columns = output pixels, reduction over (input channel, ky, kx).
// Zero padding (asymmetric allowed), stride, optional fused nearest-2x
// upsample of the input, bias and residual add. Register-blocked like
// matmul.comp.
layout (local_size_x_id = 0, local_size_y_id = 1) in;
layout (constant_id = 2) const uint TM = 4;   // output channels per invocation
layout (constant_id = 3) const uint TN = 4;   // output pixels per invocation
layout (constant_id = 4) const bool HAS_BIAS = false;
layout (constant_id = 5) const bool HAS_RES = false;
// 0: none; 1: nearest 2x (index >> 1); 2: nearest to any size eh x ew
// (torch F.interpolate(size=...): src = floor(dst * in / out))
layout (constant_id = 6) const uint UPSAMPLE = 0;
layout (constant_id = 7) const uint KH = 3;
layout (constant_id = 8) const uint KW = 3;

layout (binding = 0) readonly buffer X { ACT_T x[]; };
layout (binding = 1) readonly buffer Wt { W_T w[]; };
layout (binding = 2) readonly buffer Bias { W_T bias[]; };
layout (binding = 3) readonly buffer R { ACT_T r[]; };
layout (binding = 4) writeonly buffer Y { ACT_T y[]; };
layout (push_constant) uniform P
{
  PUSH_OFFSETS
  uint cin, h, w;    // input (before upsampling)
  uint cout, oh, ow; // output
  uint stride;
  int pad_t, pad_l;
  uint eh, ew;       // effective input size (after upsampling)
} p;

void main ()
{
  const uint WX = gl_WorkGroupSize.x, WY = gl_WorkGroupSize.y;
  uint nb = gl_WorkGroupID.z;
  uint tile_m = gl_WorkGroupID.y * WY * TM + gl_LocalInvocationID.y;
  uint tile_n = gl_WorkGroupID.x * WX * TN + gl_LocalInvocationID.x;
  uint npix = p.oh * p.ow;
  int eh = int (p.eh); // effective input size
  int ew = int (p.ew);
  uint plane = p.h * p.w;
  uint xbase = p.off[0] + nb * p.cin * plane;

  int iy0[TN];
  int ix0[TN];
  [[unroll]] for (uint j = 0; j < TN; j++)
    {
      uint px = min (tile_n + j * WX, npix - 1u);
      uint oy = px / p.ow;
      uint ox = px - oy * p.ow;
      iy0[j] = int (oy * p.stride) - p.pad_t;
      ix0[j] = int (ox * p.stride) - p.pad_l;
    }
  uint wrow[TM];
  [[unroll]] for (uint i = 0; i < TM; i++)
    wrow[i] = p.off[1] + min (tile_m + i * WY, p.cout - 1u) * p.cin * KH * KW;

  float acc[TM * TN];
  [[unroll]] for (uint i = 0; i < TM * TN; i++)
    acc[i] = 0.0;

  for (uint ci = 0; ci < p.cin; ci++)
    {
      uint xplane = xbase + ci * plane;
      uint wci = ci * KH * KW;
      [[unroll]] for (uint ky = 0; ky < KH; ky++)
        [[unroll]] for (uint kx = 0; kx < KW; kx++)
          {
            float av[TM];
            float bv[TN];
            [[unroll]] for (uint i = 0; i < TM; i++)
              av[i] = float (w[wrow[i] + wci + ky * KW + kx]);
            [[unroll]] for (uint j = 0; j < TN; j++)
              {
                int iy = iy0[j] + int (ky);
                int ix = ix0[j] + int (kx);
                bool ok = iy >= 0 && iy < eh && ix >= 0 && ix < ew;
                int sy = clamp (iy, 0, eh - 1);
                int sx = clamp (ix, 0, ew - 1);
                if (UPSAMPLE == 1u)
                  {
                    sy >>= 1;
                    sx >>= 1;
                  }
                else if (UPSAMPLE == 2u)
                  {
                    sy = int (uint (sy) * p.h / p.eh);
                    sx = int (uint (sx) * p.w / p.ew);
                  }
                float v = float (x[xplane + uint (sy) * p.w + uint (sx)]);
                bv[j] = ok ? v : 0.0;
              }
            [[unroll]] for (uint i = 0; i < TM; i++)
              [[unroll]] for (uint j = 0; j < TN; j++)
                acc[i * TN + j] = fma (av[i], bv[j], acc[i * TN + j]);
          }
    }

  [[unroll]] for (uint i = 0; i < TM; i++)
    {
      uint co = tile_m + i * WY;
      if (co >= p.cout)
        continue;
      float bv = HAS_BIAS ? float (bias[p.off[2] + co]) : 0.0;
      [[unroll]] for (uint j = 0; j < TN; j++)
        {
          uint px = tile_n + j * WX;
          if (px >= npix)
            continue;
          uint idx = (nb * p.cout + co) * npix + px;
          float v = acc[i * TN + j] + bv;
          if (HAS_RES)
            v += float (r[p.off[3] + idx]);
          y[p.off[4] + idx] = ACT_T (v);
        }
    }
}

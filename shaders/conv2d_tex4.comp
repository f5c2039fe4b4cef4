#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
// 2-D convolution for CPU devices (lavapipe), implicit GEMM with vec4 texel
// loads on both operands (conv2d_tex.comp fetches one scalar per tap).
//
// Each invocation computes TM output channels (interleaved by the workgroup's
// y size) x RH output rows x 4*TN4 consecutive output pixels. Per input
// channel and input row it fetches the row segment the pixels need for all KW
// taps as aligned vec4 texels (the "window"): with stride 1 and KW = 3 that is
// TN4 + 2 fetches, used by up to KH output rows (RH > 1 matters for the small
// images of the deep UNet levels, where rows are short). The taps' shifted views
// of the window are just other registers once llvmpipe has vectorised across
// invocations, so they cost nothing. The weights of 4 input channels x KH x
// KW taps of one output channel are KH*KW consecutive vec4 texels ([Co, Ci,
// KH, KW] with Ci % 4 == 0). Measured in vulkan/ops-conv.c.
//
// MODE 0: stride 1; 1: nearest 2x upsample of the input, then stride 1
// (diffusers Upsample2D, fused); 2: stride 2. Zero padding PT/PL at the top
// and left (the bottom and right follow from the output size). The wrapper
// guarantees W % 4 == 0, Ci % 4 == 0, both tensors 4-element aligned, and
// output pixel blocks aligned to 8 in MODE 1; it passes NF (vec4 fetches per
// window) and WB (the window's start, in elements, left of the first needed
// one) as specialisation constants.
layout (local_size_x_id = 0, local_size_y_id = 1) in;
layout (constant_id = 2) const uint TM = 8;   // output channels per invocation
layout (constant_id = 3) const uint TN4 = 2;  // groups of 4 consecutive output pixels
layout (constant_id = 4) const bool HAS_BIAS = false;
layout (constant_id = 5) const bool HAS_RES = false;
layout (constant_id = 6) const uint MODE = 0;
layout (constant_id = 7) const uint KH = 3;
layout (constant_id = 8) const uint KW = 3;
layout (constant_id = 9) const int PT = 1;
layout (constant_id = 10) const int PL = 1;
layout (constant_id = 11) const uint NF = 4;  // window: NF vec4 texels
layout (constant_id = 12) const int WB = 4;   // window start = source x of the block - WB
layout (constant_id = 13) const uint RH = 1;  // output rows per invocation (MODE 1: 1)
// llvmpipe runs the invocations of a workgroup as SIMD lanes along x only
// (WX not a multiple of 8 leaves lanes idle): lanes go along the pixel blocks,
// or along the output channels (CO_X) where an image has fewer than 8 blocks
layout (constant_id = 14) const bool CO_X = false;

layout (binding = 0) uniform samplerBuffer x; // [N, Ci, H, W], vec4 texels
layout (binding = 1) uniform samplerBuffer w; // [Co, Ci, KH, KW], vec4 texels
layout (binding = 2) readonly buffer Bias { W_T bias[]; };
layout (binding = 3) readonly buffer R { ACT_T r[]; };
layout (binding = 4) writeonly buffer Y { ACT_T y[]; };
layout (push_constant) uniform P
{
  PUSH_OFFSETS
  uint cin, h, w;    // input (before upsampling)
  uint cout, oh, ow; // output
  uint blocks;       // pixel blocks per output row
} p;

const uint NPX = 4u * TN4;
const uint KT = KH * KW;
const uint NPR = RH * NPX; // pixels per invocation
// input rows per invocation ("slots"): output row r, kernel row ky read slot
// r + ky (MODE 0), 2r + ky (MODE 2); MODE 1 has RH = 1 and slot ky
const uint NS = MODE == 2u ? 2u * (RH - 1u) + KH : RH + KH - 1u;

void main ()
{
  // CS: stride between the output channels of one invocation
  const uint CS = CO_X ? gl_WorkGroupSize.x : gl_WorkGroupSize.y;
  uint nb = gl_WorkGroupID.z;
  uint gx = CO_X ? gl_GlobalInvocationID.y : gl_GlobalInvocationID.x;
  uint rows = (p.oh + RH - 1u) / RH;
  uint oy0 = min (gx / p.blocks, rows - 1u) * RH;
  uint ox0 = (gx - (gx / p.blocks) * p.blocks) * NPX;
  bool live = gx < p.blocks * rows;
  uint tile_m = CO_X ? gl_WorkGroupID.x * CS * TM + gl_LocalInvocationID.x
                     : gl_WorkGroupID.y * CS * TM + gl_LocalInvocationID.y;

  // source column of the window's first element (a multiple of 4)
  int sx0 = (MODE == 2u ? 2 * int (ox0) : MODE == 1u ? int (ox0 / 2u) : int (ox0)) - WB;
  int W = int (p.w), H = int (p.h);

  // vec4 index of each output channel's weights
  int wrow[TM];
  [[unroll]] for (uint i = 0; i < TM; i++)
    wrow[i] = int ((p.off[1] + min (tile_m + i * CS, p.cout - 1u) * p.cin * KT) / 4u);
  int xbase = int ((p.off[0] + nb * p.cin * p.h * p.w) / 4u);
  int w4 = W / 4;

  float acc[TM * NPR];
  [[unroll]] for (uint i = 0; i < TM * NPR; i++)
    acc[i] = 0.0;

  // the window's texels: which are inside the row
  bool colok[NF];
  int colx[NF];
  [[unroll]] for (uint f = 0; f < NF; f++)
    {
      int sx = sx0 + 4 * int (f);
      colok[f] = sx >= 0 && sx < W;
      colx[f] = clamp (sx, 0, W - 4) / 4;
    }
  // source row of each slot
  bool rowok[NS];
  int rowy[NS];
  [[unroll]] for (uint s = 0; s < NS; s++)
    {
      int iy;
      if (MODE == 1u)
        {
          int uy = int (oy0) + int (s) - PT;
          rowok[s] = uy >= 0 && uy < 2 * H;
          iy = uy >> 1;
        }
      else
        {
          iy = (MODE == 2u ? 2 * int (oy0) : int (oy0)) + int (s) - PT;
          rowok[s] = iy >= 0 && iy < H;
        }
      rowy[s] = clamp (iy, 0, H - 1) * w4;
    }

  uint c4n = p.cin / 4u;
  for (uint c4 = 0; c4 < c4n; c4++)
    {
      vec4 wv[TM * KT];
      [[unroll]] for (uint i = 0; i < TM; i++)
        [[unroll]] for (uint t = 0; t < KT; t++)
          wv[i * KT + t] = texelFetch (w, wrow[i] + int (c4 * KT + t));
      [[unroll]] for (uint c = 0; c < 4u; c++)
        {
          int plane = xbase + int ((c4 * 4u + c) * p.h) * w4;
          // every input row this invocation needs for channel c, then the
          // products; all indices are compile-time constants once unrolled
          float win[NS * NF * 4u];
          [[unroll]] for (uint s = 0; s < NS; s++)
            [[unroll]] for (uint f = 0; f < NF; f++)
              {
                vec4 v = texelFetch (x, plane + rowy[s] + colx[f]);
                v = (colok[f] && rowok[s]) ? v : vec4 (0.0);
                win[(s * NF + f) * 4u] = v.x;
                win[(s * NF + f) * 4u + 1u] = v.y;
                win[(s * NF + f) * 4u + 2u] = v.z;
                win[(s * NF + f) * 4u + 3u] = v.w;
              }
          [[unroll]] for (uint r = 0; r < RH; r++)
            [[unroll]] for (uint ky = 0; ky < KH; ky++)
              [[unroll]] for (uint kx = 0; kx < KW; kx++)
                [[unroll]] for (uint i = 0; i < TM; i++)
                  {
                    uint t = c * KT + ky * KW + kx; // tap within the 4-channel chunk
                    float wt = wv[i * KT + t / 4u][t % 4u];
                    uint srow = (MODE == 2u ? 2u * r + ky : r + ky) * NF * 4u;
                    [[unroll]] for (uint j = 0; j < NPX; j++)
                      {
                        // window element of pixel j, tap kx
                        int d = int (j + kx) - PL;
                        uint e = MODE == 2u ? uint (int (j + j + kx) - PL + WB)
                               : MODE == 1u ? uint (((d + 64) >> 1) - 32 + WB)
                                            : uint (d + WB);
                        uint a = (i * RH + r) * NPX + j;
                        acc[a] = fma (wt, win[srow + e], acc[a]);
                      }
                  }
        }
    }

  if (!live)
    return;
  uint npix = p.oh * p.ow;
  [[unroll]] for (uint i = 0; i < TM; i++)
    {
      uint co = tile_m + i * CS;
      if (co >= p.cout)
        continue;
      float bv = HAS_BIAS ? float (bias[p.off[2] + co]) : 0.0;
      [[unroll]] for (uint rr = 0; rr < RH; rr++)
        {
          if (oy0 + rr >= p.oh)
            continue;
          uint obase = (nb * p.cout + co) * npix + (oy0 + rr) * p.ow + ox0;
          [[unroll]] for (uint j = 0; j < NPX; j++)
            {
              if (ox0 + j >= p.ow)
                continue;
              float v = acc[(i * RH + rr) * NPX + j] + bv;
              if (HAS_RES)
                v += float (r[p.off[3] + obase + j]);
              y[p.off[4] + obase + j] = ACT_T (v);
            }
        }
    }
}

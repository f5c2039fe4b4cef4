#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
// GEMM with B stored transposed ([.., N, K]: PyTorch Linear weights), the fast
// path on CPU devices (lavapipe): C[b, m, n] = alpha * sum_k A[b, m, k] B[b, n, k]
// (+ bias[n]) (+ R[b, m, n]). A and B are read as vec4 texels along K through
// uniform texel buffers. llvmpipe turns a texel fetch into a few vector loads
// and shuffles, but an SSBO load into a loop over the SIMD lanes with two
// branches per element, so this kernel is 4-5x faster than matmul.comp at SD
// shapes (measurements in vulkan/ops-matmul.c). RGBA16F views convert f16 on
// fetch, so one text serves every precision; bias, residual and C stay SSBOs.
// The wrapper guarantees K % 4 == 0 and operands aligned to 4 elements; the
// texel offsets in p.off are then multiples of 4 too.
layout (local_size_x_id = 0, local_size_y_id = 1) in;
layout (constant_id = 2) const uint TM = 8; // rows per invocation, interleaved by WY
layout (constant_id = 3) const uint TN = 8; // columns per invocation, interleaved by WX
layout (constant_id = 4) const bool HAS_BIAS = false;
layout (constant_id = 5) const bool HAS_RES = false;

layout (binding = 0) uniform samplerBuffer a; // [batch, M, K], vec4 texels
layout (binding = 1) uniform samplerBuffer b; // [batch or 1, N, K], vec4 texels
layout (binding = 2) readonly buffer Bias { W_T bias[]; };
layout (binding = 3) readonly buffer R { ACT_T r[]; };
layout (binding = 4) writeonly buffer C { ACT_T c[]; };
layout (push_constant) uniform P
{
  PUSH_OFFSETS
  uint m, n, k;
  uint as_b, as_m, as_k;
  uint bs_b, bs_k, bs_n;
  float alpha;
} p;

void main ()
{
  const uint WX = gl_WorkGroupSize.x, WY = gl_WorkGroupSize.y;
  uint bz = gl_WorkGroupID.z;
  uint tile_m = gl_WorkGroupID.y * WY * TM + gl_LocalInvocationID.y;
  uint tile_n = gl_WorkGroupID.x * WX * TN + gl_LocalInvocationID.x;

  // texel indices of row starts; out-of-range rows/columns read the last one
  // and are not stored
  int arow[TM];
  int bcol[TN];
  [[unroll]] for (uint i = 0; i < TM; i++)
    arow[i] = int ((p.off[0] + bz * p.as_b + min (tile_m + i * WY, p.m - 1u) * p.as_m) / 4u);
  [[unroll]] for (uint j = 0; j < TN; j++)
    bcol[j] = int ((p.off[1] + bz * p.bs_b + min (tile_n + j * WX, p.n - 1u) * p.bs_n) / 4u);

  float acc[TM * TN];
  [[unroll]] for (uint i = 0; i < TM * TN; i++)
    acc[i] = 0.0;

  int k4 = int (p.k / 4u);
  for (int kk = 0; kk < k4; kk++)
    {
      vec4 av[TM];
      vec4 bv[TN];
      [[unroll]] for (uint i = 0; i < TM; i++)
        av[i] = texelFetch (a, arow[i] + kk);
      [[unroll]] for (uint j = 0; j < TN; j++)
        bv[j] = texelFetch (b, bcol[j] + kk);
      [[unroll]] for (uint i = 0; i < TM; i++)
        [[unroll]] for (uint j = 0; j < TN; j++)
          acc[i * TN + j] += dot (av[i], bv[j]);
    }

  [[unroll]] for (uint i = 0; i < TM; i++)
    {
      uint row = tile_m + i * WY;
      if (row >= p.m)
        continue;
      [[unroll]] for (uint j = 0; j < TN; j++)
        {
          uint col = tile_n + j * WX;
          if (col >= p.n)
            continue;
          float v = p.alpha * acc[i * TN + j];
          if (HAS_BIAS)
            v += float (bias[p.off[2] + col]);
          uint idx = (bz * p.m + row) * p.n + col;
          if (HAS_RES)
            v += float (r[p.off[3] + idx]);
          c[p.off[4] + idx] = ACT_T (v);
        }
    }
}

#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
// Batched GEMM with strided operands: C[b, m, n] = alpha * sum_k A[b, m, k] B[b, k, n]
// (+ bias[n]) (+ R[b, m, n]). A is an activation (ACT_T), B a weight (W_T) or
// activation. Register-blocked: each invocation computes TM x TN outputs, rows
// and columns interleaved by the workgroup size so neighbouring invocations
// touch neighbouring columns (contiguous loads on CPUs and GPUs alike). No
// shared memory: on lavapipe barriers are expensive and big register blocks
// win (notes/toolchain.md); tile sizes are specialisation constants chosen per
// device class in vulkan/ops-matmul.c.
layout (local_size_x_id = 0, local_size_y_id = 1) in;
layout (constant_id = 2) const uint TM = 4;
layout (constant_id = 3) const uint TN = 4;
layout (constant_id = 4) const bool HAS_BIAS = false;
layout (constant_id = 5) const bool HAS_RES = false;

layout (binding = 0) readonly buffer A { ACT_T a[]; };
layout (binding = 1) readonly buffer B { W_T b[]; };
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

  uint arow[TM];
  uint bcol[TN];
  [[unroll]] for (uint i = 0; i < TM; i++)
    arow[i] = p.off[0] + bz * p.as_b + min (tile_m + i * WY, p.m - 1u) * p.as_m;
  [[unroll]] for (uint j = 0; j < TN; j++)
    bcol[j] = p.off[1] + bz * p.bs_b + min (tile_n + j * WX, p.n - 1u) * p.bs_n;

  float acc[TM * TN];
  [[unroll]] for (uint i = 0; i < TM * TN; i++)
    acc[i] = 0.0;

  for (uint kk = 0; kk < p.k; kk++)
    {
      float av[TM];
      float bv[TN];
      [[unroll]] for (uint i = 0; i < TM; i++)
        av[i] = float (a[arow[i] + kk * p.as_k]);
      [[unroll]] for (uint j = 0; j < TN; j++)
        bv[j] = float (b[bcol[j] + kk * p.bs_k]);
      [[unroll]] for (uint i = 0; i < TM; i++)
        [[unroll]] for (uint j = 0; j < TN; j++)
          acc[i * TN + j] = fma (av[i], bv[j], acc[i * TN + j]);
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

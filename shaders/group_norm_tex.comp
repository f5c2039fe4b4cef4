#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
// GroupNorm for CPU devices (lavapipe), in two dispatches (STATS defined or
// not). group_norm.comp reduces with a workgroup, shared memory and barriers,
// and loads through storage buffers, which llvmpipe turns into per-lane loops
// (0.15 GFLOP/s, 70 ms for 320x64x64); here the input comes as vec4 texels
// and the output goes out as vec4 stores.
//  STATS: one invocation per (n, group): two-pass mean and variance in fp32
//         (no cancellation), summed in blocks of 256 texels so the rounding
//         error grows with the block count, not the element count; writes
//         (mean, 1/sqrt(var + eps), 0, 0).
//  apply: one vec4 texel per invocation, on a 3-D grid (no per-lane integer
//         division: llvmpipe does those lane by lane): (x - mean) * rstd *
//         gamma + beta, optional SiLU. The wrapper guarantees HW % 4 == 0 (a texel never
//         spans two channels) and 4-element-aligned tensors.
layout (local_size_x_id = 0) in;
layout (constant_id = 1) const bool SILU = false;

#ifdef STATS
layout (binding = 0) uniform samplerBuffer x;          // [N, C, HW], vec4 texels
layout (binding = 1) writeonly buffer S { vec4 st[]; }; // [N * groups] (mean, rstd, 0, 0)
#else
layout (binding = 0) uniform samplerBuffer x;          // [N, C, HW], vec4 texels
layout (binding = 1) uniform samplerBuffer st;         // [N * groups], vec4 texels
layout (binding = 2) uniform samplerBuffer gamma;      // [C], one element per texel
layout (binding = 3) uniform samplerBuffer beta;       // [C]
layout (binding = 4) writeonly buffer Y { ACT_V4 y[]; };
#endif
layout (push_constant) uniform P
{
  PUSH_OFFSETS
  uint c;      // channels
  uint hw4;    // spatial size / 4
  uint groups;
  float eps;
  uint total;  // STATS: N * groups; apply: N * C * HW / 4
} p;

void main ()
{
  uint gid = linear_group () * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
#ifdef STATS
  if (gid >= p.total)
    return;
  uint n = gid / p.groups;
  uint g = gid - n * p.groups;
  uint cpg = p.c / p.groups;
  uint count4 = cpg * p.hw4;
  int base = int (p.off[0] / 4u + (n * p.c + g * cpg) * p.hw4);
  vec4 sum = vec4 (0.0);
  for (uint i0 = 0; i0 < count4; i0 += 256u)
    {
      vec4 part = vec4 (0.0);
      uint e = min (i0 + 256u, count4);
      for (uint i = i0; i < e; i++)
        part += texelFetch (x, base + int (i));
      sum += part;
    }
  float inv_n = 1.0 / (4.0 * float (count4));
  float mean = (sum.x + sum.y + sum.z + sum.w) * inv_n;
  vec4 sq = vec4 (0.0);
  for (uint i0 = 0; i0 < count4; i0 += 256u)
    {
      vec4 part = vec4 (0.0);
      uint e = min (i0 + 256u, count4);
      for (uint i = i0; i < e; i++)
        {
          vec4 d = texelFetch (x, base + int (i)) - mean;
          part += d * d;
        }
      sq += part;
    }
  float var = (sq.x + sq.y + sq.z + sq.w) * inv_n;
  st[p.off[1] / 4u + gid] = vec4 (mean, inversesqrt (var + p.eps), 0.0, 0.0);
#else
  // grid: x along the HW/4 texels of a plane (SIMD lanes), y: channel, z: n;
  // the channel's group and statistics are uniform over the workgroup
  uint i = gl_GlobalInvocationID.x;
  if (i >= p.hw4)
    return;
  uint ch = gl_WorkGroupID.y;
  uint n = gl_WorkGroupID.z;
  uint cpg = p.c / p.groups;
  vec4 s = texelFetch (st, int (p.off[1] / 4u + n * p.groups + ch / cpg));
  float ga = texelFetch (gamma, int (p.off[2] + ch)).x;
  float be = texelFetch (beta, int (p.off[3] + ch)).x;
  uint t = (n * p.c + ch) * p.hw4 + i;
  vec4 v = (texelFetch (x, int (p.off[0] / 4u + t)) - s.x) * (s.y * ga) + be;
  if (SILU)
    v = v / (1.0 + exp (-v));
  y[p.off[4] / 4u + t] = ACT_V4 (v);
#endif
}

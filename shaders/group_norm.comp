#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
// GroupNorm (torch.nn.GroupNorm) over x[N, C, HW]; one workgroup per (n, group).
// Two-pass statistics in fp32 (mean, then mean of squared deviations: no
// cancellation), biased variance as PyTorch; optional fused SiLU.
layout (local_size_x_id = 0) in;
layout (constant_id = 1) const bool SILU = false;
#include "reduce.glsl"

layout (binding = 0) readonly buffer X { ACT_T x[]; };
layout (binding = 1) readonly buffer G { W_T gamma[]; };
layout (binding = 2) readonly buffer Bb { W_T beta[]; };
layout (binding = 3) writeonly buffer Y { ACT_T y[]; };
layout (push_constant) uniform P
{
  PUSH_OFFSETS
  uint c;      // channels
  uint hw;     // spatial size
  uint groups;
  float eps;
} p;

void main ()
{
  uint gid = linear_group ();          // n * groups + g
  uint n = gid / p.groups;
  uint g = gid - n * p.groups;
  uint cpg = p.c / p.groups;
  uint count = cpg * p.hw;
  uint base = (n * p.c + g * cpg) * p.hw; // group elements are contiguous
  uint lid = gl_LocalInvocationID.x;
  uint wg = gl_WorkGroupSize.x;

  float s = 0.0;
  for (uint i = lid; i < count; i += wg)
    s += float (x[p.off[0] + base + i]);
  float mean = wg_sum (s) / float (count);
  float s2 = 0.0;
  for (uint i = lid; i < count; i += wg)
    {
      float d = float (x[p.off[0] + base + i]) - mean;
      s2 += d * d;
    }
  float var = wg_sum (s2) / float (count);
  float rstd = inversesqrt (var + p.eps);
  for (uint i = lid; i < count; i += wg)
    {
      uint ch = g * cpg + i / p.hw;
      float v = (float (x[p.off[0] + base + i]) - mean) * rstd * float (gamma[p.off[1] + ch])
                + float (beta[p.off[2] + ch]);
      if (SILU)
        v = v / (1.0 + exp (-v));
      y[p.off[3] + base + i] = ACT_T (v);
    }
}

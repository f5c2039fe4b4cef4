#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
// LayerNorm (torch.nn.LayerNorm) over the last dimension; one workgroup per row,
// two-pass fp32 statistics.
layout (local_size_x_id = 0) in;
#include "reduce.glsl"

layout (binding = 0) readonly buffer X { ACT_T x[]; };
layout (binding = 1) readonly buffer G { W_T gamma[]; };
layout (binding = 2) readonly buffer Bb { W_T beta[]; };
layout (binding = 3) writeonly buffer Y { ACT_T y[]; };
layout (push_constant) uniform P
{
  PUSH_OFFSETS
  uint c;
  float eps;
} p;

void main ()
{
  uint row = linear_group ();
  uint base = row * p.c;
  uint lid = gl_LocalInvocationID.x;
  uint wg = gl_WorkGroupSize.x;
  float s = 0.0;
  for (uint i = lid; i < p.c; i += wg)
    s += float (x[p.off[0] + base + i]);
  float mean = wg_sum (s) / float (p.c);
  float s2 = 0.0;
  for (uint i = lid; i < p.c; i += wg)
    {
      float d = float (x[p.off[0] + base + i]) - mean;
      s2 += d * d;
    }
  float rstd = inversesqrt (wg_sum (s2) / float (p.c) + p.eps);
  for (uint i = lid; i < p.c; i += wg)
    y[p.off[3] + base + i] = ACT_T ((float (x[p.off[0] + base + i]) - mean) * rstd
                                    * float (gamma[p.off[1] + i]) + float (beta[p.off[2] + i]));
}

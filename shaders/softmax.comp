#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
// Softmax over the last dimension of scale * x; one workgroup per row.
layout (local_size_x_id = 0) in;
#include "reduce.glsl"

layout (binding = 0) readonly buffer X { ACT_T x[]; };
layout (binding = 1) writeonly buffer Y { ACT_T y[]; };
layout (push_constant) uniform P
{
  PUSH_OFFSETS
  uint c;
  float scale;
} p;

void main ()
{
  uint row = linear_group ();
  uint base = row * p.c;
  uint lid = gl_LocalInvocationID.x;
  uint wg = gl_WorkGroupSize.x;
  float m = -3.402823466e38;
  for (uint i = lid; i < p.c; i += wg)
    m = max (m, p.scale * float (x[p.off[0] + base + i]));
  m = wg_max (m);
  float s = 0.0;
  for (uint i = lid; i < p.c; i += wg)
    s += exp (p.scale * float (x[p.off[0] + base + i]) - m);
  float inv = 1.0 / wg_sum (s);
  for (uint i = lid; i < p.c; i += wg)
    y[p.off[1] + base + i] = ACT_T (exp (p.scale * float (x[p.off[0] + base + i]) - m) * inv);
}

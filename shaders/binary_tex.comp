#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
// binary.comp for CPU devices: 4 consecutive outputs per invocation along the
// last dimension, operands through uniform texel buffers (see the modes), one
// vec4 store. The grid is 3-D (x: groups of 4 along dim 3, y: dim 2, z: dims
// 0 and 1) so no lane divides: llvmpipe has no vector integer division and
// does it lane by lane. The wrapper merges dimensions where it can and
// guarantees the output's last dimension % 4 == 0.
layout (local_size_x_id = 0) in;
layout (constant_id = 1) const uint OP = 0;
// how each operand is read: 0: one element per texel, 4 fetches; 1: broadcast
// along the last dimension, 1 fetch; 2: vec4 texels (contiguous last dim,
// 4-aligned), 1 fetch
layout (constant_id = 2) const uint A_MODE = 0;
layout (constant_id = 3) const uint B_MODE = 0;

layout (binding = 0) uniform samplerBuffer a;
layout (binding = 1) uniform samplerBuffer b;
layout (binding = 2) writeonly buffer O { ACT_V4 o[]; };
layout (push_constant) uniform P
{
  PUSH_OFFSETS
  uint n4;                     // output elements / 4 (unused)
  uint shape1, shape2, shape3; // output dims 1..3 (shape3 % 4 == 0)
  uint as0, as1, as2, as3;     // element strides of a (as3: 0 or 1)
  uint bs0, bs1, bs2, bs3;
} p;

vec4 fetch4 (samplerBuffer t, uint base, uint stride, uint mode)
{
  if (mode == 2u)
    return texelFetch (t, int (base / 4u));
  if (mode == 1u)
    return vec4 (texelFetch (t, int (base)).x);
  return vec4 (texelFetch (t, int (base)).x, texelFetch (t, int (base + stride)).x,
               texelFetch (t, int (base + 2u * stride)).x, texelFetch (t, int (base + 3u * stride)).x);
}

void main ()
{
  uint i3 = 4u * gl_GlobalInvocationID.x;
  if (i3 >= p.shape3)
    return;
  uint i2 = gl_WorkGroupID.y;
  uint i1 = gl_WorkGroupID.z % p.shape1; // uniform over the workgroup: computed once
  uint i0 = gl_WorkGroupID.z / p.shape1;
  vec4 va = fetch4 (a, p.off[0] + i0 * p.as0 + i1 * p.as1 + i2 * p.as2 + i3 * p.as3, p.as3, A_MODE);
  vec4 vb = fetch4 (b, p.off[1] + i0 * p.bs0 + i1 * p.bs1 + i2 * p.bs2 + i3 * p.bs3, p.bs3, B_MODE);
  vec4 v = OP == 0 ? va + vb : OP == 1 ? va - vb : va * vb;
  uint oi = ((i0 * p.shape1 + i1) * p.shape2 + i2) * p.shape3 + i3;
  o[(p.off[2] + oi) / 4u] = ACT_V4 (v);
}

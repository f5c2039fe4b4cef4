#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
// out = a (op) b with numpy broadcasting over 4 dims: strides of a broadcast
// dimension are 0.
layout (local_size_x_id = 0) in;
layout (constant_id = 1) const uint OP = 0;

layout (binding = 0) readonly buffer A { ACT_T a[]; };
layout (binding = 1) readonly buffer B { ACT_T b[]; };
layout (binding = 2) writeonly buffer O { ACT_T o[]; };
layout (push_constant) uniform P
{
  PUSH_OFFSETS
  uint n;
  uint shape1, shape2, shape3; // output dims 1..3 (dim 0 implied by n)
  uint as0, as1, as2, as3;     // element strides of a
  uint bs0, bs1, bs2, bs3;     // element strides of b
} p;

void main ()
{
  uint i = linear_group () * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
  if (i >= p.n)
    return;
  uint i3 = i % p.shape3;
  uint r = i / p.shape3;
  uint i2 = r % p.shape2;
  r /= p.shape2;
  uint i1 = r % p.shape1;
  uint i0 = r / p.shape1;
  float va = float (a[p.off[0] + i0 * p.as0 + i1 * p.as1 + i2 * p.as2 + i3 * p.as3]);
  float vb = float (b[p.off[1] + i0 * p.bs0 + i1 * p.bs1 + i2 * p.bs2 + i3 * p.bs3]);
  float v = OP == 0 ? va + vb : OP == 1 ? va - vb : va * vb;
  o[p.off[2] + i] = ACT_T (v);
}

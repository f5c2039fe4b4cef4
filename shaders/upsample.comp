#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
// Nearest-neighbour 2x upsample, NCHW (torch F.interpolate(scale_factor=2, mode='nearest')).
layout (local_size_x_id = 0) in;

layout (binding = 0) readonly buffer X { ACT_T x[]; };
layout (binding = 1) writeonly buffer Y { ACT_T y[]; };
layout (push_constant) uniform P
{
  PUSH_OFFSETS
  uint n;  // output elements
  uint h, w; // input size
} p;

void main ()
{
  uint i = linear_group () * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
  if (i >= p.n)
    return;
  uint ow = 2u * p.w, oh = 2u * p.h;
  uint ox = i % ow;
  uint r = i / ow;
  uint oy = r % oh;
  uint plane = r / oh;
  y[p.off[1] + i] = x[p.off[0] + plane * p.h * p.w + (oy >> 1) * p.w + (ox >> 1)];
}

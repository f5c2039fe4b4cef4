#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
// Embedding lookup: out[t, :] = table[ids[t], :]. Ids are clamped to the table
// so a bad id can never read out of bounds.
layout (local_size_x_id = 0) in;

layout (binding = 0) readonly buffer I { int ids[]; };
layout (binding = 1) readonly buffer T { W_T table[]; };
layout (binding = 2) writeonly buffer Y { ACT_T y[]; };
layout (push_constant) uniform P
{
  PUSH_OFFSETS
  uint n; // tokens * c
  uint c;
  uint rows;
} p;

void main ()
{
  uint i = linear_group () * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
  if (i >= p.n)
    return;
  uint t = i / p.c;
  uint col = i - t * p.c;
  int id = clamp (ids[p.off[0] + t], 0, int (p.rows) - 1);
  y[p.off[2] + i] = ACT_T (float (table[p.off[1] + uint (id) * p.c + col]));
}

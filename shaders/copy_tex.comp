#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
// copy.comp for CPU devices (float tensors): the strided 4-D copy behind
// permute, concat, slice and cast, with the source read through a uniform
// texel buffer of one element per texel (any strides, any source precision)
// and 4 consecutive destination elements written as one vec4 store. The
// wrapper guarantees shape3 % 4 == 0, a contiguous last destination
// dimension and destination offsets that are multiples of 4, and dispatches a
// 3-D grid (x: groups of 4 along dim 3, y: dim 2, z: dims 0 and 1).
layout (local_size_x_id = 0) in;
layout (constant_id = 1) const bool SRC_VEC4 = false; // the source as vec4 texels (ss3 == 1, aligned)

#if defined(DST_F16)
#define DST_V4 f16vec4
#else
#define DST_V4 vec4
#endif

layout (binding = 0) uniform samplerBuffer s;
layout (binding = 1) writeonly buffer D { DST_V4 d[]; };
layout (push_constant) uniform P
{
  PUSH_OFFSETS
  uint n4;
  uint shape1, shape2, shape3;
  uint ss0, ss1, ss2, ss3; // source strides (elements)
  uint ds0, ds1, ds2, ds3; // destination strides (ds3 == 1)
  uint sbase, dbase;       // extra element offsets
} p;

void main ()
{
  // 3-D grid as binary_tex.comp: no per-lane integer division
  uint i3 = 4u * gl_GlobalInvocationID.x;
  if (i3 >= p.shape3)
    return;
  uint i2 = gl_WorkGroupID.y;
  uint i1 = gl_WorkGroupID.z % p.shape1;
  uint i0 = gl_WorkGroupID.z / p.shape1;
  uint si = p.off[0] + p.sbase + i0 * p.ss0 + i1 * p.ss1 + i2 * p.ss2 + i3 * p.ss3;
  uint di = p.off[1] + p.dbase + i0 * p.ds0 + i1 * p.ds1 + i2 * p.ds2 + i3;
  vec4 v = SRC_VEC4 ? texelFetch (s, int (si / 4u))
                    : vec4 (texelFetch (s, int (si)).x, texelFetch (s, int (si + p.ss3)).x,
                            texelFetch (s, int (si + 2u * p.ss3)).x,
                            texelFetch (s, int (si + 3u * p.ss3)).x);
  d[di / 4u] = DST_V4 (v);
}

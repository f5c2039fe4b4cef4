#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
// Strided 4-D copy with dtype conversion: permute, concat, slice, cast.
layout (local_size_x_id = 0) in;

#if defined(SRC_F16)
#define SRC_T float16_t
#elif defined(SRC_I32)
#define SRC_T int
#else
#define SRC_T float
#endif
#if defined(DST_F16)
#define DST_T float16_t
#elif defined(DST_I32)
#define DST_T int
#else
#define DST_T float
#endif

layout (binding = 0) readonly buffer S { SRC_T s[]; };
layout (binding = 1) writeonly buffer D { DST_T d[]; };
layout (push_constant) uniform P
{
  PUSH_OFFSETS
  uint n;
  uint shape1, shape2, shape3;
  uint ss0, ss1, ss2, ss3; // source strides (elements)
  uint ds0, ds1, ds2, ds3; // destination strides
  uint sbase, dbase;       // extra element offsets
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
  uint si = p.off[0] + p.sbase + i0 * p.ss0 + i1 * p.ss1 + i2 * p.ss2 + i3 * p.ss3;
  uint di = p.off[1] + p.dbase + i0 * p.ds0 + i1 * p.ds1 + i2 * p.ds2 + i3 * p.ds3;
#if defined(SRC_I32) || defined(DST_I32)
  d[di] = s[si];
#else
  d[di] = DST_T (float (s[si]));
#endif
}

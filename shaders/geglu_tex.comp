#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
// GEGLU (diffusers attention.GEGLU) for CPU devices: x[rows, 2F] ->
// x[:, :F] * gelu(x[:, F:]) (exact erf GELU), vec4 texel loads and vec4
// stores (geglu.comp loads through storage buffers, per-lane loops on
// llvmpipe). The wrapper guarantees F % 4 == 0 and aligned tensors.
layout (local_size_x_id = 0) in;

layout (binding = 0) uniform samplerBuffer x;
layout (binding = 1) writeonly buffer Y { ACT_V4 y[]; };
layout (push_constant) uniform P
{
  PUSH_OFFSETS
  uint n4; // rows
  uint f4; // F / 4
} p;

vec4 erf_approx (vec4 x)
{
  vec4 z = abs (x);
  vec4 t = 1.0 / (1.0 + 0.5 * z);
  vec4 r = t * exp (-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418
           + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587
           + t * (-0.82215223 + t * 0.17087277)))))))));
  return mix (r - 1.0, 1.0 - r, greaterThanEqual (x, vec4 (0.0)));
}

void main ()
{
  // grid: x along the F/4 output texels of a row (SIMD lanes), y: rows
  uint col = gl_GlobalInvocationID.x;
  if (col >= p.f4)
    return;
  uint row = gl_WorkGroupID.y + gl_NumWorkGroups.y * gl_WorkGroupID.z;
  if (row >= p.n4)
    return;
  int src = int (p.off[0] / 4u + row * 2u * p.f4 + col);
  vec4 h = texelFetch (x, src);
  vec4 gate = texelFetch (x, src + int (p.f4));
  y[p.off[1] / 4u + row * p.f4 + col] = ACT_V4 (h * 0.5 * gate * (1.0 + erf_approx (gate * 0.70710678118654752)));
}

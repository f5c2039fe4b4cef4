#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
// unary.comp for CPU devices: vec4 texel loads, vec4 stores. The wrapper
// guarantees n % 4 == 0 and aligned tensors.
layout (local_size_x_id = 0) in;
layout (constant_id = 1) const uint OP = 0;
layout (constant_id = 2) const uint PER = 4;

layout (binding = 0) uniform samplerBuffer x;
layout (binding = 1) writeonly buffer Y { ACT_V4 y[]; };
layout (push_constant) uniform P
{
  PUSH_OFFSETS
  uint n4;
  float alpha;
  float beta;
} p;

const uint OP_SILU = 0, OP_GELU = 1, OP_QUICK_GELU = 2, OP_EXP = 3, OP_SCALE = 4, OP_CLAMP = 5,
           OP_TANH = 6, OP_SIGMOID = 7;

// as unary.comp (Numerical Recipes erfc, |error| < 1.2e-7)
vec4 erf_approx (vec4 x)
{
  vec4 z = abs (x);
  vec4 t = 1.0 / (1.0 + 0.5 * z);
  vec4 r = t * exp (-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418
           + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587
           + t * (-0.82215223 + t * 0.17087277)))))))));
  return mix (r - 1.0, 1.0 - r, greaterThanEqual (x, vec4 (0.0)));
}

vec4 apply (vec4 v)
{
  if (OP == OP_SILU)
    return v / (1.0 + exp (-v));
  if (OP == OP_GELU)
    return 0.5 * v * (1.0 + erf_approx (v * 0.70710678118654752));
  if (OP == OP_QUICK_GELU)
    return v / (1.0 + exp (-1.702 * v));
  if (OP == OP_EXP)
    return exp (v);
  if (OP == OP_SCALE)
    return p.alpha * v + p.beta;
  // keeps NaN (torch.clamp), see unary.comp
  if (OP == OP_CLAMP)
    return mix (clamp (v, p.alpha, p.beta), v, isnan (v));
  if (OP == OP_TANH)
    return tanh (v);
  return 1.0 / (1.0 + exp (-v));
}

void main ()
{
  uint gid = linear_group () * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
  [[unroll]] for (uint r = 0; r < PER; r++)
    {
      uint i = gid * PER + r;
      if (i >= p.n4)
        break;
      y[p.off[1] / 4u + i] = ACT_V4 (apply (texelFetch (x, int (p.off[0] / 4u + i))));
    }
}

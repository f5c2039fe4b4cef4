#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
// Element-wise unary ops; the op is a specialisation constant so each variant
// compiles to straight-line code.
layout (local_size_x_id = 0) in;
layout (constant_id = 1) const uint OP = 0;
layout (constant_id = 2) const uint PER_THREAD = 4;

layout (binding = 0) readonly buffer X { ACT_T x[]; };
layout (binding = 1) writeonly buffer Y { ACT_T y[]; };
layout (push_constant) uniform P
{
  PUSH_OFFSETS
  uint n;
  float alpha;
  float beta;
} p;

const uint OP_SILU = 0, OP_GELU = 1, OP_QUICK_GELU = 2, OP_EXP = 3, OP_SCALE = 4, OP_CLAMP = 5,
           OP_TANH = 6, OP_SIGMOID = 7;

// erf with |error| < 1.2e-7 (Numerical Recipes erfc via Chebyshev-like
// rational approximation); GLSL has no erf.
float erf_approx (float x)
{
  float z = abs (x);
  float t = 1.0 / (1.0 + 0.5 * z);
  float r = t * exp (-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418
            + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587
            + t * (-0.82215223 + t * 0.17087277)))))))));
  return x >= 0.0 ? 1.0 - r : r - 1.0;
}

float apply (float v)
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
  // torch.clamp keeps NaN; GLSL clamp() may return a bound instead (lavapipe
  // gives alpha), which would hide a NaN (e.g. a VAE decode) as a valid pixel.
  if (OP == OP_CLAMP)
    return isnan (v) ? v : clamp (v, p.alpha, p.beta);
  if (OP == OP_TANH)
    return tanh (v);
  return 1.0 / (1.0 + exp (-v));
}

void main ()
{
  uint base = linear_group () * gl_WorkGroupSize.x * PER_THREAD + gl_LocalInvocationID.x;
  [[unroll]] for (uint r = 0; r < PER_THREAD; r++)
    {
      uint i = base + r * gl_WorkGroupSize.x;
      if (i < p.n)
        y[p.off[1] + i] = ACT_T (apply (float (x[p.off[0] + i])));
    }
}

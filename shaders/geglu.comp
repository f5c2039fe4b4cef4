#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
// GEGLU (diffusers attention.GEGLU): x[rows, 2F] -> x[:, :F] * gelu(x[:, F:]),
// exact erf GELU.
layout (local_size_x_id = 0) in;

layout (binding = 0) readonly buffer X { ACT_T x[]; };
layout (binding = 1) writeonly buffer Y { ACT_T y[]; };
layout (push_constant) uniform P
{
  PUSH_OFFSETS
  uint n; // rows * F
  uint f;
} p;

float erf_approx (float x)
{
  float z = abs (x);
  float t = 1.0 / (1.0 + 0.5 * z);
  float r = t * exp (-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418
            + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587
            + t * (-0.82215223 + t * 0.17087277)))))))));
  return x >= 0.0 ? 1.0 - r : r - 1.0;
}

void main ()
{
  uint i = linear_group () * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
  if (i >= p.n)
    return;
  uint row = i / p.f;
  uint col = i - row * p.f;
  uint src = p.off[0] + row * 2u * p.f + col;
  float h = float (x[src]);
  float gate = float (x[src + p.f]);
  y[p.off[1] + i] = ACT_T (h * 0.5 * gate * (1.0 + erf_approx (gate * 0.70710678118654752)));
}

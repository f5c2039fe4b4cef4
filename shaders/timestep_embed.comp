#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
// Sinusoidal embedding (diffusers get_timestep_embedding): freq_k =
// exp(-ln(max_period) * k / (half - shift)), arg = t * freq_k (fp32),
// [sin, cos] or [cos, sin] (flip). The argument is range-reduced with a
// three-part 2*pi (Cody-Waite) before sin/cos, because Vulkan only bounds the
// error of sin/cos on [-pi, pi] and timesteps reach ~1000 radians.
layout (local_size_x_id = 0) in;

layout (binding = 0) readonly buffer T { float t[]; };
layout (binding = 1) writeonly buffer Y { ACT_T y[]; };
layout (push_constant) uniform P
{
  PUSH_OFFSETS
  uint n;   // rows * dim
  uint dim;
  uint flip;
  float shift;
  float log_max_period;
} p;

float reduce_2pi (float a)
{
  float k = floor (a * 0.15915494309189535 + 0.5);
  // 2*pi = C1 + C2 + C3 with C1, C2 exactly representable in few bits
  const float C1 = 6.28125;
  const float C2 = 1.9353071795864769e-3;
  const float C3 = 2.0e-13; // tail (negligible but keeps the split explicit)
  return ((a - k * C1) - k * C2) - k * C3;
}

void main ()
{
  uint i = linear_group () * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
  if (i >= p.n)
    return;
  uint row = i / p.dim;
  uint col = i - row * p.dim;
  uint half_dim = p.dim / 2u;
  float v = 0.0;
  if (col < 2u * half_dim)
    {
      bool first = col < half_dim;
      uint k = first ? col : col - half_dim;
      float freq = exp (-p.log_max_period * float (k) / (float (half_dim) - p.shift));
      float arg = reduce_2pi (t[p.off[0] + row] * freq);
      bool use_cos = (p.flip != 0u) == first;
      v = use_cos ? cos (arg) : sin (arg);
    }
  y[p.off[1] + i] = ACT_T (v);
}

#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
// LayerNorm over the last dimension for CPU devices (lavapipe): one
// invocation per row, rows read as vec4 texels (two-pass fp32 statistics),
// written as vec4 stores (layer_norm.comp: a workgroup per row with shared
// memory reductions and storage-buffer loads, slow on llvmpipe). The wrapper
// guarantees C % 4 == 0 and 4-element-aligned tensors.
layout (local_size_x_id = 0) in;

layout (binding = 0) uniform samplerBuffer x;     // [rows, C], vec4 texels
layout (binding = 1) uniform samplerBuffer gamma; // [C], vec4 texels
layout (binding = 2) uniform samplerBuffer beta;  // [C], vec4 texels
layout (binding = 3) writeonly buffer Y { ACT_V4 y[]; };
layout (push_constant) uniform P
{
  PUSH_OFFSETS
  uint c4; // C / 4
  uint rows;
  float eps;
} p;

void main ()
{
  uint row = linear_group () * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
  if (row >= p.rows)
    return;
  int base = int (p.off[0] / 4u + row * p.c4);
  vec4 sum = vec4 (0.0);
  for (uint i = 0; i < p.c4; i++)
    sum += texelFetch (x, base + int (i));
  float inv_n = 1.0 / (4.0 * float (p.c4));
  float mean = (sum.x + sum.y + sum.z + sum.w) * inv_n;
  vec4 sq = vec4 (0.0);
  for (uint i = 0; i < p.c4; i++)
    {
      vec4 d = texelFetch (x, base + int (i)) - mean;
      sq += d * d;
    }
  float rstd = inversesqrt ((sq.x + sq.y + sq.z + sq.w) * inv_n + p.eps);
  uint obase = p.off[3] / 4u + row * p.c4;
  int gb = int (p.off[1] / 4u), bb = int (p.off[2] / 4u);
  for (uint i = 0; i < p.c4; i++)
    {
      vec4 v = (texelFetch (x, base + int (i)) - mean) * rstd * texelFetch (gamma, gb + int (i))
               + texelFetch (beta, bb + int (i));
      y[obase + i] = ACT_V4 (v);
    }
}

#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
// attention.comp for CPU devices (lavapipe): the same flash-style kernel (one
// invocation per query row, head and chunk of DC output dims; online softmax,
// Milakov & Gimelshein 2018), with q, k and v read as vec4 texels along the
// head dim through uniform texel buffers. llvmpipe gathers a texel fetch with
// vector loads, where an SSBO load is a per-lane loop with branches; here that
// is D/4 + DC/4 fetches per key instead of D + DC loads. The wrapper
// guarantees D % 4 == 0, DC % 4 == 0 and 4-element-aligned rows and offsets.
layout (local_size_x_id = 0) in;
layout (constant_id = 1) const uint D = 64;  // head dim
layout (constant_id = 2) const uint DC = 64; // output dims per invocation (divides D)
layout (constant_id = 3) const bool CAUSAL = false;

layout (binding = 0) uniform samplerBuffer q;
layout (binding = 1) uniform samplerBuffer k;
layout (binding = 2) uniform samplerBuffer v;
layout (binding = 3) writeonly buffer O { ACT_T o[]; };
layout (push_constant) uniform P
{
  PUSH_OFFSETS
  uint batch, tq, tk, heads;
  uint q_rs, k_rs, v_rs; // row strides (elements)
  uint q_bs, k_bs, v_bs; // batch strides
  float scale;
} p;

void main ()
{
  const uint NC = D / DC;
  const uint D4 = D / 4u, DC4 = DC / 4u;
  uint gid = linear_group () * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
  uint total = p.batch * p.heads * NC * p.tq;
  if (gid >= total)
    return;
  uint i = gid % p.tq;
  uint r = gid / p.tq;
  uint c = r % NC;
  r /= NC;
  uint h = r % p.heads;
  uint b = r / p.heads;

  vec4 qv[D4];
  int qbase = int ((p.off[0] + b * p.q_bs + i * p.q_rs + h * D) / 4u);
  [[unroll]] for (uint d = 0; d < D4; d++)
    qv[d] = texelFetch (q, qbase + int (d)) * p.scale;

  vec4 acc[DC4];
  [[unroll]] for (uint d = 0; d < DC4; d++)
    acc[d] = vec4 (0.0);
  float m = -3.402823466e38;
  float l = 0.0;
  uint kbase = p.off[1] + b * p.k_bs + h * D;
  uint vbase = p.off[2] + b * p.v_bs + h * D + c * DC;
  uint n = CAUSAL ? min (i + 1u, p.tk) : p.tk;
  for (uint j = 0; j < n; j++)
    {
      int kr = int ((kbase + j * p.k_rs) / 4u);
      float s = 0.0;
      [[unroll]] for (uint d = 0; d < D4; d++)
        s += dot (qv[d], texelFetch (k, kr + int (d)));
      float m_new = max (m, s);
      float corr = exp (m - m_new);
      float e = exp (s - m_new);
      l = l * corr + e;
      int vr = int ((vbase + j * p.v_rs) / 4u);
      [[unroll]] for (uint d = 0; d < DC4; d++)
        acc[d] = e * texelFetch (v, vr + int (d)) + acc[d] * corr;
      m = m_new;
    }
  float inv = 1.0 / l;
  uint obase = p.off[3] + (b * p.tq + i) * (p.heads * D) + h * D + c * DC;
  [[unroll]] for (uint d = 0; d < DC4; d++)
    [[unroll]] for (uint e4 = 0; e4 < 4u; e4++)
      o[obase + 4u * d + e4] = ACT_T (acc[d][e4] * inv);
}

#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
// Scaled-dot-product attention, flash style (online softmax, Milakov &
// Gimelshein 2018; Dao et al. 2022): O(N) memory, the score matrix is never
// stored. One invocation owns one query row of one head and a chunk of DC
// output dims; it keeps the full query in registers and streams keys and
// values. Neighbouring invocations take neighbouring queries of the same
// head, so key/value loads are shared (broadcast) within a subgroup.
layout (local_size_x_id = 0) in;
layout (constant_id = 1) const uint D = 64;  // head dim
layout (constant_id = 2) const uint DC = 64; // output dims per invocation (divides D)
layout (constant_id = 3) const bool CAUSAL = false;

layout (binding = 0) readonly buffer Q { ACT_T q[]; };
layout (binding = 1) readonly buffer K { ACT_T k[]; };
layout (binding = 2) readonly buffer V { ACT_T v[]; };
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

  float qv[D];
  uint qbase = p.off[0] + b * p.q_bs + i * p.q_rs + h * D;
  [[unroll]] for (uint d = 0; d < D; d++)
    qv[d] = float (q[qbase + d]) * p.scale;

  float acc[DC];
  [[unroll]] for (uint d = 0; d < DC; d++)
    acc[d] = 0.0;
  float m = -3.402823466e38;
  float l = 0.0;
  uint kbase = p.off[1] + b * p.k_bs + h * D;
  uint vbase = p.off[2] + b * p.v_bs + h * D + c * DC;
  uint n = CAUSAL ? min (i + 1u, p.tk) : p.tk;
  for (uint j = 0; j < n; j++)
    {
      uint kr = kbase + j * p.k_rs;
      float s = 0.0;
      [[unroll]] for (uint d = 0; d < D; d++)
        s = fma (qv[d], float (k[kr + d]), s);
      float m_new = max (m, s);
      float corr = exp (m - m_new);
      float e = exp (s - m_new);
      l = l * corr + e;
      uint vr = vbase + j * p.v_rs;
      [[unroll]] for (uint d = 0; d < DC; d++)
        acc[d] = fma (e, float (v[vr + d]), acc[d] * corr);
      m = m_new;
    }
  float inv = 1.0 / l;
  uint obase = p.off[3] + (b * p.tq + i) * (p.heads * D) + h * D + c * DC;
  [[unroll]] for (uint d = 0; d < DC; d++)
    o[obase + d] = ACT_T (acc[d] * inv);
}

#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
// Flash attention for CPU devices (lavapipe), several queries per invocation:
// attention_tex.comp reads each key and value row once per query, which is 4
// FMAs per vec4 fetch; here an invocation takes TQ consecutive queries of one
// head, so every K/V fetch feeds TQ dot products / updates. Keys go in
// blocks of KB: the scores of a block are computed first, then the running
// max and the rescale of the accumulators happen once per block instead of
// once per key (online softmax, Milakov & Gimelshein 2018; block form as in
// FlashAttention, Dao et al. 2022). q is pre-scaled. q, k and v are vec4
// texels along the head dim; the wrapper guarantees D % 4 == 0, DC % 4 == 0
// and 4-element-aligned rows and offsets. Lanes (llvmpipe vectorises along x)
// are neighbouring query groups of the same head, so they fetch the same K/V
// rows.
layout (local_size_x_id = 0) in;
layout (constant_id = 1) const uint D = 64;  // head dim
layout (constant_id = 2) const uint DC = 64; // output dims per invocation (divides D)
layout (constant_id = 3) const bool CAUSAL = false;
layout (constant_id = 4) const uint TQ = 4;  // queries per invocation
layout (constant_id = 5) const uint KB = 8;  // keys per block

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
  uint ngroups = (p.tq + TQ - 1u) / TQ;
  uint total = p.batch * p.heads * NC * ngroups;
  if (gid >= total)
    return;
  uint qg = gid % ngroups;
  uint r = gid / ngroups;
  uint c = r % NC;
  r /= NC;
  uint h = r % p.heads;
  uint b = r / p.heads;
  uint i0 = qg * TQ;

  vec4 qv[TQ * D4];
  [[unroll]] for (uint t = 0; t < TQ; t++)
    {
      int qbase = int ((p.off[0] + b * p.q_bs + min (i0 + t, p.tq - 1u) * p.q_rs + h * D) / 4u);
      [[unroll]] for (uint d = 0; d < D4; d++)
        qv[t * D4 + d] = texelFetch (q, qbase + int (d)) * p.scale;
    }

  vec4 acc[TQ * DC4];
  [[unroll]] for (uint d = 0; d < TQ * DC4; d++)
    acc[d] = vec4 (0.0);
  float m[TQ];
  float l[TQ];
  [[unroll]] for (uint t = 0; t < TQ; t++)
    {
      m[t] = -3.402823466e38;
      l[t] = 0.0;
    }
  uint kbase = p.off[1] + b * p.k_bs + h * D;
  uint vbase = p.off[2] + b * p.v_bs + h * D + c * DC;
  // keys this invocation needs: all, or (causal) up to its last query
  uint n = CAUSAL ? min (min (i0 + TQ, p.tq), p.tk) : p.tk;
  for (uint j0 = 0; j0 < n; j0 += KB)
    {
      float s[TQ * KB];
      [[unroll]] for (uint u = 0; u < KB; u++)
        {
          uint j = j0 + u;
          int kr = int ((kbase + min (j, p.tk - 1u) * p.k_rs) / 4u);
          vec4 kv[D4];
          [[unroll]] for (uint d = 0; d < D4; d++)
            kv[d] = texelFetch (k, kr + int (d));
          [[unroll]] for (uint t = 0; t < TQ; t++)
            {
              float sc = 0.0;
              [[unroll]] for (uint d = 0; d < D4; d++)
                sc += dot (qv[t * D4 + d], kv[d]);
              bool masked = j >= n || (CAUSAL && j > i0 + t);
              s[t * KB + u] = masked ? uintBitsToFloat (0xff800000u) : sc; // -inf
            }
        }
      [[unroll]] for (uint t = 0; t < TQ; t++)
        {
          float mb = s[t * KB];
          [[unroll]] for (uint u = 1; u < KB; u++)
            mb = max (mb, s[t * KB + u]);
          float m_new = max (m[t], mb);
          float corr = exp (m[t] - m_new);
          m[t] = m_new;
          l[t] *= corr;
          [[unroll]] for (uint d = 0; d < DC4; d++)
            acc[t * DC4 + d] *= corr;
        }
      [[unroll]] for (uint u = 0; u < KB; u++)
        {
          int vr = int ((vbase + min (j0 + u, p.tk - 1u) * p.v_rs) / 4u);
          vec4 vv[DC4];
          [[unroll]] for (uint d = 0; d < DC4; d++)
            vv[d] = texelFetch (v, vr + int (d));
          [[unroll]] for (uint t = 0; t < TQ; t++)
            {
              float e = exp (s[t * KB + u] - m[t]);
              l[t] += e;
              [[unroll]] for (uint d = 0; d < DC4; d++)
                acc[t * DC4 + d] += e * vv[d];
            }
        }
    }
  [[unroll]] for (uint t = 0; t < TQ; t++)
    {
      uint i = i0 + t;
      if (i >= p.tq)
        continue;
      float inv = 1.0 / l[t];
      uint obase = p.off[3] + (b * p.tq + i) * (p.heads * D) + h * D + c * DC;
      [[unroll]] for (uint d = 0; d < DC4; d++)
        [[unroll]] for (uint e4 = 0; e4 < 4u; e4++)
          o[obase + 4u * d + e4] = ACT_T (acc[t * DC4 + d][e4] * inv);
    }
}

/* ops-attention.c: flash-style multi-head attention. */
#include "config.h"

#include <math.h>
#include <stdio.h>

#include "ops-common.h"

/* mirrors shaders/attention.comp */
typedef struct
{
  guint32 off[IVK_MAX_BINDINGS];
  guint32 batch, tq, tk, heads;
  guint32 q_rs, k_rs, v_rs;
  guint32 q_bs, k_bs, v_bs;
  float scale;
} AttentionPush;
G_STATIC_ASSERT (sizeof (AttentionPush) <= IVK_PUSH_MAX);

static gint64
row_stride (const IvkTensor *t)
{
  return t->row_stride ? t->row_stride : t->shape[t->ndim - 1];
}

/* the largest divisor of d that is <= cap: the output chunk per invocation */
static guint32
chunk_for (gint64 d, gint64 cap)
{
  for (gint64 c = MIN (d, cap); c > 1; c--)
    if (d % c == 0)
      return (guint32) c;
  return 1;
}

IvkTensor *
ivk_attention (IvkGraph *g, IvkTensor *q, IvkTensor *k, IvkTensor *v, const IvkAttentionParams *params)
{
  if (!ivk_graph_check_tensor (g, q, "attention", "q") || !ivk_graph_check_tensor (g, k, "attention", "k")
      || !ivk_graph_check_tensor (g, v, "attention", "v"))
    return NULL;
  if (q->ndim != 3 || k->ndim != 3 || v->ndim != 3 || q->shape[0] != k->shape[0]
      || k->shape[0] != v->shape[0] || k->shape[1] != v->shape[1] || q->shape[2] != k->shape[2]
      || k->shape[2] != v->shape[2] || q->dtype != k->dtype || k->dtype != v->dtype
      || params->heads <= 0 || q->shape[2] % params->heads != 0)
    {
      ivk_graph_set_error (g, IVK_ERROR, IVK_ERROR_SHAPE,
                           "attention: q %s, k/v %s, %d heads: shapes do not match",
                           ivk_tensor_describe (q), ivk_tensor_describe (k), params->heads);
      return NULL;
    }
  gint64 b = q->shape[0], tq_len = q->shape[1], tk = k->shape[1], c = q->shape[2];
  gint64 d = c / params->heads;
  if (d > 512)
    {
      ivk_graph_set_error (g, IVK_ERROR, IVK_ERROR_LIMIT, "attention: head dim %" G_GINT64_FORMAT " > 512", d);
      return NULL;
    }
  /* CPU devices: q, k, v as vec4 texels along the head dim, several queries
   * per invocation (attention_tq.comp), or one (attention_tex.comp) */
  const IvkDeviceInfo *info = ivk_context_get_info (ivk_graph_get_context (g));
  gboolean tex = info->is_cpu && d % 4 == 0 && ivk_texel_ok (g, q, 4) && ivk_texel_ok (g, k, 4)
                 && ivk_texel_ok (g, v, 4);
  gboolean tq = tex && ivk_fast_path ("attention_tq");
  IvkShader shader;
  if (!ivk_pick_act (g, tq ? "attention_tq" : tex ? "attention_tex" : "attention", q->dtype, &shader))
    return NULL;
  gint64 shape[3] = { b, tq_len, c };
  IvkTensor *out = ivk_graph_new_tensor (g, q->dtype, 3, shape);
  if (!out)
    return NULL;
  AttentionPush push = {
    .batch = b, .tq = tq_len, .tk = tk, .heads = params->heads,
    .q_rs = row_stride (q), .k_rs = row_stride (k), .v_rs = row_stride (v),
    .q_bs = row_stride (q) * tq_len, .k_bs = row_stride (k) * tk, .v_bs = row_stride (v) * tk,
    .scale = params->scale,
  };
  guint32 dc = tex ? 4 * chunk_for (d / 4, 16) : chunk_for (d, 64);
  guint32 wg = 64;
  guint32 qpi = 1, kb = 8; /* queries per invocation, keys per block (attention_tq) */
  if (tq)
    {
      /* The whole head dim per invocation (chunks would each recompute the
       * scores), 8 queries up to head dim 80, else 4. CPU ms per dispatch
       * (impasto bench ops, f16): 8 heads x 40 at 4096 tokens: 1 query per
       * invocation 6780 (wall, attention_tex.comp), 4 queries 1056, 8 queries
       * 900; x 80 at 2x1024: 4 queries 285, 8 queries 249; x 160 at 2x256:
       * 4 queries in 2 chunks 56, whole 43. */
      dc = d <= 160 ? (guint32) d : 4 * chunk_for (d / 4, 40);
      qpi = d <= 80 ? 8 : 4;
      guint v[3];
      const char *env = g_getenv ("IMPASTO_ATTN_TILES");
      if (env && sscanf (env, "%u,%u,%u", &v[0], &v[1], &v[2]) == 3 && v[0] >= 1 && v[0] <= 16
          && v[1] >= 1 && v[1] <= 32 && v[2] >= 4 && v[2] % 4 == 0 && d % v[2] == 0)
        {
          qpi = v[0];
          kb = v[1];
          dc = v[2];
        }
      wg = 8;
    }
  guint32 spec[6] = { wg, (guint32) d, dc, params->causal != 0, qpi, kb };
  IvkTensor *bind[4] = { q, k, v, out };
  IvkDispatch disp = {
    .op = "attention",
    .kind = { tex ? IVK_BIND_TEXEL4 : IVK_BIND_STORAGE, tex ? IVK_BIND_TEXEL4 : IVK_BIND_STORAGE,
              tex ? IVK_BIND_TEXEL4 : IVK_BIND_STORAGE },
    .shader = shader,
    .spec = spec,
    .n_spec = tq ? 6 : 4,
    .bind = bind,
    .n_bind = 4,
    .write_mask = 1u << 3,
    .push = &push,
    .push_size = sizeof push,
    .flops = 4.0 * b * params->heads * tq_len * tk * d * (params->causal ? 0.5 : 1.0),
  };
  gint64 threads = b * params->heads * (d / dc) * ((tq_len + qpi - 1) / qpi);
  ivk_grid_1d (g, (threads + wg - 1) / wg, disp.groups);
  if (!ivk_graph_add_dispatch (g, &disp))
    return NULL;
  return out;
}

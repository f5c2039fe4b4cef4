/* ops-attention.c: flash-style multi-head attention. */
#include "config.h"

#include <math.h>

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
  gint64 b = q->shape[0], tq = q->shape[1], tk = k->shape[1], c = q->shape[2];
  gint64 d = c / params->heads;
  if (d > 512)
    {
      ivk_graph_set_error (g, IVK_ERROR, IVK_ERROR_LIMIT, "attention: head dim %" G_GINT64_FORMAT " > 512", d);
      return NULL;
    }
  /* CPU devices: q, k, v as vec4 texels along the head dim (attention_tex.comp) */
  const IvkDeviceInfo *info = ivk_context_get_info (ivk_graph_get_context (g));
  gboolean tex = info->is_cpu && d % 4 == 0 && ivk_texel_ok (g, q, 4) && ivk_texel_ok (g, k, 4)
                 && ivk_texel_ok (g, v, 4);
  IvkShader shader;
  if (!ivk_pick_act (g, tex ? "attention_tex" : "attention", q->dtype, &shader))
    return NULL;
  gint64 shape[3] = { b, tq, c };
  IvkTensor *out = ivk_graph_new_tensor (g, q->dtype, 3, shape);
  if (!out)
    return NULL;
  AttentionPush push = {
    .batch = b, .tq = tq, .tk = tk, .heads = params->heads,
    .q_rs = row_stride (q), .k_rs = row_stride (k), .v_rs = row_stride (v),
    .q_bs = row_stride (q) * tq, .k_bs = row_stride (k) * tk, .v_bs = row_stride (v) * tk,
    .scale = params->scale,
  };
  guint32 dc = tex ? 4 * chunk_for (d / 4, 16) : chunk_for (d, 64);
  guint32 wg = 64;
  guint32 spec[4] = { wg, (guint32) d, dc, params->causal != 0 };
  IvkTensor *bind[4] = { q, k, v, out };
  IvkDispatch disp = {
    .op = "attention",
    .kind = { tex ? IVK_BIND_TEXEL4 : IVK_BIND_STORAGE, tex ? IVK_BIND_TEXEL4 : IVK_BIND_STORAGE,
              tex ? IVK_BIND_TEXEL4 : IVK_BIND_STORAGE },
    .shader = shader,
    .spec = spec,
    .n_spec = 4,
    .bind = bind,
    .n_bind = 4,
    .write_mask = 1u << 3,
    .push = &push,
    .push_size = sizeof push,
    .flops = 4.0 * b * params->heads * tq * tk * d * (params->causal ? 0.5 : 1.0),
  };
  gint64 threads = b * params->heads * (d / dc) * tq;
  ivk_grid_1d (g, (threads + wg - 1) / wg, disp.groups);
  if (!ivk_graph_add_dispatch (g, &disp))
    return NULL;
  return out;
}

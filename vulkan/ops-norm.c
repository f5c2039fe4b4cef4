/* ops-norm.c: group norm (+SiLU), layer norm, softmax. */
#include "config.h"

#include "ops-common.h"

typedef struct
{
  guint32 off[IVK_MAX_BINDINGS];
  guint32 c, hw, groups;
  float eps;
} GroupNormPush;

typedef struct
{
  guint32 off[IVK_MAX_BINDINGS];
  guint32 c;
  float eps;
} LayerNormPush;

typedef struct
{
  guint32 off[IVK_MAX_BINDINGS];
  guint32 c;
  float scale;
} SoftmaxPush;

typedef struct
{
  guint32 off[IVK_MAX_BINDINGS];
  guint32 c, hw4, groups;
  float eps;
  guint32 total;
} GroupNormTexPush;
G_STATIC_ASSERT (sizeof (GroupNormTexPush) <= IVK_PUSH_MAX);

typedef struct
{
  guint32 off[IVK_MAX_BINDINGS];
  guint32 c4, rows;
  float eps;
} LayerNormTexPush;

/* CPU devices: the texel-fetch kernels of group_norm_tex.comp and
 * layer_norm_tex.comp (IMPASTO_DISABLE=norm_tex turns them off). */
static gboolean
norm_tex_ok (IvkGraph *g, IvkTensor *x)
{
  const IvkDeviceInfo *info = ivk_context_get_info (ivk_graph_get_context (g));
  return info->is_cpu && ivk_texel_ok (g, x, 4) && ivk_fast_path ("norm_tex");
}

#define TEX_THREADS 8 /* llvmpipe's SIMD width along x */

static IvkTensor *
group_norm_tex (IvkGraph *g, IvkTensor *x, IvkTensor *gamma, IvkTensor *beta, int groups,
                float eps, gboolean silu, IvkTensor *out)
{
  gint64 n = x->shape[0], c = x->shape[1];
  gint64 hw = x->n_elements / (n * c);
  gint64 st_shape[2] = { n * groups, 4 };
  IvkTensor *stats = ivk_graph_new_tensor (g, IVK_F32, 2, st_shape);
  if (!stats)
    return NULL;
  GroupNormTexPush push = { .c = c, .hw4 = hw / 4, .groups = groups, .eps = eps, .total = n * groups };
  guint32 spec[2] = { TEX_THREADS, 0 };
  IvkTensor *bind1[2] = { x, stats };
  IvkDispatch d1 = {
    .op = "group_norm",
    .kind = { IVK_BIND_TEXEL4 },
    .shader = ivk_shader_lookup ("group_norm_stats_tex"),
    .spec = spec,
    .n_spec = 2,
    .bind = bind1,
    .n_bind = 2,
    .write_mask = 1u << 1,
    .push = &push,
    .push_size = sizeof push,
    .flops = 3.0 * x->n_elements,
  };
  ivk_grid_1d (g, (n * groups + TEX_THREADS - 1) / TEX_THREADS, d1.groups);
  if (!ivk_graph_add_dispatch (g, &d1))
    return NULL;
  IvkShader shader;
  if (!ivk_pick_act (g, "group_norm_tex", x->dtype, &shader))
    return NULL;
  push.total = x->n_elements / 4;
  guint32 spec2[2] = { TEX_THREADS, silu != 0 };
  IvkTensor *bind2[5] = { x, stats, gamma, beta, out };
  IvkDispatch d2 = {
    .op = "group_norm",
    .kind = { IVK_BIND_TEXEL4, IVK_BIND_TEXEL4, IVK_BIND_TEXEL, IVK_BIND_TEXEL },
    .shader = shader,
    .spec = spec2,
    .n_spec = 2,
    .bind = bind2,
    .n_bind = 5,
    .write_mask = 1u << 4,
    .push = &push,
    .push_size = sizeof push,
    .flops = 5.0 * x->n_elements,
    .groups = { (guint32) ((hw / 4 + TEX_THREADS - 1) / TEX_THREADS), (guint32) c, (guint32) n },
  };
  if (!ivk_graph_add_dispatch (g, &d2))
    return NULL;
  return out;
}

static guint32
reduce_threads (IvkGraph *g, gint64 per_group)
{
  const IvkDeviceInfo *info = ivk_context_get_info (ivk_graph_get_context (g));
  /* a power of two; on the CPU fewer invocations mean cheaper barriers */
  guint32 max = info->is_cpu ? 64 : 256;
  guint32 t = 32;
  while (t < max && t < per_group)
    t *= 2;
  return MIN (t, info->max_workgroup_invocations);
}

IvkTensor *
ivk_group_norm (IvkGraph *g, IvkTensor *x, IvkTensor *gamma, IvkTensor *beta, int groups,
                float eps, gboolean silu)
{
  if (!ivk_graph_check_tensor (g, x, "group_norm", "input")
      || !ivk_graph_check_tensor (g, gamma, "group_norm", "weight")
      || !ivk_graph_check_tensor (g, beta, "group_norm", "bias"))
    return NULL;
  gint64 n = x->shape[0];
  gint64 c = x->ndim >= 2 ? x->shape[1] : 0;
  if (x->ndim < 2 || !ivk_tensor_is_contiguous (x) || groups <= 0 || c % groups != 0
      || gamma->n_elements != c || beta->n_elements != c || gamma->dtype != beta->dtype)
    {
      ivk_graph_set_error (g, IVK_ERROR, IVK_ERROR_SHAPE,
                           "group_norm: input %s, %d groups, affine %s: shapes do not match",
                           ivk_tensor_describe (x), groups, ivk_tensor_describe (gamma));
      return NULL;
    }
  gint64 hw = x->n_elements / (n * c);
  IvkShader shader;
  if (!ivk_pick_aw (g, "group_norm", x->dtype, gamma->dtype, &shader))
    return NULL;
  IvkTensor *out = ivk_graph_new_tensor (g, x->dtype, x->ndim, x->shape);
  if (!out)
    return NULL;
  if (hw % 4 == 0 && norm_tex_ok (g, x) && ivk_texel_ok (g, gamma, 1) && ivk_texel_ok (g, beta, 1))
    return group_norm_tex (g, x, gamma, beta, groups, eps, silu, out);
  GroupNormPush push = { .c = c, .hw = hw, .groups = groups, .eps = eps };
  guint32 spec[2] = { reduce_threads (g, (c / groups) * hw), silu != 0 };
  IvkTensor *bind[4] = { x, gamma, beta, out };
  IvkDispatch d = {
    .op = "group_norm",
    .shader = shader,
    .spec = spec,
    .n_spec = 2,
    .bind = bind,
    .n_bind = 4,
    .write_mask = 1u << 3,
    .push = &push,
    .push_size = sizeof push,
    .flops = 8.0 * x->n_elements,
  };
  ivk_grid_1d (g, n * groups, d.groups);
  if (!ivk_graph_add_dispatch (g, &d))
    return NULL;
  return out;
}

IvkTensor *
ivk_layer_norm (IvkGraph *g, IvkTensor *x, IvkTensor *gamma, IvkTensor *beta, float eps)
{
  if (!ivk_graph_check_tensor (g, x, "layer_norm", "input")
      || !ivk_graph_check_tensor (g, gamma, "layer_norm", "weight")
      || !ivk_graph_check_tensor (g, beta, "layer_norm", "bias"))
    return NULL;
  gint64 c = x->shape[x->ndim - 1];
  if (x->ndim < 1 || !ivk_tensor_is_contiguous (x) || gamma->n_elements != c
      || beta->n_elements != c || gamma->dtype != beta->dtype)
    {
      ivk_graph_set_error (g, IVK_ERROR, IVK_ERROR_SHAPE, "layer_norm: input %s, affine %s",
                           ivk_tensor_describe (x), ivk_tensor_describe (gamma));
      return NULL;
    }
  IvkShader shader;
  if (!ivk_pick_aw (g, "layer_norm", x->dtype, gamma->dtype, &shader))
    return NULL;
  IvkTensor *out = ivk_graph_new_tensor (g, x->dtype, x->ndim, x->shape);
  if (!out)
    return NULL;
  if (c % 4 == 0 && norm_tex_ok (g, x) && ivk_texel_ok (g, gamma, 4) && ivk_texel_ok (g, beta, 4))
    {
      if (!ivk_pick_act (g, "layer_norm_tex", x->dtype, &shader))
        return NULL;
      LayerNormTexPush tp = { .c4 = c / 4, .rows = x->n_elements / c, .eps = eps };
      guint32 tspec[1] = { TEX_THREADS };
      IvkTensor *tbind[4] = { x, gamma, beta, out };
      IvkDispatch td = {
        .op = "layer_norm",
        .kind = { IVK_BIND_TEXEL4, IVK_BIND_TEXEL4, IVK_BIND_TEXEL4 },
        .shader = shader,
        .spec = tspec,
        .n_spec = 1,
        .bind = tbind,
        .n_bind = 4,
        .write_mask = 1u << 3,
        .push = &tp,
        .push_size = sizeof tp,
        .flops = 8.0 * x->n_elements,
      };
      ivk_grid_1d (g, (tp.rows + TEX_THREADS - 1) / TEX_THREADS, td.groups);
      if (!ivk_graph_add_dispatch (g, &td))
        return NULL;
      return out;
    }
  LayerNormPush push = { .c = c, .eps = eps };
  guint32 spec[1] = { reduce_threads (g, c) };
  IvkTensor *bind[4] = { x, gamma, beta, out };
  IvkDispatch d = {
    .op = "layer_norm",
    .shader = shader,
    .spec = spec,
    .n_spec = 1,
    .bind = bind,
    .n_bind = 4,
    .write_mask = 1u << 3,
    .push = &push,
    .push_size = sizeof push,
    .flops = 8.0 * x->n_elements,
  };
  ivk_grid_1d (g, x->n_elements / c, d.groups);
  if (!ivk_graph_add_dispatch (g, &d))
    return NULL;
  return out;
}

IvkTensor *
ivk_softmax (IvkGraph *g, IvkTensor *x, float scale)
{
  if (!ivk_graph_check_tensor (g, x, "softmax", "input"))
    return NULL;
  if (!ivk_tensor_is_contiguous (x))
    {
      ivk_graph_set_error (g, IVK_ERROR, IVK_ERROR_SHAPE, "softmax: strided input");
      return NULL;
    }
  gint64 c = x->shape[x->ndim - 1];
  IvkShader shader;
  if (!ivk_pick_act (g, "softmax", x->dtype, &shader))
    return NULL;
  IvkTensor *out = ivk_graph_new_tensor (g, x->dtype, x->ndim, x->shape);
  if (!out)
    return NULL;
  SoftmaxPush push = { .c = c, .scale = scale };
  guint32 spec[1] = { reduce_threads (g, c) };
  IvkTensor *bind[2] = { x, out };
  IvkDispatch d = {
    .op = "softmax",
    .shader = shader,
    .spec = spec,
    .n_spec = 1,
    .bind = bind,
    .n_bind = 2,
    .write_mask = 1u << 1,
    .push = &push,
    .push_size = sizeof push,
    .flops = 5.0 * x->n_elements,
  };
  ivk_grid_1d (g, x->n_elements / c, d.groups);
  if (!ivk_graph_add_dispatch (g, &d))
    return NULL;
  return out;
}

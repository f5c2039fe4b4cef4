/* ops-elementwise.c: unary, binary (broadcast), GEGLU, upsample, embeddings. */
#include "config.h"

#include <math.h>
#include <string.h>

#include "ops-common.h"

#define EW_THREADS 64

typedef struct
{
  guint32 off[IVK_MAX_BINDINGS];
  guint32 n;
  float alpha, beta;
} UnaryPush;

typedef struct
{
  guint32 off[IVK_MAX_BINDINGS];
  guint32 n;
  guint32 shape1, shape2, shape3;
  guint32 as[4];
  guint32 bs[4];
} BinaryPush;

typedef struct
{
  guint32 off[IVK_MAX_BINDINGS];
  guint32 n, f;
} GegluPush;

typedef struct
{
  guint32 off[IVK_MAX_BINDINGS];
  guint32 n, h, w;
} UpsamplePush;

typedef struct
{
  guint32 off[IVK_MAX_BINDINGS];
  guint32 n, c, rows;
} EmbeddingPush;

typedef struct
{
  guint32 off[IVK_MAX_BINDINGS];
  guint32 n, dim, flip;
  float shift, log_max_period;
} TimestepPush;

/* CPU devices: vec4 texel loads and vec4 stores for the element-wise ops
 * (IMPASTO_DISABLE=elementwise_tex turns them off). llvmpipe turns every
 * storage-buffer load and store into a loop over the SIMD lanes (notes in
 * ops-matmul.c); these kernels were load-bound at 0.03-0.4 GB/s. */
#define TEX_THREADS 8 /* llvmpipe's SIMD width along x */
#define TEX_PER 4

static gboolean
ew_tex_ok (IvkGraph *g)
{
  const IvkDeviceInfo *info = ivk_context_get_info (ivk_graph_get_context (g));
  return info->is_cpu && info->texel_buffers && ivk_fast_path ("elementwise_tex");
}

gboolean
ivk_grid_tex3d (IvkGraph *g, gint64 *it4, gint64 **strides, int n_sets, guint32 groups[3])
{
  const IvkDeviceInfo *info = ivk_context_get_info (ivk_graph_get_context (g));
  /* merge dim i into dim 3 while dims i+1..2 are already merged (size 1) */
  for (int i = 2; i >= 0; i--)
    {
      gboolean ok = TRUE;
      for (int k = 0; k < n_sets && ok; k++)
        if (strides[k][i] != strides[k][3] * it4[3] && it4[i] != 1)
          ok = FALSE;
      if (!ok)
        break;
      it4[3] *= it4[i];
      it4[i] = 1;
      for (int k = 0; k < n_sets; k++)
        strides[k][i] = 0;
    }
  /* a long last dim: split it again so x fits the grid (and y gets work) */
  gint64 maxx = MIN (info->max_workgroup_count[0], 65535);
  if (it4[2] == 1 && (it4[3] / 4 + 7) / 8 > maxx)
    {
      gint64 k = 4 * 8 * 256;
      while (it4[3] % k != 0 && k > 4)
        k /= 2;
      if (it4[3] % k == 0 && k >= 4)
        {
          it4[2] = it4[3] / k;
          it4[3] = k;
          for (int j = 0; j < n_sets; j++)
            strides[j][2] = strides[j][3] * k;
        }
    }
  groups[0] = (guint32) ((it4[3] / 4 + 7) / 8);
  groups[1] = (guint32) it4[2];
  gint64 z = it4[0] * it4[1];
  groups[2] = (guint32) z;
  return it4[3] % 4 == 0 && groups[0] <= maxx && it4[2] <= MIN (info->max_workgroup_count[1], 65535)
         && z <= MIN (info->max_workgroup_count[2], 65535);
}

/* binary_tex.comp operand mode: 1 broadcast along the last dim, 2 vec4
 * texels (every group of 4 starts 4-aligned), else 0 */
static guint32
binary_mode (IvkGraph *g, IvkTensor *t, const guint32 *st)
{
  if (st[3] == 0)
    return 1;
  if (st[0] % 4 == 0 && st[1] % 4 == 0 && st[2] % 4 == 0 && ivk_texel_ok (g, t, 4))
    return 2;
  return 0;
}

static gboolean
simple_dispatch (IvkGraph *g, const char *op, IvkShader shader, IvkTensor **bind, guint n_bind,
                 const void *push, guint push_size, const guint32 *spec, guint n_spec,
                 guint64 n_threads, double flops)
{
  IvkDispatch d = {
    .op = op,
    .shader = shader,
    .spec = spec,
    .n_spec = n_spec,
    .bind = bind,
    .n_bind = n_bind,
    .write_mask = 1u << (n_bind - 1),
    .push = push,
    .push_size = push_size,
    .flops = flops,
  };
  ivk_grid_1d (g, (n_threads + EW_THREADS - 1) / EW_THREADS, d.groups);
  return ivk_graph_add_dispatch (g, &d);
}

IvkTensor *
ivk_unary (IvkGraph *g, IvkTensor *x, IvkUnaryOp op, float alpha, float beta)
{
  if (!ivk_graph_check_tensor (g, x, "unary", "input"))
    return NULL;
  IvkShader shader;
  if (!ivk_tensor_is_contiguous (x))
    {
      ivk_graph_set_error (g, IVK_ERROR, IVK_ERROR_SHAPE, "unary: strided input");
      return NULL;
    }
  if (!ivk_pick_act (g, "unary", x->dtype, &shader))
    return NULL;
  IvkTensor *out = ivk_graph_new_tensor (g, x->dtype, x->ndim, x->shape);
  if (!out)
    return NULL;
  if (x->n_elements % 4 == 0 && ew_tex_ok (g) && ivk_texel_ok (g, x, 4))
    {
      if (!ivk_pick_act (g, "unary_tex", x->dtype, &shader))
        return NULL;
      UnaryPush tp = { .n = x->n_elements / 4, .alpha = alpha, .beta = beta };
      guint32 tspec[3] = { TEX_THREADS, op, TEX_PER };
      IvkTensor *tbind[2] = { x, out };
      IvkDispatch td = {
        .op = "unary",
        .kind = { IVK_BIND_TEXEL4 },
        .shader = shader,
        .spec = tspec,
        .n_spec = 3,
        .bind = tbind,
        .n_bind = 2,
        .write_mask = 2,
        .push = &tp,
        .push_size = sizeof tp,
        .flops = 4.0 * x->n_elements,
      };
      ivk_grid_1d (g, (tp.n + TEX_THREADS * TEX_PER - 1) / (TEX_THREADS * TEX_PER), td.groups);
      return ivk_graph_add_dispatch (g, &td) ? out : NULL;
    }
  const guint32 per_thread = 4;
  UnaryPush push = { .n = x->n_elements, .alpha = alpha, .beta = beta };
  guint32 spec[3] = { EW_THREADS, op, per_thread };
  IvkTensor *bind[2] = { x, out };
  IvkDispatch d = {
    .op = "unary",
    .shader = shader,
    .spec = spec,
    .n_spec = 3,
    .bind = bind,
    .n_bind = 2,
    .write_mask = 2,
    .push = &push,
    .push_size = sizeof push,
    .flops = 4.0 * x->n_elements,
  };
  ivk_grid_1d (g, (x->n_elements + EW_THREADS * per_thread - 1) / (EW_THREADS * per_thread), d.groups);
  if (!ivk_graph_add_dispatch (g, &d))
    return NULL;
  return out;
}

IvkTensor *
ivk_silu (IvkGraph *g, IvkTensor *x)
{
  return ivk_unary (g, x, IVK_UNARY_SILU, 0, 0);
}

IvkTensor *
ivk_gelu (IvkGraph *g, IvkTensor *x)
{
  return ivk_unary (g, x, IVK_UNARY_GELU, 0, 0);
}

IvkTensor *
ivk_quick_gelu (IvkGraph *g, IvkTensor *x)
{
  return ivk_unary (g, x, IVK_UNARY_QUICK_GELU, 0, 0);
}

IvkTensor *
ivk_scale (IvkGraph *g, IvkTensor *x, float alpha, float beta)
{
  return ivk_unary (g, x, IVK_UNARY_SCALE, alpha, beta);
}

IvkTensor *
ivk_binary (IvkGraph *g, IvkTensor *a, IvkTensor *b, IvkBinaryOp op)
{
  if (!ivk_graph_check_tensor (g, a, "binary", "a") || !ivk_graph_check_tensor (g, b, "binary", "b"))
    return NULL;
  if (a->dtype != b->dtype || !ivk_tensor_is_contiguous (a) || !ivk_tensor_is_contiguous (b))
    {
      ivk_graph_set_error (g, IVK_ERROR, IVK_ERROR_SHAPE, "binary: operands %s and %s differ in dtype",
                           ivk_tensor_describe (a), ivk_tensor_describe (b));
      return NULL;
    }
  /* right-align both shapes to 4 dims */
  gint64 sa[4], sb[4], so[4];
  int nd = MAX (a->ndim, b->ndim);
  for (int i = 0; i < 4; i++)
    {
      int ia = i - (4 - a->ndim), ib = i - (4 - b->ndim);
      sa[i] = ia >= 0 ? a->shape[ia] : 1;
      sb[i] = ib >= 0 ? b->shape[ib] : 1;
      if (sa[i] != sb[i] && sa[i] != 1 && sb[i] != 1)
        {
          ivk_graph_set_error (g, IVK_ERROR, IVK_ERROR_SHAPE, "binary: %s and %s do not broadcast",
                               ivk_tensor_describe (a), ivk_tensor_describe (b));
          return NULL;
        }
      so[i] = MAX (sa[i], sb[i]);
    }
  IvkShader shader;
  if (!ivk_pick_act (g, "binary", a->dtype, &shader))
    return NULL;
  IvkTensor *out = ivk_graph_new_tensor (g, a->dtype, nd, so + (4 - nd));
  if (!out)
    return NULL;
  BinaryPush push = { .n = out->n_elements, .shape1 = so[1], .shape2 = so[2], .shape3 = so[3] };
  gint64 stra = 1, strb = 1;
  for (int i = 3; i >= 0; i--)
    {
      push.as[i] = sa[i] == 1 ? 0 : stra;
      push.bs[i] = sb[i] == 1 ? 0 : strb;
      stra *= sa[i];
      strb *= sb[i];
    }
  IvkTensor *bind[3] = { a, b, out };
  /* the texel kernel on a merged 3-D iteration */
  gint64 it[4], ta[4], tb[4], to[4];
  gint64 sto = 1;
  for (int i = 3; i >= 0; i--)
    {
      it[i] = so[i];
      ta[i] = push.as[i];
      tb[i] = push.bs[i];
      to[i] = sto;
      sto *= so[i];
    }
  gint64 *sets[3] = { ta, tb, to };
  guint32 tgroups[3];
  if (ew_tex_ok (g) && ivk_texel_ok (g, a, 1) && ivk_texel_ok (g, b, 1)
      && ivk_grid_tex3d (g, it, sets, 3, tgroups) && ta[3] <= 1 && tb[3] <= 1)
    {
      if (!ivk_pick_act (g, "binary_tex", a->dtype, &shader))
        return NULL;
      BinaryPush tp = { .n = out->n_elements / 4, .shape1 = it[1], .shape2 = it[2], .shape3 = it[3] };
      for (int i = 0; i < 4; i++)
        {
          tp.as[i] = ta[i];
          tp.bs[i] = tb[i];
        }
      guint32 am = binary_mode (g, a, tp.as), bm = binary_mode (g, b, tp.bs);
      guint32 tspec[4] = { TEX_THREADS, op, am, bm };
      IvkDispatch td = {
        .op = "binary",
        .kind = { am == 2 ? IVK_BIND_TEXEL4 : IVK_BIND_TEXEL, bm == 2 ? IVK_BIND_TEXEL4 : IVK_BIND_TEXEL },
        .shader = shader,
        .spec = tspec,
        .n_spec = 4,
        .bind = bind,
        .n_bind = 3,
        .write_mask = 1u << 2,
        .push = &tp,
        .push_size = sizeof tp,
        .flops = out->n_elements,
        .groups = { tgroups[0], tgroups[1], tgroups[2] },
      };
      return ivk_graph_add_dispatch (g, &td) ? out : NULL;
    }
  guint32 spec[2] = { EW_THREADS, op };
  if (!simple_dispatch (g, "binary", shader, bind, 3, &push, sizeof push, spec, 2, out->n_elements,
                        out->n_elements))
    return NULL;
  return out;
}

IvkTensor *
ivk_add (IvkGraph *g, IvkTensor *a, IvkTensor *b)
{
  return ivk_binary (g, a, b, IVK_BINARY_ADD);
}

IvkTensor *
ivk_mul (IvkGraph *g, IvkTensor *a, IvkTensor *b)
{
  return ivk_binary (g, a, b, IVK_BINARY_MUL);
}

IvkTensor *
ivk_geglu (IvkGraph *g, IvkTensor *x)
{
  if (!ivk_graph_check_tensor (g, x, "geglu", "input"))
    return NULL;
  gint64 c2 = x->shape[x->ndim - 1];
  if (c2 % 2 != 0 || !ivk_tensor_is_contiguous (x))
    {
      ivk_graph_set_error (g, IVK_ERROR, IVK_ERROR_SHAPE, "geglu: last dim of %s is odd",
                           ivk_tensor_describe (x));
      return NULL;
    }
  IvkShader shader;
  if (!ivk_pick_act (g, "geglu", x->dtype, &shader))
    return NULL;
  gint64 shape[IVK_MAX_DIMS];
  memcpy (shape, x->shape, sizeof shape);
  shape[x->ndim - 1] = c2 / 2;
  IvkTensor *out = ivk_graph_new_tensor (g, x->dtype, x->ndim, shape);
  if (!out)
    return NULL;
  IvkTensor *bind[2] = { x, out };
  if ((c2 / 2) % 4 == 0 && ew_tex_ok (g) && ivk_texel_ok (g, x, 4))
    {
      if (!ivk_pick_act (g, "geglu_tex", x->dtype, &shader))
        return NULL;
      gint64 rows = out->n_elements / (c2 / 2);
      GegluPush tp = { .n = rows, .f = c2 / 8 };
      guint32 tspec[1] = { TEX_THREADS };
      IvkDispatch td = {
        .op = "geglu",
        .kind = { IVK_BIND_TEXEL4 },
        .shader = shader,
        .spec = tspec,
        .n_spec = 1,
        .bind = bind,
        .n_bind = 2,
        .write_mask = 2,
        .push = &tp,
        .push_size = sizeof tp,
        .flops = 10.0 * out->n_elements,
        .groups = { (guint32) ((tp.f + TEX_THREADS - 1) / TEX_THREADS), (guint32) MIN (rows, 65535),
                    (guint32) ((rows + 65534) / 65535) },
      };
      return ivk_graph_add_dispatch (g, &td) ? out : NULL;
    }
  GegluPush push = { .n = out->n_elements, .f = c2 / 2 };
  guint32 spec[1] = { EW_THREADS };
  if (!simple_dispatch (g, "geglu", shader, bind, 2, &push, sizeof push, spec, 1, out->n_elements,
                        10.0 * out->n_elements))
    return NULL;
  return out;
}

IvkTensor *
ivk_upsample_nearest2x (IvkGraph *g, IvkTensor *x)
{
  if (!ivk_graph_check_tensor (g, x, "upsample", "input"))
    return NULL;
  if (x->ndim != 4 || !ivk_tensor_is_contiguous (x))
    {
      ivk_graph_set_error (g, IVK_ERROR, IVK_ERROR_SHAPE, "upsample: want [N,C,H,W], got %s",
                           ivk_tensor_describe (x));
      return NULL;
    }
  IvkShader shader;
  if (!ivk_pick_act (g, "upsample", x->dtype, &shader))
    return NULL;
  gint64 shape[4] = { x->shape[0], x->shape[1], 2 * x->shape[2], 2 * x->shape[3] };
  IvkTensor *out = ivk_graph_new_tensor (g, x->dtype, 4, shape);
  if (!out)
    return NULL;
  UpsamplePush push = { .n = out->n_elements, .h = x->shape[2], .w = x->shape[3] };
  guint32 spec[1] = { EW_THREADS };
  IvkTensor *bind[2] = { x, out };
  if (!simple_dispatch (g, "upsample", shader, bind, 2, &push, sizeof push, spec, 1, out->n_elements, 0))
    return NULL;
  return out;
}

IvkTensor *
ivk_embedding (IvkGraph *g, IvkTensor *ids, IvkTensor *table, IvkDType dtype)
{
  if (!ivk_graph_check_tensor (g, ids, "embedding", "ids")
      || !ivk_graph_check_tensor (g, table, "embedding", "table"))
    return NULL;
  if (ids->dtype != IVK_I32 || table->ndim != 2)
    {
      ivk_graph_set_error (g, IVK_ERROR, IVK_ERROR_SHAPE, "embedding: ids %s, table %s",
                           ivk_tensor_describe (ids), ivk_tensor_describe (table));
      return NULL;
    }
  IvkShader shader;
  if (!ivk_pick_aw (g, "embedding", dtype, table->dtype, &shader))
    return NULL;
  gint64 shape[2] = { ids->n_elements, table->shape[1] };
  IvkTensor *out = ivk_graph_new_tensor (g, dtype, 2, shape);
  if (!out)
    return NULL;
  EmbeddingPush push = { .n = out->n_elements, .c = table->shape[1], .rows = table->shape[0] };
  guint32 spec[1] = { EW_THREADS };
  IvkTensor *bind[3] = { ids, table, out };
  if (!simple_dispatch (g, "embedding", shader, bind, 3, &push, sizeof push, spec, 1, out->n_elements, 0))
    return NULL;
  return out;
}

IvkTensor *
ivk_timestep_embedding (IvkGraph *g, IvkTensor *t, int dim, gboolean flip_sin_to_cos,
                        float freq_shift, float max_period, IvkDType dtype)
{
  if (!ivk_graph_check_tensor (g, t, "timestep_embedding", "timesteps"))
    return NULL;
  if (t->dtype != IVK_F32 || dim <= 1)
    {
      ivk_graph_set_error (g, IVK_ERROR, IVK_ERROR_SHAPE, "timestep_embedding: want f32 timesteps, got %s",
                           ivk_tensor_describe (t));
      return NULL;
    }
  IvkShader shader;
  if (!ivk_pick_act (g, "timestep_embed", dtype, &shader))
    return NULL;
  gint64 shape[2] = { t->n_elements, dim };
  IvkTensor *out = ivk_graph_new_tensor (g, dtype, 2, shape);
  if (!out)
    return NULL;
  TimestepPush push = {
    .n = out->n_elements, .dim = dim, .flip = flip_sin_to_cos != 0,
    .shift = freq_shift, .log_max_period = logf (max_period),
  };
  guint32 spec[1] = { EW_THREADS };
  IvkTensor *bind[2] = { t, out };
  if (!simple_dispatch (g, "timestep_embedding", shader, bind, 2, &push, sizeof push, spec, 1,
                        out->n_elements, 0))
    return NULL;
  return out;
}

/* ops-matmul.c: GEMM and Linear, plus helpers shared by the op wrappers. */
#include "config.h"

#include <string.h>

#include "ops-common.h"

IvkShader
ivk_shader_lookup (const char *name)
{
  static GHashTable *index;
  static GMutex lock;
  g_mutex_lock (&lock);
  if (!index)
    {
      index = g_hash_table_new (g_str_hash, g_str_equal);
      for (int i = 0; i < IVK_SHADER_COUNT; i++)
        g_hash_table_insert (index, (gpointer) ivk_shader_table[i].name, GINT_TO_POINTER (i + 1));
    }
  int v = GPOINTER_TO_INT (g_hash_table_lookup (index, name));
  g_mutex_unlock (&lock);
  if (v == 0)
    g_error ("shader variant '%s' is not built (see shaders/meson.build)", name);
  return (IvkShader) (v - 1);
}

gboolean
ivk_is_float (IvkDType d)
{
  return d == IVK_F32 || d == IVK_F16;
}

gboolean
ivk_pick_aw (IvkGraph *g, const char *op, IvkDType act, IvkDType w, IvkShader *shader)
{
  const char *v;
  if (act == IVK_F32 && w == IVK_F32)
    v = "a32_w32";
  else if (act == IVK_F16 && w == IVK_F16)
    v = "a16_w16";
  else if (act == IVK_F32 && w == IVK_F16)
    v = "a32_w16";
  else
    {
      ivk_graph_set_error (g, IVK_ERROR, IVK_ERROR_SHAPE,
                           "%s: no variant for %s activations with %s weights", op,
                           ivk_dtype_name (act), ivk_dtype_name (w));
      return FALSE;
    }
  char name[64];
  g_snprintf (name, sizeof name, "%s_%s", op, v);
  *shader = ivk_shader_lookup (name);
  return TRUE;
}

gboolean
ivk_pick_act (IvkGraph *g, const char *op, IvkDType act, IvkShader *shader)
{
  if (!ivk_is_float (act))
    {
      ivk_graph_set_error (g, IVK_ERROR, IVK_ERROR_SHAPE, "%s: needs a float tensor, got %s", op,
                           ivk_dtype_name (act));
      return FALSE;
    }
  char name[64];
  g_snprintf (name, sizeof name, "%s_%s", op, ivk_dtype_name (act));
  *shader = ivk_shader_lookup (name);
  return TRUE;
}

gboolean
ivk_same_shape (const IvkTensor *a, const IvkTensor *b)
{
  if (a->n_elements != b->n_elements || a->ndim != b->ndim)
    return FALSE;
  for (int i = 0; i < a->ndim; i++)
    if (a->shape[i] != b->shape[i])
      return FALSE;
  return TRUE;
}

static guint32
block_for (gint64 extent, guint32 threads)
{
  /* the smallest register block that lets one workgroup cover the extent, capped */
  if (extent >= (gint64) threads * 16)
    return 16;
  if (extent >= (gint64) threads * 8)
    return 8;
  if (extent >= (gint64) threads * 4)
    return 4;
  if (extent >= (gint64) threads * 2)
    return 2;
  return 1;
}

void
ivk_gemm_tiles (IvkGraph *g, gint64 m, gint64 n, guint32 *wx, guint32 *wy, guint32 *tm,
                guint32 *tn)
{
  const IvkDeviceInfo *info = ivk_context_get_info (ivk_graph_get_context (g));
  if (info->is_cpu)
    {
      /* lavapipe: one workgroup runs on one CPU thread as SIMD lanes; big
       * per-invocation register blocks without shared memory are fastest
       * (measured 2 vs 19 GFLOP/s, notes/toolchain.md). */
      *wx = 8;
      *wy = 8;
      *tm = MIN (block_for (m, 8), 8);
      *tn = MIN (block_for (n, 8), 16);
      if (*tm < 4)
        *tm = MAX (*tm, 1);
    }
  else
    {
      *wx = 16;
      *wy = 16;
      *tm = MIN (block_for (m, 16), 4);
      *tn = MIN (block_for (n, 16), 4);
    }
}

/* matmul push constants: mirrors shaders/matmul.comp */
typedef struct
{
  guint32 off[IVK_MAX_BINDINGS];
  guint32 m, n, k;
  guint32 as_b, as_m, as_k;
  guint32 bs_b, bs_k, bs_n;
  float alpha;
} MatmulPush;
G_STATIC_ASSERT (sizeof (MatmulPush) <= IVK_PUSH_MAX);

IvkTensor *
ivk_matmul (IvkGraph *g, IvkTensor *a, IvkTensor *b, IvkTensor *bias, IvkTensor *residual,
            float alpha, IvkMatmulFlags flags)
{
  if (!ivk_graph_check_tensor (g, a, "matmul", "a") || !ivk_graph_check_tensor (g, b, "matmul", "b"))
    return NULL;
  if (a->ndim < 2 || b->ndim < 2 || b->ndim > 3 || !ivk_tensor_is_contiguous (a)
      || !ivk_tensor_is_contiguous (b))
    {
      ivk_graph_set_error (g, IVK_ERROR, IVK_ERROR_SHAPE, "matmul: bad operands %s and %s",
                           ivk_tensor_describe (a), ivk_tensor_describe (b));
      return NULL;
    }
  gboolean tb = (flags & IVK_MATMUL_TRANS_B) != 0;
  gint64 m = a->shape[a->ndim - 2];
  gint64 k = a->shape[a->ndim - 1];
  gint64 batch = a->n_elements / (m * k);
  gint64 bk = tb ? b->shape[b->ndim - 1] : b->shape[b->ndim - 2];
  gint64 n = tb ? b->shape[b->ndim - 2] : b->shape[b->ndim - 1];
  gint64 bbatch = b->ndim == 3 ? b->shape[0] : 1;
  if (bk != k || (bbatch != 1 && bbatch != batch))
    {
      ivk_graph_set_error (g, IVK_ERROR, IVK_ERROR_SHAPE,
                           "matmul: inner dimensions differ: a %s, b %s%s", ivk_tensor_describe (a),
                           ivk_tensor_describe (b), tb ? " (transposed)" : "");
      return NULL;
    }
  if (bias && (bias->n_elements != n || bias->dtype != b->dtype))
    {
      ivk_graph_set_error (g, IVK_ERROR, IVK_ERROR_SHAPE, "matmul: bias %s does not match N=%" G_GINT64_FORMAT,
                           ivk_tensor_describe (bias), n);
      return NULL;
    }
  if (batch > 65535 || m > G_MAXUINT32 / 2 || n > G_MAXUINT32 / 2 || k > G_MAXUINT32 / 2)
    {
      ivk_graph_set_error (g, IVK_ERROR, IVK_ERROR_LIMIT, "matmul: sizes too large");
      return NULL;
    }
  IvkShader shader;
  if (!ivk_pick_aw (g, "matmul", a->dtype, b->dtype, &shader))
    return NULL;
  gint64 shape[IVK_MAX_DIMS];
  memcpy (shape, a->shape, sizeof shape);
  shape[a->ndim - 1] = n;
  IvkTensor *out = ivk_graph_new_tensor (g, a->dtype, a->ndim, shape);
  if (!out)
    return NULL;
  if (residual && (!ivk_same_shape (residual, out) || residual->dtype != out->dtype))
    {
      ivk_graph_set_error (g, IVK_ERROR, IVK_ERROR_SHAPE, "matmul: residual %s does not match output",
                           ivk_tensor_describe (residual));
      return NULL;
    }
  MatmulPush push = {
    .m = m, .n = n, .k = k,
    .as_b = m * k, .as_m = k, .as_k = 1,
    .bs_b = bbatch > 1 ? k * n : 0,
    .bs_k = tb ? 1 : n,
    .bs_n = tb ? k : 1,
    .alpha = alpha,
  };
  guint32 wx, wy, tm, tn;
  ivk_gemm_tiles (g, m, n, &wx, &wy, &tm, &tn);
  guint32 spec[6] = { wx, wy, tm, tn, bias != NULL, residual != NULL };
  IvkTensor *bind[5] = { a, b, bias ? bias : b, residual ? residual : a, out };
  IvkDispatch d = {
    .op = "matmul",
    .shader = shader,
    .spec = spec,
    .n_spec = 6,
    .bind = bind,
    .n_bind = 5,
    .write_mask = 1u << 4,
    .push = &push,
    .push_size = sizeof push,
    .groups = { (guint32) ((n + wx * tn - 1) / (wx * tn)), (guint32) ((m + wy * tm - 1) / (wy * tm)),
                (guint32) batch },
    .flops = 2.0 * batch * m * n * k,
  };
  if (!ivk_graph_add_dispatch (g, &d))
    return NULL;
  return out;
}

IvkTensor *
ivk_linear (IvkGraph *g, IvkTensor *x, IvkTensor *w, IvkTensor *bias)
{
  return ivk_matmul (g, x, w, bias, NULL, 1.0f, IVK_MATMUL_TRANS_B);
}

/* ops-matmul.c: GEMM and Linear, plus helpers shared by the op wrappers. */
#include "config.h"

#include <stdio.h>
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
ivk_fast_path (const char *name)
{
  const char *env = g_getenv ("IMPASTO_DISABLE");
  if (!env || !*env)
    return TRUE;
  g_auto (GStrv) parts = g_strsplit (env, ",", -1);
  for (char **p = parts; *p; p++)
    {
      g_strstrip (*p);
      if (strcmp (*p, name) == 0 || strcmp (*p, "all") == 0)
        return FALSE;
    }
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

gboolean
ivk_gemm_tiles_override (guint32 *wx, guint32 *wy, guint32 *tm, guint32 *tn)
{
  const char *env = g_getenv ("IMPASTO_GEMM_TILES");
  guint v[4];
  if (!env || sscanf (env, "%u,%u,%u,%u", &v[0], &v[1], &v[2], &v[3]) != 4 || v[0] == 0
      || v[1] == 0 || v[0] * v[1] > 1024 || v[2] == 0 || v[2] > 32 || v[3] == 0 || v[3] > 32)
    return FALSE;
  *wx = v[0];
  *wy = v[1];
  *tm = v[2];
  *tn = v[3];
  return TRUE;
}

gboolean
ivk_texel_ok (IvkGraph *g, const IvkTensor *t, guint per_texel)
{
  const IvkDeviceInfo *info = ivk_context_get_info (ivk_graph_get_context (g));
  if (!info->texel_buffers || !ivk_is_float (t->dtype)
      || (!ivk_tensor_is_contiguous (t) && t->row_stride % per_texel != 0))
    return FALSE;
  guint64 off = 0;
  for (const IvkTensor *v = t; v->base; v = v->base)
    off += v->view_offset;
  gsize es = ivk_dtype_size (t->dtype);
  return off % (per_texel * es) == 0
         && ivk_tensor_span_bytes (t) / (per_texel * es) <= info->max_texel_elements;
}

void
ivk_gemm_tiles (IvkGraph *g, gint64 m, gint64 n, guint32 *wx, guint32 *wy, guint32 *tm,
                guint32 *tn)
{
  const IvkDeviceInfo *info = ivk_context_get_info (ivk_graph_get_context (g));
  if (ivk_gemm_tiles_override (wx, wy, tm, tn))
    return;
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

/* lavapipe GEMM measurements (impasto bench ops, best of 2 rounds of
 * median-of-3, 2 shared vCPUs that ran ~4x slower than when
 * notes/toolchain.md measured 19 GFLOP/s for its best kernel, here ssbo 16x32):
 *
 *   kernel (block rows x cols, workgroup)   4096x320x320 (q/k/v)   1024^3 (B^T)
 *   matmul.comp SSBO 8x8, wg 8x8                  2.5                  1.9
 *   matmul.comp SSBO 16x16                        3.8                  3.7
 *   matmul.comp SSBO 16x32 (the notes' best)      3.0                  4.1
 *   matmul_tex.comp 4x4                           7.9                  3.8
 *   matmul_tex.comp 8x8                          13.1                  6.4
 *   matmul_tex.comp 8x8, wg 8x1 / 16x4        13.1 / 11.1          6.3 / 5.9
 *   matmul_tex.comp 8x16                         12.3                  5.9
 *   matmul_tex.comp 16x8                         15.1                  8.8
 *   matmul_tex.comp 12x8                         15.5                  9.0
 *
 * Why: SSBO loads compile to a loop over the 8 SIMD lanes with an exec-mask
 * and a bounds-check branch per element (~120 x86 instructions per load
 * instruction, seen in the JIT code from Mesa's disk cache), so only the
 * FMA/load ratio mattered and big blocks spilled. A vec4 texel fetch is a
 * call to a ~40-instruction routine of vector loads and shuffles returning 32
 * values. 1024^3 is slower than the SD shapes because 4 KiB row strides make
 * the 96 concurrently read rows collide in the same L1 sets. First-dispatch
 * (JIT) cost with a cold cache: 8x8 0.6-0.8 s, 12x8 0.8-1.2 s, SSBO 16x16
 * 2.8-3.0 s, SSBO 16x32 7-9.6 s. fp16 storage (RGBA16F views) runs at
 * 0.7-0.9x the f32 speed (conversion in the fetch). */

/* Register block of matmul_tex.comp along one axis: 8 unless the extent is
 * small, where idle duplicate rows would waste the work. */
static guint32
tex_block (gint64 extent, guint32 threads)
{
  for (guint32 t = 8; t > 1; t /= 2)
    if (extent >= (gint64) threads * t)
      return t;
  return 1;
}

/* Rows per invocation of matmul_tex.comp with 8x1 workgroups. CPU ms per
 * dispatch (impasto bench ops, f16; CPU time because the machine is shared):
 *
 *   rows x cols, workgroup      4096x320x320   1024^3 (B^T)
 *   12 x 8, 8x8 (before)            35.7          109.6
 *   12 x 8, 8x1                     34.6           96.6
 *   16 x 16, 8x1                    33.0           77.1
 *   24 x 8, 8x1                     31.3           79.2
 *   32 x 8, 8x1                     30.4           73.7
 *   40 x 8 / 48 x 8, 8x1         36.3 / 35.9   101.1 / 100.9
 *
 * Of 32, 24, 16, 8, ... the one with the least time for M rows: rows
 * rounded up to the block, over the block's relative speed (smaller blocks
 * fetch more per FMA; 2x77x768 -> 2560: 16 rows 24.5 ms, 2 rows 93 ms). */
static guint32
tex_rows (gint64 m)
{
  static const guint32 cand[] = { 32, 24, 16, 8, 4, 2, 1 };
  static const double speed[] = { 1.0, 0.95, 0.9, 0.7, 0.5, 0.3, 0.2 };
  guint32 best = 1;
  double best_cost = G_MAXDOUBLE;
  for (guint i = 0; i < G_N_ELEMENTS (cand); i++)
    {
      double cost = (double) ((m + cand[i] - 1) / cand[i] * cand[i]) / speed[i];
      if (cost < best_cost)
        {
          best = cand[i];
          best_cost = cost;
        }
    }
  return best;
}

/* matmul push constants: mirrors shaders/matmul.comp and matmul_tex.comp */
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
  /* CPU devices with B as [N, K]: vec4 texel loads along K (matmul_tex.comp) */
  const IvkDeviceInfo *info = ivk_context_get_info (ivk_graph_get_context (g));
  gboolean tex = info->is_cpu && tb && k % 4 == 0 && ivk_texel_ok (g, a, 4) && ivk_texel_ok (g, b, 4);
  if (tex)
    {
      if (!ivk_pick_aw (g, "matmul_tex", a->dtype, b->dtype, &shader))
        return NULL;
      if (!ivk_gemm_tiles_override (&wx, &wy, &tm, &tn))
        {
          /* 32 rows x 8 columns per invocation, workgroups of 8 invocations
           * along the columns (llvmpipe's SIMD lanes run along x) sharing
           * their rows: see tex_rows() for the measurements */
          wx = 8;
          wy = 1;
          tm = tex_rows (m);
          tn = tex_block (n, wx);
        }
    }
  else
    ivk_gemm_tiles (g, m, n, &wx, &wy, &tm, &tn);
  guint32 spec[6] = { wx, wy, tm, tn, bias != NULL, residual != NULL };
  IvkTensor *bind[5] = { a, b, bias ? bias : b, residual ? residual : a, out };
  IvkDispatch d = {
    .op = "matmul",
    .kind = { tex ? IVK_BIND_TEXEL4 : IVK_BIND_STORAGE, tex ? IVK_BIND_TEXEL4 : IVK_BIND_STORAGE },
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

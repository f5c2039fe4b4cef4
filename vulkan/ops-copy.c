/* ops-copy.c: data movement through one strided 4-D copy kernel: copy, cast,
 * permute, concat, slice; and zero-copy column views. */
#include "config.h"

#include <string.h>

#include "ops-common.h"

typedef struct
{
  guint32 off[IVK_MAX_BINDINGS];
  guint32 n;
  guint32 shape1, shape2, shape3;
  guint32 ss[4];
  guint32 ds[4];
  guint32 sbase, dbase;
} CopyPush;
G_STATIC_ASSERT (sizeof (CopyPush) <= IVK_PUSH_MAX);

#define COPY_THREADS 64

/* Element strides of a contiguous shape right-aligned to 4 dims. */
static void
strides4 (const gint64 *shape4, gint64 *str)
{
  gint64 s = 1;
  for (int i = 3; i >= 0; i--)
    {
      str[i] = s;
      s *= shape4[i];
    }
}

static void
shape4_of (const IvkTensor *t, gint64 *s4)
{
  for (int i = 0; i < 4; i++)
    {
      int j = i - (4 - t->ndim);
      s4[i] = j >= 0 ? t->shape[j] : 1;
    }
}

/* dst[dbase + sum i_k*ds_k] = src[sbase + sum i_k*ss_k] over the iteration shape it4 */
static gboolean
strided_copy (IvkGraph *g, const char *op, IvkTensor *src, IvkTensor *dst, const gint64 *it4,
              const gint64 *ss, const gint64 *ds, gint64 sbase, gint64 dbase)
{
  char name[32];
  g_snprintf (name, sizeof name, "copy_%s_%s", ivk_dtype_name (src->dtype), ivk_dtype_name (dst->dtype));
  if ((src->dtype == IVK_I32) != (dst->dtype == IVK_I32))
    {
      ivk_graph_set_error (g, IVK_ERROR, IVK_ERROR_SHAPE, "%s: cannot convert %s to %s", op,
                           ivk_dtype_name (src->dtype), ivk_dtype_name (dst->dtype));
      return FALSE;
    }
  gint64 n = it4[0] * it4[1] * it4[2] * it4[3];
  CopyPush push = {
    .n = n, .shape1 = it4[1], .shape2 = it4[2], .shape3 = it4[3],
    .sbase = sbase, .dbase = dbase,
  };
  for (int i = 0; i < 4; i++)
    {
      push.ss[i] = it4[i] == 1 ? 0 : ss[i];
      push.ds[i] = it4[i] == 1 ? 0 : ds[i];
    }
  guint32 spec[1] = { COPY_THREADS };
  IvkTensor *bind[2] = { src, dst };
  /* CPU devices: texel loads, vec4 stores (copy_tex.comp) when the
   * destination runs in aligned groups of 4 (IMPASTO_DISABLE=copy_tex) */
  const IvkDeviceInfo *info = ivk_context_get_info (ivk_graph_get_context (g));
  /* not for f32 -> f16 casts: llvmpipe's vector conversion flushes f16
   * subnormals to zero where the scalar one rounds them (the cast test) */
  gint64 t4[4], ts[4], td4[4];
  for (int i = 0; i < 4; i++)
    {
      t4[i] = it4[i];
      ts[i] = it4[i] == 1 ? 0 : ss[i];
      td4[i] = it4[i] == 1 ? 0 : ds[i];
    }
  if (it4[3] == 1)
    td4[3] = 1;
  gint64 *sets[2] = { ts, td4 };
  guint32 tgroups[3];
  if (info->is_cpu && src->dtype != IVK_I32 && !(src->dtype == IVK_F32 && dst->dtype == IVK_F16)
      && ivk_texel_ok (g, src, 1) && ivk_texel_ok (g, dst, 4) && ivk_fast_path ("copy_tex")
      && ivk_grid_tex3d (g, t4, sets, 2, tgroups) && td4[3] == 1 && td4[0] % 4 == 0
      && td4[1] % 4 == 0 && td4[2] % 4 == 0 && dbase % 4 == 0)
    {
      push.n = n / 4;
      push.shape1 = t4[1];
      push.shape2 = t4[2];
      push.shape3 = t4[3];
      for (int i = 0; i < 4; i++)
        {
          push.ss[i] = ts[i];
          push.ds[i] = td4[i];
        }
      gboolean vec = ts[3] == 1 && ts[0] % 4 == 0 && ts[1] % 4 == 0 && ts[2] % 4 == 0
                     && sbase % 4 == 0 && ivk_texel_ok (g, src, 4);
      guint32 tspec[2] = { 8, vec };
      IvkDispatch td = {
        .op = op,
        .kind = { vec ? IVK_BIND_TEXEL4 : IVK_BIND_TEXEL },
        .shader = ivk_shader_lookup (dst->dtype == IVK_F16 ? "copy_tex_f16" : "copy_tex_f32"),
        .spec = tspec,
        .n_spec = 2,
        .bind = bind,
        .n_bind = 2,
        .write_mask = 2,
        .push = &push,
        .push_size = sizeof push,
        .groups = { tgroups[0], tgroups[1], tgroups[2] },
      };
      return ivk_graph_add_dispatch (g, &td);
    }
  IvkDispatch d = {
    .op = op,
    .shader = ivk_shader_lookup (name),
    .spec = spec,
    .n_spec = 1,
    .bind = bind,
    .n_bind = 2,
    .write_mask = 2,
    .push = &push,
    .push_size = sizeof push,
  };
  ivk_grid_1d (g, (n + COPY_THREADS - 1) / COPY_THREADS, d.groups);
  return ivk_graph_add_dispatch (g, &d);
}

/* iteration shape and source strides for reading all of x (contiguous or a column view) */
static void
source_layout (const IvkTensor *x, gint64 *it4, gint64 *ss)
{
  shape4_of (x, it4);
  strides4 (it4, ss);
  if (!ivk_tensor_is_contiguous (x))
    {
      gint64 cols = x->shape[x->ndim - 1];
      it4[0] = 1;
      it4[1] = 1;
      it4[2] = x->n_elements / cols;
      it4[3] = cols;
      ss[2] = x->row_stride;
      ss[3] = 1;
    }
}

IvkTensor *
ivk_cast (IvkGraph *g, IvkTensor *x, IvkDType dtype)
{
  if (!ivk_graph_check_tensor (g, x, "cast", "input"))
    return NULL;
  IvkTensor *out = ivk_graph_new_tensor (g, dtype, x->ndim, x->shape);
  if (!out)
    return NULL;
  gint64 it4[4], ss[4], ds[4];
  source_layout (x, it4, ss);
  strides4 (it4, ds);
  if (!strided_copy (g, "copy", x, out, it4, ss, ds, 0, 0))
    return NULL;
  return out;
}

IvkTensor *
ivk_copy (IvkGraph *g, IvkTensor *x)
{
  if (!ivk_graph_check_tensor (g, x, "copy", "input"))
    return NULL;
  return ivk_cast (g, x, x->dtype);
}

IvkTensor *
ivk_permute (IvkGraph *g, IvkTensor *x, const int *perm)
{
  if (!ivk_graph_check_tensor (g, x, "permute", "input"))
    return NULL;
  guint seen = 0;
  for (int i = 0; i < x->ndim; i++)
    {
      if (perm[i] < 0 || perm[i] >= x->ndim || (seen & (1u << perm[i])))
        {
          ivk_graph_set_error (g, IVK_ERROR, IVK_ERROR_SHAPE, "permute: invalid permutation of %s",
                               ivk_tensor_describe (x));
          return NULL;
        }
      seen |= 1u << perm[i];
    }
  if (!ivk_tensor_is_contiguous (x))
    {
      ivk_graph_set_error (g, IVK_ERROR, IVK_ERROR_SHAPE, "permute: strided input");
      return NULL;
    }
  gint64 xs[IVK_MAX_DIMS], shape[IVK_MAX_DIMS];
  gint64 s = 1;
  for (int i = x->ndim - 1; i >= 0; i--)
    {
      xs[i] = s;
      s *= x->shape[i];
    }
  for (int i = 0; i < x->ndim; i++)
    shape[i] = x->shape[perm[i]];
  IvkTensor *out = ivk_graph_new_tensor (g, x->dtype, x->ndim, shape);
  if (!out)
    return NULL;
  gint64 it4[4], ss[4] = { 0, 0, 0, 0 }, ds[4];
  shape4_of (out, it4);
  strides4 (it4, ds);
  for (int i = 0; i < x->ndim; i++)
    ss[i + 4 - x->ndim] = xs[perm[i]];
  if (!strided_copy (g, "permute", x, out, it4, ss, ds, 0, 0))
    return NULL;
  return out;
}

IvkTensor *
ivk_concat (IvkGraph *g, IvkTensor *a, IvkTensor *b, int axis)
{
  if (!ivk_graph_check_tensor (g, a, "concat", "a") || !ivk_graph_check_tensor (g, b, "concat", "b"))
    return NULL;
  gboolean ok = a->ndim == b->ndim && axis >= 0 && axis < a->ndim && a->dtype == b->dtype
                && ivk_tensor_is_contiguous (a) && ivk_tensor_is_contiguous (b);
  for (int i = 0; ok && i < a->ndim; i++)
    if (i != axis && a->shape[i] != b->shape[i])
      ok = FALSE;
  if (!ok)
    {
      ivk_graph_set_error (g, IVK_ERROR, IVK_ERROR_SHAPE, "concat: %s and %s along axis %d",
                           ivk_tensor_describe (a), ivk_tensor_describe (b), axis);
      return NULL;
    }
  gint64 shape[IVK_MAX_DIMS];
  memcpy (shape, a->shape, sizeof shape);
  shape[axis] = a->shape[axis] + b->shape[axis];
  IvkTensor *out = ivk_graph_new_tensor (g, a->dtype, a->ndim, shape);
  if (!out)
    return NULL;
  gint64 o4[4], ds[4];
  shape4_of (out, o4);
  strides4 (o4, ds);
  int ax4 = axis + 4 - a->ndim;
  for (int part = 0; part < 2; part++)
    {
      IvkTensor *src = part ? b : a;
      gint64 it4[4], ss[4];
      shape4_of (src, it4);
      strides4 (it4, ss);
      gint64 dbase = part ? a->shape[axis] * ds[ax4] : 0;
      if (!strided_copy (g, "concat", src, out, it4, ss, ds, 0, dbase))
        return NULL;
    }
  return out;
}

IvkTensor *
ivk_slice (IvkGraph *g, IvkTensor *x, int axis, gint64 start, gint64 len)
{
  if (!ivk_graph_check_tensor (g, x, "slice", "input"))
    return NULL;
  if (axis < 0 || axis >= x->ndim || start < 0 || len <= 0 || start + len > x->shape[axis]
      || !ivk_tensor_is_contiguous (x))
    {
      ivk_graph_set_error (g, IVK_ERROR, IVK_ERROR_SHAPE,
                           "slice: [%" G_GINT64_FORMAT ":+%" G_GINT64_FORMAT "] of axis %d of %s",
                           start, len, axis, ivk_tensor_describe (x));
      return NULL;
    }
  gint64 shape[IVK_MAX_DIMS];
  memcpy (shape, x->shape, sizeof shape);
  shape[axis] = len;
  IvkTensor *out = ivk_graph_new_tensor (g, x->dtype, x->ndim, shape);
  if (!out)
    return NULL;
  gint64 x4[4], xs[4], it4[4], ds[4];
  shape4_of (x, x4);
  strides4 (x4, xs);
  shape4_of (out, it4);
  strides4 (it4, ds);
  int ax4 = axis + 4 - x->ndim;
  if (!strided_copy (g, "slice", x, out, it4, xs, ds, start * xs[ax4], 0))
    return NULL;
  return out;
}

IvkTensor *
ivk_slice_columns (IvkGraph *g, IvkTensor *x, gint64 start, gint64 len)
{
  if (!ivk_graph_check_tensor (g, x, "slice_columns", "input"))
    return NULL;
  gint64 cols = x->shape[x->ndim - 1];
  if (start < 0 || len <= 0 || start + len > cols)
    {
      ivk_graph_set_error (g, IVK_ERROR, IVK_ERROR_SHAPE, "slice_columns: [%" G_GINT64_FORMAT ":+%" G_GINT64_FORMAT "] of %s",
                           start, len, ivk_tensor_describe (x));
      return NULL;
    }
  gint64 shape[IVK_MAX_DIMS];
  memcpy (shape, x->shape, sizeof shape);
  shape[x->ndim - 1] = len;
  gint64 rs = x->row_stride ? x->row_stride : cols;
  return ivk_graph_new_view (g, x, start * ivk_dtype_size (x->dtype), x->ndim, shape, rs == len ? 0 : rs);
}

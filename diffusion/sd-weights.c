/* sd-weights.c: upload-on-first-use cache of a component's weights. */
#include "config.h"

#include <stdarg.h>
#include <string.h>

#include "ivk-half.h"
#include "sd-error.h"
#include "sd-weights.h"

struct _SdWeights
{
  IvkContext *ctx;       /* owned ref */
  SdModel *model;        /* borrowed: must outlive the weights */
  char *prefix;
  IvkDType dtype;
  IvkWeightStore *store; /* owned */
  GHashTable *cache;     /* key -> IvkTensor* (owned by store) */
  gboolean is_virtual;
};

void
sd_weights_set_virtual (SdWeights *w, gboolean is_virtual)
{
  w->is_virtual = is_virtual;
}

SdWeights *
sd_weights_new (IvkContext *ctx, SdModel *model, const char *prefix, IvkDType dtype)
{
  SdWeights *w = g_new0 (SdWeights, 1);
  w->ctx = ivk_context_ref (ctx);
  w->model = model;
  w->prefix = g_strdup (prefix);
  w->dtype = dtype;
  w->store = ivk_weight_store_new (ctx);
  w->cache = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  return w;
}

void
sd_weights_free (SdWeights *w)
{
  if (!w)
    return;
  g_hash_table_destroy (w->cache);
  ivk_weight_store_free (w->store);
  ivk_context_unref (w->ctx);
  g_free (w->prefix);
  g_free (w);
}

IvkDType
sd_weights_get_dtype (SdWeights *w)
{
  return w->dtype;
}

SdModel *
sd_weights_get_model (SdWeights *w)
{
  return w->model;
}

guint64
sd_weights_get_bytes (SdWeights *w)
{
  return ivk_weight_store_get_bytes (w->store);
}

gboolean
sd_weights_has (SdWeights *w, const char *name)
{
  g_autofree char *full = g_strconcat (w->prefix, name, NULL);
  return sd_model_lookup (w->model, full) != NULL;
}

/* Read `full` in `dtype` into a new host buffer. */
static gpointer
read_as (SdWeights *w, const char *full, const SdTensorInfo *info, IvkDType dtype, GError **error)
{
  gsize n = (gsize) info->n_elements;
  if (dtype == IVK_F16)
    {
      guint16 *buf = g_try_new (guint16, MAX (n, 1));
      if (!buf)
        goto oom;
      if (!sd_model_read_f16 (w->model, full, buf, n, error))
        {
          g_free (buf);
          return NULL;
        }
      return buf;
    }
  float *buf = g_try_new (float, MAX (n, 1));
  if (!buf)
    goto oom;
  if (!sd_model_read_f32 (w->model, full, buf, n, error))
    {
      g_free (buf);
      return NULL;
    }
  return buf;
oom:
  g_set_error (error, SD_ERROR, SD_ERROR_OUT_OF_MEMORY, "out of host memory reading %s", full);
  return NULL;
}

static IvkTensor *
upload (SdWeights *w, const char *key, IvkDType dtype, int ndim, const gint64 *shape, gpointer data,
        GError **error)
{
  /* collapse leading dims beyond what the runtime holds (never needed by SD) */
  gint64 s4[IVK_MAX_DIMS];
  int nd = MIN (ndim, IVK_MAX_DIMS);
  for (int i = 0; i < nd; i++)
    s4[i] = shape[i];
  if (ndim == 0)
    {
      nd = 1;
      s4[0] = 1;
    }
  IvkTensor *t = ivk_weight_store_add (w->store, key, dtype, nd, s4, data, error);
  if (t)
    g_hash_table_insert (w->cache, g_strdup (key), t);
  return t;
}

static void
fail (IvkGraph *g, GError *error)
{
  if (g)
    ivk_graph_set_error (g, error->domain, error->code, "%s", error->message);
  g_error_free (error);
}

IvkTensor *
sd_weights_get_as (SdWeights *w, IvkGraph *g, const char *name, IvkDType dtype)
{
  if (g && ivk_graph_failed (g))
    return NULL;
  g_autofree char *key = g_strdup_printf ("%s%s@%s", w->prefix, name, ivk_dtype_name (dtype));
  IvkTensor *t = g_hash_table_lookup (w->cache, key);
  if (t)
    return t;
  g_autofree char *full = g_strconcat (w->prefix, name, NULL);
  const SdTensorInfo *info = sd_model_lookup (w->model, full);
  GError *error = NULL;
  if (!info)
    {
      fail (g, g_error_new (SD_ERROR, SD_ERROR_MISSING, "the model has no tensor %s", full));
      return NULL;
    }
  if (info->ndim > IVK_MAX_DIMS)
    {
      fail (g, g_error_new (SD_ERROR, SD_ERROR_UNSUPPORTED, "tensor %s has %d dimensions", full,
                            info->ndim));
      return NULL;
    }
  if (w->is_virtual)
    {
      int nd = info->ndim ? info->ndim : 1;
      gint64 one = 1;
      t = ivk_weight_store_add_virtual (w->store, key, dtype, nd, info->ndim ? info->shape : &one);
      g_hash_table_insert (w->cache, g_strdup (key), t);
      return t;
    }
  g_autofree gpointer data = read_as (w, full, info, dtype, &error);
  if (!data)
    {
      fail (g, error);
      return NULL;
    }
  t = upload (w, key, dtype, info->ndim, info->shape, data, &error);
  if (!t)
    fail (g, error);
  return t;
}

IvkTensor *
sd_weights_get (SdWeights *w, IvkGraph *g, const char *name)
{
  return sd_weights_get_as (w, g, name, w->dtype);
}

IvkTensor *
sd_weights_getf (SdWeights *w, IvkGraph *g, const char *format, ...)
{
  va_list ap;
  va_start (ap, format);
  g_autofree char *name = g_strdup_vprintf (format, ap);
  va_end (ap);
  return sd_weights_get (w, g, name);
}

IvkTensor *
sd_weights_get_stacked (SdWeights *w, IvkGraph *g, const char *const *names, guint n)
{
  if (g && ivk_graph_failed (g))
    return NULL;
  GString *key = g_string_new (w->prefix);
  for (guint i = 0; i < n; i++)
    g_string_append_printf (key, "%s%s", i ? "+" : "", names[i]);
  g_string_append_printf (key, "@%s", ivk_dtype_name (w->dtype));
  IvkTensor *t = g_hash_table_lookup (w->cache, key->str);
  if (t)
    {
      g_string_free (key, TRUE);
      return t;
    }
  const gsize esize = ivk_dtype_size (w->dtype);
  gint64 shape[8] = { 0 };
  int ndim = 0;
  gint64 total = 0, row = 0;
  GError *error = NULL;
  for (guint i = 0; i < n; i++)
    {
      g_autofree char *full = g_strconcat (w->prefix, names[i], NULL);
      const SdTensorInfo *info = sd_model_lookup (w->model, full);
      if (!info)
        {
          fail (g, g_error_new (SD_ERROR, SD_ERROR_MISSING, "the model has no tensor %s", full));
          g_string_free (key, TRUE);
          return NULL;
        }
      gint64 r = info->n_elements / (info->ndim ? info->shape[0] : 1);
      if (i == 0)
        {
          ndim = info->ndim;
          memcpy (shape, info->shape, sizeof shape);
          row = r;
          shape[0] = 0;
        }
      else if (info->ndim != ndim || r != row)
        {
          fail (g, g_error_new (SD_ERROR, SD_ERROR_CORRUPT, "cannot stack %s with %s: shapes differ",
                                full, names[0]));
          g_string_free (key, TRUE);
          return NULL;
        }
      shape[0] += info->ndim ? info->shape[0] : 1;
      total += info->n_elements;
    }
  if (w->is_virtual)
    {
      t = ivk_weight_store_add_virtual (w->store, key->str, w->dtype, MAX (ndim, 1), shape);
      g_hash_table_insert (w->cache, g_string_free (key, FALSE), t);
      return t;
    }
  guint8 *data = g_try_malloc (MAX (total * esize, 1));
  if (!data)
    {
      fail (g, g_error_new (SD_ERROR, SD_ERROR_OUT_OF_MEMORY, "out of host memory stacking weights"));
      g_string_free (key, TRUE);
      return NULL;
    }
  gint64 at = 0;
  for (guint i = 0; i < n; i++)
    {
      g_autofree char *full = g_strconcat (w->prefix, names[i], NULL);
      const SdTensorInfo *info = sd_model_lookup (w->model, full);
      g_autofree gpointer part = read_as (w, full, info, w->dtype, &error);
      if (!part)
        {
          fail (g, error);
          g_free (data);
          g_string_free (key, TRUE);
          return NULL;
        }
      memcpy (data + at * esize, part, info->n_elements * esize);
      at += info->n_elements;
    }
  t = upload (w, key->str, w->dtype, MAX (ndim, 1), shape, data, &error);
  g_free (data);
  g_string_free (key, TRUE);
  if (!t)
    fail (g, error);
  return t;
}

float *
sd_weights_read_host (SdWeights *w, const char *name, gint64 *n_elements, GError **error)
{
  g_autofree char *full = g_strconcat (w->prefix, name, NULL);
  const SdTensorInfo *info = sd_model_lookup (w->model, full);
  if (!info)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_MISSING, "the model has no tensor %s", full);
      return NULL;
    }
  float *data = read_as (w, full, info, IVK_F32, error);
  if (data && n_elements)
    *n_elements = info->n_elements;
  return data;
}

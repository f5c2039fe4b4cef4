/* sd-nets-common.c: graph cache entries, debug taps, timestep features. */
#include "config.h"

#include <math.h>

#include "sd-nets-private.h"

SdDebugTaps *
sd_debug_taps_new (void)
{
  return g_hash_table_new_full (g_str_hash, g_str_equal, g_free, (GDestroyNotify) g_array_unref);
}

SdNetGraph *
sd_net_graph_new (IvkContext *ctx, const char *name, gboolean debug)
{
  SdNetGraph *ng = g_new0 (SdNetGraph, 1);
  ng->g = ivk_graph_new (ctx, name, IVK_GRAPH_DEFAULT);
  if (debug)
    {
      ng->tap_names = g_ptr_array_new_with_free_func (g_free);
      ng->tap_tensors = g_ptr_array_new ();
    }
  return ng;
}

void
sd_net_graph_free (SdNetGraph *ng)
{
  if (!ng)
    return;
  ivk_graph_free (ng->g);
  if (ng->tap_names)
    {
      g_ptr_array_free (ng->tap_names, TRUE);
      g_ptr_array_free (ng->tap_tensors, TRUE);
    }
  g_free (ng);
}

IvkTensor *
sd_net_tap (SdNetGraph *ng, const char *name, IvkTensor *t)
{
  if (!ng->tap_names || !t)
    return t;
  /* an output of its own, so later in-place reuse cannot clobber it */
  IvkTensor *o = ivk_graph_output (ng->g, ivk_copy (ng->g, t), name);
  if (o)
    {
      g_ptr_array_add (ng->tap_names, g_strdup (name));
      g_ptr_array_add (ng->tap_tensors, o);
    }
  return t;
}

gboolean
sd_net_collect_taps (SdNetGraph *ng, SdDebugTaps *taps, GError **error)
{
  if (!ng->tap_names || !taps)
    return TRUE;
  for (guint i = 0; i < ng->tap_names->len; i++)
    {
      IvkTensor *t = g_ptr_array_index (ng->tap_tensors, i);
      GArray *a = g_array_sized_new (FALSE, FALSE, sizeof (float), t->n_elements);
      g_array_set_size (a, t->n_elements);
      if (!ivk_tensor_read_f32 (t, (float *) a->data, t->n_elements, error))
        {
          g_array_unref (a);
          return FALSE;
        }
      g_hash_table_replace (taps, g_strdup (g_ptr_array_index (ng->tap_names, i)), a);
    }
  return TRUE;
}

gboolean
sd_net_graph_compile (SdNetGraph *ng, GError **error)
{
  return ivk_graph_compile (ng->g, error);
}

gboolean
sd_net_write (IvkTensor *t, const float *data, GError **error)
{
  return ivk_tensor_write_f32 (t, data, t->n_elements, error);
}

gboolean
sd_net_read (IvkTensor *t, float *data, GError **error)
{
  return ivk_tensor_read_f32 (t, data, t->n_elements, error);
}

void
sd_sinusoidal_embedding (const float *t, int n, int dim, gboolean flip, float shift, float *out)
{
  int half = dim / 2;
  const float log_period = logf (10000.0f);
  for (int r = 0; r < n; r++)
    {
      float *row = out + (gsize) r * dim;
      for (int k = 0; k < half; k++)
        {
          /* torch: exponent = -log(max_period) * arange(half) / (half - shift), in float32 */
          float exponent = -log_period * (float) k / ((float) half - shift);
          float freq = expf (exponent);
          float arg = t[r] * freq;
          float s = sinf (arg), c = cosf (arg);
          row[k] = flip ? c : s;
          row[half + k] = flip ? s : c;
        }
      if (dim % 2)
        row[dim - 1] = 0.0f;
    }
}

/* golden-nets.c: check-golden handlers that run the networks on the GPU:
 * text_encoder, text_encoder_sdxl, unet, vae_decode, vae_encode.
 *
 * The model is loaded through the same pipeline the CLI uses, from the form
 * that fits the precision (fp32: the diffusers folder, fp16: the fp16 single
 * file when the manifest has one), with the manifest's UNet config passed
 * along for what single files cannot tell (heads of the tiny SDXL model).
 * Loaded pipelines are cached for the whole run.
 */
#include "config.h"

#include <math.h>
#include <string.h>

#include "golden.h"
#include "golden-nets.h"
#include "ivk.h"
#include "sd-error.h"
#include "sd-pipeline.h"

static IvkContext *the_ctx;
static GError *ctx_error;
static GHashTable *pipelines; /* key -> SdPipeline* */

IvkContext *
imp_golden_context (GError **error)
{
  if (!the_ctx && !ctx_error)
    the_ctx = ivk_context_new (NULL, &ctx_error);
  if (!the_ctx)
    {
      imp_golden_set_skip (error, "no Vulkan device: %s", ctx_error->message);
      return NULL;
    }
  return the_ctx;
}

static char *
member_json (JsonObject *o, const char *member)
{
  JsonObject *m = o ? imp_json_object (o, member) : NULL;
  if (!m)
    return NULL;
  JsonNode *node = json_node_new (JSON_NODE_OBJECT);
  json_node_set_object (node, m);
  char *text = json_to_string (node, FALSE);
  json_node_unref (node);
  return text;
}

SdPipeline *
imp_golden_pipeline (ImpGoldenCase *gc, GError **error)
{
  IvkContext *ctx = imp_golden_context (error);
  if (!ctx)
    return NULL;
  gboolean fp16 = gc->precision == IMP_GOLDEN_FP16;
  JsonObject *forms = gc->model ? imp_json_object (gc->model, "forms") : NULL;
  const char *form = "diffusers";
  if (fp16 && forms && json_object_has_member (forms, "single_file_fp16"))
    form = "single_file_fp16";
  g_autofree char *path = imp_golden_model_path (gc, form, NULL, error);
  if (!path)
    return NULL;
  g_autofree char *key = g_strdup_printf ("%s|%d", path, fp16);
  if (!pipelines)
    pipelines = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                       (GDestroyNotify) sd_pipeline_free);
  SdPipeline *p = g_hash_table_lookup (pipelines, key);
  if (p)
    return p;
  /* what single files cannot tell (heads of the tiny models) comes from the
   * manifest's model entry, exactly as a diffusers folder's config.json */
  g_autofree char *unet_json = member_json (gc->model, "unet");
  g_autofree char *te_json = member_json (gc->model, "text_encoder");
  g_autofree char *te2_json = member_json (gc->model, "text_encoder_2");
  SdPipelineOptions opts = {
    .no_fp16 = !fp16,
    .unet_config_json = unet_json,
    .text_encoder_config_json = te_json,
    .text_encoder_2_config_json = te2_json,
  };
  const char *pred = gc->model ? imp_json_string (gc->model, "prediction_type", NULL) : NULL;
  if (pred)
    {
      opts.force_prediction = TRUE;
      opts.prediction = g_strcmp0 (pred, "v_prediction") == 0 ? SD_PREDICTION_V : SD_PREDICTION_EPSILON;
    }
  /* the tokenizer folder of the diffusers form serves every form */
  g_autofree char *tokdir = forms ? imp_golden_model_path (gc, "diffusers", "tokenizer", NULL) : NULL;
  opts.tokenizer_dir = tokdir;
  p = sd_pipeline_new (ctx, path, &opts, error);
  if (!p)
    return NULL;
  g_hash_table_insert (pipelines, g_steal_pointer (&key), p);
  return p;
}

void
imp_golden_nets_cleanup (void)
{
  g_clear_pointer (&pipelines, g_hash_table_destroy);
  g_clear_pointer (&the_ctx, ivk_context_unref);
  g_clear_error (&ctx_error);
}

/* Report every debug tap the case file also has. */
static void
put_taps (ImpGoldenCase *gc, SdDebugTaps *taps)
{
  GHashTableIter it;
  gpointer k, v;
  g_hash_table_iter_init (&it, taps);
  while (g_hash_table_iter_next (&it, &k, &v))
    {
      const SdSafetensorsTensor *t = imp_golden_lookup (gc, k);
      GArray *a = v;
      if (t && (gsize) t->n_elements == a->len)
        imp_golden_put_f32 (gc, k, (const float *) a->data, a->len);
    }
}

static gint32 *
read_ids (ImpGoldenCase *gc, const char *name, int *batch, GError **error)
{
  const SdSafetensorsTensor *info;
  g_autofree gint64 *ids = imp_golden_read_i64 (gc, name, &info, error);
  if (!ids)
    return NULL;
  if (info->ndim != 2 || info->shape[1] != 77)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG, "%s must be [B, 77]", name);
      return NULL;
    }
  gint32 *out = g_new (gint32, info->n_elements);
  for (gint64 i = 0; i < info->n_elements; i++)
    out[i] = (gint32) ids[i];
  *batch = (int) info->shape[0];
  return out;
}

gboolean
imp_golden_text_encoder (ImpGoldenCase *gc, GError **error)
{
  SdPipeline *p = imp_golden_pipeline (gc, error);
  if (!p)
    return FALSE;
  SdClip *clip = sd_pipeline_get_clip (p, 0, error);
  if (!clip)
    return FALSE;
  const SdTextEncoderConfig *cfg = sd_clip_get_config (clip);
  int B = 0;
  g_autofree gint32 *ids = read_ids (gc, "ids", &B, error);
  if (!ids)
    return FALSE;
  const gsize n = (gsize) B * 77 * cfg->hidden;
  g_autofree float *last = g_new (float, n);
  g_autofree float *skip2 = g_new (float, n);
  g_autofree float *all = g_new (float, n * (cfg->n_layers + 1));
  SdClipRequest r1 = { .skip = 0, .final_ln = TRUE, .hidden = last, .all_hidden = all };
  SdClipRequest r2 = { .skip = 1, .final_ln = TRUE, .hidden = skip2 };
  if (!sd_clip_encode (clip, ids, B, &r1, error) || !sd_clip_encode (clip, ids, B, &r2, error))
    return FALSE;
  imp_golden_put_f32 (gc, "last_hidden_state", last, n);
  imp_golden_put_f32 (gc, "clip_skip2", skip2, n);
  imp_golden_put_f32 (gc, "hidden_states", all, n * (cfg->n_layers + 1));
  return TRUE;
}

gboolean
imp_golden_text_encoder_sdxl (ImpGoldenCase *gc, GError **error)
{
  SdPipeline *p = imp_golden_pipeline (gc, error);
  if (!p)
    return FALSE;
  SdClip *c1 = sd_pipeline_get_clip (p, 0, error);
  if (!c1)
    return FALSE;
  SdClip *c2 = sd_pipeline_get_clip (p, 1, error);
  if (!c2)
    return FALSE;
  const SdTextEncoderConfig *e1 = sd_clip_get_config (c1), *e2 = sd_clip_get_config (c2);
  int B = 0, B2 = 0;
  g_autofree gint32 *ids = read_ids (gc, "ids", &B, error);
  if (!ids)
    return FALSE;
  g_autofree gint32 *ids2 = read_ids (gc, "ids_2", &B2, error);
  if (!ids2)
    return FALSE;
  const int C1 = e1->hidden, C2 = e2->hidden, P = e2->projection_dim > 0 ? e2->projection_dim : C2;
  g_autofree float *h1 = g_new (float, (gsize) B * 77 * C1);
  g_autofree float *h2 = g_new (float, (gsize) B * 77 * C2);
  g_autofree float *all1 = g_new (float, (gsize) B * 77 * C1 * (e1->n_layers + 1));
  g_autofree float *all2 = g_new (float, (gsize) B * 77 * C2 * (e2->n_layers + 1));
  g_autofree float *ln2 = g_new (float, (gsize) B * 77 * C2);
  g_autofree float *pooled = g_new (float, (gsize) B * P);
  SdClipRequest r1 = { .skip = 1, .final_ln = FALSE, .hidden = h1, .all_hidden = all1 };
  SdClipRequest r2 = { .skip = 1, .final_ln = FALSE, .hidden = h2, .all_hidden = all2,
                       .last_ln = ln2, .pooled = pooled };
  if (!sd_clip_encode (c1, ids, B, &r1, error) || !sd_clip_encode (c2, ids2, B2, &r2, error))
    return FALSE;
  g_autofree float *ctx = g_new (float, (gsize) B * 77 * (C1 + C2));
  for (gsize r = 0; r < (gsize) B * 77; r++)
    {
      memcpy (ctx + r * (C1 + C2), h1 + r * C1, sizeof (float) * C1);
      memcpy (ctx + r * (C1 + C2) + C1, h2 + r * C2, sizeof (float) * C2);
    }
  /* pooled_output_2: final LN at the first EOS, before the projection */
  g_autofree float *pool_raw = g_new (float, (gsize) B * C2);
  for (int b = 0; b < B; b++)
    {
      int e = 0;
      for (int t = 1; t < 77; t++)
        if (ids2[b * 77 + t] > ids2[b * 77 + e])
          e = t;
      memcpy (pool_raw + (gsize) b * C2, ln2 + ((gsize) b * 77 + e) * C2, sizeof (float) * C2);
    }
  imp_golden_put_f32 (gc, "context", ctx, (gsize) B * 77 * (C1 + C2));
  imp_golden_put_f32 (gc, "text_embeds", pooled, (gsize) B * P);
  imp_golden_put_f32 (gc, "pooled_output_2", pool_raw, (gsize) B * C2);
  imp_golden_put_f32 (gc, "hidden_states_1", all1, (gsize) B * 77 * C1 * (e1->n_layers + 1));
  imp_golden_put_f32 (gc, "hidden_states_2", all2, (gsize) B * 77 * C2 * (e2->n_layers + 1));
  return TRUE;
}

gboolean
imp_golden_unet (ImpGoldenCase *gc, GError **error)
{
  SdPipeline *p = imp_golden_pipeline (gc, error);
  if (!p)
    return FALSE;
  SdUNet *unet = sd_pipeline_get_unet (p, error);
  if (!unet)
    return FALSE;
  const SdSafetensorsTensor *si, *ci;
  g_autofree float *sample = imp_golden_read_f32 (gc, "sample", &si, error);
  if (!sample)
    return FALSE;
  g_autofree float *t = imp_golden_read_f32 (gc, "timestep", NULL, error);
  if (!t)
    return FALSE;
  g_autofree float *context = imp_golden_read_f32 (gc, "context", &ci, error);
  if (!context)
    return FALSE;
  g_autofree float *text_embeds = NULL, *time_ids = NULL;
  if (imp_golden_lookup (gc, "text_embeds"))
    {
      if (!(text_embeds = imp_golden_read_f32 (gc, "text_embeds", NULL, error))
          || !(time_ids = imp_golden_read_f32 (gc, "time_ids", NULL, error)))
        return FALSE;
    }
  if (si->ndim != 4 || ci->ndim != 3)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG, "sample must be [B,C,H,W], context [B,T,D]");
      return FALSE;
    }
  const int B = si->shape[0], H = si->shape[2], W = si->shape[3];
  const int cout = sd_unet_get_config (unet)->out_channels;
  g_autofree float *eps = g_new (float, (gsize) B * cout * H * W);
  g_autoptr (GHashTable) taps = sd_debug_taps_new ();
  SdUNetCall call = {
    .batch = B, .height = H, .width = W, .context_len = ci->shape[1],
    .sample = sample, .timesteps = t, .context = context,
    .text_embeds = text_embeds, .time_ids = time_ids,
    .out = eps, .debug = taps,
  };
  if (!sd_unet_forward (unet, &call, error))
    return FALSE;
  imp_golden_put_f32 (gc, "eps", eps, (gsize) B * cout * H * W);
  put_taps (gc, taps);
  return TRUE;
}

gboolean
imp_golden_vae_decode (ImpGoldenCase *gc, GError **error)
{
  SdPipeline *p = imp_golden_pipeline (gc, error);
  if (!p)
    return FALSE;
  SdVae *vae = sd_pipeline_get_vae (p, error);
  if (!vae)
    return FALSE;
  const SdSafetensorsTensor *li;
  g_autofree float *lat = imp_golden_read_f32 (gc, "latent", &li, error);
  if (!lat)
    return FALSE;
  double sf = imp_json_double (gc->params, "scaling_factor", sd_vae_get_config (vae)->scaling_factor);
  if (fabs (sf - sd_vae_get_config (vae)->scaling_factor) > 1e-6)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_FAILED, "model scaling factor %g, case expects %g",
                   sd_vae_get_config (vae)->scaling_factor, sf);
      return FALSE;
    }
  const int B = li->shape[0], h = li->shape[2], w = li->shape[3];
  const int f = 1 << (sd_vae_get_config (vae)->n_levels - 1);
  const gsize n = (gsize) B * 3 * h * f * w * f;
  g_autofree float *img = g_new (float, n);
  g_autoptr (GHashTable) taps = sd_debug_taps_new ();
  if (!sd_vae_decode (vae, B, h, w, lat, img, taps, error))
    return FALSE;
  imp_golden_put_f32 (gc, "image", img, n);
  for (gsize i = 0; i < n; i++)
    img[i] = CLAMP (img[i] / 2.0f + 0.5f, 0.0f, 1.0f);
  imp_golden_put_f32 (gc, "image_01", img, n);
  put_taps (gc, taps);
  return TRUE;
}

gboolean
imp_golden_vae_encode (ImpGoldenCase *gc, GError **error)
{
  SdPipeline *p = imp_golden_pipeline (gc, error);
  if (!p)
    return FALSE;
  SdVae *vae = sd_pipeline_get_vae (p, error);
  if (!vae)
    return FALSE;
  const SdSafetensorsTensor *ii;
  g_autofree float *img = imp_golden_read_f32 (gc, "image", &ii, error);
  if (!img)
    return FALSE;
  const int B = ii->shape[0], H = ii->shape[2], W = ii->shape[3];
  const int f = 1 << (sd_vae_get_config (vae)->n_levels - 1);
  const gsize n = (gsize) B * 4 * (H / f) * (W / f);
  g_autofree float *mean = g_new (float, n);
  g_autofree float *logvar = g_new (float, n);
  g_autoptr (GHashTable) taps = sd_debug_taps_new ();
  if (!sd_vae_encode (vae, B, H, W, img, mean, logvar, taps, error))
    return FALSE;
  imp_golden_put_f32 (gc, "mean", mean, n);
  imp_golden_put_f32 (gc, "logvar", logvar, n);
  float sf = sd_vae_get_config (vae)->scaling_factor;
  for (gsize i = 0; i < n; i++)
    mean[i] *= sf;
  imp_golden_put_f32 (gc, "latent_mode_scaled", mean, n);
  put_taps (gc, taps);
  return TRUE;
}

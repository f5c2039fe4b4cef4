/* model-detect.c: the configuration of a model, read from its tensors.
 *
 * Every size comes from a shape (channels per level from the first resnet conv
 * of each level, transformer depth from the number of blocks, context width from
 * attn2.to_k, linear vs conv projection from proj_in's rank, text encoder sizes
 * from the embeddings and the first layer). What the weights cannot show comes
 * from diffusers config files, then options, then the architecture's
 * convention, and model->notes says which.
 *
 * Then the detected configuration is expanded into the full list of tensors such
 * a model has (the module tree of diffusers' UNet2DConditionModel, AutoencoderKL
 * and transformers' CLIPTextModel, with their shapes) and compared with what the
 * files hold: missing, mis-shaped and unknown tensors are listed, none silently
 * dropped.
 */
#include "config.h"

#include <stdarg.h>
#include <string.h>

#include "sd-convert.h"
#include "sd-error.h"
#include "sd-model-private.h"

/* Any single dimension beyond this is not a diffusion model (and would
 * overflow the shape arithmetic below). */
#define MAX_DIM (1 << 20)

/* CLIP BPE special tokens (openai/clip-vit-large-patch14 tokenizer). */
#define CLIP_BOS 49406
#define CLIP_EOS 49407

/* ------------------------------------------------------------ small helpers */

static gboolean
tshape (SdModel *m, gint64 *shape, int ndim, const char *fmt, ...) G_GNUC_PRINTF (4, 5);

static gboolean
tshape (SdModel *m, gint64 *shape, int ndim, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  char *name = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  const SdModelTensor *t = g_hash_table_lookup (m->by_name, name);
  g_free (name);
  if (t == NULL || t->info.ndim != ndim)
    return FALSE;
  for (int i = 0; i < ndim; i++)
    if (t->info.shape[i] <= 0 || t->info.shape[i] > MAX_DIM)
      return FALSE;
  memcpy (shape, t->info.shape, sizeof (gint64) * ndim);
  return TRUE;
}

static gboolean
texists (SdModel *m, const char *fmt, ...) G_GNUC_PRINTF (2, 3);

static gboolean
texists (SdModel *m, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  char *name = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  gboolean r = g_hash_table_contains (m->by_name, name);
  g_free (name);
  return r;
}

/* Number of consecutive i = 0, 1, ... for which the name (fmt with one %d)
 * exists, capped. */
static int
tcount (SdModel *m, int cap, const char *fmt)
{
  int n = 0;
  while (n < cap)
    {
      char *name = g_strdup_printf (fmt, n);
      gboolean r = g_hash_table_contains (m->by_name, name);
      g_free (name);
      if (!r)
        break;
      n++;
    }
  return n;
}

static void
note (SdModel *m, const char *fmt, ...) G_GNUC_PRINTF (2, 3);

static void
note (SdModel *m, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  g_ptr_array_add (m->notes, g_strdup_vprintf (fmt, ap));
  va_end (ap);
}

static JsonObject *
cfg_object (JsonNode *n)
{
  return n && JSON_NODE_HOLDS_OBJECT (n) ? json_node_get_object (n) : NULL;
}

static JsonNode *
cfg_member (JsonObject *o, const char *key)
{
  if (o == NULL || !json_object_has_member (o, key))
    return NULL;
  JsonNode *n = json_object_get_member (o, key);
  return n && !JSON_NODE_HOLDS_NULL (n) ? n : NULL;
}

static gboolean
cfg_int (JsonObject *o, const char *key, gint64 *out)
{
  JsonNode *n = cfg_member (o, key);
  if (n == NULL || !JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_INT64)
    return FALSE;
  *out = json_node_get_int (n);
  return TRUE;
}

static gboolean
cfg_double (JsonObject *o, const char *key, double *out)
{
  JsonNode *n = cfg_member (o, key);
  if (n == NULL || !JSON_NODE_HOLDS_VALUE (n))
    return FALSE;
  GType t = json_node_get_value_type (n);
  if (t == G_TYPE_INT64)
    *out = (double) json_node_get_int (n);
  else if (t == G_TYPE_DOUBLE)
    *out = json_node_get_double (n);
  else
    return FALSE;
  return TRUE;
}

static const char *
cfg_string (JsonObject *o, const char *key)
{
  JsonNode *n = cfg_member (o, key);
  if (n == NULL || !JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_STRING)
    return NULL;
  return json_node_get_string (n);
}

static gboolean
cfg_bool (JsonObject *o, const char *key, gboolean *out)
{
  JsonNode *n = cfg_member (o, key);
  if (n == NULL || !JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_BOOLEAN)
    return FALSE;
  *out = json_node_get_boolean (n);
  return TRUE;
}

/* An int or a list of ints (diffusers writes both). Returns the count, 0 when
 * absent or null, -1 when malformed. */
static int
cfg_int_list (JsonObject *o, const char *key, gint64 *out, int max)
{
  JsonNode *n = cfg_member (o, key);
  if (n == NULL)
    return 0;
  if (JSON_NODE_HOLDS_VALUE (n) && json_node_get_value_type (n) == G_TYPE_INT64)
    {
      out[0] = json_node_get_int (n);
      return 1;
    }
  if (!JSON_NODE_HOLDS_ARRAY (n))
    return -1;
  JsonArray *a = json_node_get_array (n);
  guint len = json_array_get_length (a);
  if (len == 0 || len > (guint) max)
    return -1;
  for (guint i = 0; i < len; i++)
    {
      JsonNode *e = json_array_get_element (a, i);
      if (!JSON_NODE_HOLDS_VALUE (e) || json_node_get_value_type (e) != G_TYPE_INT64)
        return -1;
      out[i] = json_node_get_int (e);
    }
  return (int) len;
}

/* Parse an option's JSON text into a node (NULL with a note when malformed). */
static JsonNode *
parse_option_json (SdModel *m, const char *what, const char *text)
{
  if (text == NULL || *text == '\0')
    return NULL;
  g_autoptr (JsonParser) p = json_parser_new ();
  GError *err = NULL;
  if (!json_parser_load_from_data (p, text, -1, &err) || json_parser_get_root (p) == NULL
      || !JSON_NODE_HOLDS_OBJECT (json_parser_get_root (p)))
    {
      note (m, "%s: not a JSON object (%s); ignored", what, err ? err->message : "wrong type");
      g_clear_error (&err);
      return NULL;
    }
  return json_node_copy (json_parser_get_root (p));
}

/* ------------------------------------------------------------------- UNet */

static gboolean
detect_unet (SdModel *m, GError **error)
{
  SdUNetConfig *u = &m->config.unet;
  gint64 s[4];
  if (!tshape (m, s, 4, "unet.conv_in.weight"))
    {
      g_ptr_array_add (m->missing, g_strdup ("unet.conv_in.weight (a 4-d conv weight; needed to "
                                             "detect the UNet configuration)"));
      return TRUE;
    }
  u->in_channels = (int) s[1];
  int c0 = (int) s[0];

  int levels = 0;
  while (tshape (m, s, 4, "unet.down_blocks.%d.resnets.0.conv1.weight", levels))
    {
      if (levels == SD_MAX_LEVELS)
        {
          g_set_error (error, SD_ERROR, SD_ERROR_UNSUPPORTED,
                       "the UNet has more than %d levels: not a Stable Diffusion UNet", SD_MAX_LEVELS);
          return FALSE;
        }
      u->block_out_channels[levels] = (int) s[0];
      levels++;
    }
  if (levels == 0)
    {
      g_ptr_array_add (m->missing, g_strdup ("unet.down_blocks.0.resnets.0.conv1.weight (needed to "
                                             "detect the UNet configuration)"));
      return TRUE;
    }
  u->n_levels = levels;
  u->layers_per_block = tcount (m, 16, "unet.down_blocks.0.resnets.%d.conv1.weight");
  if (u->block_out_channels[0] != c0)
    note (m, "unet: conv_in has %d channels but the first level %d", c0, u->block_out_channels[0]);

  gboolean found_attn = FALSE;
  for (int i = 0; i <= levels; i++)
    {
      /* i == levels: the mid block. */
      char *prefix = i < levels ? g_strdup_printf ("unet.down_blocks.%d.attentions.0", i)
                                : g_strdup ("unet.mid_block.attentions.0");
      gboolean has = texists (m, "%s.proj_in.weight", prefix) || texists (m, "%s.norm.weight", prefix);
      char *fmt = g_strconcat (prefix, ".transformer_blocks.%d.attn1.to_q.weight", NULL);
      int depth = has ? tcount (m, 64, fmt) : 0;
      g_free (fmt);
      if (i < levels)
        {
          u->level_has_attn[i] = has;
          u->transformer_depth[i] = depth;
        }
      else
        {
          u->has_mid_attn = has;
          u->transformer_depth_mid = depth;
        }
      if (has && !found_attn)
        {
          char *pin_name = g_strdup_printf ("%s.proj_in.weight", prefix);
          const SdModelTensor *t = g_hash_table_lookup (m->by_name, pin_name);
          g_free (pin_name);
          if (t)
            u->use_linear_projection = t->info.ndim == 2;
          if (tshape (m, s, 2, "%s.transformer_blocks.0.attn2.to_k.weight", prefix))
            {
              u->context_dim = (int) s[1];
              found_attn = TRUE;
            }
        }
      g_free (prefix);
    }

  if (tshape (m, s, 2, "unet.time_embedding.linear_1.weight"))
    {
      u->time_embed_dim = (int) s[0];
      u->time_proj_dim = (int) s[1];
    }
  else
    {
      /* diffusers: time_embed_dim = 4 * block_out_channels[0] */
      u->time_embed_dim = 4 * u->block_out_channels[0];
      u->time_proj_dim = u->block_out_channels[0];
    }
  if (tshape (m, s, 2, "unet.add_embedding.linear_1.weight"))
    u->projection_class_embeddings_input_dim = (int) s[1];
  u->out_channels = tshape (m, s, 4, "unet.conv_out.weight") ? (int) s[0] : 4;
  u->norm_groups = 32;
  u->norm_eps = 1e-5f;
  m->comp[SD_COMP_UNET].detected = TRUE;
  return TRUE;
}

/* Heads: a diffusers config wins (attention_head_dim is the NUMBER of heads, a
 * naming bug diffusers keeps; num_attention_heads, when set, says the same
 * correctly), then the unet_config_json option, then the convention of the
 * architecture: SD 1.x uses 8 heads everywhere (ldm config num_heads: 8), SD 2.x
 * and SDXL 64-channel heads (num_head_channels: 64). */
static gboolean
heads_from_config (SdModel *m, JsonObject *cfg, const char *source)
{
  SdUNetConfig *u = &m->config.unet;
  gint64 heads[SD_MAX_LEVELS];
  int n = cfg_int_list (cfg, "num_attention_heads", heads, SD_MAX_LEVELS);
  const char *key = "num_attention_heads";
  if (n == 0)
    {
      n = cfg_int_list (cfg, "attention_head_dim", heads, SD_MAX_LEVELS);
      key = "attention_head_dim";
    }
  if (n == 0)
    return FALSE;
  if (n < 0 || (n != 1 && n != u->n_levels))
    {
      note (m, "unet heads: %s in %s has the wrong form for %d levels; ignored", key, source,
            u->n_levels);
      return FALSE;
    }
  int h[SD_MAX_LEVELS];
  for (int i = 0; i < u->n_levels; i++)
    {
      gint64 v = heads[n == 1 ? 0 : i];
      if (v <= 0 || v > MAX_DIM || u->block_out_channels[i] % v != 0)
        {
          note (m, "unet heads: %s = %" G_GINT64_FORMAT " in %s does not divide %d channels; ignored",
                key, v, source, u->block_out_channels[i]);
          return FALSE;
        }
      h[i] = (int) v;
    }
  for (int i = 0; i < u->n_levels; i++)
    {
      u->num_heads[i] = h[i];
      u->head_dim[i] = u->block_out_channels[i] / h[i];
    }
  /* The mid block uses the last entry (diffusers UNetMidBlock2DCrossAttn). */
  u->num_heads_mid = u->num_heads[u->n_levels - 1];
  u->head_dim_mid = u->head_dim[u->n_levels - 1];
  u->heads_known = TRUE;
  note (m, "unet heads: from %s (%s)", source, key);
  return TRUE;
}

static void
resolve_unet_heads (SdModel *m, const SdOpenOptions *opt)
{
  SdUNetConfig *u = &m->config.unet;
  SdComponent *c = &m->comp[SD_COMP_UNET];
  if (c->config && heads_from_config (m, cfg_object (c->config), c->config_source))
    return;
  if (opt && opt->unet_config_json)
    {
      JsonNode *n = parse_option_json (m, "unet_config_json option", opt->unet_config_json);
      gboolean ok = n && heads_from_config (m, cfg_object (n), "the unet_config_json option");
      if (n)
        json_node_unref (n);
      if (ok)
        return;
    }
  gboolean sd1 = m->config.arch == SD_ARCH_SD1 || m->config.arch == SD_ARCH_UNKNOWN;
  gboolean fallback = FALSE;
  for (int i = 0; i < u->n_levels; i++)
    {
      int ch = u->block_out_channels[i];
      int heads = sd1 ? 8 : ch / 64;
      if (heads <= 0 || ch % heads != 0 || (!sd1 && ch % 64 != 0))
        {
          heads = 1;
          fallback = TRUE;
        }
      u->num_heads[i] = heads;
      u->head_dim[i] = ch / heads;
    }
  u->num_heads_mid = u->num_heads[u->n_levels - 1];
  u->head_dim_mid = u->head_dim[u->n_levels - 1];
  u->heads_known = FALSE;
  note (m, "unet heads: not stated by any config; %s convention (%s)%s",
        sd1 ? "SD 1.x" : "SD 2.x / SDXL", sd1 ? "8 heads per level" : "head_dim 64",
        fallback ? "; the channels do not fit it, one head used where needed: pass a UNet config" : "");
}

/* -------------------------------------------------------------------- VAE */

static void
detect_vae (SdModel *m)
{
  SdVaeConfig *v = &m->config.vae;
  gint64 s[4];
  v->has_encoder = texists (m, "vae.encoder.conv_in.weight");
  v->has_decoder = texists (m, "vae.decoder.conv_in.weight");
  int levels = 0;
  if (v->has_encoder)
    {
      if (!tshape (m, s, 4, "vae.encoder.conv_in.weight"))
        goto bad;
      v->in_channels = (int) s[1];
      while (levels < SD_MAX_LEVELS
             && tshape (m, s, 4, "vae.encoder.down_blocks.%d.resnets.0.conv1.weight", levels))
        v->block_out_channels[levels++] = (int) s[0];
      v->layers_per_block = tcount (m, 16, "vae.encoder.down_blocks.0.resnets.%d.conv1.weight");
    }
  else if (v->has_decoder)
    {
      int ch[SD_MAX_LEVELS];
      while (levels < SD_MAX_LEVELS
             && tshape (m, s, 4, "vae.decoder.up_blocks.%d.resnets.0.conv1.weight", levels))
        ch[levels++] = (int) s[0];
      /* Up block j's first resnet outputs reversed channels[j]. */
      for (int j = 0; j < levels; j++)
        v->block_out_channels[levels - 1 - j] = ch[j];
      v->layers_per_block = tcount (m, 16, "vae.decoder.up_blocks.0.resnets.%d.conv1.weight") - 1;
      v->in_channels = 3;
    }
  else
    {
      g_ptr_array_add (m->missing, g_strdup ("vae.encoder.conv_in.weight / vae.decoder.conv_in.weight "
                                             "(needed to detect the VAE configuration)"));
      return;
    }
  if (levels == 0 || v->layers_per_block <= 0)
    goto bad;
  v->n_levels = levels;
  v->out_channels = tshape (m, s, 4, "vae.decoder.conv_out.weight") ? (int) s[0] : 3;
  if (tshape (m, s, 4, "vae.post_quant_conv.weight"))
    v->latent_channels = (int) s[0];
  else if (tshape (m, s, 4, "vae.quant_conv.weight"))
    v->latent_channels = (int) s[0] / 2;
  else if (tshape (m, s, 4, "vae.decoder.conv_in.weight"))
    v->latent_channels = (int) s[1];
  else
    v->latent_channels = 4;
  v->norm_groups = 32;
  m->comp[SD_COMP_VAE].detected = TRUE;
  return;
bad:
  g_ptr_array_add (m->missing, g_strdup ("vae.encoder.down_blocks.0.resnets.0.conv1.weight (needed to "
                                         "detect the VAE configuration)"));
}

/* ---------------------------------------------------------- text encoders */

static void
detect_text (SdModel *m, int ci, const SdOpenOptions *opt)
{
  const char *p = sd_component_names[ci];
  SdTextEncoderConfig *t = ci == SD_COMP_TEXT_ENCODER ? &m->config.text_encoder : &m->config.text_encoder_2;
  SdComponent *c = &m->comp[ci];
  gint64 s[2];
  if (!tshape (m, s, 2, "%s.text_model.embeddings.token_embedding.weight", p))
    {
      g_ptr_array_add (m->missing, g_strdup_printf ("%s.text_model.embeddings.token_embedding.weight "
                                                    "(needed to detect the text encoder)",
                                                    p));
      return;
    }
  t->vocab_size = (int) s[0];
  t->hidden = (int) s[1];
  t->max_positions = tshape (m, s, 2, "%s.text_model.embeddings.position_embedding.weight", p) ? (int) s[0] : 77;
  char *fmt = g_strconcat (p, ".text_model.encoder.layers.%d.self_attn.q_proj.weight", NULL);
  t->n_layers = tcount (m, 256, fmt);
  g_free (fmt);
  t->intermediate = tshape (m, s, 2, "%s.text_model.encoder.layers.0.mlp.fc1.weight", p) ? (int) s[0] : 4 * t->hidden;
  t->projection_dim = tshape (m, s, 2, "%s.text_projection.weight", p) ? (int) s[0] : 0;
  t->bos_id = CLIP_BOS;
  t->eos_id = CLIP_EOS;

  JsonNode *opt_node = NULL;
  JsonObject *cfg = cfg_object (c->config);
  const char *source = c->config_source;
  if (cfg == NULL && opt)
    {
      const char *text = ci == SD_COMP_TEXT_ENCODER ? opt->text_encoder_config_json : opt->text_encoder_2_config_json;
      opt_node = parse_option_json (m, ci == SD_COMP_TEXT_ENCODER ? "text_encoder_config_json option"
                                                                  : "text_encoder_2_config_json option",
                                    text);
      cfg = cfg_object (opt_node);
      source = ci == SD_COMP_TEXT_ENCODER ? "the text_encoder_config_json option"
                                          : "the text_encoder_2_config_json option";
    }

  /* Activation: OpenAI's CLIP ViT-L uses quick_gelu (x * sigmoid(1.702 x));
   * open_clip's ViT-H / bigG exact GELU. A config says it outright. */
  const char *act = cfg_string (cfg, "hidden_act");
  if (act && strcmp (act, "quick_gelu") == 0)
    t->act = SD_ACT_QUICK_GELU;
  else if (act && strcmp (act, "gelu") == 0)
    t->act = SD_ACT_GELU;
  else
    {
      if (act)
        note (m, "%s: hidden_act \"%s\" in %s is not supported; using the naming convention", p, act, source);
      t->act = c->openclip ? SD_ACT_GELU : SD_ACT_QUICK_GELU;
    }

  gint64 heads = 0;
  if (cfg_int (cfg, "num_attention_heads", &heads) && heads > 0 && heads <= t->hidden
      && t->hidden % heads == 0)
    {
      t->n_heads = (int) heads;
      t->heads_known = TRUE;
      note (m, "%s heads: from %s", p, source);
    }
  else
    {
      /* Every CLIP / open_clip text tower uses 64-channel heads. */
      t->n_heads = t->hidden % 64 == 0 ? t->hidden / 64 : 1;
      t->heads_known = FALSE;
      note (m, "%s heads: not stated by any config; head_dim 64 convention (%d heads)", p, t->n_heads);
    }
  if (opt_node)
    json_node_unref (opt_node);

  /* Padding: the tokenizer of OpenAI's CLIP pads with <|endoftext|> (49407);
   * open_clip's pads with 0 ('!'), as SD 2's and SDXL's second tokenizer do.
   * The pad_token_id of a text encoder config.json is a legacy value no
   * pipeline reads (SDXL's say 1), so it is not used. */
  gboolean openclip_style = c->openclip || t->act == SD_ACT_GELU;
  t->pad_id = openclip_style ? 0 : CLIP_EOS;
  t->present = TRUE;
  c->detected = TRUE;
}

/* ----------------------------------------------------------- architecture */

static void
decide_arch (SdModel *m)
{
  SdModelConfig *cfg = &m->config;
  JsonObject *index = cfg_object (m->model_index);
  gboolean te1 = m->comp[SD_COMP_TEXT_ENCODER].detected;
  gboolean te2 = m->comp[SD_COMP_TEXT_ENCODER_2].detected;
  if (!m->comp[SD_COMP_UNET].detected)
    {
      cfg->arch = SD_ARCH_UNKNOWN;
      return;
    }
  const SdUNetConfig *u = &cfg->unet;
  if (u->projection_class_embeddings_input_dim > 0)
    {
      /* SDXL's 'text_time' added conditioning. The base model has both text
       * encoders; the refiner only open_clip bigG (and aesthetic-score time ids). */
      gboolean aesthetics = FALSE;
      if (te1)
        cfg->arch = SD_ARCH_SDXL;
      else if (te2)
        cfg->arch = SD_ARCH_SDXL_REFINER;
      else if (cfg_bool (index, "requires_aesthetics_score", &aesthetics))
        cfg->arch = aesthetics ? SD_ARCH_SDXL_REFINER : SD_ARCH_SDXL;
      else
        {
          /* A UNet alone: SDXL base has 3 levels, the refiner 4. */
          cfg->arch = u->n_levels == 3 ? SD_ARCH_SDXL : SD_ARCH_SDXL_REFINER;
          note (m, "no text encoder: %s guessed from the UNet's %d levels", sd_arch_name (cfg->arch),
                u->n_levels);
        }
    }
  else if (te1 || te2)
    {
      const SdTextEncoderConfig *t = te1 ? &cfg->text_encoder : &cfg->text_encoder_2;
      gboolean openclip = m->comp[te1 ? SD_COMP_TEXT_ENCODER : SD_COMP_TEXT_ENCODER_2].openclip;
      cfg->arch = (openclip || t->act == SD_ACT_GELU) ? SD_ARCH_SD2 : SD_ARCH_SD1;
    }
  else
    {
      /* A UNet alone: SD 2.x projects with Linear layers, SD 1.x with 1x1 convs. */
      cfg->arch = u->use_linear_projection ? SD_ARCH_SD2 : SD_ARCH_SD1;
      note (m, "no text encoder: %s guessed from the UNet's %s projections", sd_arch_name (cfg->arch),
            u->use_linear_projection ? "linear" : "conv");
    }
  cfg->inpainting = u->in_channels == 9;
}

static void
resolve_sdxl_embedding (SdModel *m)
{
  SdModelConfig *cfg = &m->config;
  SdUNetConfig *u = &cfg->unet;
  if (u->projection_class_embeddings_input_dim <= 0)
    return;
  /* diffusers StableDiffusionXLPipeline: (orig_h, orig_w, crop_top, crop_left,
   * target_h, target_w); the refiner's img2img pipeline replaces the target
   * size by the aesthetic score. */
  u->n_time_ids = cfg->arch == SD_ARCH_SDXL_REFINER ? 5 : 6;
  int total = u->projection_class_embeddings_input_dim;
  gint64 atd = 0;
  gboolean atd_known = cfg_int (cfg_object (m->comp[SD_COMP_UNET].config), "addition_time_embed_dim", &atd)
                       && atd > 0 && atd <= MAX_DIM;
  if (cfg->text_encoder_2.present && cfg->text_encoder_2.projection_dim > 0)
    u->pooled_dim = cfg->text_encoder_2.projection_dim;
  else if (atd_known)
    u->pooled_dim = total - u->n_time_ids * (int) atd;
  else
    {
      u->pooled_dim = 1280; /* OpenCLIP bigG projection (SDXL base and refiner) */
      note (m, "unet: pooled text width not visible (no text_encoder_2); SDXL's 1280 assumed");
    }
  int rest = total - u->pooled_dim;
  if (atd_known)
    {
      u->addition_time_embed_dim = (int) atd;
      if (rest != u->n_time_ids * atd)
        note (m, "unet: add_embedding takes %d inputs, but pooled %d + %d time ids x %d = %d",
              total, u->pooled_dim, u->n_time_ids, (int) atd, u->pooled_dim + u->n_time_ids * (int) atd);
    }
  else if (rest > 0 && rest % u->n_time_ids == 0)
    u->addition_time_embed_dim = rest / u->n_time_ids;
  else
    note (m, "unet: add_embedding takes %d inputs, which is not pooled %d + %d time-id sinusoids",
          total, u->pooled_dim, u->n_time_ids);
}

static void
resolve_scheduler (SdModel *m, const SdOpenOptions *opt)
{
  SdModelConfig *cfg = &m->config;
  SdSchedulerConfig *s = &cfg->scheduler;
  JsonObject *sc = cfg_object (m->scheduler_config);
  /* Stable Diffusion's training schedule (ldm configs: linear_start 0.00085,
   * linear_end 0.012, 1000 steps, "scaled_linear" in diffusers). */
  s->num_train_timesteps = 1000;
  s->beta_start = 0.00085;
  s->beta_end = 0.012;
  g_strlcpy (s->beta_schedule, "scaled_linear", sizeof s->beta_schedule);
  s->steps_offset = 1;
  g_strlcpy (s->timestep_spacing, "leading", sizeof s->timestep_spacing);
  gint64 iv;
  double dv;
  const char *str;
  if (cfg_int (sc, "num_train_timesteps", &iv) && iv > 0 && iv <= 100000)
    s->num_train_timesteps = (int) iv;
  if (cfg_double (sc, "beta_start", &dv))
    s->beta_start = dv;
  if (cfg_double (sc, "beta_end", &dv))
    s->beta_end = dv;
  if ((str = cfg_string (sc, "beta_schedule")))
    g_strlcpy (s->beta_schedule, str, sizeof s->beta_schedule);
  if (cfg_int (sc, "steps_offset", &iv) && iv >= 0 && iv < 1000)
    s->steps_offset = (int) iv;
  if ((str = cfg_string (sc, "timestep_spacing")))
    g_strlcpy (s->timestep_spacing, str, sizeof s->timestep_spacing);

  /* Prediction type. The weights cannot tell epsilon from v. Order: an explicit
   * option (force_prediction) overrides everything; then the diffusers
   * scheduler config; then what a single file's metadata states (Stability's
   * ModelSpec "modelspec.prediction_type", kohya's "ss_v_parameterization");
   * else epsilon, with prediction_known = FALSE so callers can say they
   * assumed it (SD 2.x 768 models are v-prediction and need the option or a
   * config). */
  s->prediction = SD_PREDICTION_EPSILON;
  s->prediction_known = FALSE;
  const char *pt = cfg_string (sc, "prediction_type");
  if (opt && opt->force_prediction)
    {
      s->prediction = opt->prediction;
      s->prediction_known = TRUE;
      m->prediction_source = g_strdup ("the caller's option");
    }
  else if (pt && (strcmp (pt, "epsilon") == 0 || strcmp (pt, "v_prediction") == 0))
    {
      s->prediction = strcmp (pt, "v_prediction") == 0 ? SD_PREDICTION_V : SD_PREDICTION_EPSILON;
      s->prediction_known = TRUE;
      m->prediction_source = g_strdup (m->scheduler_source ? m->scheduler_source : "scheduler config");
    }
  else
    {
      if (pt)
        note (m, "scheduler: prediction_type \"%s\" is not supported; ignored", pt);
      for (guint i = 0; i < m->files->len && !s->prediction_known; i++)
        {
          SdSafetensors *st = g_ptr_array_index (m->files, i);
          const char *v = sd_safetensors_get_metadata (st, "modelspec.prediction_type");
          if (v == NULL)
            v = sd_safetensors_get_metadata (st, "prediction_type");
          const char *kohya = sd_safetensors_get_metadata (st, "ss_v_parameterization");
          if (v && (strcmp (v, "v") == 0 || strcmp (v, "v_prediction") == 0))
            s->prediction = SD_PREDICTION_V, s->prediction_known = TRUE;
          else if (v && (strcmp (v, "epsilon") == 0 || strcmp (v, "eps") == 0))
            s->prediction = SD_PREDICTION_EPSILON, s->prediction_known = TRUE;
          else if (kohya && g_ascii_strcasecmp (kohya, "true") == 0)
            s->prediction = SD_PREDICTION_V, s->prediction_known = TRUE;
          if (s->prediction_known)
            m->prediction_source = g_strdup ("the file's metadata");
        }
    }
}

static void
resolve_rest (SdModel *m)
{
  SdModelConfig *cfg = &m->config;
  JsonObject *ucfg = cfg_object (m->comp[SD_COMP_UNET].config);
  JsonObject *vcfg = cfg_object (m->comp[SD_COMP_VAE].config);
  JsonObject *index = cfg_object (m->model_index);
  gint64 iv;
  double dv;
  gboolean bv;

  if (cfg_int (ucfg, "norm_num_groups", &iv) && iv > 0 && iv <= 1024)
    cfg->unet.norm_groups = (int) iv;
  if (cfg_double (ucfg, "norm_eps", &dv) && dv > 0)
    cfg->unet.norm_eps = (float) dv;
  if (cfg_int (vcfg, "norm_num_groups", &iv) && iv > 0 && iv <= 1024)
    cfg->vae.norm_groups = (int) iv;

  /* VAE latent scale: AutoencoderKL config scaling_factor; else SD's 0.18215
   * (ldm scale_factor) or SDXL's 0.13025 (sgm configs). */
  gboolean xl = cfg->arch == SD_ARCH_SDXL || cfg->arch == SD_ARCH_SDXL_REFINER;
  if (cfg_double (vcfg, "scaling_factor", &dv) && dv > 0)
    cfg->vae.scaling_factor = (float) dv;
  else
    {
      cfg->vae.scaling_factor = xl ? 0.13025f : 0.18215f;
      if (m->comp[SD_COMP_VAE].present)
        note (m, "vae scaling_factor: %s convention %g", xl ? "SDXL" : "SD 1/2", cfg->vae.scaling_factor);
    }

  if (cfg_bool (index, "force_zeros_for_empty_prompt", &bv))
    cfg->force_zeros_for_empty_prompt = bv;
  else
    cfg->force_zeros_for_empty_prompt = cfg->arch == SD_ARCH_SDXL;

  /* Native size: diffusers sample_size (latent) x 8, else the convention. */
  int vae_scale = 8;
  if (cfg_int (ucfg, "sample_size", &iv) && iv > 0 && iv <= 1024)
    cfg->native_resolution = (int) iv * vae_scale;
  else if (xl)
    cfg->native_resolution = 1024;
  else if (cfg->arch == SD_ARCH_SD2 && cfg->scheduler.prediction == SD_PREDICTION_V)
    cfg->native_resolution = 768;
  else
    cfg->native_resolution = 512;

  /* Cross-check what configs state and the weights show; the weights win. */
  if (ucfg && m->comp[SD_COMP_UNET].detected)
    {
      gint64 list[SD_MAX_LEVELS];
      int n = cfg_int_list (ucfg, "block_out_channels", list, SD_MAX_LEVELS);
      gboolean same = n == cfg->unet.n_levels;
      for (int i = 0; same && i < n; i++)
        same = list[i] == cfg->unet.block_out_channels[i];
      if (n > 0 && !same)
        note (m, "unet: block_out_channels in %s differ from the weights; the weights are used",
              m->comp[SD_COMP_UNET].config_source);
      if (cfg_int (ucfg, "layers_per_block", &iv) && iv != cfg->unet.layers_per_block)
        note (m, "unet: layers_per_block %" G_GINT64_FORMAT " in %s, %d in the weights", iv,
              m->comp[SD_COMP_UNET].config_source, cfg->unet.layers_per_block);
      if (cfg_int (ucfg, "in_channels", &iv) && iv != cfg->unet.in_channels)
        note (m, "unet: in_channels %" G_GINT64_FORMAT " in %s, %d in the weights", iv,
              m->comp[SD_COMP_UNET].config_source, cfg->unet.in_channels);
      if (cfg_int (ucfg, "cross_attention_dim", &iv) && cfg->unet.context_dim && iv != cfg->unet.context_dim)
        note (m, "unet: cross_attention_dim %" G_GINT64_FORMAT " in %s, %d in the weights", iv,
              m->comp[SD_COMP_UNET].config_source, cfg->unet.context_dim);
    }
}

/* ------------------------------------------------- expected tensors, compare */

typedef struct
{
  SdModel *m;
  GHashTable *expected; /* names seen as expected (owned keys) */
} Expect;

static void
expect (Expect *e, const char *name, int ndim, gint64 d0, gint64 d1, gint64 d2, gint64 d3)
{
  gint64 want[4] = { d0, d1, d2, d3 };
  g_hash_table_add (e->expected, g_strdup (name));
  const SdModelTensor *t = g_hash_table_lookup (e->m->by_name, name);
  g_autofree char *ws = sd_format_shape (want, ndim);
  if (t == NULL)
    {
      g_ptr_array_add (e->m->missing, g_strdup_printf ("%s %s", name, ws));
      return;
    }
  gboolean same = t->info.ndim == ndim;
  for (int i = 0; same && i < ndim; i++)
    same = t->info.shape[i] == want[i];
  if (!same)
    {
      g_autofree char *hs = sd_format_shape (t->info.shape, t->info.ndim);
      g_ptr_array_add (e->m->misshaped, g_strdup_printf ("%s: shape %s, expected %s", name, hs, ws));
    }
  else if (!sd_dtype_is_float (t->info.dtype))
    g_ptr_array_add (e->m->misshaped, g_strdup_printf ("%s: dtype %s, expected a float type", name,
                                                       sd_dtype_name (t->info.dtype)));
}

static void
e_vec (Expect *e, const char *prefix, const char *leaf, gint64 n)
{
  char *name = g_strconcat (prefix, leaf, NULL);
  expect (e, name, 1, n, 0, 0, 0);
  g_free (name);
}

/* LayerNorm / GroupNorm: weight and bias [C]. */
static void
e_norm (Expect *e, const char *prefix, gint64 c)
{
  e_vec (e, prefix, ".weight", c);
  e_vec (e, prefix, ".bias", c);
}

static void
e_linear (Expect *e, const char *prefix, gint64 out, gint64 in, gboolean bias)
{
  char *name = g_strconcat (prefix, ".weight", NULL);
  expect (e, name, 2, out, in, 0, 0);
  g_free (name);
  if (bias)
    e_vec (e, prefix, ".bias", out);
}

static void
e_conv (Expect *e, const char *prefix, gint64 out, gint64 in, gint64 k)
{
  char *name = g_strconcat (prefix, ".weight", NULL);
  expect (e, name, 4, out, in, k, k);
  g_free (name);
  e_vec (e, prefix, ".bias", out);
}

static void
e_resnet (Expect *e, const char *prefix, gint64 in, gint64 out, gint64 temb)
{
  char *p;
  p = g_strconcat (prefix, ".norm1", NULL), e_norm (e, p, in), g_free (p);
  p = g_strconcat (prefix, ".conv1", NULL), e_conv (e, p, out, in, 3), g_free (p);
  if (temb > 0)
    p = g_strconcat (prefix, ".time_emb_proj", NULL), e_linear (e, p, out, temb, TRUE), g_free (p);
  p = g_strconcat (prefix, ".norm2", NULL), e_norm (e, p, out), g_free (p);
  p = g_strconcat (prefix, ".conv2", NULL), e_conv (e, p, out, out, 3), g_free (p);
  if (in != out)
    p = g_strconcat (prefix, ".conv_shortcut", NULL), e_conv (e, p, out, in, 1), g_free (p);
}

/* diffusers Transformer2DModel with BasicTransformerBlocks (GEGLU feed-forward
 * of inner width 4C, so its first projection is [8C, C]). */
static void
e_transformer (Expect *e, const char *prefix, gint64 c, int depth, gint64 ctx, gboolean linear)
{
  char *p = g_strconcat (prefix, ".norm", NULL);
  e_norm (e, p, c);
  g_free (p);
  for (int k = 0; k < 2; k++)
    {
      p = g_strconcat (prefix, k ? ".proj_out" : ".proj_in", NULL);
      if (linear)
        e_linear (e, p, c, c, TRUE);
      else
        e_conv (e, p, c, c, 1);
      g_free (p);
    }
  for (int b = 0; b < depth; b++)
    {
      char *bp = g_strdup_printf ("%s.transformer_blocks.%d", prefix, b);
      for (int k = 1; k <= 3; k++)
        {
          p = g_strdup_printf ("%s.norm%d", bp, k);
          e_norm (e, p, c);
          g_free (p);
        }
      for (int a = 1; a <= 2; a++)
        {
          gint64 kv = a == 1 ? c : ctx;
          p = g_strdup_printf ("%s.attn%d.to_q", bp, a), e_linear (e, p, c, c, FALSE), g_free (p);
          p = g_strdup_printf ("%s.attn%d.to_k", bp, a), e_linear (e, p, c, kv, FALSE), g_free (p);
          p = g_strdup_printf ("%s.attn%d.to_v", bp, a), e_linear (e, p, c, kv, FALSE), g_free (p);
          p = g_strdup_printf ("%s.attn%d.to_out.0", bp, a), e_linear (e, p, c, c, TRUE), g_free (p);
        }
      p = g_strdup_printf ("%s.ff.net.0.proj", bp), e_linear (e, p, 8 * c, c, TRUE), g_free (p);
      p = g_strdup_printf ("%s.ff.net.2", bp), e_linear (e, p, c, 4 * c, TRUE), g_free (p);
      g_free (bp);
    }
}

static void
expect_unet (Expect *e, const SdUNetConfig *u)
{
  const int n = u->n_levels, L = u->layers_per_block;
  gint64 C[SD_MAX_LEVELS];
  for (int i = 0; i < n; i++)
    C[i] = u->block_out_channels[i];
  gint64 T = u->time_embed_dim;
  char *p;

  e_conv (e, "unet.conv_in", C[0], u->in_channels, 3);
  e_linear (e, "unet.time_embedding.linear_1", T, u->time_proj_dim, TRUE);
  e_linear (e, "unet.time_embedding.linear_2", T, T, TRUE);
  if (u->projection_class_embeddings_input_dim > 0)
    {
      e_linear (e, "unet.add_embedding.linear_1", T, u->projection_class_embeddings_input_dim, TRUE);
      e_linear (e, "unet.add_embedding.linear_2", T, T, TRUE);
    }
  for (int b = 0; b < n; b++)
    {
      gint64 prev = b ? C[b - 1] : C[0];
      for (int j = 0; j < L; j++)
        {
          p = g_strdup_printf ("unet.down_blocks.%d.resnets.%d", b, j);
          e_resnet (e, p, j ? C[b] : prev, C[b], T);
          g_free (p);
          if (u->level_has_attn[b])
            {
              p = g_strdup_printf ("unet.down_blocks.%d.attentions.%d", b, j);
              e_transformer (e, p, C[b], u->transformer_depth[b], u->context_dim, u->use_linear_projection);
              g_free (p);
            }
        }
      if (b < n - 1)
        {
          p = g_strdup_printf ("unet.down_blocks.%d.downsamplers.0.conv", b);
          e_conv (e, p, C[b], C[b], 3);
          g_free (p);
        }
    }
  gint64 cl = C[n - 1];
  e_resnet (e, "unet.mid_block.resnets.0", cl, cl, T);
  if (u->has_mid_attn)
    e_transformer (e, "unet.mid_block.attentions.0", cl, u->transformer_depth_mid, u->context_dim,
                   u->use_linear_projection);
  e_resnet (e, "unet.mid_block.resnets.1", cl, cl, T);
  /* diffusers UNet2DConditionModel: up block j works at level n-1-j; its
   * resnet r takes the previous output (r == 0: the previous block's) plus a
   * skip of this level's width, except the last one whose skip comes from the
   * level below (block_out_channels[level - 1], or [0]). */
  for (int j = 0; j < n; j++)
    {
      int lvl = n - 1 - j;
      gint64 out = C[lvl];
      gint64 prev_out = j == 0 ? C[n - 1] : C[lvl + 1];
      gint64 in_ch = C[lvl > 0 ? lvl - 1 : 0];
      for (int r = 0; r <= L; r++)
        {
          gint64 skip = r == L ? in_ch : out;
          gint64 rin = r == 0 ? prev_out : out;
          p = g_strdup_printf ("unet.up_blocks.%d.resnets.%d", j, r);
          e_resnet (e, p, rin + skip, out, T);
          g_free (p);
          if (u->level_has_attn[lvl])
            {
              p = g_strdup_printf ("unet.up_blocks.%d.attentions.%d", j, r);
              e_transformer (e, p, out, u->transformer_depth[lvl], u->context_dim, u->use_linear_projection);
              g_free (p);
            }
        }
      if (j < n - 1)
        {
          p = g_strdup_printf ("unet.up_blocks.%d.upsamplers.0.conv", j);
          e_conv (e, p, out, out, 3);
          g_free (p);
        }
    }
  e_norm (e, "unet.conv_norm_out", C[0]);
  e_conv (e, "unet.conv_out", u->out_channels, C[0], 3);
}

static void
e_vae_mid (Expect *e, const char *side, gint64 c)
{
  char *p;
  p = g_strdup_printf ("vae.%s.mid_block.resnets.0", side), e_resnet (e, p, c, c, 0), g_free (p);
  p = g_strdup_printf ("vae.%s.mid_block.resnets.1", side), e_resnet (e, p, c, c, 0), g_free (p);
  /* Single-head attention over H*W tokens: q/k/v/out as per-pixel linear maps. */
  p = g_strdup_printf ("vae.%s.mid_block.attentions.0.group_norm", side), e_norm (e, p, c), g_free (p);
  static const char *const proj[] = { "to_q", "to_k", "to_v", "to_out.0" };
  for (int i = 0; i < 4; i++)
    {
      p = g_strdup_printf ("vae.%s.mid_block.attentions.0.%s", side, proj[i]);
      e_linear (e, p, c, c, TRUE);
      g_free (p);
    }
}

static void
expect_vae (Expect *e, const SdVaeConfig *v)
{
  const int n = v->n_levels, L = v->layers_per_block;
  gint64 C[SD_MAX_LEVELS];
  for (int i = 0; i < n; i++)
    C[i] = v->block_out_channels[i];
  gint64 lat = v->latent_channels;
  char *p;
  if (v->has_encoder)
    {
      e_conv (e, "vae.encoder.conv_in", C[0], v->in_channels, 3);
      for (int b = 0; b < n; b++)
        {
          gint64 prev = b ? C[b - 1] : C[0];
          for (int j = 0; j < L; j++)
            {
              p = g_strdup_printf ("vae.encoder.down_blocks.%d.resnets.%d", b, j);
              e_resnet (e, p, j ? C[b] : prev, C[b], 0);
              g_free (p);
            }
          if (b < n - 1)
            {
              p = g_strdup_printf ("vae.encoder.down_blocks.%d.downsamplers.0.conv", b);
              e_conv (e, p, C[b], C[b], 3);
              g_free (p);
            }
        }
      e_vae_mid (e, "encoder", C[n - 1]);
      e_norm (e, "vae.encoder.conv_norm_out", C[n - 1]);
      e_conv (e, "vae.encoder.conv_out", 2 * lat, C[n - 1], 3); /* mean and log-variance */
      e_conv (e, "vae.quant_conv", 2 * lat, 2 * lat, 1);
    }
  if (v->has_decoder)
    {
      e_conv (e, "vae.post_quant_conv", lat, lat, 1);
      e_conv (e, "vae.decoder.conv_in", C[n - 1], lat, 3);
      e_vae_mid (e, "decoder", C[n - 1]);
      for (int j = 0; j < n; j++)
        {
          gint64 out = C[n - 1 - j];
          gint64 prev = j ? C[n - j] : C[n - 1];
          for (int r = 0; r <= L; r++)
            {
              p = g_strdup_printf ("vae.decoder.up_blocks.%d.resnets.%d", j, r);
              e_resnet (e, p, r ? out : prev, out, 0);
              g_free (p);
            }
          if (j < n - 1)
            {
              p = g_strdup_printf ("vae.decoder.up_blocks.%d.upsamplers.0.conv", j);
              e_conv (e, p, out, out, 3);
              g_free (p);
            }
        }
      e_norm (e, "vae.decoder.conv_norm_out", C[0]);
      e_conv (e, "vae.decoder.conv_out", v->out_channels, C[0], 3);
    }
}

static void
expect_text (Expect *e, const char *c, const SdTextEncoderConfig *t)
{
  gint64 H = t->hidden;
  char *p;
  p = g_strdup_printf ("%s.text_model.embeddings.token_embedding.weight", c);
  expect (e, p, 2, t->vocab_size, H, 0, 0);
  g_free (p);
  p = g_strdup_printf ("%s.text_model.embeddings.position_embedding.weight", c);
  expect (e, p, 2, t->max_positions, H, 0, 0);
  g_free (p);
  for (int l = 0; l < t->n_layers; l++)
    {
      char *lp = g_strdup_printf ("%s.text_model.encoder.layers.%d", c, l);
      static const char *const proj[] = { "q_proj", "k_proj", "v_proj", "out_proj" };
      for (int i = 0; i < 4; i++)
        {
          p = g_strdup_printf ("%s.self_attn.%s", lp, proj[i]);
          e_linear (e, p, H, H, TRUE);
          g_free (p);
        }
      p = g_strdup_printf ("%s.layer_norm1", lp), e_norm (e, p, H), g_free (p);
      p = g_strdup_printf ("%s.layer_norm2", lp), e_norm (e, p, H), g_free (p);
      p = g_strdup_printf ("%s.mlp.fc1", lp), e_linear (e, p, t->intermediate, H, TRUE), g_free (p);
      p = g_strdup_printf ("%s.mlp.fc2", lp), e_linear (e, p, H, t->intermediate, TRUE), g_free (p);
      g_free (lp);
    }
  p = g_strdup_printf ("%s.text_model.final_layer_norm", c);
  e_norm (e, p, H);
  g_free (p);
  if (t->projection_dim > 0)
    {
      p = g_strdup_printf ("%s.text_projection", c);
      e_linear (e, p, t->projection_dim, H, FALSE);
      g_free (p);
    }
}

static gboolean
unet_sane (const SdUNetConfig *u)
{
  if (u->in_channels <= 0 || u->in_channels > MAX_DIM || u->layers_per_block <= 0)
    return FALSE;
  for (int i = 0; i < u->n_levels; i++)
    if (u->block_out_channels[i] <= 0 || u->block_out_channels[i] > MAX_DIM)
      return FALSE;
  return TRUE;
}

gboolean
sd_model_detect (SdModel *m, const SdOpenOptions *opt, GError **error)
{
  if (m->comp[SD_COMP_UNET].present && !detect_unet (m, error))
    return FALSE;
  if (m->comp[SD_COMP_UNET].detected && !unet_sane (&m->config.unet))
    {
      g_ptr_array_add (m->misshaped, g_strdup ("unet: implausible sizes; configuration not detected"));
      m->comp[SD_COMP_UNET].detected = FALSE;
    }
  if (m->comp[SD_COMP_VAE].present)
    detect_vae (m);
  for (int ci = SD_COMP_TEXT_ENCODER; ci <= SD_COMP_TEXT_ENCODER_2; ci++)
    if (m->comp[ci].present)
      detect_text (m, ci, opt);
  decide_arch (m);
  if (m->comp[SD_COMP_UNET].detected)
    {
      resolve_unet_heads (m, opt);
      resolve_sdxl_embedding (m);
    }
  resolve_scheduler (m, opt);
  resolve_rest (m);

  Expect e = { m, g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL) };
  if (m->comp[SD_COMP_UNET].detected)
    expect_unet (&e, &m->config.unet);
  if (m->comp[SD_COMP_VAE].detected)
    expect_vae (&e, &m->config.vae);
  if (m->comp[SD_COMP_TEXT_ENCODER].detected)
    expect_text (&e, "text_encoder", &m->config.text_encoder);
  if (m->comp[SD_COMP_TEXT_ENCODER_2].detected)
    expect_text (&e, "text_encoder_2", &m->config.text_encoder_2);
  for (guint i = 0; i < m->sorted_names->len; i++)
    {
      const char *name = g_ptr_array_index (m->sorted_names, i);
      const SdModelTensor *t = g_hash_table_lookup (m->by_name, name);
      if (!m->comp[t->component].detected || g_hash_table_contains (e.expected, name))
        continue;
      g_autofree char *shape = sd_format_shape (t->info.shape, t->info.ndim);
      g_ptr_array_add (m->unknown, g_strdup_printf ("%s %s: not part of the detected %s", name, shape,
                                                    sd_component_names[t->component]));
    }
  g_hash_table_destroy (e.expected);
  return TRUE;
}

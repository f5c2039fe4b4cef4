/* name-map.c: every naming convention we read, converted to the internal one.
 *
 * The internal naming is diffusers' (module paths of UNet2DConditionModel,
 * AutoencoderKL, CLIPTextModel[WithProjection]) under a component prefix. The
 * conversions follow diffusers' single-file loader
 * (diffusers/loaders/single_file_utils.py: convert_ldm_unet_checkpoint,
 * convert_ldm_vae_checkpoint, convert_open_clip_checkpoint), whose output is
 * what a diffusers folder holds, so both forms of a model give identical tensors.
 *
 * A map is a table of stored-name prefixes (and exact names) -> internal prefix
 * plus an optional rename table for the rest of the name. Lookup takes the
 * longest matching prefix. The tables that depend on the architecture (UNet
 * input_blocks / output_blocks numbering, VAE level reversal, OpenCLIP layers)
 * are generated from counts taken from the stored names; all renames are the
 * static tables below.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "name-map.h"
#include "sd-error.h"
#include "sd-model.h"

/* ------------------------------------------------------------ rename tables */

typedef struct
{
  const char *from; /* prefix of the rest of the name (or the exact rest when exact) */
  const char *to[3]; /* to[1], to[2] only for SD_XFORM_SPLIT_QKV (k, v) */
  SdXform xform;
  gboolean exact;
} SdRename;

typedef struct
{
  const SdRename *rules;
  gsize n_rules;
  gboolean keep_unmatched; /* names matching no rule keep their rest unchanged */
} SdRenameTable;

#define TABLE(rules, keep) { rules, G_N_ELEMENTS (rules), keep }

/* LDM ResBlock -> diffusers ResnetBlock2D (UNet). */
static const SdRename unet_resnet_rules[] = {
  { "in_layers.0.", { "norm1." } },
  { "in_layers.2.", { "conv1." } },
  { "emb_layers.1.", { "time_emb_proj." } },
  { "out_layers.0.", { "norm2." } },
  { "out_layers.3.", { "conv2." } },
  { "skip_connection.", { "conv_shortcut." } },
};
static const SdRenameTable unet_resnet = TABLE (unet_resnet_rules, FALSE);

/* LDM VAE ResnetBlock -> diffusers ResnetBlock2D (no time embedding). */
static const SdRename vae_resnet_rules[] = {
  { "norm1.", { "norm1." } },
  { "conv1.", { "conv1." } },
  { "norm2.", { "norm2." } },
  { "conv2.", { "conv2." } },
  { "nin_shortcut.", { "conv_shortcut." } },
};
static const SdRenameTable vae_resnet = TABLE (vae_resnet_rules, FALSE);

/* LDM VAE AttnBlock (1x1 convs) -> diffusers Attention (linear). */
static const SdRename vae_attn_rules[] = {
  { "norm.", { "group_norm." } },
  { "q.", { "to_q." }, SD_XFORM_SQUEEZE_1X1 },
  { "k.", { "to_k." }, SD_XFORM_SQUEEZE_1X1 },
  { "v.", { "to_v." }, SD_XFORM_SQUEEZE_1X1 },
  { "proj_out.", { "to_out.0." }, SD_XFORM_SQUEEZE_1X1 },
};
static const SdRenameTable vae_attn = TABLE (vae_attn_rules, FALSE);

/* diffusers < 0.14 VAE attention names; some conversions also kept 1x1 convs. */
static const SdRename old_diffusers_vae_attn_rules[] = {
  { "query.", { "to_q." }, SD_XFORM_SQUEEZE_1X1 },
  { "key.", { "to_k." }, SD_XFORM_SQUEEZE_1X1 },
  { "value.", { "to_v." }, SD_XFORM_SQUEEZE_1X1 },
  { "proj_attn.", { "to_out.0." }, SD_XFORM_SQUEEZE_1X1 },
  { "to_q.", { "to_q." }, SD_XFORM_SQUEEZE_1X1 },
  { "to_k.", { "to_k." }, SD_XFORM_SQUEEZE_1X1 },
  { "to_v.", { "to_v." }, SD_XFORM_SQUEEZE_1X1 },
  { "to_out.0.", { "to_out.0." }, SD_XFORM_SQUEEZE_1X1 },
};
static const SdRenameTable old_diffusers_vae_attn = TABLE (old_diffusers_vae_attn_rules, TRUE);

/* OpenCLIP residual attention block -> transformers CLIPEncoderLayer. The packed
 * in_proj is concat(q, k, v) along dim 0 (torch.nn.MultiheadAttention). */
static const SdRename openclip_layer_rules[] = {
  { "ln_1.", { "layer_norm1." } },
  { "ln_2.", { "layer_norm2." } },
  { "mlp.c_fc.", { "mlp.fc1." } },
  { "mlp.c_proj.", { "mlp.fc2." } },
  { "attn.out_proj.", { "self_attn.out_proj." } },
  { "attn.in_proj_weight",
    { "self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight" },
    SD_XFORM_SPLIT_QKV, TRUE },
  { "attn.in_proj_bias",
    { "self_attn.q_proj.bias", "self_attn.k_proj.bias", "self_attn.v_proj.bias" },
    SD_XFORM_SPLIT_QKV, TRUE },
};
static const SdRenameTable openclip_layer = TABLE (openclip_layer_rules, FALSE);

/* OpenCLIP text tower outside the layers: exact names -> internal (after the
 * component prefix). text_projection is [hidden, proj] used as x @ P;
 * transformers' Linear weight is its transpose. */
static const SdRename openclip_top_rules[] = {
  { "token_embedding.weight", { "text_model.embeddings.token_embedding.weight" }, SD_XFORM_NONE, TRUE },
  { "positional_embedding", { "text_model.embeddings.position_embedding.weight" }, SD_XFORM_NONE, TRUE },
  { "ln_final.weight", { "text_model.final_layer_norm.weight" }, SD_XFORM_NONE, TRUE },
  { "ln_final.bias", { "text_model.final_layer_norm.bias" }, SD_XFORM_NONE, TRUE },
  { "text_projection", { "text_projection.weight" }, SD_XFORM_TRANSPOSE, TRUE },
};

/* LDM UNet names outside the numbered blocks. */
static const struct
{
  const char *from, *to;
  const SdRenameTable *sub;
} unet_fixed_prefixes[] = {
  { "time_embed.0.", "time_embedding.linear_1.", NULL },
  { "time_embed.2.", "time_embedding.linear_2.", NULL },
  { "label_emb.0.0.", "add_embedding.linear_1.", NULL }, /* SDXL pooled-text / time-id MLP */
  { "label_emb.0.2.", "add_embedding.linear_2.", NULL },
  { "input_blocks.0.0.", "conv_in.", NULL },
  { "middle_block.0.", "mid_block.resnets.0.", &unet_resnet },
  { "middle_block.1.", "mid_block.attentions.0.", NULL }, /* SpatialTransformer == Transformer2DModel names */
  { "middle_block.2.", "mid_block.resnets.1.", &unet_resnet },
  { "out.0.", "conv_norm_out.", NULL },
  { "out.2.", "conv_out.", NULL },
};

/* LDM VAE names outside the numbered levels, for "encoder." and "decoder.". */
static const struct
{
  const char *from, *to;
  const SdRenameTable *sub;
} vae_fixed_prefixes[] = {
  { "encoder.conv_in.", "encoder.conv_in.", NULL },
  { "encoder.conv_out.", "encoder.conv_out.", NULL },
  { "encoder.norm_out.", "encoder.conv_norm_out.", NULL },
  { "encoder.mid.block_1.", "encoder.mid_block.resnets.0.", &vae_resnet },
  { "encoder.mid.block_2.", "encoder.mid_block.resnets.1.", &vae_resnet },
  { "encoder.mid.attn_1.", "encoder.mid_block.attentions.0.", &vae_attn },
  { "decoder.conv_in.", "decoder.conv_in.", NULL },
  { "decoder.conv_out.", "decoder.conv_out.", NULL },
  { "decoder.norm_out.", "decoder.conv_norm_out.", NULL },
  { "decoder.mid.block_1.", "decoder.mid_block.resnets.0.", &vae_resnet },
  { "decoder.mid.block_2.", "decoder.mid_block.resnets.1.", &vae_resnet },
  { "decoder.mid.attn_1.", "decoder.mid_block.attentions.0.", &vae_attn },
  { "quant_conv.", "quant_conv.", NULL },
  { "post_quant_conv.", "post_quant_conv.", NULL },
};

/* Component prefixes of original single-file checkpoints (CompVis/Stability
 * ldm and sgm repositories). */
typedef enum
{
  NAMING_LDM_UNET,
  NAMING_LDM_VAE,
  NAMING_HF_CLIP,   /* transformers CLIPTextModel names below text_model. */
  NAMING_OPENCLIP,  /* open_clip text tower */
  NAMING_DIFFUSERS, /* already internal (a file saved from diffusers modules) */
} Naming;

static const struct
{
  const char *prefix;
  const char *component;
  Naming naming;
  const char *hf_to; /* NAMING_HF_CLIP: what the prefix becomes below the component */
} single_file_prefixes[] = {
  { "model.diffusion_model.", "unet", NAMING_LDM_UNET },
  { "first_stage_model.", "vae", NAMING_LDM_VAE },
  /* SD 1.x: transformers CLIPTextModel (ViT-L/14). Some merges lost the
   * "text_model." level of newer transformers versions. */
  { "cond_stage_model.transformer.text_model.", "text_encoder", NAMING_HF_CLIP, "text_model." },
  { "cond_stage_model.transformer.", "text_encoder", NAMING_HF_CLIP, "text_model." },
  /* SD 2.x: open_clip ViT-H/14. */
  { "cond_stage_model.model.", "text_encoder", NAMING_OPENCLIP },
  /* SDXL base: CLIP ViT-L (HF names) and open_clip ViT-bigG; the refiner has
   * only the open_clip one, as embedder 0. */
  { "conditioner.embedders.0.transformer.text_model.", "text_encoder", NAMING_HF_CLIP, "text_model." },
  { "conditioner.embedders.0.transformer.", "text_encoder", NAMING_HF_CLIP, "text_model." },
  { "conditioner.embedders.0.model.", "text_encoder_2", NAMING_OPENCLIP },
  { "conditioner.embedders.1.model.", "text_encoder_2", NAMING_OPENCLIP },
  /* Checkpoints saved from diffusers pipelines with component prefixes. */
  { "unet.", "unet", NAMING_DIFFUSERS },
  { "vae.", "vae", NAMING_DIFFUSERS },
  { "text_encoder.", "text_encoder", NAMING_DIFFUSERS },
  { "text_encoder_2.", "text_encoder_2", NAMING_DIFFUSERS },
};

/* SD 2.x conditions on the penultimate open_clip layer and never uses the last
 * one or the projection; diffusers' conversion drops them (its SD 2 text encoder
 * has 23 layers and no projection), and so do we, so both forms agree. */
static const char sd2_unused_reason[]
  = "unused by SD 2 (it conditions on the penultimate layer; diffusers drops it too)";

/* Known non-weight extras of original checkpoints: accepted and ignored. */
typedef enum
{
  MATCH_EXACT,
  MATCH_PREFIX,
  MATCH_LAST_COMPONENT, /* the last dotted component equals the pattern */
} MatchKind;

static const struct
{
  const char *pattern;
  MatchKind how;
  const char *reason;
} ignored_names[] = {
  /* DDPM schedule buffers of ldm's LatentDiffusion (register_schedule). */
  { "betas", MATCH_EXACT, "DDPM schedule buffer" },
  { "alphas_cumprod", MATCH_EXACT, "DDPM schedule buffer" },
  { "alphas_cumprod_prev", MATCH_EXACT, "DDPM schedule buffer" },
  { "sqrt_alphas_cumprod", MATCH_EXACT, "DDPM schedule buffer" },
  { "sqrt_one_minus_alphas_cumprod", MATCH_EXACT, "DDPM schedule buffer" },
  { "log_one_minus_alphas_cumprod", MATCH_EXACT, "DDPM schedule buffer" },
  { "sqrt_recip_alphas_cumprod", MATCH_EXACT, "DDPM schedule buffer" },
  { "sqrt_recipm1_alphas_cumprod", MATCH_EXACT, "DDPM schedule buffer" },
  { "posterior_variance", MATCH_EXACT, "DDPM schedule buffer" },
  { "posterior_log_variance_clipped", MATCH_EXACT, "DDPM schedule buffer" },
  { "posterior_mean_coef1", MATCH_EXACT, "DDPM schedule buffer" },
  { "posterior_mean_coef2", MATCH_EXACT, "DDPM schedule buffer" },
  { "lvlb_weights", MATCH_EXACT, "DDPM training buffer" },
  { "logvar", MATCH_EXACT, "DDPM training buffer" },
  { "model_ema.", MATCH_PREFIX, "EMA copy of the weights (training state)" },
  { "first_stage_model.loss.", MATCH_PREFIX, "VAE training loss (LPIPS / discriminator)" },
  { "loss.", MATCH_PREFIX, "VAE training loss (LPIPS / discriminator)" },
  { "position_ids", MATCH_LAST_COMPONENT, "CLIP position ids buffer (0..76)" },
  { "logit_scale", MATCH_LAST_COMPONENT, "CLIP logit scale (contrastive training only)" },
  { "attn_mask", MATCH_LAST_COMPONENT, "open_clip causal mask buffer" },
};

const char *
sd_name_map_ignored_reason (const char *stored)
{
  const char *last = strrchr (stored, '.');
  last = last ? last + 1 : stored;
  for (gsize i = 0; i < G_N_ELEMENTS (ignored_names); i++)
    {
      const char *p = ignored_names[i].pattern;
      gboolean hit = FALSE;
      switch (ignored_names[i].how)
        {
        case MATCH_EXACT:
          hit = strcmp (stored, p) == 0;
          break;
        case MATCH_PREFIX:
          hit = g_str_has_prefix (stored, p);
          break;
        case MATCH_LAST_COMPONENT:
          hit = strcmp (last, p) == 0;
          break;
        }
      if (hit)
        return ignored_names[i].reason;
    }
  return NULL;
}

/* ------------------------------------------------------------------- maps */

typedef struct
{
  char *to;                 /* internal prefix (or internal name for exact entries) */
  const SdRenameTable *sub; /* for the rest of the name; NULL = keep it */
  const char *component;
  SdXform xform;            /* exact entries */
  const char *ignore_reason; /* non-NULL: names under this entry are known extras */
  gboolean openclip;         /* an open_clip text tower */
} Entry;

struct _SdNameMap
{
  GHashTable *prefixes; /* stored prefix ending in '.' (or "") -> Entry */
  GHashTable *exact;    /* stored full name -> Entry */
};

static void
entry_free (gpointer p)
{
  Entry *e = p;
  g_free (e->to);
  g_free (e);
}

SdNameMap *
sd_name_map_new (void)
{
  SdNameMap *m = g_new0 (SdNameMap, 1);
  m->prefixes = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, entry_free);
  m->exact = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, entry_free);
  return m;
}

void
sd_name_map_free (SdNameMap *map)
{
  if (map == NULL)
    return;
  g_hash_table_destroy (map->prefixes);
  g_hash_table_destroy (map->exact);
  g_free (map);
}

static Entry *
add_prefix (SdNameMap *m, char *from /* owned */, const char *component, char *to /* owned */,
            const SdRenameTable *sub)
{
  Entry *e = g_new0 (Entry, 1);
  e->to = to;
  e->sub = sub;
  e->component = component;
  g_hash_table_replace (m->prefixes, from, e);
  return e;
}

static Entry *
add_exact (SdNameMap *m, char *from, const char *component, char *to, SdXform xform)
{
  Entry *e = g_new0 (Entry, 1);
  e->to = to;
  e->component = component;
  e->xform = xform;
  g_hash_table_replace (m->exact, from, e);
  return e;
}

static void
add_ignore_prefix (SdNameMap *m, char *from, const char *reason)
{
  Entry *e = g_new0 (Entry, 1);
  e->ignore_reason = reason;
  g_hash_table_replace (m->prefixes, from, e);
}

static void
add_ignore_exact (SdNameMap *m, char *from, const char *reason)
{
  Entry *e = g_new0 (Entry, 1);
  e->ignore_reason = reason;
  g_hash_table_replace (m->exact, from, e);
}

/* Parse "<digits>." at s (at most 4 digits); returns the index or -1 and sets
 * *after past the dot. */
static int
parse_index (const char *s, const char **after)
{
  int v = 0, n = 0;
  while (g_ascii_isdigit (s[n]) && n < 5)
    {
      v = v * 10 + (s[n] - '0');
      n++;
    }
  if (n == 0 || n > 4 || s[n] != '.')
    return -1;
  if (n > 1 && s[0] == '0')
    return -1; /* "01." is not how any framework numbers modules */
  *after = s + n + 1;
  return v;
}

#define MAX_INDEX 1024

/* ------------------------------------------------------------------ UNet */

static gboolean
add_ldm_unet (SdNameMap *m, const char *prefix, const char *const *names, guint n, GError **error)
{
  gsize plen = strlen (prefix);
  int max_in = -1, max_out = -1;
  gboolean down_at[MAX_INDEX] = { FALSE };
  int n_down = 0;

  for (guint k = 0; k < n; k++)
    {
      if (strncmp (names[k], prefix, plen) != 0)
        continue;
      const char *r = names[k] + plen, *a, *b;
      int i, j;
      if (g_str_has_prefix (r, "input_blocks.") && (i = parse_index (r + 13, &a)) >= 0
          && i < MAX_INDEX)
        {
          max_in = MAX (max_in, i);
          if ((j = parse_index (a, &b)) == 0 && g_str_has_prefix (b, "op.") && !down_at[i])
            {
              down_at[i] = TRUE;
              n_down++;
            }
        }
      else if (g_str_has_prefix (r, "output_blocks.") && (i = parse_index (r + 14, &a)) >= 0
               && i < MAX_INDEX)
        max_out = MAX (max_out, i);
    }
  if (max_in < 0)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_UNSUPPORTED,
                   "%s* has no input_blocks: not a Stable Diffusion 1/2/XL UNet "
                   "(SD3, Flux and other transformer models are not supported)",
                   prefix);
      return FALSE;
    }
  /* input_blocks = conv_in + per level L resnet(+attention) blocks + one
   * downsampler on every level but the last. */
  int n_in = max_in + 1;
  int levels = n_down + 1;
  int per = n_in - 1 - n_down;
  int L = levels > 0 && per > 0 && per % levels == 0 ? per / levels : 0;
  gboolean ok = L > 0 && levels <= SD_MAX_LEVELS && L <= 16;
  for (int b = 0; ok && b < levels - 1; b++)
    ok = down_at[1 + b * (L + 1) + L];
  if (ok && max_out >= 0)
    ok = max_out + 1 == levels * (L + 1);
  if (!ok)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_UNSUPPORTED,
                   "%s* block layout not understood: %d input blocks with %d downsamplers, %d output "
                   "blocks (expected 1 + levels x (resnets per level + 1) - 1 input blocks and "
                   "levels x (resnets per level + 1) output blocks, at most %d levels)",
                   prefix, n_in, n_down, max_out + 1, SD_MAX_LEVELS);
      return FALSE;
    }

  const char *c = "unet";
  for (gsize i = 0; i < G_N_ELEMENTS (unet_fixed_prefixes); i++)
    add_prefix (m, g_strconcat (prefix, unet_fixed_prefixes[i].from, NULL), c,
                g_strconcat ("unet.", unet_fixed_prefixes[i].to, NULL), unet_fixed_prefixes[i].sub);
  /* diffusers' numbering (convert_ldm_unet_checkpoint): input block i >= 1 is
   * level (i-1) / (L+1), position (i-1) % (L+1); position L is the downsampler. */
  for (int b = 0; b < levels; b++)
    {
      for (int j = 0; j < L; j++)
        {
          int i = 1 + b * (L + 1) + j;
          add_prefix (m, g_strdup_printf ("%sinput_blocks.%d.0.", prefix, i), c,
                      g_strdup_printf ("unet.down_blocks.%d.resnets.%d.", b, j), &unet_resnet);
          add_prefix (m, g_strdup_printf ("%sinput_blocks.%d.1.", prefix, i), c,
                      g_strdup_printf ("unet.down_blocks.%d.attentions.%d.", b, j), NULL);
        }
      if (b < levels - 1)
        add_prefix (m, g_strdup_printf ("%sinput_blocks.%d.0.op.", prefix, 1 + b * (L + 1) + L), c,
                    g_strdup_printf ("unet.down_blocks.%d.downsamplers.0.conv.", b), NULL);
    }
  /* Output block i is up level i / (L+1), position i % (L+1): .0 the resnet,
   * .1 the attention, and the upsampler conv at .1 (no attention) or .2 after
   * the last position. Attentions have no direct child named "conv", so the
   * longer ".1.conv." prefix is unambiguous. */
  for (int u = 0; u < levels; u++)
    for (int r = 0; r <= L; r++)
      {
        int i = u * (L + 1) + r;
        add_prefix (m, g_strdup_printf ("%soutput_blocks.%d.0.", prefix, i), c,
                    g_strdup_printf ("unet.up_blocks.%d.resnets.%d.", u, r), &unet_resnet);
        add_prefix (m, g_strdup_printf ("%soutput_blocks.%d.1.", prefix, i), c,
                    g_strdup_printf ("unet.up_blocks.%d.attentions.%d.", u, r), NULL);
        if (r == L && u < levels - 1)
          {
            add_prefix (m, g_strdup_printf ("%soutput_blocks.%d.1.conv.", prefix, i), c,
                        g_strdup_printf ("unet.up_blocks.%d.upsamplers.0.conv.", u), NULL);
            add_prefix (m, g_strdup_printf ("%soutput_blocks.%d.2.conv.", prefix, i), c,
                        g_strdup_printf ("unet.up_blocks.%d.upsamplers.0.conv.", u), NULL);
          }
      }
  return TRUE;
}

/* ------------------------------------------------------------------- VAE */

gboolean
sd_name_map_add_ldm_vae (SdNameMap *m, const char *prefix, const char *const *names, guint n,
                         GError **error)
{
  gsize plen = strlen (prefix);
  int enc_levels = 0, enc_blocks = 0, dec_levels = 0, dec_blocks = 0;
  for (guint k = 0; k < n; k++)
    {
      if (strncmp (names[k], prefix, plen) != 0)
        continue;
      const char *r = names[k] + plen, *a, *b;
      int i, j;
      if (g_str_has_prefix (r, "encoder.down.") && (i = parse_index (r + 13, &a)) >= 0)
        {
          enc_levels = MAX (enc_levels, i + 1);
          if (g_str_has_prefix (a, "block.") && (j = parse_index (a + 6, &b)) >= 0)
            enc_blocks = MAX (enc_blocks, j + 1);
        }
      else if (g_str_has_prefix (r, "decoder.up.") && (i = parse_index (r + 11, &a)) >= 0)
        {
          dec_levels = MAX (dec_levels, i + 1);
          if (g_str_has_prefix (a, "block.") && (j = parse_index (a + 6, &b)) >= 0)
            dec_blocks = MAX (dec_blocks, j + 1);
        }
    }
  if (enc_levels > SD_MAX_LEVELS || dec_levels > SD_MAX_LEVELS || enc_blocks > 16 || dec_blocks > 16)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_UNSUPPORTED,
                   "%s* VAE layout not understood: %d encoder / %d decoder levels with up to %d / %d "
                   "resnets (at most %d levels)",
                   prefix, enc_levels, dec_levels, enc_blocks, dec_blocks, SD_MAX_LEVELS);
      return FALSE;
    }

  const char *c = "vae";
  for (gsize i = 0; i < G_N_ELEMENTS (vae_fixed_prefixes); i++)
    add_prefix (m, g_strconcat (prefix, vae_fixed_prefixes[i].from, NULL), c,
                g_strconcat ("vae.", vae_fixed_prefixes[i].to, NULL), vae_fixed_prefixes[i].sub);
  for (int b = 0; b < enc_levels; b++)
    {
      for (int j = 0; j < enc_blocks; j++)
        add_prefix (m, g_strdup_printf ("%sencoder.down.%d.block.%d.", prefix, b, j), c,
                    g_strdup_printf ("vae.encoder.down_blocks.%d.resnets.%d.", b, j), &vae_resnet);
      add_prefix (m, g_strdup_printf ("%sencoder.down.%d.downsample.conv.", prefix, b), c,
                  g_strdup_printf ("vae.encoder.down_blocks.%d.downsamplers.0.conv.", b), NULL);
    }
  /* ldm numbers decoder levels from the lowest resolution up (up.0 is the last
   * to run); diffusers numbers them in execution order. */
  for (int b = 0; b < dec_levels; b++)
    {
      int u = dec_levels - 1 - b;
      for (int j = 0; j < dec_blocks; j++)
        add_prefix (m, g_strdup_printf ("%sdecoder.up.%d.block.%d.", prefix, b, j), c,
                    g_strdup_printf ("vae.decoder.up_blocks.%d.resnets.%d.", u, j), &vae_resnet);
      add_prefix (m, g_strdup_printf ("%sdecoder.up.%d.upsample.conv.", prefix, b), c,
                  g_strdup_printf ("vae.decoder.up_blocks.%d.upsamplers.0.conv.", u), NULL);
    }
  return TRUE;
}

/* ---------------------------------------------------------- text encoders */

static void
add_openclip (SdNameMap *m, const char *prefix, const char *component, gboolean drop_last,
              const char *const *names, guint n)
{
  gsize plen = strlen (prefix);
  int layers = 0;
  for (guint k = 0; k < n; k++)
    {
      const char *a;
      int i;
      if (strncmp (names[k], prefix, plen) == 0
          && g_str_has_prefix (names[k] + plen, "transformer.resblocks.")
          && (i = parse_index (names[k] + plen + 22, &a)) >= 0)
        layers = MAX (layers, i + 1);
    }
  for (gsize i = 0; i < G_N_ELEMENTS (openclip_top_rules); i++)
    {
      const SdRename *r = &openclip_top_rules[i];
      char *from = g_strconcat (prefix, r->from, NULL);
      if (drop_last && r->xform == SD_XFORM_TRANSPOSE)
        add_ignore_exact (m, from, sd2_unused_reason);
      else
        add_exact (m, from, component, g_strconcat (component, ".", r->to[0], NULL), r->xform)->openclip = TRUE;
    }
  for (int i = 0; i < layers; i++)
    {
      char *from = g_strdup_printf ("%stransformer.resblocks.%d.", prefix, i);
      if (drop_last && i == layers - 1)
        add_ignore_prefix (m, from, sd2_unused_reason);
      else
        add_prefix (m, from, component,
                    g_strdup_printf ("%s.text_model.encoder.layers.%d.", component, i), &openclip_layer)
          ->openclip = TRUE;
    }
}

/* -------------------------------------------------------------- diffusers */

void
sd_name_map_add_diffusers (SdNameMap *m, const char *component, const char *prefix)
{
  const char *c = NULL;
  static const char *const components[] = { "unet", "vae", "text_encoder", "text_encoder_2" };
  for (gsize i = 0; i < G_N_ELEMENTS (components); i++)
    if (strcmp (component, components[i]) == 0)
      c = components[i];
  g_return_if_fail (c != NULL);
  add_prefix (m, g_strdup (prefix), c, g_strconcat (c, ".", NULL), NULL);
  if (strcmp (c, "vae") == 0)
    {
      add_prefix (m, g_strconcat (prefix, "encoder.mid_block.attentions.0.", NULL), c,
                  g_strdup ("vae.encoder.mid_block.attentions.0."), &old_diffusers_vae_attn);
      add_prefix (m, g_strconcat (prefix, "decoder.mid_block.attentions.0.", NULL), c,
                  g_strdup ("vae.decoder.mid_block.attentions.0."), &old_diffusers_vae_attn);
    }
}

/* ---------------------------------------------------------- single files */

gboolean
sd_name_map_add_single_file (SdNameMap *m, const char *const *names, guint n, guint *n_recognised,
                             GError **error)
{
  gboolean present[G_N_ELEMENTS (single_file_prefixes)] = { FALSE };
  guint recognised = 0;
  for (guint k = 0; k < n; k++)
    {
      gsize best = 0;
      int which = -1;
      for (gsize i = 0; i < G_N_ELEMENTS (single_file_prefixes); i++)
        {
          gsize l = strlen (single_file_prefixes[i].prefix);
          if (l > best && strncmp (names[k], single_file_prefixes[i].prefix, l) == 0)
            {
              best = l;
              which = (int) i;
            }
        }
      if (which >= 0)
        {
          present[which] = TRUE;
          recognised++;
        }
    }
  if (n_recognised)
    *n_recognised = recognised;

  for (gsize i = 0; i < G_N_ELEMENTS (single_file_prefixes); i++)
    {
      if (!present[i])
        continue;
      const char *p = single_file_prefixes[i].prefix;
      const char *c = single_file_prefixes[i].component;
      switch (single_file_prefixes[i].naming)
        {
        case NAMING_LDM_UNET:
          if (!add_ldm_unet (m, p, names, n, error))
            return FALSE;
          break;
        case NAMING_LDM_VAE:
          if (!sd_name_map_add_ldm_vae (m, p, names, n, error))
            return FALSE;
          break;
        case NAMING_HF_CLIP:
          add_prefix (m, g_strdup (p), c,
                      g_strconcat (c, ".", single_file_prefixes[i].hf_to, NULL), NULL);
          break;
        case NAMING_OPENCLIP:
          /* cond_stage_model.model is SD 2's encoder: drop what SD 2 never uses. */
          add_openclip (m, p, c, g_str_has_prefix (p, "cond_stage_model."), names, n);
          break;
        case NAMING_DIFFUSERS:
          sd_name_map_add_diffusers (m, c, p);
          break;
        }
    }
  return TRUE;
}

const char *
sd_name_map_classify_bare (const char *const *names, guint n, gboolean *ldm_vae)
{
  gboolean conv_in = FALSE, down_blocks = FALSE, time_emb = FALSE;
  gboolean vae_diffusers = FALSE, vae_ldm = FALSE, vae_conv = FALSE;
  gboolean clip = FALSE, projection = FALSE;
  for (guint k = 0; k < n; k++)
    {
      const char *s = names[k];
      if (strcmp (s, "conv_in.weight") == 0)
        conv_in = TRUE;
      else if (g_str_has_prefix (s, "down_blocks."))
        down_blocks = TRUE;
      else if (g_str_has_prefix (s, "time_embedding."))
        time_emb = TRUE;
      else if (g_str_has_prefix (s, "encoder.down_blocks.") || g_str_has_prefix (s, "decoder.up_blocks."))
        vae_diffusers = TRUE;
      else if (g_str_has_prefix (s, "encoder.down.") || g_str_has_prefix (s, "decoder.up."))
        vae_ldm = TRUE;
      else if (strcmp (s, "encoder.conv_in.weight") == 0 || strcmp (s, "decoder.conv_in.weight") == 0)
        vae_conv = TRUE;
      else if (strcmp (s, "text_model.embeddings.token_embedding.weight") == 0)
        clip = TRUE;
      else if (strcmp (s, "text_projection.weight") == 0)
        projection = TRUE;
    }
  *ldm_vae = FALSE;
  if (conv_in && down_blocks && time_emb)
    return "unet";
  if (vae_conv && vae_diffusers)
    return "vae";
  if (vae_conv && vae_ldm)
    {
      *ldm_vae = TRUE;
      return "vae";
    }
  if (clip)
    return projection ? "text_encoder_2" : "text_encoder";
  return NULL;
}

/* ----------------------------------------------------------------- lookup */

void
sd_name_result_clear (SdNameResult *r)
{
  for (int i = 0; i < 3; i++)
    g_clear_pointer (&r->names[i], g_free);
  memset (r, 0, sizeof *r);
}

static void
set_unknown (SdNameResult *out)
{
  out->kind = SD_NAME_UNKNOWN;
}

void
sd_name_map_apply (SdNameMap *m, const char *stored, SdNameResult *out)
{
  memset (out, 0, sizeof *out);

  const char *why = sd_name_map_ignored_reason (stored);
  if (why)
    {
      out->kind = SD_NAME_IGNORED;
      out->reason = why;
      return;
    }

  Entry *e = g_hash_table_lookup (m->exact, stored);
  if (e)
    {
      if (e->ignore_reason)
        {
          out->kind = SD_NAME_IGNORED;
          out->reason = e->ignore_reason;
          return;
        }
      out->kind = SD_NAME_MAPPED;
      out->component = e->component;
      out->openclip = e->openclip;
      out->names[0] = g_strdup (e->to);
      out->n_names = 1;
      out->xform = e->xform;
      return;
    }

  /* Longest prefix ending in '.', down to the empty prefix. */
  char *buf = g_strdup (stored);
  gsize len = strlen (buf);
  const char *rest = NULL;
  for (gssize i = (gssize) len - 1; i >= -1; i--)
    {
      if (i >= 0 && buf[i] != '.')
        continue;
      char saved = buf[i + 1];
      buf[i + 1] = '\0';
      e = g_hash_table_lookup (m->prefixes, buf);
      buf[i + 1] = saved;
      if (e)
        {
          rest = stored + i + 1;
          break;
        }
    }
  g_free (buf);
  if (e == NULL)
    {
      set_unknown (out);
      return;
    }
  if (e->ignore_reason)
    {
      out->kind = SD_NAME_IGNORED;
      out->reason = e->ignore_reason;
      return;
    }
  if (*rest == '\0')
    {
      set_unknown (out); /* a bare prefix is not a tensor name */
      return;
    }

  out->component = e->component;
  out->openclip = e->openclip;
  if (e->sub == NULL)
    {
      out->kind = SD_NAME_MAPPED;
      out->names[0] = g_strconcat (e->to, rest, NULL);
      out->n_names = 1;
      return;
    }
  for (gsize i = 0; i < e->sub->n_rules; i++)
    {
      const SdRename *r = &e->sub->rules[i];
      gboolean hit = r->exact ? strcmp (rest, r->from) == 0 : g_str_has_prefix (rest, r->from);
      if (!hit)
        continue;
      const char *tail = rest + strlen (r->from);
      out->kind = SD_NAME_MAPPED;
      out->xform = r->xform;
      out->n_names = r->xform == SD_XFORM_SPLIT_QKV ? 3 : 1;
      for (int p = 0; p < out->n_names; p++)
        out->names[p] = g_strconcat (e->to, r->to[p], tail, NULL);
      return;
    }
  if (e->sub->keep_unmatched)
    {
      out->kind = SD_NAME_MAPPED;
      out->names[0] = g_strconcat (e->to, rest, NULL);
      out->n_names = 1;
      return;
    }
  set_unknown (out);
}

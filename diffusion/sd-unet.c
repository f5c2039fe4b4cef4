/* sd-unet.c: UNet2DConditionModel (diffusers) for SD 1.x / 2.x / SDXL, with
 * 4- or 9-channel input, built from the detected configuration.
 *
 * Module tree (diffusers names, which are also the internal weight names):
 *   time_embedding.linear_1/2, add_embedding.linear_1/2 (SDXL), conv_in,
 *   down_blocks.i.{resnets.j, attentions.j, downsamplers.0.conv},
 *   mid_block.{resnets.0, attentions.0, resnets.1},
 *   up_blocks.i.{resnets.j, attentions.j, upsamplers.0.conv},
 *   conv_norm_out, conv_out.
 */
#include "config.h"

#include <math.h>
#include <string.h>

#include "sd-error.h"
#include "sd-nets-private.h"

struct _SdUNet
{
  IvkContext *ctx; /* owned */
  SdModel *model;  /* borrowed */
  SdUNetConfig cfg;
  IvkDType act;
  SdWeights *w;    /* owned */
  GHashTable *graphs; /* key -> SdNetGraph* */
};

enum
{
  IN_SAMPLE,
  IN_TEMB,    /* [B, time_proj_dim] sinusoidal features (CPU) */
  IN_CONTEXT,
  IN_ADD,     /* SDXL: [B, pooled_dim + n_time_ids * addition_time_embed_dim] */
};

typedef struct
{
  SdUNet *u;
  SdNetGraph *ng;
  IvkGraph *g;
  IvkTensor *emb_silu; /* silu(time embedding) [B, E], shared by every resnet */
  IvkTensor *context;  /* [B, T, Cctx] */
} Build;

SdUNet *
sd_unet_new (IvkContext *ctx, SdModel *model, gboolean fp16, GError **error)
{
  const SdUNetConfig *cfg = &sd_model_get_config (model)->unet;
  if (cfg->n_levels <= 0 || cfg->n_levels > SD_MAX_LEVELS || cfg->block_out_channels[0] <= 0)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_UNSUPPORTED, "the model has no usable UNet");
      return NULL;
    }
  SdUNet *u = g_new0 (SdUNet, 1);
  u->ctx = ivk_context_ref (ctx);
  u->model = model;
  u->cfg = *cfg;
  u->act = fp16 && ivk_context_get_info (ctx)->use_fp16 ? IVK_F16 : IVK_F32;
  u->w = sd_weights_new (ctx, model, "unet.", u->act);
  u->graphs = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                     (GDestroyNotify) sd_net_graph_free);
  return u;
}

void
sd_unet_free (SdUNet *u)
{
  if (!u)
    return;
  g_hash_table_destroy (u->graphs);
  sd_weights_free (u->w);
  ivk_context_unref (u->ctx);
  g_free (u);
}

const SdUNetConfig *
sd_unet_get_config (SdUNet *u)
{
  return &u->cfg;
}

guint64
sd_unet_get_weight_bytes (SdUNet *u)
{
  return sd_weights_get_bytes (u->w);
}

static IvkTensor *
W (Build *b, const char *prefix, const char *name)
{
  return sd_weights_getf (b->u->w, b->g, "%s%s", prefix, name);
}

/* ResnetBlock2D: GN -> SiLU -> conv3x3 -> + proj(SiLU(emb)) -> GN -> SiLU ->
 * conv3x3 -> + shortcut(x). */
static IvkTensor *
resnet (Build *b, IvkTensor *x, const char *p)
{
  IvkGraph *g = b->g;
  const SdUNetConfig *cfg = &b->u->cfg;
  if (!x)
    return NULL;
  gint64 cout = 0;
  IvkTensor *w1 = W (b, p, "conv1.weight");
  if (w1)
    cout = w1->shape[0];
  IvkTensor *h = ivk_group_norm (g, x, W (b, p, "norm1.weight"), W (b, p, "norm1.bias"),
                                 cfg->norm_groups, cfg->norm_eps, TRUE);
  h = ivk_conv2d (g, h, w1, W (b, p, "conv1.bias"), NULL);           /* [B, Co, H, W] */
  IvkTensor *t = ivk_linear (g, b->emb_silu, W (b, p, "time_emb_proj.weight"),
                             W (b, p, "time_emb_proj.bias"));       /* [B, Co] */
  gint64 ts[4] = { x->shape[0], cout, 1, 1 };
  h = ivk_add (g, h, ivk_reshape (g, t, 4, ts));
  h = ivk_group_norm (g, h, W (b, p, "norm2.weight"), W (b, p, "norm2.bias"), cfg->norm_groups,
                      cfg->norm_eps, TRUE);
  IvkTensor *shortcut = x;
  char sc[256];
  g_snprintf (sc, sizeof sc, "%sconv_shortcut.weight", p);
  if (sd_weights_has (b->u->w, sc))
    shortcut = ivk_conv2d (g, x, W (b, p, "conv_shortcut.weight"), W (b, p, "conv_shortcut.bias"), NULL);
  IvkConvParams cp = { .stride = 1, .pad_top = 1, .pad_bottom = 1, .pad_left = 1, .pad_right = 1,
                       .residual = shortcut };
  return ivk_conv2d (g, h, W (b, p, "conv2.weight"), W (b, p, "conv2.bias"), &cp);
}

/* q/k/v (and k/v) projections stacked once into one weight */
static IvkTensor *
stacked (Build *b, const char *p, const char *const *parts, guint n)
{
  char names[3][256];
  const char *ptr[3];
  for (guint i = 0; i < n; i++)
    {
      g_snprintf (names[i], sizeof names[i], "%s%s", p, parts[i]);
      ptr[i] = names[i];
    }
  return sd_weights_get_stacked (b->u->w, b->g, ptr, n);
}

/* BasicTransformerBlock on tokens x[B, N, C] */
static IvkTensor *
transformer_block (Build *b, IvkTensor *x, const char *p, int heads)
{
  IvkGraph *g = b->g;
  if (!x)
    return NULL;
  gint64 C = x->shape[2];
  IvkAttentionParams ap = { .heads = heads, .scale = 1.0f / sqrtf ((float) (C / heads)) };
  char q[256];

  /* self-attention: one GEMM for q, k, v */
  IvkTensor *h = ivk_layer_norm (g, x, W (b, p, "norm1.weight"), W (b, p, "norm1.bias"), 1e-5f);
  static const char *const qkv_names[3] = { "attn1.to_q.weight", "attn1.to_k.weight", "attn1.to_v.weight" };
  IvkTensor *qkv = ivk_linear (g, h, stacked (b, p, qkv_names, 3), NULL);
  IvkTensor *a = ivk_attention (g, ivk_slice_columns (g, qkv, 0, C), ivk_slice_columns (g, qkv, C, C),
                                ivk_slice_columns (g, qkv, 2 * C, C), &ap);
  x = ivk_matmul (g, a, W (b, p, "attn1.to_out.0.weight"), W (b, p, "attn1.to_out.0.bias"), x, 1.0f,
                  IVK_MATMUL_TRANS_B);

  /* cross-attention: queries from x, keys/values from the text context */
  h = ivk_layer_norm (g, x, W (b, p, "norm2.weight"), W (b, p, "norm2.bias"), 1e-5f);
  IvkTensor *qq = ivk_linear (g, h, W (b, p, "attn2.to_q.weight"), NULL);
  static const char *const kv_names[2] = { "attn2.to_k.weight", "attn2.to_v.weight" };
  IvkTensor *kv = ivk_linear (g, b->context, stacked (b, p, kv_names, 2), NULL);
  a = ivk_attention (g, qq, ivk_slice_columns (g, kv, 0, C), ivk_slice_columns (g, kv, C, C), &ap);
  x = ivk_matmul (g, a, W (b, p, "attn2.to_out.0.weight"), W (b, p, "attn2.to_out.0.bias"), x, 1.0f,
                  IVK_MATMUL_TRANS_B);

  /* feed-forward: GEGLU */
  h = ivk_layer_norm (g, x, W (b, p, "norm3.weight"), W (b, p, "norm3.bias"), 1e-5f);
  h = ivk_linear (g, h, W (b, p, "ff.net.0.proj.weight"), W (b, p, "ff.net.0.proj.bias"));
  h = ivk_geglu (g, h);
  g_snprintf (q, sizeof q, "%sff.net.2.", p);
  x = ivk_matmul (g, h, W (b, q, "weight"), W (b, q, "bias"), x, 1.0f, IVK_MATMUL_TRANS_B);
  return x;
}

/* Transformer2DModel: GN -> proj_in -> blocks -> proj_out -> + input */
static IvkTensor *
transformer (Build *b, IvkTensor *x, const char *p, int heads, int depth)
{
  IvkGraph *g = b->g;
  const SdUNetConfig *cfg = &b->u->cfg;
  if (!x)
    return NULL;
  gint64 B = x->shape[0], C = x->shape[1], H = x->shape[2], Wd = x->shape[3];
  gint64 tok[3] = { B, C, H * Wd };
  static const int to_tokens[3] = { 0, 2, 1 };
  IvkTensor *h = ivk_group_norm (g, x, W (b, p, "norm.weight"), W (b, p, "norm.bias"), cfg->norm_groups,
                                 1e-6f, FALSE);
  if (cfg->use_linear_projection)
    {
      h = ivk_permute (g, ivk_reshape (g, h, 3, tok), to_tokens); /* [B, HW, C] */
      h = ivk_linear (g, h, W (b, p, "proj_in.weight"), W (b, p, "proj_in.bias"));
    }
  else
    {
      h = ivk_conv2d (g, h, W (b, p, "proj_in.weight"), W (b, p, "proj_in.bias"), NULL);
      h = ivk_permute (g, ivk_reshape (g, h, 3, tok), to_tokens);
    }
  for (int d = 0; d < depth; d++)
    {
      char bp[256];
      g_snprintf (bp, sizeof bp, "%stransformer_blocks.%d.", p, d);
      h = transformer_block (b, h, bp, heads);
    }
  gint64 img[4] = { B, C, H, Wd };
  static const int to_channels[3] = { 0, 2, 1 };
  if (cfg->use_linear_projection)
    {
      h = ivk_linear (g, h, W (b, p, "proj_out.weight"), W (b, p, "proj_out.bias"));
      h = ivk_reshape (g, ivk_permute (g, h, to_channels), 4, img);
      return ivk_add (g, h, x);
    }
  h = ivk_reshape (g, ivk_permute (g, h, to_channels), 4, img);
  IvkConvParams cp = { .stride = 1, .residual = x };
  return ivk_conv2d (g, h, W (b, p, "proj_out.weight"), W (b, p, "proj_out.bias"), &cp);
}

static SdNetGraph *
build (SdUNet *u, int batch, int height, int width, int ctx_len, gboolean debug)
{
  const SdUNetConfig *cfg = &u->cfg;
  Build b = { .u = u };
  b.ng = sd_net_graph_new (u->ctx, "unet", debug);
  b.g = b.ng->g;
  IvkGraph *g = b.g;
  SdNetGraph *ng = b.ng;
  char p[128];

  gint64 ss[4] = { batch, cfg->in_channels, height, width };
  IvkTensor *sample = ng->in[IN_SAMPLE] = ivk_graph_input (g, "sample", u->act, 4, ss);
  gint64 ts[2] = { batch, cfg->time_proj_dim };
  IvkTensor *temb = ng->in[IN_TEMB] = ivk_graph_input (g, "time_proj", u->act, 2, ts);
  gint64 cs[3] = { batch, ctx_len, cfg->context_dim };
  b.context = ng->in[IN_CONTEXT] = ivk_graph_input (g, "context", u->act, 3, cs);
  sd_net_tap (ng, "debug.time_proj", temb);

  /* time embedding: linear_1 -> SiLU -> linear_2 */
  IvkTensor *emb = ivk_linear (g, temb, W (&b, "time_embedding.", "linear_1.weight"),
                               W (&b, "time_embedding.", "linear_1.bias"));
  emb = ivk_linear (g, ivk_silu (g, emb), W (&b, "time_embedding.", "linear_2.weight"),
                    W (&b, "time_embedding.", "linear_2.bias"));
  sd_net_tap (ng, "debug.time_embedding", emb);
  if (cfg->addition_time_embed_dim > 0)
    {
      /* SDXL text_time: add_embedding(concat(text_embeds, sinusoids(time_ids))) */
      gint64 as[2] = { batch, cfg->projection_class_embeddings_input_dim };
      IvkTensor *add = ng->in[IN_ADD] = ivk_graph_input (g, "add_embeds", u->act, 2, as);
      IvkTensor *aug = ivk_linear (g, add, W (&b, "add_embedding.", "linear_1.weight"),
                                   W (&b, "add_embedding.", "linear_1.bias"));
      aug = ivk_linear (g, ivk_silu (g, aug), W (&b, "add_embedding.", "linear_2.weight"),
                        W (&b, "add_embedding.", "linear_2.bias"));
      sd_net_tap (ng, "debug.add_embedding", aug);
      emb = ivk_add (g, emb, aug);
    }
  b.emb_silu = ivk_silu (g, emb);

  IvkTensor *h = ivk_conv2d (g, sample, W (&b, "conv_in.", "weight"), W (&b, "conv_in.", "bias"), NULL);
  sd_net_tap (ng, "debug.conv_in", h);
  IvkTensor *skips[3 * SD_MAX_LEVELS + 2];
  int n_skips = 0;
  skips[n_skips++] = h;
  for (int i = 0; i < cfg->n_levels; i++)
    {
      for (int j = 0; j < cfg->layers_per_block; j++)
        {
          g_snprintf (p, sizeof p, "down_blocks.%d.resnets.%d.", i, j);
          h = resnet (&b, h, p);
          if (cfg->level_has_attn[i])
            {
              g_snprintf (p, sizeof p, "down_blocks.%d.attentions.%d.", i, j);
              h = transformer (&b, h, p, cfg->num_heads[i], cfg->transformer_depth[i]);
            }
          skips[n_skips++] = h;
        }
      if (i < cfg->n_levels - 1)
        {
          g_snprintf (p, sizeof p, "down_blocks.%d.downsamplers.0.conv.", i);
          IvkConvParams cp = { .stride = 2, .pad_top = 1, .pad_bottom = 1, .pad_left = 1, .pad_right = 1 };
          h = ivk_conv2d (g, h, W (&b, p, "weight"), W (&b, p, "bias"), &cp);
          skips[n_skips++] = h;
        }
      g_snprintf (p, sizeof p, "debug.down_blocks.%d", i);
      sd_net_tap (ng, p, h);
    }

  h = resnet (&b, h, "mid_block.resnets.0.");
  if (cfg->has_mid_attn)
    {
      h = transformer (&b, h, "mid_block.attentions.0.", cfg->num_heads_mid, cfg->transformer_depth_mid);
      h = resnet (&b, h, "mid_block.resnets.1.");
    }
  sd_net_tap (ng, "debug.mid_block", h);

  for (int j = 0; j < cfg->n_levels; j++)
    {
      int lvl = cfg->n_levels - 1 - j;
      for (int r = 0; r <= cfg->layers_per_block; r++)
        {
          IvkTensor *skip = n_skips > 0 ? skips[--n_skips] : NULL;
          h = ivk_concat (g, h, skip, 1);
          g_snprintf (p, sizeof p, "up_blocks.%d.resnets.%d.", j, r);
          h = resnet (&b, h, p);
          if (cfg->level_has_attn[lvl])
            {
              g_snprintf (p, sizeof p, "up_blocks.%d.attentions.%d.", j, r);
              h = transformer (&b, h, p, cfg->num_heads[lvl], cfg->transformer_depth[lvl]);
            }
        }
      if (j < cfg->n_levels - 1)
        {
          g_snprintf (p, sizeof p, "up_blocks.%d.upsamplers.0.conv.", j);
          /* nearest upsample to the size of the skip it meets next: 2x, or
           * the odd size a stride-2 conv rounded up (diffusers
           * forward_upsample_size for latents not a multiple of 2^levels) */
          IvkTensor *next = n_skips > 0 ? skips[n_skips - 1] : NULL;
          IvkConvParams cp = { .stride = 1, .pad_top = 1, .pad_bottom = 1, .pad_left = 1, .pad_right = 1,
                               .upsample = TRUE,
                               .up_height = next ? (int) next->shape[2] : 0,
                               .up_width = next ? (int) next->shape[3] : 0 };
          h = ivk_conv2d (g, h, W (&b, p, "weight"), W (&b, p, "bias"), &cp);
        }
      g_snprintf (p, sizeof p, "debug.up_blocks.%d", j);
      sd_net_tap (ng, p, h);
    }

  h = ivk_group_norm (g, h, W (&b, "conv_norm_out.", "weight"), W (&b, "conv_norm_out.", "bias"),
                      cfg->norm_groups, cfg->norm_eps, TRUE);
  h = ivk_conv2d (g, h, W (&b, "conv_out.", "weight"), W (&b, "conv_out.", "bias"), NULL);
  ng->out[0] = ivk_graph_output (g, h, "eps");
  return ng;
}

static SdNetGraph *
get_graph (SdUNet *u, int batch, int height, int width, int ctx_len, gboolean debug, GError **error)
{
  g_autofree char *key = g_strdup_printf ("%dx%dx%dx%d%s", batch, height, width, ctx_len, debug ? "d" : "");
  SdNetGraph *ng = g_hash_table_lookup (u->graphs, key);
  if (ng)
    return ng;
  if (height <= 0 || width <= 0 || height > 1024 || width > 1024)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG, "latent size %dx%d is out of range", width, height);
      return NULL;
    }
  ng = build (u, batch, height, width, ctx_len, debug);
  if (!sd_net_graph_compile (ng, error))
    {
      g_prefix_error (error, "UNet: ");
      sd_net_graph_free (ng);
      return NULL;
    }
  g_hash_table_insert (u->graphs, g_strdup (key), ng);
  return ng;
}

gboolean
sd_unet_plan (SdUNet *u, int batch, int height, int width, int context_len, IvkGraphStats *stats,
              GError **error)
{
  if (height <= 0 || width <= 0)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG, "latent size %dx%d is out of range", width, height);
      return FALSE;
    }
  SdNetGraph *ng = build (u, batch, height, width, context_len, FALSE);
  gboolean ok = ivk_graph_plan (ng->g, stats, error);
  sd_net_graph_free (ng);
  if (!ok)
    g_prefix_error (error, "UNet plan: ");
  return ok;
}

SdUNet *
sd_unet_new_virtual (IvkContext *ctx, SdModel *model, gboolean fp16, GError **error)
{
  SdUNet *u = sd_unet_new (ctx, model, fp16, error);
  if (u)
    sd_weights_set_virtual (u->w, TRUE);
  return u;
}

gboolean
sd_unet_forward (SdUNet *u, SdUNetCall *c, GError **error)
{
  const SdUNetConfig *cfg = &u->cfg;
  if (c->context_len <= 0 || c->context_len % 77 != 0)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG, "context length %d is not a multiple of 77",
                   c->context_len);
      return FALSE;
    }
  if (cfg->addition_time_embed_dim > 0 && (!c->text_embeds || !c->time_ids))
    {
      g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG, "this UNet (SDXL) needs text_embeds and time_ids");
      return FALSE;
    }
  SdNetGraph *ng = get_graph (u, c->batch, c->height, c->width, c->context_len, c->debug != NULL, error);
  if (!ng)
    return FALSE;
  g_autofree float *temb = g_new (float, (gsize) c->batch * cfg->time_proj_dim);
  /* diffusers UNet2DConditionModel: Timesteps(C0, flip_sin_to_cos=True, shift=0) */
  sd_sinusoidal_embedding (c->timesteps, c->batch, cfg->time_proj_dim, TRUE, 0.0f, temb);
  if (!sd_net_write (ng->in[IN_SAMPLE], c->sample, error) || !sd_net_write (ng->in[IN_TEMB], temb, error)
      || !sd_net_write (ng->in[IN_CONTEXT], c->context, error))
    return FALSE;
  if (cfg->addition_time_embed_dim > 0)
    {
      int d = cfg->addition_time_embed_dim, nid = cfg->n_time_ids, pd = cfg->pooled_dim;
      int width = cfg->projection_class_embeddings_input_dim;
      if (pd + nid * d != width)
        {
          g_set_error (error, SD_ERROR, SD_ERROR_UNSUPPORTED,
                       "add_embedding input %d != pooled %d + %d time ids x %d", width, pd, nid, d);
          return FALSE;
        }
      g_autofree float *add = g_new (float, (gsize) c->batch * width);
      g_autofree float *feat = g_new (float, (gsize) nid * d);
      for (int bb = 0; bb < c->batch; bb++)
        {
          float *row = add + (gsize) bb * width;
          memcpy (row, c->text_embeds + (gsize) bb * pd, sizeof (float) * pd);
          /* add_time_proj = Timesteps(d, flip_sin_to_cos=True, shift=0) per id value */
          sd_sinusoidal_embedding (c->time_ids + (gsize) bb * nid, nid, d, TRUE, 0.0f, feat);
          memcpy (row + pd, feat, sizeof (float) * nid * d);
        }
      if (!sd_net_write (ng->in[IN_ADD], add, error))
        return FALSE;
      if (c->debug)
        {
          GArray *a = g_array_sized_new (FALSE, FALSE, sizeof (float), c->batch * nid * d);
          for (int bb = 0; bb < c->batch; bb++)
            {
              sd_sinusoidal_embedding (c->time_ids + (gsize) bb * nid, nid, d, TRUE, 0.0f, feat);
              g_array_append_vals (a, feat, nid * d);
            }
          g_hash_table_replace (c->debug, g_strdup ("debug.add_time_proj"), a);
        }
    }
  if (!ivk_graph_run (ng->g, error) || !sd_net_read (ng->out[0], c->out, error))
    return FALSE;
  return sd_net_collect_taps (ng, c->debug, error);
}

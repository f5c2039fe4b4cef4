/* sd-vae.c: AutoencoderKL (diffusers) encoder and decoder, with automatic
 * tiling for images that exceed the device's limits.
 *
 * Activations stay fp32 even when the device computes in fp16: the VAE's
 * activations exceed the fp16 range on real models (the SDXL VAE produces
 * NaN/black images in fp16 elsewhere; diffusers upcasts it: force_upcast).
 * Weights are fp16 then (the a32_w16 kernel variants), which halves their
 * memory and costs no accuracy that matters.
 */
#include "config.h"

#include <math.h>
#include <string.h>

#include "sd-error.h"
#include "sd-nets-private.h"

struct _SdVae
{
  IvkContext *ctx; /* owned */
  SdModel *model;  /* borrowed */
  SdVaeConfig cfg;
  IvkDType wdtype; /* weights */
  SdWeights *w;    /* owned */
  GHashTable *graphs;
  int tile, overlap; /* latent pixels; 0 = automatic */
};

typedef struct
{
  SdVae *v;
  SdNetGraph *ng;
  IvkGraph *g;
} Build;

static const IvkDType ACT = IVK_F32;

static SdNetGraph *build_decoder (SdVae *v, int batch, int height, int width, gboolean debug);

SdVae *
sd_vae_new (IvkContext *ctx, SdModel *model, gboolean fp16, GError **error)
{
  const SdVaeConfig *cfg = &sd_model_get_config (model)->vae;
  if (cfg->n_levels <= 0 || cfg->n_levels > SD_MAX_LEVELS || (!cfg->has_decoder && !cfg->has_encoder))
    {
      g_set_error (error, SD_ERROR, SD_ERROR_UNSUPPORTED, "the model has no usable VAE");
      return NULL;
    }
  SdVae *v = g_new0 (SdVae, 1);
  v->ctx = ivk_context_ref (ctx);
  v->model = model;
  v->cfg = *cfg;
  v->wdtype = fp16 && ivk_context_get_info (ctx)->use_fp16 ? IVK_F16 : IVK_F32;
  v->w = sd_weights_new (ctx, model, "vae.", v->wdtype);
  v->graphs = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                     (GDestroyNotify) sd_net_graph_free);
  return v;
}

void
sd_vae_free (SdVae *v)
{
  if (!v)
    return;
  g_hash_table_destroy (v->graphs);
  sd_weights_free (v->w);
  ivk_context_unref (v->ctx);
  g_free (v);
}

const SdVaeConfig *
sd_vae_get_config (SdVae *v)
{
  return &v->cfg;
}

SdVae *
sd_vae_new_virtual (IvkContext *ctx, SdModel *model, gboolean fp16, GError **error)
{
  SdVae *v = sd_vae_new (ctx, model, fp16, error);
  if (v)
    sd_weights_set_virtual (v->w, TRUE);
  return v;
}

gboolean
sd_vae_plan_decode (SdVae *v, int batch, int height, int width, IvkGraphStats *stats, GError **error)
{
  SdNetGraph *ng = build_decoder (v, batch, height, width, FALSE);
  gboolean ok = ivk_graph_plan (ng->g, stats, error);
  sd_net_graph_free (ng);
  return ok;
}

guint64
sd_vae_get_weight_bytes (SdVae *v)
{
  return sd_weights_get_bytes (v->w);
}

void
sd_vae_set_tiling (SdVae *v, int tile, int overlap)
{
  v->tile = tile;
  v->overlap = overlap;
}

static IvkTensor *
W (Build *b, const char *prefix, const char *name)
{
  return sd_weights_getf (b->v->w, b->g, "%s%s", prefix, name);
}

/* ResnetBlock2D without time embedding, GroupNorm eps 1e-6 */
static IvkTensor *
resnet (Build *b, IvkTensor *x, const char *p)
{
  IvkGraph *g = b->g;
  if (!x)
    return NULL;
  const int groups = b->v->cfg.norm_groups;
  IvkTensor *h = ivk_group_norm (g, x, W (b, p, "norm1.weight"), W (b, p, "norm1.bias"), groups, 1e-6f, TRUE);
  h = ivk_conv2d (g, h, W (b, p, "conv1.weight"), W (b, p, "conv1.bias"), NULL);
  h = ivk_group_norm (g, h, W (b, p, "norm2.weight"), W (b, p, "norm2.bias"), groups, 1e-6f, TRUE);
  IvkTensor *shortcut = x;
  char sc[256];
  g_snprintf (sc, sizeof sc, "%sconv_shortcut.weight", p);
  if (sd_weights_has (b->v->w, sc))
    shortcut = ivk_conv2d (g, x, W (b, p, "conv_shortcut.weight"), W (b, p, "conv_shortcut.bias"), NULL);
  IvkConvParams cp = { .stride = 1, .pad_top = 1, .pad_bottom = 1, .pad_left = 1, .pad_right = 1,
                       .residual = shortcut };
  return ivk_conv2d (g, h, W (b, p, "conv2.weight"), W (b, p, "conv2.bias"), &cp);
}

/* Mid-block attention: single head over H*W tokens, residual */
static IvkTensor *
attention (Build *b, IvkTensor *x, const char *p)
{
  IvkGraph *g = b->g;
  if (!x)
    return NULL;
  gint64 B = x->shape[0], C = x->shape[1], H = x->shape[2], Wd = x->shape[3];
  IvkTensor *h = ivk_group_norm (g, x, W (b, p, "group_norm.weight"), W (b, p, "group_norm.bias"),
                                 b->v->cfg.norm_groups, 1e-6f, FALSE);
  gint64 s3[3] = { B, C, H * Wd };
  static const int swap[3] = { 0, 2, 1 };
  h = ivk_permute (g, ivk_reshape (g, h, 3, s3), swap); /* [B, HW, C] */
  char q[256], k[256], v[256];
  g_snprintf (q, sizeof q, "%sto_q.weight", p);
  g_snprintf (k, sizeof k, "%sto_k.weight", p);
  g_snprintf (v, sizeof v, "%sto_v.weight", p);
  const char *wn[3] = { q, k, v };
  IvkTensor *wqkv = sd_weights_get_stacked (b->v->w, g, wn, 3);
  g_snprintf (q, sizeof q, "%sto_q.bias", p);
  g_snprintf (k, sizeof k, "%sto_k.bias", p);
  g_snprintf (v, sizeof v, "%sto_v.bias", p);
  const char *bn[3] = { q, k, v };
  IvkTensor *bqkv = sd_weights_get_stacked (b->v->w, g, bn, 3);
  IvkTensor *qkv = ivk_linear (g, h, wqkv, bqkv);
  IvkAttentionParams ap = { .heads = 1, .scale = 1.0f / sqrtf ((float) C) };
  IvkTensor *a = ivk_attention (g, ivk_slice_columns (g, qkv, 0, C), ivk_slice_columns (g, qkv, C, C),
                                ivk_slice_columns (g, qkv, 2 * C, C), &ap);
  a = ivk_linear (g, a, W (b, p, "to_out.0.weight"), W (b, p, "to_out.0.bias"));
  gint64 s4[4] = { B, C, H, Wd };
  a = ivk_reshape (g, ivk_permute (g, a, swap), 4, s4);
  return ivk_add (g, a, x);
}

static IvkTensor *
mid_block (Build *b, IvkTensor *h, const char *p)
{
  char q[128];
  g_snprintf (q, sizeof q, "%smid_block.resnets.0.", p);
  h = resnet (b, h, q);
  g_snprintf (q, sizeof q, "%smid_block.attentions.0.", p);
  h = attention (b, h, q);
  g_snprintf (q, sizeof q, "%smid_block.resnets.1.", p);
  return resnet (b, h, q);
}

static SdNetGraph *
build_decoder (SdVae *v, int batch, int height, int width, gboolean debug)
{
  const SdVaeConfig *cfg = &v->cfg;
  Build b = { .v = v };
  b.ng = sd_net_graph_new (v->ctx, "vae-decoder", debug);
  b.g = b.ng->g;
  IvkGraph *g = b.g;
  char p[128];
  gint64 ls[4] = { batch, cfg->latent_channels, height, width };
  IvkTensor *z = b.ng->in[0] = ivk_graph_input (g, "latents", ACT, 4, ls);
  z = ivk_conv2d (g, z, W (&b, "post_quant_conv.", "weight"), W (&b, "post_quant_conv.", "bias"), NULL);
  sd_net_tap (b.ng, "debug.post_quant_conv", z);
  IvkTensor *h = ivk_conv2d (g, z, W (&b, "decoder.conv_in.", "weight"), W (&b, "decoder.conv_in.", "bias"), NULL);
  sd_net_tap (b.ng, "debug.decoder.conv_in", h);
  h = mid_block (&b, h, "decoder.");
  sd_net_tap (b.ng, "debug.decoder.mid_block", h);
  for (int i = 0; i < cfg->n_levels; i++)
    {
      for (int j = 0; j <= cfg->layers_per_block; j++)
        {
          g_snprintf (p, sizeof p, "decoder.up_blocks.%d.resnets.%d.", i, j);
          h = resnet (&b, h, p);
        }
      if (i < cfg->n_levels - 1)
        {
          g_snprintf (p, sizeof p, "decoder.up_blocks.%d.upsamplers.0.conv.", i);
          IvkConvParams cp = { .stride = 1, .pad_top = 1, .pad_bottom = 1, .pad_left = 1,
                               .pad_right = 1, .upsample = TRUE };
          h = ivk_conv2d (g, h, W (&b, p, "weight"), W (&b, p, "bias"), &cp);
        }
      g_snprintf (p, sizeof p, "debug.decoder.up_blocks.%d", i);
      sd_net_tap (b.ng, p, h);
    }
  h = ivk_group_norm (g, h, W (&b, "decoder.conv_norm_out.", "weight"), W (&b, "decoder.conv_norm_out.", "bias"),
                      cfg->norm_groups, 1e-6f, TRUE);
  h = ivk_conv2d (g, h, W (&b, "decoder.conv_out.", "weight"), W (&b, "decoder.conv_out.", "bias"), NULL);
  b.ng->out[0] = ivk_graph_output (g, h, "image");
  return b.ng;
}

static SdNetGraph *
build_encoder (SdVae *v, int batch, int height, int width, gboolean debug)
{
  const SdVaeConfig *cfg = &v->cfg;
  Build b = { .v = v };
  b.ng = sd_net_graph_new (v->ctx, "vae-encoder", debug);
  b.g = b.ng->g;
  IvkGraph *g = b.g;
  char p[128];
  gint64 is[4] = { batch, cfg->in_channels, height, width };
  IvkTensor *x = b.ng->in[0] = ivk_graph_input (g, "image", ACT, 4, is);
  IvkTensor *h = ivk_conv2d (g, x, W (&b, "encoder.conv_in.", "weight"), W (&b, "encoder.conv_in.", "bias"), NULL);
  for (int i = 0; i < cfg->n_levels; i++)
    {
      for (int j = 0; j < cfg->layers_per_block; j++)
        {
          g_snprintf (p, sizeof p, "encoder.down_blocks.%d.resnets.%d.", i, j);
          h = resnet (&b, h, p);
        }
      if (i < cfg->n_levels - 1)
        {
          /* diffusers Downsample2D(padding=0): F.pad(x, (0, 1, 0, 1)) then a
           * stride-2 conv without padding */
          g_snprintf (p, sizeof p, "encoder.down_blocks.%d.downsamplers.0.conv.", i);
          IvkConvParams cp = { .stride = 2, .pad_top = 0, .pad_bottom = 1, .pad_left = 0, .pad_right = 1 };
          h = ivk_conv2d (g, h, W (&b, p, "weight"), W (&b, p, "bias"), &cp);
        }
      g_snprintf (p, sizeof p, "debug.encoder.down_blocks.%d", i);
      sd_net_tap (b.ng, p, h);
    }
  h = mid_block (&b, h, "encoder.");
  sd_net_tap (b.ng, "debug.encoder.mid_block", h);
  h = ivk_group_norm (g, h, W (&b, "encoder.conv_norm_out.", "weight"), W (&b, "encoder.conv_norm_out.", "bias"),
                      cfg->norm_groups, 1e-6f, TRUE);
  h = ivk_conv2d (g, h, W (&b, "encoder.conv_out.", "weight"), W (&b, "encoder.conv_out.", "bias"), NULL);
  sd_net_tap (b.ng, "debug.encoder.conv_out", h);
  h = ivk_conv2d (g, h, W (&b, "quant_conv.", "weight"), W (&b, "quant_conv.", "bias"), NULL);
  sd_net_tap (b.ng, "debug.quant_conv", h);
  b.ng->out[0] = ivk_graph_output (g, h, "moments");
  return b.ng;
}

/* Memory budget for one VAE pass: half of the device-local memory not yet used
 * (IMPASTO_VAE_BUDGET_MB overrides). */
static guint64
budget (SdVae *v)
{
  const char *env = g_getenv ("IMPASTO_VAE_BUDGET_MB");
  if (env && *env)
    return g_ascii_strtoull (env, NULL, 10) << 20;
  const IvkDeviceInfo *info = ivk_context_get_info (v->ctx);
  guint64 used = ivk_context_get_allocated (v->ctx);
  guint64 total = info->device_local_bytes;
  return total > used ? (total - used) / 2 : 0;
}

/* Does a graph of this shape fit the device's binding range and the budget? */
static gboolean
fits (SdVae *v, SdNetGraph *ng)
{
  IvkGraphStats st;
  g_autoptr (GError) e = NULL;
  if (!ivk_graph_plan (ng->g, &st, &e))
    /* a device limit (a dispatch grid too large for one pass) means smaller
     * tiles; anything else is left for compile to report */
    return !g_error_matches (e, IVK_ERROR, IVK_ERROR_LIMIT);
  const IvkDeviceInfo *info = ivk_context_get_info (v->ctx);
  return st.largest_tensor_bytes <= info->max_storage_buffer_range && st.arena_bytes <= budget (v);
}

static SdNetGraph *
get_graph (SdVae *v, gboolean decoder, int batch, int h, int w, gboolean debug, gboolean *too_big,
           GError **error)
{
  g_autofree char *key = g_strdup_printf ("%c%dx%dx%d%s", decoder ? 'd' : 'e', batch, h, w, debug ? "d" : "");
  SdNetGraph *ng = g_hash_table_lookup (v->graphs, key);
  if (ng)
    return ng;
  ng = decoder ? build_decoder (v, batch, h, w, debug) : build_encoder (v, batch, h, w, debug);
  if (too_big && !fits (v, ng))
    {
      *too_big = TRUE;
      sd_net_graph_free (ng);
      return NULL;
    }
  if (!sd_net_graph_compile (ng, error))
    {
      g_prefix_error (error, decoder ? "VAE decoder: " : "VAE encoder: ");
      sd_net_graph_free (ng);
      return NULL;
    }
  g_hash_table_insert (v->graphs, g_strdup (key), ng);
  return ng;
}

/* ---- tiling ----
 * Tiles of `tile` units overlap by `overlap`; each tile is run on its own and
 * blended with weights that ramp linearly across the overlap (1 inside, ->0 at
 * an edge shared with a neighbour), so no seam is visible even though
 * GroupNorm statistics differ slightly between tiles. Units are latent pixels;
 * `f` is the scale from the tiled input to the output (8 for decode, 1/8 for
 * encode, expressed as num/den). */

typedef gboolean (*RunTile) (SdVae *v, int batch, int th, int tw, const float *in, float *out,
                             GError **error);

static void
tile_starts (int size, int tile, int overlap, int *starts, int *n)
{
  *n = 0;
  if (tile >= size)
    {
      starts[(*n)++] = 0;
      return;
    }
  int step = tile - overlap;
  for (int s = 0;; s += step)
    {
      if (s + tile >= size)
        {
          starts[(*n)++] = size - tile;
          break;
        }
      starts[(*n)++] = s;
    }
}

static float
ramp (int pos, int len, int ov_lo, int ov_hi)
{
  /* weight at pos in [0, len): rises over the first ov_lo, falls over the last ov_hi */
  float w = 1.0f;
  if (ov_lo > 0 && pos < ov_lo)
    w = MIN (w, (pos + 0.5f) / ov_lo);
  if (ov_hi > 0 && pos >= len - ov_hi)
    w = MIN (w, (len - pos - 0.5f) / ov_hi);
  return w;
}

/* in: [B, cin, H, W] in tiled-input units; out: [B, cout, H*num/den, W*num/den] */
static gboolean
run_tiled (SdVae *v, RunTile run, int batch, int cin, int cout, int H, int Wd, int num, int den,
           int tile, int overlap, const float *in, float *out, GError **error)
{
  int ys[1024], xs[1024], ny, nx;
  if (H / MAX (tile - overlap, 1) > 1000 || Wd / MAX (tile - overlap, 1) > 1000)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG, "image too large to tile");
      return FALSE;
    }
  tile_starts (H, tile, overlap, ys, &ny);
  tile_starts (Wd, tile, overlap, xs, &nx);
  int th = MIN (tile, H), tw = MIN (tile, Wd);
  int OH = H * num / den, OW = Wd * num / den;
  int oth = th * num / den, otw = tw * num / den;
  gsize plane_out = (gsize) OH * OW;
  g_autofree float *acc = g_new0 (float, (gsize) batch * cout * plane_out);
  g_autofree float *wsum = g_new0 (float, plane_out);
  g_autofree float *tin = g_new (float, (gsize) batch * cin * th * tw);
  g_autofree float *tout = g_new (float, (gsize) batch * cout * oth * otw);
  for (int iy = 0; iy < ny; iy++)
    for (int ix = 0; ix < nx; ix++)
      {
        int y0 = ys[iy], x0 = xs[ix];
        for (int b = 0; b < batch; b++)
          for (int c = 0; c < cin; c++)
            for (int y = 0; y < th; y++)
              memcpy (tin + (((gsize) b * cin + c) * th + y) * tw,
                      in + (((gsize) b * cin + c) * H + y0 + y) * Wd + x0, sizeof (float) * tw);
        if (!run (v, batch, th, tw, tin, tout, error))
          return FALSE;
        /* overlap with the previous/next tile in output units */
        int oy0 = y0 * num / den, ox0 = x0 * num / den;
        int ov_top = iy > 0 ? (ys[iy - 1] + th - y0) * num / den : 0;
        int ov_bot = iy < ny - 1 ? (y0 + th - ys[iy + 1]) * num / den : 0;
        int ov_left = ix > 0 ? (xs[ix - 1] + tw - x0) * num / den : 0;
        int ov_right = ix < nx - 1 ? (x0 + tw - xs[ix + 1]) * num / den : 0;
        for (int y = 0; y < oth; y++)
          {
            float wy = ramp (y, oth, ov_top, ov_bot);
            for (int x = 0; x < otw; x++)
              {
                float wgt = wy * ramp (x, otw, ov_left, ov_right);
                gsize o = (gsize) (oy0 + y) * OW + ox0 + x;
                wsum[o] += wgt;
                for (int b = 0; b < batch; b++)
                  for (int c = 0; c < cout; c++)
                    acc[((gsize) b * cout + c) * plane_out + o]
                      += wgt * tout[(((gsize) b * cout + c) * oth + y) * otw + x];
              }
          }
      }
  for (int b = 0; b < batch; b++)
    for (int c = 0; c < cout; c++)
      for (gsize o = 0; o < plane_out; o++)
        out[((gsize) b * cout + c) * plane_out + o] = acc[((gsize) b * cout + c) * plane_out + o] / wsum[o];
  return TRUE;
}

static gboolean
decode_tile (SdVae *v, int batch, int h, int w, const float *z, float *img, GError **error)
{
  SdNetGraph *ng = get_graph (v, TRUE, batch, h, w, FALSE, NULL, error);
  return ng && sd_net_write (ng->in[0], z, error) && ivk_graph_run (ng->g, error)
         && sd_net_read (ng->out[0], img, error);
}

static gboolean
encode_tile (SdVae *v, int batch, int h, int w, const float *img, float *moments, GError **error)
{
  SdNetGraph *ng = get_graph (v, FALSE, batch, h, w, FALSE, NULL, error);
  return ng && sd_net_write (ng->in[0], img, error) && ivk_graph_run (ng->g, error)
         && sd_net_read (ng->out[0], moments, error);
}

/* The biggest tile (in latent pixels, a multiple of 8, at least 16) whose
 * graph fits; starts from the configured tile or 64 (512 pixels) and steps
 * down by 8: on lavapipe (128 MiB bindings) a 512x512 decode then runs as
 * 2x2 tiles of 40 instead of 3x3 tiles of 32 (3.9 instead of 5.6 TFLOP). */
static int
choose_tile (SdVae *v, gboolean decoder, int batch, int H, int Wd)
{
  int t = (v->tile > 0 ? v->tile : 64) / 8 * 8;
  while (t > 16)
    {
      int th = MIN (t, H), tw = MIN (t, Wd);
      int s = decoder ? 1 : 8;
      SdNetGraph *ng = decoder ? build_decoder (v, batch, th, tw, FALSE)
                               : build_encoder (v, batch, th * s, tw * s, FALSE);
      gboolean ok = fits (v, ng);
      sd_net_graph_free (ng);
      if (ok)
        break;
      t -= 8;
    }
  return MAX (t, 16);
}

gboolean
sd_vae_decode_tiles (SdVae *v, int batch, int height, int width, int *tile)
{
  SdNetGraph *ng = build_decoder (v, batch, height, width, FALSE);
  gboolean one_pass = fits (v, ng);
  sd_net_graph_free (ng);
  *tile = one_pass ? 0 : (v->tile > 0 ? v->tile : choose_tile (v, TRUE, batch, height, width));
  return !one_pass;
}

gboolean
sd_vae_decode (SdVae *v, int batch, int height, int width, const float *latents, float *image,
               SdDebugTaps *debug, GError **error)
{
  const SdVaeConfig *cfg = &v->cfg;
  if (!cfg->has_decoder)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_MISSING, "the model's VAE has no decoder");
      return FALSE;
    }
  if (batch <= 0 || height <= 0 || width <= 0)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG, "bad latent size %dx%d", width, height);
      return FALSE;
    }
  gsize n = (gsize) batch * cfg->latent_channels * height * width;
  g_autofree float *z = g_new (float, n);
  for (gsize i = 0; i < n; i++)
    z[i] = latents[i] / cfg->scaling_factor;
  const int f = 1 << (cfg->n_levels - 1);
  if (v->tile == 0 || (v->tile >= height && v->tile >= width))
    {
      gboolean too_big = FALSE;
      SdNetGraph *ng = get_graph (v, TRUE, batch, height, width, debug != NULL,
                                  v->tile == 0 && !debug ? &too_big : NULL, error);
      if (ng)
        return sd_net_write (ng->in[0], z, error) && ivk_graph_run (ng->g, error)
               && sd_net_read (ng->out[0], image, error) && sd_net_collect_taps (ng, debug, error);
      if (!too_big)
        return FALSE;
    }
  int tile = v->tile > 0 ? v->tile : choose_tile (v, TRUE, batch, height, width);
  int overlap = v->overlap > 0 ? v->overlap : tile / 4;
  return run_tiled (v, decode_tile, batch, cfg->latent_channels, cfg->out_channels, height, width, f, 1,
                    tile, overlap, z, image, error);
}

gboolean
sd_vae_encode (SdVae *v, int batch, int height, int width, const float *image, float *mean,
               float *logvar, SdDebugTaps *debug, GError **error)
{
  const SdVaeConfig *cfg = &v->cfg;
  const int f = 1 << (cfg->n_levels - 1);
  if (!cfg->has_encoder)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_MISSING, "the model's VAE has no encoder");
      return FALSE;
    }
  if (batch <= 0 || height <= 0 || width <= 0 || height % f || width % f)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG, "image size %dx%d must be a multiple of %d",
                   width, height, f);
      return FALSE;
    }
  const int lc = cfg->latent_channels;
  int lh = height / f, lw = width / f;
  gsize nl = (gsize) lh * lw;
  g_autofree float *moments = g_new (float, (gsize) batch * 2 * lc * nl);
  gboolean done = FALSE;
  if (v->tile == 0 || (v->tile >= lh && v->tile >= lw))
    {
      gboolean too_big = FALSE;
      SdNetGraph *ng = get_graph (v, FALSE, batch, height, width, debug != NULL,
                                  v->tile == 0 && !debug ? &too_big : NULL, error);
      if (ng)
        {
          if (!sd_net_write (ng->in[0], image, error) || !ivk_graph_run (ng->g, error)
              || !sd_net_read (ng->out[0], moments, error) || !sd_net_collect_taps (ng, debug, error))
            return FALSE;
          done = TRUE;
        }
      else if (!too_big)
        return FALSE;
    }
  if (!done)
    {
      int tile = v->tile > 0 ? v->tile : choose_tile (v, FALSE, batch, lh, lw);
      int overlap = v->overlap > 0 ? v->overlap : tile / 4;
      /* tile in image pixels; the output (moments) is f times smaller */
      if (!run_tiled (v, encode_tile, batch, cfg->in_channels, 2 * lc, height, width, 1, f,
                      tile * f, overlap * f, image, moments, error))
        return FALSE;
    }
  for (int b = 0; b < batch; b++)
    for (int c = 0; c < lc; c++)
      for (gsize i = 0; i < nl; i++)
        {
          mean[((gsize) b * lc + c) * nl + i] = moments[((gsize) b * 2 * lc + c) * nl + i];
          float lv = moments[((gsize) b * 2 * lc + lc + c) * nl + i];
          logvar[((gsize) b * lc + c) * nl + i] = CLAMP (lv, -30.0f, 20.0f);
        }
  return TRUE;
}

/* sd-clip.c: CLIP text transformer (transformers CLIPTextModel; OpenCLIP models
 * arrive renamed to the same layout by the loader).
 *
 * x = token_embedding[ids] + position_embedding
 * per layer (pre-LN): x += out_proj(MHA(LN1(x), causal)); x += fc2(act(fc1(LN2(x))))
 * last_ln = final_layer_norm(x)
 */
#include "config.h"

#include <math.h>
#include <string.h>

#include "sd-error.h"
#include "sd-nets-private.h"

struct _SdClip
{
  IvkContext *ctx; /* owned */
  SdModel *model;  /* borrowed */
  int index;
  SdTextEncoderConfig cfg;
  IvkDType act;
  SdWeights *w;     /* owned */
  float *projection; /* [P, C] host copy, or NULL */
  GHashTable *graphs; /* key -> SdNetGraph* */
};

enum
{
  IN_IDS = 0,
  OUT_HIDDEN = 0,
  OUT_LAST_LN = 1,
  OUT_ALL = 2, /* OUT_ALL + k: hidden state k */
};

SdClip *
sd_clip_new (IvkContext *ctx, SdModel *model, int index, gboolean fp16, GError **error)
{
  const SdModelConfig *mc = sd_model_get_config (model);
  const SdTextEncoderConfig *cfg = index == 0 ? &mc->text_encoder : &mc->text_encoder_2;
  if (!cfg->present)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_MISSING, "the model has no text encoder %d", index + 1);
      return NULL;
    }
  if (cfg->hidden <= 0 || cfg->n_heads <= 0 || cfg->hidden % cfg->n_heads != 0 || cfg->n_layers <= 0)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_UNSUPPORTED,
                   "text encoder %d: unsupported sizes (hidden %d, heads %d, layers %d)", index + 1,
                   cfg->hidden, cfg->n_heads, cfg->n_layers);
      return NULL;
    }
  SdClip *clip = g_new0 (SdClip, 1);
  clip->ctx = ivk_context_ref (ctx);
  clip->model = model;
  clip->index = index;
  clip->cfg = *cfg;
  gboolean use16 = fp16 && ivk_context_get_info (ctx)->use_fp16;
  clip->act = use16 ? IVK_F16 : IVK_F32;
  clip->w = sd_weights_new (ctx, model, index == 0 ? "text_encoder." : "text_encoder_2.", clip->act);
  clip->graphs = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                        (GDestroyNotify) sd_net_graph_free);
  if (cfg->projection_dim > 0 && sd_weights_has (clip->w, "text_projection.weight"))
    {
      gint64 n = 0;
      clip->projection = sd_weights_read_host (clip->w, "text_projection.weight", &n, error);
      if (!clip->projection)
        {
          sd_clip_free (clip);
          return NULL;
        }
      if (n != (gint64) cfg->projection_dim * cfg->hidden)
        {
          g_set_error (error, SD_ERROR, SD_ERROR_CORRUPT, "text_projection has %" G_GINT64_FORMAT
                       " elements, expected %d x %d", n, cfg->projection_dim, cfg->hidden);
          sd_clip_free (clip);
          return NULL;
        }
    }
  return clip;
}

void
sd_clip_free (SdClip *clip)
{
  if (!clip)
    return;
  g_hash_table_destroy (clip->graphs);
  sd_weights_free (clip->w);
  g_free (clip->projection);
  ivk_context_unref (clip->ctx);
  g_free (clip);
}

const SdTextEncoderConfig *
sd_clip_get_config (SdClip *clip)
{
  return &clip->cfg;
}

guint64
sd_clip_get_weight_bytes (SdClip *clip)
{
  return sd_weights_get_bytes (clip->w);
}

/* The token table as a device tensor: in the compute dtype when it fits one
 * storage-buffer binding, else in f16 (bigG's 49408 x 1280 f32 table is
 * 253 MB, over the 128 MiB some devices allow per binding). */
static IvkTensor *
token_table (SdClip *clip, IvkGraph *g)
{
  const char *name = "text_model.embeddings.token_embedding.weight";
  guint64 bytes = (guint64) clip->cfg.vocab_size * clip->cfg.hidden * ivk_dtype_size (clip->act);
  IvkDType dt = clip->act;
  if (bytes > ivk_context_get_info (clip->ctx)->max_storage_buffer_range)
    dt = IVK_F16;
  return sd_weights_get_as (clip->w, g, name, dt);
}

static SdNetGraph *
build (SdClip *clip, int batch, int skip, gboolean final_ln, gboolean want_all)
{
  const SdTextEncoderConfig *cfg = &clip->cfg;
  const int T = cfg->max_positions, C = cfg->hidden, L = cfg->n_layers;
  SdNetGraph *ng = sd_net_graph_new (clip->ctx, clip->index ? "text_encoder_2" : "text_encoder", FALSE);
  IvkGraph *g = ng->g;
  SdWeights *w = clip->w;

  gint64 ids_shape[1] = { (gint64) batch * T };
  IvkTensor *ids = ng->in[IN_IDS] = ivk_graph_input (g, "ids", IVK_I32, 1, ids_shape);
  IvkTensor *x = ivk_embedding (g, ids, token_table (clip, g), clip->act); /* [B*T, C] */
  gint64 s3[3] = { batch, T, C };
  x = ivk_reshape (g, x, 3, s3);
  x = ivk_add (g, x, sd_weights_get (w, g, "text_model.embeddings.position_embedding.weight"));

  IvkTensor **hidden = g_new0 (IvkTensor *, L + 1);
  hidden[0] = x;
  IvkAttentionParams ap = {
    .heads = cfg->n_heads,
    .scale = 1.0f / sqrtf ((float) (C / cfg->n_heads)),
    .causal = TRUE,
  };
  for (int l = 0; l < L; l++)
    {
      char p[96];
      g_snprintf (p, sizeof p, "text_model.encoder.layers.%d.", l);
      char n1[160], n2[160], n3[160];
      IvkTensor *h = ivk_layer_norm (g, x, sd_weights_getf (w, g, "%slayer_norm1.weight", p),
                                     sd_weights_getf (w, g, "%slayer_norm1.bias", p), 1e-5f);
      g_snprintf (n1, sizeof n1, "%sself_attn.q_proj.weight", p);
      g_snprintf (n2, sizeof n2, "%sself_attn.k_proj.weight", p);
      g_snprintf (n3, sizeof n3, "%sself_attn.v_proj.weight", p);
      const char *wn[3] = { n1, n2, n3 };
      IvkTensor *wqkv = sd_weights_get_stacked (w, g, wn, 3);
      g_snprintf (n1, sizeof n1, "%sself_attn.q_proj.bias", p);
      g_snprintf (n2, sizeof n2, "%sself_attn.k_proj.bias", p);
      g_snprintf (n3, sizeof n3, "%sself_attn.v_proj.bias", p);
      const char *bn[3] = { n1, n2, n3 };
      IvkTensor *bqkv = sd_weights_get_stacked (w, g, bn, 3);
      IvkTensor *qkv = ivk_linear (g, h, wqkv, bqkv); /* [B, T, 3C] */
      IvkTensor *a = ivk_attention (g, ivk_slice_columns (g, qkv, 0, C),
                                    ivk_slice_columns (g, qkv, C, C),
                                    ivk_slice_columns (g, qkv, 2 * C, C), &ap);
      x = ivk_matmul (g, a, sd_weights_getf (w, g, "%sself_attn.out_proj.weight", p),
                      sd_weights_getf (w, g, "%sself_attn.out_proj.bias", p), x, 1.0f,
                      IVK_MATMUL_TRANS_B);
      h = ivk_layer_norm (g, x, sd_weights_getf (w, g, "%slayer_norm2.weight", p),
                          sd_weights_getf (w, g, "%slayer_norm2.bias", p), 1e-5f);
      h = ivk_linear (g, h, sd_weights_getf (w, g, "%smlp.fc1.weight", p),
                      sd_weights_getf (w, g, "%smlp.fc1.bias", p));
      h = cfg->act == SD_ACT_QUICK_GELU ? ivk_quick_gelu (g, h) : ivk_gelu (g, h);
      x = ivk_matmul (g, h, sd_weights_getf (w, g, "%smlp.fc2.weight", p),
                      sd_weights_getf (w, g, "%smlp.fc2.bias", p), x, 1.0f, IVK_MATMUL_TRANS_B);
      hidden[l + 1] = x;
    }
  IvkTensor *lnw = sd_weights_get (w, g, "text_model.final_layer_norm.weight");
  IvkTensor *lnb = sd_weights_get (w, g, "text_model.final_layer_norm.bias");
  IvkTensor *last_ln = ivk_layer_norm (g, hidden[L], lnw, lnb, 1e-5f);
  int which = CLAMP (L - skip, 0, L);
  IvkTensor *sel = hidden[which];
  if (final_ln)
    sel = which == L ? last_ln : ivk_layer_norm (g, sel, lnw, lnb, 1e-5f);
  ng->out[OUT_HIDDEN] = ivk_graph_output (g, sel, "hidden");
  ng->out[OUT_LAST_LN] = ivk_graph_output (g, last_ln, "last_ln");
  if (want_all)
    for (int k = 0; k <= L && OUT_ALL + k < SD_NET_MAX_IO; k++)
      ng->out[OUT_ALL + k] = ivk_graph_output (g, hidden[k], "hidden_state");
  g_free (hidden);
  return ng;
}

gboolean
sd_clip_encode (SdClip *clip, const gint32 *ids, int batch, SdClipRequest *req, GError **error)
{
  const SdTextEncoderConfig *cfg = &clip->cfg;
  const int T = cfg->max_positions, C = cfg->hidden, L = cfg->n_layers;
  g_return_val_if_fail (batch > 0 && req, FALSE);
  if (req->all_hidden && OUT_ALL + L >= SD_NET_MAX_IO)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_UNSUPPORTED, "too many layers to return them all");
      return FALSE;
    }
  if (req->pooled && cfg->projection_dim > 0 && !clip->projection)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_MISSING, "the text encoder has no text_projection");
      return FALSE;
    }
  gboolean want_all = req->all_hidden != NULL;
  g_autofree char *key = g_strdup_printf ("%d/%d/%d/%d", batch, req->skip, req->final_ln, want_all);
  SdNetGraph *ng = g_hash_table_lookup (clip->graphs, key);
  if (!ng)
    {
      ng = build (clip, batch, req->skip, req->final_ln, want_all);
      if (!sd_net_graph_compile (ng, error))
        {
          sd_net_graph_free (ng);
          g_prefix_error (error, "text encoder: ");
          return FALSE;
        }
      g_hash_table_insert (clip->graphs, g_strdup (key), ng);
    }
  /* token ids outside the vocabulary would index out of the table: the
   * kernel clamps, but a wrong id means a wrong tokenizer, so say so */
  for (int i = 0; i < batch * T; i++)
    if (ids[i] < 0 || ids[i] >= cfg->vocab_size)
      {
        g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG,
                     "token id %d is outside the text encoder's vocabulary (%d): wrong tokenizer?",
                     ids[i], cfg->vocab_size);
        return FALSE;
      }
  if (!ivk_tensor_write_raw (ng->in[IN_IDS], ids, (gsize) batch * T * 4, error)
      || !ivk_graph_run (ng->g, error))
    return FALSE;
  if (req->hidden && !sd_net_read (ng->out[OUT_HIDDEN], req->hidden, error))
    return FALSE;
  g_autofree float *last_ln = NULL;
  float *ln = req->last_ln;
  if (!ln && req->pooled)
    ln = last_ln = g_new (float, (gsize) batch * T * C);
  if (ln && !sd_net_read (ng->out[OUT_LAST_LN], ln, error))
    return FALSE;
  if (want_all)
    {
      g_autofree float *tmp = g_new (float, (gsize) batch * T * C);
      for (int k = 0; k <= L; k++)
        {
          if (!sd_net_read (ng->out[OUT_ALL + k], tmp, error))
            return FALSE;
          for (int b = 0; b < batch; b++)
            memcpy (req->all_hidden + (((gsize) b * (L + 1) + k) * T) * C,
                    tmp + (gsize) b * T * C, sizeof (float) * T * C);
        }
    }
  if (req->pooled)
    {
      /* pooled = last_ln at the first position holding the largest id (EOS),
       * as transformers' CLIPTextTransformer (argmax of input_ids) */
      int P = clip->projection ? cfg->projection_dim : C;
      for (int b = 0; b < batch; b++)
        {
          int e = 0;
          for (int t = 1; t < T; t++)
            if (ids[b * T + t] > ids[b * T + e])
              e = t;
          const float *row = ln + ((gsize) b * T + e) * C;
          float *dst = req->pooled + (gsize) b * P;
          if (!clip->projection)
            memcpy (dst, row, sizeof (float) * C);
          else
            for (int pp = 0; pp < P; pp++)
              {
                double s = 0;
                const float *wr = clip->projection + (gsize) pp * C;
                for (int c = 0; c < C; c++)
                  s += (double) row[c] * wr[c];
                dst[pp] = (float) s;
              }
        }
    }
  return TRUE;
}

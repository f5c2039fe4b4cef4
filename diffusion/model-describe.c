/* model-describe.c: the text `impasto info MODEL` prints. */
#include "config.h"

#include <string.h>

#include "sd-convert.h"
#include "sd-error.h"
#include "sd-model-private.h"

static char *
with_commas (gint64 v)
{
  char digits[32];
  g_snprintf (digits, sizeof digits, "%" G_GINT64_FORMAT, v < 0 ? -v : v);
  GString *s = g_string_new (v < 0 ? "-" : "");
  gsize n = strlen (digits);
  for (gsize i = 0; i < n; i++)
    {
      if (i > 0 && (n - i) % 3 == 0)
        g_string_append_c (s, ',');
      g_string_append_c (s, digits[i]);
    }
  return g_string_free (s, FALSE);
}

static char *
human_bytes (guint64 b)
{
  if (b >= (guint64) 1 << 30)
    return g_strdup_printf ("%.2f GiB", (double) b / (double) ((guint64) 1 << 30));
  if (b >= (guint64) 1 << 20)
    return g_strdup_printf ("%.1f MiB", (double) b / (double) (1 << 20));
  if (b >= 1024)
    return g_strdup_printf ("%.1f KiB", (double) b / 1024.0);
  return g_strdup_printf ("%" G_GUINT64_FORMAT " bytes", b);
}

static void
append_int_list (GString *out, const int *v, int n)
{
  g_string_append_c (out, '[');
  for (int i = 0; i < n; i++)
    g_string_append_printf (out, "%s%d", i ? ", " : "", v[i]);
  g_string_append_c (out, ']');
}

static void
append_list (GString *out, const char *title, GPtrArray *items, guint max)
{
  if (items->len == 0)
    {
      g_string_append_printf (out, "%-15s none\n", title);
      return;
    }
  g_string_append_printf (out, "%-15s %u\n", title, items->len);
  for (guint i = 0; i < items->len && i < max; i++)
    g_string_append_printf (out, "  %s\n", (const char *) g_ptr_array_index (items, i));
  if (items->len > max)
    g_string_append_printf (out, "  ... and %u more\n", items->len - max);
}

static const char *
arch_long_name (const SdModelConfig *c)
{
  switch (c->arch)
    {
    case SD_ARCH_SD1:
      return "Stable Diffusion 1.x";
    case SD_ARCH_SD2:
      return "Stable Diffusion 2.x";
    case SD_ARCH_SDXL:
      return "Stable Diffusion XL base";
    case SD_ARCH_SDXL_REFINER:
      return "Stable Diffusion XL refiner";
    case SD_ARCH_UNKNOWN:
      break;
    }
  return "no UNet: components only";
}

static void
describe_unet (GString *out, const SdUNetConfig *u)
{
  g_string_append_printf (out, "%17s in %d, out %d, channels ", "", u->in_channels, u->out_channels);
  append_int_list (out, u->block_out_channels, u->n_levels);
  g_string_append_printf (out, ", %d resnets per level\n%17s attention on levels", u->layers_per_block, "");
  gboolean any = FALSE;
  for (int i = 0; i < u->n_levels; i++)
    if (u->level_has_attn[i])
      {
        g_string_append_printf (out, " %d (depth %d, %d heads of %d)", i, u->transformer_depth[i], u->num_heads[i],
                                u->head_dim[i]);
        any = TRUE;
      }
  if (!any)
    g_string_append (out, " none");
  if (u->has_mid_attn)
    g_string_append_printf (out, ", mid (depth %d, %d heads of %d)", u->transformer_depth_mid, u->num_heads_mid,
                            u->head_dim_mid);
  g_string_append_printf (out, "%s\n", u->heads_known ? "" : " [heads by convention]");
  g_string_append_printf (out, "%17s context %d, %s projection, time embedding %d\n", "", u->context_dim,
                          u->use_linear_projection ? "linear" : "1x1 conv", u->time_embed_dim);
  if (u->projection_class_embeddings_input_dim > 0)
    g_string_append_printf (out, "%17s added conditioning: pooled text %d + %d time ids x %d = %d\n", "",
                            u->pooled_dim, u->n_time_ids, u->addition_time_embed_dim,
                            u->projection_class_embeddings_input_dim);
}

static void
describe_text (GString *out, const SdTextEncoderConfig *t, gboolean openclip)
{
  g_string_append_printf (out,
                          "%17s %s: hidden %d, %d layers, %d heads%s, MLP %d, %s, vocab %d, %d positions, "
                          "padded with %s",
                          "", openclip ? "open_clip naming" : "CLIP naming", t->hidden, t->n_layers, t->n_heads,
                          t->heads_known ? "" : " [by convention]", t->intermediate,
                          t->act == SD_ACT_GELU ? "gelu" : "quick_gelu", t->vocab_size, t->max_positions,
                          t->pad_id == 0 ? "id 0" : "<|endoftext|>");
  if (t->projection_dim)
    g_string_append_printf (out, ", projection %d", t->projection_dim);
  g_string_append_c (out, '\n');
}

gboolean
sd_model_describe (SdModel *m, GString *out, GError **error)
{
  g_return_val_if_fail (m != NULL && out != NULL, FALSE);
  const SdModelConfig *c = &m->config;

  guint64 file_bytes = 0;
  guint n_stored = 0;
  for (guint i = 0; i < m->files->len; i++)
    {
      SdSafetensors *st = g_ptr_array_index (m->files, i);
      guint64 fs = sd_safetensors_get_file_size (st);
      file_bytes = fs > G_MAXUINT64 - file_bytes ? G_MAXUINT64 : file_bytes + fs;
      n_stored += sd_safetensors_get_n_tensors (st);
    }
  g_autofree char *fb = human_bytes (file_bytes);
  g_string_append_printf (out, "%-15s %s\n", "Model:", m->path ? m->path : "(memory)");
  g_string_append_printf (out, "%-15s %s; %u file%s, %s, %u tensors%s\n", "Format:",
                          m->format_detail ? m->format_detail : "?", m->files->len, m->files->len == 1 ? "" : "s",
                          fb, n_stored, m->header_only ? " (headers only)" : "");
  g_string_append_printf (out, "%-15s %s (%s)", "Architecture:", sd_arch_name (c->arch), arch_long_name (c));
  if (c->inpainting)
    g_string_append_printf (out, ", inpainting (%d input channels)", c->unet.in_channels);
  if (c->arch == SD_ARCH_SDXL_REFINER)
    g_string_append (out, ", refiner (aesthetic-score time ids)");
  g_string_append_c (out, '\n');
  const char *pred = c->scheduler.prediction == SD_PREDICTION_V ? "v_prediction" : "epsilon";
  if (c->scheduler.prediction_known)
    g_string_append_printf (out, "%-15s %s (from %s)\n", "Prediction:", pred,
                            m->prediction_source ? m->prediction_source : "config");
  else
    g_string_append_printf (out, "%-15s %s (assumed: the model does not say; v-prediction models "
                                 "such as SD 2.x 768 need it stated)\n",
                            "Prediction:", pred);
  if (c->arch != SD_ARCH_UNKNOWN)
    g_string_append_printf (out, "%-15s %d x %d\n", "Native size:", c->native_resolution, c->native_resolution);
  g_string_append_printf (out, "%-15s %s, %d steps, beta %g..%g, %s spacing, steps_offset %d\n", "Schedule:",
                          c->scheduler.beta_schedule, c->scheduler.num_train_timesteps, c->scheduler.beta_start,
                          c->scheduler.beta_end, c->scheduler.timestep_spacing, c->scheduler.steps_offset);

  g_string_append (out, "Components:\n");
  gint64 total = 0;
  for (int ci = 0; ci < SD_N_COMPONENTS; ci++)
    {
      if (!m->comp[ci].present)
        continue;
      const char *name = sd_component_names[ci];
      gint64 params = sd_model_count_params (m, name);
      total = params > G_MAXINT64 - total ? G_MAXINT64 : total + params;
      g_autofree char *ps = with_commas (params);
      g_autofree char *h16 = human_bytes ((guint64) sd_model_weight_bytes (m, name, 2));
      g_autofree char *h32 = human_bytes ((guint64) sd_model_weight_bytes (m, name, 4));
      g_string_append_printf (out, "  %-14s %s parameters (%s fp16, %s fp32)%s\n", name, ps, h16, h32,
                              m->comp[ci].detected ? "" : " [configuration not detected]");
      if (!m->comp[ci].detected)
        continue;
      switch (ci)
        {
        case SD_COMP_UNET:
          describe_unet (out, &c->unet);
          break;
        case SD_COMP_VAE:
          g_string_append_printf (out, "%17s channels ", "");
          append_int_list (out, c->vae.block_out_channels, c->vae.n_levels);
          g_string_append_printf (out, ", %d resnets per level, latent %d, scaling %g, %s\n",
                                  c->vae.layers_per_block, c->vae.latent_channels, c->vae.scaling_factor,
                                  c->vae.has_encoder && c->vae.has_decoder ? "encoder + decoder"
                                  : c->vae.has_encoder                     ? "encoder only"
                                                                           : "decoder only");
          break;
        case SD_COMP_TEXT_ENCODER:
          describe_text (out, &c->text_encoder, m->comp[ci].openclip);
          break;
        case SD_COMP_TEXT_ENCODER_2:
          describe_text (out, &c->text_encoder_2, m->comp[ci].openclip);
          break;
        }
    }
  g_autofree char *ts = with_commas (total);
  g_string_append_printf (out, "  %-14s %s parameters\n", "total", ts);

  /* Dtypes as stored, over every tensor of every file. */
  guint counts[SD_DTYPE_BOOL + 1] = { 0 };
  guint64 bytes[SD_DTYPE_BOOL + 1] = { 0 };
  for (guint i = 0; i < m->files->len; i++)
    {
      SdSafetensors *st = g_ptr_array_index (m->files, i);
      for (guint k = 0; k < sd_safetensors_get_n_tensors (st); k++)
        {
          const SdSafetensorsTensor *t = sd_safetensors_get_nth (st, k);
          counts[t->dtype]++;
          guint64 b = t->data_end - t->data_begin;
          bytes[t->dtype] = b > G_MAXUINT64 - bytes[t->dtype] ? G_MAXUINT64 : bytes[t->dtype] + b;
        }
    }
  g_string_append_printf (out, "%-15s", "Dtypes on disk:");
  gboolean first = TRUE;
  for (int d = 0; d <= SD_DTYPE_BOOL; d++)
    if (counts[d])
      {
        g_autofree char *hb = human_bytes (bytes[d]);
        g_string_append_printf (out, "%s %s x %u (%s)", first ? "" : ",", sd_dtype_name ((SdDType) d), counts[d],
                                hb);
        first = FALSE;
      }
  g_string_append_c (out, '\n');

  g_autofree char *m16 = human_bytes ((guint64) sd_model_weight_bytes (m, NULL, 2));
  g_autofree char *m32 = human_bytes ((guint64) sd_model_weight_bytes (m, NULL, 4));
  g_string_append_printf (out, "%-15s fp16 compute %s, fp32 compute %s (weights only", "Memory:", m16, m32);
  if (m->comp[SD_COMP_VAE].present && (c->arch == SD_ARCH_SDXL || c->arch == SD_ARCH_SDXL_REFINER))
    {
      g_autofree char *v = human_bytes ((guint64) sd_model_weight_bytes (m, "vae", 2));
      g_string_append_printf (out, "; an fp32 VAE, as SDXL's needs, adds %s", v);
    }
  g_string_append (out, "; activations depend on the image size)\n");

  /* Ignored extras, grouped by why. */
  if (m->ignored->len)
    {
      g_autoptr (GHashTable) why = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
      g_autoptr (GPtrArray) order = g_ptr_array_new ();
      for (guint i = 0; i < m->ignored->len; i++)
        {
          const char *line = g_ptr_array_index (m->ignored, i);
          const char *colon = strstr (line, ": ");
          const char *reason = colon ? colon + 2 : line;
          gpointer k, v;
          if (g_hash_table_lookup_extended (why, reason, &k, &v))
            g_hash_table_insert (why, g_strdup (reason), GUINT_TO_POINTER (GPOINTER_TO_UINT (v) + 1));
          else
            {
              char *key = g_strdup (reason);
              g_hash_table_insert (why, key, GUINT_TO_POINTER (1));
              g_ptr_array_add (order, key);
            }
        }
      g_string_append_printf (out, "%-15s %u non-weight tensors:", "Ignored:", m->ignored->len);
      for (guint i = 0; i < order->len; i++)
        {
          const char *k = g_ptr_array_index (order, i);
          g_string_append_printf (out, "%s %s x %u", i ? ";" : "", k, GPOINTER_TO_UINT (g_hash_table_lookup (why, k)));
        }
      g_string_append_c (out, '\n');
    }
  if (m->notes->len)
    {
      g_string_append (out, "Notes:\n");
      for (guint i = 0; i < m->notes->len; i++)
        g_string_append_printf (out, "  %s\n", (const char *) g_ptr_array_index (m->notes, i));
    }
  append_list (out, "Unknown:", m->unknown, 40);
  append_list (out, "Missing:", m->missing, 40);
  append_list (out, "Mis-shaped:", m->misshaped, 40);
  return TRUE;
}

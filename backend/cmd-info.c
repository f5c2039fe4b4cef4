/* cmd-info.c: `impasto info MODEL...`: what a model file is and what it needs. */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "sd-error.h"
#include "ivk.h"
#include "sd-model.h"
#include "sd-nets.h"

static double
mib (guint64 b)
{
  return b / 1048576.0;
}

/* The activation plan of one UNet call and one VAE decode at WxH, with
 * shapes-only weights (nothing read, nothing uploaded). */
static gboolean
print_plan (SdModel *model, const char *size, int batch, gboolean fp16, GError **error)
{
  int w = 0, h = 0;
  if (sscanf (size, "%dx%d", &w, &h) != 2 || w <= 0 || h <= 0 || w % 8 || h % 8 || batch < 1)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG, "want WxH in multiples of 8 and a batch >= 1, got '%s'",
                   size);
      return FALSE;
    }
  g_autoptr (IvkContext) ctx = ivk_context_new (NULL, error);
  if (!ctx)
    return FALSE;
  const IvkDeviceInfo *info = ivk_context_get_info (ctx);
  const SdModelConfig *cfg = sd_model_get_config (model);
  fp16 = fp16 && info->use_fp16;
  printf ("Memory plan at %dx%d on %s (%s):\n", w, h, info->name, fp16 ? "fp16" : "fp32");
  g_autoptr (SdUNet) unet = sd_unet_new_virtual (ctx, model, fp16, error);
  if (!unet)
    return FALSE;
  IvkGraphStats st;
  if (!sd_unet_plan (unet, batch, h / 8, w / 8, 77, &st, error))
    return FALSE;
  gint64 uw = sd_model_weight_bytes (model, "unet", fp16 ? 2 : 4);
  printf ("  UNet call, batch %d: activations %.1f MiB (%.1f MiB without lifetime reuse), weights "
          "%.1f MiB, largest binding %.1f MiB, %.1f GFLOP, %u dispatches\n",
          batch, mib (st.arena_bytes), mib (st.naive_bytes), mib (uw), mib (st.largest_tensor_bytes),
          st.flops * 1e-9, st.n_nodes);
  if (st.largest_tensor_bytes > info->max_storage_buffer_range)
    printf ("  UNet call does not run on this device at this size: its largest tensor exceeds the "
            "device's binding limit of %.1f MiB\n",
            mib (info->max_storage_buffer_range));
  if (cfg->vae.has_decoder)
    {
      g_autoptr (SdVae) vae = sd_vae_new_virtual (ctx, model, fp16, error);
      if (!vae)
        return FALSE;
      IvkGraphStats vs;
      g_autoptr (GError) e = NULL;
      if (sd_vae_plan_decode (vae, 1, h / 8, w / 8, &vs, &e))
        printf ("  VAE decode (one pass): activations %.1f MiB, largest binding %.1f MiB (device "
                "limit %.1f MiB), %.1f GFLOP\n",
                mib (vs.arena_bytes), mib (vs.largest_tensor_bytes), mib (info->max_storage_buffer_range),
                vs.flops * 1e-9);
      else if (g_error_matches (e, IVK_ERROR, IVK_ERROR_LIMIT))
        printf ("  VAE decode (one pass): not possible on this device (%s)\n", e->message);
      else
        {
          g_propagate_error (error, g_steal_pointer (&e));
          return FALSE;
        }
      int tile = 0;
      gboolean tiled = sd_vae_decode_tiles (vae, 1, h / 8, w / 8, &tile);
      if (tiled)
        printf ("  VAE decode is tiled on this device: tiles of %dx%d latent pixels\n", tile, tile);
    }
  return TRUE;
}

int
cmd_info (int argc, char **argv)
{
  g_autofree char *prediction = NULL;
  g_autofree char *unet_config = NULL;
  gboolean header_only = FALSE;
  g_autofree char *plan = NULL;
  int batch = 2;
  gboolean fp32 = FALSE;
  g_auto (GStrv) models = NULL;
  GOptionEntry entries[] = {
    { "prediction", 0, 0, G_OPTION_ARG_STRING, &prediction,
      "State the prediction type the model was trained for: epsilon or v (the weights cannot tell)",
      "TYPE" },
    { "unet-config", 0, 0, G_OPTION_ARG_FILENAME, &unet_config,
      "A diffusers UNet config.json giving the attention heads of a single-file model", "FILE" },
    { "headers-only", 0, 0, G_OPTION_ARG_NONE, &header_only,
      "Read only the safetensors headers (accepts files that hold no tensor data)", NULL },
    { "plan", 0, 0, G_OPTION_ARG_STRING, &plan,
      "Also print the memory plan of one UNet call and one VAE decode at this image size "
      "(e.g. 512x512), from the allocator's plan: no weights are read or uploaded",
      "WxH" },
    { "batch", 0, 0, G_OPTION_ARG_INT, &batch, "UNet batch for --plan (default 2: the guidance pair)",
      "N" },
    { "fp32", 0, 0, G_OPTION_ARG_NONE, &fp32, "Plan for fp32 instead of the device's fp16", NULL },
    { G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &models, NULL, "MODEL..." },
    { NULL },
  };
  g_autoptr (GOptionContext) ctx = g_option_context_new ("- describe model files");
  g_option_context_set_summary (ctx,
                                "Prints, for each MODEL (a .safetensors checkpoint or a diffusers "
                                "folder), its format, architecture and variant, prediction type, "
                                "parameters per component, dtypes on disk, the memory its weights need "
                                "in fp16 and fp32, and any unknown, missing or mis-shaped tensors. "
                                "A MODEL may also be a shape table (.json with a \"tensors\" "
                                "object, like ../shared/golden/shapes/*_single_file.json): it is "
                                "read as the header of such a checkpoint.");
  g_option_context_set_description (ctx, "Exit status: 0 all models described, 2 usage error, "
                                         "3 a model is missing, unreadable, corrupt or not supported.");
  g_option_context_add_main_entries (ctx, entries, NULL);
  g_autoptr (GError) error = NULL;
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    {
      fprintf (stderr, "impasto info: %s\n", error->message);
      return IMP_EXIT_USAGE;
    }
  if (models == NULL || models[0] == NULL)
    {
      fprintf (stderr, "impasto info: no MODEL given (see impasto info --help)\n");
      return IMP_EXIT_USAGE;
    }

  SdOpenOptions options = { 0 };
  options.header_only = header_only;
  if (prediction)
    {
      options.force_prediction = TRUE;
      if (strcmp (prediction, "epsilon") == 0 || strcmp (prediction, "eps") == 0)
        options.prediction = SD_PREDICTION_EPSILON;
      else if (strcmp (prediction, "v") == 0 || strcmp (prediction, "v_prediction") == 0)
        options.prediction = SD_PREDICTION_V;
      else
        {
          fprintf (stderr, "impasto info: --prediction must be epsilon or v, not '%s'\n", prediction);
          return IMP_EXIT_USAGE;
        }
    }
  g_autofree char *unet_json = NULL;
  if (unet_config)
    {
      if (!g_file_get_contents (unet_config, &unet_json, NULL, &error))
        {
          fprintf (stderr, "impasto info: %s\n", error->message);
          return IMP_EXIT_INPUT;
        }
      options.unet_config_json = unet_json;
    }

  int status = IMP_EXIT_OK;
  for (int i = 0; models[i]; i++)
    {
      g_autoptr (GError) err = NULL;
      g_autoptr (SdModel) model = sd_model_is_shape_table (models[i])
                                      ? sd_model_open_shape_table (models[i], &options, &err)
                                      : sd_model_open (models[i], &options, &err);
      if (i > 0)
        printf ("\n");
      if (model == NULL)
        {
          fflush (stdout);
          fprintf (stderr, "impasto info: %s\n", err->message);
          status = IMP_EXIT_INPUT;
          continue;
        }
      g_autoptr (GString) out = g_string_new (NULL);
      if (!sd_model_describe (model, out, &err))
        {
          fprintf (stderr, "impasto info: %s\n", err->message);
          status = IMP_EXIT_INPUT;
          continue;
        }
      fputs (out->str, stdout);
      if (plan && !print_plan (model, plan, batch, !fp32, &err))
        {
          fprintf (stderr, "impasto info: --plan: %s\n", err->message);
          status = IMP_EXIT_FAILURE;
        }
    }
  return status;
}

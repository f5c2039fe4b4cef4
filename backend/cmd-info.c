/* cmd-info.c: `impasto info MODEL...`: what a model file is and what it needs. */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "sd-error.h"
#include "sd-model.h"

int
cmd_info (int argc, char **argv)
{
  g_autofree char *prediction = NULL;
  g_autofree char *unet_config = NULL;
  gboolean header_only = FALSE;
  g_auto (GStrv) models = NULL;
  GOptionEntry entries[] = {
    { "prediction", 0, 0, G_OPTION_ARG_STRING, &prediction,
      "State the prediction type the model was trained for: epsilon or v (the weights cannot tell)",
      "TYPE" },
    { "unet-config", 0, 0, G_OPTION_ARG_FILENAME, &unet_config,
      "A diffusers UNet config.json giving the attention heads of a single-file model", "FILE" },
    { "headers-only", 0, 0, G_OPTION_ARG_NONE, &header_only,
      "Read only the safetensors headers (accepts files that hold no tensor data)", NULL },
    { G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &models, NULL, "MODEL..." },
    { NULL },
  };
  g_autoptr (GOptionContext) ctx = g_option_context_new ("- describe model files");
  g_option_context_set_summary (ctx,
                                "Prints, for each MODEL (a .safetensors checkpoint or a diffusers "
                                "folder), its format, architecture and variant, prediction type, "
                                "parameters per component, dtypes on disk, the memory its weights need "
                                "in fp16 and fp32, and any unknown, missing or mis-shaped tensors.");
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
      g_autoptr (SdModel) model = sd_model_open (models[i], &options, &err);
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
    }
  return status;
}

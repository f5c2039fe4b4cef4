/* cmd-generate.c: `impasto generate | img2img | inpaint`: one job in-process,
 * PNG files out. The job itself is job.c, shared with `impasto serve`. */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "ivk.h"
#include "job.h"
#include "models.h"
#include "sd-error.h"

/* Set by SIGINT / SIGTERM; polled between sampling steps. */
static volatile sig_atomic_t interrupted = 0;

static void
on_signal (int sig)
{
  interrupted = 1;
}

static void
install_signal_handlers (void)
{
  struct sigaction sa;
  memset (&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset (&sa.sa_mask);
  /* a second Ctrl-C kills at once (e.g. while a large model loads) */
  sa.sa_flags = SA_RESETHAND;
  sigaction (SIGINT, &sa, NULL);
  sigaction (SIGTERM, &sa, NULL);
}

static void
block_signals (gboolean block)
{
  sigset_t set;
  sigemptyset (&set);
  sigaddset (&set, SIGINT);
  sigaddset (&set, SIGTERM);
  sigprocmask (block ? SIG_BLOCK : SIG_UNBLOCK, &set, NULL);
}

/* ---- progress ---------------------------------------------------------------------- */

typedef struct
{
  gboolean tty, quiet;
  gint64 start; /* monotonic time of the first step report */
} Progress;

static void
format_duration (char *buf, gsize len, double s)
{
  if (!isfinite (s) || s < 0)
    s = 0;
  long t = (long) (s + 0.5);
  if (t >= 3600)
    g_snprintf (buf, len, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
  else
    g_snprintf (buf, len, "%ld:%02ld", t / 60, t % 60);
}

static gboolean
on_progress (gpointer data, const ImpJobProgress *p)
{
  Progress *pr = data;
  if (interrupted)
    return FALSE;
  if (pr->quiet)
    return TRUE;
  gint64 now = g_get_monotonic_time ();
  if (pr->start == 0)
    pr->start = now;
  double elapsed = (now - pr->start) / 1e6;
  /* ETA from the pace of the steps so far; the first step's time is not
   * known until the second report, so it counts from the first report */
  double done = p->fraction;
  int percent = (int) floor (done * 100 + 0.5);
  char eta[32] = "?";
  if (p->step > 1 || p->iteration > 0)
    {
      double per_step = elapsed / ((p->iteration * (double) p->total) + p->step - 1);
      double left = per_step * ((double) (p->n_iter - p->iteration) * p->total - p->step);
      format_duration (eta, sizeof eta, left);
    }
  if (pr->tty)
    {
      const int width = 30;
      int fill = (int) (done * width);
      char bar[64];
      for (int i = 0; i < width; i++)
        bar[i] = i < fill ? '#' : '.';
      bar[width] = '\0';
      fprintf (stderr, "\r[%s] %3d%%  step %d/%d", bar, percent, p->step, p->total);
      if (p->n_iter > 1)
        fprintf (stderr, " (run %d/%d)", p->iteration + 1, p->n_iter);
      fprintf (stderr, "  ETA %s  \033[K", eta);
      if (p->step == p->total && p->iteration == p->n_iter - 1)
        fprintf (stderr, "\n");
      fflush (stderr);
    }
  else
    {
      /* one line per step: logs and pipes read them as they come */
      if (p->n_iter > 1)
        fprintf (stderr, "run %d/%d ", p->iteration + 1, p->n_iter);
      fprintf (stderr, "step %d/%d (%d%%), ETA %s\n", p->step, p->total, percent, eta);
    }
  return TRUE;
}

/* ---- files ------------------------------------------------------------------------- */

/* With a batch, image i (1-based) goes to NAME-i.EXT: the index is inserted
 * before the extension (or appended when there is none) and zero-padded to
 * the width of the batch size (out.png -> out-1.png ... out-4.png; with 12
 * images out-01.png ... out-12.png). */
static char *
numbered_path (const char *path, int index, int count)
{
  if (count <= 1)
    return g_strdup (path);
  int digits = 1;
  for (int c = count; c >= 10; c /= 10)
    digits++;
  const char *slash = strrchr (path, '/');
  const char *base = slash ? slash + 1 : path;
  const char *dot = strrchr (base, '.');
  if (!dot || dot == base)
    return g_strdup_printf ("%s-%0*d", path, digits, index);
  return g_strdup_printf ("%.*s-%0*d%s", (int) (dot - path), path, digits, index, dot);
}

static int
exit_code_for (const GError *e)
{
  if (g_error_matches (e, SD_ERROR, SD_ERROR_CANCELLED))
    return IMP_EXIT_CANCELLED;
  if (e->domain == SD_ERROR)
    switch ((SdError) e->code)
      {
      case SD_ERROR_INVALID_ARG:
        return IMP_EXIT_USAGE;
      case SD_ERROR_IO:
      case SD_ERROR_CORRUPT:
      case SD_ERROR_UNSUPPORTED:
      case SD_ERROR_MISSING:
        return IMP_EXIT_INPUT;
      default:
        break;
      }
  return IMP_EXIT_FAILURE;
}

/* Load a PNG given on the command line, with limits that refuse absurd sizes
 * before any pixel memory is allocated. */
static SdImage *
load_png (const char *what, const char *path, int channels, GError **error)
{
  SdImageLimits limits
      = { .max_width = 16384, .max_height = 16384, .max_pixels = (guint64) 8192 * 8192 };
  SdImage *img = sd_image_load_png (path, channels, &limits, error);
  if (!img)
    g_prefix_error (error, "%s: ", what);
  return img;
}

static const char *
mode_command (SdMode mode)
{
  return mode == SD_MODE_TXT2IMG ? "generate" : mode == SD_MODE_IMG2IMG ? "img2img" : "inpaint";
}

#define FAIL(code, ...)                                                                            \
  do                                                                                               \
    {                                                                                              \
      fprintf (stderr, "impasto %s: ", cmd);                                                       \
      fprintf (stderr, __VA_ARGS__);                                                               \
      fprintf (stderr, "\n");                                                                      \
      return (code);                                                                               \
    }                                                                                              \
  while (0)

static int
run_generate (int argc, char **argv, SdMode mode)
{
  const char *cmd = mode_command (mode);
  g_autofree char *model = NULL, *prompt = NULL, *negative = NULL, *sampler = NULL;
  g_autofree char *seed_str = NULL, *init_path = NULL, *mask_path = NULL, *output = NULL;
  g_autofree char *device = NULL;
  /* G_MININT / -HUGE_VAL: not given (the model's default applies) */
  int width = 0, height = 0, steps = G_MININT, batch = 1, clip_skip = 0;
  int mask_blur = 4, padding = 32;
  double cfg = -HUGE_VAL, strength = mode == SD_MODE_INPAINT ? 1.0 : 0.75;
  gboolean no_fp16 = FALSE, quiet = FALSE, karras = FALSE, mask_invert = FALSE, full_res = FALSE;
  g_auto (GStrv) rest = NULL;

  GOptionEntry common[] = {
    { "model", 'm', 0, G_OPTION_ARG_FILENAME, &model,
      "Model: a .safetensors file, a diffusers folder, or a name in the model folders "
      "(default: the bundled model)",
      "PATH|NAME" },
    { "prompt", 'p', 0, G_OPTION_ARG_STRING, &prompt, "What to paint (A1111 syntax: (word:1.2))",
      "TEXT" },
    { "negative", 'n', 0, G_OPTION_ARG_STRING, &negative, "What to avoid", "TEXT" },
    { "width", 'W', 0, G_OPTION_ARG_INT, &width,
      "Width in pixels, a multiple of 8 (default: the model's, or the init image's size)", "PX" },
    { "height", 'H', 0, G_OPTION_ARG_INT, &height, "Height in pixels, a multiple of 8", "PX" },
    { "steps", 's', 0, G_OPTION_ARG_INT, &steps,
      "Sampling steps (default: the model's; 20 for SD 1.x)", "N" },
    { "cfg", 'c', 0, G_OPTION_ARG_DOUBLE, &cfg,
      "Guidance scale, 0-100 (default: the model's, 7 for SD 1.x; <= 1 turns classifier-free "
      "guidance off)",
      "SCALE" },
    { "sampler", 0, 0, G_OPTION_ARG_STRING, &sampler,
      "Sampler: euler, euler_a, ddim, dpmpp_2m, dpmpp_2m_karras, lcm, or an A1111 name "
      "(default: the model's, euler_a for SD 1.x)",
      "NAME" },
    { "karras", 0, 0, G_OPTION_ARG_NONE, &karras,
      "Karras noise schedule (Euler, Euler a, DPM++ 2M)", NULL },
    { "seed", 0, 0, G_OPTION_ARG_STRING, &seed_str,
      "Seed, 0 to 2^64-1 (default or -1: random, printed); image i of a batch uses seed + i", "N" },
    { "batch", 'b', 0, G_OPTION_ARG_INT, &batch, "Images to make (default 1)", "N" },
    { "output", 'o', 0, G_OPTION_ARG_FILENAME, &output,
      "Output PNG (default impasto-SEED.png); a batch writes FILE-1.png ... FILE-N.png", "FILE" },
    { "clip-skip", 0, 0, G_OPTION_ARG_INT, &clip_skip,
      "Condition on an earlier CLIP layer (A1111 'Clip skip'; 1 = the last)", "N" },
    { "no-fp16", 0, 0, G_OPTION_ARG_NONE, &no_fp16, "Compute in fp32 even where fp16 is available",
      NULL },
    { "device", 0, 0, G_OPTION_ARG_STRING, &device,
      "Vulkan device: index or name substring (default: $IMPASTO_DEVICE, else the best)", "DEV" },
    { "quiet", 'q', 0, G_OPTION_ARG_NONE, &quiet, "No progress output", NULL },
    { G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_STRING_ARRAY, &rest, NULL, NULL },
    { NULL },
  };
  GOptionEntry image_entries[] = {
    { "init", 'i', 0, G_OPTION_ARG_FILENAME, &init_path, "The image to start from (PNG)", "FILE" },
    { "strength", 0, 0, G_OPTION_ARG_DOUBLE, &strength,
      "How much to change it, in (0, 1] (default 0.75 img2img, 1 inpaint)", "S" },
    { NULL },
  };
  GOptionEntry mask_entries[] = {
    { "mask", 0, 0, G_OPTION_ARG_FILENAME, &mask_path,
      "Mask PNG of the init image's size: white = repaint (gray or RGB), or the alpha of an "
      "RGBA image (opaque = repaint)",
      "FILE" },
    { "mask-blur", 0, 0, G_OPTION_ARG_INT, &mask_blur,
      "Blur the mask's edge by a gaussian of this sigma in px (default 4, as A1111)", "PX" },
    { "mask-invert", 0, 0, G_OPTION_ARG_NONE, &mask_invert, "Repaint where the mask is black",
      NULL },
    { "full-res", 0, 0, G_OPTION_ARG_NONE, &full_res,
      "Inpaint only the masked area at the full --width x --height, then paste it back "
      "(A1111 'inpaint_full_res')",
      NULL },
    { "full-res-padding", 0, 0, G_OPTION_ARG_INT, &padding,
      "Context around the masked area with --full-res, px (default 32)", "PX" },
    { NULL },
  };

  const char *summary[] = {
    [SD_MODE_TXT2IMG] = "- paint an image from a prompt",
    [SD_MODE_IMG2IMG] = "- repaint an image, guided by a prompt",
    [SD_MODE_INPAINT] = "- repaint the masked part of an image",
  };
  g_autoptr (GOptionContext) ctx = g_option_context_new (summary[mode]);
  g_option_context_set_description (
      ctx,
      "Output: PNG with the settings in a 'parameters' text chunk (AUTOMATIC1111 format). A batch\n"
      "of N > 1 writes FILE-1.png ... FILE-N.png (the index before the extension, zero-padded to\n"
      "the width of N). Files are written only when the job has finished, each atomically.\n"
      "\n"
      "Models by name are looked up in $XDG_DATA_HOME/impasto/models and the folders of\n"
      "$IMPASTO_MODEL_PATH (colon-separated).\n"
      "\n"
      "Exit status: 0 done; 1 the job failed (device error, out of memory); 2 bad option or\n"
      "parameter; 3 an input file (model, image, mask) is missing, unreadable, corrupt, of the\n"
      "wrong kind or size; 130 interrupted (Ctrl-C, SIGTERM): nothing is written.");
  g_option_context_add_main_entries (ctx, common, NULL);
  if (mode != SD_MODE_TXT2IMG)
    g_option_context_add_main_entries (ctx, image_entries, NULL);
  if (mode == SD_MODE_INPAINT)
    g_option_context_add_main_entries (ctx, mask_entries, NULL);
  g_autoptr (GError) error = NULL;
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    FAIL (IMP_EXIT_USAGE, "%s (see impasto %s --help)", error->message, cmd);
  if (rest && rest[0])
    FAIL (IMP_EXIT_USAGE, "unexpected argument '%s' (quote the prompt and give it with --prompt)",
          rest[0]);

  /* ---- parameters that need no file ------------------------------------------------ */
  g_auto (ImpJobParams) params = { 0 };
  imp_job_params_init (&params);
  params.mode = mode;
  params.prompt = g_strdup (prompt ? prompt : "");
  params.negative = negative && *negative ? g_strdup (negative) : NULL;
  if (steps != G_MININT)
    params.steps = steps;
  else
    params.unset |= IMP_UNSET_STEPS;
  if (cfg != -HUGE_VAL)
    params.cfg_scale = cfg;
  else
    params.unset |= IMP_UNSET_CFG;
  if (!sampler)
    params.unset |= IMP_UNSET_SAMPLER;
  params.batch = batch;
  params.clip_skip = clip_skip;
  params.strength = strength;
  params.karras = karras;
  params.no_fp16 = no_fp16;
  params.mask_blur = mask_blur;
  params.mask_invert = mask_invert;
  params.full_res = full_res;
  params.full_res_padding = padding;
  if (width < 0 || height < 0 || (width && width % 8) || (height && height % 8))
    FAIL (IMP_EXIT_USAGE, "--width and --height must be positive multiples of 8 (got %dx%d)", width,
          height);
  if (sampler && !sd_sampler_from_name (sampler, &params.sampler, &error))
    FAIL (IMP_EXIT_USAGE, "%s", error->message);
  gboolean have_seed = FALSE;
  if (seed_str && strcmp (seed_str, "-1") != 0)
    {
      guint64 v;
      if (!g_ascii_string_to_unsigned (seed_str, 10, 0, G_MAXUINT64, &v, NULL))
        FAIL (IMP_EXIT_USAGE,
              "--seed must be a whole number from 0 to %" G_GUINT64_FORMAT
              " or -1 for random (got '%s')",
              G_MAXUINT64, seed_str);
      params.seed = v;
      have_seed = TRUE;
    }
  /* check the numbers now with a placeholder size, so a bad --steps is
   * reported before any file is read or model loaded */
  {
    ImpJobParams probe = params;
    probe.mode = SD_MODE_TXT2IMG;
    probe.width = width ? width : 512;
    probe.height = height ? height : 512;
    if (!imp_job_params_validate (&probe, NULL, &error))
      FAIL (IMP_EXIT_USAGE, "%s", error->message);
    if (mode != SD_MODE_TXT2IMG && (!isfinite (strength) || strength <= 0 || strength > 1))
      FAIL (IMP_EXIT_USAGE, "--strength must be in (0, 1] (got %g)", strength);
  }
  if (mode != SD_MODE_TXT2IMG && !init_path)
    FAIL (IMP_EXIT_USAGE, "--init FILE is required");
  if (mode == SD_MODE_INPAINT && !mask_path)
    FAIL (IMP_EXIT_USAGE, "--mask FILE is required");
  if (!have_seed)
    params.seed = g_random_int ();

  g_autofree char *out_path
      = output ? g_strdup (output)
               : g_strdup_printf ("impasto-%" G_GUINT64_FORMAT ".png", params.seed);
  {
    g_autofree char *dir = g_path_get_dirname (out_path);
    if (!g_file_test (dir, G_FILE_TEST_IS_DIR))
      FAIL (IMP_EXIT_USAGE, "cannot write %s: folder %s does not exist", out_path, dir);
    if (g_file_test (out_path, G_FILE_TEST_IS_DIR))
      FAIL (IMP_EXIT_USAGE, "--output %s is a folder; give a file name", out_path);
  }

  /* ---- input files ----------------------------------------------------------------- */
  if (init_path)
    {
      params.init = load_png ("init image", init_path, 3, &error);
      if (!params.init)
        FAIL (IMP_EXIT_INPUT, "%s", error->message);
    }
  if (mask_path)
    {
      g_autoptr (SdImage) m = load_png ("mask", mask_path, 0, &error);
      if (!m)
        FAIL (IMP_EXIT_INPUT, "%s", error->message);
      if (m->width != params.init->width || m->height != params.init->height)
        FAIL (IMP_EXIT_INPUT,
              "the mask is %dx%d but the init image is %dx%d: they must "
              "be the same size",
              m->width, m->height, params.init->width, params.init->height);
      params.mask = imp_mask_from_image (m);
    }

  /* ---- size, then everything checked before the model is touched ------------------- */
  if (params.init && !(full_res && params.mask))
    {
      if (!width && !height)
        {
          if (imp_round_size (params.init->width, params.init->height, 8, &params.width,
                              &params.height))
            {
              fprintf (stderr,
                       "impasto %s: note: the init image is %dx%d; using %dx%d (multiples "
                       "of 8), the image resized to it\n",
                       cmd, params.init->width, params.init->height, params.width, params.height);
              params.resize_init = TRUE;
            }
        }
      else
        {
          params.width = width ? width : params.init->width;
          params.height = height ? height : params.init->height;
        }
    }
  else if (!width || !height)
    {
      /* the model's default size (checked with A1111's 512 until then) */
      params.width = width ? width : 512;
      params.height = height ? height : 512;
      if (!width && !height)
        params.unset |= IMP_UNSET_SIZE;
      else
        FAIL (IMP_EXIT_USAGE, "give both --width and --height, or neither");
    }
  else
    {
      params.width = width;
      params.height = height;
    }
  /* everything given is checked before the model is touched (unset fields
   * hold placeholders until imp_job_run fills in the model's defaults) */
  if (!imp_job_params_validate (&params, NULL, &error))
    FAIL (IMP_EXIT_USAGE, "%s", error->message);
  g_autofree char *model_path = imp_model_resolve (model, &error);
  if (!model_path)
    FAIL (IMP_EXIT_INPUT, "%s", error->message);

  /* ---- run ------------------------------------------------------------------------- */
  printf ("seed: %" G_GUINT64_FORMAT "\n", params.seed);
  fflush (stdout);
  install_signal_handlers ();
  gint64 t0 = g_get_monotonic_time ();
  IvkContextOptions copts = { .device = device, .no_fp16 = no_fp16 };
  g_autoptr (IvkContext) vk = ivk_context_new (&copts, &error);
  if (!vk)
    FAIL (IMP_EXIT_FAILURE, "%s", error->message);
  imp_pin_loaded_libraries ();
  SdPipelineOptions popts = { .no_fp16 = no_fp16 };
  g_autoptr (SdPipeline) pipeline = sd_pipeline_new (vk, model_path, &popts, &error);
  if (!pipeline)
    FAIL (exit_code_for (error), "%s", error->message);
  gint64 t1 = g_get_monotonic_time ();
  Progress pr = { .tty = isatty (STDERR_FILENO), .quiet = quiet };
  g_auto (ImpJobResult) result = { 0 };
  gboolean ok = !interrupted
                && imp_job_run (pipeline, model_path, &params, on_progress, &pr, &result, &error);
  gint64 t2 = g_get_monotonic_time ();
  if (pr.tty && !quiet && pr.start && !ok)
    fprintf (stderr, "\n");
  if (interrupted || (!ok && g_error_matches (error, SD_ERROR, SD_ERROR_CANCELLED)))
    FAIL (IMP_EXIT_CANCELLED, "interrupted; nothing written");
  if (!ok)
    FAIL (exit_code_for (error), "%s", error->message);
  if (result.defaults && !quiet)
    fprintf (stderr, "impasto %s: note: model defaults: %s (%dx%d, %d steps, CFG %g, %s)\n", cmd,
             result.defaults, params.width, params.height, params.steps, params.cfg_scale,
             sd_sampler_name (params.sampler));
  if (result.notes && !quiet)
    fprintf (stderr, "impasto %s: note: %s\n", cmd, result.notes);

  /* A signal now would leave some files of a batch written: hold it until
   * all are. Each file is written atomically (temporary file + rename). */
  int status = IMP_EXIT_OK;
  block_signals (TRUE);
  for (guint i = 0; i < result.png->len; i++)
    {
      g_autofree char *path = numbered_path (out_path, i + 1, result.png->len);
      GBytes *png = result.png->pdata[i];
      gsize len;
      const char *data = g_bytes_get_data (png, &len);
      if (!g_file_set_contents_full (path, data, len, G_FILE_SET_CONTENTS_CONSISTENT, 0666, &error))
        {
          fprintf (stderr, "impasto %s: %s\n", cmd, error->message);
          status = IMP_EXIT_FAILURE;
          break;
        }
      printf ("wrote %s (seed %" G_GUINT64_FORMAT ")\n", path,
              g_array_index (result.seeds, guint64, i));
    }
  fflush (stdout);
  block_signals (FALSE);
  if (!quiet)
    fprintf (stderr, "impasto %s: model load %.2f s, generation %.2f s\n", cmd, (t1 - t0) / 1e6,
             (t2 - t1) / 1e6);
  return status;
}

int
cmd_generate (int argc, char **argv)
{
  return run_generate (argc, argv, SD_MODE_TXT2IMG);
}

int
cmd_img2img (int argc, char **argv)
{
  return run_generate (argc, argv, SD_MODE_IMG2IMG);
}

int
cmd_inpaint (int argc, char **argv)
{
  return run_generate (argc, argv, SD_MODE_INPAINT);
}

/* impasto-gimp2.c: the GIMP 2.10 front end of the Impasto plug-in.
 *
 * Registers Filters > Impasto > Generate Layer from Prompt..., Image to
 * Image... and Inpaint Selection... (the parameters are in imp-params.h). A
 * run reads what it needs from the image (imp_run's ImpSource callbacks),
 * builds the whole result without touching the image, then adds it as one
 * new layer (with its layer mask and the "impasto-job" parasite) inside one
 * undo group. On any error or cancel nothing is changed.
 */
#include "config.h"

#include <string.h>

#include <libgimp/gimp.h>
#include <libgimp/gimpui.h>

#include "imp-client.h"
#include "imp-dialog.h"
#include "imp-models.h"
#include "imp-params.h"
#include "imp-run.h"
#include "sd-error.h"

#define PARASITE_JOB "impasto-job"

static void query (void);
static void run (const gchar *name, gint nparams, const GimpParam *param, gint *nreturn_vals,
                 GimpParam **return_vals);

const GimpPlugInInfo PLUG_IN_INFO = { NULL, NULL, query, run };

MAIN ()

/* ---- registration ------------------------------------------------------------------------------
 */

#define N_COMMON_ARGS 11

static const GimpParamDef common_args[N_COMMON_ARGS] = {
  { GIMP_PDB_INT32, "run-mode",
    "The run mode { RUN-INTERACTIVE (0), RUN-NONINTERACTIVE (1), "
    "RUN-WITH-LAST-VALS (2) }" },
  { GIMP_PDB_IMAGE, "image", "Input image" },
  { GIMP_PDB_DRAWABLE, "drawable", "Input drawable (the new layer goes above it)" },
  { GIMP_PDB_STRING, "prompt", "What to paint" },
  { GIMP_PDB_STRING, "negative-prompt", "What to avoid (\"\" for none)" },
  { GIMP_PDB_STRING, "model",
    "Model: \"\" for the default model, a name from the model folders "
    "($XDG_DATA_HOME/impasto/models, IMPASTO_MODEL_PATH, folders added "
    "in the dialog), or the path of a .safetensors file or diffusers "
    "folder" },
  { GIMP_PDB_STRING, "sampler",
    "Sampler: \"Euler a\" (\"\" = this), \"Euler\", \"DDIM\", "
    "\"DPM++ 2M\", \"DPM++ 2M Karras\", \"LCM\"" },
  { GIMP_PDB_INT32, "steps", "Sampling steps (1..150)" },
  { GIMP_PDB_FLOAT, "cfg-scale", "Classifier-free guidance scale (0..30)" },
  { GIMP_PDB_INT32, "seed", "Seed (0..2147483647), -1 for a random one" },
  { GIMP_PDB_INT32, "size",
    "Working size: the model works on about size x size pixels (aspect "
    "kept, sides multiples of 8) and the result is scaled to fit; 0 for "
    "the model's native resolution (512 SD 1.x, 768 SD 2.x, 1024 SDXL), "
    "else 64..2048" },
};

static const GimpParamDef return_vals[] = {
  { GIMP_PDB_LAYER, "layer", "The new layer" },
  { GIMP_PDB_INT32, "seed", "The seed used" },
};

static void
install (ImpProc proc, const char *blurb, const char *help, const GimpParamDef *extra, int n_extra)
{
  int n = N_COMMON_ARGS + n_extra;
  GimpParamDef *args = g_new (GimpParamDef, n);
  memcpy (args, common_args, sizeof common_args);
  memcpy (args + N_COMMON_ARGS, extra, n_extra * sizeof *extra);
  gimp_install_procedure (imp_proc_name (proc), blurb, help, "The Impasto authors",
                          "The Impasto authors (GPL-3.0-or-later)", "2025",
                          imp_proc_menu_label (proc), "RGB*, GRAY*", GIMP_PLUGIN, n,
                          G_N_ELEMENTS (return_vals), args, return_vals);
  gimp_plugin_menu_register (imp_proc_name (proc), "<Image>/Filters/Impasto");
  g_free (args);
}

static void
query (void)
{
  static const GimpParamDef generate_args[] = {
    { GIMP_PDB_INT32, "use-selection",
      "TRUE: the layer covers the selection's bounds (when "
      "there is a selection); FALSE: the whole image" },
  };
  static const GimpParamDef img2img_args[] = {
    { GIMP_PDB_FLOAT, "strength", "Denoising strength (0..1]: how much to change" },
    { GIMP_PDB_INT32, "use-selection",
      "TRUE: repaint the selection's bounds within the drawable "
      "(the new layer's mask is the selection); FALSE: the "
      "whole drawable" },
  };
  static const GimpParamDef inpaint_args[] = {
    { GIMP_PDB_FLOAT, "strength",
      "Denoising strength (0..1]; 1 repaints the selection from "
      "noise" },
    { GIMP_PDB_FLOAT, "padding",
      "Context around the selection, in % of the selection's larger "
      "side (0..500; at least 32 px)" },
    { GIMP_PDB_INT32, "grow", "Grow the selection by this many pixels (0..512)" },
    { GIMP_PDB_FLOAT, "feather",
      "Feather radius of the new layer's mask in pixels (0..512); 0: "
      "the mask is exactly the selection" },
    { GIMP_PDB_FLOAT, "color-match",
      "Colour match of the result to the pixels around the "
      "selection (0 off .. 1 full)" },
  };

  install (IMP_PROC_GENERATE, "Paint a new layer from a text prompt with Stable Diffusion",
           "Generates an image from the prompt and adds it as a new layer above the drawable, "
           "the size of the image or of the selection's bounds. The job runs in the Impasto "
           "backend (impasto serve), started when needed.",
           generate_args, G_N_ELEMENTS (generate_args));
  install (IMP_PROC_IMG2IMG, "Repaint the layer (or the selected part) guided by a prompt",
           "Image to image with Stable Diffusion: the drawable, or the selection's bounds within "
           "it, is repainted at the given strength and added as a new layer above it, masked "
           "by the selection when one is used.",
           img2img_args, G_N_ELEMENTS (img2img_args));
  install (IMP_PROC_INPAINT, "Repaint the selection with Stable Diffusion",
           "Inpaints the selection: the model sees the selection's bounds plus some context, "
           "scaled to its working size, and repaints the selected part. The result is a new "
           "layer above the drawable whose layer mask is the (grown, feathered) selection, so "
           "every pixel outside it is unchanged; one undo removes it.",
           inpaint_args, G_N_ELEMENTS (inpaint_args));
}

/* ---- reading the image ------------------------------------------------------------------------
 */

typedef struct
{
  gint32 image;
  gint32 drawable; /* the layer (a layer mask's layer) */
  int off_x, off_y;
} Host;

static SdImage *
read_pixels (gpointer data, ImpRect r, GError **error)
{
  Host *h = data;
  SdImage *img = sd_image_new (r.width, r.height, 4, error);
  if (!img)
    return NULL;
  GeglBuffer *buf = gimp_drawable_get_buffer (h->drawable);
  if (!buf)
    {
      sd_image_free (img);
      g_set_error (error, SD_ERROR, SD_ERROR_FAILED, "cannot read the drawable's pixels");
      return NULL;
    }
  gegl_buffer_get (buf, GEGL_RECTANGLE (r.x - h->off_x, r.y - h->off_y, r.width, r.height), 1.0,
                   babl_format ("R'G'B'A u8"), img->data, img->stride, GEGL_ABYSS_NONE);
  g_object_unref (buf);
  return img;
}

static float *
read_selection (gpointer data, ImpRect r, GError **error)
{
  Host *h = data;
  gint32 sel = gimp_image_get_selection (h->image);
  GeglBuffer *buf = sel > 0 ? gimp_drawable_get_buffer (sel) : NULL;
  if (!buf)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_FAILED, "cannot read the selection");
      return NULL;
    }
  float *mask = g_new0 (float, (gsize) r.width *r.height);
  /* Masks are linear "Y": the float values are the selection's own 0..1. */
  gegl_buffer_get (buf, GEGL_RECTANGLE (r.x, r.y, r.width, r.height), 1.0, babl_format ("Y float"),
                   mask, r.width * sizeof (float), GEGL_ABYSS_NONE);
  g_object_unref (buf);
  return mask;
}

static gboolean
describe_image (Host *h, gint32 image, gint32 drawable, ImpSource *src, GError **error)
{
  h->image = image;
  h->drawable = drawable;
  if (gimp_item_is_layer_mask (drawable))
    h->drawable = gimp_layer_from_mask (drawable);
  if (h->drawable <= 0 || !gimp_item_is_drawable (h->drawable))
    {
      g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG, "no drawable to work on");
      return FALSE;
    }
  gimp_drawable_offsets (h->drawable, &h->off_x, &h->off_y);

  memset (src, 0, sizeof *src);
  src->image_width = gimp_image_width (image);
  src->image_height = gimp_image_height (image);
  src->drawable = (ImpRect){ h->off_x, h->off_y, gimp_drawable_width (h->drawable),
                             gimp_drawable_height (h->drawable) };
  gboolean non_empty = FALSE;
  gint x1 = 0, y1 = 0, x2 = 0, y2 = 0;
  gimp_selection_bounds (image, &non_empty, &x1, &y1, &x2, &y2);
  src->has_selection = non_empty && x2 > x1 && y2 > y1;
  src->selection = (ImpRect){ x1, y1, x2 - x1, y2 - y1 };
  src->read_pixels = read_pixels;
  src->read_selection = read_selection;
  src->host = h;
  return TRUE;
}

/* ---- writing the result
 * --------------------------------------------------------------------------- */

/* Add the result as a new layer above the drawable: everything inside one
 * undo group. Returns the layer or -1. */
static gint32
apply_result (Host *h, const ImpParams *p, const ImpResult *r, GError **error)
{
  gint32 image = h->image;
  const ImpRect rc = r->rect;
  g_autofree char *name = imp_params_layer_name (p, r->seed);
  GimpImageType type
      = gimp_image_base_type (image) == GIMP_GRAY ? GIMP_GRAYA_IMAGE : GIMP_RGBA_IMAGE;
  gint32 parent = 0, position = 0;

  if (gimp_item_is_layer (h->drawable))
    {
      parent = gimp_item_get_parent (h->drawable);
      if (parent < 0)
        parent = 0;
      position = gimp_image_get_item_position (image, h->drawable);
      if (position < 0)
        position = 0;
    }

  gimp_image_undo_group_start (image);
  gint32 layer
      = gimp_layer_new (image, name, rc.width, rc.height, type, 100.0, GIMP_LAYER_MODE_NORMAL);
  gboolean ok = layer > 0 && gimp_image_insert_layer (image, layer, parent, position);
  if (ok)
    ok = gimp_layer_set_offsets (layer, rc.x, rc.y);
  if (ok)
    {
      GeglBuffer *buf = gimp_drawable_get_buffer (layer);
      ok = buf != NULL;
      if (buf)
        {
          gegl_buffer_set (buf, GEGL_RECTANGLE (0, 0, rc.width, rc.height), 0,
                           babl_format ("R'G'B'A u8"), r->pixels->data, r->pixels->stride);
          g_object_unref (buf);
        }
    }
  if (ok && r->mask)
    {
      gint32 mask = gimp_layer_create_mask (layer, GIMP_ADD_MASK_BLACK);
      ok = mask > 0 && gimp_layer_add_mask (layer, mask);
      GeglBuffer *buf = ok ? gimp_drawable_get_buffer (mask) : NULL;
      ok = buf != NULL;
      if (buf)
        {
          gegl_buffer_set (buf, GEGL_RECTANGLE (0, 0, rc.width, rc.height), 0,
                           babl_format ("Y float"), r->mask, rc.width * sizeof (float));
          g_object_unref (buf);
        }
    }
  if (ok)
    {
      g_autofree char *text = imp_result_job_text (p, r);
      GimpParasite *parasite = gimp_parasite_new (
          PARASITE_JOB, GIMP_PARASITE_PERSISTENT | GIMP_PARASITE_UNDOABLE, strlen (text) + 1, text);
      ok = gimp_item_attach_parasite (layer, parasite);
      gimp_parasite_free (parasite);
    }
  if (ok)
    gimp_drawable_update (layer, 0, 0, rc.width, rc.height);
  else if (layer > 0)
    {
      /* Leave the image as it was: the layer (and its mask) go again. */
      if (gimp_item_is_valid (layer) && gimp_item_get_image (layer) == image)
        gimp_image_remove_layer (image, layer);
      else if (gimp_item_is_valid (layer))
        gimp_item_delete (layer);
    }
  gimp_image_undo_group_end (image);

  if (!ok)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_FAILED, "GIMP refused to add the new layer: %s",
                   gimp_get_pdb_error ());
      return -1;
    }
  return layer;
}

/* ---- running
 * --------------------------------------------------------------------------------------- */

typedef struct
{
  Host host;
  ImpSource src;
  ImpClient *client;
  gint32 layer; /* the result */
  gboolean interactive;
} Job;

static void
gimp_progress_fn (gpointer data, double fraction, const char *text)
{
  if (text)
    gimp_progress_set_text (text);
  if (fraction < 0)
    gimp_progress_pulse ();
  else
    gimp_progress_update (fraction);
}

static gboolean
run_job (gpointer data, ImpParams *p, ImpProgressFn progress, gpointer progress_data,
         GCancellable *cancellable, GError **error)
{
  Job *job = data;
  g_auto (ImpResult) r = { 0 };

  if (!imp_run (job->client, p, &job->src, progress, progress_data, cancellable, &r, error))
    return FALSE;
  p->last_seed = r.seed;
  /* A cancel that came after the last byte: still nothing changes. */
  if (g_cancellable_is_cancelled (cancellable))
    {
      g_set_error (error, SD_ERROR, SD_ERROR_CANCELLED, "cancelled");
      return FALSE;
    }
  job->layer = apply_result (&job->host, p, &r, error);
  if (job->layer < 0)
    return FALSE;
  if (job->interactive)
    gimp_displays_flush ();
  return TRUE;
}

static void
load_last_values (ImpParams *p)
{
  const char *name = imp_proc_name (p->proc);
  gint size = gimp_get_data_size (name);
  if (size <= 0 || size > 16 * 1024 * 1024)
    return;
  g_autofree char *buf = g_malloc0 (size + 1);
  if (gimp_get_data (name, buf))
    imp_params_from_text (p, buf, strnlen (buf, size), FALSE, NULL);
}

static void
save_last_values (const ImpParams *p)
{
  g_autofree char *text = imp_params_to_text (p, NULL);
  gimp_set_data (imp_proc_name (p->proc), text, strlen (text) + 1);
}

static char *
job_parasite_of (gint32 drawable)
{
  if (drawable <= 0 || !gimp_item_is_valid (drawable))
    return NULL;
  GimpParasite *parasite = gimp_item_get_parasite (drawable, PARASITE_JOB);
  if (!parasite)
    return NULL;
  gsize size = gimp_parasite_data_size (parasite);
  const char *data = gimp_parasite_data (parasite);
  char *text = size ? g_strndup (data, size) : NULL;
  gimp_parasite_free (parasite);
  return text;
}

static gboolean
params_from_pdb (ImpParams *p, gint nparams, const GimpParam *param, GError **error)
{
  ImpOptions uses = imp_proc_uses (p->proc);
  int expected = N_COMMON_ARGS
                 + (p->proc == IMP_PROC_GENERATE  ? 1
                    : p->proc == IMP_PROC_IMG2IMG ? 2
                                                  : 5);
  if (nparams != expected)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG, "%s takes %d arguments, got %d",
                   imp_proc_name (p->proc), expected, nparams);
      return FALSE;
    }
  imp_params_set_string (&p->prompt, param[3].data.d_string);
  imp_params_set_string (&p->negative, param[4].data.d_string);
  imp_params_set_string (&p->model, param[5].data.d_string);
  imp_params_set_string (&p->sampler, param[6].data.d_string);
  p->steps = param[7].data.d_int32;
  p->cfg_scale = param[8].data.d_float;
  p->seed = param[9].data.d_int32;
  p->size = param[10].data.d_int32;
  int i = N_COMMON_ARGS;
  if (uses & IMP_OPT_STRENGTH)
    p->strength = param[i++].data.d_float;
  if (uses & IMP_OPT_USE_SELECTION)
    p->use_selection = param[i++].data.d_int32 != 0;
  if (uses & IMP_OPT_INPAINT)
    {
      p->padding = param[i++].data.d_float;
      p->grow = param[i++].data.d_int32;
      p->feather = param[i++].data.d_float;
      p->color_match = param[i++].data.d_float;
    }
  if (!*p->sampler)
    imp_params_set_string (&p->sampler, IMP_DEFAULT_SAMPLER);
  return TRUE;
}

static void
run (const gchar *name, gint nparams, const GimpParam *param, gint *nreturn_vals,
     GimpParam **return_vals)
{
  static GimpParam values[3];
  static char *error_text = NULL;
  g_autoptr (GError) error = NULL;
  ImpProc proc;
  Job job = { 0 };
  g_auto (ImpParams) p = { 0 };

  *nreturn_vals = 1;
  *return_vals = values;
  values[0].type = GIMP_PDB_STATUS;
  values[0].data.d_status = GIMP_PDB_SUCCESS;

  if (!imp_proc_from_name (name, &proc) || nparams < 3)
    {
      values[0].data.d_status = GIMP_PDB_CALLING_ERROR;
      return;
    }
  /* before gegl_init starts threads: setenv is not thread-safe */
  imp_models_setup_env ();
  gegl_init (NULL, NULL);

  GimpRunMode mode = param[0].data.d_int32;
  gint32 image = param[1].data.d_image;
  gint32 drawable = param[2].data.d_drawable;
  imp_params_init (&p, proc);
  job.layer = -1;
  job.interactive = mode == GIMP_RUN_INTERACTIVE;
  job.client = imp_client_new ();

  gboolean ok = describe_image (&job.host, image, drawable, &job.src, &error);
  if (ok)
    switch (mode)
      {
      case GIMP_RUN_INTERACTIVE:
        {
          load_last_values (&p);
          g_autofree char *reuse = job_parasite_of (job.host.drawable);
          gimp_ui_init ("impasto", FALSE);
          if (imp_dialog_run (&p, reuse, run_job, &job))
            save_last_values (&p);
          else
            {
              /* keep what the user typed and the last seed for next time */
              save_last_values (&p);
              values[0].data.d_status = GIMP_PDB_CANCEL;
            }
          ok = TRUE;
        }
        break;
      case GIMP_RUN_NONINTERACTIVE:
      case GIMP_RUN_WITH_LAST_VALS:
        if (mode == GIMP_RUN_WITH_LAST_VALS)
          load_last_values (&p);
        else
          {
            gint64 last_seed = p.last_seed;
            load_last_values (&p); /* only for last-seed */
            last_seed = p.last_seed;
            imp_params_clear (&p);
            imp_params_init (&p, proc);
            p.last_seed = last_seed;
            ok = params_from_pdb (&p, nparams, param, &error);
          }
        if (ok)
          {
            gimp_progress_init_printf ("Impasto: %s",
                                       imp_proc_title (proc) + strlen ("Impasto - "));
            ok = run_job (&job, &p, gimp_progress_fn, NULL, NULL, &error);
            gimp_progress_end ();
          }
        if (ok)
          save_last_values (&p);
        break;
      default:
        values[0].data.d_status = GIMP_PDB_CALLING_ERROR;
        ok = TRUE;
      }

  imp_client_free (job.client);
  if (!ok)
    {
      g_free (error_text);
      error_text = g_strdup_printf ("Impasto: %s", error ? error->message : "failed");
      /* also on the console: a script that catches the error still shows why */
      g_printerr ("%s: %s\n", name, error_text);
      values[0].data.d_status = GIMP_PDB_EXECUTION_ERROR;
      values[1].type = GIMP_PDB_STRING;
      values[1].data.d_string = error_text;
      *nreturn_vals = 2;
      return;
    }
  if (values[0].data.d_status == GIMP_PDB_SUCCESS)
    {
      values[1].type = GIMP_PDB_LAYER;
      values[1].data.d_layer = job.layer;
      values[2].type = GIMP_PDB_INT32;
      values[2].data.d_int32 = (gint32) p.last_seed;
      *nreturn_vals = 3;
    }
}

/* impasto-gimp3.c: the GIMP 3 front end of the Impasto plug-in (libgimp-3.0).
 *
 * The same three procedures as the GIMP 2.10 front end, over the same client
 * (imp-run.h): a GimpPlugIn with GimpImageProcedures whose arguments live in
 * a GimpProcedureConfig (so GIMP remembers the last values itself). The
 * interactive dialog is GIMP's generated GimpProcedureDialog, with the prompts
 * as multi-line text views, a model chooser over the model folders (each entry
 * with its detected architecture), the last seed, and a progress bar: it stays
 * open while the job runs and its Cancel stops it.
 *
 * Arguments differ from GIMP 2.10 only where GIMP 3's types do: the drawables
 * are an array (the first is used), the sampler is a choice (ids "euler-a",
 * "euler", "ddim", "dpmpp-2m", "dpmpp-2m-karras", "lcm"), use-selection is a
 * boolean. Results: the new layer and the seed used. As in 2.10, the image is
 * only touched once the whole result exists, in one undo group.
 */
#include "config.h"

#include <string.h>

#include <libgimp/gimp.h>
#include <libgimp/gimpui.h>

#include "imp-client.h"
#include "imp-models.h"
#include "imp-params.h"
#include "imp-run.h"
#include "sd-error.h"
#include "sd-sampler.h"

#define PLUG_IN_BINARY "impasto"
#define PARASITE_JOB "impasto-job"

#define IMP_TYPE_PLUG_IN (imp_plug_in_get_type ())
G_DECLARE_FINAL_TYPE (ImpPlugIn, imp_plug_in, IMP, PLUG_IN, GimpPlugIn)

struct _ImpPlugIn
{
  GimpPlugIn parent_instance;
};

G_DEFINE_TYPE (ImpPlugIn, imp_plug_in, GIMP_TYPE_PLUG_IN)

GIMP_MAIN (IMP_TYPE_PLUG_IN)

/* ---- samplers as a GimpChoice -------------------------------------------------------------- */

/* choice id <-> A1111 display name (sd_sampler_display_name order) */
static const char *const sampler_ids[SD_SAMPLER_N_KINDS] = {
  [SD_SAMPLER_EULER] = "euler",
  [SD_SAMPLER_EULER_A] = "euler-a",
  [SD_SAMPLER_DDIM] = "ddim",
  [SD_SAMPLER_DPMPP_2M] = "dpmpp-2m",
  [SD_SAMPLER_DPMPP_2M_KARRAS] = "dpmpp-2m-karras",
  [SD_SAMPLER_LCM] = "lcm",
};

static GimpChoice *
sampler_choice (void)
{
  GimpChoice *choice = gimp_choice_new ();
  for (int k = 0; k < SD_SAMPLER_N_KINDS; k++)
    gimp_choice_add (choice, sampler_ids[k], k, sd_sampler_display_name (k), NULL);
  return choice;
}

/* ---- registration ---------------------------------------------------------------------------- */

static GimpValueArray *run (GimpProcedure *procedure, GimpRunMode run_mode, GimpImage *image,
                            GimpDrawable **drawables, GimpProcedureConfig *config,
                            gpointer run_data);

static GList *
imp_query_procedures (GimpPlugIn *plug_in)
{
  GList *list = NULL;
  for (int i = 0; i < IMP_PROC_N; i++)
    list = g_list_append (list, g_strdup (imp_proc_name (i)));
  return list;
}

static gboolean
imp_set_i18n (GimpPlugIn *plug_in, const gchar *procedure_name, gchar **gettext_domain,
              gchar **catalog_dir)
{
  return FALSE; /* not translated yet */
}

static GimpProcedure *
imp_create_procedure (GimpPlugIn *plug_in, const gchar *name)
{
  ImpProc proc;
  if (!imp_proc_from_name (name, &proc))
    return NULL;
  ImpParams d;
  imp_params_init (&d, proc);
  ImpOptions uses = imp_proc_uses (proc);

  GimpProcedure *p = gimp_image_procedure_new (plug_in, name, GIMP_PDB_PROC_TYPE_PLUGIN, run,
                                               GINT_TO_POINTER (proc), NULL);
  gimp_procedure_set_image_types (p, "RGB*, GRAY*");
  gimp_procedure_set_sensitivity_mask (p, GIMP_PROCEDURE_SENSITIVE_DRAWABLE);
  gimp_procedure_set_menu_label (p, imp_proc_menu_label (proc));
  gimp_procedure_add_menu_path (p, "<Image>/Filters/Impasto");
  switch (proc)
    {
    case IMP_PROC_GENERATE:
      gimp_procedure_set_documentation (
          p, "Paint a new layer from a text prompt with Stable Diffusion",
          "Generates an image from the prompt and adds it as a new layer above the drawable, the "
          "size of the image or of the selection's bounds. The job runs in the Impasto backend "
          "(impasto serve), started when needed.",
          name);
      break;
    case IMP_PROC_IMG2IMG:
      gimp_procedure_set_documentation (
          p, "Repaint the layer (or the selected part) guided by a prompt",
          "Image to image with Stable Diffusion: the drawable, or the selection's bounds within "
          "it, is repainted at the given strength and added as a new layer above it, masked by "
          "the selection when one is used.",
          name);
      break;
    default:
      gimp_procedure_set_documentation (
          p, "Repaint the selection with Stable Diffusion",
          "Inpaints the selection: the model sees the selection's bounds plus some context, "
          "scaled to its working size, and repaints the selected part. The result is a new layer "
          "above the drawable whose layer mask is the (grown, feathered) selection, so every "
          "pixel outside it is unchanged; one undo removes it.",
          name);
    }
  gimp_procedure_set_attribution (p, "The Impasto authors",
                                  "The Impasto authors (GPL-3.0-or-later)", "2025");

  gimp_procedure_add_string_argument (p, "prompt", "_Prompt", "What to paint", "",
                                      G_PARAM_READWRITE);
  gimp_procedure_add_string_argument (p, "negative-prompt", "_Negative prompt", "What to avoid", "",
                                      G_PARAM_READWRITE);
  gimp_procedure_add_string_argument (
      p, "model", "_Model",
      "\"\" for the default model, a name from the model folders, or the path of a "
      ".safetensors file or diffusers folder",
      "", G_PARAM_READWRITE);
  gimp_procedure_add_choice_argument (p, "sampler", "Sam_pler", "Sampler", sampler_choice (),
                                      "euler-a", G_PARAM_READWRITE);
  gimp_procedure_add_int_argument (p, "steps", "S_teps", "Sampling steps", 1, IMP_STEPS_MAX,
                                   d.steps, G_PARAM_READWRITE);
  gimp_procedure_add_double_argument (p, "cfg-scale", "_Guidance (CFG)",
                                      "Classifier-free guidance scale", 0.0, IMP_CFG_MAX,
                                      d.cfg_scale, G_PARAM_READWRITE);
  gimp_procedure_add_int_argument (p, "seed", "See_d", "Seed, -1 for a random one", -1,
                                   IMP_SEED_MAX, -1, G_PARAM_READWRITE);
  gimp_procedure_add_int_argument (
      p, "size", "Working si_ze",
      "The model works on about size x size pixels (aspect kept); 0 = the model's native "
      "resolution, else 64..2048",
      0, IMP_SIZE_MAX, 0, G_PARAM_READWRITE);
  /* 0..1 (0 is refused when run): GIMP's spin scales want a whole range */
  if (uses & IMP_OPT_STRENGTH)
    gimp_procedure_add_double_argument (p, "strength", "Str_ength",
                                        "Denoising strength: how much to change (1: from noise)",
                                        0.0, 1.0, d.strength, G_PARAM_READWRITE);
  if (uses & IMP_OPT_USE_SELECTION)
    gimp_procedure_add_boolean_argument (
        p, "use-selection",
        proc == IMP_PROC_GENERATE ? "Fill the selection's _bounds"
                                  : "Only the selection's _bounds, masked by it",
        proc == IMP_PROC_GENERATE ? "The layer covers the selection's bounds (else the image)"
                                  : "Repaint the selection's bounds (else the whole layer)",
        TRUE, G_PARAM_READWRITE);
  if (uses & IMP_OPT_INPAINT)
    {
      gimp_procedure_add_double_argument (p, "padding", "Conte_xt padding",
                                          "Context around the selection, % of its larger side", 0.0,
                                          IMP_PADDING_MAX, d.padding, G_PARAM_READWRITE);
      gimp_procedure_add_int_argument (p, "grow", "Gro_w selection", "Grow the selection (px)", 0,
                                       IMP_GROW_MAX, d.grow, G_PARAM_READWRITE);
      gimp_procedure_add_double_argument (p, "feather", "_Feather edges",
                                          "Feather radius of the layer mask (px); 0: exactly "
                                          "the selection",
                                          0.0, IMP_FEATHER_PX_MAX, d.feather, G_PARAM_READWRITE);
      gimp_procedure_add_double_argument (p, "color-match", "Colour matc_h",
                                          "Colour match to the surrounding pixels (0 = off)", 0.0,
                                          1.0, d.color_match, G_PARAM_READWRITE);
    }
  gimp_procedure_add_layer_return_value (p, "layer", "Layer", "The new layer", FALSE,
                                         G_PARAM_READWRITE);
  gimp_procedure_add_int_return_value (p, "seed", "Seed", "The seed used", -1, IMP_SEED_MAX, 0,
                                       G_PARAM_READWRITE);
  imp_params_clear (&d);
  return p;
}

static void
imp_plug_in_class_init (ImpPlugInClass *klass)
{
  GimpPlugInClass *plug_in_class = GIMP_PLUG_IN_CLASS (klass);
  plug_in_class->query_procedures = imp_query_procedures;
  plug_in_class->create_procedure = imp_create_procedure;
  plug_in_class->set_i18n = imp_set_i18n;
}

static void
imp_plug_in_init (ImpPlugIn *self)
{
}

/* ---- config <-> ImpParams ----------------------------------------------------------------------
 */

static void
config_to_params (GimpProcedureConfig *config, ImpParams *p)
{
  ImpOptions uses = imp_proc_uses (p->proc);
  g_autofree char *prompt = NULL, *negative = NULL, *model = NULL;
  int steps = 0, seed = -1, size = 0;
  double cfg = 0;

  g_object_get (config, "prompt", &prompt, "negative-prompt", &negative, "model", &model, "steps",
                &steps, "cfg-scale", &cfg, "seed", &seed, "size", &size, NULL);
  imp_params_set_string (&p->prompt, prompt);
  imp_params_set_string (&p->negative, negative);
  imp_params_set_string (&p->model, model);
  int k = gimp_procedure_config_get_choice_id (config, "sampler");
  imp_params_set_string (&p->sampler, k >= 0 && k < SD_SAMPLER_N_KINDS ? sd_sampler_display_name (k)
                                                                       : IMP_DEFAULT_SAMPLER);
  p->steps = steps;
  p->cfg_scale = cfg;
  p->seed = seed;
  p->size = size;
  if (uses & IMP_OPT_STRENGTH)
    g_object_get (config, "strength", &p->strength, NULL);
  if (uses & IMP_OPT_USE_SELECTION)
    g_object_get (config, "use-selection", &p->use_selection, NULL);
  if (uses & IMP_OPT_INPAINT)
    g_object_get (config, "padding", &p->padding, "grow", &p->grow, "feather", &p->feather,
                  "color-match", &p->color_match, NULL);
}

static void
params_to_config (const ImpParams *p, GimpProcedureConfig *config)
{
  ImpOptions uses = imp_proc_uses (p->proc);
  const char *sampler = "euler-a";
  for (int k = 0; k < SD_SAMPLER_N_KINDS; k++)
    if (g_ascii_strcasecmp (p->sampler, sd_sampler_display_name (k)) == 0)
      sampler = sampler_ids[k];
  g_object_set (config, "prompt", p->prompt, "negative-prompt", p->negative, "model", p->model,
                "sampler", sampler, "steps", p->steps, "cfg-scale", p->cfg_scale, "seed",
                (int) p->seed, "size", p->size, NULL);
  if (uses & IMP_OPT_STRENGTH)
    g_object_set (config, "strength", p->strength, NULL);
  if (uses & IMP_OPT_USE_SELECTION)
    g_object_set (config, "use-selection", p->use_selection, NULL);
  if (uses & IMP_OPT_INPAINT)
    g_object_set (config, "padding", p->padding, "grow", p->grow, "feather", p->feather,
                  "color-match", p->color_match, NULL);
}

/* ---- reading the image --------------------------------------------------------------------------
 */

typedef struct
{
  GimpImage *image;       /* borrowed */
  GimpDrawable *drawable; /* borrowed: the layer (a layer mask's layer) */
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
  gegl_buffer_get (buf, GEGL_RECTANGLE (r.x - h->off_x, r.y - h->off_y, r.width, r.height), 1.0,
                   babl_format ("R'G'B'A u8"), img->data, img->stride, GEGL_ABYSS_NONE);
  g_object_unref (buf);
  return img;
}

static float *
read_selection (gpointer data, ImpRect r, GError **error)
{
  Host *h = data;
  GimpSelection *sel = gimp_image_get_selection (h->image);
  GeglBuffer *buf = gimp_drawable_get_buffer (GIMP_DRAWABLE (sel));
  float *mask = g_new0 (float, (gsize) r.width *r.height);
  /* masks are linear "Y": the float values are the selection's own 0..1 */
  gegl_buffer_get (buf, GEGL_RECTANGLE (r.x, r.y, r.width, r.height), 1.0, babl_format ("Y float"),
                   mask, r.width * sizeof (float), GEGL_ABYSS_NONE);
  g_object_unref (buf);
  return mask;
}

static gboolean
describe_image (Host *h, GimpImage *image, GimpDrawable **drawables, ImpSource *src, GError **error)
{
  GimpDrawable *d = drawables ? drawables[0] : NULL;
  g_autofree GimpDrawable **selected = NULL;
  if (!d)
    {
      /* a script that named no drawables: the image's selected one */
      selected = gimp_image_get_selected_drawables (image);
      d = selected ? selected[0] : NULL;
    }
  if (d && GIMP_IS_LAYER_MASK (d))
    d = GIMP_DRAWABLE (gimp_layer_from_mask (GIMP_LAYER_MASK (d)));
  if (!d)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG, "no drawable to work on");
      return FALSE;
    }
  h->image = image;
  h->drawable = d;
  gimp_drawable_get_offsets (d, &h->off_x, &h->off_y);

  memset (src, 0, sizeof *src);
  src->image_width = gimp_image_get_width (image);
  src->image_height = gimp_image_get_height (image);
  src->drawable
      = (ImpRect){ h->off_x, h->off_y, gimp_drawable_get_width (d), gimp_drawable_get_height (d) };
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
 * -------------------------------------------------------------------------- */

static GimpLayer *
apply_result (Host *h, const ImpParams *p, const ImpResult *r, GError **error)
{
  GimpImage *image = h->image;
  const ImpRect rc = r->rect;
  g_autofree char *name = imp_params_layer_name (p, r->seed);
  GimpImageType type
      = gimp_image_get_base_type (image) == GIMP_GRAY ? GIMP_GRAYA_IMAGE : GIMP_RGBA_IMAGE;
  GimpLayer *parent = NULL;
  int position = 0;

  if (GIMP_IS_LAYER (h->drawable))
    {
      GimpItem *pi = gimp_item_get_parent (GIMP_ITEM (h->drawable));
      parent = pi && GIMP_IS_LAYER (pi) ? GIMP_LAYER (pi) : NULL;
      position = MAX (0, gimp_image_get_item_position (image, GIMP_ITEM (h->drawable)));
    }

  gimp_image_undo_group_start (image);
  GimpLayer *layer
      = gimp_layer_new (image, name, rc.width, rc.height, type, 100.0, GIMP_LAYER_MODE_NORMAL);
  gboolean ok = layer && gimp_image_insert_layer (image, layer, parent, position);
  if (ok)
    ok = gimp_layer_set_offsets (layer, rc.x, rc.y);
  if (ok)
    {
      GeglBuffer *buf = gimp_drawable_get_buffer (GIMP_DRAWABLE (layer));
      gegl_buffer_set (buf, GEGL_RECTANGLE (0, 0, rc.width, rc.height), 0,
                       babl_format ("R'G'B'A u8"), r->pixels->data, r->pixels->stride);
      g_object_unref (buf);
    }
  if (ok && r->mask)
    {
      GimpLayerMask *mask = gimp_layer_create_mask (layer, GIMP_ADD_MASK_BLACK);
      ok = mask && gimp_layer_add_mask (layer, mask);
      if (ok)
        {
          GeglBuffer *buf = gimp_drawable_get_buffer (GIMP_DRAWABLE (mask));
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
      ok = gimp_item_attach_parasite (GIMP_ITEM (layer), parasite);
      gimp_parasite_free (parasite);
    }
  if (ok)
    gimp_drawable_update (GIMP_DRAWABLE (layer), 0, 0, rc.width, rc.height);
  else if (layer)
    {
      /* leave the image as it was */
      if (gimp_item_get_image (GIMP_ITEM (layer)) == image)
        gimp_image_remove_layer (image, layer);
      else
        gimp_item_delete (GIMP_ITEM (layer));
      layer = NULL;
    }
  gimp_image_undo_group_end (image);

  if (!ok)
    g_set_error (error, SD_ERROR, SD_ERROR_FAILED, "GIMP refused to add the new layer: %s",
                 gimp_pdb_get_last_error (gimp_get_pdb ()));
  return layer;
}

/* ---- running
 * ----------------------------------------------------------------------------------------- */

typedef struct
{
  Host host;
  ImpSource src;
  ImpClient *client;
  GimpLayer *layer; /* the result */
  gint64 seed;
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
run_job (Job *job, ImpParams *p, ImpProgressFn progress, gpointer progress_data,
         GCancellable *cancellable, GError **error)
{
  g_auto (ImpResult) r = { 0 };
  if (!imp_run (job->client, p, &job->src, progress, progress_data, cancellable, &r, error))
    return FALSE;
  job->seed = r.seed;
  if (g_cancellable_is_cancelled (cancellable))
    {
      g_set_error (error, SD_ERROR, SD_ERROR_CANCELLED, "cancelled");
      return FALSE;
    }
  job->layer = apply_result (&job->host, p, &r, error);
  if (!job->layer)
    return FALSE;
  if (job->interactive)
    gimp_displays_flush ();
  return TRUE;
}

/* ---- the dialog
 * -------------------------------------------------------------------------------------- */

typedef struct
{
  GimpProcedureConfig *config;
  GtkWidget *dialog, *progress, *status, *last_seed, *models;
  GPtrArray *model_values; /* char *, per combo row */
  gboolean running;
  GCancellable *cancellable;
} Ui;

static void
ui_progress (gpointer data, double fraction, const char *text)
{
  Ui *ui = data;
  if (fraction < 0)
    gtk_progress_bar_pulse (GTK_PROGRESS_BAR (ui->progress));
  else
    gtk_progress_bar_set_fraction (GTK_PROGRESS_BAR (ui->progress), CLAMP (fraction, 0, 1));
  if (text)
    gtk_progress_bar_set_text (GTK_PROGRESS_BAR (ui->progress), text);
}

static void
on_response (GtkDialog *dialog, int response, Ui *ui)
{
  if (ui->running && ui->cancellable)
    g_cancellable_cancel (ui->cancellable);
}

static gboolean
on_delete (GtkWidget *w, GdkEvent *ev, Ui *ui)
{
  if (ui->running)
    {
      g_cancellable_cancel (ui->cancellable);
      return TRUE;
    }
  return FALSE;
}

static void
on_model_changed (GtkComboBox *combo, Ui *ui)
{
  int i = gtk_combo_box_get_active (combo);
  if (i >= 0 && (guint) i < ui->model_values->len)
    g_object_set (ui->config, "model", (const char *) ui->model_values->pdata[i], NULL);
}

/* The model chooser: the model folders' models with their architecture. */
static GtkWidget *
model_chooser (Ui *ui)
{
  g_autofree char *current = NULL;
  g_object_get (ui->config, "model", &current, NULL);
  g_autoptr (GPtrArray) list = imp_models_scan ();
  GtkWidget *combo = gtk_combo_box_text_new ();
  int active = -1;
  gboolean have_default = FALSE;

  ui->model_values = g_ptr_array_new_with_free_func (g_free);
  for (guint i = 0; i < list->len; i++)
    {
      const ImpModelInfo *m = g_ptr_array_index (list, i);
      g_autofree char *label
          = m->native_size > 0
                ? g_strdup_printf ("%s%s \u2014 %s, %d px", m->name,
                                   m->is_default ? " (default)" : "", m->arch, m->native_size)
                : g_strdup_printf ("%s \u2014 not a usable model", m->name);
      const char *value = m->is_default ? "" : m->path;
      have_default |= m->is_default;
      if (active < 0 && current
          && (g_strcmp0 (current, value) == 0 || g_strcmp0 (current, m->path) == 0
              || g_strcmp0 (current, m->name) == 0))
        active = ui->model_values->len;
      gtk_combo_box_text_append_text (GTK_COMBO_BOX_TEXT (combo), label);
      g_ptr_array_add (ui->model_values, g_strdup (value));
    }
  if (!have_default)
    {
      if (current && !*current)
        active = ui->model_values->len;
      gtk_combo_box_text_append_text (GTK_COMBO_BOX_TEXT (combo),
                                      "Default model (impasto-emoji) \u2014 not installed");
      g_ptr_array_add (ui->model_values, g_strdup (""));
    }
  if (active < 0 && current && *current)
    {
      g_autoptr (GError) e = NULL;
      g_autoptr (ImpModelInfo) m = imp_model_probe (current, &e);
      g_autofree char *label
          = m ? g_strdup_printf ("%s \u2014 %s, %d px", m->name, m->arch, m->native_size)
              : g_strdup_printf ("%s \u2014 not found", current);
      active = ui->model_values->len;
      gtk_combo_box_text_append_text (GTK_COMBO_BOX_TEXT (combo), label);
      g_ptr_array_add (ui->model_values, g_strdup (current));
    }
  gtk_combo_box_set_active (GTK_COMBO_BOX (combo), active >= 0 ? active : 0);
  g_signal_connect (combo, "changed", G_CALLBACK (on_model_changed), ui);
  on_model_changed (GTK_COMBO_BOX (combo), ui);
  return combo;
}

static gboolean
run_dialog (GimpProcedure *procedure, GimpProcedureConfig *config, Job *job, ImpParams *p,
            gint64 last_seed, GError **error)
{
  Ui ui = { 0 };
  ImpOptions uses = imp_proc_uses (p->proc);
  gboolean success = FALSE;

  gimp_ui_init (PLUG_IN_BINARY);
  ui.config = config;
  ui.dialog = gimp_procedure_dialog_new (procedure, config, imp_proc_title (p->proc));
  GimpProcedureDialog *pd = GIMP_PROCEDURE_DIALOG (ui.dialog);

  /* multi-line prompts */
  GtkWidget *tv = gimp_procedure_dialog_get_widget (pd, "prompt", GTK_TYPE_TEXT_VIEW);
  gtk_widget_set_size_request (tv, 380, 72);
  gtk_text_view_set_wrap_mode (GTK_TEXT_VIEW (tv), GTK_WRAP_WORD_CHAR);
  tv = gimp_procedure_dialog_get_widget (pd, "negative-prompt", GTK_TYPE_TEXT_VIEW);
  gtk_widget_set_size_request (tv, 380, 40);
  gtk_text_view_set_wrap_mode (GTK_TEXT_VIEW (tv), GTK_WRAP_WORD_CHAR);

  /* text views get no label of their own */
  GtkWidget *pl = gimp_procedure_dialog_get_label (pd, "prompt-label", "_Prompt", FALSE, TRUE);
  gtk_label_set_mnemonic_widget (
      GTK_LABEL (pl), gimp_procedure_dialog_get_widget (pd, "prompt", GTK_TYPE_TEXT_VIEW));
  gtk_widget_set_halign (pl, GTK_ALIGN_START);
  GtkWidget *nl
      = gimp_procedure_dialog_get_label (pd, "negative-label", "_Negative prompt", FALSE, TRUE);
  gtk_label_set_mnemonic_widget (
      GTK_LABEL (nl), gimp_procedure_dialog_get_widget (pd, "negative-prompt", GTK_TYPE_TEXT_VIEW));
  gtk_widget_set_halign (nl, GTK_ALIGN_START);

  GList *names = NULL;
  /* clang-format off */
  const char *order[] = {
    "prompt-label", "prompt", "negative-label", "negative-prompt", "sampler", "steps",
    "cfg-scale", "seed", "strength", "size", "use-selection", "padding", "grow", "feather",
    "color-match",
  };
  /* clang-format on */
  for (guint i = 0; i < G_N_ELEMENTS (order); i++)
    {
      if (!(uses & IMP_OPT_STRENGTH) && strcmp (order[i], "strength") == 0)
        continue;
      if (!(uses & IMP_OPT_USE_SELECTION) && strcmp (order[i], "use-selection") == 0)
        continue;
      if (!(uses & IMP_OPT_INPAINT)
          && (strcmp (order[i], "padding") == 0 || strcmp (order[i], "grow") == 0
              || strcmp (order[i], "feather") == 0 || strcmp (order[i], "color-match") == 0))
        continue;
      names = g_list_append (names, (gpointer) order[i]);
    }
  gimp_procedure_dialog_fill_list (pd, names);
  g_list_free (names);

  GtkWidget *content = gtk_dialog_get_content_area (GTK_DIALOG (ui.dialog));
  GtkWidget *box = gtk_box_new (GTK_ORIENTATION_VERTICAL, 6);
  gtk_container_set_border_width (GTK_CONTAINER (box), 12);
  GtkWidget *row = gtk_box_new (GTK_ORIENTATION_HORIZONTAL, 6);
  GtkWidget *l = gtk_label_new_with_mnemonic ("_Model:");
  ui.models = model_chooser (&ui);
  gtk_label_set_mnemonic_widget (GTK_LABEL (l), ui.models);
  gtk_box_pack_start (GTK_BOX (row), l, FALSE, FALSE, 0);
  gtk_box_pack_start (GTK_BOX (row), ui.models, TRUE, TRUE, 0);
  gtk_box_pack_start (GTK_BOX (box), row, FALSE, FALSE, 0);
  g_autofree char *seed_text
      = last_seed >= 0
            ? g_strdup_printf ("Last seed: %" G_GINT64_FORMAT " (seed -1 = random)", last_seed)
            : g_strdup ("Seed -1 = random");
  ui.last_seed = gtk_label_new (seed_text);
  gtk_label_set_selectable (GTK_LABEL (ui.last_seed), TRUE);
  gtk_widget_set_halign (ui.last_seed, GTK_ALIGN_START);
  gtk_box_pack_start (GTK_BOX (box), ui.last_seed, FALSE, FALSE, 0);
  ui.progress = gtk_progress_bar_new ();
  gtk_progress_bar_set_show_text (GTK_PROGRESS_BAR (ui.progress), TRUE);
  gtk_progress_bar_set_text (GTK_PROGRESS_BAR (ui.progress), " ");
  gtk_box_pack_start (GTK_BOX (box), ui.progress, FALSE, FALSE, 0);
  ui.status = gtk_label_new ("");
  gtk_label_set_line_wrap (GTK_LABEL (ui.status), TRUE);
  gtk_label_set_selectable (GTK_LABEL (ui.status), TRUE);
  gtk_label_set_xalign (GTK_LABEL (ui.status), 0.0);
  gtk_widget_set_size_request (ui.status, 420, -1);
  gtk_box_pack_start (GTK_BOX (box), ui.status, FALSE, FALSE, 0);
  gtk_box_pack_start (GTK_BOX (content), box, FALSE, FALSE, 0);
  gtk_widget_show_all (box);

  g_signal_connect (ui.dialog, "response", G_CALLBACK (on_response), &ui);
  g_signal_connect (ui.dialog, "delete-event", G_CALLBACK (on_delete), &ui);

  while (!success && gimp_procedure_dialog_run (pd))
    {
      config_to_params (config, p);
      ui.running = TRUE;
      ui.cancellable = g_cancellable_new ();
      gtk_dialog_set_response_sensitive (GTK_DIALOG (ui.dialog), GTK_RESPONSE_OK, FALSE);
      gtk_label_set_text (GTK_LABEL (ui.status), "");
      ui_progress (&ui, 0, "Starting\u2026");
      g_autoptr (GError) e = NULL;
      gboolean ok = run_job (job, p, ui_progress, &ui, ui.cancellable, &e);
      ui.running = FALSE;
      g_clear_object (&ui.cancellable);
      gtk_dialog_set_response_sensitive (GTK_DIALOG (ui.dialog), GTK_RESPONSE_OK, TRUE);
      if (job->seed >= 0)
        {
          g_autofree char *t
              = g_strdup_printf ("Last seed: %" G_GINT64_FORMAT " (seed -1 = random)", job->seed);
          gtk_label_set_text (GTK_LABEL (ui.last_seed), t);
        }
      if (ok)
        success = TRUE;
      else if (g_error_matches (e, SD_ERROR, SD_ERROR_CANCELLED))
        {
          ui_progress (&ui, 0, " ");
          gtk_label_set_text (GTK_LABEL (ui.status), "Stopped. The image is unchanged.");
        }
      else
        {
          ui_progress (&ui, 0, "Failed");
          gtk_label_set_text (GTK_LABEL (ui.status), e ? e->message : "failed");
        }
    }
  gtk_widget_destroy (ui.dialog);
  g_clear_pointer (&ui.model_values, g_ptr_array_unref);
  if (!success)
    g_set_error (error, SD_ERROR, SD_ERROR_CANCELLED, "cancelled");
  return success;
}

/* The last seed of a procedure, shown in the dialog: a global parasite
 * (GimpProcedureConfig keeps the options; GIMP 3 has no gimp_set_data). */
static gint64
load_last_seed (const char *name)
{
  g_autofree char *key = g_strconcat (name, "-last-seed", NULL);
  GimpParasite *parasite = gimp_get_parasite (key);
  gint64 v = -1;
  if (parasite)
    {
      guint32 size = 0;
      const char *data = gimp_parasite_get_data (parasite, &size);
      g_autofree char *text = data && size ? g_strndup (data, size) : NULL;
      if (text)
        g_ascii_string_to_signed (text, 10, 0, IMP_SEED_MAX, &v, NULL);
      gimp_parasite_free (parasite);
    }
  return v;
}

static void
save_last_seed (const char *name, gint64 seed)
{
  g_autofree char *key = g_strconcat (name, "-last-seed", NULL);
  g_autofree char *text = g_strdup_printf ("%" G_GINT64_FORMAT, seed);
  GimpParasite *parasite = gimp_parasite_new (key, GIMP_PARASITE_PERSISTENT, strlen (text), text);
  gimp_attach_parasite (parasite);
  gimp_parasite_free (parasite);
}

static GimpValueArray *
run (GimpProcedure *procedure, GimpRunMode run_mode, GimpImage *image, GimpDrawable **drawables,
     GimpProcedureConfig *config, gpointer run_data)
{
  ImpProc proc = GPOINTER_TO_INT (run_data);
  const char *name = gimp_procedure_get_name (procedure);
  g_auto (ImpParams) p = { 0 };
  GError *error = NULL;
  Job job = { 0 };

  imp_models_setup_env ();
  gegl_init (NULL, NULL);
  imp_params_init (&p, proc);
  job.seed = -1;
  job.interactive = run_mode == GIMP_RUN_INTERACTIVE;
  job.client = imp_client_new ();

  gboolean ok = describe_image (&job.host, image, drawables, &job.src, &error);
  if (ok && run_mode == GIMP_RUN_INTERACTIVE)
    {
      /* the active layer's parasite (a result of ours) fills the dialog */
      GimpParasite *parasite = gimp_item_get_parasite (GIMP_ITEM (job.host.drawable), PARASITE_JOB);
      if (parasite)
        {
          guint32 size = 0;
          const char *data = gimp_parasite_get_data (parasite, &size);
          config_to_params (config, &p);
          if (data && size && imp_params_from_text (&p, data, strnlen (data, size), FALSE, NULL))
            {
              p.proc = proc;
              params_to_config (&p, config);
            }
          gimp_parasite_free (parasite);
        }
      ok = run_dialog (procedure, config, &job, &p, load_last_seed (name), &error);
    }
  else if (ok)
    {
      config_to_params (config, &p);
      gimp_progress_init (imp_proc_title (proc));
      ok = run_job (&job, &p, gimp_progress_fn, NULL, NULL, &error);
      gimp_progress_end ();
    }
  if (job.seed >= 0)
    save_last_seed (name, job.seed);
  imp_client_free (job.client);

  if (!ok)
    {
      if (g_error_matches (error, SD_ERROR, SD_ERROR_CANCELLED) && job.interactive)
        {
          g_clear_error (&error);
          return gimp_procedure_new_return_values (procedure, GIMP_PDB_CANCEL, NULL);
        }
      g_printerr ("%s: Impasto: %s\n", name, error ? error->message : "failed");
      GError *e = g_error_new (SD_ERROR, error ? error->code : SD_ERROR_FAILED, "Impasto: %s",
                               error ? error->message : "failed");
      g_clear_error (&error);
      return gimp_procedure_new_return_values (procedure, GIMP_PDB_EXECUTION_ERROR, e);
    }
  GimpValueArray *rv = gimp_procedure_new_return_values (procedure, GIMP_PDB_SUCCESS, NULL);
  GIMP_VALUES_SET_LAYER (rv, 1, job.layer);
  GIMP_VALUES_SET_INT (rv, 2, (int) job.seed);
  return rv;
}

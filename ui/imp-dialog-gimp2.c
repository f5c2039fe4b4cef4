/* imp-dialog-gimp2.c: the Impasto dialog for GIMP 2.10 (see imp-dialog.h). */
#include "imp-dialog.h"

#include <string.h>

#include <libgimp/gimp.h>
#include <libgimp/gimpui.h>

#include "imp-models.h"
#include "sd-error.h"
#include "sd-sampler.h"

enum
{
  MODEL_COL_LABEL,
  MODEL_COL_VALUE, /* what goes into params->model ("" = the default model) */
  MODEL_N_COLS
};

typedef struct
{
  ImpParams *params; /* borrowed */
  GtkWidget *dialog;
  GtkWidget *form; /* everything the user edits; insensitive while a job runs */
  GtkWidget *ok_button;
  GtkTextBuffer *prompt, *negative;
  GtkWidget *prompt_view;
  GtkWidget *model_combo;
  GtkListStore *models;
  GtkWidget *sampler_combo;
  GtkAdjustment *steps, *cfg, *seed, *strength, *size, *padding, *grow, *feather, *color_match;
  GtkWidget *seed_spin, *random_check;
  GtkWidget *last_seed_label, *reuse_button;
  GtkWidget *use_selection;
  GtkWidget *progress, *status;
  const char *reuse_text;
  gboolean running;
  GCancellable *cancellable; /* owned while running */
} Dialog;

static char *
text_of (GtkTextBuffer *buf)
{
  GtkTextIter a, b;
  gtk_text_buffer_get_bounds (buf, &a, &b);
  return gtk_text_buffer_get_text (buf, &a, &b, FALSE);
}

/* ---- models ---------------------------------------------------------------------------------- */

static void
fill_models (Dialog *d, const char *current)
{
  g_autoptr (GPtrArray) list = imp_models_scan ();
  GtkTreeIter it;
  gboolean have_default = FALSE;
  int active = -1, n = 0;

  gtk_list_store_clear (d->models);
  for (guint i = 0; i < list->len; i++)
    {
      const ImpModelInfo *m = g_ptr_array_index (list, i);
      g_autofree char *label = NULL;
      if (m->native_size > 0)
        label = g_strdup_printf ("%s%s  \u2014  %s, %d px", m->name,
                                 m->is_default ? " (default)" : "", m->arch, m->native_size);
      else
        label = g_strdup_printf ("%s  \u2014  not a usable model", m->name);
      const char *value = m->is_default ? "" : m->path;
      gtk_list_store_append (d->models, &it);
      gtk_list_store_set (d->models, &it, MODEL_COL_LABEL, label, MODEL_COL_VALUE, value, -1);
      if (m->is_default)
        have_default = TRUE;
      if (active < 0 && current
          && (strcmp (current, value) == 0 || strcmp (current, m->path) == 0
              || strcmp (current, m->name) == 0))
        active = n;
      n++;
    }
  if (!have_default)
    {
      gtk_list_store_prepend (d->models, &it);
      gtk_list_store_set (d->models, &it, MODEL_COL_LABEL,
                          "Default model (impasto-emoji) \u2014 not installed", MODEL_COL_VALUE, "",
                          -1);
      active = active >= 0 ? active + 1 : -1;
      if (current && !*current)
        active = 0;
      n++;
    }
  if (active < 0 && current && *current)
    {
      /* a path or name from a script or the last run, not in the folders */
      g_autoptr (GError) e = NULL;
      g_autoptr (ImpModelInfo) m = imp_model_probe (current, &e);
      g_autofree char *label
          = m ? g_strdup_printf ("%s  \u2014  %s, %d px", m->name, m->arch, m->native_size)
              : g_strdup_printf ("%s  \u2014  not found", current);
      gtk_list_store_append (d->models, &it);
      gtk_list_store_set (d->models, &it, MODEL_COL_LABEL, label, MODEL_COL_VALUE, current, -1);
      active = n++;
    }
  gtk_combo_box_set_active (GTK_COMBO_BOX (d->model_combo), active >= 0 ? active : 0);
}

static char *
current_model (Dialog *d)
{
  GtkTreeIter it;
  char *value = NULL;
  if (gtk_combo_box_get_active_iter (GTK_COMBO_BOX (d->model_combo), &it))
    gtk_tree_model_get (GTK_TREE_MODEL (d->models), &it, MODEL_COL_VALUE, &value, -1);
  return value ? value : g_strdup ("");
}

static void
on_add_folder (GtkButton *button, Dialog *d)
{
  GtkWidget *chooser = gtk_file_chooser_dialog_new (
      "Add a Model Folder", GTK_WINDOW (d->dialog), GTK_FILE_CHOOSER_ACTION_SELECT_FOLDER,
      GTK_STOCK_CANCEL, GTK_RESPONSE_CANCEL, GTK_STOCK_ADD, GTK_RESPONSE_ACCEPT, NULL);
  if (gtk_dialog_run (GTK_DIALOG (chooser)) == GTK_RESPONSE_ACCEPT)
    {
      g_autofree char *folder = gtk_file_chooser_get_filename (GTK_FILE_CHOOSER (chooser));
      g_autoptr (GError) e = NULL;
      if (folder && !imp_models_add_user_folder (folder, &e))
        gtk_label_set_text (GTK_LABEL (d->status), e->message);
      g_autofree char *cur = current_model (d);
      fill_models (d, cur);
    }
  gtk_widget_destroy (chooser);
}

/* ---- reading / writing the form ------------------------------------------------------------ */

static void
set_last_seed (Dialog *d, gint64 seed)
{
  g_autofree char *text = seed >= 0 ? g_strdup_printf ("Last seed: %" G_GINT64_FORMAT, seed)
                                    : g_strdup ("Last seed: none yet");
  gtk_label_set_text (GTK_LABEL (d->last_seed_label), text);
  gtk_widget_set_sensitive (d->reuse_button, seed >= 0);
}

static void
on_random_toggled (GtkToggleButton *b, Dialog *d)
{
  gtk_widget_set_sensitive (d->seed_spin, !gtk_toggle_button_get_active (b));
}

static void
on_reuse_seed (GtkButton *b, Dialog *d)
{
  if (d->params->last_seed < 0)
    return;
  gtk_adjustment_set_value (d->seed, (double) d->params->last_seed);
  gtk_toggle_button_set_active (GTK_TOGGLE_BUTTON (d->random_check), FALSE);
}

static void
params_to_form (Dialog *d, const ImpParams *p)
{
  gtk_text_buffer_set_text (d->prompt, p->prompt, -1);
  gtk_text_buffer_set_text (d->negative, p->negative, -1);
  fill_models (d, p->model);
  int sampler = 0;
  for (int k = 0; k < SD_SAMPLER_N_KINDS; k++)
    if (g_ascii_strcasecmp (p->sampler, sd_sampler_display_name (k)) == 0)
      sampler = k;
  gtk_combo_box_set_active (GTK_COMBO_BOX (d->sampler_combo), sampler);
  gtk_adjustment_set_value (d->steps, p->steps);
  gtk_adjustment_set_value (d->cfg, p->cfg_scale);
  gtk_toggle_button_set_active (GTK_TOGGLE_BUTTON (d->random_check), p->seed < 0);
  gtk_adjustment_set_value (d->seed, p->seed >= 0        ? (double) p->seed
                                     : p->last_seed >= 0 ? (double) p->last_seed
                                                         : 0);
  gtk_widget_set_sensitive (d->seed_spin, p->seed >= 0);
  gtk_adjustment_set_value (d->size, p->size);
  if (d->strength)
    gtk_adjustment_set_value (d->strength, p->strength);
  if (d->use_selection)
    gtk_toggle_button_set_active (GTK_TOGGLE_BUTTON (d->use_selection), p->use_selection);
  if (d->padding)
    {
      gtk_adjustment_set_value (d->padding, p->padding);
      gtk_adjustment_set_value (d->grow, p->grow);
      gtk_adjustment_set_value (d->feather, p->feather);
      gtk_adjustment_set_value (d->color_match, p->color_match);
    }
  set_last_seed (d, p->last_seed);
}

static void
form_to_params (Dialog *d, ImpParams *p)
{
  g_autofree char *prompt = text_of (d->prompt);
  g_autofree char *negative = text_of (d->negative);
  g_autofree char *model = current_model (d);
  imp_params_set_string (&p->prompt, prompt);
  imp_params_set_string (&p->negative, negative);
  imp_params_set_string (&p->model, model);
  int s = gtk_combo_box_get_active (GTK_COMBO_BOX (d->sampler_combo));
  imp_params_set_string (&p->sampler, s >= 0 && s < SD_SAMPLER_N_KINDS ? sd_sampler_display_name (s)
                                                                       : IMP_DEFAULT_SAMPLER);
  p->steps = (int) gtk_adjustment_get_value (d->steps);
  p->cfg_scale = gtk_adjustment_get_value (d->cfg);
  p->seed = gtk_toggle_button_get_active (GTK_TOGGLE_BUTTON (d->random_check))
                ? -1
                : (gint64) gtk_adjustment_get_value (d->seed);
  p->size = (int) gtk_adjustment_get_value (d->size);
  if (d->strength)
    p->strength = gtk_adjustment_get_value (d->strength);
  if (d->use_selection)
    p->use_selection = gtk_toggle_button_get_active (GTK_TOGGLE_BUTTON (d->use_selection));
  if (d->padding)
    {
      p->padding = gtk_adjustment_get_value (d->padding);
      p->grow = (int) gtk_adjustment_get_value (d->grow);
      p->feather = gtk_adjustment_get_value (d->feather);
      p->color_match = gtk_adjustment_get_value (d->color_match);
    }
}

static void
on_reuse_layer (GtkButton *b, Dialog *d)
{
  g_auto (ImpParams) p = { 0 };
  imp_params_init (&p, d->params->proc);
  form_to_params (d, &p);
  p.last_seed = d->params->last_seed;
  if (d->reuse_text
      && imp_params_from_text (&p, d->reuse_text, strlen (d->reuse_text), FALSE, NULL))
    {
      p.proc = d->params->proc;
      params_to_form (d, &p);
      gtk_label_set_text (GTK_LABEL (d->status), "Loaded the options of the active layer.");
    }
}

/* ---- layout helpers ------------------------------------------------------------------------- */

static int row_count;

static void
add_row (GtkWidget *table, const char *label, GtkWidget *widget, GtkWidget *label_for)
{
  GtkWidget *l = gtk_label_new_with_mnemonic (label);
  gtk_misc_set_alignment (GTK_MISC (l), 0.0, 0.5);
  gtk_label_set_mnemonic_widget (GTK_LABEL (l), label_for ? label_for : widget);
  gtk_table_attach (GTK_TABLE (table), l, 0, 1, row_count, row_count + 1, GTK_FILL, GTK_FILL, 0, 0);
  gtk_table_attach (GTK_TABLE (table), widget, 1, 2, row_count, row_count + 1,
                    GTK_EXPAND | GTK_FILL, GTK_FILL, 0, 0);
  row_count++;
}

static GtkWidget *
spin (GtkAdjustment **adj, double value, double lo, double hi, double step, int digits)
{
  *adj = GTK_ADJUSTMENT (gtk_adjustment_new (value, lo, hi, step, step * 10, 0));
  GtkWidget *s = gtk_spin_button_new (*adj, step, digits);
  gtk_spin_button_set_numeric (GTK_SPIN_BUTTON (s), TRUE);
  gtk_entry_set_activates_default (GTK_ENTRY (s), TRUE);
  return s;
}

static GtkWidget *
with_unit (GtkWidget *w, const char *unit)
{
  GtkWidget *box = gtk_hbox_new (FALSE, 6);
  gtk_box_pack_start (GTK_BOX (box), w, FALSE, FALSE, 0);
  GtkWidget *l = gtk_label_new (unit);
  gtk_misc_set_alignment (GTK_MISC (l), 0.0, 0.5);
  gtk_box_pack_start (GTK_BOX (box), l, FALSE, FALSE, 0);
  return box;
}

static GtkWidget *
text_area (GtkTextBuffer **buf, int height)
{
  GtkWidget *view = gtk_text_view_new ();
  gtk_text_view_set_wrap_mode (GTK_TEXT_VIEW (view), GTK_WRAP_WORD_CHAR);
  gtk_text_view_set_accepts_tab (GTK_TEXT_VIEW (view), FALSE);
  *buf = gtk_text_view_get_buffer (GTK_TEXT_VIEW (view));
  GtkWidget *sw = gtk_scrolled_window_new (NULL, NULL);
  gtk_scrolled_window_set_policy (GTK_SCROLLED_WINDOW (sw), GTK_POLICY_NEVER, GTK_POLICY_AUTOMATIC);
  gtk_scrolled_window_set_shadow_type (GTK_SCROLLED_WINDOW (sw), GTK_SHADOW_IN);
  gtk_widget_set_size_request (sw, 360, height);
  gtk_container_add (GTK_CONTAINER (sw), view);
  g_object_set_data (G_OBJECT (sw), "view", view);
  return sw;
}

/* ---- running ----------------------------------------------------------------------------------
 */

static void
on_progress (gpointer data, double fraction, const char *text)
{
  Dialog *d = data;
  if (fraction < 0)
    gtk_progress_bar_pulse (GTK_PROGRESS_BAR (d->progress));
  else
    gtk_progress_bar_set_fraction (GTK_PROGRESS_BAR (d->progress), CLAMP (fraction, 0, 1));
  if (text)
    gtk_progress_bar_set_text (GTK_PROGRESS_BAR (d->progress), text);
}

static void
on_response_while_running (GtkDialog *dialog, int response, Dialog *d)
{
  if (d->running && d->cancellable)
    g_cancellable_cancel (d->cancellable);
}

static gboolean
on_delete (GtkWidget *w, GdkEvent *ev, Dialog *d)
{
  if (d->running)
    {
      if (d->cancellable)
        g_cancellable_cancel (d->cancellable);
      return TRUE; /* close after the job has stopped */
    }
  return FALSE;
}

static void
set_status (Dialog *d, const char *text, gboolean is_error)
{
  if (is_error)
    {
      g_autofree char *esc = g_markup_escape_text (text, -1);
      g_autofree char *markup = g_strdup_printf ("<span foreground=\"#c01c28\">%s</span>", esc);
      gtk_label_set_markup (GTK_LABEL (d->status), markup);
    }
  else
    gtk_label_set_text (GTK_LABEL (d->status), text);
}

gboolean
imp_dialog_run (ImpParams *params, const char *reuse_text, ImpDialogJobFn job, gpointer job_data)
{
  Dialog dd = { 0 }, *d = &dd;
  ImpProc proc = params->proc;
  ImpOptions uses = imp_proc_uses (proc);
  const char *ok_label = proc == IMP_PROC_INPAINT   ? "_Inpaint"
                         : proc == IMP_PROC_IMG2IMG ? "_Apply"
                                                    : "_Generate";
  gboolean success = FALSE;

  d->params = params;
  d->reuse_text = reuse_text;
  d->dialog = gimp_dialog_new (imp_proc_title (proc), "impasto", NULL, 0, gimp_standard_help_func,
                               imp_proc_name (proc), GTK_STOCK_CANCEL, GTK_RESPONSE_CANCEL,
                               ok_label, GTK_RESPONSE_OK, NULL);
  gtk_dialog_set_alternative_button_order (GTK_DIALOG (d->dialog), GTK_RESPONSE_OK,
                                           GTK_RESPONSE_CANCEL, -1);
  gtk_dialog_set_default_response (GTK_DIALOG (d->dialog), GTK_RESPONSE_OK);
  d->ok_button = gtk_dialog_get_widget_for_response (GTK_DIALOG (d->dialog), GTK_RESPONSE_OK);
  gimp_window_set_transient (GTK_WINDOW (d->dialog));

  GtkWidget *vbox = gtk_vbox_new (FALSE, 8);
  gtk_container_set_border_width (GTK_CONTAINER (vbox), 12);
  gtk_box_pack_start (GTK_BOX (gtk_dialog_get_content_area (GTK_DIALOG (d->dialog))), vbox, TRUE,
                      TRUE, 0);

  GtkWidget *table = gtk_table_new (16, 2, FALSE);
  gtk_table_set_row_spacings (GTK_TABLE (table), 4);
  gtk_table_set_col_spacings (GTK_TABLE (table), 8);
  gtk_box_pack_start (GTK_BOX (vbox), table, TRUE, TRUE, 0);
  d->form = table;
  row_count = 0;

  GtkWidget *w = text_area (&d->prompt, 72);
  d->prompt_view = g_object_get_data (G_OBJECT (w), "view");
  add_row (table, "_Prompt:", w, d->prompt_view);
  w = text_area (&d->negative, 40);
  add_row (table, "_Negative prompt:", w, g_object_get_data (G_OBJECT (w), "view"));

  d->models = gtk_list_store_new (MODEL_N_COLS, G_TYPE_STRING, G_TYPE_STRING);
  d->model_combo = gtk_combo_box_new_with_model (GTK_TREE_MODEL (d->models));
  GtkCellRenderer *cell = gtk_cell_renderer_text_new ();
  g_object_set (cell, "ellipsize", PANGO_ELLIPSIZE_MIDDLE, "width-chars", 36, NULL);
  gtk_cell_layout_pack_start (GTK_CELL_LAYOUT (d->model_combo), cell, TRUE);
  gtk_cell_layout_set_attributes (GTK_CELL_LAYOUT (d->model_combo), cell, "text", MODEL_COL_LABEL,
                                  NULL);
  GtkWidget *model_box = gtk_hbox_new (FALSE, 6);
  gtk_box_pack_start (GTK_BOX (model_box), d->model_combo, TRUE, TRUE, 0);
  GtkWidget *add = gtk_button_new_with_mnemonic ("Add Fol_der\u2026");
  gtk_widget_set_tooltip_text (add, "Add a folder of models, e.g. an AUTOMATIC1111 "
                                    "models/Stable-diffusion or ComfyUI models/checkpoints folder");
  g_signal_connect (add, "clicked", G_CALLBACK (on_add_folder), d);
  gtk_box_pack_start (GTK_BOX (model_box), add, FALSE, FALSE, 0);
  add_row (table, "_Model:", model_box, d->model_combo);

  d->sampler_combo = gtk_combo_box_new_text ();
  for (int k = 0; k < SD_SAMPLER_N_KINDS; k++)
    gtk_combo_box_append_text (GTK_COMBO_BOX (d->sampler_combo), sd_sampler_display_name (k));
  add_row (table, "_Sampler:", d->sampler_combo, NULL);

  w = spin (&d->steps, 20, 1, IMP_STEPS_MAX, 1, 0);
  add_row (table, "S_teps:", with_unit (w, ""), w);
  w = spin (&d->cfg, 7, 0, IMP_CFG_MAX, 0.5, 1);
  add_row (table, "Guidance (_CFG):", with_unit (w, ""), w);

  d->seed_spin = spin (&d->seed, 0, 0, IMP_SEED_MAX, 1, 0);
  gtk_entry_set_width_chars (GTK_ENTRY (d->seed_spin), 11);
  d->random_check = gtk_check_button_new_with_mnemonic ("Rand_om");
  g_signal_connect (d->random_check, "toggled", G_CALLBACK (on_random_toggled), d);
  GtkWidget *seed_box = gtk_hbox_new (FALSE, 6);
  gtk_box_pack_start (GTK_BOX (seed_box), d->seed_spin, FALSE, FALSE, 0);
  gtk_box_pack_start (GTK_BOX (seed_box), d->random_check, FALSE, FALSE, 0);
  d->last_seed_label = gtk_label_new ("");
  gtk_box_pack_start (GTK_BOX (seed_box), d->last_seed_label, FALSE, FALSE, 6);
  d->reuse_button = gtk_button_new_with_mnemonic ("Re_use");
  gtk_widget_set_tooltip_text (d->reuse_button, "Use the last seed again (turns Random off)");
  g_signal_connect (d->reuse_button, "clicked", G_CALLBACK (on_reuse_seed), d);
  gtk_box_pack_start (GTK_BOX (seed_box), d->reuse_button, FALSE, FALSE, 0);
  add_row (table, "S_eed:", seed_box, d->seed_spin);

  if (uses & IMP_OPT_STRENGTH)
    {
      w = spin (&d->strength, params->strength, 0.01, 1, 0.05, 2);
      gtk_widget_set_tooltip_text (w, "How much to change: 1 repaints from noise");
      add_row (table, "St_rength:", with_unit (w, ""), w);
    }
  w = spin (&d->size, 0, 0, IMP_SIZE_MAX, 64, 0);
  gtk_widget_set_tooltip_text (w, "The model works on about size x size pixels (aspect kept, "
                                  "sides multiples of 8), then the result is scaled to fit");
  add_row (table, "Working si_ze:", with_unit (w, "px (0 = the model's native size)"), w);

  if (uses & IMP_OPT_USE_SELECTION)
    {
      d->use_selection = gtk_check_button_new_with_mnemonic (
          proc == IMP_PROC_GENERATE
              ? "Fill the selection's _bounds (else the whole image)"
              : "Only the selection's _bounds, masked by it (else the whole layer)");
      add_row (table, "", d->use_selection, NULL);
    }
  if (uses & IMP_OPT_INPAINT)
    {
      w = spin (&d->padding, 25, 0, IMP_PADDING_MAX, 5, 0);
      gtk_widget_set_tooltip_text (w, "Context around the selection the model sees, as a "
                                      "percentage of the selection's size");
      add_row (table, "Conte_xt padding:", with_unit (w, "%"), w);
      w = spin (&d->grow, 0, 0, IMP_GROW_MAX, 1, 0);
      add_row (table, "Gro_w selection:", with_unit (w, "px"), w);
      w = spin (&d->feather, 0, 0, IMP_FEATHER_PX_MAX, 1, 1);
      gtk_widget_set_tooltip_text (w, "Soft edge of the new layer's mask (0: exactly the "
                                      "selection, nothing outside it changes)");
      add_row (table, "_Feather edges:", with_unit (w, "px"), w);
      w = spin (&d->color_match, 0.5, 0, 1, 0.05, 2);
      gtk_widget_set_tooltip_text (w, "Correct the model's colour drift against the pixels "
                                      "around the selection (0 = off)");
      add_row (table, "Colour matc_h:", with_unit (w, ""), w);
    }
  if (reuse_text)
    {
      GtkWidget *b = gtk_button_new_with_mnemonic ("_Load the options of the active layer");
      g_signal_connect (b, "clicked", G_CALLBACK (on_reuse_layer), d);
      add_row (table, "", b, NULL);
    }

  d->progress = gtk_progress_bar_new ();
  gtk_progress_bar_set_text (GTK_PROGRESS_BAR (d->progress), " ");
  gtk_box_pack_start (GTK_BOX (vbox), d->progress, FALSE, FALSE, 0);
  d->status = gtk_label_new ("");
  gtk_label_set_line_wrap (GTK_LABEL (d->status), TRUE);
  gtk_label_set_selectable (GTK_LABEL (d->status), TRUE);
  gtk_misc_set_alignment (GTK_MISC (d->status), 0.0, 0.5);
  gtk_widget_set_size_request (d->status, 480, -1);
  gtk_box_pack_start (GTK_BOX (vbox), d->status, FALSE, FALSE, 0);

  params_to_form (d, params);
  g_signal_connect (d->dialog, "response", G_CALLBACK (on_response_while_running), d);
  g_signal_connect (d->dialog, "delete-event", G_CALLBACK (on_delete), d);
  gtk_widget_show_all (d->dialog);
  gtk_widget_grab_focus (d->prompt_view);

  while (!success)
    {
      int response = gimp_dialog_run (GIMP_DIALOG (d->dialog));
      if (response != GTK_RESPONSE_OK)
        break;

      g_auto (ImpParams) p = { 0 };
      imp_params_copy (&p, params);
      form_to_params (d, &p);

      d->running = TRUE;
      d->cancellable = g_cancellable_new ();
      gtk_widget_set_sensitive (d->form, FALSE);
      gtk_widget_set_sensitive (d->ok_button, FALSE);
      set_status (d, "", FALSE);
      on_progress (d, 0, "Starting\u2026");

      g_autoptr (GError) e = NULL;
      gboolean ok = job (job_data, &p, on_progress, d, d->cancellable, &e);

      d->running = FALSE;
      g_clear_object (&d->cancellable);
      gtk_widget_set_sensitive (d->form, TRUE);
      gtk_widget_set_sensitive (d->ok_button, TRUE);
      params->last_seed = p.last_seed;
      set_last_seed (d, p.last_seed);
      if (ok)
        {
          imp_params_copy (params, &p);
          success = TRUE;
        }
      else if (g_error_matches (e, SD_ERROR, SD_ERROR_CANCELLED))
        {
          on_progress (d, 0, " ");
          set_status (d, "Stopped. The image is unchanged.", FALSE);
        }
      else
        {
          on_progress (d, 0, "Failed");
          set_status (d, e ? e->message : "failed", TRUE);
          /* keep the options the user typed for the next try */
          imp_params_copy (params, &p);
          params->seed = p.seed;
        }
    }
  gtk_widget_destroy (d->dialog);
  g_object_unref (d->models);
  return success;
}

/* imp-params.c: options of the Impasto procedures (see imp-params.h). */
#include "imp-params.h"

#include <math.h>
#include <string.h>

#include "sd-error.h"

#define GROUP "impasto"

static const struct
{
  const char *name, *short_name, *label, *title;
  ImpOptions uses;
} procs[IMP_PROC_N] = {
  [IMP_PROC_GENERATE] = { "plug-in-impasto-generate", "generate", "_Generate Layer from Prompt...",
                          "Impasto - Generate Layer from Prompt", IMP_OPT_USE_SELECTION },
  [IMP_PROC_IMG2IMG] = { "plug-in-impasto-img2img", "img2img", "_Image to Image...",
                         "Impasto - Image to Image", IMP_OPT_STRENGTH | IMP_OPT_USE_SELECTION },
  [IMP_PROC_INPAINT] = { "plug-in-impasto-inpaint", "inpaint", "_Inpaint Selection...",
                         "Impasto - Inpaint Selection", IMP_OPT_STRENGTH | IMP_OPT_INPAINT },
};

const char *
imp_proc_name (ImpProc proc)
{
  g_return_val_if_fail (proc < IMP_PROC_N, NULL);
  return procs[proc].name;
}

const char *
imp_proc_short_name (ImpProc proc)
{
  g_return_val_if_fail (proc < IMP_PROC_N, NULL);
  return procs[proc].short_name;
}

const char *
imp_proc_menu_label (ImpProc proc)
{
  g_return_val_if_fail (proc < IMP_PROC_N, NULL);
  return procs[proc].label;
}

const char *
imp_proc_title (ImpProc proc)
{
  g_return_val_if_fail (proc < IMP_PROC_N, NULL);
  return procs[proc].title;
}

gboolean
imp_proc_from_name (const char *name, ImpProc *proc)
{
  for (int i = 0; name && i < IMP_PROC_N; i++)
    if (strcmp (name, procs[i].name) == 0 || strcmp (name, procs[i].short_name) == 0)
      {
        *proc = i;
        return TRUE;
      }
  return FALSE;
}

ImpOptions
imp_proc_uses (ImpProc proc)
{
  g_return_val_if_fail (proc < IMP_PROC_N, 0);
  return procs[proc].uses;
}

void
imp_params_set_string (char **field, const char *value)
{
  char *v = g_strdup (value ? value : "");
  g_free (*field);
  *field = v;
}

void
imp_params_init (ImpParams *p, ImpProc proc)
{
  memset (p, 0, sizeof *p);
  p->proc = proc;
  p->prompt = g_strdup ("");
  p->negative = g_strdup ("");
  p->model = g_strdup ("");
  p->sampler = g_strdup (IMP_DEFAULT_SAMPLER);
  p->steps = 20;
  p->cfg_scale = 7.0;
  p->seed = -1;
  p->size = 0;
  /* Inpaint regenerates the selection from noise (Krita AI Diffusion's
   * "fill"); img2img keeps the composition (A1111's 0.75 changes it a lot
   * on small models). */
  p->strength = proc == IMP_PROC_INPAINT ? 1.0 : 0.6;
  p->use_selection = TRUE;
  p->padding = 25.0;
  p->grow = 0;
  p->feather = 0.0;
  /* Moderate: removes most of the model's colour drift without flattening
   * deliberate colour changes near the edge (imp_color_match, ring mode). */
  p->color_match = 0.5;
  p->last_seed = -1;
}

void
imp_params_clear (ImpParams *p)
{
  g_clear_pointer (&p->prompt, g_free);
  g_clear_pointer (&p->negative, g_free);
  g_clear_pointer (&p->model, g_free);
  g_clear_pointer (&p->sampler, g_free);
}

void
imp_params_copy (ImpParams *dst, const ImpParams *src)
{
  if (dst == src)
    return;
  ImpParams tmp = *src;
  tmp.prompt = g_strdup (src->prompt ? src->prompt : "");
  tmp.negative = g_strdup (src->negative ? src->negative : "");
  tmp.model = g_strdup (src->model ? src->model : "");
  tmp.sampler = g_strdup (src->sampler ? src->sampler : "");
  imp_params_clear (dst);
  *dst = tmp;
}

static gboolean
bad (GError **error, const char *what, const char *range)
{
  g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG, "%s must be %s", what, range);
  return FALSE;
}

gboolean
imp_params_validate (const ImpParams *p, GError **error)
{
  ImpOptions uses = imp_proc_uses (p->proc);

  if (p->steps < 1 || p->steps > IMP_STEPS_MAX)
    return bad (error, "steps", "1.." G_STRINGIFY (IMP_STEPS_MAX));
  if (!(p->cfg_scale >= 0 && p->cfg_scale <= IMP_CFG_MAX))
    return bad (error, "cfg-scale", "0..30");
  if (p->seed < -1 || p->seed > IMP_SEED_MAX)
    return bad (error, "seed", "-1 (random) or 0..2147483647");
  if (p->size != 0 && (p->size < IMP_SIZE_MIN || p->size > IMP_SIZE_MAX))
    return bad (error, "size", "0 (the model's native resolution) or 64..2048");
  if ((uses & IMP_OPT_STRENGTH) && !(p->strength > 0 && p->strength <= 1))
    return bad (error, "strength", "in (0, 1]");
  if (uses & IMP_OPT_INPAINT)
    {
      if (!(p->padding >= 0 && p->padding <= IMP_PADDING_MAX))
        return bad (error, "padding", "0..500 (%)");
      if (p->grow < 0 || p->grow > IMP_GROW_MAX)
        return bad (error, "grow", "0..512 px");
      if (!(p->feather >= 0 && p->feather <= IMP_FEATHER_PX_MAX))
        return bad (error, "feather", "0..512 px");
      if (!(p->color_match >= 0 && p->color_match <= 1))
        return bad (error, "color-match", "0..1");
    }
  if (!g_utf8_validate (p->prompt, -1, NULL) || !g_utf8_validate (p->negative, -1, NULL)
      || !g_utf8_validate (p->model, -1, NULL) || !g_utf8_validate (p->sampler, -1, NULL))
    {
      g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG, "texts must be UTF-8");
      return FALSE;
    }
  return TRUE;
}

static void
set_double (GKeyFile *kf, const char *key, double v)
{
  /* 10 significant digits: "0.7", not dtostr's round-trip "0.69999999999999996" */
  char buf[G_ASCII_DTOSTR_BUF_SIZE];
  g_key_file_set_value (kf, GROUP, key, g_ascii_formatd (buf, sizeof buf, "%.10g", v));
}

char *
imp_params_to_text (const ImpParams *p, const char *extra)
{
  g_autoptr (GKeyFile) kf = g_key_file_new ();

  g_key_file_set_integer (kf, GROUP, "version", 1);
  g_key_file_set_string (kf, GROUP, "procedure", imp_proc_short_name (p->proc));
  g_key_file_set_string (kf, GROUP, "prompt", p->prompt);
  g_key_file_set_string (kf, GROUP, "negative-prompt", p->negative);
  g_key_file_set_string (kf, GROUP, "model", p->model);
  g_key_file_set_string (kf, GROUP, "sampler", p->sampler);
  g_key_file_set_integer (kf, GROUP, "steps", p->steps);
  set_double (kf, "cfg-scale", p->cfg_scale);
  g_key_file_set_int64 (kf, GROUP, "seed", p->seed);
  g_key_file_set_integer (kf, GROUP, "size", p->size);
  set_double (kf, "strength", p->strength);
  g_key_file_set_boolean (kf, GROUP, "use-selection", p->use_selection);
  set_double (kf, "padding", p->padding);
  g_key_file_set_integer (kf, GROUP, "grow", p->grow);
  set_double (kf, "feather", p->feather);
  set_double (kf, "color-match", p->color_match);
  g_key_file_set_int64 (kf, GROUP, "last-seed", p->last_seed);

  g_autofree char *text = g_key_file_to_data (kf, NULL, NULL);
  if (!extra || !*extra)
    return g_steal_pointer (&text);
  return g_strconcat (text, "\n", extra, NULL);
}

/* Each getter leaves *dst alone when the key is absent or malformed. */
static void
get_string (GKeyFile *kf, const char *key, char **dst)
{
  g_autofree char *v = g_key_file_get_string (kf, GROUP, key, NULL);
  if (v && g_utf8_validate (v, -1, NULL))
    imp_params_set_string (dst, v);
}

static void
get_double (GKeyFile *kf, const char *key, double *dst)
{
  g_autofree char *v = g_key_file_get_value (kf, GROUP, key, NULL);
  if (!v)
    return;
  char *end = NULL;
  double d = g_ascii_strtod (v, &end);
  if (end != v && *end == '\0' && isfinite (d))
    *dst = d;
}

static void
get_int64 (GKeyFile *kf, const char *key, gint64 *dst)
{
  g_autofree char *v = g_key_file_get_value (kf, GROUP, key, NULL);
  gint64 n;
  if (v && g_ascii_string_to_signed (v, 10, G_MININT64, G_MAXINT64, &n, NULL))
    *dst = n;
}

static void
get_int (GKeyFile *kf, const char *key, int *dst)
{
  gint64 v = *dst;
  get_int64 (kf, key, &v);
  if (v >= G_MININT && v <= G_MAXINT)
    *dst = (int) v;
}

gboolean
imp_params_from_text (ImpParams *p, const char *text, gsize len, gboolean set_proc, GError **error)
{
  g_autoptr (GKeyFile) kf = g_key_file_new ();

  if (!g_key_file_load_from_data (kf, text, len, G_KEY_FILE_NONE, error))
    return FALSE;
  if (!g_key_file_has_group (kf, GROUP))
    {
      g_set_error (error, SD_ERROR, SD_ERROR_CORRUPT, "no [" GROUP "] group");
      return FALSE;
    }
  if (set_proc)
    {
      g_autofree char *name = g_key_file_get_string (kf, GROUP, "procedure", NULL);
      ImpProc proc;
      if (imp_proc_from_name (name, &proc))
        p->proc = proc;
    }
  get_string (kf, "prompt", &p->prompt);
  get_string (kf, "negative-prompt", &p->negative);
  get_string (kf, "model", &p->model);
  get_string (kf, "sampler", &p->sampler);
  get_int (kf, "steps", &p->steps);
  get_double (kf, "cfg-scale", &p->cfg_scale);
  get_int64 (kf, "seed", &p->seed);
  get_int (kf, "size", &p->size);
  get_double (kf, "strength", &p->strength);
  {
    g_autoptr (GError) e = NULL;
    gboolean b = g_key_file_get_boolean (kf, GROUP, "use-selection", &e);
    if (!e)
      p->use_selection = b;
  }
  get_double (kf, "padding", &p->padding);
  get_int (kf, "grow", &p->grow);
  get_double (kf, "feather", &p->feather);
  get_double (kf, "color-match", &p->color_match);
  get_int64 (kf, "last-seed", &p->last_seed);
  return TRUE;
}

char *
imp_params_layer_name (const ImpParams *p, gint64 seed)
{
  const glong max_chars = 40;
  g_autoptr (GString) prompt = g_string_new (NULL);

  /* Whitespace runs (newlines included) become one space. */
  for (const char *s = p->prompt; s && *s; s = g_utf8_next_char (s))
    {
      gunichar c = g_utf8_get_char (s);
      if (g_unichar_isspace (c))
        {
          if (prompt->len && prompt->str[prompt->len - 1] != ' ')
            g_string_append_c (prompt, ' ');
        }
      else
        g_string_append_unichar (prompt, c);
    }
  while (prompt->len && prompt->str[prompt->len - 1] == ' ')
    g_string_truncate (prompt, prompt->len - 1);
  if (g_utf8_strlen (prompt->str, -1) > max_chars)
    {
      const char *cut = g_utf8_offset_to_pointer (prompt->str, max_chars - 1);
      g_string_truncate (prompt, cut - prompt->str);
      while (prompt->len && prompt->str[prompt->len - 1] == ' ')
        g_string_truncate (prompt, prompt->len - 1);
      g_string_append (prompt, "\u2026");
    }
  return g_strdup_printf ("Impasto %s: %s (seed %" G_GINT64_FORMAT ")",
                          imp_proc_short_name (p->proc), prompt->len ? prompt->str : "(no prompt)",
                          seed);
}

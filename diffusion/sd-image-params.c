/* sd-image-params.c: the AUTOMATIC1111 "parameters" infotext, written and
 * read the way stable-diffusion-webui does (modules/processing.py
 * create_infotext, modules/infotext_utils.py quote / unquote /
 * parse_generation_parameters), so images from either tool open in the
 * other's "PNG Info". */
#include "config.h"
#include "sd-image.h"
#include "sd-error.h"

#include <math.h>
#include <string.h>

void
sd_gen_params_init (SdGenParams *p)
{
  g_return_if_fail (p != NULL);
  memset (p, 0, sizeof *p);
  p->cfg_scale = -1.0;
  p->denoising_strength = -1.0;
  p->mask_blur = -1;
}

void
sd_gen_params_clear (SdGenParams *p)
{
  g_return_if_fail (p != NULL);
  if (p->strings != NULL)
    g_string_chunk_free (p->strings);
  sd_gen_params_init (p);
}

/* ---- formatting ------------------------------------------------------------------ */

/* json.dumps (value, ensure_ascii=False). */
static void
append_json_string (GString *s, const char *v)
{
  g_string_append_c (s, '"');
  for (; *v; v++)
    {
      guchar c = (guchar) *v;
      switch (c)
        {
        case '"': g_string_append (s, "\\\""); break;
        case '\\': g_string_append (s, "\\\\"); break;
        case '\n': g_string_append (s, "\\n"); break;
        case '\r': g_string_append (s, "\\r"); break;
        case '\t': g_string_append (s, "\\t"); break;
        case '\b': g_string_append (s, "\\b"); break;
        case '\f': g_string_append (s, "\\f"); break;
        default:
          if (c < 0x20)
            g_string_append_printf (s, "\\u%04x", c);
          else
            g_string_append_c (s, (char) c);
        }
    }
  g_string_append_c (s, '"');
}

static void
append_kv (GString *s, const char *key, const char *value)
{
  if (s->len > 0)
    g_string_append (s, ", ");
  g_string_append (s, key);
  g_string_append (s, ": ");
  /* A1111 quote(): only values that would break the "k: v, k: v" line. */
  if (strpbrk (value, ",:\n") != NULL)
    append_json_string (s, value);
  else
    g_string_append (s, value);
}

static void
append_kv_double (GString *s, const char *key, double v)
{
  char buf[G_ASCII_DTOSTR_BUF_SIZE];
  append_kv (s, key, g_ascii_formatd (buf, sizeof buf, "%g", v));
}

static void
append_kv_int (GString *s, const char *key, gint64 v)
{
  char buf[32];
  g_snprintf (buf, sizeof buf, "%" G_GINT64_FORMAT, v);
  append_kv (s, key, buf);
}

char *
sd_format_parameters (const SdGenParams *p)
{
  g_autoptr (GString) params = g_string_new (NULL);
  GString *out;
  char buf[64];

  g_return_val_if_fail (p != NULL, NULL);
  if (p->steps > 0)
    append_kv_int (params, "Steps", p->steps);
  if (p->sampler != NULL)
    append_kv (params, "Sampler", p->sampler);
  if (p->schedule != NULL)
    append_kv (params, "Schedule type", p->schedule);
  if (p->cfg_scale >= 0.0)
    append_kv_double (params, "CFG scale", p->cfg_scale);
  if (p->has_seed)
    {
      g_snprintf (buf, sizeof buf, "%" G_GUINT64_FORMAT, p->seed);
      append_kv (params, "Seed", buf);
    }
  if (p->width > 0 && p->height > 0)
    {
      g_snprintf (buf, sizeof buf, "%dx%d", p->width, p->height);
      append_kv (params, "Size", buf);
    }
  if (p->model_hash != NULL)
    append_kv (params, "Model hash", p->model_hash);
  if (p->model != NULL)
    append_kv (params, "Model", p->model);
  if (p->denoising_strength >= 0.0)
    append_kv_double (params, "Denoising strength", p->denoising_strength);
  if (p->clip_skip > 1)
    append_kv_int (params, "Clip skip", p->clip_skip);
  if (p->mask_blur >= 0)
    append_kv_int (params, "Mask blur", p->mask_blur);
  if (p->version == NULL)
    append_kv (params, "Version", "impasto " IMPASTO_VERSION);
  else if (p->version[0] != '\0')
    append_kv (params, "Version", p->version);

  out = g_string_new (p->prompt != NULL ? p->prompt : "");
  if (p->negative_prompt != NULL && p->negative_prompt[0] != '\0')
    g_string_append_printf (out, "\nNegative prompt: %s", p->negative_prompt);
  g_string_append_c (out, '\n');
  g_string_append_len (out, params->str, params->len);
  /* create_infotext returns f"{prompt}{negative}\n{params}".strip() */
  g_strstrip (out->str);
  return g_string_free (out, FALSE);
}

/* ---- parsing ------------------------------------------------------------------------ */

typedef struct
{
  const char *key; /* start */
  gsize key_len;
  const char *value;
  gsize value_len;
} Param;

/* Python's \w, approximately: ASCII letters, digits, '_', and any non-ASCII
 * character (Python also counts most non-ASCII letters). */
static gboolean
is_word (const char *c)
{
  return g_ascii_isalnum (*c) || *c == '_' || (guchar) *c >= 0x80;
}

static gboolean
is_key_char (const char *c)
{
  return is_word (c) || *c == ' ' || *c == '-' || *c == '/';
}

/* Try re_param = r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)' at
 * s. Returns the end of the match or NULL. */
static const char *
match_param (const char *s, Param *out)
{
  const char *p = s, *k, *v, *q;

  while (g_ascii_isspace (*p))
    p++;
  if (!is_word (p))
    return NULL;
  k = p;
  p = g_utf8_next_char (p);
  if (!is_key_char (p))
    return NULL; /* the + needs at least one more key character */
  while (is_key_char (p))
    p = g_utf8_next_char (p);
  if (*p != ':')
    return NULL;
  out->key = k;
  out->key_len = (gsize) (p - k);
  p++;
  while (g_ascii_isspace (*p))
    p++;
  v = p;
  if (*v == '"')
    {
      /* "(?:\\.|[^\\"])+" followed by ',' or the end */
      q = v + 1;
      while (*q != '\0' && *q != '"')
        {
          if (*q == '\\')
            {
              if (q[1] == '\0')
                break;
              q = g_utf8_next_char (q + 1);
            }
          else
            q = g_utf8_next_char (q);
        }
      if (*q == '"' && q > v + 1 && (q[1] == ',' || q[1] == '\0'))
        {
          out->value = v;
          out->value_len = (gsize) (q + 1 - v);
          return q[1] == ',' ? q + 2 : q + 1;
        }
    }
  /* [^,]* then ',' or the end */
  q = strchr (v, ',');
  if (q == NULL)
    q = v + strlen (v);
  out->value = v;
  out->value_len = (gsize) (q - v);
  return *q == ',' ? q + 1 : q;
}

/* re_param.findall (line) */
static GArray *
find_params (const char *line)
{
  GArray *a = g_array_new (FALSE, FALSE, sizeof (Param));
  const char *p = line;

  while (*p != '\0')
    {
      Param m;
      const char *end = match_param (p, &m);
      if (end != NULL)
        {
          g_array_append_val (a, m);
          p = end;
        }
      else
        p = g_utf8_next_char (p);
    }
  return a;
}

static void
append_utf8 (GString *s, gunichar c)
{
  char buf[8];
  g_string_append_len (s, buf, g_unichar_to_utf8 (c, buf));
}

static int
hex4 (const char *s)
{
  int v = 0;
  for (int i = 0; i < 4; i++)
    {
      int d = g_ascii_xdigit_value (s[i]);
      if (d < 0)
        return -1;
      v = v * 16 + d;
    }
  return v;
}

/* json.loads of a quoted string (s includes the quotes). NULL if invalid,
 * in which case A1111 keeps the raw text. */
static char *
json_unquote (const char *s, gsize len)
{
  g_autoptr (GString) out = g_string_new (NULL);
  const char *p = s + 1, *end = s + len - 1;

  if (len < 2 || s[0] != '"' || s[len - 1] != '"')
    return NULL;
  while (p < end)
    {
      guchar c = (guchar) *p;
      if (c < 0x20)
        return NULL; /* strict JSON: no raw control characters */
      if (c != '\\')
        {
          g_string_append_c (out, (char) c);
          p++;
          continue;
        }
      if (p + 1 >= end)
        return NULL;
      switch (p[1])
        {
        case '"': g_string_append_c (out, '"'); break;
        case '\\': g_string_append_c (out, '\\'); break;
        case '/': g_string_append_c (out, '/'); break;
        case 'b': g_string_append_c (out, '\b'); break;
        case 'f': g_string_append_c (out, '\f'); break;
        case 'n': g_string_append_c (out, '\n'); break;
        case 'r': g_string_append_c (out, '\r'); break;
        case 't': g_string_append_c (out, '\t'); break;
        case 'u':
          {
            int hi, lo;
            if (end - p < 6 || (hi = hex4 (p + 2)) < 0)
              return NULL;
            p += 6;
            if (hi >= 0xd800 && hi < 0xdc00 && end - p >= 6 && p[0] == '\\' && p[1] == 'u'
                && (lo = hex4 (p + 2)) >= 0xdc00 && lo < 0xe000)
              {
                append_utf8 (out, 0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00));
                p += 6;
              }
            else if (hi >= 0xd800 && hi < 0xe000)
              append_utf8 (out, 0xfffd); /* lone surrogate */
            else
              append_utf8 (out, (gunichar) hi);
            continue;
          }
        default:
          return NULL;
        }
      p += 2;
    }
  return g_string_free (g_steal_pointer (&out), FALSE);
}

static const char *
keep (SdGenParams *p, const char *s)
{
  if (p->strings == NULL)
    p->strings = g_string_chunk_new (256);
  return g_string_chunk_insert (p->strings, s);
}

static gboolean
parse_int (const char *s, gint64 min, gint64 max, gint64 *out)
{
  g_autofree char *t = g_strstrip (g_strdup (s));
  return g_ascii_string_to_signed (t, 10, min, max, out, NULL);
}

static gboolean
parse_double (const char *s, double *out)
{
  g_autofree char *t = g_strstrip (g_strdup (s));
  char *end = NULL;
  double v;

  if (t[0] == '\0')
    return FALSE;
  v = g_ascii_strtod (t, &end);
  if (end == NULL || *end != '\0' || !isfinite (v))
    return FALSE;
  *out = v;
  return TRUE;
}

static void
apply_param (SdGenParams *p, const char *key, const char *value)
{
  gint64 i;
  double d;

  if (strcmp (key, "Steps") == 0)
    {
      if (parse_int (value, 1, G_MAXINT, &i))
        p->steps = (int) i;
    }
  else if (strcmp (key, "Sampler") == 0)
    p->sampler = keep (p, value);
  else if (strcmp (key, "Schedule type") == 0)
    p->schedule = keep (p, value);
  else if (strcmp (key, "CFG scale") == 0)
    {
      if (parse_double (value, &d) && d >= 0.0)
        p->cfg_scale = d;
    }
  else if (strcmp (key, "Seed") == 0)
    {
      g_autofree char *t = g_strstrip (g_strdup (value));
      guint64 u;
      if (g_ascii_string_to_unsigned (t, 10, 0, G_MAXUINT64, &u, NULL))
        {
          p->seed = u;
          p->has_seed = TRUE;
        }
    }
  else if (strcmp (key, "Size") == 0)
    {
      /* re_imagesize = r"^(\d+)x(\d+)$" */
      g_auto (GStrv) wh = g_strsplit (value, "x", 3);
      gint64 w, h;
      if (g_strv_length (wh) == 2 && g_ascii_string_to_signed (wh[0], 10, 1, G_MAXINT, &w, NULL)
          && g_ascii_string_to_signed (wh[1], 10, 1, G_MAXINT, &h, NULL))
        {
          p->width = (int) w;
          p->height = (int) h;
        }
    }
  else if (strcmp (key, "Model hash") == 0)
    p->model_hash = keep (p, value);
  else if (strcmp (key, "Model") == 0)
    p->model = keep (p, value);
  else if (strcmp (key, "Denoising strength") == 0)
    {
      if (parse_double (value, &d) && d >= 0.0)
        p->denoising_strength = d;
    }
  else if (strcmp (key, "Clip skip") == 0)
    {
      if (parse_int (value, 1, G_MAXINT, &i))
        p->clip_skip = (int) i;
    }
  else if (strcmp (key, "Mask blur") == 0)
    {
      if (parse_int (value, 0, G_MAXINT, &i))
        p->mask_blur = (int) i;
    }
  else if (strcmp (key, "Version") == 0)
    p->version = keep (p, value);
}

gboolean
sd_parse_parameters (const char *text, SdGenParams *p, GHashTable **all_out, GError **error)
{
  g_autofree char *copy = NULL;
  g_auto (GStrv) lines = NULL;
  g_autoptr (GString) prompt = g_string_new (NULL);
  g_autoptr (GString) negative = g_string_new (NULL);
  g_autoptr (GArray) params = NULL;
  GHashTable *all = NULL;
  const char *lastline;
  guint n_lines, n_prompt_lines;
  gboolean done_with_prompt = FALSE;

  g_return_val_if_fail (text != NULL && p != NULL, FALSE);
  sd_gen_params_clear (p);
  if (all_out != NULL)
    *all_out = NULL;
  if (!g_utf8_validate (text, -1, NULL))
    {
      g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG, "parameters text is not UTF-8");
      return FALSE;
    }

  /* *lines, lastline = x.strip().split("\n") */
  copy = g_strstrip (g_strdup (text));
  lines = g_strsplit (copy, "\n", -1);
  n_lines = g_strv_length (lines);
  lastline = n_lines > 0 ? lines[n_lines - 1] : "";
  n_prompt_lines = n_lines > 0 ? n_lines - 1 : 0;
  params = find_params (lastline);
  if (params->len < 3)
    {
      n_prompt_lines = n_lines;
      g_array_set_size (params, 0);
    }

  for (guint i = 0; i < n_prompt_lines; i++)
    {
      char *line = g_strstrip (lines[i]);
      if (g_str_has_prefix (line, "Negative prompt:"))
        {
          done_with_prompt = TRUE;
          line = g_strstrip (line + 16);
        }
      if (done_with_prompt)
        {
          if (negative->len > 0)
            g_string_append_c (negative, '\n');
          g_string_append (negative, line);
        }
      else
        {
          if (prompt->len > 0)
            g_string_append_c (prompt, '\n');
          g_string_append (prompt, line);
        }
    }
  p->prompt = keep (p, prompt->str);
  if (negative->len > 0)
    p->negative_prompt = keep (p, negative->str);

  if (all_out != NULL)
    all = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  for (guint i = 0; i < params->len; i++)
    {
      const Param *m = &g_array_index (params, Param, i);
      g_autofree char *key = g_strndup (m->key, m->key_len);
      char *value = NULL;

      if (m->value_len >= 2 && m->value[0] == '"' && m->value[m->value_len - 1] == '"')
        value = json_unquote (m->value, m->value_len);
      if (value == NULL)
        value = g_strndup (m->value, m->value_len);
      apply_param (p, key, value);
      if (all != NULL)
        g_hash_table_replace (all, g_steal_pointer (&key), value);
      else
        g_free (value);
    }
  if (all_out != NULL)
    *all_out = all;
  return TRUE;
}

/* test-tokenizer: the CLIP BPE tokenizer and its text clean-up.
 *
 * Golden: every prompt of the tokenizer cases of ../shared/golden
 * (tokenizer_sd1) and ../shared/golden-sdxl (tokenizer_sdxl_1/_2), read from
 * the manifests' "prompts" lists: ids77 with the case's pad id, the
 * untruncated ids and the BPE token strings must match exactly. The same
 * with a bpe_simple_vocab_16e6.txt.gz built from merges.txt. The heap BPE
 * against a literal transcription of OpenAI's loop. Clean-up tables (values
 * for html.unescape checked against CPython's; ftfy values from ftfy 6.1's
 * documented rules). Loader errors on corrupt files. */
#include "config.h"

#include <gio/gio.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <string.h>

#include "sd-error.h"
#include "sd-text-clean.h"
#include "sd-tokenizer.h"
#include "test-util.h"

/* ---- helpers --------------------------------------------------------------- */

static char *
golden_tokenizer_dir (const char *golden, const char *model_rel, const char *sub)
{
  return g_build_filename (golden, model_rel, sub, NULL);
}

typedef struct
{
  char *manifest_dir;
  JsonParser *parser; /* owned */
  JsonObject *root;   /* borrowed */
} Manifest;

static gboolean
manifest_load (Manifest *m, const char *dir)
{
  g_autofree char *path = g_build_filename (dir, "manifest.json", NULL);
  g_autoptr (GError) error = NULL;
  m->parser = json_parser_new ();
  if (!json_parser_load_from_file (m->parser, path, &error))
    {
      g_test_fail_printf ("%s: %s", path, error->message);
      return FALSE;
    }
  m->root = json_node_get_object (json_parser_get_root (m->parser));
  m->manifest_dir = g_strdup (dir);
  return TRUE;
}

static void
manifest_clear (Manifest *m)
{
  g_clear_object (&m->parser);
  g_clear_pointer (&m->manifest_dir, g_free);
}

static JsonObject *
manifest_case (Manifest *m, const char *id)
{
  JsonArray *cases = json_object_get_array_member (m->root, "cases");
  for (guint i = 0; i < json_array_get_length (cases); i++)
    {
      JsonObject *c = json_array_get_object_element (cases, i);
      if (g_strcmp0 (json_object_get_string_member (c, "id"), id) == 0)
        return c;
    }
  return NULL;
}

/* Tokenizer folder of a case: models[model].forms.diffusers / params.tokenizer */
static char *
case_tokenizer_dir (Manifest *m, JsonObject *c)
{
  const char *model = json_object_get_string_member (c, "model");
  JsonObject *models = json_object_get_object_member (m->root, "models");
  JsonObject *forms = json_object_get_object_member (json_object_get_object_member (models, model),
                                                     "forms");
  JsonObject *params = json_object_get_object_member (c, "params");
  const char *sub = json_object_get_string_member_with_default (params, "tokenizer", "tokenizer");
  return golden_tokenizer_dir (m->manifest_dir, json_object_get_string_member (forms, "diffusers"),
                               sub);
}

static gint64
timer_us (void)
{
  return g_get_monotonic_time ();
}

/* Check every prompt of a tokenizer case against tok. Returns the number of
 * mismatching prompts (each reported with g_test_message). */
static int
check_prompts (SdTokenizer *tok, JsonObject *c, const char *label)
{
  JsonObject *params = json_object_get_object_member (c, "params");
  gint32 pad = json_object_get_int_member (params, "pad");
  JsonArray *prompts = json_object_get_array_member (c, "prompts");
  g_assert_cmpuint (json_array_get_length (prompts), ==,
                    json_object_get_int_member (params, "n_prompts"));
  int bad = 0;
  gint64 t0 = timer_us ();
  for (guint i = 0; i < json_array_get_length (prompts); i++)
    {
      JsonObject *p = json_array_get_object_element (prompts, i);
      const char *text = json_object_get_string_member (p, "prompt");
      const char *cat = json_object_get_string_member (p, "category");
      JsonArray *want77 = json_object_get_array_member (p, "ids77");
      JsonArray *want_un = json_object_get_array_member (p, "untruncated_ids");
      JsonArray *want_tok = json_object_get_array_member (p, "bpe_tokens");

      g_autoptr (GError) error = NULL;
      gint32 ids[SD_TOKENIZER_CONTEXT];
      g_assert_true (sd_tokenizer_encode_77 (tok, text, pad, ids, &error));
      g_assert_no_error (error);
      g_autoptr (GArray) bpe = sd_tokenizer_encode (tok, text, -1, &error);
      g_assert_no_error (error);

      gboolean ok = json_array_get_length (want77) == SD_TOKENIZER_CONTEXT
                    && json_array_get_length (want_un) == bpe->len + 2
                    && json_array_get_length (want_tok) == bpe->len;
      for (guint k = 0; ok && k < SD_TOKENIZER_CONTEXT; k++)
        ok = json_array_get_int_element (want77, k) == ids[k];
      for (guint k = 0; ok && k < bpe->len; k++)
        ok = json_array_get_int_element (want_un, k + 1) == g_array_index (bpe, gint32, k)
             && g_strcmp0 (json_array_get_string_element (want_tok, k),
                           sd_tokenizer_get_token (tok, g_array_index (bpe, gint32, k)))
                    == 0;
      if (ok)
        ok = json_array_get_int_element (want_un, 0) == sd_tokenizer_get_bos_id (tok)
             && json_array_get_int_element (want_un, bpe->len + 1) == sd_tokenizer_get_eos_id (tok);
      if (!ok)
        {
          GString *got = g_string_new (NULL), *want = g_string_new (NULL);
          for (guint k = 0; k < bpe->len; k++)
            g_string_append_printf (got, " %s", sd_tokenizer_get_token (tok, g_array_index (bpe, gint32, k)));
          for (guint k = 0; k < json_array_get_length (want_tok); k++)
            g_string_append_printf (want, " %s", json_array_get_string_element (want_tok, k));
          g_test_message ("%s: prompt %u (%s) differs\n  got: %s\n want: %s", label, i, cat,
                          got->str, want->str);
          g_string_free (got, TRUE);
          g_string_free (want, TRUE);
          bad++;
        }
    }
  g_test_message ("%s: %u prompts tokenised twice in %.2f ms", label,
                  json_array_get_length (prompts), (timer_us () - t0) / 1000.0);
  return bad;
}

static void
run_golden_case (const char *golden, const char *case_id)
{
  if (golden == NULL)
    {
      g_test_skip ("golden data not found: set IMPASTO_GOLDEN_DIR / IMPASTO_GOLDEN_SDXL_DIR");
      return;
    }
  Manifest m = { 0 };
  if (!manifest_load (&m, golden))
    return;
  JsonObject *c = manifest_case (&m, case_id);
  g_assert_nonnull (c);
  g_assert_cmpstr (json_object_get_string_member (c, "kind"), ==, "tokenizer");
  g_autofree char *dir = case_tokenizer_dir (&m, c);

  g_autoptr (GError) error = NULL;
  gint64 t0 = timer_us ();
  g_autoptr (SdTokenizer) tok = sd_tokenizer_new_from_dir (dir, &error);
  g_assert_no_error (error);
  g_test_message ("%s: loaded vocab.json + merges.txt in %.1f ms", case_id,
                  (timer_us () - t0) / 1000.0);
  g_assert_cmpint (sd_tokenizer_get_vocab_size (tok), ==, 49408);
  g_assert_cmpint (sd_tokenizer_get_bos_id (tok), ==, 49406);
  g_assert_cmpint (sd_tokenizer_get_eos_id (tok), ==, 49407);

  int bad = check_prompts (tok, c, case_id);
  if (bad)
    g_test_fail_printf ("%s: %d prompts differ from the golden ids", case_id, bad);
  manifest_clear (&m);
}

static void
test_golden_sd1 (void)
{
  run_golden_case (test_golden_dir (), "tokenizer_sd1");
}

static void
test_golden_sdxl_1 (void)
{
  run_golden_case (test_golden_sdxl_dir (), "tokenizer_sdxl_1");
}

static void
test_golden_sdxl_2 (void)
{
  run_golden_case (test_golden_sdxl_dir (), "tokenizer_sdxl_2");
}

/* ---- bpe_simple_vocab_16e6.txt.gz ------------------------------------------ */

static void
write_gz (const char *path, const char *data, gsize len)
{
  g_autoptr (GZlibCompressor) comp = g_zlib_compressor_new (G_ZLIB_COMPRESSOR_FORMAT_GZIP, 6);
  GByteArray *out = g_byte_array_new ();
  guint8 buf[65536];
  gsize in = 0;
  for (;;)
    {
      gsize r = 0, w = 0;
      g_autoptr (GError) error = NULL;
      GConverterResult res = g_converter_convert (G_CONVERTER (comp), data + in, len - in, buf,
                                                  sizeof buf, G_CONVERTER_INPUT_AT_END, &r, &w,
                                                  &error);
      g_assert_no_error (error);
      in += r;
      g_byte_array_append (out, buf, w);
      if (res == G_CONVERTER_FINISHED)
        break;
    }
  g_assert_true (g_file_set_contents (path, (char *) out->data, out->len, NULL));
  g_byte_array_unref (out);
}

static void
test_bpe_gz (void)
{
  const char *golden = test_require_golden ();
  if (golden == NULL)
    return;
  Manifest m = { 0 };
  if (!manifest_load (&m, golden))
    return;
  JsonObject *c = manifest_case (&m, "tokenizer_sd1");
  g_autofree char *dir = case_tokenizer_dir (&m, c);
  g_autoptr (GError) error = NULL;
  g_autoptr (SdTokenizer) ref = sd_tokenizer_new_from_dir (dir, &error);
  g_assert_no_error (error);

  /* OpenAI's file is the same merge list (of 262144 merges, of which CLIP
   * uses the first 48894) under a "#version" line: the diffusers merges.txt
   * is that file cut after merge 48894. Add some extra merges after the cut
   * to check that they are ignored. */
  g_autofree char *merges_path = g_build_filename (dir, "merges.txt", NULL);
  g_autofree char *merges = NULL;
  gsize merges_len = 0;
  g_assert_true (g_file_get_contents (merges_path, &merges, &merges_len, NULL));
  g_autofree char *content = g_strconcat (merges, "x y\nxy z\n", NULL);

  g_autofree char *tmp = g_dir_make_tmp ("impasto-tok-XXXXXX", NULL);
  g_autofree char *gz = g_build_filename (tmp, "bpe_simple_vocab_16e6.txt.gz", NULL);
  write_gz (gz, content, strlen (content));

  gint64 t0 = timer_us ();
  g_autoptr (SdTokenizer) tok = sd_tokenizer_new_from_dir (tmp, &error);
  g_assert_no_error (error);
  g_test_message ("loaded the .gz vocabulary in %.1f ms", (timer_us () - t0) / 1000.0);

  /* the same vocabulary, id for id */
  g_assert_cmpint (sd_tokenizer_get_vocab_size (tok), ==, sd_tokenizer_get_vocab_size (ref));
  for (int id = 0; id < sd_tokenizer_get_vocab_size (ref); id++)
    if (g_strcmp0 (sd_tokenizer_get_token (tok, id), sd_tokenizer_get_token (ref, id)) != 0)
      g_error ("id %d: '%s' from the .gz, '%s' from vocab.json", id, sd_tokenizer_get_token (tok, id),
               sd_tokenizer_get_token (ref, id));
  int bad = check_prompts (tok, c, "bpe gz");
  g_assert_cmpint (bad, ==, 0);

  /* a corrupt .gz is an error, not a crash */
  g_assert_true (g_file_set_contents (gz, "\x1f\x8b\x08\x00garbage", 12, NULL));
  g_autoptr (SdTokenizer) broken = sd_tokenizer_new_from_bpe_gz (gz, &error);
  g_assert_null (broken);
  g_assert_error (error, SD_ERROR, SD_ERROR_CORRUPT);
  g_test_message ("%s", error->message);

  g_unlink (gz);
  g_rmdir (tmp);
  manifest_clear (&m);
}

/* ---- heap BPE vs OpenAI's loop --------------------------------------------- */

/* simple_tokenizer.bpe () transcribed literally, over symbol strings. */
static GPtrArray *
naive_bpe (GHashTable *ranks, const char *word_symbols[], int n)
{
  GPtrArray *w = g_ptr_array_new_with_free_func (g_free);
  for (int i = 0; i < n; i++)
    g_ptr_array_add (w, g_strdup (word_symbols[i]));
  while (w->len > 1)
    {
      int best = -1;
      char *bf = NULL, *bs = NULL;
      for (guint i = 0; i + 1 < w->len; i++)
        {
          g_autofree char *key = g_strconcat (w->pdata[i], " ", w->pdata[i + 1], NULL);
          gpointer r = g_hash_table_lookup (ranks, key);
          if (r != NULL && (best < 0 || GPOINTER_TO_INT (r) - 1 < best))
            {
              best = GPOINTER_TO_INT (r) - 1;
              bf = w->pdata[i];
              bs = w->pdata[i + 1];
            }
        }
      if (best < 0)
        break;
      g_autofree char *first = g_strdup (bf), *second = g_strdup (bs);
      GPtrArray *nw = g_ptr_array_new_with_free_func (g_free);
      guint i = 0;
      while (i < w->len)
        {
          if (i + 1 < w->len && strcmp (w->pdata[i], first) == 0
              && strcmp (w->pdata[i + 1], second) == 0)
            {
              g_ptr_array_add (nw, g_strconcat (first, second, NULL));
              i += 2;
            }
          else
            g_ptr_array_add (nw, g_strdup (w->pdata[i++]));
        }
      g_ptr_array_unref (w);
      w = nw;
    }
  return w;
}

static void
test_bpe_vs_naive (void)
{
  const char *golden = test_require_golden ();
  if (golden == NULL)
    return;
  g_autofree char *dir = g_build_filename (golden, "sd15-tiny", "diffusers", "tokenizer", NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (SdTokenizer) tok = sd_tokenizer_new_from_dir (dir, &error);
  g_assert_no_error (error);

  g_autofree char *merges_path = g_build_filename (dir, "merges.txt", NULL);
  g_autofree char *merges = NULL;
  g_assert_true (g_file_get_contents (merges_path, &merges, NULL, NULL));
  g_auto (GStrv) lines = g_strsplit (g_strstrip (merges), "\n", -1);
  GHashTable *ranks = g_hash_table_new (g_str_hash, g_str_equal);
  for (int i = 1; lines[i] != NULL && i <= 48894; i++)
    g_hash_table_insert (ranks, lines[i], GINT_TO_POINTER (i));

  /* Words from a small alphabet hit many merges and repeated pairs
   * ("aaaa", "abab"); seeded, printed on failure. */
  static const char alphabet[] = "aeinorstlh'.!";
  guint64 s = 12345;
  for (int trial = 0; trial < 3000; trial++)
    {
      char word[48];
      s ^= s << 13, s ^= s >> 7, s ^= s << 17;
      int len = 1 + (int) (s % 40);
      gboolean letters = trial % 2 == 0;
      for (int i = 0; i < len; i++)
        {
          s ^= s << 13, s ^= s >> 7, s ^= s << 17;
          word[i] = letters ? alphabet[s % 10] : alphabet[s % (sizeof alphabet - 1)];
        }
      word[len] = '\0';
      /* one piece for the tokenizer: only letters, or only punctuation, or
       * a mix the regex splits; compare piece by piece via the tokenizer's
       * own output, so restrict to single pieces */
      gboolean one_piece = TRUE;
      for (int i = 0; i < len; i++)
        if (g_ascii_isalpha (word[i]) != g_ascii_isalpha (word[0]))
          one_piece = FALSE;
      if (!one_piece || word[0] == '\'')
        continue;
      const char *syms[48];
      char symbuf[48][8];
      for (int i = 0; i < len; i++)
        {
          g_snprintf (symbuf[i], sizeof symbuf[i], "%c%s", word[i], i == len - 1 ? "</w>" : "");
          syms[i] = symbuf[i];
        }
      g_autoptr (GPtrArray) want = naive_bpe (ranks, syms, len);
      g_autoptr (GArray) got = sd_tokenizer_encode (tok, word, -1, &error);
      g_assert_no_error (error);
      gboolean same = got->len == want->len;
      for (guint i = 0; same && i < got->len; i++)
        same = strcmp (sd_tokenizer_get_token (tok, g_array_index (got, gint32, i)), want->pdata[i])
               == 0;
      if (!same)
        g_error ("trial %d (seed 12345): BPE of '%s' differs from OpenAI's loop", trial, word);
    }
  g_hash_table_unref (ranks);
}

/* ---- clean-up -------------------------------------------------------------- */

static void
test_html_unescape (void)
{
  /* expected values: CPython 3.11 html.unescape */
  static const struct
  {
    const char *in, *out;
  } t[] = {
    { "a &amp; b", "a & b" },
    { "&amp;amp;", "&amp;" },
    { "&lt;b&gt;", "<b>" },
    { "&quot;x&quot; &#39;y&#39;", "\"x\" 'y'" },
    { "&apos;", "'" },
    { "&nbsp;", "\xC2\xA0" },
    { "&amp", "&" },            /* legacy name without ';' */
    { "&ampx", "&x" },          /* longest legacy prefix */
    { "&notit;", "\xC2\xACit;" },
    { "&notin;", "\xE2\x88\x89" },
    { "&hellip", "&hellip" },   /* not legacy: needs ';' */
    { "&hellip;", "\xE2\x80\xA6" },
    { "&#65;&#x42;&#X43;", "ABC" },
    { "&#65", "A" },
    { "&#0;", "\xEF\xBF\xBD" },
    { "&#x110000;", "\xEF\xBF\xBD" },
    { "&#99999999999999999999999;", "\xEF\xBF\xBD" },
    { "&#xD800;", "\xEF\xBF\xBD" },
    { "&#128;", "\xE2\x82\xAC" }, /* 0x80 read as Windows-1252 */
    { "&#129;", "\xC2\x81" },
    { "&#1;", "" },
    { "&#13;", "\r" },
    { "&#x;", "&#x;" },
    { "&#;", "&#;" },
    { "& amp;", "& amp;" },
    { "&unknown;", "&unknown;" },
    { "&AMP;", "&" },
    { "&Amp;", "&Amp;" },
    { "&copy2024", "\xC2\xA9" "2024" },
    { "&lang;&rang;", "\xE2\x9F\xA8\xE2\x9F\xA9" },
    { "&&amp;&", "&&&" },
    { "no entities", "no entities" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (t); i++)
    {
      g_autofree char *got = sd_text_html_unescape (t[i].in);
      if (g_strcmp0 (got, t[i].out) != 0)
        g_error ("html.unescape('%s'): got '%s', want '%s'", t[i].in, got, t[i].out);
    }
}

static void
test_clean (void)
{
  static const struct
  {
    const char *in, *out;
  } t[] = {
    /* whitespace and case */
    { "  A  Photo\tOf\n\nA CAT  ", "a photo of a cat" },
    { "", "" },
    { " \t\n ", "" },
    { "non\xC2\xA0" "breaking\xE3\x80\x80space", "non breaking space" },
    { "x\x1Cy", "xy" },              /* U+001C: a control char ftfy removes */
    { "\xC4\xB0stanbul", "i\xCC\x87stanbul" }, /* U+0130 -> i + U+0307 */
    { "\xCE\xA3\xCE\x91\xCE\xA3", "\xCF\x83\xCE\xB1\xCF\x82" },   /* ΣΑΣ -> σας */
    { "\xCE\xA3", "\xCF\x83" },      /* lone Σ is not final */
    { "\xCE\x9F\xCE\xA3 x", "\xCE\xBF\xCF\x82 x" },
    /* ftfy */
    { "it\xE2\x80\x99s \xE2\x80\x9Cquoted\xE2\x80\x9D", "it's \"quoted\"" },
    { "\xEF\xAC\x81ne \xEF\xAC\x82ow", "fine flow" },
    { "\xEF\xBC\xA6\xEF\xBC\xB5\xEF\xBC\xAC\xEF\xBC\xAC \xEF\xBC\x91\xEF\xBC\x92", "full 12" },
    { "cafe\xCC\x81", "caf\xC3\xA9" }, /* NFD -> NFC */
    { "a\r\nb\rc", "a b c" },
    { "\xC2\x93quoted\xC2\x94", "\"quoted\"" }, /* C1 controls as Windows-1252 */
    { "\x1B[31mred\x1B[0m", "red" },
    { "zero\xEF\xBB\xBFwidth", "zerowidth" }, /* U+FEFF removed */
    { "\xC5\x89", "'n" },            /* ŉ -> ʼn -> 'n */
    { "\xEF\xBE\x8A\xEF\xBE\x9F", "\xE3\x83\x91" }, /* halfwidth ﾊﾟ -> パ */
    /* ftfy's entity pass, then html.unescape twice */
    { "&amp;amp;amp;amp;", "&" },
    { "&EACUTE;t&EACUTE;", "\xC3\xA9t\xC3\xA9" },
    { "<b>&amp;amp;amp;</b>", "<b>&amp;</b>" }, /* with a "<" ftfy leaves entities: two levels only */
    { "&#8217;", "'" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (t); i++)
    {
      g_autofree char *got = sd_text_clean (t[i].in, -1);
      if (g_strcmp0 (got, t[i].out) != 0)
        g_error ("clean('%s'): got '%s', want '%s'", t[i].in, got, t[i].out);
    }
}

/* ---- errors ------------------------------------------------------------- */

static SdTokenizer *
load_pair (const char *tmp, const char *vocab, const char *merges, GError **error)
{
  g_autofree char *v = g_build_filename (tmp, "vocab.json", NULL);
  g_autofree char *m = g_build_filename (tmp, "merges.txt", NULL);
  g_assert_true (g_file_set_contents (v, vocab, -1, NULL));
  g_assert_true (g_file_set_contents (m, merges, -1, NULL));
  return sd_tokenizer_new_from_files (v, m, error);
}

/* A complete byte-level vocabulary as JSON, with extra entries. */
static char *
mini_vocab (const char *extra)
{
  GString *s = g_string_new ("{");
  int id = 0;
  for (int pass = 0; pass < 2; pass++)
    for (int b = 0; b < 256; b++)
      {
        gunichar u = ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174) ? (gunichar) b : 0;
        if (u == 0)
          {
            int n = 0;
            for (int i = 0; i < b; i++)
              if (!((i >= 33 && i <= 126) || (i >= 161 && i <= 172) || i >= 174))
                n++;
            u = 256 + n;
          }
        char sym[8];
        sym[g_unichar_to_utf8 (u, sym)] = '\0';
        g_string_append_printf (s, "\"%s%s%s\": %d, ", u == '"' || u == '\\' ? "\\" : "", sym,
                                pass ? "</w>" : "", id++);
      }
  g_string_append_printf (s, "%s\"<|startoftext|>\": %d, \"<|endoftext|>\": %d}", extra, id,
                          id + 1);
  return g_string_free (s, FALSE);
}

static void
test_errors (void)
{
  g_autofree char *tmp = g_dir_make_tmp ("impasto-tok-XXXXXX", NULL);
  g_autoptr (GError) error = NULL;

  /* a tiny but valid vocabulary: merges "h i</w>" */
  g_autofree char *vocab = mini_vocab ("\"hi</w>\": 514, \"\\u00e9t\\u00e9\": 515, ");
  g_autoptr (SdTokenizer) tok = load_pair (tmp, vocab, "#version: 0.2\nh i</w>\n", &error);
  g_assert_no_error (error);
  g_assert_cmpint (sd_tokenizer_get_vocab_size (tok), ==, 516);
  g_assert_cmpint (sd_tokenizer_lookup (tok, "\xC3\xA9t\xC3\xA9"), ==, 515); /* \u escapes */
  g_autoptr (GArray) ids = sd_tokenizer_encode (tok, "Hi ho", -1, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (ids->len, ==, 3);
  g_assert_cmpstr (sd_tokenizer_get_token (tok, g_array_index (ids, gint32, 0)), ==, "hi</w>");
  g_assert_cmpstr (sd_tokenizer_get_token (tok, g_array_index (ids, gint32, 1)), ==, "h");
  g_assert_cmpstr (sd_tokenizer_get_token (tok, g_array_index (ids, gint32, 2)), ==, "o</w>");

  /* text errors */
  g_clear_pointer (&ids, g_array_unref);
  ids = sd_tokenizer_encode (tok, "bad \xC3\x28 utf8", -1, &error);
  g_assert_null (ids);
  g_assert_error (error, SD_ERROR, SD_ERROR_INVALID_ARG);
  g_assert_nonnull (strstr (error->message, "UTF-8"));
  g_clear_error (&error);
  ids = sd_tokenizer_encode (tok, "nul\0inside", 10, &error);
  g_assert_null (ids);
  g_assert_error (error, SD_ERROR, SD_ERROR_INVALID_ARG);
  g_clear_error (&error);
  g_autofree char *huge = g_strnfill (SD_TOKENIZER_MAX_TEXT_BYTES + 1, 'a');
  ids = sd_tokenizer_encode (tok, huge, -1, &error);
  g_assert_null (ids);
  g_assert_error (error, SD_ERROR, SD_ERROR_INVALID_ARG);
  g_clear_error (&error);

  /* corrupt files */
  static const char *const bad_json[] = {
    "", "[]", "{", "{}", "{\"a\": }", "{\"a\": -1}", "{\"a\": 1.5}", "{\"a\" 1}", "{\"a\": 1,}",
    "{\"a\": 1} x", "{\"\\ud800\": 1}", "{\"\\u0000\": 1}", "{\"a\": 99999999999}",
    "{\"a\": 1}", /* valid JSON, but no specials / byte symbols */
  };
  for (guint i = 0; i < G_N_ELEMENTS (bad_json); i++)
    {
      g_autoptr (SdTokenizer) t = load_pair (tmp, bad_json[i], "#version: 0.2\n", &error);
      if (t != NULL || !g_error_matches (error, SD_ERROR, SD_ERROR_CORRUPT))
        g_error ("vocab.json '%s' was not refused as corrupt", bad_json[i]);
      g_clear_error (&error);
    }
  {
    /* a merge whose result is not in the vocabulary */
    g_autoptr (SdTokenizer) t = load_pair (tmp, vocab, "#version: 0.2\nh o</w>\n", &error);
    g_assert_null (t);
    g_assert_error (error, SD_ERROR, SD_ERROR_CORRUPT);
    g_assert_nonnull (strstr (error->message, "line 2"));
    g_clear_error (&error);
  }
  {
    g_autoptr (SdTokenizer) t = load_pair (tmp, "{\"a\": \xff}", "", &error);
    g_assert_null (t);
    g_assert_error (error, SD_ERROR, SD_ERROR_CORRUPT);
    g_clear_error (&error);
  }
  {
    g_autofree char *none = g_build_filename (tmp, "nowhere", NULL);
    g_autoptr (SdTokenizer) t = sd_tokenizer_new_from_dir (none, &error);
    g_assert_null (t);
    g_assert_error (error, SD_ERROR, SD_ERROR_MISSING);
    g_clear_error (&error);
    t = sd_tokenizer_new_from_files (none, none, &error);
    g_assert_null (t);
    g_assert_error (error, SD_ERROR, SD_ERROR_MISSING);
    g_clear_error (&error);
  }

  g_autofree char *v = g_build_filename (tmp, "vocab.json", NULL);
  g_autofree char *m = g_build_filename (tmp, "merges.txt", NULL);
  g_unlink (v);
  g_unlink (m);
  g_rmdir (tmp);
}

static void
test_find_dir (void)
{
  g_autofree char *tmp = g_dir_make_tmp ("impasto-tok-XXXXXX", NULL);
  g_autofree char *data_home = g_build_filename (tmp, "data", NULL);
  g_setenv ("XDG_DATA_HOME", data_home, TRUE);
  g_setenv ("XDG_DATA_DIRS", data_home, TRUE);
  /* GLib caches the user data dir on first use; this test runs in its own
   * process (meson) or first among the users of g_get_user_data_dir. */
  g_autoptr (GError) error = NULL;

  /* single file without vocabulary: the error says where to put one */
  g_autofree char *ckpt = g_build_filename (tmp, "model.safetensors", NULL);
  g_assert_true (g_file_set_contents (ckpt, "x", 1, NULL));
  g_autofree char *d = sd_tokenizer_find_dir (ckpt, &error);
  g_assert_null (d);
  g_assert_error (error, SD_ERROR, SD_ERROR_MISSING);
  g_assert_nonnull (strstr (error->message, "vocab.json"));
  g_assert_nonnull (strstr (error->message, tmp));
  g_assert_nonnull (strstr (error->message, g_get_user_data_dir ()));
  g_clear_error (&error);

  /* next to the checkpoint */
  g_autofree char *v = g_build_filename (tmp, "vocab.json", NULL);
  g_autofree char *m = g_build_filename (tmp, "merges.txt", NULL);
  g_assert_true (g_file_set_contents (v, "{}", -1, NULL));
  g_assert_true (g_file_set_contents (m, "", -1, NULL));
  d = sd_tokenizer_find_dir (ckpt, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (d, ==, tmp);
  g_clear_pointer (&d, g_free);
  g_unlink (v);
  g_unlink (m);

  /* the user data folder */
  g_autofree char *user = g_build_filename (g_get_user_data_dir (), "impasto", NULL);
  g_assert_cmpint (g_mkdir_with_parents (user, 0700), ==, 0);
  g_autofree char *gz = g_build_filename (user, "bpe_simple_vocab_16e6.txt.gz", NULL);
  g_assert_true (g_file_set_contents (gz, "", 0, NULL));
  d = sd_tokenizer_find_dir (ckpt, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (d, ==, user);
  g_clear_pointer (&d, g_free);
  g_unlink (gz);

  /* a diffusers folder: its tokenizer/ */
  const char *golden = test_golden_dir ();
  if (golden != NULL)
    {
      g_autofree char *diffusers = g_build_filename (golden, "sd15-tiny", "diffusers", NULL);
      d = sd_tokenizer_find_dir (diffusers, &error);
      g_assert_no_error (error);
      g_autofree char *want = g_build_filename (diffusers, "tokenizer", NULL);
      g_assert_cmpstr (d, ==, want);
      g_clear_pointer (&d, g_free);
    }

  g_unlink (ckpt);
  g_rmdir (user);
  g_autofree char *user_parent = g_path_get_dirname (user);
  g_rmdir (user_parent);
  g_rmdir (tmp);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/tokenizer/find-dir", test_find_dir);
  g_test_add_func ("/tokenizer/golden/tokenizer_sd1", test_golden_sd1);
  g_test_add_func ("/tokenizer/golden/tokenizer_sdxl_1", test_golden_sdxl_1);
  g_test_add_func ("/tokenizer/golden/tokenizer_sdxl_2", test_golden_sdxl_2);
  g_test_add_func ("/tokenizer/bpe-gz", test_bpe_gz);
  g_test_add_func ("/tokenizer/bpe-vs-openai-loop", test_bpe_vs_naive);
  g_test_add_func ("/tokenizer/html-unescape", test_html_unescape);
  g_test_add_func ("/tokenizer/clean", test_clean);
  g_test_add_func ("/tokenizer/errors", test_errors);
  return g_test_run ();
}

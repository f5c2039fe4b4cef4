/* test-prompt: A1111 prompt syntax (sd_prompt_parse) and chunking
 * (sd_prompt_encode). The parse table starts with the examples of A1111's
 * parse_prompt_attention docstring (weights compared exactly: they are
 * doubles multiplied in A1111's order); the chunking tests need the golden
 * tokenizer vocabulary and skip without it. */
#include "config.h"

#include <string.h>

#include "sd-error.h"
#include "sd-prompt.h"
#include "test-util.h"

#define BRK NULL, 0.0

typedef struct
{
  const char *prompt;
  int n;
  struct
  {
    const char *text; /* NULL = BREAK */
    double weight;
  } f[10];
} ParseRow;

static const ParseRow parse_table[] = {
  /* A1111's docstring */
  { "normal text", 1, { { "normal text", 1.0 } } },
  { "an (important) word", 3, { { "an ", 1.0 }, { "important", 1.1 }, { " word", 1.0 } } },
  { "(unbalanced", 1, { { "unbalanced", 1.1 } } },
  { "\\(literal\\]", 1, { { "(literal]", 1.0 } } },
  { "(unnecessary)(parens)", 1, { { "unnecessaryparens", 1.1 } } },
  { "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).", 9,
    { { "a ", 1.0 }, { "house", 1.5730000000000004 }, { " ", 1.1 }, { "on", 1.0 },
      { " a ", 1.1 }, { "hill", 0.55 }, { ", sun, ", 1.1 }, { "sky", 1.4641000000000006 },
      { ".", 1.1 } } },
  /* empty */
  { "", 1, { { "", 1.0 } } },
  /* squares, nesting */
  { "[a]", 1, { { "a", 1 / 1.1 } } },
  { "[[a]]", 1, { { "a", (1 / 1.1) * (1 / 1.1) } } },
  { "([a]:1.5)", 1, { { "a", (1 / 1.1) * 1.5 } } },
  { "((a))", 1, { { "a", 1.1 * 1.1 } } },
  { "(a (b:2) c)", 3, { { "a ", 1.1 }, { "b", 2.0 * 1.1 }, { " c", 1.1 } } },
  { "[unclosed", 1, { { "unclosed", 1 / 1.1 } } },
  /* weights */
  { "(a:1.5)", 1, { { "a", 1.5 } } },
  { "(a: 1.5 )", 1, { { "a", 1.5 } } },
  { "(a:.5)", 1, { { "a", 0.5 } } },
  { "(a:2.)", 1, { { "a", 2.0 } } },
  { "(a:+0.25)", 1, { { "a", 0.25 } } },
  { "(a:-1)", 1, { { "a", -1.0 } } },
  { "(a:0)", 1, { { "a", 0.0 } } },
  { "(a:\xEF\xBC\x91.\xEF\xBC\x95)", 1, { { "a", 1.5 } } }, /* fullwidth digits are \d */
  /* absurd weights: clamped */
  { "(a:100)", 1, { { "a", 10.0 } } },
  { "(a:-100)", 1, { { "a", -10.0 } } },
  { "(a:99999999999999999999999999999999999999999999)", 1, { { "a", 10.0 } } },
  { "((a:1000000000):0)", 1, { { "a", 0.0 } } },
  /* not a number: the colon is text, the brackets are plain */
  { "(a:1.2.3)", 1, { { "a:1.2.3", 1.1 } } },
  { "(a:.)", 1, { { "a:.", 1.1 } } },
  { "(a:)", 1, { { "a:", 1.1 } } },
  { "(a:b)", 1, { { "a:b", 1.1 } } },
  /* stray closers and weights without an opening bracket are literal */
  { "a) b] c", 1, { { "a) b] c", 1.0 } } },
  { "a:1.5) b", 1, { { "a:1.5) b", 1.0 } } },
  { "time: 12:30", 1, { { "time: 12:30", 1.0 } } },
  /* escapes */
  { "\\(a\\) \\[b\\] \\\\", 1, { { "(a) [b] \\", 1.0 } } },
  { "back\\slash", 1, { { "backslash", 1.0 } } }, /* a lone backslash is dropped */
  { "(\\(a\\):1.2)", 1, { { "(a)", 1.2 } } },
  /* BREAK */
  { "a BREAK b", 3, { { "a", 1.0 }, { BRK }, { "b", 1.0 } } },
  { "a  BREAK\tb", 3, { { "a", 1.0 }, { BRK }, { "b", 1.0 } } },
  { "a BREAK BREAK b", 5, { { "a", 1.0 }, { BRK }, { "", 1.0 }, { BRK }, { "b", 1.0 } } },
  { "BREAK", 3, { { "", 1.0 }, { BRK }, { "", 1.0 } } },
  { "aBREAK BREAKfast break _BREAK", 1, { { "aBREAK BREAKfast break _BREAK", 1.0 } } },
  { "a,BREAK,b", 3, { { "a,", 1.0 }, { BRK }, { ",b", 1.0 } } },
  { "(a BREAK b)", 3, { { "a", 1.1 }, { BRK }, { "b", 1.1 } } },
  /* re.split leaves empty texts around a BREAK that fills a whole token */
  { "(a)BREAK(b)", 5, { { "a", 1.1 }, { "", 1.0 }, { BRK }, { "", 1.0 }, { "b", 1.1 } } },
};

static void
test_parse_table (void)
{
  for (guint r = 0; r < G_N_ELEMENTS (parse_table); r++)
    {
      const ParseRow *row = &parse_table[r];
      g_autoptr (GError) error = NULL;
      g_autoptr (GArray) f = sd_prompt_parse (row->prompt, &error);
      g_assert_no_error (error);
      gboolean ok = (int) f->len == row->n;
      for (int i = 0; ok && i < row->n; i++)
        {
          SdPromptFragment *x = &g_array_index (f, SdPromptFragment, i);
          if (row->f[i].text == NULL)
            ok = x->text == NULL;
          else
            ok = x->text != NULL && strcmp (x->text, row->f[i].text) == 0
                 && x->weight == row->f[i].weight;
        }
      if (!ok)
        {
          GString *got = g_string_new (NULL);
          for (guint i = 0; i < f->len; i++)
            {
              SdPromptFragment *x = &g_array_index (f, SdPromptFragment, i);
              if (x->text)
                g_string_append_printf (got, " ['%s', %.17g]", x->text, x->weight);
              else
                g_string_append (got, " BREAK");
            }
          g_error ("parse row %u '%s': got%s", r, row->prompt, got->str);
        }
    }
}

static void
test_parse_deep_nesting (void)
{
  /* deeper than SD_PROMPT_MAX_NESTING: the extra brackets are dropped, the
   * weight is clamped, the text is intact */
  GString *s = g_string_new (NULL);
  for (int i = 0; i < 40; i++)
    g_string_append (s, "([");
  g_string_append (s, "deep");
  for (int i = 0; i < 40; i++)
    g_string_append (s, "])");
  g_string_append (s, "[after]");
  g_autoptr (GError) error = NULL;
  g_autoptr (GArray) f = sd_prompt_parse (s->str, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (f->len, ==, 2);
  SdPromptFragment *a = &g_array_index (f, SdPromptFragment, 0);
  SdPromptFragment *b = &g_array_index (f, SdPromptFragment, 1);
  g_assert_cmpstr (a->text, ==, "deep");
  g_assert_cmpfloat (a->weight, ==, 1.0); /* 32 x (1.1 / 1.1) */
  g_assert_cmpstr (b->text, ==, "after");
  g_assert_cmpfloat (b->weight, ==, 1 / 1.1);
  g_string_free (s, TRUE);

  /* 10000 unclosed "(": clamped to 10, linear time */
  g_autofree char *opens = g_strnfill (10000, '(');
  g_autofree char *p = g_strconcat (opens, "x", NULL);
  g_autoptr (GArray) g = sd_prompt_parse (p, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (g->len, ==, 1);
  g_assert_cmpfloat (g_array_index (g, SdPromptFragment, 0).weight, ==, SD_PROMPT_WEIGHT_MAX);
}

static void
test_parse_errors (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GArray) f = sd_prompt_parse ("caf\xC3 latte", &error);
  g_assert_null (f);
  g_assert_error (error, SD_ERROR, SD_ERROR_INVALID_ARG);
  g_assert_nonnull (strstr (error->message, "UTF-8"));
  g_clear_error (&error);

  g_autofree char *big = g_strnfill (SD_PROMPT_MAX_BYTES + 1, 'a');
  gint64 t0 = g_get_monotonic_time ();
  f = sd_prompt_parse (big, &error);
  g_assert_null (f);
  g_assert_error (error, SD_ERROR, SD_ERROR_INVALID_ARG);
  g_assert_nonnull (strstr (error->message, "65536"));
  g_test_message ("refused a %d-byte prompt in %.2f ms", SD_PROMPT_MAX_BYTES + 1,
                  (g_get_monotonic_time () - t0) / 1000.0);
  g_clear_error (&error);

  /* 16 MiB: refused before anything else is done */
  gsize n = 16u << 20;
  char *huge = g_malloc (n + 1);
  memset (huge, '(', n);
  huge[n] = '\0';
  t0 = g_get_monotonic_time ();
  f = sd_prompt_parse (huge, &error);
  g_assert_null (f);
  g_assert_error (error, SD_ERROR, SD_ERROR_INVALID_ARG);
  g_test_message ("refused a 16 MiB prompt in %.2f ms", (g_get_monotonic_time () - t0) / 1000.0);
  g_clear_error (&error);
  g_free (huge);
}

/* ---- chunking (needs the vocabulary) ----------------------------------------- */

static SdTokenizer *
golden_tokenizer (void)
{
  const char *golden = test_require_golden ();
  if (golden == NULL)
    return NULL;
  g_autofree char *dir = g_build_filename (golden, "sd15-tiny", "diffusers", "tokenizer", NULL);
  g_autoptr (GError) error = NULL;
  SdTokenizer *tok = sd_tokenizer_new_from_dir (dir, &error);
  g_assert_no_error (error);
  return tok;
}

static gint32
id_of (SdTokenizer *tok, const char *t)
{
  gint32 id = sd_tokenizer_lookup (tok, t);
  g_assert_cmpint (id, >=, 0);
  return id;
}

static void
assert_chunk (const SdPromptTokens *pt, int chunk, const gint32 *want, int n_want, gint32 pad)
{
  const gint32 *ids = pt->ids + chunk * SD_TOKENIZER_CONTEXT;
  g_assert_cmpint (ids[0], ==, 49406);
  for (int i = 0; i < n_want; i++)
    if (ids[1 + i] != want[i])
      g_error ("chunk %d token %d: got %d, want %d", chunk, i, ids[1 + i], want[i]);
  g_assert_cmpint (ids[1 + n_want], ==, 49407);
  for (int i = n_want + 2; i < SD_TOKENIZER_CONTEXT; i++)
    g_assert_cmpint (ids[i], ==, pad);
  const float *w = pt->weights + chunk * SD_TOKENIZER_CONTEXT;
  g_assert_cmpfloat (w[0], ==, 1.0f);
  for (int i = n_want + 1; i < SD_TOKENIZER_CONTEXT; i++)
    g_assert_cmpfloat (w[i], ==, 1.0f);
}

static void
test_encode_basic (void)
{
  g_autoptr (SdTokenizer) tok = golden_tokenizer ();
  if (tok == NULL)
    return;
  g_autoptr (GError) error = NULL;

  /* empty prompt: BOS, EOS, padding; both pad ids */
  for (int k = 0; k < 2; k++)
    {
      gint32 pad = k ? 0 : 49407;
      g_autoptr (SdPromptTokens) pt = sd_prompt_encode (tok, "", pad, &error);
      g_assert_no_error (error);
      g_assert_cmpint (pt->n_chunks, ==, 1);
      g_assert_cmpint (pt->n_tokens, ==, 0);
      assert_chunk (pt, 0, NULL, 0, pad);
    }

  /* plain prompt = the tokenizer's ids77 (golden: 320 1125 539 320 2368) */
  {
    g_autoptr (SdPromptTokens) pt = sd_prompt_encode (tok, "a photo of a cat", 49407, &error);
    g_assert_no_error (error);
    static const gint32 want[] = { 320, 1125, 539, 320, 2368 };
    g_assert_cmpint (pt->n_chunks, ==, 1);
    assert_chunk (pt, 0, want, 5, 49407);
    for (int i = 1; i <= 5; i++)
      g_assert_cmpfloat (pt->weights[i], ==, 1.0f);
  }

  /* weights per token; a fragment boundary is a word boundary */
  {
    g_autoptr (SdPromptTokens) pt = sd_prompt_encode (tok, "a (cat:1.5) [dog]", 0, &error);
    g_assert_no_error (error);
    const gint32 want[] = { id_of (tok, "a</w>"), id_of (tok, "cat</w>"), id_of (tok, "dog</w>") };
    assert_chunk (pt, 0, want, 3, 0);
    g_assert_cmpfloat (pt->weights[1], ==, 1.0f);
    g_assert_cmpfloat (pt->weights[2], ==, 1.5f);
    g_assert_cmpfloat (pt->weights[3], ==, (float) (1 / 1.1));
  }

  /* BREAK: chunks, including an empty one */
  {
    g_autoptr (SdPromptTokens) pt = sd_prompt_encode (tok, "cat BREAK BREAK dog", 49407, &error);
    g_assert_no_error (error);
    g_assert_cmpint (pt->n_chunks, ==, 3);
    const gint32 cat = id_of (tok, "cat</w>"), dog = id_of (tok, "dog</w>");
    assert_chunk (pt, 0, &cat, 1, 49407);
    assert_chunk (pt, 1, NULL, 0, 49407);
    assert_chunk (pt, 2, &dog, 1, 49407);
  }
  {
    g_autoptr (SdPromptTokens) pt = sd_prompt_encode (tok, "cat BREAK", 49407, &error);
    g_assert_no_error (error);
    g_assert_cmpint (pt->n_chunks, ==, 1);
  }

  /* invalid UTF-8 */
  {
    g_autoptr (SdPromptTokens) pt = sd_prompt_encode (tok, "\xFF", 49407, &error);
    g_assert_null (pt);
    g_assert_error (error, SD_ERROR, SD_ERROR_INVALID_ARG);
    g_clear_error (&error);
  }
}

static char *
repeat_words (const char *w, int n)
{
  GString *s = g_string_new (NULL);
  for (int i = 0; i < n; i++)
    g_string_append_printf (s, "%s ", w);
  return g_string_free (s, FALSE);
}

static void
test_encode_chunking (void)
{
  g_autoptr (SdTokenizer) tok = golden_tokenizer ();
  if (tok == NULL)
    return;
  g_autoptr (GError) error = NULL;
  const gint32 cat = id_of (tok, "cat</w>"), dog = id_of (tok, "dog</w>"),
               comma = id_of (tok, ",</w>");
  gint32 want[SD_PROMPT_CHUNK_TOKENS];

  /* exactly 75 tokens: one chunk; 76: two, hard split (no comma) */
  for (int n = 75; n <= 76; n++)
    {
      g_autofree char *p = repeat_words ("cat", n);
      g_autoptr (SdPromptTokens) pt = sd_prompt_encode (tok, p, 49407, &error);
      g_assert_no_error (error);
      g_assert_cmpint (pt->n_chunks, ==, n == 75 ? 1 : 2);
      g_assert_cmpint (pt->n_tokens, ==, n);
      for (int i = 0; i < 75; i++)
        want[i] = cat;
      assert_chunk (pt, 0, want, 75, 49407);
      if (n == 76)
        assert_chunk (pt, 1, want, 1, 49407);
    }

  /* a comma among the last 20 tokens: the chunk ends after it */
  {
    g_autofree char *cats = repeat_words ("cat", 70);
    g_autofree char *dogs = repeat_words ("(dog:1.2)", 10);
    g_autofree char *p = g_strconcat (cats, ", ", dogs, NULL);
    g_autoptr (SdPromptTokens) pt = sd_prompt_encode (tok, p, 0, &error);
    g_assert_no_error (error);
    g_assert_cmpint (pt->n_chunks, ==, 2);
    for (int i = 0; i < 70; i++)
      want[i] = cat;
    want[70] = comma;
    assert_chunk (pt, 0, want, 71, 0);
    for (int i = 0; i < 10; i++)
      want[i] = dog;
    assert_chunk (pt, 1, want, 10, 0);
    /* the moved tokens keep their weights */
    for (int i = 1; i <= 10; i++)
      g_assert_cmpfloat (pt->weights[SD_TOKENIZER_CONTEXT + i], ==, 1.2f);
  }

  /* the comma too far back (25 tokens): hard split */
  {
    g_autofree char *cats = repeat_words ("cat", 50);
    g_autofree char *dogs = repeat_words ("dog", 30);
    g_autofree char *p = g_strconcat (cats, ", ", dogs, NULL);
    g_autoptr (SdPromptTokens) pt = sd_prompt_encode (tok, p, 49407, &error);
    g_assert_no_error (error);
    g_assert_cmpint (pt->n_chunks, ==, 2);
    for (int i = 0; i < 50; i++)
      want[i] = cat;
    want[50] = comma;
    for (int i = 51; i < 75; i++)
      want[i] = dog;
    assert_chunk (pt, 0, want, 75, 49407);
    for (int i = 0; i < 6; i++)
      want[i] = dog;
    assert_chunk (pt, 1, want, 6, 49407);
  }

  /* a comma as the 76th token opens the next chunk */
  {
    g_autofree char *cats = repeat_words ("cat", 75);
    g_autofree char *p = g_strconcat (cats, ", dog", NULL);
    g_autoptr (SdPromptTokens) pt = sd_prompt_encode (tok, p, 49407, &error);
    g_assert_no_error (error);
    g_assert_cmpint (pt->n_chunks, ==, 2);
    want[0] = comma;
    want[1] = dog;
    assert_chunk (pt, 1, want, 2, 49407);
  }
}

static void
test_encode_limits (void)
{
  g_autoptr (SdTokenizer) tok = golden_tokenizer ();
  if (tok == NULL)
    return;
  g_autoptr (GError) error = NULL;

  /* 64 KiB of "a, ": 43690 tokens = 583 chunks > 256: refused, quickly */
  GString *s = g_string_new (NULL);
  while (s->len + 3 <= SD_PROMPT_MAX_BYTES)
    g_string_append (s, "a, ");
  gint64 t0 = g_get_monotonic_time ();
  g_autoptr (SdPromptTokens) pt = sd_prompt_encode (tok, s->str, 49407, &error);
  g_assert_null (pt);
  g_assert_error (error, SD_ERROR, SD_ERROR_INVALID_ARG);
  g_assert_nonnull (strstr (error->message, "256"));
  g_test_message ("64 KiB comma prompt refused in %.1f ms", (g_get_monotonic_time () - t0) / 1000.0);
  g_clear_error (&error);
  g_string_free (s, TRUE);

  /* 64 KiB of many small weighted fragments: accepted or refused, but fast */
  s = g_string_new (NULL);
  for (int i = 0; s->len + 16 <= SD_PROMPT_MAX_BYTES; i++)
    g_string_append_printf (s, "(w%d:1.%d) ", i % 100, i % 10);
  t0 = g_get_monotonic_time ();
  g_autoptr (SdPromptTokens) pt2 = sd_prompt_encode (tok, s->str, 49407, &error);
  g_test_message ("64 KiB of weighted fragments: %s in %.1f ms", pt2 ? "encoded" : error->message,
                  (g_get_monotonic_time () - t0) / 1000.0);
  g_clear_error (&error);
  g_string_free (s, TRUE);

  /* 64 KiB of brackets: nesting capped, linear */
  s = g_string_new (NULL);
  while (s->len + 2 <= SD_PROMPT_MAX_BYTES)
    g_string_append (s, "(a");
  t0 = g_get_monotonic_time ();
  g_autoptr (SdPromptTokens) pt3 = sd_prompt_encode (tok, s->str, 49407, &error);
  g_assert_no_error (error);
  g_test_message ("64 KiB of '(a': %d chunks in %.1f ms", pt3->n_chunks,
                  (g_get_monotonic_time () - t0) / 1000.0);
  g_string_free (s, TRUE);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/prompt/parse/table", test_parse_table);
  g_test_add_func ("/prompt/parse/deep-nesting", test_parse_deep_nesting);
  g_test_add_func ("/prompt/parse/errors", test_parse_errors);
  g_test_add_func ("/prompt/encode/basic", test_encode_basic);
  g_test_add_func ("/prompt/encode/chunking", test_encode_chunking);
  g_test_add_func ("/prompt/encode/limits", test_encode_limits);
  return g_test_run ();
}

/* fuzz-prompt: the prompt parser, the text clean-up and (when the golden
 * tokenizer vocabulary is found through IMPASTO_GOLDEN_DIR) the tokenizer and
 * chunker, on arbitrary bytes.
 *
 * Invariants checked (abort () on violation): sd_prompt_parse returns either
 * an error or fragments with finite weights inside [-10, 10]; the clean-up of
 * valid UTF-8 is valid UTF-8; token ids are inside the vocabulary; every
 * chunk is BOS + tokens + EOS + padding with finite weights, and there are
 * between 1 and SD_PROMPT_MAX_CHUNKS chunks. Without the vocabulary only the
 * parser and the clean-up run. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "sd-prompt.h"
#include "sd-text-clean.h"
#include "sd-tokenizer.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static SdTokenizer *
get_tokenizer (void)
{
  static gsize once = 0;
  static SdTokenizer *tok = NULL;
  if (g_once_init_enter (&once))
    {
      const char *golden = g_getenv ("IMPASTO_GOLDEN_DIR");
      if (golden != NULL && *golden != '\0')
        {
          g_autofree char *dir
            = g_build_filename (golden, "sd15-tiny", "diffusers", "tokenizer", NULL);
          tok = sd_tokenizer_new_from_dir (dir, NULL); /* NULL: parse-only */
        }
      g_once_init_leave (&once, 1);
    }
  return tok;
}

static void
check (gboolean cond)
{
  if (!cond)
    abort ();
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  /* a little above the prompt limit, so the limit itself is exercised */
  if (size > SD_PROMPT_MAX_BYTES + 16)
    return 0;
  char *text = g_malloc (size + 1);
  memcpy (text, data, size);
  text[size] = '\0'; /* prompts are C strings: an embedded NUL ends them */
  gboolean valid = g_utf8_validate (text, -1, NULL);

  GError *error = NULL;
  GArray *frags = sd_prompt_parse (text, &error);
  check ((frags == NULL) == (error != NULL));
  check (frags != NULL || !valid || strlen (text) > SD_PROMPT_MAX_BYTES);
  if (frags != NULL)
    {
      check (frags->len >= 1);
      for (guint i = 0; i < frags->len; i++)
        {
          SdPromptFragment *f = &g_array_index (frags, SdPromptFragment, i);
          if (f->text != NULL)
            check (isfinite (f->weight) && fabs (f->weight) <= SD_PROMPT_WEIGHT_MAX
                   && g_utf8_validate (f->text, -1, NULL));
        }
      g_array_unref (frags);
    }
  g_clear_error (&error);

  if (valid)
    {
      char *clean = sd_text_clean (text, -1);
      check (g_utf8_validate (clean, -1, NULL));
      g_free (clean);
    }

  SdTokenizer *tok = get_tokenizer ();
  if (tok != NULL)
    {
      int vocab = sd_tokenizer_get_vocab_size (tok);
      GArray *ids = sd_tokenizer_encode (tok, (const char *) data, size, &error);
      check ((ids == NULL) == (error != NULL));
      if (ids != NULL)
        {
          for (guint i = 0; i < ids->len; i++)
            {
              gint32 id = g_array_index (ids, gint32, i);
              check (id >= 0 && id < vocab);
            }
          g_array_unref (ids);
        }
      g_clear_error (&error);

      gint32 pad = size > 0 && (data[0] & 1) ? 0 : 49407;
      SdPromptTokens *pt = sd_prompt_encode (tok, text, pad, &error);
      check ((pt == NULL) == (error != NULL));
      if (pt != NULL)
        {
          check (pt->n_chunks >= 1 && pt->n_chunks <= SD_PROMPT_MAX_CHUNKS);
          for (int c = 0; c < pt->n_chunks; c++)
            {
              const gint32 *row = pt->ids + c * SD_TOKENIZER_CONTEXT;
              const float *w = pt->weights + c * SD_TOKENIZER_CONTEXT;
              check (row[0] == sd_tokenizer_get_bos_id (tok) && w[0] == 1.0f);
              /* after the tokens: EOS, then padding (weight 1). With pad 0
               * the last non-pad id is that EOS; with pad = EOS the last id
               * is EOS. A literal "<|endoftext|>" in the prompt may also put
               * an EOS among the tokens. */
              int last = SD_TOKENIZER_CONTEXT - 1;
              while (last > 0 && row[last] == pad && pad != sd_tokenizer_get_eos_id (tok))
                last--;
              check (row[last] == sd_tokenizer_get_eos_id (tok) && w[last] == 1.0f);
              for (int i = 0; i < SD_TOKENIZER_CONTEXT; i++)
                {
                  check (row[i] >= 0 && row[i] < vocab);
                  check (isfinite (w[i]) && fabsf (w[i]) <= SD_PROMPT_WEIGHT_MAX);
                  if (i > last)
                    check (w[i] == 1.0f);
                }
            }
          sd_prompt_tokens_free (pt);
        }
      g_clear_error (&error);
    }
  g_free (text);
  return 0;
}

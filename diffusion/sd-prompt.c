/* sd-prompt.c: AUTOMATIC1111 prompt syntax and chunking.
 *
 * ---- README: prompt syntax -------------------------------------------------
 *
 * Prompts use the AUTOMATIC1111 (stable-diffusion-webui) syntax, so prompts
 * copied from it mean the same thing here.
 *
 * Emphasis
 *   (word)         weight x1.1
 *   [word]         weight /1.1
 *   (word:1.3)     weight x1.3 (any number: 0.5, .5, 1., -1; no exponents)
 *   ((word))       brackets nest and multiply: 1.1 x 1.1 = 1.21
 *   ([word]:1.5)   1.5 / 1.1
 *   \( \) \[ \]    literal brackets; \\ is a literal backslash. A backslash
 *                  before any other character is dropped ("a\b" = "ab").
 *   :              outside "(text:number)" a colon is ordinary text.
 *   Unbalanced: an unclosed "(" applies x1.1 (an unclosed "[" /1.1) to
 *   everything after it; a ")" or "]" without an opening bracket, and
 *   "(text:number)"-style weights without one, are kept as literal text.
 *   A weight that is not a number ("(a:1.2.3)") leaves the colon as text and
 *   the brackets act as plain ( ) = x1.1.
 *   Weights apply per token; padding, BOS and EOS have weight 1.
 *
 * BREAK
 *   The word BREAK in capitals (a whole word, not part of one) ends the
 *   current 75-token chunk and starts a new one; the spaces around it are
 *   dropped. Two BREAKs in a row leave an empty chunk between them; a BREAK at
 *   the very start makes an empty first chunk; one at the end does nothing.
 *   (Unlike A1111, a BREAK inside brackets still breaks.)
 *
 * Long prompts
 *   CLIP reads 77 tokens: BOS, 75 prompt tokens, EOS. Longer prompts are
 *   split into chunks of 75 tokens, each encoded separately and concatenated
 *   (the UNet then attends to all of them). When a chunk is full and one of
 *   its last 20 tokens is a comma, the chunk ends after that comma and the
 *   words after it move to the next chunk; otherwise the split is hard. Each
 *   chunk is BOS + its tokens + EOS, padded to 77 with the model's pad token.
 *   An empty prompt is one chunk: BOS, EOS, padding.
 *
 * Limits
 *   Prompts longer than 64 KiB (bytes of UTF-8) or needing more than 256
 *   chunks (19,200 tokens) are refused with an error. Invalid UTF-8 is
 *   refused. Brackets nested deeper than 32 of one kind are ignored (dropped,
 *   no weight), and final weights are clamped to [-10, 10] (weights in
 *   "(text:w)" to [-1e6, 1e6] before multiplying, so no weight becomes
 *   infinite or NaN): absurd weights give a usable, if odd, prompt, never a
 *   crash.
 *
 * ---- end of README section -------------------------------------------------
 *
 * Implementation notes. The parser follows modules/prompt_parser.py
 * parse_prompt_attention and the chunker
 * modules/sd_hijack_clip.py FrozenCLIPEmbedderWithCustomWordsBase.tokenize_line
 * (opts.comma_padding_backtrack = 20, the default), reading them as
 * specifications: the token regex is
 *   \\\( | \\\) | \\\[ | \\] | \\\\ | \\ | \( | \[ | :\s*([+-]?[.\d]+)\s*\) | \) | ] | [^\\()\[\]:]+ | :
 * and plain-text tokens are split by \s*\bBREAK\b\s* (Python's Unicode \s,
 * \d and \b). Fragments of equal weight are merged before tokenising (A1111
 * merges runs of identical weights), and each fragment is tokenised on its
 * own, as A1111 does. Weights are doubles multiplied in A1111's order, so
 * the merge comparisons agree with it.
 *
 * Cost: a closing bracket multiplies the weights of the fragments since its
 * opening one; with nesting capped at 32 per kind every fragment is
 * multiplied at most 64 times, so parsing is linear in the prompt length.
 */
#include "sd-prompt.h"

#include <math.h>
#include <string.h>

#include "sd-error.h"
#include "sd-text-clean.h"

#define PARSE_WEIGHT_MAX 1e6

typedef struct
{
  GString *text; /* NULL for BREAK */
  double weight;
} Item;

typedef struct
{
  GArray *items; /* Item */
  GArray *round, *square; /* open bracket positions (indices into items) */
  int round_dropped, square_dropped; /* opens beyond SD_PROMPT_MAX_NESTING */
} Parser;

static void
item_clear (gpointer p)
{
  Item *it = p;
  if (it->text)
    g_string_free (it->text, TRUE);
}

static void
fragment_clear (gpointer p)
{
  SdPromptFragment *f = p;
  g_free (f->text);
}

static void
add_text (Parser *ps, const char *s, gsize len)
{
  Item it = { g_string_new_len (s, len), 1.0 };
  g_array_append_val (ps->items, it);
}

static void
add_break (Parser *ps)
{
  Item it = { NULL, 0.0 };
  g_array_append_val (ps->items, it);
}

static void
multiply_range (Parser *ps, guint start, double m)
{
  for (guint i = start; i < ps->items->len; i++)
    {
      Item *it = &g_array_index (ps->items, Item, i);
      if (it->text != NULL)
        it->weight *= m;
    }
}

/* Python's \w: letters, numbers and '_' */
static gboolean
py_word (gunichar c)
{
  if (c < 0x80)
    return g_ascii_isalnum (c) || c == '_';
  switch (g_unichar_type (c))
    {
    case G_UNICODE_UPPERCASE_LETTER:
    case G_UNICODE_LOWERCASE_LETTER:
    case G_UNICODE_TITLECASE_LETTER:
    case G_UNICODE_MODIFIER_LETTER:
    case G_UNICODE_OTHER_LETTER:
    case G_UNICODE_DECIMAL_NUMBER:
    case G_UNICODE_LETTER_NUMBER:
    case G_UNICODE_OTHER_NUMBER:
      return TRUE;
    default:
      return FALSE;
    }
}

/* A plain-text token: re.split (r"\s*\bBREAK\b\s*", text), a BREAK between
 * the parts. */
static void
add_plain (Parser *ps, const char *s, gsize len)
{
  const char *end = s + len, *part = s, *scan = s;
  for (;;)
    {
      const char *b = g_strstr_len (scan, end - scan, "BREAK");
      if (b == NULL)
        break;
      const char *after = b + 5;
      gboolean left_ok = b == s || !py_word (g_utf8_get_char (g_utf8_prev_char (b)));
      gboolean right_ok = after == end || !py_word (g_utf8_get_char (after));
      if (!left_ok || !right_ok)
        {
          scan = b + 1;
          continue;
        }
      /* extend over whitespace, left no further than the previous match */
      const char *ms = b;
      while (ms > part)
        {
          const char *prev = g_utf8_prev_char (ms);
          if (!sd_text_py_isspace (g_utf8_get_char (prev)))
            break;
          ms = prev;
        }
      const char *me = after;
      while (me < end && sd_text_py_isspace (g_utf8_get_char (me)))
        me = g_utf8_next_char (me);
      add_text (ps, part, ms - part);
      add_break (ps);
      part = scan = me;
    }
  add_text (ps, part, end - part);
}

/* :\s*([+-]?[.\d]+)\s*\) at p (on the ':'). Returns the end of the match or
 * NULL; *value is set when the number is a valid Python float literal,
 * else *valid is FALSE. */
static const char *
match_weight (const char *p, double *value, gboolean *valid)
{
  const char *q = p + 1;
  while (*q && sd_text_py_isspace (g_utf8_get_char (q)))
    q = g_utf8_next_char (q);
  GString *num = g_string_new (NULL);
  if (*q == '+' || *q == '-')
    g_string_append_c (num, *q++);
  int n_digits = 0, n_dots = 0, run = 0;
  while (*q)
    {
      gunichar c = g_utf8_get_char (q);
      if (c == '.')
        {
          g_string_append_c (num, '.');
          n_dots++;
        }
      else if (g_unichar_isdigit (c)) /* \d: any Unicode decimal digit (Nd) */
        {
          g_string_append_c (num, '0' + g_unichar_digit_value (c));
          n_digits++;
        }
      else
        break;
      run++;
      q = g_utf8_next_char (q);
    }
  if (run == 0)
    {
      g_string_free (num, TRUE);
      return NULL;
    }
  while (*q && sd_text_py_isspace (g_utf8_get_char (q)))
    q = g_utf8_next_char (q);
  if (*q != ')')
    {
      g_string_free (num, TRUE);
      return NULL;
    }
  *valid = n_digits > 0 && n_dots <= 1;
  if (*valid)
    {
      /* overflow gives +-inf (as Python's float ()); clamped below */
      *value = g_ascii_strtod (num->str, NULL);
      *value = CLAMP (*value, -PARSE_WEIGHT_MAX, PARSE_WEIGHT_MAX);
    }
  g_string_free (num, TRUE);
  return q + 1;
}

static gboolean
check_prompt (const char *prompt, GError **error)
{
  gsize len = strlen (prompt);
  if (len > SD_PROMPT_MAX_BYTES)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG,
                   "the prompt is %" G_GSIZE_FORMAT " bytes long; the limit is %d bytes", len,
                   SD_PROMPT_MAX_BYTES);
      return FALSE;
    }
  const char *bad = NULL;
  if (!g_utf8_validate_len (prompt, len, &bad))
    {
      g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG,
                   "the prompt is not valid UTF-8 (byte 0x%02x at offset %" G_GSIZE_FORMAT ")",
                   (guchar) *bad, (gsize) (bad - prompt));
      return FALSE;
    }
  return TRUE;
}

GArray *
sd_prompt_parse (const char *prompt, GError **error)
{
  g_return_val_if_fail (prompt != NULL, NULL);
  if (!check_prompt (prompt, error))
    return NULL;

  Parser ps = { 0 };
  ps.items = g_array_new (FALSE, FALSE, sizeof (Item));
  g_array_set_clear_func (ps.items, item_clear);
  ps.round = g_array_new (FALSE, FALSE, sizeof (guint));
  ps.square = g_array_new (FALSE, FALSE, sizeof (guint));

  const char *p = prompt;
  while (*p != '\0')
    {
      char c = *p;
      if (c == '\\')
        {
          char n = p[1];
          if (n == '(' || n == ')' || n == '[' || n == ']' || n == '\\')
            {
              add_text (&ps, p + 1, 1);
              p += 2;
            }
          else
            p++; /* a lone backslash: A1111 appends text[1:] = "" */
          continue;
        }
      if (c == '(' || c == '[')
        {
          GArray *stack = c == '(' ? ps.round : ps.square;
          int *dropped = c == '(' ? &ps.round_dropped : &ps.square_dropped;
          if (stack->len >= SD_PROMPT_MAX_NESTING)
            (*dropped)++;
          else
            {
              guint pos = ps.items->len;
              g_array_append_val (stack, pos);
            }
          p++;
          continue;
        }
      if (c == ':')
        {
          double w = 1.0;
          gboolean valid = FALSE;
          const char *end = match_weight (p, &w, &valid);
          gboolean open = ps.round_dropped > 0 || ps.round->len > 0;
          if (end != NULL && !open)
            {
              add_plain (&ps, p, end - p); /* a weight without "(": literal text */
              p = end;
            }
          else if (end != NULL && valid)
            {
              if (ps.round_dropped > 0)
                ps.round_dropped--;
              else
                {
                  guint pos = g_array_index (ps.round, guint, ps.round->len - 1);
                  g_array_set_size (ps.round, ps.round->len - 1);
                  multiply_range (&ps, pos, w);
                }
              p = end;
            }
          else
            {
              /* a plain colon, or "(a:1.2.3)" (A1111 raises an exception on
               * float ("1.2.3")): the ':' is text, the rest is read on */
              add_plain (&ps, p, 1);
              p++;
            }
          continue;
        }
      if (c == ')' || c == ']')
        {
          GArray *stack = c == ')' ? ps.round : ps.square;
          int *dropped = c == ')' ? &ps.round_dropped : &ps.square_dropped;
          if (*dropped > 0)
            (*dropped)--;
          else if (stack->len > 0)
            {
              guint pos = g_array_index (stack, guint, stack->len - 1);
              g_array_set_size (stack, stack->len - 1);
              multiply_range (&ps, pos, c == ')' ? 1.1 : 1 / 1.1);
            }
          else
            add_plain (&ps, p, 1);
          p++;
          continue;
        }
      /* [^\\()\[\]:]+ */
      const char *q = p;
      while (*q && !strchr ("\\()[]:", *q))
        q++;
      add_plain (&ps, p, q - p);
      p = q;
    }

  /* unclosed brackets apply to the rest, in A1111's order */
  for (guint i = 0; i < ps.round->len; i++)
    multiply_range (&ps, g_array_index (ps.round, guint, i), 1.1);
  for (guint i = 0; i < ps.square->len; i++)
    multiply_range (&ps, g_array_index (ps.square, guint, i), 1 / 1.1);

  /* merge runs of identical weights; drop nothing else */
  GArray *out = g_array_new (FALSE, FALSE, sizeof (SdPromptFragment));
  g_array_set_clear_func (out, fragment_clear);
  GString *cur = NULL;
  double cur_w = 0.0;
  for (guint i = 0; i < ps.items->len; i++)
    {
      Item *it = &g_array_index (ps.items, Item, i);
      if (it->text != NULL && cur != NULL && it->weight == cur_w)
        {
          g_string_append_len (cur, it->text->str, it->text->len);
          continue;
        }
      if (cur != NULL)
        {
          SdPromptFragment f = { g_string_free (cur, FALSE),
                                 CLAMP (cur_w, -SD_PROMPT_WEIGHT_MAX, SD_PROMPT_WEIGHT_MAX) };
          g_array_append_val (out, f);
          cur = NULL;
        }
      if (it->text == NULL)
        {
          SdPromptFragment f = { NULL, 0.0 };
          g_array_append_val (out, f);
        }
      else
        {
          cur = g_string_new_len (it->text->str, it->text->len);
          cur_w = it->weight;
        }
    }
  if (cur != NULL)
    {
      SdPromptFragment f = { g_string_free (cur, FALSE),
                             CLAMP (cur_w, -SD_PROMPT_WEIGHT_MAX, SD_PROMPT_WEIGHT_MAX) };
      g_array_append_val (out, f);
    }
  if (out->len == 0)
    {
      SdPromptFragment f = { g_strdup (""), 1.0 };
      g_array_append_val (out, f);
    }

  g_array_unref (ps.items);
  g_array_unref (ps.round);
  g_array_unref (ps.square);
  return out;
}

/* ---- chunking -------------------------------------------------------------- */

typedef struct
{
  GArray *ids;     /* gint32, 77 per chunk */
  GArray *weights; /* float */
  gint32 chunk_ids[SD_PROMPT_CHUNK_TOKENS];
  float chunk_w[SD_PROMPT_CHUNK_TOKENS];
  int n; /* tokens in the current chunk */
  int last_comma;
  int n_chunks;
  gint32 bos, eos, pad;
} Chunker;

static gboolean
next_chunk (Chunker *ch, GError **error)
{
  if (ch->n_chunks >= SD_PROMPT_MAX_CHUNKS)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG,
                   "the prompt needs more than %d chunks of %d tokens; shorten it",
                   SD_PROMPT_MAX_CHUNKS, SD_PROMPT_CHUNK_TOKENS);
      return FALSE;
    }
  gint32 ids[SD_TOKENIZER_CONTEXT];
  float w[SD_TOKENIZER_CONTEXT];
  ids[0] = ch->bos;
  w[0] = 1.0f;
  memcpy (ids + 1, ch->chunk_ids, ch->n * sizeof (gint32));
  memcpy (w + 1, ch->chunk_w, ch->n * sizeof (float));
  ids[ch->n + 1] = ch->eos;
  w[ch->n + 1] = 1.0f;
  for (int i = ch->n + 2; i < SD_TOKENIZER_CONTEXT; i++)
    {
      ids[i] = ch->pad;
      w[i] = 1.0f;
    }
  g_array_append_vals (ch->ids, ids, SD_TOKENIZER_CONTEXT);
  g_array_append_vals (ch->weights, w, SD_TOKENIZER_CONTEXT);
  ch->n_chunks++;
  ch->n = 0;
  ch->last_comma = -1;
  return TRUE;
}

SdPromptTokens *
sd_prompt_encode (SdTokenizer *tok, const char *prompt, gint32 pad_id, GError **error)
{
  g_return_val_if_fail (tok != NULL && prompt != NULL, NULL);
  g_autoptr (GArray) frags = sd_prompt_parse (prompt, error);
  if (frags == NULL)
    return NULL;

  gint32 comma = sd_tokenizer_lookup (tok, ",</w>");
  Chunker ch = { 0 };
  ch.ids = g_array_new (FALSE, FALSE, sizeof (gint32));
  ch.weights = g_array_new (FALSE, FALSE, sizeof (float));
  ch.last_comma = -1;
  ch.bos = sd_tokenizer_get_bos_id (tok);
  ch.eos = sd_tokenizer_get_eos_id (tok);
  ch.pad = pad_id;
  int n_tokens = 0;
  gboolean ok = TRUE;

  for (guint f = 0; ok && f < frags->len; f++)
    {
      SdPromptFragment *fr = &g_array_index (frags, SdPromptFragment, f);
      if (fr->text == NULL)
        {
          ok = next_chunk (&ch, error);
          continue;
        }
      GArray *toks = sd_tokenizer_encode (tok, fr->text, -1, error);
      if (toks == NULL)
        {
          ok = FALSE;
          break;
        }
      for (guint i = 0; ok && i < toks->len; i++)
        {
          gint32 t = g_array_index (toks, gint32, i);
          if (t == comma)
            ch.last_comma = ch.n;
          else if (ch.n == SD_PROMPT_CHUNK_TOKENS && ch.last_comma != -1
                   && ch.n - ch.last_comma <= SD_PROMPT_COMMA_BACKTRACK)
            {
              /* move the tokens after the comma to the next chunk */
              int brk = ch.last_comma + 1;
              int n_move = ch.n - brk;
              gint32 mv_ids[SD_PROMPT_CHUNK_TOKENS];
              float mv_w[SD_PROMPT_CHUNK_TOKENS];
              memcpy (mv_ids, ch.chunk_ids + brk, n_move * sizeof (gint32));
              memcpy (mv_w, ch.chunk_w + brk, n_move * sizeof (float));
              ch.n = brk;
              if (!(ok = next_chunk (&ch, error)))
                break;
              memcpy (ch.chunk_ids, mv_ids, n_move * sizeof (gint32));
              memcpy (ch.chunk_w, mv_w, n_move * sizeof (float));
              ch.n = n_move;
            }
          if (ch.n == SD_PROMPT_CHUNK_TOKENS && !(ok = next_chunk (&ch, error)))
            break;
          ch.chunk_ids[ch.n] = t;
          ch.chunk_w[ch.n] = (float) fr->weight;
          ch.n++;
          n_tokens++;
        }
      g_array_unref (toks);
    }
  if (ok && (ch.n > 0 || ch.n_chunks == 0))
    ok = next_chunk (&ch, error);
  if (!ok)
    {
      g_array_unref (ch.ids);
      g_array_unref (ch.weights);
      return NULL;
    }

  SdPromptTokens *out = g_new0 (SdPromptTokens, 1);
  out->n_chunks = ch.n_chunks;
  out->n_tokens = n_tokens;
  out->ids = (gint32 *) g_array_free (ch.ids, FALSE);
  out->weights = (float *) g_array_free (ch.weights, FALSE);
  return out;
}

void
sd_prompt_tokens_free (SdPromptTokens *tokens)
{
  if (tokens == NULL)
    return;
  g_free (tokens->ids);
  g_free (tokens->weights);
  g_free (tokens);
}

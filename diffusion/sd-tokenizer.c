/* sd-tokenizer.c: CLIP byte-level BPE (see sd-tokenizer.h).
 *
 * Loading: a small dedicated parser for vocab.json (a flat JSON object of
 * string -> int; json-glib takes ~70 ms on the 1 MB file, this ~5 ms),
 * merges as a hash of (left id, right id) -> (rank, merged id).
 *
 * BPE: OpenAI's loop ("find the lowest-ranked adjacent pair, merge all its
 * occurrences left to right, repeat") is quadratic in the word length. We
 * use the equivalent heap formulation: candidates ordered by (rank, position),
 * stale ones skipped when popped. It gives the same result because a merge
 * only creates pairs that contain the new, longer symbol, and in a merge list
 * produced by BPE training such pairs always rank after the merge that made
 * the symbol; occurrences of one pair are merged left to right in both.
 * tests/test-tokenizer.c checks the two against each other.
 */
#include "sd-tokenizer.h"

#include <gio/gio.h>
#include <string.h>

#include "sd-error.h"
#include "sd-text-clean.h"

/* CLIP keeps merges[1 : 49152 - 256 - 2 + 1] of the file (simple_tokenizer.py,
 * transformers' CLIPTokenizer): the vocabulary is 49152 + 256 = 49408. */
#define CLIP_MAX_MERGES (49152 - 256 - 2)
#define MAX_VOCAB (1 << 20)
#define MAX_FILE_BYTES (64u << 20)
#define CACHE_MAX_ENTRIES 16384
#define CACHE_MAX_PIECE 64

typedef struct
{
  guint64 key; /* left << 32 | right; EMPTY_KEY when free */
  gint32 rank;
  gint32 merged;
} PairSlot;

#define EMPTY_KEY G_MAXUINT64

struct _SdTokenizer
{
  int n_vocab;            /* ids are 0 .. n_vocab-1; entries may be NULL (gaps) */
  char **tokens;          /* owned array; strings borrowed from `strings` */
  GStringChunk *strings;  /* owned */
  GHashTable *token_to_id; /* owned; keys borrowed from `strings`, values id + 1 */

  PairSlot *pairs; /* owned, open addressing, power-of-two size */
  guint pair_bits;

  gint32 byte_id[256];     /* symbol of byte b inside a word */
  gint32 byte_end_id[256]; /* symbol of byte b + "</w>" (word end) */
  gint32 bos, eos;

  GMutex cache_lock;
  GHashTable *cache; /* owned: piece bytes -> gint32[1 + n] (n first) */
};

/* ---- byte <-> unicode ---------------------------------------------------- */

/* simple_tokenizer.bytes_to_unicode: printable Latin-1 bytes ('!'..'~',
 * U+00A1..U+00AC, U+00AE..U+00FF) stand for themselves; the other 68 bytes,
 * in increasing order, for U+0100, U+0101, ... so that no symbol is
 * whitespace or a control character. */
static gunichar
byte_to_unicode (guint8 b)
{
  if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174))
    return b;
  int n = 0;
  for (int i = 0; i < b; i++)
    if (!((i >= 33 && i <= 126) || (i >= 161 && i <= 172) || (i >= 174)))
      n++;
  return 256 + n;
}

/* The byte symbols in the order of simple_tokenizer's vocabulary (dict order
 * of bytes_to_unicode: the printable bytes first, then the others). */
static void
byte_vocab_order (guint8 order[256])
{
  int k = 0;
  for (int b = 0; b < 256; b++)
    if (byte_to_unicode (b) == (gunichar) b)
      order[k++] = b;
  for (int b = 0; b < 256; b++)
    if (byte_to_unicode (b) != (gunichar) b)
      order[k++] = b;
}

/* ---- merge table ---------------------------------------------------------- */

static inline guint64
pair_key (gint32 a, gint32 b)
{
  return ((guint64) (guint32) a << 32) | (guint32) b;
}

static inline guint
pair_hash (guint64 key, guint bits)
{
  return (guint) ((key * G_GUINT64_CONSTANT (0x9E3779B97F4A7C15)) >> (64 - bits));
}

static void
pairs_init (SdTokenizer *tok, gsize n)
{
  guint bits = 4;
  while (((gsize) 1 << bits) < 2 * n + 16)
    bits++;
  tok->pair_bits = bits;
  tok->pairs = g_new (PairSlot, (gsize) 1 << bits);
  for (gsize i = 0; i < ((gsize) 1 << bits); i++)
    tok->pairs[i].key = EMPTY_KEY;
}

/* Insert or overwrite (a later duplicate merge line wins, as in Python's
 * dict (zip (merges, range (len (merges))))). */
static void
pairs_put (SdTokenizer *tok, gint32 a, gint32 b, gint32 rank, gint32 merged)
{
  guint64 key = pair_key (a, b);
  guint mask = (1u << tok->pair_bits) - 1;
  for (guint i = pair_hash (key, tok->pair_bits);; i = (i + 1) & mask)
    {
      PairSlot *s = &tok->pairs[i];
      if (s->key == EMPTY_KEY || s->key == key)
        {
          s->key = key;
          s->rank = rank;
          s->merged = merged;
          return;
        }
    }
}

static inline const PairSlot *
pairs_get (const SdTokenizer *tok, gint32 a, gint32 b)
{
  guint64 key = pair_key (a, b);
  guint mask = (1u << tok->pair_bits) - 1;
  for (guint i = pair_hash (key, tok->pair_bits);; i = (i + 1) & mask)
    {
      const PairSlot *s = &tok->pairs[i];
      if (s->key == key)
        return s;
      if (s->key == EMPTY_KEY)
        return NULL;
    }
}

/* ---- construction ------------------------------------------------------- */

static SdTokenizer *
tokenizer_alloc (void)
{
  SdTokenizer *tok = g_new0 (SdTokenizer, 1);
  tok->strings = g_string_chunk_new (1 << 16);
  tok->token_to_id = g_hash_table_new (g_str_hash, g_str_equal);
  g_mutex_init (&tok->cache_lock);
  tok->cache = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  return tok;
}

void
sd_tokenizer_free (SdTokenizer *tok)
{
  if (tok == NULL)
    return;
  g_free (tok->tokens);
  if (tok->strings)
    g_string_chunk_free (tok->strings);
  g_hash_table_unref (tok->token_to_id);
  g_free (tok->pairs);
  g_mutex_clear (&tok->cache_lock);
  g_hash_table_unref (tok->cache);
  g_free (tok);
}

/* Register token -> id (last one wins for duplicate strings, as a Python
 * dict built from the JSON object or list). */
static void
vocab_set (SdTokenizer *tok, const char *token, gsize len, gint32 id)
{
  char *s = g_string_chunk_insert_len (tok->strings, token, len);
  tok->tokens[id] = s;
  g_hash_table_insert (tok->token_to_id, s, GINT_TO_POINTER (id + 1));
}

gint32
sd_tokenizer_lookup (SdTokenizer *tok, const char *token)
{
  g_return_val_if_fail (tok != NULL && token != NULL, -1);
  gpointer v = g_hash_table_lookup (tok->token_to_id, token);
  return v ? GPOINTER_TO_INT (v) - 1 : -1;
}

const char *
sd_tokenizer_get_token (SdTokenizer *tok, gint32 id)
{
  g_return_val_if_fail (tok != NULL, NULL);
  if (id < 0 || id >= tok->n_vocab)
    return NULL;
  return tok->tokens[id];
}

int
sd_tokenizer_get_vocab_size (SdTokenizer *tok)
{
  g_return_val_if_fail (tok != NULL, 0);
  return tok->n_vocab;
}

gint32
sd_tokenizer_get_bos_id (SdTokenizer *tok)
{
  g_return_val_if_fail (tok != NULL, -1);
  return tok->bos;
}

gint32
sd_tokenizer_get_eos_id (SdTokenizer *tok)
{
  g_return_val_if_fail (tok != NULL, -1);
  return tok->eos;
}

/* After the vocabulary is loaded: byte symbols and special tokens. */
static gboolean
finish_vocab (SdTokenizer *tok, const char *what, GError **error)
{
  tok->bos = sd_tokenizer_lookup (tok, "<|startoftext|>");
  tok->eos = sd_tokenizer_lookup (tok, "<|endoftext|>");
  if (tok->bos < 0 || tok->eos < 0)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_CORRUPT,
                   "%s: the vocabulary has no <|startoftext|> / <|endoftext|> entry; "
                   "not a CLIP tokenizer",
                   what);
      return FALSE;
    }
  for (int b = 0; b < 256; b++)
    {
      char sym[16];
      int n = g_unichar_to_utf8 (byte_to_unicode (b), sym);
      sym[n] = '\0';
      tok->byte_id[b] = sd_tokenizer_lookup (tok, sym);
      strcpy (sym + n, "</w>");
      tok->byte_end_id[b] = sd_tokenizer_lookup (tok, sym);
      if (tok->byte_id[b] < 0 || tok->byte_end_id[b] < 0)
        {
          g_set_error (error, SD_ERROR, SD_ERROR_CORRUPT,
                       "%s: the vocabulary lacks the byte symbol for byte 0x%02x; "
                       "not a byte-level CLIP vocabulary",
                       what, b);
          return FALSE;
        }
    }
  return TRUE;
}

/* ---- vocab.json ------------------------------------------------------------ */

typedef struct
{
  const char *p, *end, *start;
} JsonCursor;

static void
json_ws (JsonCursor *c)
{
  while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
    c->p++;
}

static int
hex4 (const char *p)
{
  int v = 0;
  for (int i = 0; i < 4; i++)
    {
      int d = g_ascii_xdigit_value (p[i]);
      if (d < 0)
        return -1;
      v = v * 16 + d;
    }
  return v;
}

/* A JSON string at c->p (on the opening quote) into buf. */
static gboolean
json_string (JsonCursor *c, GString *buf)
{
  g_string_truncate (buf, 0);
  if (c->p >= c->end || *c->p != '"')
    return FALSE;
  c->p++;
  while (c->p < c->end)
    {
      const char *run = c->p;
      while (c->p < c->end && *c->p != '"' && *c->p != '\\' && (guchar) *c->p >= 0x20)
        c->p++;
      g_string_append_len (buf, run, c->p - run);
      if (c->p >= c->end || (guchar) *c->p < 0x20)
        return FALSE;
      if (*c->p == '"')
        {
          c->p++;
          return TRUE;
        }
      /* escape */
      if (c->end - c->p < 2)
        return FALSE;
      char e = c->p[1];
      c->p += 2;
      switch (e)
        {
        case '"': g_string_append_c (buf, '"'); break;
        case '\\': g_string_append_c (buf, '\\'); break;
        case '/': g_string_append_c (buf, '/'); break;
        case 'b': g_string_append_c (buf, '\b'); break;
        case 'f': g_string_append_c (buf, '\f'); break;
        case 'n': g_string_append_c (buf, '\n'); break;
        case 'r': g_string_append_c (buf, '\r'); break;
        case 't': g_string_append_c (buf, '\t'); break;
        case 'u':
          {
            if (c->end - c->p < 4)
              return FALSE;
            int u = hex4 (c->p);
            if (u < 0)
              return FALSE;
            c->p += 4;
            if (u >= 0xD800 && u <= 0xDBFF)
              {
                if (c->end - c->p < 6 || c->p[0] != '\\' || c->p[1] != 'u')
                  return FALSE;
                int lo = hex4 (c->p + 2);
                if (lo < 0xDC00 || lo > 0xDFFF)
                  return FALSE;
                c->p += 6;
                u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
              }
            else if (u >= 0xDC00 && u <= 0xDFFF)
              return FALSE;
            if (u == 0)
              return FALSE; /* a NUL inside a token cannot be looked up */
            g_string_append_unichar (buf, u);
            break;
          }
        default:
          return FALSE;
        }
    }
  return FALSE;
}

static gboolean
parse_vocab_json (SdTokenizer *tok, const char *data, gsize len, const char *path, GError **error)
{
  JsonCursor c = { data, data + len, data };
  g_autoptr (GString) key = g_string_new (NULL);
  GArray *ids = g_array_new (FALSE, FALSE, sizeof (gint32));
  GArray *offs = g_array_new (FALSE, FALSE, sizeof (gsize)); /* into a concatenated key buffer */
  g_autoptr (GString) keys = g_string_new (NULL);
  const char *why = NULL;
  gint32 max_id = -1;

  json_ws (&c);
  if (c.p >= c.end || *c.p != '{')
    {
      why = "expected '{'";
      goto fail;
    }
  c.p++;
  json_ws (&c);
  if (c.p < c.end && *c.p == '}')
    {
      why = "empty vocabulary";
      goto fail;
    }
  for (;;)
    {
      json_ws (&c);
      if (!json_string (&c, key))
        {
          why = "bad or unterminated string";
          goto fail;
        }
      json_ws (&c);
      if (c.p >= c.end || *c.p != ':')
        {
          why = "expected ':'";
          goto fail;
        }
      c.p++;
      json_ws (&c);
      gint64 v = 0;
      const char *digits = c.p;
      while (c.p < c.end && g_ascii_isdigit (*c.p) && c.p - digits < 9)
        v = v * 10 + (*c.p++ - '0');
      if (c.p == digits || (c.p < c.end && (g_ascii_isdigit (*c.p) || *c.p == '.' || *c.p == 'e'
                                            || *c.p == 'E')))
        {
          why = "expected a non-negative integer id below 10^9";
          goto fail;
        }
      if (v >= MAX_VOCAB || ids->len >= MAX_VOCAB)
        {
          why = "vocabulary too large";
          goto fail;
        }
      gint32 id = (gint32) v;
      gsize off = keys->len;
      g_string_append_len (keys, key->str, key->len);
      g_string_append_c (keys, '\0');
      g_array_append_val (offs, off);
      g_array_append_val (ids, id);
      max_id = MAX (max_id, id);
      json_ws (&c);
      if (c.p < c.end && *c.p == ',')
        {
          c.p++;
          continue;
        }
      if (c.p < c.end && *c.p == '}')
        {
          c.p++;
          break;
        }
      why = "expected ',' or '}'";
      goto fail;
    }
  json_ws (&c);
  if (c.p != c.end)
    {
      why = "trailing data after the object";
      goto fail;
    }

  tok->n_vocab = max_id + 1;
  tok->tokens = g_new0 (char *, tok->n_vocab);
  for (guint i = 0; i < ids->len; i++)
    {
      const char *k = keys->str + g_array_index (offs, gsize, i);
      vocab_set (tok, k, strlen (k), g_array_index (ids, gint32, i));
    }
  g_array_unref (ids);
  g_array_unref (offs);
  return TRUE;

fail:
  g_set_error (error, SD_ERROR, SD_ERROR_CORRUPT, "%s: not a vocabulary JSON object (%s at byte %"
               G_GSIZE_FORMAT ")", path, why, (gsize) (c.p - c.start));
  g_array_unref (ids);
  g_array_unref (offs);
  return FALSE;
}

/* ---- merges ---------------------------------------------------------------- */

/* Split a merge line like Python's str.split (): on runs of ASCII
 * whitespace (byte-level symbols are never whitespace). Returns the number
 * of parts (up to 3 are reported). */
static int
split_merge_line (const char *line, gsize len, const char **part, gsize *part_len)
{
  int n = 0;
  gsize i = 0;
  while (i < len)
    {
      while (i < len && g_ascii_isspace (line[i]))
        i++;
      if (i >= len)
        break;
      gsize s = i;
      while (i < len && !g_ascii_isspace (line[i]))
        i++;
      if (n < 3)
        {
          part[n] = line + s;
          part_len[n] = i - s;
        }
      n++;
    }
  return n;
}

/* Call fn for merge lines 1..CLIP_MAX_MERGES of text. Like transformers,
 * the text is first stripped of surrounding whitespace; line 0 is the
 * "#version" header. */
typedef gboolean (*MergeLineFunc) (gpointer data, int rank, const char *line, gsize len,
                                   const char *path, GError **error);

static gboolean
for_each_merge_line (const char *text, gsize len, const char *path, MergeLineFunc fn,
                     gpointer data, GError **error)
{
  const char *p = text, *end = text + len;
  while (p < end && g_ascii_isspace (*p))
    p++;
  while (end > p && g_ascii_isspace (end[-1]))
    end--;
  for (int line_no = 0; line_no <= CLIP_MAX_MERGES; line_no++)
    {
      const char *nl = memchr (p, '\n', end - p);
      const char *line_end = nl ? nl : end;
      if (line_no > 0 && !fn (data, line_no - 1, p, line_end - p, path, error))
        return FALSE;
      if (nl == NULL)
        break;
      p = nl + 1;
    }
  return TRUE;
}

/* vocab.json + merges.txt: both halves of a merge and the merged symbol must
 * be vocabulary entries (true for every CLIP tokenizer). Lines that are not
 * two symbols can never match a pair and are skipped, as in Python. */
static gboolean
merge_line_lookup (gpointer data, int rank, const char *line, gsize len, const char *path,
                   GError **error)
{
  SdTokenizer *tok = data;
  const char *part[3];
  gsize plen[3];
  if (split_merge_line (line, len, part, plen) != 2)
    return TRUE;
  char buf[512];
  if (plen[0] + plen[1] + 1 > sizeof buf)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_CORRUPT, "%s: merge line %d is too long", path,
                   rank + 2);
      return FALSE;
    }
  memcpy (buf, part[0], plen[0]);
  buf[plen[0]] = '\0';
  gint32 a = sd_tokenizer_lookup (tok, buf);
  memcpy (buf, part[1], plen[1]);
  buf[plen[1]] = '\0';
  gint32 b = sd_tokenizer_lookup (tok, buf);
  memcpy (buf, part[0], plen[0]);
  memcpy (buf + plen[0], part[1], plen[1]);
  buf[plen[0] + plen[1]] = '\0';
  gint32 m = sd_tokenizer_lookup (tok, buf);
  if (a < 0 || b < 0 || m < 0)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_CORRUPT,
                   "%s: merge line %d ('%.*s') uses a symbol that is not in vocab.json; "
                   "vocab.json and merges.txt do not belong together",
                   path, rank + 2, (int) MIN (len, 80), line);
      return FALSE;
    }
  pairs_put (tok, a, b, rank, m);
  return TRUE;
}

/* Map a file, as an SD_ERROR (MISSING / IO / CORRUPT when over max bytes). */
static GMappedFile *
map_file (const char *path, gsize max, GError **error)
{
  GError *local = NULL;
  GMappedFile *mf = g_mapped_file_new (path, FALSE, &local);
  if (mf == NULL)
    {
      gboolean missing = g_error_matches (local, G_FILE_ERROR, G_FILE_ERROR_NOENT);
      g_set_error (error, SD_ERROR, missing ? SD_ERROR_MISSING : SD_ERROR_IO,
                   "reading tokenizer: %s", local->message);
      g_error_free (local);
      return NULL;
    }
  if (g_mapped_file_get_length (mf) > max)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_CORRUPT,
                   "%s: %" G_GSIZE_FORMAT " bytes is too large for a tokenizer file", path,
                   g_mapped_file_get_length (mf));
      g_mapped_file_unref (mf);
      return NULL;
    }
  return mf;
}

static gboolean
read_file_checked (const char *path, char **contents, gsize *len, GError **error)
{
  g_autoptr (GMappedFile) mf = map_file (path, MAX_FILE_BYTES, error);
  if (mf == NULL)
    return FALSE;
  gsize n = g_mapped_file_get_length (mf);
  const char *data = g_mapped_file_get_contents (mf);
  if (n > 0 && !g_utf8_validate_len (data, n, NULL))
    {
      g_set_error (error, SD_ERROR, SD_ERROR_CORRUPT, "%s: not UTF-8 text", path);
      return FALSE;
    }
  *contents = g_memdup2 (n ? data : "", n ? n : 1);
  *len = n;
  return TRUE;
}

SdTokenizer *
sd_tokenizer_new_from_files (const char *vocab_json_path, const char *merges_txt_path,
                             GError **error)
{
  g_return_val_if_fail (vocab_json_path != NULL && merges_txt_path != NULL, NULL);
  g_autofree char *vocab = NULL, *merges = NULL;
  gsize vocab_len = 0, merges_len = 0;
  if (!read_file_checked (vocab_json_path, &vocab, &vocab_len, error)
      || !read_file_checked (merges_txt_path, &merges, &merges_len, error))
    return NULL;

  g_autoptr (SdTokenizer) tok = tokenizer_alloc ();
  if (!parse_vocab_json (tok, vocab, vocab_len, vocab_json_path, error)
      || !finish_vocab (tok, vocab_json_path, error))
    return NULL;
  pairs_init (tok, CLIP_MAX_MERGES);
  if (!for_each_merge_line (merges, merges_len, merges_txt_path, merge_line_lookup, tok, error))
    return NULL;
  return g_steal_pointer (&tok);
}

/* ---- bpe_simple_vocab_16e6.txt.gz ------------------------------------------ */

static char *
gunzip (const char *path, gsize *out_len, GError **error)
{
  g_autoptr (GMappedFile) mf = map_file (path, MAX_FILE_BYTES, error);
  if (mf == NULL)
    return NULL;
  const char *gz = g_mapped_file_get_contents (mf);
  gsize gz_len = g_mapped_file_get_length (mf);
  g_autoptr (GZlibDecompressor) dec = g_zlib_decompressor_new (G_ZLIB_COMPRESSOR_FORMAT_GZIP);
  GByteArray *out = g_byte_array_new ();
  guint8 chunk[65536];
  gsize in_pos = 0;
  for (;;)
    {
      gsize read = 0, written = 0;
      GError *local = NULL;
      GConverterResult r = g_converter_convert (G_CONVERTER (dec), gz + in_pos, gz_len - in_pos,
                                                chunk, sizeof chunk, G_CONVERTER_INPUT_AT_END,
                                                &read, &written, &local);
      if (r == G_CONVERTER_ERROR)
        {
          g_set_error (error, SD_ERROR, SD_ERROR_CORRUPT, "%s: not a valid gzip file (%s)", path,
                       local->message);
          g_error_free (local);
          g_byte_array_unref (out);
          return NULL;
        }
      in_pos += read;
      g_byte_array_append (out, chunk, written);
      if (out->len > MAX_FILE_BYTES)
        {
          g_set_error (error, SD_ERROR, SD_ERROR_CORRUPT,
                       "%s: decompresses to more than %u MiB; not a BPE vocabulary", path,
                       MAX_FILE_BYTES >> 20);
          g_byte_array_unref (out);
          return NULL;
        }
      if (r == G_CONVERTER_FINISHED)
        break;
      if (read == 0 && written == 0)
        {
          g_set_error (error, SD_ERROR, SD_ERROR_CORRUPT, "%s: truncated gzip data", path);
          g_byte_array_unref (out);
          return NULL;
        }
    }
  *out_len = out->len;
  g_byte_array_append (out, (const guint8 *) "", 1);
  return (char *) g_byte_array_free (out, FALSE);
}

typedef struct
{
  const char *p;
  gsize n;
} Line;

/* simple_tokenizer appends ''.join (merge) to the vocabulary for every line,
 * whatever its shape, and uses the lines that are two symbols as merges; so
 * the lines are collected first. */
static gboolean
collect_line (gpointer data, int rank, const char *line, gsize len, const char *path,
              GError **error)
{
  Line l = { line, len };
  g_array_append_val ((GArray *) data, l);
  return TRUE;
}

SdTokenizer *
sd_tokenizer_new_from_bpe_gz (const char *path, GError **error)
{
  g_return_val_if_fail (path != NULL, NULL);
  gsize len = 0;
  g_autofree char *text = gunzip (path, &len, error);
  if (text == NULL)
    return NULL;
  if (!g_utf8_validate_len (text, len, NULL) || memchr (text, '\0', len) != NULL)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_CORRUPT, "%s: not UTF-8 text", path);
      return NULL;
    }

  g_autoptr (SdTokenizer) tok = tokenizer_alloc ();
  GArray *lines = g_array_new (FALSE, FALSE, sizeof (Line));
  for_each_merge_line (text, len, path, collect_line, lines, error);

  tok->n_vocab = 512 + lines->len + 2;
  tok->tokens = g_new0 (char *, tok->n_vocab);
  guint8 order[256];
  byte_vocab_order (order);
  for (int i = 0; i < 256; i++)
    {
      char sym[16];
      int n = g_unichar_to_utf8 (byte_to_unicode (order[i]), sym);
      vocab_set (tok, sym, n, i);
      strcpy (sym + n, "</w>");
      vocab_set (tok, sym, n + 4, 256 + i);
    }
  g_autoptr (GString) joined = g_string_new (NULL);
  for (guint i = 0; i < lines->len; i++)
    {
      Line *l = &g_array_index (lines, Line, i);
      g_string_truncate (joined, 0); /* ''.join (line.split ()) */
      for (gsize k = 0; k < l->n; k++)
        if (!g_ascii_isspace (l->p[k]))
          g_string_append_c (joined, l->p[k]);
      vocab_set (tok, joined->str, joined->len, 512 + i);
    }
  vocab_set (tok, "<|startoftext|>", 15, 512 + lines->len);
  vocab_set (tok, "<|endoftext|>", 13, 512 + lines->len + 1);
  if (!finish_vocab (tok, path, error))
    {
      g_array_unref (lines);
      return NULL;
    }
  pairs_init (tok, lines->len);
  for (guint i = 0; i < lines->len; i++)
    {
      Line *l = &g_array_index (lines, Line, i);
      if (!merge_line_lookup (tok, i, l->p, l->n, path, error))
        {
          g_array_unref (lines);
          return NULL;
        }
    }
  g_array_unref (lines);
  return g_steal_pointer (&tok);
}

/* ---- finding the files ------------------------------------------------------ */

#define BPE_GZ_NAME "bpe_simple_vocab_16e6.txt.gz"

static gboolean
dir_has_tokenizer (const char *dir)
{
  g_autofree char *v = g_build_filename (dir, "vocab.json", NULL);
  g_autofree char *m = g_build_filename (dir, "merges.txt", NULL);
  g_autofree char *gz = g_build_filename (dir, BPE_GZ_NAME, NULL);
  return (g_file_test (v, G_FILE_TEST_IS_REGULAR) && g_file_test (m, G_FILE_TEST_IS_REGULAR))
         || g_file_test (gz, G_FILE_TEST_IS_REGULAR);
}

SdTokenizer *
sd_tokenizer_new_from_dir (const char *dir, GError **error)
{
  g_return_val_if_fail (dir != NULL, NULL);
  g_autofree char *v = g_build_filename (dir, "vocab.json", NULL);
  g_autofree char *m = g_build_filename (dir, "merges.txt", NULL);
  if (g_file_test (v, G_FILE_TEST_IS_REGULAR) && g_file_test (m, G_FILE_TEST_IS_REGULAR))
    return sd_tokenizer_new_from_files (v, m, error);
  g_autofree char *gz = g_build_filename (dir, BPE_GZ_NAME, NULL);
  if (g_file_test (gz, G_FILE_TEST_IS_REGULAR))
    return sd_tokenizer_new_from_bpe_gz (gz, error);
  g_set_error (error, SD_ERROR, SD_ERROR_MISSING,
               "%s holds no CLIP tokenizer (vocab.json and merges.txt, or " BPE_GZ_NAME ")", dir);
  return NULL;
}

char *
sd_tokenizer_find_dir (const char *model_path, GError **error)
{
  g_return_val_if_fail (model_path != NULL, NULL);
  GPtrArray *cands = g_ptr_array_new_with_free_func (g_free);
  g_autofree char *user_dir = g_build_filename (g_get_user_data_dir (), "impasto", NULL);
  g_autofree char *near = NULL;

  if (g_file_test (model_path, G_FILE_TEST_IS_DIR))
    {
      g_ptr_array_add (cands, g_build_filename (model_path, "tokenizer", NULL));
      g_ptr_array_add (cands, g_strdup (model_path));
    }
  else
    {
      near = g_path_get_dirname (model_path);
      g_ptr_array_add (cands, g_strdup (near));
      g_ptr_array_add (cands, g_build_filename (near, "tokenizer", NULL));
    }
  g_ptr_array_add (cands, g_strdup (user_dir));
  for (const char *const *d = g_get_system_data_dirs (); *d; d++)
    g_ptr_array_add (cands, g_build_filename (*d, "impasto", NULL));

  char *found = NULL;
  for (guint i = 0; i < cands->len && found == NULL; i++)
    if (dir_has_tokenizer (cands->pdata[i]))
      found = g_strdup (cands->pdata[i]);
  g_ptr_array_unref (cands);
  if (found)
    return found;

  if (near != NULL)
    g_set_error (error, SD_ERROR, SD_ERROR_MISSING,
                 "no CLIP tokenizer vocabulary for %s: a single-file checkpoint does not contain "
                 "one. Put vocab.json and merges.txt (the tokenizer/ folder of any Stable "
                 "Diffusion model in diffusers format) or OpenAI's " BPE_GZ_NAME " in %s "
                 "(for every model) or next to the checkpoint in %s",
                 model_path, user_dir, near);
  else
    g_set_error (error, SD_ERROR, SD_ERROR_MISSING,
                 "no CLIP tokenizer vocabulary for %s: expected tokenizer/vocab.json and "
                 "tokenizer/merges.txt in the model folder, or vocab.json and merges.txt (or "
                 BPE_GZ_NAME ") in %s",
                 model_path, user_dir);
  return NULL;
}

/* ---- BPE ------------------------------------------------------------------ */

typedef struct
{
  gint32 rank;
  gint32 pos; /* index of the left symbol in the original word */
  gint32 left, right;
} Cand;

static inline gboolean
cand_less (const Cand *a, const Cand *b)
{
  return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void
heap_push (GArray *h, Cand c)
{
  g_array_append_val (h, c);
  Cand *v = (Cand *) h->data;
  guint i = h->len - 1;
  while (i > 0)
    {
      guint parent = (i - 1) / 2;
      if (!cand_less (&v[i], &v[parent]))
        break;
      Cand t = v[i];
      v[i] = v[parent];
      v[parent] = t;
      i = parent;
    }
}

static Cand
heap_pop (GArray *h)
{
  Cand *v = (Cand *) h->data;
  Cand top = v[0];
  v[0] = v[h->len - 1];
  g_array_set_size (h, h->len - 1);
  v = (Cand *) h->data;
  guint i = 0, n = h->len;
  for (;;)
    {
      guint l = 2 * i + 1, r = l + 1, m = i;
      if (l < n && cand_less (&v[l], &v[m]))
        m = l;
      if (r < n && cand_less (&v[r], &v[m]))
        m = r;
      if (m == i)
        break;
      Cand t = v[i];
      v[i] = v[m];
      v[m] = t;
      i = m;
    }
  return top;
}

typedef struct
{
  gint32 id; /* -1 once merged into its left neighbour */
  gint32 prev, next;
} Sym;

static void
push_pair (const SdTokenizer *tok, GArray *heap, const Sym *sym, gint32 i)
{
  if (i < 0 || sym[i].next < 0)
    return;
  gint32 j = sym[i].next;
  const PairSlot *s = pairs_get (tok, sym[i].id, sym[j].id);
  if (s != NULL)
    heap_push (heap, (Cand){ s->rank, i, sym[i].id, sym[j].id });
}

/* BPE of one piece (UTF-8 bytes); appends the ids to out. */
static void
bpe_piece (const SdTokenizer *tok, const guint8 *bytes, gsize n, GArray *out)
{
  if (n == 0)
    return;
  Sym *sym = g_new (Sym, n);
  for (gsize i = 0; i < n; i++)
    {
      sym[i].id = i + 1 < n ? tok->byte_id[bytes[i]] : tok->byte_end_id[bytes[i]];
      sym[i].prev = (gint32) i - 1;
      sym[i].next = i + 1 < n ? (gint32) i + 1 : -1;
    }
  GArray *heap = g_array_sized_new (FALSE, FALSE, sizeof (Cand), n);
  for (gsize i = 0; i + 1 < n; i++)
    push_pair (tok, heap, sym, i);
  while (heap->len > 0)
    {
      Cand c = heap_pop (heap);
      gint32 i = c.pos, j = sym[i].next;
      /* stale: the left symbol was merged away or changed, or its right
       * neighbour changed since the candidate was pushed */
      if (sym[i].id != c.left || j < 0 || sym[j].id != c.right)
        continue;
      sym[i].id = pairs_get (tok, c.left, c.right)->merged;
      sym[j].id = -1;
      sym[i].next = sym[j].next;
      if (sym[j].next >= 0)
        sym[sym[j].next].prev = i;
      push_pair (tok, heap, sym, sym[i].prev);
      push_pair (tok, heap, sym, i);
    }
  for (gint32 i = 0; i >= 0; i = sym[i].next)
    {
      gint32 id = sym[i].id;
      g_array_append_val (out, id);
    }
  g_array_unref (heap);
  g_free (sym);
}

/* BPE with the word cache (OpenAI's bpe() caches every word too). */
static void
bpe_cached (SdTokenizer *tok, const char *piece, gsize n, GArray *out)
{
  if (n > CACHE_MAX_PIECE)
    {
      bpe_piece (tok, (const guint8 *) piece, n, out);
      return;
    }
  char key[CACHE_MAX_PIECE + 1];
  memcpy (key, piece, n);
  key[n] = '\0';
  g_mutex_lock (&tok->cache_lock);
  const gint32 *hit = g_hash_table_lookup (tok->cache, key);
  if (hit != NULL)
    {
      g_array_append_vals (out, hit + 1, hit[0]);
      g_mutex_unlock (&tok->cache_lock);
      return;
    }
  g_mutex_unlock (&tok->cache_lock);

  guint start = out->len;
  bpe_piece (tok, (const guint8 *) piece, n, out);
  guint k = out->len - start;
  gint32 *val = g_new (gint32, k + 1);
  val[0] = k;
  memcpy (val + 1, &g_array_index (out, gint32, start), k * sizeof (gint32));
  g_mutex_lock (&tok->cache_lock);
  if (g_hash_table_size (tok->cache) >= CACHE_MAX_ENTRIES)
    g_hash_table_remove_all (tok->cache);
  g_hash_table_replace (tok->cache, g_strdup (key), val);
  g_mutex_unlock (&tok->cache_lock);
}

/* ---- pre-tokenisation ------------------------------------------------------- */

static inline gboolean
is_letter (gunichar c)
{
  if (c < 0x80)
    return g_ascii_isalpha (c);
  switch (g_unichar_type (c))
    {
    case G_UNICODE_UPPERCASE_LETTER:
    case G_UNICODE_LOWERCASE_LETTER:
    case G_UNICODE_TITLECASE_LETTER:
    case G_UNICODE_MODIFIER_LETTER:
    case G_UNICODE_OTHER_LETTER:
      return TRUE;
    default:
      return FALSE;
    }
}

static inline gboolean
is_number (gunichar c)
{
  if (c < 0x80)
    return g_ascii_isdigit (c);
  switch (g_unichar_type (c))
    {
    case G_UNICODE_DECIMAL_NUMBER:
    case G_UNICODE_LETTER_NUMBER:
    case G_UNICODE_OTHER_NUMBER:
      return TRUE;
    default:
      return FALSE;
    }
}

/* Does p start with the ASCII pattern pat under the regex's IGNORECASE
 * (simple case folding: also U+017F for 's', U+212A for 'k')? Returns the
 * length matched in bytes, 0 if not; *exact tells whether the text was the
 * pattern byte for byte. */
static gsize
match_ci (const char *p, const char *pat, gboolean *exact)
{
  const char *s = p;
  *exact = TRUE;
  for (; *pat; pat++)
    {
      gunichar c = g_utf8_get_char (s);
      if (c == (guchar) *pat)
        ;
      else if (c < 0x80 && g_ascii_tolower (c) == *pat)
        *exact = FALSE;
      else if ((*pat == 's' && c == 0x17F) || (*pat == 'k' && c == 0x212A))
        *exact = FALSE;
      else
        return 0;
      s = g_utf8_next_char (s);
    }
  return s - p;
}

static void
encode_clean (SdTokenizer *tok, const char *text, GArray *out)
{
  static const char *const contractions[] = { "'s", "'t", "'re", "'ve", "'m", "'ll", "'d" };
  const char *p = text;
  while (*p != '\0')
    {
      gunichar c = g_utf8_get_char (p);
      const char *q;
      gboolean exact;
      gsize m;

      if (c == '<')
        {
          if ((m = match_ci (p, "<|startoftext|>", &exact)) || (m = match_ci (p, "<|endoftext|>", &exact)))
            {
              if (exact)
                {
                  gint32 id = p[2] == 's' ? tok->bos : tok->eos;
                  g_array_append_val (out, id);
                }
              else
                bpe_cached (tok, p, m, out);
              p += m;
              continue;
            }
        }
      else if (c == '\'')
        {
          m = 0;
          for (guint k = 0; k < G_N_ELEMENTS (contractions) && m == 0; k++)
            m = match_ci (p, contractions[k], &exact);
          if (m > 0)
            {
              bpe_cached (tok, p, m, out);
              p += m;
              continue;
            }
        }

      if (sd_text_py_isspace (c))
        {
          p = g_utf8_next_char (p);
          continue;
        }
      if (is_letter (c))
        {
          for (q = p; *q != '\0' && is_letter (g_utf8_get_char (q)); q = g_utf8_next_char (q))
            ;
        }
      else if (is_number (c))
        q = g_utf8_next_char (p);
      else
        {
          for (q = p; *q != '\0'; q = g_utf8_next_char (q))
            {
              gunichar d = g_utf8_get_char (q);
              if (sd_text_py_isspace (d) || is_letter (d) || is_number (d))
                break;
            }
        }
      bpe_cached (tok, p, q - p, out);
      p = q;
    }
}

GArray *
sd_tokenizer_encode (SdTokenizer *tok, const char *text, gssize len, GError **error)
{
  g_return_val_if_fail (tok != NULL && text != NULL, NULL);
  gsize n = len < 0 ? strlen (text) : (gsize) len;
  if (n > SD_TOKENIZER_MAX_TEXT_BYTES)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG,
                   "text of %" G_GSIZE_FORMAT " bytes is longer than the %d bytes the tokenizer "
                   "accepts",
                   n, SD_TOKENIZER_MAX_TEXT_BYTES);
      return NULL;
    }
  const char *bad = NULL;
  if (!g_utf8_validate_len (text, n, &bad))
    {
      g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG,
                   "text is not valid UTF-8 (invalid byte 0x%02x at offset %" G_GSIZE_FORMAT ")",
                   (guchar) *bad, (gsize) (bad - text));
      return NULL;
    }
  g_autofree char *clean = sd_text_clean (text, n);
  GArray *out = g_array_sized_new (FALSE, FALSE, sizeof (gint32), 32);
  encode_clean (tok, clean, out);
  return out;
}

gboolean
sd_tokenizer_encode_77 (SdTokenizer *tok, const char *text, gint32 pad_id,
                        gint32 ids[SD_TOKENIZER_CONTEXT], GError **error)
{
  GArray *bpe = sd_tokenizer_encode (tok, text, -1, error);
  if (bpe == NULL)
    return FALSE;
  guint n = MIN (bpe->len, SD_TOKENIZER_CONTEXT - 2);
  ids[0] = tok->bos;
  memcpy (ids + 1, bpe->data, n * sizeof (gint32));
  ids[n + 1] = tok->eos;
  for (guint i = n + 2; i < SD_TOKENIZER_CONTEXT; i++)
    ids[i] = pad_id;
  g_array_unref (bpe);
  return TRUE;
}

/* safetensors.c: a validating reader of .safetensors files.
 *
 * Layout: 8-byte little-endian header length N, N bytes of UTF-8 JSON, then the
 * data section. The header is checked in three passes:
 *
 *  1. a strict JSON syntax scan of our own (RFC 8259: no comments, no single
 *     quotes, no hex or leading zeros, no trailing garbage), bounded nesting,
 *     integers that fit in int64, no NUL or lone surrogates in strings. It also
 *     decodes the root keys and counts the members of every object. json-glib
 *     accepts all of the above extensions, silently keeps the LAST of duplicate
 *     members, and recurses without a depth limit, so it never sees a header
 *     this pass did not accept;
 *  2. json-glib builds the tree; the member counts are compared with the scan so
 *     a duplicated key anywhere is an error, not a silent overwrite;
 *  3. the entries: dtype from the whitelist, shape of non-negative integers,
 *     shape x element size == the byte range (checked arithmetic), ranges inside
 *     the data section and not overlapping each other.
 *
 * Gaps between tensors and bytes after the last one are accepted (harmless; the
 * reference writer never produces them). Zero-dimensional tensors (shape []) hold
 * one element; tensors with a zero in their shape hold none.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-glib/json-glib.h>

#include "safetensors.h"
#include "sd-convert.h"
#include "sd-error.h"

/* A real header nests 3 deep (root / entry / shape). */
#define MAX_JSON_DEPTH 16
#define MAX_NDIM ((int) G_N_ELEMENTS (((SdSafetensorsTensor *) 0)->shape))

struct _SdSafetensors
{
  char *path;       /* owned; may be NULL */
  GBytes *bytes;    /* owned; the whole file; NULL when header-only */
  gboolean header_only;
  guint64 file_size;
  guint64 header_size; /* N */
  guint64 data_size;   /* bytes after the header (header-only: the extent the ranges need) */
  SdSafetensorsTensor *tensors; /* owned, n_tensors, sorted by data_begin */
  guint n_tensors;
  GStringChunk *strings; /* tensor names */
  GHashTable *by_name;   /* name (borrowed) -> index + 1 */
  GHashTable *metadata;  /* owned key -> owned value */
};

/* ---------------------------------------------------------------- JSON scan */

typedef struct
{
  const char *base; /* header start (offsets in messages are relative to it) */
  const char *p;
  const char *end;
  GArray *obj_counts;   /* guint member count of every object, in pre-order */
  GPtrArray *root_keys; /* decoded root keys (owned), document order */
  GArray *root_key_pos; /* gsize header offset of each root key */
  char *err;            /* first error (owned) */
} JScan;

G_GNUC_PRINTF (3, 4) static gboolean
scan_fail (JScan *s, const char *at, const char *fmt, ...)
{
  if (s->err == NULL)
    {
      va_list ap;
      va_start (ap, fmt);
      char *msg = g_strdup_vprintf (fmt, ap);
      va_end (ap);
      s->err = g_strdup_printf ("%s at header byte %" G_GSIZE_FORMAT " (file offset %" G_GSIZE_FORMAT
                                ")",
                                msg, (gsize) (at - s->base), (gsize) (at - s->base) + 8);
      g_free (msg);
    }
  return FALSE;
}

static void
scan_ws (JScan *s)
{
  while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
    s->p++;
}

static int
hex_value (char c)
{
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

static gboolean
scan_u4 (JScan *s, guint32 *out)
{
  if (s->end - s->p < 4)
    return scan_fail (s, s->p, "truncated \\u escape");
  guint32 v = 0;
  for (int i = 0; i < 4; i++)
    {
      int h = hex_value (s->p[i]);
      if (h < 0)
        return scan_fail (s, s->p, "invalid \\u escape");
      v = v << 4 | (guint32) h;
    }
  s->p += 4;
  *out = v;
  return TRUE;
}

/* At an opening quote. Appends the decoded string to out when out != NULL. */
static gboolean
scan_string (JScan *s, GString *out)
{
  const char *start = s->p;
  s->p++; /* '"' */
  while (TRUE)
    {
      if (s->p >= s->end)
        return scan_fail (s, start, "unterminated string");
      guchar c = (guchar) *s->p;
      if (c == '"')
        {
          s->p++;
          return TRUE;
        }
      if (c < 0x20)
        return scan_fail (s, s->p, "control character 0x%02x inside a string", c);
      if (c != '\\')
        {
          /* The header was validated as UTF-8 as a whole: copy bytes. */
          if (out)
            g_string_append_c (out, (char) c);
          s->p++;
          continue;
        }
      const char *esc = s->p;
      s->p++;
      if (s->p >= s->end)
        return scan_fail (s, esc, "truncated escape");
      char e = *s->p++;
      char simple = 0;
      switch (e)
        {
        case '"': simple = '"'; break;
        case '\\': simple = '\\'; break;
        case '/': simple = '/'; break;
        case 'b': simple = '\b'; break;
        case 'f': simple = '\f'; break;
        case 'n': simple = '\n'; break;
        case 'r': simple = '\r'; break;
        case 't': simple = '\t'; break;
        case 'u':
          {
            guint32 cp;
            if (!scan_u4 (s, &cp))
              return FALSE;
            if (cp >= 0xdc00 && cp <= 0xdfff)
              return scan_fail (s, esc, "lone low surrogate \\u%04x", cp);
            if (cp >= 0xd800 && cp <= 0xdbff)
              {
                guint32 lo;
                if (s->end - s->p < 2 || s->p[0] != '\\' || s->p[1] != 'u')
                  return scan_fail (s, esc, "high surrogate \\u%04x without its low half", cp);
                s->p += 2;
                if (!scan_u4 (s, &lo))
                  return FALSE;
                if (lo < 0xdc00 || lo > 0xdfff)
                  return scan_fail (s, esc, "high surrogate \\u%04x without its low half", cp);
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
              }
            if (cp == 0)
              return scan_fail (s, esc, "\\u0000 inside a string");
            if (out)
              g_string_append_unichar (out, cp);
            continue;
          }
        default:
          return scan_fail (s, esc, "invalid escape \\%c", g_ascii_isprint (e) ? e : '?');
        }
      if (out)
        g_string_append_c (out, simple);
    }
}

static gboolean
scan_number (JScan *s)
{
  const char *start = s->p;
  gboolean is_int = TRUE, too_large = FALSE;
  if (*s->p == '-')
    s->p++;
  if (s->p >= s->end || !g_ascii_isdigit (*s->p))
    return scan_fail (s, start, "invalid number");
  if (*s->p == '0')
    {
      s->p++;
      if (s->p < s->end && g_ascii_isdigit (*s->p))
        return scan_fail (s, start, "number with a leading zero");
    }
  else
    {
      guint64 v = 0;
      while (s->p < s->end && g_ascii_isdigit (*s->p))
        {
          guint d = (guint) (*s->p - '0');
          if (v > ((guint64) G_MAXINT64 - d) / 10)
            too_large = TRUE;
          else
            v = v * 10 + d;
          s->p++;
        }
    }
  if (s->p < s->end && *s->p == '.')
    {
      is_int = FALSE;
      s->p++;
      if (s->p >= s->end || !g_ascii_isdigit (*s->p))
        return scan_fail (s, start, "invalid number");
      while (s->p < s->end && g_ascii_isdigit (*s->p))
        s->p++;
    }
  if (s->p < s->end && (*s->p == 'e' || *s->p == 'E'))
    {
      is_int = FALSE;
      s->p++;
      if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
        s->p++;
      if (s->p >= s->end || !g_ascii_isdigit (*s->p))
        return scan_fail (s, start, "invalid number");
      while (s->p < s->end && g_ascii_isdigit (*s->p))
        s->p++;
    }
  /* json-glib silently wraps integers beyond int64; refuse them here. */
  if (is_int && too_large)
    return scan_fail (s, start, "integer does not fit in 64 bits");
  return TRUE;
}

static gboolean
scan_literal (JScan *s, const char *word)
{
  gsize n = strlen (word);
  if ((gsize) (s->end - s->p) < n || memcmp (s->p, word, n) != 0)
    return scan_fail (s, s->p, "unexpected character '%c'",
                      g_ascii_isprint (*s->p) ? *s->p : '?');
  s->p += n;
  return TRUE;
}

static gboolean scan_value (JScan *s, int depth);

static gboolean
scan_object (JScan *s, int depth)
{
  if (depth > MAX_JSON_DEPTH)
    return scan_fail (s, s->p, "JSON nested deeper than %d levels", MAX_JSON_DEPTH);
  guint slot = s->obj_counts->len;
  guint count = 0;
  g_array_append_val (s->obj_counts, count);
  s->p++; /* '{' */
  scan_ws (s);
  if (s->p < s->end && *s->p == '}')
    {
      s->p++;
      return TRUE;
    }
  while (TRUE)
    {
      scan_ws (s);
      if (s->p >= s->end)
        return scan_fail (s, s->p, "unterminated object");
      if (*s->p != '"')
        return scan_fail (s, s->p, "expected a quoted key");
      const char *key_at = s->p;
      if (depth == 1)
        {
          GString *key = g_string_new (NULL);
          if (!scan_string (s, key))
            {
              g_string_free (key, TRUE);
              return FALSE;
            }
          g_ptr_array_add (s->root_keys, g_string_free (key, FALSE));
          gsize pos = (gsize) (key_at - s->base);
          g_array_append_val (s->root_key_pos, pos);
        }
      else if (!scan_string (s, NULL))
        return FALSE;
      count++;
      scan_ws (s);
      if (s->p >= s->end || *s->p != ':')
        return scan_fail (s, s->p, "expected ':' after a key");
      s->p++;
      if (!scan_value (s, depth))
        return FALSE;
      scan_ws (s);
      if (s->p >= s->end)
        return scan_fail (s, s->p, "unterminated object");
      if (*s->p == ',')
        {
          s->p++;
          continue;
        }
      if (*s->p == '}')
        {
          s->p++;
          g_array_index (s->obj_counts, guint, slot) = count;
          return TRUE;
        }
      return scan_fail (s, s->p, "expected ',' or '}'");
    }
}

static gboolean
scan_array (JScan *s, int depth)
{
  if (depth > MAX_JSON_DEPTH)
    return scan_fail (s, s->p, "JSON nested deeper than %d levels", MAX_JSON_DEPTH);
  s->p++; /* '[' */
  scan_ws (s);
  if (s->p < s->end && *s->p == ']')
    {
      s->p++;
      return TRUE;
    }
  while (TRUE)
    {
      if (!scan_value (s, depth))
        return FALSE;
      scan_ws (s);
      if (s->p >= s->end)
        return scan_fail (s, s->p, "unterminated array");
      if (*s->p == ',')
        {
          s->p++;
          continue;
        }
      if (*s->p == ']')
        {
          s->p++;
          return TRUE;
        }
      return scan_fail (s, s->p, "expected ',' or ']'");
    }
}

/* depth: nesting of the container holding this value (0 for the root). */
static gboolean
scan_value (JScan *s, int depth)
{
  scan_ws (s);
  if (s->p >= s->end)
    return scan_fail (s, s->p, "unexpected end of the header");
  switch (*s->p)
    {
    case '{':
      return scan_object (s, depth + 1);
    case '[':
      return scan_array (s, depth + 1);
    case '"':
      return scan_string (s, NULL);
    case 't':
      return scan_literal (s, "true");
    case 'f':
      return scan_literal (s, "false");
    case 'n':
      return scan_literal (s, "null");
    default:
      if (*s->p == '-' || g_ascii_isdigit (*s->p))
        return scan_number (s);
      return scan_fail (s, s->p, "unexpected character '%c'", g_ascii_isprint (*s->p) ? *s->p : '?');
    }
}

/* Compare json-glib's member counts with the scan's, in the same pre-order
 * (json-glib keeps members in document order unless a key was duplicated, and
 * then the count of that object already differs). */
static gboolean
counts_match (JsonNode *node, GArray *counts, guint *index, int depth)
{
  if (depth > MAX_JSON_DEPTH + 1)
    return FALSE;
  if (JSON_NODE_HOLDS_OBJECT (node))
    {
      JsonObject *o = json_node_get_object (node);
      if (*index >= counts->len)
        return FALSE;
      guint want = g_array_index (counts, guint, *index);
      (*index)++;
      if (json_object_get_size (o) != want)
        return FALSE;
      GList *values = json_object_get_values (o);
      gboolean ok = TRUE;
      for (GList *l = values; l && ok; l = l->next)
        ok = counts_match (l->data, counts, index, depth + 1);
      g_list_free (values);
      return ok;
    }
  if (JSON_NODE_HOLDS_ARRAY (node))
    {
      JsonArray *a = json_node_get_array (node);
      guint n = json_array_get_length (a);
      for (guint i = 0; i < n; i++)
        if (!counts_match (json_array_get_element (a, i), counts, index, depth + 1))
          return FALSE;
    }
  return TRUE;
}

/* -------------------------------------------------------------- validation */

static const char *const known_unsupported_dtypes[] = {
  "U16", "U32", "U64", "F8_E4M3", "F8_E5M2", "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4", "C64",
};

static gboolean
node_get_int (JsonNode *n, gint64 *out)
{
  if (n == NULL || !JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_INT64)
    return FALSE;
  *out = json_node_get_int (n);
  return TRUE;
}

static const char *
node_kind (JsonNode *n)
{
  if (n == NULL)
    return "absent";
  switch (json_node_get_node_type (n))
    {
    case JSON_NODE_OBJECT:
      return "an object";
    case JSON_NODE_ARRAY:
      return "an array";
    case JSON_NODE_NULL:
      return "null";
    case JSON_NODE_VALUE:
      {
        GType t = json_node_get_value_type (n);
        if (t == G_TYPE_STRING)
          return "a string";
        if (t == G_TYPE_BOOLEAN)
          return "a boolean";
        if (t == G_TYPE_DOUBLE)
          return "a non-integer number";
        return "a number";
      }
    }
  return "?";
}

typedef struct
{
  SdSafetensors *st;
  const char *name; /* tensor name for messages */
  gsize key_pos;    /* header offset of the entry's key */
} EntryCtx;

G_GNUC_PRINTF (4, 5) static gboolean
entry_fail (EntryCtx *c, GError **error, SdError code, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  char *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (error, SD_ERROR, code,
               "tensor '%s' (header entry at byte %" G_GSIZE_FORMAT ", file offset %" G_GSIZE_FORMAT
               "): %s",
               c->name, c->key_pos, c->key_pos + 8, msg);
  g_free (msg);
  return FALSE;
}

static gboolean
parse_entry (EntryCtx *c, JsonNode *node, SdSafetensorsTensor *t, GError **error)
{
  if (!JSON_NODE_HOLDS_OBJECT (node))
    return entry_fail (c, error, SD_ERROR_CORRUPT, "entry is %s, expected an object",
                       node_kind (node));
  JsonObject *o = json_node_get_object (node);

  JsonNode *dn = json_object_get_member (o, "dtype");
  if (dn == NULL || !JSON_NODE_HOLDS_VALUE (dn) || json_node_get_value_type (dn) != G_TYPE_STRING)
    return entry_fail (c, error, SD_ERROR_CORRUPT, "\"dtype\" is %s, expected a string",
                       node_kind (dn));
  const char *dtype = json_node_get_string (dn);
  if (!sd_dtype_from_name (dtype, &t->dtype))
    {
      for (guint i = 0; i < G_N_ELEMENTS (known_unsupported_dtypes); i++)
        if (strcmp (dtype, known_unsupported_dtypes[i]) == 0)
          return entry_fail (c, error, SD_ERROR_UNSUPPORTED, "dtype %s is not supported", dtype);
      g_autofree char *shown = g_strescape (dtype, NULL);
      return entry_fail (c, error, SD_ERROR_CORRUPT, "unknown dtype \"%.40s\"", shown);
    }

  JsonNode *sn = json_object_get_member (o, "shape");
  if (sn == NULL || !JSON_NODE_HOLDS_ARRAY (sn))
    return entry_fail (c, error, SD_ERROR_CORRUPT, "\"shape\" is %s, expected an array",
                       node_kind (sn));
  JsonArray *sa = json_node_get_array (sn);
  guint ndim = json_array_get_length (sa);
  if (ndim > (guint) MAX_NDIM)
    return entry_fail (c, error, SD_ERROR_UNSUPPORTED, "%u dimensions, at most %d are supported",
                       ndim, MAX_NDIM);
  t->ndim = (int) ndim;
  guint64 n = 1;
  for (guint i = 0; i < ndim; i++)
    {
      gint64 d;
      if (!node_get_int (json_array_get_element (sa, i), &d))
        return entry_fail (c, error, SD_ERROR_CORRUPT, "shape[%u] is %s, expected an integer", i,
                           node_kind (json_array_get_element (sa, i)));
      if (d < 0)
        return entry_fail (c, error, SD_ERROR_CORRUPT, "negative dimension shape[%u] = %" G_GINT64_FORMAT,
                           i, d);
      t->shape[i] = d;
      if (!g_uint64_checked_mul (&n, n, (guint64) d) || n > (guint64) G_MAXINT64)
        return entry_fail (c, error, SD_ERROR_CORRUPT, "the element count of the shape overflows");
    }
  for (int i = (int) ndim; i < MAX_NDIM; i++)
    t->shape[i] = 0;
  t->n_elements = (gint64) n;
  guint64 nbytes;
  if (!g_uint64_checked_mul (&nbytes, n, sd_dtype_size (t->dtype)))
    return entry_fail (c, error, SD_ERROR_CORRUPT, "the byte size of the shape overflows");

  JsonNode *on = json_object_get_member (o, "data_offsets");
  if (on == NULL || !JSON_NODE_HOLDS_ARRAY (on))
    return entry_fail (c, error, SD_ERROR_CORRUPT, "\"data_offsets\" is %s, expected an array",
                       node_kind (on));
  JsonArray *oa = json_node_get_array (on);
  if (json_array_get_length (oa) != 2)
    return entry_fail (c, error, SD_ERROR_CORRUPT, "\"data_offsets\" has %u values, expected 2",
                       json_array_get_length (oa));
  gint64 b, e;
  if (!node_get_int (json_array_get_element (oa, 0), &b)
      || !node_get_int (json_array_get_element (oa, 1), &e))
    return entry_fail (c, error, SD_ERROR_CORRUPT, "\"data_offsets\" values must be integers");
  if (b < 0 || e < 0)
    return entry_fail (c, error, SD_ERROR_CORRUPT,
                       "negative data_offsets [%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT "]", b, e);
  if (e < b)
    return entry_fail (c, error, SD_ERROR_CORRUPT,
                       "data_offsets [%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT "] end before they begin",
                       b, e);
  if ((guint64) (e - b) != nbytes)
    {
      g_autoptr (GString) shape = g_string_new ("[");
      for (int i = 0; i < t->ndim; i++)
        g_string_append_printf (shape, "%s%" G_GINT64_FORMAT, i ? ", " : "", t->shape[i]);
      g_string_append_c (shape, ']');
      return entry_fail (c, error, SD_ERROR_CORRUPT,
                         "data_offsets [%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT "] hold %" G_GINT64_FORMAT
                         " bytes but %s shape %s needs %" G_GUINT64_FORMAT,
                         b, e, e - b, sd_dtype_name (t->dtype), shape->str, nbytes);
    }
  t->data_begin = (guint64) b;
  t->data_end = (guint64) e;
  return TRUE;
}

static int
compare_by_offset (gconstpointer a, gconstpointer b)
{
  const SdSafetensorsTensor *x = a, *y = b;
  if (x->data_begin != y->data_begin)
    return x->data_begin < y->data_begin ? -1 : 1;
  if (x->data_end != y->data_end)
    return x->data_end < y->data_end ? -1 : 1;
  return strcmp (x->name, y->name);
}

/* buf holds at least 8 + N bytes (checked). size_known: file_size is the real
 * size of the file and ranges are checked against it. */
static SdSafetensors *
parse (const guint8 *buf, gsize buf_len, guint64 file_size, gboolean size_known, GError **error)
{
  if (size_known && file_size == 0)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_CORRUPT, "the file is empty, not a safetensors file");
      return NULL;
    }
  if (buf_len < 8 || (size_known && file_size < 8))
    {
      g_set_error (error, SD_ERROR, SD_ERROR_CORRUPT,
                   "only %" G_GUINT64_FORMAT " bytes: a safetensors file starts with an 8-byte header length",
                   size_known ? file_size : (guint64) buf_len);
      return NULL;
    }
  guint64 n;
  memcpy (&n, buf, 8);
  n = GUINT64_FROM_LE (n);
  const char *what = sd_sniff_pickle (buf, buf_len);
  if (n > SD_SAFETENSORS_MAX_HEADER_SIZE)
    {
      if (what)
        g_set_error (error, SD_ERROR, SD_ERROR_UNSUPPORTED,
                     "this is %s, not a safetensors file; pickle checkpoints are never loaded", what);
      else
        g_set_error (error, SD_ERROR, SD_ERROR_CORRUPT,
                     "header length %" G_GUINT64_FORMAT " bytes (file offset 0) exceeds the %u MiB limit: "
                     "not a safetensors file, or a corrupt one",
                     n, SD_SAFETENSORS_MAX_HEADER_SIZE >> 20);
      return NULL;
    }
  if (n < 2)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_CORRUPT,
                   "header length %" G_GUINT64_FORMAT " (file offset 0) is too small for a JSON object", n);
      return NULL;
    }
  guint64 data_offset = 8 + n; /* n <= 64 MiB: no overflow */
  if (size_known && data_offset > file_size)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_CORRUPT,
                   "header length %" G_GUINT64_FORMAT " (file offset 0) runs past the end of the file "
                   "(%" G_GUINT64_FORMAT " bytes)",
                   n, file_size);
      return NULL;
    }
  if (data_offset > buf_len)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_CORRUPT,
                   "header length %" G_GUINT64_FORMAT " (file offset 0) but only %" G_GSIZE_FORMAT
                   " bytes of header are present",
                   n, buf_len >= 8 ? buf_len - 8 : 0);
      return NULL;
    }

  const char *header = (const char *) buf + 8;
  const char *bad_utf8 = NULL;
  if (!g_utf8_validate_len (header, (gsize) n, &bad_utf8))
    {
      gsize at = (gsize) (bad_utf8 - header);
      g_set_error (error, SD_ERROR, SD_ERROR_CORRUPT,
                   "header is not valid UTF-8 at header byte %" G_GSIZE_FORMAT " (file offset %" G_GSIZE_FORMAT ")",
                   at, at + 8);
      return NULL;
    }

  /* Pass 1: strict syntax. */
  JScan scan = {
    .base = header,
    .p = header,
    .end = header + n,
    .obj_counts = g_array_new (FALSE, FALSE, sizeof (guint)),
    .root_keys = g_ptr_array_new_with_free_func (g_free),
    .root_key_pos = g_array_new (FALSE, FALSE, sizeof (gsize)),
  };
  SdSafetensors *st = NULL;
  JsonParser *parser = NULL;
  GHashTable *seen = NULL;

  scan_ws (&scan);
  if (scan.p >= scan.end || *scan.p != '{')
    {
      if (scan.p < scan.end && (*scan.p == '[' || *scan.p == '"' || *scan.p == '-'
                                || g_ascii_isdigit (*scan.p) || *scan.p == 't' || *scan.p == 'f'
                                || *scan.p == 'n'))
        scan_fail (&scan, scan.p, "the header JSON is not an object");
      else
        scan_fail (&scan, scan.p, "the header does not start with a JSON object");
    }
  else if (scan_value (&scan, 0))
    {
      scan_ws (&scan);
      if (scan.p != scan.end)
        scan_fail (&scan, scan.p, "data after the end of the JSON object");
    }
  if (scan.err)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_CORRUPT, "invalid header JSON: %s", scan.err);
      goto out;
    }

  /* Duplicate tensor names: json-glib would keep the last one. */
  seen = g_hash_table_new (g_str_hash, g_str_equal);
  for (guint i = 0; i < scan.root_keys->len; i++)
    {
      const char *k = g_ptr_array_index (scan.root_keys, i);
      gpointer prev;
      if (g_hash_table_lookup_extended (seen, k, NULL, &prev))
        {
          gsize p0 = g_array_index (scan.root_key_pos, gsize, GPOINTER_TO_UINT (prev));
          gsize p1 = g_array_index (scan.root_key_pos, gsize, i);
          g_set_error (error, SD_ERROR, SD_ERROR_CORRUPT,
                       "duplicate tensor name '%s' (header bytes %" G_GSIZE_FORMAT " and %" G_GSIZE_FORMAT
                       ", file offsets %" G_GSIZE_FORMAT " and %" G_GSIZE_FORMAT ")",
                       k, p0, p1, p0 + 8, p1 + 8);
          goto out;
        }
      g_hash_table_insert (seen, (gpointer) k, GUINT_TO_POINTER (i));
    }

  /* Pass 2: the tree. */
  parser = json_parser_new ();
  GError *jerr = NULL;
  if (!json_parser_load_from_data (parser, header, (gssize) n, &jerr))
    {
      g_set_error (error, SD_ERROR, SD_ERROR_CORRUPT, "invalid header JSON: %s", jerr->message);
      g_error_free (jerr);
      goto out;
    }
  JsonNode *root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
    {
      g_set_error (error, SD_ERROR, SD_ERROR_CORRUPT, "the header JSON is not an object");
      goto out;
    }
  JsonObject *ro = json_node_get_object (root);
  guint idx = 0;
  if (!counts_match (root, scan.obj_counts, &idx, 0) || idx != scan.obj_counts->len)
    {
      /* Find which entry holds the duplicated key, for the message. */
      const char *where = NULL;
      guint k = 1;
      for (guint i = 0; i < scan.root_keys->len && where == NULL; i++)
        {
          JsonNode *v = json_object_get_member (ro, g_ptr_array_index (scan.root_keys, i));
          if (v == NULL || !counts_match (v, scan.obj_counts, &k, 1))
            where = g_ptr_array_index (scan.root_keys, i);
        }
      g_set_error (error, SD_ERROR, SD_ERROR_CORRUPT, "duplicate key inside the header entry of '%s'",
                   where ? where : "?");
      goto out;
    }

  /* Pass 3: entries. */
  st = g_new0 (SdSafetensors, 1);
  st->strings = g_string_chunk_new (4096);
  st->by_name = g_hash_table_new (g_str_hash, g_str_equal);
  st->metadata = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  st->header_size = n;
  guint n_keys = scan.root_keys->len;
  st->tensors = g_new0 (SdSafetensorsTensor, MAX (n_keys, 1));
  guint nt = 0;
  for (guint i = 0; i < n_keys; i++)
    {
      const char *key = g_ptr_array_index (scan.root_keys, i);
      gsize key_pos = g_array_index (scan.root_key_pos, gsize, i);
      JsonNode *v = json_object_get_member (ro, key);
      if (v == NULL)
        {
          g_set_error (error, SD_ERROR, SD_ERROR_CORRUPT,
                       "header key at byte %" G_GSIZE_FORMAT " could not be resolved", key_pos);
          goto fail;
        }
      if (strcmp (key, "__metadata__") == 0)
        {
          if (!JSON_NODE_HOLDS_OBJECT (v))
            {
              g_set_error (error, SD_ERROR, SD_ERROR_CORRUPT,
                           "__metadata__ (header byte %" G_GSIZE_FORMAT ") is %s, expected an object",
                           key_pos, node_kind (v));
              goto fail;
            }
          JsonObject *mo = json_node_get_object (v);
          GList *members = json_object_get_members (mo);
          for (GList *l = members; l; l = l->next)
            {
              JsonNode *mv = json_object_get_member (mo, l->data);
              if (!JSON_NODE_HOLDS_VALUE (mv) || json_node_get_value_type (mv) != G_TYPE_STRING)
                {
                  g_set_error (error, SD_ERROR, SD_ERROR_CORRUPT,
                               "__metadata__ value of '%s' is %s, expected a string",
                               (const char *) l->data, node_kind (mv));
                  g_list_free (members);
                  goto fail;
                }
              g_hash_table_replace (st->metadata, g_strdup (l->data), g_strdup (json_node_get_string (mv)));
            }
          g_list_free (members);
          continue;
        }
      SdSafetensorsTensor *t = &st->tensors[nt];
      t->name = g_string_chunk_insert (st->strings, key);
      EntryCtx ctx = { st, t->name, key_pos };
      if (!parse_entry (&ctx, v, t, error))
        goto fail;
      nt++;
    }
  st->n_tensors = nt;

  /* Ranges: inside the data section, not overlapping. */
  qsort (st->tensors, nt, sizeof (SdSafetensorsTensor), compare_by_offset);
  guint64 data_size = size_known ? file_size - data_offset : 0;
  guint64 max_end = 0;
  const SdSafetensorsTensor *prev = NULL;
  for (guint i = 0; i < nt; i++)
    {
      const SdSafetensorsTensor *t = &st->tensors[i];
      guint64 file_end;
      if (!g_uint64_checked_add (&file_end, data_offset, t->data_end))
        {
          g_set_error (error, SD_ERROR, SD_ERROR_CORRUPT,
                       "tensor '%s': data_offsets [%" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT "] overflow",
                       t->name, t->data_begin, t->data_end);
          goto fail;
        }
      if (size_known && t->data_end > data_size)
        {
          g_set_error (error, SD_ERROR, SD_ERROR_CORRUPT,
                       "tensor '%s': data_offsets [%" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT "] (file offsets "
                       "%" G_GUINT64_FORMAT "..%" G_GUINT64_FORMAT ") run past the end of the data section "
                       "(%" G_GUINT64_FORMAT " bytes, file size %" G_GUINT64_FORMAT ")",
                       t->name, t->data_begin, t->data_end, data_offset + t->data_begin, file_end,
                       data_size, file_size);
          goto fail;
        }
      max_end = MAX (max_end, t->data_end);
      if (t->data_begin == t->data_end)
        continue; /* an empty range overlaps nothing */
      if (prev && t->data_begin < prev->data_end)
        {
          g_set_error (error, SD_ERROR, SD_ERROR_CORRUPT,
                       "tensors '%s' [%" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT ") and '%s' [%" G_GUINT64_FORMAT
                       ", %" G_GUINT64_FORMAT ") overlap (file offset %" G_GUINT64_FORMAT ")",
                       prev->name, prev->data_begin, prev->data_end, t->name, t->data_begin, t->data_end,
                       data_offset + t->data_begin);
          goto fail;
        }
      prev = t;
    }
  st->data_size = size_known ? data_size : max_end;
  st->file_size = size_known ? file_size : data_offset + max_end;
  for (guint i = 0; i < nt; i++)
    g_hash_table_insert (st->by_name, (gpointer) st->tensors[i].name, GUINT_TO_POINTER (i + 1));
  goto out;

fail:
  sd_safetensors_free (st);
  st = NULL;
out:
  if (parser)
    g_object_unref (parser);
  if (seen)
    g_hash_table_destroy (seen);
  g_array_free (scan.obj_counts, TRUE);
  g_ptr_array_free (scan.root_keys, TRUE);
  g_array_free (scan.root_key_pos, TRUE);
  g_free (scan.err);
  return st;
}

/* ------------------------------------------------------------ constructors */

const char *
sd_sniff_pickle (const guint8 *head, gsize len)
{
  if (len >= 4 && memcmp (head, "PK\x03\x04", 4) == 0)
    return "a zip archive (a PyTorch checkpoint saved with torch.save)";
  /* Pickle protocol 2..5 starts with PROTO (0x80) and the version byte. */
  if (len >= 2 && head[0] == 0x80 && head[1] >= 2 && head[1] <= 5)
    return "a Python pickle (a PyTorch checkpoint)";
  return NULL;
}

SdSafetensors *
sd_safetensors_new_from_header (const guint8 *buffer, gsize buffer_len, guint64 file_size,
                                GError **error)
{
  g_return_val_if_fail (buffer != NULL || buffer_len == 0, NULL);
  SdSafetensors *st = parse (buffer, buffer_len, file_size, TRUE, error);
  if (st)
    st->header_only = TRUE;
  return st;
}

SdSafetensors *
sd_safetensors_new_from_bytes (GBytes *bytes, const char *name, GError **error)
{
  g_return_val_if_fail (bytes != NULL, NULL);
  gsize len;
  const guint8 *data = g_bytes_get_data (bytes, &len);
  SdSafetensors *st = parse (data, len, len, TRUE, error);
  if (st == NULL)
    {
      if (name)
        g_prefix_error (error, "%s: ", name);
      return NULL;
    }
  st->bytes = g_bytes_ref (bytes);
  st->path = g_strdup (name);
  return st;
}

SdSafetensors *
sd_safetensors_open (const char *path, GError **error)
{
  g_return_val_if_fail (path != NULL, NULL);
  GError *ferr = NULL;
  GMappedFile *mf = g_mapped_file_new (path, FALSE, &ferr);
  if (mf == NULL)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_IO, "%s", ferr->message);
      g_error_free (ferr);
      return NULL;
    }
  GBytes *bytes = g_mapped_file_get_bytes (mf);
  g_mapped_file_unref (mf);
  SdSafetensors *st = sd_safetensors_new_from_bytes (bytes, path, error);
  g_bytes_unref (bytes);
  return st;
}

static gboolean
read_exact (int fd, guint8 *dst, gsize n, guint64 offset)
{
  while (n > 0)
    {
      ssize_t r = pread (fd, dst, n, (off_t) offset);
      if (r < 0 && errno == EINTR)
        continue;
      if (r <= 0)
        return FALSE;
      dst += r;
      n -= (gsize) r;
      offset += (guint64) r;
    }
  return TRUE;
}

SdSafetensors *
sd_safetensors_open_header_only (const char *path, GError **error)
{
  g_return_val_if_fail (path != NULL, NULL);
  int fd = open (path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    {
      int e = errno;
      g_set_error (error, SD_ERROR, SD_ERROR_IO, "%s: %s", path, g_strerror (e));
      return NULL;
    }
  struct stat sb;
  SdSafetensors *st = NULL;
  guint8 *buf = NULL;
  if (fstat (fd, &sb) != 0 || !S_ISREG (sb.st_mode))
    {
      g_set_error (error, SD_ERROR, SD_ERROR_IO, "%s: not a regular file", path);
      goto out;
    }
  guint64 size = (guint64) sb.st_size;
  guint8 head[8];
  if (size < 8)
    {
      /* parse() words the message. */
      st = parse (head, 0, size, TRUE, error);
      goto out;
    }
  if (!read_exact (fd, head, 8, 0))
    {
      g_set_error (error, SD_ERROR, SD_ERROR_IO, "%s: read error", path);
      goto out;
    }
  guint64 n;
  memcpy (&n, head, 8);
  n = GUINT64_FROM_LE (n);
  if (n > SD_SAFETENSORS_MAX_HEADER_SIZE || n + 8 > size)
    {
      st = parse (head, 8, size, TRUE, error); /* words the message */
      goto out;
    }
  buf = g_malloc ((gsize) n + 8);
  if (!read_exact (fd, buf, (gsize) n + 8, 0))
    {
      g_set_error (error, SD_ERROR, SD_ERROR_IO, "%s: read error", path);
      goto out;
    }
  gboolean size_known = size > n + 8;
  st = parse (buf, (gsize) n + 8, size, size_known, error);
  if (st)
    {
      st->header_only = TRUE;
      st->path = g_strdup (path);
    }
out:
  if (st == NULL)
    g_prefix_error (error, "%s: ", path);
  g_free (buf);
  close (fd);
  return st;
}

void
sd_safetensors_free (SdSafetensors *st)
{
  if (st == NULL)
    return;
  g_free (st->path);
  if (st->bytes)
    g_bytes_unref (st->bytes);
  g_free (st->tensors);
  if (st->strings)
    g_string_chunk_free (st->strings);
  if (st->by_name)
    g_hash_table_destroy (st->by_name);
  if (st->metadata)
    g_hash_table_destroy (st->metadata);
  g_free (st);
}

/* ---------------------------------------------------------------- access */

const char *
sd_safetensors_get_path (SdSafetensors *st)
{
  g_return_val_if_fail (st != NULL, NULL);
  return st->path;
}

gboolean
sd_safetensors_is_header_only (SdSafetensors *st)
{
  g_return_val_if_fail (st != NULL, TRUE);
  return st->header_only;
}

guint64
sd_safetensors_get_file_size (SdSafetensors *st)
{
  g_return_val_if_fail (st != NULL, 0);
  return st->file_size;
}

guint64
sd_safetensors_get_header_size (SdSafetensors *st)
{
  g_return_val_if_fail (st != NULL, 0);
  return st->header_size;
}

guint
sd_safetensors_get_n_tensors (SdSafetensors *st)
{
  g_return_val_if_fail (st != NULL, 0);
  return st->n_tensors;
}

const SdSafetensorsTensor *
sd_safetensors_get_nth (SdSafetensors *st, guint i)
{
  g_return_val_if_fail (st != NULL, NULL);
  g_return_val_if_fail (i < st->n_tensors, NULL);
  return &st->tensors[i];
}

const SdSafetensorsTensor *
sd_safetensors_lookup (SdSafetensors *st, const char *name)
{
  g_return_val_if_fail (st != NULL && name != NULL, NULL);
  guint i = GPOINTER_TO_UINT (g_hash_table_lookup (st->by_name, name));
  return i ? &st->tensors[i - 1] : NULL;
}

const char *
sd_safetensors_get_metadata (SdSafetensors *st, const char *key)
{
  g_return_val_if_fail (st != NULL && key != NULL, NULL);
  return g_hash_table_lookup (st->metadata, key);
}

static int
compare_str (gconstpointer a, gconstpointer b)
{
  return strcmp (*(const char *const *) a, *(const char *const *) b);
}

GPtrArray *
sd_safetensors_list_metadata (SdSafetensors *st)
{
  g_return_val_if_fail (st != NULL, NULL);
  GPtrArray *keys = g_ptr_array_new ();
  GHashTableIter it;
  gpointer k;
  g_hash_table_iter_init (&it, st->metadata);
  while (g_hash_table_iter_next (&it, &k, NULL))
    g_ptr_array_add (keys, k);
  g_ptr_array_sort (keys, compare_str);
  return keys;
}

const guint8 *
sd_safetensors_get_data (SdSafetensors *st, const SdSafetensorsTensor *t, GError **error)
{
  g_return_val_if_fail (st != NULL && t != NULL, NULL);
  g_return_val_if_fail (t >= st->tensors && t < st->tensors + st->n_tensors, NULL);
  if (st->header_only || st->bytes == NULL)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_FAILED, "%s: tensor '%s': opened header-only, no data",
                   st->path ? st->path : "safetensors", t->name);
      return NULL;
    }
  gsize len;
  const guint8 *data = g_bytes_get_data (st->bytes, &len);
  /* Validated at open: 8 + N + data_end <= file size == len. */
  guint64 off = 8 + st->header_size + t->data_begin;
  g_assert (off + (t->data_end - t->data_begin) <= len);
  return data + off;
}

static const SdSafetensorsTensor *
lookup_for_read (SdSafetensors *st, const char *name, gsize n_elements, GError **error)
{
  const SdSafetensorsTensor *t = sd_safetensors_lookup (st, name);
  if (t == NULL)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_MISSING, "%s: no tensor '%s'",
                   st->path ? st->path : "safetensors", name);
      return NULL;
    }
  if ((guint64) t->n_elements != (guint64) n_elements)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG,
                   "tensor '%s' has %" G_GINT64_FORMAT " elements, the caller expected %" G_GSIZE_FORMAT,
                   name, t->n_elements, n_elements);
      return NULL;
    }
  return t;
}

gboolean
sd_safetensors_read_f32 (SdSafetensors *st, const char *name, float *dst, gsize n_elements,
                         GError **error)
{
  g_return_val_if_fail (st != NULL && name != NULL, FALSE);
  g_return_val_if_fail (dst != NULL || n_elements == 0, FALSE);
  const SdSafetensorsTensor *t = lookup_for_read (st, name, n_elements, error);
  if (t == NULL)
    return FALSE;
  const guint8 *src = sd_safetensors_get_data (st, t, error);
  if (src == NULL)
    return FALSE;
  sd_convert_to_f32 (t->dtype, src, n_elements, dst);
  return TRUE;
}

gboolean
sd_safetensors_read_i64 (SdSafetensors *st, const char *name, gint64 *dst, gsize n_elements,
                         GError **error)
{
  g_return_val_if_fail (st != NULL && name != NULL, FALSE);
  g_return_val_if_fail (dst != NULL || n_elements == 0, FALSE);
  const SdSafetensorsTensor *t = lookup_for_read (st, name, n_elements, error);
  if (t == NULL)
    return FALSE;
  if (sd_dtype_is_float (t->dtype))
    {
      g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG, "tensor '%s' is %s, not an integer type",
                   name, sd_dtype_name (t->dtype));
      return FALSE;
    }
  const guint8 *src = sd_safetensors_get_data (st, t, error);
  if (src == NULL)
    return FALSE;
  return sd_convert_to_i64 (t->dtype, src, n_elements, dst);
}

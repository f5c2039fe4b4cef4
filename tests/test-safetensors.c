/* test-safetensors.c: the safetensors reader against a table of corrupt files
 * (each must be refused with the right code and a message naming the problem),
 * valid files (zero-dim tensors, metadata, every dtype, escapes, gaps), and the
 * half-precision conversions. */
#include "config.h"

#include <fcntl.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "safetensors.h"
#include "sd-error.h"
#include "sd-model.h"

/* A file: 8-byte little-endian length of json, json, then data_len bytes
 * 0, 1, 2, ... */
static GBytes *
make_file (const char *json, gsize data_len)
{
  gsize n = strlen (json);
  guint64 le = GUINT64_TO_LE ((guint64) n);
  guint8 *buf = g_malloc (8 + n + data_len + 1);
  memcpy (buf, &le, 8);
  memcpy (buf + 8, json, n);
  for (gsize i = 0; i < data_len; i++)
    buf[8 + n + i] = (guint8) i;
  return g_bytes_new_take (buf, 8 + n + data_len);
}

static GBytes *
make_raw (const void *data, gsize len)
{
  return g_bytes_new (data, len);
}

/* A header length field that lies: says `claimed`, holds json. */
static GBytes *
make_lying_length (guint64 claimed, const char *json)
{
  gsize n = strlen (json);
  guint64 le = GUINT64_TO_LE (claimed);
  guint8 *buf = g_malloc (8 + n);
  memcpy (buf, &le, 8);
  memcpy (buf + 8, json, n);
  return g_bytes_new_take (buf, 8 + n);
}

#define T1(dtype, shape, b, e) "{\"t\":{\"dtype\":\"" dtype "\",\"shape\":" shape ",\"data_offsets\":[" #b "," #e "]}}"

typedef struct
{
  const char *name;
  GBytes *(*make) (gconstpointer arg);
  const char *json; /* for make_file-based rows */
  gsize data_len;
  int code;
  const char *message; /* substring the error must contain */
} CorruptCase;

static const struct
{
  const char *name;
  const char *json;
  gsize data_len;
  int code;
  const char *message;
} corrupt_json[] = {
  { "invalid-json", "{\"t\": ", 0, SD_ERROR_CORRUPT, "invalid header JSON" },
  { "invalid-json-garbage", "{\"t\":{]}", 0, SD_ERROR_CORRUPT, "invalid header JSON" },
  { "non-object-array", "[1, 2, 3]", 0, SD_ERROR_CORRUPT, "not an object" },
  { "non-object-string", "\"hello\"", 0, SD_ERROR_CORRUPT, "not an object" },
  { "non-object-number", "42", 0, SD_ERROR_CORRUPT, "not an object" },
  { "not-json-at-all", "hello!", 0, SD_ERROR_CORRUPT, "does not start with a JSON object" },
  { "trailing-garbage", "{} x", 0, SD_ERROR_CORRUPT, "data after the end" },
  { "json-comment", "{/* c */}", 0, SD_ERROR_CORRUPT, "expected a quoted key" },
  { "single-quotes", "{'t':1}", 0, SD_ERROR_CORRUPT, "expected a quoted key" },
  { "hex-number", T1 ("F32", "[0x1]", 0, 4), 4, SD_ERROR_CORRUPT, "invalid header JSON" },
  { "leading-zero", T1 ("F32", "[01]", 0, 4), 4, SD_ERROR_CORRUPT, "leading zero" },
  { "trailing-comma", "{\"a\":1,}", 0, SD_ERROR_CORRUPT, "expected a quoted key" },
  { "integer-too-large", T1 ("F32", "[18446744073709551617]", 0, 4), 4, SD_ERROR_CORRUPT,
    "does not fit in 64 bits" },
  { "nul-escape", "{\"a\\u0000b\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}", 4,
    SD_ERROR_CORRUPT, "\\u0000" },
  { "lone-surrogate", "{\"a\\ud800\":{}}", 0, SD_ERROR_CORRUPT, "surrogate" },
  { "bad-escape", "{\"a\\q\":{}}", 0, SD_ERROR_CORRUPT, "invalid escape" },
  { "control-char", "{\"a\tb\":{}}", 0, SD_ERROR_CORRUPT, "control character" },
  { "deep-nesting",
    "{\"__metadata__\":{\"x\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}}", 0,
    SD_ERROR_CORRUPT, "nested deeper" },
  { "unknown-dtype", T1 ("X99", "[1]", 0, 4), 4, SD_ERROR_CORRUPT, "unknown dtype \"X99\"" },
  { "unsupported-dtype", T1 ("F8_E4M3", "[4]", 0, 4), 4, SD_ERROR_UNSUPPORTED, "F8_E4M3 is not supported" },
  { "dtype-not-string", T1 ("F32", "[1]", 0, 4) /* patched below */, 4, SD_ERROR_CORRUPT, "dtype" },
  { "shape-overflow", T1 ("F32", "[4294967296, 4294967296, 16]", 0, 4), 4, SD_ERROR_CORRUPT,
    "element count of the shape overflows" },
  { "bytes-overflow", T1 ("F64", "[4611686018427387904]", 0, 4), 4, SD_ERROR_CORRUPT,
    "byte size of the shape overflows" },
  { "size-mismatch", T1 ("F32", "[2, 2]", 0, 12), 12, SD_ERROR_CORRUPT, "needs 16" },
  { "negative-dim", T1 ("F32", "[-1]", 0, 4), 4, SD_ERROR_CORRUPT, "negative dimension" },
  { "float-dim", T1 ("F32", "[2.0]", 0, 8), 8, SD_ERROR_CORRUPT, "expected an integer" },
  { "too-many-dims", T1 ("U8", "[1,1,1,1,1,1,1,1,1]", 0, 1), 1, SD_ERROR_UNSUPPORTED, "9 dimensions" },
  { "shape-not-array", T1 ("F32", "4", 0, 4), 4, SD_ERROR_CORRUPT, "\"shape\" is a number" },
  { "offsets-past-end", T1 ("F32", "[4]", 0, 16), 8, SD_ERROR_CORRUPT, "past the end of the data section" },
  { "offsets-far-past-end", T1 ("U8", "[1]", 9223372036854775806, 9223372036854775807), 8, SD_ERROR_CORRUPT,
    "past the end" },
  { "offsets-one-value", "{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, SD_ERROR_CORRUPT,
    "has 1 values, expected 2" },
  { "offsets-three-values", "{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 8,
    SD_ERROR_CORRUPT, "has 3 values, expected 2" },
  { "offsets-missing", "{\"t\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, SD_ERROR_CORRUPT,
    "\"data_offsets\" is absent" },
  { "offsets-negative", T1 ("F32", "[1]", -4, 0), 4, SD_ERROR_CORRUPT, "negative data_offsets" },
  { "offsets-reversed", T1 ("F32", "[0]", 8, 4), 8, SD_ERROR_CORRUPT, "end before they begin" },
  { "offsets-not-integers", T1 ("F32", "[1]", 0.0, 4), 4, SD_ERROR_CORRUPT, "must be integers" },
  { "overlapping",
    "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
    "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}",
    24, SD_ERROR_CORRUPT, "overlap" },
  { "same-range-twice",
    "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
    "\"b\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
    4, SD_ERROR_CORRUPT, "overlap" },
  { "duplicate-names",
    "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
    "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
    8, SD_ERROR_CORRUPT, "duplicate tensor name 'a'" },
  { "duplicate-names-escaped",
    "{\"ab\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
    "\"a\\u0062\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
    8, SD_ERROR_CORRUPT, "duplicate tensor name 'ab'" },
  { "duplicate-key-in-entry", "{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
    SD_ERROR_CORRUPT, "duplicate key inside the header entry of 'a'" },
  { "duplicate-metadata-key", "{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, SD_ERROR_CORRUPT,
    "duplicate key inside the header entry of '__metadata__'" },
  { "entry-not-object", "{\"t\":5}", 0, SD_ERROR_CORRUPT, "entry is a number" },
  { "metadata-not-object", "{\"__metadata__\":[\"a\"]}", 0, SD_ERROR_CORRUPT, "__metadata__" },
  { "metadata-not-string", "{\"__metadata__\":{\"epoch\":3}}", 0, SD_ERROR_CORRUPT, "value of 'epoch'" },
};

static void
expect_refused (GBytes *bytes, int code, const char *message, const char *case_name)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (SdSafetensors) st = sd_safetensors_new_from_bytes (bytes, case_name, &error);
  if (st != NULL)
    g_error ("case %s: accepted", case_name);
  g_assert_nonnull (error);
  if (error->domain != SD_ERROR || error->code != code || strstr (error->message, message) == NULL)
    g_error ("case %s: got code %d \"%s\", expected code %d and \"%s\"", case_name, error->code,
             error->message, code, message);
  /* The header-only constructor gives the same verdict. */
  gsize len;
  const guint8 *data = g_bytes_get_data (bytes, &len);
  g_autoptr (GError) error2 = NULL;
  g_autoptr (SdSafetensors) st2 = sd_safetensors_new_from_header (data, len, len, &error2);
  g_assert_null (st2);
  g_assert_error (error2, SD_ERROR, code);
  g_test_message ("%s: %s", case_name, error->message);
}

static void
test_corrupt_json (gconstpointer data)
{
  guint i = GPOINTER_TO_UINT (data);
  const char *json = corrupt_json[i].json;
  g_autofree char *patched = NULL;
  if (strcmp (corrupt_json[i].name, "dtype-not-string") == 0)
    json = patched = g_strdup ("{\"t\":{\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,4]}}");
  g_autoptr (GBytes) b = make_file (json, corrupt_json[i].data_len);
  expect_refused (b, corrupt_json[i].code, corrupt_json[i].message, corrupt_json[i].name);
}

static void
test_corrupt_framing (void)
{
  /* Empty file. */
  g_autoptr (GBytes) empty = make_raw ("", 0);
  expect_refused (empty, SD_ERROR_CORRUPT, "empty", "empty-file");
  /* Shorter than the length field. */
  g_autoptr (GBytes) shortb = make_raw ("\x10\x00\x00", 3);
  expect_refused (shortb, SD_ERROR_CORRUPT, "8-byte header length", "truncated-length");
  /* Length past the end of the file. */
  g_autoptr (GBytes) past = make_lying_length (100, "{}");
  expect_refused (past, SD_ERROR_CORRUPT, "past the end of the file", "header-past-eof");
  /* Length of 100 MB: refused before anything that size is read or allocated. */
  g_autoptr (GBytes) huge = make_lying_length (100000000, "{}");
  expect_refused (huge, SD_ERROR_CORRUPT, "exceeds the 64 MiB limit", "header-100MB");
  g_autoptr (GBytes) max = make_lying_length (G_MAXUINT64, "{}");
  expect_refused (max, SD_ERROR_CORRUPT, "exceeds the 64 MiB limit", "header-2^64-1");
  /* Length too small for a JSON object. */
  g_autoptr (GBytes) zero = make_lying_length (0, "");
  expect_refused (zero, SD_ERROR_CORRUPT, "too small", "header-length-0");
  /* Truncated header (length claims more than the JSON present, file ends). */
  g_autoptr (GBytes) trunc = make_lying_length (40, "{\"t\":{\"dtype\":\"F32\",\"shape\":[1],");
  expect_refused (trunc, SD_ERROR_CORRUPT, "past the end of the file", "truncated-header");
  /* Header cut in the middle of the JSON (length matches the bytes present). */
  g_autoptr (GBytes) cut = make_file ("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],", 0);
  expect_refused (cut, SD_ERROR_CORRUPT, "invalid header JSON", "json-cut");
  /* Not UTF-8; NUL byte inside. */
  g_autoptr (GBytes) latin1 = make_file ("{\"caf\xe9\":{}}", 0);
  expect_refused (latin1, SD_ERROR_CORRUPT, "not valid UTF-8", "latin1-header");
  static const char nul_json[] = "{\"a\":{}}\0   ";
  guint64 le = GUINT64_TO_LE (sizeof nul_json - 1);
  guint8 nulbuf[8 + sizeof nul_json];
  memcpy (nulbuf, &le, 8);
  memcpy (nulbuf + 8, nul_json, sizeof nul_json - 1);
  g_autoptr (GBytes) nul = make_raw (nulbuf, 8 + sizeof nul_json - 1);
  expect_refused (nul, SD_ERROR_CORRUPT, "not valid UTF-8", "nul-in-header");
  /* PyTorch checkpoints: pickle protocol 2 and zip. */
  g_autoptr (GBytes) pickle = make_raw ("\x80\x02}q\x00(X\x0a\x00\x00\x00", 12);
  expect_refused (pickle, SD_ERROR_UNSUPPORTED, "pickle", "pickle");
  g_autoptr (GBytes) zip = make_raw ("PK\x03\x04\x14\x00\x00\x00\x08\x00", 10);
  expect_refused (zip, SD_ERROR_UNSUPPORTED, "zip archive", "zip");
}

/* A 100 MB header length in a real (sparse) file: both open paths refuse it
 * without reading or allocating that much. */
static void
test_sparse_100mb_header (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = g_dir_make_tmp ("impasto-st-XXXXXX", &error);
  g_assert_no_error (error);
  g_autofree char *path = g_build_filename (dir, "big.safetensors", NULL);
  int fd = g_open (path, O_CREAT | O_WRONLY | O_TRUNC, 0600);
  g_assert_cmpint (fd, >=, 0);
  guint64 le = GUINT64_TO_LE (100000000ull);
  g_assert_cmpint (write (fd, &le, 8), ==, 8);
  g_assert_cmpint (write (fd, "{", 1), ==, 1);
  g_assert_cmpint (ftruncate (fd, 100000000 + 8), ==, 0); /* a hole, not 100 MB of writes */
  close (fd);

  g_autoptr (SdSafetensors) a = sd_safetensors_open (path, &error);
  g_assert_null (a);
  g_assert_error (error, SD_ERROR, SD_ERROR_CORRUPT);
  g_assert_nonnull (strstr (error->message, "64 MiB"));
  g_assert_nonnull (strstr (error->message, path));
  g_clear_error (&error);
  g_autoptr (SdSafetensors) b = sd_safetensors_open_header_only (path, &error);
  g_assert_null (b);
  g_assert_error (error, SD_ERROR, SD_ERROR_CORRUPT);
  g_clear_error (&error);
  g_unlink (path);
  g_rmdir (dir);
}

static void
test_missing_file (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (SdSafetensors) st = sd_safetensors_open ("/nonexistent/x.safetensors", &error);
  g_assert_null (st);
  g_assert_error (error, SD_ERROR, SD_ERROR_IO);
}

/* ---------------------------------------------------------------- valid */

static SdSafetensors *
open_ok (const char *json, gsize data_len)
{
  g_autoptr (GBytes) b = make_file (json, data_len);
  g_autoptr (GError) error = NULL;
  SdSafetensors *st = sd_safetensors_new_from_bytes (b, "valid", &error);
  g_assert_no_error (error);
  g_assert_nonnull (st);
  return st;
}

static void
test_valid_empty (void)
{
  g_autoptr (SdSafetensors) st = open_ok ("{}", 0);
  g_assert_cmpuint (sd_safetensors_get_n_tensors (st), ==, 0);
  g_autoptr (SdSafetensors) st2 = open_ok ("  { }        ", 0); /* space padding as writers do */
  g_assert_cmpuint (sd_safetensors_get_n_tensors (st2), ==, 0);
}

static void
test_valid_metadata_and_zero_dim (void)
{
  /* A scalar (shape [], one element) like SDXL's logit_scale, an empty tensor
   * sharing its offset, and metadata. */
  g_autoptr (SdSafetensors) st = open_ok ("{\"__metadata__\":{\"format\":\"pt\",\"modelspec.title\":\"x\"},"
                                          "\"logit_scale\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},"
                                          "\"empty\":{\"dtype\":\"F16\",\"shape\":[3,0],\"data_offsets\":[4,4]},"
                                          "\"empty2\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}}",
                                          4);
  g_assert_cmpuint (sd_safetensors_get_n_tensors (st), ==, 3);
  g_assert_cmpstr (sd_safetensors_get_metadata (st, "format"), ==, "pt");
  g_assert_cmpstr (sd_safetensors_get_metadata (st, "modelspec.title"), ==, "x");
  g_assert_null (sd_safetensors_get_metadata (st, "nope"));
  g_autoptr (GPtrArray) keys = sd_safetensors_list_metadata (st);
  g_assert_cmpuint (keys->len, ==, 2);
  g_assert_cmpstr (g_ptr_array_index (keys, 0), ==, "format");
  const SdSafetensorsTensor *t = sd_safetensors_lookup (st, "logit_scale");
  g_assert_nonnull (t);
  g_assert_cmpint (t->ndim, ==, 0);
  g_assert_cmpint (t->n_elements, ==, 1);
  float v;
  g_autoptr (GError) error = NULL;
  g_assert_true (sd_safetensors_read_f32 (st, "logit_scale", &v, 1, &error));
  guint8 expect_bytes[4] = { 0, 1, 2, 3 };
  float expect;
  memcpy (&expect, expect_bytes, 4);
  g_assert_cmpmem (&v, 4, &expect, 4);
  const SdSafetensorsTensor *e = sd_safetensors_lookup (st, "empty");
  g_assert_cmpint (e->n_elements, ==, 0);
  g_assert_true (sd_safetensors_read_f32 (st, "empty", NULL, 0, &error));
  g_assert_false (sd_safetensors_read_f32 (st, "logit_scale", &v, 2, &error));
  g_assert_error (error, SD_ERROR, SD_ERROR_INVALID_ARG);
  g_clear_error (&error);
  g_assert_false (sd_safetensors_read_f32 (st, "absent", &v, 1, &error));
  g_assert_error (error, SD_ERROR, SD_ERROR_MISSING);
}

static void
put16 (guint8 *p, guint16 v)
{
  v = GUINT16_TO_LE (v);
  memcpy (p, &v, 2);
}

/* Every dtype converts to float32 and (integers) to int64; data unaligned. */
static void
test_valid_all_dtypes (void)
{
  const char *json = "{\"f32\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[1,9]},"
                     "\"f16\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[9,13]},"
                     "\"bf16\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[13,17]},"
                     "\"f64\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[17,25]},"
                     "\"i64\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[25,33]},"
                     "\"i32\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[33,37]},"
                     "\"i16\":{\"dtype\":\"I16\",\"shape\":[1],\"data_offsets\":[37,39]},"
                     "\"i8\":{\"dtype\":\"I8\",\"shape\":[1],\"data_offsets\":[39,40]},"
                     "\"u8\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[40,41]},"
                     "\"bool\":{\"dtype\":\"BOOL\",\"shape\":[2],\"data_offsets\":[41,43]}}";
  gsize n = strlen (json);
  guint8 *buf = g_malloc0 (8 + n + 43);
  guint64 le = GUINT64_TO_LE ((guint64) n);
  memcpy (buf, &le, 8);
  memcpy (buf + 8, json, n);
  guint8 *d = buf + 8 + n;
  float f[2] = { 1.5f, -2.25f };
  memcpy (d + 1, f, 8);
  put16 (d + 9, 0x3c00);  /* 1.0 */
  put16 (d + 11, 0xc000); /* -2.0 */
  put16 (d + 13, 0x3f80); /* bf16 1.0 */
  put16 (d + 15, 0x4049); /* bf16 3.140625 */
  double dv = 0.1;
  memcpy (d + 17, &dv, 8);
  gint64 iv = -123456789012345;
  memcpy (d + 25, &iv, 8);
  gint32 i32 = -7;
  memcpy (d + 33, &i32, 4);
  gint16 i16 = -300;
  memcpy (d + 37, &i16, 2);
  d[39] = 0xff; /* -1 */
  d[40] = 200;
  d[41] = 0;
  d[42] = 1;
  g_autoptr (GBytes) bytes = g_bytes_new_take (buf, 8 + n + 43);
  g_autoptr (GError) error = NULL;
  g_autoptr (SdSafetensors) st = sd_safetensors_new_from_bytes (bytes, "dtypes", &error);
  g_assert_no_error (error);

  float out[2];
  g_assert_true (sd_safetensors_read_f32 (st, "f32", out, 2, &error));
  g_assert_cmpfloat (out[0], ==, 1.5f);
  g_assert_cmpfloat (out[1], ==, -2.25f);
  g_assert_true (sd_safetensors_read_f32 (st, "f16", out, 2, &error));
  g_assert_cmpfloat (out[0], ==, 1.0f);
  g_assert_cmpfloat (out[1], ==, -2.0f);
  g_assert_true (sd_safetensors_read_f32 (st, "bf16", out, 2, &error));
  g_assert_cmpfloat (out[0], ==, 1.0f);
  g_assert_cmpfloat (out[1], ==, 3.140625f);
  g_assert_true (sd_safetensors_read_f32 (st, "f64", out, 1, &error));
  g_assert_cmpfloat (out[0], ==, 0.1f);
  g_assert_true (sd_safetensors_read_f32 (st, "i8", out, 1, &error));
  g_assert_cmpfloat (out[0], ==, -1.0f);
  g_assert_true (sd_safetensors_read_f32 (st, "u8", out, 1, &error));
  g_assert_cmpfloat (out[0], ==, 200.0f);
  gint64 ints[2];
  g_assert_true (sd_safetensors_read_i64 (st, "i64", ints, 1, &error));
  g_assert_cmpint (ints[0], ==, -123456789012345);
  g_assert_true (sd_safetensors_read_i64 (st, "i32", ints, 1, &error));
  g_assert_cmpint (ints[0], ==, -7);
  g_assert_true (sd_safetensors_read_i64 (st, "i16", ints, 1, &error));
  g_assert_cmpint (ints[0], ==, -300);
  g_assert_true (sd_safetensors_read_i64 (st, "bool", ints, 2, &error));
  g_assert_cmpint (ints[0], ==, 0);
  g_assert_cmpint (ints[1], ==, 1);
  g_assert_false (sd_safetensors_read_i64 (st, "f32", ints, 2, &error));
  g_assert_error (error, SD_ERROR, SD_ERROR_INVALID_ARG);
  g_clear_error (&error);

  /* File order = data order; the first tensor starts at 1 (a 1-byte gap). */
  g_assert_cmpstr (sd_safetensors_get_nth (st, 0)->name, ==, "f32");
  g_assert_cmpstr (sd_safetensors_get_nth (st, 9)->name, ==, "bool");
  for (guint i = 1; i < sd_safetensors_get_n_tensors (st); i++)
    g_assert_cmpuint (sd_safetensors_get_nth (st, i - 1)->data_begin, <, sd_safetensors_get_nth (st, i)->data_begin);
}

static void
test_valid_escapes (void)
{
  g_autoptr (SdSafetensors) st = open_ok ("{\"caf\\u00e9\\ud83d\\ude00\\n\\\"\\/\":"
                                          "{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                                          "\"gr\xc3\xbc\xc3\x9f\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
                                          2);
  g_assert_nonnull (sd_safetensors_lookup (st, "caf\xc3\xa9\xf0\x9f\x98\x80\n\"/"));
  g_assert_nonnull (sd_safetensors_lookup (st, "gr\xc3\xbc\xc3\x9f"));
}

static void
test_header_only (void)
{
  const char *json = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1000],\"data_offsets\":[0,4000]}}";
  g_autoptr (GBytes) b = make_file (json, 0);
  gsize len;
  const guint8 *data = g_bytes_get_data (b, &len);
  g_autoptr (GError) error = NULL;
  /* Checked against the size the caller states. */
  g_autoptr (SdSafetensors) bad = sd_safetensors_new_from_header (data, len, len, &error);
  g_assert_null (bad);
  g_assert_error (error, SD_ERROR, SD_ERROR_CORRUPT);
  g_clear_error (&error);
  g_autoptr (SdSafetensors) st = sd_safetensors_new_from_header (data, len, len + 4000, &error);
  g_assert_no_error (error);
  g_assert_true (sd_safetensors_is_header_only (st));
  const SdSafetensorsTensor *t = sd_safetensors_lookup (st, "a");
  g_assert_null (sd_safetensors_get_data (st, t, &error));
  g_assert_error (error, SD_ERROR, SD_ERROR_FAILED);
  g_clear_error (&error);

  /* On disk: a file that ends after its header is accepted header-only (ranges
   * unchecked), refused by the full open. */
  g_autofree char *dir = g_dir_make_tmp ("impasto-st-XXXXXX", &error);
  g_autofree char *path = g_build_filename (dir, "h.safetensors", NULL);
  g_assert_true (g_file_set_contents (path, (const char *) data, (gssize) len, &error));
  g_autoptr (SdSafetensors) ho = sd_safetensors_open_header_only (path, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (sd_safetensors_get_n_tensors (ho), ==, 1);
  g_assert_cmpuint (sd_safetensors_get_file_size (ho), ==, len + 4000);
  g_autoptr (SdSafetensors) full = sd_safetensors_open (path, &error);
  g_assert_null (full);
  g_assert_error (error, SD_ERROR, SD_ERROR_CORRUPT);
  g_assert_nonnull (strstr (error->message, "'a'"));
  g_clear_error (&error);
  /* A complete file opens both ways, and its data reads. */
  g_autoptr (GBytes) whole = make_file (json, 4000);
  data = g_bytes_get_data (whole, &len);
  g_assert_true (g_file_set_contents (path, (const char *) data, (gssize) len, &error));
  g_autoptr (SdSafetensors) full2 = sd_safetensors_open (path, &error);
  g_assert_no_error (error);
  g_assert_nonnull (sd_safetensors_get_data (full2, sd_safetensors_lookup (full2, "a"), &error));
  g_assert_cmpstr (sd_safetensors_get_path (full2), ==, path);
  g_unlink (path);
  g_rmdir (dir);
}

/* ----------------------------------------------------------------- half */

static guint32
f2u (float f)
{
  guint32 u;
  memcpy (&u, &f, 4);
  return u;
}

static float
u2f (guint32 u)
{
  float f;
  memcpy (&f, &u, 4);
  return f;
}

static void
test_half_roundtrip (void)
{
  /* Every half converts to float exactly and back bit for bit (NaNs stay NaN). */
  for (guint32 h = 0; h < 0x10000; h++)
    {
      float f = sd_f16_to_f32 ((guint16) h);
      guint16 back = sd_f32_to_f16 (f);
      gboolean nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
      if (nan)
        {
          g_assert_true (isnan (f));
          g_assert_true ((back & 0x7c00) == 0x7c00 && (back & 0x3ff));
          g_assert_cmpuint (back & 0x8000, ==, h & 0x8000);
        }
      else if (back != h)
        g_error ("half 0x%04x -> %a -> 0x%04x", h, f, back);
    }
  /* Spot values. */
  g_assert_cmpfloat (sd_f16_to_f32 (0x0001), ==, ldexpf (1.0f, -24)); /* smallest subnormal */
  g_assert_cmpfloat (sd_f16_to_f32 (0x03ff), ==, ldexpf (1023.0f, -24));
  g_assert_cmpfloat (sd_f16_to_f32 (0x0400), ==, ldexpf (1.0f, -14));
  g_assert_cmpfloat (sd_f16_to_f32 (0x7bff), ==, 65504.0f);
  g_assert_true (isinf (sd_f16_to_f32 (0xfc00)) && sd_f16_to_f32 (0xfc00) < 0);
  g_assert_cmpfloat (sd_bf16_to_f32 (0x3f80), ==, 1.0f);
  g_assert_cmpfloat (sd_bf16_to_f32 (0xc0a0), ==, -5.0f);
}

static void
test_half_rounding (void)
{
  struct
  {
    float in;
    guint16 out;
  } cases[] = {
    { 0.0f, 0x0000 },
    { -0.0f, 0x8000 },
    { 1.0f, 0x3c00 },
    { 65504.0f, 0x7bff },
    { 65519.99f, 0x7bff },
    { 65520.0f, 0x7c00 }, /* halfway to 2^16: ties to even = infinity */
    { 1e10f, 0x7c00 },
    { -1e10f, 0xfc00 },
    { 1.0f + 0x1p-11f, 0x3c00 },        /* tie, even mantissa stays */
    { 1.0f + 3 * 0x1p-11f, 0x3c02 },    /* tie, odd mantissa rounds up */
    { 1.0f + 0x1p-11f + 0x1p-20f, 0x3c01 },
    { 0x1p-24f, 0x0001 },
    { 0x1p-25f, 0x0000 },               /* tie to even: 0 */
    { 0x1p-25f * 1.0000001f, 0x0001 },  /* just above the tie */
    { 3 * 0x1p-26f, 0x0001 },           /* 0.75 units -> 1 */
    { 3 * 0x1p-25f, 0x0002 },           /* 1.5 units: tie to even 2 */
    { 5 * 0x1p-25f, 0x0002 },           /* 2.5 units: tie to even 2 */
    { 0x1p-14f - 0x1p-25f, 0x0400 },    /* rounds up into the smallest normal */
    { 0x1p-14f, 0x0400 },
    { 1e-30f, 0x0000 },
    { -1e-30f, 0x8000 },
    { INFINITY, 0x7c00 },
    { -INFINITY, 0xfc00 },
  };
  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    if (sd_f32_to_f16 (cases[i].in) != cases[i].out)
      g_error ("f32 %a -> 0x%04x, expected 0x%04x", cases[i].in, sd_f32_to_f16 (cases[i].in), cases[i].out);
  guint16 qnan = sd_f32_to_f16 (NAN);
  g_assert_true ((qnan & 0x7c00) == 0x7c00 && (qnan & 0x3ff));
  /* A NaN whose payload lives only in the low bits stays a NaN. */
  guint16 lownan = sd_f32_to_f16 (u2f (0x7f800001u));
  g_assert_true ((lownan & 0x7c00) == 0x7c00 && (lownan & 0x3ff));
}

#ifdef __FLT16_MAX__
/* Against the compiler's conversion (libgcc __truncsfhf2, IEEE round to
 * nearest even), over a stride of all float bit patterns plus every float near
 * the half rounding points of [2^-26, 2^17). */
static void
test_half_vs_compiler (void)
{
  guint64 checked = 0;
  for (guint64 u = 0; u <= 0xffffffffull; u += 251)
    {
      float f = u2f ((guint32) u);
      if (isnan (f))
        continue;
      _Float16 h = (_Float16) f;
      guint16 hb;
      memcpy (&hb, &h, 2);
      if (sd_f32_to_f16 (f) != hb)
        g_error ("f32 0x%08x (%a): ours 0x%04x, compiler 0x%04x", (guint32) u, f, sd_f32_to_f16 (f), hb);
      checked++;
    }
  for (guint32 e = 127 - 26; e < 127 + 17; e++)
    for (guint32 m = 0; m < (1u << 23); m += (1u << 13) >> 1)
      for (int d = -2; d <= 2; d++)
        {
          guint32 u = (e << 23 | m) + (guint32) d;
          for (int s = 0; s < 2; s++)
            {
              float f = u2f (u | (s ? 0x80000000u : 0));
              _Float16 h = (_Float16) f;
              guint16 hb;
              memcpy (&hb, &h, 2);
              if (sd_f32_to_f16 (f) != hb)
                g_error ("f32 %a: ours 0x%04x, compiler 0x%04x", f, sd_f32_to_f16 (f), hb);
              checked++;
            }
        }
  g_test_message ("%" G_GUINT64_FORMAT " floats agree with _Float16", checked);
  (void) f2u;
}
#endif

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  for (guint i = 0; i < G_N_ELEMENTS (corrupt_json); i++)
    {
      g_autofree char *path = g_strdup_printf ("/safetensors/corrupt/%s", corrupt_json[i].name);
      g_test_add_data_func (path, GUINT_TO_POINTER (i), test_corrupt_json);
    }
  g_test_add_func ("/safetensors/corrupt/framing", test_corrupt_framing);
  g_test_add_func ("/safetensors/corrupt/sparse-100mb-header", test_sparse_100mb_header);
  g_test_add_func ("/safetensors/missing-file", test_missing_file);
  g_test_add_func ("/safetensors/valid/empty", test_valid_empty);
  g_test_add_func ("/safetensors/valid/metadata-zero-dim", test_valid_metadata_and_zero_dim);
  g_test_add_func ("/safetensors/valid/all-dtypes", test_valid_all_dtypes);
  g_test_add_func ("/safetensors/valid/escapes", test_valid_escapes);
  g_test_add_func ("/safetensors/header-only", test_header_only);
  g_test_add_func ("/half/roundtrip", test_half_roundtrip);
  g_test_add_func ("/half/rounding", test_half_rounding);
#ifdef __FLT16_MAX__
  g_test_add_func ("/half/vs-compiler", test_half_vs_compiler);
#endif
  return g_test_run ();
}

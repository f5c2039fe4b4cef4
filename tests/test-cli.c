/* test-cli.c: `impasto generate | img2img | inpaint` as a user runs them: the
 * binary ($IMPASTO_BIN) is spawned and its exit status, messages and output
 * files checked.
 *
 *   /cli/help/...  every subcommand's --help (no model, no GPU)
 *   /cli/bad/...   every class of bad input: a clear message, the documented
 *                  exit status, nothing at the output path (no model, no GPU)
 *   /cli/run/...   real runs with the tiny golden model at 64x64 (golden
 *                  suite; skipped loudly without the golden data): the PNG
 *                  and its parameters chunk, determinism, batches, img2img,
 *                  inpainting (pixels outside the mask untouched), Ctrl-C.
 */
#include "config.h"

#include <errno.h>
#include <gio/gio.h>
#include <glib/gstdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "commands.h"
#include "sd-image.h"
#include "test-util.h"

static char *tmpdir;

static const char *
bin (void)
{
  const char *b = g_getenv ("IMPASTO_BIN");
  if (!b)
    g_error ("IMPASTO_BIN is not set (run through meson test)");
  return b;
}

static char *
tmp_path (const char *name)
{
  return g_build_filename (tmpdir, name, NULL);
}

typedef struct
{
  int status;
  char *out, *err;
} Run;

static void
run_clear (Run *r)
{
  g_free (r->out);
  g_free (r->err);
}
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (Run, run_clear)

/* Run impasto with the given arguments (NULL-terminated). */
static void
run_impasto (Run *r, const char *first, ...)
{
  g_autoptr (GPtrArray) argv = g_ptr_array_new ();
  g_ptr_array_add (argv, (char *) bin ());
  va_list ap;
  va_start (ap, first);
  for (const char *a = first; a; a = va_arg (ap, const char *))
    g_ptr_array_add (argv, (char *) a);
  va_end (ap);
  g_ptr_array_add (argv, NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (GSubprocess) p
      = g_subprocess_newv ((const char *const *) argv->pdata,
                           G_SUBPROCESS_FLAGS_STDOUT_PIPE | G_SUBPROCESS_FLAGS_STDERR_PIPE, &error);
  g_assert_no_error (error);
  g_assert_true (g_subprocess_communicate_utf8 (p, NULL, NULL, &r->out, &r->err, &error));
  g_assert_no_error (error);
  g_assert_true (g_subprocess_get_if_exited (p));
  r->status = g_subprocess_get_exit_status (p);
}

static void
write_png (const char *path, int w, int h, int channels, guint8 value)
{
  g_autoptr (SdImage) img = sd_image_new (w, h, channels, NULL);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w * channels; x++)
      sd_image_row (img, y)[x] = (guint8) (value + x + 3 * y);
  g_autoptr (GError) error = NULL;
  g_assert_true (sd_image_save_png (img, path, -1, &error));
}

static void
write_bytes (const char *path, const void *data, gsize len)
{
  g_assert_true (g_file_set_contents (path, data, (gssize) len, NULL));
}

static void
chunk (GByteArray *a, const char *type, const guint8 *data, guint32 len)
{
  guint8 be[4] = { len >> 24, len >> 16, len >> 8, len };
  g_byte_array_append (a, be, 4);
  gsize start = a->len;
  g_byte_array_append (a, (const guint8 *) type, 4);
  if (len)
    g_byte_array_append (a, data, len);
  guint32 crc = crc32 (0, a->data + start, a->len - start);
  guint8 c[4] = { crc >> 24, crc >> 16, crc >> 8, crc };
  g_byte_array_append (a, c, 4);
}

/* The inputs every bad-input case draws from. */
static void
make_inputs (void)
{
  g_autofree char *init = tmp_path ("init.png");
  g_autofree char *init_rgba = tmp_path ("init-rgba.png");
  g_autofree char *mask = tmp_path ("mask.png");
  g_autofree char *mask_small = tmp_path ("mask-small.png");
  write_png (init, 64, 64, 3, 10);
  write_png (init_rgba, 64, 64, 4, 10);
  write_png (mask, 64, 64, 1, 0);
  write_png (mask_small, 32, 32, 1, 0);

  gchar *data;
  gsize len;
  g_assert_true (g_file_get_contents (init, &data, &len, NULL));
  g_autofree char *truncated = tmp_path ("truncated.png");
  write_bytes (truncated, data, len / 2);
  data[len - 20] ^= 0x40; /* inside the image data: a CRC error */
  g_autofree char *crc = tmp_path ("bad-crc.png");
  write_bytes (crc, data, len);
  g_free (data);

  /* a header claiming 100000 x 100000 RGB */
  static const guint8 sig[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n' };
  g_autoptr (GByteArray) huge = g_byte_array_new ();
  g_byte_array_append (huge, sig, 8);
  guint8 ihdr[13] = { 0, 1, 0x86, 0xa0, 0, 1, 0x86, 0xa0, 8, 2, 0, 0, 0 };
  chunk (huge, "IHDR", ihdr, 13);
  guint8 idat[64];
  uLongf n = sizeof idat;
  guint8 zeros[16] = { 0 };
  g_assert_cmpint (compress (idat, &n, zeros, sizeof zeros), ==, Z_OK);
  chunk (huge, "IDAT", idat, (guint32) n);
  chunk (huge, "IEND", NULL, 0);
  g_autofree char *huge_path = tmp_path ("huge.png");
  write_bytes (huge_path, huge->data, huge->len);

  static const guint8 jpeg[] = { 0xff, 0xd8, 0xff, 0xe0, 0, 16, 'J', 'F', 'I', 'F', 0, 1, 1, 0 };
  g_autofree char *jpg = tmp_path ("photo.png");
  write_bytes (jpg, jpeg, sizeof jpeg);
  g_autofree char *text = tmp_path ("notes.png");
  write_bytes (text, "just some text\n", 15);
  g_autofree char *empty = tmp_path ("empty.png");
  write_bytes (empty, "", 0);
  g_autofree char *dir = tmp_path ("a-folder.png");
  g_mkdir (dir, 0755);
}

/* ---- --help ------------------------------------------------------------------------ */

static void
test_help (gconstpointer data)
{
  const char *cmd = data;
  g_auto (Run) r = { 0 };
  run_impasto (&r, cmd, "--help", NULL);
  g_assert_cmpint (r.status, ==, 0);
  g_assert_nonnull (strstr (r.out, "Usage:"));
  if (!g_str_equal (cmd, "serve"))
    {
      g_assert_nonnull (strstr (r.out, "--prompt"));
      g_assert_nonnull (strstr (r.out, "Exit status"));
      g_assert_nonnull (strstr (r.out, "130"));
    }
  if (g_str_equal (cmd, "inpaint"))
    g_assert_nonnull (strstr (r.out, "--mask"));
  if (g_str_equal (cmd, "generate"))
    g_assert_null (strstr (r.out, "--init"));
}

/* ---- bad input --------------------------------------------------------------------- */

typedef struct
{
  const char *name;
  int status;          /* expected exit status */
  const char *message; /* expected in stderr */
  const char *args[16];
} BadCase;

/* @T@ is replaced by the temporary folder. No case gets as far as loading a
 * model (the model given does not even exist), so none needs a GPU. */
static const BadCase bad_cases[] = {
  { "size-not-multiple-of-8",
    IMP_EXIT_USAGE,
    "multiples of 8",
    { "generate", "-W", "100", "-H", "64" } },
  { "negative-size", IMP_EXIT_USAGE, "multiples of 8", { "generate", "-W", "-64" } },
  { "steps-zero", IMP_EXIT_USAGE, "steps", { "generate", "--steps", "0" } },
  { "steps-negative", IMP_EXIT_USAGE, "steps", { "generate", "--steps", "-5" } },
  { "steps-not-a-number", IMP_EXIT_USAGE, "steps", { "generate", "--steps", "many" } },
  { "cfg-negative", IMP_EXIT_USAGE, "guidance", { "generate", "--cfg", "-1" } },
  { "cfg-huge", IMP_EXIT_USAGE, "guidance", { "generate", "--cfg", "1000" } },
  { "cfg-nan", IMP_EXIT_USAGE, "guidance", { "generate", "--cfg", "nan" } },
  { "batch-zero", IMP_EXIT_USAGE, "batch", { "generate", "--batch", "0" } },
  { "unknown-sampler", IMP_EXIT_USAGE, "euler_a", { "generate", "--sampler", "heun" } },
  { "karras-ddim", IMP_EXIT_USAGE, "Karras", { "generate", "--sampler", "ddim", "--karras" } },
  { "bad-seed", IMP_EXIT_USAGE, "--seed", { "generate", "--seed", "12abc" } },
  { "unknown-option", IMP_EXIT_USAGE, "--frobnicate", { "generate", "--frobnicate" } },
  { "stray-argument", IMP_EXIT_USAGE, "unexpected argument", { "generate", "an apple" } },
  { "init-for-generate", IMP_EXIT_USAGE, "--init", { "generate", "--init", "@T@/init.png" } },
  { "output-folder-missing",
    IMP_EXIT_USAGE,
    "does not exist",
    { "generate", "-o", "@T@/no/such/dir/x.png" } },
  { "output-is-a-folder", IMP_EXIT_USAGE, "folder", { "generate", "-o", "@T@/a-folder.png" } },
  { "strength-zero",
    IMP_EXIT_USAGE,
    "strength",
    { "img2img", "-i", "@T@/init.png", "--strength", "0" } },
  { "strength-above-one",
    IMP_EXIT_USAGE,
    "strength",
    { "img2img", "-i", "@T@/init.png", "--strength", "1.5" } },
  { "strength-no-step",
    IMP_EXIT_USAGE,
    "runs no step",
    { "img2img", "-i", "@T@/init.png", "--steps", "2", "--strength", "0.3" } },
  { "init-missing-option", IMP_EXIT_USAGE, "--init", { "img2img" } },
  { "init-missing-file", IMP_EXIT_INPUT, "no-such.png", { "img2img", "-i", "@T@/no-such.png" } },
  { "init-unreadable", IMP_EXIT_INPUT, "a-folder.png", { "img2img", "-i", "@T@/a-folder.png" } },
  { "init-truncated", IMP_EXIT_INPUT, "init image", { "img2img", "-i", "@T@/truncated.png" } },
  { "init-bad-crc", IMP_EXIT_INPUT, "init image", { "img2img", "-i", "@T@/bad-crc.png" } },
  { "init-huge", IMP_EXIT_INPUT, "init image", { "img2img", "-i", "@T@/huge.png" } },
  { "init-jpeg", IMP_EXIT_INPUT, "JPEG", { "img2img", "-i", "@T@/photo.png" } },
  { "init-text", IMP_EXIT_INPUT, "not a PNG", { "img2img", "-i", "@T@/notes.png" } },
  { "init-empty", IMP_EXIT_INPUT, "init image", { "img2img", "-i", "@T@/empty.png" } },
  { "init-size-mismatch",
    IMP_EXIT_USAGE,
    "64x64",
    { "img2img", "-i", "@T@/init.png", "-W", "128", "-H", "64" } },
  { "mask-missing-option", IMP_EXIT_USAGE, "--mask", { "inpaint", "-i", "@T@/init.png" } },
  { "mask-missing-file",
    IMP_EXIT_INPUT,
    "mask",
    { "inpaint", "-i", "@T@/init.png", "--mask", "@T@/nope.png" } },
  { "mask-corrupt",
    IMP_EXIT_INPUT,
    "mask",
    { "inpaint", "-i", "@T@/init.png", "--mask", "@T@/bad-crc.png" } },
  { "mask-wrong-size",
    IMP_EXIT_INPUT,
    "same size",
    { "inpaint", "-i", "@T@/init.png", "--mask", "@T@/mask-small.png" } },
  { "mask-blur-negative",
    IMP_EXIT_USAGE,
    "mask blur",
    { "inpaint", "-i", "@T@/init.png", "--mask", "@T@/mask.png", "--mask-blur", "-2" } },
  { "model-missing",
    IMP_EXIT_INPUT,
    "no such file",
    { "generate", "-m", "@T@/no-model.safetensors" } },
  { "model-name-unknown", IMP_EXIT_INPUT, "not found", { "generate", "-m", "no-such-model-name" } },
};

static void
test_bad (gconstpointer data)
{
  const BadCase *c = data;
  g_autofree char *out = tmp_path ("out.png");
  g_autoptr (GPtrArray) argv = g_ptr_array_new_with_free_func (g_free);
  g_ptr_array_add (argv, g_strdup (bin ()));
  g_ptr_array_add (argv, g_strdup (c->args[0]));
  /* defaults first, so the case's own options win (the last one counts): a
   * model that does not exist, as every case must fail before loading one */
  g_ptr_array_add (argv, g_strdup ("-m"));
  g_ptr_array_add (argv, g_build_filename (tmpdir, "never-loaded.safetensors", NULL));
  g_ptr_array_add (argv, g_strdup ("-o"));
  g_ptr_array_add (argv, g_strdup (out));
  g_ptr_array_add (argv, g_strdup ("--seed"));
  g_ptr_array_add (argv, g_strdup ("1"));
  for (int i = 1; c->args[i]; i++)
    {
      g_autoptr (GString) a = g_string_new (c->args[i]);
      g_string_replace (a, "@T@", tmpdir, 0);
      g_ptr_array_add (argv, g_string_free (g_steal_pointer (&a), FALSE));
    }
  g_ptr_array_add (argv, NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (GSubprocessLauncher) l
      = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_STDOUT_PIPE | G_SUBPROCESS_FLAGS_STDERR_PIPE);
  /* no user model folders */
  g_subprocess_launcher_setenv (l, "XDG_DATA_HOME", tmpdir, TRUE);
  g_subprocess_launcher_unsetenv (l, "IMPASTO_MODEL_PATH");
  g_autoptr (GSubprocess) p
      = g_subprocess_launcher_spawnv (l, (const char *const *) argv->pdata, &error);
  g_assert_no_error (error);
  g_autofree char *o = NULL, *e = NULL;
  g_assert_true (g_subprocess_communicate_utf8 (p, NULL, NULL, &o, &e, &error));
  g_assert_true (g_subprocess_get_if_exited (p));
  int status = g_subprocess_get_exit_status (p);
  g_test_message ("%s: exit %d: %s", c->name, status, e);
  if (status != c->status || !strstr (e, c->message) || !g_str_has_prefix (e, "impasto "))
    g_error ("%s: exit %d (want %d), stderr '%s' (want '%s')", c->name, status, c->status, e,
             c->message);
  g_assert_false (g_file_test (out, G_FILE_TEST_EXISTS));
}

/* ---- real runs (golden suite) ------------------------------------------------------ */

static const char *
tiny_model (const char *which)
{
  static char path[2][4096];
  const char *golden = test_require_golden ();
  if (!golden)
    return NULL;
  int k = g_str_equal (which, "sd15-tiny-inpaint");
  g_autofree char *p = g_build_filename (golden, which, "diffusers", NULL);
  if (!g_file_test (p, G_FILE_TEST_IS_DIR))
    {
      g_test_skip_printf ("golden model %s not found", p);
      return NULL;
    }
  g_strlcpy (path[k], p, sizeof path[k]);
  return path[k];
}

static SdImage *
load (const char *path)
{
  g_autoptr (GError) error = NULL;
  SdImage *img = sd_image_load_png (path, 0, NULL, &error);
  g_assert_no_error (error);
  return img;
}

static void
test_run_generate (void)
{
  const char *model = tiny_model ("sd15-tiny");
  if (!model)
    return;
  g_autofree char *a = tmp_path ("gen-a.png");
  g_autofree char *b = tmp_path ("gen-b.png");
  g_auto (Run) r1 = { 0 };
  run_impasto (&r1, "generate", "-m", model, "-p", "a red apple", "-n", "blurry", "-W", "64", "-H",
               "64", "--steps", "2", "--seed", "42", "--sampler", "euler_a", "-o", a, NULL);
  if (r1.status != 0)
    g_error ("generate failed (%d): %s", r1.status, r1.err);
  g_assert_nonnull (strstr (r1.out, "seed: 42"));
  g_assert_nonnull (strstr (r1.err, "step 2/2")); /* not a terminal: plain progress lines */
  g_autoptr (SdImage) img = load (a);
  g_assert_cmpint (img->width, ==, 64);
  g_assert_cmpint (img->channels, ==, 3);
  const char *text = sd_image_get_text (img, "parameters");
  g_assert_nonnull (text);
  SdGenParams gp;
  sd_gen_params_init (&gp);
  g_assert_true (sd_parse_parameters (text, &gp, NULL, NULL));
  g_assert_cmpstr (gp.prompt, ==, "a red apple");
  g_assert_cmpstr (gp.negative_prompt, ==, "blurry");
  g_assert_cmpint (gp.steps, ==, 2);
  g_assert_cmpstr (gp.sampler, ==, "Euler a");
  g_assert_cmpint (gp.seed, ==, 42);
  g_assert_cmpint (gp.width, ==, 64);
  g_assert_cmpstr (gp.model, ==, "sd15-tiny");
  sd_gen_params_clear (&gp);

  /* the same seed gives the same bytes */
  g_auto (Run) r2 = { 0 };
  run_impasto (&r2, "generate", "-m", model, "-p", "a red apple", "-n", "blurry", "-W", "64", "-H",
               "64", "--steps", "2", "--seed", "42", "--sampler", "Euler a", "-o", b, "-q", NULL);
  g_assert_cmpint (r2.status, ==, 0);
  g_autofree char *da = NULL, *db = NULL;
  gsize la, lb;
  g_assert_true (g_file_get_contents (a, &da, &la, NULL));
  g_assert_true (g_file_get_contents (b, &db, &lb, NULL));
  g_assert_cmpmem (da, la, db, lb);
  g_assert_cmpstr (r2.err, ==, ""); /* --quiet */

  /* no seed: a random one, printed, and in the file */
  g_autofree char *c = tmp_path ("gen-c.png");
  g_auto (Run) r3 = { 0 };
  run_impasto (&r3, "generate", "-m", model, "-W", "64", "-H", "64", "--steps", "1", "-o", c, "-q",
               NULL);
  g_assert_cmpint (r3.status, ==, 0);
  guint64 seed = 0;
  g_assert_nonnull (strstr (r3.out, "seed: "));
  seed = g_ascii_strtoull (strstr (r3.out, "seed: ") + 6, NULL, 10);
  g_autoptr (SdImage) ic = load (c);
  g_autofree char *want = g_strdup_printf ("Seed: %" G_GUINT64_FORMAT ",", seed);
  g_assert_nonnull (strstr (sd_image_get_text (ic, "parameters"), want));
}

static void
test_run_batch (void)
{
  const char *model = tiny_model ("sd15-tiny");
  if (!model)
    return;
  g_autofree char *out = tmp_path ("batch.png");
  g_auto (Run) r = { 0 };
  run_impasto (&r, "generate", "-m", model, "-p", "x", "-W", "64", "-H", "64", "--steps", "1",
               "--seed", "7", "--batch", "2", "-o", out, "-q", NULL);
  g_assert_cmpint (r.status, ==, 0);
  g_assert_false (g_file_test (out, G_FILE_TEST_EXISTS));
  for (int i = 1; i <= 2; i++)
    {
      g_autofree char *name = g_strdup_printf ("batch-%d.png", i);
      g_autofree char *p = tmp_path (name);
      g_autoptr (SdImage) img = load (p);
      g_autofree char *want = g_strdup_printf ("Seed: %d,", 7 + i - 1);
      g_assert_nonnull (strstr (sd_image_get_text (img, "parameters"), want));
    }
  /* image 2 of the batch is the seed-8 image made alone */
  g_autofree char *alone = tmp_path ("alone.png");
  g_auto (Run) r2 = { 0 };
  run_impasto (&r2, "generate", "-m", model, "-p", "x", "-W", "64", "-H", "64", "--steps", "1",
               "--seed", "8", "-o", alone, "-q", NULL);
  g_assert_cmpint (r2.status, ==, 0);
  g_autofree char *second = tmp_path ("batch-2.png");
  g_autoptr (SdImage) x = load (second);
  g_autoptr (SdImage) y = load (alone);
  for (int row = 0; row < 64; row++)
    g_assert_cmpmem (sd_image_row (x, row), 64 * 3, sd_image_row (y, row), 64 * 3);
}

static void
test_run_img2img (void)
{
  const char *model = tiny_model ("sd15-tiny");
  if (!model)
    return;
  g_autofree char *init = tmp_path ("init.png");
  g_autofree char *out = tmp_path ("i2i.png");
  g_auto (Run) r = { 0 };
  run_impasto (&r, "img2img", "-m", model, "-p", "x", "-i", init, "--steps", "4", "--strength",
               "0.5", "--seed", "3", "-o", out, "-q", NULL);
  if (r.status != 0)
    g_error ("img2img failed (%d): %s", r.status, r.err);
  g_autoptr (SdImage) img = load (out);
  g_assert_cmpint (img->width, ==, 64);
  g_assert_nonnull (strstr (sd_image_get_text (img, "parameters"), "Denoising strength: 0.5"));

  /* an init image that is not a multiple of 8: its size rounded down, with a note */
  g_autofree char *odd = tmp_path ("odd.png");
  write_png (odd, 69, 66, 3, 50);
  g_autofree char *out2 = tmp_path ("i2i-odd.png");
  g_auto (Run) r2 = { 0 };
  run_impasto (&r2, "img2img", "-m", model, "-i", odd, "--steps", "2", "--strength", "0.5", "-o",
               out2, NULL);
  if (r2.status != 0)
    g_error ("img2img failed (%d): %s", r2.status, r2.err);
  g_assert_nonnull (strstr (r2.err, "note:"));
  g_autoptr (SdImage) img2 = load (out2);
  g_assert_cmpint (img2->width, ==, 64);
  g_assert_cmpint (img2->height, ==, 64);
}

/* What the user leaves out comes from the model's defaults: a model whose
 * name says Turbo gets 4 steps without guidance (sd_pipeline_get_defaults). */
static void
test_run_model_defaults (void)
{
  const char *model = tiny_model ("sd15-tiny");
  if (!model)
    return;
  g_autofree char *link = tmp_path ("tiny-turbo");
  g_unlink (link);
  g_assert_cmpint (symlink (model, link), ==, 0);
  g_autofree char *out = tmp_path ("turbo.png");
  g_auto (Run) r = { 0 };
  run_impasto (&r, "generate", "-m", link, "-p", "x", "-W", "64", "-H", "64", "--seed", "2", "-o",
               out, NULL);
  if (r.status != 0)
    g_error ("generate failed (%d): %s", r.status, r.err);
  g_assert_nonnull (strstr (r.err, "model defaults"));
  g_assert_nonnull (strstr (r.err, "Turbo"));
  g_autoptr (SdImage) img = load (out);
  const char *text = sd_image_get_text (img, "parameters");
  g_assert_nonnull (strstr (text, "Steps: 4,"));
  g_assert_nonnull (strstr (text, "CFG scale: 0,"));
  g_assert_nonnull (strstr (text, "Model: tiny-turbo"));
}

/* Every pixel the (unblurred) mask leaves alone is the init image's, exactly. */
static void
check_outside_mask (const char *init_path, const char *mask_path, const char *out_path)
{
  g_autoptr (SdImage) init = load (init_path);
  g_autoptr (SdImage) mask = load (mask_path);
  g_autoptr (SdImage) out = load (out_path);
  g_assert_cmpint (out->width, ==, init->width);
  g_assert_cmpint (out->height, ==, init->height);
  int changed_in = 0;
  for (int y = 0; y < init->height; y++)
    for (int x = 0; x < init->width; x++)
      {
        const guint8 *a = sd_image_row (init, y) + x * 3, *b = sd_image_row (out, y) + x * 3;
        gboolean same = a[0] == b[0] && a[1] == b[1] && a[2] == b[2];
        if (sd_image_row (mask, y)[x] == 0 && !same)
          g_error ("pixel (%d, %d) outside the mask changed", x, y);
        changed_in += !same;
      }
  g_assert_cmpint (changed_in, >, 0);
}

static void
test_run_inpaint (void)
{
  const char *model = tiny_model ("sd15-tiny");
  const char *inpaint_model = model ? tiny_model ("sd15-tiny-inpaint") : NULL;
  if (!inpaint_model)
    return;
  g_autofree char *init = tmp_path ("init.png");
  g_autofree char *mask = tmp_path ("mask-square.png");
  g_autoptr (SdImage) m = sd_image_new (64, 64, 1, NULL);
  for (int y = 16; y < 40; y++)
    memset (sd_image_row (m, y) + 20, 255, 24);
  g_assert_true (sd_image_save_png (m, mask, -1, NULL));
  const char *models[] = { model, inpaint_model };
  for (guint k = 0; k < 2; k++)
    for (int full_res = 0; full_res < 2; full_res++)
      {
        g_autofree char *name = g_strdup_printf ("inpaint-%u-%d.png", k, full_res);
        g_autofree char *out = tmp_path (name);
        g_auto (Run) r = { 0 };
        if (full_res)
          run_impasto (&r, "inpaint", "-m", models[k], "-p", "x", "-i", init, "--mask", mask,
                       "--steps", "2", "--seed", "5", "--mask-blur", "0", "-o", out, "-q",
                       "--full-res", "--full-res-padding", "4", "-W", "64", "-H", "64", NULL);
        else
          run_impasto (&r, "inpaint", "-m", models[k], "-p", "x", "-i", init, "--mask", mask,
                       "--steps", "2", "--seed", "5", "--mask-blur", "0", "-o", out, "-q", NULL);
        if (r.status != 0)
          g_error ("inpaint failed (%d): %s", r.status, r.err);
        check_outside_mask (init, mask, out);
      }
  /* the alpha of an RGBA mask */
  g_autoptr (SdImage) ma = sd_image_new (64, 64, 4, NULL);
  for (int y = 16; y < 40; y++)
    for (int x = 20; x < 44; x++)
      sd_image_row (ma, y)[x * 4 + 3] = 255;
  g_autofree char *mask_rgba = tmp_path ("mask-rgba.png");
  g_assert_true (sd_image_save_png (ma, mask_rgba, -1, NULL));
  g_autofree char *out = tmp_path ("inpaint-rgba.png");
  g_auto (Run) r = { 0 };
  run_impasto (&r, "inpaint", "-m", model, "-i", init, "--mask", mask_rgba, "--steps", "2",
               "--mask-blur", "0", "-o", out, "-q", NULL);
  g_assert_cmpint (r.status, ==, 0);
  check_outside_mask (init, mask, out);
}

/* Ctrl-C while sampling: exit 130, nothing at the output path. */
static void
test_run_interrupt (void)
{
  const char *model = tiny_model ("sd15-tiny");
  if (!model)
    return;
  g_autofree char *out = tmp_path ("interrupted.png");
  const char *argv[] = { bin (),    "generate", "-m",     model, "-W", "64", "-H", "64",
                         "--steps", "200",      "--seed", "1",   "-o", out,  NULL };
  g_autoptr (GError) error = NULL;
  g_autoptr (GSubprocess) p = g_subprocess_newv (
      argv, G_SUBPROCESS_FLAGS_STDOUT_SILENCE | G_SUBPROCESS_FLAGS_STDERR_PIPE, &error);
  g_assert_no_error (error);
  g_autoptr (GDataInputStream) in = g_data_input_stream_new (g_subprocess_get_stderr_pipe (p));
  gboolean stepping = FALSE;
  for (;;)
    {
      g_autofree char *line = g_data_input_stream_read_line_utf8 (in, NULL, NULL, &error);
      g_assert_no_error (error);
      if (!line)
        break;
      if (g_str_has_prefix (line, "step 2/"))
        {
          stepping = TRUE;
          break;
        }
    }
  g_assert_true (stepping);
  g_subprocess_send_signal (p, SIGINT);
  g_autofree char *rest = NULL;
  g_autoptr (GBytes) tail = NULL;
  g_assert_true (g_subprocess_communicate (p, NULL, NULL, NULL, &tail, &error));
  g_assert_true (g_subprocess_get_if_exited (p));
  g_assert_cmpint (g_subprocess_get_exit_status (p), ==, IMP_EXIT_CANCELLED);
  rest = g_strndup (g_bytes_get_data (tail, NULL), g_bytes_get_size (tail));
  g_assert_nonnull (strstr (rest, "interrupted"));
  g_assert_false (g_file_test (out, G_FILE_TEST_EXISTS));
  /* and no temporary file left beside it */
  g_autoptr (GDir) d = g_dir_open (tmpdir, 0, NULL);
  const char *n;
  while ((n = g_dir_read_name (d)))
    g_assert_false (g_str_has_prefix (n, "interrupted"));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  tmpdir = g_dir_make_tmp ("impasto-cli-XXXXXX", NULL);
  make_inputs ();
  const char *cmds[] = { "generate", "img2img", "inpaint", "serve" };
  for (guint i = 0; i < G_N_ELEMENTS (cmds); i++)
    {
      g_autofree char *path = g_strdup_printf ("/cli/help/%s", cmds[i]);
      g_test_add_data_func (path, cmds[i], test_help);
    }
  for (guint i = 0; i < G_N_ELEMENTS (bad_cases); i++)
    {
      g_autofree char *path = g_strdup_printf ("/cli/bad/%s", bad_cases[i].name);
      g_test_add_data_func (path, &bad_cases[i], test_bad);
    }
  g_test_add_func ("/cli/run/generate", test_run_generate);
  g_test_add_func ("/cli/run/batch", test_run_batch);
  g_test_add_func ("/cli/run/img2img", test_run_img2img);
  g_test_add_func ("/cli/run/model-defaults", test_run_model_defaults);
  g_test_add_func ("/cli/run/inpaint", test_run_inpaint);
  g_test_add_func ("/cli/run/interrupt", test_run_interrupt);
  int rc = g_test_run ();
  g_autofree char *cmd = g_strdup_printf ("rm -rf '%s'", tmpdir);
  if (system (cmd) != 0)
    g_printerr ("could not remove %s\n", tmpdir);
  g_free (tmpdir);
  return rc;
}

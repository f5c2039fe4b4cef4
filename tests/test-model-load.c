/* test-model-load.c: model sources, naming and detection.
 *
 *  - every form of each tiny golden model (diffusers folder, fp32 / fp16 single
 *    files) gives IDENTICAL internal tensors: names, shapes and float32 values;
 *  - the detected configuration matches the manifest's model config;
 *  - the full-size SD 1.5 and SDXL shape tables (single file and diffusers),
 *    turned into header-only files, are recognised with the right architecture
 *    and parameter counts, and both forms map to the same internal tensors;
 *  - pickles and unknown layouts are refused; missing, mis-shaped and unknown
 *    tensors are reported; SD 2 (open_clip) and refiner layouts, sharded
 *    diffusers weights.
 */
#include "config.h"

#include <string.h>

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include "safetensors.h"
#include "sd-error.h"
#include "sd-model.h"
#include "test-util.h"

/* ----------------------------------------------------------------- helpers */

static const char *
require_sdxl (void)
{
  const char *d = test_golden_sdxl_dir ();
  if (d == NULL)
    g_test_skip ("SDXL golden data not found: set IMPASTO_GOLDEN_SDXL_DIR or put it at ../shared/golden-sdxl");
  return d;
}

static SdModel *
open_model (const char *path, const SdOpenOptions *opt)
{
  g_autoptr (GError) error = NULL;
  SdModel *m = sd_model_open (path, opt, &error);
  if (m == NULL)
    g_error ("opening %s: %s", path, error->message);
  return m;
}

static void
dump_list (const char *what, GPtrArray *list)
{
  for (guint i = 0; i < list->len && i < 20; i++)
    g_printerr ("  %s: %s\n", what, (const char *) g_ptr_array_index (list, i));
}

static void
assert_clean (SdModel *m)
{
  g_autoptr (GPtrArray) u = sd_model_get_unknown (m);
  g_autoptr (GPtrArray) mi = sd_model_get_missing (m);
  g_autoptr (GPtrArray) ms = sd_model_get_misshaped (m);
  if (u->len || mi->len || ms->len)
    {
      dump_list ("unknown", u);
      dump_list ("missing", mi);
      dump_list ("misshaped", ms);
      g_error ("%s: %u unknown, %u missing, %u mis-shaped tensors", sd_model_get_path (m), u->len, mi->len,
               ms->len);
    }
}

/* Same internal names and shapes; values too when with_values. */
static void
assert_same_tensors (SdModel *a, SdModel *b, gboolean with_values)
{
  g_autoptr (GPtrArray) na = sd_model_list_tensors (a);
  g_autoptr (GPtrArray) nb = sd_model_list_tensors (b);
  for (guint i = 0; i < MIN (na->len, nb->len); i++)
    if (strcmp (g_ptr_array_index (na, i), g_ptr_array_index (nb, i)) != 0)
      g_error ("tensor %u: %s in %s but %s in %s", i, (char *) g_ptr_array_index (na, i), sd_model_get_path (a),
               (char *) g_ptr_array_index (nb, i), sd_model_get_path (b));
  if (na->len != nb->len)
    g_error ("%u tensors in %s, %u in %s", na->len, sd_model_get_path (a), nb->len, sd_model_get_path (b));
  for (guint i = 0; i < na->len; i++)
    {
      const char *name = g_ptr_array_index (na, i);
      const SdTensorInfo *ta = sd_model_lookup (a, name), *tb = sd_model_lookup (b, name);
      g_assert_nonnull (ta);
      g_assert_nonnull (tb);
      g_assert_cmpstr (ta->name, ==, name);
      if (ta->ndim != tb->ndim || memcmp (ta->shape, tb->shape, sizeof (gint64) * ta->ndim) != 0)
        g_error ("%s: shapes differ between %s and %s", name, sd_model_get_path (a), sd_model_get_path (b));
      g_assert_cmpint (ta->n_elements, ==, tb->n_elements);
      if (!with_values)
        continue;
      gsize n = (gsize) ta->n_elements;
      float *va = g_new (float, MAX (n, 1)), *vb = g_new (float, MAX (n, 1));
      g_autoptr (GError) error = NULL;
      g_assert_true (sd_model_read_f32 (a, name, va, n, &error));
      g_assert_no_error (error);
      g_assert_true (sd_model_read_f32 (b, name, vb, n, &error));
      g_assert_no_error (error);
      for (gsize k = 0; k < n; k++)
        if (memcmp (&va[k], &vb[k], 4) != 0)
          g_error ("%s[%" G_GSIZE_FORMAT "]: %g in %s, %g in %s", name, k, va[k], sd_model_get_path (a), vb[k],
                   sd_model_get_path (b));
      g_free (va);
      g_free (vb);
    }
}

static JsonNode *
load_manifest_model (const char *dir, const char *model)
{
  g_autofree char *path = g_build_filename (dir, "manifest.json", NULL);
  g_autoptr (JsonParser) p = json_parser_new ();
  g_autoptr (GError) error = NULL;
  g_assert_true (json_parser_load_from_file (p, path, &error));
  JsonObject *models = json_object_get_object_member (json_node_get_object (json_parser_get_root (p)), "models");
  g_assert_nonnull (models);
  return json_node_copy (json_object_get_member (models, model));
}

static gint64
jint (JsonObject *o, const char *key, gint64 dflt)
{
  JsonNode *n = json_object_has_member (o, key) ? json_object_get_member (o, key) : NULL;
  if (n == NULL || JSON_NODE_HOLDS_NULL (n))
    return dflt;
  return json_node_get_int (n);
}

/* An int or list entry i (an int applies to every level). */
static gint64
jlist (JsonObject *o, const char *key, int i, gint64 dflt)
{
  JsonNode *n = json_object_has_member (o, key) ? json_object_get_member (o, key) : NULL;
  if (n == NULL || JSON_NODE_HOLDS_NULL (n))
    return dflt;
  if (JSON_NODE_HOLDS_ARRAY (n))
    return json_array_get_int_element (json_node_get_array (n), (guint) i);
  return json_node_get_int (n);
}

static void
check_text (const SdTextEncoderConfig *t, JsonObject *o)
{
  g_assert_true (t->present);
  g_assert_cmpint (t->hidden, ==, jint (o, "hidden_size", -1));
  g_assert_cmpint (t->n_layers, ==, jint (o, "num_hidden_layers", -1));
  g_assert_cmpint (t->n_heads, ==, jint (o, "num_attention_heads", -1));
  g_assert_cmpint (t->intermediate, ==, jint (o, "intermediate_size", -1));
  g_assert_cmpint (t->vocab_size, ==, jint (o, "vocab_size", -1));
  g_assert_cmpint (t->max_positions, ==, jint (o, "max_position_embeddings", -1));
  g_assert_cmpint (t->pad_id, ==, jint (o, "pad_id", -1));
  g_assert_cmpint (t->bos_id, ==, jint (o, "bos_id", -1));
  g_assert_cmpint (t->eos_id, ==, jint (o, "eos_id", -1));
  g_assert_cmpint (t->projection_dim, ==, jint (o, "projection_dim", 0));
  const char *act = json_object_get_string_member (o, "hidden_act");
  g_assert_cmpint (t->act, ==, strcmp (act, "gelu") == 0 ? SD_ACT_GELU : SD_ACT_QUICK_GELU);
}

/* The detected configuration against the manifest's description of the model. */
static void
check_against_manifest (SdModel *m, JsonObject *mm, SdArch arch)
{
  const SdModelConfig *c = sd_model_get_config (m);
  g_test_message ("checking %s against the manifest", sd_model_get_path (m));
  g_assert_cmpint (c->arch, ==, arch);

  JsonObject *u = json_object_get_object_member (mm, "unet");
  const SdUNetConfig *uc = &c->unet;
  g_assert_cmpint (uc->in_channels, ==, jint (u, "in_channels", -1));
  g_assert_cmpint (uc->out_channels, ==, jint (u, "out_channels", -1));
  g_assert_cmpint (c->inpainting, ==, jint (u, "in_channels", -1) == 9);
  JsonArray *boc = json_object_get_array_member (u, "block_out_channels");
  g_assert_cmpint (uc->n_levels, ==, json_array_get_length (boc));
  JsonArray *down = json_object_get_array_member (u, "down_block_types");
  for (int i = 0; i < uc->n_levels; i++)
    {
      g_assert_cmpint (uc->block_out_channels[i], ==, json_array_get_int_element (boc, i));
      gboolean attn = strcmp (json_array_get_string_element (down, i), "CrossAttnDownBlock2D") == 0;
      g_assert_cmpint (uc->level_has_attn[i], ==, attn);
      if (attn)
        {
          g_assert_cmpint (uc->num_heads[i], ==, jlist (u, "attention_head_dim", i, -1));
          g_assert_cmpint (uc->num_heads[i] * uc->head_dim[i], ==, uc->block_out_channels[i]);
          g_assert_cmpint (uc->transformer_depth[i], ==, jlist (u, "transformer_layers_per_block", i, 1));
        }
    }
  int last = uc->n_levels - 1;
  g_assert_true (uc->has_mid_attn);
  g_assert_cmpint (uc->num_heads_mid, ==, jlist (u, "attention_head_dim", last, -1));
  g_assert_cmpint (uc->transformer_depth_mid, ==, jlist (u, "transformer_layers_per_block", last, 1));
  g_assert_true (uc->heads_known);
  g_assert_cmpint (uc->layers_per_block, ==, jint (u, "layers_per_block", -1));
  g_assert_cmpint (uc->context_dim, ==, jint (u, "cross_attention_dim", -1));
  g_assert_cmpint (uc->use_linear_projection, ==, json_object_get_boolean_member (u, "use_linear_projection"));
  g_assert_cmpint (uc->norm_groups, ==, jint (u, "norm_num_groups", -1));
  g_assert_cmpint (uc->time_proj_dim, ==, json_array_get_int_element (boc, 0));
  g_assert_cmpint (uc->time_embed_dim, ==, 4 * json_array_get_int_element (boc, 0));
  g_assert_cmpint (uc->addition_time_embed_dim, ==, jint (u, "addition_time_embed_dim", 0));
  g_assert_cmpint (uc->projection_class_embeddings_input_dim, ==, jint (u, "projection_class_embeddings_input_dim", 0));
  if (arch == SD_ARCH_SDXL)
    {
      g_assert_cmpint (uc->n_time_ids, ==, 6);
      g_assert_cmpint (uc->pooled_dim, ==, c->text_encoder_2.projection_dim);
      g_assert_cmpint (uc->pooled_dim + uc->n_time_ids * uc->addition_time_embed_dim, ==,
                       uc->projection_class_embeddings_input_dim);
    }

  JsonObject *v = json_object_get_object_member (mm, "vae");
  const SdVaeConfig *vc = &c->vae;
  JsonArray *vboc = json_object_get_array_member (v, "block_out_channels");
  g_assert_cmpint (vc->n_levels, ==, json_array_get_length (vboc));
  for (int i = 0; i < vc->n_levels; i++)
    g_assert_cmpint (vc->block_out_channels[i], ==, json_array_get_int_element (vboc, i));
  g_assert_cmpint (vc->layers_per_block, ==, jint (v, "layers_per_block", -1));
  g_assert_cmpint (vc->latent_channels, ==, jint (v, "latent_channels", -1));
  g_assert_cmpint (vc->in_channels, ==, jint (v, "in_channels", -1));
  g_assert_cmpint (vc->out_channels, ==, jint (v, "out_channels", -1));
  g_assert_cmpint (vc->norm_groups, ==, jint (v, "norm_num_groups", -1));
  g_assert_cmpfloat_with_epsilon (vc->scaling_factor, json_object_get_double_member (mm, "scaling_factor"), 1e-7);
  g_assert_true (vc->has_encoder && vc->has_decoder);

  check_text (&c->text_encoder, json_object_get_object_member (mm, "text_encoder"));
  if (json_object_has_member (mm, "text_encoder_2"))
    check_text (&c->text_encoder_2, json_object_get_object_member (mm, "text_encoder_2"));
  else
    g_assert_false (c->text_encoder_2.present);

  JsonObject *s = json_object_get_object_member (mm, "scheduler_config");
  const SdSchedulerConfig *sc = &c->scheduler;
  g_assert_cmpint (sc->num_train_timesteps, ==, jint (s, "num_train_timesteps", -1));
  g_assert_cmpfloat_with_epsilon (sc->beta_start, json_object_get_double_member (s, "beta_start"), 1e-12);
  g_assert_cmpfloat_with_epsilon (sc->beta_end, json_object_get_double_member (s, "beta_end"), 1e-12);
  g_assert_cmpstr (sc->beta_schedule, ==, json_object_get_string_member (s, "beta_schedule"));
  g_assert_cmpint (sc->steps_offset, ==, jint (s, "steps_offset", -1));
  g_assert_cmpstr (sc->timestep_spacing, ==, json_object_get_string_member (s, "timestep_spacing"));
  const char *pt = json_object_get_string_member (mm, "prediction_type");
  g_assert_cmpint (sc->prediction, ==, strcmp (pt, "v_prediction") == 0 ? SD_PREDICTION_V : SD_PREDICTION_EPSILON);
  if (sd_model_get_format (m) == SD_MODEL_FORMAT_DIFFUSERS)
    g_assert_true (sc->prediction_known);
  if (json_object_has_member (mm, "force_zeros_for_empty_prompt"))
    g_assert_cmpint (c->force_zeros_for_empty_prompt, ==,
                     json_object_get_boolean_member (mm, "force_zeros_for_empty_prompt"));
}

/* Options giving a single file what its configs would: the manifest's UNet
 * config and the text encoders' head counts (as check-golden does). */
typedef struct
{
  SdOpenOptions opt;
  char *unet, *te, *te2;
} ManifestOptions;

static void
manifest_options_init (ManifestOptions *mo, JsonObject *mm)
{
  memset (mo, 0, sizeof *mo);
  mo->unet = json_to_string (json_object_get_member (mm, "unet"), FALSE);
  mo->te = json_to_string (json_object_get_member (mm, "text_encoder"), FALSE);
  if (json_object_has_member (mm, "text_encoder_2"))
    mo->te2 = json_to_string (json_object_get_member (mm, "text_encoder_2"), FALSE);
  mo->opt.unet_config_json = mo->unet;
  mo->opt.text_encoder_config_json = mo->te;
  mo->opt.text_encoder_2_config_json = mo->te2;
}

static void
manifest_options_clear (ManifestOptions *mo)
{
  g_free (mo->unet);
  g_free (mo->te);
  g_free (mo->te2);
}

/* ------------------------------------------------------ golden tiny models */

static void
check_forms (const char *dir, const char *model, const char *const *forms, SdArch arch)
{
  g_autoptr (JsonNode) mm = load_manifest_model (dir, model);
  JsonObject *mo = json_node_get_object (mm);
  JsonObject *f = json_object_get_object_member (mo, "forms");
  ManifestOptions opts;
  manifest_options_init (&opts, mo);
  SdModel *first = NULL;
  for (int i = 0; forms[i]; i++)
    {
      g_autofree char *path = g_build_filename (dir, json_object_get_string_member (f, forms[i]), NULL);
      gboolean diffusers = strcmp (forms[i], "diffusers") == 0;
      SdModel *m = open_model (path, diffusers ? NULL : &opts.opt);
      g_assert_cmpint (sd_model_get_format (m), ==, diffusers ? SD_MODEL_FORMAT_DIFFUSERS : SD_MODEL_FORMAT_SINGLE_FILE);
      assert_clean (m);
      check_against_manifest (m, mo, arch);
      if (first == NULL)
        first = m;
      else
        {
          assert_same_tensors (first, m, TRUE);
          for (int c = 0; c < 4; c++)
            {
              static const char *const comps[] = { "unet", "vae", "text_encoder", "text_encoder_2" };
              g_assert_cmpint (sd_model_count_params (first, comps[c]), ==, sd_model_count_params (m, comps[c]));
            }
          sd_model_free (m);
        }
    }
  sd_model_free (first);
  manifest_options_clear (&opts);
}

static void
test_sd15_forms (void)
{
  const char *dir = test_require_golden ();
  if (dir == NULL)
    return;
  static const char *const forms[] = { "diffusers", "single_file_fp32", "single_file_fp16", NULL };
  check_forms (dir, "sd15-tiny", forms, SD_ARCH_SD1);
}

static void
test_sd15_inpaint_forms (void)
{
  const char *dir = test_require_golden ();
  if (dir == NULL)
    return;
  static const char *const forms[] = { "diffusers", "single_file_fp16", NULL };
  check_forms (dir, "sd15-tiny-inpaint", forms, SD_ARCH_SD1);
}

static void
test_sdxl_forms (void)
{
  const char *dir = require_sdxl ();
  if (dir == NULL)
    return;
  static const char *const forms[] = { "diffusers", "single_file_fp16", NULL };
  check_forms (dir, "sdxl-tiny", forms, SD_ARCH_SDXL);
}

/* Without configs, a single file's heads are the convention and say so. */
static void
test_heads_convention (void)
{
  const char *dir = test_require_golden ();
  if (dir == NULL)
    return;
  g_autofree char *path = g_build_filename (dir, "sd15-tiny", "sd15-tiny.fp16.safetensors", NULL);
  g_autoptr (SdModel) m = open_model (path, NULL);
  const SdModelConfig *c = sd_model_get_config (m);
  g_assert_false (c->unet.heads_known);
  g_assert_cmpint (c->unet.num_heads[0], ==, 8); /* SD 1.x: 8 heads per level */
  g_assert_false (c->text_encoder.heads_known);
  g_assert_false (c->scheduler.prediction_known);
  g_assert_cmpint (c->scheduler.prediction, ==, SD_PREDICTION_EPSILON);
  /* The option overrides. */
  SdOpenOptions opt = { .force_prediction = TRUE, .prediction = SD_PREDICTION_V };
  g_autoptr (SdModel) mv = open_model (path, &opt);
  g_assert_true (sd_model_get_config (mv)->scheduler.prediction_known);
  g_assert_cmpint (sd_model_get_config (mv)->scheduler.prediction, ==, SD_PREDICTION_V);
}

/* Conversions on read: fp16 reads of a float32 file round like sd_f32_to_f16;
 * fp16 reads of a float16 file are its bits. */
static void
test_read_f16 (void)
{
  const char *dir = test_require_golden ();
  if (dir == NULL)
    return;
  g_autofree char *p32 = g_build_filename (dir, "sd15-tiny", "sd15-tiny.safetensors", NULL);
  g_autofree char *p16 = g_build_filename (dir, "sd15-tiny", "sd15-tiny.fp16.safetensors", NULL);
  g_autoptr (SdModel) m32 = open_model (p32, NULL);
  g_autoptr (SdModel) m16 = open_model (p16, NULL);
  static const char *const names[] = { "unet.conv_in.weight", "vae.decoder.mid_block.attentions.0.to_q.weight",
                                       "text_encoder.text_model.encoder.layers.0.self_attn.q_proj.weight" };
  for (gsize i = 0; i < G_N_ELEMENTS (names); i++)
    {
      const SdTensorInfo *t = sd_model_lookup (m32, names[i]);
      g_assert_nonnull (t);
      gsize n = (gsize) t->n_elements;
      float *f = g_new (float, n);
      guint16 *h32 = g_new (guint16, n), *h16 = g_new (guint16, n);
      g_autoptr (GError) error = NULL;
      g_assert_true (sd_model_read_f32 (m32, names[i], f, n, &error));
      g_assert_true (sd_model_read_f16 (m32, names[i], h32, n, &error));
      g_assert_true (sd_model_read_f16 (m16, names[i], h16, n, &error));
      for (gsize k = 0; k < n; k++)
        {
          g_assert_cmpuint (h32[k], ==, sd_f32_to_f16 (f[k]));
          g_assert_cmpuint (h16[k], ==, h32[k]); /* the weights are exact in fp16 */
        }
      g_assert_false (sd_model_read_f32 (m32, names[i], f, n - 1, &error));
      g_assert_error (error, SD_ERROR, SD_ERROR_INVALID_ARG);
      g_free (f);
      g_free (h32);
      g_free (h16);
    }
  /* VAE attention is exposed as [C, C]. */
  const SdTensorInfo *q = sd_model_lookup (m32, "vae.decoder.mid_block.attentions.0.to_q.weight");
  g_assert_cmpint (q->ndim, ==, 2);
  g_autoptr (GError) error = NULL;
  float x;
  g_assert_false (sd_model_read_f32 (m32, "unet.no_such.weight", &x, 1, &error));
  g_assert_error (error, SD_ERROR, SD_ERROR_MISSING);
}

static void
test_tokenizer_dir_and_describe (void)
{
  const char *dir = require_sdxl ();
  if (dir == NULL)
    return;
  g_autofree char *path = g_build_filename (dir, "sdxl-tiny", "diffusers", NULL);
  g_autoptr (SdModel) m = open_model (path, NULL);
  g_autofree char *t0 = sd_model_find_tokenizer_dir (m, 0);
  g_autofree char *t1 = sd_model_find_tokenizer_dir (m, 1);
  g_autofree char *e0 = g_build_filename (path, "tokenizer", NULL);
  g_autofree char *e1 = g_build_filename (path, "tokenizer_2", NULL);
  g_assert_cmpstr (t0, ==, e0);
  g_assert_cmpstr (t1, ==, e1);
  g_autoptr (GString) out = g_string_new (NULL);
  g_autoptr (GError) error = NULL;
  g_assert_true (sd_model_describe (m, out, &error));
  g_test_message ("%s", out->str);
  g_assert_nonnull (strstr (out->str, "SDXL"));
  g_assert_nonnull (strstr (out->str, "text_encoder_2"));
  g_assert_nonnull (strstr (out->str, "epsilon (from scheduler/scheduler_config.json)"));
  g_assert_nonnull (strstr (out->str, "Unknown:        none"));
  g_assert_nonnull (strstr (out->str, "Missing:        none"));
  g_assert_nonnull (strstr (out->str, "fp16 compute"));
  g_assert_nonnull (strstr (out->str, "F32 x 1195"));
  g_assert_true (sd_model_check_component (m, "unet", &error));
  g_assert_true (sd_model_check_component (m, "text_encoder_2", &error));
  g_assert_true (sd_model_has_component (m, "vae"));
}

/* --------------------------------------------------- header-only builders */

/* Lay out tensors {name: {dtype, shape}} one after another and return a
 * header-only safetensors image (8-byte length + JSON padded to 8). */
static GBytes *
build_header (JsonObject *tensors, JsonObject *extras, guint64 *data_size)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "__metadata__");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "format");
  json_builder_add_string_value (b, "pt");
  json_builder_end_object (b);
  guint64 off = 0;
  JsonObject *sets[2] = { tensors, extras };
  for (int s = 0; s < 2; s++)
    {
      if (sets[s] == NULL)
        continue;
      GList *names = json_object_get_members (sets[s]);
      for (GList *l = names; l; l = l->next)
        {
          JsonObject *t = json_object_get_object_member (sets[s], l->data);
          const char *dt = json_object_get_string_member (t, "dtype");
          JsonArray *shape = json_object_get_array_member (t, "shape");
          guint64 n = 1;
          for (guint i = 0; i < json_array_get_length (shape); i++)
            n *= (guint64) json_array_get_int_element (shape, i);
          guint64 es = strcmp (dt, "F32") == 0 || strcmp (dt, "I32") == 0 ? 4
                       : strcmp (dt, "F16") == 0 || strcmp (dt, "BF16") == 0 ? 2
                       : strcmp (dt, "U8") == 0 || strcmp (dt, "I8") == 0 || strcmp (dt, "BOOL") == 0 ? 1
                                                                                                         : 8;
          json_builder_set_member_name (b, l->data);
          json_builder_begin_object (b);
          json_builder_set_member_name (b, "dtype");
          json_builder_add_string_value (b, dt);
          json_builder_set_member_name (b, "shape");
          json_builder_begin_array (b);
          for (guint i = 0; i < json_array_get_length (shape); i++)
            json_builder_add_int_value (b, json_array_get_int_element (shape, i));
          json_builder_end_array (b);
          json_builder_set_member_name (b, "data_offsets");
          json_builder_begin_array (b);
          json_builder_add_int_value (b, (gint64) off);
          json_builder_add_int_value (b, (gint64) (off + n * es));
          json_builder_end_array (b);
          json_builder_end_object (b);
          off += n * es;
        }
      g_list_free (names);
    }
  json_builder_end_object (b);
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  g_autofree char *json = json_to_string (root, FALSE);
  gsize n = strlen (json);
  gsize padded = (n + 7) / 8 * 8;
  guint8 *buf = g_malloc (8 + padded);
  guint64 le = GUINT64_TO_LE ((guint64) padded);
  memcpy (buf, &le, 8);
  memcpy (buf + 8, json, n);
  memset (buf + 8 + n, ' ', padded - n);
  if (data_size)
    *data_size = off;
  return g_bytes_new_take (buf, 8 + padded);
}

static void
write_bytes (const char *path, GBytes *b)
{
  g_autoptr (GError) error = NULL;
  gsize len;
  const char *data = g_bytes_get_data (b, &len);
  g_autofree char *dir = g_path_get_dirname (path);
  g_mkdir_with_parents (dir, 0700);
  g_assert_true (g_file_set_contents (path, data, (gssize) len, &error));
}

static void
write_text (const char *path, const char *text)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = g_path_get_dirname (path);
  g_mkdir_with_parents (dir, 0700);
  g_assert_true (g_file_set_contents (path, text, -1, &error));
}

static void
rm_rf (const char *path)
{
  if (g_file_test (path, G_FILE_TEST_IS_DIR) && !g_file_test (path, G_FILE_TEST_IS_SYMLINK))
    {
      GDir *d = g_dir_open (path, 0, NULL);
      for (const char *e; d && (e = g_dir_read_name (d));)
        {
          g_autofree char *p = g_build_filename (path, e, NULL);
          rm_rf (p);
        }
      if (d)
        g_dir_close (d);
      g_rmdir (path);
    }
  else
    g_unlink (path);
}

static JsonNode *
load_json (const char *path)
{
  g_autoptr (JsonParser) p = json_parser_new ();
  g_autoptr (GError) error = NULL;
  if (!json_parser_load_from_file (p, path, &error))
    g_error ("%s: %s", path, error->message);
  return json_node_copy (json_parser_get_root (p));
}

/* An SdModel from tensors {name: {dtype, shape}} laid out in memory. */
static SdModel *
model_from_tensors (JsonObject *tensors, const SdOpenOptions *opt, GError **error)
{
  guint64 data = 0;
  g_autoptr (GBytes) b = build_header (tensors, NULL, &data);
  gsize len;
  const guint8 *p = g_bytes_get_data (b, &len);
  SdSafetensors *st = sd_safetensors_new_from_header (p, len, len + data, error);
  if (st == NULL)
    return NULL;
  return sd_model_new_from_safetensors (st, opt, error);
}

/* The {name: {dtype, shape}} table of a real file's header. */
static JsonObject *
header_table (const char *path)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (SdSafetensors) st = sd_safetensors_open_header_only (path, &error);
  g_assert_no_error (error);
  JsonObject *o = json_object_new ();
  for (guint i = 0; i < sd_safetensors_get_n_tensors (st); i++)
    {
      const SdSafetensorsTensor *t = sd_safetensors_get_nth (st, i);
      JsonObject *e = json_object_new ();
      json_object_set_string_member (e, "dtype", sd_dtype_name (t->dtype));
      JsonArray *a = json_array_new ();
      for (int d = 0; d < t->ndim; d++)
        json_array_add_int_element (a, t->shape[d]);
      json_object_set_array_member (e, "shape", a);
      json_object_set_object_member (o, t->name, e);
    }
  return o;
}

/* ------------------------------------------------- full-size shape tables */

typedef struct
{
  const char *component;
  gint64 params;
} Expected;

static void
check_params (SdModel *m, const Expected *e, int n)
{
  for (int i = 0; i < n; i++)
    {
      gint64 got = sd_model_count_params (m, e[i].component);
      if (got != e[i].params)
        g_error ("%s: %s has %" G_GINT64_FORMAT " parameters, expected %" G_GINT64_FORMAT, sd_model_get_path (m),
                 e[i].component, got, e[i].params);
      g_assert_cmpint (sd_model_weight_bytes (m, e[i].component, 2), ==, 2 * e[i].params);
    }
}

/* Write a header-only diffusers folder from a shape table. */
static void
write_diffusers_tables (const char *root, JsonObject *table, const char *pipeline)
{
  JsonObject *components = json_object_get_object_member (table, "components");
  GList *files = json_object_get_members (components);
  GString *index = g_string_new ("{\"_class_name\": \"");
  g_string_append_printf (index, "%s\"", pipeline);
  for (GList *l = files; l; l = l->next)
    {
      JsonObject *c = json_object_get_object_member (components, l->data);
      JsonObject *extras = json_object_has_member (c, "optional_extras")
                               ? json_object_get_object_member (c, "optional_extras")
                               : NULL;
      g_autoptr (GBytes) b = build_header (json_object_get_object_member (c, "tensors"), extras, NULL);
      g_autofree char *path = g_build_filename (root, l->data, NULL);
      write_bytes (path, b);
      g_autofree char *dir = g_path_get_dirname (path);
      g_autofree char *cfg = g_build_filename (dir, "config.json", NULL);
      g_autofree char *text = json_to_string (json_object_get_member (c, "config"), TRUE);
      write_text (cfg, text);
      g_autofree char *comp = g_path_get_basename (dir);
      g_string_append_printf (index, ", \"%s\": [\"x\", \"y\"]", comp);
    }
  g_string_append (index, "}");
  g_autofree char *ip = g_build_filename (root, "model_index.json", NULL);
  write_text (ip, index->str);
  g_string_free (index, TRUE);
  g_list_free (files);
}

static void
check_shape_tables (const char *single, const char *diffusers, SdArch arch, const char *pipeline,
                    const Expected *expected, int n_expected)
{
  const char *gd = test_require_golden ();
  if (gd == NULL)
    return;
  g_autoptr (GError) error = NULL;
  g_autofree char *tmp = g_dir_make_tmp ("impasto-shapes-XXXXXX", &error);
  g_assert_no_error (error);
  SdOpenOptions ho = { .header_only = TRUE };

  /* Single file, with the non-weight extras real checkpoints carry. */
  g_autofree char *sp = g_build_filename (gd, "shapes", single, NULL);
  g_autoptr (JsonNode) sn = load_json (sp);
  JsonObject *so = json_node_get_object (sn);
  g_autoptr (GBytes) sb = build_header (json_object_get_object_member (so, "tensors"),
                                        json_object_get_object_member (so, "optional_extras"), NULL);
  g_autofree char *sfile = g_build_filename (tmp, "model.safetensors", NULL);
  write_bytes (sfile, sb);
  g_autoptr (SdModel) ms = open_model (sfile, &ho);
  assert_clean (ms);
  g_assert_cmpint (sd_model_get_config (ms)->arch, ==, arch);
  check_params (ms, expected, n_expected);
  g_autoptr (GPtrArray) ignored = sd_model_get_ignored (ms);
  g_assert_cmpuint (ignored->len, ==, json_object_get_size (json_object_get_object_member (so, "optional_extras")));
  g_assert_cmpint (sd_model_count_params (ms, NULL), ==, json_object_get_int_member (so, "n_params"));

  /* The same, from memory through the header-only constructor. */
  gsize len;
  const guint8 *p = g_bytes_get_data (sb, &len);
  SdSafetensors *st = sd_safetensors_new_from_header (p, len, G_MAXINT64, &error);
  g_assert_no_error (error);
  g_autoptr (SdModel) mm = sd_model_new_from_safetensors (st, NULL, &error);
  g_assert_no_error (error);
  assert_same_tensors (ms, mm, FALSE);

  /* Diffusers folder with the tables' configs. */
  g_autofree char *dp = g_build_filename (gd, "shapes", diffusers, NULL);
  g_autoptr (JsonNode) dn = load_json (dp);
  g_autofree char *droot = g_build_filename (tmp, "diffusers", NULL);
  write_diffusers_tables (droot, json_node_get_object (dn), pipeline);
  g_autoptr (SdModel) md = open_model (droot, &ho);
  assert_clean (md);
  g_assert_cmpint (sd_model_get_config (md)->arch, ==, arch);
  check_params (md, expected, n_expected);
  /* Each component's own count in the table. */
  JsonObject *components = json_object_get_object_member (json_node_get_object (dn), "components");
  GList *files = json_object_get_members (components);
  for (GList *l = files; l; l = l->next)
    {
      g_autofree char *dir = g_path_get_dirname (l->data);
      gint64 n = json_object_get_int_member (json_object_get_object_member (components, l->data), "n_params");
      g_assert_cmpint (sd_model_count_params (md, dir), ==, n);
    }
  g_list_free (files);

  /* Both forms: the same internal tensors (the ldm -> diffusers naming on the
   * real full-size layout) and the same detected sizes. */
  assert_same_tensors (ms, md, FALSE);
  const SdModelConfig *a = sd_model_get_config (ms), *b = sd_model_get_config (md);
  g_assert_cmpmem (&a->unet.block_out_channels, sizeof a->unet.block_out_channels, &b->unet.block_out_channels,
                   sizeof b->unet.block_out_channels);
  g_assert_cmpmem (&a->unet.transformer_depth, sizeof a->unet.transformer_depth, &b->unet.transformer_depth,
                   sizeof b->unet.transformer_depth);
  /* Heads: the diffusers config states them; the single file's convention
   * (SD1 8 heads, SDXL 64-wide heads) must agree with it for the real models. */
  g_assert_true (b->unet.heads_known);
  g_assert_false (a->unet.heads_known);
  g_assert_cmpmem (&a->unet.num_heads, sizeof a->unet.num_heads, &b->unet.num_heads, sizeof b->unet.num_heads);
  g_assert_cmpint (a->unet.num_heads_mid, ==, b->unet.num_heads_mid);
  g_assert_cmpint (a->text_encoder.n_heads, ==, b->text_encoder.n_heads);
  g_assert_cmpint (a->text_encoder.act, ==, b->text_encoder.act);
  g_assert_cmpint (a->text_encoder.pad_id, ==, b->text_encoder.pad_id);
  if (arch == SD_ARCH_SDXL)
    {
      g_assert_cmpint (a->text_encoder_2.n_heads, ==, b->text_encoder_2.n_heads);
      g_assert_cmpint (a->text_encoder_2.act, ==, SD_ACT_GELU);
      g_assert_cmpint (b->text_encoder_2.act, ==, SD_ACT_GELU);
      g_assert_cmpint (a->text_encoder_2.pad_id, ==, 0);
      g_assert_cmpint (b->text_encoder_2.pad_id, ==, 0);
      g_assert_cmpint (a->unet.addition_time_embed_dim, ==, 256);
      g_assert_cmpint (b->unet.addition_time_embed_dim, ==, 256);
      g_assert_cmpint (a->unet.pooled_dim, ==, 1280);
      g_assert_cmpint (a->unet.n_time_ids, ==, 6);
      g_assert_cmpint (a->unet.context_dim, ==, 2048);
      g_assert_true (a->force_zeros_for_empty_prompt);
    }
  else
    {
      g_assert_cmpint (a->text_encoder.act, ==, SD_ACT_QUICK_GELU);
      g_assert_cmpint (a->text_encoder.pad_id, ==, 49407);
      g_assert_cmpint (a->unet.context_dim, ==, 768);
    }
  g_autoptr (GString) out = g_string_new (NULL);
  g_assert_true (sd_model_describe (ms, out, &error));
  g_test_message ("%s", out->str);
  rm_rf (tmp);
}

static void
test_shapes_sd15 (void)
{
  /* golden/README.md: UNet 859,520,964, VAE 83,653,863, CLIP ViT-L 123,060,480. */
  static const Expected e[] = {
    { "unet", 859520964 }, { "vae", 83653863 }, { "text_encoder", 123060480 }, { "text_encoder_2", 0 },
  };
  check_shape_tables ("sd15_single_file.json", "sd15_diffusers.json", SD_ARCH_SD1, "StableDiffusionPipeline", e,
                      G_N_ELEMENTS (e));
}

static void
test_shapes_sdxl (void)
{
  /* UNet 2,567,463,684; text 694,659,840 (bigG with projection) + CLIP-L. */
  static const Expected e[] = {
    { "unet", 2567463684 },
    { "vae", 83653863 },
    { "text_encoder", 123060480 },
    { "text_encoder_2", 694659840 },
  };
  check_shape_tables ("sdxl_base_single_file.json", "sdxl_base_diffusers.json", SD_ARCH_SDXL,
                      "StableDiffusionXLPipeline", e, G_N_ELEMENTS (e));
}

/* ------------------------------------------------------------- refusals */

static void
test_pickle_refused (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *tmp = g_dir_make_tmp ("impasto-pickle-XXXXXX", &error);
  struct
  {
    const char *file;
    const char *content;
    gsize len;
  } cases[] = {
    { "model.ckpt", "PK\x03\x04whatever", 12 },
    { "model.pt", "{}", 2 }, /* refused by name, never read */
    { "model.bin", "", 0 },
    { "model.safetensors", "\x80\x02}q\x00(X\x0a\x00", 10 },
    { "other.safetensors", "PK\x03\x04\x14\x00\x00\x00\x08\x00", 10 },
  };
  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *path = g_build_filename (tmp, cases[i].file, NULL);
      g_assert_true (g_file_set_contents (path, cases[i].content, (gssize) cases[i].len, NULL));
      g_autoptr (SdModel) m = sd_model_open (path, NULL, &error);
      g_assert_null (m);
      g_assert_error (error, SD_ERROR, SD_ERROR_UNSUPPORTED);
      g_assert_nonnull (strstr (error->message, "pickle"));
      g_assert_nonnull (strstr (error->message, "safetensors"));
      g_assert_nonnull (strstr (error->message, "convert"));
      g_test_message ("%s", error->message);
      g_clear_error (&error);
    }
  /* A diffusers component whose only weights are a pickle. */
  g_autofree char *unet = g_build_filename (tmp, "pipe", "unet", NULL);
  g_mkdir_with_parents (unet, 0700);
  g_autofree char *bin = g_build_filename (unet, "diffusion_pytorch_model.bin", NULL);
  g_assert_true (g_file_set_contents (bin, "PK\x03\x04", 4, NULL));
  g_autofree char *pipe = g_build_filename (tmp, "pipe", NULL);
  g_autoptr (SdModel) m = sd_model_open (pipe, NULL, &error);
  g_assert_null (m);
  g_assert_error (error, SD_ERROR, SD_ERROR_UNSUPPORTED);
  g_assert_nonnull (strstr (error->message, "pickle"));
  rm_rf (tmp);
}

static JsonObject *
table_of (const char *const *names, const char *dtype)
{
  JsonObject *o = json_object_new ();
  for (int i = 0; names[i]; i++)
    {
      JsonObject *e = json_object_new ();
      json_object_set_string_member (e, "dtype", dtype);
      JsonArray *a = json_array_new ();
      json_array_add_int_element (a, 4);
      json_object_set_array_member (e, "shape", a);
      json_object_set_object_member (o, names[i], e);
    }
  return o;
}

static void
test_unknown_layout (void)
{
  static const char *const names[] = { "foo.bar.weight", "foo.baz.weight", "qux.weight", NULL };
  g_autoptr (JsonObject) t = table_of (names, "F32");
  g_autoptr (GError) error = NULL;
  g_autoptr (SdModel) m = model_from_tensors (t, NULL, &error);
  g_assert_null (m);
  g_assert_error (error, SD_ERROR, SD_ERROR_UNSUPPORTED);
  g_test_message ("%s", error->message);
  g_assert_nonnull (strstr (error->message, "foo.* (2)"));
  g_assert_nonnull (strstr (error->message, "qux.* (1)"));
  g_clear_error (&error);

  static const char *const lora[] = { "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight",
                                      "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight", NULL };
  g_autoptr (JsonObject) l = table_of (lora, "F16");
  g_autoptr (SdModel) ml = model_from_tensors (l, NULL, &error);
  g_assert_null (ml);
  g_assert_error (error, SD_ERROR, SD_ERROR_UNSUPPORTED);
  g_assert_nonnull (strstr (error->message, "LoRA"));
  g_clear_error (&error);

  /* A transformer model under the UNet prefix: not an SD UNet. */
  static const char *const sd3[] = { "model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight", NULL };
  g_autoptr (JsonObject) s = table_of (sd3, "F16");
  g_autoptr (SdModel) m3 = model_from_tensors (s, NULL, &error);
  g_assert_null (m3);
  g_assert_error (error, SD_ERROR, SD_ERROR_UNSUPPORTED);
  g_assert_nonnull (strstr (error->message, "input_blocks"));
  g_clear_error (&error);

  /* Only extras (schedule buffers): nothing to build a model from. */
  static const char *const extras[] = { "betas", "alphas_cumprod", NULL };
  g_autoptr (JsonObject) x = table_of (extras, "F32");
  g_autoptr (SdModel) mx = model_from_tensors (x, NULL, &error);
  g_assert_null (mx);
  g_assert_error (error, SD_ERROR, SD_ERROR_UNSUPPORTED);

  /* A folder that is no model. */
  g_autofree char *tmp = g_dir_make_tmp ("impasto-empty-XXXXXX", NULL);
  g_clear_error (&error);
  g_autoptr (SdModel) me = sd_model_open (tmp, NULL, &error);
  g_assert_null (me);
  g_assert_error (error, SD_ERROR, SD_ERROR_UNSUPPORTED);
  g_rmdir (tmp);
}

/* ------------------------------------------------------------ reporting */

static void
set_shape (JsonObject *table, const char *name, gint64 a, gint64 b, gint64 c, gint64 d)
{
  JsonObject *e = json_object_get_object_member (table, name);
  g_assert_nonnull (e);
  JsonArray *arr = json_array_new ();
  json_array_add_int_element (arr, a);
  json_array_add_int_element (arr, b);
  json_array_add_int_element (arr, c);
  json_array_add_int_element (arr, d);
  json_object_set_array_member (e, "shape", arr);
}

static gboolean
list_has (GPtrArray *list, const char *needle)
{
  for (guint i = 0; i < list->len; i++)
    if (strstr (g_ptr_array_index (list, i), needle))
      return TRUE;
  return FALSE;
}

static void
test_report_problems (void)
{
  const char *dir = test_require_golden ();
  if (dir == NULL)
    return;
  g_autofree char *path = g_build_filename (dir, "sd15-tiny", "sd15-tiny.fp16.safetensors", NULL);
  g_autoptr (JsonObject) t = header_table (path);
  json_object_remove_member (t, "model.diffusion_model.out.2.bias");
  set_shape (t, "first_stage_model.decoder.conv_in.weight", 32, 8, 3, 3);
  JsonObject *extra = json_object_new ();
  json_object_set_string_member (extra, "dtype", "F16");
  JsonArray *a = json_array_new ();
  json_array_add_int_element (a, 7);
  json_object_set_array_member (extra, "shape", a);
  json_object_set_object_member (t, "model.diffusion_model.input_blocks.1.0.mystery.weight", extra);
  json_object_set_object_member (t, "cond_stage_model.transformer.text_model.foo",
                                 json_object_ref (extra));
  json_object_set_object_member (t, "something_else.weight", json_object_ref (extra));

  g_autoptr (GError) error = NULL;
  g_autoptr (SdModel) m = model_from_tensors (t, NULL, &error);
  g_assert_no_error (error);
  g_autoptr (GPtrArray) missing = sd_model_get_missing (m);
  g_autoptr (GPtrArray) mis = sd_model_get_misshaped (m);
  g_autoptr (GPtrArray) unknown = sd_model_get_unknown (m);
  for (guint i = 0; i < missing->len; i++)
    g_test_message ("missing: %s", (char *) g_ptr_array_index (missing, i));
  for (guint i = 0; i < mis->len; i++)
    g_test_message ("mis-shaped: %s", (char *) g_ptr_array_index (mis, i));
  for (guint i = 0; i < unknown->len; i++)
    g_test_message ("unknown: %s", (char *) g_ptr_array_index (unknown, i));
  g_assert_cmpuint (missing->len, ==, 1);
  g_assert_true (list_has (missing, "unet.conv_out.bias"));
  g_assert_cmpuint (mis->len, ==, 1);
  g_assert_true (list_has (mis, "vae.decoder.conv_in.weight: shape [32, 8, 3, 3], expected [64, 4, 3, 3]"));
  g_assert_cmpuint (unknown->len, ==, 3);
  g_assert_true (list_has (unknown, "model.diffusion_model.input_blocks.1.0.mystery.weight"));
  g_assert_true (list_has (unknown, "text_encoder.text_model.foo"));
  g_assert_true (list_has (unknown, "something_else.weight"));

  /* The gate before building a module. */
  g_assert_false (sd_model_check_component (m, "unet", &error));
  g_assert_error (error, SD_ERROR, SD_ERROR_MISSING);
  g_assert_nonnull (strstr (error->message, "unet.conv_out.bias"));
  g_clear_error (&error);
  g_assert_false (sd_model_check_component (m, "vae", &error));
  g_assert_error (error, SD_ERROR, SD_ERROR_MISSING);
  g_clear_error (&error);
  g_assert_true (sd_model_check_component (m, "text_encoder", &error));
  g_assert_false (sd_model_check_component (m, "text_encoder_2", &error));
  g_assert_error (error, SD_ERROR, SD_ERROR_MISSING);
  g_clear_error (&error);

  g_autoptr (GString) out = g_string_new (NULL);
  g_assert_true (sd_model_describe (m, out, &error));
  g_test_message ("%s", out->str);
  g_assert_nonnull (strstr (out->str, "Missing:        1"));
  g_assert_nonnull (strstr (out->str, "Unknown:        3"));
  g_assert_nonnull (strstr (out->str, "Mis-shaped:     1"));
}

/* SD 2: open_clip names under cond_stage_model.model. Built from the tiny SD 1.5
 * UNet/VAE (context 32) and the tiny SDXL open_clip tower (hidden 32). */
static void
test_sd2_openclip (void)
{
  const char *dir = test_require_golden ();
  const char *xdir = require_sdxl ();
  if (dir == NULL || xdir == NULL)
    return;
  g_autofree char *p1 = g_build_filename (dir, "sd15-tiny", "sd15-tiny.fp16.safetensors", NULL);
  g_autofree char *p2 = g_build_filename (xdir, "sdxl-tiny", "sdxl-tiny.fp16.safetensors", NULL);
  g_autoptr (JsonObject) a = header_table (p1);
  g_autoptr (JsonObject) b = header_table (p2);
  g_autoptr (JsonObject) t = json_object_new ();
  GList *names = json_object_get_members (a);
  for (GList *l = names; l; l = l->next)
    if (!g_str_has_prefix (l->data, "cond_stage_model."))
      json_object_set_member (t, l->data, json_object_dup_member (a, l->data));
  g_list_free (names);
  names = json_object_get_members (b);
  const char *from = "conditioner.embedders.1.model.";
  int n_openclip = 0;
  for (GList *l = names; l; l = l->next)
    if (g_str_has_prefix (l->data, from))
      {
        g_autofree char *to = g_strconcat ("cond_stage_model.model.", (char *) l->data + strlen (from), NULL);
        json_object_set_member (t, to, json_object_dup_member (b, l->data));
        n_openclip++;
      }
  g_list_free (names);
  g_assert_cmpint (n_openclip, ==, 10 * 12 + 6);

  g_autoptr (GError) error = NULL;
  g_autoptr (SdModel) m = model_from_tensors (t, NULL, &error);
  g_assert_no_error (error);
  assert_clean (m);
  const SdModelConfig *c = sd_model_get_config (m);
  g_assert_cmpint (c->arch, ==, SD_ARCH_SD2);
  g_assert_true (c->text_encoder.present);
  g_assert_false (c->text_encoder_2.present);
  g_assert_cmpint (c->text_encoder.hidden, ==, 32);
  g_assert_cmpint (c->text_encoder.n_layers, ==, 9); /* the last of 10 dropped, as diffusers does */
  g_assert_cmpint (c->text_encoder.projection_dim, ==, 0);
  g_assert_cmpint (c->text_encoder.act, ==, SD_ACT_GELU);
  g_assert_cmpint (c->text_encoder.pad_id, ==, 0);
  g_assert_cmpint (c->text_encoder.intermediate, ==, 128);
  /* q/k/v split out of in_proj. */
  const SdTensorInfo *q = sd_model_lookup (m, "text_encoder.text_model.encoder.layers.8.self_attn.v_proj.weight");
  g_assert_nonnull (q);
  g_assert_cmpint (q->shape[0], ==, 32);
  g_assert_cmpint (q->shape[1], ==, 32);
  g_assert_null (sd_model_lookup (m, "text_encoder.text_model.encoder.layers.9.self_attn.q_proj.weight"));
  g_autoptr (GPtrArray) ignored = sd_model_get_ignored (m);
  /* 12 DDPM buffers (from the SD 1.5 file), layer 9's 12 tensors, the
   * projection and logit_scale. */
  g_assert_cmpuint (ignored->len, ==, 12 + 12 + 1 + 1);
  g_assert_true (list_has (ignored, "cond_stage_model.model.transformer.resblocks.9.attn.in_proj_weight: unused by SD 2"));
  g_assert_true (list_has (ignored, "cond_stage_model.model.text_projection: unused by SD 2"));
  g_assert_true (list_has (ignored, "cond_stage_model.model.logit_scale: CLIP logit scale"));
}

/* The refiner: open_clip bigG alone as embedder 0. */
static void
test_refiner_layout (void)
{
  const char *xdir = require_sdxl ();
  if (xdir == NULL)
    return;
  g_autofree char *p = g_build_filename (xdir, "sdxl-tiny", "sdxl-tiny.fp16.safetensors", NULL);
  g_autoptr (JsonObject) b = header_table (p);
  g_autoptr (JsonObject) t = json_object_new ();
  GList *names = json_object_get_members (b);
  for (GList *l = names; l; l = l->next)
    {
      const char *n = l->data;
      if (g_str_has_prefix (n, "conditioner.embedders.0."))
        continue;
      g_autofree char *to = g_str_has_prefix (n, "conditioner.embedders.1.")
                                ? g_strconcat ("conditioner.embedders.0.", n + 24, NULL)
                                : g_strdup (n);
      json_object_set_member (t, to, json_object_dup_member (b, n));
    }
  g_list_free (names);
  g_autoptr (GError) error = NULL;
  g_autoptr (SdModel) m = model_from_tensors (t, NULL, &error);
  g_assert_no_error (error);
  const SdModelConfig *c = sd_model_get_config (m);
  g_assert_cmpint (c->arch, ==, SD_ARCH_SDXL_REFINER);
  g_assert_false (c->text_encoder.present);
  g_assert_true (c->text_encoder_2.present);
  g_assert_cmpint (c->text_encoder_2.n_layers, ==, 10); /* SDXL keeps every layer */
  g_assert_cmpint (c->unet.n_time_ids, ==, 5);
  g_assert_false (c->force_zeros_for_empty_prompt);
}

/* Sharded diffusers weights (*.safetensors.index.json). */
static void
test_sharded (void)
{
  const char *dir = test_require_golden ();
  if (dir == NULL)
    return;
  g_autoptr (GError) error = NULL;
  g_autofree char *src = g_build_filename (dir, "sd15-tiny", "diffusers", NULL);
  g_autofree char *unet_file = g_build_filename (src, "unet", "diffusion_pytorch_model.safetensors", NULL);
  g_autoptr (JsonObject) all = header_table (unet_file);
  g_autoptr (JsonObject) s1 = json_object_new ();
  g_autoptr (JsonObject) s2 = json_object_new ();
  GString *map = g_string_new ("{\"metadata\": {\"total_size\": 1}, \"weight_map\": {");
  GList *names = json_object_get_members (all);
  int i = 0;
  for (GList *l = names; l; l = l->next, i++)
    {
      json_object_set_member (i % 2 ? s2 : s1, l->data, json_object_dup_member (all, l->data));
      g_string_append_printf (map, "%s\"%s\": \"diffusion_pytorch_model-0000%d-of-00002.safetensors\"",
                              i ? ", " : "", (char *) l->data, i % 2 + 1);
    }
  g_list_free (names);
  g_string_append (map, "}}");

  g_autofree char *tmp = g_dir_make_tmp ("impasto-shards-XXXXXX", &error);
  g_autofree char *unet = g_build_filename (tmp, "unet", NULL);
  g_autoptr (GBytes) b1 = build_header (s1, NULL, NULL);
  g_autoptr (GBytes) b2 = build_header (s2, NULL, NULL);
  g_autofree char *f1 = g_build_filename (unet, "diffusion_pytorch_model-00001-of-00002.safetensors", NULL);
  g_autofree char *f2 = g_build_filename (unet, "diffusion_pytorch_model-00002-of-00002.safetensors", NULL);
  write_bytes (f1, b1);
  write_bytes (f2, b2);
  g_autofree char *idx = g_build_filename (unet, "diffusion_pytorch_model.safetensors.index.json", NULL);
  write_text (idx, map->str);
  g_autofree char *cfg_src = g_build_filename (src, "unet", "config.json", NULL);
  g_autofree char *cfg_text = NULL;
  g_assert_true (g_file_get_contents (cfg_src, &cfg_text, NULL, NULL));
  g_autofree char *cfg = g_build_filename (unet, "config.json", NULL);
  write_text (cfg, cfg_text);

  SdOpenOptions ho = { .header_only = TRUE };
  g_autoptr (SdModel) sharded = open_model (unet, &ho);
  g_autofree char *whole_dir = g_build_filename (src, "unet", NULL);
  g_autoptr (SdModel) whole = open_model (whole_dir, &ho);
  assert_clean (sharded);
  assert_same_tensors (whole, sharded, FALSE);
  g_assert_cmpint (sd_model_get_config (sharded)->arch, ==, SD_ARCH_SD1);

  /* An index that puts a tensor in the wrong shard is corrupt. */
  char *bad = g_strdup (map->str);
  char *at = strstr (bad, "00001-of");
  at[4] = '2';
  write_text (idx, bad);
  g_free (bad);
  g_autoptr (SdModel) m = sd_model_open (unet, &ho, &error);
  g_assert_null (m);
  g_assert_error (error, SD_ERROR, SD_ERROR_CORRUPT);
  g_clear_error (&error);
  /* ... and one naming a file outside the folder. */
  char *evil = g_strdup (map->str);
  char *q = strstr (evil, "diffusion_pytorch_model-00001");
  memcpy (q, "../../../../../etc/passwd", 25);
  write_text (idx, evil);
  g_free (evil);
  g_autoptr (SdModel) m2 = sd_model_open (unet, &ho, &error);
  g_assert_null (m2);
  g_assert_error (error, SD_ERROR, SD_ERROR_CORRUPT);
  g_string_free (map, TRUE);
  rm_rf (tmp);
}

/* A component folder, and a component file inside it, open on their own. */
static void
test_single_component (void)
{
  const char *dir = test_require_golden ();
  if (dir == NULL)
    return;
  g_autofree char *vae_dir = g_build_filename (dir, "sd15-tiny", "diffusers", "vae", NULL);
  g_autofree char *vae_file = g_build_filename (vae_dir, "diffusion_pytorch_model.safetensors", NULL);
  g_autofree char *full = g_build_filename (dir, "sd15-tiny", "sd15-tiny.safetensors", NULL);
  g_autoptr (SdModel) a = open_model (vae_dir, NULL);
  g_autoptr (SdModel) b = open_model (vae_file, NULL);
  g_autoptr (SdModel) c = open_model (full, NULL);
  assert_clean (a);
  assert_clean (b);
  g_assert_cmpint (sd_model_get_config (a)->arch, ==, SD_ARCH_UNKNOWN);
  g_assert_true (sd_model_has_component (a, "vae"));
  g_assert_false (sd_model_has_component (a, "unet"));
  assert_same_tensors (a, b, TRUE);
  g_assert_cmpint (sd_model_count_params (a, "vae"), ==, sd_model_count_params (c, "vae"));
  g_autofree char *unet_dir = g_build_filename (dir, "sd15-tiny", "diffusers", "unet", NULL);
  g_autoptr (SdModel) u = open_model (unet_dir, NULL);
  g_assert_cmpint (sd_model_get_config (u)->arch, ==, SD_ARCH_SD1);
  g_assert_true (sd_model_get_config (u)->unet.heads_known);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/model/sd15/forms-identical", test_sd15_forms);
  g_test_add_func ("/model/sd15-inpaint/forms-identical", test_sd15_inpaint_forms);
  g_test_add_func ("/model/sdxl/forms-identical", test_sdxl_forms);
  g_test_add_func ("/model/sd15/heads-convention", test_heads_convention);
  g_test_add_func ("/model/sd15/read-f16", test_read_f16);
  g_test_add_func ("/model/sdxl/tokenizer-describe", test_tokenizer_dir_and_describe);
  g_test_add_func ("/model/shapes/sd15", test_shapes_sd15);
  g_test_add_func ("/model/shapes/sdxl", test_shapes_sdxl);
  g_test_add_func ("/model/refuse/pickle", test_pickle_refused);
  g_test_add_func ("/model/refuse/unknown-layout", test_unknown_layout);
  g_test_add_func ("/model/report/unknown-missing-misshaped", test_report_problems);
  g_test_add_func ("/model/sd2/openclip", test_sd2_openclip);
  g_test_add_func ("/model/sdxl/refiner-layout", test_refiner_layout);
  g_test_add_func ("/model/diffusers/sharded", test_sharded);
  g_test_add_func ("/model/diffusers/single-component", test_single_component);
  return g_test_run ();
}

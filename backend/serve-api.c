/* serve-api.c: A1111 API JSON <-> ImpJobParams (see serve-api.h). Every
 * request byte is untrusted: types are checked, numbers range-checked before
 * conversion, nesting bounded before json-glib (which recurses) sees it, and
 * images decoded with pixel limits checked before allocation. */
#include "config.h"

#include <math.h>
#include <string.h>

#include "serve-api.h"
#include "sd-error.h"

G_DEFINE_QUARK (imp - api - error - quark, imp_api_error)

/* Deeper JSON is refused before parsing: A1111 requests nest 3 levels. */
#define MAX_JSON_DEPTH 64

guint
imp_api_error_status (const GError *error)
{
  if (error->domain != IMP_API_ERROR)
    return 500;
  switch ((ImpApiError) error->code)
    {
    case IMP_API_ERROR_MALFORMED:
    case IMP_API_ERROR_BAD_IMAGE:
      return 400;
    case IMP_API_ERROR_BAD_TYPE:
    case IMP_API_ERROR_BAD_VALUE:
      return 422;
    case IMP_API_ERROR_TOO_LARGE:
      return 413;
    case IMP_API_ERROR_UNKNOWN_SAMPLER:
    case IMP_API_ERROR_UNKNOWN_MODEL:
      return 404;
    }
  return 400;
}

const char *
imp_api_error_name (const GError *error)
{
  if (error->domain != IMP_API_ERROR)
    return "InternalError";
  switch ((ImpApiError) error->code)
    {
    case IMP_API_ERROR_MALFORMED:
      return "MalformedRequest";
    case IMP_API_ERROR_BAD_TYPE:
      return "WrongType";
    case IMP_API_ERROR_BAD_VALUE:
      return "InvalidValue";
    case IMP_API_ERROR_BAD_IMAGE:
      return "BadImage";
    case IMP_API_ERROR_TOO_LARGE:
      return "TooLarge";
    case IMP_API_ERROR_UNKNOWN_SAMPLER:
      return "SamplerNotFound";
    case IMP_API_ERROR_UNKNOWN_MODEL:
      return "ModelNotFound";
    }
  return "BadRequest";
}

void
imp_api_limits_init (ImpApiLimits *l)
{
  l->job.max_side = 2048;
  l->job.max_pixels = (guint64) 2048 * 2048;
  l->job.max_steps = 150;
  l->job.max_batch = 8;
  l->job.max_images = 16;
  l->max_image_pixels = (guint64) 4096 * 4096;
}

void
imp_api_request_clear (ImpApiRequest *r)
{
  imp_job_params_clear (&r->params);
  g_free (r->model);
  g_free (r->task_id);
  memset (r, 0, sizeof *r);
  imp_job_params_init (&r->params);
}

/* ---- JSON field access ------------------------------------------------------------- */

/* The member, or NULL when absent or null. */
static JsonNode *
member (JsonObject *o, const char *name)
{
  JsonNode *n = o ? json_object_get_member (o, name) : NULL;
  return n && !JSON_NODE_HOLDS_NULL (n) ? n : NULL;
}

static gboolean
bad_type (GError **error, const char *name, const char *want)
{
  g_set_error (error, IMP_API_ERROR, IMP_API_ERROR_BAD_TYPE, "field '%s' must be %s", name, want);
  return FALSE;
}

/* An integer field in [min, max]; absent leaves *out. */
static gboolean
get_int (JsonObject *o, const char *name, gint64 min, gint64 max, gint64 *out, GError **error)
{
  JsonNode *n = member (o, name);
  if (!n)
    return TRUE;
  gint64 v;
  if (!JSON_NODE_HOLDS_VALUE (n))
    return bad_type (error, name, "an integer");
  GType t = json_node_get_value_type (n);
  if (t == G_TYPE_INT64)
    v = json_node_get_int (n);
  else if (t == G_TYPE_DOUBLE)
    {
      double d = json_node_get_double (n);
      if (!isfinite (d) || d != floor (d) || d < -9.0e18 || d > 9.0e18)
        return bad_type (error, name, "an integer");
      v = (gint64) d;
    }
  else
    return bad_type (error, name, "an integer");
  if (v < min || v > max)
    {
      g_set_error (error, IMP_API_ERROR, IMP_API_ERROR_BAD_VALUE,
                   "field '%s' must be between %" G_GINT64_FORMAT " and %" G_GINT64_FORMAT
                   " (got %" G_GINT64_FORMAT ")",
                   name, min, max, v);
      return FALSE;
    }
  *out = v;
  return TRUE;
}

static gboolean
get_int32 (JsonObject *o, const char *name, int *out, GError **error)
{
  gint64 v = *out;
  if (!get_int (o, name, G_MININT32, G_MAXINT32, &v, error))
    return FALSE;
  *out = (int) v;
  return TRUE;
}

static gboolean
get_number (JsonObject *o, const char *name, double *out, GError **error)
{
  JsonNode *n = member (o, name);
  if (!n)
    return TRUE;
  if (!JSON_NODE_HOLDS_VALUE (n))
    return bad_type (error, name, "a number");
  GType t = json_node_get_value_type (n);
  if (t == G_TYPE_INT64)
    *out = (double) json_node_get_int (n);
  else if (t == G_TYPE_DOUBLE)
    *out = json_node_get_double (n);
  else
    return bad_type (error, name, "a number");
  return TRUE;
}

static gboolean
get_bool (JsonObject *o, const char *name, gboolean *out, GError **error)
{
  JsonNode *n = member (o, name);
  if (!n)
    return TRUE;
  if (!JSON_NODE_HOLDS_VALUE (n))
    return bad_type (error, name, "true, false, 0 or 1");
  GType t = json_node_get_value_type (n);
  if (t == G_TYPE_BOOLEAN)
    *out = json_node_get_boolean (n);
  else if (t == G_TYPE_INT64 && (json_node_get_int (n) == 0 || json_node_get_int (n) == 1))
    *out = json_node_get_int (n) == 1;
  else
    return bad_type (error, name, "true, false, 0 or 1");
  return TRUE;
}

/* A string field; *out stays NULL when absent. Borrowed from the tree. */
static gboolean
get_string (JsonObject *o, const char *name, const char **out, GError **error)
{
  JsonNode *n = member (o, name);
  if (!n)
    return TRUE;
  if (!JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_STRING)
    return bad_type (error, name, "a string");
  *out = json_node_get_string (n);
  return TRUE;
}

/* ---- images ------------------------------------------------------------------------ */

GBytes *
imp_api_decode_base64 (const char *text, GError **error)
{
  const char *p = text;
  if (g_str_has_prefix (p, "data:"))
    {
      const char *comma = strchr (p, ',');
      if (!comma || !g_strstr_len (p, comma - p, ";base64"))
        {
          g_set_error (error, IMP_API_ERROR, IMP_API_ERROR_BAD_IMAGE,
                       "a data: URL image must be base64 (data:image/png;base64,...)");
          return NULL;
        }
      p = comma + 1;
    }
  else if (g_str_has_prefix (p, "http://") || g_str_has_prefix (p, "https://"))
    {
      g_set_error (error, IMP_API_ERROR, IMP_API_ERROR_BAD_IMAGE,
                   "images must be sent as base64 PNG; URLs are not fetched");
      return NULL;
    }
  gsize n = strlen (p);
  g_autofree char *clean = g_malloc (n + 1);
  gsize m = 0, pad = 0;
  for (gsize i = 0; i < n; i++)
    {
      char c = p[i];
      if (c == ' ' || c == '\n' || c == '\r' || c == '\t')
        continue;
      gboolean alpha = g_ascii_isalnum (c) || c == '+' || c == '/';
      if (c == '=')
        pad++;
      else if (!alpha || pad > 0)
        {
          g_set_error (error, IMP_API_ERROR, IMP_API_ERROR_BAD_IMAGE,
                       "invalid base64: unexpected character at offset %" G_GSIZE_FORMAT,
                       (gsize) (p - text) + i);
          return NULL;
        }
      clean[m++] = c;
    }
  clean[m] = '\0';
  if (m == 0 || m % 4 != 0 || pad > 2)
    {
      g_set_error (error, IMP_API_ERROR, IMP_API_ERROR_BAD_IMAGE,
                   m == 0 ? "empty image" : "invalid base64: bad length or padding");
      return NULL;
    }
  gsize len = 0;
  guchar *data = g_base64_decode (clean, &len);
  return g_bytes_new_take (data, len);
}

static SdImage *
decode_image (const char *field, const char *b64, int channels, const ImpApiLimits *limits,
              GError **error)
{
  g_autoptr (GBytes) bytes = imp_api_decode_base64 (b64, error);
  if (!bytes)
    {
      g_prefix_error (error, "%s: ", field);
      return NULL;
    }
  gsize len;
  const void *data = g_bytes_get_data (bytes, &len);
  SdImageLimits il = { .max_pixels = limits->max_image_pixels };
  g_autoptr (GError) e = NULL;
  SdImage *img = sd_image_load_png_from_memory (data, len, channels, &il, &e);
  if (!img)
    {
      int code = g_error_matches (e, SD_ERROR, SD_ERROR_INVALID_ARG) ? IMP_API_ERROR_TOO_LARGE
                                                                     : IMP_API_ERROR_BAD_IMAGE;
      g_set_error (error, IMP_API_ERROR, code, "%s: %s", field, e->message);
    }
  return img;
}

/* ---- requests ---------------------------------------------------------------------- */

/* The deepest nesting of arrays/objects, counted without parsing (strings
 * skipped), so a hostile body cannot recurse json-glib's parser off the
 * stack. Stops counting past `max`. */
static int
json_depth (const char *s, gsize len, int max)
{
  int depth = 0, deepest = 0;
  gboolean in_string = FALSE;
  for (gsize i = 0; i < len; i++)
    {
      char c = s[i];
      if (in_string)
        {
          if (c == '\\')
            i++;
          else if (c == '"')
            in_string = FALSE;
          continue;
        }
      if (c == '"')
        in_string = TRUE;
      else if (c == '[' || c == '{')
        {
          deepest = MAX (deepest, ++depth);
          if (deepest > max)
            return deepest;
        }
      else if (c == ']' || c == '}')
        depth--;
    }
  return deepest;
}

static gboolean
parse_object (const char *body, gsize len, JsonParser *parser, JsonObject **out, GError **error)
{
  if (len == 0)
    {
      g_set_error (error, IMP_API_ERROR, IMP_API_ERROR_MALFORMED,
                   "empty request body: expected a "
                   "JSON object");
      return FALSE;
    }
  if (len > G_MAXSSIZE || json_depth (body, len, MAX_JSON_DEPTH) > MAX_JSON_DEPTH)
    {
      g_set_error (error, IMP_API_ERROR, IMP_API_ERROR_MALFORMED,
                   "JSON nested deeper than %d levels", MAX_JSON_DEPTH);
      return FALSE;
    }
  if (!g_utf8_validate_len (body, len, NULL))
    {
      g_set_error (error, IMP_API_ERROR, IMP_API_ERROR_MALFORMED, "the body is not UTF-8");
      return FALSE;
    }
  g_autoptr (GError) e = NULL;
  if (!json_parser_load_from_data (parser, body, (gssize) len, &e))
    {
      g_set_error (error, IMP_API_ERROR, IMP_API_ERROR_MALFORMED, "malformed JSON: %s", e->message);
      return FALSE;
    }
  JsonNode *root = json_parser_get_root (parser);
  if (!root || !JSON_NODE_HOLDS_OBJECT (root))
    {
      g_set_error (error, IMP_API_ERROR, IMP_API_ERROR_MALFORMED, "the body must be a JSON object");
      return FALSE;
    }
  *out = json_node_get_object (root);
  return TRUE;
}

static gboolean
parse_sampler (JsonObject *o, ImpJobParams *p, GError **error)
{
  const char *name = NULL, *index = NULL, *scheduler = NULL;
  if (!get_string (o, "sampler_name", &name, error)
      || !get_string (o, "sampler_index", &index, error)
      || !get_string (o, "scheduler", &scheduler, error))
    return FALSE;
  /* A1111: sampler_name or sampler_index; neither: the model's default */
  const char *use = name && *name ? name : index && *index ? index : NULL;
  g_autoptr (GError) e = NULL;
  if (!use)
    p->unset |= IMP_UNSET_SAMPLER;
  else if (!sd_sampler_from_name (use, &p->sampler, &e))
    {
      g_set_error (error, IMP_API_ERROR, IMP_API_ERROR_UNKNOWN_SAMPLER, "Sampler not found: %s",
                   e->message);
      return FALSE;
    }
  if (scheduler && *scheduler && g_ascii_strcasecmp (scheduler, "automatic") != 0)
    {
      if (g_ascii_strcasecmp (scheduler, "karras") != 0)
        {
          g_set_error (error, IMP_API_ERROR, IMP_API_ERROR_BAD_VALUE,
                       "scheduler '%s' is not supported (Automatic, Karras)", scheduler);
          return FALSE;
        }
      p->karras = TRUE;
    }
  return TRUE;
}

gboolean
imp_api_parse_request (const char *body, gsize len, gboolean img2img, const ImpApiLimits *limits,
                       ImpApiRequest *req, GError **error)
{
  ImpApiLimits def;
  if (!limits)
    {
      imp_api_limits_init (&def);
      limits = &def;
    }
  memset (req, 0, sizeof *req);
  imp_job_params_init (&req->params);
  req->img2img = img2img;
  ImpJobParams *p = &req->params;
  p->sampler = SD_SAMPLER_EULER;
  /* A1111 StableDiffusionProcessingImg2Img: inpaint_full_res True, padding 0 */
  p->full_res = TRUE;
  p->full_res_padding = 0;
  p->resize_init = TRUE;

  g_autoptr (JsonParser) parser = json_parser_new_immutable ();
  JsonObject *o = NULL;
  if (!parse_object (body, len, parser, &o, error))
    goto fail;

  const char *prompt = NULL, *negative = NULL, *task = NULL;
  gint64 seed = -1, clip = 0;
  if (!get_string (o, "prompt", &prompt, error)
      || !get_string (o, "negative_prompt", &negative, error)
      || !get_string (o, "force_task_id", &task, error)
      || !get_int (o, "seed", G_MININT64, G_MAXINT64, &seed, error)
      || !get_int32 (o, "steps", &p->steps, error)
      || !get_number (o, "cfg_scale", &p->cfg_scale, error)
      || !get_int32 (o, "width", &p->width, error) || !get_int32 (o, "height", &p->height, error)
      || !get_int32 (o, "batch_size", &p->batch, error)
      || !get_int32 (o, "n_iter", &p->n_iter, error)
      || !get_int (o, "clip_skip", 0, 12, &clip, error) || !parse_sampler (o, p, error))
    goto fail;
  /* absent: the model's default (A1111's until the model is known) */
  if (!member (o, "steps"))
    p->unset |= IMP_UNSET_STEPS;
  if (!member (o, "cfg_scale"))
    p->unset |= IMP_UNSET_CFG;
  gboolean size_given = member (o, "width") || member (o, "height");
  p->prompt = g_strdup (prompt ? prompt : "");
  p->negative = negative && *negative ? g_strdup (negative) : NULL;
  req->task_id = g_strdup (task);
  if (seed < -1)
    {
      g_set_error (error, IMP_API_ERROR, IMP_API_ERROR_BAD_VALUE,
                   "field 'seed' must be -1 (random) or a whole number >= 0 (got %" G_GINT64_FORMAT
                   ")",
                   seed);
      goto fail;
    }
  req->request_seed = seed;
  req->has_seed = seed >= 0;
  p->seed = seed >= 0 ? (guint64) seed : 0;

  JsonNode *ov = member (o, "override_settings");
  if (ov)
    {
      if (!JSON_NODE_HOLDS_OBJECT (ov))
        {
          bad_type (error, "override_settings", "an object");
          goto fail;
        }
      JsonObject *os = json_node_get_object (ov);
      const char *ckpt = NULL;
      if (!get_string (os, "sd_model_checkpoint", &ckpt, error)
          || !get_int (os, "CLIP_stop_at_last_layers", 0, 12, &clip, error))
        goto fail;
      if (ckpt && *ckpt)
        req->model = g_strdup (ckpt);
    }
  p->clip_skip = (int) clip;

  if (img2img)
    {
      p->mode = SD_MODE_IMG2IMG;
      int blur = p->mask_blur, blur_x = p->mask_blur;
      gboolean invert = FALSE;
      if (!get_number (o, "denoising_strength", &p->strength, error)
          || !get_int32 (o, "mask_blur_x", &blur_x, error)
          || !get_int32 (o, "mask_blur", &blur, error)
          || !get_bool (o, "inpainting_mask_invert", &invert, error)
          || !get_bool (o, "inpaint_full_res", &p->full_res, error)
          || !get_bool (o, "impasto_uncomposited", &p->uncomposited, error)
          || !get_int32 (o, "inpaint_full_res_padding", &p->full_res_padding, error))
        goto fail;
      p->mask_blur = member (o, "mask_blur") ? blur : blur_x;
      p->mask_invert = invert;
      JsonNode *imgs = member (o, "init_images");
      if (!imgs)
        {
          g_set_error (error, IMP_API_ERROR, IMP_API_ERROR_BAD_VALUE,
                       "field 'init_images' is required");
          goto fail;
        }
      if (!JSON_NODE_HOLDS_ARRAY (imgs))
        {
          bad_type (error, "init_images", "an array of base64 PNG strings");
          goto fail;
        }
      JsonArray *arr = json_node_get_array (imgs);
      if (json_array_get_length (arr) == 0)
        {
          g_set_error (error, IMP_API_ERROR, IMP_API_ERROR_BAD_VALUE,
                       "field 'init_images' is empty");
          goto fail;
        }
      JsonNode *first = json_array_get_element (arr, 0);
      if (!JSON_NODE_HOLDS_VALUE (first) || json_node_get_value_type (first) != G_TYPE_STRING)
        {
          bad_type (error, "init_images", "an array of base64 PNG strings");
          goto fail;
        }
      p->init = decode_image ("init_images[0]", json_node_get_string (first), 3, limits, error);
      if (!p->init)
        goto fail;
      const char *mask_b64 = NULL;
      if (!get_string (o, "mask", &mask_b64, error))
        goto fail;
      if (mask_b64 && *mask_b64)
        {
          g_autoptr (SdImage) m = decode_image ("mask", mask_b64, 0, limits, error);
          if (!m)
            goto fail;
          if (m->width != p->init->width || m->height != p->init->height)
            {
              g_set_error (
                  error, IMP_API_ERROR, IMP_API_ERROR_BAD_VALUE,
                  "the mask is %dx%d but the init image is %dx%d: they must be the same size",
                  m->width, m->height, p->init->width, p->init->height);
              goto fail;
            }
          p->mask = imp_mask_from_image (m);
          p->mode = SD_MODE_INPAINT;
        }
    }

  /* no size: an init image's own (rounded down to a multiple of 8), else
   * (txt2img, inpainting only the masked area) the model's */
  if (!size_given)
    {
      if (p->init && !(p->full_res && p->mask))
        imp_round_size (p->init->width, p->init->height, 8, &p->width, &p->height);
      else
        p->unset |= IMP_UNSET_SIZE;
    }
  {
    g_autoptr (GError) e = NULL;
    if (!imp_job_params_validate (p, &limits->job, &e))
      {
        g_set_error_literal (error, IMP_API_ERROR, IMP_API_ERROR_BAD_VALUE, e->message);
        goto fail;
      }
  }
  return TRUE;

fail:
  imp_api_request_clear (req);
  return FALSE;
}

/* ---- responses --------------------------------------------------------------------- */

static void
add_string_array (JsonBuilder *b, const char *name, const char *value, guint n)
{
  json_builder_set_member_name (b, name);
  json_builder_begin_array (b);
  for (guint i = 0; i < n; i++)
    json_builder_add_string_value (b, value);
  json_builder_end_array (b);
}

static char *
info_json (const ImpApiRequest *req, const ImpJobResult *res, gint64 job_timestamp)
{
  const ImpJobParams *p = &req->params;
  const guint n = res->png->len;
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "prompt");
  json_builder_add_string_value (b, p->prompt ? p->prompt : "");
  add_string_array (b, "all_prompts", p->prompt ? p->prompt : "", n);
  json_builder_set_member_name (b, "negative_prompt");
  json_builder_add_string_value (b, p->negative ? p->negative : "");
  add_string_array (b, "all_negative_prompts", p->negative ? p->negative : "", n);
  json_builder_set_member_name (b, "seed");
  json_builder_add_int_value (b, (gint64) p->seed);
  json_builder_set_member_name (b, "all_seeds");
  json_builder_begin_array (b);
  for (guint i = 0; i < n; i++)
    json_builder_add_int_value (b, (gint64) g_array_index (res->seeds, guint64, i));
  json_builder_end_array (b);
  json_builder_set_member_name (b, "subseed");
  json_builder_add_int_value (b, -1);
  json_builder_set_member_name (b, "all_subseeds");
  json_builder_begin_array (b);
  for (guint i = 0; i < n; i++)
    json_builder_add_int_value (b, -1);
  json_builder_end_array (b);
  json_builder_set_member_name (b, "subseed_strength");
  json_builder_add_int_value (b, 0);
  json_builder_set_member_name (b, "width");
  json_builder_add_int_value (b, p->width);
  json_builder_set_member_name (b, "height");
  json_builder_add_int_value (b, p->height);
  json_builder_set_member_name (b, "sampler_name");
  json_builder_add_string_value (b, sd_sampler_display_name (p->sampler));
  json_builder_set_member_name (b, "cfg_scale");
  json_builder_add_double_value (b, p->cfg_scale);
  json_builder_set_member_name (b, "steps");
  json_builder_add_int_value (b, p->steps);
  json_builder_set_member_name (b, "batch_size");
  json_builder_add_int_value (b, p->batch);
  json_builder_set_member_name (b, "restore_faces");
  json_builder_add_boolean_value (b, FALSE);
  json_builder_set_member_name (b, "sd_model_name");
  json_builder_add_string_value (b, res->model_name);
  json_builder_set_member_name (b, "sd_model_hash");
  json_builder_add_null_value (b);
  json_builder_set_member_name (b, "seed_resize_from_w");
  json_builder_add_int_value (b, -1);
  json_builder_set_member_name (b, "seed_resize_from_h");
  json_builder_add_int_value (b, -1);
  json_builder_set_member_name (b, "denoising_strength");
  if (p->mode != SD_MODE_TXT2IMG)
    json_builder_add_double_value (b, p->strength);
  else
    json_builder_add_null_value (b);
  json_builder_set_member_name (b, "extra_generation_params");
  json_builder_begin_object (b);
  json_builder_end_object (b);
  json_builder_set_member_name (b, "index_of_first_image");
  json_builder_add_int_value (b, 0);
  json_builder_set_member_name (b, "infotexts");
  json_builder_begin_array (b);
  for (guint i = 0; i < n; i++)
    json_builder_add_string_value (b, res->infotexts->pdata[i]);
  json_builder_end_array (b);
  json_builder_set_member_name (b, "styles");
  json_builder_begin_array (b);
  json_builder_end_array (b);
  json_builder_set_member_name (b, "job_timestamp");
  g_autoptr (GDateTime) dt = g_date_time_new_from_unix_local (job_timestamp);
  g_autofree char *ts = dt ? g_date_time_format (dt, "%Y%m%d%H%M%S") : g_strdup ("");
  json_builder_add_string_value (b, ts);
  json_builder_set_member_name (b, "clip_skip");
  json_builder_add_int_value (b, MAX (p->clip_skip, 1));
  json_builder_set_member_name (b, "is_using_inpainting_conditioning");
  json_builder_add_boolean_value (b, p->mode == SD_MODE_INPAINT);
  json_builder_set_member_name (b, "version");
  json_builder_add_string_value (b, "impasto " IMPASTO_VERSION);
  if (res->defaults)
    {
      /* not A1111: which model defaults filled the fields the request left out */
      json_builder_set_member_name (b, "impasto_defaults");
      json_builder_add_string_value (b, res->defaults);
    }
  json_builder_end_object (b);
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  return json_to_string (root, FALSE);
}

JsonNode *
imp_api_build_response (const ImpApiRequest *req, const ImpJobResult *result, gint64 job_timestamp)
{
  const ImpJobParams *p = &req->params;
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "images");
  json_builder_begin_array (b);
  for (guint i = 0; i < result->png->len; i++)
    {
      gsize len;
      const guchar *data = g_bytes_get_data (result->png->pdata[i], &len);
      g_autofree char *b64 = g_base64_encode (data, len);
      json_builder_add_string_value (b, b64);
    }
  json_builder_end_array (b);

  /* the request as understood, with defaults filled in (images not echoed,
   * as A1111 without include_init_images) */
  json_builder_set_member_name (b, "parameters");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "prompt");
  json_builder_add_string_value (b, p->prompt ? p->prompt : "");
  json_builder_set_member_name (b, "negative_prompt");
  json_builder_add_string_value (b, p->negative ? p->negative : "");
  json_builder_set_member_name (b, "seed");
  json_builder_add_int_value (b, req->request_seed);
  json_builder_set_member_name (b, "steps");
  json_builder_add_int_value (b, p->steps);
  json_builder_set_member_name (b, "cfg_scale");
  json_builder_add_double_value (b, p->cfg_scale);
  json_builder_set_member_name (b, "width");
  json_builder_add_int_value (b, p->width);
  json_builder_set_member_name (b, "height");
  json_builder_add_int_value (b, p->height);
  json_builder_set_member_name (b, "sampler_name");
  json_builder_add_string_value (b, sd_sampler_display_name (p->sampler));
  json_builder_set_member_name (b, "scheduler");
  json_builder_add_string_value (b, p->karras ? "Karras" : "Automatic");
  json_builder_set_member_name (b, "batch_size");
  json_builder_add_int_value (b, p->batch);
  json_builder_set_member_name (b, "n_iter");
  json_builder_add_int_value (b, p->n_iter);
  if (req->img2img)
    {
      json_builder_set_member_name (b, "init_images");
      json_builder_add_null_value (b);
      json_builder_set_member_name (b, "mask");
      json_builder_add_null_value (b);
      json_builder_set_member_name (b, "denoising_strength");
      json_builder_add_double_value (b, p->strength);
      json_builder_set_member_name (b, "mask_blur");
      json_builder_add_int_value (b, p->mask_blur);
      json_builder_set_member_name (b, "inpainting_mask_invert");
      json_builder_add_int_value (b, p->mask_invert ? 1 : 0);
      json_builder_set_member_name (b, "inpaint_full_res");
      json_builder_add_boolean_value (b, p->full_res);
      json_builder_set_member_name (b, "inpaint_full_res_padding");
      json_builder_add_int_value (b, p->full_res_padding);
    }
  json_builder_set_member_name (b, "override_settings");
  json_builder_begin_object (b);
  if (req->model)
    {
      json_builder_set_member_name (b, "sd_model_checkpoint");
      json_builder_add_string_value (b, req->model);
    }
  if (p->clip_skip > 0)
    {
      json_builder_set_member_name (b, "CLIP_stop_at_last_layers");
      json_builder_add_int_value (b, p->clip_skip);
    }
  json_builder_end_object (b);
  json_builder_end_object (b);

  json_builder_set_member_name (b, "info");
  g_autofree char *info = info_json (req, result, job_timestamp);
  json_builder_add_string_value (b, info);
  json_builder_end_object (b);
  return json_builder_get_root (b);
}

char *
imp_api_error_json (const char *name, const char *detail, gsize *len)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "error");
  json_builder_add_string_value (b, name);
  json_builder_set_member_name (b, "detail");
  json_builder_add_string_value (b, detail);
  json_builder_end_object (b);
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  json_generator_set_root (gen, root);
  return json_generator_to_data (gen, len);
}

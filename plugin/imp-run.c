/* imp-run.c: one run of an Impasto procedure (see imp-run.h). */
#include "imp-run.h"

#include <string.h>
#include <unistd.h>

#include "imp-models.h"
#include "sd-error.h"

/* Ask `impasto serve` for the generated image itself, not composited back
 * over the init image through the mask (what AUTOMATIC1111 returns): the
 * colour match measures the model's drift on the ring around the selection,
 * which a composited image hides. Servers that do not know the field ignore
 * it (A1111 ignores unknown fields); the colour match then does (almost)
 * nothing, and the result is otherwise the same, since the layer mask does
 * the compositing. */
#define RAW_RESULT_FIELD "impasto_uncomposited"

void
imp_result_clear (ImpResult *r)
{
  g_clear_pointer (&r->pixels, sd_image_free);
  g_clear_pointer (&r->mask, g_free);
  g_clear_pointer (&r->infotext, g_free);
  g_clear_pointer (&r->model_path, g_free);
  g_clear_pointer (&r->model_name, g_free);
}

/* ---- request / response ------------------------------------------------------------ */

static char *
image_to_base64 (const SdImage *img, GError **error)
{
  g_autoptr (GBytes) png = sd_image_save_png_to_bytes (img, 1, error);
  if (!png)
    return NULL;
  gsize len = 0;
  const guchar *data = g_bytes_get_data (png, &len);
  return g_base64_encode (data, len);
}

JsonNode *
imp_run_build_request (const ImpParams *p, const char *model_path, gint64 seed, int width,
                       int height, const SdImage *init, const float *mask, GError **error)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  g_autofree char *init_b64 = NULL, *mask_b64 = NULL;

  if (init && !(init_b64 = image_to_base64 (init, error)))
    return NULL;
  if (mask)
    {
      g_autoptr (SdImage) m = sd_image_new (width, height, 1, error);
      if (!m)
        return NULL;
      sd_image_from_mask (m, 0, mask);
      if (!(mask_b64 = image_to_base64 (m, error)))
        return NULL;
    }

  json_builder_begin_object (b);
  json_builder_set_member_name (b, "prompt");
  json_builder_add_string_value (b, p->prompt);
  json_builder_set_member_name (b, "negative_prompt");
  json_builder_add_string_value (b, p->negative);
  json_builder_set_member_name (b, "seed");
  json_builder_add_int_value (b, seed);
  json_builder_set_member_name (b, "steps");
  json_builder_add_int_value (b, p->steps);
  json_builder_set_member_name (b, "cfg_scale");
  json_builder_add_double_value (b, p->cfg_scale);
  json_builder_set_member_name (b, "sampler_name");
  json_builder_add_string_value (b, *p->sampler ? p->sampler : IMP_DEFAULT_SAMPLER);
  json_builder_set_member_name (b, "width");
  json_builder_add_int_value (b, width);
  json_builder_set_member_name (b, "height");
  json_builder_add_int_value (b, height);
  json_builder_set_member_name (b, "batch_size");
  json_builder_add_int_value (b, 1);
  json_builder_set_member_name (b, "n_iter");
  json_builder_add_int_value (b, 1);
  json_builder_set_member_name (b, "send_images");
  json_builder_add_boolean_value (b, TRUE);
  json_builder_set_member_name (b, "save_images");
  json_builder_add_boolean_value (b, FALSE);
  json_builder_set_member_name (b, "override_settings");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "sd_model_checkpoint");
  json_builder_add_string_value (b, model_path);
  json_builder_end_object (b);
  json_builder_set_member_name (b, "override_settings_restore_afterwards");
  json_builder_add_boolean_value (b, TRUE);
  if (init_b64)
    {
      json_builder_set_member_name (b, "init_images");
      json_builder_begin_array (b);
      json_builder_add_string_value (b, init_b64);
      json_builder_end_array (b);
      json_builder_set_member_name (b, "denoising_strength");
      json_builder_add_double_value (b, p->strength);
      json_builder_set_member_name (b, "resize_mode");
      json_builder_add_int_value (b, 0);
    }
  if (mask_b64)
    {
      json_builder_set_member_name (b, "mask");
      json_builder_add_string_value (b, mask_b64);
      /* The plug-in already made the model mask (grown, binary) and does
       * the soft edge with the layer mask: no blur, no crop, no invert. */
      json_builder_set_member_name (b, "mask_blur");
      json_builder_add_int_value (b, 0);
      json_builder_set_member_name (b, "inpainting_fill");
      json_builder_add_int_value (b, 1); /* "original" */
      json_builder_set_member_name (b, "inpaint_full_res");
      json_builder_add_boolean_value (b, FALSE);
      json_builder_set_member_name (b, "inpainting_mask_invert");
      json_builder_add_int_value (b, 0);
      json_builder_set_member_name (b, RAW_RESULT_FIELD);
      json_builder_add_boolean_value (b, TRUE);
    }
  json_builder_end_object (b);
  return json_builder_get_root (b);
}

/* json-glib 1.6 has no json_object_get_array_member_with_default. */
static JsonArray *
array_member (JsonObject *o, const char *name)
{
  JsonNode *n = o ? json_object_get_member (o, name) : NULL;
  return n && JSON_NODE_HOLDS_ARRAY (n) ? json_node_get_array (n) : NULL;
}

/* The first image of an A1111 reply, as RGB, and its infotext. */
static SdImage *
decode_reply (JsonNode *reply, char **infotext, GError **error)
{
  JsonObject *o = reply && JSON_NODE_HOLDS_OBJECT (reply) ? json_node_get_object (reply) : NULL;
  JsonArray *images = array_member (o, "images");
  JsonNode *first
      = images && json_array_get_length (images) ? json_array_get_element (images, 0) : NULL;
  if (!first || !JSON_NODE_HOLDS_VALUE (first) || json_node_get_value_type (first) != G_TYPE_STRING)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_FAILED, "the backend's reply holds no image");
      return NULL;
    }
  const char *b64 = json_node_get_string (first);
  const char *comma = g_str_has_prefix (b64, "data:") ? strchr (b64, ',') : NULL;
  if (comma)
    b64 = comma + 1;
  gsize len = 0;
  g_autofree guchar *png = g_base64_decode (b64, &len);
  SdImage *img = sd_image_load_png_from_memory (png, len, 3, NULL, error);
  if (!img)
    {
      g_prefix_error (error, "the backend's image: ");
      return NULL;
    }

  /* infotext: info.infotexts[0] (info is a JSON string in A1111), else the
   * PNG's "parameters" chunk */
  *infotext = NULL;
  const char *info = json_object_get_string_member_with_default (o, "info", NULL);
  if (info)
    {
      g_autoptr (JsonParser) parser = json_parser_new ();
      if (json_parser_load_from_data (parser, info, -1, NULL)
          && JSON_NODE_HOLDS_OBJECT (json_parser_get_root (parser)))
        {
          JsonObject *io = json_node_get_object (json_parser_get_root (parser));
          JsonArray *texts = array_member (io, "infotexts");
          if (texts && json_array_get_length (texts)
              && json_node_get_value_type (json_array_get_element (texts, 0)) == G_TYPE_STRING)
            *infotext = g_strdup (json_array_get_string_element (texts, 0));
        }
    }
  if (!*infotext && sd_image_get_text (img, "parameters"))
    *infotext = g_strdup (sd_image_get_text (img, "parameters"));
  return img;
}

/* ---- running -------------------------------------------------------------------------- */

static char *
new_task_id (void)
{
  return g_strdup_printf ("impasto-gimp-%d-%08x", (int) getpid (), g_random_int ());
}

/* Ensure the server, send, wait, decode; the image comes back at w x h. */
static SdImage *
send_job (ImpClient *client, const ImpParams *p, const char *model_path, gint64 seed, int w, int h,
          const SdImage *init, const float *mask, ImpProgressFn progress, gpointer progress_data,
          GCancellable *cancellable, char **infotext, GError **error)
{
  g_autoptr (JsonNode) body = imp_run_build_request (p, model_path, seed, w, h, init, mask, error);
  if (!body)
    return NULL;
  g_autofree char *task = new_task_id ();
  json_object_set_string_member (json_node_get_object (body), "force_task_id", task);

  if (!imp_client_ensure_server (client, progress, progress_data, cancellable, error))
    return NULL;
  if (progress)
    progress (progress_data, 0, "Sending the job\u2026");
  g_autoptr (JsonNode) reply
      = imp_client_run_job (client, init ? "/sdapi/v1/img2img" : "/sdapi/v1/txt2img", body,
                            progress, progress_data, cancellable, error);
  if (!reply)
    return NULL;
  g_autoptr (SdImage) img = decode_reply (reply, infotext, error);
  if (!img)
    return NULL;
  if (img->width != w || img->height != h)
    {
      /* a server that rounds sizes differently: bring it back to the asked size */
      SdImage *scaled = sd_image_resample (img, w, h, SD_RESAMPLE_LANCZOS3, error);
      return scaled;
    }
  return g_steal_pointer (&img);
}

static SdImage *
to_rgb (const SdImage *img, GError **error)
{
  return img->channels == 3 ? sd_image_copy (img) : sd_image_convert (img, 3, error);
}

/* gen (any size, RGB) -> RGBA at w x h. */
static SdImage *
scale_to_rgba (const SdImage *gen, int w, int h, GError **error)
{
  g_autoptr (SdImage) scaled = NULL;
  if (gen->width != w || gen->height != h)
    {
      scaled = sd_image_resample (gen, w, h, SD_RESAMPLE_LANCZOS3, error);
      if (!scaled)
        return NULL;
      gen = scaled;
    }
  return sd_image_convert (gen, 4, error);
}

static gboolean
run_generate (ImpClient *client, const ImpParams *p, const ImpSource *src, int target, int multiple,
              ImpProgressFn progress, gpointer progress_data, GCancellable *cancellable,
              ImpResult *r, GError **error)
{
  r->rect = imp_generate_rect (src->image_width, src->image_height,
                               p->use_selection && src->has_selection ? &src->selection : NULL);
  imp_working_size (r->rect.width, r->rect.height, target, multiple, &r->work_width,
                    &r->work_height);
  g_autoptr (SdImage) gen
      = send_job (client, p, r->model_path, r->seed, r->work_width, r->work_height, NULL, NULL,
                  progress, progress_data, cancellable, &r->infotext, error);
  if (!gen)
    return FALSE;
  r->pixels = scale_to_rgba (gen, r->rect.width, r->rect.height, error);
  return r->pixels != NULL;
}

static gboolean
run_img2img (ImpClient *client, const ImpParams *p, const ImpSource *src, int target, int multiple,
             ImpProgressFn progress, gpointer progress_data, GCancellable *cancellable,
             ImpResult *r, GError **error)
{
  gboolean masked = p->use_selection && src->has_selection;
  r->rect = imp_img2img_rect (src->drawable, masked ? &src->selection : NULL);
  if (imp_rect_is_empty (r->rect))
    {
      g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG,
                   "the selection does not overlap the layer: select a part of the layer, or "
                   "turn off \"use selection\"");
      return FALSE;
    }
  g_autoptr (SdImage) pixels = src->read_pixels (src->host, r->rect, error);
  if (!pixels)
    return FALSE;
  if (masked && !(r->mask = src->read_selection (src->host, r->rect, error)))
    return FALSE;

  imp_working_size (r->rect.width, r->rect.height, target, multiple, &r->work_width,
                    &r->work_height);
  g_autoptr (SdImage) work
      = sd_image_resample (pixels, r->work_width, r->work_height, SD_RESAMPLE_LANCZOS3, error);
  g_autoptr (SdImage) work_rgb = work ? to_rgb (work, error) : NULL;
  if (!work_rgb)
    return FALSE;
  g_autoptr (SdImage) gen
      = send_job (client, p, r->model_path, r->seed, r->work_width, r->work_height, work_rgb, NULL,
                  progress, progress_data, cancellable, &r->infotext, error);
  if (!gen)
    return FALSE;
  r->pixels = scale_to_rgba (gen, r->rect.width, r->rect.height, error);
  if (!r->pixels)
    return FALSE;
  /* keep the source's transparency (a sprite stays a sprite) */
  if (pixels->channels == 4)
    for (int y = 0; y < r->rect.height; y++)
      {
        const guint8 *s = sd_image_row (pixels, y);
        guint8 *d = sd_image_row (r->pixels, y);
        for (int x = 0; x < r->rect.width; x++)
          d[4 * x + 3] = s[4 * x + 3];
      }
  return TRUE;
}

static gboolean
run_inpaint (ImpClient *client, const ImpParams *p, const ImpSource *src, int target, int multiple,
             ImpProgressFn progress, gpointer progress_data, GCancellable *cancellable,
             ImpResult *r, GError **error)
{
  if (!src->has_selection)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG,
                   "Inpaint Selection needs a selection: select the part of the image to repaint "
                   "first");
      return FALSE;
    }
  ImpInpaintOptions o;
  imp_inpaint_options_init (&o, target);
  o.multiple = multiple;
  o.padding = p->padding / 100.0;
  o.grow = p->grow;
  o.feather = p->feather;
  ImpInpaintPlan plan;
  if (!imp_inpaint_plan (&o, src->selection, src->image_width, src->image_height, &plan, error))
    return FALSE;

  g_autoptr (SdImage) box_pixels = src->read_pixels (src->host, plan.box, error);
  if (!box_pixels)
    return FALSE;
  g_autofree float *box_sel = src->read_selection (src->host, plan.box, error);
  if (!box_sel)
    return FALSE;

  g_autoptr (SdImage) work_image = NULL;
  g_autofree float *work_mask = NULL, *model_mask_box = NULL, *layer_mask_box = NULL;
  if (!imp_inpaint_prepare (&o, &plan, box_pixels, box_sel, &work_image, &work_mask,
                            &model_mask_box, &layer_mask_box, error))
    return FALSE;
  gsize n = (gsize) plan.work_width * plan.work_height;
  gboolean any = FALSE;
  for (gsize i = 0; i < n && !any; i++)
    any = work_mask[i] > 0.5f;
  if (!any)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG,
                   "the selection is too faint or too small to inpaint: no pixel is selected at "
                   "50 %% or more at the working size");
      return FALSE;
    }

  r->rect = plan.box;
  r->work_width = plan.work_width;
  r->work_height = plan.work_height;
  g_autoptr (SdImage) gen
      = send_job (client, p, r->model_path, r->seed, plan.work_width, plan.work_height, work_image,
                  work_mask, progress, progress_data, cancellable, &r->infotext, error);
  if (!gen)
    return FALSE;
  g_autoptr (SdImage) finished
      = imp_inpaint_finish (&plan, gen, box_pixels, model_mask_box, p->color_match, error);
  if (!finished)
    return FALSE;
  r->pixels = finished->channels == 4 ? g_steal_pointer (&finished)
                                      : sd_image_convert (finished, 4, error);
  if (!r->pixels)
    return FALSE;
  r->mask = g_steal_pointer (&layer_mask_box);
  return TRUE;
}

gboolean
imp_run (ImpClient *client, const ImpParams *params, const ImpSource *src, ImpProgressFn progress,
         gpointer progress_data, GCancellable *cancellable, ImpResult *result, GError **error)
{
  memset (result, 0, sizeof *result);
  if (!imp_params_validate (params, error))
    return FALSE;
  result->seed = params->seed >= 0 ? params->seed : g_random_int_range (0, G_MAXINT32);

  g_autoptr (ImpModelInfo) model = imp_model_probe (params->model, error);
  if (!model)
    return FALSE;
  result->model_path = g_strdup (model->path);
  result->model_name = g_strdup (model->name);
  /* the working size: about target^2 pixels, sides multiples of what the
   * model needs */
  int target = params->size > 0 ? params->size : model->native_size;

  gboolean ok = FALSE;
  switch (params->proc)
    {
    case IMP_PROC_GENERATE:
      ok = run_generate (client, params, src, target, model->multiple, progress, progress_data,
                         cancellable, result, error);
      break;
    case IMP_PROC_IMG2IMG:
      ok = run_img2img (client, params, src, target, model->multiple, progress, progress_data,
                        cancellable, result, error);
      break;
    case IMP_PROC_INPAINT:
      ok = run_inpaint (client, params, src, target, model->multiple, progress, progress_data,
                        cancellable, result, error);
      break;
    default:
      g_assert_not_reached ();
    }
  if (!ok)
    imp_result_clear (result);
  return ok;
}

char *
imp_result_job_text (const ImpParams *params, const ImpResult *r)
{
  g_auto (ImpParams) p = { 0 };
  imp_params_copy (&p, params);
  p.seed = r->seed;
  p.last_seed = r->seed;

  g_autoptr (GKeyFile) kf = g_key_file_new ();
  g_key_file_set_integer (kf, "result", "x", r->rect.x);
  g_key_file_set_integer (kf, "result", "y", r->rect.y);
  g_key_file_set_integer (kf, "result", "width", r->rect.width);
  g_key_file_set_integer (kf, "result", "height", r->rect.height);
  g_key_file_set_integer (kf, "result", "work-width", r->work_width);
  g_key_file_set_integer (kf, "result", "work-height", r->work_height);
  g_key_file_set_string (kf, "result", "model-path", r->model_path ? r->model_path : "");
  g_key_file_set_string (kf, "result", "parameters", r->infotext ? r->infotext : "");
  g_autofree char *extra = g_key_file_to_data (kf, NULL, NULL);
  return imp_params_to_text (&p, extra);
}

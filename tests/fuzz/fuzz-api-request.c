/* fuzz-api-request: the A1111 request parser of `impasto serve`
 * (backend/serve-api.c) on arbitrary bytes: JSON, field types and ranges,
 * base64, PNG decoding of init images and masks, and the response builder.
 *
 * Input: the first byte selects the endpoint (even: txt2img, odd: img2img),
 * the rest is the request body. Invariants (abort () on violation): a
 * request either fails with an IMP_API_ERROR whose HTTP status is 4xx, or
 * succeeds with parameters imp_job_params_validate accepts; the error JSON is
 * valid JSON. Small limits keep decoded images cheap. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "serve-api.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  if (size < 1)
    return 0;
  gboolean img2img = data[0] & 1;
  ImpApiLimits limits;
  imp_api_limits_init (&limits);
  limits.max_image_pixels = 512 * 512;
  ImpApiRequest req;
  GError *error = NULL;
  if (!imp_api_parse_request ((const char *) data + 1, size - 1, img2img, &limits, &req, &error))
    {
      if (error == NULL || error->domain != IMP_API_ERROR)
        abort ();
      guint status = imp_api_error_status (error);
      if (status < 400 || status > 499)
        abort ();
      gsize len = 0;
      char *json = imp_api_error_json (imp_api_error_name (error), error->message, &len);
      JsonParser *p = json_parser_new ();
      if (!json_parser_load_from_data (p, json, (gssize) len, NULL))
        abort ();
      g_object_unref (p);
      g_free (json);
      g_error_free (error);
      return 0;
    }
  if (!imp_job_params_validate (&req.params, &limits.job, NULL))
    abort ();
  if (req.params.mask && (!req.params.init || req.params.mode != SD_MODE_INPAINT))
    abort ();
  imp_api_request_clear (&req);
  return 0;
}

/* sd-error.h: the error domain of diffusion/. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define SD_ERROR (sd_error_quark ())

typedef enum
{
  SD_ERROR_FAILED,        /* anything not covered below */
  SD_ERROR_IO,            /* cannot open / read / write a file */
  SD_ERROR_CORRUPT,       /* a file's contents are malformed */
  SD_ERROR_UNSUPPORTED,   /* well-formed but not something we handle (pickle, unknown arch) */
  SD_ERROR_MISSING,       /* a required tensor / file / vocabulary is absent */
  SD_ERROR_INVALID_ARG,   /* a bad parameter from the user (size, steps, sampler name...) */
  SD_ERROR_CANCELLED,     /* the job was cancelled */
  SD_ERROR_OUT_OF_MEMORY, /* a model or activation plan does not fit */
} SdError;

GQuark sd_error_quark (void);

G_END_DECLS

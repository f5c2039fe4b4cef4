/* sched-golden.h: reading golden manifests and case files for the scheduler,
 * sampler and noise tests. Cases are selected by kind and driven by their
 * params, never by id. */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>

#include "safetensors.h"
#include "sd-sampler.h"

G_BEGIN_DECLS

typedef struct
{
  char *dir;          /* folder holding manifest.json */
  JsonParser *parser; /* owns the tree */
  JsonObject *root;
} SgManifest;

/* Load dir/manifest.json; NULL (with a test failure message) on a broken file. */
SgManifest *sg_manifest_load (const char *dir);
void sg_manifest_free (SgManifest *m);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SgManifest, sg_manifest_free)

/* The case objects of a kind, in manifest order (borrowed). */
GPtrArray *sg_manifest_cases (SgManifest *m, const char *kind);

/* Open the case's safetensors file (asserts on failure). */
SdSafetensors *sg_open_case (SgManifest *m, JsonObject *c);

/* Read a tensor as float32 (asserts it exists); *n_out gets its element count. */
float *sg_read (SdSafetensors *st, const char *name, gsize *n_out);
gboolean sg_has (SdSafetensors *st, const char *name);
/* Shape of a tensor; returns ndim. */
int sg_shape (SdSafetensors *st, const char *name, gint64 shape[8]);

/* The fp32 bound of an output (tolerance.per_output.<name>.fp32, else the case's fp32). */
double sg_tolerance (JsonObject *c, const char *output);

/* SdSchedulerConfig from a diffusers scheduler config object. */
void sg_scheduler_config (JsonObject *o, SdSchedulerConfig *cfg);
/* The scheduler config of a case: params.scheduler_config, else the model's. */
void sg_case_scheduler_config (SgManifest *m, JsonObject *c, SdSchedulerConfig *cfg);

/* Member helpers that tolerate absence / null. */
JsonObject *sg_obj (JsonObject *o, const char *member);
const char *sg_str (JsonObject *o, const char *member);
double sg_num (JsonObject *o, const char *member, double fallback);

/* Count of bit-identical values. */
gsize sg_bit_identical (const float *a, const float *b, gsize n);
double sg_max_abs (const float *a, const float *b, gsize n);

G_END_DECLS

/* sd-weights.h: a model component's weights on the device.
 *
 * Tensors are uploaded on first request, converted to the component's storage
 * dtype, and cached by name; fused tensors (e.g. q/k/v projections stacked
 * into one [3C, C] matrix so attention needs one GEMM) are built on the CPU
 * from their parts and cached under a combined key.
 */
#pragma once

#include "ivk.h"
#include "sd-model.h"

G_BEGIN_DECLS

typedef struct _SdWeights SdWeights;

/* prefix: the component prefix with its dot, e.g. "unet." */
SdWeights *sd_weights_new (IvkContext *ctx, SdModel *model, const char *prefix, IvkDType dtype);
void sd_weights_free (SdWeights *w);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SdWeights, sd_weights_free)

/* Virtual weights: shapes only, no device memory and no data read (the
 * model may be header-only); graphs over them can be planned, not run. */
void sd_weights_set_virtual (SdWeights *w, gboolean is_virtual);
IvkDType sd_weights_get_dtype (SdWeights *w);
SdModel *sd_weights_get_model (SdWeights *w);
/* Bytes uploaded so far. */
guint64 sd_weights_get_bytes (SdWeights *w);

/* The tensor `prefix + name`, uploaded on first use. On error (missing,
 * unreadable) the error is stored in the graph `g` (sticky) and NULL returned. */
IvkTensor *sd_weights_get (SdWeights *w, IvkGraph *g, const char *name);
/* Same with an explicit dtype (e.g. f32 for a numerically fragile weight). */
IvkTensor *sd_weights_get_as (SdWeights *w, IvkGraph *g, const char *name, IvkDType dtype);
/* printf-style name */
IvkTensor *sd_weights_getf (SdWeights *w, IvkGraph *g, const char *format, ...) G_GNUC_PRINTF (3, 4);
/* TRUE when the model has `prefix + name`. */
gboolean sd_weights_has (SdWeights *w, const char *name);
/* Rows of several tensors stacked along dim 0 (they must agree in the other
 * dims), uploaded once: e.g. q/k/v weights -> [3C, C], biases -> [3C]. */
IvkTensor *sd_weights_get_stacked (SdWeights *w, IvkGraph *g, const char *const *names, guint n);
/* Read a tensor to the host as float32 (caller frees). */
float *sd_weights_read_host (SdWeights *w, const char *name, gint64 *n_elements, GError **error);

G_END_DECLS

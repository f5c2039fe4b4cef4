/* ops-common.h: helpers shared by the op wrappers. */
#pragma once

#include "ivk-ops.h"
#include "ivk-private.h"

/* Shader variant by name ("matmul_a16_w16"); aborts on a name not built
 * (a programmer error: shaders/meson.build and the wrappers disagree). */
IvkShader ivk_shader_lookup (const char *name);
/* The activation/weight variant of an op family: "<op>_a32_w32" etc. */
gboolean ivk_pick_aw (IvkGraph *g, const char *op, IvkDType act, IvkDType w, IvkShader *shader);
/* "<op>_f32" / "<op>_f16" */
gboolean ivk_pick_act (IvkGraph *g, const char *op, IvkDType act, IvkShader *shader);

/* Register-block shape of the GEMM-like kernels for this device and problem. */
void ivk_gemm_tiles (IvkGraph *g, gint64 m, gint64 n, guint32 *wx, guint32 *wy, guint32 *tm,
                     guint32 *tn);

gboolean ivk_same_shape (const IvkTensor *a, const IvkTensor *b);
gboolean ivk_is_float (IvkDType d);

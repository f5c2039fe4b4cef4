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

/* IMPASTO_GEMM_TILES=wx,wy,tm,tn overrides the register-block choice of the
 * GEMM-like kernels (for `impasto bench ops` experiments). */
gboolean ivk_gemm_tiles_override (guint32 *wx, guint32 *wy, guint32 *tm, guint32 *tn);

/* TRUE when `t` may be bound as a uniform texel buffer of `per_texel` (1 or 4)
 * elements (IVK_BIND_TEXEL / IVK_BIND_TEXEL4): the device has texel buffers, t
 * is a float tensor, contiguous or with a row stride that is a multiple of the
 * texel, and its offset inside its root tensor is a multiple of the texel
 * (roots themselves are at least 64-byte aligned). Callers check the row
 * length (e.g. K % 4 == 0) themselves. */
gboolean ivk_texel_ok (IvkGraph *g, const IvkTensor *t, guint per_texel);

/* FALSE when the fast path `name` is listed in IMPASTO_DISABLE (comma
 * separated; "all" turns off every path that checks here). Each such path
 * has a plainer kernel it falls back to, so tests can run both ways. */
gboolean ivk_fast_path (const char *name);

/* For the texel kernels with a 3-D grid (binary_tex, copy_tex): merge
 * adjacent dimensions of the 4-D iteration shape it4 where every stride set
 * (n_sets arrays of 4 element strides; the output's contiguous strides among
 * them) allows it, into the last one, then give the grid: x over groups of 4
 * along dim 3 in workgroups of 8, y over dim 2, z over dims 0 and 1. FALSE
 * when the grid would exceed the device's limits. it4 and the strides are
 * updated in place. */
gboolean ivk_grid_tex3d (IvkGraph *g, gint64 *it4, gint64 **strides, int n_sets, guint32 groups[3]);

gboolean ivk_same_shape (const IvkTensor *a, const IvkTensor *b);
gboolean ivk_is_float (IvkDType d);

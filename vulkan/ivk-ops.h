/* ivk-ops.h: the tensor ops Stable Diffusion needs, as graph builders.
 *
 * Every op appends dispatches to a graph and returns a new tensor (or NULL on
 * error; see the sticky-error rule in ivk.h). Layout is row-major, NCHW for
 * images. "Activation" operands are in the graph's working precision (f32 or
 * f16 storage); "weight" operands (matmul B, conv weights, norm affine, bias,
 * embedding tables) may be f16 while activations are f32 (the "mixed" variant,
 * used for numerically fragile parts such as the VAE). Outputs take the dtype
 * of the main activation input. Arithmetic and accumulation are fp32 always.
 */
#pragma once

#include "ivk.h"

G_BEGIN_DECLS

/* ---- GEMM ---- */

typedef enum
{
  IVK_MATMUL_DEFAULT = 0,
  IVK_MATMUL_TRANS_B = 1 << 0, /* b is [.., N, K] (PyTorch Linear weight layout) */
} IvkMatmulFlags;

/* out[.., M, N] = alpha * a[.., M, K] @ b[.., K, N] (+ bias[N]) (+ residual[.., M, N]).
 * a may have leading batch dims; b is either 2-D (shared) or has the same batch.
 * bias, residual may be NULL. */
IvkTensor *ivk_matmul (IvkGraph *g, IvkTensor *a, IvkTensor *b, IvkTensor *bias,
                       IvkTensor *residual, float alpha, IvkMatmulFlags flags);

/* PyTorch Linear: x[.., in] @ w[out, in]^T + bias[out] (bias may be NULL). */
IvkTensor *ivk_linear (IvkGraph *g, IvkTensor *x, IvkTensor *w, IvkTensor *bias);

/* ---- convolution ---- */

typedef struct
{
  int stride;                /* 1 or 2 */
  int pad_top, pad_bottom;   /* zero padding; the VAE encoder's downsampler uses (0, 1, 0, 1) */
  int pad_left, pad_right;
  gboolean upsample;         /* nearest upsample of x first (fused, never materialised) */
  int up_height, up_width;   /* its target size; 0 = twice the input (torch 'nearest' to a size
                              * otherwise: src = floor(dst * in / out), as diffusers uses for
                              * latents that are not a multiple of 2^levels) */
  IvkTensor *residual;       /* added to the output (same shape), or NULL */
} IvkConvParams;

/* out[N, Co, OH, OW] = conv(x[N, Ci, H, W], w[Co, Ci, KH, KW]) + bias[Co].
 * params NULL = stride 1, "same" padding (K/2). */
IvkTensor *ivk_conv2d (IvkGraph *g, IvkTensor *x, IvkTensor *w, IvkTensor *bias,
                       const IvkConvParams *params);

/* ---- normalisation ---- */

/* GroupNorm over x[N, C, ...] with per-channel affine; optional fused SiLU.
 * Statistics are two-pass in fp32. */
IvkTensor *ivk_group_norm (IvkGraph *g, IvkTensor *x, IvkTensor *gamma, IvkTensor *beta,
                           int groups, float eps, gboolean silu);

/* LayerNorm over the last dimension of x[.., C]. */
IvkTensor *ivk_layer_norm (IvkGraph *g, IvkTensor *x, IvkTensor *gamma, IvkTensor *beta,
                           float eps);

/* Softmax over the last dimension (fp32 max/sum). */
IvkTensor *ivk_softmax (IvkGraph *g, IvkTensor *x, float scale);

/* ---- attention ---- */

typedef struct
{
  int heads;
  float scale;     /* usually 1/sqrt(head_dim) */
  gboolean causal; /* token i attends to keys j <= i (CLIP) */
} IvkAttentionParams;

/* Multi-head scaled-dot-product attention, flash style: O(N) memory, no
 * score matrix. q[B, Tq, H*D], k[B, Tk, H*D], v[B, Tk, H*D] -> out[B, Tq, H*D].
 * Head h uses columns h*D .. h*D+D-1. q, k, v may be column slices of one
 * fused projection (see ivk_slice_columns). */
IvkTensor *ivk_attention (IvkGraph *g, IvkTensor *q, IvkTensor *k, IvkTensor *v,
                          const IvkAttentionParams *params);

/* ---- element-wise ---- */

typedef enum
{
  IVK_UNARY_SILU,
  IVK_UNARY_GELU,       /* exact erf GELU */
  IVK_UNARY_QUICK_GELU, /* x * sigmoid(1.702 x) */
  IVK_UNARY_EXP,
  IVK_UNARY_SCALE,      /* alpha * x + beta */
  IVK_UNARY_CLAMP,      /* clamp(x, alpha, beta) */
  IVK_UNARY_TANH,
  IVK_UNARY_SIGMOID,
} IvkUnaryOp;

IvkTensor *ivk_unary (IvkGraph *g, IvkTensor *x, IvkUnaryOp op, float alpha, float beta);
IvkTensor *ivk_silu (IvkGraph *g, IvkTensor *x);
IvkTensor *ivk_gelu (IvkGraph *g, IvkTensor *x);
IvkTensor *ivk_quick_gelu (IvkGraph *g, IvkTensor *x);
IvkTensor *ivk_scale (IvkGraph *g, IvkTensor *x, float alpha, float beta);

typedef enum
{
  IVK_BINARY_ADD,
  IVK_BINARY_SUB,
  IVK_BINARY_MUL,
} IvkBinaryOp;

/* Numpy broadcasting over up to 4 dims (shapes right-aligned). Both operands
 * must have the same dtype. */
IvkTensor *ivk_binary (IvkGraph *g, IvkTensor *a, IvkTensor *b, IvkBinaryOp op);
IvkTensor *ivk_add (IvkGraph *g, IvkTensor *a, IvkTensor *b);
IvkTensor *ivk_mul (IvkGraph *g, IvkTensor *a, IvkTensor *b);

/* GEGLU: x[.., 2F] -> x[.., :F] * gelu(x[.., F:]) (diffusers GEGLU: first half is the value). */
IvkTensor *ivk_geglu (IvkGraph *g, IvkTensor *x);

/* ---- data movement ---- */

/* Contiguous copy (also gives views and inputs their own storage). */
IvkTensor *ivk_copy (IvkGraph *g, IvkTensor *x);
/* Convert dtype. */
IvkTensor *ivk_cast (IvkGraph *g, IvkTensor *x, IvkDType dtype);
/* General permutation of up to 4 dims: out.shape[i] = x.shape[perm[i]]. */
IvkTensor *ivk_permute (IvkGraph *g, IvkTensor *x, const int *perm);
/* Concatenate along an axis (e.g. channels of NCHW: axis 1). */
IvkTensor *ivk_concat (IvkGraph *g, IvkTensor *a, IvkTensor *b, int axis);
/* out = x[.., start:start+len, ..] along `axis` (a copy). */
IvkTensor *ivk_slice (IvkGraph *g, IvkTensor *x, int axis, gint64 start, gint64 len);
/* A view of columns [start, start+len) of x[.., C] without copying: only for
 * ops that accept strided rows (ivk_attention). */
IvkTensor *ivk_slice_columns (IvkGraph *g, IvkTensor *x, gint64 start, gint64 len);
/* Nearest-neighbour 2x upsample of x[N, C, H, W]. */
IvkTensor *ivk_upsample_nearest2x (IvkGraph *g, IvkTensor *x);

/* ---- embeddings ---- */

/* out[T, C] = table[ids[t], :]; ids is an I32 tensor of any shape (flattened).
 * Output dtype: `dtype`. */
IvkTensor *ivk_embedding (IvkGraph *g, IvkTensor *ids, IvkTensor *table, IvkDType dtype);

/* Sinusoidal embedding of t[N] (f32): out[N, dim] with freq_k =
 * exp(-ln(max_period) * k / (half - shift)), [sin, cos] or [cos, sin] when
 * flip_sin_to_cos (diffusers Timesteps / get_timestep_embedding). */
IvkTensor *ivk_timestep_embedding (IvkGraph *g, IvkTensor *t, int dim, gboolean flip_sin_to_cos,
                                   float freq_shift, float max_period, IvkDType dtype);

G_END_DECLS

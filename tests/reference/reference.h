/* reference.h: plain-C CPU reference ops, the oracle for every shader.
 *
 * One function per op in vulkan/ivk-ops.h, written for obviousness, not
 * speed: simple loops over float arrays (row-major, NCHW for images), double
 * accumulators, libm for transcendental functions. Each function documents the
 * PyTorch / diffusers behaviour it mirrors. Nothing here shares code with the
 * runtime (the fp16 rounding below is written independently of
 * vulkan/ivk-half.h), so a bug cannot hide in both.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* ---- fp16 ---- */

/* Round one float to the nearest IEEE binary16 value (ties to even, with
 * subnormals, overflow to +-inf, NaN kept) and back to float. */
float ref_round_f16 (float x);
/* The same over an array, in place. */
void ref_round_f16_array (float *x, gsize n);

/* ---- GEMM ---- */

/* out[b, m, n] = alpha * sum_k a[b, m, k] * B(b)[k, n] (+ bias[n]) (+ residual[b, m, n]).
 * B(b) is b + (b_batched ? b * K * N : 0), stored [K, N], or [N, K] when
 * trans_b (PyTorch Linear weight layout). bias / residual may be NULL. */
void ref_matmul (const float *a, const float *b, const float *bias, const float *residual,
                 float *out, int batch, int m, int n, int k, gboolean b_batched,
                 gboolean trans_b, float alpha);

/* torch.nn.functional.linear: x[rows, in] @ w[out, in]^T + bias[out]. */
void ref_linear (const float *x, const float *w, const float *bias, float *out, int rows,
                 int in, int out_features);

/* ---- convolution ---- */

typedef struct
{
  int stride;
  int pad_top, pad_bottom, pad_left, pad_right;
  gboolean upsample; /* nearest 2x upsample of x before the convolution */
} RefConvParams;

/* Output size along one axis for a given input size (after upsampling). */
int ref_conv_out_size (int in, int k, int stride, int pad_lo, int pad_hi);

/* torch.nn.functional.conv2d with zero padding (asymmetric allowed, as
 * F.pad(x, (l, r, t, b)) then conv2d(padding=0)):
 * y[N, Co, OH, OW] = sum x[N, Ci, iy, ix] * w[Co, Ci, KH, KW] (+ bias[Co]) (+ residual). */
void ref_conv2d (const float *x, const float *w, const float *bias, const float *residual,
                 float *y, int n, int cin, int h, int wd, int cout, int kh, int kw,
                 const RefConvParams *p);

/* ---- normalisation ---- */

/* torch.nn.GroupNorm(groups, c, eps) over x[n, c, hw] with affine gamma/beta
 * (biased variance), then SiLU when silu. */
void ref_group_norm (const float *x, const float *gamma, const float *beta, float *y, int n,
                     int c, gint64 hw, int groups, float eps, gboolean silu);

/* torch.nn.LayerNorm(c, eps) over the last dimension of x[rows, c]. */
void ref_layer_norm (const float *x, const float *gamma, const float *beta, float *y,
                     gint64 rows, int c, float eps);

/* torch.softmax(scale * x, dim=-1) over x[rows, c]. */
void ref_softmax (const float *x, float *y, gint64 rows, int c, float scale);

/* ---- attention ---- */

/* torch.nn.functional.scaled_dot_product_attention per head, with explicit
 * row strides so q/k/v can be column slices of a fused projection:
 * q row (b, i) starts at q + b * tq * q_rs + i * q_rs, head h at + h * d.
 * out[b, tq, heads * d] is contiguous. causal masks keys j > i (CLIP). */
void ref_attention (const float *q, const float *k, const float *v, float *out, int batch,
                    int tq, int tk, int heads, int d, gint64 q_rs, gint64 k_rs, gint64 v_rs,
                    float scale, gboolean causal);

/* ---- element-wise ---- */

typedef enum
{
  REF_UNARY_SILU,       /* x * sigmoid(x) */
  REF_UNARY_GELU,       /* exact: 0.5 x (1 + erf(x / sqrt 2)), torch gelu(approximate='none') */
  REF_UNARY_QUICK_GELU, /* x * sigmoid(1.702 x) (OpenAI CLIP) */
  REF_UNARY_EXP,
  REF_UNARY_SCALE,      /* alpha * x + beta */
  REF_UNARY_CLAMP,      /* torch.clamp(x, alpha, beta): NaN stays NaN */
  REF_UNARY_TANH,
  REF_UNARY_SIGMOID,
} RefUnaryOp;

/* Same numbering as IvkUnaryOp. */
void ref_unary (const float *x, float *y, gsize n, RefUnaryOp op, float alpha, float beta);

typedef enum
{
  REF_BINARY_ADD,
  REF_BINARY_SUB,
  REF_BINARY_MUL,
} RefBinaryOp;

/* Numpy broadcasting: shapes right-aligned to 4 dims (sa, sb), out has the
 * broadcast shape. */
void ref_binary (const float *a, const gint64 sa[4], const float *b, const gint64 sb[4],
                 float *out, RefBinaryOp op);

/* diffusers GEGLU: x[rows, 2f] -> x[:, :f] * gelu(x[:, f:]) (exact gelu). */
void ref_geglu (const float *x, float *y, gint64 rows, int f);

/* ---- data movement ---- */

void ref_copy (const float *x, float *y, gsize n);
/* Convert to dtype: IVK_F16 rounds to binary16, IVK_I32 truncates toward
 * zero (as the runtime's host conversion), IVK_F32 copies. dtype uses the
 * IvkDType numbering (0 f32, 1 f16, 2 i32). */
void ref_cast (const float *x, float *y, gsize n, int dtype);
/* out.shape[i] = shape[perm[i]] (torch.permute), up to 4 dims. */
void ref_permute (const float *x, float *out, int ndim, const gint64 *shape, const int *perm);
/* torch.cat((a, b), dim=axis); shape_a and shape_b differ only along axis. */
void ref_concat (const float *a, const float *b, float *out, int ndim, const gint64 *shape_a,
                 const gint64 *shape_b, int axis);
/* x.narrow(axis, start, len) copied out. */
void ref_slice (const float *x, float *out, int ndim, const gint64 *shape, int axis,
                gint64 start, gint64 len);
/* F.interpolate(x[planes, h, w], scale_factor=2, mode='nearest'). */
void ref_upsample_nearest2x (const float *x, float *y, gint64 planes, int h, int w);

/* ---- embeddings ---- */

/* out[t, :] = table[ids[t], :]; ids outside [0, rows) are clamped (the
 * runtime's documented guard: a bad id never reads out of bounds). */
void ref_embedding (const gint32 *ids, const float *table, float *out, gsize n_ids, int rows,
                    int c);

/* diffusers get_timestep_embedding(t, dim, flip_sin_to_cos, downscale_freq_shift,
 * max_period), computed in double. Odd dim: the last column is zero (padding). */
void ref_timestep_embedding (const float *t, float *out, gsize n, int dim,
                             gboolean flip_sin_to_cos, float freq_shift, float max_period);

G_END_DECLS

/* ops-conv.c: 2-D convolution (implicit GEMM) with fused upsample, bias and residual. */
#include "config.h"

#include <stdio.h>

#include "ops-common.h"

/* mirrors shaders/conv2d.comp */
typedef struct
{
  guint32 off[IVK_MAX_BINDINGS];
  guint32 cin, h, w;
  guint32 cout, oh, ow;
  guint32 stride;
  gint32 pad_t, pad_l;
  guint32 eh, ew;
} ConvPush;
G_STATIC_ASSERT (sizeof (ConvPush) <= IVK_PUSH_MAX);

/* mirrors shaders/conv2d_tex4.comp */
typedef struct
{
  guint32 off[IVK_MAX_BINDINGS];
  guint32 cin, h, w;
  guint32 cout, oh, ow;
  guint32 blocks;
} Conv4Push;
G_STATIC_ASSERT (sizeof (Conv4Push) <= IVK_PUSH_MAX);

/* IMPASTO_CONV_TILES=wx,wy,tm,tn4[,rh[,co_x]] overrides the block shape of
 * conv2d_tex4.comp (for `impasto bench ops` experiments). */
static gboolean
conv4_tiles_override (guint32 *wx, guint32 *wy, guint32 *tm, guint32 *tn4, guint32 *rh,
                      guint32 *co_x)
{
  const char *env = g_getenv ("IMPASTO_CONV_TILES");
  guint v[6] = { 0, 0, 0, 0, 1, 0 };
  if (!env || sscanf (env, "%u,%u,%u,%u,%u,%u", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) < 4
      || v[0] == 0 || v[1] == 0 || v[0] * v[1] > 1024 || v[2] == 0 || v[2] > 32 || v[3] == 0
      || v[3] > 16 || v[4] == 0 || v[4] > 8)
    return FALSE;
  *wx = v[0];
  *wy = v[1];
  *tm = v[2];
  *tn4 = v[3];
  *rh = v[4];
  *co_x = v[5] != 0;
  return TRUE;
}

static gint64
ceil_div (gint64 a, gint64 b)
{
  return (a + b - 1) / b;
}

/* The vec4-window kernel (conv2d_tex4.comp); the caller checked its
 * conditions. mode: 0 stride 1, 1 nearest 2x upsample + stride 1, 2 stride 2. */
static IvkTensor *
conv_tex4 (IvkGraph *g, IvkTensor *x, IvkTensor *w, IvkTensor *bias, IvkTensor *res, IvkTensor *out,
           guint32 mode, int pad_t, int pad_l, IvkShader shader)
{
  gint64 n = x->shape[0], cin = x->shape[1], h = x->shape[2], wd = x->shape[3];
  gint64 cout = out->shape[1], oh = out->shape[2], ow = out->shape[3];
  gint64 kh = w->shape[2], kw = w->shape[3];
  guint32 wx = 8, wy = 1, tm, tn4, rh = 1, co_x = 0;
  if (!conv4_tiles_override (&wx, &wy, &tm, &tn4, &rh, &co_x))
    {
      /* 8 output channels x 16 pixels of a row per invocation, 8
       * invocations along the pixels (they share the output channels). An
       * image with fewer than 8 such blocks (the deep UNet levels: 8x8,
       * 4x4) runs its lanes along the output channels instead, each with
       * several rows of 4 pixels: CPU time per dispatch of impasto bench ops
       * (3x3, f16), ms: 1280ch 8x8 batch 2: 16-pixel rows 243, lanes along
       * channels with 1 x 8 rows of 4 pixels 134; 1280ch 4x4: 232 -> 40. */
      tm = cout >= 8 ? 8 : cout >= 4 ? 4 : 1;
      tn4 = ow >= 16 ? 4 : ow >= 8 ? 2 : 1;
      rh = 1;
      if (mode != 1 && ceil_div (ow, 4 * tn4) * oh < 8)
        {
          tn4 = 1;
          rh = (guint32) MIN (oh, 8);
          co_x = 1;
        }
    }
  if (mode == 1)
    {
      tn4 = (tn4 + 1) / 2 * 2; /* blocks start at multiples of 8 */
      rh = 1;
    }
  gint64 npx = 4 * tn4;
  /* the window: WB elements left of the block's first source column, NF texels */
  gint64 wb, emax;
  if (mode == 1)
    {
      wb = 4 * ceil_div (ceil_div (pad_l, 2), 4);
      gint64 dmax = npx - 1 + kw - 1 - pad_l;
      emax = (dmax >= 0 ? dmax / 2 : -((-dmax + 1) / 2)) + wb;
    }
  else
    {
      wb = 4 * ceil_div (pad_l, 4);
      emax = (mode == 2 ? 2 * (npx - 1) : npx - 1) + kw - 1 - pad_l + wb;
    }
  gint64 nf = emax / 4 + 1;
  gint64 blocks = ceil_div (ow, npx);
  gint64 rows = ceil_div (oh, rh);
  Conv4Push push = {
    .cin = cin, .h = h, .w = wd,
    .cout = cout, .oh = oh, .ow = ow,
    .blocks = blocks,
  };
  guint32 spec[15] = { wx, wy, tm, tn4, bias != NULL, res != NULL, mode, kh, kw,
                       (guint32) pad_t, (guint32) pad_l, (guint32) nf, (guint32) wb, rh, co_x };
  IvkTensor *bind[5] = { x, w, bias ? bias : w, res ? res : x, out };
  IvkDispatch d = {
    .op = "conv2d",
    .kind = { IVK_BIND_TEXEL4, IVK_BIND_TEXEL4 },
    .shader = shader,
    .spec = spec,
    .n_spec = 15,
    .bind = bind,
    .n_bind = 5,
    .write_mask = 1u << 4,
    .push = &push,
    .push_size = sizeof push,
    .groups = { co_x ? (guint32) ceil_div (cout, (gint64) wx * tm) : (guint32) ceil_div (blocks * rows, wx),
                co_x ? (guint32) ceil_div (blocks * rows, wy) : (guint32) ceil_div (cout, (gint64) wy * tm),
                (guint32) n },
    .flops = 2.0 * n * cout * oh * ow * cin * kh * kw,
  };
  if (!ivk_graph_add_dispatch (g, &d))
    return NULL;
  return out;
}

IvkTensor *
ivk_conv2d (IvkGraph *g, IvkTensor *x, IvkTensor *w, IvkTensor *bias, const IvkConvParams *params)
{
  if (!ivk_graph_check_tensor (g, x, "conv2d", "input") || !ivk_graph_check_tensor (g, w, "conv2d", "weight"))
    return NULL;
  if (x->ndim != 4 || w->ndim != 4 || x->shape[1] != w->shape[1] || !ivk_tensor_is_contiguous (x))
    {
      ivk_graph_set_error (g, IVK_ERROR, IVK_ERROR_SHAPE,
                           "conv2d: input %s and weight %s do not match (want [N,C,H,W] and [O,C,KH,KW])",
                           ivk_tensor_describe (x), ivk_tensor_describe (w));
      return NULL;
    }
  gint64 kh = w->shape[2], kw = w->shape[3];
  IvkConvParams def = {
    .stride = 1,
    .pad_top = (int) (kh / 2), .pad_bottom = (int) (kh / 2),
    .pad_left = (int) (kw / 2), .pad_right = (int) (kw / 2),
  };
  const IvkConvParams *pp = params ? params : &def;
  if (pp->stride < 1 || kh > 7 || kw > 7 || pp->pad_top < 0 || pp->pad_left < 0
      || pp->pad_bottom < 0 || pp->pad_right < 0)
    {
      ivk_graph_set_error (g, IVK_ERROR, IVK_ERROR_SHAPE, "conv2d: unsupported stride/kernel/padding");
      return NULL;
    }
  if (bias && (bias->n_elements != w->shape[0] || bias->dtype != w->dtype))
    {
      ivk_graph_set_error (g, IVK_ERROR, IVK_ERROR_SHAPE, "conv2d: bias %s does not match %" G_GINT64_FORMAT " outputs",
                           ivk_tensor_describe (bias), w->shape[0]);
      return NULL;
    }
  gint64 n = x->shape[0], cin = x->shape[1], h = x->shape[2], wd = x->shape[3];
  gint64 eh = h, ew = wd;
  guint32 up_mode = 0;
  if (pp->upsample)
    {
      eh = pp->up_height > 0 ? pp->up_height : 2 * h;
      ew = pp->up_width > 0 ? pp->up_width : 2 * wd;
      up_mode = (eh == 2 * h && ew == 2 * wd) ? 1 : 2;
      if (eh < h || ew < wd)
        {
          ivk_graph_set_error (g, IVK_ERROR, IVK_ERROR_SHAPE, "conv2d: upsample target %" G_GINT64_FORMAT "x%"
                               G_GINT64_FORMAT " smaller than the input", ew, eh);
          return NULL;
        }
    }
  gint64 oh = (eh + pp->pad_top + pp->pad_bottom - kh) / pp->stride + 1;
  gint64 ow = (ew + pp->pad_left + pp->pad_right - kw) / pp->stride + 1;
  gint64 cout = w->shape[0];
  if (oh <= 0 || ow <= 0 || n > 65535)
    {
      ivk_graph_set_error (g, IVK_ERROR, IVK_ERROR_SHAPE, "conv2d: input %s too small for the kernel",
                           ivk_tensor_describe (x));
      return NULL;
    }
  /* CPU devices: input and weights through texel buffers: vec4 windows
   * (conv2d_tex4.comp) where the shapes allow, else one scalar per tap
   * (conv2d_tex.comp) */
  const IvkDeviceInfo *info = ivk_context_get_info (ivk_graph_get_context (g));
  gboolean tex = info->is_cpu && ivk_texel_ok (g, x, 1) && ivk_texel_ok (g, w, 1);
  guint32 mode4 = pp->stride == 2 && !pp->upsample ? 2 : pp->stride == 1 && up_mode != 2 ? up_mode : 99;
  gboolean tex4 = tex && mode4 != 99 && cin % 4 == 0 && wd % 4 == 0 && kh * kw <= 9
                  && ivk_texel_ok (g, x, 4) && ivk_texel_ok (g, w, 4) && ivk_fast_path ("conv_tex4");
  IvkShader shader;
  if (!ivk_pick_aw (g, tex4 ? "conv2d_tex4" : tex ? "conv2d_tex" : "conv2d", x->dtype, w->dtype, &shader))
    return NULL;
  gint64 shape[4] = { n, cout, oh, ow };
  IvkTensor *out = ivk_graph_new_tensor (g, x->dtype, 4, shape);
  if (!out)
    return NULL;
  IvkTensor *res = pp->residual;
  if (res && (!ivk_same_shape (res, out) || res->dtype != out->dtype))
    {
      ivk_graph_set_error (g, IVK_ERROR, IVK_ERROR_SHAPE, "conv2d: residual %s does not match output %s",
                           ivk_tensor_describe (res), ivk_tensor_describe (out));
      return NULL;
    }
  if (tex4)
    return conv_tex4 (g, x, w, bias, res, out, mode4, pp->pad_top, pp->pad_left, shader);
  ConvPush push = {
    .cin = cin, .h = h, .w = wd,
    .cout = cout, .oh = oh, .ow = ow,
    .stride = pp->stride,
    .pad_t = pp->pad_top, .pad_l = pp->pad_left,
    .eh = eh, .ew = ew,
  };
  guint32 wx, wy, tm, tn;
  ivk_gemm_tiles (g, cout, oh * ow, &wx, &wy, &tm, &tn);
  guint32 spec[9] = { wx, wy, tm, tn, bias != NULL, res != NULL, up_mode, kh, kw };
  IvkTensor *bind[5] = { x, w, bias ? bias : w, res ? res : x, out };
  IvkDispatch d = {
    .op = "conv2d",
    .kind = { tex ? IVK_BIND_TEXEL : IVK_BIND_STORAGE, tex ? IVK_BIND_TEXEL : IVK_BIND_STORAGE },
    .shader = shader,
    .spec = spec,
    .n_spec = 9,
    .bind = bind,
    .n_bind = 5,
    .write_mask = 1u << 4,
    .push = &push,
    .push_size = sizeof push,
    .groups = { (guint32) ((oh * ow + wx * tn - 1) / (wx * tn)),
                (guint32) ((cout + wy * tm - 1) / (wy * tm)), (guint32) n },
    .flops = 2.0 * n * cout * oh * ow * cin * kh * kw,
  };
  if (!ivk_graph_add_dispatch (g, &d))
    return NULL;
  return out;
}

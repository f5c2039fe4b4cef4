/* sd-nets-private.h: shared plumbing of the network builders. */
#pragma once

#include "ivk-ops.h"
#include "sd-nets.h"
#include "sd-weights.h"

G_BEGIN_DECLS

#define SD_NET_MAX_IO 24

/* One compiled graph of a net for one input shape. */
typedef struct
{
  IvkGraph *g;
  IvkTensor *in[SD_NET_MAX_IO];
  IvkTensor *out[SD_NET_MAX_IO];
  GPtrArray *tap_names;   /* char*, owned */
  GPtrArray *tap_tensors; /* IvkTensor*, borrowed */
} SdNetGraph;

SdNetGraph *sd_net_graph_new (IvkContext *ctx, const char *name, gboolean debug);
void sd_net_graph_free (SdNetGraph *ng);
/* In debug graphs, mark t as an output named `name`; returns t (or the copy
 * that holds the output). */
IvkTensor *sd_net_tap (SdNetGraph *ng, const char *name, IvkTensor *t);
/* Read every tap into `taps` (name -> GArray of float). */
gboolean sd_net_collect_taps (SdNetGraph *ng, SdDebugTaps *taps, GError **error);
/* Compile, reporting the graph's sticky error with context. */
gboolean sd_net_graph_compile (SdNetGraph *ng, GError **error);

/* Cast a host buffer through the graph: f32 in / out helpers. */
gboolean sd_net_write (IvkTensor *t, const float *data, GError **error);
gboolean sd_net_read (IvkTensor *t, float *data, GError **error);

/* Sinusoidal features as diffusers get_timestep_embedding in float32:
 * freq_k = exp(-ln(10000) * k / (half - shift)), arg = t * freq_k, then
 * [sin, cos] or [cos, sin] when flip. Computed on the CPU (libm sinf/cosf on
 * the float32 argument, as PyTorch does) because GPU sin/cos are only
 * accurate on [-pi, pi] and timesteps reach ~1000 radians. */
void sd_sinusoidal_embedding (const float *t, int n, int dim, gboolean flip, float shift, float *out);

G_END_DECLS

/* ivk-private.h: internals shared by the runtime's files and the op wrappers. */
#pragma once

#include "ivk.h"
#include "ivk-shaders.h"

G_BEGIN_DECLS

#define IVK_MAX_BINDINGS 6
#define IVK_MAX_SPEC 16
#define IVK_PUSH_MAX 128
/* Every shader's push-constant block starts with one uint per binding: the
 * element offset of the tensor inside its (aligned-down) descriptor range. */
#define IVK_PUSH_PREFIX (IVK_MAX_BINDINGS * 4)

/* How a dispatch binds each tensor (IvkDispatch.kind). Storage buffers by
 * default; uniform texel buffers where a kernel asks for them: lavapipe turns
 * a texel fetch into one vector gather, but an SSBO load into a loop over the
 * SIMD lanes with two branches per element (notes in vulkan/ops-matmul.c).
 * For texel bindings the push-constant offset is in elements (scalars). */
enum
{
  IVK_BIND_STORAGE = 0,
  IVK_BIND_TEXEL = 1,  /* samplerBuffer, one element per texel (R32F / R16F) */
  IVK_BIND_TEXEL4 = 2, /* samplerBuffer, vec4 texels (RGBA32F / RGBA16F); the
                        * tensor's offset must be a multiple of 4 elements */
};

/* Tensor flags */
enum
{
  IVK_TENSOR_INPUT = 1 << 0,
  IVK_TENSOR_OUTPUT = 1 << 1,
  IVK_TENSOR_PERSISTENT = 1 << 2,
};

typedef struct
{
  VkPipeline pipeline;
  guint n_bindings;
} IvkPipeline;

typedef struct
{
  VkDescriptorSetLayout set_layout;
  VkPipelineLayout pipeline_layout;
} IvkLayout;

struct _IvkContext
{
  gint ref_count;
  VkInstance instance;
  VkPhysicalDevice phys;
  VkDevice device;
  VkQueue queue;
  guint32 queue_family;
  VkDebugUtilsMessengerEXT messenger;
  guint validation_messages;
  IvkDeviceInfo info;
  VkPhysicalDeviceMemoryProperties memprops;
  VkCommandPool cmd_pool;
  VkFence fence;
  VkPipelineCache pipeline_cache;
  char *pipeline_cache_path;
  GHashTable *pipelines; /* key string -> IvkPipeline* */
  GHashTable *layouts;   /* binding-kind signature -> IvkLayout* (layouts with texel bindings) */
  VkDescriptorSetLayout set_layouts[IVK_MAX_BINDINGS + 1];
  VkPipelineLayout pipeline_layouts[IVK_MAX_BINDINGS + 1];
  GMutex lock; /* guards pipelines, allocation counters and queue submission */
  guint64 allocated;
  guint64 peak;
  guint64 largest_binding; /* since the last reset_peak */
  gboolean profiling;      /* ivk_context_set_profiling */
  GArray *profile_sink;    /* IvkNodeProfile records of profiled runs */
  gboolean lost;
};

struct _IvkBuffer
{
  IvkContext *ctx; /* owned ref */
  VkBuffer buffer;
  VkDeviceMemory memory;
  guint64 size;
  void *mapped;
  IvkMemoryKind kind;
};

typedef struct
{
  const char *op; /* static string */
  char *label;
  IvkShader shader;
  guint32 spec[IVK_MAX_SPEC];
  guint n_spec;
  IvkTensor *bind[IVK_MAX_BINDINGS];
  guint n_bind;
  guint write_mask; /* bit i: binding i is written */
  guint8 push[IVK_PUSH_MAX];
  guint push_size;
  guint32 groups[3];
  double flops;
  double bytes;
  /* compile results */
  IvkPipeline *pipe;
  VkDescriptorSet set;
  gboolean barrier_before;
  guint8 kind[IVK_MAX_BINDINGS];          /* IVK_BIND_* */
  VkBufferView views[IVK_MAX_BINDINGS];   /* texel bindings, owned */
} IvkNode;

/* ---- context internals ---- */
gboolean ivk_context_check_lost (IvkContext *ctx, GError **error);
void ivk_context_mark_lost (IvkContext *ctx);
IvkPipeline *ivk_context_get_pipeline (IvkContext *ctx, IvkShader shader, const guint32 *spec,
                                       guint n_spec, guint n_bindings, GError **error);
VkPipelineLayout ivk_context_get_pipeline_layout (IvkContext *ctx, guint n_bindings);
VkDescriptorSetLayout ivk_context_get_set_layout (IvkContext *ctx, guint n_bindings);
/* The same with per-binding kinds (IVK_BIND_*; NULL = all storage buffers). */
IvkPipeline *ivk_context_get_pipeline_kinds (IvkContext *ctx, IvkShader shader, const guint32 *spec,
                                             guint n_spec, guint n_bindings, const guint8 *kinds,
                                             GError **error);
VkPipelineLayout ivk_context_get_pipeline_layout_kinds (IvkContext *ctx, guint n_bindings,
                                                        const guint8 *kinds);
VkDescriptorSetLayout ivk_context_get_set_layout_kinds (IvkContext *ctx, guint n_bindings,
                                                        const guint8 *kinds);
/* Largest binding and profiling (ivk.h); the graph reports here. */
void ivk_context_note_binding (IvkContext *ctx, guint64 bytes);
gboolean ivk_context_get_profiling (IvkContext *ctx);
void ivk_context_add_profile (IvkContext *ctx, const IvkNodeProfile *p, guint n);
/* Submit one command buffer and wait (serialised on the context's queue). */
gboolean ivk_context_submit_wait (IvkContext *ctx, VkCommandBuffer cb, GError **error);
/* Allocate device memory of the given kind (accounted). */
gboolean ivk_context_alloc_memory (IvkContext *ctx, const VkMemoryRequirements *req,
                                   IvkMemoryKind kind, VkDeviceMemory *memory,
                                   gboolean *host_visible, GError **error);
void ivk_context_free_memory (IvkContext *ctx, VkDeviceMemory memory, guint64 size);

/* ---- graph internals used by op wrappers ---- */

/* New intermediate tensor owned by the graph. NULL if the graph has failed. */
IvkTensor *ivk_graph_new_tensor (IvkGraph *g, IvkDType dtype, int ndim, const gint64 *shape);
/* A view of t: byte offset, new shape, row stride (0 = contiguous). */
IvkTensor *ivk_graph_new_view (IvkGraph *g, IvkTensor *t, guint64 byte_offset, int ndim,
                               const gint64 *shape, gint64 row_stride);
/* Check an input tensor: non-NULL, and either persistent or from this graph.
 * Returns FALSE (error set) otherwise; FALSE silently when t is NULL and the
 * graph already failed. */
gboolean ivk_graph_check_tensor (IvkGraph *g, const IvkTensor *t, const char *op, const char *what);

typedef struct
{
  const char *op;
  IvkShader shader;
  const guint32 *spec;
  guint n_spec;
  IvkTensor *const *bind; /* n_bind tensors */
  guint n_bind;
  guint write_mask;
  const void *push; /* push-constant struct, whose first IVK_PUSH_PREFIX bytes are filled at compile */
  guint push_size;
  guint32 groups[3];
  double flops;
  guint8 kind[IVK_MAX_BINDINGS]; /* IVK_BIND_*; zero = storage buffers */
} IvkDispatch;

/* Append a dispatch; returns FALSE if the graph failed (error stored). */
gboolean ivk_graph_add_dispatch (IvkGraph *g, const IvkDispatch *d);

/* Split a 1-D number of workgroups into a 2-D grid that fits the device's
 * maxComputeWorkGroupCount (x * y >= n). Shaders recompute the linear id. */
void ivk_grid_1d (IvkGraph *g, guint64 n_groups, guint32 groups[3]);

static inline guint32
ivk_f32_bits (float f)
{
  union
  {
    float f;
    guint32 u;
  } v = { .f = f };
  return v.u;
}

G_END_DECLS

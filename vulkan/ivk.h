/* ivk.h: Impasto's Vulkan compute runtime.
 *
 * Knows nothing about diffusion. Three layers:
 *
 *  - IvkContext: instance, device choice, features, limits, queue, pipeline
 *    cache. One per process (shared by reference).
 *  - IvkBuffer / persistent IvkTensor: device memory that outlives graphs
 *    (weights). Weights are sub-allocated from IvkWeightStore chunks.
 *  - IvkGraph: a list of dispatches built by calling op functions
 *    (vulkan/ivk-ops.h). Tensors created by ops are virtual until
 *    ivk_graph_compile() plans their memory by lifetime (one activation arena),
 *    creates pipelines and descriptor sets and records ONE command buffer;
 *    ivk_graph_run() replays it. Graph inputs and outputs live in a
 *    host-visible buffer and are written/read between runs.
 *
 * Errors: GError in domain IVK_ERROR. Op functions use a sticky per-graph error
 * (like cairo): the first failing op stores its error in the graph and returns
 * NULL; later ops given NULL return NULL silently; ivk_graph_compile() returns
 * the stored error. Model code therefore chains ops and checks once.
 */
#pragma once

#include <glib.h>
#include <vulkan/vulkan.h>

G_BEGIN_DECLS

#define IVK_ERROR (ivk_error_quark ())

typedef enum
{
  IVK_ERROR_FAILED,        /* a Vulkan call failed for another reason */
  IVK_ERROR_NO_DEVICE,     /* no Vulkan driver / device, or none matches IMPASTO_DEVICE */
  IVK_ERROR_OUT_OF_MEMORY, /* host or device memory exhausted */
  IVK_ERROR_DEVICE_LOST,   /* sticky: every later call fails fast */
  IVK_ERROR_UNSUPPORTED,   /* a feature the operation needs is missing */
  IVK_ERROR_SHAPE,         /* shape or dtype mismatch in an op */
  IVK_ERROR_LIMIT,         /* exceeds a device limit (allocation size, binding range, dispatch size) */
  IVK_ERROR_VALIDATION,    /* the validation layer reported a problem (IMPASTO_VALIDATION=1) */
} IvkError;

GQuark ivk_error_quark (void);

/* Turn a VkResult into a GError (domain IVK_ERROR) with `what` as context. */
void ivk_set_error_from_result (GError **error, VkResult result, const char *what);

typedef enum
{
  IVK_F32 = 0,
  IVK_F16 = 1,
  IVK_I32 = 2,
} IvkDType;

gsize ivk_dtype_size (IvkDType dtype);
const char *ivk_dtype_name (IvkDType dtype);

/* ---- context ------------------------------------------------------------ */

typedef struct
{
  char name[256];
  char driver[256];
  VkPhysicalDeviceType type;
  guint32 vendor_id, device_id, driver_version, api_version;
  guint index; /* index in vkEnumeratePhysicalDevices order */
  gboolean is_cpu;
  /* features */
  gboolean fp16_storage;    /* storageBuffer16BitAccess */
  gboolean fp16_arith;      /* shaderFloat16 */
  gboolean use_fp16;        /* fp16 storage usable and not disabled by IMPASTO_NO_FP16=1 */
  gboolean coopmat;         /* VK_KHR_cooperative_matrix present */
  gboolean push_descriptor; /* VK_KHR_push_descriptor present */
  guint subgroup_size;
  /* limits */
  guint32 max_shared_memory;
  guint32 max_workgroup_invocations;
  guint32 max_workgroup_count[3];
  guint64 max_storage_buffer_range;
  guint64 max_allocation_size;
  guint64 max_buffer_size;
  guint64 storage_offset_alignment;
  guint64 device_local_bytes; /* size of the largest device-local heap */
  gboolean unified_memory;    /* a device-local memory type is also host-visible */
  double timestamp_period_ns;
  gboolean timestamps;
  /* uniform texel buffers of R32F, R16F, RGBA32F and RGBA16F usable by kernels
   * (the fast load path on lavapipe); FALSE with IMPASTO_NO_TEXEL=1 */
  gboolean texel_buffers;
  guint64 max_texel_elements;     /* maxTexelBufferElements */
  guint64 texel_offset_alignment; /* minTexelBufferOffsetAlignment */
} IvkDeviceInfo;

typedef struct _IvkContext IvkContext;

typedef struct
{
  /* Device index or case-insensitive name substring; NULL = $IMPASTO_DEVICE,
   * else the best device (discrete > integrated > virtual > CPU). */
  const char *device;
  /* Enable VK_LAYER_KHRONOS_validation; also enabled by IMPASTO_VALIDATION=1. */
  gboolean validation;
  /* Force fp32 even if the device supports fp16 (also IMPASTO_NO_FP16=1). */
  gboolean no_fp16;
} IvkContextOptions;

IvkContext *ivk_context_new (const IvkContextOptions *options, GError **error);
IvkContext *ivk_context_ref (IvkContext *ctx);
void ivk_context_unref (IvkContext *ctx);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (IvkContext, ivk_context_unref)

const IvkDeviceInfo *ivk_context_get_info (IvkContext *ctx);
/* Every device the loader sees, for `impasto info --devices`. */
GArray *ivk_list_devices (GError **error); /* of IvkDeviceInfo */
/* Number of validation messages (warning or error) seen so far. */
guint ivk_context_get_validation_messages (IvkContext *ctx);
/* Device memory currently allocated by this context, and the peak. */
guint64 ivk_context_get_allocated (IvkContext *ctx);
guint64 ivk_context_get_peak_allocated (IvkContext *ctx);
void ivk_context_reset_peak (IvkContext *ctx);
/* Save the pipeline cache now (also done when the context is freed). */
void ivk_context_save_pipeline_cache (IvkContext *ctx);
/* TRUE once the device was lost; every GPU call then fails fast. */
gboolean ivk_context_is_lost (IvkContext *ctx);
/* The largest single buffer binding (bytes, storage or texel) that any graph
 * compiled on this context has used since the last ivk_context_reset_peak:
 * the figure to hold against maxStorageBufferRange, which lavapipe does not
 * enforce. */
guint64 ivk_context_get_largest_binding (IvkContext *ctx);

/* ---- buffers ------------------------------------------------------------ */

typedef enum
{
  IVK_MEMORY_DEVICE, /* device-local; host-visible too when the device is unified */
  IVK_MEMORY_HOST,   /* host-visible + coherent: staging, readback, graph inputs/outputs */
} IvkMemoryKind;

typedef struct _IvkBuffer IvkBuffer;

IvkBuffer *ivk_buffer_new (IvkContext *ctx, guint64 size, IvkMemoryKind kind, GError **error);
void ivk_buffer_free (IvkBuffer *buf);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (IvkBuffer, ivk_buffer_free)
guint64 ivk_buffer_get_size (IvkBuffer *buf);
/* Host pointer when the memory is mappable, else NULL. */
void *ivk_buffer_get_mapped (IvkBuffer *buf);
VkBuffer ivk_buffer_get_handle (IvkBuffer *buf);
/* Copy between host memory and a buffer (through a staging buffer when the
 * memory is not mappable). */
gboolean ivk_buffer_write (IvkBuffer *buf, guint64 offset, const void *data, guint64 size,
                           GError **error);
gboolean ivk_buffer_read (IvkBuffer *buf, guint64 offset, void *data, guint64 size,
                          GError **error);

/* ---- tensors ------------------------------------------------------------ */

#define IVK_MAX_DIMS 4

typedef struct _IvkGraph IvkGraph;

typedef struct _IvkTensor IvkTensor;
struct _IvkTensor
{
  IvkDType dtype;
  int ndim;
  gint64 shape[IVK_MAX_DIMS]; /* outermost first (numpy order); unused dims = 1 */
  gint64 n_elements;
  /* storage: set for persistent tensors, and for graph tensors after compile */
  IvkBuffer *buffer; /* borrowed */
  guint64 offset;    /* bytes */
  /* graph bookkeeping (private) */
  IvkGraph *graph; /* NULL for persistent tensors */
  int id;
  IvkTensor *base; /* the tensor this one is a view (reshape) of, or NULL */
  guint64 view_offset;
  gint64 row_stride; /* 0: contiguous; else elements between rows of the last dim (column views) */
  int first_use, last_use;
  guint flags;
  char *name;
};

guint64 ivk_tensor_nbytes (const IvkTensor *t);
/* Bytes from the first to one past the last element (differs from nbytes for
 * column views). */
guint64 ivk_tensor_span_bytes (const IvkTensor *t);
gboolean ivk_tensor_is_contiguous (const IvkTensor *t);
/* "f16[2,320,64,64]" into a static-per-thread buffer, for messages. */
const char *ivk_tensor_describe (const IvkTensor *t);
/* Host <-> tensor data in float32, converting from/to the tensor's dtype.
 * Works on persistent tensors and on graph inputs/outputs after compile. */
gboolean ivk_tensor_write_f32 (IvkTensor *t, const float *data, gsize n, GError **error);
gboolean ivk_tensor_read_f32 (IvkTensor *t, float *data, gsize n, GError **error);
/* Raw write in the tensor's own dtype (f16 bits for IVK_F16). */
gboolean ivk_tensor_write_raw (IvkTensor *t, const void *data, gsize nbytes, GError **error);

/* ---- weights -------------------------------------------------------------- */

/* Persistent tensors sub-allocated from device buffers of a chunk size that
 * respects maxMemoryAllocationSize; each tensor respects maxStorageBufferRange. */
typedef struct _IvkWeightStore IvkWeightStore;

IvkWeightStore *ivk_weight_store_new (IvkContext *ctx);
void ivk_weight_store_free (IvkWeightStore *ws);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (IvkWeightStore, ivk_weight_store_free)
/* Allocate a tensor; data (in `dtype`, may be NULL) is uploaded. */
IvkTensor *ivk_weight_store_add (IvkWeightStore *ws, const char *name, IvkDType dtype, int ndim,
                                 const gint64 *shape, const void *data, GError **error);
/* A tensor with a shape but no memory: graphs that use it can be planned
 * (ivk_graph_plan) but not compiled. For memory plans without weights. */
IvkTensor *ivk_weight_store_add_virtual (IvkWeightStore *ws, const char *name, IvkDType dtype,
                                         int ndim, const gint64 *shape);
guint64 ivk_weight_store_get_bytes (IvkWeightStore *ws);

/* ---- graphs ----------------------------------------------------------------- */

typedef enum
{
  IVK_GRAPH_DEFAULT = 0,
  IVK_GRAPH_PROFILE = 1 << 0, /* timestamps around every dispatch */
  IVK_GRAPH_GUARDS = 1 << 1,  /* guard words after every tensor, see ivk_graph_check_guards */
} IvkGraphFlags;

IvkGraph *ivk_graph_new (IvkContext *ctx, const char *name, IvkGraphFlags flags);
void ivk_graph_free (IvkGraph *g);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (IvkGraph, ivk_graph_free)
IvkContext *ivk_graph_get_context (IvkGraph *g);

/* A host-writable input. */
IvkTensor *ivk_graph_input (IvkGraph *g, const char *name, IvkDType dtype, int ndim,
                            const gint64 *shape);
/* Mark a tensor as an output: kept alive to the end and host-readable. Returns
 * the tensor (or a copy of it when it is an input, a weight or a view). */
IvkTensor *ivk_graph_output (IvkGraph *g, IvkTensor *t, const char *name);
/* A view of `t` with another shape of the same element count (no copy). */
IvkTensor *ivk_reshape (IvkGraph *g, IvkTensor *t, int ndim, const gint64 *shape);

/* The sticky error: TRUE when an op failed; ivk_graph_get_error gives it. */
gboolean ivk_graph_failed (IvkGraph *g);
const GError *ivk_graph_get_error (IvkGraph *g);
/* Used by op implementations: record an error (only the first is kept). */
void ivk_graph_set_error (IvkGraph *g, GQuark domain, int code, const char *format, ...)
  G_GNUC_PRINTF (4, 5);

/* Plan memory, create pipelines and descriptor sets, record the command buffer. */
gboolean ivk_graph_compile (IvkGraph *g, GError **error);
/* Submit the recorded command buffer and wait for it. */
gboolean ivk_graph_run (IvkGraph *g, GError **error);
/* Verify the guard words (IVK_GRAPH_GUARDS); names the first overrun tensor. */
gboolean ivk_graph_check_guards (IvkGraph *g, GError **error);

typedef struct
{
  guint n_nodes;
  guint n_tensors;
  guint64 arena_bytes;  /* planned activation memory (peak of live tensors, after reuse) */
  guint64 naive_bytes;  /* sum of all intermediate tensors (what no reuse would need) */
  guint64 io_bytes;     /* inputs + outputs */
  guint n_barriers;
  double flops;         /* estimated floating point operations of one run */
  guint64 largest_tensor_bytes; /* the biggest single binding (vs maxStorageBufferRange) */
} IvkGraphStats;

/* Plan memory without allocating anything (sizes and the largest binding), to
 * decide e.g. whether to tile before compiling. Fills arena_bytes, naive_bytes,
 * io_bytes, largest_tensor_bytes, flops, n_nodes, n_tensors. */
gboolean ivk_graph_plan (IvkGraph *g, IvkGraphStats *stats, GError **error);

void ivk_graph_get_stats (IvkGraph *g, IvkGraphStats *stats);

typedef struct
{
  const char *op;   /* op family, e.g. "conv2d" */
  const char *name; /* node label */
  double ms;        /* GPU time of the last run */
  double flops;
  double bytes;
} IvkNodeProfile;

/* Per-dispatch GPU times of the last run (IVK_GRAPH_PROFILE). */
GArray *ivk_graph_get_profile (IvkGraph *g); /* of IvkNodeProfile */

/* Profiling for code that does not own the graphs it runs (benchmarks over
 * the networks): while on, every ivk_graph_run on this context times each
 * dispatch, with a second command buffer that carries timestamps (recorded on
 * first need, so graphs compiled earlier are covered too), and appends one
 * record per dispatch to the context. Runs without it replay the plain
 * command buffer, untouched. ivk_context_take_profile returns the records
 * since the last take (op and name are interned strings) and clears them. */
void ivk_context_set_profiling (IvkContext *ctx, gboolean on);
GArray *ivk_context_take_profile (IvkContext *ctx); /* of IvkNodeProfile; g_array_unref */

G_END_DECLS

/* ivk-graph.c: graphs of dispatches: memory planning by lifetime, recording
 * once, replaying many times. */
#include "config.h"

#include <stdarg.h>
#include <string.h>

#include "ivk-ops.h"
#include "ivk-private.h"

#define GUARD_BYTES 64
#define GUARD_WORD 0xDEADBEEFu

struct _IvkGraph
{
  IvkContext *ctx; /* owned ref */
  char *name;
  IvkGraphFlags flags;
  GPtrArray *tensors; /* IvkTensor*, owned */
  GArray *nodes;      /* IvkNode */
  GError *error;
  gboolean compiled;
  /* compile results */
  GPtrArray *arena;   /* IvkBuffer*, owned: activation arena chunks */
  IvkBuffer *io;      /* inputs and outputs (host-visible) */
  VkDescriptorPool desc_pool;
  VkCommandBuffer cb;      /* plain replay */
  VkCommandBuffer cb_prof; /* with timestamps around every dispatch, or NULL */
  VkQueryPool query_pool;
  guint64 arena_bytes, naive_bytes, io_bytes;
  guint n_barriers;
  GArray *profile; /* IvkNodeProfile */
  GArray *guards;  /* GuardRef */
};

typedef struct
{
  IvkTensor *t;
  IvkBuffer *buf;
  guint64 offset; /* of the guard zone */
} GuardRef;

IvkGraph *
ivk_graph_new (IvkContext *ctx, const char *name, IvkGraphFlags flags)
{
  IvkGraph *g = g_new0 (IvkGraph, 1);
  g->ctx = ivk_context_ref (ctx);
  g->name = g_strdup (name ? name : "graph");
  g->flags = flags;
  if (g_getenv ("IMPASTO_PROFILE"))
    g->flags |= IVK_GRAPH_PROFILE;
  g->tensors = g_ptr_array_new ();
  g->nodes = g_array_new (FALSE, TRUE, sizeof (IvkNode));
  g->arena = g_ptr_array_new_with_free_func ((GDestroyNotify) ivk_buffer_free);
  g->profile = g_array_new (FALSE, TRUE, sizeof (IvkNodeProfile));
  g->guards = g_array_new (FALSE, TRUE, sizeof (GuardRef));
  return g;
}

void
ivk_graph_free (IvkGraph *g)
{
  if (!g)
    return;
  VkDevice dev = g->ctx->device;
  if (g->cb || g->cb_prof)
    {
      g_mutex_lock (&g->ctx->lock);
      if (g->cb)
        vkFreeCommandBuffers (dev, g->ctx->cmd_pool, 1, &g->cb);
      if (g->cb_prof && g->cb_prof != g->cb)
        vkFreeCommandBuffers (dev, g->ctx->cmd_pool, 1, &g->cb_prof);
      g_mutex_unlock (&g->ctx->lock);
    }
  if (g->desc_pool)
    vkDestroyDescriptorPool (dev, g->desc_pool, NULL);
  if (g->query_pool)
    vkDestroyQueryPool (dev, g->query_pool, NULL);
  for (guint i = 0; i < g->nodes->len; i++)
    {
      IvkNode *node = &g_array_index (g->nodes, IvkNode, i);
      for (guint b = 0; b < IVK_MAX_BINDINGS; b++)
        if (node->views[b])
          vkDestroyBufferView (dev, node->views[b], NULL);
      g_free (node->label);
    }
  g_array_free (g->nodes, TRUE);
  for (guint i = 0; i < g->tensors->len; i++)
    {
      IvkTensor *t = g_ptr_array_index (g->tensors, i);
      g_free (t->name);
      g_free (t);
    }
  g_ptr_array_free (g->tensors, TRUE);
  g_ptr_array_free (g->arena, TRUE);
  ivk_buffer_free (g->io);
  g_array_free (g->profile, TRUE);
  g_array_free (g->guards, TRUE);
  g_clear_error (&g->error);
  g_free (g->name);
  ivk_context_unref (g->ctx);
  g_free (g);
}

IvkContext *
ivk_graph_get_context (IvkGraph *g)
{
  return g->ctx;
}

gboolean
ivk_graph_failed (IvkGraph *g)
{
  return g->error != NULL;
}

const GError *
ivk_graph_get_error (IvkGraph *g)
{
  return g->error;
}

void
ivk_graph_set_error (IvkGraph *g, GQuark domain, int code, const char *format, ...)
{
  if (g->error)
    return;
  va_list ap;
  va_start (ap, format);
  g_autofree char *msg = g_strdup_vprintf (format, ap);
  va_end (ap);
  g->error = g_error_new (domain, code, "%s: %s", g->name, msg);
}

static IvkTensor *
new_tensor (IvkGraph *g, IvkDType dtype, int ndim, const gint64 *shape, guint flags,
            const char *name)
{
  if (ndim < 0 || ndim > IVK_MAX_DIMS)
    {
      ivk_graph_set_error (g, IVK_ERROR, IVK_ERROR_SHAPE, "tensor with %d dimensions (max %d)",
                           ndim, IVK_MAX_DIMS);
      return NULL;
    }
  IvkTensor *t = g_new0 (IvkTensor, 1);
  t->dtype = dtype;
  t->ndim = ndim;
  t->n_elements = 1;
  for (int i = 0; i < IVK_MAX_DIMS; i++)
    {
      t->shape[i] = i < ndim ? shape[i] : 1;
      if (i < ndim)
        {
          if (shape[i] <= 0 || shape[i] > ((gint64) 1 << 40) / MAX (t->n_elements, 1))
            {
              ivk_graph_set_error (g, IVK_ERROR, IVK_ERROR_SHAPE, "invalid dimension %" G_GINT64_FORMAT,
                                   shape[i]);
              g_free (t);
              return NULL;
            }
          t->n_elements *= shape[i];
        }
    }
  t->graph = g;
  t->id = g->tensors->len;
  t->first_use = G_MAXINT;
  t->last_use = -1;
  t->flags = flags;
  t->name = g_strdup (name);
  g_ptr_array_add (g->tensors, t);
  return t;
}

IvkTensor *
ivk_graph_new_tensor (IvkGraph *g, IvkDType dtype, int ndim, const gint64 *shape)
{
  if (g->error)
    return NULL;
  if (g->compiled)
    {
      ivk_graph_set_error (g, IVK_ERROR, IVK_ERROR_FAILED, "graph already compiled");
      return NULL;
    }
  return new_tensor (g, dtype, ndim, shape, 0, NULL);
}

IvkTensor *
ivk_graph_input (IvkGraph *g, const char *name, IvkDType dtype, int ndim, const gint64 *shape)
{
  if (g->error)
    return NULL;
  return new_tensor (g, dtype, ndim, shape, IVK_TENSOR_INPUT, name);
}

gboolean
ivk_graph_check_tensor (IvkGraph *g, const IvkTensor *t, const char *op, const char *what)
{
  if (g->error)
    return FALSE;
  if (!t)
    {
      ivk_graph_set_error (g, IVK_ERROR, IVK_ERROR_SHAPE, "%s: %s is missing", op, what);
      return FALSE;
    }
  if (t->graph && t->graph != g)
    {
      ivk_graph_set_error (g, IVK_ERROR, IVK_ERROR_FAILED, "%s: %s belongs to another graph", op,
                           what);
      return FALSE;
    }
  return TRUE;
}

static IvkTensor *
root_of (IvkTensor *t, guint64 *offset)
{
  guint64 off = 0;
  while (t->base)
    {
      off += t->view_offset;
      t = t->base;
    }
  if (offset)
    *offset = off;
  return t;
}

IvkTensor *
ivk_reshape (IvkGraph *g, IvkTensor *t, int ndim, const gint64 *shape)
{
  if (!ivk_graph_check_tensor (g, t, "reshape", "input"))
    return NULL;
  gint64 n = 1;
  for (int i = 0; i < ndim; i++)
    n *= shape[i];
  if (n != t->n_elements)
    {
      ivk_graph_set_error (g, IVK_ERROR, IVK_ERROR_SHAPE,
                           "reshape: %s has %" G_GINT64_FORMAT " elements, new shape %" G_GINT64_FORMAT,
                           ivk_tensor_describe (t), t->n_elements, n);
      return NULL;
    }
  IvkTensor *v = new_tensor (g, t->dtype, ndim, shape, 0, NULL);
  if (!v)
    return NULL;
  v->base = t;
  v->view_offset = 0;
  return v;
}

IvkTensor *
ivk_graph_new_view (IvkGraph *g, IvkTensor *t, guint64 byte_offset, int ndim, const gint64 *shape,
                    gint64 row_stride)
{
  if (!ivk_graph_check_tensor (g, t, "view", "input"))
    return NULL;
  if (t->graph == NULL)
    {
      ivk_graph_set_error (g, IVK_ERROR, IVK_ERROR_FAILED, "views of persistent tensors are not supported");
      return NULL;
    }
  IvkTensor *v = new_tensor (g, t->dtype, ndim, shape, 0, NULL);
  if (!v)
    return NULL;
  v->base = t;
  v->view_offset = byte_offset;
  v->row_stride = row_stride;
  return v;
}

IvkTensor *
ivk_graph_output (IvkGraph *g, IvkTensor *t, const char *name)
{
  if (!ivk_graph_check_tensor (g, t, "output", name ? name : "tensor"))
    return NULL;
  if (t->base || (t->flags & (IVK_TENSOR_INPUT | IVK_TENSOR_PERSISTENT)) || t->graph == NULL)
    {
      /* give the output its own storage: copy it */
      t = ivk_copy (g, t);
      if (!t)
        return NULL;
    }
  t->flags |= IVK_TENSOR_OUTPUT;
  if (name)
    {
      g_free (t->name);
      t->name = g_strdup (name);
    }
  return t;
}

void
ivk_grid_1d (IvkGraph *g, guint64 n_groups, guint32 groups[3])
{
  guint64 maxx = MIN (g->ctx->info.max_workgroup_count[0], 65535);
  if (n_groups <= maxx)
    {
      groups[0] = (guint32) MAX (n_groups, 1);
      groups[1] = 1;
    }
  else
    {
      groups[0] = (guint32) maxx;
      groups[1] = (guint32) ((n_groups + maxx - 1) / maxx);
    }
  groups[2] = 1;
}

gboolean
ivk_graph_add_dispatch (IvkGraph *g, const IvkDispatch *d)
{
  if (g->error)
    return FALSE;
  g_return_val_if_fail (d->n_bind <= IVK_MAX_BINDINGS && d->n_spec <= IVK_MAX_SPEC, FALSE);
  g_return_val_if_fail (d->push_size >= IVK_PUSH_PREFIX && d->push_size <= IVK_PUSH_MAX, FALSE);
  for (int i = 0; i < 3; i++)
    if (d->groups[i] == 0 || d->groups[i] > g->ctx->info.max_workgroup_count[i])
      {
        ivk_graph_set_error (g, IVK_ERROR, IVK_ERROR_LIMIT,
                             "%s: dispatch of %u workgroups in dimension %d exceeds the device limit %u",
                             d->op, d->groups[i], i, g->ctx->info.max_workgroup_count[i]);
        return FALSE;
      }
  IvkNode node = { 0 };
  node.op = d->op;
  node.shader = d->shader;
  memcpy (node.spec, d->spec, d->n_spec * 4);
  node.n_spec = d->n_spec;
  node.n_bind = d->n_bind;
  node.write_mask = d->write_mask;
  memcpy (node.kind, d->kind, sizeof node.kind);
  for (guint i = 0; i < d->n_bind; i++)
    if (d->kind[i] != IVK_BIND_STORAGE
        && (!g->ctx->info.texel_buffers || d->bind[i] == NULL || d->bind[i]->dtype == IVK_I32))
      {
        ivk_graph_set_error (g, IVK_ERROR, IVK_ERROR_UNSUPPORTED,
                             "%s: texel binding %u unsupported here (a kernel selection bug)",
                             d->op, i);
        return FALSE;
      }
  memcpy (node.push, d->push, d->push_size);
  node.push_size = (d->push_size + 3) & ~3u;
  memcpy (node.groups, d->groups, sizeof node.groups);
  node.flops = d->flops;
  int index = g->nodes->len;
  for (guint i = 0; i < d->n_bind; i++)
    {
      IvkTensor *t = d->bind[i];
      if (!ivk_graph_check_tensor (g, t, d->op, "operand"))
        return FALSE;
      node.bind[i] = t;
      node.bytes += ivk_tensor_nbytes (t);
      if (t->graph == NULL)
        continue;
      IvkTensor *root = root_of (t, NULL);
      if (d->write_mask & (1u << i))
        root->first_use = MIN (root->first_use, index);
      else if (root->first_use == G_MAXINT && !(root->flags & IVK_TENSOR_INPUT))
        {
          ivk_graph_set_error (g, IVK_ERROR, IVK_ERROR_FAILED,
                               "%s: reads a tensor %s that nothing wrote", d->op,
                               ivk_tensor_describe (t));
          return FALSE;
        }
      root->last_use = MAX (root->last_use, index);
    }
  /* label: the op and its output, e.g. "conv2d f16[2,320,32,32]" (profiles) */
  node.label = g_strdup (d->op);
  for (guint i = 0; i < d->n_bind; i++)
    if (d->write_mask & (1u << i))
      {
        g_free (node.label);
        node.label = g_strdup_printf ("%s %s", d->op, ivk_tensor_describe (d->bind[i]));
        break;
      }
  g_array_append_val (g->nodes, node);
  return TRUE;
}

/* ---- memory planning ---- */

typedef struct
{
  IvkTensor *t;
  guint64 size; /* including guard zone, aligned */
  guint64 offset;
} Placement;

static int
cmp_size_desc (gconstpointer a, gconstpointer b)
{
  const Placement *pa = *(const Placement **) a, *pb = *(const Placement **) b;
  if (pa->size != pb->size)
    return pa->size > pb->size ? -1 : 1;
  return pa->t->id - pb->t->id;
}

static int
cmp_offset (gconstpointer a, gconstpointer b)
{
  const Placement *pa = *(const Placement **) a, *pb = *(const Placement **) b;
  return pa->offset < pb->offset ? -1 : pa->offset > pb->offset;
}

static gboolean
lifetimes_overlap (const IvkTensor *a, const IvkTensor *b)
{
  return a->first_use <= b->last_use && b->first_use <= a->last_use;
}

/* Greedy by size (largest first), each at the lowest offset that does not
 * collide with an already placed tensor whose lifetime overlaps, and that does
 * not straddle a chunk boundary (chunks become separate VkBuffers). */
static guint64
plan_arena (GPtrArray *items, guint64 chunk)
{
  g_ptr_array_sort (items, cmp_size_desc);
  GPtrArray *placed = g_ptr_array_new ();
  GPtrArray *live = g_ptr_array_new ();
  guint64 total = 0;
  for (guint i = 0; i < items->len; i++)
    {
      Placement *p = g_ptr_array_index (items, i);
      g_ptr_array_set_size (live, 0);
      for (guint j = 0; j < placed->len; j++)
        {
          Placement *q = g_ptr_array_index (placed, j);
          if (lifetimes_overlap (p->t, q->t))
            g_ptr_array_add (live, q);
        }
      g_ptr_array_sort (live, cmp_offset);
      guint64 off = 0;
      for (;;)
        {
          /* keep inside one chunk */
          if (off / chunk != (off + p->size - 1) / chunk)
            off = (off / chunk + 1) * chunk;
          gboolean moved = FALSE;
          for (guint j = 0; j < live->len; j++)
            {
              Placement *q = g_ptr_array_index (live, j);
              if (off < q->offset + q->size && q->offset < off + p->size)
                {
                  off = q->offset + q->size;
                  moved = TRUE;
                }
            }
          if (!moved)
            break;
        }
      p->offset = off;
      total = MAX (total, off + p->size);
      g_ptr_array_add (placed, p);
    }
  g_ptr_array_free (placed, TRUE);
  g_ptr_array_free (live, TRUE);
  return total;
}

static guint64
align_up (guint64 v, guint64 a)
{
  return (v + a - 1) / a * a;
}

static void
fill_guard (guint8 *p)
{
  for (int i = 0; i < GUARD_BYTES / 4; i++)
    ((guint32 *) p)[i] = GUARD_WORD;
}

typedef struct
{
  VkBuffer buf;
  guint64 begin, end;
} Range;

static gboolean
ranges_hit (GArray *set, const Range *r)
{
  for (guint i = 0; i < set->len; i++)
    {
      Range *q = &g_array_index (set, Range, i);
      if (q->buf == r->buf && r->begin < q->end && q->begin < r->end)
        return TRUE;
    }
  return FALSE;
}

static gboolean
binding_of (IvkGraph *g, IvkTensor *t, VkDescriptorBufferInfo *info, guint32 *elem_offset,
            GError **error)
{
  guint64 voff;
  IvkTensor *root = root_of (t, &voff);
  if (!root->buffer)
    {
      g_set_error (error, IVK_ERROR, IVK_ERROR_FAILED, "%s: tensor %s has no storage", g->name,
                   ivk_tensor_describe (t));
      return FALSE;
    }
  guint64 align = g->ctx->info.storage_offset_alignment;
  guint64 off = root->offset + voff;
  guint64 aligned = off / align * align;
  guint64 range = align_up (off - aligned + ivk_tensor_span_bytes (t), 4);
  if (range > g->ctx->info.max_storage_buffer_range)
    {
      g_set_error (error, IVK_ERROR, IVK_ERROR_LIMIT,
                   "%s: tensor %s (%.1f MiB) exceeds the device's maxStorageBufferRange (%.1f MiB); "
                   "use a smaller size or tiling",
                   g->name, ivk_tensor_describe (t), ivk_tensor_nbytes (t) / 1048576.0,
                   g->ctx->info.max_storage_buffer_range / 1048576.0);
      return FALSE;
    }
  range = MIN (range, ivk_buffer_get_size (root->buffer) - aligned);
  ivk_context_note_binding (g->ctx, range);
  info->buffer = ivk_buffer_get_handle (root->buffer);
  info->offset = aligned;
  info->range = range;
  *elem_offset = (guint32) ((off - aligned) / ivk_dtype_size (t->dtype));
  return TRUE;
}

/* A uniform texel buffer view of `t` (IVK_BIND_TEXEL / IVK_BIND_TEXEL4). The
 * view starts at the texel-aligned offset at or below the tensor; the rest
 * goes to the shader in elements, as for storage bindings. */
static gboolean
texel_binding_of (IvkGraph *g, IvkTensor *t, guint8 kind, VkBufferView *view, guint32 *elem_offset,
                  GError **error)
{
  const IvkDeviceInfo *info = &g->ctx->info;
  guint64 voff;
  IvkTensor *root = root_of (t, &voff);
  if (!root->buffer)
    {
      g_set_error (error, IVK_ERROR, IVK_ERROR_FAILED, "%s: tensor %s has no storage", g->name,
                   ivk_tensor_describe (t));
      return FALSE;
    }
  gsize es = ivk_dtype_size (t->dtype);
  guint64 texel = es * (kind == IVK_BIND_TEXEL4 ? 4 : 1);
  guint64 align = MAX (info->texel_offset_alignment, texel); /* both powers of two */
  guint64 off = root->offset + voff;
  guint64 aligned = off / align * align;
  if ((off - aligned) % texel != 0)
    {
      g_set_error (error, IVK_ERROR, IVK_ERROR_FAILED,
                   "%s: tensor %s is bound as vec4 texels at an offset that is not a multiple of "
                   "4 elements", g->name, ivk_tensor_describe (t));
      return FALSE;
    }
  guint64 range = align_up (off - aligned + ivk_tensor_span_bytes (t), texel);
  range = MIN (range, (ivk_buffer_get_size (root->buffer) - aligned) / texel * texel);
  if (range / texel > info->max_texel_elements)
    {
      g_set_error (error, IVK_ERROR, IVK_ERROR_LIMIT,
                   "%s: tensor %s (%.1f MiB) exceeds the device's maxTexelBufferElements (%" G_GUINT64_FORMAT ")",
                   g->name, ivk_tensor_describe (t), ivk_tensor_nbytes (t) / 1048576.0,
                   info->max_texel_elements);
      return FALSE;
    }
  ivk_context_note_binding (g->ctx, range);
  VkBufferViewCreateInfo ci = {
    .sType = VK_STRUCTURE_TYPE_BUFFER_VIEW_CREATE_INFO,
    .buffer = ivk_buffer_get_handle (root->buffer),
    .format = t->dtype == IVK_F16
                ? (kind == IVK_BIND_TEXEL4 ? VK_FORMAT_R16G16B16A16_SFLOAT : VK_FORMAT_R16_SFLOAT)
                : (kind == IVK_BIND_TEXEL4 ? VK_FORMAT_R32G32B32A32_SFLOAT : VK_FORMAT_R32_SFLOAT),
    .offset = aligned,
    .range = range,
  };
  VkResult r = vkCreateBufferView (g->ctx->device, &ci, NULL, view);
  if (r != VK_SUCCESS)
    {
      ivk_set_error_from_result (error, r, "creating a texel buffer view");
      return FALSE;
    }
  *elem_offset = (guint32) ((off - aligned) / es);
  return TRUE;
}

/* Record the graph's dispatches into a new command buffer. With `profile`,
 * a timestamp follows every dispatch and every dispatch waits for the one
 * before (clean per-dispatch times); otherwise barriers go only where a
 * dispatch touches what an earlier one since the last barrier wrote (or
 * writes what one read). */
static gboolean
record (IvkGraph *g, gboolean profile, VkCommandBuffer *out, GError **error)
{
  IvkContext *ctx = g->ctx;
  const guint n_nodes = g->nodes->len;
  VkCommandBufferAllocateInfo cai = {
    .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
    .commandPool = ctx->cmd_pool,
    .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
    .commandBufferCount = 1,
  };
  VkCommandBuffer cb;
  g_mutex_lock (&ctx->lock);
  VkResult r = vkAllocateCommandBuffers (ctx->device, &cai, &cb);
  g_mutex_unlock (&ctx->lock);
  if (r != VK_SUCCESS)
    {
      ivk_set_error_from_result (error, r, "allocating a command buffer");
      return FALSE;
    }
  if (profile && ctx->info.timestamps && n_nodes > 0 && !g->query_pool)
    {
      VkQueryPoolCreateInfo qci = {
        .sType = VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO,
        .queryType = VK_QUERY_TYPE_TIMESTAMP,
        .queryCount = n_nodes + 1,
      };
      if (vkCreateQueryPool (ctx->device, &qci, NULL, &g->query_pool) != VK_SUCCESS)
        g->query_pool = VK_NULL_HANDLE;
    }
  VkQueryPool qp = profile ? g->query_pool : VK_NULL_HANDLE;
  VkCommandBufferBeginInfo bi = { .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO };
  vkBeginCommandBuffer (cb, &bi);
  if (qp)
    {
      vkCmdResetQueryPool (cb, qp, 0, n_nodes + 1);
      vkCmdWriteTimestamp (cb, VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT, qp, 0);
    }
  GArray *pending_w = g_array_new (FALSE, FALSE, sizeof (Range));
  GArray *pending_r = g_array_new (FALSE, FALSE, sizeof (Range));
  const VkMemoryBarrier mb = {
    .sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
    .srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT,
    .dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT,
  };
  guint n_barriers = 0;
  for (guint i = 0; i < n_nodes; i++)
    {
      IvkNode *node = &g_array_index (g->nodes, IvkNode, i);
      Range rr[IVK_MAX_BINDINGS];
      gboolean need = qp != VK_NULL_HANDLE; /* profiling: serialise for clean times */
      for (guint b = 0; b < node->n_bind; b++)
        {
          guint64 voff;
          IvkTensor *root = root_of (node->bind[b], &voff);
          rr[b].buf = ivk_buffer_get_handle (root->buffer);
          rr[b].begin = root->offset + voff;
          rr[b].end = rr[b].begin + ivk_tensor_span_bytes (node->bind[b]);
          gboolean writes = (node->write_mask >> b) & 1;
          if (ranges_hit (pending_w, &rr[b]) || (writes && ranges_hit (pending_r, &rr[b])))
            need = TRUE;
        }
      if (need && i > 0)
        {
          vkCmdPipelineBarrier (cb, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                                VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, 0, 1, &mb, 0, NULL, 0, NULL);
          g_array_set_size (pending_w, 0);
          g_array_set_size (pending_r, 0);
          n_barriers++;
          if (!profile)
            node->barrier_before = TRUE;
        }
      for (guint b = 0; b < node->n_bind; b++)
        g_array_append_val (((node->write_mask >> b) & 1) ? pending_w : pending_r, rr[b]);

      vkCmdBindPipeline (cb, VK_PIPELINE_BIND_POINT_COMPUTE, node->pipe->pipeline);
      VkPipelineLayout layout = ivk_context_get_pipeline_layout_kinds (ctx, node->n_bind, node->kind);
      vkCmdBindDescriptorSets (cb, VK_PIPELINE_BIND_POINT_COMPUTE, layout, 0, 1, &node->set, 0,
                               NULL);
      vkCmdPushConstants (cb, layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, node->push_size, node->push);
      vkCmdDispatch (cb, node->groups[0], node->groups[1], node->groups[2]);
      if (qp)
        vkCmdWriteTimestamp (cb, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, qp, i + 1);
    }
  g_array_free (pending_w, TRUE);
  g_array_free (pending_r, TRUE);
  /* make shader writes visible to the host (outputs are read after the fence) */
  const VkMemoryBarrier hb = {
    .sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
    .srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT,
    .dstAccessMask = VK_ACCESS_HOST_READ_BIT,
  };
  vkCmdPipelineBarrier (cb, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_PIPELINE_STAGE_HOST_BIT, 0, 1,
                        &hb, 0, NULL, 0, NULL);
  r = vkEndCommandBuffer (cb);
  if (r != VK_SUCCESS)
    {
      ivk_set_error_from_result (error, r, "recording commands");
      g_mutex_lock (&ctx->lock);
      vkFreeCommandBuffers (ctx->device, ctx->cmd_pool, 1, &cb);
      g_mutex_unlock (&ctx->lock);
      return FALSE;
    }
  if (!profile || (g->flags & IVK_GRAPH_PROFILE))
    g->n_barriers = n_barriers; /* the stats describe the command buffer plain runs replay */
  *out = cb;
  return TRUE;
}

static guint64
arena_chunk (IvkGraph *g)
{
  const guint64 align = MAX (g->ctx->info.storage_offset_alignment, 256);
  return MIN (g->ctx->info.max_allocation_size, (guint64) 1 << 40) / align * align;
}

/* Lifetimes (outputs live to the end), io offsets, and arena offsets by
 * lifetime; sets g->arena_bytes, g->naive_bytes. Returns the arena placements. */
static GPtrArray *
plan (IvkGraph *g, guint64 *io_size_out)
{
  const guint n_nodes = g->nodes->len;
  const guint64 align = MAX (g->ctx->info.storage_offset_alignment, 256);
  const guint64 guard = (g->flags & IVK_GRAPH_GUARDS) ? GUARD_BYTES : 0;
  GPtrArray *arena_items = g_ptr_array_new_with_free_func (g_free);
  guint64 io_size = 0;
  g->naive_bytes = 0;
  for (guint i = 0; i < g->tensors->len; i++)
    {
      IvkTensor *t = g_ptr_array_index (g->tensors, i);
      if (t->base)
        continue;
      if (t->flags & IVK_TENSOR_OUTPUT)
        t->last_use = n_nodes;
      if (t->flags & (IVK_TENSOR_INPUT | IVK_TENSOR_OUTPUT))
        {
          t->offset = io_size;
          io_size = align_up (io_size + ivk_tensor_nbytes (t) + guard, align);
          continue;
        }
      if (t->first_use == G_MAXINT)
        continue; /* never written: unused */
      Placement *p = g_new0 (Placement, 1);
      p->t = t;
      p->size = align_up (ivk_tensor_nbytes (t) + guard, align);
      g->naive_bytes += p->size;
      g_ptr_array_add (arena_items, p);
    }
  g->arena_bytes = plan_arena (arena_items, arena_chunk (g));
  *io_size_out = io_size;
  return arena_items;
}

gboolean
ivk_graph_plan (IvkGraph *g, IvkGraphStats *stats, GError **error)
{
  if (g->error)
    {
      g_propagate_error (error, g_error_copy (g->error));
      return FALSE;
    }
  guint64 io_size = 0;
  GPtrArray *items = plan (g, &io_size);
  g_ptr_array_free (items, TRUE);
  g->io_bytes = io_size;
  ivk_graph_get_stats (g, stats);
  return TRUE;
}

gboolean
ivk_graph_compile (IvkGraph *g, GError **error)
{
  IvkContext *ctx = g->ctx;
  if (g->error)
    {
      g_propagate_error (error, g_error_copy (g->error));
      return FALSE;
    }
  g_return_val_if_fail (!g->compiled, FALSE);
  if (!ivk_context_check_lost (ctx, error))
    return FALSE;
  const guint n_nodes = g->nodes->len;
  const gboolean guards = (g->flags & IVK_GRAPH_GUARDS) != 0;
  guint64 io_size = 0;

  /* 1-2. lifetimes and arena offsets */
  GPtrArray *arena_items = plan (g, &io_size);
  guint64 chunk = arena_chunk (g);
  if (g->arena_bytes > ctx->info.device_local_bytes && !ctx->info.is_cpu)
    {
      g_set_error (error, IVK_ERROR, IVK_ERROR_OUT_OF_MEMORY,
                   "%s: activations need %.1f MiB but the device has %.1f MiB", g->name,
                   g->arena_bytes / 1048576.0, ctx->info.device_local_bytes / 1048576.0);
      g_ptr_array_free (arena_items, TRUE);
      return FALSE;
    }
  guint n_chunks = g->arena_bytes ? (guint) ((g->arena_bytes + chunk - 1) / chunk) : 0;
  for (guint c = 0; c < n_chunks; c++)
    {
      guint64 size = MIN (chunk, g->arena_bytes - (guint64) c * chunk) + 256;
      IvkBuffer *b = ivk_buffer_new (ctx, size, IVK_MEMORY_DEVICE, error);
      if (!b)
        {
          g_prefix_error (error, "%s: activation arena (%.1f MiB): ", g->name,
                          g->arena_bytes / 1048576.0);
          g_ptr_array_free (arena_items, TRUE);
          return FALSE;
        }
      g_ptr_array_add (g->arena, b);
    }
  for (guint i = 0; i < arena_items->len; i++)
    {
      Placement *p = g_ptr_array_index (arena_items, i);
      guint c = (guint) (p->offset / chunk);
      p->t->buffer = g_ptr_array_index (g->arena, c);
      p->t->offset = p->offset - (guint64) c * chunk;
      if (guards)
        {
          GuardRef gr = { p->t, p->t->buffer, p->t->offset + ivk_tensor_nbytes (p->t) };
          g_array_append_val (g->guards, gr);
        }
    }
  g_ptr_array_free (arena_items, TRUE);

  /* 3. io buffer */
  g->io_bytes = io_size;
  if (io_size > 0)
    {
      g->io = ivk_buffer_new (ctx, io_size + 256, IVK_MEMORY_HOST, error);
      if (!g->io)
        return FALSE;
      for (guint i = 0; i < g->tensors->len; i++)
        {
          IvkTensor *t = g_ptr_array_index (g->tensors, i);
          if (!t->base && (t->flags & (IVK_TENSOR_INPUT | IVK_TENSOR_OUTPUT)))
            {
              t->buffer = g->io;
              if (guards)
                {
                  GuardRef gr = { t, g->io, t->offset + ivk_tensor_nbytes (t) };
                  g_array_append_val (g->guards, gr);
                }
            }
        }
    }
  if (guards)
    {
      guint8 pattern[GUARD_BYTES];
      fill_guard (pattern);
      for (guint i = 0; i < g->guards->len; i++)
        {
          GuardRef *gr = &g_array_index (g->guards, GuardRef, i);
          if (!ivk_buffer_write (gr->buf, gr->offset, pattern, GUARD_BYTES, error))
            return FALSE;
        }
    }

  /* 4. pipelines and descriptor sets */
  if (n_nodes > 0)
    {
      guint n_texel = 0;
      for (guint i = 0; i < n_nodes; i++)
        for (guint b = 0; b < IVK_MAX_BINDINGS; b++)
          n_texel += g_array_index (g->nodes, IvkNode, i).kind[b] != IVK_BIND_STORAGE;
      VkDescriptorPoolSize ps[2] = {
        { .type = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, .descriptorCount = n_nodes * IVK_MAX_BINDINGS },
        { .type = VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER, .descriptorCount = n_texel },
      };
      VkDescriptorPoolCreateInfo pci = {
        .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO,
        .maxSets = n_nodes,
        .poolSizeCount = n_texel ? 2 : 1,
        .pPoolSizes = ps,
      };
      VkResult r = vkCreateDescriptorPool (ctx->device, &pci, NULL, &g->desc_pool);
      if (r != VK_SUCCESS)
        {
          ivk_set_error_from_result (error, r, "creating a descriptor pool");
          return FALSE;
        }
    }
  for (guint i = 0; i < n_nodes; i++)
    {
      IvkNode *node = &g_array_index (g->nodes, IvkNode, i);
      node->pipe = ivk_context_get_pipeline_kinds (ctx, node->shader, node->spec, node->n_spec,
                                                   node->n_bind, node->kind, error);
      if (!node->pipe)
        return FALSE;
      VkDescriptorSetLayout sl = ivk_context_get_set_layout_kinds (ctx, node->n_bind, node->kind);
      VkDescriptorSetAllocateInfo ai = {
        .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO,
        .descriptorPool = g->desc_pool,
        .descriptorSetCount = 1,
        .pSetLayouts = &sl,
      };
      VkResult r = vkAllocateDescriptorSets (ctx->device, &ai, &node->set);
      if (r != VK_SUCCESS)
        {
          ivk_set_error_from_result (error, r, "allocating descriptor sets");
          return FALSE;
        }
      VkDescriptorBufferInfo infos[IVK_MAX_BINDINGS];
      VkWriteDescriptorSet writes[IVK_MAX_BINDINGS];
      guint32 *offsets = (guint32 *) node->push;
      for (guint b = 0; b < node->n_bind; b++)
        {
          gboolean texel = node->kind[b] != IVK_BIND_STORAGE;
          gboolean ok = texel ? texel_binding_of (g, node->bind[b], node->kind[b], &node->views[b],
                                                  &offsets[b], error)
                              : binding_of (g, node->bind[b], &infos[b], &offsets[b], error);
          if (!ok)
            {
              g_prefix_error (error, "%s (node %u): ", node->op, i);
              return FALSE;
            }
          writes[b] = (VkWriteDescriptorSet) {
            .sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET,
            .dstSet = node->set,
            .dstBinding = b,
            .descriptorCount = 1,
            .descriptorType = texel ? VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER
                                    : VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
            .pBufferInfo = texel ? NULL : &infos[b],
            .pTexelBufferView = texel ? &node->views[b] : NULL,
          };
        }
      vkUpdateDescriptorSets (ctx->device, node->n_bind, writes, 0, NULL);

      /* hazards since the last barrier decide whether this node needs one */
    }

  /* 5. record: the plain command buffer, or the profiled one as the only
   * one for IVK_GRAPH_PROFILE graphs */
  if (g->flags & IVK_GRAPH_PROFILE)
    {
      if (!record (g, TRUE, &g->cb_prof, error))
        return FALSE;
      g->cb = g->cb_prof;
    }
  else if (!record (g, FALSE, &g->cb, error))
    return FALSE;
  g->compiled = TRUE;
  return TRUE;
}

gboolean
ivk_graph_run (IvkGraph *g, GError **error)
{
  g_return_val_if_fail (g->compiled, FALSE);
  if (g->nodes->len == 0)
    return TRUE;
  gboolean ctx_prof = ivk_context_get_profiling (g->ctx);
  gboolean profile = (g->flags & IVK_GRAPH_PROFILE) || ctx_prof;
  if (profile && !g->cb_prof && !record (g, TRUE, &g->cb_prof, error))
    return FALSE;
  if (!ivk_context_submit_wait (g->ctx, profile ? g->cb_prof : g->cb, error))
    {
      g_prefix_error (error, "%s: ", g->name);
      return FALSE;
    }
  if (profile && g->query_pool)
    {
      guint n = g->nodes->len;
      g_autofree guint64 *ts = g_new0 (guint64, n + 1);
      VkResult r = vkGetQueryPoolResults (g->ctx->device, g->query_pool, 0, n + 1,
                                          (n + 1) * sizeof (guint64), ts, sizeof (guint64),
                                          VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT);
      if (r == VK_SUCCESS)
        {
          g_array_set_size (g->profile, n);
          for (guint i = 0; i < n; i++)
            {
              IvkNode *node = &g_array_index (g->nodes, IvkNode, i);
              IvkNodeProfile *p = &g_array_index (g->profile, IvkNodeProfile, i);
              p->op = node->op;
              p->name = node->label;
              p->ms = (double) (ts[i + 1] - ts[i]) * g->ctx->info.timestamp_period_ns * 1e-6;
              p->flops = node->flops;
              p->bytes = node->bytes;
            }
          if (ctx_prof)
            ivk_context_add_profile (g->ctx, (const IvkNodeProfile *) g->profile->data, n);
        }
    }
  return TRUE;
}

gboolean
ivk_graph_check_guards (IvkGraph *g, GError **error)
{
  guint8 expect[GUARD_BYTES], got[GUARD_BYTES];
  fill_guard (expect);
  for (guint i = 0; i < g->guards->len; i++)
    {
      GuardRef *gr = &g_array_index (g->guards, GuardRef, i);
      if (!ivk_buffer_read (gr->buf, gr->offset, got, GUARD_BYTES, error))
        return FALSE;
      if (memcmp (got, expect, GUARD_BYTES) != 0)
        {
          g_set_error (error, IVK_ERROR, IVK_ERROR_FAILED,
                       "%s: a dispatch wrote past the end of tensor %s %s", g->name,
                       gr->t->name ? gr->t->name : "", ivk_tensor_describe (gr->t));
          return FALSE;
        }
    }
  return TRUE;
}

void
ivk_graph_get_stats (IvkGraph *g, IvkGraphStats *stats)
{
  memset (stats, 0, sizeof *stats);
  stats->n_nodes = g->nodes->len;
  stats->n_tensors = g->tensors->len;
  stats->arena_bytes = g->arena_bytes;
  stats->naive_bytes = g->naive_bytes;
  stats->io_bytes = g->io_bytes;
  stats->n_barriers = g->n_barriers;
  for (guint i = 0; i < g->nodes->len; i++)
    stats->flops += g_array_index (g->nodes, IvkNode, i).flops;
  for (guint i = 0; i < g->tensors->len; i++)
    {
      IvkTensor *t = g_ptr_array_index (g->tensors, i);
      stats->largest_tensor_bytes = MAX (stats->largest_tensor_bytes, ivk_tensor_span_bytes (t));
    }
}

GArray *
ivk_graph_get_profile (IvkGraph *g)
{
  return g->profile;
}

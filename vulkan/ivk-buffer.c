/* ivk-buffer.c: buffers, staging copies, persistent tensors and the weight store. */
#include "config.h"

#include <string.h>

#include "ivk-half.h"
#include "ivk-private.h"

IvkBuffer *
ivk_buffer_new (IvkContext *ctx, guint64 size, IvkMemoryKind kind, GError **error)
{
  if (!ivk_context_check_lost (ctx, error))
    return NULL;
  if (size == 0)
    size = 4;
  size = (size + 3) & ~(guint64) 3;
  if (size > ctx->info.max_allocation_size)
    {
      g_set_error (error, IVK_ERROR, IVK_ERROR_LIMIT,
                   "a buffer of %.1f MiB exceeds the device's maxMemoryAllocationSize (%.1f MiB)",
                   size / 1048576.0, ctx->info.max_allocation_size / 1048576.0);
      return NULL;
    }
  VkBufferCreateInfo ci = {
    .sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
    .size = size,
    .usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT
             | VK_BUFFER_USAGE_TRANSFER_DST_BIT
             | (ctx->info.texel_buffers ? VK_BUFFER_USAGE_UNIFORM_TEXEL_BUFFER_BIT : 0),
    .sharingMode = VK_SHARING_MODE_EXCLUSIVE,
  };
  VkBuffer buffer;
  VkResult r = vkCreateBuffer (ctx->device, &ci, NULL, &buffer);
  if (r != VK_SUCCESS)
    {
      ivk_set_error_from_result (error, r, "creating a buffer");
      return NULL;
    }
  VkMemoryRequirements req;
  vkGetBufferMemoryRequirements (ctx->device, buffer, &req);
  VkDeviceMemory memory;
  gboolean host_visible = FALSE;
  if (!ivk_context_alloc_memory (ctx, &req, kind, &memory, &host_visible, error))
    {
      vkDestroyBuffer (ctx->device, buffer, NULL);
      return NULL;
    }
  r = vkBindBufferMemory (ctx->device, buffer, memory, 0);
  void *mapped = NULL;
  if (r == VK_SUCCESS && host_visible)
    r = vkMapMemory (ctx->device, memory, 0, VK_WHOLE_SIZE, 0, &mapped);
  if (r != VK_SUCCESS)
    {
      ivk_set_error_from_result (error, r, "binding buffer memory");
      vkDestroyBuffer (ctx->device, buffer, NULL);
      ivk_context_free_memory (ctx, memory, req.size);
      return NULL;
    }
  IvkBuffer *buf = g_new0 (IvkBuffer, 1);
  buf->ctx = ivk_context_ref (ctx);
  buf->buffer = buffer;
  buf->memory = memory;
  buf->size = req.size;
  buf->mapped = mapped;
  buf->kind = kind;
  return buf;
}

void
ivk_buffer_free (IvkBuffer *buf)
{
  if (!buf)
    return;
  IvkContext *ctx = buf->ctx;
  /* GPU objects are freed only after the work that used them finished: every
   * submission in this runtime is waited for, so the queue is idle here. */
  if (buf->mapped)
    vkUnmapMemory (ctx->device, buf->memory);
  vkDestroyBuffer (ctx->device, buf->buffer, NULL);
  ivk_context_free_memory (ctx, buf->memory, buf->size);
  ivk_context_unref (ctx);
  g_free (buf);
}

guint64
ivk_buffer_get_size (IvkBuffer *buf)
{
  return buf->size;
}

void *
ivk_buffer_get_mapped (IvkBuffer *buf)
{
  return buf->mapped;
}

VkBuffer
ivk_buffer_get_handle (IvkBuffer *buf)
{
  return buf->buffer;
}

/* Copy through a temporary host buffer, in pieces of at most 64 MiB. */
static gboolean
staged_copy (IvkBuffer *buf, guint64 offset, void *data, guint64 size, gboolean to_device,
             GError **error)
{
  IvkContext *ctx = buf->ctx;
  const guint64 piece = MIN (size, (guint64) 64 << 20);
  g_autoptr (IvkBuffer) staging = ivk_buffer_new (ctx, piece, IVK_MEMORY_HOST, error);
  if (!staging)
    return FALSE;
  if (!staging->mapped)
    {
      g_set_error (error, IVK_ERROR, IVK_ERROR_UNSUPPORTED, "no host-visible memory for staging");
      return FALSE;
    }
  VkCommandBufferAllocateInfo ai = {
    .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
    .commandPool = ctx->cmd_pool,
    .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
    .commandBufferCount = 1,
  };
  VkCommandBuffer cb;
  g_mutex_lock (&ctx->lock);
  VkResult r = vkAllocateCommandBuffers (ctx->device, &ai, &cb);
  g_mutex_unlock (&ctx->lock);
  if (r != VK_SUCCESS)
    {
      ivk_set_error_from_result (error, r, "allocating a command buffer");
      return FALSE;
    }
  gboolean ok = TRUE;
  for (guint64 done = 0; ok && done < size; done += piece)
    {
      guint64 n = MIN (piece, size - done);
      if (to_device)
        memcpy (staging->mapped, (guint8 *) data + done, n);
      VkCommandBufferBeginInfo bi = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
        .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT,
      };
      vkBeginCommandBuffer (cb, &bi);
      VkBufferCopy region = {
        .srcOffset = to_device ? 0 : offset + done,
        .dstOffset = to_device ? offset + done : 0,
        .size = n,
      };
      if (to_device)
        vkCmdCopyBuffer (cb, staging->buffer, buf->buffer, 1, &region);
      else
        vkCmdCopyBuffer (cb, buf->buffer, staging->buffer, 1, &region);
      vkEndCommandBuffer (cb);
      ok = ivk_context_submit_wait (ctx, cb, error);
      if (ok && !to_device)
        memcpy ((guint8 *) data + done, staging->mapped, n);
    }
  g_mutex_lock (&ctx->lock);
  vkFreeCommandBuffers (ctx->device, ctx->cmd_pool, 1, &cb);
  g_mutex_unlock (&ctx->lock);
  return ok;
}

gboolean
ivk_buffer_write (IvkBuffer *buf, guint64 offset, const void *data, guint64 size, GError **error)
{
  g_return_val_if_fail (offset + size <= buf->size, FALSE);
  if (!ivk_context_check_lost (buf->ctx, error))
    return FALSE;
  if (buf->mapped)
    {
      memcpy ((guint8 *) buf->mapped + offset, data, size);
      return TRUE;
    }
  return staged_copy (buf, offset, (void *) data, size, TRUE, error);
}

gboolean
ivk_buffer_read (IvkBuffer *buf, guint64 offset, void *data, guint64 size, GError **error)
{
  g_return_val_if_fail (offset + size <= buf->size, FALSE);
  if (!ivk_context_check_lost (buf->ctx, error))
    return FALSE;
  if (buf->mapped)
    {
      memcpy (data, (guint8 *) buf->mapped + offset, size);
      return TRUE;
    }
  return staged_copy (buf, offset, data, size, FALSE, error);
}

/* ---- tensors ---- */

guint64
ivk_tensor_nbytes (const IvkTensor *t)
{
  return (guint64) t->n_elements * ivk_dtype_size (t->dtype);
}

guint64
ivk_tensor_span_bytes (const IvkTensor *t)
{
  if (t->row_stride == 0 || t->ndim == 0)
    return ivk_tensor_nbytes (t);
  gint64 cols = t->shape[t->ndim - 1];
  gint64 rows = t->n_elements / cols;
  return (guint64) ((rows - 1) * t->row_stride + cols) * ivk_dtype_size (t->dtype);
}

gboolean
ivk_tensor_is_contiguous (const IvkTensor *t)
{
  return t->row_stride == 0 || (t->ndim > 0 && t->row_stride == t->shape[t->ndim - 1]);
}

const char *
ivk_tensor_describe (const IvkTensor *t)
{
  static GPrivate key = G_PRIVATE_INIT (g_free);
  char *buf = g_private_get (&key);
  if (!buf)
    {
      buf = g_malloc (128);
      g_private_set (&key, buf);
    }
  if (!t)
    {
      g_strlcpy (buf, "(null)", 128);
      return buf;
    }
  int n = g_snprintf (buf, 128, "%s[", ivk_dtype_name (t->dtype));
  for (int i = 0; i < t->ndim && n < 120; i++)
    n += g_snprintf (buf + n, 128 - n, "%s%" G_GINT64_FORMAT, i ? "," : "", t->shape[i]);
  if (n < 127)
    g_strlcpy (buf + n, "]", 128 - n);
  return buf;
}

static gboolean
tensor_storage (IvkTensor *t, IvkBuffer **buf, guint64 *offset, GError **error)
{
  const IvkTensor *root = t;
  guint64 off = 0;
  if (!ivk_tensor_is_contiguous (t))
    {
      g_set_error (error, IVK_ERROR, IVK_ERROR_FAILED, "host access to a strided view");
      return FALSE;
    }
  while (root->base)
    {
      off += root->view_offset;
      root = root->base;
    }
  /* Intermediates live in the activation arena, whose memory later tensors
   * reuse: reading one would return whatever overwrote it. */
  gboolean io = root->graph == NULL
                || (root->flags & (IVK_TENSOR_INPUT | IVK_TENSOR_OUTPUT | IVK_TENSOR_PERSISTENT));
  if (!root->buffer || !io)
    {
      g_set_error (error, IVK_ERROR, IVK_ERROR_FAILED,
                   "tensor %s has no host-accessible storage (only graph inputs, outputs and "
                   "persistent tensors can be read or written, after ivk_graph_compile)",
                   t->name ? t->name : ivk_tensor_describe (t));
      return FALSE;
    }
  *buf = root->buffer;
  *offset = root->offset + off;
  return TRUE;
}

gboolean
ivk_tensor_write_raw (IvkTensor *t, const void *data, gsize nbytes, GError **error)
{
  IvkBuffer *buf;
  guint64 off;
  if (!tensor_storage (t, &buf, &off, error))
    return FALSE;
  g_return_val_if_fail (nbytes == ivk_tensor_nbytes (t), FALSE);
  return ivk_buffer_write (buf, off, data, nbytes, error);
}

gboolean
ivk_tensor_write_f32 (IvkTensor *t, const float *data, gsize n, GError **error)
{
  g_return_val_if_fail ((gint64) n == t->n_elements, FALSE);
  IvkBuffer *buf;
  guint64 off;
  if (!tensor_storage (t, &buf, &off, error))
    return FALSE;
  switch (t->dtype)
    {
    case IVK_F32:
      return ivk_buffer_write (buf, off, data, n * 4, error);
    case IVK_F16:
      {
        if (buf->mapped)
          {
            guint16 *dst = (guint16 *) ((guint8 *) buf->mapped + off);
            for (gsize i = 0; i < n; i++)
              dst[i] = ivk_f32_to_f16 (data[i]);
            return TRUE;
          }
        g_autofree guint16 *tmp = g_new (guint16, n);
        for (gsize i = 0; i < n; i++)
          tmp[i] = ivk_f32_to_f16 (data[i]);
        return ivk_buffer_write (buf, off, tmp, n * 2, error);
      }
    case IVK_I32:
      {
        g_autofree gint32 *tmp = g_new (gint32, n);
        for (gsize i = 0; i < n; i++)
          tmp[i] = (gint32) data[i];
        return ivk_buffer_write (buf, off, tmp, n * 4, error);
      }
    }
  return FALSE;
}

gboolean
ivk_tensor_read_f32 (IvkTensor *t, float *data, gsize n, GError **error)
{
  g_return_val_if_fail ((gint64) n == t->n_elements, FALSE);
  IvkBuffer *buf;
  guint64 off;
  if (!tensor_storage (t, &buf, &off, error))
    return FALSE;
  switch (t->dtype)
    {
    case IVK_F32:
      return ivk_buffer_read (buf, off, data, n * 4, error);
    case IVK_F16:
      {
        g_autofree guint16 *tmp = g_new (guint16, n);
        if (!ivk_buffer_read (buf, off, tmp, n * 2, error))
          return FALSE;
        for (gsize i = 0; i < n; i++)
          data[i] = ivk_f16_to_f32 (tmp[i]);
        return TRUE;
      }
    case IVK_I32:
      {
        g_autofree gint32 *tmp = g_new (gint32, n);
        if (!ivk_buffer_read (buf, off, tmp, n * 4, error))
          return FALSE;
        for (gsize i = 0; i < n; i++)
          data[i] = (float) tmp[i];
        return TRUE;
      }
    }
  return FALSE;
}

/* ---- weight store ---- */

struct _IvkWeightStore
{
  IvkContext *ctx;  /* owned ref */
  GPtrArray *chunks;  /* IvkBuffer*, owned */
  GPtrArray *tensors; /* IvkTensor*, owned */
  guint64 chunk_size;
  guint64 used_in_last;
  guint64 bytes;
};

IvkWeightStore *
ivk_weight_store_new (IvkContext *ctx)
{
  IvkWeightStore *ws = g_new0 (IvkWeightStore, 1);
  ws->ctx = ivk_context_ref (ctx);
  ws->chunks = g_ptr_array_new_with_free_func ((GDestroyNotify) ivk_buffer_free);
  ws->tensors = g_ptr_array_new ();
  /* Chunks start at 16 MiB and double up to 256 MiB: few allocations for big
   * models, little waste for tiny ones, always well under every driver's
   * maxMemoryAllocationSize. */
  ws->chunk_size = MIN ((guint64) 16 << 20, ctx->info.max_allocation_size);
  return ws;
}

static void
tensor_free (IvkTensor *t)
{
  g_free (t->name);
  g_free (t);
}

void
ivk_weight_store_free (IvkWeightStore *ws)
{
  if (!ws)
    return;
  for (guint i = 0; i < ws->tensors->len; i++)
    tensor_free (g_ptr_array_index (ws->tensors, i));
  g_ptr_array_free (ws->tensors, TRUE);
  g_ptr_array_free (ws->chunks, TRUE);
  ivk_context_unref (ws->ctx);
  g_free (ws);
}

guint64
ivk_weight_store_get_bytes (IvkWeightStore *ws)
{
  return ws->bytes;
}

/* A tensor that lives outside graphs (no storage yet). */
static IvkTensor *
persistent_tensor_new (const char *name, IvkDType dtype, int ndim, const gint64 *shape)
{
  IvkTensor *t = g_new0 (IvkTensor, 1);
  t->dtype = dtype;
  t->ndim = ndim;
  t->n_elements = 1;
  for (int i = 0; i < IVK_MAX_DIMS; i++)
    {
      t->shape[i] = i < ndim ? shape[i] : 1;
      if (i < ndim)
        t->n_elements *= shape[i];
    }
  t->flags = IVK_TENSOR_PERSISTENT;
  t->name = g_strdup (name);
  t->id = -1;
  return t;
}

IvkTensor *
ivk_weight_store_add_virtual (IvkWeightStore *ws, const char *name, IvkDType dtype, int ndim,
                              const gint64 *shape)
{
  g_return_val_if_fail (ndim >= 0 && ndim <= IVK_MAX_DIMS, NULL);
  IvkTensor *t = persistent_tensor_new (name, dtype, ndim, shape);
  ws->bytes += ivk_tensor_nbytes (t);
  g_ptr_array_add (ws->tensors, t);
  return t;
}

IvkTensor *
ivk_weight_store_add (IvkWeightStore *ws, const char *name, IvkDType dtype, int ndim,
                      const gint64 *shape, const void *data, GError **error)
{
  g_return_val_if_fail (ndim >= 0 && ndim <= IVK_MAX_DIMS, NULL);
  IvkTensor *t = persistent_tensor_new (name, dtype, ndim, shape);
  guint64 nbytes = ivk_tensor_nbytes (t);
  const IvkDeviceInfo *info = &ws->ctx->info;
  if (nbytes > info->max_storage_buffer_range)
    {
      g_set_error (error, IVK_ERROR, IVK_ERROR_LIMIT,
                   "weight %s (%.1f MiB) exceeds the device's maxStorageBufferRange (%.1f MiB)",
                   name, nbytes / 1048576.0, info->max_storage_buffer_range / 1048576.0);
      tensor_free (t);
      return NULL;
    }
  guint64 align = MAX (info->storage_offset_alignment, 64);
  guint64 off = (ws->used_in_last + align - 1) & ~(align - 1);
  IvkBuffer *chunk = ws->chunks->len ? g_ptr_array_index (ws->chunks, ws->chunks->len - 1) : NULL;
  if (!chunk || off + nbytes > chunk->size)
    {
      guint64 size = MAX (ws->chunk_size, (nbytes + align - 1) & ~(align - 1));
      chunk = ivk_buffer_new (ws->ctx, size, IVK_MEMORY_DEVICE, error);
      if (!chunk)
        {
          g_prefix_error (error, "uploading weight %s: ", name);
          tensor_free (t);
          return NULL;
        }
      g_ptr_array_add (ws->chunks, chunk);
      off = 0;
      ws->chunk_size = MIN (ws->chunk_size * 2, MIN ((guint64) 256 << 20, info->max_allocation_size));
    }
  t->buffer = chunk;
  t->offset = off;
  ws->used_in_last = off + nbytes;
  ws->bytes += nbytes;
  g_ptr_array_add (ws->tensors, t);
  if (data && !ivk_buffer_write (chunk, off, data, nbytes, error))
    return NULL; /* the tensor stays owned by the store */
  return t;
}

/* ivk-context.c: instance, device choice, features, queue, pipelines. */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "ivk-private.h"

G_DEFINE_QUARK (ivk-error-quark, ivk_error)

void
ivk_set_error_from_result (GError **error, VkResult result, const char *what)
{
  int code = IVK_ERROR_FAILED;
  const char *msg = "Vulkan error";
  switch (result)
    {
    case VK_ERROR_OUT_OF_HOST_MEMORY:
      code = IVK_ERROR_OUT_OF_MEMORY;
      msg = "out of host memory";
      break;
    case VK_ERROR_OUT_OF_DEVICE_MEMORY:
      code = IVK_ERROR_OUT_OF_MEMORY;
      msg = "out of device memory";
      break;
    case VK_ERROR_DEVICE_LOST:
      code = IVK_ERROR_DEVICE_LOST;
      msg = "the GPU device was lost (driver reset or crash)";
      break;
    case VK_ERROR_INITIALIZATION_FAILED:
      msg = "initialization failed";
      break;
    case VK_ERROR_INCOMPATIBLE_DRIVER:
      code = IVK_ERROR_NO_DEVICE;
      msg = "no compatible Vulkan driver (install your GPU vendor's Vulkan driver, or "
            "mesa-vulkan-drivers for the CPU fallback)";
      break;
    case VK_ERROR_EXTENSION_NOT_PRESENT:
      code = IVK_ERROR_UNSUPPORTED;
      msg = "a required extension is not present";
      break;
    case VK_ERROR_FEATURE_NOT_PRESENT:
      code = IVK_ERROR_UNSUPPORTED;
      msg = "a required feature is not present";
      break;
    case VK_ERROR_LAYER_NOT_PRESENT:
      code = IVK_ERROR_UNSUPPORTED;
      msg = "a requested layer is not present (install vulkan-validationlayers)";
      break;
    case VK_ERROR_TOO_MANY_OBJECTS:
      code = IVK_ERROR_LIMIT;
      msg = "too many objects";
      break;
    case VK_ERROR_FRAGMENTED_POOL:
    case VK_ERROR_OUT_OF_POOL_MEMORY:
      code = IVK_ERROR_OUT_OF_MEMORY;
      msg = "descriptor pool exhausted";
      break;
    default:
      break;
    }
  g_set_error (error, IVK_ERROR, code, "%s: %s (VkResult %d)", what, msg, (int) result);
}

gsize
ivk_dtype_size (IvkDType dtype)
{
  switch (dtype)
    {
    case IVK_F32:
    case IVK_I32:
      return 4;
    case IVK_F16:
      return 2;
    }
  g_return_val_if_reached (4);
}

const char *
ivk_dtype_name (IvkDType dtype)
{
  switch (dtype)
    {
    case IVK_F32:
      return "f32";
    case IVK_F16:
      return "f16";
    case IVK_I32:
      return "i32";
    }
  return "?";
}

/* ---- validation messages ---- */

static VKAPI_ATTR VkBool32 VKAPI_CALL
debug_callback (VkDebugUtilsMessageSeverityFlagBitsEXT severity,
                VkDebugUtilsMessageTypeFlagsEXT type,
                const VkDebugUtilsMessengerCallbackDataEXT *data, void *user)
{
  IvkContext *ctx = user;
  if (severity & (VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT
                  | VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT))
    {
      g_atomic_int_inc ((gint *) &ctx->validation_messages);
      fprintf (stderr, "impasto: Vulkan validation: %s\n", data->pMessage);
    }
  return VK_FALSE;
}

static gboolean
env_flag (const char *name)
{
  const char *v = g_getenv (name);
  return v != NULL && *v != '\0' && strcmp (v, "0") != 0;
}

static gboolean
has_layer (const char *name)
{
  guint32 n = 0;
  vkEnumerateInstanceLayerProperties (&n, NULL);
  g_autofree VkLayerProperties *props = g_new0 (VkLayerProperties, MAX (n, 1));
  vkEnumerateInstanceLayerProperties (&n, props);
  for (guint32 i = 0; i < n; i++)
    if (strcmp (props[i].layerName, name) == 0)
      return TRUE;
  return FALSE;
}

/* An instance extension provided by a layer (e.g. VK_EXT_validation_features). */
static gboolean
has_layer_ext (const char *layer, const char *name)
{
  guint32 n = 0;
  vkEnumerateInstanceExtensionProperties (layer, &n, NULL);
  g_autofree VkExtensionProperties *props = g_new0 (VkExtensionProperties, MAX (n, 1));
  vkEnumerateInstanceExtensionProperties (layer, &n, props);
  for (guint32 i = 0; i < n; i++)
    if (strcmp (props[i].extensionName, name) == 0)
      return TRUE;
  return FALSE;
}

static gboolean
has_instance_ext (const char *name)
{
  guint32 n = 0;
  vkEnumerateInstanceExtensionProperties (NULL, &n, NULL);
  g_autofree VkExtensionProperties *props = g_new0 (VkExtensionProperties, MAX (n, 1));
  vkEnumerateInstanceExtensionProperties (NULL, &n, props);
  for (guint32 i = 0; i < n; i++)
    if (strcmp (props[i].extensionName, name) == 0)
      return TRUE;
  return FALSE;
}

static gboolean
has_device_ext (VkPhysicalDevice phys, const char *name)
{
  guint32 n = 0;
  vkEnumerateDeviceExtensionProperties (phys, NULL, &n, NULL);
  g_autofree VkExtensionProperties *props = g_new0 (VkExtensionProperties, MAX (n, 1));
  vkEnumerateDeviceExtensionProperties (phys, NULL, &n, props);
  for (guint32 i = 0; i < n; i++)
    if (strcmp (props[i].extensionName, name) == 0)
      return TRUE;
  return FALSE;
}

static VkInstance
create_instance (gboolean validation, gboolean *debug_utils, GError **error)
{
  VkApplicationInfo app = {
    .sType = VK_STRUCTURE_TYPE_APPLICATION_INFO,
    .pApplicationName = "impasto",
    .applicationVersion = 1,
    .pEngineName = "impasto",
    .engineVersion = 1,
    .apiVersion = VK_API_VERSION_1_2,
  };
  const char *layers[1];
  guint n_layers = 0;
  const char *exts[3];
  guint n_exts = 0;
  *debug_utils = FALSE;
  if (validation)
    {
      if (!has_layer ("VK_LAYER_KHRONOS_validation"))
        {
          g_set_error (error, IVK_ERROR, IVK_ERROR_UNSUPPORTED,
                       "validation requested but VK_LAYER_KHRONOS_validation is not installed "
                       "(apt install vulkan-validationlayers)");
          return VK_NULL_HANDLE;
        }
      layers[n_layers++] = "VK_LAYER_KHRONOS_validation";
      if (has_instance_ext (VK_EXT_DEBUG_UTILS_EXTENSION_NAME))
        {
          exts[n_exts++] = VK_EXT_DEBUG_UTILS_EXTENSION_NAME;
          *debug_utils = TRUE;
        }
    }
  /* With validation, also turn on the layer's synchronization validation:
   * lavapipe runs dispatches in order, so a missing barrier between dependent
   * dispatches is invisible there and only this check catches it. */
  static const VkValidationFeatureEnableEXT enables[] = {
    VK_VALIDATION_FEATURE_ENABLE_SYNCHRONIZATION_VALIDATION_EXT,
  };
  VkValidationFeaturesEXT features = {
    .sType = VK_STRUCTURE_TYPE_VALIDATION_FEATURES_EXT,
    .enabledValidationFeatureCount = G_N_ELEMENTS (enables),
    .pEnabledValidationFeatures = enables,
  };
  gboolean sync_validation = validation && has_layer_ext ("VK_LAYER_KHRONOS_validation",
                                                          VK_EXT_VALIDATION_FEATURES_EXTENSION_NAME);
  if (sync_validation)
    exts[n_exts++] = VK_EXT_VALIDATION_FEATURES_EXTENSION_NAME;
  VkInstanceCreateInfo ci = {
    .sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO,
    .pNext = sync_validation ? &features : NULL,
    .pApplicationInfo = &app,
    .enabledLayerCount = n_layers,
    .ppEnabledLayerNames = layers,
    .enabledExtensionCount = n_exts,
    .ppEnabledExtensionNames = exts,
  };
  VkInstance instance = VK_NULL_HANDLE;
  VkResult r = vkCreateInstance (&ci, NULL, &instance);
  if (r != VK_SUCCESS)
    {
      if (r == VK_ERROR_INCOMPATIBLE_DRIVER || r == VK_ERROR_INITIALIZATION_FAILED)
        g_set_error (error, IVK_ERROR, IVK_ERROR_NO_DEVICE,
                     "no Vulkan driver could be loaded (VkResult %d). Install your GPU vendor's "
                     "Vulkan driver, or the CPU fallback: sudo apt install mesa-vulkan-drivers",
                     (int) r);
      else
        ivk_set_error_from_result (error, r, "creating the Vulkan instance");
      return VK_NULL_HANDLE;
    }
  return instance;
}

static void
query_device_info (VkPhysicalDevice phys, guint index, IvkDeviceInfo *info)
{
  memset (info, 0, sizeof *info);
  VkPhysicalDeviceDriverProperties driver = { .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES };
  VkPhysicalDeviceSubgroupProperties subgroup = {
    .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES,
    .pNext = &driver,
  };
  VkPhysicalDeviceMaintenance3Properties maint3 = {
    .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES,
    .pNext = &subgroup,
  };
  VkPhysicalDeviceProperties2 props = {
    .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2,
    .pNext = &maint3,
  };
  vkGetPhysicalDeviceProperties2 (phys, &props);
  const VkPhysicalDeviceLimits *lim = &props.properties.limits;

  VkPhysicalDeviceVulkan11Features f11 = { .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES };
  VkPhysicalDeviceVulkan12Features f12 = {
    .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES,
    .pNext = &f11,
  };
  VkPhysicalDeviceFeatures2 feats = { .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, .pNext = &f12 };
  vkGetPhysicalDeviceFeatures2 (phys, &feats);

  g_strlcpy (info->name, props.properties.deviceName, sizeof info->name);
  g_snprintf (info->driver, sizeof info->driver, "%s %s", driver.driverName, driver.driverInfo);
  info->type = props.properties.deviceType;
  info->vendor_id = props.properties.vendorID;
  info->device_id = props.properties.deviceID;
  info->driver_version = props.properties.driverVersion;
  info->api_version = props.properties.apiVersion;
  info->index = index;
  info->is_cpu = info->type == VK_PHYSICAL_DEVICE_TYPE_CPU;
  info->fp16_storage = f11.storageBuffer16BitAccess;
  info->fp16_arith = f12.shaderFloat16;
  info->coopmat = has_device_ext (phys, "VK_KHR_cooperative_matrix");
  info->push_descriptor = has_device_ext (phys, VK_KHR_PUSH_DESCRIPTOR_EXTENSION_NAME);
  info->subgroup_size = subgroup.subgroupSize;
  info->max_shared_memory = lim->maxComputeSharedMemorySize;
  info->max_workgroup_invocations = lim->maxComputeWorkGroupInvocations;
  for (int i = 0; i < 3; i++)
    info->max_workgroup_count[i] = lim->maxComputeWorkGroupCount[i];
  info->max_storage_buffer_range = lim->maxStorageBufferRange;
  info->max_allocation_size = maint3.maxMemoryAllocationSize;
  info->max_buffer_size = info->max_allocation_size; /* maintenance4 not assumed */
  info->storage_offset_alignment = MAX (lim->minStorageBufferOffsetAlignment, 4);
  info->timestamp_period_ns = lim->timestampPeriod;
  info->max_texel_elements = lim->maxTexelBufferElements;
  info->texel_offset_alignment = MAX (lim->minTexelBufferOffsetAlignment, 16);
  info->texel_buffers = TRUE;
  static const VkFormat texel_formats[] = { VK_FORMAT_R32_SFLOAT, VK_FORMAT_R16_SFLOAT,
                                            VK_FORMAT_R32G32B32A32_SFLOAT,
                                            VK_FORMAT_R16G16B16A16_SFLOAT };
  for (guint i = 0; i < G_N_ELEMENTS (texel_formats); i++)
    {
      VkFormatProperties fp;
      vkGetPhysicalDeviceFormatProperties (phys, texel_formats[i], &fp);
      if (!(fp.bufferFeatures & VK_FORMAT_FEATURE_UNIFORM_TEXEL_BUFFER_BIT))
        info->texel_buffers = FALSE;
    }

  VkPhysicalDeviceMemoryProperties mem;
  vkGetPhysicalDeviceMemoryProperties (phys, &mem);
  for (guint32 i = 0; i < mem.memoryHeapCount; i++)
    if (mem.memoryHeaps[i].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT)
      info->device_local_bytes = MAX (info->device_local_bytes, mem.memoryHeaps[i].size);
  for (guint32 i = 0; i < mem.memoryTypeCount; i++)
    {
      VkMemoryPropertyFlags f = mem.memoryTypes[i].propertyFlags;
      if ((f & VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT) && (f & VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT)
          && mem.memoryHeaps[mem.memoryTypes[i].heapIndex].size >= info->device_local_bytes)
        info->unified_memory = TRUE;
    }
}

static int
device_score (const IvkDeviceInfo *info)
{
  switch (info->type)
    {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU:
      return 4;
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU:
      return 3;
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU:
      return 2;
    case VK_PHYSICAL_DEVICE_TYPE_CPU:
      return 1;
    default:
      return 0;
    }
}

static gboolean
device_matches (const IvkDeviceInfo *info, const char *want)
{
  char *end = NULL;
  guint64 idx = g_ascii_strtoull (want, &end, 10);
  if (end != want && *end == '\0')
    return idx == info->index;
  g_autofree char *a = g_utf8_strdown (info->name, -1);
  g_autofree char *b = g_utf8_strdown (want, -1);
  return strstr (a, b) != NULL;
}

GArray *
ivk_list_devices (GError **error)
{
  gboolean debug_utils;
  VkInstance instance = create_instance (FALSE, &debug_utils, error);
  if (!instance)
    return NULL;
  guint32 n = 0;
  vkEnumeratePhysicalDevices (instance, &n, NULL);
  g_autofree VkPhysicalDevice *devs = g_new0 (VkPhysicalDevice, MAX (n, 1));
  vkEnumeratePhysicalDevices (instance, &n, devs);
  GArray *out = g_array_new (FALSE, TRUE, sizeof (IvkDeviceInfo));
  for (guint32 i = 0; i < n; i++)
    {
      IvkDeviceInfo info;
      query_device_info (devs[i], i, &info);
      g_array_append_val (out, info);
    }
  vkDestroyInstance (instance, NULL);
  return out;
}

static char *
pipeline_cache_path (const IvkDeviceInfo *info)
{
  return g_strdup_printf ("%s/impasto/pipelines-%04x-%04x-%08x.bin", g_get_user_cache_dir (),
                          info->vendor_id, info->device_id, info->driver_version);
}

static void
load_pipeline_cache (IvkContext *ctx)
{
  ctx->pipeline_cache_path = pipeline_cache_path (&ctx->info);
  g_autofree char *data = NULL;
  gsize len = 0;
  VkPipelineCacheCreateInfo ci = { .sType = VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO };
  /* A cache from another driver is rejected by the driver itself (the header
   * carries vendor, device and UUID); a corrupt file is simply ignored. */
  if (!env_flag ("IMPASTO_NO_PIPELINE_CACHE")
      && g_file_get_contents (ctx->pipeline_cache_path, &data, &len, NULL) && len > 32)
    {
      ci.initialDataSize = len;
      ci.pInitialData = data;
    }
  if (vkCreatePipelineCache (ctx->device, &ci, NULL, &ctx->pipeline_cache) != VK_SUCCESS)
    {
      ci.initialDataSize = 0;
      ci.pInitialData = NULL;
      if (vkCreatePipelineCache (ctx->device, &ci, NULL, &ctx->pipeline_cache) != VK_SUCCESS)
        ctx->pipeline_cache = VK_NULL_HANDLE;
    }
}

void
ivk_context_save_pipeline_cache (IvkContext *ctx)
{
  if (!ctx->pipeline_cache || !ctx->pipeline_cache_path || env_flag ("IMPASTO_NO_PIPELINE_CACHE"))
    return;
  size_t len = 0;
  if (vkGetPipelineCacheData (ctx->device, ctx->pipeline_cache, &len, NULL) != VK_SUCCESS || len == 0)
    return;
  g_autofree char *data = g_malloc (len);
  if (vkGetPipelineCacheData (ctx->device, ctx->pipeline_cache, &len, data) != VK_SUCCESS)
    return;
  g_autofree char *dir = g_path_get_dirname (ctx->pipeline_cache_path);
  if (g_mkdir_with_parents (dir, 0700) != 0)
    return;
  /* g_file_set_contents writes a temporary file and renames it: never torn */
  g_file_set_contents (ctx->pipeline_cache_path, data, len, NULL);
}

IvkContext *
ivk_context_new (const IvkContextOptions *options, GError **error)
{
  IvkContextOptions defaults = { 0 };
  if (!options)
    options = &defaults;
  gboolean validation = options->validation || env_flag ("IMPASTO_VALIDATION");
  gboolean debug_utils = FALSE;
  VkInstance instance = create_instance (validation, &debug_utils, error);
  if (!instance)
    return NULL;

  guint32 n = 0;
  VkResult r = vkEnumeratePhysicalDevices (instance, &n, NULL);
  if (r != VK_SUCCESS || n == 0)
    {
      g_set_error (error, IVK_ERROR, IVK_ERROR_NO_DEVICE,
                   "no Vulkan device found. Install your GPU vendor's Vulkan driver, or the CPU "
                   "fallback (lavapipe): sudo apt install mesa-vulkan-drivers");
      vkDestroyInstance (instance, NULL);
      return NULL;
    }
  g_autofree VkPhysicalDevice *devs = g_new0 (VkPhysicalDevice, n);
  vkEnumeratePhysicalDevices (instance, &n, devs);

  const char *want = options->device ? options->device : g_getenv ("IMPASTO_DEVICE");
  if (want && *want == '\0')
    want = NULL;
  int best = -1, best_score = -1;
  IvkDeviceInfo best_info = { 0 };
  GString *seen = g_string_new (NULL);
  for (guint32 i = 0; i < n; i++)
    {
      IvkDeviceInfo info;
      query_device_info (devs[i], i, &info);
      g_string_append_printf (seen, "%s%u: %s", i ? ", " : "", i, info.name);
      if (info.api_version < VK_API_VERSION_1_2)
        continue; /* we need Vulkan 1.2 feature structs */
      if (want && !device_matches (&info, want))
        continue;
      int score = device_score (&info);
      if (score > best_score)
        {
          best = i;
          best_score = score;
          best_info = info;
        }
    }
  if (best < 0)
    {
      if (want)
        g_set_error (error, IVK_ERROR, IVK_ERROR_NO_DEVICE,
                     "no Vulkan 1.2 device matches IMPASTO_DEVICE='%s' (devices: %s)", want, seen->str);
      else
        g_set_error (error, IVK_ERROR, IVK_ERROR_NO_DEVICE,
                     "no Vulkan 1.2 device found (devices: %s). Update your GPU driver, or install "
                     "mesa-vulkan-drivers", seen->str);
      g_string_free (seen, TRUE);
      vkDestroyInstance (instance, NULL);
      return NULL;
    }
  g_string_free (seen, TRUE);

  IvkContext *ctx = g_new0 (IvkContext, 1);
  ctx->ref_count = 1;
  ctx->instance = instance;
  ctx->phys = devs[best];
  ctx->info = best_info;
  g_mutex_init (&ctx->lock);
  ctx->info.use_fp16 = ctx->info.fp16_storage && !options->no_fp16 && !env_flag ("IMPASTO_NO_FP16");
  if (env_flag ("IMPASTO_NO_TEXEL"))
    ctx->info.texel_buffers = FALSE;
  vkGetPhysicalDeviceMemoryProperties (ctx->phys, &ctx->memprops);

  if (debug_utils)
    {
      PFN_vkCreateDebugUtilsMessengerEXT create_messenger
        = (PFN_vkCreateDebugUtilsMessengerEXT) vkGetInstanceProcAddr (instance,
                                                                      "vkCreateDebugUtilsMessengerEXT");
      VkDebugUtilsMessengerCreateInfoEXT mi = {
        .sType = VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT,
        .messageSeverity = VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT
                           | VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT,
        .messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT
                       | VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT
                       | VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT,
        .pfnUserCallback = debug_callback,
        .pUserData = ctx,
      };
      if (create_messenger)
        create_messenger (instance, &mi, NULL, &ctx->messenger);
    }

  /* queue: the first family with compute */
  guint32 nq = 0;
  vkGetPhysicalDeviceQueueFamilyProperties (ctx->phys, &nq, NULL);
  g_autofree VkQueueFamilyProperties *qf = g_new0 (VkQueueFamilyProperties, MAX (nq, 1));
  vkGetPhysicalDeviceQueueFamilyProperties (ctx->phys, &nq, qf);
  int family = -1;
  /* prefer a compute-only family (async compute on some GPUs), else any with compute */
  for (guint32 i = 0; i < nq && family < 0; i++)
    if ((qf[i].queueFlags & VK_QUEUE_COMPUTE_BIT) && !(qf[i].queueFlags & VK_QUEUE_GRAPHICS_BIT))
      family = i;
  for (guint32 i = 0; i < nq && family < 0; i++)
    if (qf[i].queueFlags & VK_QUEUE_COMPUTE_BIT)
      family = i;
  if (family < 0)
    {
      g_set_error (error, IVK_ERROR, IVK_ERROR_NO_DEVICE, "device '%s' has no compute queue",
                   ctx->info.name);
      ivk_context_unref (ctx);
      return NULL;
    }
  ctx->queue_family = family;
  ctx->info.timestamps = qf[family].timestampValidBits > 0;

  float prio = 1.0f;
  VkDeviceQueueCreateInfo qci = {
    .sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
    .queueFamilyIndex = family,
    .queueCount = 1,
    .pQueuePriorities = &prio,
  };
  VkPhysicalDeviceVulkan11Features f11 = {
    .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES,
    .storageBuffer16BitAccess = ctx->info.fp16_storage,
  };
  VkPhysicalDeviceVulkan12Features f12 = {
    .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES,
    .pNext = &f11,
    .shaderFloat16 = ctx->info.fp16_arith,
  };
  VkPhysicalDeviceFeatures2 feats = { .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, .pNext = &f12 };
  VkDeviceCreateInfo dci = {
    .sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO,
    .pNext = &feats,
    .queueCreateInfoCount = 1,
    .pQueueCreateInfos = &qci,
  };
  r = vkCreateDevice (ctx->phys, &dci, NULL, &ctx->device);
  if (r != VK_SUCCESS)
    {
      ivk_set_error_from_result (error, r, "creating the Vulkan device");
      ivk_context_unref (ctx);
      return NULL;
    }
  vkGetDeviceQueue (ctx->device, family, 0, &ctx->queue);

  VkCommandPoolCreateInfo pci = {
    .sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
    .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT,
    .queueFamilyIndex = family,
  };
  VkFenceCreateInfo fci = { .sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO };
  if ((r = vkCreateCommandPool (ctx->device, &pci, NULL, &ctx->cmd_pool)) != VK_SUCCESS
      || (r = vkCreateFence (ctx->device, &fci, NULL, &ctx->fence)) != VK_SUCCESS)
    {
      ivk_set_error_from_result (error, r, "creating the command pool");
      ivk_context_unref (ctx);
      return NULL;
    }

  ctx->pipelines = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  ctx->layouts = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  load_pipeline_cache (ctx);
  return ctx;
}

IvkContext *
ivk_context_ref (IvkContext *ctx)
{
  g_atomic_int_inc (&ctx->ref_count);
  return ctx;
}

void
ivk_context_unref (IvkContext *ctx)
{
  if (!ctx || !g_atomic_int_dec_and_test (&ctx->ref_count))
    return;
  if (ctx->device)
    {
      vkDeviceWaitIdle (ctx->device);
      ivk_context_save_pipeline_cache (ctx);
      if (ctx->pipelines)
        {
          GHashTableIter it;
          gpointer value;
          g_hash_table_iter_init (&it, ctx->pipelines);
          while (g_hash_table_iter_next (&it, NULL, &value))
            vkDestroyPipeline (ctx->device, ((IvkPipeline *) value)->pipeline, NULL);
          g_hash_table_destroy (ctx->pipelines);
        }
      if (ctx->layouts)
        {
          GHashTableIter it;
          gpointer value;
          g_hash_table_iter_init (&it, ctx->layouts);
          while (g_hash_table_iter_next (&it, NULL, &value))
            {
              IvkLayout *l = value;
              vkDestroyPipelineLayout (ctx->device, l->pipeline_layout, NULL);
              vkDestroyDescriptorSetLayout (ctx->device, l->set_layout, NULL);
            }
          g_hash_table_destroy (ctx->layouts);
        }
      for (int i = 0; i <= IVK_MAX_BINDINGS; i++)
        {
          if (ctx->pipeline_layouts[i])
            vkDestroyPipelineLayout (ctx->device, ctx->pipeline_layouts[i], NULL);
          if (ctx->set_layouts[i])
            vkDestroyDescriptorSetLayout (ctx->device, ctx->set_layouts[i], NULL);
        }
      if (ctx->pipeline_cache)
        vkDestroyPipelineCache (ctx->device, ctx->pipeline_cache, NULL);
      if (ctx->fence)
        vkDestroyFence (ctx->device, ctx->fence, NULL);
      if (ctx->cmd_pool)
        vkDestroyCommandPool (ctx->device, ctx->cmd_pool, NULL);
      vkDestroyDevice (ctx->device, NULL);
    }
  if (ctx->messenger)
    {
      PFN_vkDestroyDebugUtilsMessengerEXT destroy_messenger
        = (PFN_vkDestroyDebugUtilsMessengerEXT) vkGetInstanceProcAddr (ctx->instance,
                                                                       "vkDestroyDebugUtilsMessengerEXT");
      if (destroy_messenger)
        destroy_messenger (ctx->instance, ctx->messenger, NULL);
    }
  if (ctx->instance)
    vkDestroyInstance (ctx->instance, NULL);
  g_free (ctx->pipeline_cache_path);
  if (ctx->profile_sink)
    g_array_unref (ctx->profile_sink);
  g_mutex_clear (&ctx->lock);
  g_free (ctx);
}

const IvkDeviceInfo *
ivk_context_get_info (IvkContext *ctx)
{
  return &ctx->info;
}

guint
ivk_context_get_validation_messages (IvkContext *ctx)
{
  return g_atomic_int_get ((gint *) &ctx->validation_messages);
}

guint64
ivk_context_get_allocated (IvkContext *ctx)
{
  g_mutex_lock (&ctx->lock);
  guint64 v = ctx->allocated;
  g_mutex_unlock (&ctx->lock);
  return v;
}

guint64
ivk_context_get_peak_allocated (IvkContext *ctx)
{
  g_mutex_lock (&ctx->lock);
  guint64 v = ctx->peak;
  g_mutex_unlock (&ctx->lock);
  return v;
}

void
ivk_context_reset_peak (IvkContext *ctx)
{
  g_mutex_lock (&ctx->lock);
  ctx->peak = ctx->allocated;
  ctx->largest_binding = 0;
  g_mutex_unlock (&ctx->lock);
}

guint64
ivk_context_get_largest_binding (IvkContext *ctx)
{
  g_mutex_lock (&ctx->lock);
  guint64 v = ctx->largest_binding;
  g_mutex_unlock (&ctx->lock);
  return v;
}

void
ivk_context_note_binding (IvkContext *ctx, guint64 bytes)
{
  g_mutex_lock (&ctx->lock);
  ctx->largest_binding = MAX (ctx->largest_binding, bytes);
  g_mutex_unlock (&ctx->lock);
}

void
ivk_context_set_profiling (IvkContext *ctx, gboolean on)
{
  g_mutex_lock (&ctx->lock);
  ctx->profiling = on;
  g_mutex_unlock (&ctx->lock);
}

gboolean
ivk_context_get_profiling (IvkContext *ctx)
{
  g_mutex_lock (&ctx->lock);
  gboolean v = ctx->profiling;
  g_mutex_unlock (&ctx->lock);
  return v;
}

void
ivk_context_add_profile (IvkContext *ctx, const IvkNodeProfile *p, guint n)
{
  g_mutex_lock (&ctx->lock);
  if (!ctx->profile_sink)
    ctx->profile_sink = g_array_new (FALSE, FALSE, sizeof (IvkNodeProfile));
  for (guint i = 0; i < n; i++)
    {
      IvkNodeProfile q = p[i];
      q.op = g_intern_string (q.op);
      q.name = g_intern_string (q.name);
      g_array_append_val (ctx->profile_sink, q);
    }
  g_mutex_unlock (&ctx->lock);
}

GArray *
ivk_context_take_profile (IvkContext *ctx)
{
  g_mutex_lock (&ctx->lock);
  GArray *a = ctx->profile_sink ? ctx->profile_sink : g_array_new (FALSE, FALSE, sizeof (IvkNodeProfile));
  ctx->profile_sink = NULL;
  g_mutex_unlock (&ctx->lock);
  return a;
}

gboolean
ivk_context_is_lost (IvkContext *ctx)
{
  return g_atomic_int_get (&ctx->lost);
}

void
ivk_context_mark_lost (IvkContext *ctx)
{
  g_atomic_int_set (&ctx->lost, TRUE);
}

gboolean
ivk_context_check_lost (IvkContext *ctx, GError **error)
{
  if (!ivk_context_is_lost (ctx))
    return TRUE;
  g_set_error (error, IVK_ERROR, IVK_ERROR_DEVICE_LOST,
               "the GPU device was lost earlier; restart the program (or the backend)");
  return FALSE;
}

/* ---- memory ---- */

static int
find_memory_type (IvkContext *ctx, guint32 type_bits, VkMemoryPropertyFlags want,
                  VkMemoryPropertyFlags avoid)
{
  for (guint32 i = 0; i < ctx->memprops.memoryTypeCount; i++)
    {
      VkMemoryPropertyFlags f = ctx->memprops.memoryTypes[i].propertyFlags;
      if ((type_bits & (1u << i)) && (f & want) == want && (f & avoid) == 0)
        return i;
    }
  return -1;
}

gboolean
ivk_context_alloc_memory (IvkContext *ctx, const VkMemoryRequirements *req, IvkMemoryKind kind,
                          VkDeviceMemory *memory, gboolean *host_visible, GError **error)
{
  const VkMemoryPropertyFlags dl = VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT;
  const VkMemoryPropertyFlags hv = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
  int candidates[4];
  int n = 0;
  if (kind == IVK_MEMORY_DEVICE)
    {
      /* unified memory first (no staging needed), then plain device-local */
      if (ctx->info.unified_memory)
        candidates[n++] = find_memory_type (ctx, req->memoryTypeBits, dl | hv, 0);
      candidates[n++] = find_memory_type (ctx, req->memoryTypeBits, dl, 0);
      candidates[n++] = find_memory_type (ctx, req->memoryTypeBits, 0, 0);
    }
  else
    {
      /* host-visible: cached helps readback; device-local host-visible (ReBAR) last
       * because it is a small heap on many GPUs */
      candidates[n++] = find_memory_type (ctx, req->memoryTypeBits,
                                          hv | VK_MEMORY_PROPERTY_HOST_CACHED_BIT, 0);
      candidates[n++] = find_memory_type (ctx, req->memoryTypeBits, hv, dl);
      candidates[n++] = find_memory_type (ctx, req->memoryTypeBits, hv, 0);
    }
  if (req->size > ctx->info.max_allocation_size)
    {
      g_set_error (error, IVK_ERROR, IVK_ERROR_LIMIT,
                   "allocation of %" G_GUINT64_FORMAT " MiB exceeds the device's "
                   "maxMemoryAllocationSize (%" G_GUINT64_FORMAT " MiB)",
                   (guint64) req->size >> 20, ctx->info.max_allocation_size >> 20);
      return FALSE;
    }
  VkResult last = VK_ERROR_OUT_OF_DEVICE_MEMORY;
  for (int i = 0; i < n; i++)
    {
      if (candidates[i] < 0)
        continue;
      VkMemoryAllocateInfo ai = {
        .sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
        .allocationSize = req->size,
        .memoryTypeIndex = candidates[i],
      };
      last = vkAllocateMemory (ctx->device, &ai, NULL, memory);
      if (last == VK_SUCCESS)
        {
          *host_visible = (ctx->memprops.memoryTypes[candidates[i]].propertyFlags
                           & VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT) != 0;
          g_mutex_lock (&ctx->lock);
          ctx->allocated += req->size;
          ctx->peak = MAX (ctx->peak, ctx->allocated);
          g_mutex_unlock (&ctx->lock);
          return TRUE;
        }
      if (last == VK_ERROR_DEVICE_LOST)
        break;
    }
  if (last == VK_ERROR_OUT_OF_DEVICE_MEMORY || last == VK_ERROR_OUT_OF_HOST_MEMORY)
    g_set_error (error, IVK_ERROR, IVK_ERROR_OUT_OF_MEMORY,
                 "out of %s memory allocating %.1f MiB (%.1f MiB already allocated by impasto, "
                 "device has %.1f MiB)",
                 last == VK_ERROR_OUT_OF_HOST_MEMORY ? "host" : "device",
                 req->size / 1048576.0, ctx->allocated / 1048576.0,
                 ctx->info.device_local_bytes / 1048576.0);
  else
    ivk_set_error_from_result (error, last, "allocating device memory");
  if (last == VK_ERROR_DEVICE_LOST)
    ivk_context_mark_lost (ctx);
  return FALSE;
}

void
ivk_context_free_memory (IvkContext *ctx, VkDeviceMemory memory, guint64 size)
{
  vkFreeMemory (ctx->device, memory, NULL);
  g_mutex_lock (&ctx->lock);
  ctx->allocated -= MIN (size, ctx->allocated);
  g_mutex_unlock (&ctx->lock);
}

gboolean
ivk_context_submit_wait (IvkContext *ctx, VkCommandBuffer cb, GError **error)
{
  if (!ivk_context_check_lost (ctx, error))
    return FALSE;
  VkSubmitInfo si = {
    .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO,
    .commandBufferCount = 1,
    .pCommandBuffers = &cb,
  };
  g_mutex_lock (&ctx->lock);
  VkResult r = vkQueueSubmit (ctx->queue, 1, &si, ctx->fence);
  if (r == VK_SUCCESS)
    {
      r = vkWaitForFences (ctx->device, 1, &ctx->fence, VK_TRUE, UINT64_MAX);
      vkResetFences (ctx->device, 1, &ctx->fence);
    }
  g_mutex_unlock (&ctx->lock);
  if (r != VK_SUCCESS)
    {
      if (r == VK_ERROR_DEVICE_LOST)
        ivk_context_mark_lost (ctx);
      ivk_set_error_from_result (error, r, "running GPU work");
      return FALSE;
    }
  return TRUE;
}

/* ---- pipelines ---- */

static gboolean
all_storage (guint n_bindings, const guint8 *kinds)
{
  for (guint i = 0; kinds && i < n_bindings; i++)
    if (kinds[i] != IVK_BIND_STORAGE)
      return FALSE;
  return TRUE;
}

/* Layouts with texel bindings, cached by their signature ("n:kinds"). */
static IvkLayout *
texel_layout (IvkContext *ctx, guint n_bindings, const guint8 *kinds)
{
  char key[2 * IVK_MAX_BINDINGS + 4];
  int len = g_snprintf (key, sizeof key, "%u:", n_bindings);
  for (guint i = 0; i < n_bindings; i++)
    key[len++] = (char) ('0' + kinds[i]);
  key[len] = '\0';
  g_mutex_lock (&ctx->lock);
  IvkLayout *l = g_hash_table_lookup (ctx->layouts, key);
  if (!l)
    {
      VkDescriptorSetLayoutBinding b[IVK_MAX_BINDINGS];
      for (guint i = 0; i < n_bindings; i++)
        b[i] = (VkDescriptorSetLayoutBinding) {
          .binding = i,
          .descriptorType = kinds[i] == IVK_BIND_STORAGE ? VK_DESCRIPTOR_TYPE_STORAGE_BUFFER
                                                         : VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER,
          .descriptorCount = 1,
          .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT,
        };
      VkDescriptorSetLayoutCreateInfo ci = {
        .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO,
        .bindingCount = n_bindings,
        .pBindings = b,
      };
      l = g_new0 (IvkLayout, 1);
      vkCreateDescriptorSetLayout (ctx->device, &ci, NULL, &l->set_layout);
      VkPushConstantRange pc = {
        .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT,
        .offset = 0,
        .size = IVK_PUSH_MAX,
      };
      VkPipelineLayoutCreateInfo pci = {
        .sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO,
        .setLayoutCount = 1,
        .pSetLayouts = &l->set_layout,
        .pushConstantRangeCount = 1,
        .pPushConstantRanges = &pc,
      };
      vkCreatePipelineLayout (ctx->device, &pci, NULL, &l->pipeline_layout);
      g_hash_table_insert (ctx->layouts, g_strdup (key), l);
    }
  g_mutex_unlock (&ctx->lock);
  return l;
}

VkDescriptorSetLayout
ivk_context_get_set_layout_kinds (IvkContext *ctx, guint n_bindings, const guint8 *kinds)
{
  if (all_storage (n_bindings, kinds))
    return ivk_context_get_set_layout (ctx, n_bindings);
  return texel_layout (ctx, n_bindings, kinds)->set_layout;
}

VkPipelineLayout
ivk_context_get_pipeline_layout_kinds (IvkContext *ctx, guint n_bindings, const guint8 *kinds)
{
  if (all_storage (n_bindings, kinds))
    return ivk_context_get_pipeline_layout (ctx, n_bindings);
  return texel_layout (ctx, n_bindings, kinds)->pipeline_layout;
}

VkDescriptorSetLayout
ivk_context_get_set_layout (IvkContext *ctx, guint n_bindings)
{
  g_return_val_if_fail (n_bindings <= IVK_MAX_BINDINGS, VK_NULL_HANDLE);
  if (ctx->set_layouts[n_bindings])
    return ctx->set_layouts[n_bindings];
  VkDescriptorSetLayoutBinding b[IVK_MAX_BINDINGS];
  for (guint i = 0; i < n_bindings; i++)
    b[i] = (VkDescriptorSetLayoutBinding) {
      .binding = i,
      .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
      .descriptorCount = 1,
      .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT,
    };
  VkDescriptorSetLayoutCreateInfo ci = {
    .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO,
    .bindingCount = n_bindings,
    .pBindings = b,
  };
  vkCreateDescriptorSetLayout (ctx->device, &ci, NULL, &ctx->set_layouts[n_bindings]);
  return ctx->set_layouts[n_bindings];
}

VkPipelineLayout
ivk_context_get_pipeline_layout (IvkContext *ctx, guint n_bindings)
{
  if (ctx->pipeline_layouts[n_bindings])
    return ctx->pipeline_layouts[n_bindings];
  VkDescriptorSetLayout sl = ivk_context_get_set_layout (ctx, n_bindings);
  VkPushConstantRange pc = {
    .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT,
    .offset = 0,
    .size = IVK_PUSH_MAX,
  };
  VkPipelineLayoutCreateInfo ci = {
    .sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO,
    .setLayoutCount = 1,
    .pSetLayouts = &sl,
    .pushConstantRangeCount = 1,
    .pPushConstantRanges = &pc,
  };
  vkCreatePipelineLayout (ctx->device, &ci, NULL, &ctx->pipeline_layouts[n_bindings]);
  return ctx->pipeline_layouts[n_bindings];
}

IvkPipeline *
ivk_context_get_pipeline (IvkContext *ctx, IvkShader shader, const guint32 *spec, guint n_spec,
                          guint n_bindings, GError **error)
{
  return ivk_context_get_pipeline_kinds (ctx, shader, spec, n_spec, n_bindings, NULL, error);
}

IvkPipeline *
ivk_context_get_pipeline_kinds (IvkContext *ctx, IvkShader shader, const guint32 *spec,
                                guint n_spec, guint n_bindings, const guint8 *kinds, GError **error)
{
  GString *key = g_string_new (ivk_shader_table[shader].name);
  for (guint i = 0; i < n_spec; i++)
    g_string_append_printf (key, ":%u", spec[i]);
  g_string_append_printf (key, "/%u", n_bindings);
  if (!all_storage (n_bindings, kinds))
    for (guint i = 0; i < n_bindings; i++)
      g_string_append_printf (key, "%c", '0' + kinds[i]);

  g_mutex_lock (&ctx->lock);
  IvkPipeline *p = g_hash_table_lookup (ctx->pipelines, key->str);
  g_mutex_unlock (&ctx->lock);
  if (p)
    {
      g_string_free (key, TRUE);
      return p;
    }

  const IvkShaderCode *code = &ivk_shader_table[shader];
  VkShaderModuleCreateInfo smci = {
    .sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO,
    .codeSize = code->size,
    .pCode = code->code,
  };
  VkShaderModule module;
  VkResult r = vkCreateShaderModule (ctx->device, &smci, NULL, &module);
  if (r != VK_SUCCESS)
    {
      ivk_set_error_from_result (error, r, code->name);
      g_string_free (key, TRUE);
      return NULL;
    }
  VkSpecializationMapEntry entries[IVK_MAX_SPEC];
  for (guint i = 0; i < n_spec; i++)
    entries[i] = (VkSpecializationMapEntry) { .constantID = i, .offset = i * 4, .size = 4 };
  VkSpecializationInfo si = {
    .mapEntryCount = n_spec,
    .pMapEntries = entries,
    .dataSize = n_spec * 4,
    .pData = spec,
  };
  VkComputePipelineCreateInfo ci = {
    .sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
    .stage = {
      .sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
      .stage = VK_SHADER_STAGE_COMPUTE_BIT,
      .module = module,
      .pName = "main",
      .pSpecializationInfo = n_spec ? &si : NULL,
    },
    .layout = ivk_context_get_pipeline_layout_kinds (ctx, n_bindings, kinds),
  };
  VkPipeline pipeline;
  r = vkCreateComputePipelines (ctx->device, ctx->pipeline_cache, 1, &ci, NULL, &pipeline);
  vkDestroyShaderModule (ctx->device, module, NULL);
  if (r != VK_SUCCESS)
    {
      ivk_set_error_from_result (error, r, code->name);
      g_string_free (key, TRUE);
      return NULL;
    }
  p = g_new0 (IvkPipeline, 1);
  p->pipeline = pipeline;
  p->n_bindings = n_bindings;
  g_mutex_lock (&ctx->lock);
  IvkPipeline *other = g_hash_table_lookup (ctx->pipelines, key->str);
  if (other)
    {
      /* another thread won the race */
      vkDestroyPipeline (ctx->device, pipeline, NULL);
      g_free (p);
      p = other;
      g_string_free (key, TRUE);
    }
  else
    g_hash_table_insert (ctx->pipelines, g_string_free (key, FALSE), p);
  g_mutex_unlock (&ctx->lock);
  return p;
}

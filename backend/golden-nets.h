/* golden-nets.h: shared state of the GPU-backed check-golden handlers. */
#pragma once

#include "golden.h"
#include "ivk.h"
#include "sd-pipeline.h"

/* The process-wide Vulkan context (a SKIP error when there is no device). */
IvkContext *imp_golden_context (GError **error);
/* The pipeline of the case's model at the case's precision, cached. */
SdPipeline *imp_golden_pipeline (ImpGoldenCase *gc, GError **error);
/* Free the cached pipelines and context (end of a run). */
void imp_golden_nets_cleanup (void);

/* sd-model.h: a Stable Diffusion model as it sits on disk, in one internal form.
 *
 * A model is opened from a single-file checkpoint (.safetensors) or a diffusers
 * folder. Whatever the source, its tensors are exposed under ONE internal naming,
 * the diffusers/transformers module paths under a component prefix:
 *
 *   unet.<diffusers UNet2DConditionModel name>       unet.down_blocks.0.resnets.0.conv1.weight
 *   vae.<diffusers AutoencoderKL name>                vae.decoder.mid_block.attentions.0.to_q.weight
 *   text_encoder.<transformers CLIPTextModel name>    text_encoder.text_model.encoder.layers.0.self_attn.q_proj.weight
 *   text_encoder_2.<CLIPTextModelWithProjection name> text_encoder_2.text_projection.weight
 *
 * Conversions that are more than a rename are applied at load and are invisible
 * to users of this header: OpenCLIP's packed in_proj is split into q/k/v; the
 * single-file text_projection [hidden, proj] is exposed transposed as diffusers'
 * [proj, hidden]; VAE attention 1x1-conv weights [C, C, 1, 1] are exposed as
 * [C, C]. Everything else keeps its stored shape (conv weights [O, I, kh, kw]).
 * SD 2's open_clip encoder loses its last layer and its projection at load, as in
 * diffusers' conversion: SD 2 conditions on the penultimate layer, so its text
 * encoder has 23 layers in both forms and the context is
 * final_layer_norm(last layer). SDXL's encoders keep all their layers.
 *
 * The configuration (sizes, heads, layer counts) is detected from the tensors;
 * diffusers config.json files, when present, take precedence for what cannot be
 * seen in the weights (number of heads, prediction type).
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef enum
{
  SD_DTYPE_F32,
  SD_DTYPE_F16,
  SD_DTYPE_BF16,
  SD_DTYPE_F64,
  SD_DTYPE_I64,
  SD_DTYPE_I32,
  SD_DTYPE_I16,
  SD_DTYPE_I8,
  SD_DTYPE_U8,
  SD_DTYPE_BOOL,
} SdDType;

gsize sd_dtype_size (SdDType dtype);
const char *sd_dtype_name (SdDType dtype); /* "F32", "F16", ... as in safetensors */

typedef enum
{
  SD_ARCH_UNKNOWN = 0,
  SD_ARCH_SD1,          /* SD 1.x (CLIP ViT-L, HF naming), 4 or 9 (inpainting) input channels */
  SD_ARCH_SD2,          /* SD 2.x (OpenCLIP ViT-H, penultimate layer) */
  SD_ARCH_SDXL,         /* SDXL base (CLIP ViT-L + OpenCLIP bigG, text_time embedding) */
  SD_ARCH_SDXL_REFINER, /* SDXL refiner (OpenCLIP bigG only, aesthetic score) */
} SdArch;

const char *sd_arch_name (SdArch arch); /* "SD1", "SD2", "SDXL", "SDXL-refiner" */

typedef enum
{
  SD_PREDICTION_EPSILON,
  SD_PREDICTION_V,
} SdPrediction;

#define SD_MAX_LEVELS 6

typedef struct
{
  int in_channels;  /* 4, or 9 for inpainting models */
  int out_channels; /* 4 */
  int n_levels;     /* number of down (and up) blocks */
  int block_out_channels[SD_MAX_LEVELS];
  int layers_per_block; /* resnets per down block; up blocks have one more */
  /* Down block i is a CrossAttnDownBlock2D (has transformers). Up block j mirrors
   * down block n_levels-1-j. */
  gboolean level_has_attn[SD_MAX_LEVELS];
  /* Per down level: BasicTransformerBlocks per Transformer2DModel, number of
   * heads and head dim (heads * head_dim == block_out_channels[i]). Up block j
   * uses the entry of level n_levels-1-j; the mid block uses the *_mid values. */
  int transformer_depth[SD_MAX_LEVELS];
  int num_heads[SD_MAX_LEVELS];
  int head_dim[SD_MAX_LEVELS];
  gboolean has_mid_attn;
  int transformer_depth_mid;
  int num_heads_mid;
  int head_dim_mid;
  /* FALSE when the head counts are the architecture convention (SD1: 8 heads,
   * SD2/SDXL: head_dim 64) because no config said: the weights cannot tell. */
  gboolean heads_known;
  int context_dim; /* cross-attention key/value width (768 SD1, 1024 SD2, 2048 SDXL) */
  gboolean use_linear_projection; /* proj_in/out are Linear [C, C] (SD2, SDXL) instead of 1x1 conv */
  int norm_groups;                /* 32 */
  float norm_eps;                 /* 1e-5 (resnets); transformers' GroupNorm uses 1e-6 */
  int time_embed_dim;             /* width of the time embedding MLP output (4 * C0) */
  int time_proj_dim;              /* width of the sinusoidal timestep features (C0) */
  /* SDXL 'text_time' additional embedding; 0 when absent. */
  int addition_time_embed_dim;    /* 256 for SDXL (sinusoid width per time id) */
  int projection_class_embeddings_input_dim; /* 2816 SDXL base, 2560 refiner */
  int n_time_ids;                 /* 6 base, 5 refiner */
  int pooled_dim;                 /* width of text_embeds (1280 SDXL) */
} SdUNetConfig;

typedef struct
{
  int in_channels;     /* 3 */
  int out_channels;    /* 3 */
  int latent_channels; /* 4 */
  int n_levels;
  int block_out_channels[SD_MAX_LEVELS];
  int layers_per_block; /* encoder; the decoder has layers_per_block + 1 */
  int norm_groups;      /* 32 */
  float scaling_factor; /* 0.18215 SD1/SD2, 0.13025 SDXL */
  gboolean has_encoder;
  gboolean has_decoder;
} SdVaeConfig;

typedef enum
{
  SD_ACT_QUICK_GELU,
  SD_ACT_GELU,
} SdActivation;

typedef struct
{
  gboolean present;
  int hidden;       /* 768 CLIP-L, 1024 OpenCLIP-H, 1280 bigG */
  int n_layers;
  int n_heads;      /* head_dim = hidden / n_heads (64 for all real models) */
  int intermediate; /* MLP width */
  SdActivation act;
  int vocab_size;   /* 49408 */
  int max_positions;/* 77 */
  int projection_dim; /* 0 when there is no text_projection */
  int pad_id;       /* 49407 (SD1, SDXL encoder 1) or 0 (OpenCLIP-style) */
  int bos_id, eos_id;
  gboolean heads_known; /* FALSE: n_heads = hidden / 64 by convention (no config.json) */
} SdTextEncoderConfig;

typedef struct
{
  int num_train_timesteps; /* 1000 */
  double beta_start;       /* 0.00085 */
  double beta_end;         /* 0.012 */
  char beta_schedule[32];  /* "scaled_linear" */
  SdPrediction prediction;
  gboolean prediction_known; /* FALSE when neither config nor metadata said: default epsilon */
  int steps_offset;          /* 1 */
  char timestep_spacing[16]; /* "leading", "trailing", "linspace" */
} SdSchedulerConfig;

typedef struct
{
  SdArch arch;
  gboolean inpainting; /* unet.in_channels == 9 */
  SdUNetConfig unet;
  SdVaeConfig vae;
  SdTextEncoderConfig text_encoder;   /* CLIP-L (SD1, SDXL) or OpenCLIP (SD2, refiner) */
  SdTextEncoderConfig text_encoder_2; /* SDXL's bigG; present == FALSE otherwise */
  SdSchedulerConfig scheduler;
  /* SDXL base: with no negative prompt the unconditional context and pooled
   * embedding are zeros (model_index.json, else TRUE for SDXL base only). */
  gboolean force_zeros_for_empty_prompt;
  int native_resolution; /* 512 SD1, 768 SD2 (v) / 512, 1024 SDXL */
} SdModelConfig;

typedef struct
{
  const char *name; /* internal name */
  SdDType dtype;    /* dtype on disk */
  int ndim;         /* 0..8 */
  gint64 shape[8];  /* the exposed shape (after the conversions above) */
  gint64 n_elements;
} SdTensorInfo;

typedef struct _SdModel SdModel;

typedef enum
{
  SD_MODEL_FORMAT_SINGLE_FILE,
  SD_MODEL_FORMAT_DIFFUSERS,
} SdModelFormat;

typedef struct
{
  /* Overrides for what the weights cannot tell; 0 / NULL = not given.
   * Prediction type: force_prediction wins; else scheduler_config.json's
   * prediction_type; else the file's metadata (modelspec.prediction_type,
   * ss_v_parameterization); else epsilon with prediction_known = FALSE.
   * Heads: the component's config.json wins over the *_config_json options,
   * which win over the convention (SD1: 8 heads; SD2/SDXL/CLIP: head_dim 64). */
  gboolean force_prediction;
  SdPrediction prediction;
  /* A diffusers-style UNet config (parsed JSON object) used when a single file
   * carries no head information (e.g. check-golden passes the manifest's). */
  const char *unet_config_json;
  /* transformers-style CLIPTextConfig JSON for the text encoders of a single file
   * (num_attention_heads, hidden_act), e.g. from a golden manifest. */
  const char *text_encoder_config_json;
  const char *text_encoder_2_config_json;
  /* Read headers only (shape tables, inspection): nothing is mapped and every
   * read fails. Files that end right after their header are accepted. */
  gboolean header_only;
} SdOpenOptions;

/* Open a model: a .safetensors file or a diffusers folder (model_index.json, or
 * a single component folder). Reads headers only; tensor data is mmapped and
 * read lazily. Pickle files (.ckpt/.pt/.bin/.pth) are refused without being
 * read. On an unknown layout the error lists what was found. */
SdModel *sd_model_open (const char *path, const SdOpenOptions *options, GError **error);
/* The same for a single-file checkpoint already opened (e.g. from memory with
 * sd_safetensors_new_from_header); takes ownership of st, also on error. */
struct _SdSafetensors;
/* Open a shape table (the format of ../shared/golden/shapes/<model>_single_file.json:
 * {"tensors": {name: {"shape": [...], "dtype": "F32"}}, "optional_extras": {...}})
 * as a header-only model: what a checkpoint with those tensors would be, to
 * inspect or plan for full-size models without their gigabytes. */
SdModel *sd_model_open_shape_table (const char *path, const SdOpenOptions *options, GError **error);
/* TRUE when path looks like a shape table (a .json file whose top level has
 * a "tensors" object). */
gboolean sd_model_is_shape_table (const char *path);
SdModel *sd_model_new_from_safetensors (struct _SdSafetensors *st, const SdOpenOptions *options,
                                        GError **error);
void sd_model_free (SdModel *model);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SdModel, sd_model_free)

const SdModelConfig *sd_model_get_config (SdModel *model);
SdModelFormat sd_model_get_format (SdModel *model);
const char *sd_model_get_path (SdModel *model);

/* The folder holding the model's tokenizer files (tokenizer/ or tokenizer_2/ of a
 * diffusers folder, or the folder of a single file), or NULL. index 0 or 1. */
char *sd_model_find_tokenizer_dir (SdModel *model, int index);

/* All internal tensor names in a stable order. */
GPtrArray *sd_model_list_tensors (SdModel *model); /* element: const char *, borrowed */
const SdTensorInfo *sd_model_lookup (SdModel *model, const char *name); /* NULL if absent */

/* Read a tensor converted to float32 / float16 (IEEE half bits), applying the
 * load-time conversions. n_elements must equal the tensor's. */
gboolean sd_model_read_f32 (SdModel *model, const char *name, float *dst, gsize n_elements,
                            GError **error);
gboolean sd_model_read_f16 (SdModel *model, const char *name, guint16 *dst, gsize n_elements,
                            GError **error);

/* Parameter count of a component ("unet", "vae", "text_encoder", "text_encoder_2";
 * NULL for all): the sum of element counts of its float tensors. */
gint64 sd_model_count_params (SdModel *model, const char *component);

/* Bytes the weights of a component need on the device at a given element size
 * (2 for fp16 compute, 4 for fp32). */
gint64 sd_model_weight_bytes (SdModel *model, const char *component, gsize element_size);

/* Tensors the loader did not recognise / expected but missing / with a wrong
 * shape; each a newline-free message. Empty arrays when all is well. Listing
 * is not failing: a model with missing weights opens (so `impasto info` can
 * say what is wrong); sd_model_check_component is the gate before building. */
GPtrArray *sd_model_get_unknown (SdModel *model);
GPtrArray *sd_model_get_missing (SdModel *model);
GPtrArray *sd_model_get_misshaped (SdModel *model);
/* Known non-weight extras that were skipped (schedule buffers, EMA weights,
 * position ids...), one "name: why" line each; and how values the weights
 * cannot show were resolved ("unet heads: from unet/config.json"). */
GPtrArray *sd_model_get_ignored (SdModel *model);
GPtrArray *sd_model_get_notes (SdModel *model);

/* Whether the model holds a component ("unet", "vae", "text_encoder",
 * "text_encoder_2"). */
gboolean sd_model_has_component (SdModel *model, const char *component);
/* Fails with SD_ERROR_MISSING when the component is absent or any of its
 * expected tensors is missing or mis-shaped (listing them): call it before
 * building a module from the weights. */
gboolean sd_model_check_component (SdModel *model, const char *component, GError **error);

/* What `impasto info MODEL` prints: format, architecture and variant, prediction
 * type, parameters per component, dtypes on disk, memory for the weights in
 * fp16 and fp32, and every unknown / missing / mis-shaped tensor. */
gboolean sd_model_describe (SdModel *model, GString *out, GError **error);

/* Half-precision conversions used everywhere (round to nearest even). */
guint16 sd_f32_to_f16 (float f);
float sd_f16_to_f32 (guint16 h);
float sd_bf16_to_f32 (guint16 b);

G_END_DECLS

/* sd-prompt.h: AUTOMATIC1111 prompt syntax (emphasis, BREAK) and prompt
 * chunking into 77-token CLIP inputs with per-token weights.
 *
 * The rules are written out at the top of sd-prompt.c. In short:
 * "(word:1.3)" weight 1.3, "(word)" x1.1, "[word]" /1.1, nesting multiplies,
 * \( \) \[ \] \\ are literal, BREAK starts a new chunk; long prompts are cut
 * into chunks of 75 tokens (moving the words after a comma among the last 20
 * tokens to the next chunk), each chunk is BOS + 75 ids + EOS (padded).
 */
#pragma once

#include <glib.h>

#include "sd-tokenizer.h"

G_BEGIN_DECLS

/* Limits (see sd-prompt.c for what happens beyond them). */
#define SD_PROMPT_MAX_BYTES (64 * 1024) /* longer prompts are refused */
#define SD_PROMPT_MAX_CHUNKS 256        /* 256 x 75 = 19200 tokens */
#define SD_PROMPT_MAX_NESTING 32        /* per bracket type; deeper brackets are dropped */
#define SD_PROMPT_WEIGHT_MAX 10.0       /* final weights are clamped to [-10, 10] */
#define SD_PROMPT_CHUNK_TOKENS 75       /* prompt tokens per chunk */
#define SD_PROMPT_COMMA_BACKTRACK 20    /* A1111's comma_padding_backtrack */

/* One piece of a parsed prompt: text with one weight, or a BREAK. */
typedef struct
{
  char *text;    /* owned; NULL for BREAK */
  double weight; /* clamped to [-SD_PROMPT_WEIGHT_MAX, SD_PROMPT_WEIGHT_MAX]; 0 for BREAK */
} SdPromptFragment;

/* Parse the emphasis syntax. Returns a GArray of SdPromptFragment (with a
 * clear function: g_array_unref frees the texts); adjacent pieces of equal
 * weight are merged, and an empty prompt gives one fragment "" of weight 1.
 * Errors: SD_ERROR_INVALID_ARG for invalid UTF-8 or a prompt longer than
 * SD_PROMPT_MAX_BYTES. */
GArray *sd_prompt_parse (const char *prompt, GError **error);

typedef struct
{
  int n_chunks;   /* >= 1 */
  gint32 *ids;    /* [n_chunks * 77]: BOS, up to 75 ids, EOS, pad_id... per chunk */
  float *weights; /* [n_chunks * 77]: the tokens' weights; 1.0 for BOS, EOS and padding */
  int n_tokens;   /* prompt tokens placed (without BOS, EOS, padding) */
} SdPromptTokens;

/* Parse a prompt and tokenise it into chunks as A1111 does. pad_id: 49407
 * for SD1 / SDXL's first encoder, 0 for OpenCLIP-style encoders. Errors:
 * those of sd_prompt_parse, and SD_ERROR_INVALID_ARG when the prompt needs
 * more than SD_PROMPT_MAX_CHUNKS chunks. */
SdPromptTokens *sd_prompt_encode (SdTokenizer *tok, const char *prompt, gint32 pad_id,
                                  GError **error);
void sd_prompt_tokens_free (SdPromptTokens *tokens);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SdPromptTokens, sd_prompt_tokens_free)

G_END_DECLS

/* sd-tokenizer.h: the CLIP byte-level BPE tokenizer (OpenAI CLIP's
 * simple_tokenizer, which diffusers' CLIPTokenizer reproduces).
 *
 * text -> clean-up (sd-text-clean.h: ftfy subset, html.unescape twice,
 * whitespace, lowercase) -> pieces by CLIP's regex
 *   <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
 * (IGNORECASE; literal special-token text becomes the special ids; \p{L} and
 * \p{N} are the Unicode general categories L* and Nd/Nl/No) -> each piece as
 * UTF-8 bytes through the byte-to-unicode table, '</w>' on the last symbol ->
 * merge the adjacent pair of lowest merge rank until none is in the merge
 * list -> vocabulary ids. CJK text is a run of letters and is BPE-encoded
 * whole, as OpenAI CLIP does.
 *
 * Vocabulary: vocab.json + merges.txt (a diffusers tokenizer/ folder), or
 * OpenAI's bpe_simple_vocab_16e6.txt.gz (the vocabulary is then built as
 * simple_tokenizer does: 256 byte symbols, the same with '</w>', one entry per
 * merge of lines 1..48894, <|startoftext|>, <|endoftext|>).
 *
 * A tokenizer is immutable after loading apart from an internal, locked word
 * cache: one instance may be used from several threads.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* CLIP's context: BOS + 75 tokens + EOS. */
#define SD_TOKENIZER_CONTEXT 77
/* Longest text sd_tokenizer_encode accepts, in bytes. Prompts are limited
 * further by sd-prompt.h. */
#define SD_TOKENIZER_MAX_TEXT_BYTES (256 * 1024)

typedef struct _SdTokenizer SdTokenizer;

/* Load vocab.json and merges.txt (diffusers/transformers format: merges.txt
 * starts with a "#version" line; at most 48894 merges are used, as CLIP). */
SdTokenizer *sd_tokenizer_new_from_files (const char *vocab_json_path, const char *merges_txt_path,
                                          GError **error);
/* Load OpenAI's bpe_simple_vocab_16e6.txt.gz. */
SdTokenizer *sd_tokenizer_new_from_bpe_gz (const char *path, GError **error);
/* Load from a folder holding vocab.json + merges.txt or the .gz file. */
SdTokenizer *sd_tokenizer_new_from_dir (const char *dir, GError **error);
void sd_tokenizer_free (SdTokenizer *tok);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SdTokenizer, sd_tokenizer_free)

/* Find the tokenizer folder for a model: for a diffusers folder its
 * tokenizer/ subfolder (or the folder itself when it is a tokenizer folder);
 * for a single-file checkpoint the checkpoint's folder or a tokenizer/
 * folder beside it; then $XDG_DATA_HOME/impasto/ (g_get_user_data_dir ()) and
 * impasto/ in the system data folders. A folder qualifies when it holds
 * vocab.json and merges.txt, or bpe_simple_vocab_16e6.txt.gz. Returns a newly
 * allocated path, or NULL with SD_ERROR_MISSING saying where to put the
 * files. */
char *sd_tokenizer_find_dir (const char *model_path, GError **error);

int sd_tokenizer_get_vocab_size (SdTokenizer *tok);
gint32 sd_tokenizer_get_bos_id (SdTokenizer *tok); /* <|startoftext|>, 49406 for CLIP */
gint32 sd_tokenizer_get_eos_id (SdTokenizer *tok); /* <|endoftext|>, 49407 for CLIP */
/* Vocabulary entry <-> id ("a</w>" <-> 320). -1 / NULL when absent. */
gint32 sd_tokenizer_lookup (SdTokenizer *tok, const char *token);
const char *sd_tokenizer_get_token (SdTokenizer *tok, gint32 id);

/* Tokenise text (len bytes, or NUL-terminated when len < 0) into BPE ids
 * without BOS/EOS. Returns a GArray of gint32. Errors: SD_ERROR_INVALID_ARG
 * for invalid UTF-8 (or NUL bytes) and for text longer than
 * SD_TOKENIZER_MAX_TEXT_BYTES. */
GArray *sd_tokenizer_encode (SdTokenizer *tok, const char *text, gssize len, GError **error);

/* The 77 ids a CLIP text encoder takes: BOS, the first 75 BPE ids, EOS, then
 * pad_id up to 77 (49407 for SD1 and SDXL's first encoder, 0 for
 * OpenCLIP-style encoders: SD2, SDXL's second). */
gboolean sd_tokenizer_encode_77 (SdTokenizer *tok, const char *text, gint32 pad_id,
                                 gint32 ids[SD_TOKENIZER_CONTEXT], GError **error);

G_END_DECLS

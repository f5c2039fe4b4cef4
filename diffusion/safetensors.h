/* safetensors.h: a validating, mmap-based reader of .safetensors files.
 *
 * Format: 8-byte little-endian header length N, N bytes of JSON
 * {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}},
 * then the data section; offsets are relative to the end of the header.
 * Every length and offset is checked; a corrupt file is an error naming the
 * tensor and offset, never a crash. Tensor data is read lazily from the map.
 */
#pragma once

#include <glib.h>
#include "sd-model.h"

G_BEGIN_DECLS

typedef struct _SdSafetensors SdSafetensors;

typedef struct
{
  const char *name;
  SdDType dtype;
  int ndim;
  gint64 shape[8];
  gint64 n_elements;
  guint64 data_begin; /* relative to the data section */
  guint64 data_end;
} SdSafetensorsTensor;

/* Headers larger than this are refused before anything is allocated. Real
 * checkpoints have headers of 0.1-1 MiB (SDXL base: about 0.3 MiB); the
 * reference Rust implementation refuses more than 100 MB. */
#define SD_SAFETENSORS_MAX_HEADER_SIZE (64u * 1024u * 1024u)

/* Open and validate a file. The whole header is validated here. */
SdSafetensors *sd_safetensors_open (const char *path, GError **error);
/* Validate a header held in memory (buffer = the whole file or at least
 * 8 + header bytes; file_size = the size the data offsets are checked against).
 * Used by the fuzz target and header-only shape-table checks. */
SdSafetensors *sd_safetensors_new_from_header (const guint8 *buffer, gsize buffer_len,
                                               guint64 file_size, GError **error);
/* Validate a whole file held in memory; tensor data stays readable (bytes is
 * referenced). name is used in error messages and as the path (may be NULL). */
SdSafetensors *sd_safetensors_new_from_bytes (GBytes *bytes, const char *name, GError **error);
/* Read and validate only the header of a file. Data ranges are checked against
 * the file size when the file holds more than its header; a file that ends
 * right after its header (a shape table written for tests or inspection) is
 * accepted with its ranges unchecked against any size. Data cannot be read. */
SdSafetensors *sd_safetensors_open_header_only (const char *path, GError **error);
void sd_safetensors_free (SdSafetensors *st);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SdSafetensors, sd_safetensors_free)

const char *sd_safetensors_get_path (SdSafetensors *st);
guint sd_safetensors_get_n_tensors (SdSafetensors *st);
gboolean sd_safetensors_is_header_only (SdSafetensors *st);
/* Size of the file (or of the data the header describes, for header-only ones)
 * and of the JSON header (the N of the first 8 bytes). */
guint64 sd_safetensors_get_file_size (SdSafetensors *st);
guint64 sd_safetensors_get_header_size (SdSafetensors *st);
/* Tensors in file order: sorted by data offset (ties by name). */
const SdSafetensorsTensor *sd_safetensors_get_nth (SdSafetensors *st, guint i);
const SdSafetensorsTensor *sd_safetensors_lookup (SdSafetensors *st, const char *name);
/* __metadata__ value, or NULL. */
const char *sd_safetensors_get_metadata (SdSafetensors *st, const char *key);
/* The __metadata__ keys, sorted (borrowed strings; free the array). */
GPtrArray *sd_safetensors_list_metadata (SdSafetensors *st);

/* When the first bytes of a file are those of a PyTorch pickle or zip
 * checkpoint, a short description of what it is ("a Python pickle", "a zip
 * archive (PyTorch checkpoint)"), else NULL. Needs at most 8 bytes. */
const char *sd_sniff_pickle (const guint8 *head, gsize len);

/* Raw bytes of a tensor inside the map (NULL with an error if the file was
 * opened header-only or the range is not readable). */
const guint8 *sd_safetensors_get_data (SdSafetensors *st, const SdSafetensorsTensor *t,
                                       GError **error);

/* Read a tensor converted to float32 from any float or integer dtype (I64
 * values are converted exactly where representable). dst holds n_elements. */
gboolean sd_safetensors_read_f32 (SdSafetensors *st, const char *name, float *dst,
                                  gsize n_elements, GError **error);
/* Read an integer tensor (I64/I32/I16/I8/U8/BOOL) as gint64. */
gboolean sd_safetensors_read_i64 (SdSafetensors *st, const char *name, gint64 *dst,
                                  gsize n_elements, GError **error);

G_END_DECLS

/* golden-text.c: check-golden handlers for the text side.
 *
 * tokenizer: the case's "prompts" list (objects with "prompt") through the
 * tokenizer of models[model].forms.diffusers / params.tokenizer (default
 * "tokenizer"; SDXL cases name "tokenizer_2"), padded with params.pad.
 * Outputs: ids [n, 77]; untruncated_ids [n, max_len] = BOS + all BPE ids +
 * EOS, right-padded with -1; untruncated_len [n]. */
#include "config.h"

#include "golden.h"
#include "sd-error.h"
#include "sd-tokenizer.h"

gboolean
imp_golden_tokenizer (ImpGoldenCase *gc, GError **error)
{
  const char *sub = imp_json_string (gc->params, "tokenizer", "tokenizer");
  gint64 pad = imp_json_int (gc->params, "pad", -1);
  gint64 ctx = imp_json_int (gc->params, "context_length", SD_TOKENIZER_CONTEXT);
  if (pad < 0 || pad > G_MAXINT32)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG, "params.pad is missing or invalid");
      return FALSE;
    }
  if (ctx != SD_TOKENIZER_CONTEXT)
    {
      imp_golden_set_skip (error, "context_length %" G_GINT64_FORMAT " not supported (only %d)",
                           ctx, SD_TOKENIZER_CONTEXT);
      return FALSE;
    }
  JsonArray *prompts = imp_json_array (gc->case_json, "prompts");
  if (prompts == NULL)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG, "the case has no \"prompts\" list");
      return FALSE;
    }

  g_autofree char *dir = imp_golden_model_path (gc, "diffusers", sub, error);
  if (dir == NULL)
    return FALSE;
  g_autoptr (SdTokenizer) tok = sd_tokenizer_new_from_dir (dir, error);
  if (tok == NULL)
    return FALSE;
  gint64 bos = imp_json_int (gc->params, "bos", sd_tokenizer_get_bos_id (tok));
  gint64 eos = imp_json_int (gc->params, "eos", sd_tokenizer_get_eos_id (tok));
  if (bos != sd_tokenizer_get_bos_id (tok) || eos != sd_tokenizer_get_eos_id (tok))
    {
      g_set_error (error, SD_ERROR, SD_ERROR_FAILED,
                   "the tokenizer's BOS/EOS are %d/%d, the case expects %" G_GINT64_FORMAT
                   "/%" G_GINT64_FORMAT,
                   sd_tokenizer_get_bos_id (tok), sd_tokenizer_get_eos_id (tok), bos, eos);
      return FALSE;
    }

  guint n = json_array_get_length (prompts);
  gint64 n_param = imp_json_int (gc->params, "n_prompts", n);
  if (n_param != (gint64) n)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG,
                   "params.n_prompts is %" G_GINT64_FORMAT " but the case lists %u prompts",
                   n_param, n);
      return FALSE;
    }
  GPtrArray *all = g_ptr_array_new_with_free_func ((GDestroyNotify) g_array_unref);
  gint64 *ids = g_new (gint64, (gsize) MAX (n, 1) * SD_TOKENIZER_CONTEXT);
  gint64 *lens = g_new (gint64, MAX (n, 1));
  gsize max_len = 0;
  gboolean ok = TRUE;
  for (guint i = 0; ok && i < n; i++)
    {
      JsonNode *node = json_array_get_element (prompts, i);
      const char *text = JSON_NODE_HOLDS_OBJECT (node)
                             ? imp_json_string (json_node_get_object (node), "prompt", NULL)
                             : NULL;
      if (text == NULL)
        {
          g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG, "prompts[%u] has no \"prompt\"", i);
          ok = FALSE;
          break;
        }
      GArray *bpe = sd_tokenizer_encode (tok, text, -1, error);
      if (bpe == NULL)
        {
          g_prefix_error (error, "prompts[%u]: ", i);
          ok = FALSE;
          break;
        }
      g_ptr_array_add (all, bpe);
      gsize un = bpe->len + 2;
      lens[i] = un;
      max_len = MAX (max_len, un);
      gsize k = MIN (bpe->len, SD_TOKENIZER_CONTEXT - 2);
      gint64 *row = ids + (gsize) i * SD_TOKENIZER_CONTEXT;
      row[0] = sd_tokenizer_get_bos_id (tok);
      for (gsize j = 0; j < k; j++)
        row[1 + j] = g_array_index (bpe, gint32, j);
      row[1 + k] = sd_tokenizer_get_eos_id (tok);
      for (gsize j = k + 2; j < SD_TOKENIZER_CONTEXT; j++)
        row[j] = pad;
    }
  if (ok)
    {
      gint64 *un = g_new (gint64, MAX ((gsize) n * max_len, 1));
      for (guint i = 0; i < n; i++)
        {
          GArray *bpe = all->pdata[i];
          gint64 *row = un + (gsize) i * max_len;
          row[0] = sd_tokenizer_get_bos_id (tok);
          for (guint j = 0; j < bpe->len; j++)
            row[1 + j] = g_array_index (bpe, gint32, j);
          row[1 + bpe->len] = sd_tokenizer_get_eos_id (tok);
          for (gsize j = bpe->len + 2; j < max_len; j++)
            row[j] = -1;
        }
      imp_golden_put_i64 (gc, "ids", ids, (gsize) n * SD_TOKENIZER_CONTEXT);
      imp_golden_put_i64 (gc, "untruncated_ids", un, (gsize) n * max_len);
      imp_golden_put_i64 (gc, "untruncated_len", lens, n);
      g_free (un);
    }
  g_free (ids);
  g_free (lens);
  g_ptr_array_unref (all);
  return ok;
}

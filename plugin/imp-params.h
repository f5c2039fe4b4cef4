/* imp-params.h: the options of the three Impasto procedures, shared by the
 * GIMP 2.10 and GIMP 3 front ends and the dialog.
 *
 * One struct holds every option; each procedure uses a subset (see
 * imp_proc_uses()). The same text form (a GKeyFile group) is used for the
 * remembered last values (gimp_set_data / gimp_get_data) and for the
 * "impasto-job" parasite attached to every result layer, so a result can be
 * re-run with changes from its layer.
 *
 * PDB parameters, in this order for every procedure (GIMP 2.10 types):
 *   run-mode INT32, image IMAGE, drawable DRAWABLE,
 *   prompt STRING, negative-prompt STRING, model STRING ("" = the default
 *   model; a name from the model folders or a path), sampler STRING ("" =
 *   "Euler a"), steps INT32, cfg-scale FLOAT, seed INT32 (-1 = random),
 *   size INT32 (working size, 0 = the model's native resolution)
 * then per procedure:
 *   generate: use-selection INT32
 *   img2img:  strength FLOAT, use-selection INT32
 *   inpaint:  strength FLOAT, padding FLOAT (% of the selection's larger
 *             side), grow INT32 (px), feather FLOAT (px), color-match FLOAT
 *             (0..1)
 * Return values: layer LAYER (the new layer), seed INT32 (the seed used).
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef enum
{
  IMP_PROC_GENERATE,
  IMP_PROC_IMG2IMG,
  IMP_PROC_INPAINT,
  IMP_PROC_N
} ImpProc;

/* Options a procedure may use (imp_proc_uses). */
typedef enum
{
  IMP_OPT_STRENGTH = 1 << 0,
  IMP_OPT_USE_SELECTION = 1 << 1,
  IMP_OPT_INPAINT = 1 << 2, /* padding, grow, feather, color-match */
} ImpOptions;

/* Ranges, checked by imp_params_validate and used by the dialogs and the
 * PDB documentation. */
#define IMP_STEPS_MAX 150
#define IMP_CFG_MAX 30.0
#define IMP_SEED_MAX G_MAXINT32
#define IMP_SIZE_MIN 64
#define IMP_SIZE_MAX 2048
#define IMP_PADDING_MAX 500.0
#define IMP_GROW_MAX 512
#define IMP_FEATHER_PX_MAX 512.0
#define IMP_DEFAULT_SAMPLER "Euler a"

typedef struct
{
  ImpProc proc;
  char *prompt;           /* owned, never NULL */
  char *negative;         /* owned, never NULL ("" = none) */
  char *model;            /* owned, never NULL ("" = the default model) */
  char *sampler;          /* owned, never NULL ("" = IMP_DEFAULT_SAMPLER) */
  int steps;              /* 1..IMP_STEPS_MAX */
  double cfg_scale;       /* 0..IMP_CFG_MAX */
  gint64 seed;            /* -1 random, else 0..IMP_SEED_MAX */
  int size;               /* 0 = native, else IMP_SIZE_MIN..IMP_SIZE_MAX */
  double strength;        /* img2img / inpaint: (0, 1] */
  gboolean use_selection; /* generate / img2img */
  double padding;         /* inpaint: percent, 0..IMP_PADDING_MAX */
  int grow;               /* inpaint: px, 0..IMP_GROW_MAX */
  double feather;         /* inpaint: px, 0..IMP_FEATHER_PX_MAX */
  double color_match;     /* inpaint: 0..1 */
  gint64 last_seed;       /* the seed of the last run (dialog), -1 = none */
} ImpParams;

/* "plug-in-impasto-generate", ... */
const char *imp_proc_name (ImpProc proc);
/* "generate", "img2img", "inpaint" (the short names used in texts) */
const char *imp_proc_short_name (ImpProc proc);
/* The menu label: "Generate Layer from Prompt...", "Image to Image...",
 * "Inpaint Selection..." (with a real ellipsis and a mnemonic). */
const char *imp_proc_menu_label (ImpProc proc);
/* The dialog title: "Impasto - Inpaint Selection", ... */
const char *imp_proc_title (ImpProc proc);
/* A procedure from a name (imp_proc_name or imp_proc_short_name); FALSE if
 * unknown. */
gboolean imp_proc_from_name (const char *name, ImpProc *proc);
ImpOptions imp_proc_uses (ImpProc proc);

/* Defaults: prompt "", negative "", model "" (default model), sampler
 * "Euler a", 20 steps, CFG 7, seed -1, size 0; strength 0.6 (img2img) or
 * 1.0 (inpaint: the selection is repainted from noise, guided by the
 * context around it); use-selection TRUE; padding 25 %, grow 0, feather 0
 * (so nothing outside the selection changes), colour match 0.5. */
void imp_params_init (ImpParams *p, ImpProc proc);
void imp_params_clear (ImpParams *p);
void imp_params_copy (ImpParams *dst, const ImpParams *src);
/* Replace a string field (NULL -> ""). */
void imp_params_set_string (char **field, const char *value);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (ImpParams, imp_params_clear)

/* Check every option the procedure uses. SD_ERROR_INVALID_ARG naming the
 * option and its range. */
gboolean imp_params_validate (const ImpParams *p, GError **error);

/* The text form: a GKeyFile group "[impasto]" with version=1, procedure and
 * one key per option (prompt, negative-prompt, model, sampler, steps,
 * cfg-scale, seed, size, strength, use-selection, padding, grow, feather,
 * color-match, last-seed), numbers in the C locale. `extra` (may be NULL) is
 * appended as it is (e.g. a "[result]" group). */
char *imp_params_to_text (const ImpParams *p, const char *extra);
/* Read the text form into p, which keeps its values for absent or invalid
 * keys (a newer or hand-edited text never fails the run). The procedure
 * named in the text is not applied unless `set_proc`. FALSE only when the
 * text is not a key file with an [impasto] group. */
gboolean imp_params_from_text (ImpParams *p, const char *text, gsize len, gboolean set_proc,
                               GError **error);

/* A layer name that says what made the layer:
 *   "Impasto inpaint: a red apple on a table (seed 42)"
 * the prompt cut at 40 characters (UTF-8 safe, with an ellipsis), newlines
 * as spaces, "(no prompt)" when empty. */
char *imp_params_layer_name (const ImpParams *p, gint64 seed);

G_END_DECLS

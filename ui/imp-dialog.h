/* imp-dialog.h: the Impasto procedure dialog (gimpui 2.0, GTK 2).
 *
 * One dialog serves the three procedures (the options a procedure does not
 * use are not shown). It stays open while the job runs: the OK button starts
 * it, a progress bar follows it, Cancel stops it (the image is untouched and
 * the dialog stays, so the options can be changed); an error is shown in the
 * dialog. When a job succeeds the dialog closes.
 */
#pragma once

#include <gio/gio.h>

#include "imp-client.h"
#include "imp-params.h"

G_BEGIN_DECLS

/* Run a job with these options (the front end: imp_run, then apply the
 * result to the image). Set params->last_seed to the seed used. */
typedef gboolean (*ImpDialogJobFn) (gpointer data, ImpParams *params, ImpProgressFn progress,
                                    gpointer progress_data, GCancellable *cancellable,
                                    GError **error);

/* Show the dialog for params->proc, filled from params. reuse_text: the
 * "impasto-job" parasite of the active layer, or NULL; when given, a button
 * loads its options. Returns TRUE when a job ran and succeeded; params then
 * hold the options used. gimp_ui_init must have been called. */
gboolean imp_dialog_run (ImpParams *params, const char *reuse_text, ImpDialogJobFn job,
                         gpointer job_data);

G_END_DECLS

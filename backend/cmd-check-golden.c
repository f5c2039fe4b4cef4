/* cmd-check-golden.c: `impasto check-golden MANIFEST [--case ID]...
 * [--precision fp32|fp16] [--verbose]`. See golden.h for what it prints.
 * Exit status: 0 all ran cases passed (skips allowed), 1 a case failed,
 * 2 usage error (also an unknown --case id), 3 the manifest is unreadable. */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "golden.h"

int
cmd_check_golden (int argc, char **argv)
{
  g_auto (GStrv) case_ids = NULL;
  g_autofree char *precision = NULL;
  gboolean verbose = FALSE;
  GOptionEntry entries[] = {
    { "case", 'c', 0, G_OPTION_ARG_STRING_ARRAY, &case_ids, "Run only this case (repeatable)", "ID" },
    { "precision", 'p', 0, G_OPTION_ARG_STRING, &precision,
      "Tolerances to apply: fp32 (default) or fp16", "fp32|fp16" },
    { "verbose", 'v', 0, G_OPTION_ARG_NONE, &verbose, "Print every output's error", NULL },
    { NULL },
  };
  g_autoptr (GOptionContext) ctx = g_option_context_new ("MANIFEST");
  g_option_context_set_summary (ctx, "Run the golden reference cases of a manifest "
                                     "(e.g. ../shared/golden/manifest.json) and compare.");
  g_option_context_add_main_entries (ctx, entries, NULL);
  g_autoptr (GError) error = NULL;
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    {
      fprintf (stderr, "impasto check-golden: %s\n", error->message);
      return IMP_EXIT_USAGE;
    }
  if (argc != 2)
    {
      fprintf (stderr, "impasto check-golden: expected one MANIFEST argument\n"
                       "Usage: impasto check-golden MANIFEST [--case ID]... "
                       "[--precision fp32|fp16] [--verbose]\n");
      return IMP_EXIT_USAGE;
    }
  ImpGoldenPrecision prec = IMP_GOLDEN_FP32;
  if (precision != NULL && strcmp (precision, "fp16") == 0)
    prec = IMP_GOLDEN_FP16;
  else if (precision != NULL && strcmp (precision, "fp32") != 0)
    {
      fprintf (stderr, "impasto check-golden: --precision must be fp32 or fp16, not '%s'\n",
               precision);
      return IMP_EXIT_USAGE;
    }

  ImpGoldenTotals totals;
  const char *bad_case = NULL;
  if (!imp_golden_run_manifest (argv[1], (const char *const *) case_ids, prec, verbose, stdout,
                                &totals, &bad_case, &error))
    {
      fprintf (stderr, "impasto check-golden: %s\n", error->message);
      return bad_case != NULL ? IMP_EXIT_USAGE : IMP_EXIT_INPUT;
    }
  return totals.failed > 0 ? IMP_EXIT_FAILURE : IMP_EXIT_OK;
}

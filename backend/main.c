/* main.c: the `impasto` executable: dispatch to a subcommand. */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "commands.h"

/* Subcommands: each line is `{ "name", "summary", cmd_name }` with cmd_name
 * defined in backend/cmd-<name>.c. */
#define IMP_COMMAND_LIST(X) \
  X (version, "version", "print the version") \
  X (generate, "generate", "paint an image from a prompt (text to image)") \
  X (img2img, "img2img", "repaint an image guided by a prompt") \
  X (inpaint, "inpaint", "repaint the masked part of an image") \
  X (serve, "serve", "keep models loaded and serve the SD HTTP API (A1111 /sdapi/v1)") \
  X (info, "info", "describe a model file: architecture, sizes, memory") \
  X (check_golden, "check-golden", "run golden reference cases from a manifest") \
  X (bench, "bench", "measure speed and memory")

#define IMP_DECLARE(fn, name, summary) int cmd_##fn (int argc, char **argv);
IMP_COMMAND_LIST (IMP_DECLARE)

int
cmd_version (int argc, char **argv)
{
  printf ("impasto %s\n", IMPASTO_VERSION);
  return IMP_EXIT_OK;
}

#define IMP_ENTRY(fn, name, summary) { name, summary, cmd_##fn },
static const ImpCommand commands[] = { IMP_COMMAND_LIST (IMP_ENTRY) };

static void
usage (FILE *out)
{
  fprintf (out, "Usage: impasto COMMAND [OPTIONS...]\n\nCommands:\n");
  for (gsize i = 0; i < G_N_ELEMENTS (commands); i++)
    fprintf (out, "  %-14s %s\n", commands[i].name, commands[i].summary);
  fprintf (out, "\nRun 'impasto COMMAND --help' for the options of a command.\n");
}

int
main (int argc, char **argv)
{
  if (argc < 2)
    {
      usage (stderr);
      return IMP_EXIT_USAGE;
    }
  if (strcmp (argv[1], "--help") == 0 || strcmp (argv[1], "-h") == 0 || strcmp (argv[1], "help") == 0)
    {
      usage (stdout);
      return IMP_EXIT_OK;
    }
  if (strcmp (argv[1], "--version") == 0)
    return cmd_version (argc - 1, argv + 1);
  for (gsize i = 0; i < G_N_ELEMENTS (commands); i++)
    if (strcmp (argv[1], commands[i].name) == 0)
      return commands[i].run (argc - 1, argv + 1);
  fprintf (stderr, "impasto: unknown command '%s'\n\n", argv[1]);
  usage (stderr);
  return IMP_EXIT_USAGE;
}

/* commands.h: the `impasto` subcommands. Each lives in its own backend/cmd-*.c
 * file and is listed in the table in main.c. A command returns the process exit
 * status (see README "Exit codes"). argv[0] is the subcommand name. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Exit codes shared by all subcommands. */
enum
{
  IMP_EXIT_OK = 0,
  IMP_EXIT_FAILURE = 1,  /* the job failed (device error, out of memory, check failed) */
  IMP_EXIT_USAGE = 2,    /* bad command line or parameter */
  IMP_EXIT_INPUT = 3,    /* an input file is missing, unreadable or corrupt */
  IMP_EXIT_CANCELLED = 130, /* interrupted by Ctrl-C / SIGTERM */
};

typedef struct
{
  const char *name;
  const char *summary;
  int (*run) (int argc, char **argv);
} ImpCommand;

G_END_DECLS

/* serve-stub.c: `impasto serve` in a build without libsoup-3.0 (-Dserver=disabled
 * or the library missing). */
#include "config.h"

#include <stdio.h>

#include "commands.h"

int
cmd_serve (int argc, char **argv)
{
  fprintf (stderr, "impasto serve: this build has no HTTP server (libsoup-3.0 was not found at "
                   "configure time; install libsoup-3.0-dev and reconfigure)\n");
  return IMP_EXIT_FAILURE;
}

/* bench.h: the parts of `impasto bench` shared by cmd-bench.c (options,
 * targets, ops, the report) and bench-nets.c (the networks at full size). */
#pragma once

#include <json-glib/json-glib.h>
#include <stdio.h>

#include "ivk.h"

G_BEGIN_DECLS

typedef struct
{
  int runs;               /* timed runs per measurement */
  gboolean json_stdout;   /* --json without a file: JSON on stdout instead of the tables */
  const char *json_file;  /* --json FILE */
  const char *filter;     /* ops: substring of case names */
  const char *model;      /* sd15, sdxl or a checkpoint path; NULL = target default */
  int size;               /* image side in pixels; 0 = target default */
  int batch;              /* 0 = target default */
  gboolean fp32;          /* --fp32: no fp16 storage even where the device has it */
  gboolean no_profile;    /* --no-profile: skip the extra profiled run */
  const char *shapes_dir; /* --shapes DIR: where sd15_single_file.json etc. are */
} BenchOptions;

/* One report per process: the device, the load average, every measurement
 * (as JSON objects in "results") and the device's best GEMM of this run. */
typedef struct
{
  const BenchOptions *opt;
  IvkContext *ctx;     /* owned ref */
  JsonArray *results;  /* owned */
  double best_gemm_gflops; /* 0 until measured */
  IvkDType best_gemm_dtype;
  char best_gemm_shape[96];
  FILE *out;           /* human-readable output: stdout, or NULL with --json on stdout */
} BenchReport;

double bench_median (double *v, int n);
/* CPU time of this process so far (user + system), in ms: on CPU devices
 * (lavapipe) the work a run costs, whatever else the machine is doing */
double bench_cpu_ms (void);
/* "1.23 4.56 7.89" from /proc/loadavg, or "unknown" */
const char *bench_load_average (void);
/* printf to the report's human-readable stream (nothing with JSON on stdout) */
void bench_say (BenchReport *r, const char *format, ...) G_GNUC_PRINTF (2, 3);
/* Measure the device's best GEMM (our linear kernel over a few SD-like
 * shapes, in precision `dt`) once per report; returns GFLOP/s. */
double bench_best_gemm (BenchReport *r, IvkDType dt, GError **error);

/* The network targets (bench-nets.c): FALSE with the error set. */
gboolean bench_text (BenchReport *r, GError **error);
gboolean bench_unet (BenchReport *r, GError **error);
gboolean bench_vae (BenchReport *r, GError **error);
gboolean bench_load (BenchReport *r, GError **error);
gboolean bench_all (BenchReport *r, GError **error);

G_END_DECLS

/* progress.h: a progress line for long single-process work (synth, pack):
 * done/total, rate and ETA on stderr. On a terminal it redraws one line at most
 * four times a second; otherwise (logs, CI) it prints a line every 10%. */
#ifndef LFS_PROGRESS_H
#define LFS_PROGRESS_H

#include <stdint.h>

typedef struct {
  const char *what; /* unit, e.g. "images" */
  int64_t total, done;
  double start, last_draw;
  int tty, last_decile;
} lfs_progress;

void lfs_progress_start(lfs_progress *p, const char *what, int64_t total);
void lfs_progress_update(lfs_progress *p, int64_t done);
/* Final line with the total time and mean rate. */
void lfs_progress_finish(lfs_progress *p);

#endif

/* progress.c: progress bar / progress lines (see progress.h). */
#include "tools/progress.h"

#include <stdio.h>
#include <unistd.h>

#include "lfs/timer.h"

void lfs_progress_start(lfs_progress *p, const char *what, int64_t total) {
  p->what = what;
  p->total = total > 0 ? total : 1;
  p->done = 0;
  p->start = p->last_draw = lfs_now();
  p->tty = isatty(fileno(stderr));
  p->last_decile = 0;
}

static void draw(lfs_progress *p, double now, const char *end) {
  const double elapsed = now - p->start, rate = elapsed > 0 ? p->done / elapsed : 0.0;
  const double eta = rate > 0 ? (p->total - p->done) / rate : 0.0;
  const int width = 30, filled = (int)(width * p->done / p->total);
  char bar[32];
  for (int i = 0; i < width; i++) bar[i] = i < filled ? '=' : (i == filled ? '>' : ' ');
  bar[width] = '\0';
  fprintf(stderr, "%s[%s] %3d%% %lld/%lld %s  %.0f %s/s  ETA %.0fs%s", p->tty ? "\r" : "", bar,
          (int)(100 * p->done / p->total), (long long)p->done, (long long)p->total, p->what, rate,
          p->what, eta, end);
  fflush(stderr);
}

void lfs_progress_update(lfs_progress *p, int64_t done) {
  p->done = done;
  const double now = lfs_now();
  if (p->tty) {
    if (now - p->last_draw >= 0.25) draw(p, now, ""), p->last_draw = now;
    return;
  }
  const int decile = (int)(10 * done / p->total);
  if (decile > p->last_decile && done < p->total) draw(p, now, "\n"), p->last_decile = decile;
}

void lfs_progress_finish(lfs_progress *p) {
  p->done = p->total;
  draw(p, lfs_now(), "\n");
}

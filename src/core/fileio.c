/* fileio.c: reading whole files into growable memory buffers; directory fsync
 * after a rename. */
#include "lfs/fileio.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

int lfs_read_file(const char *path, uint8_t **buf, size_t *cap, size_t *len, char *err,
                       size_t errlen) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    return -1;
  }
  size_t n = 0, got;
  do {
    if (n == *cap) {
      const size_t ncap = *cap ? 2 * *cap : 65536;
      uint8_t *grown = realloc(*buf, ncap);
      if (!grown) {
        fclose(f);
        snprintf(err, errlen, "%s: out of memory reading it", path);
        return -1;
      }
      *buf = grown;
      *cap = ncap;
    }
    got = fread(*buf + n, 1, *cap - n, f);
    n += got;
  } while (got > 0);
  const int bad = ferror(f);
  fclose(f);
  if (bad) {
    snprintf(err, errlen, "%s: read error", path);
    return -1;
  }
  *len = n;
  return 0;
}

void lfs_sync_dir_of(const char *path) {
  char *dir = strdup(path);
  if (!dir) return;
  char *slash = strrchr(dir, '/');
  if (!slash)
    snprintf(dir, strlen(dir) + 1, ".");
  else if (slash == dir)
    slash[1] = '\0';
  else
    *slash = '\0';
  int fd = open(dir, O_RDONLY | O_DIRECTORY);
  if (fd >= 0) {
    (void)fsync(fd);
    close(fd);
  }
  free(dir);
}

/* fileio.h: whole-file reads and durable renames. */
#ifndef LFS_FILEIO_H
#define LFS_FILEIO_H

#include <stddef.h>
#include <stdint.h>

/* Reads the file at path into *buf (grown with realloc as needed; *cap is its
 * size, reused across calls), *len bytes. -1 with "path: reason" in err; the
 * buffer stays the caller's to free either way. */
int lfs_read_file(const char *path, uint8_t **buf, size_t *cap, size_t *len, char *err,
                  size_t errlen);

/* fsyncs the directory holding path, so that a rename into it is durable (best
 * effort: some file systems refuse fsync on directories). */
void lfs_sync_dir_of(const char *path);

#endif

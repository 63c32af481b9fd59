#ifndef CPNG_H
#define CPNG_H
#include <stddef.h>

/// Decodes a PNG held in memory into 8-bit RGBA (gray, palette, 16-bit and alpha variants are
/// converted by libpng). On success returns 0 and sets *out to a malloc'd buffer of w*h*4 bytes
/// that the caller frees with cpng_free. On failure returns non-zero and writes a message.
int cpng_decode_rgba(const unsigned char *data, size_t size, int *width, int *height,
                     unsigned char **out, char *message, size_t message_size);

/// Encodes 8-bit pixels (channels 1 = gray, 3 = RGB) to a PNG file, with optional tEXt chunks
/// (keys[i], texts[i]) for i < text_count. Returns 0 on success, non-zero with a message otherwise.
int cpng_write(const char *path, const unsigned char *pixels, int width, int height, int channels,
               const char *const *keys, const char *const *texts, int text_count,
               char *message, size_t message_size);

/// Reads the tEXt chunk named key from a PNG file into a malloc'd string (*value); returns 0 if
/// found, 1 if the file has no such chunk, negative with a message on error.
int cpng_read_text(const char *path, const char *key, char **value, char *message, size_t message_size);

void cpng_free(void *p);
#endif

#include "cpng.h"
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void set_msg(char *message, size_t size, const char *text) {
    if (message && size) { snprintf(message, size, "%s", text); }
}

int cpng_decode_rgba(const unsigned char *data, size_t size, int *width, int *height,
                     unsigned char **out, char *message, size_t message_size) {
    png_image image;
    memset(&image, 0, sizeof image);
    image.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&image, data, size)) {
        set_msg(message, message_size, image.message);
        return 1;
    }
    image.format = PNG_FORMAT_RGBA;
    /* 16-bit samples are gamma-encoded like 8-bit ones (what PIL assumes): scale them to 8 bits
       instead of letting libpng treat them as linear light and re-encode them as sRGB. */
    image.flags |= PNG_IMAGE_FLAG_16BIT_sRGB;
    size_t bytes = PNG_IMAGE_SIZE(image);
    unsigned char *buffer = malloc(bytes);
    if (!buffer) { png_image_free(&image); set_msg(message, message_size, "out of memory"); return 2; }
    if (!png_image_finish_read(&image, NULL, buffer, 0, NULL)) {
        set_msg(message, message_size, image.message);
        free(buffer);
        png_image_free(&image);
        return 3;
    }
    *width = (int)image.width;
    *height = (int)image.height;
    *out = buffer;
    return 0;
}

static void error_fn(png_structp png, png_const_charp msg) {
    char *buffer = (char *)png_get_error_ptr(png);
    if (buffer) snprintf(buffer, 256, "%s", msg);
    png_longjmp(png, 1);
}
static void warning_fn(png_structp png, png_const_charp msg) { (void)png; (void)msg; }

int cpng_write(const char *path, const unsigned char *pixels, int width, int height, int channels,
               const char *const *keys, const char *const *texts, int text_count,
               char *message, size_t message_size) {
    char errbuf[256] = {0};
    FILE *fp = fopen(path, "wb");
    if (!fp) { set_msg(message, message_size, "cannot open the file for writing"); return 1; }
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, errbuf, error_fn, warning_fn);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        if (png) png_destroy_write_struct(&png, NULL);
        fclose(fp);
        set_msg(message, message_size, "out of memory");
        return 2;
    }
    png_textp text = NULL;
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        free(text);
        fclose(fp);
        set_msg(message, message_size, errbuf[0] ? errbuf : "libpng write error");
        return 3;
    }
    png_init_io(png, fp);
    int color = channels == 1 ? PNG_COLOR_TYPE_GRAY : (channels == 4 ? PNG_COLOR_TYPE_RGBA : PNG_COLOR_TYPE_RGB);
    png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, 8, color, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (text_count > 0) {
        text = calloc((size_t)text_count, sizeof(png_text));
        for (int i = 0; i < text_count; i++) {
            text[i].compression = PNG_TEXT_COMPRESSION_NONE;
            text[i].key = (png_charp)keys[i];
            text[i].text = (png_charp)texts[i];
            text[i].text_length = strlen(texts[i]);
        }
        png_set_text(png, info, text, text_count);
    }
    png_write_info(png, info);
    for (int y = 0; y < height; y++) {
        png_write_row(png, (png_const_bytep)(pixels + (size_t)y * (size_t)width * (size_t)channels));
    }
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(text);
    if (fclose(fp) != 0) { set_msg(message, message_size, "error closing the file (disk full?)"); return 4; }
    return 0;
}

int cpng_read_text(const char *path, const char *key, char **value, char *message, size_t message_size) {
    char errbuf[256] = {0};
    FILE *fp = fopen(path, "rb");
    if (!fp) { set_msg(message, message_size, "cannot open the file"); return -1; }
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, errbuf, error_fn, warning_fn);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        if (png) png_destroy_read_struct(&png, NULL, NULL);
        fclose(fp);
        set_msg(message, message_size, "out of memory");
        return -2;
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        fclose(fp);
        set_msg(message, message_size, errbuf[0] ? errbuf : "libpng read error");
        return -3;
    }
    png_init_io(png, fp);
    png_read_info(png, info);
    png_textp text = NULL;
    int count = 0;
    int found = 1;
    png_get_text(png, info, &text, &count);
    for (int i = 0; i < count; i++) {
        if (strcmp(text[i].key, key) == 0) {
            *value = strdup(text[i].text);
            found = 0;
            break;
        }
    }
    png_destroy_read_struct(&png, &info, NULL);
    fclose(fp);
    return found;
}

void cpng_free(void *p) { free(p); }

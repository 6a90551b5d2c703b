// libpng decode/encode behind setjmp (see cimage_shim.h).
#include "cimage_shim.h"

#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void qi_free(void *p) { free(p); }

typedef struct {
    const uint8_t *data;
    size_t size, pos;
} qi_png_reader;

/// Where libpng's messages go: the error, and the last warning (libpng often warns with the
/// specific reason, e.g. "Image width is zero in IHDR", before failing with a generic error).
typedef struct {
    char *message;
    char warning[QI_MESSAGE_CAP];
} qi_png_messages;

static void qi_png_error(png_structp png, png_const_charp msg) {
    qi_png_messages *m = (qi_png_messages *)png_get_error_ptr(png);
    if (m->warning[0]) snprintf(m->message, QI_MESSAGE_CAP, "%s (%s)", msg, m->warning);
    else snprintf(m->message, QI_MESSAGE_CAP, "%s", msg);
    png_longjmp(png, 1);
}

// PIL ignores the conditions libpng only warns about; so do we, but keep the last one for an error.
static void qi_png_warning(png_structp png, png_const_charp msg) {
    qi_png_messages *m = (qi_png_messages *)png_get_error_ptr(png);
    snprintf(m->warning, QI_MESSAGE_CAP, "%s", msg);
}

static void qi_png_read(png_structp png, png_bytep out, png_size_t n) {
    qi_png_reader *r = (qi_png_reader *)png_get_io_ptr(png);
    if (n > r->size - r->pos) png_error(png, "truncated file (the data ends before the image does)");
    memcpy(out, r->data + r->pos, n);
    r->pos += n;
}

int qi_png_decode(const uint8_t *data, size_t size, int64_t max_pixels, qi_png_image *out) {
    memset(out, 0, sizeof *out);
    qi_png_reader reader = { data, size, 0 };
    qi_png_messages messages = { out->message, { 0 } };
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &messages, qi_png_error, qi_png_warning);
    if (!png) { snprintf(out->message, QI_MESSAGE_CAP, "out of memory"); return QI_ERROR; }
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        snprintf(out->message, QI_MESSAGE_CAP, "out of memory");
        return QI_ERROR;
    }
    // Written after setjmp and used after longjmp: volatile.
    uint8_t *volatile pixels = NULL;
    png_bytep *volatile rows = NULL;
    volatile int result = QI_ERROR;

    if (setjmp(png_jmpbuf(png))) {
        free(pixels);
        free(rows);
        png_destroy_read_struct(&png, &info, NULL);
        out->pixels = NULL;
        return result;
    }
    png_set_read_fn(png, &reader, qi_png_read);
    // Pillow does not enforce chunk size limits beyond its own; allow large ancillary chunks.
    png_set_user_limits(png, 0x7fffffff, 0x7fffffff);
    png_read_info(png, info);

    png_uint_32 width = 0, height = 0;
    int bit_depth = 0, color_type = 0, interlace = 0;
    png_get_IHDR(png, info, &width, &height, &bit_depth, &color_type, &interlace, NULL, NULL);
    out->width = (int32_t)width;
    out->height = (int32_t)height;
    out->file_color_type = color_type;
    out->file_bit_depth = bit_depth;
    if ((int64_t)width * (int64_t)height > max_pixels) {
        result = QI_TOO_LARGE;
        png_longjmp(png, 1);
    }

    if (color_type == PNG_COLOR_TYPE_PALETTE) {
        png_set_palette_to_rgb(png);
        if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
    } else if ((color_type == PNG_COLOR_TYPE_GRAY || color_type == PNG_COLOR_TYPE_RGB) &&
               png_get_valid(png, info, PNG_INFO_tRNS)) {
        png_color_16p key = NULL;
        png_get_tRNS(png, info, NULL, NULL, &key);
        if (key) {
            out->has_key = 1;
            if (color_type == PNG_COLOR_TYPE_GRAY) {
                out->key[0] = key->gray;
            } else {
                out->key[0] = key->red; out->key[1] = key->green; out->key[2] = key->blue;
            }
        }
    }
    if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (bit_depth == 16) {
        const uint16_t probe = 1;
        if (*(const uint8_t *)&probe == 1) png_set_swap(png);   // PNG is big-endian; hand out host order
    }
    png_set_interlace_handling(png);
    png_read_update_info(png, info);

    int channels = png_get_channels(png, info);
    int depth = png_get_bit_depth(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    if (channels < 1 || channels > 4 || (depth != 8 && depth != 16) ||
        rowbytes != (size_t)width * (size_t)channels * (size_t)(depth / 8)) {
        snprintf(out->message, QI_MESSAGE_CAP, "unexpected PNG layout after expansion (%d channels, %d bits)",
                 channels, depth);
        png_longjmp(png, 1);
    }
    out->channels = channels;
    out->bit_depth = depth;

    pixels = (uint8_t *)malloc(rowbytes * (size_t)height);
    rows = (png_bytep *)malloc(sizeof(png_bytep) * (size_t)height);
    if (!pixels || !rows) {
        snprintf(out->message, QI_MESSAGE_CAP, "out of memory for %u x %u pixels", width, height);
        png_longjmp(png, 1);
    }
    for (png_uint_32 y = 0; y < height; y++) rows[y] = pixels + (size_t)y * rowbytes;
    png_read_image(png, rows);
    // Like PIL, accept a file whose image data is complete even if chunks after it (IEND) are missing:
    // no png_read_end.

    free(rows);
    png_destroy_read_struct(&png, &info, NULL);
    out->pixels = pixels;
    return QI_OK;
}

// MARK: - Encoding

typedef struct {
    uint8_t *data;
    size_t size, capacity;
} qi_png_buffer;

static void qi_png_write(png_structp png, png_bytep in, png_size_t n) {
    qi_png_buffer *b = (qi_png_buffer *)png_get_io_ptr(png);
    if (n > b->capacity - b->size) {
        size_t cap = b->capacity ? b->capacity : 65536;
        while (n > cap - b->size) cap *= 2;
        uint8_t *grown = (uint8_t *)realloc(b->data, cap);
        if (!grown) png_error(png, "out of memory while encoding");
        b->data = grown;
        b->capacity = cap;
    }
    memcpy(b->data + b->size, in, n);
    b->size += n;
}

static void qi_png_flush(png_structp png) { (void)png; }

int qi_png_encode(const void *samples, int32_t width, int32_t height, int32_t channels, int32_t bit_depth,
                  uint8_t **out_data, size_t *out_size, char message[QI_MESSAGE_CAP]) {
    *out_data = NULL;
    *out_size = 0;
    message[0] = 0;
    static const int color_types[5] = { -1, PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA, PNG_COLOR_TYPE_RGB,
                                        PNG_COLOR_TYPE_RGB_ALPHA };
    if (width <= 0 || height <= 0 || channels < 1 || channels > 4 || (bit_depth != 8 && bit_depth != 16)) {
        snprintf(message, QI_MESSAGE_CAP, "cannot encode %d x %d x %d at %d bits", width, height, channels, bit_depth);
        return QI_ERROR;
    }
    qi_png_messages messages = { message, { 0 } };
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &messages, qi_png_error, qi_png_warning);
    if (!png) { snprintf(message, QI_MESSAGE_CAP, "out of memory"); return QI_ERROR; }
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        snprintf(message, QI_MESSAGE_CAP, "out of memory");
        return QI_ERROR;
    }
    qi_png_buffer buffer = { NULL, 0, 0 };
    qi_png_buffer *volatile bp = &buffer;
    if (setjmp(png_jmpbuf(png))) {
        free(bp->data);
        png_destroy_write_struct(&png, &info);
        return QI_ERROR;
    }
    png_set_write_fn(png, &buffer, qi_png_write, qi_png_flush);
    png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, bit_depth, color_types[channels],
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    if (bit_depth == 16) {
        const uint16_t probe = 1;
        if (*(const uint8_t *)&probe == 1) png_set_swap(png);
    }
    size_t rowbytes = (size_t)width * (size_t)channels * (size_t)(bit_depth / 8);
    for (int32_t y = 0; y < height; y++) {
        png_write_row(png, (png_const_bytep)samples + (size_t)y * rowbytes);
    }
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    *out_data = buffer.data;
    *out_size = buffer.size;
    return QI_OK;
}

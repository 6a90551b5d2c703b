// Small C wrappers around libpng and libjpeg(-turbo) decode/encode calls. Both libraries report
// errors by longjmp (or exit), which Swift cannot catch safely; each wrapper sets its own setjmp
// point, turns any library error into a return code and a message, and frees what it allocated.
// No global state: safe to call from several threads at once.
#ifndef CIMAGE_SHIM_H
#define CIMAGE_SHIM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define QI_MESSAGE_CAP 256

enum {
    QI_OK = 0,
    QI_ERROR = 1,      // message says why (corrupt, truncated, unsupported, out of memory)
    QI_TOO_LARGE = 2,  // width * height > max_pixels; width and height are filled in
};

/// A decoded PNG with only the lossless expansions applied: palette -> RGB (RGBA when the file has
/// tRNS), gray of 1/2/4 bits -> 8 bits (scaled as libpng and PIL do: x * 255 / (2^bits - 1)).
/// 16-bit files stay 16-bit (host-order uint16 samples); gray/RGB colour keys (tRNS) are returned
/// raw, not applied, so the caller can convert exactly as PIL does.
typedef struct {
    int32_t width, height;
    int32_t channels;        // 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA
    int32_t bit_depth;       // 8 or 16 (the samples in `pixels`)
    int32_t file_color_type; // PNG colour type in IHDR: 0, 2, 3, 4, 6
    int32_t file_bit_depth;  // bit depth in IHDR: 1, 2, 4, 8, 16
    int32_t has_key;         // 1 if a gray/RGB tRNS colour key is present
    uint16_t key[3];         // the key in the file's units (gray: key[0])
    void *pixels;            // malloc'd [height][width][channels] samples; free with qi_free
    char message[QI_MESSAGE_CAP];
} qi_png_image;

int qi_png_decode(const uint8_t *data, size_t size, int64_t max_pixels, qi_png_image *out);

/// A decoded JPEG: 8-bit gray (1 channel), RGB (3) or CMYK as stored (4; YCCK converted to CMYK),
/// libjpeg's default decoding (JDCT_ISLOW integer IDCT, fancy upsampling), as PIL uses it.
typedef struct {
    int32_t width, height;
    int32_t channels;         // 1, 3 or 4
    int32_t jpeg_color_space; // J_COLOR_SPACE of the file
    uint8_t *pixels;          // malloc'd [height][width][channels]; free with qi_free
    char message[QI_MESSAGE_CAP];
} qi_jpeg_image;

int qi_jpeg_decode(const uint8_t *data, size_t size, int64_t max_pixels, qi_jpeg_image *out);

/// Encodes a PNG (colour type from `channels` 1..4, bit depth 8 or 16; 16-bit samples host-order)
/// into a malloc'd buffer (*out_data, *out_size; free with qi_free).
int qi_png_encode(const void *samples, int32_t width, int32_t height, int32_t channels, int32_t bit_depth,
                  uint8_t **out_data, size_t *out_size, char message[QI_MESSAGE_CAP]);

void qi_free(void *p);

#ifdef __cplusplus
}
#endif

#endif

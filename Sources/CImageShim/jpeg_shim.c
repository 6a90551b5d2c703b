// libjpeg(-turbo) decode behind setjmp (see cimage_shim.h).
#include "cimage_shim.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    char *message;
} qi_jpeg_error;

static void qi_jpeg_error_exit(j_common_ptr cinfo) {
    qi_jpeg_error *err = (qi_jpeg_error *)cinfo->err;
    char text[JMSG_LENGTH_MAX];
    (*cinfo->err->format_message)(cinfo, text);
    snprintf(err->message, QI_MESSAGE_CAP, "%s", text);
    longjmp(err->jump, 1);
}

// Warnings are ignored (as PIL does), except running out of data: libjpeg would pad the image with
// grey and carry on; PIL reports "image file is truncated", and so do we.
static void qi_jpeg_emit_message(j_common_ptr cinfo, int level) {
    if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) {
        qi_jpeg_error *err = (qi_jpeg_error *)cinfo->err;
        snprintf(err->message, QI_MESSAGE_CAP, "truncated file (the data ends before the image does)");
        longjmp(err->jump, 1);
    }
}

int qi_jpeg_decode(const uint8_t *data, size_t size, int64_t max_pixels, qi_jpeg_image *out) {
    memset(out, 0, sizeof *out);
    struct jpeg_decompress_struct cinfo;
    qi_jpeg_error err;
    cinfo.err = jpeg_std_error(&err.pub);
    err.pub.error_exit = qi_jpeg_error_exit;
    err.pub.emit_message = qi_jpeg_emit_message;
    err.message = out->message;
    uint8_t *volatile pixels = NULL;
    volatile int result = QI_ERROR;

    if (setjmp(err.jump)) {
        free(pixels);
        jpeg_destroy_decompress(&cinfo);
        out->pixels = NULL;
        return result;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, (const unsigned char *)data, (unsigned long)size);
    jpeg_read_header(&cinfo, TRUE);
    out->width = (int32_t)cinfo.image_width;
    out->height = (int32_t)cinfo.image_height;
    out->jpeg_color_space = (int32_t)cinfo.jpeg_color_space;
    if ((int64_t)cinfo.image_width * (int64_t)cinfo.image_height > max_pixels) {
        result = QI_TOO_LARGE;
        longjmp(err.jump, 1);
    }
    switch (cinfo.jpeg_color_space) {
    case JCS_GRAYSCALE:
        cinfo.out_color_space = JCS_GRAYSCALE;
        break;
    case JCS_YCbCr:
    case JCS_RGB:
        cinfo.out_color_space = JCS_RGB;
        break;
    case JCS_CMYK:
    case JCS_YCCK:
        cinfo.out_color_space = JCS_CMYK;   // as PIL: 4 components, YCCK converted by libjpeg
        break;
    default:
        snprintf(out->message, QI_MESSAGE_CAP, "unsupported JPEG colour space (%d components); expected "
                 "grayscale, YCbCr, RGB, CMYK or YCCK", cinfo.num_components);
        longjmp(err.jump, 1);
    }
    // libjpeg's defaults, which PIL keeps when it is not asked for a draft: the accurate integer IDCT
    // and the smooth ("fancy") chroma upsampling. Stated explicitly so a changed default cannot slip in.
    cinfo.dct_method = JDCT_ISLOW;
    cinfo.do_fancy_upsampling = TRUE;
    cinfo.scale_num = 1;
    cinfo.scale_denom = 1;
    jpeg_start_decompress(&cinfo);
    int channels = cinfo.output_components;
    if ((channels != 1 && channels != 3 && channels != 4) || cinfo.output_width != cinfo.image_width ||
        cinfo.output_height != cinfo.image_height) {
        snprintf(out->message, QI_MESSAGE_CAP, "unexpected JPEG output layout (%d components)", channels);
        longjmp(err.jump, 1);
    }
    size_t rowbytes = (size_t)cinfo.output_width * (size_t)channels;
    pixels = (uint8_t *)malloc(rowbytes * (size_t)cinfo.output_height);
    if (!pixels) {
        snprintf(out->message, QI_MESSAGE_CAP, "out of memory for %u x %u pixels", cinfo.output_width,
                 cinfo.output_height);
        longjmp(err.jump, 1);
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW row = pixels + (size_t)cinfo.output_scanline * rowbytes;
        jpeg_read_scanlines(&cinfo, &row, 1);
    }
    out->channels = channels;
    // The image is complete; like PIL, do not require the data after it (no jpeg_finish_decompress).
    jpeg_destroy_decompress(&cinfo);
    out->pixels = pixels;
    return QI_OK;
}

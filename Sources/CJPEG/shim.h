#include <setjmp.h>
#include <stddef.h>
#include <stdio.h>
#include <jpeglib.h>

// libjpeg reports an error by calling `error_exit`, which must not return: the library's way out is a
// longjmp to a setjmp in the caller. A longjmp across Swift frames skips their cleanup and is
// undefined behaviour, so every libjpeg call that can fail runs here in C, between a setjmp and its
// longjmp, and a failure comes back to Swift as a return value with libjpeg's message.

enum { epicycle_jpeg_message_length = JMSG_LENGTH_MAX };

struct epicycle_jpeg_error {
    struct jpeg_error_mgr manager;  // first: libjpeg's pointer to it is a pointer to the whole
    jmp_buf escape;
    char *message;  // epicycle_jpeg_message_length bytes
};

static inline void epicycle_jpeg_error_exit(j_common_ptr info) {
    struct epicycle_jpeg_error *error = (struct epicycle_jpeg_error *)info->err;
    error->manager.format_message(info, error->message);
    longjmp(error->escape, 1);
}

// Warnings (level −1) are corrupt data that libjpeg papered over, e.g. a truncated file completed in
// grey: they fail the image too, as PIL refuses truncated images, rather than train on made-up pixels.
static inline void epicycle_jpeg_emit_message(j_common_ptr info, int level) {
    if (level < 0) epicycle_jpeg_error_exit(info);
}

static inline struct jpeg_error_mgr *epicycle_jpeg_use_errors(struct epicycle_jpeg_error *error, char *message) {
    jpeg_std_error(&error->manager);
    error->manager.error_exit = epicycle_jpeg_error_exit;
    error->manager.emit_message = epicycle_jpeg_emit_message;
    error->message = message;
    message[0] = 0;
    return &error->manager;
}

/// Reads a JPEG. With `pixels` NULL, only its header: the image size goes to `*width` and `*height`.
/// Otherwise decodes into `pixels`, which holds the `*width` × `*height` pixels that call reported,
/// rows top down, `channels` 1 (libjpeg's greyscale: the luma) or 3 (RGB) bytes each. Returns 0, or 1
/// with libjpeg's message (also for a colour space it cannot convert, such as CMYK).
static inline int epicycle_jpeg_read(const unsigned char *data, size_t size, int channels, unsigned char *pixels,
                                     unsigned *width, unsigned *height, char *message) {
    struct jpeg_decompress_struct info;
    struct epicycle_jpeg_error error;
    info.err = epicycle_jpeg_use_errors(&error, message);
    if (setjmp(error.escape)) {
        jpeg_destroy_decompress(&info);
        return 1;
    }
    jpeg_create_decompress(&info);
    jpeg_mem_src(&info, data, (unsigned long)size);
    jpeg_read_header(&info, TRUE);
    if (pixels == NULL) {
        *width = info.image_width;
        *height = info.image_height;
        jpeg_destroy_decompress(&info);
        return 0;
    }
    info.out_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_start_decompress(&info);
    if (info.output_width != *width || info.output_height != *height || info.output_components != channels) {
        snprintf(message, epicycle_jpeg_message_length, "decoded size %ux%ux%d differs from the header's",
                 info.output_width, info.output_height, info.output_components);
        jpeg_destroy_decompress(&info);
        return 1;
    }
    while (info.output_scanline < info.output_height) {
        JSAMPROW row = pixels + (size_t)info.output_scanline * *width * (size_t)channels;
        jpeg_read_scanlines(&info, &row, 1);
    }
    jpeg_finish_decompress(&info);
    jpeg_destroy_decompress(&info);
    return 0;
}

/// Encodes `pixels` (rows top down, `channels` 1 or 3) as a baseline JPEG of the given quality (1–100).
/// `*output` is allocated by libjpeg; the caller frees it with free() when not NULL, also after a
/// failure. Returns 0, or 1 with the message.
static inline int epicycle_jpeg_encode(const unsigned char *pixels, unsigned width, unsigned height, int channels,
                                       int quality, unsigned char **output, unsigned long *output_size, char *message) {
    struct jpeg_compress_struct info;
    struct epicycle_jpeg_error error;
    info.err = epicycle_jpeg_use_errors(&error, message);
    *output = NULL;
    *output_size = 0;
    if (setjmp(error.escape)) {
        jpeg_destroy_compress(&info);
        return 1;
    }
    jpeg_create_compress(&info);
    jpeg_mem_dest(&info, output, output_size);
    info.image_width = width;
    info.image_height = height;
    info.input_components = channels;
    info.in_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&info);
    jpeg_set_quality(&info, quality, TRUE);
    jpeg_start_compress(&info, TRUE);
    while (info.next_scanline < info.image_height) {
        JSAMPROW row = (JSAMPROW)(pixels + (size_t)info.next_scanline * width * (size_t)channels);
        jpeg_write_scanlines(&info, &row, 1);
    }
    jpeg_finish_compress(&info);
    jpeg_destroy_compress(&info);
    return 0;
}

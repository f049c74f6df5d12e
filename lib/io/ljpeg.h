// ljpeg: our decoder of lossless JPEG (ITU-T T.81 process 14, SOF3), the
// usual compression of CR and DX X-rays in DICOM (transfer syntaxes
// 1.2.840.10008.1.2.4.57 and .70), which Debian 12's libjpeg-turbo 2.1
// cannot decode.
//
// What it reads: one frame of 1 to 4 components without subsampling,
// precision 2 to 16 bits, Huffman tables (DHT), predictors 1 to 7, the
// point transform, restart intervals of whole rows, interleaved or one
// scan per component.  Arithmetic coding, hierarchical and lossy frames
// are refused.  Every segment length and table is checked against the
// bytes present; entropy-coded data that ends before the image does is an
// error, not grey pixels.
#ifndef MEDSSL_LJPEG_H
#define MEDSSL_LJPEG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// Decodes data (a whole lossless JPEG codestream) whose frame must be
// width x height with `components` components, into out: (components,
// height, width) samples, planar.  *precision gets the frame's sample
// precision.  False with the reason in err ("byte N: what").
bool ljpeg_decode(const uint8_t *data, size_t size, int width, int height, int components, int32_t *out,
                  int *precision, char *err, size_t errlen);

#endif

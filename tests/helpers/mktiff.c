// mktiff: writes a TIFF with libtiff for the tests: PAGES pages of
// WIDTH x HEIGHT, 8 or 16 bits, 1 or 3 channels, pixel values
//     v(page, y, x, c) = (page * 4099 + y * 131 + x * 17 + c * 1000) mod 2^bits
// so a reader's output can be checked value by value.
//
//   mktiff OUT.tif WIDTH HEIGHT PAGES BITS CHANNELS
#include <stdio.h>
#include <stdlib.h>
#include <tiffio.h>

#include "util.h"

int main(int argc, char **argv)
{
    util_init(argv[0]);
    if (argc != 7)
        die_usage("mktiff OUT.tif WIDTH HEIGHT PAGES BITS CHANNELS");
    int w = atoi(argv[2]), h = atoi(argv[3]), pages = atoi(argv[4]), bits = atoi(argv[5]),
        ch = atoi(argv[6]);
    TIFF *tif = TIFFOpen(argv[1], "w");
    if (!tif)
        die(argv[1], "cannot create");
    unsigned mask = bits == 16 ? 0xffff : 0xff;
    unsigned char *row = xmalloc((size_t)w * ch * (bits / 8));
    for (int p = 0; p < pages; p++) {
        TIFFSetField(tif, TIFFTAG_IMAGEWIDTH, w);
        TIFFSetField(tif, TIFFTAG_IMAGELENGTH, h);
        TIFFSetField(tif, TIFFTAG_BITSPERSAMPLE, bits);
        TIFFSetField(tif, TIFFTAG_SAMPLESPERPIXEL, ch);
        TIFFSetField(tif, TIFFTAG_PHOTOMETRIC, ch == 3 ? PHOTOMETRIC_RGB : PHOTOMETRIC_MINISBLACK);
        TIFFSetField(tif, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
        TIFFSetField(tif, TIFFTAG_ROWSPERSTRIP, 8);
        TIFFSetField(tif, TIFFTAG_COMPRESSION, COMPRESSION_LZW);
        TIFFSetField(tif, TIFFTAG_SUBFILETYPE, FILETYPE_PAGE);
        TIFFSetField(tif, TIFFTAG_PAGENUMBER, p, pages);
        for (int y = 0; y < h; y++) {
            for (int x = 0; x < w; x++)
                for (int c = 0; c < ch; c++) {
                    unsigned v = (unsigned)(p * 4099 + y * 131 + x * 17 + c * 1000) & mask;
                    size_t i = (size_t)x * ch + c;
                    if (bits == 16)
                        ((unsigned short *)row)[i] = (unsigned short)v;
                    else
                        row[i] = (unsigned char)v;
                }
            if (TIFFWriteScanline(tif, row, (uint32_t)y, 0) < 0)
                die(argv[1], "write error");
        }
        TIFFWriteDirectory(tif);
    }
    TIFFClose(tif);
    free(row);
    return 0;
}

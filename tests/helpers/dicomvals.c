// dicomvals: the stored values of a DICOM file's frames, as lib/io/dicom.c
// decodes them, for comparison with pydicom's pixel_array (the fixture
// written by tests/pydicom/make_dicom_fixtures.py).
//
//   dicomvals FILE...
//
// One line per frame: "NAME FRAME SAMPLES ROWS COLUMNS MIN MAX FNV", FNV
// being the 64-bit FNV-1a hash of the values as little endian int32 in
// (rows, columns, samples) order, pydicom's.  A file that cannot be
// decoded gives "NAME error: REASON".
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dicom.h"
#include "util.h"

static uint8_t *slurp(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        die(path, "cannot open");
    size_t cap = 1 << 16, n = 0, got;
    uint8_t *p = xmalloc(cap);
    while ((got = fread(p + n, 1, cap - n, f)) > 0)
        if ((n += got) == cap)
            p = xrealloc(p, cap *= 2);
    fclose(f);
    *size = n;
    return p;
}

int main(int argc, char **argv)
{
    util_init(argv[0]);
    for (int a = 1; a < argc; a++) {
        const char *name = argv[a];
        size_t size;
        uint8_t *data = slurp(argv[a], &size);
        dicom_file f;
        char err[400];
        if (!dicom_parse(data, size, &f, err, sizeof err) || !dicom_check_image(&f, err, sizeof err)) {
            printf("%s error: %s\n", name, err);
            dicom_free(&f);
            free(data);
            continue;
        }
        size_t px = (size_t)f.rows * f.columns, n = px * (size_t)f.samples;
        int32_t *v = xmalloc(n * sizeof *v);
        for (int k = 0; k < f.frames; k++) {
            if (!dicom_decode_frame(&f, k, v, err, sizeof err)) {
                printf("%s error: frame %d: %s\n", name, k, err);
                break;
            }
            uint64_t h = 0xcbf29ce484222325ull;
            int32_t lo = v[0], hi = v[0];
            for (size_t i = 0; i < px; i++)
                for (int c = 0; c < f.samples; c++) {
                    int32_t x = v[(size_t)c * px + i];
                    lo = x < lo ? x : lo;
                    hi = x > hi ? x : hi;
                    uint32_t u = (uint32_t)x;
                    for (int b = 0; b < 4; b++)
                        h = (h ^ ((u >> (8 * b)) & 0xFF)) * 0x100000001b3ull;
                }
            printf("%s %d %d %d %d %d %d %016llx\n", name, k, f.samples, f.rows, f.columns, lo, hi,
                   (unsigned long long)h);
        }
        free(v);
        dicom_free(&f);
        free(data);
    }
    return 0;
}

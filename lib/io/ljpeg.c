#include "ljpeg.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

// A Huffman table as T.81 F.2.2.3 decodes it: for each code length l, the
// smallest and largest code and where its values start.
typedef struct {
    bool defined;
    uint8_t vals[256];
    int32_t mincode[17], maxcode[17], valptr[17];
} huff_table;

typedef struct {
    const uint8_t *p;
    size_t n, pos;
    uint32_t acc;
    int nbits;
    bool at_marker;   // a marker ends the entropy-coded data
    bool overrun;     // bits were asked for past it
} bit_reader;

typedef struct {
    int id, table;
} scan_comp;

static bool fail(char *err, size_t errlen, size_t at, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static bool fail(char *err, size_t errlen, size_t at, const char *fmt, ...)
{
    char what[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    snprintf(err, errlen, "lossless JPEG: byte %zu: %s", at, what);
    return false;
}

static unsigned be16(const uint8_t *p)
{
    return (unsigned)p[0] << 8 | p[1];
}

// Byte stuffing: 0xFF 0x00 is a data byte 0xFF; any other 0xFF starts a
// marker, where the data stops (zeros are fed, and noted, past it).
static int get_bit(bit_reader *b)
{
    if (b->nbits == 0) {
        unsigned byte = 0;
        if (!b->at_marker && b->pos < b->n) {
            byte = b->p[b->pos];
            if (byte != 0xFF)
                b->pos++;
            else if (b->pos + 1 < b->n && b->p[b->pos + 1] == 0)
                b->pos += 2;
            else
                b->at_marker = b->overrun = true, byte = 0;
        } else {
            b->overrun = true;
        }
        b->acc = byte;
        b->nbits = 8;
    }
    b->nbits--;
    return (int)(b->acc >> b->nbits) & 1;
}

static int get_bits(bit_reader *b, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++)
        v = v << 1 | get_bit(b);
    return v;
}

// A difference category (0..16), or -1 for a code not in the table.
static int decode_symbol(bit_reader *b, const huff_table *h)
{
    int32_t code = get_bit(b);
    for (int l = 1; l <= 16; l++) {
        if (code <= h->maxcode[l])
            return h->vals[h->valptr[l] + code - h->mincode[l]];
        code = code << 1 | get_bit(b);
    }
    return -1;
}

// DHT: one or more tables in a segment of len bytes at p (after the length).
static bool read_dht(const uint8_t *p, size_t len, size_t at, huff_table *tables, char *err, size_t errlen)
{
    size_t i = 0;
    while (i < len) {
        if (len - i < 17)
            return fail(err, errlen, at + i, "a Huffman table cut short");
        int tc = p[i] >> 4, th = p[i] & 15;
        if (tc != 0 || th > 3)
            return fail(err, errlen, at + i, "Huffman table class %d, id %d: DC tables 0 to 3 only", tc, th);
        huff_table *h = &tables[th];
        const uint8_t *counts = p + i + 1;
        size_t total = 0;
        for (int l = 0; l < 16; l++)
            total += counts[l];
        if (total > 256 || len - i - 17 < total)
            return fail(err, errlen, at + i, "a Huffman table of %zu values in %zu bytes", total, len - i - 17);
        memcpy(h->vals, p + i + 17, total);
        for (size_t k = 0; k < total; k++)
            if (h->vals[k] > 16)
                return fail(err, errlen, at + i + 17 + k, "difference category %d (at most 16)", h->vals[k]);
        int32_t code = 0, k = 0;
        for (int l = 1; l <= 16; l++) {
            h->valptr[l] = k;
            h->mincode[l] = code;
            code += counts[l - 1];
            k += counts[l - 1];
            h->maxcode[l] = counts[l - 1] ? code - 1 : -1;
            // A prefix code: the codes of length l fit in l bits.
            if (code > (int32_t)1 << l)
                return fail(err, errlen, at + i, "Huffman table %d has more codes than fit in %d bits", th, l);
            code <<= 1;
        }
        h->defined = true;
        i += 17 + total;
    }
    return true;
}

bool ljpeg_decode(const uint8_t *data, size_t size, int width, int height, int components, int32_t *out,
                  int *precision, char *err, size_t errlen)
{
    huff_table tables[4] = {{0}};
    int frame_ids[4] = {0}, nf = 0, restart = 0;
    int P = 0;
    bool have_frame = false, done[4] = {false, false, false, false};
    size_t px = (size_t)width * height;
    if (size < 4 || data[0] != 0xFF || data[1] != 0xD8)
        return fail(err, errlen, 0, "no start-of-image marker");
    size_t pos = 2;
    for (;;) {
        // Fill bytes (0xFF) may precede a marker.
        if (pos >= size || data[pos] != 0xFF)
            return fail(err, errlen, pos, "a marker expected");
        while (pos < size && data[pos] == 0xFF)
            pos++;
        if (pos >= size)
            return fail(err, errlen, pos, "the data ends inside a marker");
        unsigned m = data[pos++];
        if (m == 0xD9)
            break;   // end of image
        if (m >= 0xD0 && m <= 0xD7)
            return fail(err, errlen, pos - 2, "a restart marker outside a scan");
        if (size - pos < 2 || be16(data + pos) < 2 || be16(data + pos) > size - pos)
            return fail(err, errlen, pos, "marker 0x%02X: a segment longer than the data", m);
        size_t len = be16(data + pos) - 2, seg = pos + 2;
        const uint8_t *s = data + seg;
        pos = seg + len;
        if (m == 0xC4) {
            if (!read_dht(s, len, seg, tables, err, errlen))
                return false;
        } else if (m == 0xDD) {
            if (len != 2)
                return fail(err, errlen, seg, "a restart interval segment of %zu bytes", len);
            restart = (int)be16(s);
        } else if (m == 0xC3) {
            if (have_frame)
                return fail(err, errlen, seg, "a second frame");
            if (len < 6)
                return fail(err, errlen, seg, "a frame header cut short");
            P = s[0];
            int h = (int)be16(s + 1), w = (int)be16(s + 3);
            nf = s[5];
            if (P < 2 || P > 16)
                return fail(err, errlen, seg, "sample precision %d (2 to 16)", P);
            if (w != width || h != height || nf != components)
                return fail(err, errlen, seg, "a %dx%d frame of %d components in a %dx%d image of %d", w, h, nf,
                            width, height, components);
            if (len != 6 + 3 * (size_t)nf || nf < 1 || nf > 4)
                return fail(err, errlen, seg, "a frame header of %zu bytes for %d components", len, nf);
            for (int c = 0; c < nf; c++) {
                frame_ids[c] = s[6 + 3 * c];
                if (s[7 + 3 * c] != 0x11)
                    return fail(err, errlen, seg + 7 + 3 * (size_t)c, "component %d subsampled (%dx%d): not read",
                                c, s[7 + 3 * c] >> 4, s[7 + 3 * c] & 15);
            }
            have_frame = true;
            *precision = P;
        } else if ((m >= 0xC0 && m <= 0xCF) && m != 0xC4 && m != 0xC8 && m != 0xCC) {
            return fail(err, errlen, pos, "a frame of type SOF%d, not lossless Huffman (SOF3)", (int)(m - 0xC0));
        } else if (m == 0xDA) {
            if (!have_frame)
                return fail(err, errlen, seg, "a scan before the frame header");
            if (len < 1 || len != 4 + 2 * (size_t)s[0] || s[0] < 1 || s[0] > nf)
                return fail(err, errlen, seg, "a scan header of %zu bytes", len);
            int ns = s[0];
            scan_comp sc[4];
            for (int j = 0; j < ns; j++) {
                int id = s[1 + 2 * j], k = 0;
                while (k < nf && frame_ids[k] != id)
                    k++;
                if (k == nf || done[k])
                    return fail(err, errlen, seg + 1 + 2 * (size_t)j, "scan component %d unknown or repeated", id);
                done[k] = true;
                sc[j] = (scan_comp){k, s[2 + 2 * j] >> 4};
                if (sc[j].table > 3 || !tables[sc[j].table].defined)
                    return fail(err, errlen, seg + 2 + 2 * (size_t)j, "Huffman table %d not defined", sc[j].table);
            }
            int predictor = s[1 + 2 * ns], pt = s[3 + 2 * ns] & 15;
            if (predictor < 1 || predictor > 7 || pt >= P)
                return fail(err, errlen, seg, "predictor %d, point transform %d: 1 to 7, below %d", predictor, pt, P);
            if (restart && restart % width)
                return fail(err, errlen, seg, "a restart interval of %d pixels, not whole rows of %d", restart, width);
            // The entropy-coded data: one difference per component per pixel.
            bit_reader b = {.p = data, .n = size, .pos = pos};
            int32_t initial = 1 << (P - pt - 1);
            int reset_row = 0, next_rst = 0;
            for (size_t i = 0; i < px; i++) {
                int y = (int)(i / (size_t)width), x = (int)(i % (size_t)width);
                if (restart && i && i % (size_t)restart == 0) {
                    // Byte-aligned restart marker RSTn, then predictions
                    // start over.
                    b.nbits = 0;
                    if (b.pos + 1 >= size || data[b.pos] != 0xFF || data[b.pos + 1] != 0xD0 + next_rst)
                        return fail(err, errlen, b.pos, "restart marker %d expected", next_rst);
                    b.pos += 2;
                    b.at_marker = false;
                    next_rst = (next_rst + 1) & 7;
                    reset_row = y;
                }
                for (int j = 0; j < ns; j++) {
                    int32_t *plane = out + (size_t)sc[j].id * px;
                    int t = decode_symbol(&b, &tables[sc[j].table]);
                    if (t < 0)
                        return fail(err, errlen, b.pos, "a code not in Huffman table %d", sc[j].table);
                    int32_t diff = t == 16 ? 32768 : get_bits(&b, t);
                    if (t && t < 16 && diff < 1 << (t - 1))
                        diff -= (1 << t) - 1;
                    int32_t pred;
                    if (y == reset_row)
                        pred = x ? plane[i - 1] : initial;
                    else if (x == 0)
                        pred = plane[i - (size_t)width];
                    else {
                        int32_t ra = plane[i - 1], rb = plane[i - (size_t)width], rc = plane[i - (size_t)width - 1];
                        switch (predictor) {
                        case 1: pred = ra; break;
                        case 2: pred = rb; break;
                        case 3: pred = rc; break;
                        case 4: pred = ra + rb - rc; break;
                        case 5: pred = ra + ((rb - rc) >> 1); break;
                        case 6: pred = rb + ((ra - rc) >> 1); break;
                        default: pred = (ra + rb) >> 1; break;
                        }
                    }
                    plane[i] = (pred + diff) & 0xFFFF;
                }
                if (b.overrun)
                    return fail(err, errlen, b.pos, "the coded data ends before pixel %zu of %zu", i, px);
            }
            for (int j = 0; j < ns && pt; j++)
                for (size_t i = 0; i < px; i++)
                    out[(size_t)sc[j].id * px + i] <<= pt;
            // The next marker after the scan's data (padding bits and
            // stuffed bytes skipped).
            pos = b.pos;
            while (pos + 1 < size && !(data[pos] == 0xFF && data[pos + 1] != 0 && data[pos + 1] != 0xFF))
                pos++;
        }
        // Other segments (APPn, COM, DQT, DNL...) are skipped.
    }
    for (int c = 0; c < nf; c++)
        if (!done[c])
            return fail(err, errlen, pos, "component %d has no scan", c);
    if (!have_frame)
        return fail(err, errlen, pos, "no lossless frame header (SOF3)");
    return true;
}

#include "dicom.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <charls/charls.h>
#include <openjpeg.h>
#include <zlib.h>

#include "jpeg.h"
#include "ljpeg.h"
#include "util.h"

#define UNDEFINED 0xFFFFFFFFu
#define TAG(g, e) ((uint32_t)(g) << 16 | (uint32_t)(e))
#define ITEM TAG(0xFFFE, 0xE000)
#define ITEM_END TAG(0xFFFE, 0xE00D)
#define SEQ_END TAG(0xFFFE, 0xE0DD)
#define PIXEL_DATA TAG(0x7FE0, 0x0010)

static const struct {
    const char *uid, *name;
    dicom_codec codec;
} syntaxes[] = {
    {"1.2.840.10008.1.2", "Implicit VR Little Endian", DICOM_NATIVE},
    {"1.2.840.10008.1.2.1", "Explicit VR Little Endian", DICOM_NATIVE},
    {"1.2.840.10008.1.2.1.99", "Deflated Explicit VR Little Endian", DICOM_NATIVE},
    {"1.2.840.10008.1.2.2", "Explicit VR Big Endian", DICOM_NATIVE},
    {"1.2.840.10008.1.2.5", "RLE Lossless", DICOM_RLE},
    {"1.2.840.10008.1.2.4.50", "JPEG Baseline", DICOM_JPEG},
    {"1.2.840.10008.1.2.4.51", "JPEG Extended", DICOM_JPEG},
    {"1.2.840.10008.1.2.4.57", "JPEG Lossless", DICOM_JPEG_LOSSLESS},
    {"1.2.840.10008.1.2.4.70", "JPEG Lossless, SV1", DICOM_JPEG_LOSSLESS},
    {"1.2.840.10008.1.2.4.80", "JPEG-LS Lossless", DICOM_JPEG_LS},
    {"1.2.840.10008.1.2.4.81", "JPEG-LS Near-Lossless", DICOM_JPEG_LS},
    {"1.2.840.10008.1.2.4.90", "JPEG 2000 Lossless", DICOM_J2K},
    {"1.2.840.10008.1.2.4.91", "JPEG 2000", DICOM_J2K},
    {"1.2.840.10008.1.2.4.100", "MPEG2", DICOM_OTHER},
    {"1.2.840.10008.1.2.4.102", "MPEG-4 AVC/H.264", DICOM_OTHER},
    {"1.2.840.10008.1.2.4.201", "High-Throughput JPEG 2000 Lossless", DICOM_OTHER},
    {"1.2.840.10008.1.2.4.203", "High-Throughput JPEG 2000", DICOM_OTHER},
};

const char *dicom_syntax_name(const char *uid)
{
    for (size_t i = 0; i < sizeof syntaxes / sizeof *syntaxes; i++)
        if (strcmp(uid, syntaxes[i].uid) == 0)
            return syntaxes[i].name;
    return NULL;
}

static unsigned rd16(const uint8_t *p, bool big)
{
    return big ? (unsigned)p[0] << 8 | p[1] : (unsigned)p[1] << 8 | p[0];
}

static uint32_t rd32(const uint8_t *p, bool big)
{
    return big ? (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]
               : (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

bool dicom_sniff(const void *data, size_t size)
{
    const uint8_t *p = data;
    if (size >= 132 && memcmp(p + 128, "DICM", 4) == 0)
        return true;
    // A bare data set (no preamble, no meta group): its first element is
    // in group 0008 (Specific Character Set, Image Type, SOP Class UID).
    return size >= 8 && rd16(p, false) == 0x0008 && rd16(p + 2, false) < 0x0100;
}

// ---- the element walker ------------------------------------------------------------

typedef struct {
    const uint8_t *p;
    size_t n;
    bool big;
    const char *space;   // "byte" or "inflated byte", for messages
    char *err;
    size_t errlen;
} parser;

typedef struct {
    uint32_t tag;
    char vr[3];          // "" in implicit VR
    uint32_t length;
    size_t start, value; // offsets of the header and of the value
} element;

static bool fail(parser *ps, size_t at, uint32_t tag, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static bool fail(parser *ps, size_t at, uint32_t tag, const char *fmt, ...)
{
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    snprintf(ps->err, ps->errlen, "%s %zu, tag (%04X,%04X): %s", ps->space, at, tag >> 16, tag & 0xFFFF, what);
    return false;
}

// VRs whose explicit header has 2 reserved bytes and a 32-bit length.
static bool long_vr(const char *vr)
{
    static const char *const vrs[] = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"};
    for (size_t i = 0; i < sizeof vrs / sizeof *vrs; i++)
        if (strcmp(vr, vrs[i]) == 0)
            return true;
    return false;
}

// The header of the element at pos; a defined length must fit in the bytes
// left.  Items and delimiters have no VR in any syntax.
static bool read_element(parser *ps, size_t pos, bool explicit_vr, element *e)
{
    if (ps->n - pos < 8)
        return fail(ps, pos, 0, "the file ends inside an element header (%zu bytes left)", ps->n - pos);
    const uint8_t *p = ps->p + pos;
    e->tag = TAG(rd16(p, ps->big), rd16(p + 2, ps->big));
    e->start = pos;
    e->vr[0] = 0;
    if ((e->tag >> 16) == 0xFFFE || !explicit_vr) {
        e->length = rd32(p + 4, ps->big);
        e->value = pos + 8;
    } else {
        if (!isupper(p[4]) || !isupper(p[5]))
            return fail(ps, pos, e->tag, "not a value representation: bytes 0x%02X 0x%02X", p[4], p[5]);
        e->vr[0] = (char)p[4], e->vr[1] = (char)p[5], e->vr[2] = 0;
        if (long_vr(e->vr)) {
            if (ps->n - pos < 12)
                return fail(ps, pos, e->tag, "the file ends inside an element header (%zu bytes left)", ps->n - pos);
            e->length = rd32(p + 8, ps->big);
            e->value = pos + 12;
        } else {
            e->length = rd16(p + 6, ps->big);
            e->value = pos + 8;
        }
    }
    if (e->length != UNDEFINED && e->length > ps->n - e->value)
        return fail(ps, pos, e->tag, "length %u runs past the end of the file (%zu bytes left)", e->length,
                    ps->n - e->value);
    return true;
}

static bool skip_element(parser *ps, const element *e, bool explicit_vr, int depth, size_t *next);

// The items of a sequence of undefined length, from pos to just after its
// delimiter (*next).
// depth: the sequences around these items, this one included.
static bool skip_items(parser *ps, size_t pos, bool explicit_vr, int depth, size_t *next)
{
    for (;;) {
        element it;
        if (!read_element(ps, pos, explicit_vr, &it))
            return false;
        if (it.tag == SEQ_END) {
            *next = it.value;
            return true;
        }
        if (it.tag != ITEM)
            return fail(ps, pos, it.tag, "an item or a sequence delimiter expected in a sequence");
        if (it.length != UNDEFINED) {
            pos = it.value + it.length;
            continue;
        }
        // An item of undefined length: its elements, up to the item delimiter.
        pos = it.value;
        for (;;) {
            element e;
            if (!read_element(ps, pos, explicit_vr, &e))
                return false;
            if (e.tag == ITEM_END) {
                pos = e.value;
                break;
            }
            if (e.tag == SEQ_END || e.tag == ITEM)
                return fail(ps, pos, e.tag, "a delimiter out of place inside an item");
            if (!skip_element(ps, &e, explicit_vr, depth, &pos))
                return false;
        }
    }
}

static bool skip_element(parser *ps, const element *e, bool explicit_vr, int depth, size_t *next)
{
    if (e->length != UNDEFINED) {
        *next = e->value + e->length;
        return true;
    }
    // Undefined length: a sequence (SQ; in implicit VR any such element),
    // or UN holding one, whose content is implicit VR little endian.
    // depth counts the sequences around e.
    if (depth == DICOM_MAX_DEPTH)
        return fail(ps, e->start, e->tag, "sequences nested more than %d deep", DICOM_MAX_DEPTH);
    if (strcmp(e->vr, "SQ") == 0 || !explicit_vr)
        return skip_items(ps, e->value, explicit_vr, depth + 1, next);
    if (strcmp(e->vr, "UN") == 0) {
        if (ps->big)
            return fail(ps, e->start, e->tag, "UN of undefined length in a big endian data set");
        return skip_items(ps, e->value, false, depth + 1, next);
    }
    return fail(ps, e->start, e->tag, "undefined length on a %s element", e->vr);
}

// ---- values ----------------------------------------------------------------------

// A string value, leading and trailing spaces (and NUL padding) removed.
static bool get_string(parser *ps, const element *e, char *out)
{
    const char *s = (const char *)ps->p + e->value;
    size_t n = e->length;
    while (n && (s[n - 1] == ' ' || s[n - 1] == 0))
        n--;
    while (n && *s == ' ')
        s++, n--;
    if (n > DICOM_ID_MAX)
        return fail(ps, e->start, e->tag, "a value of %zu bytes, more than %d", n, DICOM_ID_MAX);
    for (size_t i = 0; i < n; i++)
        if (s[i] == 0)
            return fail(ps, e->start, e->tag, "a NUL byte inside the value");
    memcpy(out, s, n);
    out[n] = 0;
    return true;
}

static bool get_us(parser *ps, const element *e, int *out)
{
    if (e->length < 2)
        return fail(ps, e->start, e->tag, "an unsigned short of %u bytes", e->length);
    *out = (int)rd16(ps->p + e->value, ps->big);
    return true;
}

// The first value of a DS or IS string ("1.5\2.0" -> 1.5).
static bool get_number(parser *ps, const element *e, double *out)
{
    char s[DICOM_ID_MAX + 1], *end;
    size_t n = e->length < DICOM_ID_MAX ? e->length : DICOM_ID_MAX;
    memcpy(s, ps->p + e->value, n);
    s[n] = 0;
    s[strcspn(s, "\\")] = 0;
    *out = strtod(s, &end);
    while (*end == ' ')
        end++;
    if (end == s || *end || *out != *out || *out > 1e300 || *out < -1e300)
        return fail(ps, e->start, e->tag, "not a number: '%s'", s);
    return true;
}

// The first item of the VOI LUT Sequence seq: its LUT Descriptor
// (0028,3002) and LUT Data (0028,3006), checked against each other.
static bool read_voi_lut(parser *ps, const element *seq, bool explicit_vr, dicom_file *f)
{
    if (seq->length == 0)
        return true;
    element it;
    if (!read_element(ps, seq->value, explicit_vr, &it))
        return false;
    if (it.tag == SEQ_END)
        return true;
    if (it.tag != ITEM)
        return fail(ps, it.start, it.tag, "an item expected in the VOI LUT Sequence");
    size_t pos = it.value, end = it.length == UNDEFINED ? ps->n : it.value + it.length;
    bool desc = false, lut = false;
    size_t lut_length = 0;
    while (pos < end) {
        element e;
        if (!read_element(ps, pos, explicit_vr, &e))
            return false;
        if (e.tag == ITEM_END)
            break;
        if (e.tag == TAG(0x0028, 0x3002)) {
            if (e.length != 6)
                return fail(ps, pos, e.tag, "a LUT Descriptor of %u bytes, not 3 values of 2", e.length);
            const uint8_t *v = ps->p + e.value;
            unsigned count = rd16(v, ps->big), first = rd16(v + 2, ps->big);
            f->lut_count = count ? (int)count : 65536;
            // The first mapped value is signed when the descriptor is SS
            // (in implicit VR: when the pixels are signed).
            bool ss = strcmp(e.vr, "SS") == 0 || (!*e.vr && f->pixel_representation == 1);
            f->lut_first = ss ? (int16_t)first : (int)first;
            f->lut_bits = (int)rd16(v + 4, ps->big);
            if (f->lut_bits < 8 || f->lut_bits > 16)
                return fail(ps, pos, e.tag, "LUT entries of %d bits (8 to 16)", f->lut_bits);
            desc = true;
        } else if (e.tag == TAG(0x0028, 0x3006)) {
            if (e.length == UNDEFINED)
                return fail(ps, pos, e.tag, "LUT Data of undefined length");
            f->lut_offset = e.value;
            lut_length = e.length;
            lut = true;
        }
        if (!skip_element(ps, &e, explicit_vr, 1, &pos))
            return false;
    }
    if (!desc || !lut)
        return fail(ps, seq->start, seq->tag, "a VOI LUT without its %s",
                    desc ? "LUT Data (0028,3006)" : "LUT Descriptor (0028,3002)");
    if (lut_length < 2 * (size_t)f->lut_count)
        return fail(ps, seq->start, seq->tag, "LUT Data of %zu bytes for %d entries", lut_length, f->lut_count);
    f->has_voi_lut = true;
    return true;
}

// ---- the file --------------------------------------------------------------------

// Inflates the deflated data set (raw deflate, RFC 1951) after the meta group.
static bool inflate_dataset(parser *ps, size_t pos, dicom_file *f)
{
    z_stream z = {0};
    if (inflateInit2(&z, -MAX_WBITS) != Z_OK)
        return fail(ps, pos, 0, "deflated data set: zlib cannot start");
    size_t cap = 4 * (ps->n - pos) + 4096, size = 0;
    cap = cap > DICOM_MAX_INFLATED ? DICOM_MAX_INFLATED : cap;
    uint8_t *out = xmalloc(cap);
    z.next_in = (Bytef *)ps->p + pos;
    size_t in_left = ps->n - pos;
    int rc = Z_OK;
    while (rc != Z_STREAM_END) {
        if (size == cap) {
            if (cap == DICOM_MAX_INFLATED) {
                free(out);
                inflateEnd(&z);
                return fail(ps, pos, 0, "deflated data set: inflates to more than %zu bytes", DICOM_MAX_INFLATED);
            }
            cap = cap > DICOM_MAX_INFLATED / 2 ? DICOM_MAX_INFLATED : 2 * cap;
            out = xrealloc(out, cap);
        }
        // zlib counts in uInt: feed and drain at most 1 GB at a time.
        uInt in_chunk = in_left > (1u << 30) ? 1u << 30 : (uInt)in_left;
        z.avail_in = in_chunk;
        z.next_out = out + size;
        z.avail_out = cap - size > (1u << 30) ? 1u << 30 : (uInt)(cap - size);
        uInt out_before = z.avail_out;
        rc = inflate(&z, Z_NO_FLUSH);
        in_left -= in_chunk - z.avail_in;
        size += out_before - z.avail_out;
        if (rc == Z_BUF_ERROR && in_left == 0)
            rc = Z_DATA_ERROR;
        if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) {
            size_t at = ps->n - in_left;
            const char *msg = rc == Z_DATA_ERROR && in_left == 0 ? "the deflated data ends early"
                              : z.msg ? z.msg : "corrupt data";
            free(out);
            inflateEnd(&z);
            return fail(ps, at, 0, "deflated data set: %s", msg);
        }
    }
    inflateEnd(&z);
    f->owned = out;
    f->data = out;
    f->size = size;
    return true;
}

// The file meta group (group 0002, explicit VR little endian) from pos;
// *end is where the data set starts.
static bool read_meta(parser *ps, size_t pos, dicom_file *f, size_t *end)
{
    while (ps->n - pos >= 2 && rd16(ps->p + pos, false) == 0x0002) {
        element e;
        if (!read_element(ps, pos, true, &e))
            return false;
        if (e.length == UNDEFINED)
            return fail(ps, pos, e.tag, "undefined length in the file meta group");
        if (e.tag == TAG(0x0002, 0x0010) && !get_string(ps, &e, f->transfer_syntax))
            return false;
        pos = e.value + e.length;
    }
    *end = pos;
    return true;
}

// The whole data set from pos: the attributes kept, the pixel data located.
static bool read_dataset(parser *ps, size_t pos, bool explicit_vr, dicom_file *f)
{
    while (pos < ps->n) {
        element e;
        if (!read_element(ps, pos, explicit_vr, &e))
            return false;
        uint32_t t = e.tag;
        if (t == ITEM || t == ITEM_END || t == SEQ_END)
            return fail(ps, pos, t, "a delimiter outside any sequence");
        if (t == PIXEL_DATA) {
            if (f->has_pixels)
                return fail(ps, pos, t, "a second Pixel Data element");
            f->has_pixels = true;
            f->pixel_tag_offset = pos;
            f->pixel_ow = strcmp(e.vr, "OW") == 0;
            if (e.length != UNDEFINED) {
                f->pixel_offset = e.value;
                f->pixel_length = e.length;
                pos = e.value + e.length;
                continue;
            }
            // Encapsulated: the basic offset table (an item, maybe empty),
            // then one item per fragment, then the sequence delimiter.
            f->encapsulated = true;
            int cap = 0;
            size_t q = e.value;
            for (;;) {
                element it;
                if (!read_element(ps, q, explicit_vr, &it))
                    return false;
                if (it.tag == SEQ_END)
                    break;
                if (it.tag != ITEM)
                    return fail(ps, q, it.tag, "an item expected in encapsulated pixel data");
                if (it.length == UNDEFINED)
                    return fail(ps, q, it.tag, "a fragment of undefined length");
                if (f->nfragments == DICOM_MAX_FRAGMENTS + 1)
                    return fail(ps, q, it.tag, "more than %d fragments", DICOM_MAX_FRAGMENTS);
                if (f->nfragments == cap) {
                    cap = cap ? 2 * cap : 16;
                    f->fragments = xrealloc(f->fragments, (size_t)cap * sizeof *f->fragments);
                }
                // Fragment 0 is the offset table; offsets count from the
                // first fragment's item header (kept as its offset - 8).
                f->fragments[f->nfragments++] = (dicom_span){it.value, it.length};
                q = it.value + it.length;
            }
            pos = q + 8;
            continue;
        }
        char *str = t == TAG(0x0010, 0x0020)   ? f->patient_id
                    : t == TAG(0x0020, 0x000D) ? f->study_uid
                    : t == TAG(0x0020, 0x000E) ? f->series_uid
                    : t == TAG(0x0028, 0x0004) ? f->photometric
                    : t == TAG(0x0028, 0x1056) ? f->voi_function
                                               : NULL;
        int *us = t == TAG(0x0028, 0x0002)   ? &f->samples
                  : t == TAG(0x0028, 0x0006) ? &f->planar
                  : t == TAG(0x0028, 0x0010) ? &f->rows
                  : t == TAG(0x0028, 0x0011) ? &f->columns
                  : t == TAG(0x0028, 0x0100) ? &f->bits_allocated
                  : t == TAG(0x0028, 0x0101) ? &f->bits_stored
                  : t == TAG(0x0028, 0x0102) ? &f->high_bit
                  : t == TAG(0x0028, 0x0103) ? &f->pixel_representation
                                             : NULL;
        double *num = t == TAG(0x0028, 0x1050)   ? &f->window_center
                      : t == TAG(0x0028, 0x1051) ? &f->window_width
                      : t == TAG(0x0028, 0x1052) ? &f->intercept
                      : t == TAG(0x0028, 0x1053) ? &f->slope
                                                 : NULL;
        bool have = e.length != UNDEFINED && e.length > 0;
        if (str && have && !get_string(ps, &e, str))
            return false;
        if (us && have && !get_us(ps, &e, us))
            return false;
        if (num && have && !get_number(ps, &e, num))
            return false;
        if (t == TAG(0x0028, 0x1050) && have)
            f->has_window = true;
        if (t == TAG(0x0028, 0x3010) && !read_voi_lut(ps, &e, explicit_vr, f))
            return false;
        if (t == TAG(0x0028, 0x0008) && have) {
            double v;
            if (!get_number(ps, &e, &v))
                return false;
            if (!(v >= 1 && v <= DICOM_MAX_FRAMES) || v != (int)v)
                return fail(ps, pos, t, "Number of Frames %g is not 1 to %d", v, DICOM_MAX_FRAMES);
            f->frames = (int)v;
        }
        if (!skip_element(ps, &e, explicit_vr, 0, &pos))
            return false;
    }
    return true;
}

bool dicom_parse(const void *data, size_t size, dicom_file *f, char *err, size_t errlen)
{
    memset(f, 0, sizeof *f);
    f->data = data;
    f->size = size;
    f->slope = 1;
    f->frames = 1;
    parser ps = {.p = data, .n = size, .space = "byte", .err = err, .errlen = errlen};
    size_t pos = 0;
    if (size >= 132 && memcmp(f->data + 128, "DICM", 4) == 0)
        pos = 132;
    else if (!dicom_sniff(data, size))
        return fail(&ps, 128, 0, "not a DICOM file (no DICM after the preamble)");
    if (!read_meta(&ps, pos, f, &pos))
        return false;
    const char *ts = f->transfer_syntax;
    bool deflated = strcmp(ts, "1.2.840.10008.1.2.1.99") == 0;
    if (!*ts) {
        // No transfer syntax (or no meta group): explicit VR when the first
        // element's VR bytes are letters, else implicit, little endian.
        f->explicit_vr = size - pos >= 6 && isupper(f->data[pos + 4]) && isupper(f->data[pos + 5]);
        f->codec = DICOM_NATIVE;
    } else {
        f->big_endian = strcmp(ts, "1.2.840.10008.1.2.2") == 0;
        f->explicit_vr = strcmp(ts, "1.2.840.10008.1.2") != 0;
        // Unknown syntaxes are encapsulated, explicit VR little endian: the
        // ids can be read, the pixels are refused by dicom_check_image.
        f->codec = DICOM_OTHER;
        for (size_t i = 0; i < sizeof syntaxes / sizeof *syntaxes; i++)
            if (strcmp(ts, syntaxes[i].uid) == 0)
                f->codec = syntaxes[i].codec;
    }
    if (deflated) {
        if (!inflate_dataset(&ps, pos, f))
            return false;
        ps = (parser){.p = f->data, .n = f->size, .space = "inflated byte", .err = err, .errlen = errlen};
        pos = 0;
    }
    // Some writers declare explicit VR and write implicit VR (pydicom reads
    // them too): the first element's VR bytes tell.
    if (f->explicit_vr && !f->big_endian && f->size - pos >= 6 &&
        !(isupper(f->data[pos + 4]) && isupper(f->data[pos + 5])))
        f->explicit_vr = false;
    ps.big = f->big_endian;
    if (!read_dataset(&ps, pos, f->explicit_vr, f)) {
        dicom_free(f);
        return false;
    }
    if (!*f->voi_function)
        strcpy(f->voi_function, "LINEAR");
    return true;
}

void dicom_free(dicom_file *f)
{
    free(f->owned);
    free(f->fragments);
    free(f->frame_first);
    f->owned = NULL;
    f->fragments = NULL;
    f->frame_first = NULL;
}

// ---- the image -------------------------------------------------------------------

static const uint8_t *fragment(const dicom_file *f, int i)
{
    return f->data + f->fragments[i].offset;
}

// Whether fragment i starts a codestream of the file's codec (frames
// without an offset table are found this way).
static bool starts_frame(const dicom_file *f, int i)
{
    const uint8_t *p = fragment(f, i);
    size_t n = f->fragments[i].length;
    if (f->codec == DICOM_J2K)
        return (n >= 4 && memcmp(p, "\xFF\x4F\xFF\x51", 4) == 0) ||
               (n >= 12 && memcmp(p, "\0\0\0\x0CjP  \r\n\x87\n", 12) == 0);
    return n >= 3 && p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF;
}

// Fragments (1 .. nfragments - 1; 0 is the offset table) to frames.
static bool map_frames(dicom_file *f, char *err, size_t errlen)
{
    int nfrag = f->nfragments - 1, frames = f->frames;
    if (nfrag < 1)
        return failf(err, errlen, "byte %zu, tag (7FE0,0010): encapsulated pixel data without fragments",
                      f->pixel_tag_offset);
    int *first = xmalloc(((size_t)frames + 1) * sizeof *first);
    first[0] = 1;
    first[frames] = f->nfragments;
    size_t bot = f->fragments[0].length;
    const uint8_t *table = fragment(f, 0);
    if (frames == 1) {
        // One frame: every fragment.
    } else if (bot) {
        if (bot != 4 * (size_t)frames) {
            free(first);
            return failf(err, errlen, "byte %zu: a basic offset table of %zu entries for %d frames",
                          f->fragments[0].offset, bot / 4, frames);
        }
        // Offsets count from the first fragment's item header.
        size_t origin = f->fragments[1].offset - 8;
        int j = 1;
        for (int k = 0; k < frames; k++) {
            size_t want = origin + rd32(table + 4 * (size_t)k, false);
            while (j < f->nfragments && f->fragments[j].offset - 8 < want)
                j++;
            if (j == f->nfragments || f->fragments[j].offset - 8 != want || (k && j <= first[k - 1]) ||
                (k == 0 && j != 1)) {
                free(first);
                return failf(err, errlen, "byte %zu: offset table entry %d (%u) is not the start of a fragment "
                              "after the previous frame's", f->fragments[0].offset + 4 * (size_t)k, k,
                              rd32(table + 4 * (size_t)k, false));
            }
            first[k] = j;
        }
    } else if (nfrag == frames) {
        for (int k = 0; k < frames; k++)
            first[k] = k + 1;
    } else if (f->codec == DICOM_JPEG || f->codec == DICOM_JPEG_LS || f->codec == DICOM_J2K ||
               f->codec == DICOM_JPEG_LOSSLESS) {
        int k = 0;
        for (int i = 1; i < f->nfragments; i++)
            if (starts_frame(f, i)) {
                if (k == frames) {
                    k++;
                    break;
                }
                first[k++] = i;
            }
        if (k != frames || first[0] != 1) {
            free(first);
            return failf(err, errlen, "byte %zu, tag (7FE0,0010): %d fragments, no offset table, and %d "
                          "codestream starts for %d frames", f->pixel_tag_offset, nfrag, k, frames);
        }
    } else {
        free(first);
        return failf(err, errlen, "byte %zu, tag (7FE0,0010): %d fragments for %d frames and no offset table",
                      f->pixel_tag_offset, nfrag, frames);
    }
    f->frame_first = first;
    return true;
}

static size_t frame_bytes(const dicom_file *f)
{
    size_t px = (size_t)f->rows * f->columns;
    if (strcmp(f->photometric, "YBR_FULL_422") == 0 && f->codec == DICOM_NATIVE)
        return px * 2 * (size_t)(f->bits_allocated / 8);   // Y Y Cb Cr per two pixels
    return px * (size_t)f->samples * (size_t)(f->bits_allocated / 8);
}

bool dicom_check_image(dicom_file *f, char *err, size_t errlen)
{
    const char *ts = f->transfer_syntax, *tsname = dicom_syntax_name(ts);
    if (!f->has_pixels)
        return failf(err, errlen, "no Pixel Data (7FE0,0010): not an image");
    if (f->codec == DICOM_OTHER)
        return failf(err, errlen, "transfer syntax %s (%s) is not read here: convert the file first, e.g. "
                      "gdcmconv --raw IN OUT", ts, tsname ? tsname : "unknown");
    if (f->rows < 1 || f->columns < 1)
        return failf(err, errlen, "Rows (0028,0010) %d, Columns (0028,0011) %d: no image", f->rows, f->columns);
    if (f->bits_allocated != 8 && f->bits_allocated != 16)
        return failf(err, errlen, "Bits Allocated (0028,0100) %d: 8 and 16 only", f->bits_allocated);
    if (f->bits_stored < 1 || f->bits_stored > f->bits_allocated)
        return failf(err, errlen, "Bits Stored (0028,0101) %d with Bits Allocated %d", f->bits_stored,
                      f->bits_allocated);
    if (f->high_bit != f->bits_stored - 1)
        return failf(err, errlen, "High Bit (0028,0102) %d with Bits Stored %d: only High Bit = Bits Stored - 1",
                      f->high_bit, f->bits_stored);
    if (f->pixel_representation != 0 && f->pixel_representation != 1)
        return failf(err, errlen, "Pixel Representation (0028,0103) %d", f->pixel_representation);
    const char *pi = f->photometric;
    bool grey = strcmp(pi, "MONOCHROME1") == 0 || strcmp(pi, "MONOCHROME2") == 0;
    bool colour = strcmp(pi, "RGB") == 0 || strcmp(pi, "YBR_FULL") == 0 || strcmp(pi, "YBR_FULL_422") == 0 ||
                  ((strcmp(pi, "YBR_ICT") == 0 || strcmp(pi, "YBR_RCT") == 0) && f->codec == DICOM_J2K);
    if (!grey && !colour)
        return failf(err, errlen, "Photometric Interpretation (0028,0004) '%s' is not read here "
                      "(MONOCHROME1, MONOCHROME2, RGB, YBR_FULL, YBR_FULL_422)", pi);
    if (f->samples != (grey ? 1 : 3))
        return failf(err, errlen, "Samples per Pixel (0028,0002) %d with %s", f->samples, pi);
    if (colour && f->pixel_representation)
        return failf(err, errlen, "signed colour samples (Pixel Representation 1 with %s)", pi);
    if (f->planar != 0 && f->planar != 1)
        return failf(err, errlen, "Planar Configuration (0028,0006) %d", f->planar);
    if (f->codec == DICOM_NATIVE && strcmp(pi, "YBR_FULL_422") == 0 && (f->columns % 2 || f->planar))
        return failf(err, errlen, "YBR_FULL_422 with %d columns, planar configuration %d: an even number of "
                      "interleaved columns expected", f->columns, f->planar);
    if (!f->encapsulated) {
        if (f->codec != DICOM_NATIVE)
            return failf(err, errlen, "byte %zu, tag (7FE0,0010): native pixel data in transfer syntax %s (%s)",
                          f->pixel_tag_offset, ts, tsname);
        // Sizes: rows, columns < 2^16, samples <= 3, frames <= 10^5: no overflow.
        size_t need = frame_bytes(f) * (size_t)f->frames;
        // Byte-swapped 8-bit samples (decode_native) read whole words.
        if (f->bits_allocated == 8 && f->big_endian && f->pixel_ow)
            need += need & 1;
        if (f->pixel_length < need)
            return failf(err, errlen, "byte %zu, tag (7FE0,0010): %zu bytes of pixel data, fewer than the %zu "
                          "that %d frames of %d x %d x %d samples of %d bits need", f->pixel_tag_offset,
                          f->pixel_length, need, f->frames, f->rows, f->columns, f->samples, f->bits_allocated);
        return true;
    }
    if (f->codec == DICOM_NATIVE)
        return failf(err, errlen, "byte %zu, tag (7FE0,0010): encapsulated pixel data in transfer syntax %s",
                      f->pixel_tag_offset, *ts ? ts : "(none)");
    return f->frame_first || map_frames(f, err, errlen);
}

double dicom_voi_lut(const dicom_file *f, double x)
{
    double i = rint(x) - f->lut_first;
    size_t k = i <= 0 ? 0 : i >= f->lut_count - 1 ? (size_t)f->lut_count - 1 : (size_t)i;
    unsigned v = rd16(f->data + f->lut_offset + 2 * k, f->big_endian) & ((1u << f->lut_bits) - 1);
    return v / (double)((1u << f->lut_bits) - 1);
}

bool dicom_needs_rgb(const dicom_file *f)
{
    return strncmp(f->photometric, "YBR_FULL", 8) == 0 && f->codec != DICOM_JPEG && f->codec != DICOM_J2K;
}

void dicom_ybr_to_rgb(int32_t *planes, size_t n, int bits)
{
    double half = (double)(1 << (bits - 1)), max = (double)((1 << bits) - 1);
    int32_t *y = planes, *cb = planes + n, *cr = planes + 2 * n;
    for (size_t i = 0; i < n; i++) {
        double Y = y[i], B = cb[i] - half, R = cr[i] - half;
        double rgb[3] = {Y + 1.402 * R, Y - 0.344136 * B - 0.714136 * R, Y + 1.772 * B};
        for (int k = 0; k < 3; k++) {
            double v = rgb[k] < 0 ? 0 : rgb[k] > max ? max : rgb[k];
            planes[k * n + i] = (int32_t)(v + 0.5);
        }
    }
}

// ---- decoders ----------------------------------------------------------------------

// Stored value -> pixel value: bits above Bits Stored dropped, then sign
// extension for Pixel Representation 1.
static void mask_values(const dicom_file *f, int32_t *v, size_t n)
{
    uint32_t mask = f->bits_stored == 32 ? 0xFFFFFFFFu : (1u << f->bits_stored) - 1;
    uint32_t sign = 1u << (f->bits_stored - 1);
    for (size_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)v[i] & mask;
        v[i] = f->pixel_representation && (u & sign) ? (int32_t)(u | ~mask) : (int32_t)u;
    }
}

static void decode_native(const dicom_file *f, int k, int32_t *out)
{
    size_t px = (size_t)f->rows * f->columns, bytes = (size_t)f->bits_allocated / 8;
    const uint8_t *p = f->data + f->pixel_offset + frame_bytes(f) * (size_t)k;
    int s = f->samples;
    if (strcmp(f->photometric, "YBR_FULL_422") == 0) {
        // Y0 Y1 Cb Cr for each pair of pixels: chroma repeated.
        for (size_t i = 0; i < px; i += 2) {
            const uint8_t *q = p + i * 2 * bytes;
            int32_t v[4];
            for (int j = 0; j < 4; j++)
                v[j] = bytes == 1 ? q[j] : (int32_t)rd16(q + 2 * j, f->big_endian);
            out[i] = v[0], out[i + 1] = v[1];
            out[px + i] = out[px + i + 1] = v[2];
            out[2 * px + i] = out[2 * px + i + 1] = v[3];
        }
        return;
    }
    // 8-bit samples in an OW value of a big endian file are byte-swapped in
    // 16-bit words (PS3.5 8.1.1).
    bool swap8 = bytes == 1 && f->big_endian && f->pixel_ow;
    for (int c = 0; c < s; c++)
        for (size_t i = 0; i < px; i++) {
            size_t at = f->planar ? (size_t)c * px + i : i * (size_t)s + (size_t)c;
            out[(size_t)c * px + i] = bytes == 1 ? p[swap8 ? at ^ 1 : at] : (int32_t)rd16(p + 2 * at, f->big_endian);
        }
}

// One PackBits segment to exactly n bytes (a segment may carry a padding byte).
static bool unpack_bits(const uint8_t *p, size_t len, uint8_t *out, size_t n)
{
    size_t i = 0, o = 0;
    while (o < n && i < len) {
        int h = (int8_t)p[i++];
        if (h >= 0) {
            size_t run = (size_t)h + 1;
            if (run > len - i || run > n - o)
                return false;
            memcpy(out + o, p + i, run);
            i += run, o += run;
        } else if (h != -128) {
            size_t run = (size_t)(1 - h);
            if (i == len || run > n - o)
                return false;
            memset(out + o, p[i++], run);
            o += run;
        }
    }
    return o == n;
}

static bool decode_rle(const dicom_file *f, const uint8_t *p, size_t len, int32_t *out, char *err, size_t errlen)
{
    size_t px = (size_t)f->rows * f->columns;
    int bytes = f->bits_allocated / 8, nseg = f->samples * bytes;
    if (len < 64)
        return failf(err, errlen, "RLE: a frame of %zu bytes, shorter than its 64-byte header", len);
    uint32_t declared = rd32(p, false);
    if (declared != (uint32_t)nseg)
        return failf(err, errlen, "RLE: %u segments, %d expected for %d samples of %d bits", declared, nseg,
                      f->samples, f->bits_allocated);
    uint8_t *seg = xmalloc(px);
    memset(out, 0, px * (size_t)f->samples * sizeof *out);
    for (int j = 0; j < nseg; j++) {
        uint32_t start = rd32(p + 4 + 4 * j, false);
        uint32_t end = j + 1 < nseg ? rd32(p + 8 + 4 * j, false) : (uint32_t)(len > UINT32_MAX ? UINT32_MAX : len);
        if (start < 64 || start > end || end > len) {
            free(seg);
            return failf(err, errlen, "RLE: segment %d at bytes %u to %u of a %zu-byte frame", j, start, end, len);
        }
        if (!unpack_bits(p + start, end - start, seg, px)) {
            free(seg);
            return failf(err, errlen, "RLE: segment %d does not decode to %zu bytes", j, px);
        }
        // Segments are the bytes of each sample, most significant first.
        int c = j / bytes, shift = 8 * (bytes - 1 - j % bytes);
        int32_t *o = out + (size_t)c * px;
        for (size_t i = 0; i < px; i++)
            o[i] |= (int32_t)seg[i] << shift;
    }
    free(seg);
    return true;
}

static bool decode_jpeg(const dicom_file *f, const uint8_t *p, size_t len, int32_t *out, char *err, size_t errlen)
{
    jpeg_image im;
    uint64_t max = (uint64_t)f->rows * f->columns;
    char inner[256];
    switch (jpeg_decode(p, len, f->samples, 0, max, &im, inner, sizeof inner)) {
    case JPEG_OK: break;
    case JPEG_UNSUPPORTED:
        return failf(err, errlen, "transfer syntax %s (%s): %s; convert the file first, e.g. gdcmconv --raw IN OUT "
                      "or dcmdjpeg IN OUT", f->transfer_syntax, dicom_syntax_name(f->transfer_syntax), inner);
    case JPEG_FAILED: return failf(err, errlen, "JPEG: %s", inner);
    }
    if (im.width != f->columns || im.height != f->rows) {
        free(im.pixels);
        return failf(err, errlen, "JPEG: %dx%d pixels in a %dx%d image", im.width, im.height, f->columns, f->rows);
    }
    size_t n = (size_t)im.width * im.height * (size_t)f->samples;
    for (size_t i = 0; i < n; i++)
        out[i] = im.pixels[i];
    free(im.pixels);
    return true;
}

// JPEG-LS through CharLS: samples of up to 8 bits decode to bytes, wider
// ones to native 16-bit words; interleaved by pixel, by line or not at all.
static bool decode_jpeg_ls(const dicom_file *f, const uint8_t *p, size_t len, int32_t *out, char *err,
                           size_t errlen)
{
    charls_jpegls_decoder *d = charls_jpegls_decoder_create();
    if (!d)
        return failf(err, errlen, "JPEG-LS: CharLS cannot start");
    charls_frame_info fi;
    charls_interleave_mode mode;
    size_t need;
    charls_jpegls_errc ec = charls_jpegls_decoder_set_source_buffer(d, p, len);
    if (!ec)
        ec = charls_jpegls_decoder_read_header(d);
    if (!ec)
        ec = charls_jpegls_decoder_get_frame_info(d, &fi);
    if (!ec)
        ec = charls_jpegls_decoder_get_interleave_mode(d, &mode);
    if (ec) {
        charls_jpegls_decoder_destroy(d);
        return failf(err, errlen, "JPEG-LS: %s", charls_get_error_message(ec));
    }
    // The codestream must be the image the data set describes before its
    // size is allocated.
    if (fi.width != (uint32_t)f->columns || fi.height != (uint32_t)f->rows || fi.component_count != f->samples ||
        fi.bits_per_sample < 2 || fi.bits_per_sample > f->bits_allocated) {
        charls_jpegls_decoder_destroy(d);
        return failf(err, errlen, "JPEG-LS: a %ux%u codestream of %d components of %d bits in a %dx%d image of "
                      "%d samples of %d bits", fi.width, fi.height, fi.component_count, fi.bits_per_sample,
                      f->columns, f->rows, f->samples, f->bits_allocated);
    }
    ec = charls_jpegls_decoder_get_destination_size(d, 0, &need);
    uint8_t *buf = ec ? NULL : xmalloc(need);
    if (!ec)
        ec = charls_jpegls_decoder_decode_to_buffer(d, buf, need, 0);
    charls_jpegls_decoder_destroy(d);
    if (ec) {
        free(buf);
        return failf(err, errlen, "JPEG-LS: %s", charls_get_error_message(ec));
    }
    size_t w = fi.width, h = fi.height, c = (size_t)fi.component_count, px = w * h;
    bool wide = fi.bits_per_sample > 8;
    for (size_t k = 0; k < c; k++)
        for (size_t y = 0; y < h; y++)
            for (size_t x = 0; x < w; x++) {
                size_t at = mode == CHARLS_INTERLEAVE_MODE_SAMPLE ? (y * w + x) * c + k
                            : mode == CHARLS_INTERLEAVE_MODE_LINE ? (y * c + k) * w + x
                                                                  : k * px + y * w + x;
                uint16_t v16;
                if (wide)
                    memcpy(&v16, buf + 2 * at, 2);
                out[k * px + y * w + x] = wide ? v16 : buf[at];
            }
    free(buf);
    return true;
}

// JPEG 2000 through OpenJPEG, from memory.
typedef struct {
    const uint8_t *p;
    size_t n, pos;
} memstream;

static OPJ_SIZE_T ms_read(void *buf, OPJ_SIZE_T n, void *user)
{
    memstream *m = user;
    if (m->pos >= m->n)
        return (OPJ_SIZE_T)-1;
    size_t take = n < m->n - m->pos ? n : m->n - m->pos;
    memcpy(buf, m->p + m->pos, take);
    m->pos += take;
    return take;
}

static OPJ_OFF_T ms_skip(OPJ_OFF_T n, void *user)
{
    memstream *m = user;
    if (n < 0 ? (size_t)-n > m->pos : (size_t)n > m->n - m->pos)
        return -1;
    m->pos += (size_t)n;
    return n;
}

static OPJ_BOOL ms_seek(OPJ_OFF_T to, void *user)
{
    memstream *m = user;
    if (to < 0 || (uint64_t)to > m->n)
        return OPJ_FALSE;
    m->pos = (size_t)to;
    return OPJ_TRUE;
}

// OpenJPEG's messages: the first error is kept, warnings are dropped.
static void opj_on_error(const char *msg, void *user)
{
    char *keep = user;
    if (!*keep)
        snprintf(keep, 200, "%.*s", (int)strcspn(msg, "\n"), msg);
}

static void opj_quiet(const char *msg, void *user)
{
    (void)msg, (void)user;
}

static bool decode_j2k(const dicom_file *f, const uint8_t *p, size_t len, int32_t *out, char *err, size_t errlen)
{
    memstream m = {p, len, 0};
    bool jp2 = len >= 12 && memcmp(p, "\0\0\0\x0CjP  \r\n\x87\n", 12) == 0;
    opj_stream_t *s = opj_stream_create(1 << 16, OPJ_TRUE);
    opj_codec_t *c = opj_create_decompress(jp2 ? OPJ_CODEC_JP2 : OPJ_CODEC_J2K);
    if (!s || !c) {
        if (s)
            opj_stream_destroy(s);
        if (c)
            opj_destroy_codec(c);
        return failf(err, errlen, "JPEG 2000: OpenJPEG cannot start");
    }
    opj_stream_set_user_data(s, &m, NULL);
    opj_stream_set_user_data_length(s, len);
    opj_stream_set_read_function(s, ms_read);
    opj_stream_set_skip_function(s, ms_skip);
    opj_stream_set_seek_function(s, ms_seek);
    char msg[200] = "";
    opj_set_error_handler(c, opj_on_error, msg);
    opj_set_warning_handler(c, opj_quiet, NULL);
    opj_set_info_handler(c, opj_quiet, NULL);
    opj_dparameters_t params;
    opj_set_default_decoder_parameters(&params);
    opj_image_t *img = NULL;
    bool ok = opj_setup_decoder(c, &params) && opj_read_header(s, c, &img);
    if (ok) {
        // The header's image must be the data set's before anything is decoded.
        bool same = img->numcomps == (OPJ_UINT32)f->samples && img->x1 - img->x0 == (OPJ_UINT32)f->columns &&
                    img->y1 - img->y0 == (OPJ_UINT32)f->rows;
        for (OPJ_UINT32 k = 0; same && k < img->numcomps; k++)
            same = img->comps[k].dx == 1 && img->comps[k].dy == 1 && img->comps[k].prec >= 1 &&
                   img->comps[k].prec <= (OPJ_UINT32)f->bits_allocated;
        if (!same) {
            snprintf(err, errlen, "JPEG 2000: a %ux%u codestream of %u components (or subsampled, or wider than %d "
                     "bits) in a %dx%d image of %d samples", img->x1 - img->x0, img->y1 - img->y0, img->numcomps,
                     f->bits_allocated, f->columns, f->rows, f->samples);
            opj_image_destroy(img);
            opj_destroy_codec(c);
            opj_stream_destroy(s);
            return false;
        }
        ok = opj_decode(c, s, img) && opj_end_decompress(c, s);
    }
    opj_destroy_codec(c);
    opj_stream_destroy(s);
    if (ok) {
        size_t px = (size_t)f->rows * f->columns;
        for (OPJ_UINT32 k = 0; ok && k < img->numcomps; k++) {
            opj_image_comp_t *cp = &img->comps[k];
            ok = cp->data && cp->w == (OPJ_UINT32)f->columns && cp->h == (OPJ_UINT32)f->rows;
            for (size_t i = 0; ok && i < px; i++)
                out[k * px + i] = cp->data[i];
        }
        if (!ok)
            snprintf(msg, sizeof msg, "decoded components of another size than the header's");
    }
    if (img)
        opj_image_destroy(img);
    if (!ok)
        return failf(err, errlen, "JPEG 2000: %s", *msg ? msg : "cannot decode");
    return true;
}

static bool decode_ljpeg(const dicom_file *f, const uint8_t *p, size_t len, int32_t *out, char *err, size_t errlen)
{
    int precision;
    if (!ljpeg_decode(p, len, f->columns, f->rows, f->samples, out, &precision, err, errlen))
        return false;
    if (precision > f->bits_allocated)
        return failf(err, errlen, "lossless JPEG: %d-bit samples in a %d-bit image", precision, f->bits_allocated);
    return true;
}

bool dicom_decode_frame(const dicom_file *f, int k, int32_t *out, char *err, size_t errlen)
{
    size_t n = (size_t)f->rows * f->columns * (size_t)f->samples;
    if (!f->encapsulated) {
        decode_native(f, k, out);
        mask_values(f, out, n);
        return true;
    }
    // A frame's fragments, joined (one fragment: in place).
    int a = f->frame_first[k], b = f->frame_first[k + 1];
    const uint8_t *p = fragment(f, a);
    size_t len = f->fragments[a].length;
    uint8_t *joined = NULL;
    if (b - a > 1) {
        len = 0;
        for (int i = a; i < b; i++)
            len += f->fragments[i].length;   // fragments lie within the file: no overflow
        joined = xmalloc(len ? len : 1);
        len = 0;
        for (int i = a; i < b; i++) {
            memcpy(joined + len, fragment(f, i), f->fragments[i].length);
            len += f->fragments[i].length;
        }
        p = joined;
    }
    bool ok;
    switch (f->codec) {
    case DICOM_RLE: ok = decode_rle(f, p, len, out, err, errlen); break;
    case DICOM_JPEG: ok = decode_jpeg(f, p, len, out, err, errlen); break;
    case DICOM_JPEG_LS: ok = decode_jpeg_ls(f, p, len, out, err, errlen); break;
    case DICOM_JPEG_LOSSLESS: ok = decode_ljpeg(f, p, len, out, err, errlen); break;
    case DICOM_J2K: ok = decode_j2k(f, p, len, out, err, errlen); break;
    default: ok = failf(err, errlen, "transfer syntax %s is not decoded here", f->transfer_syntax); break;
    }
    free(joined);
    if (ok)
        mask_values(f, out, n);
    return ok;
}

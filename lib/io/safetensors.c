#include "safetensors.h"

#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

static const struct {
    const char *name;
    size_t size;
} dtypes[ST_NDTYPES] = {
    [ST_BOOL] = {"BOOL", 1}, [ST_U8] = {"U8", 1},   [ST_I8] = {"I8", 1},
    [ST_F8_E5M2] = {"F8_E5M2", 1}, [ST_F8_E4M3] = {"F8_E4M3", 1},
    [ST_I16] = {"I16", 2},   [ST_U16] = {"U16", 2}, [ST_F16] = {"F16", 2}, [ST_BF16] = {"BF16", 2},
    [ST_I32] = {"I32", 4},   [ST_U32] = {"U32", 4}, [ST_F32] = {"F32", 4},
    [ST_F64] = {"F64", 8},   [ST_I64] = {"I64", 8}, [ST_U64] = {"U64", 8},
};

const char *st_dtype_name(st_dtype d) { return dtypes[d].name; }
size_t st_dtype_size(st_dtype d) { return dtypes[d].size; }

static uint64_t get_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

// pread until n bytes or the end of the file; returns the bytes read, -1 on error.
static ssize_t read_at(int fd, void *buf, size_t n, uint64_t at)
{
    size_t got = 0;
    while (got < n) {
        ssize_t k = pread(fd, (uint8_t *)buf + got, n - got, (off_t)(at + got));
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return -1;
        if (k == 0)
            break;
        got += (size_t)k;
    }
    return (ssize_t)got;
}

bool st_sniff(const char *path)
{
    size_t len = strlen(path);
    if (len >= 12 && strcmp(path + len - 12, ".safetensors") == 0)
        return true;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    uint8_t head[9];
    struct stat st;
    bool yes = fstat(fd, &st) == 0 && read_at(fd, head, 9, 0) == 9 && head[8] == '{' &&
               get_le64(head) <= (uint64_t)st.st_size - 8;
    close(fd);
    return yes;
}

// ---- the header --------------------------------------------------------------------

// Bounds what cJSON will build: the values (a node each) and the nesting,
// counted over the raw bytes with strings skipped.  A NUL byte would end
// cJSON's view of the header early, so it is refused here too.
static bool scan_header(const char *h, size_t n, char *err, size_t errlen)
{
    size_t values = 1;
    int depth = 0;
    bool in_string = false;
    for (size_t i = 0; i < n; i++) {
        char c = h[i];
        if (c == 0)
            return failf(err, errlen, "header: a NUL byte at byte %zu of the header", i);
        if (in_string) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_string = false;
            continue;
        }
        if (c == '"')
            in_string = true;
        else if (c == '{' || c == '[') {
            if (++depth > ST_MAX_DEPTH)
                return failf(err, errlen, "header: nesting deeper than %d at byte %zu of the header",
                             ST_MAX_DEPTH, i);
        } else if (c == '}' || c == ']')
            depth--;
        if ((c == ',' || c == ':' || c == '{' || c == '[') && ++values > ST_MAX_VALUES)
            return failf(err, errlen, "header: more than %u values", ST_MAX_VALUES);
    }
    return true;
}

// A JSON number that is an integer in [0, max].
static bool json_uint(const cJSON *v, double max, uint64_t *out)
{
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0 && v->valuedouble <= max) ||
        v->valuedouble != floor(v->valuedouble))
        return false;
    *out = (uint64_t)v->valuedouble;
    return true;
}

static bool parse_entry(const cJSON *item, st_entry *e, uint64_t data_size, char *err, size_t errlen)
{
    const char *name = item->string;
    if (!cJSON_IsObject(item))
        return failf(err, errlen, "tensor '%s': not an object", name);
    const cJSON *dtype = NULL, *shape = NULL, *offsets = NULL;
    for (const cJSON *f = item->child; f; f = f->next) {
        const cJSON **slot = strcmp(f->string, "dtype") == 0 ? &dtype : strcmp(f->string, "shape") == 0 ? &shape
                             : strcmp(f->string, "data_offsets") == 0 ? &offsets : NULL;
        if (!slot)
            return failf(err, errlen, "tensor '%s': unknown field '%s'", name, f->string);
        if (*slot)
            return failf(err, errlen, "tensor '%s': field '%s' twice", name, f->string);
        *slot = f;
    }
    if (!dtype || !shape || !offsets)
        return failf(err, errlen, "tensor '%s': no '%s'", name, !dtype ? "dtype" : !shape ? "shape" : "data_offsets");
    int d = 0;
    while (d < ST_NDTYPES && !(cJSON_IsString(dtype) && strcmp(dtype->valuestring, dtypes[d].name) == 0))
        d++;
    if (d == ST_NDTYPES)
        return failf(err, errlen, "tensor '%s': unknown dtype %s%s%s", name, cJSON_IsString(dtype) ? "'" : "",
                     cJSON_IsString(dtype) ? dtype->valuestring : "(not a string)", cJSON_IsString(dtype) ? "'" : "");
    e->dtype = (st_dtype)d;
    if (!cJSON_IsArray(shape))
        return failf(err, errlen, "tensor '%s': shape is not an array", name);
    int rank = cJSON_GetArraySize(shape);
    if (rank > ST_MAX_RANK)
        return failf(err, errlen, "tensor '%s': rank %d, over the limit of %d", name, rank, ST_MAX_RANK);
    e->rank = rank;
    // The product is bounded by the data section, so it cannot overflow
    // once every factor is checked against it.
    uint64_t count = 1;
    bool empty = false;
    int k = 0;
    for (const cJSON *s = shape->child; s; s = s->next, k++) {
        uint64_t v;
        if (!json_uint(s, 9007199254740992.0, &v))
            return failf(err, errlen, "tensor '%s': shape[%d] is not an integer >= 0", name, k);
        e->shape[k] = (int64_t)v;
        if (v == 0)
            empty = true;
        else if (!empty && count > data_size / v)
            return failf(err, errlen, "tensor '%s': its shape holds more elements than the data section has bytes",
                         name);
        else if (!empty)
            count *= v;
    }
    e->count = empty ? 0 : count;
    uint64_t begin, end;
    if (!cJSON_IsArray(offsets) || cJSON_GetArraySize(offsets) != 2 ||
        !json_uint(offsets->child, 9007199254740992.0, &begin) ||
        !json_uint(offsets->child->next, 9007199254740992.0, &end) || end < begin)
        return failf(err, errlen, "tensor '%s': data_offsets is not [BEGIN, END] with 0 <= BEGIN <= END", name);
    if (end > data_size)
        return failf(err, errlen, "tensor '%s': data_offsets [%llu, %llu] past the data section (%llu bytes)",
                     name, (unsigned long long)begin, (unsigned long long)end, (unsigned long long)data_size);
    if (e->count > data_size / dtypes[d].size || end - begin != e->count * dtypes[d].size)
        return failf(err, errlen, "tensor '%s': data_offsets [%llu, %llu] hold %llu bytes, %llu %s elements need %llu",
                     name, (unsigned long long)begin, (unsigned long long)end, (unsigned long long)(end - begin),
                     (unsigned long long)e->count, dtypes[d].name,
                     (unsigned long long)(e->count * dtypes[d].size));
    e->begin = begin;
    e->end = end;
    e->name = xstrdup(name);
    return true;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const st_entry *)a)->name, ((const st_entry *)b)->name);
}

static int by_begin(const void *a, const void *b)
{
    const st_entry *x = a, *y = b;
    // Empty tensors may share an offset with their neighbour: order them first.
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    return (x->end > x->begin) - (y->end > y->begin);
}

static bool parse_header(st_file *f, const cJSON *root, char *err, size_t errlen)
{
    if (!cJSON_IsObject(root))
        return failf(err, errlen, "header: not a JSON object");
    int n = cJSON_GetArraySize(root);
    f->entries = xcalloc((size_t)n + 1, sizeof *f->entries);
    const cJSON *meta = NULL;
    for (const cJSON *item = root->child; item; item = item->next) {
        if (strcmp(item->string, "__metadata__") == 0) {
            if (meta)
                return failf(err, errlen, "header: duplicate key '__metadata__'");
            meta = item;
            continue;
        }
        if (!parse_entry(item, &f->entries[f->count], f->data_size, err, errlen))
            return false;
        f->count++;
    }
    if (meta) {
        if (!cJSON_IsObject(meta))
            return failf(err, errlen, "__metadata__: not an object");
        int m = cJSON_GetArraySize(meta);
        f->meta_keys = xcalloc((size_t)m + 1, sizeof *f->meta_keys);
        f->meta_values = xcalloc((size_t)m + 1, sizeof *f->meta_values);
        for (const cJSON *kv = meta->child; kv; kv = kv->next) {
            if (!cJSON_IsString(kv))
                return failf(err, errlen, "__metadata__: the value of '%s' is not a string", kv->string);
            for (int i = 0; i < f->nmeta; i++)
                if (strcmp(f->meta_keys[i], kv->string) == 0)
                    return failf(err, errlen, "__metadata__: duplicate key '%s'", kv->string);
            f->meta_keys[f->nmeta] = xstrdup(kv->string);
            f->meta_values[f->nmeta++] = xstrdup(kv->valuestring);
        }
    }
    qsort(f->entries, (size_t)f->count, sizeof *f->entries, by_name);
    for (int i = 1; i < f->count; i++)
        if (strcmp(f->entries[i - 1].name, f->entries[i].name) == 0)
            return failf(err, errlen, "header: duplicate tensor '%s'", f->entries[i].name);
    qsort(f->entries, (size_t)f->count, sizeof *f->entries, by_begin);
    uint64_t at = 0;
    for (int i = 0; i < f->count; i++) {
        const st_entry *e = &f->entries[i];
        if (e->begin > at)
            return failf(err, errlen, "data: bytes %llu to %llu belong to no tensor (before '%s')",
                         (unsigned long long)at, (unsigned long long)e->begin, e->name);
        if (e->begin < at)
            return failf(err, errlen, "data: tensor '%s' at [%llu, %llu] overlaps '%s'", e->name,
                         (unsigned long long)e->begin, (unsigned long long)e->end, f->entries[i - 1].name);
        at = e->end;
    }
    if (at != f->data_size)
        return failf(err, errlen, "data: %llu bytes after the last tensor belong to none",
                     (unsigned long long)(f->data_size - at));
    return true;
}

st_file *st_open(const char *path, char *err, size_t errlen)
{
    st_file *f = xcalloc(1, sizeof *f);
    f->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (f->fd < 0) {
        failf(err, errlen, "cannot open: %s", strerror(errno));
        st_close(f);
        return NULL;
    }
    struct stat st;
    uint8_t len8[8];
    char *header = NULL;
    cJSON *root = NULL;
    bool ok = false;
    if (fstat(f->fd, &st) != 0) {
        failf(err, errlen, "cannot stat: %s", strerror(errno));
        goto done;
    }
    uint64_t size = (uint64_t)st.st_size;
    if (size < 8 || read_at(f->fd, len8, 8, 0) != 8) {
        failf(err, errlen, "header: %llu bytes, too short for the header length", (unsigned long long)size);
        goto done;
    }
    uint64_t n = get_le64(len8);
    if (n > size - 8) {
        failf(err, errlen, "header: a header of %llu bytes in a file of %llu", (unsigned long long)n,
              (unsigned long long)size);
        goto done;
    }
    if (n > ST_MAX_HEADER) {
        failf(err, errlen, "header: %llu bytes, over the limit of %u", (unsigned long long)n, ST_MAX_HEADER);
        goto done;
    }
    header = xmalloc(n + 1);
    if (read_at(f->fd, header, n, 8) != (ssize_t)n) {
        failf(err, errlen, "header: read error: %s", strerror(errno));
        goto done;
    }
    header[n] = 0;
    if (n == 0 || header[0] != '{') {
        failf(err, errlen, "header: does not start with '{'");
        goto done;
    }
    if (!scan_header(header, n, err, errlen))
        goto done;
    const char *end = NULL;
    // The length includes the terminating NUL: cJSON wants to see it after
    // the trailing spaces when told to refuse anything after the object.
    root = cJSON_ParseWithLengthOpts(header, n + 1, &end, 1);
    if (!root) {
        failf(err, errlen, "header: invalid JSON at byte %zu of the header", end ? (size_t)(end - header) : 0);
        goto done;
    }
    f->data_start = 8 + n;
    f->data_size = size - 8 - n;
    ok = parse_header(f, root, err, errlen);
done:
    cJSON_Delete(root);
    free(header);
    if (!ok) {
        st_close(f);
        return NULL;
    }
    return f;
}

void st_close(st_file *f)
{
    if (!f)
        return;
    if (f->fd >= 0)
        close(f->fd);
    for (int i = 0; i < f->count; i++)
        free(f->entries[i].name);
    free(f->entries);
    for (int i = 0; i < f->nmeta; i++) {
        free(f->meta_keys[i]);
        free(f->meta_values[i]);
    }
    free(f->meta_keys);
    free(f->meta_values);
    free(f);
}

const st_entry *st_find(const st_file *f, const char *name)
{
    for (int i = 0; i < f->count; i++)
        if (strcmp(f->entries[i].name, name) == 0)
            return &f->entries[i];
    return NULL;
}

const char *st_meta(const st_file *f, const char *key)
{
    for (int i = 0; i < f->nmeta; i++)
        if (strcmp(f->meta_keys[i], key) == 0)
            return f->meta_values[i];
    return NULL;
}

// ---- tensor data ---------------------------------------------------------------------

static bool read_entry(const st_file *f, const st_entry *e, void *out, char *err, size_t errlen)
{
    size_t n = (size_t)(e->end - e->begin);
    ssize_t got = read_at(f->fd, out, n, f->data_start + e->begin);
    if (got != (ssize_t)n)
        return failf(err, errlen, "tensor '%s': %s", e->name, got < 0 ? strerror(errno) : "the file got shorter");
    return true;
}

// IEEE half to float, subnormals, infinities and NaN included.
static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 31, mant = h & 1023;
    float v;
    if (exp == 0)
        v = ldexpf((float)mant, -24);
    else if (exp == 31)
        v = mant ? NAN : INFINITY;
    else
        v = ldexpf((float)(mant | 1024), (int)exp - 25);
    return sign ? -v : v;
}

bool st_read_f32(const st_file *f, const st_entry *e, float *out, char *err, size_t errlen)
{
    size_t n = (size_t)e->count;
    const uint8_t *p;
    uint8_t *tmp = NULL;
    switch (e->dtype) {
    case ST_F32:
        return read_entry(f, e, out, err, errlen);
    case ST_F16:
    case ST_BF16:
        // Two bytes each: read into the upper half of `out`, convert upward.
        p = (uint8_t *)out + 2 * n;
        if (!read_entry(f, e, (void *)p, err, errlen))
            return false;
        for (size_t i = 0; i < n; i++) {
            uint16_t h = (uint16_t)(p[2 * i] | p[2 * i + 1] << 8);
            if (e->dtype == ST_F16) {
                out[i] = half_to_float(h);
            } else {
                uint32_t bits = (uint32_t)h << 16;
                memcpy(&out[i], &bits, 4);
            }
        }
        return true;
    case ST_F64:
        tmp = xmalloc(n * 8 + 1);
        if (!read_entry(f, e, tmp, err, errlen)) {
            free(tmp);
            return false;
        }
        for (size_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, tmp + 8 * i, 8);
            out[i] = (float)d;
        }
        free(tmp);
        return true;
    default:
        return failf(err, errlen, "tensor '%s': %s, not a floating-point dtype (F32, F16, BF16, F64)", e->name,
                     dtypes[e->dtype].name);
    }
}

bool st_read_i64(const st_file *f, const st_entry *e, int64_t *out, char *err, size_t errlen)
{
    if (e->dtype != ST_I64)
        return failf(err, errlen, "tensor '%s': %s, expected I64", e->name, dtypes[e->dtype].name);
    return read_entry(f, e, out, err, errlen);
}

// ---- writing -------------------------------------------------------------------------

typedef struct {
    char *name;
    st_dtype dtype;
    int rank;
    int64_t shape[ST_MAX_RANK];
    const void *data;
    size_t nbytes;
} st_item;

struct st_writer {
    int count, cap;
    st_item *items;
    cJSON *meta;
};

st_writer *st_writer_new(void)
{
    st_writer *w = xcalloc(1, sizeof *w);
    w->meta = cJSON_CreateObject();
    if (!w->meta || !cJSON_AddStringToObject(w->meta, "format", "pt"))
        die("safetensors", "out of memory");
    return w;
}

void st_add(st_writer *w, const char *name, st_dtype d, int rank, const int64_t *shape, const void *data)
{
    if (rank < 0 || rank > ST_MAX_RANK)
        die("safetensors", "%s: rank %d", name, rank);
    if (w->count == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 256;
        w->items = xrealloc(w->items, (size_t)w->cap * sizeof *w->items);
    }
    st_item *it = &w->items[w->count++];
    *it = (st_item){.name = xstrdup(name), .dtype = d, .rank = rank, .data = data};
    size_t n = dtypes[d].size;
    for (int k = 0; k < rank; k++) {
        it->shape[k] = shape[k];
        n = mul_size(n, (size_t)shape[k], name);
    }
    it->nbytes = n;
}

void st_add_meta(st_writer *w, const char *key, const char *value)
{
    if (!cJSON_AddStringToObject(w->meta, key, value))
        die("safetensors", "out of memory");
}

static void write_all(int fd, const void *p, size_t n, const char *path)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t k = write(fd, b, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            die(path, "write: %s", strerror(errno));
        b += k;
        n -= (size_t)k;
    }
}

void st_write(st_writer *w, const char *path)
{
    cJSON *root = cJSON_CreateObject();
    if (!root)
        die("safetensors", "out of memory");
    cJSON_AddItemToObject(root, "__metadata__", w->meta);
    // Wider dtypes first, each in the order added: with the data section
    // 8-byte aligned, every tensor is then aligned to its element size, as
    // the format's reference writer leaves them (readers may map the file).
    int *order = xmalloc(((size_t)w->count + 1) * sizeof *order), n = 0;
    for (size_t size = 8; size >= 1; size /= 2)
        for (int i = 0; i < w->count; i++)
            if (dtypes[w->items[i].dtype].size == size)
                order[n++] = i;
    uint64_t at = 0;
    for (int i = 0; i < w->count; i++) {
        const st_item *it = &w->items[order[i]];
        cJSON *e = cJSON_CreateObject(), *shape = cJSON_CreateArray(), *offsets = cJSON_CreateArray();
        if (!e || !shape || !offsets || !cJSON_AddStringToObject(e, "dtype", dtypes[it->dtype].name))
            die("safetensors", "out of memory");
        for (int k = 0; k < it->rank; k++)
            cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)it->shape[k]));
        cJSON_AddItemToArray(offsets, cJSON_CreateNumber((double)at));
        at += it->nbytes;
        cJSON_AddItemToArray(offsets, cJSON_CreateNumber((double)at));
        cJSON_AddItemToObject(e, "shape", shape);
        cJSON_AddItemToObject(e, "data_offsets", offsets);
        cJSON_AddItemToObject(root, it->name, e);
    }
    char *json = cJSON_PrintUnformatted(root);
    if (!json)
        die("safetensors", "out of memory");
    // The data section starts 8-byte aligned, as the format's writers do.
    size_t len = strlen(json), padded = (len + 7) & ~(size_t)7;
    char *header = xmalloc(padded);
    memcpy(header, json, len);
    memset(header + len, ' ', padded - len);
    uint8_t len8[8];
    for (int k = 0; k < 8; k++)
        len8[k] = (uint8_t)((uint64_t)padded >> (8 * k));
    char *temp;
    int fd = temp_create_beside(path, &temp);
    write_all(fd, len8, 8, path);
    write_all(fd, header, padded, path);
    for (int i = 0; i < w->count; i++)
        write_all(fd, w->items[order[i]].data, w->items[order[i]].nbytes, path);
    if (fsync(fd) != 0 || close(fd) != 0)
        die(path, "write: %s", strerror(errno));
    temp_commit(temp, path);
    free(order);
    free(header);
    free(json);
    cJSON_Delete(root);
    for (int i = 0; i < w->count; i++)
        free(w->items[i].name);
    free(w->items);
    free(w);
}

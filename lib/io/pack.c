#include "pack.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "util.h"

static const char *const task_names[] = {"none", "multiclass", "multilabel"};

const char *pack_task_name(pack_task t) { return task_names[t]; }

// ---- writing -------------------------------------------------------------------

struct pack_writer {
    mts_writer *out;
    pack_meta meta;
    int zstd_level;
    ZSTD_CCtx *cctx;
    msgpack_sbuffer frame;   // one case record, built in memory
    void *zbuf;
    size_t zcap;
    // The index, grown as cases are written.
    int64_t ncases, cap;
    int64_t *offsets, *sizes;
    int32_t *ninst, *label;
    uint8_t *split, *labeled, *labels;
    char *names;
    size_t names_len, names_cap;
};

static void pack_strings(msgpack_packer *pk, char **s, int n)
{
    msgpack_pack_array(pk, (size_t)n);
    for (int i = 0; i < n; i++)
        mts_pack_str(pk, s[i]);
}

void pack_put_meta(mts_writer *w, const pack_meta *m)
{
    mts_put_str(w, "task", pack_task_name(m->task));
    mts_put_key(w, "classes");
    pack_strings(mts_packer(w), m->classes, m->nclasses);
    mts_put_int(w, "channels", m->channels);
    mts_put_str(w, "dtype", mts_dtype_name(m->dtype));
    mts_put_int(w, "size", m->size);
}

pack_writer *pack_writer_open(const char *path, const pack_meta *meta, int zstd_level,
                              int argc, char **argv)
{
    pack_writer *w = xcalloc(1, sizeof *w);
    mts_write_opts raw = {.zstd_level = 0};
    w->out = mts_writer_open(path, &raw);
    w->meta = *meta;
    w->zstd_level = zstd_level;
    if (zstd_level > 0) {
        w->cctx = ZSTD_createCCtx();
        if (!w->cctx)
            die("zstd", "cannot create a compression context");
        ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_compressionLevel, zstd_level);
        ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_checksumFlag, 1);
    }
    msgpack_sbuffer_init(&w->frame);
    mts_write_header(w->out, "case-pack", argc, argv, 3 + PACK_META_KEYS);
    mts_put_int(w->out, "pack", 1);
    mts_put_key(w->out, "splits");
    pack_strings(mts_packer(w->out), meta->splits, meta->nsplits);
    mts_put_bool(w->out, "centre_crop", meta->centre_crop);
    pack_put_meta(w->out, meta);
    return w;
}

void pack_write_case(pack_writer *w, const pack_case *c)
{
    const pack_meta *m = &w->meta;
    msgpack_sbuffer_clear(&w->frame);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &w->frame, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 5 + (c->labeled ? 1 : 0));
    mts_pack_str(&pk, "case");
    mts_pack_str(&pk, c->id);
    mts_pack_str(&pk, "split");
    mts_pack_str(&pk, m->splits[c->split]);
    if (c->labeled) {
        mts_pack_str(&pk, "label");
        if (m->task == TASK_MULTILABEL) {
            msgpack_pack_array(&pk, (size_t)m->nclasses);
            for (int k = 0; k < m->nclasses; k++)
                msgpack_pack_int(&pk, c->labels[k]);
        } else {
            msgpack_pack_int(&pk, c->label);
        }
    }
    mts_pack_str(&pk, "images");
    msgpack_pack_array(&pk, (size_t)c->ninst);
    for (int i = 0; i < c->ninst; i++)
        mts_pack_tensor(&pk, &c->images[i]);
    mts_pack_str(&pk, "files");
    msgpack_pack_array(&pk, (size_t)c->ninst);
    for (int i = 0; i < c->ninst; i++)
        mts_pack_str(&pk, c->files[i]);
    mts_pack_str(&pk, "pages");
    msgpack_pack_array(&pk, (size_t)c->ninst);
    for (int i = 0; i < c->ninst; i++)
        msgpack_pack_int(&pk, c->pages[i]);

    const void *bytes = w->frame.data;
    size_t n = w->frame.size;
    if (w->cctx) {
        size_t bound = ZSTD_compressBound(n);
        if (bound > w->zcap) {
            w->zbuf = xrealloc(w->zbuf, bound);
            w->zcap = bound;
        }
        size_t z = ZSTD_compress2(w->cctx, w->zbuf, w->zcap, bytes, n);
        if (ZSTD_isError(z))
            die("zstd", "%s", ZSTD_getErrorName(z));
        bytes = w->zbuf;
        n = z;
    }

    if (w->ncases == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 1024;
        size_t cap = (size_t)w->cap;
        w->offsets = xrealloc(w->offsets, cap * sizeof *w->offsets);
        w->sizes = xrealloc(w->sizes, cap * sizeof *w->sizes);
        w->ninst = xrealloc(w->ninst, cap * sizeof *w->ninst);
        w->label = xrealloc(w->label, cap * sizeof *w->label);
        w->split = xrealloc(w->split, cap);
        w->labeled = xrealloc(w->labeled, cap);
        if (m->task == TASK_MULTILABEL)
            w->labels = xrealloc(w->labels, cap * (size_t)m->nclasses);
    }
    int64_t i = w->ncases++;
    w->offsets[i] = (int64_t)mts_writer_offset(w->out);
    w->sizes[i] = (int64_t)n;
    w->ninst[i] = c->ninst;
    w->split[i] = (uint8_t)c->split;
    w->labeled[i] = c->labeled;
    w->label[i] = c->labeled && m->task == TASK_MULTICLASS ? c->label : -1;
    if (m->task == TASK_MULTILABEL) {
        for (int k = 0; k < m->nclasses; k++)
            w->labels[i * m->nclasses + k] = c->labeled ? c->labels[k] : 0;
    }
    size_t idlen = strlen(c->id) + 1;
    if (w->names_len + idlen > w->names_cap) {
        w->names_cap = 2 * (w->names_len + idlen) + 4096;
        w->names = xrealloc(w->names, w->names_cap);
    }
    memcpy(w->names + w->names_len, c->id, idlen);
    w->names_len += idlen;
    mts_write_bytes(w->out, bytes, n);
}

void pack_writer_close(pack_writer *w)
{
    const pack_meta *m = &w->meta;
    uint64_t index_at = mts_writer_offset(w->out);
    int64_t n = w->ncases;
    int64_t shape1[1] = {n}, shape2[2] = {n, m->nclasses}, names_shape[1] = {(int64_t)w->names_len};
    mts_tensor t;
    mts_begin_map(w->out, 9);
    mts_put_int(w->out, "mts", MTS_VERSION);
    mts_put_int(w->out, "pack_index", 1);
    t = mts_tensor_make(MTS_I64, 1, shape1, w->offsets);
    mts_put_tensor(w->out, "offsets", &t);
    t = mts_tensor_make(MTS_I64, 1, shape1, w->sizes);
    mts_put_tensor(w->out, "sizes", &t);
    t = mts_tensor_make(MTS_I32, 1, shape1, w->ninst);
    mts_put_tensor(w->out, "ninst", &t);
    t = mts_tensor_make(MTS_U8, 1, shape1, w->split);
    mts_put_tensor(w->out, "split", &t);
    t = mts_tensor_make(MTS_U8, 1, shape1, w->labeled);
    mts_put_tensor(w->out, "labeled", &t);
    if (m->task == TASK_MULTILABEL)
        t = mts_tensor_make(MTS_U8, 2, shape2, w->labels);
    else
        t = mts_tensor_make(MTS_I32, 1, shape1, w->label);
    mts_put_tensor(w->out, "label", &t);
    t = mts_tensor_make(MTS_U8, 1, names_shape, w->names);
    mts_put_tensor(w->out, "names", &t);
    // The footer: fixed layout, so that it can be found from the end.
    uint8_t footer[PACK_FOOTER_SIZE] = {0x82, 0xa3, 'm', 't', 's', 0x01, 0xad,
                                        'p', 'a', 'c', 'k', '_', 'i', 'n', 'd', 'e', 'x', '_', 'a', 't',
                                        0xcf};
    for (int b = 0; b < 8; b++)
        footer[21 + b] = (uint8_t)(index_at >> (56 - 8 * b));
    mts_write_bytes(w->out, footer, sizeof footer);
    mts_writer_close(w->out);
    ZSTD_freeCCtx(w->cctx);
    msgpack_sbuffer_destroy(&w->frame);
    free(w->zbuf);
    free(w->offsets);
    free(w->sizes);
    free(w->ninst);
    free(w->label);
    free(w->split);
    free(w->labeled);
    free(w->labels);
    free(w->names);
    free(w);
}

// ---- reading -------------------------------------------------------------------

static char **copy_strings(const msgpack_object *o, int *n, int max, const char *what,
                           char *err, size_t errlen)
{
    if (!o || o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size > (uint32_t)max) {
        failf(err, errlen, "header: %s must be an array of at most %d strings", what, max);
        return NULL;
    }
    // *n is set only on success: pack_close frees *n strings.
    int count = (int)o->via.array.size;
    char **s = xcalloc((size_t)count + 1, sizeof *s);
    for (int i = 0; i < count; i++) {
        const msgpack_object *e = &o->via.array.ptr[i];
        if (e->type != MSGPACK_OBJECT_STR || e->via.str.size >= PACK_NAME_MAX) {
            for (int j = 0; j < i; j++)
                free(s[j]);
            free(s);
            failf(err, errlen, "header: %s[%d] must be a string shorter than %d bytes", what, i,
                  PACK_NAME_MAX);
            return NULL;
        }
        s[i] = xmalloc(e->via.str.size + 1);
        memcpy(s[i], e->via.str.ptr, e->via.str.size);
        s[i][e->via.str.size] = 0;
    }
    *n = count;
    return s;
}

static bool get_int(const mts_frame *f, const char *key, int64_t lo, int64_t hi, int64_t *out)
{
    const msgpack_object *o = mts_get(f, key);
    if (!o || o->type != MSGPACK_OBJECT_POSITIVE_INTEGER || (int64_t)o->via.u64 < lo ||
        o->via.u64 > (uint64_t)hi)
        return false;
    *out = (int64_t)o->via.u64;
    return true;
}

static bool read_header(pack_t *p, char *err, size_t errlen)
{
    mts_reader *r = mts_reader_range(p->fd, 0, p->file_size, p->path, &p->lim);
    mts_frame f;
    bool ok = false;
    if (mts_read(r, &f) != 1 || !f.is_header) {
        failf(err, errlen, "not a pack: %s", mts_read(r, &f) < 0 ? mts_reader_error(r) : "no header");
        goto done;
    }
    int64_t v;
    if (!get_int(&f, "pack", 1, 1, &v)) {
        failf(err, errlen, "not a pack (the header has no \"pack\": 1; made by another tool?)");
        goto done;
    }
    pack_meta *m = &p->meta;
    char task[32] = "";
    const msgpack_object *o = mts_get(&f, "task");
    if (o && o->type == MSGPACK_OBJECT_STR && o->via.str.size < sizeof task)
        memcpy(task, o->via.str.ptr, o->via.str.size);
    if (strcmp(task, "none") == 0) m->task = TASK_NONE;
    else if (strcmp(task, "multiclass") == 0) m->task = TASK_MULTICLASS;
    else if (strcmp(task, "multilabel") == 0) m->task = TASK_MULTILABEL;
    else {
        failf(err, errlen, "header: task must be none, multiclass or multilabel");
        goto done;
    }
    if (!(m->classes = copy_strings(mts_get(&f, "classes"), &m->nclasses, PACK_MAX_CLASSES, "classes", err, errlen)))
        goto done;
    if (!(m->splits = copy_strings(mts_get(&f, "splits"), &m->nsplits, PACK_MAX_SPLITS, "splits", err, errlen)))
        goto done;
    if (!get_int(&f, "channels", 1, 3, &v) || v == 2) {
        failf(err, errlen, "header: channels must be 1 or 3");
        goto done;
    }
    m->channels = (int)v;
    o = mts_get(&f, "dtype");
    if (!o || o->type != MSGPACK_OBJECT_STR || !mts_dtype_parse(o->via.str.ptr, o->via.str.size, &m->dtype) ||
        (m->dtype != MTS_U8 && m->dtype != MTS_U16)) {
        failf(err, errlen, "header: dtype must be u8 or u16");
        goto done;
    }
    if (!get_int(&f, "size", 0, 1 << 20, &v)) {
        failf(err, errlen, "header: size must be a non-negative integer");
        goto done;
    }
    m->size = (int)v;
    o = mts_get(&f, "centre_crop");
    m->centre_crop = o && o->type == MSGPACK_OBJECT_BOOLEAN && o->via.boolean;
    ok = true;
done:
    mts_reader_close(r);
    return ok;
}

// Copies an index tensor into a new array after checking dtype and shape.
static void *index_array(const mts_frame *f, const char *key, mts_dtype dtype, int64_t n, int64_t k,
                         char *err, size_t errlen)
{
    const msgpack_object *o = mts_get(f, key);
    mts_tensor t;
    char why[300];
    if (!o || !mts_object_tensor(o, &t, why, sizeof why)) {
        failf(err, errlen, "index: %s: %s", key, o ? why : "missing");
        return NULL;
    }
    bool shape_ok = k ? t.rank == 2 && t.shape[0] == n && t.shape[1] == k
                      : t.rank == 1 && (n < 0 || t.shape[0] == n);
    if (t.dtype != dtype || !shape_ok) {
        failf(err, errlen, "index: %s: expected %s of %lld entries", key, mts_dtype_name(dtype), (long long)n);
        return NULL;
    }
    void *a = xmalloc(t.nbytes + 1);
    memcpy(a, t.data, t.nbytes);
    return a;
}

bool pack_open(const char *path, pack_t *p, char *err, size_t errlen)
{
    memset(p, 0, sizeof *p);
    p->fd = -1;
    p->path = xstrdup(path);
    p->lim = mts_limits_default();
    p->fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (p->fd < 0 || fstat(p->fd, &st) != 0) {
        failf(err, errlen, "cannot open: %s", strerror(errno));
        goto fail;
    }
    p->file_size = (uint64_t)st.st_size;
    uint8_t footer[PACK_FOOTER_SIZE];
    static const uint8_t want[21] = {0x82, 0xa3, 'm', 't', 's', 0x01, 0xad, 'p', 'a', 'c', 'k',
                                     '_', 'i', 'n', 'd', 'e', 'x', '_', 'a', 't', 0xcf};
    if (p->file_size < PACK_FOOTER_SIZE ||
        pread(p->fd, footer, sizeof footer, (off_t)(p->file_size - PACK_FOOTER_SIZE)) != PACK_FOOTER_SIZE ||
        memcmp(footer, want, sizeof want) != 0) {
        failf(err, errlen, "not a pack, or an incomplete one (no index footer at the end; "
                           "was case-pack interrupted?)");
        goto fail;
    }
    uint64_t index_at = 0;
    for (int b = 0; b < 8; b++)
        index_at = index_at << 8 | footer[21 + b];
    uint64_t index_end = p->file_size - PACK_FOOTER_SIZE;
    if (index_at >= index_end) {
        failf(err, errlen, "index offset %llu is outside the file", (unsigned long long)index_at);
        goto fail;
    }
    if (!read_header(p, err, errlen))
        goto fail;

    mts_reader *r = mts_reader_range(p->fd, index_at, index_end - index_at, path, &p->lim);
    mts_frame f;
    if (mts_read(r, &f) != 1 || !mts_get(&f, "pack_index")) {
        failf(err, errlen, "index at byte %llu: %s", (unsigned long long)index_at,
              mts_reader_error(r)[0] ? mts_reader_error(r) : "not an index frame");
        mts_reader_close(r);
        goto fail;
    }
    const msgpack_object *off = mts_get(&f, "offsets");
    mts_tensor t;
    char why[300];
    if (!off || !mts_object_tensor(off, &t, why, sizeof why) || t.rank != 1) {
        failf(err, errlen, "index: offsets: %s", off ? why : "missing");
        mts_reader_close(r);
        goto fail;
    }
    int64_t n = p->ncases = t.shape[0];
    int64_t k = p->meta.task == TASK_MULTILABEL ? p->meta.nclasses : 0;
    bool ok = (p->offsets = index_array(&f, "offsets", MTS_I64, n, 0, err, errlen)) &&
              (p->sizes = index_array(&f, "sizes", MTS_I64, n, 0, err, errlen)) &&
              (p->ninst = index_array(&f, "ninst", MTS_I32, n, 0, err, errlen)) &&
              (p->split = index_array(&f, "split", MTS_U8, n, 0, err, errlen)) &&
              (p->labeled = index_array(&f, "labeled", MTS_U8, n, 0, err, errlen)) &&
              (k ? (p->labels = index_array(&f, "label", MTS_U8, n, k, err, errlen)) != NULL
                 : (p->label = index_array(&f, "label", MTS_I32, n, 0, err, errlen)) != NULL) &&
              (p->name_block = index_array(&f, "names", MTS_U8, -1, 0, err, errlen));
    size_t names_len = 0;
    if (ok) {
        const msgpack_object *nm = mts_get(&f, "names");
        mts_object_tensor(nm, &t, why, sizeof why);
        names_len = t.nbytes;
    }
    mts_reader_close(r);
    if (!ok)
        goto fail;

    // Every entry is checked before anyone trusts it.
    p->names = xcalloc((size_t)n + 1, sizeof *p->names);
    size_t pos = 0;
    for (int64_t i = 0; i < n; i++) {
        if (p->offsets[i] < 0 || p->sizes[i] <= 0 || (uint64_t)p->offsets[i] > index_at ||
            (uint64_t)p->sizes[i] > index_at - (uint64_t)p->offsets[i]) {
            failf(err, errlen, "index: case %lld: byte range outside the records", (long long)i);
            goto fail;
        }
        // A record's images array can hold no more than the reader's count
        // limit: a larger count is false, and pair-sample sizes its unit
        // table from these counts before it reads a record.
        if (p->ninst[i] < 1 || (uint64_t)p->ninst[i] > p->lim.max_count || p->split[i] >= p->meta.nsplits ||
            p->labeled[i] > 1) {
            failf(err, errlen, "index: case %lld: bad instance count, split or labeled flag", (long long)i);
            goto fail;
        }
        if (p->meta.task == TASK_MULTICLASS && p->labeled[i] &&
            (p->label[i] < 0 || p->label[i] >= p->meta.nclasses)) {
            failf(err, errlen, "index: case %lld: label %d out of range", (long long)i, p->label[i]);
            goto fail;
        }
        if (k)
            for (int64_t c = 0; c < k; c++)
                if (p->labels[i * k + c] > 1) {
                    failf(err, errlen, "index: case %lld: multi-label values must be 0 or 1", (long long)i);
                    goto fail;
                }
        size_t len = strnlen(p->name_block + pos, names_len - pos);
        if (pos >= names_len || len == names_len - pos) {
            failf(err, errlen, "index: names: fewer case ids than cases");
            goto fail;
        }
        p->names[i] = p->name_block + pos;
        pos += len + 1;
        p->nimages += p->ninst[i];
    }
    return true;
fail:
    pack_close(p);
    return false;
}

void pack_close(pack_t *p)
{
    if (p->fd >= 0)
        close(p->fd);
    for (int i = 0; i < p->meta.nclasses; i++)
        free(p->meta.classes[i]);
    for (int i = 0; i < p->meta.nsplits; i++)
        free(p->meta.splits[i]);
    free(p->meta.classes);
    free(p->meta.splits);
    free(p->offsets);
    free(p->sizes);
    free(p->ninst);
    free(p->split);
    free(p->label);
    free(p->labels);
    free(p->labeled);
    free(p->names);
    free(p->name_block);
    free(p->path);
    memset(p, 0, sizeof *p);
    p->fd = -1;
}

int pack_split_index(const pack_t *p, const char *name)
{
    for (int i = 0; i < p->meta.nsplits; i++)
        if (strcmp(p->meta.splits[i], name) == 0)
            return i;
    return -1;
}

bool pack_read_case_checked(const pack_t *p, int64_t i, mts_reader **r, mts_frame *f,
                            const msgpack_object **images, char *err, size_t errlen)
{
    *r = mts_reader_range(p->fd, (uint64_t)p->offsets[i], (uint64_t)p->sizes[i], p->path, &p->lim);
    if (mts_read(*r, f) != 1)
        return failf(err, errlen, "%s", mts_reader_error(*r)[0] ? mts_reader_error(*r) : "empty record");
    const msgpack_object *im = mts_get(f, "images");
    if (!im || im->type != MSGPACK_OBJECT_ARRAY || im->via.array.size != (uint32_t)p->ninst[i])
        return failf(err, errlen, "the record's images do not match the index (%d expected)", p->ninst[i]);
    for (uint32_t k = 0; k < im->via.array.size; k++) {
        mts_tensor t;
        char why[300];
        if (!mts_object_tensor(&im->via.array.ptr[k], &t, why, sizeof why))
            return failf(err, errlen, "image %u: %s", k, why);
        if (t.dtype != p->meta.dtype || t.rank != 3 || t.shape[0] != p->meta.channels || t.shape[1] < 1 ||
            t.shape[2] < 1)
            return failf(err, errlen, "image %u: expected %s (%d, H, W)", k, mts_dtype_name(p->meta.dtype),
                         p->meta.channels);
    }
    *images = im;
    return true;
}

void pack_read_case(const pack_t *p, int64_t i, mts_reader **r, mts_frame *f,
                    const msgpack_object **images)
{
    char err[400];
    if (!pack_read_case_checked(p, i, r, f, images, err, sizeof err))
        die(p->path, "case %lld (%s): %s", (long long)i, p->names[i], err);
}

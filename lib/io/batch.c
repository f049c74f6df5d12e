#include "batch.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dist.h"
#include "util.h"

struct batch_reader {
    mts_reader *r;
    int views;
    const char *need;
    stream_info info;
    mts_frame frame;
    bool pending;       // frame holds a record not yet consumed
    bool ended;
    int64_t records;    // records consumed
    int c, h, w;        // image shape, once known
    uint8_t *labels;    // multi-label targets of the current batch
    int labels_cap;
    volatile sig_atomic_t *stop;  // see batch_stop_on
};

static const char *const view_keys[2][2] = {{"image", NULL}, {"a", "b"}};

static void free_classes(stream_info *s)
{
    for (int i = 0; i < s->nclasses; i++)
        free(s->classes[i]);
    s->nclasses = 0;
}

static bool is_str(const msgpack_object *o, const char *s)
{
    return o->type == MSGPACK_OBJECT_STR && o->via.str.size == strlen(s) && memcmp(o->via.str.ptr, s, o->via.str.size) == 0;
}

static uint64_t hash_object(uint64_t h, const msgpack_object *o, msgpack_sbuffer *sb)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_sbuffer_clear(sb);
    msgpack_pack_object(&pk, *o);
    return dist_hash(h, sb->data, sb->size);
}

// Arguments that do not change the records: quiet, and the thread count
// (the same bytes whatever it is); their values too when `takes_value`.
static bool neutral_arg(const msgpack_object *a, bool *takes_value)
{
    static const char *const alone[] = {"-q", "--quiet"}, *const with_value[] = {"-T", "--threads", "--shard"};
    *takes_value = false;
    for (size_t i = 0; i < sizeof alone / sizeof *alone; i++)
        if (is_str(a, alone[i]))
            return true;
    for (size_t i = 0; i < sizeof with_value / sizeof *with_value; i++) {
        size_t len = strlen(with_value[i]);
        if (is_str(a, with_value[i])) {
            *takes_value = true;
            return true;
        }
        if (a->type == MSGPACK_OBJECT_STR && a->via.str.size > len + 1 && memcmp(a->via.str.ptr, with_value[i], len) == 0 &&
            a->via.str.ptr[len] == '=')
            return true;
    }
    return false;
}

// The header's keys and values in their order, leaving out "shard" and, in
// "args", what differs between the ranks of one run without changing the
// records: --shard (pair-sample's own header, when no augment rewrote
// "args"), -q and -T.
static uint64_t header_hash(const mts_frame *f)
{
    const msgpack_object_map *m = &f->root.via.map;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    uint64_t h = DIST_HASH_INIT;
    for (uint32_t i = 0; i < m->size; i++) {
        const msgpack_object *k = &m->ptr[i].key, *v = &m->ptr[i].val;
        if (is_str(k, "shard"))
            continue;
        h = hash_object(h, k, &sb);
        if (is_str(k, "args") && v->type == MSGPACK_OBJECT_ARRAY) {
            for (uint32_t j = 0; j < v->via.array.size; j++) {
                const msgpack_object *a = &v->via.array.ptr[j];
                bool takes_value;
                if (neutral_arg(a, &takes_value))
                    j += takes_value;
                else
                    h = hash_object(h, a, &sb);
            }
        } else {
            h = hash_object(h, v, &sb);
        }
    }
    msgpack_sbuffer_destroy(&sb);
    return h;
}

static void on_header(const mts_frame *f, void *ctx)
{
    batch_reader *b = ctx;
    stream_info *s = &b->info;
    const msgpack_object *o;
    if ((o = mts_get(f, "pairs_per_epoch")) && o->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        s->pairs_per_epoch = (int64_t)o->via.u64;
    if ((o = mts_get(f, "epochs")) && o->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        s->epochs = (int64_t)o->via.u64;
    if ((o = mts_get(f, "start")) && o->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        s->start = (int64_t)o->via.u64;
    memset(s->shard, 0, sizeof s->shard);
    if ((o = mts_get(f, "shard")) && o->type == MSGPACK_OBJECT_ARRAY && o->via.array.size == 3)
        for (int i = 0; i < 3; i++) {
            const msgpack_object *e = &o->via.array.ptr[i];
            if (e->type != MSGPACK_OBJECT_POSITIVE_INTEGER || e->via.u64 > INT32_MAX)
                mts_die_at(b->r, f, "header: shard[%d] is not a rank, a count or a batch", i);
            s->shard[i] = (int64_t)e->via.u64;
        }
    s->header_hash = header_hash(f);
    // Provenance only: a header without these keys (or with odd values)
    // leaves it empty rather than failing the run.
    const msgpack_object *mode = mts_get(f, "mode"), *split = mts_get(f, "split"), *cases = mts_get(f, "cases"),
                         *images = mts_get(f, "images"), *fraction = mts_get(f, "label_fraction");
    if (mode && mode->type == MSGPACK_OBJECT_STR && mode->via.str.size < 16 && split &&
        split->type == MSGPACK_OBJECT_STR && split->via.str.size < 64 && cases &&
        cases->type == MSGPACK_OBJECT_POSITIVE_INTEGER && images && images->type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
        fraction && (fraction->type == MSGPACK_OBJECT_FLOAT64 || fraction->type == MSGPACK_OBJECT_FLOAT32))
        snprintf(s->trained_on, sizeof s->trained_on, "%.*s %s, split %.*s: %llu cases, %llu images, label fraction %g",
                 (int)mode->via.str.size, mode->via.str.ptr,
                 mode->via.str.size == 6 && memcmp(mode->via.str.ptr, "single", 6) == 0 ? "images" : "pairs",
                 (int)split->via.str.size, split->via.str.ptr, (unsigned long long)cases->via.u64,
                 (unsigned long long)images->via.u64, fraction->via.f64);
    if ((o = mts_get(f, "task")) && o->type == MSGPACK_OBJECT_STR && o->via.str.size < sizeof s->task) {
        memcpy(s->task, o->via.str.ptr, o->via.str.size);
        s->task[o->via.str.size] = 0;
    }
    if ((o = mts_get(f, "classes")) && o->type == MSGPACK_OBJECT_ARRAY) {
        // Label buffers are sized by the class count: a stream may repeat
        // its header (cat a b) but not change its classes.
        if (b->records && (int)o->via.array.size != s->nclasses)
            mts_die_at(b->r, f, "a later header changes the number of classes (%d to %u)", s->nclasses,
                       o->via.array.size);
        if (o->via.array.size > BATCH_MAX_CLASSES)
            mts_die_at(b->r, f, "header: more than %d classes", BATCH_MAX_CLASSES);
        free_classes(s);
        for (uint32_t i = 0; i < o->via.array.size; i++) {
            const msgpack_object *e = &o->via.array.ptr[i];
            if (e->type != MSGPACK_OBJECT_STR || e->via.str.size >= PACK_NAME_MAX)
                mts_die_at(b->r, f, "header: classes[%u] is not a short string", i);
            s->classes[i] = xmalloc(e->via.str.size + 1);
            memcpy(s->classes[i], e->via.str.ptr, e->via.str.size);
            s->classes[i][e->via.str.size] = 0;
            s->nclasses = (int)i + 1;
        }
    }
}

batch_reader *batch_open(const char *path, int views, const char *need)
{
    mts_limits lim = mts_limits_default();
    mts_reader *r = mts_reader_open(path, &lim);
    if (!r)
        die(path, "cannot open: %s", strerror(errno));
    batch_reader *b = xcalloc(1, sizeof *b);
    b->r = r;
    b->views = views;
    b->need = need;
    return b;
}

void batch_stop_on(batch_reader *b, volatile sig_atomic_t *stop) { b->stop = stop; }

void batch_close(batch_reader *b)
{
    mts_reader_close(b->r);
    free_classes(&b->info);
    free(b->labels);
    free(b);
}

static void check_image(batch_reader *b, const mts_frame *f, const char *key, mts_tensor *t);

bool batch_peek(batch_reader *b)
{
    if (b->pending)
        return true;
    if (b->ended)
        return false;
    for (;;) {
        int got = mts_read(b->r, &b->frame);
        if (got < 0 && b->stop && *b->stop)
            got = 0;  // the producer was stopped by the same signal, mid-frame
        if (got < 0)
            die(mts_reader_name(b->r), "%s", mts_reader_error(b->r));
        if (got == 0) {
            b->ended = true;
            return false;
        }
        if (!b->frame.is_header)
            break;
        on_header(&b->frame, b);
    }
    b->pending = true;
    if (b->c == 0) {  // fix the stream's image shape from the first record
        mts_tensor t;
        check_image(b, &b->frame, view_keys[b->views - 1][0], &t);
    }
    return true;
}

void batch_shape(const batch_reader *b, int *c, int *h, int *w)
{
    *c = b->c;
    *h = b->h;
    *w = b->w;
}

const stream_info *batch_info(const batch_reader *b) { return &b->info; }
const char *batch_name(const batch_reader *b) { return mts_reader_name(b->r); }

// Checks one view and fixes the stream's shape from the first.
static void check_image(batch_reader *b, const mts_frame *f, const char *key, mts_tensor *t)
{
    if (!mts_opt_tensor(b->r, f, key, t)) {
        const char *other = b->views == 2 ? (mts_get(f, "image") ? ": this is an image record" : "")
                                          : (mts_get(f, "a") ? ": this is a pair record" : "");
        mts_die_at(b->r, f, "no '%s' image%s; %s expects %s", key, other, util_progname(), b->need);
    }
    if (t->dtype != MTS_F32)
        mts_die_at(b->r, f, "'%s' is %s: %s expects normalised f32 images (pipe the stream through augment)",
                   key, mts_dtype_name(t->dtype), util_progname());
    if (t->rank != 3 || (t->shape[0] != 1 && t->shape[0] != 3) || t->shape[1] < 1 || t->shape[2] < 1)
        mts_die_at(b->r, f, "'%s' must be (C, H, W) with C = 1 or 3", key);
    if (b->c == 0) {
        b->c = (int)t->shape[0];
        b->h = (int)t->shape[1];
        b->w = (int)t->shape[2];
    } else if (t->shape[0] != b->c || t->shape[1] != b->h || t->shape[2] != b->w) {
        mts_die_at(b->r, f, "'%s' is (%lld, %lld, %lld); earlier images were (%d, %d, %d)", key,
                   (long long)t->shape[0], (long long)t->shape[1], (long long)t->shape[2], b->c, b->h, b->w);
    }
}

static void read_meta(batch_reader *b, const mts_frame *f, record_meta *m, uint8_t *labels)
{
    memset(m, 0, sizeof *m);
    m->inst = m->epoch = m->index = -1;
    mts_opt_str(b->r, f, "case", m->case_id, sizeof m->case_id);
    if (!mts_opt_int(b->r, f, "inst", &m->inst))
        mts_opt_int(b->r, f, "inst_a", &m->inst);
    mts_opt_str(b->r, f, "split", m->split, sizeof m->split);
    mts_opt_int(b->r, f, "epoch", &m->epoch);
    mts_opt_int(b->r, f, "index", &m->index);
    const msgpack_object *label = mts_get(f, "label");
    if (!label)
        return;
    int k = b->info.nclasses;
    if (label->type == MSGPACK_OBJECT_ARRAY) {
        if (strcmp(b->info.task, "multilabel") != 0 || (int)label->via.array.size != k)
            mts_die_at(b->r, f, "label: an array of %u values, the header declares %s with %d classes",
                       label->via.array.size, b->info.task[0] ? b->info.task : "no task", k);
        for (int j = 0; j < k; j++) {
            const msgpack_object *e = &label->via.array.ptr[j];
            if (e->type != MSGPACK_OBJECT_POSITIVE_INTEGER || e->via.u64 > 1)
                mts_die_at(b->r, f, "label[%d] must be 0 or 1", j);
            labels[j] = (uint8_t)e->via.u64;
        }
        m->labels = labels;
    } else if (label->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        if (strcmp(b->info.task, "multilabel") == 0)
            mts_die_at(b->r, f, "label: an integer in a multi-label stream");
        if (k > 0 && label->via.u64 >= (uint64_t)k)
            mts_die_at(b->r, f, "label %llu is out of range (%d classes)", (unsigned long long)label->via.u64, k);
        m->label = (int)label->via.u64;
    } else {
        mts_die_at(b->r, f, "label must be a class index or an array of 0/1");
    }
    m->labeled = true;
}

// KEY_target (the view's shape, f32 in [0, 1]) and KEY_code (6 values) of one view.
static void read_target(batch_reader *b, const mts_frame *f, const char *view, float *target, float *code)
{
    char key[32];
    mts_tensor t;
    snprintf(key, sizeof key, "%s_target", view);
    if (!mts_opt_tensor(b->r, f, key, &t))
        mts_die_at(b->r, f, "no '%s': %s needs the reconstruction targets of augment --targets", key,
                   util_progname());
    size_t plane = (size_t)b->c * b->h * b->w;
    if (t.dtype != MTS_F32 || t.rank != 3 || t.shape[0] != b->c || t.shape[1] != b->h || t.shape[2] != b->w)
        mts_die_at(b->r, f, "'%s' must be f32 (%d, %d, %d), the shape of its image", key, b->c, b->h, b->w);
    mts_tensor_to_f32(&t, target);
    for (size_t i = 0; i < plane; i++)
        if (!(target[i] >= 0 && target[i] <= 1))
            mts_die_at(b->r, f, "'%s' has the value %g (value %zu of %zu): targets must be in [0, 1]", key,
                       (double)target[i], i, plane);
    snprintf(key, sizeof key, "%s_code", view);
    if (!mts_opt_tensor(b->r, f, key, &t))
        mts_die_at(b->r, f, "no '%s': %s needs the transformation codes of augment --targets", key,
                   util_progname());
    if (t.dtype != MTS_F32 || t.rank != 1 || t.shape[0] != 6)
        mts_die_at(b->r, f, "'%s' must be f32 (6)", key);
    mts_tensor_to_f32(&t, code);
    for (int i = 0; i < 6; i++)
        if (code[i] != 0 && code[i] != 1)
            mts_die_at(b->r, f, "'%s'[%d] is %g: a code holds 0 and 1 only", key, i, (double)code[i]);
}

int batch_next(batch_reader *b, int n, float *x, record_meta *meta)
{
    return batch_next_targets(b, n, x, NULL, NULL, meta);
}

int batch_next_targets(batch_reader *b, int n, float *x, float *targets, float *codes, record_meta *meta)
{
    if (meta && b->info.nclasses * n > b->labels_cap) {
        b->labels_cap = b->info.nclasses * n;
        b->labels = xrealloc(b->labels, (size_t)b->labels_cap + 1);
    }
    int got = 0;
    while (got < n && batch_peek(b)) {
        const mts_frame *f = &b->frame;
        for (int v = 0; v < b->views; v++) {
            mts_tensor t;
            const char *key = view_keys[b->views - 1][v];
            check_image(b, f, key, &t);
            size_t plane = (size_t)b->c * b->h * b->w;
            float *dst = x + ((size_t)got * b->views + v) * plane;
            mts_tensor_to_f32(&t, dst);
            // A NaN pixel would turn a trainer's loss, or every score embed
            // writes, into NaN far from its cause: name the record instead.
            for (size_t i = 0; i < plane; i++)
                if (!isfinite(dst[i]))
                    mts_die_at(b->r, f, "'%s' has a %s pixel (value %zu of %zu): images must be finite", key,
                               isnan(dst[i]) ? "NaN" : "infinite", i, plane);
            if (targets) {
                size_t row = (size_t)got * b->views + v;
                read_target(b, f, key, targets + row * plane, codes + row * 6);
            }
        }
        if (meta)
            read_meta(b, f, &meta[got], b->labels + (size_t)got * b->info.nclasses);
        b->pending = false;
        b->records++;
        got++;
    }
    return got;
}

#include "ckpt.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "safetensors.h"
#include "stream.h"
#include "util.h"

void ckpt_info_free(ckpt_info *info)
{
    for (int i = 0; i < info->nclasses; i++)
        free(info->class_names[i]);
    info->nclasses = 0;
}

// ---- the tensors of a model, named ------------------------------------------------

typedef enum { KIND_PARAM, KIND_BUFFER, KIND_STATE, KIND_EXTRA } tensor_kind;
static const char *const kind_names[] = {"param", "buffer", "state", "extra"};

typedef struct {
    char name[PARAM_NAME_MAX + 32];
    tensor_kind kind;
    unsigned part;
    mts_dtype dtype;
    int rank;
    int64_t shape[PARAM_MAX_RANK];
    void *data;
    bool loaded;
} named_tensor;

static unsigned part_of(const char *name)
{
    if (strncmp(name, "head.", 5) == 0)
        return CKPT_HEAD;
    if (strncmp(name, "fc.", 3) == 0)
        return CKPT_FC;
    return CKPT_ENCODER;
}

// Every tensor of the model (and extras, and optimiser), in a fixed order.
static named_tensor *list_tensors(const model *m, const optimizer *o, const ckpt_extra *x, int *count)
{
    int cap = m->params.count + 3 * m->nbn + (x ? x->count : 0) + (o ? optim_state_count(o) : 0);
    named_tensor *t = xcalloc((size_t)cap + 1, sizeof *t);
    int n = 0;
    for (int i = 0; i < m->params.count; i++) {
        const param_t *p = &m->params.items[i];
        named_tensor *e = &t[n++];
        snprintf(e->name, sizeof e->name, "%s", p->name);
        e->kind = KIND_PARAM;
        e->part = part_of(p->name);
        e->dtype = MTS_F32;
        e->rank = p->rank;
        memcpy(e->shape, p->shape, sizeof e->shape);
        e->data = p->w;
    }
    for (int i = 0; i < m->nbn; i++) {
        batchnorm *bn = m->bns[i].bn;
        const char *suffix[3] = {"running_mean", "running_var", "num_batches_tracked"};
        void *data[3] = {bn->running_mean, bn->running_var, &bn->num_batches_tracked};
        for (int k = 0; k < 3; k++) {
            named_tensor *e = &t[n++];
            snprintf(e->name, sizeof e->name, "%s.%s", m->bns[i].prefix, suffix[k]);
            e->kind = KIND_BUFFER;
            e->part = part_of(e->name);
            e->dtype = k == 2 ? MTS_I64 : MTS_F32;
            e->rank = k == 2 ? 0 : 1;
            e->shape[0] = bn->channels;
            e->data = data[k];
        }
    }
    for (int i = 0; x && i < x->count; i++) {
        const ckpt_tensor *c = &x->items[i];
        named_tensor *e = &t[n++];
        snprintf(e->name, sizeof e->name, "%s", c->name);
        e->kind = KIND_EXTRA;
        e->part = CKPT_EXTRA;
        e->dtype = c->dtype;
        e->rank = c->rank;
        memcpy(e->shape, c->shape, sizeof e->shape);
        e->data = c->data;
    }
    for (int i = 0; o && i < optim_state_count(o); i++) {
        optim_state s = optim_state_get(o, i);
        named_tensor *e = &t[n++];
        snprintf(e->name, sizeof e->name, "%s", s.name);
        e->kind = KIND_STATE;
        e->part = CKPT_STATE;
        e->dtype = MTS_F32;
        e->rank = s.rank;
        memcpy(e->shape, s.shape, sizeof e->shape);
        e->data = s.data;
    }
    *count = n;
    return t;
}

// ---- saving ------------------------------------------------------------------------

void ckpt_extra_add(ckpt_extra *x, const char *name, mts_dtype dtype, int rank, const int64_t *shape, void *data)
{
    if (x->count == x->cap) {
        x->cap = x->cap ? 2 * x->cap : 64;
        x->items = xrealloc(x->items, (size_t)x->cap * sizeof *x->items);
    }
    ckpt_tensor *c = &x->items[x->count++];
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "%s", name);
    c->dtype = dtype;
    c->rank = rank;
    memcpy(c->shape, shape, (size_t)rank * sizeof *shape);
    c->data = data;
}

void ckpt_extra_params(ckpt_extra *x, const param_list *l, const char *prefix)
{
    for (int i = 0; i < l->count; i++) {
        const param_t *p = &l->items[i];
        char name[PARAM_NAME_MAX + 32];
        snprintf(name, sizeof name, "%s%s", prefix, p->name);
        ckpt_extra_add(x, name, MTS_F32, p->rank, p->shape, p->w);
    }
}

void ckpt_extra_bn(ckpt_extra *x, batchnorm *bn, const char *prefix)
{
    char name[PARAM_NAME_MAX + 32];
    int64_t shape[1] = {bn->channels};
    snprintf(name, sizeof name, "%s.running_mean", prefix);
    ckpt_extra_add(x, name, MTS_F32, 1, shape, bn->running_mean);
    snprintf(name, sizeof name, "%s.running_var", prefix);
    ckpt_extra_add(x, name, MTS_F32, 1, shape, bn->running_var);
    snprintf(name, sizeof name, "%s.num_batches_tracked", prefix);
    ckpt_extra_add(x, name, MTS_I64, 0, shape, &bn->num_batches_tracked);
}

void ckpt_extra_model(ckpt_extra *x, const model *m, const char *prefix)
{
    ckpt_extra_params(x, &m->params, prefix);
    for (int i = 0; i < m->nbn; i++) {
        char name[PARAM_NAME_MAX + 32];
        snprintf(name, sizeof name, "%s%s", prefix, m->bns[i].prefix);
        ckpt_extra_bn(x, m->bns[i].bn, name);
    }
}

void ckpt_extra_free(ckpt_extra *x)
{
    free(x->items);
    memset(x, 0, sizeof *x);
}

void ckpt_save(const char *path, const model *m, const optimizer *o, const ckpt_info *info,
               const char *tool, int argc, char **argv)
{
    ckpt_save_extra(path, m, o, NULL, info, tool, argc, argv);
}

void ckpt_save_extra(const char *path, const model *m, const optimizer *o, const ckpt_extra *x,
                     const ckpt_info *info, const char *tool, int argc, char **argv)
{
    int count;
    named_tensor *ts = list_tensors(m, o, x, &count);
    mts_write_opts opts = {.zstd_level = 1};
    mts_writer *w = mts_writer_open(path, &opts);
    mts_write_header(w, tool, argc, argv, 13);
    mts_put_int(w, "checkpoint", 1);
    mts_put_key(w, "model");
    msgpack_packer *pk = mts_packer(w);
    const model_config *c = &m->cfg;
    msgpack_pack_map(pk, 8);
    mts_pack_str(pk, "depth");
    msgpack_pack_int(pk, c->encoder.depth);
    mts_pack_str(pk, "width");
    msgpack_pack_double(pk, c->encoder.width);
    mts_pack_str(pk, "stem");
    mts_pack_str(pk, c->encoder.stem == RESNET_STEM_SMALL ? "small" : "large");
    mts_pack_str(pk, "in_ch");
    msgpack_pack_int(pk, c->encoder.in_ch);
    mts_pack_str(pk, "head_layers");
    msgpack_pack_int(pk, c->head_layers);
    mts_pack_str(pk, "head_hidden");
    msgpack_pack_int(pk, c->head_hidden);
    mts_pack_str(pk, "proj_dim");
    msgpack_pack_int(pk, c->proj_dim);
    mts_pack_str(pk, "classes");
    msgpack_pack_int(pk, c->classes);
    mts_put_int(w, "step", info->step);
    mts_put_int(w, "records", info->records);
    mts_put_int(w, "epoch", info->epoch);
    mts_put_f64(w, "loss", info->loss);
    mts_put_key(w, "rng");
    msgpack_pack_array(pk, info->has_rng ? RNG_STATE_LEN : 0);
    for (int i = 0; info->has_rng && i < RNG_STATE_LEN; i++)
        msgpack_pack_int64(pk, info->rng[i]);
    mts_put_str(w, "task", info->task);
    mts_put_key(w, "class_names");
    msgpack_pack_array(pk, (size_t)info->nclasses);
    for (int i = 0; i < info->nclasses; i++)
        mts_pack_str(pk, info->class_names[i]);
    mts_put_str(w, "optimizer", o ? optim_kind_name(o->cfg.kind) : "");
    mts_put_str(w, "trained_on", info->trained_on);
    mts_put_int(w, "optimizer_step", o ? o->step : 0);
    mts_put_int(w, "tensors", count);
    for (int i = 0; i < count; i++) {
        named_tensor *e = &ts[i];
        mts_tensor t = mts_tensor_make(e->dtype, e->rank, e->shape, e->data);
        mts_begin_map(w, 3);
        mts_put_str(w, "name", e->name);
        mts_put_str(w, "kind", kind_names[e->kind]);
        mts_put_tensor(w, "tensor", &t);
    }
    mts_writer_close(w);
    free(ts);
}

// ---- loading -------------------------------------------------------------------------

static bool obj_int(const msgpack_object *map, const char *key, int64_t *out)
{
    for (uint32_t i = 0; map && map->type == MSGPACK_OBJECT_MAP && i < map->via.map.size; i++) {
        const msgpack_object_kv *kv = &map->via.map.ptr[i];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == strlen(key) &&
            memcmp(kv->key.via.str.ptr, key, kv->key.via.str.size) == 0) {
            if (kv->val.type == MSGPACK_OBJECT_POSITIVE_INTEGER && kv->val.via.u64 <= INT64_MAX)
                *out = (int64_t)kv->val.via.u64;
            else if (kv->val.type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
                *out = kv->val.via.i64;
            else
                return false;
            return true;
        }
    }
    return false;
}

static const msgpack_object *obj_get(const msgpack_object *map, const char *key)
{
    for (uint32_t i = 0; map && map->type == MSGPACK_OBJECT_MAP && i < map->via.map.size; i++) {
        const msgpack_object_kv *kv = &map->via.map.ptr[i];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == strlen(key) &&
            memcmp(kv->key.via.str.ptr, key, kv->key.via.str.size) == 0)
            return &kv->val;
    }
    return NULL;
}

static bool obj_str(const msgpack_object *map, const char *key, char *buf, size_t cap)
{
    const msgpack_object *o = obj_get(map, key);
    if (!o || o->type != MSGPACK_OBJECT_STR || o->via.str.size >= cap)
        return false;
    memcpy(buf, o->via.str.ptr, o->via.str.size);
    buf[o->via.str.size] = 0;
    return true;
}

static bool parse_header(const mts_frame *f, model_config *cfg, ckpt_info *info, char *err, size_t errlen)
{
    const msgpack_object *root = &f->root;
    int64_t v;
    if (!obj_int(root, "checkpoint", &v) || v != 1) {
        snprintf(err, errlen, "not a checkpoint (no \"checkpoint\": 1 in the header)");
        return false;
    }
    const msgpack_object *mo = obj_get(root, "model");
    int64_t depth, in_ch, head, hidden, proj, classes;
    const msgpack_object *width = obj_get(mo, "width");
    char stem[16];
    if (!obj_int(mo, "depth", &depth) || !obj_int(mo, "in_ch", &in_ch) || !obj_int(mo, "head_layers", &head) ||
        !obj_int(mo, "head_hidden", &hidden) || !obj_int(mo, "proj_dim", &proj) ||
        !obj_int(mo, "classes", &classes) || !width ||
        (width->type != MSGPACK_OBJECT_FLOAT64 && width->type != MSGPACK_OBJECT_FLOAT32) ||
        !obj_str(mo, "stem", stem, sizeof stem)) {
        snprintf(err, errlen, "header: incomplete model configuration");
        return false;
    }
    if ((depth != 18 && depth != 34 && depth != 50 && depth != 101 && depth != 152) ||
        (in_ch != 1 && in_ch != 3) || (head != 0 && head != 2 && head != 3) || hidden < 0 ||
        hidden > 1 << 16 || proj < 1 || proj > 1 << 16 || classes < 0 || classes > CKPT_MAX_CLASSES ||
        !(width->via.f64 > 0 && width->via.f64 <= 16) ||
        (strcmp(stem, "small") != 0 && strcmp(stem, "large") != 0)) {
        snprintf(err, errlen, "header: model configuration out of range");
        return false;
    }
    *cfg = (model_config){
        .encoder = {.depth = (int)depth, .width = width->via.f64,
                    .stem = strcmp(stem, "small") == 0 ? RESNET_STEM_SMALL : RESNET_STEM_LARGE,
                    .in_ch = (int)in_ch},
        .head_layers = (int)head, .head_hidden = (int)hidden, .proj_dim = (int)proj, .classes = (int)classes};
    double count = model_param_count(cfg);
    if (count > MODEL_MAX_PARAMS) {
        snprintf(err, errlen, "header: a model of %.0f parameters, over the limit of %.0f", count,
                 (double)MODEL_MAX_PARAMS);
        return false;
    }
    memset(info, 0, sizeof *info);
    info->loss = NAN;
    obj_int(root, "step", &info->step);
    obj_int(root, "records", &info->records);
    obj_int(root, "epoch", &info->epoch);
    const msgpack_object *loss = obj_get(root, "loss");
    if (loss && (loss->type == MSGPACK_OBJECT_FLOAT64 || loss->type == MSGPACK_OBJECT_FLOAT32))
        info->loss = loss->via.f64;
    const msgpack_object *rng = obj_get(root, "rng");
    if (rng && rng->type == MSGPACK_OBJECT_ARRAY && rng->via.array.size == RNG_STATE_LEN) {
        info->has_rng = true;
        for (int i = 0; i < RNG_STATE_LEN; i++) {
            const msgpack_object *e = &rng->via.array.ptr[i];
            if (e->type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
                snprintf(err, errlen, "header: bad random state");
                return false;
            }
            info->rng[i] = (int64_t)e->via.u64;
        }
    }
    obj_str(root, "task", info->task, sizeof info->task);
    obj_str(root, "optimizer", info->optimizer, sizeof info->optimizer);
    obj_str(root, "trained_on", info->trained_on, sizeof info->trained_on);
    const msgpack_object *names = obj_get(root, "class_names");
    if (names && names->type == MSGPACK_OBJECT_ARRAY && names->via.array.size <= CKPT_MAX_CLASSES) {
        for (uint32_t i = 0; i < names->via.array.size; i++) {
            const msgpack_object *e = &names->via.array.ptr[i];
            if (e->type != MSGPACK_OBJECT_STR || e->via.str.size > 255) {
                ckpt_info_free(info);
                snprintf(err, errlen, "header: bad class name");
                return false;
            }
            info->class_names[i] = xmalloc(e->via.str.size + 1);
            memcpy(info->class_names[i], e->via.str.ptr, e->via.str.size);
            info->class_names[i][e->via.str.size] = 0;
            info->nclasses = (int)i + 1;
        }
    }
    return true;
}

static bool st_read_header(const char *path, model_config *cfg, ckpt_info *info, char *err, size_t errlen);

bool ckpt_read_header(const char *path, model_config *cfg, ckpt_info *info, char *err, size_t errlen)
{
    if (st_sniff(path))
        return st_read_header(path, cfg, info, err, errlen);
    mts_limits lim = mts_limits_default();
    mts_reader *r = mts_reader_open(path, &lim);
    if (!r) {
        snprintf(err, errlen, "cannot open: %s", strerror(errno));
        return false;
    }
    mts_frame f;
    int got = mts_read(r, &f);
    bool ok = false;
    if (got < 0)
        snprintf(err, errlen, "%s", mts_reader_error(r));
    else if (got == 0 || !f.is_header)
        snprintf(err, errlen, "not a checkpoint (no header)");
    else
        ok = parse_header(&f, cfg, info, err, errlen);
    mts_reader_close(r);
    return ok;
}

static void describe_shape(char *buf, size_t len, int rank, const int64_t *shape)
{
    int n = snprintf(buf, len, "(");
    for (int i = 0; i < rank && n < (int)len; i++)
        n += snprintf(buf + n, len - n, "%s%lld", i ? "," : "", (long long)shape[i]);
    if (n < (int)len)
        snprintf(buf + n, len - n, ")");
}

// The encoder a checkpoint holds against the model it is loaded into: the
// same, or with CKPT_GREY a 3-channel one into a 1-channel model.
static bool same_encoder(const model_config *have, const model_config *want, unsigned parts, char *err, size_t errlen)
{
    const resnet_config *a = &have->encoder, *b = &want->encoder;
    bool channels = a->in_ch == b->in_ch || ((parts & CKPT_GREY) && a->in_ch == 3 && b->in_ch == 1);
    if (!(parts & CKPT_ENCODER) || (a->depth == b->depth && a->width == b->width && a->stem == b->stem && channels))
        return true;
    char hs[200], ws[200];
    model_describe(have, hs, sizeof hs);
    model_describe(want, ws, sizeof ws);
    snprintf(err, errlen, "the checkpoint's encoder (%s) differs from this model's (%s)%s", hs, ws,
             a->in_ch == 3 && b->in_ch == 1 && !(parts & CKPT_GREY) ? " (ckpt import --in-ch 1 sums conv1's colours)"
                                                                      : "");
    return false;
}

// conv1.weight (O, 3, k, k) going into a 1-channel model's (O, 1, k, k).
static bool is_grey_conv1(const named_tensor *e, unsigned parts, int rank, const int64_t *shape)
{
    return (parts & CKPT_GREY) && strcmp(e->name, "conv1.weight") == 0 && rank == 4 && shape[1] == 3 &&
           e->shape[1] == 1;
}

static bool same_shape(const named_tensor *e, int rank, const int64_t *shape, bool grey)
{
    bool same = rank == e->rank;
    for (int k = 0; same && k < rank; k++)
        same = shape[k] == e->shape[k] || (grey && k == 1);
    return same;
}

// rgb: (O, 3, k, k) -> grey: (O, 1, k, k), the sum over the input channels:
// a grey image fed to every colour channel gives the same response (timm's
// adapt_input_conv).
static void sum_input_channels(const float *rgb, float *grey, const int64_t *shape)
{
    size_t taps = (size_t)(shape[2] * shape[3]);
    for (int64_t o = 0; o < shape[0]; o++)
        for (size_t t = 0; t < taps; t++)
            grey[o * taps + t] = rgb[(o * 3 + 0) * taps + t] + rgb[(o * 3 + 1) * taps + t] +
                                 rgb[(o * 3 + 2) * taps + t];
}

static bool st_load_checked(const char *path, model *m, unsigned parts, char *err, size_t errlen);

bool ckpt_load_checked(const char *path, model *m, optimizer *o, unsigned parts, char *err, size_t errlen)
{
    return ckpt_load_extra(path, m, o, NULL, parts & ~(unsigned)CKPT_EXTRA, err, errlen);
}

bool ckpt_load_extra(const char *path, model *m, optimizer *o, const ckpt_extra *x, unsigned parts, char *err,
                     size_t errlen)
{
    if (st_sniff(path) && (parts & CKPT_EXTRA)) {
        snprintf(err, errlen, "a safetensors file holds weights only, not a run to continue");
        return false;
    }
    if (st_sniff(path))
        return st_load_checked(path, m, parts, err, errlen);
    mts_limits lim = mts_limits_default();
    mts_reader *r = mts_reader_open(path, &lim);
    if (!r) {
        snprintf(err, errlen, "cannot open: %s", strerror(errno));
        return false;
    }
    named_tensor *ts = NULL;
    bool ok = false;
    mts_frame f;
    int got = mts_read(r, &f);
    if (got < 0) {
        snprintf(err, errlen, "%s", mts_reader_error(r));
        goto done;
    }
    if (got == 0 || !f.is_header) {
        snprintf(err, errlen, "not a checkpoint (no header)");
        goto done;
    }
    model_config cfg;
    ckpt_info info;
    if (!parse_header(&f, &cfg, &info, err, errlen))
        goto done;
    ckpt_info_free(&info);
    if (!same_encoder(&cfg, &m->cfg, parts, err, errlen))
        goto done;
    // The header's counts, before the next read replaces the frame.
    int64_t expected = -1, optimizer_step = 0;
    obj_int(&f.root, "tensors", &expected);
    obj_int(&f.root, "optimizer_step", &optimizer_step);
    int count;
    ts = list_tensors(m, (parts & CKPT_STATE) ? o : NULL, (parts & CKPT_EXTRA) ? x : NULL, &count);
    int64_t records = 0;
    while ((got = mts_read(r, &f)) > 0) {
        if (f.is_header)
            continue;
        records++;
        char name[PARAM_NAME_MAX + 32], kind[16], why[300];
        mts_tensor t;
        const msgpack_object *to = mts_get(&f, "tensor");
        if (!obj_str(&f.root, "name", name, sizeof name) || !obj_str(&f.root, "kind", kind, sizeof kind)) {
            snprintf(err, errlen, "byte %llu: a tensor record needs the strings 'name' and 'kind'",
                     (unsigned long long)f.offset);
            goto done;
        }
        if (!to || !mts_object_tensor(to, &t, why, sizeof why)) {
            snprintf(err, errlen, "byte %llu: %s: %s", (unsigned long long)f.offset, name,
                     to ? why : "the record has no key 'tensor'");
            goto done;
        }
        unsigned part = strcmp(kind, "state") == 0   ? CKPT_STATE
                        : strcmp(kind, "extra") == 0 ? CKPT_EXTRA
                                                     : part_of(name);
        if (!(parts & part))
            continue;
        named_tensor *e = NULL;
        for (int i = 0; i < count && !e; i++)
            if (strcmp(ts[i].name, name) == 0)
                e = &ts[i];
        if (!e && part == CKPT_EXTRA && (parts & CKPT_EXTRA_SUBSET))
            continue;
        if (!e) {
            snprintf(err, errlen, "%s: the checkpoint has it, this model does not (a different %s?)", name,
                     part == CKPT_STATE ? "optimiser" : part == CKPT_HEAD ? "projection head" :
                     part == CKPT_FC ? "classifier" : part == CKPT_EXTRA ? "trainer" : "encoder");
            goto done;
        }
        bool grey = is_grey_conv1(e, parts, t.rank, t.shape);
        if (t.dtype != e->dtype || !same_shape(e, t.rank, t.shape, grey)) {
            char have[128], want[128];
            describe_shape(have, sizeof have, t.rank, t.shape);
            describe_shape(want, sizeof want, e->rank, e->shape);
            snprintf(err, errlen, "%s: the checkpoint's is %s %s, this model's %s %s", name,
                     mts_dtype_name(t.dtype), have, mts_dtype_name(e->dtype), want);
            goto done;
        }
        if (grey) {
            float *rgb = xmalloc(t.nbytes);
            memcpy(rgb, t.data, t.nbytes);
            sum_input_channels(rgb, e->data, e->shape);
            free(rgb);
        } else {
            memcpy(e->data, t.data, t.nbytes);
        }
        e->loaded = true;
    }
    if (got < 0) {
        snprintf(err, errlen, "%s", mts_reader_error(r));
        goto done;
    }
    if (expected >= 0 && records != expected) {
        snprintf(err, errlen, "truncated: %lld tensors of %lld", (long long)records, (long long)expected);
        goto done;
    }
    for (int i = 0; i < count; i++)
        if ((parts & ts[i].part) && !ts[i].loaded) {
            snprintf(err, errlen, "%s: this model has it, the checkpoint does not%s", ts[i].name,
                     ts[i].part == CKPT_STATE   ? " (saved without optimiser state, or another optimiser)"
                     : ts[i].part == CKPT_EXTRA ? " (saved by another trainer, or with other options)"
                                                : "");
            goto done;
        }
    if ((parts & CKPT_STATE) && o)
        o->step = optimizer_step;
    ok = true;
done:
    free(ts);
    mts_reader_close(r);
    return ok;
}

void ckpt_load(const char *path, model *m, optimizer *o, unsigned parts)
{
    char err[400];
    if (!ckpt_load_checked(path, m, o, parts, err, sizeof err))
        die(path, "%s", err);
}

// ---- safetensors: torchvision's names, no optimiser state ------------------------------

// The blocks per layer of torchvision's ResNets.
static const struct {
    int depth;
    bool bottleneck;
    int blocks[4];
} layouts[] = {
    {18, false, {2, 2, 2, 2}}, {34, false, {3, 4, 6, 3}}, {50, true, {3, 4, 6, 3}},
    {101, true, {3, 4, 23, 3}}, {152, true, {3, 8, 36, 3}},
};

static const st_entry *find_rank(const st_file *f, const char *name, int rank)
{
    const st_entry *e = st_find(f, name);
    return e && e->rank == rank ? e : NULL;
}

static bool meta_int(const st_file *f, const char *key, int64_t *out)
{
    const char *s = st_meta(f, key);
    char *end;
    if (!s)
        return false;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end)
        return false;
    *out = v;
    return true;
}

// The model a file's tensors describe: the depth from the blocks per layer
// and the block kind, the stem from conv1's kernel, the channels from its
// input, the width from its output (or our metadata: round(64 w) does not
// give w back), the head and classifier from theirs.  Shapes beyond these
// are checked when the tensors are loaded into the model built from this.
static bool st_config(const st_file *f, model_config *cfg, ckpt_info *info, char *err, size_t errlen)
{
    const st_entry *conv1 = find_rank(f, "conv1.weight", 4);
    if (!conv1)
        return failf(err, errlen, "conv1.weight: no such (O, C, k, k) tensor: not a torchvision ResNet");
    const int64_t *s = conv1->shape;
    if (!((s[2] == 7 && s[3] == 7) || (s[2] == 3 && s[3] == 3)) || (s[1] != 1 && s[1] != 3) || s[0] < 1 ||
        s[0] > 64 * 16)
        return failf(err, errlen, "conv1.weight: shape (%lld,%lld,%lld,%lld), not a ResNet stem of 1 or 3 "
                          "channels with a 7x7 or 3x3 kernel", (long long)s[0], (long long)s[1], (long long)s[2],
                          (long long)s[3]);
    int blocks[4];
    char name[PARAM_NAME_MAX];
    for (int l = 0; l < 4; l++) {
        blocks[l] = 0;
        for (;;) {
            snprintf(name, sizeof name, "layer%d.%d.conv1.weight", l + 1, blocks[l]);
            if (!st_find(f, name) || blocks[l] == 64)
                break;
            blocks[l]++;
        }
    }
    bool bottleneck = st_find(f, "layer1.0.conv3.weight") != NULL;
    int depth = 0;
    for (size_t i = 0; i < sizeof layouts / sizeof *layouts; i++)
        if (layouts[i].bottleneck == bottleneck && memcmp(layouts[i].blocks, blocks, sizeof blocks) == 0)
            depth = layouts[i].depth;
    if (!depth)
        return failf(err, errlen, "layer1-4: %d, %d, %d and %d %s blocks, not a ResNet-18, 34, 50, 101 or 152",
                          blocks[0], blocks[1], blocks[2], blocks[3], bottleneck ? "bottleneck" : "basic");
    double width = (double)s[0] / 64;
    const char *w = st_meta(f, "medssl.width");
    if (w) {
        char *end;
        double v = strtod(w, &end);
        if (end == w || *end || !(v > 0 && v <= 16) || (lround(64 * v) > 1 ? lround(64 * v) : 1) != s[0])
            return failf(err, errlen, "__metadata__: medssl.width '%s' does not give conv1's %lld channels", w,
                              (long long)s[0]);
        width = v;
    }
    *cfg = model_config_default();
    cfg->encoder = (resnet_config){.depth = depth, .width = width,
                                   .stem = s[2] == 7 ? RESNET_STEM_LARGE : RESNET_STEM_SMALL, .in_ch = (int)s[1]};
    cfg->head_layers = 0;
    for (int l = 0; l < MODEL_MAX_HEAD; l++) {
        snprintf(name, sizeof name, "head.%d.linear.weight", l);
        const st_entry *h = find_rank(f, name, 2);
        if (!h)
            break;
        if (h->shape[0] < 1 || h->shape[0] > 1 << 16)
            return failf(err, errlen, "%s: %lld outputs, out of range", name, (long long)h->shape[0]);
        if (l == 0)
            cfg->head_hidden = (int)h->shape[0];
        cfg->proj_dim = (int)h->shape[0];
        cfg->head_layers = l + 1;
    }
    if (cfg->head_layers == 1)
        return failf(err, errlen, "head.1.linear.weight: missing (a projection head has 2 or 3 layers)");
    const st_entry *fc = find_rank(f, "fc.weight", 2);
    if (fc && (fc->shape[0] < 1 || fc->shape[0] > CKPT_MAX_CLASSES))
        return failf(err, errlen, "fc.weight: %lld classes, over the limit of %d", (long long)fc->shape[0],
                          CKPT_MAX_CLASSES);
    cfg->classes = fc ? (int)fc->shape[0] : 0;
    double count = model_param_count(cfg);
    if (count > MODEL_MAX_PARAMS)
        return failf(err, errlen, "a model of %.0f parameters, over the limit of %.0f", count,
                          (double)MODEL_MAX_PARAMS);
    // Every parameter takes 2 bytes at least (F16, BF16): a small file whose
    // names describe a big model is refused before the model is built.
    if ((double)f->data_size < 2 * count)
        return failf(err, errlen, "%llu bytes of tensors, too few for the %.0f parameters of the model "
                          "its names describe", (unsigned long long)f->data_size, count);
    memset(info, 0, sizeof *info);
    info->loss = NAN;
    meta_int(f, "medssl.step", &info->step);
    meta_int(f, "medssl.records", &info->records);
    meta_int(f, "medssl.epoch", &info->epoch);
    const char *loss = st_meta(f, "medssl.loss");
    if (loss)
        info->loss = strtod(loss, NULL);
    const char *trained_on = st_meta(f, "medssl.trained_on");
    if (trained_on)
        snprintf(info->trained_on, sizeof info->trained_on, "%s", trained_on);
    const char *task = st_meta(f, "medssl.task");
    if (task && (strcmp(task, "multiclass") == 0 || strcmp(task, "multilabel") == 0))
        snprintf(info->task, sizeof info->task, "%s", task);
    // Class names, one per line.
    const char *names = st_meta(f, "medssl.class_names");
    for (const char *p = names; p && *p && info->nclasses < CKPT_MAX_CLASSES;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        info->class_names[info->nclasses] = xmalloc(len + 1);
        memcpy(info->class_names[info->nclasses], p, len);
        info->class_names[info->nclasses++][len] = 0;
        p += len + (nl != NULL);
    }
    return true;
}

static bool st_read_header(const char *path, model_config *cfg, ckpt_info *info, char *err, size_t errlen)
{
    st_file *f = st_open(path, err, errlen);
    if (!f)
        return false;
    bool ok = st_config(f, cfg, info, err, errlen);
    st_close(f);
    return ok;
}

static bool st_load_checked(const char *path, model *m, unsigned parts, char *err, size_t errlen)
{
    if (parts & CKPT_STATE)
        return failf(err, errlen, "a safetensors file holds no optimiser state (--resume takes our checkpoints)");
    st_file *f = st_open(path, err, errlen);
    if (!f)
        return false;
    named_tensor *ts = NULL;
    bool ok = false;
    model_config cfg;
    ckpt_info info;
    if (!st_config(f, &cfg, &info, err, errlen))
        goto done;
    ckpt_info_free(&info);
    if (!same_encoder(&cfg, &m->cfg, parts, err, errlen))
        goto done;
    int count;
    ts = list_tensors(m, NULL, NULL, &count);
    for (int i = 0; i < f->count; i++) {
        const st_entry *s = &f->entries[i];
        unsigned part = part_of(s->name);
        if (!(parts & part))
            continue;
        named_tensor *e = NULL;
        for (int k = 0; k < count && !e; k++)
            if (strcmp(ts[k].name, s->name) == 0)
                e = &ts[k];
        if (!e) {
            failf(err, errlen, "%s: the file has it, this model does not (a different %s?)", s->name,
                       part == CKPT_HEAD ? "projection head" : part == CKPT_FC ? "classifier" : "encoder");
            goto done;
        }
        bool grey = is_grey_conv1(e, parts, s->rank, s->shape);
        bool floating = s->dtype == ST_F32 || s->dtype == ST_F16 || s->dtype == ST_BF16 || s->dtype == ST_F64;
        if (!(e->dtype == MTS_I64 ? s->dtype == ST_I64 : floating) || !same_shape(e, s->rank, s->shape, grey)) {
            char have[128], want[128];
            describe_shape(have, sizeof have, s->rank, s->shape);
            describe_shape(want, sizeof want, e->rank, e->shape);
            failf(err, errlen, "%s: the file's is %s %s, this model's %s %s", s->name, st_dtype_name(s->dtype),
                       have, e->dtype == MTS_I64 ? "I64" : "F32 (or F16, BF16, F64)", want);
            goto done;
        }
        bool read;
        if (e->dtype == MTS_I64) {
            read = st_read_i64(f, s, e->data, err, errlen);
        } else if (grey) {
            float *rgb = xmalloc((size_t)s->count * sizeof *rgb);
            read = st_read_f32(f, s, rgb, err, errlen);
            if (read)
                sum_input_channels(rgb, e->data, e->shape);
            free(rgb);
        } else {
            read = st_read_f32(f, s, e->data, err, errlen);
        }
        if (!read)
            goto done;
        e->loaded = true;
    }
    // num_batches_tracked only counts steps (batch norm here uses a fixed
    // momentum), and some exporters drop it: it may be missing.
    for (int i = 0; i < count; i++) {
        size_t len = strlen(ts[i].name);
        if ((parts & ts[i].part) && !ts[i].loaded &&
            !(len > 20 && strcmp(ts[i].name + len - 20, ".num_batches_tracked") == 0)) {
            failf(err, errlen, "%s: this model has it, the file does not", ts[i].name);
            goto done;
        }
    }
    ok = true;
done:
    free(ts);
    st_close(f);
    return ok;
}

void ckpt_export(const char *path, const model *m, const ckpt_info *info, unsigned parts)
{
    int count;
    named_tensor *ts = list_tensors(m, NULL, NULL, &count);
    st_writer *w = st_writer_new();
    model_config c = m->cfg;
    if (!(parts & CKPT_HEAD))
        c.head_layers = 0;
    if (!(parts & CKPT_FC))
        c.classes = 0;
    char buf[256];
    model_describe(&c, buf, sizeof buf);
    st_add_meta(w, "medssl.model", buf);
    snprintf(buf, sizeof buf, "%.17g", c.encoder.width);
    st_add_meta(w, "medssl.width", buf);
    snprintf(buf, sizeof buf, "%lld", (long long)info->step);
    st_add_meta(w, "medssl.step", buf);
    snprintf(buf, sizeof buf, "%lld", (long long)info->records);
    st_add_meta(w, "medssl.records", buf);
    snprintf(buf, sizeof buf, "%lld", (long long)info->epoch);
    st_add_meta(w, "medssl.epoch", buf);
    snprintf(buf, sizeof buf, "%.9g", info->loss);
    st_add_meta(w, "medssl.loss", buf);
    if (info->task[0])
        st_add_meta(w, "medssl.task", info->task);
    if (info->trained_on[0])
        st_add_meta(w, "medssl.trained_on", info->trained_on);
    if ((parts & CKPT_FC) && info->nclasses) {
        size_t len = 1;
        for (int i = 0; i < info->nclasses; i++)
            len += strlen(info->class_names[i]) + 1;
        char *names = xcalloc(len, 1);
        for (int i = 0; i < info->nclasses; i++) {
            strcat(names, info->class_names[i]);
            if (i + 1 < info->nclasses)
                strcat(names, "\n");
        }
        st_add_meta(w, "medssl.class_names", names);
        free(names);
    }
    st_add_meta(w, "medssl.version", MEDSSL_VERSION);
    for (int i = 0; i < count; i++)
        if (parts & ts[i].part)
            st_add(w, ts[i].name, ts[i].dtype == MTS_I64 ? ST_I64 : ST_F32, ts[i].rank, ts[i].shape, ts[i].data);
    st_write(w, path);
    free(ts);
}

#include "ckpt.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stream.h"
#include "util.h"

void ckpt_info_free(ckpt_info *info)
{
    for (int i = 0; i < info->nclasses; i++)
        free(info->class_names[i]);
    info->nclasses = 0;
}

// ---- the tensors of a model, named ------------------------------------------------

typedef enum { KIND_PARAM, KIND_BUFFER, KIND_STATE } tensor_kind;
static const char *const kind_names[] = {"param", "buffer", "state"};

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

// Every tensor of the model (and optimiser), in a fixed order.
static named_tensor *list_tensors(const model *m, const optimizer *o, int *count)
{
    int cap = m->params.count + 3 * m->nbn + (o ? optim_state_count(o) : 0);
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

void ckpt_save(const char *path, const model *m, const optimizer *o, const ckpt_info *info,
               const char *tool, int argc, char **argv)
{
    int count;
    named_tensor *ts = list_tensors(m, o, &count);
    mts_write_opts opts = {.zstd_level = 1};
    mts_writer *w = mts_writer_open(path, &opts);
    mts_write_header(w, tool, argc, argv, 12);
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

bool ckpt_read_header(const char *path, model_config *cfg, ckpt_info *info, char *err, size_t errlen)
{
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

bool ckpt_load_checked(const char *path, model *m, optimizer *o, unsigned parts, char *err, size_t errlen)
{
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
    const resnet_config *a = &cfg.encoder, *b = &m->cfg.encoder;
    if ((parts & CKPT_ENCODER) &&
        (a->depth != b->depth || a->width != b->width || a->stem != b->stem || a->in_ch != b->in_ch)) {
        char have[200], want[200];
        model_describe(&cfg, have, sizeof have);
        model_describe(&m->cfg, want, sizeof want);
        snprintf(err, errlen, "the checkpoint's encoder (%s) differs from this model's (%s)", have, want);
        goto done;
    }
    // The header's counts, before the next read replaces the frame.
    int64_t expected = -1, optimizer_step = 0;
    obj_int(&f.root, "tensors", &expected);
    obj_int(&f.root, "optimizer_step", &optimizer_step);
    int count;
    ts = list_tensors(m, (parts & CKPT_STATE) ? o : NULL, &count);
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
        unsigned part = strcmp(kind, "state") == 0 ? CKPT_STATE : part_of(name);
        if (!(parts & part))
            continue;
        named_tensor *e = NULL;
        for (int i = 0; i < count && !e; i++)
            if (strcmp(ts[i].name, name) == 0)
                e = &ts[i];
        if (!e) {
            snprintf(err, errlen, "%s: the checkpoint has it, this model does not (a different %s?)", name,
                     part == CKPT_STATE ? "optimiser" : part == CKPT_HEAD ? "projection head" :
                     part == CKPT_FC ? "classifier" : "encoder");
            goto done;
        }
        bool same = t.dtype == e->dtype && t.rank == e->rank;
        for (int k = 0; same && k < t.rank; k++)
            same = t.shape[k] == e->shape[k];
        if (!same) {
            char have[128], want[128];
            describe_shape(have, sizeof have, t.rank, t.shape);
            describe_shape(want, sizeof want, e->rank, e->shape);
            snprintf(err, errlen, "%s: the checkpoint's is %s %s, this model's %s %s", name,
                     mts_dtype_name(t.dtype), have, mts_dtype_name(e->dtype), want);
            goto done;
        }
        memcpy(e->data, t.data, t.nbytes);
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
                     ts[i].part == CKPT_STATE ? " (saved without optimiser state, or another optimiser)" : "");
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

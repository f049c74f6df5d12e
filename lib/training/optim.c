#include "optim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

// Parameters smaller than this are updated by one thread: waking the team
// costs more than the work.
#define PARALLEL_MIN 32768

optim_config optim_defaults(optim_kind kind)
{
    optim_config c = {.kind = kind, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8,
                      .trust_coef = 0.001};
    if (kind == OPTIM_LARS)
        c.momentum = 0.9;
    if (kind == OPTIM_ADAMW)
        c.weight_decay = 0.01;
    return c;
}

static const char *const kind_names[] = {"sgd", "lars", "adamw"};

bool optim_kind_parse(const char *name, optim_kind *out)
{
    for (int k = 0; k < 3; k++)
        if (strcmp(name, kind_names[k]) == 0) {
            *out = (optim_kind)k;
            return true;
        }
    return false;
}

const char *optim_kind_name(optim_kind kind)
{
    return kind_names[kind];
}

optimizer *optim_create(const param_list *params, const optim_config *cfg)
{
    optimizer *o = xcalloc(1, sizeof *o);
    o->cfg = *cfg;
    o->params = params;
    o->count = params->count;
    o->nslots = cfg->kind == OPTIM_ADAMW ? 2 : 1;
    for (int k = 0; k < o->nslots; k++) {
        o->slot[k] = xcalloc((size_t)params->count, sizeof(float *));
        for (int p = 0; p < params->count; p++)
            if (!params->items[p].frozen)
                o->slot[k][p] = xcalloc(params->items[p].n, sizeof(float));
    }
    return o;
}

void optim_free(optimizer *o)
{
    if (!o)
        return;
    for (int k = 0; k < o->nslots; k++) {
        for (int p = 0; p < o->count; p++)
            free(o->slot[k][p]);
        free(o->slot[k]);
    }
    free(o);
}

static void sgd_update(const optim_config *c, const param_t *p, float *buf, double lr)
{
    float rate = (float)lr;
    float wd = p->no_decay ? 0.0f : (float)c->weight_decay, m = (float)c->momentum;
    bool nesterov = c->nesterov;
    float *w = p->w;
    const float *g = p->g;
    ptrdiff_t n = (ptrdiff_t)p->n;
#pragma omp parallel for schedule(static) if (n >= PARALLEL_MIN)
    for (ptrdiff_t i = 0; i < n; i++) {
        float d = g[i] + wd * w[i];
        buf[i] = m * buf[i] + d;
        w[i] -= rate * (nesterov ? d + m * buf[i] : buf[i]);
    }
}

static void lars_update(const optim_config *c, const param_t *p, float *v, double lr)
{
    float wd = p->no_decay ? 0.0f : (float)c->weight_decay, m = (float)c->momentum;
    bool nesterov = c->nesterov;
    float *w = p->w;
    const float *g = p->g;
    ptrdiff_t n = (ptrdiff_t)p->n;
    double trust = 1.0;
    if (!p->no_decay) {
        // Norms of w and of the decayed gradient, summed in order: the trust
        // ratio must not depend on the thread count.
        double ww = 0, gg = 0;
        for (ptrdiff_t i = 0; i < n; i++) {
            float d = g[i] + wd * w[i];
            ww += (double)w[i] * w[i];
            gg += (double)d * d;
        }
        if (ww > 0 && gg > 0)
            trust = c->trust_coef * sqrt(ww) / sqrt(gg);
    }
    float scaled_lr = (float)(lr * trust);
#pragma omp parallel for schedule(static) if (n >= PARALLEL_MIN)
    for (ptrdiff_t i = 0; i < n; i++) {
        float step = scaled_lr * (g[i] + wd * w[i]);
        v[i] = m * v[i] + step;
        w[i] -= nesterov ? m * v[i] + step : v[i];
    }
}

static void adamw_update(const optim_config *c, const param_t *p, float *exp_avg,
                         float *exp_avg_sq, double lr, int64_t t)
{
    float decay = p->no_decay ? 1.0f : (float)(1.0 - lr * c->weight_decay);
    float b1 = (float)c->beta1, b2 = (float)c->beta2, eps = (float)c->eps;
    float one_minus_b1 = (float)(1.0 - c->beta1), one_minus_b2 = (float)(1.0 - c->beta2);
    float step_size = (float)(lr / (1.0 - pow(c->beta1, (double)t)));
    float bc2_sqrt = (float)sqrt(1.0 - pow(c->beta2, (double)t));
    float *w = p->w;
    const float *g = p->g;
    ptrdiff_t n = (ptrdiff_t)p->n;
#pragma omp parallel for schedule(static) if (n >= PARALLEL_MIN)
    for (ptrdiff_t i = 0; i < n; i++) {
        w[i] *= decay;
        exp_avg[i] = b1 * exp_avg[i] + one_minus_b1 * g[i];
        exp_avg_sq[i] = b2 * exp_avg_sq[i] + one_minus_b2 * g[i] * g[i];
        w[i] -= step_size * exp_avg[i] / (sqrtf(exp_avg_sq[i]) / bc2_sqrt + eps);
    }
}

void optim_step(optimizer *o, double lr)
{
    if (o->params->count != o->count)
        die("optim", "the parameter list changed after the optimiser was made (%d, now %d)",
            o->count, o->params->count);
    o->step++;
    for (int i = 0; i < o->count; i++) {
        const param_t *p = &o->params->items[i];
        if (!o->slot[0][i])
            continue;  // frozen
        switch (o->cfg.kind) {
        case OPTIM_SGD:
            sgd_update(&o->cfg, p, o->slot[0][i], lr);
            break;
        case OPTIM_LARS:
            lars_update(&o->cfg, p, o->slot[0][i], lr);
            break;
        case OPTIM_ADAMW:
            adamw_update(&o->cfg, p, o->slot[0][i], o->slot[1][i], lr, o->step);
            break;
        }
    }
}

int optim_state_count(const optimizer *o)
{
    int n = 0;
    for (int p = 0; p < o->count; p++)
        n += o->slot[0][p] != NULL;
    return n * o->nslots;
}

optim_state optim_state_get(const optimizer *o, int i)
{
    static const char *const slot_names[2][2] = {{"momentum", NULL}, {"exp_avg", "exp_avg_sq"}};
    const char *const *names = slot_names[o->cfg.kind == OPTIM_ADAMW];
    int seen = 0;
    for (int p = 0; p < o->count; p++) {
        if (!o->slot[0][p])
            continue;
        if (i < seen + o->nslots) {
            int k = i - seen;
            const param_t *par = &o->params->items[p];
            optim_state s = {.data = o->slot[k][p], .n = par->n, .rank = par->rank};
            memcpy(s.shape, par->shape, sizeof s.shape);
            snprintf(s.name, sizeof s.name, "%s.%s", par->name, names[k]);
            return s;
        }
        seen += o->nslots;
    }
    die("optim", "state tensor %d of %d does not exist", i, seen);
}

#include "param.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

param_t *param_add(param_list *l, float *w, float *g, int rank, const int64_t *shape,
                   bool no_decay, const char *name, ...)
{
    if (rank < 0 || rank > PARAM_MAX_RANK)
        die("param", "rank %d out of range", rank);
    if (l->count == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->items = xrealloc(l->items, (size_t)l->cap * sizeof *l->items);
    }
    param_t *p = &l->items[l->count++];
    memset(p, 0, sizeof *p);
    va_list ap;
    va_start(ap, name);
    int len = vsnprintf(p->name, sizeof p->name, name, ap);
    va_end(ap);
    if (len >= (int)sizeof p->name)
        die("param", "name too long: %s...", p->name);
    p->w = w;
    p->g = g;
    p->rank = rank;
    p->n = 1;
    for (int i = 0; i < rank; i++) {
        p->shape[i] = shape[i];
        p->n *= (size_t)shape[i];
    }
    p->no_decay = no_decay;
    return p;
}

param_t *param_find(const param_list *l, const char *name)
{
    for (int i = 0; i < l->count; i++)
        if (strcmp(l->items[i].name, name) == 0)
            return &l->items[i];
    return NULL;
}

void param_zero_grad(const param_list *l)
{
    for (int i = 0; i < l->count; i++)
        memset(l->items[i].g, 0, l->items[i].n * sizeof(float));
}

size_t param_count(const param_list *l)
{
    size_t n = 0;
    for (int i = 0; i < l->count; i++)
        n += l->items[i].n;
    return n;
}

void param_list_free(param_list *l)
{
    free(l->items);
    l->items = NULL;
    l->count = l->cap = 0;
}

void param_list_append(param_list *dst, const param_list *src)
{
    for (int i = 0; i < src->count; i++) {
        const param_t *p = &src->items[i];
        param_t *q = param_add(dst, p->w, p->g, p->rank, p->shape, p->no_decay, "%s", p->name);
        q->frozen = p->frozen;
    }
}

void param_ema_update(const param_list *ema, const param_list *src, double m)
{
    if (ema->count != src->count)
        die("momentum copy", "%d parameters, the model has %d", ema->count, src->count);
    const float keep = (float)m, take = (float)(1.0 - m);
    for (int i = 0; i < src->count; i++) {
        const param_t *e = &ema->items[i], *p = &src->items[i];
        if (e->n != p->n)
            die("momentum copy", "%s: %zu values, the model's %s has %zu", e->name, e->n, p->name, p->n);
        float *ew = e->w;
        const float *pw = p->w;
#pragma omp parallel for schedule(static) if (p->n > 65536)
        for (long k = 0; k < (long)p->n; k++)
            ew[k] = keep * ew[k] + take * pw[k];
    }
}

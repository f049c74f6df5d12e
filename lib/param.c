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

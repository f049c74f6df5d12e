#include "csv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

typedef struct {
    char **cells;
    int *lines;
    size_t ncells, cap;
    int nlines, lines_cap;
} grow;

static void add_cell(grow *g, const char *s, size_t n)
{
    if (g->ncells == g->cap) {
        g->cap = g->cap ? 2 * g->cap : 256;
        g->cells = xrealloc(g->cells, g->cap * sizeof *g->cells);
    }
    char *c = xmalloc(n + 1);
    memcpy(c, s, n);
    c[n] = 0;
    g->cells[g->ncells++] = c;
}

bool csv_parse(const char *data, size_t size, csv_t *out, char *err, size_t errlen)
{
    grow g = {0};
    size_t i = 0;
    if (size >= 3 && memcmp(data, "\xEF\xBB\xBF", 3) == 0)
        i = 3;
    int line = 1, ncols = -1, rowcells = 0, rowline = 1;
    char *field = xmalloc(size + 1);
    bool ok = true;
    while (i < size) {
        // One field.
        size_t n = 0;
        if (data[i] == '"') {
            int start = line;
            i++;
            for (;;) {
                if (i >= size) {
                    snprintf(err, errlen, "line %d: a quoted field is not closed", start);
                    ok = false;
                    goto done;
                }
                if (data[i] == '"') {
                    if (i + 1 < size && data[i + 1] == '"') {
                        field[n++] = '"';
                        i += 2;
                        continue;
                    }
                    i++;
                    break;
                }
                if (data[i] == '\n')
                    line++;
                field[n++] = data[i++];
            }
            if (i < size && data[i] != ',' && data[i] != '\n' && data[i] != '\r') {
                snprintf(err, errlen, "line %d: text after a closing quote", line);
                ok = false;
                goto done;
            }
        } else {
            while (i < size && data[i] != ',' && data[i] != '\n' && data[i] != '\r') {
                if (data[i] == '"') {
                    snprintf(err, errlen, "line %d: a quote inside an unquoted field", line);
                    ok = false;
                    goto done;
                }
                field[n++] = data[i++];
            }
        }
        if (rowcells == 0) {
            if (g.nlines == g.lines_cap) {
                g.lines_cap = g.lines_cap ? 2 * g.lines_cap : 256;
                g.lines = xrealloc(g.lines, (size_t)g.lines_cap * sizeof *g.lines);
            }
            g.lines[g.nlines++] = rowline;
        }
        add_cell(&g, field, n);
        rowcells++;
        if (i < size && data[i] == ',') {
            i++;
            if (i == size) {  // a trailing comma ends the row with an empty field
                add_cell(&g, "", 0);
                rowcells++;
            } else {
                continue;
            }
        }
        // End of a row.
        if (i < size && data[i] == '\r')
            i++;
        if (i < size && data[i] == '\n')
            i++;
        if (ncols < 0)
            ncols = rowcells;
        else if (rowcells != ncols) {
            snprintf(err, errlen, "line %d: %d fields, the header has %d", rowline, rowcells, ncols);
            ok = false;
            goto done;
        }
        rowcells = 0;
        line++;
        rowline = line;
        // Skip blank lines.
        while (i < size && (data[i] == '\n' || data[i] == '\r')) {
            if (data[i] == '\n')
                line++, rowline = line;
            i++;
        }
    }
    if (ncols < 0) {
        snprintf(err, errlen, "empty manifest (no header row)");
        ok = false;
    }
done:
    free(field);
    if (!ok) {
        for (size_t k = 0; k < g.ncells; k++)
            free(g.cells[k]);
        free(g.cells);
        free(g.lines);
        return false;
    }
    out->ncols = ncols;
    out->nrows = (int)(g.ncells / (size_t)ncols) - 1;
    out->cells = g.cells;
    out->lines = g.lines;
    return true;
}

int csv_column(const csv_t *c, const char *name)
{
    for (int k = 0; k < c->ncols; k++)
        if (strcmp(c->cells[k], name) == 0)
            return k;
    return -1;
}

const char *csv_cell(const csv_t *c, int r, int k)
{
    return c->cells[(size_t)(r + 1) * c->ncols + k];
}

void csv_free(csv_t *c)
{
    for (size_t k = 0; k < (size_t)(c->nrows + 1) * c->ncols; k++)
        free(c->cells[k]);
    free(c->cells);
    free(c->lines);
    memset(c, 0, sizeof *c);
}

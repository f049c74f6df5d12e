// case-pack: decode image files, group them by patient case, and write a
// random-access pack (see case-pack(1), mts(5)).
//
//   case-pack [options] -o OUT.pack MANIFEST.csv
//   case-pack [options] -o OUT.pack --dir ROOT
//   case-pack [options] -o OUT.pack --dir ROOT --layout dicom [--case-tag TAG] [--labels FILE]
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "csv.h"
#include "dicom.h"
#include "image.h"
#include "libmsg.h"
#include "pack.h"
#include "util.h"

static const char usage_text[] =
    "usage: case-pack [options] -o OUT.pack MANIFEST.csv\n"
    "       case-pack [options] -o OUT.pack --dir ROOT\n"
    "       case-pack [options] -o OUT.pack --dir ROOT --layout dicom [--case-tag TAG] [--labels FILE]\n"
    "Decode images, group them by case, write a random-access pack.\n"
    "\n"
    "input:\n"
    "      --dir ROOT          a folder tree instead of a manifest (see --layout)\n"
    "      --layout L          case: ROOT/CASE/FILES; class/case: ROOT/CLASS/CASE/FILES;\n"
    "                          dicom: DICOM files anywhere under ROOT, cases by --case-tag (default case)\n"
    "      --case-tag TAG      with --layout dicom: PatientID, StudyInstanceUID or SeriesInstanceUID\n"
    "                          (default PatientID)\n"
    "      --labels FILE       with --layout dicom: CSV of labels and splits keyed by the case id\n"
    "                          (columns --case-col, --label-col, --split-col)\n"
    "      --case-col NAME     manifest column of the case id (default case)\n"
    "      --path-col NAME     column of the file path, relative to the manifest (default path)\n"
    "      --label-col NAME    column of the label (default label; absent: unlabeled)\n"
    "      --split-col NAME    column of the split (default split; absent: --split)\n"
    "      --split NAME        split of every case when there is no split column (default train)\n"
    "      --multilabel        labels are ';'-separated findings (multi-label task)\n"
    "      --label-cols A,B    0/1 columns, one per finding (multi-label task)\n"
    "      --classes A,B,...   the class list and its order (default: sorted labels seen)\n"
    "images:\n"
    "  -s, --size N            resize so the short side is N (default 224; 0 keeps sizes)\n"
    "      --crop              then crop the centre N x N\n"
    "  -c, --channels C        1 (grey) or 3 (RGB) (default 3)\n"
    "      --keep-16bit        store 16-bit images as u16 (else map to 8 bits by --window)\n"
    "      --window SPEC       16 to 8 bits: dicom | percentile:LO,HI | fixed:LO,HI | full\n"
    "                          (default dicom: a DICOM file's own window, else percentile:0.5,99.5)\n"
    "      --max-pixels N      refuse larger images, before or after resizing\n"
    "                          (default 400000000)\n"
    "output:\n"
    "  -o, --output FILE       the pack (written to a temporary, renamed when complete)\n"
    "  -z, --zstd L            compress each case record with zstd level L (default 0)\n"
    "      --strict            stop at the first file that cannot be read (default: skip it)\n"
    "  -T, --threads N         decoding threads (default: all cores)\n"
    "  -q, --quiet             no progress, summary or library warnings (skipped files are still named)\n"
    "  -h, --help, -V, --version\n";

typedef struct {
    char *path;           // as given (relative to the manifest) for the record
    char *full;           // for opening
} file_ref;

typedef struct {
    char *id;
    int split;
    bool labeled;
    int label;
    uint8_t *labels;      // multi-label
    int nfiles, capfiles;
    file_ref *files;
} case_entry;

typedef struct {
    case_entry *cases;
    int ncases, cap;
    pack_meta meta;
    char *split_names[PACK_MAX_SPLITS];
    long long skipped;    // files left out before decoding (--layout dicom)
} dataset;

// ---- names: classes, splits, case ids ------------------------------------------------

static int cmp_str(const void *a, const void *b)
{
    const char *x = *(char *const *)a, *y = *(char *const *)b;
    // Numeric labels sort as numbers ("2" before "10").
    char *ex, *ey;
    long a_num = strtol(x, &ex, 10), b_num = strtol(y, &ey, 10);
    if (*x && *y && !*ex && !*ey)
        return (a_num > b_num) - (a_num < b_num);
    return strcmp(x, y);
}

typedef struct {
    char **items;
    int n, cap;
} strset;

static int strset_find(const strset *s, const char *v)
{
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->items[i], v) == 0)
            return i;
    return -1;
}

static int strset_add(strset *s, const char *v)
{
    int i = strset_find(s, v);
    if (i >= 0)
        return i;
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 16;
        s->items = xrealloc(s->items, (size_t)s->cap * sizeof *s->items);
    }
    s->items[s->n] = xstrdup(v);
    return s->n++;
}

// Splits "a,b;c" at any of `seps`, trimming spaces; empty items are dropped.
static int split_list(const char *s, const char *seps, char ***out)
{
    char *copy = xstrdup(s);
    int n = 0, cap = 8;
    char **items = xmalloc((size_t)cap * sizeof *items);
    for (char *save, *tok = strtok_r(copy, seps, &save); tok; tok = strtok_r(NULL, seps, &save)) {
        while (*tok == ' ')
            tok++;
        size_t len = strlen(tok);
        while (len && tok[len - 1] == ' ')
            tok[--len] = 0;
        if (!len)
            continue;
        if (n == cap)
            items = xrealloc(items, (size_t)(cap *= 2) * sizeof *items);
        items[n++] = xstrdup(tok);
    }
    free(copy);
    *out = items;
    return n;
}

// ---- the dataset from a manifest or a folder tree -------------------------------------

typedef struct {
    const char *case_col, *path_col, *label_col, *split_col, *split, *label_cols, *classes, *layout;
    const char *case_tag, *labels;
    bool multilabel, strict, quiet;
} input_opts;

static case_entry *find_or_add_case(dataset *d, const char *id, int *index_hint)
{
    // Manifests list a case's files together, so the last case is the usual hit.
    if (*index_hint >= 0 && strcmp(d->cases[*index_hint].id, id) == 0)
        return &d->cases[*index_hint];
    for (int i = d->ncases - 1; i >= 0; i--)
        if (strcmp(d->cases[i].id, id) == 0)
            return &d->cases[*index_hint = i];
    if (d->ncases == d->cap) {
        d->cap = d->cap ? 2 * d->cap : 256;
        d->cases = xrealloc(d->cases, (size_t)d->cap * sizeof *d->cases);
    }
    case_entry *c = &d->cases[*index_hint = d->ncases++];
    memset(c, 0, sizeof *c);
    c->id = xstrdup(id);
    c->label = -1;
    return c;
}

static void add_file(case_entry *c, const char *path, const char *full)
{
    if (c->nfiles == c->capfiles) {
        c->capfiles = c->capfiles ? 2 * c->capfiles : 4;
        c->files = xrealloc(c->files, (size_t)c->capfiles * sizeof *c->files);
    }
    c->files[c->nfiles++] = (file_ref){xstrdup(path), xstrdup(full)};
}

// Sets the class list from --classes or from the sorted set of labels seen
// (whose strings it takes over or frees).
static void set_classes(dataset *d, const char *fixed, strset *seen)
{
    if (fixed) {
        char **items;
        d->meta.nclasses = split_list(fixed, ",", &items);
        d->meta.classes = items;
        for (int i = 0; i < seen->n; i++)
            free(seen->items[i]);
        free(seen->items);
        return;
    }
    qsort(seen->items, (size_t)seen->n, sizeof *seen->items, cmp_str);
    d->meta.nclasses = seen->n;
    d->meta.classes = seen->items;
}

static int class_index(const dataset *d, const char *name, const char *where)
{
    for (int k = 0; k < d->meta.nclasses; k++)
        if (strcmp(d->meta.classes[k], name) == 0)
            return k;
    die(where, "label '%s' is not in the class list (--classes)", name);
}

static void check_ids(const char *where, const char *what, const char *s)
{
    if (!*s)
        die(where, "empty %s", what);
    if (strlen(s) >= PACK_NAME_MAX)
        die(where, "%s longer than %d bytes", what, PACK_NAME_MAX - 1);
}

// A whole file; NULL with the reason in err.
static char *read_whole(const char *path, size_t *size, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot open: %s", strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0, got;
    char *data = xmalloc(cap);
    while ((got = fread(data + n, 1, cap - n, f)) > 0)
        if ((n += got) == cap)
            data = xrealloc(data, cap *= 2);
    bool bad = ferror(f);
    fclose(f);
    if (bad) {
        snprintf(err, errlen, "read error");
        free(data);
        return NULL;
    }
    *size = n;
    return data;
}

static void read_csv(const char *path, csv_t *csv)
{
    char err[300];
    size_t size;
    char *data = read_whole(path, &size, err, sizeof err);
    if (!data)
        die(path, "%s", err);
    if (!csv_parse(data, size, csv, err, sizeof err))
        die(path, "%s", err);
    free(data);
}

static void load_manifest(const char *manifest, const input_opts *in, dataset *d)
{
    csv_t csv;
    read_csv(manifest, &csv);
    if (csv.nrows == 0)
        die(manifest, "empty manifest (a header row and no files)");
    int case_k = csv_column(&csv, in->case_col), path_k = csv_column(&csv, in->path_col);
    int label_k = csv_column(&csv, in->label_col), split_k = csv_column(&csv, in->split_col);
    if (case_k < 0)
        die(manifest, "no column '%s' (--case-col) in the header", in->case_col);
    if (path_k < 0)
        die(manifest, "no column '%s' (--path-col) in the header", in->path_col);
    if (in->split_col && strcmp(in->split_col, "split") != 0 && split_k < 0)
        die(manifest, "no column '%s' (--split-col) in the header", in->split_col);
    // Multi-label from 0/1 columns.
    char **label_cols = NULL;
    int nlabel_cols = in->label_cols ? split_list(in->label_cols, ",", &label_cols) : 0;
    int *label_col_k = xcalloc((size_t)nlabel_cols + 1, sizeof *label_col_k);
    for (int j = 0; j < nlabel_cols; j++)
        if ((label_col_k[j] = csv_column(&csv, label_cols[j])) < 0)
            die(manifest, "no column '%s' (--label-cols) in the header", label_cols[j]);
    if (in->label_col && strcmp(in->label_col, "label") != 0 && label_k < 0)
        die(manifest, "no column '%s' (--label-col) in the header", in->label_col);

    pack_meta *m = &d->meta;
    m->task = nlabel_cols || in->multilabel ? TASK_MULTILABEL : label_k >= 0 ? TASK_MULTICLASS : TASK_NONE;
    if (nlabel_cols) {
        m->nclasses = nlabel_cols;
        m->classes = label_cols;
    } else if (m->task != TASK_NONE) {
        strset seen = {0};
        for (int r = 0; r < csv.nrows; r++) {
            const char *cell = csv_cell(&csv, r, label_k);
            if (m->task == TASK_MULTICLASS) {
                if (*cell)
                    strset_add(&seen, cell);
                continue;
            }
            char **items;
            int n = split_list(cell, ";", &items);
            for (int j = 0; j < n; j++) {
                strset_add(&seen, items[j]);
                free(items[j]);
            }
            free(items);
        }
        set_classes(d, in->classes, &seen);
    }
    if (m->nclasses > PACK_MAX_CLASSES)
        die(manifest, "%d classes, more than %d", m->nclasses, PACK_MAX_CLASSES);

    strset splits = {0};
    int hint = -1;
    // Duplicate paths are found by sorting a copy (a manifest may have
    // millions of rows).
    const char **all_paths = xmalloc((size_t)csv.nrows * sizeof *all_paths);
    char *dir = xstrdup(manifest);
    char *slash = strrchr(dir, '/');
    if (slash)
        slash[1] = 0;
    else
        dir[0] = 0;
    for (int r = 0; r < csv.nrows; r++) {
        char where[PACK_NAME_MAX + 64];
        snprintf(where, sizeof where, "%s: line %d", manifest, csv.lines[r + 1]);
        const char *id = csv_cell(&csv, r, case_k), *path = csv_cell(&csv, r, path_k);
        check_ids(where, "case id", id);
        check_ids(where, "path", path);
        const char *split = split_k >= 0 ? csv_cell(&csv, r, split_k) : in->split;
        check_ids(where, "split", split);
        int s = strset_add(&splits, split);
        if (s >= PACK_MAX_SPLITS)
            die(where, "more than %d splits", PACK_MAX_SPLITS);
        case_entry *c = find_or_add_case(d, id, &hint);
        bool first = c->nfiles == 0;
        // Labels of a case: every row must agree.
        bool labeled = false;
        int label = -1;
        uint8_t *labels = NULL;
        if (m->task == TASK_MULTICLASS) {
            const char *v = csv_cell(&csv, r, label_k);
            labeled = *v != 0;
            if (labeled)
                label = class_index(d, v, where);
        } else if (m->task == TASK_MULTILABEL) {
            labels = xcalloc((size_t)m->nclasses, 1);
            if (nlabel_cols) {
                labeled = true;
                for (int j = 0; j < nlabel_cols; j++) {
                    const char *v = csv_cell(&csv, r, label_col_k[j]);
                    if (strcmp(v, "0") != 0 && strcmp(v, "1") != 0)
                        die(where, "column '%s': expected 0 or 1, found '%s'", label_cols[j], v);
                    labels[j] = v[0] == '1';
                }
            } else {
                char **items;
                int n = split_list(csv_cell(&csv, r, label_k), ";", &items);
                // "none" style empty cells mean no finding, not unlabeled.
                labeled = true;
                for (int j = 0; j < n; j++) {
                    labels[class_index(d, items[j], where)] = 1;
                    free(items[j]);
                }
                free(items);
            }
        }
        if (first) {
            c->split = s;
            c->labeled = labeled;
            c->label = label;
            c->labels = labels;
        } else {
            if (c->split != s)
                die(where, "case '%s' is in two splits (%s and %s)", id, splits.items[c->split], split);
            bool same = c->labeled == labeled && c->label == label &&
                        (!labels || memcmp(c->labels, labels, (size_t)m->nclasses) == 0);
            if (!same)
                die(where, "case '%s' has different labels on different rows", id);
            free(labels);
        }
        char *full = xmalloc(strlen(dir) + strlen(path) + 1);
        sprintf(full, "%s%s", path[0] == '/' ? "" : dir, path);
        add_file(c, path, full);
        free(full);
        all_paths[r] = c->files[c->nfiles - 1].path;
    }
    qsort(all_paths, (size_t)csv.nrows, sizeof *all_paths, cmp_str);
    for (int r = 1; r < csv.nrows; r++)
        if (strcmp(all_paths[r], all_paths[r - 1]) == 0)
            die(manifest, "the path '%s' is listed twice", all_paths[r]);
    free(all_paths);
    free(dir);
    free(label_col_k);
    m->nsplits = splits.n;
    m->splits = splits.items;
    csv_free(&csv);
}

static char *path_join(const char *dir, const char *name)
{
    char *p = xmalloc(strlen(dir) + strlen(name) + 2);
    sprintf(p, "%s/%s", dir, name);
    return p;
}

static int cmp_dirent(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

// Sorted names of a folder's entries (no hidden ones) of the wanted kind.
static int list_dir(const char *path, bool want_dirs, char ***out)
{
    DIR *dir = opendir(path);
    if (!dir)
        die(path, "cannot open folder: %s", strerror(errno));
    int n = 0, cap = 16;
    char **names = xmalloc((size_t)cap * sizeof *names);
    struct dirent *e;
    while ((e = readdir(dir))) {
        if (e->d_name[0] == '.')
            continue;
        char *full = path_join(path, e->d_name);
        struct stat st;
        bool wanted = stat(full, &st) == 0 && (want_dirs ? S_ISDIR(st.st_mode) : S_ISREG(st.st_mode));
        free(full);
        if (!wanted)
            continue;
        if (n == cap)
            names = xrealloc(names, (size_t)(cap *= 2) * sizeof *names);
        names[n++] = xstrdup(e->d_name);
    }
    closedir(dir);
    qsort(names, (size_t)n, sizeof *names, cmp_dirent);
    *out = names;
    return n;
}

static void add_case_folder(dataset *d, const char *root, const char *rel, const char *id, int label)
{
    char *folder = path_join(root, rel);
    char **files;
    int n = list_dir(folder, false, &files);
    if (n == 0) {
        warnf(folder, "no files: case skipped");
        free(files);
        free(folder);
        return;
    }
    int hint = -1;
    check_ids(folder, "case id", id);
    for (int i = 0; i < d->ncases; i++)
        if (strcmp(d->cases[i].id, id) == 0)
            die(folder, "case id '%s' appears twice in the tree", id);
    case_entry *c = find_or_add_case(d, id, &hint);
    c->split = 0;
    c->labeled = label >= 0;
    c->label = label;
    for (int i = 0; i < n; i++) {
        char *path = path_join(rel, files[i]), *full = path_join(root, path);
        add_file(c, path, full);
        free(path);
        free(full);
        free(files[i]);
    }
    free(files);
    free(folder);
}

// ---- DICOM folders: cases from a tag ---------------------------------------------------

typedef struct {
    char **paths;   // relative to the root
    int n, cap;
} path_list;

// Every regular file under root/rel (not hidden), in name order, depth first.
static void walk(const char *root, const char *rel, path_list *out, int depth)
{
    char *folder = *rel ? path_join(root, rel) : xstrdup(root);
    if (depth > 64)
        die(folder, "folders nested more than 64 deep");
    char **names;
    int n = list_dir(folder, false, &names);
    for (int i = 0; i < n; i++) {
        if (out->n == out->cap) {
            out->cap = out->cap ? 2 * out->cap : 256;
            out->paths = xrealloc(out->paths, (size_t)out->cap * sizeof *out->paths);
        }
        out->paths[out->n++] = *rel ? path_join(rel, names[i]) : xstrdup(names[i]);
        free(names[i]);
    }
    free(names);
    n = list_dir(folder, true, &names);
    for (int i = 0; i < n; i++) {
        char *sub = *rel ? path_join(rel, names[i]) : xstrdup(names[i]);
        walk(root, sub, out, depth + 1);
        free(sub);
        free(names[i]);
    }
    free(names);
    free(folder);
}

typedef struct {
    bool dicom, ok;
    char id[DICOM_ID_MAX + 1];   // empty: the file has no such tag
    char err[400];
} tag_result;

// The case id of one file: the tag's value (empty if absent); ok false
// with the reason when the file is not DICOM or is malformed.
static void read_case_tag(const char *path, const char *tag, tag_result *r)
{
    size_t size;
    char *data = read_whole(path, &size, r->err, sizeof r->err);
    if (!data)
        return;
    r->dicom = dicom_sniff(data, size);
    dicom_file f;
    if (r->dicom && dicom_parse(data, size, &f, r->err, sizeof r->err)) {
        const char *v = strcmp(tag, "PatientID") == 0          ? f.patient_id
                        : strcmp(tag, "StudyInstanceUID") == 0 ? f.study_uid
                                                               : f.series_uid;
        snprintf(r->id, sizeof r->id, "%s", v);
        r->ok = true;
        dicom_free(&f);
    }
    free(data);
}

// --labels: one row per case id, with its label and split; rows sorted by
// id for the lookups (a label file may have a row per patient of a
// hospital).
typedef struct {
    csv_t csv;
    int key_k, label_k, split_k;
    int *by_id;
    bool *used;
} label_table;

static const label_table *sorting;   // qsort has no context argument

static int cmp_rows(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    int c = strcmp(csv_cell(&sorting->csv, x, sorting->key_k), csv_cell(&sorting->csv, y, sorting->key_k));
    return c ? c : (x > y) - (x < y);
}

static int label_row(const label_table *t, const char *id)
{
    int lo = 0, hi = t->csv.nrows;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (strcmp(csv_cell(&t->csv, t->by_id[mid], t->key_k), id) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < t->csv.nrows && strcmp(csv_cell(&t->csv, t->by_id[lo], t->key_k), id) == 0 ? t->by_id[lo] : -1;
}

static void load_labels(const char *path, const input_opts *in, dataset *d, label_table *t)
{
    read_csv(path, &t->csv);
    t->key_k = csv_column(&t->csv, in->case_col);
    t->label_k = csv_column(&t->csv, in->label_col);
    t->split_k = csv_column(&t->csv, in->split_col);
    if (t->key_k < 0)
        die(path, "no column '%s' (--case-col) in the header", in->case_col);
    if (strcmp(in->label_col, "label") != 0 && t->label_k < 0)
        die(path, "no column '%s' (--label-col) in the header", in->label_col);
    if (strcmp(in->split_col, "split") != 0 && t->split_k < 0)
        die(path, "no column '%s' (--split-col) in the header", in->split_col);
    strset seen = {0};
    t->by_id = xmalloc(((size_t)t->csv.nrows + 1) * sizeof *t->by_id);
    for (int r = 0; r < t->csv.nrows; r++) {
        char where[PACK_NAME_MAX + 64];
        snprintf(where, sizeof where, "%s: line %d", path, t->csv.lines[r + 1]);
        check_ids(where, "case id", csv_cell(&t->csv, r, t->key_k));
        if (t->label_k >= 0 && *csv_cell(&t->csv, r, t->label_k))
            strset_add(&seen, csv_cell(&t->csv, r, t->label_k));
        t->by_id[r] = r;
    }
    sorting = t;
    qsort(t->by_id, (size_t)t->csv.nrows, sizeof *t->by_id, cmp_rows);
    // One row per id, so that a case cannot be in two splits.
    for (int j = 1; j < t->csv.nrows; j++) {
        int first = t->by_id[j - 1], r = t->by_id[j];
        const char *id = csv_cell(&t->csv, r, t->key_k);
        if (strcmp(csv_cell(&t->csv, first, t->key_k), id) != 0)
            continue;
        char where[PACK_NAME_MAX + 64];
        snprintf(where, sizeof where, "%s: line %d", path, t->csv.lines[r + 1]);
        const char *s0 = t->split_k >= 0 ? csv_cell(&t->csv, first, t->split_k) : in->split;
        const char *s1 = t->split_k >= 0 ? csv_cell(&t->csv, r, t->split_k) : in->split;
        if (strcmp(s0, s1) != 0)
            die(where, "case '%s' is in two splits (%s and %s)", id, s0, s1);
        die(where, "case '%s' is listed twice", id);
    }
    d->meta.task = t->label_k >= 0 ? TASK_MULTICLASS : TASK_NONE;
    if (d->meta.task == TASK_MULTICLASS)
        set_classes(d, in->classes, &seen);
    else
        free(seen.items);
    if (d->meta.nclasses > PACK_MAX_CLASSES)
        die(path, "%d classes, more than %d", d->meta.nclasses, PACK_MAX_CLASSES);
    t->used = xcalloc((size_t)t->csv.nrows + 1, sizeof *t->used);
}

static void load_dicom_tree(const char *root, const input_opts *in, dataset *d)
{
    path_list files = {0};
    walk(root, "", &files, 0);
    label_table labels = {.key_k = -1, .label_k = -1, .split_k = -1};
    if (in->labels)
        load_labels(in->labels, in, d, &labels);
    tag_result *res = xcalloc((size_t)files.n + 1, sizeof *res);
    char **full = xmalloc(((size_t)files.n + 1) * sizeof *full);
    for (int i = 0; i < files.n; i++)
        full[i] = path_join(root, files.paths[i]);
#pragma omp parallel for schedule(dynamic, 4)
    for (int i = 0; i < files.n; i++)
        read_case_tag(full[i], in->case_tag, &res[i]);
    strset splits = {0};
    int hint = -1, untagged = 0;
    for (int i = 0; i < files.n; i++) {
        tag_result *r = &res[i];
        if (!r->ok) {
            // Files that are not DICOM (a README, a DICOMDIR's neighbours)
            // are noted, never fatal; DICOM files that cannot be read are,
            // under --strict.
            if (in->strict && r->dicom)
                die(full[i], "%s", r->err);
            if (!in->quiet)
                warnf(full[i], "%s (skipped)", r->dicom ? r->err : *r->err ? r->err : "not a DICOM file");
            d->skipped++;
            continue;
        }
        // Without the tag (anonymised files, test images) a file is a case
        // of its own, named by its path under the root.
        if (!*r->id) {
            snprintf(r->id, sizeof r->id, "%s", files.paths[i]);
            if (strlen(files.paths[i]) >= sizeof r->id)
                die(full[i], "no %s, and a path longer than %d bytes to name its case by", in->case_tag,
                    DICOM_ID_MAX);
            untagged++;
        }
        char where[PACK_NAME_MAX + 64];
        snprintf(where, sizeof where, "%s: %s", full[i], in->case_tag);
        check_ids(where, "case id", r->id);
        case_entry *c = find_or_add_case(d, r->id, &hint);
        if (c->nfiles == 0) {   // a new case
            int row = in->labels ? label_row(&labels, r->id) : -1;
            const char *split = in->split;
            if (row >= 0) {
                labels.used[row] = true;
                if (labels.split_k >= 0)
                    split = csv_cell(&labels.csv, row, labels.split_k);
                const char *label = labels.label_k >= 0 ? csv_cell(&labels.csv, row, labels.label_k) : "";
                if (*label) {
                    char lwhere[PACK_NAME_MAX + 64];
                    snprintf(lwhere, sizeof lwhere, "%s: line %d", in->labels, labels.csv.lines[row + 1]);
                    c->labeled = true;
                    c->label = class_index(d, label, lwhere);
                }
            }
            check_ids(where, "split", split);
            c->split = strset_add(&splits, split);
            if (c->split >= PACK_MAX_SPLITS)
                die(where, "more than %d splits", PACK_MAX_SPLITS);
        }
        add_file(c, files.paths[i], full[i]);
    }
    if (untagged && !in->quiet)
        warnf(root, "%d DICOM files without a %s: each is a case of its own, named by its path", untagged,
              in->case_tag);
    if (in->labels && !in->quiet) {
        int unused = 0;
        for (int r = 0; r < labels.csv.nrows; r++)
            unused += !labels.used[r];
        if (unused)
            warnf(in->labels, "%d of its %d case ids match no DICOM file under %s", unused, labels.csv.nrows, root);
    }
    for (int i = 0; i < files.n; i++) {
        free(files.paths[i]);
        free(full[i]);
    }
    free(files.paths);
    free(full);
    free(res);
    if (in->labels) {
        csv_free(&labels.csv);
        free(labels.used);
        free(labels.by_id);
    }
    d->meta.nsplits = splits.n;
    d->meta.splits = splits.items;
    if (d->ncases == 0)
        die(root, "no DICOM file found");
}

static void load_tree(const char *root, const input_opts *in, dataset *d)
{
    if (strcmp(in->layout, "dicom") == 0) {
        load_dicom_tree(root, in, d);
        return;
    }
    pack_meta *m = &d->meta;
    m->nsplits = 1;
    m->splits = xmalloc(sizeof *m->splits);
    m->splits[0] = xstrdup(in->split);
    char **top;
    int ntop = list_dir(root, true, &top);
    if (strcmp(in->layout, "case") == 0) {
        m->task = TASK_NONE;
        for (int i = 0; i < ntop; i++)
            add_case_folder(d, root, top[i], top[i], -1);
    } else if (strcmp(in->layout, "class/case") == 0) {
        m->task = TASK_MULTICLASS;
        strset seen = {0};
        for (int i = 0; i < ntop; i++)
            strset_add(&seen, top[i]);
        set_classes(d, in->classes, &seen);
        for (int i = 0; i < ntop; i++) {
            char *where = path_join(root, top[i]);
            int label = class_index(d, top[i], where);
            char **cases;
            int ncase = list_dir(where, true, &cases);
            for (int j = 0; j < ncase; j++) {
                char *rel = path_join(top[i], cases[j]);
                add_case_folder(d, root, rel, cases[j], label);
                free(rel);
                free(cases[j]);
            }
            free(cases);
            free(where);
        }
    } else {
        die_usage("--layout: '%s' is not case, class/case or dicom", in->layout);
    }
    for (int i = 0; i < ntop; i++)
        free(top[i]);
    free(top);
    if (d->ncases == 0)
        die(root, "no cases found (layout %s)", in->layout);
}

static void dataset_free(dataset *d)
{
    for (int i = 0; i < d->ncases; i++) {
        case_entry *c = &d->cases[i];
        for (int j = 0; j < c->nfiles; j++) {
            free(c->files[j].path);
            free(c->files[j].full);
        }
        free(c->files);
        free(c->id);
        free(c->labels);
    }
    free(d->cases);
    for (int k = 0; k < d->meta.nclasses; k++)
        free(d->meta.classes[k]);
    free(d->meta.classes);
    for (int k = 0; k < d->meta.nsplits; k++)
        free(d->meta.splits[k]);
    free(d->meta.splits);
}

// ---- decoding and writing ---------------------------------------------------------------

typedef struct {
    image_t *images;
    int count;
    char err[400];
    bool ok;
    libmsg_list msgs;   // the libraries' warnings while decoding it
} decoded;

int main(int argc, char **argv)
{
    util_init(argv[0]);
    input_opts in = {.case_col = "case", .path_col = "path", .label_col = "label",
                     .split_col = "split", .split = "train", .layout = "case", .case_tag = "PatientID"};
    image_opts io = {.size = 224, .channels = 3, .max_pixels = 400000000ull,
                     .window = {WINDOW_DICOM, 0.5, 99.5}};
    const char *output = NULL, *root = NULL;
    int zstd_level = 0, threads = 0;
    bool strict = false, quiet = false, case_tag_given = false;
    enum { OPT_DIR = 256, OPT_LAYOUT, OPT_CASE, OPT_PATH, OPT_LABEL, OPT_SPLITCOL, OPT_SPLIT,
           OPT_MULTI, OPT_LABELCOLS, OPT_CLASSES, OPT_CROP, OPT_KEEP16, OPT_WINDOW, OPT_MAXPIX,
           OPT_STRICT, OPT_CASETAG, OPT_LABELS };
    static const struct option longopts[] = {
        {"dir", required_argument, 0, OPT_DIR}, {"layout", required_argument, 0, OPT_LAYOUT},
        {"case-col", required_argument, 0, OPT_CASE}, {"path-col", required_argument, 0, OPT_PATH},
        {"label-col", required_argument, 0, OPT_LABEL}, {"split-col", required_argument, 0, OPT_SPLITCOL},
        {"split", required_argument, 0, OPT_SPLIT}, {"multilabel", no_argument, 0, OPT_MULTI},
        {"label-cols", required_argument, 0, OPT_LABELCOLS}, {"classes", required_argument, 0, OPT_CLASSES},
        {"size", required_argument, 0, 's'}, {"crop", no_argument, 0, OPT_CROP},
        {"channels", required_argument, 0, 'c'}, {"keep-16bit", no_argument, 0, OPT_KEEP16},
        {"window", required_argument, 0, OPT_WINDOW}, {"max-pixels", required_argument, 0, OPT_MAXPIX},
        {"output", required_argument, 0, 'o'}, {"zstd", required_argument, 0, 'z'},
        {"strict", no_argument, 0, OPT_STRICT}, {"case-tag", required_argument, 0, OPT_CASETAG},
        {"labels", required_argument, 0, OPT_LABELS}, {"threads", required_argument, 0, 'T'},
        {"quiet", no_argument, 0, 'q'}, {"help", no_argument, 0, 'h'}, {"version", no_argument, 0, 'V'},
        {0, 0, 0, 0}};
    int opt;
    while ((opt = getopt_long(argc, argv, "s:c:o:z:T:qhV", longopts, NULL)) != -1) {
        switch (opt) {
        case OPT_DIR: root = optarg; break;
        case OPT_LAYOUT: in.layout = optarg; break;
        case OPT_CASE: in.case_col = optarg; break;
        case OPT_PATH: in.path_col = optarg; break;
        case OPT_LABEL: in.label_col = optarg; break;
        case OPT_SPLITCOL: in.split_col = optarg; break;
        case OPT_SPLIT: in.split = optarg; break;
        case OPT_MULTI: in.multilabel = true; break;
        case OPT_LABELCOLS: in.label_cols = optarg; break;
        case OPT_CLASSES: in.classes = optarg; break;
        case 's': io.size = (int)cli_int("--size", optarg, 0, 1 << 16); break;
        case OPT_CROP: io.centre_crop = true; break;
        case 'c':
            io.channels = (int)cli_int("--channels", optarg, 1, 3);
            if (io.channels == 2)
                die_usage("--channels: 1 or 3");
            break;
        case OPT_KEEP16: io.keep16 = true; break;
        case OPT_WINDOW:
            if (!image_window_parse(optarg, &io.window))
                die_usage("--window: '%s' is not dicom, percentile:LO,HI, fixed:LO,HI or full", optarg);
            break;
        case OPT_MAXPIX: io.max_pixels = (uint64_t)cli_int("--max-pixels", optarg, 1, 1ll << 40); break;
        case 'o': output = optarg; break;
        case 'z': zstd_level = (int)cli_int("--zstd", optarg, 0, 19); break;
        case OPT_STRICT: strict = true; break;
        case OPT_CASETAG:
            if (strcmp(optarg, "PatientID") != 0 && strcmp(optarg, "StudyInstanceUID") != 0 &&
                strcmp(optarg, "SeriesInstanceUID") != 0)
                die_usage("--case-tag: '%s' is not PatientID, StudyInstanceUID or SeriesInstanceUID", optarg);
            in.case_tag = optarg;
            case_tag_given = true;
            break;
        case OPT_LABELS: in.labels = optarg; break;
        case 'T': threads = (int)cli_int("--threads", optarg, 1, 1024); break;
        case 'q': quiet = true; break;
        case 'h': fputs(usage_text, stdout); return 0;
        case 'V': cli_version(NULL); return 0;
        default: die_usage("unknown option");
        }
    }
    if (!output)
        die_usage("no output: name the pack with -o");
    if (root ? optind != argc : optind != argc - 1)
        die_usage(root ? "--dir takes no manifest" : "one manifest (or --dir ROOT)");
    if (io.centre_crop && io.size == 0)
        die_usage("--crop needs --size");
    if (root && (in.label_cols || in.multilabel))
        die_usage("--multilabel and --label-cols need a manifest");
    bool tags = root && strcmp(in.layout, "dicom") == 0;
    if (!tags && (in.labels || case_tag_given))
        die_usage("--labels and --case-tag need --dir ROOT --layout dicom");
    in.strict = strict;
    in.quiet = quiet;
    if (threads > 0)
        omp_set_num_threads(threads);
    image_init(argv[0]);
    libmsg_set_quiet(quiet);

    dataset d = {0};
    if (root)
        load_tree(root, &in, &d);
    else
        load_manifest(argv[optind], &in, &d);
    pack_meta *m = &d.meta;
    m->channels = io.channels;
    m->dtype = io.keep16 ? MTS_U16 : MTS_U8;
    m->size = io.size;
    m->centre_crop = io.centre_crop;

    // Decode in windows of files (bounded memory), in parallel within a
    // window, and write the cases in input order: the same bytes whatever
    // the thread count.
    pack_writer *w = pack_writer_open(output, m, zstd_level, argc, argv);
    int window = 64 * omp_get_max_threads();
    long long nfiles_total = 0, nimages = 0, skipped_files = d.skipped, skipped_cases = 0, written = 0;
    for (int i = 0; i < d.ncases; i++)
        nfiles_total += d.cases[i].nfiles;
    // Per split: cases, images, and per class case counts.
    long long (*split_cases)[3] = xcalloc((size_t)m->nsplits, sizeof *split_cases);
    long long *class_cases = xcalloc((size_t)m->nsplits * (m->nclasses + 1), sizeof *class_cases);
    progress_t prog;
    progress_init(&prog, 10);
    long long done_files = 0;
    double t0 = now_seconds();
    for (int first = 0; first < d.ncases;) {
        int last = first, nf = 0;
        while (last < d.ncases && (nf == 0 || nf + d.cases[last].nfiles <= window))
            nf += d.cases[last++].nfiles;
        file_ref **refs = xmalloc((size_t)nf * sizeof *refs);
        decoded *dec = xcalloc((size_t)nf, sizeof *dec);
        for (int c = first, k = 0; c < last; c++)
            for (int j = 0; j < d.cases[c].nfiles; j++)
                refs[k++] = &d.cases[c].files[j];
#pragma omp parallel for schedule(dynamic, 1)
        for (int k = 0; k < nf; k++) {
            libmsg_capture(&dec[k].msgs);
            dec[k].ok = image_load_file(refs[k]->full, &io, &dec[k].images, &dec[k].count, dec[k].err,
                                        sizeof dec[k].err);
            libmsg_capture(NULL);
        }
        for (int c = first, k = 0; c < last; c++) {
            case_entry *ce = &d.cases[c];
            int ninst = 0;
            for (int j = 0; j < ce->nfiles; j++) {
                decoded *dj = &dec[k + j];
                libmsg_report(ce->files[j].full, &dj->msgs);
                if (!dj->ok) {
                    if (strict)
                        die(ce->files[j].full, "%s", dj->err);
                    // Even under -q: the summary that counts them is not printed then.
                    warnf(ce->files[j].full, "%s (skipped)", dj->err);
                    skipped_files++;
                }
                ninst += dj->ok ? dj->count : 0;
            }
            if (ninst > 0) {
                mts_tensor *tensors = xmalloc((size_t)ninst * sizeof *tensors);
                const char **files = xmalloc((size_t)ninst * sizeof *files);
                int *pages = xmalloc((size_t)ninst * sizeof *pages);
                int n = 0;
                for (int j = 0; j < ce->nfiles; j++)
                    for (int p = 0; dec[k + j].ok && p < dec[k + j].count; p++) {
                        image_t *im = &dec[k + j].images[p];
                        int64_t shape[3] = {im->channels, im->height, im->width};
                        tensors[n] = mts_tensor_make(im->u16 ? MTS_U16 : MTS_U8, 3, shape, im->pixels);
                        files[n] = ce->files[j].path;
                        pages[n++] = im->page;
                    }
                pack_case pc = {.id = ce->id, .split = ce->split, .labeled = ce->labeled,
                                .label = ce->label, .labels = ce->labels, .ninst = ninst,
                                .images = tensors, .files = files, .pages = pages};
                pack_write_case(w, &pc);
                written++;
                nimages += ninst;
                split_cases[ce->split][0]++;
                split_cases[ce->split][1] += ninst;
                int cls = ce->labeled && m->task == TASK_MULTICLASS ? ce->label : m->nclasses;
                if (m->task != TASK_MULTILABEL)
                    class_cases[ce->split * (m->nclasses + 1) + cls]++;
                else
                    for (int q = 0; q < m->nclasses; q++)
                        class_cases[ce->split * (m->nclasses + 1) + q] += ce->labels[q];
                free(tensors);
                free(files);
                free(pages);
            } else {
                skipped_cases++;
            }
            for (int j = 0; j < ce->nfiles; j++, k++) {
                for (int p = 0; dec[k].ok && p < dec[k].count; p++)
                    free(dec[k].images[p].pixels);
                free(dec[k].images);
            }
        }
        free(refs);
        free(dec);
        done_files += nf;
        first = last;
        if (!quiet) {
            double el = now_seconds() - t0;
            progress_update(&prog, "%lld/%lld files, %.0f files/s, %.0f s left", done_files, nfiles_total,
                            done_files / el, (nfiles_total - done_files) / (done_files / el));
        }
    }
    if (!quiet)
        progress_done(&prog);
    if (written == 0)
        die(output, "no case could be read: nothing written");
    pack_writer_close(w);
    if (!quiet) {
        fprintf(stderr, "case-pack: %s: %lld cases, %lld images, %d classes (%s); skipped %lld files, %lld cases; %.1f s\n",
                output, written, nimages, m->nclasses, pack_task_name(m->task), skipped_files, skipped_cases,
                now_seconds() - t0);
        for (int s = 0; s < m->nsplits; s++) {
            fprintf(stderr, "case-pack:   %-8s %lld cases, %lld images", m->splits[s], split_cases[s][0],
                    split_cases[s][1]);
            if (m->task != TASK_NONE) {
                fprintf(stderr, "; cases per class:");
                for (int q = 0; q < m->nclasses; q++)
                    fprintf(stderr, " %s=%lld", m->classes[q], class_cases[s * (m->nclasses + 1) + q]);
                if (m->task == TASK_MULTICLASS && class_cases[s * (m->nclasses + 1) + m->nclasses])
                    fprintf(stderr, " unlabeled=%lld", class_cases[s * (m->nclasses + 1) + m->nclasses]);
            }
            fputc('\n', stderr);
        }
    }
    free(split_cases);
    free(class_cases);
    dataset_free(&d);
    return 0;
}

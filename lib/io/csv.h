// csv: a strict reader of RFC 4180 CSV for manifests: a header row naming the
// columns, then one row per line; fields may be quoted ("a, b" and "say ""hi""")
// and span lines; CRLF or LF line ends; a UTF-8 byte-order mark is skipped.
// Errors name the line.  Every row must have as many fields as the header.
#ifndef MEDSSL_CSV_H
#define MEDSSL_CSV_H

#include <stdbool.h>
#include <stddef.h>

typedef struct {
    int ncols;
    int nrows;
    char **cells;   // (nrows + 1) x ncols, row 0 is the header; NUL-terminated
    int *lines;     // the line where each row starts (for messages)
} csv_t;

bool csv_parse(const char *data, size_t size, csv_t *out, char *err, size_t errlen);
// The header's index of `name`, or -1.
int csv_column(const csv_t *c, const char *name);
// Cell of data row r (0-based, the header excluded), column k.
const char *csv_cell(const csv_t *c, int r, int k);
void csv_free(csv_t *c);

#endif

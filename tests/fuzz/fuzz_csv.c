// Fuzz target: the manifest parser (csv_parse), then every cell and column
// lookup as case-pack makes them.  Properties: every row has the header's
// field count (csv_cell reads inside the table) and rows start on
// increasing lines (messages name the right line).
#include <string.h>

#include "csv.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    csv_t c;
    char err[300];
    if (!csv_parse((const char *)data, size, &c, err, sizeof err))
        return 0;
    if (c.ncols < 1 || c.nrows < 0)
        __builtin_trap();
    for (int r = 0; r < c.nrows; r++) {
        if (c.lines[r + 1] <= c.lines[r])
            __builtin_trap();
        for (int k = 0; k < c.ncols; k++) {
            const char *cell = csv_cell(&c, r, k);
            fuzz_touch(cell, strlen(cell) + 1);
        }
    }
    csv_column(&c, "case");
    csv_column(&c, "path");
    csv_free(&c);
    return 0;
}

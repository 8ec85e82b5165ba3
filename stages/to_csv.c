/*
 * to_csv(header, delim) — rows → CSV bytes (format.h: LF line ends, quotes
 * only where needed). The header line comes once, from the first batch's
 * schema, so the stage runs as one instance: replicas would each write it.
 *
 * Output is gathered into bytes batches of 64 KiB or more, so that a
 * stream of small row batches does not become a stream of tiny writes; a
 * big row batch is cut into pieces of about 1 MiB.
 */
#include "format.h"
#include "stages.h"

#include <stdlib.h>
#include <string.h>

#define TO_CSV_MIN ((size_t)64 << 10) /* emit once this much is gathered */
#define TO_CSV_MAX ((size_t)1 << 20)  /* and within a row batch, at about this */
#define TO_CSV_STEP 256u              /* rows formatted between size checks */

typedef struct to_csv_state {
    bool header;    /* a header line is still to be written */
    char delim;
    weir_batch *out;
    uint64_t off;   /* bytes emitted so far: the next batch's offset */
} to_csv_state;

static int to_csv_check(weir_stage *s, char *delim)
{
    const char *d = weir_stage_arg_str(s, "delim");
    if (strlen(d) != 1 || d[0] == '"' || d[0] == '\n' || d[0] == '\r')
        return weir_stage_errorf(s, WEIR_ESPEC,
                                 "delim must be one byte, not '\"', CR or LF (got \"%s\")", d);
    *delim = d[0];
    return 0;
}

static int to_csv_plan(weir_stage *s, const weir_schema *in, weir_schema **out)
{
    (void)in;
    (void)out; /* bytes carry no schema */
    char d;
    return to_csv_check(s, &d);
}

static int to_csv_open(weir_stage *s)
{
    to_csv_state *st = calloc(1, sizeof *st);
    if (!st) return WEIR_ENOMEM;
    weir_stage_set_state(s, st);
    st->header = weir_stage_arg_bool(s, "header");
    return to_csv_check(s, &st->delim);
}

static int to_csv_emit(weir_stage *s, to_csv_state *st)
{
    weir_batch *b = st->out;
    st->out = NULL;
    b->offset = st->off;
    st->off += b->len;
    return weir_stage_emit(s, b);
}

static int to_csv_process(weir_stage *s, weir_batch *in)
{
    to_csv_state *st = weir_stage_state(s);
    int rc = 0;
    if (!st->out) rc = weir_stage_batch(s, &st->out);
    if (!rc && st->header && in->schema) {
        st->header = false;
        rc = weir__csv_header(st->out, in->schema, st->delim);
    }
    for (uint32_t r = 0; r < in->nrows && !rc;) {
        uint32_t to = in->nrows - r > TO_CSV_STEP ? r + TO_CSV_STEP : in->nrows;
        rc = weir__csv_rows(st->out, in, r, to, st->delim);
        r = to;
        if (!rc && st->out->len >= TO_CSV_MAX) {
            rc = to_csv_emit(s, st);
            if (!rc) rc = weir_stage_batch(s, &st->out);
        }
    }
    weir_batch_release(in);
    if (rc == WEIR_ENOMEM) return weir_stage_errorf(s, rc, "out of memory");
    if (!rc && st->out->len >= TO_CSV_MIN) rc = to_csv_emit(s, st);
    return rc;
}

static int to_csv_finish(weir_stage *s)
{
    to_csv_state *st = weir_stage_state(s);
    return st->out && st->out->len ? to_csv_emit(s, st) : 0;
}

static void to_csv_close(weir_stage *s)
{
    to_csv_state *st = weir_stage_state(s);
    if (!st) return;
    weir_batch_release(st->out);
    free(st);
}

const weir_stage_def weir__stage_to_csv = {
    .abi = WEIR_ABI_VERSION,
    .name = "to_csv",
    .summary = "format rows as CSV (LF line ends, quotes only where needed)",
    .args = (const weir_arg_def[]){
        {"header", WEIR_ARG_BOOL, "true", "write the column names as the first line"},
        {"delim", WEIR_ARG_STRING, ",", "field delimiter, one byte (\"\\t\" for TSV)"},
        {NULL}},
    .in_kind = WEIR_KIND_ROWS,
    .out_kind = WEIR_KIND_BYTES,
    .open = to_csv_open,
    .process = to_csv_process,
    .finish = to_csv_finish,
    .close = to_csv_close,
    .plan = to_csv_plan,
};

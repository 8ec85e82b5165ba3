/*
 * fuzz_csv.c — the CSV parser, differentially.
 *
 * Each input is parsed by csv(header=false) in three set-ups that must
 * agree, and directly by libcsv on the whole buffer (strict mode, blanks
 * kept: the reference):
 *
 *   0. the input in batches of 1 byte, csv(engine="libcsv", workers=1):
 *      every record through libcsv, one worker;
 *   1. batches of 7 bytes, csv(chunk=16, workers=3): the fast parser,
 *      three replicas, a cut after every record or so;
 *   2. the whole input in one batch, csv() as it comes (workers=auto).
 *
 * (Where csv() has no engine/chunk arguments, all three are plain csv():
 * then only the batch boundaries differ.) Required:
 *
 *   - the three agree: same result code, same error message (it names the
 *     line and byte offset, which depend on neither batches nor workers),
 *     and on success the same rows in the same order;
 *   - libcsv's verdict decides the outcome: a quoting error, or records
 *     with different field counts (ragged), must fail the run with
 *     WEIR_EDATA, the rows before the error being a prefix of libcsv's;
 *     otherwise the run succeeds and every record equals libcsv's, field
 *     by field, byte for byte (a UTF-8 BOM at the start is dropped first,
 *     as csv() documents);
 *   - `| to_csv(header=false)` writes exactly what a plain RFC 4180 writer
 *     makes of those records (quotes only around fields holding a quote,
 *     comma, CR or LF; a lone empty field as ""), the same in the three
 *     set-ups, and that text parses back to the same records;
 *   - with delim=";" quote="'", the run agrees with libcsv set the same way.
 */
#include "fuzz_common.h"

#include <csv.h>

/* ---- the reference: libcsv on the whole buffer ----------------------------------------- */

typedef struct ref_parse {
    fz_buf rows;     /* the records, encoded as fz_sink encodes rows */
    fz_buf rec;      /* the record being parsed: its fields, encoded */
    uint32_t nfields;
    size_t nrecords;
    long ncols;      /* the first record's field count; -1 before it */
    bool ragged;
} ref_parse;

static void ref_on_field(void *data, size_t n, void *arg)
{
    ref_parse *r = arg;
    fz_put_u32(&r->rec, (uint32_t)n);
    fz_put(&r->rec, data, n);
    r->nfields++;
}

static void ref_on_row(int c, void *arg)
{
    (void)c;
    ref_parse *r = arg;
    if (r->ncols < 0) r->ncols = r->nfields;
    else if (r->ncols != (long)r->nfields) r->ragged = true;
    fz_put_u32(&r->rows, r->nfields);
    fz_put(&r->rows, r->rec.p, r->rec.len);
    r->rec.len = 0;
    r->nfields = 0;
    r->nrecords++;
}

static int ref_no_space(unsigned char c)
{
    (void)c;
    return 0;
}

/* @return true if libcsv accepts the whole input. */
static bool ref_csv(const unsigned char *d, size_t n, unsigned char delim,
                    unsigned char quote, bool drop_bom, ref_parse *r)
{
    memset(r, 0, sizeof *r);
    r->ncols = -1;
    if (drop_bom && n >= 3 && memcmp(d, "\xEF\xBB\xBF", 3) == 0) { /* as csv() does */
        d += 3;
        n -= 3;
    }
    struct csv_parser p;
    if (csv_init(&p, CSV_STRICT | CSV_STRICT_FINI) != 0) abort();
    csv_set_delim(&p, delim);
    csv_set_quote(&p, quote);
    csv_set_space_func(&p, ref_no_space);
    bool ok = csv_parse(&p, d, n, ref_on_field, ref_on_row, r) == n;
    if (ok) ok = csv_fini(&p, ref_on_field, ref_on_row, r) == 0;
    csv_free(&p);
    free(r->rec.p);
    return ok;
}

/* RFC 4180 as DESIGN.md pins it for output: LF ends, quotes only where
 * needed, a row of one empty field as "" (a blank line would vanish). */
static void ref_write(const fz_buf *rows, fz_buf *out)
{
    size_t i = 0;
    while (i < rows->len) {
        uint32_t nf;
        memcpy(&nf, rows->p + i, 4);
        i += 4;
        for (uint32_t f = 0; f < nf; f++) {
            uint32_t len;
            memcpy(&len, rows->p + i, 4);
            i += 4;
            const unsigned char *s = rows->p + i;
            i += len;
            if (f) fz_put(out, ",", 1);
            bool q = nf == 1 && len == 0;
            for (uint32_t k = 0; k < len && !q; k++)
                q = s[k] == '"' || s[k] == ',' || s[k] == '\r' || s[k] == '\n';
            if (!q) {
                fz_put(out, s, len);
                continue;
            }
            fz_put(out, "\"", 1);
            for (uint32_t k = 0; k < len; k++) {
                if (s[k] == '"') fz_put(out, "\"", 1);
                fz_put(out, s + k, 1);
            }
            fz_put(out, "\"", 1);
        }
        fz_put(out, "\n", 1);
    }
}

/* ---- the harness -------------------------------------------------------------------------- */

enum { NSETUP = 3 };
static weir_graph *g_rows[NSETUP], *g_text[NSETUP], *g_alt;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool csv_has_arg(const char *name)
{
    const weir_stage_def *d = weir_stage_find("csv");
    for (const weir_arg_def *a = d ? d->args : NULL; a && a->name; a++)
        if (strcmp(a->name, name) == 0) return true;
    return false;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    bool par = csv_has_arg("engine") && csv_has_arg("chunk");
    static const char *const src[NSETUP] = {"fz_src(chunk=1)", "fz_src(chunk=7)",
                                            "fz_src(chunk=1073741824)"};
    const char *const args[NSETUP] = {par ? ", engine=\"libcsv\", workers=1" : "",
                                      par ? ", chunk=16, workers=3" : "", ""};
    char spec[256];
    for (int k = 0; k < NSETUP; k++) {
        snprintf(spec, sizeof spec, "%s | csv(header=false%s) | fz_sink()", src[k], args[k]);
        g_rows[k] = fz_compile(spec);
        snprintf(spec, sizeof spec, "%s | csv(header=false%s) | to_csv(header=false) | fz_sink()",
                 src[k], args[k]);
        g_text[k] = fz_compile(spec);
    }
    snprintf(spec, sizeof spec, "fz_src(chunk=7) | csv(header=false, delim=\";\", quote=\"'\"%s) | fz_sink()",
             par ? ", chunk=16, workers=2" : "");
    g_alt = fz_compile(spec);
    return 0;
}

/* A message without its "stage 'csv' (<fuzz>:1:COL): " prefix: the column
 * differs between the set-ups' spec texts. */
static const char *msg_body(const char *err)
{
    const char *p = strstr(err, "): ");
    return p ? p + 3 : err;
}

/* Two runs agree: the same code and message, and on success the same
 * output. (After an error, how many rows got out first depends on the
 * batching; expect() checks that they are a prefix of libcsv's.) */
static bool same(const fz_result *a, const fz_result *b)
{
    if (a->rc != b->rc || strcmp(msg_body(a->err), msg_body(b->err)) != 0) return false;
    return a->rc != 0 ||
           (a->len == b->len && (a->len == 0 || memcmp(a->out, b->out, a->len) == 0));
}

/* The run must be what the reference says. */
static void expect(const fz_result *r, bool ok, const ref_parse *ref, const char *what)
{
    if (!ok || ref->ragged) {
        FZ_CHECK(r->rc == WEIR_EDATA, "%s: libcsv %s, but the run gave %d (%s)", what,
                 ok ? "finds ragged records" : "rejects the input", r->rc, r->err);
        /* What came out before the error is a prefix of libcsv's records. */
        FZ_CHECK(r->len <= ref->rows.len &&
                     (r->len == 0 || memcmp(r->out, ref->rows.p, r->len) == 0),
                 "%s: rows before the error differ from libcsv's", what);
        return;
    }
    FZ_CHECK(r->rc == 0, "%s: libcsv accepts %zu records, but the run failed: %d %s", what,
             ref->nrecords, r->rc, r->err);
    FZ_CHECK(r->len == ref->rows.len &&
                 (r->len == 0 || memcmp(r->out, ref->rows.p, r->len) == 0),
             "%s: rows differ from libcsv's (%zu vs %zu bytes encoded)", what, r->len,
             ref->rows.len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ref_parse ref;
    bool ok = ref_csv(data, size, ',', '"', true, &ref);

    fz_result rows[NSETUP];
    for (int k = 0; k < NSETUP; k++) fz_run(g_rows[k], data, size, &rows[k]);
    for (int k = 1; k < NSETUP; k++)
        FZ_CHECK(same(&rows[0], &rows[k]),
                 "set-ups 0 and %d differ: rc %d/%d, '%s' / '%s', %zu/%zu bytes", k,
                 rows[0].rc, rows[k].rc, rows[0].err, rows[k].err, rows[0].len, rows[k].len);
    for (int k = 0; k < NSETUP; k++) expect(&rows[k], ok, &ref, "csv()");

    /* to_csv: the same text for every chunking, and what RFC 4180 says. */
    fz_result text[NSETUP];
    for (int k = 0; k < NSETUP; k++) fz_run(g_text[k], data, size, &text[k]);
    for (int k = 1; k < NSETUP; k++)
        FZ_CHECK(same(&text[0], &text[k]), "to_csv: set-ups 0 and %d differ", k);
    if (ok && !ref.ragged) {
        FZ_CHECK(text[0].rc == 0, "to_csv failed: %s", text[0].err);
        fz_buf want = {0};
        ref_write(&ref.rows, &want);
        FZ_CHECK(text[0].len == want.len &&
                     (want.len == 0 || memcmp(text[0].out, want.p, want.len) == 0),
                 "to_csv wrote %zu bytes, RFC 4180 gives %zu", text[0].len, want.len);
        /* And the text reads back as the same records. (Read as a file,
         * a first field that starts with a BOM would lose it: a known
         * edge, see the README.) */
        ref_parse back;
        bool bok = ref_csv(text[0].out, text[0].len, ',', '"', false, &back);
        FZ_CHECK(bok && back.rows.len == ref.rows.len &&
                     (ref.rows.len == 0 || memcmp(back.rows.p, ref.rows.p, ref.rows.len) == 0),
                 "to_csv's output does not parse back to the same records");
        free(back.rows.p);
        free(want.p);
    }
    for (int k = 0; k < NSETUP; k++) {
        fz_result_free(&rows[k]);
        fz_result_free(&text[k]);
    }
    free(ref.rows.p);

    /* Another delimiter and quote. */
    ok = ref_csv(data, size, ';', '\'', true, &ref);
    fz_result alt;
    fz_run(g_alt, data, size, &alt);
    expect(&alt, ok, &ref, "csv(delim=\";\", quote=\"'\")");
    fz_result_free(&alt);
    free(ref.rows.p);
    return 0;
}

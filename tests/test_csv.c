/*
 * test_csv.c — csv(), to_csv(), to_jsonl() and format.c, driven through
 * specs with the harness (h_src → stage → h_sink), byte for byte.
 *
 * Two test-only stages are defined here:
 *   t_files(a, b, chunk)  bytes source: text a as input "one.csv", then
 *                         text b as input "two.csv" (a new origin pointer
 *                         starts a new input), in chunks, offsets set
 *   t_prov()              rows sink: one line per batch,
 *                         "origin:offset:line:nrows"
 */
#include <criterion/criterion.h>

#include "harness.h"

#include <dirent.h>
#include <inttypes.h>
#include <sys/stat.h>
#include <unistd.h>

#define CTEST(suite, name) Test(suite, name, .timeout = 30)

/* ---- t_files -------------------------------------------------------------------------- */

typedef struct t_files_state {
    int input;   /* 0: a, 1: b, 2: done */
    size_t off, chunk;
} t_files_state;

static int t_files_open(weir_stage *s)
{
    t_files_state *st = calloc(1, sizeof *st);
    st->chunk = (size_t)weir_stage_arg_int(s, "chunk");
    weir_stage_set_state(s, st);
    return 0;
}

static int t_files_process(weir_stage *s, weir_batch *in)
{
    (void)in;
    static const char *const names[] = {"one.csv", "two.csv"};
    t_files_state *st = weir_stage_state(s);
    for (;;) {
        if (st->input == 2) return WEIR_DONE;
        const char *t = weir_stage_arg_str(s, st->input ? "b" : "a");
        size_t len = strlen(t);
        if (st->off >= len) {
            st->input++;
            st->off = 0;
            continue;
        }
        size_t n = len - st->off < st->chunk ? len - st->off : st->chunk;
        weir_batch *b;
        int rc = weir_stage_batch(s, &b);
        if (rc) return rc;
        weir_batch_append(b, t + st->off, n);
        b->origin = names[st->input];
        b->offset = st->off;
        st->off += n;
        return weir_stage_emit(s, b);
    }
}

static const weir_stage_def t_files_def = {
    .abi = WEIR_ABI_VERSION,
    .name = "t_files",
    .summary = "test: two inputs, one.csv then two.csv",
    .args = (const weir_arg_def[]){{"a", WEIR_ARG_STRING, NULL, "first input"},
                                   {"b", WEIR_ARG_STRING, NULL, "second input"},
                                   {"chunk", WEIR_ARG_INT, "65536", "bytes per batch"},
                                   {NULL}},
    .in_kind = WEIR_KIND_NONE,
    .out_kind = WEIR_KIND_BYTES,
    .open = t_files_open,
    .process = t_files_process,
    .close = h_free_state,
};

/* ---- t_prov --------------------------------------------------------------------------- */

static int t_prov_process(weir_stage *s, weir_batch *in)
{
    (void)s;
    char line[256];
    int n = snprintf(line, sizeof line, "%s:%" PRIu64 ":%" PRIu64 ":%" PRIu32 "\n",
                     in->origin ? in->origin : "-", in->offset, in->line, in->nrows);
    h_append(line, (size_t)n);
    weir_batch_release(in);
    return 0;
}

static const weir_stage_def t_prov_def = {
    .abi = WEIR_ABI_VERSION,
    .name = "t_prov",
    .summary = "test: each rows batch's provenance",
    .args = (const weir_arg_def[]){{NULL}},
    .in_kind = WEIR_KIND_ROWS,
    .out_kind = WEIR_KIND_NONE,
    .process = t_prov_process,
};

static void t_register(void)
{
    static int done;
    if (done) return;
    done = 1;
    h_register();
    weir_stage_register(&t_files_def);
    weir_stage_register(&t_prov_def);
}

/* ---- helpers ---------------------------------------------------------------------------- */

/* Run spec on input; it must succeed and h_sink must get exactly want. */
static void expect_out(const char *spec, const char *input, const char *want)
{
    t_register();
    h_result r;
    h_run(spec, input, &r);
    cr_assert_eq(r.rc, 0, "%s: rc %d: %s", spec, r.rc, r.err);
    cr_assert_eq(r.len, strlen(want), "%s: got %zu bytes, want %zu:\n%s\n--- want:\n%s", spec,
                 r.len, strlen(want), r.out, want);
    cr_assert_str_eq(r.out, want, "%s", spec);
    h_free(&r);
}

/* Run spec on input; it must fail with code and a message holding every
 * string in the NULL-terminated list. */
static void expect_err(const char *spec, const char *input, int code, ...)
{
    t_register();
    h_result r;
    h_run(spec, input, &r);
    cr_assert_eq(r.rc, code, "%s: rc %d (%s), want %d", spec, r.rc, r.err, code);
    va_list ap;
    va_start(ap, code);
    for (const char *s; (s = va_arg(ap, const char *));)
        cr_assert(strstr(r.err, s), "%s: message \"%s\" lacks \"%s\"", spec, r.err, s);
    va_end(ap);
    h_free(&r);
}

static const size_t chunks[] = {1, 2, 3, 7, 64, 65536};
#define NCHUNKS (sizeof chunks / sizeof *chunks)

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = malloc(1 << 20);
    *len = fread(buf, 1, (1 << 20) - 1, f);
    buf[*len] = '\0';
    fclose(f);
    return buf;
}

/* The names in dir, sorted, joined by '/'. */
static void list_dir(const char *dir, char *out, size_t size)
{
    struct dirent **ents;
    int n = scandir(dir, &ents, NULL, alphasort);
    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        if (strcmp(ents[i]->d_name, ".") && strcmp(ents[i]->d_name, "..")) {
            if (out[0]) strncat(out, "/", size - strlen(out) - 1);
            strncat(out, ents[i]->d_name, size - strlen(out) - 1);
        }
        free(ents[i]);
    }
    free(ents);
}

/* ---- round trips ------------------------------------------------------------------------ */

/* RFC 4180 input, quoted only where needed, so that csv() | to_csv() gives
 * it back with LF record ends (quoted CRLF and CR are data, kept). */
static const char rfc_in[] =
    "\xEF\xBB\xBF"
    "name,note,n\r\n"
    "alice,\"x, y\",1\r\n"
    "bob,\"she said \"\"hi\"\"\",2\r\n"
    "carol,\"multi\nline\",3\n"
    "dave,\"crlf\r\ninside\",4\r\n"
    ",,\n"
    " lead , trail ,5\n"
    "\xC3\xA9t\xC3\xA9,\xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x98\x80,6\n"
    "tab\there,\"lone\rcr\",7\n"
    "\"\"\"\",\"\"\"x\"\"\",8\r\n"
    "last,,9";
static const char rfc_out[] =
    "name,note,n\n"
    "alice,\"x, y\",1\n"
    "bob,\"she said \"\"hi\"\"\",2\n"
    "carol,\"multi\nline\",3\n"
    "dave,\"crlf\r\ninside\",4\n"
    ",,\n"
    " lead , trail ,5\n"
    "\xC3\xA9t\xC3\xA9,\xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x98\x80,6\n"
    "tab\there,\"lone\rcr\",7\n"
    "\"\"\"\",\"\"\"x\"\"\",8\n"
    "last,,9\n";

CTEST(csv, round_trip_every_chunk_size)
{
    for (size_t i = 0; i < NCHUNKS; i++) {
        char spec[128];
        snprintf(spec, sizeof spec, "h_src(text=$in, chunk=%zu) | csv() | to_csv() | h_sink()",
                 chunks[i]);
        expect_out(spec, rfc_in, rfc_out);
    }
}

CTEST(csv, fields_as_parsed)
{
    /* h_sink shows rows as f1|f2: the fields themselves, unquoted. */
    const char *want = "name|note|n\n"
                       "alice|x, y|1\n"
                       "bob|she said \"hi\"|2\n"
                       "carol|multi\nline|3\n"
                       "dave|crlf\r\ninside|4\n"
                       "||\n"
                       " lead | trail |5\n"
                       "\xC3\xA9t\xC3\xA9|\xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x98\x80|6\n"
                       "tab\there|lone\rcr|7\n"
                       "\"|\"x\"|8\n"
                       "last||9\n";
    for (size_t i = 0; i < NCHUNKS; i++) {
        char spec[128];
        snprintf(spec, sizeof spec, "h_src(text=$in, chunk=%zu) | csv() | h_sink()", chunks[i]);
        expect_out(spec, rfc_in, want);
    }
}

CTEST(csv, bom_only_at_start_and_partial_bom_is_data)
{
    /* A BOM later in the input is data; an input that only starts like a
     * BOM keeps its bytes. */
    expect_out("h_src(text=$in, chunk=1) | csv() | h_sink()", "a,b\n\xEF\xBB\xBFx,y\n",
               "a|b\n\xEF\xBB\xBFx|y\n");
    expect_out("h_src(text=$in, chunk=1) | csv() | h_sink()", "\xEF\xBBz,b\n1,2\n",
               "\xEF\xBBz|b\n1|2\n");
    expect_out("h_src(text=$in, chunk=2) | csv(header=false) | h_sink()", "\xEF\xBB",
               "c1\n\xEF\xBB\n");
}

CTEST(csv, blank_lines_skipped_and_line_ends_mixed)
{
    expect_out("h_src(text=$in, chunk=1) | csv() | h_sink()",
               "\n\r\na,b\r\n\r\n1,2\r3,4\n\n5,6\r\n\n", "a|b\n1|2\n3|4\n5|6\n");
}

/* Adversarial generated CSV: every chunk size must give the same rows, and
 * to_csv must give the text back. */
CTEST(csv, generated_round_trip)
{
    static const char *const atoms[] = {"a", "bc", " ", ",", "\"", "\n", "\r\n", "\r",
                                        "\xC3\xA9", "", "12", "\t"};
    size_t cap = 1 << 16, len = 0, wlen = 0;
    char *in = malloc(cap), *want = malloc(cap);
    uint32_t seed = 12345;
#define RND() (seed = seed * 1103515245u + 12345u, (seed >> 16) & 0x7fff)
    len += (size_t)sprintf(in, "x,y,z\n");
    wlen += (size_t)sprintf(want, "x,y,z\n");
    for (int row = 0; row < 300; row++) {
        for (int c = 0; c < 3; c++) {
            char field[64];
            size_t fl = 0;
            int natoms = (int)(RND() % 4);
            field[0] = '\0';
            for (int k = 0; k < natoms; k++) {
                const char *a = atoms[RND() % (sizeof atoms / sizeof *atoms)];
                strcpy(field + fl, a);
                fl += strlen(a);
            }
            bool q = strpbrk(field, ",\"\r\n") != NULL;
            char enc[160];
            size_t el = 0;
            if (q) enc[el++] = '"';
            for (size_t k = 0; k < fl; k++) {
                if (field[k] == '"') enc[el++] = '"';
                enc[el++] = field[k];
            }
            if (q) enc[el++] = '"';
            enc[el++] = c < 2 ? ',' : '\n';
            memcpy(in + len, enc, el);
            memcpy(want + wlen, enc, el);
            len += el;
            wlen += el;
        }
        if (RND() % 2) { /* a CRLF record end instead */
            in[len - 1] = '\r';
            in[len++] = '\n';
        }
    }
    if (in[len - 1] == '\n') len -= in[len - 2] == '\r' ? 2 : 1; /* no final newline */
    in[len] = want[wlen] = '\0';
#undef RND
    for (size_t i = 0; i < NCHUNKS; i++) {
        char spec[128];
        snprintf(spec, sizeof spec, "h_src(text=$in, chunk=%zu) | csv() | to_csv() | h_sink()",
                 chunks[i]);
        expect_out(spec, in, want);
    }
    free(in);
    free(want);
}

/* ---- to_csv ----------------------------------------------------------------------------- */

CTEST(to_csv, quotes_only_where_needed)
{
    expect_out("h_src(text=$in) | csv() | to_csv() | h_sink()",
               "a,b\n\"plain\",\" spaced \"\n\"has,comma\",\"has\"\"quote\"\n"
               "\"has\nLF\",\"has\rCR\"\n\"\",\"\"\n",
               "a,b\nplain, spaced \n\"has,comma\",\"has\"\"quote\"\n"
               "\"has\nLF\",\"has\rCR\"\n,\n");
    /* From h_rows (no csv() involved): ';' alone is no reason to quote. */
    expect_out("h_rows(text=$in) | to_csv() | h_sink()", "k|v\nx;y|'q'\n", "k,v\nx;y,'q'\n");
}

CTEST(to_csv, lone_empty_field_is_quoted)
{
    /* A blank line would be no record; `""` keeps the row, and reads back. */
    expect_out("h_src(text=$in) | csv() | to_csv() | h_sink()", "a\n\"\"\nb\n", "a\n\"\"\nb\n");
    expect_out("h_src(text=$in) | csv() | to_csv() | csv() | h_sink()", "a\n\"\"\nb\n",
               "a\n\nb\n");
}

CTEST(to_csv, delim_and_no_header)
{
    expect_out("h_src(text=$in) | csv() | to_csv(delim=\";\") | h_sink()",
               "a,b\n\"x;y\",\"1,5\"\n", "a;b\n\"x;y\";1,5\n");
    expect_out("h_src(text=$in) | csv() | to_csv(delim=\"\\t\", header=false) | h_sink()",
               "a,b\n\"x\ty\",2\n", "\"x\ty\"\t2\n");
    expect_err("h_src(text=$in) | csv() | to_csv(delim=\"ab\") | h_sink()", "a\n1\n",
               WEIR_ESPEC, "delim must be one byte", NULL);
}

CTEST(to_csv, header_once_over_many_batches)
{
    /* 10000 rows: several row batches and several output batches. */
    size_t cap = 200000, len = 0;
    char *in = malloc(cap);
    len += (size_t)sprintf(in, "n,sq\n");
    for (int i = 0; i < 10000; i++) len += (size_t)sprintf(in + len, "%d,%d\n", i, i * i);
    expect_out("h_src(text=$in, chunk=999) | csv() | to_csv() | h_sink()", in, in);
    free(in);
}

/* ---- to_jsonl ----------------------------------------------------------------------------- */

CTEST(to_jsonl, numbers_bare_strings_escaped)
{
    const char *in = "n,\"k\"\"q\"\n"
                     "1,x\n"
                     "-2.5,01\n"
                     "1e3,+1\n"
                     "0,\"\"\n"
                     "-0.5e-3,\"a\"\"b\"\n"
                     ".5,5.\n"
                     "1E+2,back\\slash\n"
                     "\"multi\nline\",\"tab\there\"\n"
                     "\x01\x1f\x7f,\"cr\rhere\"\n"
                     "inf,nan\n"
                     "0x10, 1\n"
                     "-,-01\n"
                     "1.5e,1e+\n"
                     "\xC3\xA9\xE6\x97\xA5\xF0\x9F\x98\x80,\xFF\n"
                     "\xC0\xAF,\xED\xA0\x80\n"
                     "\xE6\x97,\xF4\x90\x80\x80\n"
                     "\b\f,\x80z\n";
    const char *want = "{\"n\":1,\"k\\\"q\":\"x\"}\n"
                       "{\"n\":-2.5,\"k\\\"q\":\"01\"}\n"
                       "{\"n\":1e3,\"k\\\"q\":\"+1\"}\n"
                       "{\"n\":0,\"k\\\"q\":\"\"}\n"
                       "{\"n\":-0.5e-3,\"k\\\"q\":\"a\\\"b\"}\n"
                       "{\"n\":\".5\",\"k\\\"q\":\"5.\"}\n"
                       "{\"n\":1E+2,\"k\\\"q\":\"back\\\\slash\"}\n"
                       "{\"n\":\"multi\\nline\",\"k\\\"q\":\"tab\\there\"}\n"
                       "{\"n\":\"\\u0001\\u001f\x7f\",\"k\\\"q\":\"cr\\rhere\"}\n"
                       "{\"n\":\"inf\",\"k\\\"q\":\"nan\"}\n"
                       "{\"n\":\"0x10\",\"k\\\"q\":\" 1\"}\n"
                       "{\"n\":\"-\",\"k\\\"q\":\"-01\"}\n"
                       "{\"n\":\"1.5e\",\"k\\\"q\":\"1e+\"}\n"
                       "{\"n\":\"\xC3\xA9\xE6\x97\xA5\xF0\x9F\x98\x80\",\"k\\\"q\":\"\\u00ff\"}\n"
                       "{\"n\":\"\\u00c0\\u00af\",\"k\\\"q\":\"\\u00ed\\u00a0\\u0080\"}\n"
                       "{\"n\":\"\\u00e6\\u0097\",\"k\\\"q\":\"\\u00f4\\u0090\\u0080\\u0080\"}\n"
                       "{\"n\":\"\\b\\f\",\"k\\\"q\":\"\\u0080z\"}\n";
    for (size_t i = 0; i < NCHUNKS; i++) {
        char spec[128];
        snprintf(spec, sizeof spec, "h_src(text=$in, chunk=%zu) | csv() | to_jsonl() | h_sink()",
                 chunks[i]);
        expect_out(spec, in, want);
    }
}

CTEST(to_jsonl, parallel_equals_sequential)
{
    size_t cap = 400000, len = 0;
    char *in = malloc(cap), *want = malloc(cap);
    size_t wl = 0;
    len += (size_t)sprintf(in, "id,name\n");
    for (int i = 0; i < 12000; i++) {
        len += (size_t)sprintf(in + len, "%d,\"n\"\"%d\"\n", i, i % 97);
        wl += (size_t)sprintf(want + wl, "{\"id\":%d,\"name\":\"n\\\"%d\"}\n", i, i % 97);
    }
    expect_out("h_src(text=$in, chunk=4096) | csv() | to_jsonl() | h_sink()", in, want);
    expect_out("h_src(text=$in, chunk=4096) | csv() | to_jsonl(workers=3) | h_sink()", in,
               want);
    free(in);
    free(want);
}

/* ---- errors ------------------------------------------------------------------------------- */

CTEST(csv_errors, ragged_row)
{
    /* "abc,def\n" is 8 bytes, "1,2\n" 4: the bad record starts at byte 12. */
    for (size_t i = 0; i < NCHUNKS; i++) {
        char spec[128];
        snprintf(spec, sizeof spec, "h_src(text=$in, chunk=%zu) | csv() | h_sink()", chunks[i]);
        expect_err(spec, "abc,def\n1,2\n3,4,5\n6,7\n", WEIR_EDATA, "stage 'csv'",
                   "<input> line 3 (byte 12): expected 2 fields, found 3", NULL);
    }
    expect_err("h_src(text=$in) | csv() | h_sink()", "a,b\r\n1,2\r\n3\r\n", WEIR_EDATA,
               "line 3 (byte 10): expected 2 fields, found 1", NULL);
    /* Offsets count the BOM: they are offsets in the file. */
    expect_err("h_src(text=$in, chunk=1) | csv() | h_sink()", "\xEF\xBB\xBF" "a,b\n1\n",
               WEIR_EDATA, "line 2 (byte 7): expected 2 fields, found 1", NULL);
    /* Far more fields than expected: counted, not kept. */
    expect_err("h_src(text=$in) | csv() | h_sink()", "a,b\n1,2,3,4,5,6,7,8,9,10\n", WEIR_EDATA,
               "line 2 (byte 4): expected 2 fields, found 10", NULL);
}

CTEST(csv_errors, ragged_row_after_quoted_newline)
{
    /* Lines: 1 "a,b", 2-3 the quoted record, 4 the ragged one at byte 12. */
    for (size_t i = 0; i < NCHUNKS; i++) {
        char spec[128];
        snprintf(spec, sizeof spec, "h_src(text=$in, chunk=%zu) | csv() | h_sink()", chunks[i]);
        expect_err(spec, "a,b\n\"x\ny\",1\n2,3,4\n", WEIR_EDATA,
                   "line 4 (byte 12): expected 2 fields, found 3", NULL);
        expect_err(spec, "a,b\r\n\"x\r\n\r\ny\",1\r\n\r\n2,3,4\r\n", WEIR_EDATA,
                   "line 6 (byte 19): expected 2 fields, found 3", NULL);
    }
}

CTEST(csv_errors, unterminated_quote)
{
    for (size_t i = 0; i < NCHUNKS; i++) {
        char spec[128];
        snprintf(spec, sizeof spec, "h_src(text=$in, chunk=%zu) | csv() | h_sink()", chunks[i]);
        expect_err(spec, "a,b\n1,2\n3,\"open\nmore\n", WEIR_EDATA,
                   "line 3 (byte 8): unterminated quoted field", NULL);
    }
    expect_err("h_src(text=$in) | csv() | h_sink()", "a,b\n\"", WEIR_EDATA,
               "line 2 (byte 4): unterminated quoted field", NULL);
}

CTEST(csv_errors, malformed_quoting)
{
    expect_err("h_src(text=$in) | csv() | h_sink()", "a,b\n1,x\"y\n", WEIR_EDATA,
               "line 2 (byte 7): quote inside an unquoted field", NULL);
    expect_err("h_src(text=$in, chunk=1) | csv() | h_sink()", "a,b\n\"x\"y,1\n", WEIR_EDATA,
               "line 2 (byte 7): unexpected character after a closing quote", NULL);
    /* A blank after the closing quote is no exception (strict RFC 4180). */
    expect_err("h_src(text=$in) | csv() | h_sink()", "a,b\n\"x\" ,1\n", WEIR_EDATA,
               "line 2 (byte 7): unexpected character after a closing quote", NULL);
}

CTEST(csv_errors, max_field)
{
    for (size_t i = 0; i < NCHUNKS; i++) {
        char spec[128];
        snprintf(spec, sizeof spec, "h_src(text=$in, chunk=%zu) | csv(max_field=10) | h_sink()",
                 chunks[i]);
        expect_err(spec, "a,b\n1,12345678901\n", WEIR_EDATA,
                   "line 2 (byte 4): field larger than max_field (10 bytes)", NULL);
        /* Exactly 10 bytes, plain or quoted (with a doubled quote), pass. */
        expect_out(spec, "a,b\n1234567890,\"12345678\"\"9\"\n", "a|b\n1234567890|12345678\"9\n");
        /* An unterminated quote does not buffer the rest of the input. */
        expect_err(spec,
                   "a\n\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\nyyyyyyyyyyyyyyyyyyyy",
                   WEIR_EDATA, "line 2 (byte 2): field larger than max_field (10 bytes)", NULL);
    }
    expect_err("h_src(text=$in) | csv(max_field=0) | h_sink()", "a\n", WEIR_ESPEC,
               "max_field must be between 1 and", NULL);
}

CTEST(csv_errors, bad_arguments)
{
    expect_err("h_src(text=$in) | csv(delim=\";;\") | h_sink()", "a\n", WEIR_ESPEC,
               "delim must be one byte", NULL);
    expect_err("h_src(text=$in) | csv(delim=\"\\n\") | h_sink()", "a\n", WEIR_ESPEC,
               "delim must be one byte", NULL);
    expect_err("h_src(text=$in) | csv(quote=\"\") | h_sink()", "a\n", WEIR_ESPEC,
               "quote must be one byte", NULL);
    expect_err("h_src(text=$in) | csv(quote=\",\") | h_sink()", "a\n", WEIR_ESPEC,
               "delim and quote must differ", NULL);
}

/* ---- rejects ----------------------------------------------------------------------------- */

CTEST(csv_rejects, bad_records_go_to_the_file)
{
    t_register();
    char dir[] = "/tmp/weir_csv_XXXXXX";
    cr_assert(mkdtemp(dir));
    char path[256], var_rej[300], names[512];
    snprintf(path, sizeof path, "%s/bad.jsonl", dir);
    snprintf(var_rej, sizeof var_rej, "rej=%s", path);
    const char *vars[] = {"in=a,b\n1,2\n3,4,5\n\"x\ny\"\n6,7\n\"q\"\"\",\"\\\",\"\"\n", var_rej};
    for (size_t i = 0; i < NCHUNKS; i++) {
        char spec[160];
        snprintf(spec, sizeof spec,
                 "h_src(text=$in, chunk=%zu) | csv(rejects=$rej) | to_csv() | h_sink()",
                 chunks[i]);
        h_result r;
        h_runv(spec, vars, 2, &r);
        cr_assert_eq(r.rc, 0, "%s: %s", spec, r.err);
        cr_assert_str_eq(r.out, "a,b\n1,2\n6,7\n");
        h_free(&r);
        size_t len;
        char *got = read_file(path, &len);
        cr_assert(got);
        cr_assert_str_eq(got,
                         "{\"file\":null,\"line\":3,\"offset\":8,\"fields\":[\"3\",\"4\",\"5\"],"
                         "\"error\":\"expected 2 fields, found 3\"}\n"
                         "{\"file\":null,\"line\":4,\"offset\":14,\"fields\":[\"x\\ny\"],"
                         "\"error\":\"expected 2 fields, found 1\"}\n"
                         "{\"file\":null,\"line\":7,\"offset\":24,\"fields\":[\"q\\\"\","
                         "\"\\\\\",\"\"],\"error\":\"expected 2 fields, found 3\"}\n");
        free(got);
        list_dir(dir, names, sizeof names);
        cr_assert_str_eq(names, "bad.jsonl", "no temporary is left");
    }
    /* A clean run leaves an empty rejects file (the old one is replaced). */
    const char *clean[] = {"in=a,b\n1,2\n", var_rej};
    h_result r;
    h_runv("h_src(text=$in) | csv(rejects=$rej) | h_sink()", clean, 2, &r);
    cr_assert_eq(r.rc, 0, "%s", r.err);
    h_free(&r);
    struct stat sb;
    cr_assert_eq(stat(path, &sb), 0);
    cr_assert_eq(sb.st_size, 0);
    unlink(path);
    rmdir(dir);
}

CTEST(csv_rejects, failed_run_leaves_nothing)
{
    t_register();
    char dir[] = "/tmp/weir_csv_XXXXXX";
    cr_assert(mkdtemp(dir));
    char var_rej[300], names[512];
    snprintf(var_rej, sizeof var_rej, "rej=%s/bad.jsonl", dir);
    /* A ragged record goes to the temporary, then bad quoting fails the run. */
    const char *vars[] = {"in=a,b\n1,2,3\n4,5\n6,\"open\n", var_rej};
    h_result r;
    h_runv("h_src(text=$in, chunk=3) | csv(rejects=$rej) | h_sink()", vars, 2, &r);
    cr_assert_eq(r.rc, WEIR_EDATA);
    cr_assert(strstr(r.err, "line 4 (byte 14): unterminated quoted field"), "%s", r.err);
    h_free(&r);
    list_dir(dir, names, sizeof names);
    cr_assert_str_eq(names, "", "the target and the temporary are gone");
    /* A directory that does not exist is an error before any data. */
    const char *missing[] = {"in=a\n1\n", "rej=/nonexistent_weir_dir/bad.jsonl"};
    h_runv("h_src(text=$in) | csv(rejects=$rej) | h_sink()", missing, 2, &r);
    cr_assert_eq(r.rc, WEIR_EIO);
    cr_assert(strstr(r.err, "cannot create rejects file '/nonexistent_weir_dir/bad.jsonl'"),
              "%s", r.err);
    h_free(&r);
    rmdir(dir);
}

/* ---- options ------------------------------------------------------------------------------- */

CTEST(csv_options, header_false_names_columns)
{
    expect_out("h_src(text=$in, chunk=2) | csv(header=false) | h_sink()", "1,2,3\n4,5,6",
               "c1|c2|c3\n1|2|3\n4|5|6\n");
    expect_err("h_src(text=$in) | csv(header=false) | h_sink()", "1,2\n3\n", WEIR_EDATA,
               "line 2 (byte 4): expected 2 fields, found 1", NULL);
}

CTEST(csv_options, delimiters_and_quote)
{
    expect_out("h_src(text=$in, chunk=3) | csv(delim=\";\") | h_sink()",
               "a;b\n\"x;y\";1,5\n", "a|b\nx;y|1,5\n");
    expect_out("h_src(text=$in, chunk=3) | csv(delim=\"\\t\") | h_sink()",
               "a\tb\n 1 \t\n\"x\ty\"\t2\n", "a|b\n 1 |\nx\ty|2\n");
    expect_out("h_src(text=$in, chunk=3) | csv(quote=\"'\") | h_sink()",
               "a,b\n'x,y','it''s'\n\"q\",2\n", "a|b\nx,y|it's\n\"q\"|2\n");
}

/* ---- inputs and batches --------------------------------------------------------------------- */

CTEST(csv_inputs, each_input_has_its_header)
{
    t_register();
    const char *vars[] = {"a=\xEF\xBB\xBF" "a,b\n1,2\n3,4", "b=\xEF\xBB\xBF" "a,b\r\n5,6\r\n"};
    for (size_t i = 0; i < NCHUNKS; i++) {
        char spec[128];
        snprintf(spec, sizeof spec, "t_files(a=$a, b=$b, chunk=%zu) | csv() | h_sink()",
                 chunks[i]);
        h_result r;
        h_runv(spec, vars, 2, &r);
        cr_assert_eq(r.rc, 0, "%s", r.err);
        cr_assert_str_eq(r.out, "a|b\n1|2\n3|4\n5|6\n");
        h_free(&r);
        snprintf(spec, sizeof spec, "t_files(a=$a, b=$b, chunk=%zu) | csv() | t_prov()",
                 chunks[i]);
        h_runv(spec, vars, 2, &r);
        cr_assert_eq(r.rc, 0, "%s", r.err);
        cr_assert_str_eq(r.out, "one.csv:7:2:2\ntwo.csv:8:2:1\n");
        h_free(&r);
    }
}

CTEST(csv_inputs, headers_must_match)
{
    t_register();
    const char *vars[] = {"a=a,b\n1,2\n", "b=a,c\n5,6\n"};
    h_result r;
    h_runv("t_files(a=$a, b=$b) | csv() | h_sink()", vars, 2, &r);
    cr_assert_eq(r.rc, WEIR_EDATA);
    cr_assert(strstr(r.err, "two.csv line 1 (byte 0): header differs from one.csv's: "
                            "column 2 is 'c' here, 'b' there"),
              "%s", r.err);
    h_free(&r);
    const char *vars2[] = {"a=a,b\n1,2\n", "b=\n\na,b,c\n5,6,7\n"};
    h_runv("t_files(a=$a, b=$b) | csv() | h_sink()", vars2, 2, &r);
    cr_assert_eq(r.rc, WEIR_EDATA);
    cr_assert(strstr(r.err, "two.csv line 3 (byte 2): header has 3 columns, but one.csv's has 2"),
              "%s", r.err);
    h_free(&r);
    /* Unterminated at the end of the first input, not of the run. */
    const char *vars3[] = {"a=a,b\n1,\"2\n", "b=a,b\n5,6\n"};
    h_runv("t_files(a=$a, b=$b, chunk=1) | csv() | h_sink()", vars3, 2, &r);
    cr_assert_eq(r.rc, WEIR_EDATA);
    cr_assert(strstr(r.err, "one.csv line 2 (byte 4): unterminated quoted field"), "%s", r.err);
    h_free(&r);
}

CTEST(csv_inputs, batch_sizes_and_provenance)
{
    /* 10000 rows "i,x": batches of 4096 rows, each stamped with the line
     * and byte offset of its first row. */
    size_t cap = 200000, len = 0, offs[10001];
    char *in = malloc(cap);
    len += (size_t)sprintf(in, "n,x\n");
    for (int i = 0; i < 10000; i++) {
        offs[i] = len;
        len += (size_t)sprintf(in + len, "%d,x\n", i);
    }
    char want[256];
    snprintf(want, sizeof want, "-:%zu:2:4096\n-:%zu:4098:4096\n-:%zu:8194:1808\n", offs[0],
             offs[4096], offs[8192]);
    expect_out("h_src(text=$in, chunk=777) | csv() | t_prov()", in, want);
    /* Big fields: a batch ends at about 1 MiB of field bytes. */
    len = 0;
    char *big = malloc(3 << 20);
    len += (size_t)sprintf(big, "v\n");
    for (int i = 0; i < 6; i++) {
        memset(big + len, 'a' + i, 300000);
        len += 300000;
        big[len++] = '\n';
    }
    big[len] = '\0';
    expect_out("h_src(text=$in) | csv() | t_prov()", big, "-:2:2:4\n-:1200006:6:2\n");
    free(big);
    free(in);
}

CTEST(csv_inputs, empty_and_header_only)
{
    expect_out("h_src(text=$in) | csv() | h_sink()", "", "");
    /* Only a header: one empty batch carries the columns downstream. */
    expect_out("h_src(text=$in) | csv() | t_prov()", "a,b\n", "-:0:0:0\n");
    expect_out("h_src(text=$in) | csv() | h_sink()", "a,b\n", "a|b\n");
    expect_out("h_src(text=$in) | csv() | h_sink()", "\n\n", "");
}

/* ---- plan ------------------------------------------------------------------------------------ */

static weir_node *plan_graph(weir_graph **g, const char *text, bool header)
{
    t_register();
    weir_node *src, *csv, *sink;
    cr_assert_eq(weir_graph_create(g), 0);
    cr_assert_eq(weir_graph_add(*g, &h_src_def, NULL, &src), 0);
    cr_assert_eq(weir_node_set_str(src, "text", text), 0);
    cr_assert_eq(weir_graph_add(*g, weir_stage_find("csv"), NULL, &csv), 0);
    cr_assert_eq(weir_node_set_bool(csv, "header", header), 0);
    cr_assert_eq(weir_graph_add(*g, &h_sink_def, NULL, &sink), 0);
    cr_assert_eq(weir_graph_connect(*g, src, csv), 0);
    cr_assert_eq(weir_graph_connect(*g, csv, sink), 0);
    cr_assert_eq(weir_graph_check(*g, NULL), 0, "%s", weir_graph_errmsg(*g));
    return csv;
}

static void expect_schema(const weir_node *n, const char *want)
{
    const weir_schema *s = weir_node_schema(n);
    char got[256] = "";
    if (!s) strcpy(got, "(unknown)");
    for (size_t c = 0; s && c < weir_schema_ncols(s); c++) {
        if (c) strcat(got, "|");
        strcat(got, weir_schema_name(s, c));
    }
    cr_assert_str_eq(got, want);
}

CTEST(csv_plan, schema_known_before_running)
{
    weir_graph *g;
    expect_schema(plan_graph(&g, "\xEF\xBB\xBF\r\nid,\"a,b\",x\r\n1,2,3\r\n", true),
                  "id|a,b|x");
    weir_graph_destroy(g);
    expect_schema(plan_graph(&g, "id,name", true), "id|name"); /* no final newline */
    weir_graph_destroy(g);
    expect_schema(plan_graph(&g, "1,2,3\n", false), "c1|c2|c3");
    weir_graph_destroy(g);
    expect_schema(plan_graph(&g, "", true), "(unknown)");
    weir_graph_destroy(g);
    /* Bad quoting is the run's to report (a data error, not a spec error). */
    expect_schema(plan_graph(&g, "a,\"b\"x\n", true), "(unknown)");
    weir_graph_destroy(g);
}

/*
 * test_csv_parallel.c — csv() in parallel, proven against the sequential
 * parse.
 *
 * The oracle is the single-threaded csv() as it was before the parallel
 * rework (csv_oracle.h, registered as csv_seq): libcsv fed line by line.
 * Every test runs the oracle and the new csv() on the same bytes and
 * compares what comes out, byte for byte: rows (through to_csv()),
 * rejects files, and error messages with their file, line and byte. The
 * new csv() runs with 1, 2, 3 and 5 replicas, chunks from 1 byte (one
 * record per chunk) to 1 MiB, its input arriving in pieces of 1 byte to
 * 64 KiB, with its fast parser (engine="auto") and with libcsv for every
 * record (engine="libcsv").
 *
 * Inputs are adversarial and generated from seeds: quoted delimiters,
 * doubled quotes, quoted LF, CRLF and lone CR, records ending in LF, CRLF
 * or CR, blank lines, a BOM, no final newline, empty fields, long fields;
 * and inputs with errors put in at random records.
 */
#include <criterion/criterion.h>

#include "harness.h"

#include "csv_oracle.h"

#include <dirent.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <zstd.h>

#define PTEST(suite, name) Test(suite, name, .timeout = 30)

/* ---- t_two: two inputs (two origins), as read() gives for a glob ------------------------ */

typedef struct t_two_state {
    int input;
    size_t off, chunk;
} t_two_state;

static int t_two_open(weir_stage *s)
{
    t_two_state *st = calloc(1, sizeof *st);
    st->chunk = (size_t)weir_stage_arg_int(s, "chunk");
    weir_stage_set_state(s, st);
    return 0;
}

static int t_two_process(weir_stage *s, weir_batch *in)
{
    (void)in;
    static const char *const names[] = {"one.csv", "two.csv"};
    t_two_state *st = weir_stage_state(s);
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

static const weir_stage_def t_two_def = {
    .abi = WEIR_ABI_VERSION,
    .name = "t_two",
    .summary = "test: two inputs, one.csv then two.csv",
    .args = (const weir_arg_def[]){{"a", WEIR_ARG_STRING, NULL, "first input"},
                                   {"b", WEIR_ARG_STRING, NULL, "second input"},
                                   {"chunk", WEIR_ARG_INT, "65536", "bytes per batch"},
                                   {NULL}},
    .in_kind = WEIR_KIND_NONE,
    .out_kind = WEIR_KIND_BYTES,
    .open = t_two_open,
    .process = t_two_process,
    .close = h_free_state,
};

/* ---- t_prov: each rows batch's provenance and first field --------------------------------- */

static int t_prov_process(weir_stage *s, weir_batch *in)
{
    (void)s;
    char line[256];
    for (uint32_t r = 0; r < in->nrows && r < 1; r++) {
        size_t len;
        const unsigned char *f = weir_batch_field(in, r, 0, &len);
        char shown[21];
        size_t k;
        for (k = 0; k < len && k < 20; k++) /* one line per batch */
            shown[k] = f[k] == '\n' || f[k] == '\r' ? '~' : (char)f[k];
        shown[k] = '\0';
        int n = snprintf(line, sizeof line, "%s:%" PRIu64 ":%" PRIu64 ":%s\n",
                         in->origin ? in->origin : "-", in->offset, in->line, shown);
        h_append(line, (size_t)n);
    }
    weir_batch_release(in);
    return 0;
}

static const weir_stage_def t_prov_def = {
    .abi = WEIR_ABI_VERSION,
    .name = "t_prov",
    .summary = "test: each rows batch's provenance and first field",
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
    weir_stage_register(&t_csv_seq_def);
    weir_stage_register(&t_two_def);
    weir_stage_register(&t_prov_def);
}

/* ---- generated inputs --------------------------------------------------------------------- */

typedef struct tbuf {
    char *p;
    size_t len, cap;
} tbuf;

static void tb_put(tbuf *b, const void *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (b->len + n + 1 > cap) cap *= 2;
        b->p = realloc(b->p, cap);
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void tb_str(tbuf *b, const char *s) { tb_put(b, s, strlen(s)); }

static uint64_t rng(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static unsigned rnd(uint64_t *s, unsigned n) { return (unsigned)(rng(s) % n); }

typedef struct gen_opts {
    int ncols, nrows;
    unsigned quote_pct;   /* fields quoted */
    unsigned special_pct; /* quoted fields holding delimiters, quotes, line ends */
    unsigned long_pml;    /* fields (per mille) that are long */
    size_t long_len;      /* up to this many bytes */
    unsigned blank_pct;   /* records followed by blank lines */
    unsigned ends;        /* record ends used: 1 LF, 2 CRLF, 4 CR */
    bool bom, no_final_newline;
} gen_opts;

static void gen_field(tbuf *b, uint64_t *s, const gen_opts *o)
{
    static const char *const plain[] = {"a", "bc", "12", "3.5", " ", "\t", "\xC3\xA9", "x y",
                                        "-", "0"};
    static const char *const special[] = {",", "\"\"", "\n", "\r\n", "\r", "\"\"\"\"",
                                          ",\n,"};
    bool quoted = rnd(s, 100) < o->quote_pct;
    if (quoted) tb_str(b, "\"");
    if (o->long_pml && rnd(s, 1000) < o->long_pml) {
        size_t n = 1 + rnd(s, (unsigned)o->long_len);
        for (size_t i = 0; i < n; i++) {
            char c = (char)('a' + rnd(s, 26));
            if (quoted && rnd(s, 200) == 0) tb_str(b, rnd(s, 2) ? "\n" : "\"\"");
            else tb_put(b, &c, 1);
        }
    } else {
        int atoms = (int)rnd(s, 4);
        for (int k = 0; k < atoms; k++) {
            if (quoted && rnd(s, 100) < o->special_pct)
                tb_str(b, special[rnd(s, sizeof special / sizeof *special)]);
            else
                tb_str(b, plain[rnd(s, sizeof plain / sizeof *plain)]);
        }
    }
    if (quoted) tb_str(b, "\"");
}

static const char *gen_end(uint64_t *s, const gen_opts *o)
{
    static const char *const ends[] = {"\n", "\r\n", "\r"};
    for (;;) {
        unsigned k = rnd(s, 3);
        if (o->ends & (1u << k)) return ends[k];
    }
}

/* A CSV text: a header c1..cN, then nrows records. */
static char *gen_csv(uint64_t seed, const gen_opts *o)
{
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    tbuf b = {0};
    if (o->bom) tb_str(&b, "\xEF\xBB\xBF");
    for (int c = 0; c < o->ncols; c++) {
        char name[16];
        snprintf(name, sizeof name, "%sc%d", c ? "," : "", c + 1);
        tb_str(&b, name);
    }
    tb_str(&b, gen_end(&s, o));
    for (int r = 0; r < o->nrows; r++) {
        for (int c = 0; c < o->ncols; c++) {
            if (c) tb_str(&b, ",");
            gen_field(&b, &s, o);
        }
        /* A record of one empty unquoted field would be a blank line. */
        if (o->ncols == 1 && b.p[b.len - 1] != '"' && (b.len == 0 || strchr("\r\n,", b.p[b.len - 1])))
            tb_str(&b, "\"\"");
        tb_str(&b, gen_end(&s, o));
        if (rnd(&s, 100) < o->blank_pct) tb_str(&b, rnd(&s, 2) ? "\n" : "\r\n\n");
    }
    if (o->no_final_newline) {
        while (b.len && (b.p[b.len - 1] == '\n' || b.p[b.len - 1] == '\r')) b.len--;
        b.p[b.len] = '\0';
    }
    return b.p;
}

static const gen_opts gen_default = {
    .ncols = 4, .nrows = 400, .quote_pct = 30, .special_pct = 40, .long_pml = 10,
    .long_len = 3000, .blank_pct = 3, .ends = 7,
};

/* ---- running --------------------------------------------------------------------------------- */

/* Run spec on input; *out gets what h_sink got, *err the message after
 * the stage's position (so specs that differ before csv compare). */
static int run_spec(const char *spec, const char *input, char **out, char **err)
{
    t_register();
    h_result r;
    h_run(spec, input, &r);
    *out = r.out;
    const char *m = strstr(r.err, "): ");
    *err = strdup(m ? m + 3 : r.err);
    return r.rc;
}

typedef struct ref {
    int rc;
    char *out, *err;
} ref;

static ref oracle(const char *args, const char *post, const char *input)
{
    char spec[512];
    snprintf(spec, sizeof spec, "h_src(text=$in, chunk=65536) | csv_seq(%s) | %s", args, post);
    ref r;
    r.rc = run_spec(spec, input, &r.out, &r.err);
    return r;
}

static void ref_free(ref *r)
{
    free(r->out);
    free(r->err);
}

/* csv(args, chunk, workers, engine) on input in pieces of src bytes must
 * give exactly what the oracle gave. */
static void expect_same(const ref *want, const char *args, const char *post,
                        const char *input, size_t src, size_t chunk, int workers,
                        const char *engine)
{
    char spec[512];
    snprintf(spec, sizeof spec,
             "h_src(text=$in, chunk=%zu) | csv(%s%schunk=%zu, workers=%d, engine=\"%s\") | %s",
             src, args, args[0] ? ", " : "", chunk, workers, engine, post);
    char *out, *err;
    int rc = run_spec(spec, input, &out, &err);
    cr_assert_eq(rc, want->rc, "%s: rc %d (%s), oracle %d (%s)", spec, rc, err, want->rc,
                 want->err);
    if (rc) {
        cr_assert_str_eq(err, want->err, "%s: a different error", spec);
    } else {
        size_t a = strlen(out), b = strlen(want->out), k = 0;
        while (k < a && k < b && out[k] == want->out[k]) k++;
        cr_assert(a == b && k == a,
                  "%s: output differs from the oracle's at byte %zu (%zu vs %zu bytes):\n"
                  "got  ...%.80s\nwant ...%.80s",
                  spec, k, a, b, out + (k > 20 ? k - 20 : 0),
                  want->out + (k > 20 ? k - 20 : 0));
    }
    free(out);
    free(err);
}

/* The grid: every chunk size with a few (src, workers, engine) settings
 * rotating through it, so each chunk size meets each setting somewhere
 * across the inputs of a test. */
static void expect_grid(const char *args, const char *post, const char *input, unsigned turn)
{
    static const size_t chunks[] = {1, 2, 3, 7, 31, 100, 257, 1000, 4096, 65536, 1 << 20};
    static const size_t srcs[] = {65536, 7, 4096, 1, 999};
    static const int workers[] = {2, 3, 5, 1};
    ref want = oracle(args, post, input);
    size_t len = strlen(input);
    for (size_t c = 0; c < sizeof chunks / sizeof *chunks; c++) {
        unsigned t = turn + (unsigned)c;
        size_t src = srcs[t % 5];
        if (src == 1 && len > 20000) src = 13; /* a byte at a time is slow */
        expect_same(&want, args, post, input, src, chunks[c], workers[t % 4],
                    t % 3 == 2 ? "libcsv" : "auto");
    }
    ref_free(&want);
}

/* ---- equality on valid input -------------------------------------------------------------- */

PTEST(csv_parallel, random_inputs_equal_the_oracle)
{
    for (uint64_t seed = 1; seed <= 12; seed++) {
        gen_opts o = gen_default;
        o.ncols = 1 + (int)(seed % 6);
        o.bom = seed % 3 == 0;
        o.no_final_newline = seed % 4 == 1;
        o.ends = seed % 5 == 0 ? 1 : seed % 5 == 1 ? 2 : seed % 5 == 2 ? 4 : 7;
        char *in = gen_csv(seed, &o);
        expect_grid("", "to_csv() | h_sink()", in, (unsigned)seed);
        free(in);
    }
}

PTEST(csv_parallel, fields_as_parsed_equal_the_oracle)
{
    /* Rows as h_sink shows them (fields unquoted), and header=false. */
    for (uint64_t seed = 21; seed <= 26; seed++) {
        gen_opts o = gen_default;
        o.nrows = 200;
        char *in = gen_csv(seed, &o);
        expect_grid("", "h_sink()", in, (unsigned)seed);
        expect_grid("header=false", "to_csv() | h_sink()", in, (unsigned)seed + 1);
        free(in);
    }
}

PTEST(csv_parallel, quoted_newline_at_every_offset)
{
    /* Every record holds a quoted field with a line end in it and a
     * doubled quote, records of varying length: with every chunk size
     * from 1 to 300, cuts fall at every offset around them. */
    tbuf b = {0};
    tb_str(&b, "id,text,n\n");
    uint64_t s = 7;
    for (int r = 0; r < 300; r++) {
        char rec[256];
        int pad = (int)rnd(&s, 40);
        snprintf(rec, sizeof rec, "%d,\"%.*s\n\"\"q\"\"%s\",%d%s", r, pad,
                 "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz",
                 r % 7 == 0 ? "\r\n" : "", r * 3, r % 5 == 0 ? "\r\n" : "\n");
        tb_str(&b, rec);
    }
    ref want = oracle("", "to_csv() | h_sink()", b.p);
    for (size_t chunk = 1; chunk <= 300; chunk += chunk < 64 ? 1 : 17)
        expect_same(&want, "", "to_csv() | h_sink()", b.p, chunk % 3 ? 4096 : 61, chunk,
                    (int)(2 + chunk % 3), chunk % 4 == 0 ? "libcsv" : "auto");
    ref_free(&want);
    free(b.p);
}

PTEST(csv_parallel, huge_fields_and_long_records)
{
    /* Fields of up to 400 KB, quoted and not, with quoted newlines: they
     * straddle the default 1 MiB chunk and the small ones. */
    gen_opts o = gen_default;
    o.nrows = 60;
    o.long_pml = 150;
    o.long_len = 400000;
    char *in = gen_csv(99, &o);
    ref want = oracle("", "to_csv() | h_sink()", in);
    static const size_t chunks[] = {1, 1000, 65536, 300000, 1 << 20};
    for (size_t c = 0; c < 5; c++)
        expect_same(&want, "", "to_csv() | h_sink()", in, c % 2 ? 65536 : 100000, chunks[c],
                    (int)(2 + c % 3), c == 3 ? "libcsv" : "auto");
    ref_free(&want);
    free(in);
}

PTEST(csv_parallel, edges_equal_the_oracle)
{
    static const char *const inputs[] = {
        "",
        "\n\n\r\n",
        "a,b\n",
        "a,b",
        "\xEF\xBB\xBF",
        "\xEF\xBB",
        "\xEF\xBB\xBF" "a,b\r\n1,2",
        "\xEF\xBBz,b\n1,2\n",
        "a\n\"\"\n\n\"\"\r",
        "a,b\r1,2\r3,4\r",
        "a,b\r\r\n\r1,2\r\n",
        "a,b\n,\n,\r\n\"\",\"\"\n",
        "a,b\n\"x\ny\",\"\"\"\"\n\"\r\",\"\r\n\"",
        "h\n\"a,b\"\n\",\"\n\"\"\"\"",
        "a;b\n1;2\n",
        "a,b\n1,2\n\n\n\n3,4",
    };
    for (size_t i = 0; i < sizeof inputs / sizeof *inputs; i++) {
        expect_grid("", "to_csv() | h_sink()", inputs[i], (unsigned)i);
        expect_grid("header=false", "h_sink()", inputs[i], (unsigned)i + 2);
    }
    /* Found by tests/fuzz/fuzz_csv.c: a run of lone CRs; a quote inside
     * an unquoted field after a record of the first's width. */
    static const char *const fuzzed[] = {
        "\\\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r;,,\n,,\ndy';;\n",
        "c,jjjjjDEBIAN_FRONTENDjjjjjjjjjjjjjjjjb\n0,/\"open\n2,3\n",
    };
    for (size_t i = 0; i < 2; i++) {
        expect_grid("header=false", "h_sink()", fuzzed[i], (unsigned)i);
        expect_grid("header=false, delim=\";\", quote=\"'\"", "h_sink()", fuzzed[i], (unsigned)i);
    }
    /* Another delimiter and quote. */
    expect_grid("delim=\";\", quote=\"'\"", "h_sink()",
                "a;b\n'x;y';'it''s'\n\"q\";'\n'\n", 1);
    expect_grid("delim=\"\\t\"", "h_sink()", "a\tb\n 1 \t\n\"x\ty\"\t2\n", 2);
}

PTEST(csv_parallel, provenance_of_every_record)
{
    /* chunk=1: every record is a chunk of its own, so every record is a
     * batch, and its provenance (origin, offset, line) is checked. The
     * fast parser and libcsv must agree, and agree with the oracle's
     * first row of each of its batches. */
    gen_opts o = gen_default;
    o.nrows = 150;
    o.bom = true;
    char *in = gen_csv(5, &o);
    char *a, *b, *e1, *e2;
    cr_assert_eq(run_spec("h_src(text=$in, chunk=77) | csv(chunk=1, workers=3) | t_prov()", in,
                          &a, &e1), 0, "%s", e1);
    cr_assert_eq(run_spec("h_src(text=$in, chunk=77) | csv(chunk=1, workers=1, "
                          "engine=\"libcsv\") | t_prov()",
                          in, &b, &e2),
                 0, "%s", e2);
    cr_assert_str_eq(a, b);
    int lines = 0;
    for (const char *p = a; *p; p++) lines += *p == '\n';
    cr_assert_eq(lines, 150, "one batch per record");
    char *c, *e3;
    cr_assert_eq(run_spec("h_src(text=$in) | csv_seq() | t_prov()", in, &c, &e3), 0);
    cr_assert(strncmp(a, c, strlen(c)) == 0, "the oracle's first batch starts alike:\n%s\n%s",
              a, c);
    free(a), free(b), free(c), free(e1), free(e2), free(e3), free(in);
}

PTEST(csv_parallel, two_inputs_each_with_its_header)
{
    t_register();
    gen_opts o = gen_default;
    o.nrows = 120;
    for (uint64_t seed = 1; seed <= 4; seed++) {
        o.bom = seed % 2;
        o.no_final_newline = seed > 2;
        char *a = gen_csv(seed, &o), *bb = gen_csv(seed + 100, &o);
        char *va = malloc(strlen(a) + 3), *vb = malloc(strlen(bb) + 3);
        sprintf(va, "a=%s", a);
        sprintf(vb, "b=%s", bb);
        const char *vars[] = {va, vb};
        h_result want;
        h_runv("t_two(a=$a, b=$b) | csv_seq() | to_csv() | h_sink()", vars, 2, &want);
        cr_assert_eq(want.rc, 0, "%s", want.err);
        static const char *const specs[] = {
            "t_two(a=$a, b=$b, chunk=5) | csv(chunk=1, workers=3) | to_csv() | h_sink()",
            "t_two(a=$a, b=$b, chunk=4096) | csv(chunk=100, workers=2) | to_csv() | h_sink()",
            "t_two(a=$a, b=$b) | csv(workers=5, engine=\"libcsv\", chunk=333) | to_csv() | "
            "h_sink()",
        };
        for (size_t i = 0; i < 3; i++) {
            h_result r;
            h_runv(specs[i], vars, 2, &r);
            cr_assert_eq(r.rc, 0, "%s: %s", specs[i], r.err);
            cr_assert_str_eq(r.out, want.out, "%s", specs[i]);
            h_free(&r);
        }
        h_free(&want);
        free(a), free(bb), free(va), free(vb);
    }
}

/* ---- errors ---------------------------------------------------------------------------------- */

/* Put a bad record (or bad bytes) in at record `at` of a generated input. */
static char *with_error(const char *in, int at, const char *bad)
{
    /* Find the start of record `at`: count line ends outside quotes. */
    bool q = false;
    int rec = 0;
    size_t i = 0, n = strlen(in);
    for (; i < n && rec < at; i++) {
        if (in[i] == '"') q = !q;
        else if (!q && in[i] == '\n') rec++;
        else if (!q && in[i] == '\r' && in[i + 1] != '\n') rec++;
    }
    char *out = malloc(n + strlen(bad) + 1);
    memcpy(out, in, i);
    strcpy(out + i, bad);
    strcat(out, in + i);
    return out;
}

PTEST(csv_parallel, errors_equal_the_oracle)
{
    /* Each kind of error at random records; several in one input, so
     * the replicas find later ones first and only the first may be
     * reported. */
    static const char *const bad[] = {
        "1,2,3,4,5\n",            /* ragged: too many */
        "1\n",                    /* ragged: too few */
        "x,y\"z,1,2\n",           /* quote inside an unquoted field */
        "\"x\"y,1,2,3\n",         /* character after a closing quote */
        "\"x\" ,1,2,3\n",         /* a blank after it */
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa,1,2,3\n",
        "\"unterminated,1,2,3\n", /* opens a quote that the rest closes wrongly */
    };
    gen_opts o = gen_default;
    o.nrows = 300;
    o.long_pml = 0;
    for (uint64_t seed = 1; seed <= 14; seed++) {
        char *in = gen_csv(seed, &o);
        uint64_t s = seed;
        int at1 = 1 + (int)rnd(&s, 250), at2 = at1 + 1 + (int)rnd(&s, 40);
        char *e1 = with_error(in, at2, bad[rnd(&s, 7)]);
        char *e2 = with_error(e1, at1, bad[seed % 7]);
        expect_grid("max_field=60", "to_csv() | h_sink()", e2, (unsigned)seed);
        free(in), free(e1), free(e2);
    }
    /* An unterminated quote at the very end; the last record ragged
     * without a final newline. */
    expect_grid("", "h_sink()", "a,b\n1,2\n3,\"open\nmore\n", 0);
    expect_grid("", "h_sink()", "a,b\n1,2\n3", 1);
    expect_grid("max_field=10", "h_sink()",
                "a\n\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\nyyyyyyyyyyyyyyyy", 2);
    /* Fields of max_field bytes and one more, plain, quoted, with
     * doubled quotes, last in the input or not. */
    static const char *const sizes[] = {
        "a,b\n1234567890,\"1234567890\"\n", "a,b\n12345678901,1\n",
        "a,b\n1,\"12345678901\"\n", "a,b\n1,\"123456789\"\"\"\n",
        "a,b\n1,\"1234567890\"\"\"\n", "a,b\n1,\"12345678901\"",
        "a,b\n1,12345678901", "a,b\n1,\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\n",
    };
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++)
        expect_grid("max_field=10", "h_sink()", sizes[i], (unsigned)i);
}

PTEST(csv_parallel, bad_quoting_early_in_a_big_input)
{
    /* A quote inside an unquoted field flips the splitter's idea of what
     * is quoted for the rest of the input (no quote follows): the chunk
     * then grows, is checked, and goes out cut, and the error is the
     * oracle's. max_field bounds how far it can grow. */
    tbuf b = {0};
    tb_str(&b, "a,b\n1,2\nx\"y,3\n");
    for (int i = 0; i < 40000; i++) tb_str(&b, "plain,row\n");
    ref want = oracle("max_field=1000", "h_sink()", b.p);
    cr_assert_eq(want.rc, WEIR_EDATA);
    expect_same(&want, "max_field=1000", "h_sink()", b.p, 4096, 1000, 3, "auto");
    expect_same(&want, "max_field=1000", "h_sink()", b.p, 65536, 1 << 20, 2, "auto");
    expect_same(&want, "max_field=1000", "h_sink()", b.p, 777, 100, 2, "libcsv");
    ref_free(&want);
    /* An unterminated quote: the field passes max_field. */
    b.len = 0;
    tb_str(&b, "a,b\n1,\"open\n");
    for (int i = 0; i < 40000; i++) tb_str(&b, "plain,row\n");
    want = oracle("max_field=5000", "h_sink()", b.p);
    cr_assert_eq(want.rc, WEIR_EDATA);
    cr_assert(strstr(want.err, "field larger than max_field"), "%s", want.err);
    expect_same(&want, "max_field=5000", "h_sink()", b.p, 4096, 1000, 3, "auto");
    expect_same(&want, "max_field=5000", "h_sink()", b.p, 65536, 100000, 2, "auto");
    ref_free(&want);
    free(b.p);
}

PTEST(csv_parallel, header_errors_in_a_later_input)
{
    t_register();
    /* The first input holds a data error late; the second's header is
     * wrong. The splitter sees the header first, the replicas the data
     * error: the data error must win, as in input order. */
    gen_opts o = gen_default;
    o.nrows = 300;
    o.long_pml = 0;
    char *a = gen_csv(3, &o);
    char *abad = with_error(a, 280, "1,2\n");
    const char *const bs[] = {"b=c1,c2,c3,cX\n1,2,3,4\n", "b=c1,c2\n1,2\n"};
    for (int k = 0; k < 2; k++) {
        for (int which = 0; which < 2; which++) {
            char *va = malloc(strlen(abad) + 3);
            sprintf(va, "a=%s", which ? abad : a);
            const char *vars[] = {va, bs[k]};
            h_result want, r;
            h_runv("t_two(a=$a, b=$b) | csv_seq() | to_csv() | h_sink()", vars, 2, &want);
            cr_assert_eq(want.rc, WEIR_EDATA);
            h_runv("t_two(a=$a, b=$b, chunk=1000) | csv(chunk=50, workers=3) | to_csv() | "
                   "h_sink()",
                   vars, 2, &r);
            cr_assert_eq(r.rc, WEIR_EDATA);
            const char *m1 = strstr(want.err, "): "), *m2 = strstr(r.err, "): ");
            cr_assert(m1 && m2);
            cr_assert_str_eq(m2, m1);
            cr_assert(strstr(m1, which ? "one.csv line" : "two.csv line 1 (byte 0)"), "%s", m1);
            h_free(&want);
            h_free(&r);
            free(va);
        }
    }
    free(a), free(abad);
}

/* ---- rejects ----------------------------------------------------------------------------------- */

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    tbuf b = {0};
    char buf[65536];
    size_t n;
    tb_put(&b, "", 0);
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) tb_put(&b, buf, n);
    fclose(f);
    return b.p;
}

PTEST(csv_parallel, rejects_in_input_order)
{
    t_register();
    char dir[] = "/tmp/weir_csvp_XXXXXX";
    cr_assert(mkdtemp(dir));
    char path[256], var_rej[300];
    snprintf(path, sizeof path, "%s/bad.jsonl", dir);
    snprintf(var_rej, sizeof var_rej, "rej=%s", path);
    gen_opts o = gen_default;
    o.nrows = 400;
    o.long_pml = 0;
    char *in = gen_csv(11, &o), *cur = strdup(in);
    uint64_t s = 11;
    for (int k = 0; k < 30; k++) { /* ragged records all over */
        char *next = with_error(cur, 1 + (int)rnd(&s, 380), k % 2 ? "1,2\n" : "\"x\ny\"\n");
        free(cur);
        cur = next;
    }
    char *var_in = malloc(strlen(cur) + 4);
    sprintf(var_in, "in=%s", cur);
    const char *vars[] = {var_in, var_rej};
    h_result want;
    h_runv("h_src(text=$in) | csv_seq(rejects=$rej) | to_csv() | h_sink()", vars, 2, &want);
    cr_assert_eq(want.rc, 0, "%s", want.err);
    char *want_rej = slurp(path);
    cr_assert(want_rej && strlen(want_rej) > 1000);
    static const char *const specs[] = {
        "h_src(text=$in, chunk=333) | csv(rejects=$rej, chunk=1, workers=3) | to_csv() | h_sink()",
        "h_src(text=$in, chunk=7) | csv(rejects=$rej, chunk=200, workers=5) | to_csv() | h_sink()",
        "h_src(text=$in) | csv(rejects=$rej, workers=2, engine=\"libcsv\", chunk=64) | to_csv() | "
        "h_sink()",
        "h_src(text=$in) | csv(rejects=$rej, workers=1) | to_csv() | h_sink()",
    };
    for (size_t i = 0; i < 4; i++) {
        unlink(path);
        h_result r;
        h_runv(specs[i], vars, 2, &r);
        cr_assert_eq(r.rc, 0, "%s: %s", specs[i], r.err);
        cr_assert_str_eq(r.out, want.out, "%s", specs[i]);
        char *got = slurp(path);
        cr_assert(got, "%s: no rejects file", specs[i]);
        cr_assert_str_eq(got, want_rej, "%s: rejects differ", specs[i]);
        free(got);
        h_free(&r);
    }
    h_free(&want);
    unlink(path);
    rmdir(dir);
    free(in), free(cur), free(var_in), free(want_rej);
}

/* ---- the runtime's view --------------------------------------------------------------------- */

PTEST(csv_parallel, splitter_counters_and_replicas)
{
    t_register();
    gen_opts o = gen_default;
    o.nrows = 2000;
    char *in = gen_csv(8, &o);
    weir_graph *g;
    weir_node *src, *csv, *sink;
    cr_assert_eq(weir_graph_create(&g), 0);
    cr_assert_eq(weir_graph_add(g, &h_src_def, NULL, &src), 0);
    cr_assert_eq(weir_node_set_str(src, "text", in), 0);
    cr_assert_eq(weir_graph_add(g, weir_stage_find("csv"), NULL, &csv), 0);
    cr_assert_eq(weir_node_set_int(csv, "workers", 3), 0);
    cr_assert_eq(weir_node_set_int(csv, "chunk", 4096), 0);
    cr_assert_eq(weir_graph_add(g, &h_sink_def, NULL, &sink), 0);
    cr_assert_eq(weir_graph_connect(g, src, csv), 0);
    cr_assert_eq(weir_graph_connect(g, csv, sink), 0);
    h_len = 0;
    cr_assert_eq(weir_graph_run(g, NULL, NULL), 0, "%s", weir_graph_errmsg(g));
    weir_node_stats sp, all;
    cr_assert_eq(weir_node_replica_stats(csv, -1, &sp), 0);
    cr_assert_eq(sp.bytes_in, strlen(in), "the splitter saw every byte");
    /* A chunk ends at the first record end at or past 4096 bytes. */
    cr_assert(sp.batches_out <= strlen(in) / 4096 + 1 && sp.batches_out >= strlen(in) / 8192,
              "chunks of about 4 KiB: %" PRIu64, sp.batches_out);
    cr_assert_eq(weir_node_get_stats(csv, &all), 0);
    cr_assert_eq(all.replicas, 3);
    cr_assert_eq(all.rows_out, 2000);
    cr_assert_eq(all.batches_in, sp.batches_out, "the replicas got every chunk");
    weir_graph_destroy(g);
    free(in);
}

PTEST(csv_parallel, arguments)
{
    t_register();
    char *out, *err;
    cr_assert_eq(run_spec("h_src(text=$in) | csv(engine=\"fast\") | h_sink()", "a\n1\n", &out,
                          &err),
                 WEIR_ESPEC);
    cr_assert(strstr(err, "engine must be \"auto\" or \"libcsv\""), "%s", err);
    free(out), free(err);
    cr_assert_eq(run_spec("h_src(text=$in) | csv(chunk=0) | h_sink()", "a\n1\n", &out, &err),
                 WEIR_ESPEC);
    cr_assert(strstr(err, "chunk must be"), "%s", err);
    free(out), free(err);
    /* Replicas keep order: ordered=false is refused. */
    cr_assert_eq(run_spec("h_src(text=$in) | csv(ordered=false) | h_sink()", "a\n1\n", &out,
                          &err),
                 WEIR_ESPEC);
    free(out), free(err);
}

/* ---- zstd: frames written in parallel, decoded in parallel ------------------------------- */

static bool have_zstd_cli(void) { return system("command -v zstd >/dev/null 2>&1") == 0; }

static int shf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int shf(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    return system(cmd);
}

static void put(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    cr_assert(f, "%s", path);
    cr_assert_eq(fwrite(p, 1, n, f), n);
    fclose(f);
}

/* Run a spec with $f (and $o) set; what h_sink got in r. */
static int run_files(const char *spec, const char *f, const char *o, h_result *r)
{
    char vf[600], vo[600];
    snprintf(vf, sizeof vf, "f=%s", f);
    snprintf(vo, sizeof vo, "o=%s", o ? o : "");
    const char *vars[] = {vf, vo};
    t_register();
    return h_runv(spec, vars, 2, r);
}

typedef struct zdir {
    char dir[64];
} zdir;

static const char *zp(zdir *z, const char *name)
{
    static char buf[8][256];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", z->dir, name);
    return buf[k];
}

static void zdir_make(zdir *z)
{
    snprintf(z->dir, sizeof z->dir, "/tmp/weir_zp_XXXXXX");
    cr_assert(mkdtemp(z->dir));
}

static void zdir_rm(zdir *z) { shf("rm -rf '%s'", z->dir); }

/* Some megabytes of CSV-like text. */
static char *text_of(size_t rows, size_t *n)
{
    tbuf b = {0};
    tb_str(&b, "id,name,v\n");
    uint64_t s = 3;
    for (size_t i = 0; i < rows; i++) {
        char line[128];
        snprintf(line, sizeof line, "%zu,\"n%u, \"\"x\"\"\",%u.%02u\n", i, rnd(&s, 1000),
                 rnd(&s, 100000), rnd(&s, 100));
        tb_str(&b, line);
    }
    *n = b.len;
    return b.p;
}

PTEST(zstd_parallel, frames_round_trip_through_the_cli_and_decode_in_parallel)
{
    if (!have_zstd_cli()) cr_skip("the zstd command is not installed");
    zdir z;
    zdir_make(&z);
    size_t n;
    char *text = text_of(200000, &n); /* ~5 MB: several 1 MiB frames */
    put(zp(&z, "t.csv"), text, n);
    h_result r;
    /* zstd() writes one frame per read() batch, on two workers. */
    cr_assert_eq(run_files("read($f) | zstd(workers=2) | write($o)", zp(&z, "t.csv"),
                           zp(&z, "w.zst"), &r), 0, "%s", r.err);
    h_free(&r);
    cr_assert_eq(shf("zstd -q -t '%s'", zp(&z, "w.zst")), 0, "the zstd CLI accepts it");
    cr_assert_eq(shf("zstd -q -d -c '%s' | cmp -s - '%s'", zp(&z, "w.zst"), zp(&z, "t.csv")), 0,
                 "zstd -d gives the input back");
    /* Decoded by unzstd's replicas: the same bytes, with any workers. */
    static const char *const specs[] = {
        "read($f, decompress=false) | unzstd() | h_sink()",
        "read($f, decompress=false) | unzstd(workers=1) | h_sink()",
        "read($f, decompress=false) | unzstd(workers=3) | h_sink()",
        "read($f, decompress=false) | unzstd(workers=5) | h_sink()",
        "read($f) | h_sink()",
    };
    for (size_t i = 0; i < 5; i++) {
        cr_assert_eq(run_files(specs[i], zp(&z, "w.zst"), NULL, &r), 0, "%s: %s", specs[i],
                     r.err);
        cr_assert_eq(r.len, n, "%s", specs[i]);
        cr_assert(memcmp(r.out, text, n) == 0, "%s: bytes differ", specs[i]);
        h_free(&r);
    }
    /* The frames really went to the replicas: the splitter sent one chunk
     * per frame, and they parsed all of them. */
    weir_graph *g;
    char err[512];
    char spec[600];
    snprintf(spec, sizeof spec, "read(\"%s\", decompress=false) | unzstd(workers=3) | discard()",
             zp(&z, "w.zst"));
    cr_assert_eq(weir_spec_compile(&g, spec, strlen(spec), "<t>", NULL, err, sizeof err), 0,
                 "%s", err);
    cr_assert_eq(weir_graph_run(g, NULL, NULL), 0, "%s", weir_graph_errmsg(g));
    weir_node *const *nodes;
    weir_graph_nodes(g, &nodes);
    weir_node_stats sp, all;
    cr_assert_eq(weir_node_replica_stats(nodes[1], -1, &sp), 0);
    cr_assert_eq(weir_node_get_stats(nodes[1], &all), 0);
    cr_assert(sp.batches_out >= n / (1 << 20), "one chunk per frame: %" PRIu64, sp.batches_out);
    cr_assert_eq(all.batches_in, sp.batches_out);
    cr_assert_eq(all.bytes_out, n);
    weir_graph_destroy(g);
    /* And csv() reads its header through unzstd at plan time. */
    snprintf(spec, sizeof spec,
             "read(\"%s\", decompress=false) | unzstd() | csv() | select(nope) | discard()",
             zp(&z, "w.zst"));
    cr_assert_eq(weir_spec_compile(&g, spec, strlen(spec), "<t>", NULL, err, sizeof err), 0);
    cr_assert_eq(weir_graph_check(g, NULL), WEIR_ESPEC);
    cr_assert(strstr(weir_graph_errmsg(g), "nope"), "%s", weir_graph_errmsg(g));
    weir_graph_destroy(g);
    free(text);
    zdir_rm(&z);
}

PTEST(zstd_parallel, frames_it_cannot_hand_out_are_streamed)
{
    if (!have_zstd_cli()) cr_skip("the zstd command is not installed");
    zdir z;
    zdir_make(&z);
    size_t n;
    char *text = text_of(400000, &n); /* ~11 MB: over the 8 MiB a replica decodes whole */
    put(zp(&z, "t.csv"), text, n);
    /* One frame with its size (from a file), one without (from a pipe),
     * then a mix: weir's frames, a skippable frame, the CLI's frame. */
    cr_assert_eq(shf("zstd -q -f '%s' -o '%s'", zp(&z, "t.csv"), zp(&z, "one.zst")), 0);
    cr_assert_eq(shf("zstd -q -c < '%s' > '%s'", zp(&z, "t.csv"), zp(&z, "pipe.zst")), 0);
    h_result r;
    cr_assert_eq(run_files("read($f) | zstd() | write($o)", zp(&z, "t.csv"), zp(&z, "w.zst"), &r),
                 0, "%s", r.err);
    h_free(&r);
    static const unsigned char skip[] = {0x50, 0x2A, 0x4D, 0x18, 3, 0, 0, 0, 'a', 'b', 'c'};
    put(zp(&z, "skip.bin"), skip, sizeof skip);
    cr_assert_eq(shf("cat '%s' '%s' '%s' '%s' > '%s'", zp(&z, "w.zst"), zp(&z, "skip.bin"),
                     zp(&z, "one.zst"), zp(&z, "w.zst"), zp(&z, "mix.zst")),
                 0);
    static const char *const files[] = {"one.zst", "pipe.zst", "mix.zst"};
    for (size_t f = 0; f < 3; f++) {
        size_t want = f == 2 ? 3 * n : n;
        for (int w = 1; w <= 3; w += 2) {
            char spec[128];
            snprintf(spec, sizeof spec, "read($f, decompress=false) | unzstd(workers=%d) | h_sink()",
                     w);
            cr_assert_eq(run_files(spec, zp(&z, files[f]), NULL, &r), 0, "%s %s: %s", files[f],
                         spec, r.err);
            cr_assert_eq(r.len, want, "%s %s", files[f], spec);
            for (size_t k = 0; k < want; k += n)
                cr_assert(memcmp(r.out + k, text, n) == 0, "%s: bytes differ", files[f]);
            h_free(&r);
        }
    }
    free(text);
    zdir_rm(&z);
}

PTEST(zstd_parallel, errors_in_order_and_as_the_sequential_decoder_says)
{
    if (!have_zstd_cli()) cr_skip("the zstd command is not installed");
    zdir z;
    zdir_make(&z);
    size_t n;
    char *text = text_of(200000, &n);
    put(zp(&z, "t.csv"), text, n);
    h_result r;
    cr_assert_eq(run_files("read($f) | zstd() | write($o)", zp(&z, "t.csv"), zp(&z, "w.zst"), &r),
                 0, "%s", r.err);
    h_free(&r);
    FILE *f = fopen(zp(&z, "w.zst"), "rb");
    unsigned char *zb = malloc(n);
    size_t zn = fread(zb, 1, n, f);
    fclose(f);
    /* Damage: a byte in the second frame and one in the last; the end cut
     * off; junk after the last frame. Each must give read()'s message
     * (its sequential decoder), with 1 or 4 workers. */
    size_t second = ZSTD_findFrameCompressedSize(zb, zn);
    struct {
        const char *name;
        size_t len, flip1, flip2;
    } cases[] = {
        {"mid.zst", zn, second + 200, zn - 300},
        {"cut.zst", zn - 7, 0, 0},
        {"junk.zst", zn + 5, 0, 0},
    };
    for (size_t c = 0; c < 3; c++) {
        unsigned char *y = malloc(zn + 5);
        memcpy(y, zb, zn);
        memcpy(y + zn, "junk!", 5);
        if (cases[c].flip1) y[cases[c].flip1] ^= 0x5a, y[cases[c].flip2] ^= 0x5a;
        put(zp(&z, cases[c].name), y, cases[c].len);
        free(y);
        h_result want;
        cr_assert_eq(run_files("read($f) | h_sink()", zp(&z, cases[c].name), NULL, &want),
                     WEIR_EDATA, "%s", cases[c].name);
        const char *wm = strstr(want.err, "): ");
        for (int w = 1; w <= 4; w += 3) {
            char spec[128];
            snprintf(spec, sizeof spec, "read($f, decompress=false) | unzstd(workers=%d) | h_sink()",
                     w);
            cr_assert_eq(run_files(spec, zp(&z, cases[c].name), NULL, &r), WEIR_EDATA,
                         "%s %s: %s (want %s)", cases[c].name, spec, r.err, want.err);
            const char *m = strstr(r.err, "): ");
            cr_assert(m && wm);
            cr_assert_str_eq(m, wm, "%s %s:\n%s\n%s", cases[c].name, spec, m, wm);
            h_free(&r);
        }
        h_free(&want);
    }
    free(zb);
    free(text);
    zdir_rm(&z);
}

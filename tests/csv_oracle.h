/*
 * csv_oracle.h — the single-threaded csv() as it was before the parallel
 * rework (git 74d4054: libcsv fed line by line), frozen as a test oracle
 * and registered as "csv_seq": test_csv_parallel.c checks that the new
 * csv() gives the same rows, rejects and messages on every input.
 * Included once, by that test only.
 */
#include "../stages/format.h"


#include <csv.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CSV_BATCH_ROWS 4096u              /* rows per output batch, at most */
#define CSV_BATCH_BYTES ((size_t)1 << 20) /* field bytes per output batch, about */
#define CSV_PEEK ((size_t)1 << 20)        /* what plan() reads to find the header */
#define CSV_REJECTS_FLUSH ((size_t)64 << 10)

typedef struct csv_state {
    weir_stage *s;
    struct csv_parser p;
    bool parser_ready;
    bool plan; /* plan(): stop after the first record, record no errors */
    bool stop;

    /* arguments */
    bool header;
    unsigned char delim, quote;
    size_t max_field;
    const char *rej_path; /* NULL: ragged records are errors */

    /* the input being read */
    bool started, have_first;
    const char *origin, *first_origin;
    uint64_t pos;      /* bytes of this input before the chunk being fed */
    uint64_t line;     /* the current physical line, 1-based */
    bool pending_cr;   /* the last byte seen was CR: one line, unless LF follows */
    bool at_row_start; /* between records: CR/LF here are blank lines */
    bool want_header;  /* the next record is this input's header */
    int bom;           /* BOM bytes matched at the input's start; -1 past it */
    uint64_t rec_off, rec_line; /* where the record being parsed starts */

    /* the record being parsed: fields staged in out's arena */
    weir_batch *out;
    size_t rec_start;  /* out->len when the record's first field came */
    weir_field *rf;    /* its stored fields */
    size_t nrf, rf_cap;
    size_t nfields;    /* its field count (can exceed nrf: see csv_on_field) */
    bool row_ended;
    int rc;            /* a callback's failure, acted on after csv_parse */

    weir_schema *schema;
    size_t ncols;

    /* rejects: written to a temporary beside rej_path, renamed at commit */
    char *rej_tmp;
    int rej_fd;
    weir_batch *rej;
} csv_state;

/* ---- messages -------------------------------------------------------------------------- */

static const char *csv_input_name(const char *origin)
{
    if (!origin) return "<input>";
    return strcmp(origin, "-") == 0 ? "<stdin>" : origin;
}

static int csv_failf(csv_state *st, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int csv_failf(csv_state *st, int code, const char *fmt, ...)
{
    if (st->plan) return code; /* the run will say it, with exit code 1 */
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return weir_stage_errorf(st->s, code, "%s", msg);
}

/* "FILE line L (byte B): …" — a data error at a place in the input. */
static int csv_data_error(csv_state *st, uint64_t line, uint64_t off, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int csv_data_error(csv_state *st, uint64_t line, uint64_t off, const char *fmt, ...)
{
    if (st->plan) return WEIR_EDATA;
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return weir_stage_errorf(st->s, WEIR_EDATA, "%s line %" PRIu64 " (byte %" PRIu64 "): %s",
                             csv_input_name(st->origin), line, off, msg);
}

/* ---- arguments ------------------------------------------------------------------------- */

static int csv_args(weir_stage *s, csv_state *st)
{
    const char *d = weir_stage_arg_str(s, "delim"), *q = weir_stage_arg_str(s, "quote");
    int64_t mf = weir_stage_arg_int(s, "max_field");
    const char *rej = weir_stage_arg_str(s, "rejects");
    if (strlen(d) != 1 || d[0] == '\n' || d[0] == '\r')
        return weir_stage_errorf(s, WEIR_ESPEC, "delim must be one byte, not CR or LF "
                                                "(got \"%s\")", d);
    if (strlen(q) != 1 || q[0] == '\n' || q[0] == '\r')
        return weir_stage_errorf(s, WEIR_ESPEC, "quote must be one byte, not CR or LF "
                                                "(got \"%s\")", q);
    if (d[0] == q[0])
        return weir_stage_errorf(s, WEIR_ESPEC, "delim and quote must differ");
    if (mf < 1 || (uint64_t)mf > UINT32_MAX)
        return weir_stage_errorf(s, WEIR_ESPEC,
                                 "max_field must be between 1 and %" PRIu32 " (got %" PRId64 ")",
                                 UINT32_MAX, mf);
    st->s = s;
    st->header = weir_stage_arg_bool(s, "header");
    st->delim = (unsigned char)d[0];
    st->quote = (unsigned char)q[0];
    st->max_field = (size_t)mf;
    st->rej_path = rej && rej[0] ? rej : NULL;
    st->rej_fd = -1;
    return 0;
}

/* No byte is a space: fields keep their blanks (RFC 4180). */
static int csv_no_space(unsigned char c)
{
    (void)c;
    return 0;
}

static int csv_parser_init(csv_state *st)
{
    if (csv_init(&st->p, CSV_STRICT | CSV_STRICT_FINI) != 0) return WEIR_ENOMEM;
    st->parser_ready = true;
    csv_set_delim(&st->p, st->delim);
    csv_set_quote(&st->p, st->quote);
    csv_set_space_func(&st->p, csv_no_space);
    return 0;
}

/* ---- libcsv callbacks ------------------------------------------------------------------ */

static void csv_on_field(void *data, size_t n, void *arg)
{
    csv_state *st = arg;
    if (st->rc) return;
    if (n > st->max_field) {
        st->rc = csv_data_error(st, st->rec_line, st->rec_off,
                                "field larger than max_field (%zu bytes)", st->max_field);
        return;
    }
    size_t idx = st->nfields++;
    /* A record already known to be ragged, with no rejects file to show
     * it in: count its fields for the message, keep none of them. */
    if (st->schema && !st->rej_path && idx >= st->ncols) return;
    if (!st->out && (st->rc = weir_stage_batch(st->s, &st->out))) return;
    weir_batch *out = st->out;
    if (st->nrf == 0) st->rec_start = out->len;
    if (out->len + n > UINT32_MAX) { /* arena offsets are 32-bit */
        st->rc = csv_data_error(st, st->rec_line, st->rec_off, "record larger than 4 GiB");
        return;
    }
    if (st->nrf == st->rf_cap) {
        size_t cap = st->rf_cap ? 2 * st->rf_cap : 64;
        weir_field *nf = realloc(st->rf, cap * sizeof *nf);
        if (!nf) {
            st->rc = csv_failf(st, WEIR_ENOMEM, "out of memory");
            return;
        }
        st->rf = nf;
        st->rf_cap = cap;
    }
    if (out->cap - out->len < n && weir_batch_reserve(out, n)) {
        st->rc = csv_failf(st, WEIR_ENOMEM, "out of memory");
        return;
    }
    if (n) memcpy(out->data + out->len, data, n);
    st->rf[st->nrf++] = (weir_field){(uint32_t)out->len, (uint32_t)n};
    out->len += n;
}

static void csv_on_row(int c, void *arg)
{
    (void)c;
    ((csv_state *)arg)->row_ended = true;
}

/* ---- records --------------------------------------------------------------------------- */

/* A schema from the staged fields (names) or, with names false, c1..cN. */
static int csv_make_schema(csv_state *st, bool names)
{
    size_t n = st->nfields, bytes = 0;
    for (size_t i = 0; i < n; i++) bytes += names ? st->rf[i].len + 1 : 24;
    char **v = malloc(n * sizeof *v + bytes);
    if (!v) return csv_failf(st, WEIR_ENOMEM, "out of memory");
    char *w = (char *)(v + n);
    for (size_t i = 0; i < n; i++) {
        v[i] = w;
        if (names) {
            memcpy(w, st->out->data + st->rf[i].off, st->rf[i].len);
            w[st->rf[i].len] = '\0';
            w += st->rf[i].len + 1;
        } else {
            w += snprintf(w, 24, "c%zu", i + 1) + 1;
        }
    }
    int rc = weir_schema_create(&st->schema, (const char *const *)v, n);
    free(v);
    if (rc) return csv_failf(st, rc, "out of memory");
    st->ncols = n;
    return 0;
}

/* A later input's header must repeat the first input's. */
static int csv_check_header(csv_state *st)
{
    const char *first = csv_input_name(st->first_origin);
    if (st->nfields != st->ncols)
        return csv_data_error(st, st->rec_line, st->rec_off,
                              "header has %zu columns, but %s's has %zu", st->nfields,
                              first, st->ncols);
    for (size_t i = 0; i < st->ncols; i++) {
        const char *want = weir_schema_name(st->schema, i);
        const weir_field *f = &st->rf[i];
        if (strlen(want) != f->len || memcmp(want, st->out->data + f->off, f->len) != 0)
            return csv_data_error(st, st->rec_line, st->rec_off,
                                  "header differs from %s's: column %zu is '%.*s' here, "
                                  "'%s' there",
                                  first, i + 1, (int)(f->len > 200 ? 200 : f->len),
                                  (const char *)st->out->data + f->off, want);
    }
    return 0;
}

static int csv_rej_flush(csv_state *st)
{
    const unsigned char *p = st->rej->data;
    size_t n = st->rej->len;
    while (n) {
        ssize_t w = write(st->rej_fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) {
            char eb[128];
            return csv_failf(st, WEIR_EIO, "writing rejects file '%s': %s", st->rej_path,
                             strerror_r(errno, eb, sizeof eb));
        }
        p += w;
        n -= (size_t)w;
    }
    st->rej->len = 0;
    return 0;
}

/* The ragged record as one JSON line in the rejects file. */
static int csv_reject(csv_state *st)
{
    weir_batch *j = st->rej;
    char num[160];
    int rc = weir_batch_append(j, "{\"file\":", 8);
    if (!rc)
        rc = st->origin ? weir__json_str(j, st->origin, strlen(st->origin))
                        : weir_batch_append(j, "null", 4);
    int k = snprintf(num, sizeof num, ",\"line\":%" PRIu64 ",\"offset\":%" PRIu64 ",\"fields\":[",
                     st->rec_line, st->rec_off);
    if (!rc) rc = weir_batch_append(j, num, (size_t)k);
    for (size_t i = 0; i < st->nrf && !rc; i++) {
        if (i) rc = weir_batch_append(j, ",", 1);
        if (!rc) rc = weir__json_str(j, st->out->data + st->rf[i].off, st->rf[i].len);
    }
    k = snprintf(num, sizeof num, "],\"error\":\"expected %zu fields, found %zu\"}\n",
                 st->ncols, st->nfields);
    if (!rc) rc = weir_batch_append(j, num, (size_t)k);
    if (rc) return csv_failf(st, rc, "out of memory");
    return j->len >= CSV_REJECTS_FLUSH ? csv_rej_flush(st) : 0;
}

static int csv_flush_rows(csv_state *st)
{
    if (st->plan || !st->out || st->out->nrows == 0) return 0;
    weir_batch *b = st->out;
    st->out = NULL;
    return weir_stage_emit(st->s, b);
}

/* A whole record has been parsed: a header, a row, or a ragged record. */
static int csv_end_record(csv_state *st)
{
    int rc = 0;
    weir_batch *out = st->out; /* holds the record's first field, at least */
    if (st->want_header) {
        st->want_header = false;
        rc = st->schema ? csv_check_header(st) : csv_make_schema(st, true);
        st->stop = st->plan;
    } else if (!st->schema && (rc = csv_make_schema(st, false)) != 0) {
        /* no columns: nothing more to do */
    } else if (st->plan) {
        st->stop = true;
    } else if (st->nfields != st->ncols) {
        rc = st->rej_path ? csv_reject(st)
                          : csv_data_error(st, st->rec_line, st->rec_off,
                                           "expected %zu fields, found %zu", st->ncols,
                                           st->nfields);
    } else {
        if (out->nrows == 0) {
            weir_batch_set_schema(out, st->schema);
            out->origin = st->origin;
            out->offset = st->rec_off;
            out->line = st->rec_line;
        }
        /* Slots from the API (it grows the slice table), then pointed at
         * the bytes already staged in the arena. */
        size_t n = st->ncols, slot = (size_t)out->nrows * n;
        for (size_t i = 0; i < n && !rc; i++) rc = weir_batch_add_field(out, "", 0);
        if (!rc) rc = weir_batch_end_row(out);
        st->nfields = st->nrf = 0;
        if (rc) return csv_failf(st, rc, "out of memory");
        memcpy(out->fields + slot, st->rf, n * sizeof *st->rf);
        if (out->nrows >= CSV_BATCH_ROWS || out->len >= CSV_BATCH_BYTES)
            rc = csv_flush_rows(st);
        return rc;
    }
    /* Not a row: its staged bytes go. */
    if (st->nrf) out->len = st->rec_start;
    st->nfields = st->nrf = 0;
    return rc;
}

/* ---- feeding --------------------------------------------------------------------------- */

/* libcsv stopped early at d[at]: strict mode saw bad quoting (or memory
 * ran out). No line break lies between the piece's start and d[at]. */
static int csv_parse_error(csv_state *st, size_t at)
{
    if (csv_error(&st->p) == CSV_ENOMEM) return csv_failf(st, WEIR_ENOMEM, "out of memory");
    const char *why = st->p.quoted ? "unexpected character after a closing quote"
                                   : "quote inside an unquoted field";
    return csv_data_error(st, st->line, st->pos + at, "%s (malformed quoting)", why);
}

/* Parse n bytes of the current input (after any BOM). */
static int csv_feed(csv_state *st, const unsigned char *d, size_t n)
{
    size_t i = 0, lf = 0, cr = 0; /* the next LF / CR at or after i (n: none) */
    bool lf_known = false, cr_known = false;
    int rc = 0;
    while (i < n && !rc && !st->stop) {
        if (st->pending_cr) {
            st->pending_cr = false;
            if (d[i] != '\n') st->line++;
        }
        if (st->at_row_start) {
            if (d[i] == '\n' || d[i] == '\r') { /* a blank line */
                if (d[i++] == '\n') st->line++;
                else st->pending_cr = true;
                continue;
            }
            st->at_row_start = false;
            st->rec_off = st->pos + i;
            st->rec_line = st->line;
        }
        if (!lf_known || lf < i) {
            const unsigned char *q = memchr(d + i, '\n', n - i);
            lf = q ? (size_t)(q - d) : n;
            lf_known = true;
        }
        if (!cr_known || cr < i) {
            const unsigned char *q = memchr(d + i, '\r', n - i);
            cr = q ? (size_t)(q - d) : n;
            cr_known = true;
        }
        size_t end = lf < cr ? lf : cr;
        end = end < n ? end + 1 : n;
        /* The field in progress may hold max_field + 1 bytes (a quoted
         * field's closing quote sits in libcsv's buffer until the next
         * byte); cut the piece so it cannot pass that unseen. */
        size_t room = st->max_field + 2 - st->p.entry_pos;
        if (end - i > room) end = i + room;
        size_t got = csv_parse(&st->p, d + i, end - i, csv_on_field, csv_on_row, st);
        if (st->rc) return st->rc;
        if (got < end - i) return csv_parse_error(st, i + got);
        if (d[end - 1] == '\n') st->line++;
        else if (d[end - 1] == '\r') st->pending_cr = true;
        if (st->p.entry_pos > st->max_field + 1)
            return csv_data_error(st, st->rec_line, st->rec_off,
                                  "field larger than max_field (%zu bytes)", st->max_field);
        if (st->p.entry_size > st->p.blk_size) csv_set_blk_size(&st->p, st->p.entry_size);
        i = end;
        if (st->row_ended) {
            st->row_ended = false;
            st->at_row_start = true;
            rc = csv_end_record(st);
        }
    }
    st->pos += n;
    return rc;
}

/* Bytes of the current input, as they come: a BOM at its start is dropped
 * even when it arrives a byte at a time. */
static int csv_input(csv_state *st, const unsigned char *d, size_t n)
{
    static const unsigned char bom[3] = {0xEF, 0xBB, 0xBF};
    while (st->bom >= 0 && n) {
        if (d[0] != bom[st->bom]) {
            size_t held = (size_t)st->bom;
            st->bom = -1;
            if (held) {
                int rc = csv_feed(st, bom, held);
                if (rc) return rc;
            }
            break;
        }
        d++;
        n--;
        if (++st->bom == 3) {
            st->bom = -1;
            st->pos += 3;
        }
    }
    return n ? csv_feed(st, d, n) : 0;
}

static void csv_begin_input(csv_state *st, const char *origin)
{
    st->started = true;
    st->origin = origin;
    if (!st->have_first) {
        st->have_first = true;
        st->first_origin = origin;
    }
    st->pos = 0;
    st->line = 1;
    st->pending_cr = false;
    st->at_row_start = true;
    st->want_header = st->header;
    st->bom = 0;
}

/* The input has ended: its last record may lack a newline, or be open. */
static int csv_end_input(csv_state *st)
{
    int rc = 0;
    if (st->bom > 0) { /* the input was a prefix of a BOM: data after all */
        size_t held = (size_t)st->bom;
        st->bom = -1;
        static const unsigned char bom[3] = {0xEF, 0xBB, 0xBF};
        if ((rc = csv_feed(st, bom, held))) return rc;
    }
    if (st->stop) return 0;
    if (csv_fini(&st->p, csv_on_field, csv_on_row, st) != 0)
        return csv_data_error(st, st->rec_line, st->rec_off, "unterminated quoted field");
    if (st->rc) return st->rc;
    if (st->row_ended) {
        st->row_ended = false;
        st->at_row_start = true;
        if ((rc = csv_end_record(st))) return rc;
    }
    return csv_flush_rows(st);
}

/* ---- the stage ------------------------------------------------------------------------- */

static void csv_state_free(csv_state *st)
{
    if (st->parser_ready) csv_free(&st->p);
    weir_batch_release(st->out);
    weir_schema_release(st->schema);
    free(st->rf);
    if (st->rej_fd >= 0) close(st->rej_fd);
    if (st->rej_tmp) unlink(st->rej_tmp); /* still there: the run did not commit */
    free(st->rej_tmp);
    weir_batch_release(st->rej);
}

static int csv_plan(weir_stage *s, const weir_schema *in, weir_schema **out)
{
    (void)in;
    csv_state st = {0};
    int rc = csv_args(s, &st);
    if (rc) return rc;
    unsigned char *buf = malloc(CSV_PEEK);
    if (!buf) return WEIR_ENOMEM;
    long n = weir_stage_peek(s, buf, CSV_PEEK);
    if (n < 0) {
        free(buf);
        return n == WEIR_ENOTFOUND ? 0 : (int)n; /* not found: known only at run time */
    }
    st.plan = true;
    st.rej_path = NULL;
    rc = csv_parser_init(&st);
    if (!rc) rc = weir_batch_create(&st.out, WEIR_KIND_ROWS, 0);
    if (!rc) {
        csv_begin_input(&st, NULL);
        rc = csv_input(&st, buf, (size_t)n);
        /* Fewer bytes than asked for: that was the whole input. */
        if (!rc && !st.stop && (size_t)n < CSV_PEEK) rc = csv_end_input(&st);
    }
    /* A data error here leaves the schema unknown; the run reports it. */
    if (st.stop && st.schema) *out = weir_schema_retain(st.schema);
    csv_state_free(&st);
    free(buf);
    return rc == WEIR_ENOMEM ? rc : 0;
}

/* The rejects file's temporary, created now so that an unwritable place
 * fails the run before any data flows. */
static int csv_rej_open(csv_state *st)
{
    size_t len = strlen(st->rej_path) + 64;
    st->rej_tmp = malloc(len);
    if (!st->rej_tmp || weir_batch_create(&st->rej, WEIR_KIND_BYTES, CSV_REJECTS_FLUSH))
        return csv_failf(st, WEIR_ENOMEM, "out of memory");
    for (unsigned k = 0; k < 1000; k++) {
        snprintf(st->rej_tmp, len, "%s.weir-tmp-%ld-%u", st->rej_path, (long)getpid(), k);
        st->rej_fd = open(st->rej_tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (st->rej_fd >= 0) return 0;
        if (errno != EEXIST) break;
    }
    char eb[128];
    int rc = csv_failf(st, WEIR_EIO, "cannot create rejects file '%s': %s", st->rej_path,
                       strerror_r(errno, eb, sizeof eb));
    free(st->rej_tmp);
    st->rej_tmp = NULL;
    return rc;
}

static int csv_open(weir_stage *s)
{
    csv_state *st = calloc(1, sizeof *st);
    if (!st) return WEIR_ENOMEM;
    st->rej_fd = -1;
    weir_stage_set_state(s, st);
    int rc = csv_args(s, st);
    if (!rc) rc = csv_parser_init(st);
    if (!rc && st->rej_path) rc = csv_rej_open(st);
    return rc;
}

static int csv_process(weir_stage *s, weir_batch *in)
{
    csv_state *st = weir_stage_state(s);
    int rc = 0;
    if (!st->started || in->origin != st->origin) {
        if (st->started) rc = csv_end_input(st);
        csv_begin_input(st, in->origin);
    }
    if (!rc) rc = csv_input(st, in->data, in->len);
    weir_batch_release(in);
    return rc;
}

static int csv_finish(weir_stage *s)
{
    csv_state *st = weir_stage_state(s);
    int rc = st->started ? csv_end_input(st) : 0;
    if (rc == 0 && st->schema) {
        /* Only a header: an empty batch tells downstream the columns (the
         * runtime drops it if rows went before). */
        weir_batch *b;
        if ((rc = weir_stage_batch(s, &b)) == 0) {
            weir_batch_set_schema(b, st->schema);
            rc = weir_stage_emit(s, b);
        }
    }
    return rc;
}

/* The run succeeded: the rejects file takes its name. */
static int csv_commit(weir_stage *s)
{
    csv_state *st = weir_stage_state(s);
    if (!st->rej_tmp) return 0;
    int rc = csv_rej_flush(st);
    if (rc) return rc;
    char eb[128];
    int fd = st->rej_fd;
    st->rej_fd = -1;
    if (close(fd) != 0 || rename(st->rej_tmp, st->rej_path) != 0)
        return csv_failf(st, WEIR_EIO, "writing rejects file '%s': %s", st->rej_path,
                         strerror_r(errno, eb, sizeof eb));
    free(st->rej_tmp);
    st->rej_tmp = NULL;
    return 0;
}

static void csv_close(weir_stage *s)
{
    csv_state *st = weir_stage_state(s);
    if (!st) return;
    csv_state_free(st);
    free(st);
}

static const weir_stage_def t_csv_seq_def = {
    .abi = WEIR_ABI_VERSION,
    .name = "csv_seq",
    .summary = "parse CSV (RFC 4180) into rows; the header names the columns",
    .args = (const weir_arg_def[]){
        {"header", WEIR_ARG_BOOL, "true",
         "the first record of each input names the columns (every input's must "
         "match the first's); false: columns are c1..cN and every record is data"},
        {"delim", WEIR_ARG_STRING, ",", "field delimiter, one byte (\"\\t\" for TSV)"},
        {"quote", WEIR_ARG_STRING, "\"",
         "quote character, one byte; doubled inside a quoted field"},
        {"rejects", WEIR_ARG_STRING, "",
         "file for records with the wrong field count, one JSON object per line "
         "(file, line, offset, fields, error), and the run goes on without them; "
         "the file appears when the run succeeds (empty if there were none). "
         "Unset: such a record is an error. Bad quoting is always an error"},
        {"max_field", WEIR_ARG_INT, "67108864",
         "largest field in bytes; a bigger one is an error (bounds memory on bad "
         "quoting)"},
        {NULL}},
    .in_kind = WEIR_KIND_BYTES,
    .out_kind = WEIR_KIND_ROWS,
    .open = csv_open,
    .process = csv_process,
    .finish = csv_finish,
    .close = csv_close,
    .plan = csv_plan,
    .commit = csv_commit,
};

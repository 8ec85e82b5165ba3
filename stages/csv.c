/*
 * csv(header, delim, quote, rejects, max_field, chunk, engine) — bytes →
 * rows, RFC 4180, in parallel.
 *
 * The node runs as a splitter in front of N replicas (workers=auto):
 *
 *   The splitter (one thread, split_*) cuts the input into chunks of whole
 *   records. A chunk ends at the first line end outside quotes at or after
 *   chunk= bytes, so the cuts depend on the input's bytes alone, not
 *   on how they arrived. Whether a byte is inside quotes is the parity of
 *   the quotes before it, counted from the chunk's start (a record start)
 *   while the bytes are copied into the chunk; the same pass counts line
 *   breaks, so each chunk knows the line and byte offset of its first
 *   byte. The splitter also drops each input's UTF-8 BOM, parses each
 *   input's header with libcsv (the first names the columns, the others
 *   must repeat it; with header=false the first record gives the width)
 *   and attaches the schema to every chunk.
 *
 *   The replicas (csv_process) parse whole chunks; the ordered collector
 *   puts their rows back in input order. A chunk is parsed by a fast
 *   RFC 4180 parser (csv_fast: the bytes of its rows are copied once into
 *   the output batch's arena and the fields are slices of that copy; a
 *   field with doubled quotes is unescaped in place), and every record it
 *   does not take whole — bad quoting, a ragged row, a field over
 *   max_field, an unterminated quote, a record over 4 GiB — goes on its
 *   own to libcsv (csv_feed), started at that record's first byte with its
 *   exact line and offset. So rows, rejects and messages are libcsv's;
 *   engine="libcsv" sends every record there (the reference the tests
 *   compare the fast parser with).
 *
 * Bad quoting. Quote parity is exact for valid CSV; a stray quote makes
 * the splitter think it is inside quotes until the next one, and it may
 * find no record end for a long way. Cuts before the stray quote are
 * still right, so the chunk holding it starts at a record and its parse
 * fails at that quote exactly as a single-threaded parse does. A chunk
 * that grows past twice its size without a record end is checked
 * (split_valid_run: strict quoting, field sizes); if it holds a sure error
 * it goes out as it is, cut (CSV_CK_TRUNCATED), and the error comes from
 * parsing it; else it is a huge record, kept whole as libcsv would.
 *
 * Errors in input order. Each chunk has an index; a replica or the
 * splitter that finds an error at chunk k reports it only once every chunk
 * before k has been parsed without one (inorder.h): the run reports the
 * same first error as a single-threaded parse would, whatever the timing.
 * The same bookkeeping bounds how many chunks are in flight (memory does
 * not grow with the input: SPLIT_AHEAD_PER_REPLICA) and writes rejects in
 * input order, so workers=N is allowed with rejects=.
 *
 * Chunk size (chunk=, 1 MiB): on 1 GB of trips (bench/RESULTS.md) 256 KiB
 * to 1 MiB run at the same speed and 256 KiB holds less memory, but output
 * batches never span chunks, and 1 MiB keeps them as the single-threaded
 * parse cut them (up to CSV_BATCH_ROWS rows or about 1 MiB of fields).
 *
 * The libcsv path (the reference). libcsv does not say where a record
 * starts, so it is fed one physical line at a time: every piece handed to
 * csv_parse() ends at the first CR or LF at or after its start (or at the
 * end of the data). A record can only end on a CR or LF, so when the
 * end-of-record callback fires it fired on the piece's last byte, and the
 * position right after the piece is exact. The next record starts at the
 * first byte that is not CR or LF (libcsv skips blank lines); line numbers
 * count LF, CRLF and lone CR as one line break each, inside quotes too
 * (physical lines). libcsv's space test is replaced by one that sees no
 * spaces: fields keep their blanks (RFC 4180), and `"a" ,` is an error.
 * libcsv buffers a field whole; pieces are cut so the field in progress
 * can never pass max_field + 1 bytes unseen, and its growth step doubles
 * with the buffer (O(log n) reallocs for a big field). A record becomes a
 * row only once its field count is known to be right.
 *
 * Output batches hold rows of one chunk (so of one input): at most
 * CSV_BATCH_ROWS rows, ending after the row that takes the arena past
 * CSV_BATCH_BYTES; their provenance (origin, offset and line of the first
 * row) is exact.
 */
#include "csv_scan.h"
#include "format.h"
#include "inorder.h"
#include "stages.h"

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
#define CSV_BATCH_BYTES ((size_t)1 << 20) /* arena bytes per output batch, about */
#define CSV_PEEK ((size_t)1 << 20)        /* what plan() reads to find the header */
/* The most one csv_parse() call gets: libcsv grows a field's buffer by a
 * fixed step within a call, and the step is doubled between calls, so a
 * huge field costs O(log n) reallocs only if the calls stay this small. */
#define CSV_PIECE_MAX ((size_t)1 << 20)
/* The largest chunk= (a chunk is one batch, its record offsets 32-bit). */
#define SPLIT_MAX_CHUNK ((int64_t)1 << 30)
/* Chunks in flight per replica (being parsed, or queued for it): two
 * keeps every replica fed; the channels alone would allow 16, and 16
 * chunks and their rows per replica would pass the memory target. */
#define SPLIT_AHEAD_PER_REPLICA 2

/* ---- chunks ------------------------------------------------------------------------------ */

/* What the splitter puts before each chunk's bytes (only csv's replicas
 * read chunks). b->offset and b->line are those of the first byte after
 * it; b->schema is the stream's. */
typedef struct csv_chunk_head {
    uint64_t magic;
    struct csv_shared *sh;
    uint64_t index; /* 0, 1, 2, … in input order */
    uint32_t flags; /* CSV_CK_* */
    uint32_t unused;
} csv_chunk_head;

#define CSV_CHUNK_MAGIC UINT64_C(0x6b6e7563767363fe) /* "\xfecsvcunk" */
#define CSV_HEAD sizeof(csv_chunk_head)

enum {
    CSV_CK_TRUNCATED = 0x1, /* ends inside a record that holds a fatal error */
    CSV_CK_SCHEMA = 0x2,    /* no bytes: only the schema (a header-only stream) */
};

/* ---- shared by the splitter and the replicas of one node ------------------------------ */

/* Input order (inorder.h), and the rejects file written through it: a
 * temporary beside rej_path, renamed at commit. */
typedef struct csv_shared {
    inorder o; /* first: the writer is handed &o */
    const char *rej_path;
    char *rej_tmp;
    int rej_fd;
    int rej_errno;
} csv_shared;

static int csv_rej_write(inorder *o, const void *p, size_t n)
{
    csv_shared *sh = (csv_shared *)o;
    const unsigned char *c = p;
    while (n) {
        ssize_t w = write(sh->rej_fd, c, n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) {
            sh->rej_errno = errno;
            return WEIR_EIO;
        }
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

static int csv_shared_create(csv_shared **out)
{
    csv_shared *sh = calloc(1, sizeof *sh);
    if (!sh) return WEIR_ENOMEM;
    inorder_init(&sh->o);
    sh->o.write = csv_rej_write;
    sh->rej_fd = -1;
    *out = sh;
    return 0;
}

static void csv_shared_release(csv_shared *sh)
{
    if (!sh || !inorder_release(&sh->o)) return;
    inorder_fini(&sh->o);
    if (sh->rej_fd >= 0) close(sh->rej_fd);
    if (sh->rej_tmp) unlink(sh->rej_tmp); /* still there: the run did not commit */
    free(sh->rej_tmp);
    free(sh);
}

/* ---- the libcsv path's state (replicas, the splitter's header parser, plan) -------------- */

/* A fast-path field with doubled quotes: unescaped when its bytes reach
 * the arena. */
typedef struct csv_esc {
    size_t slot;  /* its index in the batch's fields */
    uint32_t raw; /* its length as written (doubled quotes and all) */
} csv_esc;

typedef struct csv_state {
    weir_stage *s;
    struct csv_parser p;
    bool parser_ready;
    bool plan;       /* plan(): record no errors */
    bool first_only; /* stop after the first record (plan; the splitter's header) */
    bool one_record; /* stop after one record (one the fast parser left) */
    bool stop;
    size_t used;     /* bytes csv_feed consumed (fewer than given when it stopped) */

    /* arguments */
    bool header;
    unsigned char delim, quote;
    size_t max_field;
    const char *rej_path; /* NULL: ragged records are errors */
    bool libcsv_only;     /* engine="libcsv" */
    size_t chunk;         /* the splitter's target chunk size */

    /* the input being read */
    bool started, have_first;
    const char *origin, *first_origin;
    uint64_t pos;      /* input offset of the data csv_feed is given */
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

    weir_batch *rej;   /* rejects of the chunk being parsed, as JSON lines */
    csv_shared *sh;    /* replicas: the node's, from the first chunk */
    csv_esc *esc;      /* the fast path's fields with doubled quotes */
    size_t nesc, esc_cap;

    /* The first error, kept until it may be reported (see csv_shared). */
    int ecode;
    char emsg[768];
} csv_state;

/* ---- messages -------------------------------------------------------------------------- */

static const char *csv_input_name(const char *origin)
{
    if (!origin) return "<input>";
    return strcmp(origin, "-") == 0 ? "<stdin>" : origin;
}

static int csv_keep_error(csv_state *st, int code, const char *msg)
{
    if (st->plan) return code; /* the run will say it, with exit code 1 */
    if (!st->ecode) {
        st->ecode = code;
        snprintf(st->emsg, sizeof st->emsg, "%s", msg);
    }
    return code;
}

static int csv_failf(csv_state *st, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int csv_failf(csv_state *st, int code, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return csv_keep_error(st, code, msg);
}

/* "FILE line L (byte B): …" — a data error at a place in the input. */
static int csv_data_error(csv_state *st, uint64_t line, uint64_t off, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int csv_data_error(csv_state *st, uint64_t line, uint64_t off, const char *fmt, ...)
{
    char full[768];
    int k = snprintf(full, sizeof full, "%s line %" PRIu64 " (byte %" PRIu64 "): ",
                     csv_input_name(st->origin), line, off);
    if (k >= 0 && (size_t)k < sizeof full) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(full + k, sizeof full - (size_t)k, fmt, ap);
        va_end(ap);
    }
    return csv_keep_error(st, WEIR_EDATA, full);
}

/* A failure at chunk k, in input order: only the first is reported. */
static int csv_settle(weir_stage *s, csv_shared *sh, csv_state *st, uint64_t k, int rc)
{
    return inorder_settle(s, &sh->o, k, rc, st->ecode, st->ecode ? st->emsg : NULL);
}

/* ---- arguments ------------------------------------------------------------------------- */

static int csv_args(weir_stage *s, csv_state *st)
{
    const char *d = weir_stage_arg_str(s, "delim"), *q = weir_stage_arg_str(s, "quote");
    int64_t mf = weir_stage_arg_int(s, "max_field");
    const char *rej = weir_stage_arg_str(s, "rejects");
    const char *engine = weir_stage_arg_str(s, "engine");
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
    int64_t chunk = weir_stage_arg_int(s, "chunk");
    if (chunk < 1 || chunk > SPLIT_MAX_CHUNK)
        return weir_stage_errorf(s, WEIR_ESPEC,
                                 "chunk must be between 1 and %" PRId64 " (got %" PRId64 ")",
                                 SPLIT_MAX_CHUNK, chunk);
    if (strcmp(engine, "auto") != 0 && strcmp(engine, "libcsv") != 0)
        return weir_stage_errorf(s, WEIR_ESPEC, "engine must be \"auto\" or \"libcsv\" "
                                                "(got \"%s\")", engine);
    st->s = s;
    st->header = weir_stage_arg_bool(s, "header");
    st->delim = (unsigned char)d[0];
    st->quote = (unsigned char)q[0];
    st->max_field = (size_t)mf;
    st->rej_path = rej && rej[0] ? rej : NULL;
    st->libcsv_only = strcmp(engine, "libcsv") == 0;
    st->chunk = (size_t)chunk;
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

/* The ragged record as one JSON line in the chunk's rejects (written in
 * input order through csv_shared when the chunk is done). */
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
    return rc ? csv_failf(st, rc, "out of memory") : 0;
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
        st->stop = st->first_only;
    } else if (!st->schema && (rc = csv_make_schema(st, false)) != 0) {
        /* no columns: nothing more to do */
    } else if (st->first_only) {
        st->stop = true;
    } else if (st->nfields != st->ncols) {
        rc = st->rej_path ? csv_reject(st)
                          : csv_data_error(st, st->rec_line, st->rec_off,
                                           "expected %zu fields, found %zu", st->ncols,
                                           st->nfields);
    } else {
        /* An arena even when every field is empty: fields point into it. */
        if (!out->data && weir_batch_reserve(out, 1))
            return csv_failf(st, WEIR_ENOMEM, "out of memory");
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

/* ---- feeding libcsv -------------------------------------------------------------------- */

/* libcsv stopped early at d[at]: strict mode saw bad quoting (or memory
 * ran out). No line break lies between the piece's start and d[at]. */
static int csv_parse_error(csv_state *st, size_t at)
{
    if (csv_error(&st->p) == CSV_ENOMEM) return csv_failf(st, WEIR_ENOMEM, "out of memory");
    const char *why = st->p.quoted ? "unexpected character after a closing quote"
                                   : "quote inside an unquoted field";
    return csv_data_error(st, st->line, st->pos + at, "%s (malformed quoting)", why);
}

/* Parse n bytes of the current input (after any BOM), which start at
 * input offset st->pos. Stops early after the first record with
 * first_only or one_record (st->used says how far it got). */
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
        if (room > CSV_PIECE_MAX) room = CSV_PIECE_MAX;
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
            if (st->one_record) st->stop = true;
        }
    }
    st->used = i;
    st->pos += i;
    return rc;
}

/* The data has ended: a last record may lack its line end, or be open. */
static int csv_fini_record(csv_state *st)
{
    if (csv_fini(&st->p, csv_on_field, csv_on_row, st) != 0)
        return csv_data_error(st, st->rec_line, st->rec_off, "unterminated quoted field");
    if (st->rc) return st->rc;
    if (!st->row_ended) return 0;
    st->row_ended = false;
    st->at_row_start = true;
    return csv_end_record(st);
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
    st->stop = false;
}

/* The input has ended (plan): a BOM prefix is data, the last record may be open. */
static int csv_end_input(csv_state *st)
{
    int rc = 0;
    if (st->bom > 0) {
        size_t held = (size_t)st->bom;
        st->bom = -1;
        static const unsigned char bom[3] = {0xEF, 0xBB, 0xBF};
        if ((rc = csv_feed(st, bom, held))) return rc;
    }
    if (st->stop) return 0;
    return csv_fini_record(st);
}

static void csv_state_free(csv_state *st)
{
    if (st->parser_ready) csv_free(&st->p);
    weir_batch_release(st->out);
    weir_schema_release(st->schema);
    free(st->rf);
    free(st->esc);
    weir_batch_release(st->rej);
    csv_shared_release(st->sh);
}

/* ---- the fast parser -------------------------------------------------------------------- */

/* A chunk being parsed. */
typedef struct csv_ck {
    const unsigned char *p;
    size_t n;
    uint64_t off;     /* input offset of p[0] */
    size_t lc_pos;    /* a position whose line is lc_line: lines are */
    uint64_t lc_line; /* counted forward, only where one is needed */
    csv_cursor cur;
    /* The fast rows of st->out whose bytes are not yet in its arena:
     * p[base..] goes to arena offset abase. */
    size_t base, abase;
    uint32_t seg_rows;
} csv_ck;

static uint64_t csv_line_at(csv_ck *ck, unsigned char quote, size_t x)
{
    csv_counts c = {0};
    csv_copy_count(NULL, ck->p + ck->lc_pos, x - ck->lc_pos, quote, &c);
    ck->lc_line += csv_counts_lines(&c);
    ck->lc_pos = x;
    return ck->lc_line;
}

/* Room for `slots` field slices in b. The API grows the table one field at
 * a time; this grows it once per batch (recycled batches keep theirs) and
 * puts the row count back. */
static int csv_fields_room(weir_batch *b, size_t slots)
{
    uint32_t rows = b->nrows;
    int rc = 0;
    while (!rc && b->fields_cap < slots) {
        for (uint32_t c = 0; c < b->ncols && !rc; c++) rc = weir_batch_add_field(b, "", 0);
        if (!rc) rc = weir_batch_end_row(b);
    }
    b->nrows = rows;
    return rc;
}

/* The segment's bytes, p[base..end), go into the arena; its fields with
 * doubled quotes are unescaped there, in place (never longer). */
static int csv_seg_close(csv_state *st, csv_ck *ck, size_t end)
{
    weir_batch *out = st->out;
    if (out && ck->seg_rows) {
        size_t len = end - ck->base;
        if (out->cap - ck->abase < len && weir_batch_reserve(out, ck->abase + len - out->len))
            return csv_failf(st, WEIR_ENOMEM, "out of memory");
        memcpy(out->data + ck->abase, ck->p + ck->base, len);
        out->len = ck->abase + len;
        for (size_t k = 0; k < st->nesc; k++) {
            const weir_field *f = &out->fields[st->esc[k].slot];
            unsigned char *s = out->data + f->off;
            size_t w = 0;
            for (size_t r = 0; r < st->esc[k].raw; r++) {
                s[w++] = s[r];
                if (s[r] == st->quote) r++; /* the second of a pair */
            }
        }
    }
    st->nesc = 0;
    ck->seg_rows = 0;
    ck->base = end;
    ck->abase = out ? out->len : 0;
    return 0;
}

static int csv_esc_push(csv_state *st, size_t slot, size_t raw)
{
    if (st->nesc == st->esc_cap) {
        size_t cap = st->esc_cap ? 2 * st->esc_cap : 256;
        csv_esc *ne = realloc(st->esc, cap * sizeof *ne);
        if (!ne) return WEIR_ENOMEM;
        st->esc = ne;
        st->esc_cap = cap;
    }
    st->esc[st->nesc++] = (csv_esc){slot, (uint32_t)raw};
    return 0;
}

/*
 * Parse records from *pi on until the chunk ends, or a record the fast
 * parser does not take whole: *pi is then that record's start, and the
 * rows before it are complete in st->out. The fast parser takes a record
 * when every field is either unquoted (no quote in it) or quoted with its
 * closing quote followed by the delimiter, a line end or the end of the
 * chunk, no field is over max_field, and it has exactly ncols fields —
 * the records libcsv parses the same way without complaint.
 */
static int csv_fast(csv_state *st, csv_ck *ck, size_t *pi)
{
    const unsigned char *p = ck->p;
    const size_t n = ck->n, maxf = st->max_field;
    const unsigned char d = st->delim, q = st->quote;
    const uint32_t ncols = (uint32_t)st->ncols;
    size_t i = *pi;
    weir_batch *out = st->out;
    int rc;
    ck->base = i;
    ck->abase = out ? out->len : 0;
    ck->seg_rows = 0;
    while (i < n) {
        unsigned char c = p[i];
        if (c == '\n' || c == '\r') { /* a blank line */
            i++;
            continue;
        }
        if (out && (out->nrows >= CSV_BATCH_ROWS ||
                    ck->abase + (i - ck->base) >= CSV_BATCH_BYTES)) {
            if ((rc = csv_seg_close(st, ck, i)) || (rc = csv_flush_rows(st))) return rc;
            out = NULL;
        }
        if (!out) {
            if ((rc = weir_stage_batch(st->s, &out))) return csv_failf(st, rc, "out of memory");
            weir_batch_set_schema(out, st->schema);
            st->out = out;
            ck->base = i;
            ck->abase = 0;
        }
        uint32_t row = out->nrows;
        if ((size_t)(row + 1) * ncols > out->fields_cap &&
            csv_fields_room(out, (size_t)(row ? 2 * row : 1) * ncols))
            return csv_failf(st, WEIR_ENOMEM, "out of memory");
        weir_field *f = out->fields + (size_t)row * ncols;
        const size_t r = i, rel = ck->abase - ck->base; /* arena offset = position + rel */
        const size_t nesc0 = st->nesc;
        uint32_t nf = 0;
        for (;;) {
            if (i < n && p[i] == q) {
                size_t s = i + 1, j = s, pairs = 0;
                for (;;) {
                    const unsigned char *z = memchr(p + j, q, n - j);
                    if (!z) goto slow; /* unterminated */
                    j = (size_t)(z - p);
                    if (j + 1 < n && p[j + 1] == q) {
                        pairs++;
                        j += 2;
                        continue;
                    }
                    break;
                }
                size_t flen = j - s - pairs;
                if (nf == ncols || flen > maxf) goto slow;
                if (pairs && csv_esc_push(st, (size_t)row * ncols + nf, j - s))
                    return csv_failf(st, WEIR_ENOMEM, "out of memory");
                f[nf++] = (weir_field){(uint32_t)(s + rel), (uint32_t)flen};
                i = j + 1;
                if (i == n) break;
                c = p[i];
                if (c == d) {
                    i++;
                    continue;
                }
                if (c == '\n') {
                    i++;
                    break;
                }
                if (c == '\r') {
                    i += i + 1 < n && p[i + 1] == '\n' ? 2 : 1;
                    break;
                }
                goto slow; /* something after the closing quote */
            }
            size_t e = csv_cursor_next(&ck->cur, i);
            if (e < n && p[e] == q) goto slow; /* a quote inside an unquoted field */
            if (nf == ncols || e - i > maxf) goto slow;
            f[nf++] = (weir_field){(uint32_t)(i + rel), (uint32_t)(e - i)};
            if (e == n) {
                i = n;
                break;
            }
            c = p[e];
            i = e + 1;
            if (c == d) continue;
            if (c == '\r' && i < n && p[i] == '\n') i++;
            break;
        }
        if (nf != ncols || i + rel > UINT32_MAX) goto slow;
        if (row == 0) {
            out->origin = st->origin;
            out->offset = ck->off + r;
            out->line = csv_line_at(ck, q, r);
        }
        out->nrows = row + 1;
        ck->seg_rows++;
        continue;
    slow:
        st->nesc = nesc0;
        *pi = r;
        return csv_seg_close(st, ck, r);
    }
    *pi = n;
    return csv_seg_close(st, ck, n);
}

/* libcsv on the one record that starts at p[r] (one the fast parser left).
 * at_end: the chunk's end is the input's, where a record may end without
 * a line end (or be left open: an error). *next: where the next starts. */
static int csv_slow_record(csv_state *st, csv_ck *ck, size_t r, bool at_end, size_t *next)
{
    st->pos = ck->off + r;
    st->line = csv_line_at(ck, st->quote, r);
    st->pending_cr = false;
    st->at_row_start = true;
    st->one_record = true;
    st->stop = false;
    int rc = csv_feed(st, ck->p + r, ck->n - r);
    st->one_record = false;
    *next = r + st->used;
    if (rc || st->stop) return rc;
    if (!at_end)
        return csv_data_error(st, st->rec_line, st->rec_off,
                              "internal error: a chunk ends inside this record");
    *next = ck->n;
    return csv_fini_record(st);
}

/* Parse one chunk of whole records into rows (emitted as batches fill,
 * and at the end). truncated: it ends inside a record that must fail. */
static int csv_chunk(csv_state *st, csv_ck *ck, bool truncated)
{
    int rc = 0;
    if (st->libcsv_only) {
        st->pos = ck->off;
        st->line = ck->lc_line;
        st->pending_cr = false;
        st->at_row_start = true;
        st->stop = false;
        rc = csv_feed(st, ck->p, ck->n);
        if (!rc && truncated)
            rc = csv_data_error(st, st->rec_line, st->rec_off,
                                "internal error: a chunk ends inside this record");
        if (!rc) rc = csv_fini_record(st);
        return rc ? rc : csv_flush_rows(st);
    }
    size_t i = 0;
    while (!rc && i < ck->n) {
        rc = csv_fast(st, ck, &i);
        if (rc || i == ck->n) break;
        size_t next;
        rc = csv_slow_record(st, ck, i, !truncated, &next);
        i = next;
    }
    return rc ? rc : csv_flush_rows(st);
}

/* ---- the replicas ------------------------------------------------------------------------ */

static int csv_open(weir_stage *s)
{
    csv_state *st = calloc(1, sizeof *st);
    if (!st) return WEIR_ENOMEM;
    weir_stage_set_state(s, st);
    int rc = csv_args(s, st);
    if (!rc) rc = csv_parser_init(st);
    if (!rc && st->rej_path && weir_batch_create(&st->rej, WEIR_KIND_BYTES, 0))
        rc = weir_stage_errorf(s, WEIR_ENOMEM, "out of memory");
    return rc;
}

static int csv_process(weir_stage *s, weir_batch *in)
{
    csv_state *st = weir_stage_state(s);
    csv_chunk_head h;
    if (in->len < CSV_HEAD || (memcpy(&h, in->data, CSV_HEAD), h.magic != CSV_CHUNK_MAGIC)) {
        weir_batch_release(in);
        return weir_stage_errorf(s, WEIR_EINVAL, "internal error: input did not come "
                                                 "through csv's splitter");
    }
    if (!st->sh) {
        st->sh = h.sh;
        inorder_retain(&st->sh->o);
        inorder_replicas(&st->sh->o, weir_stage_replicas(s));
    }
    if (in->schema != st->schema) {
        weir_schema_release(st->schema);
        st->schema = weir_schema_retain(in->schema);
        st->ncols = weir_schema_ncols(st->schema);
    }
    int rc = 0;
    if (!(h.flags & CSV_CK_SCHEMA)) {
        st->origin = in->origin;
        csv_ck ck = {.p = in->data + CSV_HEAD, .n = in->len - CSV_HEAD, .off = in->offset,
                     .lc_line = in->line};
        csv_cursor_init(&ck.cur, ck.p, ck.n, st->delim, st->quote);
        rc = csv_chunk(st, &ck, h.flags & CSV_CK_TRUNCATED);
        if (!rc && (h.flags & CSV_CK_TRUNCATED))
            rc = csv_failf(st, WEIR_EDATA, "internal error: a cut record parsed cleanly");
    }
    weir_batch_release(in);
    if (rc) return csv_settle(s, st->sh, st, h.index, rc);
    rc = inorder_done_chunk(&st->sh->o, h.index, st->rej ? st->rej->data : NULL,
                            st->rej ? st->rej->len : 0);
    if (st->rej) st->rej->len = 0;
    if (rc == WEIR_EIO) {
        char eb[128];
        return weir_stage_errorf(s, rc, "writing rejects file '%s': %s", st->sh->rej_path,
                                 strerror_r(st->sh->rej_errno, eb, sizeof eb));
    }
    return rc ? weir_stage_errorf(s, rc, "out of memory") : 0;
}

static int csv_finish(weir_stage *s)
{
    csv_state *st = weir_stage_state(s);
    if (!st->schema) return 0;
    /* The columns, for a stream without rows (only a header, or every
     * record rejected): the runtime drops it if rows went before. */
    weir_batch *b;
    int rc = weir_stage_batch(s, &b);
    if (rc == 0) {
        weir_batch_set_schema(b, st->schema);
        rc = weir_stage_emit(s, b);
    }
    return rc;
}

static void csv_close(weir_stage *s)
{
    csv_state *st = weir_stage_state(s);
    if (!st) return;
    csv_state_free(st);
    free(st);
}

/* ---- plan: the header, before running ------------------------------------------------------ */

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
    st.plan = st.first_only = true;
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

/* ---- the splitter ---------------------------------------------------------------------------- */

/* Strict quoting and field sizes, as libcsv sees them, over a chunk that
 * has grown past its target without a line end outside quotes (a huge
 * record, or quoting gone wrong): resumable as the chunk grows. */
typedef struct split_valid {
    size_t pos;
    int state; /* SV_* */
    size_t flen;
} split_valid;

enum { SV_START, SV_UNQUOTED, SV_QUOTED, SV_QUOTE_IN_QUOTED };

/* @return true if p[0..n) holds a byte libcsv rejects (bad quoting) or a
 * field longer than max_field + 1 bytes: parsing up to there fails for
 * sure, whatever came before. */
static bool split_valid_run(split_valid *v, const unsigned char *p, size_t n, unsigned char d,
                            unsigned char q, size_t maxf)
{
    for (size_t i = v->pos; i < n; i++) {
        unsigned char c = p[i];
        bool end = c == d || c == '\n' || c == '\r';
        switch (v->state) {
        case SV_START:
            v->flen = 0;
            if (c == q) v->state = SV_QUOTED;
            else if (!end) v->state = SV_UNQUOTED, v->flen = 1;
            break;
        case SV_UNQUOTED:
            if (c == q) return true;
            if (end) v->state = SV_START;
            else v->flen++;
            break;
        case SV_QUOTED:
            if (c == q) v->state = SV_QUOTE_IN_QUOTED;
            else v->flen++;
            break;
        case SV_QUOTE_IN_QUOTED:
            if (c == q) v->state = SV_QUOTED, v->flen++;
            else if (end) v->state = SV_START;
            else return true;
            break;
        }
        if (v->flen > maxf + 1) return true;
        v->pos = i + 1;
    }
    return false;
}

typedef enum split_phase { SPLIT_BOM, SPLIT_HEAD, SPLIT_DATA } split_phase;

typedef struct split_state {
    weir_stage *s;
    csv_shared *sh;
    csv_state hp; /* libcsv: each input's header; with header=false, the width */
    int ahead;    /* replicas to plan for until they say */
    bool dead;    /* a truncated chunk went out: the run is failing */
    /* the input being cut */
    bool started;
    const char *origin;
    split_phase phase;
    int nbom;      /* BOM bytes matched so far */
    bool shadow;   /* hp reads the first record while it goes into the chunk */
    bool skip_lf;  /* the header ended in CR: an LF right after is its line end */
    uint64_t in_off; /* input offset of the next byte */
    uint64_t line;   /* line of the next chunk's first byte */
    /* the chunk being built */
    weir_batch *ck;
    uint64_t ck_off;
    csv_counts cnt;
    bool parity;   /* from the target size on: inside quotes at the chunk's end */
    bool cr_end;   /* the chunk ends in a CR outside quotes: an LF may follow */
    size_t check_at; /* payload size at which split_valid_run next runs */
    split_valid val;
    uint64_t next_index;
    bool any_data;
} split_state;

static size_t split_len(const split_state *st) { return st->ck ? st->ck->len - CSV_HEAD : 0; }

/* A failure found by the splitter, reported in order like a replica's. */
static int split_fail(split_state *st, int rc)
{
    return csv_settle(st->s, st->sh, &st->hp, st->next_index, rc);
}

static int split_new_chunk(split_state *st)
{
    weir_batch *b;
    int rc = weir_stage_batch(st->s, &b);
    /* Room for the target and a record's end: the pages past what is
     * written are never touched. */
    if (rc == 0 && (rc = weir_batch_reserve(b, CSV_HEAD + st->hp.chunk + 4096)))
        weir_batch_release(b);
    if (rc) return weir_stage_errorf(st->s, rc, "out of memory");
    b->len = CSV_HEAD;
    st->ck = b;
    st->ck_off = st->in_off;
    st->cnt = (csv_counts){0};
    st->parity = st->cr_end = false;
    st->check_at = 2 * st->hp.chunk;
    st->val = (split_valid){0};
    return 0;
}

/* Copy d[0..n) into the chunk, counting quotes and line breaks. */
static int split_append(split_state *st, const unsigned char *d, size_t n)
{
    weir_batch *b = st->ck;
    if (!n) return 0;
    if (b->cap - b->len < n && weir_batch_reserve(b, n))
        return weir_stage_errorf(st->s, WEIR_ENOMEM, "out of memory");
    if (b->len > CSV_HEAD && b->data[b->len - 1] == '\r' && d[0] == '\n') st->cnt.crlf++;
    csv_copy_count(b->data + b->len, d, n, st->hp.quote, &st->cnt);
    b->len += n;
    st->in_off += n;
    if (st->shadow && !st->hp.stop) {
        int rc = csv_feed(&st->hp, d, n);
        if (rc) return split_fail(st, rc);
    }
    return 0;
}

/* Send the chunk being built (flags: CSV_CK_*). */
static int split_emit(split_state *st, uint32_t flags)
{
    weir_batch *b = st->ck;
    const weir_schema *schema = st->hp.schema;
    if (!schema) { /* no record in it: only blank lines */
        if (flags & CSV_CK_TRUNCATED)
            return split_fail(st, csv_failf(&st->hp, WEIR_EDATA, "internal error: a cut "
                                                                 "chunk has no columns"));
        st->line += csv_counts_lines(&st->cnt);
        st->ck = NULL;
        weir_batch_release(b);
        return 0;
    }
    if (st->shadow && !st->hp.stop && !(flags & CSV_CK_TRUNCATED))
        return split_fail(st, csv_failf(&st->hp, WEIR_EDATA, "internal error: the first "
                                                             "record outruns its chunk"));
    int rc = inorder_throttle(&st->sh->o, st->next_index, st->ahead, SPLIT_AHEAD_PER_REPLICA,
                              st->s);
    if (rc) return rc;
    st->ck = NULL;
    csv_chunk_head h = {.magic = CSV_CHUNK_MAGIC, .sh = st->sh, .index = st->next_index++,
                        .flags = flags};
    memcpy(b->data, &h, CSV_HEAD);
    b->origin = st->origin;
    b->offset = st->ck_off;
    b->line = st->line;
    b->schema = weir_schema_retain(schema); /* a bytes batch releases it too */
    st->line += csv_counts_lines(&st->cnt);
    if (!(flags & CSV_CK_SCHEMA)) st->any_data = true;
    return weir_stage_emit(st->s, b);
}

/* Data bytes of the current input (after its BOM and header). */
static int split_data(split_state *st, const unsigned char *d, size_t n)
{
    const unsigned char q = st->hp.quote;
    const size_t target = st->hp.chunk;
    int rc = 0;
    if (st->skip_lf && n) {
        st->skip_lf = false;
        if (d[0] == '\n') {
            d++;
            n--;
            st->in_off++;
        }
    }
    while (n && !rc) {
        if (!st->ck && (rc = split_new_chunk(st))) break;
        size_t have = split_len(st);
        if (have < target) {
            size_t take = n < target - have ? n : target - have;
            if ((rc = split_append(st, d, take))) break;
            d += take;
            n -= take;
            if (have + take == target) st->parity = st->cnt.quotes & 1;
            continue;
        }
        /* Past the target: the chunk ends at the next line end outside quotes. */
        size_t k = 0, cut = 0;
        bool found = false, par = st->parity;
        if (st->cr_end) {
            st->cr_end = false;
            found = true;
            cut = d[0] == '\n';
        }
        csv_cursor cur; /* finds quotes, CR and LF (the delimiter does not matter here) */
        csv_cursor_init(&cur, d, n, q, q);
        while (!found && k < n) {
            if (par) {
                const unsigned char *z = memchr(d + k, q, n - k);
                if (!z) {
                    k = n;
                    break;
                }
                k = (size_t)(z - d) + 1;
                par = false;
                continue;
            }
            if ((k = csv_cursor_next(&cur, k)) == n) break;
            unsigned char b = d[k++];
            if (b == q) {
                par = true;
            } else if (b == '\n') {
                found = true;
                cut = k;
            } else if (b == '\r') {
                if (k < n) {
                    found = true;
                    cut = k + (d[k] == '\n');
                } else {
                    st->cr_end = true;
                }
            }
        }
        st->parity = par;
        size_t take = found ? cut : n;
        if ((rc = split_append(st, d, take))) break;
        d += take;
        n -= take;
        if (found) {
            rc = split_emit(st, 0);
        } else if (split_len(st) >= st->check_at) {
            /* A record this big is either real (kept whole, as libcsv
             * would) or the quoting went wrong: then parsing it fails, and
             * the chunk goes out as it is for a replica to say where. */
            st->check_at += target;
            if (split_valid_run(&st->val, st->ck->data + CSV_HEAD, split_len(st),
                                st->hp.delim, q, st->hp.max_field)) {
                rc = split_emit(st, CSV_CK_TRUNCATED);
                st->dead = true;
                return rc ? rc : WEIR_DONE;
            }
        }
    }
    return rc;
}

/* The BOM is settled: on to the header, or straight to the data. */
static void split_after_bom(split_state *st)
{
    csv_state *hp = &st->hp;
    bool need = hp->header || !hp->schema;
    st->phase = hp->header ? SPLIT_HEAD : SPLIT_DATA;
    st->shadow = !hp->header && !hp->schema;
    if (!need) return;
    csv_begin_input(hp, st->origin);
    hp->bom = -1;
    hp->pos = st->in_off;
}

/* Header bytes: libcsv reads them until the header record has ended. */
static int split_head(split_state *st, const unsigned char *d, size_t n, size_t *used)
{
    csv_state *hp = &st->hp;
    int rc = csv_feed(hp, d, n);
    *used = hp->used;
    st->in_off += hp->used;
    if (rc) return split_fail(st, rc);
    if (hp->stop) {
        /* The header's line end is counted; a CR's LF may still come. */
        st->line = hp->line + (hp->pending_cr ? 1 : 0);
        st->skip_lf = hp->pending_cr;
        st->phase = SPLIT_DATA;
    }
    return 0;
}

static int split_feed(split_state *st, const unsigned char *d, size_t n)
{
    static const unsigned char bom[3] = {0xEF, 0xBB, 0xBF};
    int rc = 0;
    while (n && !rc) {
        if (st->phase == SPLIT_BOM) {
            if (d[0] == bom[st->nbom]) {
                d++;
                n--;
                if (++st->nbom == 3) {
                    st->nbom = 0;
                    st->in_off = 3;
                    split_after_bom(st);
                }
                continue;
            }
            int held = st->nbom; /* the start of a BOM, then something else: data */
            st->nbom = 0;
            split_after_bom(st);
            if (held) rc = split_feed(st, bom, (size_t)held);
            continue;
        }
        if (st->phase == SPLIT_HEAD) {
            size_t used;
            rc = split_head(st, d, n, &used);
            d += used;
            n -= used;
            continue;
        }
        rc = split_data(st, d, n);
        break;
    }
    return rc;
}

static void split_begin_input(split_state *st, const char *origin)
{
    st->started = true;
    st->origin = origin;
    st->phase = SPLIT_BOM;
    st->nbom = 0;
    st->shadow = st->skip_lf = false;
    st->in_off = 0;
    st->line = 1;
}

/* The input has ended: settle its BOM and header, send its last chunk. */
static int split_end_input(split_state *st)
{
    static const unsigned char bom[3] = {0xEF, 0xBB, 0xBF};
    int rc = 0;
    if (st->phase == SPLIT_BOM) { /* a BOM's first bytes, or nothing */
        int held = st->nbom;
        st->nbom = 0;
        split_after_bom(st);
        if (held) rc = split_feed(st, bom, (size_t)held);
    }
    if (!rc && (st->phase == SPLIT_HEAD || st->shadow) && !st->hp.stop) {
        rc = csv_fini_record(&st->hp);
        if (rc) rc = split_fail(st, rc);
    }
    if (!rc && st->ck) {
        if (split_len(st)) {
            rc = split_emit(st, 0);
        } else {
            weir_batch_release(st->ck);
            st->ck = NULL;
        }
    }
    st->started = false;
    return rc;
}

static int split_open(weir_stage *s)
{
    split_state *st = calloc(1, sizeof *st);
    if (!st) return weir_stage_errorf(s, WEIR_ENOMEM, "out of memory");
    weir_stage_set_state(s, st);
    st->s = s;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    st->ahead = cpus > 0 ? (int)cpus : 1;
    csv_state *hp = &st->hp;
    int rc = csv_args(s, hp);
    if (rc) return rc;
    hp->first_only = true;
    if ((rc = csv_parser_init(hp)) || (rc = csv_shared_create(&st->sh)))
        return weir_stage_errorf(s, WEIR_ENOMEM, "out of memory");
    if (!hp->rej_path) return 0;
    /* The rejects file's temporary, created now so that an unwritable
     * place fails the run before any data flows. */
    csv_shared *sh = st->sh;
    size_t len = strlen(hp->rej_path) + 64;
    sh->rej_path = hp->rej_path;
    if (!(sh->rej_tmp = malloc(len))) return weir_stage_errorf(s, WEIR_ENOMEM, "out of memory");
    for (unsigned k = 0; k < 1000; k++) {
        snprintf(sh->rej_tmp, len, "%s.weir-tmp-%ld-%u", hp->rej_path, (long)getpid(), k);
        sh->rej_fd = open(sh->rej_tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (sh->rej_fd >= 0) return 0;
        if (errno != EEXIST) break;
    }
    char eb[128];
    rc = weir_stage_errorf(s, WEIR_EIO, "cannot create rejects file '%s': %s", hp->rej_path,
                           strerror_r(errno, eb, sizeof eb));
    free(sh->rej_tmp);
    sh->rej_tmp = NULL;
    return rc;
}

static int split_process(weir_stage *s, weir_batch *in)
{
    split_state *st = weir_stage_state(s);
    int rc = 0;
    if (st->dead) {
        weir_batch_release(in);
        return WEIR_DONE;
    }
    if (!st->started || in->origin != st->origin) {
        if (st->started) rc = split_end_input(st);
        split_begin_input(st, in->origin);
    }
    if (!rc) rc = split_feed(st, in->data, in->len);
    weir_batch_release(in);
    return rc;
}

static int split_finish(weir_stage *s)
{
    split_state *st = weir_stage_state(s);
    if (st->dead) return 0;
    int rc = st->started ? split_end_input(st) : 0;
    /* Only headers: one chunk without bytes tells a replica the columns. */
    if (!rc && !st->any_data && st->hp.schema) {
        if ((rc = split_new_chunk(st))) return rc;
        rc = split_emit(st, CSV_CK_SCHEMA);
    }
    return rc;
}

/* The run succeeded: the rejects file takes its name. */
static int split_commit(weir_stage *s)
{
    split_state *st = weir_stage_state(s);
    csv_shared *sh = st->sh;
    if (!sh || !sh->rej_tmp) return 0;
    char eb[128];
    int fd = sh->rej_fd;
    sh->rej_fd = -1;
    if (sh->rej_errno || sh->o.nahead || close(fd) != 0 ||
        rename(sh->rej_tmp, sh->rej_path) != 0)
        return weir_stage_errorf(s, WEIR_EIO, "writing rejects file '%s': %s", sh->rej_path,
                                 sh->o.nahead ? "internal error: rejects left unwritten"
                                 : strerror_r(sh->rej_errno ? sh->rej_errno : errno, eb,
                                              sizeof eb));
    free(sh->rej_tmp);
    sh->rej_tmp = NULL;
    return 0;
}

static void split_close(weir_stage *s)
{
    split_state *st = weir_stage_state(s);
    if (!st) return;
    weir_batch_release(st->ck);
    csv_state_free(&st->hp);
    csv_shared_release(st->sh);
    free(st);
}

static const weir_stage_def csv_split_def = {
    .abi = WEIR_ABI_VERSION,
    .name = "csv_split",
    .summary = "cut CSV into chunks of whole records, for csv's replicas",
    .in_kind = WEIR_KIND_BYTES,
    .out_kind = WEIR_KIND_BYTES,
    .open = split_open,
    .process = split_process,
    .finish = split_finish,
    .close = split_close,
    .commit = split_commit,
};

const weir_stage_def weir__stage_csv = {
    .abi = WEIR_ABI_VERSION,
    .name = "csv",
    .summary = "parse CSV (RFC 4180) into rows, in parallel; the header names the columns",
    .args = (const weir_arg_def[]){
        {"header", WEIR_ARG_BOOL, "true",
         "the first record of each input names the columns (every input's must "
         "match the first's); false: columns are c1..cN and every record is data"},
        {"delim", WEIR_ARG_STRING, ",", "field delimiter, one byte (\"\\t\" for TSV)"},
        {"quote", WEIR_ARG_STRING, "\"",
         "quote character, one byte; doubled inside a quoted field"},
        {"rejects", WEIR_ARG_STRING, "",
         "file for records with the wrong field count, one JSON object per line "
         "(file, line, offset, fields, error), in input order whatever the workers, "
         "and the run goes on without them; the file appears when the run succeeds "
         "(empty if there were none). Unset: such a record is an error. Bad quoting "
         "is always an error"},
        {"max_field", WEIR_ARG_INT, "67108864",
         "largest field in bytes; a bigger one is an error (bounds memory on bad "
         "quoting)"},
        {"chunk", WEIR_ARG_INT, "1048576",
         "bytes of input per piece of parallel work: a chunk ends at the first record "
         "end at or past this size (the cuts depend on the bytes alone, so output is "
         "the same for any workers=); smaller holds less memory, larger costs less "
         "per byte"},
        {"engine", WEIR_ARG_STRING, "auto",
         "\"auto\": a fast parser, with libcsv for any record it does not take whole "
         "(same rows, rejects and messages); \"libcsv\": every record through libcsv "
         "(slower; the reference, for cross-checking)"},
        {NULL}},
    .in_kind = WEIR_KIND_BYTES,
    .out_kind = WEIR_KIND_ROWS,
    .flags = WEIR_STAGE_PARALLEL | WEIR_STAGE_KEEP_ORDER,
    .open = csv_open,
    .process = csv_process,
    .finish = csv_finish,
    .close = csv_close,
    .plan = csv_plan,
    .splitter = &csv_split_def,
};

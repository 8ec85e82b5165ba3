/*
 * fuzz_expr.c — the expression parser, compiler and evaluator.
 *
 * The input (up to its first NUL) is parsed with weir_expr_parse(). On
 * success:
 *   - weir_expr_format() writes it back, and that text parses again and
 *     formats to the same text (explain shows expressions this way) —
 *     unless the parentheses the formatter adds pass the parser's nesting
 *     limit, which is then the error, or the tree is deeper than format
 *     writes out ("…");
 *   - weir_eval_create() compiles it against a fixed schema; on success
 *     weir_eval_batch() evaluates it over a batch of awkward fields
 *     (integers at the int64 limits, floats, huge exponents, empty text,
 *     spaces, invalid UTF-8, NUL bytes), twice (the scratch space is
 *     rewound between calls), and a constant expression also through
 *     weir_eval_const(). Every value must be well formed: a number is
 *     finite, an integer's num equals its i, a bool is 0 or 1, text has
 *     its bytes; and its written form (weir_value_format) reads back, for
 *     a number, as the same number.
 */
#include "fuzz_common.h"

#include <math.h>

static const char *const cols[] = {"a", "b", "c", "s", "t", "x y"};
#define NCOLS (sizeof cols / sizeof *cols)

/* Rows of fields, one column each; each row's fields are spread so that
 * every column sees every kind of value somewhere. */
static const char *const vals[] = {
    "1",   "-2",  "3.5",  "",    "abc",  "9223372036854775807", "-9223372036854775808",
    "1e308", "0", "007",  "-0",  " 1",   "\xff\xfe", "9223372036854775808", "1e-320",
    "true", "NaN", "inf", "2.5e-07", "0.1", "x\0y", "-1e308", "12345678901234567890.5",
};
#define NVALS (sizeof vals / sizeof *vals)
/* "x\0y" holds a NUL: its length is not strlen's. */
static size_t val_len(size_t i) { return strcmp(vals[i], "x") == 0 ? 3 : strlen(vals[i]); }

static weir_schema *schema;
static weir_batch *batch;
static weir_value *out;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (weir_schema_create(&schema, cols, NCOLS) ||
        weir_batch_create(&batch, WEIR_KIND_ROWS, 4096) ||
        weir_batch_set_schema(batch, schema))
        abort();
    for (size_t r = 0; r < NVALS; r++) {
        for (size_t c = 0; c < NCOLS; c++) {
            size_t v = (r + c * 5) % NVALS;
            if (weir_batch_add_field(batch, vals[v], val_len(v))) abort();
        }
        if (weir_batch_end_row(batch)) abort();
    }
    out = calloc(NVALS, sizeof *out);
    if (!out) abort();
    return 0;
}

static void check_value(const weir_value *v)
{
    char buf[512];
    switch (v->type) {
    case WEIR_VAL_NULL: break;
    case WEIR_VAL_BOOL: FZ_CHECK(v->i == 0 || v->i == 1, "bool %lld", (long long)v->i); break;
    case WEIR_VAL_STR:
        FZ_CHECK(v->str || v->len == 0, "text of %zu bytes without bytes", v->len);
        if (v->len) {
            /* Touch every byte: the sanitizer sees a bad pointer here. */
            volatile unsigned char sum = 0;
            for (size_t i = 0; i < v->len; i++) sum ^= v->str[i];
            (void)sum;
        }
        break;
    case WEIR_VAL_NUM: {
        FZ_CHECK(isfinite(v->num), "a number that is not finite: %g", v->num);
        if (v->is_int)
            FZ_CHECK((double)v->i == v->num, "integer %lld with num %.17g", (long long)v->i,
                     v->num);
        size_t n = weir_value_format(v, buf, sizeof buf);
        FZ_CHECK(n < sizeof buf, "a number written in %zu bytes", n);
        weir_value back;
        FZ_CHECK(weir_value_parse(buf, n, &back), "'%s' does not read back as a number",
                 buf);
        FZ_CHECK(back.num == v->num || (v->is_int && back.is_int && back.i == v->i),
                 "'%s' reads back as %.17g, not %.17g", buf, back.num, v->num);
        break;
    }
    default: FZ_CHECK(0, "value type %d", (int)v->type);
    }
    size_t n = weir_value_format(v, NULL, 0);
    char *all = malloc(n + 1);
    if (!all) abort();
    FZ_CHECK(weir_value_format(v, all, n + 1) == n, "format's length changed");
    free(all);
}

/* format → parse → format is a fixed point. */
static void check_format(const weir_expr *e)
{
    size_t n = weir_expr_format(e, NULL, 0);
    char *t1 = malloc(n + 1);
    if (!t1) abort();
    FZ_CHECK(weir_expr_format(e, t1, n + 1) == n, "format's length changed");
    FZ_CHECK(strlen(t1) == n, "formatted text holds a NUL");
    if (strstr(t1, "\xE2\x80\xA6")) { /* "…": deeper than format writes out */
        free(t1);
        return;
    }
    weir_expr *e2;
    char err[1024];
    int rc = weir_expr_parse(&e2, t1, NULL, err, sizeof err);
    if (rc) {
        FZ_CHECK(strstr(err, "nested too deeply") != NULL,
                 "formatted text '%s' does not parse: %s", t1, err);
        free(t1);
        return;
    }
    size_t n2 = weir_expr_format(e2, NULL, 0);
    char *t2 = malloc(n2 + 1);
    if (!t2) abort();
    weir_expr_format(e2, t2, n2 + 1);
    FZ_CHECK(n == n2 && strcmp(t1, t2) == 0, "format is not stable: '%s' then '%s'", t1, t2);
    free(t2);
    weir_expr_destroy(e2);
    free(t1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text) abort();
    memcpy(text, data, size);
    text[size] = '\0';
    weir_expr *e;
    char err[1024];
    int rc = weir_expr_parse(&e, text, NULL, err, sizeof err);
    free(text);
    if (rc) {
        FZ_CHECK(rc == WEIR_ESPEC || rc == WEIR_ENOMEM, "parse returned %d", rc);
        FZ_CHECK(rc != WEIR_ESPEC || strncmp(err, "<expr>:", 7) == 0,
                 "message without a position: '%s'", err);
        return 0;
    }
    check_format(e);
    weir_expr *copy = weir_expr_clone(e);
    FZ_CHECK(copy != NULL, "clone failed");

    weir_eval *ev;
    rc = weir_eval_create(&ev, copy, schema, err, sizeof err);
    if (rc == 0) {
        for (int pass = 0; pass < 2; pass++) {
            rc = weir_eval_batch(ev, batch, out);
            FZ_CHECK(rc == 0, "eval_batch returned %d", rc);
            for (size_t r = 0; r < batch->nrows; r++) check_value(&out[r]);
        }
        weir_eval_destroy(ev);
    } else {
        FZ_CHECK(rc == WEIR_ESPEC || rc == WEIR_ENOMEM, "eval_create returned %d", rc);
    }
    /* Without a schema: a constant evaluates alone. */
    if (weir_eval_create(&ev, e, NULL, err, sizeof err) == 0) {
        weir_value v;
        rc = weir_eval_const(ev, &v);
        FZ_CHECK(rc == 0, "eval_const returned %d", rc);
        check_value(&v);
        weir_eval_destroy(ev);
    }
    weir_expr_destroy(copy);
    weir_expr_destroy(e);
    return 0;
}

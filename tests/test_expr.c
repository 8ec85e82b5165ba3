/*
 * test_expr.c — the expression engine: parse, compile against a schema,
 * evaluate over hand-built batches; every operator, function and null rule
 * of weir.h section 6, the compile errors, and weir_value_format.
 */
#include <criterion/criterion.h>
#include <weir.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A batch from a '|'-separated header and '\n'-separated rows. */
static weir_batch *mk(const char *header, const char *rows)
{
    char *h = strdup(header);
    const char *names[64];
    size_t n = 0;
    for (char *p = h, *f; (f = strsep(&p, "|"));) names[n++] = f;
    weir_schema *s;
    cr_assert_eq(weir_schema_create(&s, names, n), 0);
    free(h);
    weir_batch *b;
    cr_assert_eq(weir_batch_create(&b, WEIR_KIND_ROWS, 0), 0);
    cr_assert_eq(weir_batch_set_schema(b, s), 0);
    weir_schema_release(s);
    if (!*rows) return b; /* no rows */
    char *text = strdup(rows);
    for (char *p = text, *line; (line = strsep(&p, "\n"));) {
        for (char *q = line, *f; (f = strsep(&q, "|"));)
            cr_assert_eq(weir_batch_add_field(b, f, strlen(f)), 0);
        cr_assert_eq(weir_batch_end_row(b), 0, "row '%s' has the wrong field count", line);
    }
    free(text);
    return b;
}

/* One value, tagged with its type: null, i:…, f:…, s:…, b:… */
static void tag(const weir_value *v, char *buf, size_t size)
{
    char text[256];
    weir_value_format(v, text, sizeof text);
    switch (v->type) {
    case WEIR_VAL_NULL: snprintf(buf, size, "null"); break;
    case WEIR_VAL_NUM: snprintf(buf, size, "%c:%s", v->is_int ? 'i' : 'f', text); break;
    case WEIR_VAL_STR: snprintf(buf, size, "s:%s", text); break;
    case WEIR_VAL_BOOL: snprintf(buf, size, "b:%s", text); break;
    }
}

static char result[8192];

/* Evaluate e over b: the tagged values, comma-separated. */
static const char *ev(const char *e, const weir_batch *b)
{
    weir_expr *x;
    char err[256];
    cr_assert_eq(weir_expr_parse(&x, e, "<t>", err, sizeof err), 0, "parse %s: %s", e, err);
    weir_eval *v;
    cr_assert_eq(weir_eval_create(&v, x, b->schema, err, sizeof err), 0, "compile %s: %s", e,
                 err);
    weir_value *out = calloc(b->nrows + 1, sizeof *out);
    cr_assert_eq(weir_eval_batch(v, b, out), 0);
    size_t n = 0;
    result[0] = '\0';
    for (uint32_t r = 0; r < b->nrows; r++) {
        char t[512];
        tag(&out[r], t, sizeof t);
        n += (size_t)snprintf(result + n, sizeof result - n, "%s%s", r ? "," : "", t);
    }
    free(out);
    weir_eval_destroy(v);
    weir_expr_destroy(x);
    return result;
}

/* A constant expression, tagged. */
static const char *cv(const char *e)
{
    weir_expr *x;
    char err[256];
    cr_assert_eq(weir_expr_parse(&x, e, "<t>", err, sizeof err), 0, "parse %s: %s", e, err);
    weir_eval *v;
    cr_assert_eq(weir_eval_create(&v, x, NULL, err, sizeof err), 0, "compile %s: %s", e, err);
    weir_value out;
    cr_assert_eq(weir_eval_const(v, &out), 0);
    tag(&out, result, sizeof result);
    weir_eval_destroy(v);
    weir_expr_destroy(x);
    return result;
}

/* Compile e against the columns in header; @return the error text ("" if none). */
static const char *cerr(const char *e, const char *header)
{
    weir_batch *b = mk(header, "");
    weir_expr *x;
    static char err[512];
    int rc = weir_expr_parse(&x, e, "f.weir", err, sizeof err);
    cr_assert_eq(rc, 0, "parse %s: %s", e, err);
    weir_eval *v = NULL;
    rc = weir_eval_create(&v, x, b->schema, err, sizeof err);
    if (rc == 0) {
        err[0] = '\0';
        cr_assert_not_null(v);
    } else {
        cr_assert_eq(rc, WEIR_ESPEC);
        cr_assert_null(v);
    }
    weir_eval_destroy(v);
    weir_expr_destroy(x);
    weir_batch_release(b);
    return err;
}

#define EXPECT(got, want) cr_assert_str_eq((got), (want))

Test(expr, numbers_in_fields, .timeout = 30)
{
    weir_batch *b = mk("x", "5\n-5\n+5\n007\n-0\n1.5\n.5\n5.\n-2.50\n1e3\n2E-2\n1.5e+1");
    EXPECT(ev("x + 0", b), "i:5,i:-5,i:5,i:7,i:0,f:1.5,f:0.5,f:5,f:-2.5,f:1000,f:0.02,f:15");
    weir_batch_release(b);
    /* Not numbers: null in arithmetic. */
    b = mk("x", "\nabc\n 5\n5 \n0x10\ninf\nnan\nInfinity\n1e\n-\n+\n.\n1.2.3\n1,000\ne5\n5e+\n1e999\n--1");
    const char *want = "null";
    char all[512] = "";
    for (int i = 0; i < 18; i++) strcat(strcat(all, i ? "," : ""), want);
    EXPECT(ev("x + 0", b), all);
    weir_batch_release(b);
    /* int64 limits: beyond them an integer reads as a float. */
    b = mk("x", "9223372036854775807\n-9223372036854775808\n9223372036854775808\n"
                "99999999999999999999\n0.1\n123456789012345678901234567890.5");
    EXPECT(ev("x + 0", b), "i:9223372036854775807,i:-9223372036854775808,"
                           "f:9.223372036854776e+18,f:1e+20,f:0.1,f:1.2345678901234568e+29");
    weir_batch_release(b);
    /* Long float text takes the slow path and still parses. */
    char tiny[200] = "0.";
    for (int i = 0; i < 71; i++) strcat(tiny, "0");
    strcat(tiny, "1\n3.14159265358979323846264338327950288419716939937510");
    b = mk("x", tiny);
    EXPECT(ev("x * 1", b), "f:1e-72,f:3.141592653589793");
    weir_batch_release(b);
}

Test(expr, integers_stay_exact, .timeout = 30)
{
    weir_batch *b = mk("a|b", "9007199254740993|0\n9007199254740993|1");
    EXPECT(ev("a + b", b), "i:9007199254740993,i:9007199254740994");
    EXPECT(ev("a - 1", b), "i:9007199254740992,i:9007199254740992");
    EXPECT(ev("a * 1", b), "i:9007199254740993,i:9007199254740993");
    /* An integer and a float compare exactly, not through a rounded double. */
    EXPECT(ev("a > 9007199254740992.0", b), "b:true,b:true");
    EXPECT(ev("a == 9007199254740992.0", b), "b:false,b:false");
    EXPECT(ev("9007199254740992.0 < a", b), "b:true,b:true");
    EXPECT(ev("a + 0.0", b), "f:9007199254740992,f:9007199254740992");
    weir_batch_release(b);
    EXPECT(cv("2.5 > 2"), "b:true");
    EXPECT(cv("2 < 2.5"), "b:true");
    EXPECT(cv("-2.5 < -2"), "b:true");
    EXPECT(cv("3 == 3.0"), "b:true");
    EXPECT(cv("9223372036854775807 < 1e19"), "b:true");
    EXPECT(cv("-9223372036854775807 - 1 > -1e19"), "b:true");
}

Test(expr, overflow_continues_in_float, .timeout = 30)
{
    EXPECT(cv("9223372036854775807 + 1"), "f:9.223372036854776e+18");
    EXPECT(cv("-9223372036854775807 - 2"), "f:-9.223372036854776e+18");
    EXPECT(cv("4611686018427387904 * 4"), "f:1.8446744073709552e+19");
    EXPECT(cv("-(-9223372036854775807 - 1)"), "f:9.223372036854776e+18");
    EXPECT(cv("9223372036854775807 + 0"), "i:9223372036854775807");
    /* A float result that is not finite is null. */
    EXPECT(cv("1e308 * 10"), "null");
    EXPECT(cv("-1e308 * 10"), "null");
}

Test(expr, arithmetic, .timeout = 30)
{
    EXPECT(cv("1 + 2 * 3"), "i:7");
    EXPECT(cv("(1 + 2) * 3"), "i:9");
    EXPECT(cv("10 - 4 - 3"), "i:3");
    EXPECT(cv("7 / 2"), "f:3.5");
    EXPECT(cv("6 / 3"), "f:2"); /* `/` is always floating point */
    EXPECT(cv("0.1 + 0.2"), "f:0.30000000000000004");
    EXPECT(cv("1.5 * 2"), "f:3");
    EXPECT(cv("-(2)"), "i:-2");
    EXPECT(cv("-(2.5)"), "f:-2.5");
    EXPECT(cv("- -3"), "i:3");
    /* Division and remainder by zero are null. */
    EXPECT(cv("1 / 0"), "null");
    EXPECT(cv("1 / 0.0"), "null");
    EXPECT(cv("0 / 0"), "null");
    EXPECT(cv("1 % 0"), "null");
    EXPECT(cv("5.5 % 0"), "null");
    /* % on integers is C's remainder: the sign of the dividend. */
    EXPECT(cv("7 % 3"), "i:1");
    EXPECT(cv("-7 % 3"), "i:-1");
    EXPECT(cv("7 % -3"), "i:1");
    EXPECT(cv("-7 % -3"), "i:-1");
    EXPECT(cv("(-9223372036854775807 - 1) % -1"), "i:0");
    EXPECT(cv("7.5 % 2"), "f:1.5");
    EXPECT(cv("-7.5 % 2"), "f:-1.5");
    EXPECT(cv("7 % 2.5"), "f:2");
    /* Exact, like C's fmod (the expected values are libm's). */
    EXPECT(cv("1e300 % 7"), "f:1");
    EXPECT(cv("123456.789 % 0.001"), "f:1.7374062258324052e-12");
    EXPECT(cv("-1e17 % 3"), "f:-1");
    EXPECT(cv("1.5e308 % 1e-300"), "f:4.529250145544077e-301");
    EXPECT(cv("3.5e-323 % 1e-323"), "f:5e-324");
    EXPECT(cv("0.3 % 0.1"), "f:0.09999999999999998");
    /* Bools are 1 and 0 in arithmetic. */
    EXPECT(cv("true + true"), "i:2");
    EXPECT(cv("false * 5"), "i:0");
    /* Text that is a number is a number; other text is null. */
    EXPECT(cv("\"2\" * \"3\""), "i:6");
    EXPECT(cv("\"2\" + \"x\""), "null");
    EXPECT(cv("-\"x\""), "null");
}

Test(expr, null_in_arithmetic, .timeout = 30)
{
    weir_batch *b = mk("fare|tip", "10|\n|2\nabc|1\n 3|1\n4|1");
    EXPECT(ev("fare + tip", b), "null,null,null,null,i:5");
    EXPECT(ev("fare * 2", b), "i:20,null,null,null,i:8");
    EXPECT(ev("-fare", b), "i:-10,null,null,null,i:-4");
    EXPECT(ev("(fare + tip) / 2", b), "null,null,null,null,f:2.5");
    weir_batch_release(b);
}

Test(expr, comparisons, .timeout = 30)
{
    weir_batch *b = mk("a|b", "10|9\nb|a\n10|10.0\n007|7\nabc|abd\nab|abc\n|\nabc|5\nx|x");
    EXPECT(ev("a > b", b), "b:true,b:true,b:false,b:false,b:false,b:false,b:false,b:true,b:false");
    EXPECT(ev("a < b", b), "b:false,b:false,b:false,b:false,b:true,b:true,b:false,b:false,b:false");
    EXPECT(ev("a == b", b), "b:false,b:false,b:true,b:true,b:false,b:false,b:true,b:false,b:true");
    EXPECT(ev("a != b", b), "b:true,b:true,b:false,b:false,b:true,b:true,b:false,b:true,b:false");
    EXPECT(ev("a >= b", b), "b:true,b:true,b:true,b:true,b:false,b:false,b:true,b:true,b:true");
    EXPECT(ev("a <= b", b), "b:false,b:false,b:true,b:true,b:true,b:true,b:true,b:false,b:true");
    weir_batch_release(b);

    /* "10" > "9" is numeric; "b" > "a" is text. */
    EXPECT(cv("\"10\" > \"9\""), "b:true");
    EXPECT(cv("\"b\" > \"a\""), "b:true");
    EXPECT(cv("\"B\" < \"a\""), "b:true"); /* bytes: uppercase first */
    /* A number value against text that is not a number: null, so false. */
    for (int i = 0; i < 6; i++) {
        static const char *const ops[] = {"==", "!=", "<", "<=", ">", ">="};
        char e[64];
        snprintf(e, sizeof e, "\"abc\" %s 5", ops[i]);
        EXPECT(cv(e), "b:false");
        snprintf(e, sizeof e, "5 %s \"abc\"", ops[i]);
        EXPECT(cv(e), "b:false");
        snprintf(e, sizeof e, "\"\" %s 0", ops[i]);
        EXPECT(cv(e), "b:false");
    }
    EXPECT(cv("\"5\" == 5"), "b:true");
    EXPECT(cv("5 == \"5.00\""), "b:true");
    EXPECT(cv("\"1e1\" == 10"), "b:true");
    /* Bools: numeric against numbers, as "true"/"false" against text. */
    EXPECT(cv("true == 1"), "b:true");
    EXPECT(cv("false < true"), "b:true");
    EXPECT(cv("true == \"true\""), "b:true");
    EXPECT(cv("\"false\" == false"), "b:true");
    EXPECT(cv("true == \"1\""), "b:false");
}

Test(expr, null_compares_false, .timeout = 30)
{
    /* x + 0 is null for an empty or non-numeric field. */
    weir_batch *b = mk("x", "\nabc");
    static const char *const ops[] = {"==", "!=", "<", "<=", ">", ">="};
    for (int i = 0; i < 6; i++) {
        char e[64];
        snprintf(e, sizeof e, "x + 0 %s 1", ops[i]);
        EXPECT(ev(e, b), "b:false,b:false");
        snprintf(e, sizeof e, "1 %s x * 1", ops[i]);
        EXPECT(ev(e, b), "b:false,b:false");
        snprintf(e, sizeof e, "x + 0 %s x + 0", ops[i]); /* null == null too */
        EXPECT(ev(e, b), "b:false,b:false");
        snprintf(e, sizeof e, "x + 0 %s \"\"", ops[i]);
        EXPECT(ev(e, b), "b:false,b:false");
    }
    /* The field itself is text, not null: "" == "" holds. */
    EXPECT(ev("x == \"\"", b), "b:true,b:false");
    EXPECT(ev("x != \"\"", b), "b:false,b:true");
    weir_batch_release(b);
}

Test(expr, logic_and_truth, .timeout = 30)
{
    EXPECT(cv("true && false"), "b:false");
    EXPECT(cv("true && true"), "b:true");
    EXPECT(cv("false || true"), "b:true");
    EXPECT(cv("false || false"), "b:false");
    EXPECT(cv("1 && \"x\""), "b:true");    /* result is always a bool */
    EXPECT(cv("0 || 2.5"), "b:true");
    EXPECT(cv("\"\" || 0"), "b:false");
    EXPECT(cv("\"0\" && true"), "b:true"); /* non-empty text is true */
    EXPECT(cv("1 / 0 && true"), "b:false");  /* null is false */
    EXPECT(cv("1 / 0 || 1"), "b:true");
    EXPECT(cv("!true"), "b:false");
    EXPECT(cv("!0"), "b:true");
    EXPECT(cv("!0.5"), "b:false");
    EXPECT(cv("!\"\""), "b:true");
    EXPECT(cv("!\"a\""), "b:false");
    EXPECT(cv("!(1 / 0)"), "b:true");
    EXPECT(cv("!!7"), "b:true");
    /* Precedence: && binds tighter than ||. */
    EXPECT(cv("true || false && false"), "b:true");
    EXPECT(cv("(true || false) && false"), "b:false");
    /* Nested short circuits keep the stack straight. */
    EXPECT(cv("(false && (1 || 2)) || (true && (0 || \"y\"))"), "b:true");
    EXPECT(cv("1 + (false || 3 > 2)"), "i:2");

    weir_value v = {.type = WEIR_VAL_NULL};
    cr_assert(!weir_value_truth(&v));
    v = (weir_value){.type = WEIR_VAL_BOOL, .i = 1};
    cr_assert(weir_value_truth(&v));
    v = (weir_value){.type = WEIR_VAL_BOOL, .i = 0};
    cr_assert(!weir_value_truth(&v));
    v = (weir_value){.type = WEIR_VAL_NUM, .is_int = true, .i = -3, .num = -3};
    cr_assert(weir_value_truth(&v));
    v = (weir_value){.type = WEIR_VAL_NUM, .is_int = true, .i = 0};
    cr_assert(!weir_value_truth(&v));
    v = (weir_value){.type = WEIR_VAL_NUM, .num = 0.0};
    cr_assert(!weir_value_truth(&v));
    v = (weir_value){.type = WEIR_VAL_NUM, .num = 1e-300};
    cr_assert(weir_value_truth(&v));
    v = (weir_value){.type = WEIR_VAL_STR, .str = (const unsigned char *)"0", .len = 1};
    cr_assert(weir_value_truth(&v));
    v = (weir_value){.type = WEIR_VAL_STR, .str = (const unsigned char *)"", .len = 0};
    cr_assert(!weir_value_truth(&v));
}

Test(expr, short_circuit_per_row, .timeout = 30)
{
    /* The right side runs only for the rows that need it; either way the
     * per-row results are independent. */
    weir_batch *b = mk("d|n", "0|5\n2|5\n|5\nx|5");
    EXPECT(ev("d != 0 && n / d > 1", b), "b:false,b:true,b:false,b:false");
    EXPECT(ev("d == 0 || n / d > 1", b), "b:true,b:true,b:false,b:false");
    EXPECT(ev("if(d != 0, n / d, -1)", b), "i:-1,f:2.5,i:-1,i:-1");
    weir_batch_release(b);
}

Test(expr, text_functions, .timeout = 30)
{
    weir_batch *b = mk("s|t", "Hello World|lo\nÉcole ÀB|É\n|x\nabc|");
    EXPECT(ev("lower(s)", b), "s:hello world,s:École Àb,s:,s:abc");
    EXPECT(ev("upper(s)", b), "s:HELLO WORLD,s:ÉCOLE ÀB,s:,s:ABC");
    EXPECT(ev("len(s)", b), "i:11,i:10,i:0,i:3");
    EXPECT(ev("contains(s, t)", b), "b:true,b:true,b:false,b:true");
    EXPECT(ev("starts_with(s, t)", b), "b:false,b:true,b:false,b:true");
    EXPECT(ev("ends_with(s, t)", b), "b:false,b:false,b:false,b:true");
    EXPECT(ev("concat(s, \"-\", t)", b), "s:Hello World-lo,s:École ÀB-É,s:-x,s:abc-");
    EXPECT(ev("lower(concat(upper(s), t))", b), "s:hello worldlo,s:École ÀbÉ,s:x,s:abc");
    weir_batch_release(b);

    EXPECT(cv("lower(\"ABC def 123\")"), "s:abc def 123");
    EXPECT(cv("upper(12.5)"), "s:12.5");  /* numbers as text */
    EXPECT(cv("len(12345)"), "i:5");
    EXPECT(cv("len(2.50)"), "i:3");       /* "2.5" */
    EXPECT(cv("len(true)"), "i:4");
    EXPECT(cv("len(1 / 0)"), "null");
    EXPECT(cv("lower(1 / 0)"), "null");
    EXPECT(cv("contains(\"abc\", \"\")"), "b:true");
    EXPECT(cv("contains(\"\", \"\")"), "b:true");
    EXPECT(cv("contains(\"ab\", \"abc\")"), "b:false");
    EXPECT(cv("contains(\"aXbXc\", \"bXc\")"), "b:true");
    EXPECT(cv("contains(12345, 34)"), "b:true");
    EXPECT(cv("starts_with(\"abc\", \"abc\")"), "b:true");
    EXPECT(cv("ends_with(\"abc\", \"abcd\")"), "b:false");
    EXPECT(cv("contains(1 / 0, \"a\")"), "null");
    EXPECT(cv("starts_with(\"a\", 1 / 0)"), "null");
    EXPECT(cv("concat(\"a\", 1, 2.5, true, 1 / 0, \"z\")"), "s:a12.5truez");
    EXPECT(cv("concat(\"x\")"), "s:x");
    EXPECT(cv("concat(\"\", \"\")"), "s:");
    EXPECT(cv("concat(0.1 + 0.2)"), "s:0.30000000000000004");
}

Test(expr, substr, .timeout = 30)
{
    EXPECT(cv("substr(\"hello\", 1, 3)"), "s:ell");
    EXPECT(cv("substr(\"hello\", 0)"), "s:hello");
    EXPECT(cv("substr(\"hello\", 3)"), "s:lo");
    EXPECT(cv("substr(\"hello\", 5)"), "s:");
    EXPECT(cv("substr(\"hello\", 10)"), "s:");
    EXPECT(cv("substr(\"hello\", -2)"), "s:hello"); /* clamped to 0 */
    EXPECT(cv("substr(\"hello\", -2, 3)"), "s:hel");
    EXPECT(cv("substr(\"hello\", 2, -1)"), "s:");
    EXPECT(cv("substr(\"hello\", 2, 0)"), "s:");
    EXPECT(cv("substr(\"hello\", 2, 100)"), "s:llo");
    EXPECT(cv("substr(\"hello\", 1.9, 2.9)"), "s:el"); /* truncated toward zero */
    EXPECT(cv("substr(\"hello\", \"1\", \"2\")"), "s:el");
    EXPECT(cv("substr(\"hello\", 1e30)"), "s:");
    EXPECT(cv("substr(\"hello\", 0, 1e30)"), "s:hello");
    EXPECT(cv("substr(12345, 1, 2)"), "s:23");
    EXPECT(cv("substr(\"hello\", \"x\")"), "null");
    EXPECT(cv("substr(\"hello\", 1, \"x\")"), "null");
    EXPECT(cv("substr(1 / 0, 1)"), "null");
    weir_batch *b = mk("s", "abcdef\n\nxy");
    EXPECT(ev("substr(s, 2, 2)", b), "s:cd,s:,s:");
    weir_batch_release(b);
}

Test(expr, number_functions, .timeout = 30)
{
    EXPECT(cv("int(12.7)"), "i:12");
    EXPECT(cv("int(-12.7)"), "i:-12");
    EXPECT(cv("int(\"12.7\")"), "i:12");
    EXPECT(cv("int(\" 12\")"), "null");
    EXPECT(cv("int(\"x\")"), "null");
    EXPECT(cv("int(42)"), "i:42");
    EXPECT(cv("int(true)"), "i:1");
    EXPECT(cv("int(1e30)"), "null");
    EXPECT(cv("int(-9.2e18)"), "i:-9200000000000000000");
    EXPECT(cv("int(1 / 0)"), "null");
    EXPECT(cv("int(7 / 2) * 2"), "i:6");

    EXPECT(cv("float(3)"), "f:3");
    EXPECT(cv("float(\"2.5\")"), "f:2.5");
    EXPECT(cv("float(\"x\")"), "null");
    EXPECT(cv("float(9223372036854775807) + 1"), "f:9.223372036854776e+18");

    EXPECT(cv("round(2.5)"), "i:3");
    EXPECT(cv("round(-2.5)"), "i:-3");
    EXPECT(cv("round(2.4999)"), "i:2");
    EXPECT(cv("round(0.5)"), "i:1");
    EXPECT(cv("round(-0.4)"), "i:0");
    EXPECT(cv("round(7)"), "i:7");
    EXPECT(cv("round(\"2.5\")"), "i:3");
    EXPECT(cv("round(3.14159, 2)"), "f:3.14");
    EXPECT(cv("round(-3.14159, 3)"), "f:-3.142");
    EXPECT(cv("round(2.5, 0)"), "i:3");
    EXPECT(cv("round(1234, -2)"), "i:1200");
    EXPECT(cv("round(1250, -2)"), "i:1300");
    EXPECT(cv("round(-1250, -2)"), "i:-1300");
    EXPECT(cv("round(-1249, -2)"), "i:-1200");
    EXPECT(cv("round(1234, 2)"), "i:1234");
    EXPECT(cv("round(1234.5678, -2)"), "f:1200");
    EXPECT(cv("round(9223372036854775807, -30)"), "i:0");
    EXPECT(cv("round(9223372036854775807, -1)"), "f:9.223372036854776e+18");
    EXPECT(cv("round(1e300, 10)"), "f:1e+300"); /* no digits left to round */
    EXPECT(cv("round(1e20)"), "f:1e+20"); /* beyond int64: stays a float */
    EXPECT(cv("round(2.5, \"x\")"), "null");
    EXPECT(cv("round(\"x\")"), "null");

    EXPECT(cv("abs(-5)"), "i:5");
    EXPECT(cv("abs(5)"), "i:5");
    EXPECT(cv("abs(-2.5)"), "f:2.5");
    EXPECT(cv("abs(\"-3\")"), "i:3");
    EXPECT(cv("abs(-9223372036854775807 - 1)"), "f:9.223372036854776e+18");
    EXPECT(cv("abs(\"x\")"), "null");
}

Test(expr, coalesce_and_if, .timeout = 30)
{
    weir_batch *b = mk("tip|alt", "|7\n3|7\nabc|\n|");
    EXPECT(ev("coalesce(tip, 0)", b), "i:0,s:3,s:abc,i:0");
    EXPECT(ev("coalesce(tip, alt)", b), "s:7,s:3,s:abc,null");
    EXPECT(ev("coalesce(tip * 1, alt, -1)", b), "s:7,i:3,i:-1,i:-1");
    EXPECT(ev("coalesce(tip)", b), "null,s:3,s:abc,null");
    EXPECT(ev("coalesce(tip, alt) == 7", b), "b:true,b:false,b:false,b:false");
    EXPECT(ev("if(tip > 1, \"big\", \"small\")", b), "s:small,s:big,s:small,s:small");
    EXPECT(ev("if(tip, tip, alt)", b), "s:7,s:3,s:abc,s:");
    weir_batch_release(b);
    EXPECT(cv("coalesce(1 / 0, \"\", 5, 6)"), "i:5");
    EXPECT(cv("coalesce(1 / 0, \"\")"), "null");
    EXPECT(cv("coalesce(false, 1)"), "b:false"); /* false is a value */
    EXPECT(cv("coalesce(coalesce(\"\", \"a\"), \"b\")"), "s:a");
    EXPECT(cv("if(1 / 0, 1, 2)"), "i:2");
    EXPECT(cv("if(\"yes\", 1, 2)"), "i:1");
    EXPECT(cv("if(true, if(false, 1, 2), 3)"), "i:2");
    EXPECT(cv("if(false, 1, if(false, 2, 3)) + 10"), "i:13");
}

Test(expr, unknown_column_errors, .timeout = 30)
{
    EXPECT(cerr("fare > 50 && paymnt == 1", "id|fare|payment"),
           "f.weir:1:14: unknown column 'paymnt' (did you mean 'payment'?)");
    EXPECT(cerr("Fare > 50", "id|fare|payment"),
           "f.weir:1:1: unknown column 'Fare' (did you mean 'fare'?)");
    EXPECT(cerr("frae > 50", "id|fare|payment"),
           "f.weir:1:1: unknown column 'frae' (did you mean 'fare'?)");
    EXPECT(cerr("fares > 50", "id|fare|payment"),
           "f.weir:1:1: unknown column 'fares' (did you mean 'fare'?)");
    EXPECT(cerr("fxre > 50", "id|fare|payment"),
           "f.weir:1:1: unknown column 'fxre' (did you mean 'fare'?)");
    EXPECT(cerr("zzz > 50", "id|fare|payment"), "f.weir:1:1: unknown column 'zzz'");
    EXPECT(cerr("fair_amount > 1", "fare_amount"), "f.weir:1:1: unknown column 'fair_amount'");
    EXPECT(cerr("1 +\n   nope", "a"), "f.weir:2:4: unknown column 'nope'");
    EXPECT(cerr("lower(`my col`)", "my_col"),
           "f.weir:1:7: unknown column 'my col' (did you mean 'my_col'?)");
    EXPECT(cerr("lower(`my col`)", "my col"), "");
    EXPECT(cerr("fare > 50", "id|fare|payment"), "");
}

Test(expr, function_errors, .timeout = 30)
{
    EXPECT(cerr("lowr(a)", "a"), "f.weir:1:1: unknown function 'lowr' (did you mean 'lower'?)");
    EXPECT(cerr("a + LOWER(a)", "a"),
           "f.weir:1:5: unknown function 'LOWER' (did you mean 'lower'?)");
    EXPECT(cerr("frobnicate(a)", "a"), "f.weir:1:1: unknown function 'frobnicate'");
    EXPECT(cerr("substr(a)", "a"), "f.weir:1:1: substr() takes 2 to 3 arguments, not 1");
    EXPECT(cerr("substr(a, 1, 2, 3)", "a"),
           "f.weir:1:1: substr() takes 2 to 3 arguments, not 4");
    EXPECT(cerr("1 + lower()", "a"), "f.weir:1:5: lower() takes 1 argument, not 0");
    EXPECT(cerr("if(a, 1)", "a"), "f.weir:1:1: if() takes 3 arguments, not 2");
    EXPECT(cerr("concat()", "a"), "f.weir:1:1: concat() takes at least 1 argument, not 0");
    EXPECT(cerr("coalesce()", "a"), "f.weir:1:1: coalesce() takes at least 1 argument, not 0");
    EXPECT(cerr("round(a, 1, 2)", "a"), "f.weir:1:1: round() takes 1 to 2 arguments, not 3");
    EXPECT(cerr("a == [1, 2]", "a"), "f.weir:1:6: a list is not a value here");
    EXPECT(cerr("1e999 + a", "a"), "f.weir:1:1: number out of range");
    /* Errors inside the argument of an unknown function's neighbour. */
    EXPECT(cerr("contains(a, nope)", "a"), "f.weir:1:13: unknown column 'nope'");
}

Test(expr, deep_chains, .timeout = 30)
{
    /* A long chain is a left-deep tree: it compiles up to a bound and then
     * is an error, never a stack overflow. */
    size_t n = 900;
    char *e = malloc(n * 2 + 1);
    strcpy(e, "1");
    for (size_t i = 1; i < n; i++) strcat(e, "+1");
    EXPECT(cv(e), "i:900");
    free(e);
    n = 5000;
    e = malloc(n * 2 + 1);
    for (size_t i = 0; i < n; i++) memcpy(e + 2 * i, "1+", 2);
    e[n * 2 - 1] = '\0';
    weir_expr *x;
    char err[256];
    /* The parser refuses it (tree height over 1000); a hand-built tree that
     * deep is refused by the compiler the same way. */
    cr_assert_eq(weir_expr_parse(&x, e, "<t>", err, sizeof err), WEIR_ESPEC);
    cr_assert(strstr(err, "nested too deeply"), "%s", err);
    free(e);
}

Test(expr, const_and_misuse, .timeout = 30)
{
    weir_batch *b = mk("a|b", "1|2");
    weir_expr *x;
    char err[256];
    cr_assert_eq(weir_expr_parse(&x, "a + 1", NULL, err, sizeof err), 0);
    weir_eval *v;
    cr_assert_eq(weir_eval_create(&v, x, b->schema, err, sizeof err), 0);
    weir_value out[2];
    cr_assert_eq(weir_eval_const(v, out), WEIR_EINVAL); /* reads a column */
    weir_batch *other = mk("a", "5");
    cr_assert_eq(weir_eval_batch(v, other, out), WEIR_EINVAL); /* wrong shape */
    cr_assert_eq(weir_eval_batch(v, b, out), 0);
    cr_assert(out[0].is_int && out[0].i == 2);
    weir_eval_destroy(v);
    weir_expr_destroy(x);
    /* Without a schema, a column is unknown; "<expr>" names the text. */
    cr_assert_eq(weir_expr_parse(&x, "a", NULL, err, sizeof err), 0);
    cr_assert_eq(weir_eval_create(&v, x, NULL, err, sizeof err), WEIR_ESPEC);
    EXPECT(err, "<expr>:1:1: unknown column 'a'");
    weir_expr_destroy(x);
    /* A constant evaluates over a batch too: one value per row. */
    EXPECT(ev("\"k\"", other), "s:k");
    weir_eval_destroy(NULL);
    weir_batch_release(other);
    weir_batch_release(b);
}

Test(expr, value_format, .timeout = 30)
{
    struct {
        weir_value v;
        const char *want;
    } cases[] = {
        {{.type = WEIR_VAL_NULL}, ""},
        {{.type = WEIR_VAL_BOOL, .i = 1}, "true"},
        {{.type = WEIR_VAL_BOOL, .i = 0}, "false"},
        {{.type = WEIR_VAL_NUM, .is_int = true, .i = -42}, "-42"},
        {{.type = WEIR_VAL_NUM, .is_int = true, .i = INT64_MIN}, "-9223372036854775808"},
        {{.type = WEIR_VAL_NUM, .is_int = true, .i = INT64_MAX}, "9223372036854775807"},
        {{.type = WEIR_VAL_NUM, .num = 0.1}, "0.1"},
        {{.type = WEIR_VAL_NUM, .num = 2.5e-7}, "2.5e-07"},
        {{.type = WEIR_VAL_NUM, .num = 1e20}, "1e+20"},
        {{.type = WEIR_VAL_NUM, .num = 3.0}, "3"},
        {{.type = WEIR_VAL_NUM, .num = -3.0}, "-3"},
        {{.type = WEIR_VAL_NUM, .num = -0.0}, "0"},
        {{.type = WEIR_VAL_NUM, .num = 1.0 / 3}, "0.3333333333333333"},
        {{.type = WEIR_VAL_NUM, .num = 2.0 / 3}, "0.6666666666666666"},
        {{.type = WEIR_VAL_NUM, .num = 123456789.125}, "123456789.125"},
        {{.type = WEIR_VAL_NUM, .num = 1e15}, "1000000000000000"},
        {{.type = WEIR_VAL_NUM, .num = 9007199254740992.0}, "9007199254740992"},
        {{.type = WEIR_VAL_NUM, .num = 4503599627370495.5}, "4503599627370495.5"},
        {{.type = WEIR_VAL_NUM, .num = 1.7976931348623157e308}, "1.7976931348623157e+308"},
        {{.type = WEIR_VAL_NUM, .num = 5e-324}, "5e-324"}, /* subnormal */
        {{.type = WEIR_VAL_NUM, .num = 100.5}, "100.5"},
        {{.type = WEIR_VAL_STR, .str = (const unsigned char *)"a,b", .len = 3}, "a,b"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char buf[64];
        size_t n = weir_value_format(&cases[i].v, buf, sizeof buf);
        cr_assert_str_eq(buf, cases[i].want, "case %zu", i);
        cr_assert_eq(n, strlen(cases[i].want));
        /* What is written reads back as the same number. */
        if (cases[i].v.type == WEIR_VAL_NUM && !cases[i].v.is_int)
            cr_assert_eq(strtod(buf, NULL), cases[i].v.num + 0.0, "case %zu", i);
    }
    /* Like snprintf: the length it needed, truncated and terminated. */
    weir_value v = {.type = WEIR_VAL_NUM, .is_int = true, .i = 12345};
    char small[3] = "xx";
    cr_assert_eq(weir_value_format(&v, small, sizeof small), 5);
    cr_assert_str_eq(small, "12");
    cr_assert_eq(weir_value_format(&v, NULL, 0), 5);
    v = (weir_value){.type = WEIR_VAL_STR, .str = (const unsigned char *)"a\0b", .len = 3};
    char buf[8];
    cr_assert_eq(weir_value_format(&v, buf, sizeof buf), 3);
    cr_assert_eq(memcmp(buf, "a\0b", 4), 0);
}

Test(expr, large_batch_reuses_scratch, .timeout = 30)
{
    enum { N = 100000 };
    const char *names[] = {"n", "s"};
    weir_schema *sc;
    cr_assert_eq(weir_schema_create(&sc, names, 2), 0);
    weir_batch *b;
    cr_assert_eq(weir_batch_create(&b, WEIR_KIND_ROWS, 0), 0);
    weir_batch_set_schema(b, sc);
    weir_schema_release(sc);
    for (int i = 0; i < N; i++) {
        char num[32], s[32];
        int k = snprintf(num, sizeof num, "%d", i);
        int m = snprintf(s, sizeof s, "Row%d", i);
        weir_batch_add_field(b, num, (size_t)k);
        weir_batch_add_field(b, s, (size_t)m);
        cr_assert_eq(weir_batch_end_row(b), 0);
    }
    weir_expr *x;
    char err[256];
    cr_assert_eq(weir_expr_parse(&x, "concat(lower(s), \":\", n * 2 + 0.5, \":\", n % 7 == 3)",
                                 NULL, err, sizeof err), 0);
    weir_eval *v;
    cr_assert_eq(weir_eval_create(&v, x, b->schema, err, sizeof err), 0, "%s", err);
    weir_value *out = malloc(N * sizeof *out);
    for (int round = 0; round < 3; round++) {
        cr_assert_eq(weir_eval_batch(v, b, out), 0);
        /* Every string must still be intact after the whole batch: the
         * scratch space never moves what it already handed out. */
        for (int i = 0; i < N; i++) {
            char want[64];
            int k = snprintf(want, sizeof want, "row%d:%.1f:%s", i, i * 2 + 0.5,
                             i % 7 == 3 ? "true" : "false");
            cr_assert_eq(out[i].type, WEIR_VAL_STR);
            cr_assert_eq(out[i].len, (size_t)k, "row %d", i);
            cr_assert_eq(memcmp(out[i].str, want, (size_t)k), 0, "row %d", i);
        }
    }
    free(out);
    weir_eval_destroy(v);
    weir_expr_destroy(x);
    weir_batch_release(b);
}

/* The definition of the float format, written plainly. */
static void ref_format(double d, char *buf)
{
    if (d == 0) {
        strcpy(buf, "0");
        return;
    }
    if (d > -9007199254740992.0 && d < 9007199254740992.0 && d == (double)(int64_t)d) {
        sprintf(buf, "%" PRId64, (int64_t)d);
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        sprintf(buf, "%.*g", prec, d);
        if (strtod(buf, NULL) == d) return;
    }
}

static uint64_t rng = 88172645463325252ull;
static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

Test(expr, float_format_is_shortest, .timeout = 30)
{
    /* Against the plain definition, on decimals of every length and scale,
     * arithmetic results, and random bit patterns. */
    for (int i = 0; i < 300000; i++) {
        double d;
        uint64_t r = next_rand();
        switch (i % 3) {
        case 0: {
            char text[64];
            int digits = 1 + (int)(r % 17), exp = (int)((r >> 8) % 40) - 20;
            uint64_t p = 1;
            for (int k = 0; k < digits; k++) p *= 10;
            snprintf(text, sizeof text, "%" PRIu64 "e%d", next_rand() % p, exp);
            d = strtod(text, NULL);
            break;
        }
        case 1: d = (double)(int64_t)(r % 2000000 - 1000000) * 0.01 + (double)(r >> 40) * 0.1; break;
        default:
            memcpy(&d, &r, sizeof d);
            if (d != d || d - d != 0) continue; /* NaN or infinite */
        }
        if (r & 1) d = -d;
        weir_value v = {.type = WEIR_VAL_NUM, .num = d};
        char got[64], want[64];
        weir_value_format(&v, got, sizeof got);
        ref_format(d, want);
        if (want[0] == '-' && strcmp(want, "-0") == 0) strcpy(want, "0");
        cr_assert_str_eq(got, want, "%.17g", d);
    }
}

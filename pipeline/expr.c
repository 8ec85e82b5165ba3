/*
 * expr.c — evaluating expressions (weir.h section 6, second half; the
 * parser and trees live in spec.c).
 *
 * weir_eval_create() compiles a tree once against a schema into a flat
 * postfix program: columns become indices, functions become ids, && || if()
 * coalesce() become jumps (so they short-circuit per row), and the deepest
 * value stack the program can need is known. weir_eval_batch() then runs
 * the program for each row with that one preallocated stack. Strings that
 * functions make (lower, concat, a number turned into text, …) go into a
 * scratch arena of blocks that never move, kept by the eval and rewound at
 * the start of each call: after the first few batches nothing is allocated.
 *
 * The exact semantics (the lead moves these into weir.h and DESIGN.md):
 *
 * Values. A field is text (STR), never null; "" is text too. Literals are
 * numbers, text, true/false. Results of operators and functions may be
 * null. A value that is not finite (1e308 * 10) is null, so every number
 * has a written form that reads back.
 *
 * Numbers. Text "is a number" when the whole of it is a decimal integer
 * ([+-]digits) that fits int64 — kept exact as an integer — or a decimal
 * float ([+-] digits [. digits] [e|E [+-] digits], digits on at least one
 * side of the point; "1." and ".5" are numbers) whose value is finite. No
 * hex, no inf/nan, no spaces, no thousands separators. An integer too big
 * for int64 reads as a float. true/false are 1/0 in arithmetic.
 *
 * Arithmetic: + - * and unary - on two integers stay integers, and
 * continue in floating point on overflow; with a float operand they are
 * floating point. `/` is always floating point. `%` on integers is C's
 * remainder (the sign of the dividend: -7 % 3 == -1), else fmod. Dividing
 * or taking the remainder by zero gives null. An operand that is null, or
 * text that is not a number, makes the result null.
 *
 * Comparisons (== != < <= > >=):
 *   - null on either side: false, for every operator (`!=` too);
 *   - number or bool vs number or bool: numeric (true is 1); an integer and
 *     a float are compared exactly, not through a rounded double;
 *   - number vs text: numeric if the text is a number, else false;
 *   - text vs text: numeric if both are numbers ("10" > "9", "7" == "7.0",
 *     "007" == "7"), else bytewise (memcmp, then the shorter is smaller);
 *   - bool vs text: the bool as the text "true"/"false", bytewise.
 *
 * Truth (&&, ||, !, if(), and what filter keeps): true, a non-zero number
 * and non-empty text are true; false, 0, "" and null are false (so the
 * text "0" is true). && and || evaluate their right side only when needed
 * and give a bool; ! gives a bool (!null is true).
 *
 * Functions (argument counts are checked when compiling). Text arguments
 * take numbers and bools in their written form (weir_value_format); a null
 * argument gives null unless said otherwise. Offsets and lengths are bytes.
 *   lower(s) upper(s)        ASCII case mapping; other bytes unchanged
 *   len(s)                   length in bytes (an integer)
 *   substr(s, start[, n])    0-based; start and n are numbers truncated
 *                            toward zero and clamped to the text (a negative
 *                            start counts as 0, a negative n as 0); null if
 *                            start or n is not a number
 *   contains(s, x) starts_with(s, x) ends_with(s, x)   a bool ("" is in
 *                            every text)
 *   int(x)                   a number truncated toward zero (text is parsed;
 *                            not a number, or outside int64: null)
 *   float(x)                 the number as a float (printing is unchanged:
 *                            3.0 prints 3)
 *   round(x[, d])            half away from zero, to d decimals (default 0;
 *                            negative d rounds to tens, hundreds, …); an
 *                            integer stays an integer; round(x) of a float
 *                            is an integer when it fits int64
 *   abs(x)                   absolute value (int64 minimum → float)
 *   coalesce(a, b, …)        the first argument that is neither null nor
 *                            empty text ("" counts as missing, so
 *                            coalesce(tip, 0) fills empty CSV fields); null
 *                            if there is none; later arguments are not
 *                            evaluated once one is found
 *   concat(a, b, …)          the texts one after another; null adds nothing
 *   if(c, a, b)              a when c is true, else b; only one is evaluated
 *
 * Formatting (weir_value_format): integers as %lld; floats that are whole
 * and below 2^53 in magnitude without a point (3.0 → "3", -0.0 → "0");
 * other floats in the shortest %.{1..17}g that reads back to the same
 * double (0.1 → "0.1", 2.5e-07 → "2.5e-07", 1e+20 → "1e+20");
 * true/false; null as "". Decimal points and parsing assume the C locale
 * for LC_NUMERIC (the default of a program that never calls setlocale).
 *
 * Compiling. Errors are "file:line:col: message" at the node at fault:
 * "unknown column 'x'" and "unknown function 'x'", each with " (did you
 * mean 'y'?)" when a name differs only in case or by one edit (insert,
 * delete, replace, swap of neighbours); "f() takes N arguments, not M";
 * "a list is not a value here"; "number out of range"; "expression nested
 * too deeply" past 1000 levels (a + b + c + … nests one level per term).
 * A NULL schema has no columns (for weir_eval_const). weir_eval_batch()
 * returns WEIR_EINVAL when the batch's column count differs from the
 * compiled schema's, instead of reading out of bounds.
 */
#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Tree depth the compiler recurses to. The parser bounds nesting, but a
 * long chain (a + b + c + …) is a left-deep tree of any depth. */
#define EXPR_MAX_DEPTH 1000
/* Bytes any number or bool takes in text, with the terminating NUL. */
#define NUM_TEXT_MAX 32

enum opcode {
    OP_CONST,    /* push consts[a] */
    OP_COL,      /* push field a of the row */
    OP_NEG, OP_NOT,
    OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_MOD,
    OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE,
    OP_AND,      /* top false: it becomes false, jump to a; else pop */
    OP_OR,       /* top true: it becomes true, jump to a; else pop */
    OP_TRUTH,    /* top becomes a bool */
    OP_JFALSE,   /* pop; jump to a if it was false */
    OP_JMP,      /* jump to a */
    OP_PRESENT,  /* top present (not null, not ""): jump to a; else pop */
    OP_MISSING,  /* top not present: it becomes null */
    OP_CALL,     /* fn with nargs arguments from the stack → one result */
};

enum fn_id {
    FN_LOWER, FN_UPPER, FN_LEN, FN_SUBSTR, FN_CONTAINS, FN_STARTS_WITH,
    FN_ENDS_WITH, FN_INT, FN_FLOAT, FN_ROUND, FN_ABS, FN_CONCAT,
    FN_COALESCE, FN_IF, /* compiled to jumps, never called */
};

static const struct fn_def {
    const char *name;
    enum fn_id id;
    unsigned min, max; /* max 0: any number */
} fns[] = {
    {"lower", FN_LOWER, 1, 1},          {"upper", FN_UPPER, 1, 1},
    {"len", FN_LEN, 1, 1},              {"substr", FN_SUBSTR, 2, 3},
    {"contains", FN_CONTAINS, 2, 2},    {"starts_with", FN_STARTS_WITH, 2, 2},
    {"ends_with", FN_ENDS_WITH, 2, 2},  {"int", FN_INT, 1, 1},
    {"float", FN_FLOAT, 1, 1},          {"round", FN_ROUND, 1, 2},
    {"abs", FN_ABS, 1, 1},              {"concat", FN_CONCAT, 1, 0},
    {"coalesce", FN_COALESCE, 1, 0},    {"if", FN_IF, 3, 3},
};
#define NFNS (sizeof fns / sizeof *fns)

typedef struct ins {
    uint8_t op;
    uint8_t fn;
    uint16_t nargs;
    uint32_t a;
} ins;

/* A scratch block; blocks never move, so strings in them stay put while
 * later ones are added. */
typedef struct blk {
    struct blk *next;
    size_t cap, used;
    unsigned char data[];
} blk;

struct weir_eval {
    ins *code;
    size_t ncode, capcode;
    weir_value *consts;
    size_t nconsts, capconsts;
    char **owned; /* text of string constants */
    size_t nowned;
    size_t ncols;      /* columns of the compiled schema */
    bool uses_cols;
    weir_value *stack;
    size_t depth, max_depth; /* while compiling */
    blk *first, *cur;
};

/* ---- scratch arena ------------------------------------------------------------------- */

static void arena_reset(weir_eval *ev)
{
    ev->cur = ev->first;
    if (ev->first) ev->first->used = 0;
}

/* @return n bytes of scratch, or NULL when out of memory. */
static unsigned char *arena_alloc(weir_eval *ev, size_t n)
{
    blk *b = ev->cur;
    if (WEIR__LIKELY(b && b->cap - b->used >= n)) {
        unsigned char *p = b->data + b->used;
        b->used += n;
        return p;
    }
    blk *next = b ? b->next : ev->first;
    if (!next || next->cap < n) {
        /* Doubling, up to 8 MiB a block: few blocks for a big batch. */
        size_t cap = b ? b->cap * 2 : (size_t)64 << 10;
        if (cap > ((size_t)8 << 20)) cap = (size_t)8 << 20;
        if (cap < n) cap = n;
        blk *nb = malloc(sizeof *nb + cap);
        if (!nb) return NULL;
        nb->cap = cap;
        nb->next = next;
        if (b) b->next = nb;
        else ev->first = nb;
        next = nb;
    }
    next->used = n;
    ev->cur = next;
    return next->data;
}

/* Give back the unused tail of the last allocation (p, of which used bytes
 * are kept). */
static void arena_trim(weir_eval *ev, const unsigned char *p, size_t used)
{
    ev->cur->used = (size_t)(p - ev->cur->data) + used;
}

/* ---- numbers -------------------------------------------------------------------------- */

static const double pow10_exact[] = {
    1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
};

/* 10^k for k >= 0, exact as far as a double can be. */
static double num_pow10(int64_t k)
{
    return k < 23 ? pow10_exact[k] : pow(10, (double)k);
}

/* ---- values ---------------------------------------------------------------------------- */

static inline void set_null(weir_value *v) { *v = (weir_value){.type = WEIR_VAL_NULL}; }

static inline void set_int(weir_value *v, int64_t i)
{
    *v = (weir_value){.type = WEIR_VAL_NUM, .is_int = true, .i = i, .num = (double)i};
}

/* Non-finite results are null: every number must have a written form. */
static inline void set_float(weir_value *v, double d)
{
    if (WEIR__UNLIKELY(!isfinite(d))) set_null(v);
    else *v = (weir_value){.type = WEIR_VAL_NUM, .num = d};
}

static inline void set_bool(weir_value *v, bool b)
{
    *v = (weir_value){.type = WEIR_VAL_BOOL, .i = b};
}

static inline void set_str(weir_value *v, const unsigned char *p, size_t n)
{
    *v = (weir_value){.type = WEIR_VAL_STR, .str = p, .len = n};
}

bool weir_value_truth(const weir_value *v)
{
    switch (v->type) {
    case WEIR_VAL_BOOL: return v->i != 0;
    case WEIR_VAL_NUM: return v->is_int ? v->i != 0 : v->num != 0;
    case WEIR_VAL_STR: return v->len > 0;
    case WEIR_VAL_NULL: break;
    }
    return false;
}

static inline bool present(const weir_value *v)
{
    return v->type != WEIR_VAL_NULL && !(v->type == WEIR_VAL_STR && v->len == 0);
}

/* Is p[0..n) a number (see the top of the file)? Sets *out if so (weir.h). */
bool weir_value_parse(const void *data, size_t n, weir_value *out)
{
    const unsigned char *p = data;
    size_t i = 0;
    bool neg = false;
    if (n == 0) return false;
    if (p[0] == '+' || p[0] == '-') {
        neg = p[0] == '-';
        i = 1;
    }
    /* Digits accumulate into m while it stays at or below 2^53, where a
     * double holds it exactly; `big` notes when it does not. */
    const uint64_t exact = (uint64_t)1 << 53;
    uint64_t m = 0, im = 0;
    bool big = false, ibig = false;
    size_t nint = 0, nfrac = 0;
    for (; i < n && p[i] >= '0' && p[i] <= '9'; i++, nint++) {
        unsigned d = p[i] - '0';
        if (im > (UINT64_MAX - d) / 10) ibig = true;
        else im = im * 10 + d;
        if (!big && (m = m * 10 + d) > exact) big = true;
    }
    if (i == n) {
        if (nint == 0) return false;
        if (!ibig && im <= (uint64_t)INT64_MAX + neg) {
            /* -(INT64_MAX + 1) without signed overflow */
            set_int(out, neg ? (int64_t)(0 - im) : (int64_t)im);
            return true;
        }
        goto slow; /* an integer beyond int64 reads as a float */
    }
    if (p[i] == '.') {
        for (i++; i < n && p[i] >= '0' && p[i] <= '9'; i++, nfrac++)
            if (!big && (m = m * 10 + (unsigned)(p[i] - '0')) > exact) big = true;
    }
    if (nint + nfrac == 0) return false;
    if (i < n && (p[i] == 'e' || p[i] == 'E')) {
        i++;
        if (i < n && (p[i] == '+' || p[i] == '-')) i++;
        size_t nexp = 0;
        for (; i < n && p[i] >= '0' && p[i] <= '9'; i++) nexp++;
        if (nexp == 0 || i != n) return false;
        goto slow;
    }
    if (i != n) return false;
    if (!big && nfrac < sizeof pow10_exact / sizeof *pow10_exact) {
        /* Both operands are exact doubles, and IEEE division rounds
         * correctly: the same double strtod would give (Clinger's fast
         * path). */
        double d = (double)m / pow10_exact[nfrac];
        set_float(out, neg ? -d : d);
        return true;
    }
slow:;
    /* strtod wants a terminated string. Numbers longer than the buffer
     * (hundreds of digits) are read as text: no allocation, ever. */
    char buf[512];
    if (n >= sizeof buf) return false;
    memcpy(buf, p, n);
    buf[n] = '\0';
    double d = strtod(buf, NULL);
    if (!isfinite(d)) return false;
    set_float(out, d);
    return true;
}

/* The value as a number: numbers, bools (1/0) and numeric text. */
static inline bool to_num(weir_eval *ev, const weir_value *v, weir_value *out)
{
    switch (v->type) {
    case WEIR_VAL_NUM: *out = *v; return true;
    case WEIR_VAL_BOOL: set_int(out, v->i); return true;
    case WEIR_VAL_STR: return weir_value_parse(v->str, v->len, out);
    case WEIR_VAL_NULL: break;
    }
    return false;
}

/* ---- formatting ------------------------------------------------------------------------- */

static size_t fmt_int(int64_t i, char *buf)
{
    char tmp[24];
    size_t n = 0;
    uint64_t u = i < 0 ? 0 - (uint64_t)i : (uint64_t)i;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    size_t k = 0;
    if (i < 0) buf[k++] = '-';
    while (n) buf[k++] = tmp[--n];
    buf[k] = '\0';
    return k;
}

static size_t fmt_double(double d, char *buf)
{
    if (d == 0) {
        memcpy(buf, "0", 2); /* -0.0 too */
        return 1;
    }
    if (!isfinite(d)) return (size_t)snprintf(buf, NUM_TEXT_MAX, "%g", d);
    double a = fabs(d);
    if (a < 9007199254740992.0 && d == trunc(d)) return fmt_int((int64_t)d, buf);
    /* A double has at most 17 significant digits; when the shortest exact
     * form has k <= 15 digits, %.15g yields exactly it (trailing zeros are
     * dropped), so three tries find the shortest. Before that, a fast path
     * for what %g writes without an exponent (1e-4 <= |d| < 1e15) with at
     * most 15 digits: the fewest decimals k for which m = d * 10^k rounded
     * gives back d = m / 10^k. Both are exact doubles and the division
     * rounds correctly, so m / 10^k reads back as d (as in weir_value_parse); and
     * with 15 digits there is one such m at most, the one %.15g prints. */
    int first = 15;
    if (a >= 1e-4 && a < 1e15) {
        for (size_t k = 1; k < sizeof pow10_exact / sizeof *pow10_exact; k++) {
            double s = a * pow10_exact[k];
            if (s >= 1e15) break;
            int64_t m = (int64_t)(s + 0.5);
            if ((double)m / pow10_exact[k] != a) continue;
            char digits[24];
            size_t nd = fmt_int(m, digits), n = 0;
            if (d < 0) buf[n++] = '-';
            if (nd <= k) { /* 0.00ddd */
                buf[n++] = '0';
                buf[n++] = '.';
                for (size_t z = nd; z < k; z++) buf[n++] = '0';
                memcpy(buf + n, digits, nd);
                n += nd;
            } else {
                memcpy(buf + n, digits, nd - k);
                n += nd - k;
                buf[n++] = '.';
                memcpy(buf + n, digits + nd - k, k);
                n += k;
            }
            buf[n] = '\0';
            return n;
        }
        first = 16; /* no form of 15 digits or fewer */
    }
    /* Subnormals hold fewer digits: search from one. */
    if (a < 2.2250738585072014e-308) first = 1;
    int n = 0;
    for (int prec = first; prec <= 17; prec++) {
        n = snprintf(buf, NUM_TEXT_MAX, "%.*g", prec, d);
        if (prec == 17 || strtod(buf, NULL) == d) break;
    }
    return (size_t)n;
}

/* Numbers and bools as text into buf (NUM_TEXT_MAX bytes); @return length. */
static size_t fmt_scalar(const weir_value *v, char *buf)
{
    switch (v->type) {
    case WEIR_VAL_NUM: return v->is_int ? fmt_int(v->i, buf) : fmt_double(v->num, buf);
    case WEIR_VAL_BOOL:
        memcpy(buf, v->i ? "true" : "false", v->i ? 5 : 6);
        return v->i ? 4 : 5;
    default:
        buf[0] = '\0';
        return 0;
    }
}

size_t weir_value_format(const weir_value *v, char *buf, size_t size)
{
    char tmp[NUM_TEXT_MAX];
    const char *src = tmp;
    size_t n;
    if (v->type == WEIR_VAL_STR) {
        src = (const char *)v->str;
        n = v->len;
    } else {
        n = fmt_scalar(v, tmp);
    }
    if (size) {
        size_t k = n < size - 1 ? n : size - 1;
        if (k) memcpy(buf, src, k);
        buf[k] = '\0';
    }
    return n;
}

/* The value as text: STR as it is, numbers and bools written into scratch.
 * @return 1 with *p and *n set, 0 for null, or WEIR_ENOMEM. */
static int to_text(weir_eval *ev, const weir_value *v, const unsigned char **p, size_t *n)
{
    switch (v->type) {
    case WEIR_VAL_STR:
        *p = v->str;
        *n = v->len;
        return 1;
    case WEIR_VAL_BOOL:
        *p = (const unsigned char *)(v->i ? "true" : "false");
        *n = v->i ? 4 : 5;
        return 1;
    case WEIR_VAL_NUM: {
        unsigned char *dst = arena_alloc(ev, NUM_TEXT_MAX);
        if (!dst) return WEIR_ENOMEM;
        *n = fmt_scalar(v, (char *)dst);
        arena_trim(ev, dst, *n);
        *p = dst;
        return 1;
    }
    case WEIR_VAL_NULL: break;
    }
    return 0;
}

/* ---- operators -------------------------------------------------------------------------- */

static void arith(weir_eval *ev, weir_value *a, const weir_value *b, int op)
{
    weir_value x, y;
    if (!to_num(ev, a, &x) || !to_num(ev, b, &y)) {
        set_null(a);
        return;
    }
    if (x.is_int && y.is_int && op != OP_DIV) {
        int64_t r;
        bool ovf = false;
        switch (op) {
        case OP_ADD: ovf = __builtin_add_overflow(x.i, y.i, &r); break;
        case OP_SUB: ovf = __builtin_sub_overflow(x.i, y.i, &r); break;
        case OP_MUL: ovf = __builtin_mul_overflow(x.i, y.i, &r); break;
        default: /* OP_MOD */
            if (y.i == 0) {
                set_null(a);
                return;
            }
            r = y.i == -1 ? 0 : x.i % y.i; /* INT64_MIN % -1 traps in C */
            break;
        }
        if (!ovf) {
            set_int(a, r);
            return;
        }
    }
    double p = x.num, q = y.num;
    switch (op) {
    case OP_ADD: set_float(a, p + q); break;
    case OP_SUB: set_float(a, p - q); break;
    case OP_MUL: set_float(a, p * q); break;
    case OP_DIV:
        if (q == 0) set_null(a);
        else set_float(a, p / q);
        break;
    default:
        if (q == 0) set_null(a);
        else set_float(a, fmod(p, q));
        break;
    }
}

/* Sign of i - d, exactly (no rounding of i to a double). */
static int cmp_int_double(int64_t i, double d)
{
    if (d >= 9223372036854775808.0) return -1;
    if (d < -9223372036854775808.0) return 1;
    double t = trunc(d);
    int64_t ti = (int64_t)t;
    if (i != ti) return i < ti ? -1 : 1;
    return d > t ? -1 : d < t ? 1 : 0;
}

static int cmp_num(const weir_value *x, const weir_value *y)
{
    if (x->is_int && y->is_int) return (x->i > y->i) - (x->i < y->i);
    if (x->is_int) return cmp_int_double(x->i, y->num);
    if (y->is_int) return -cmp_int_double(y->i, x->num);
    return (x->num > y->num) - (x->num < y->num);
}

static int cmp_bytes(const unsigned char *a, size_t na, const unsigned char *b, size_t nb)
{
    size_t n = na < nb ? na : nb;
    int c = n ? memcmp(a, b, n) : 0;
    if (c) return c < 0 ? -1 : 1;
    return (na > nb) - (na < nb);
}

#define CMP_NULL 2 /* the two cannot be compared: every comparison is false */

static int compare(weir_eval *ev, const weir_value *a, const weir_value *b)
{
    if (a->type == WEIR_VAL_NULL || b->type == WEIR_VAL_NULL) return CMP_NULL;
    weir_value x, y;
    if (a->type == WEIR_VAL_STR && b->type == WEIR_VAL_STR) {
        if (weir_value_parse(a->str, a->len, &x) && weir_value_parse(b->str, b->len, &y))
            return cmp_num(&x, &y);
        return cmp_bytes(a->str, a->len, b->str, b->len);
    }
    if ((a->type == WEIR_VAL_BOOL && b->type == WEIR_VAL_STR) ||
        (a->type == WEIR_VAL_STR && b->type == WEIR_VAL_BOOL)) {
        const unsigned char *pa, *pb;
        size_t na, nb;
        to_text(ev, a, &pa, &na); /* no scratch for text and bools */
        to_text(ev, b, &pb, &nb);
        return cmp_bytes(pa, na, pb, nb);
    }
    if (!to_num(ev, a, &x) || !to_num(ev, b, &y)) return CMP_NULL;
    return cmp_num(&x, &y);
}

static bool cmp_result(int op, int c)
{
    if (c == CMP_NULL) return false;
    switch (op) {
    case OP_EQ: return c == 0;
    case OP_NE: return c != 0;
    case OP_LT: return c < 0;
    case OP_LE: return c <= 0;
    case OP_GT: return c > 0;
    default: return c >= 0;
    }
}

/* ---- functions ---------------------------------------------------------------------------- */

/* A number argument as an integer, truncated toward zero, saturating. */
static bool to_int_arg(weir_eval *ev, const weir_value *v, int64_t *out)
{
    weir_value x;
    if (!to_num(ev, v, &x)) return false;
    if (x.is_int) *out = x.i;
    else if (x.num >= 9223372036854775807.0) *out = INT64_MAX;
    else if (x.num <= -9223372036854775807.0) *out = INT64_MIN;
    else *out = (int64_t)x.num;
    return true;
}

static int fn_case(weir_eval *ev, weir_value *r, bool upper)
{
    const unsigned char *p;
    size_t n;
    int rc = to_text(ev, r, &p, &n);
    if (rc <= 0) {
        if (rc == 0) set_null(r);
        return rc;
    }
    unsigned char lo = upper ? 'a' : 'A', hi = upper ? 'z' : 'Z';
    size_t i = 0;
    while (i < n && !(p[i] >= lo && p[i] <= hi)) i++;
    if (i == n) { /* nothing to change: keep the text where it is */
        set_str(r, p, n);
        return 0;
    }
    unsigned char *d = arena_alloc(ev, n);
    if (!d) return WEIR_ENOMEM;
    memcpy(d, p, i);
    for (; i < n; i++) d[i] = (p[i] >= lo && p[i] <= hi) ? (unsigned char)(p[i] ^ 0x20) : p[i];
    set_str(r, d, n);
    return 0;
}

static int fn_substr(weir_eval *ev, weir_value *a, uint16_t nargs)
{
    const unsigned char *p;
    size_t n;
    int64_t start, cnt = INT64_MAX;
    int rc = to_text(ev, &a[0], &p, &n);
    if (rc < 0) return rc;
    if (rc == 0 || !to_int_arg(ev, &a[1], &start) ||
        (nargs == 3 && !to_int_arg(ev, &a[2], &cnt))) {
        set_null(a);
        return 0;
    }
    uint64_t s = start < 0 ? 0 : (uint64_t)start;
    if (s > n) s = n;
    uint64_t k = cnt < 0 ? 0 : (uint64_t)cnt;
    if (k > n - s) k = n - s;
    set_str(a, p + s, (size_t)k);
    return 0;
}

static int fn_match(weir_eval *ev, weir_value *a, int fn)
{
    const unsigned char *p, *q;
    size_t n, m;
    int rc = to_text(ev, &a[0], &p, &n);
    if (rc > 0) rc = to_text(ev, &a[1], &q, &m);
    if (rc <= 0) {
        if (rc == 0) set_null(a);
        return rc;
    }
    bool r;
    if (m > n) r = false;
    else if (m == 0) r = true;
    else if (fn == FN_STARTS_WITH) r = memcmp(p, q, m) == 0;
    else if (fn == FN_ENDS_WITH) r = memcmp(p + n - m, q, m) == 0;
    else r = memmem(p, n, q, m) != NULL;
    set_bool(a, r);
    return 0;
}

static void fn_round(weir_eval *ev, weir_value *a, uint16_t nargs)
{
    weir_value x;
    int64_t d = 0;
    if (!to_num(ev, &a[0], &x) || (nargs == 2 && !to_int_arg(ev, &a[1], &d))) {
        set_null(a);
        return;
    }
    if (x.is_int) {
        if (d >= 0) {
            *a = x;
            return;
        }
        if (d < -18) { /* 10^19 > every int64 */
            set_int(a, 0);
            return;
        }
        int64_t p = 1;
        for (int64_t k = 0; k < -d; k++) p *= 10;
        int64_t q = x.i / p, rem = x.i % p;
        /* Half away from zero: |rem| >= p/2, written without overflow. */
        if (rem >= p - rem) q++;
        else if (-rem >= p + rem) q--;
        int64_t r;
        if (__builtin_mul_overflow(q, p, &r)) set_float(a, (double)q * (double)p);
        else set_int(a, r);
        return;
    }
    double v = x.num, r;
    if (d == 0) {
        r = round(v);
        if (r > -9223372036854775808.0 && r < 9223372036854775808.0) {
            set_int(a, (int64_t)r);
            return;
        }
    } else if (d > 0) {
        if (d > 340) d = 340;
        double p = num_pow10(d), s = v * p;
        r = isfinite(s) ? round(s) / p : v; /* too many digits: nothing to round */
    } else {
        if (d < -340) d = -340;
        double p = num_pow10(-d);
        r = isfinite(p) ? round(v / p) * p : 0;
    }
    set_float(a, r);
}

static int fn_concat(weir_eval *ev, weir_value *a, uint16_t nargs)
{
    size_t bound = 0;
    for (uint16_t k = 0; k < nargs; k++)
        bound += a[k].type == WEIR_VAL_STR ? a[k].len : NUM_TEXT_MAX;
    unsigned char *d = arena_alloc(ev, bound ? bound : 1);
    if (!d) return WEIR_ENOMEM;
    size_t n = 0;
    for (uint16_t k = 0; k < nargs; k++) {
        if (a[k].type == WEIR_VAL_STR) {
            if (a[k].len) memcpy(d + n, a[k].str, a[k].len);
            n += a[k].len;
        } else {
            n += fmt_scalar(&a[k], (char *)d + n);
        }
    }
    arena_trim(ev, d, n);
    set_str(a, d, n);
    return 0;
}

/* Call fn on a[0..nargs); the result goes to a[0]. */
static int call(weir_eval *ev, int fn, weir_value *a, uint16_t nargs)
{
    weir_value x;
    switch (fn) {
    case FN_LOWER: return fn_case(ev, a, false);
    case FN_UPPER: return fn_case(ev, a, true);
    case FN_LEN: {
        const unsigned char *p;
        size_t n;
        int rc = to_text(ev, a, &p, &n);
        if (rc < 0) return rc;
        if (rc == 0) set_null(a);
        else set_int(a, (int64_t)n);
        return 0;
    }
    case FN_SUBSTR: return fn_substr(ev, a, nargs);
    case FN_CONTAINS:
    case FN_STARTS_WITH:
    case FN_ENDS_WITH: return fn_match(ev, a, fn);
    case FN_INT:
        if (!to_num(ev, a, &x)) set_null(a);
        else if (x.is_int) *a = x;
        else if (x.num >= -9223372036854775808.0 && x.num < 9223372036854775808.0)
            set_int(a, (int64_t)x.num);
        else set_null(a);
        return 0;
    case FN_FLOAT:
        if (!to_num(ev, a, &x)) set_null(a);
        else set_float(a, x.num);
        return 0;
    case FN_ROUND: fn_round(ev, a, nargs); return 0;
    case FN_ABS:
        if (!to_num(ev, a, &x)) set_null(a);
        else if (!x.is_int) set_float(a, fabs(x.num));
        else if (x.i == INT64_MIN) set_float(a, -(double)INT64_MIN);
        else set_int(a, x.i < 0 ? -x.i : x.i);
        return 0;
    case FN_CONCAT: return fn_concat(ev, a, nargs);
    }
    return WEIR_EINVAL;
}

/* ---- running ------------------------------------------------------------------------------- */

static int run_row(weir_eval *ev, const weir_batch *b, uint32_t row, weir_value *res)
{
    weir_value *sp = ev->stack; /* the next free slot */
    const ins *code = ev->code;
    size_t n = ev->ncode;
    for (size_t pc = 0; pc < n; pc++) {
        const ins *in = &code[pc];
        switch (in->op) {
        case OP_CONST: *sp++ = ev->consts[in->a]; break;
        case OP_COL: {
            const weir_field *f = &b->fields[(size_t)row * b->ncols + in->a];
            set_str(sp++, b->data + f->off, f->len);
            break;
        }
        case OP_NEG: {
            weir_value x;
            if (!to_num(ev, &sp[-1], &x)) set_null(&sp[-1]);
            else if (x.is_int && x.i != INT64_MIN) set_int(&sp[-1], -x.i);
            else set_float(&sp[-1], -x.num);
            break;
        }
        case OP_NOT: set_bool(&sp[-1], !weir_value_truth(&sp[-1])); break;
        case OP_ADD: case OP_SUB: case OP_MUL: case OP_DIV: case OP_MOD:
            sp--;
            arith(ev, &sp[-1], sp, in->op);
            break;
        case OP_EQ: case OP_NE: case OP_LT: case OP_LE: case OP_GT: case OP_GE:
            sp--;
            set_bool(&sp[-1], cmp_result(in->op, compare(ev, &sp[-1], sp)));
            break;
        case OP_AND:
        case OP_OR: {
            bool t = weir_value_truth(&sp[-1]);
            if (t == (in->op == OP_OR)) {
                set_bool(&sp[-1], t);
                pc = in->a - 1;
            } else {
                sp--;
            }
            break;
        }
        case OP_TRUTH: set_bool(&sp[-1], weir_value_truth(&sp[-1])); break;
        case OP_JFALSE:
            sp--;
            if (!weir_value_truth(sp)) pc = in->a - 1;
            break;
        case OP_JMP: pc = in->a - 1; break;
        case OP_PRESENT:
            if (present(&sp[-1])) pc = in->a - 1;
            else sp--;
            break;
        case OP_MISSING:
            if (!present(&sp[-1])) set_null(&sp[-1]);
            break;
        case OP_CALL: {
            sp -= in->nargs;
            int rc = call(ev, in->fn, sp, in->nargs);
            if (rc) return rc;
            sp++;
            break;
        }
        }
    }
    *res = sp[-1];
    return 0;
}

int weir_eval_batch(weir_eval *ev, const weir_batch *b, weir_value *out)
{
    if (ev->uses_cols && (b->kind != WEIR_KIND_ROWS || b->ncols != ev->ncols))
        return WEIR_EINVAL;
    arena_reset(ev);
    for (uint32_t r = 0; r < b->nrows; r++) WEIR__TRY(run_row(ev, b, r, &out[r]));
    return 0;
}

int weir_eval_const(weir_eval *ev, weir_value *out)
{
    if (ev->uses_cols) return WEIR_EINVAL;
    arena_reset(ev);
    return run_row(ev, NULL, 0, out);
}

/* ---- compiling ------------------------------------------------------------------------------- */

typedef struct compiler {
    weir_eval *ev;
    const weir_schema *schema;
    char *err;
    size_t errsize;
} compiler;

static int cerr(compiler *C, const weir_expr *e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int cerr(compiler *C, const weir_expr *e, const char *fmt, ...)
{
    if (C->err && C->errsize) {
        int n = snprintf(C->err, C->errsize, "%s:%u:%u: ",
                         e->pos.file ? e->pos.file : "<expr>", e->pos.line, e->pos.col);
        if (n >= 0 && (size_t)n < C->errsize) {
            va_list ap;
            va_start(ap, fmt);
            weir__vfmt(C->err + n, C->errsize - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return WEIR_ESPEC;
}

static inline int lc(int c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

/* Do a and b differ by at most one edit (insert, delete, replace, or swap
 * of neighbours), ignoring ASCII case? */
static bool near_miss(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > lb) {
        const char *t = a;
        a = b;
        b = t;
        size_t tl = la;
        la = lb;
        lb = tl;
    }
    if (lb - la > 1) return false;
    size_t i = 0;
    while (i < la && lc((unsigned char)a[i]) == lc((unsigned char)b[i])) i++;
    if (i == la) return true;
    if (la < lb) return strcasecmp(a + i, b + i + 1) == 0;
    if (strcasecmp(a + i + 1, b + i + 1) == 0) return true;
    return i + 1 < la && lc((unsigned char)a[i]) == lc((unsigned char)b[i + 1]) &&
           lc((unsigned char)a[i + 1]) == lc((unsigned char)b[i]) &&
           strcasecmp(a + i + 2, b + i + 2) == 0;
}

/* " (did you mean 'y'?)" for the closest candidate, or "". Same name up to
 * case first, then one edit away. */
static void suggest(const char *name, const char *const *cands, size_t n, char *buf,
                    size_t size)
{
    const char *best = NULL;
    for (size_t i = 0; i < n && !best; i++)
        if (strcasecmp(cands[i], name) == 0) best = cands[i];
    for (size_t i = 0; i < n && !best; i++)
        if (near_miss(cands[i], name)) best = cands[i];
    if (best) snprintf(buf, size, " (did you mean '%s'?)", best);
    else if (size) buf[0] = '\0';
}

static int emit(compiler *C, int op, int fn, size_t nargs, uint32_t a)
{
    weir_eval *ev = C->ev;
    if (ev->ncode == ev->capcode) {
        size_t cap = ev->capcode ? ev->capcode * 2 : 32;
        ins *nc = realloc(ev->code, cap * sizeof *nc);
        if (!nc) return WEIR_ENOMEM;
        ev->code = nc;
        ev->capcode = cap;
    }
    ev->code[ev->ncode++] = (ins){(uint8_t)op, (uint8_t)fn, (uint16_t)nargs, a};
    return 0;
}

/* Stack bookkeeping: the program's deepest point sizes the stack. */
static void push(compiler *C, size_t k)
{
    C->ev->depth += k;
    if (C->ev->depth > C->ev->max_depth) C->ev->max_depth = C->ev->depth;
}

static int add_const(compiler *C, const weir_value *v)
{
    weir_eval *ev = C->ev;
    if (ev->nconsts == ev->capconsts) {
        size_t cap = ev->capconsts ? ev->capconsts * 2 : 8;
        weir_value *nc = realloc(ev->consts, cap * sizeof *nc);
        if (!nc) return WEIR_ENOMEM;
        ev->consts = nc;
        ev->capconsts = cap;
    }
    ev->consts[ev->nconsts] = *v;
    WEIR__TRY(emit(C, OP_CONST, 0, 0, (uint32_t)ev->nconsts));
    ev->nconsts++;
    push(C, 1);
    return 0;
}

static int add_str_const(compiler *C, const weir_expr *e)
{
    weir_eval *ev = C->ev;
    char **no = realloc(ev->owned, (ev->nowned + 1) * sizeof *no);
    if (!no) return WEIR_ENOMEM;
    ev->owned = no;
    char *copy = malloc(e->len + 1);
    if (!copy) return WEIR_ENOMEM;
    if (e->len) memcpy(copy, e->str, e->len);
    copy[e->len] = '\0';
    ev->owned[ev->nowned++] = copy;
    weir_value v;
    set_str(&v, (const unsigned char *)copy, e->len);
    return add_const(C, &v);
}

static int compile_col(compiler *C, const weir_expr *e)
{
    int c = C->schema ? weir_schema_find(C->schema, e->str) : WEIR_ENOTFOUND;
    if (c < 0) {
        char hint[300] = "";
        size_t n = C->schema ? weir_schema_ncols(C->schema) : 0;
        const char **names = n ? malloc(n * sizeof *names) : NULL;
        if (names) {
            for (size_t i = 0; i < n; i++) names[i] = weir_schema_name(C->schema, i);
            suggest(e->str, names, n, hint, sizeof hint);
            free(names);
        }
        return cerr(C, e, "unknown column '%s'%s", e->str, hint);
    }
    C->ev->uses_cols = true;
    WEIR__TRY(emit(C, OP_COL, 0, 0, (uint32_t)c));
    push(C, 1);
    return 0;
}

static size_t here(compiler *C) { return C->ev->ncode; }
static void patch(compiler *C, size_t at) { C->ev->code[at].a = (uint32_t)C->ev->ncode; }

static int compile(compiler *C, const weir_expr *e, int depth);

static int compile_call(compiler *C, const weir_expr *e, int depth)
{
    const struct fn_def *f = NULL;
    for (size_t i = 0; i < NFNS && !f; i++)
        if (strcmp(fns[i].name, e->str) == 0) f = &fns[i];
    if (!f) {
        const char *names[NFNS];
        char hint[300];
        for (size_t i = 0; i < NFNS; i++) names[i] = fns[i].name;
        suggest(e->str, names, NFNS, hint, sizeof hint);
        return cerr(C, e, "unknown function '%s'%s", e->str, hint);
    }
    if (e->nargs < f->min || (f->max && e->nargs > f->max) || e->nargs > UINT16_MAX) {
        char want[64];
        if (f->max == 0) snprintf(want, sizeof want, "at least %u argument%s", f->min,
                                  f->min == 1 ? "" : "s");
        else if (f->min == f->max) snprintf(want, sizeof want, "%u argument%s", f->min,
                                            f->min == 1 ? "" : "s");
        else snprintf(want, sizeof want, "%u to %u arguments", f->min, f->max);
        return cerr(C, e, "%s() takes %s, not %zu", f->name, want, e->nargs);
    }
    weir_eval *ev = C->ev;
    size_t base = ev->depth;
    if (f->id == FN_IF) {
        WEIR__TRY(compile(C, e->args[0], depth + 1));
        size_t jf = here(C);
        WEIR__TRY(emit(C, OP_JFALSE, 0, 0, 0));
        ev->depth = base;
        WEIR__TRY(compile(C, e->args[1], depth + 1));
        size_t jend = here(C);
        WEIR__TRY(emit(C, OP_JMP, 0, 0, 0));
        patch(C, jf);
        ev->depth = base;
        WEIR__TRY(compile(C, e->args[2], depth + 1));
        patch(C, jend);
        return 0;
    }
    if (f->id == FN_COALESCE) {
        /* Each argument but the last jumps to the end when present; the
         * jump targets are patched once the end is known. */
        size_t first = here(C);
        for (size_t k = 0; k < e->nargs; k++) {
            ev->depth = base;
            WEIR__TRY(compile(C, e->args[k], depth + 1));
            if (k + 1 < e->nargs) WEIR__TRY(emit(C, OP_PRESENT, 0, 0, 0));
        }
        WEIR__TRY(emit(C, OP_MISSING, 0, 0, 0));
        for (size_t i = first; i < here(C); i++)
            if (ev->code[i].op == OP_PRESENT && ev->code[i].a == 0) patch(C, i);
        return 0;
    }
    for (size_t k = 0; k < e->nargs; k++) WEIR__TRY(compile(C, e->args[k], depth + 1));
    WEIR__TRY(emit(C, OP_CALL, f->id, e->nargs, 0));
    ev->depth = base + 1;
    return 0;
}

static int compile(compiler *C, const weir_expr *e, int depth)
{
    if (depth > EXPR_MAX_DEPTH)
        return cerr(C, e, "expression nested too deeply (over %d levels)", EXPR_MAX_DEPTH);
    weir_value v;
    switch (e->kind) {
    case WEIR_EXPR_NUM:
        if (e->is_int) set_int(&v, e->ival);
        else if (!isfinite(e->num)) return cerr(C, e, "number out of range");
        else set_float(&v, e->num);
        return add_const(C, &v);
    case WEIR_EXPR_STR: return add_str_const(C, e);
    case WEIR_EXPR_BOOL:
        set_bool(&v, e->ival != 0);
        return add_const(C, &v);
    case WEIR_EXPR_COL: return compile_col(C, e);
    case WEIR_EXPR_LIST: return cerr(C, e, "a list is not a value here");
    case WEIR_EXPR_CALL: return compile_call(C, e, depth);
    case WEIR_EXPR_UNARY:
        if (e->nargs != 1) break;
        WEIR__TRY(compile(C, e->args[0], depth + 1));
        return emit(C, e->op == WEIR_OP_NOT ? OP_NOT : OP_NEG, 0, 0, 0);
    case WEIR_EXPR_BINARY: {
        if (e->nargs != 2) break;
        static const uint8_t ops[] = {
            [WEIR_OP_ADD] = OP_ADD, [WEIR_OP_SUB] = OP_SUB, [WEIR_OP_MUL] = OP_MUL,
            [WEIR_OP_DIV] = OP_DIV, [WEIR_OP_MOD] = OP_MOD, [WEIR_OP_EQ] = OP_EQ,
            [WEIR_OP_NE] = OP_NE,   [WEIR_OP_LT] = OP_LT,   [WEIR_OP_LE] = OP_LE,
            [WEIR_OP_GT] = OP_GT,   [WEIR_OP_GE] = OP_GE,   [WEIR_OP_AND] = OP_AND,
            [WEIR_OP_OR] = OP_OR,
        };
        if ((size_t)e->op >= sizeof ops || !ops[e->op]) break;
        WEIR__TRY(compile(C, e->args[0], depth + 1));
        if (e->op == WEIR_OP_AND || e->op == WEIR_OP_OR) {
            size_t j = here(C);
            WEIR__TRY(emit(C, ops[e->op], 0, 0, 0));
            C->ev->depth--;
            WEIR__TRY(compile(C, e->args[1], depth + 1));
            WEIR__TRY(emit(C, OP_TRUTH, 0, 0, 0));
            patch(C, j);
            return 0;
        }
        WEIR__TRY(compile(C, e->args[1], depth + 1));
        C->ev->depth--;
        return emit(C, ops[e->op], 0, 0, 0);
    }
    }
    return cerr(C, e, "malformed expression");
}

void weir_eval_destroy(weir_eval *ev)
{
    if (!ev) return;
    for (size_t i = 0; i < ev->nowned; i++) free(ev->owned[i]);
    free(ev->owned);
    free(ev->code);
    free(ev->consts);
    free(ev->stack);
    for (blk *b = ev->first, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    free(ev);
}

int weir_eval_create(weir_eval **out, const weir_expr *e, const weir_schema *schema,
                     char *err, size_t errsize)
{
    *out = NULL;
    if (err && errsize) err[0] = '\0';
    if (!e) return WEIR_EINVAL;
    weir_eval *ev = calloc(1, sizeof *ev);
    if (!ev) return WEIR_ENOMEM;
    ev->ncols = schema ? weir_schema_ncols(schema) : 0;
    compiler C = {ev, schema, err, errsize};
    int rc = compile(&C, e, 0);
    if (rc == 0) {
        ev->stack = malloc((ev->max_depth ? ev->max_depth : 1) * sizeof *ev->stack);
        if (!ev->stack) rc = WEIR_ENOMEM;
    }
    if (rc) {
        if (rc == WEIR_ENOMEM && err && errsize) snprintf(err, errsize, "out of memory");
        weir_eval_destroy(ev);
        return rc;
    }
    *out = ev;
    return 0;
}

/*
 * spec.c — the spec language: lexer, expression parser, and the compiler
 * from statements to a graph.
 *
 *   spec    := { stmt (NEWLINE | ';') }
 *   stmt    := 'let' NAME '=' chain | chain
 *   chain   := call { '|' call }          a newline before or after '|' is fine
 *   call    := NAME '(' [arg {',' arg} [',']] ')' | NAME (a stream, first only)
 *   arg     := NAME '=' expr | expr
 *   expr    := or;  or := and {'||' and};  and := cmp {'&&' cmp}
 *   cmp     := add [('=='|'!='|'<'|'<='|'>'|'>=') add]
 *   add     := mul {('+'|'-') mul};  mul := unary {('*'|'/'|'%') unary}
 *   unary   := ('!'|'-') unary | primary
 *   primary := NUMBER | STRING | true | false | $NAME | `quoted name`
 *            | NAME ['(' [expr {',' expr}] ')'] | '[' [expr {',' expr}] ']'
 *            | '(' expr ')'
 *
 * Newlines inside parentheses and brackets are white space. Recursion is
 * bounded (MAX_DEPTH) so hostile nesting is an error, not a stack overflow.
 */
#include "graph.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 200    /* parser recursion */
#define MAX_HEIGHT 1000  /* tree height: a+b+c+… grows it without recursion */

typedef enum tok_kind {
    T_EOF, T_NEWLINE, T_NAME, T_NUM, T_STR, T_QNAME, T_VAR,
    T_LPAREN, T_RPAREN, T_LBRACK, T_RBRACK, T_COMMA, T_PIPE, T_SEMI,
    T_ASSIGN, T_EQ, T_NE, T_LT, T_LE, T_GT, T_GE, T_AND, T_OR, T_NOT,
    T_PLUS, T_MINUS, T_STAR, T_SLASH, T_PERCENT,
} tok_kind;

typedef struct tok {
    tok_kind kind;
    uint32_t line, col;
    const char *start; /* in the source */
    size_t len;
    char *text;        /* T_STR / T_NAME / T_QNAME / T_VAR: decoded, malloc'd */
    size_t tlen;
} tok;

typedef struct parser {
    const char *src, *end, *p;
    const char *file;
    uint32_t line;
    const char *line_start;
    int nest;          /* ( and [ depth: newlines inside are blanks */
    int depth;         /* recursion depth */
    tok cur;
    bool have;
    char *err;
    size_t errsize;
    int rc;
    const weir_spec_opts *opts;
} parser;

static void perr(parser *P, uint32_t line, uint32_t col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void perr(parser *P, uint32_t line, uint32_t col, const char *fmt, ...)
{
    if (P->rc) return; /* keep the first error */
    P->rc = WEIR_ESPEC;
    if (!P->err || !P->errsize) return;
    int k = snprintf(P->err, P->errsize, "%s:%u:%u: ", P->file, line, col);
    if (k < 0 || (size_t)k >= P->errsize) return;
    va_list ap;
    va_start(ap, fmt);
    weir__vfmt(P->err + k, P->errsize - (size_t)k, fmt, ap);
    va_end(ap);
}

static void oom(parser *P)
{
    if (P->rc) return;
    P->rc = WEIR_ENOMEM;
    if (P->err && P->errsize) snprintf(P->err, P->errsize, "out of memory");
}

/* ---- lexer ------------------------------------------------------------------------ */

static bool is_name_start(int c) { return isalpha(c) || c == '_'; }
static bool is_name_char(int c) { return isalnum(c) || c == '_'; }

static const char *tok_name(tok_kind k)
{
    switch (k) {
    case T_EOF: return "end of input";
    case T_NEWLINE: return "end of line";
    case T_NAME: return "a name";
    case T_NUM: return "a number";
    case T_STR: return "a string";
    case T_QNAME: return "a quoted name";
    case T_VAR: return "a $variable";
    case T_LPAREN: return "'('";
    case T_RPAREN: return "')'";
    case T_LBRACK: return "'['";
    case T_RBRACK: return "']'";
    case T_COMMA: return "','";
    case T_PIPE: return "'|'";
    case T_SEMI: return "';'";
    case T_ASSIGN: return "'='";
    default: return "an operator";
    }
}

static void lex(parser *P, tok *t)
{
    *t = (tok){0};
    for (;;) {
        while (P->p < P->end && (*P->p == ' ' || *P->p == '\t' || *P->p == '\r' ||
                                 (*P->p == '\n' && P->nest > 0))) {
            if (*P->p == '\n') {
                P->line++;
                P->line_start = P->p + 1;
            }
            P->p++;
        }
        if (P->p < P->end && *P->p == '#') {
            while (P->p < P->end && *P->p != '\n') P->p++;
            continue;
        }
        break;
    }
    t->line = P->line;
    t->col = (uint32_t)(P->p - P->line_start) + 1;
    t->start = P->p;
    if (P->p >= P->end) {
        t->kind = T_EOF;
        return;
    }
    const char *s = P->p;
    int c = (unsigned char)*s;
    if (c == '\n') {
        P->p++;
        P->line++;
        P->line_start = P->p;
        t->kind = T_NEWLINE;
        t->len = 1;
        return;
    }
    if (is_name_start(c) || c == '$') {
        const char *q = s + (c == '$');
        if (c == '$' && (q >= P->end || !is_name_start((unsigned char)*q))) {
            perr(P, t->line, t->col, "'$' must be followed by a variable name");
            t->kind = T_EOF;
            return;
        }
        while (q < P->end && is_name_char((unsigned char)*q)) q++;
        t->kind = c == '$' ? T_VAR : T_NAME;
        const char *ns = s + (c == '$');
        t->text = strndup(ns, (size_t)(q - ns));
        if (!t->text) oom(P);
        t->tlen = (size_t)(q - ns);
        P->p = q;
    } else if (isdigit(c) || (c == '.' && s + 1 < P->end && isdigit((unsigned char)s[1]))) {
        const char *q = s;
        while (q < P->end && isdigit((unsigned char)*q)) q++;
        if (q < P->end && *q == '.') {
            q++;
            while (q < P->end && isdigit((unsigned char)*q)) q++;
        }
        if (q < P->end && (*q == 'e' || *q == 'E')) {
            const char *e = q + 1;
            if (e < P->end && (*e == '+' || *e == '-')) e++;
            if (e < P->end && isdigit((unsigned char)*e)) {
                q = e;
                while (q < P->end && isdigit((unsigned char)*q)) q++;
            }
        }
        if (q < P->end && is_name_char((unsigned char)*q)) {
            perr(P, t->line, t->col, "malformed number '%.*s'",
                 (int)(q - s + 1), s);
            t->kind = T_EOF;
            return;
        }
        t->kind = T_NUM;
        P->p = q;
    } else if (c == '"' || c == '`') {
        /* Strings take \" \\ \n \t; quoted names take \` and \\. */
        char *buf = malloc((size_t)(P->end - s) + 1);
        if (!buf) {
            oom(P);
            t->kind = T_EOF;
            return;
        }
        size_t n = 0;
        const char *q = s + 1;
        for (;;) {
            if (q >= P->end || *q == '\n') {
                free(buf);
                perr(P, t->line, t->col, c == '"' ? "unterminated string"
                                                  : "unterminated quoted name");
                t->kind = T_EOF;
                return;
            }
            if (*q == c) break;
            if (*q == '\\') {
                char e = q + 1 < P->end ? q[1] : '\0';
                char v = e == 'n' && c == '"' ? '\n'
                       : e == 't' && c == '"' ? '\t'
                       : e == '\\' || e == c ? e : 0;
                if (!v) {
                    free(buf);
                    perr(P, t->line, (uint32_t)(q - P->line_start) + 1,
                         "unknown escape '\\%c'", e ? e : ' ');
                    t->kind = T_EOF;
                    return;
                }
                buf[n++] = v;
                q += 2;
                continue;
            }
            buf[n++] = *q++;
        }
        buf[n] = '\0';
        t->kind = c == '"' ? T_STR : T_QNAME;
        t->text = buf;
        t->tlen = n;
        P->p = q + 1;
    } else {
        static const struct { const char *s; tok_kind k; } ops[] = {
            {"==", T_EQ}, {"!=", T_NE}, {"<=", T_LE}, {">=", T_GE}, {"&&", T_AND},
            {"||", T_OR}, {"(", T_LPAREN}, {")", T_RPAREN}, {"[", T_LBRACK},
            {"]", T_RBRACK}, {",", T_COMMA}, {"|", T_PIPE}, {";", T_SEMI},
            {"=", T_ASSIGN}, {"<", T_LT}, {">", T_GT}, {"!", T_NOT}, {"+", T_PLUS},
            {"-", T_MINUS}, {"*", T_STAR}, {"/", T_SLASH}, {"%", T_PERCENT},
        };
        size_t i;
        for (i = 0; i < sizeof ops / sizeof *ops; i++) {
            size_t l = strlen(ops[i].s);
            if ((size_t)(P->end - s) >= l && memcmp(s, ops[i].s, l) == 0) break;
        }
        if (i == sizeof ops / sizeof *ops) {
            if (c >= 0x20 && c < 0x7f)
                perr(P, t->line, t->col, "unexpected character '%c'", c);
            else
                perr(P, t->line, t->col, "unexpected byte 0x%02x", c);
            t->kind = T_EOF;
            return;
        }
        t->kind = ops[i].k;
        P->p = s + strlen(ops[i].s);
        if (t->kind == T_LPAREN || t->kind == T_LBRACK) P->nest++;
        if ((t->kind == T_RPAREN || t->kind == T_RBRACK) && P->nest > 0) P->nest--;
    }
    t->len = (size_t)(P->p - s);
}

static tok *peek(parser *P)
{
    if (!P->have) {
        lex(P, &P->cur);
        P->have = true;
    }
    return &P->cur;
}

/* Take the current token; the caller owns its text. */
static tok take(parser *P)
{
    peek(P);
    P->have = false;
    return P->cur;
}

static void drop(parser *P)
{
    tok t = take(P);
    free(t.text);
}

static bool accept(parser *P, tok_kind k)
{
    if (peek(P)->kind != k) return false;
    drop(P);
    return true;
}

static bool expect(parser *P, tok_kind k, const char *what)
{
    tok *t = peek(P);
    if (t->kind == k) {
        drop(P);
        return true;
    }
    perr(P, t->line, t->col, "expected %s, found %s", what,
         t->kind == T_NAME ? "a name" : tok_name(t->kind));
    return false;
}

/* ---- expression trees --------------------------------------------------------------- */

static weir_expr *node(parser *P, weir_expr_kind k, const tok *at)
{
    weir_expr *e = calloc(1, sizeof *e);
    if (!e) {
        oom(P);
        return NULL;
    }
    e->kind = k;
    e->pos = (weir_pos){P->file, at->line, at->col};
    e->depth = 1;
    return e;
}

static bool add_arg(parser *P, weir_expr *e, weir_expr *a)
{
    weir_expr **na = realloc(e->args, (e->nargs + 1) * sizeof *na);
    if (!na) {
        weir_expr_destroy(a);
        oom(P);
        return false;
    }
    e->args = na;
    e->args[e->nargs++] = a;
    if (a->depth + 1 > e->depth) e->depth = a->depth + 1;
    /* Trees are walked recursively (clone, destroy, compile): keep them
     * shallow enough for any stack. */
    if (e->depth > MAX_HEIGHT)
        perr(P, e->pos.line, e->pos.col, "expression nested too deeply (over %d levels)",
             MAX_HEIGHT);
    return true;
}

void weir_expr_destroy(weir_expr *e)
{
    if (!e) return;
    for (size_t i = 0; i < e->nargs; i++) weir_expr_destroy(e->args[i]);
    free(e->args);
    free(e->str);
    free(e);
}

weir_expr *weir_expr_clone(const weir_expr *e)
{
    weir_expr *c = malloc(sizeof *c);
    if (!c) return NULL;
    *c = *e;
    c->str = NULL;
    c->args = NULL;
    c->nargs = 0;
    if (e->str) {
        c->str = malloc(e->len + 1);
        if (!c->str) goto fail;
        memcpy(c->str, e->str, e->len + 1);
    }
    if (e->nargs) {
        c->args = calloc(e->nargs, sizeof *c->args);
        if (!c->args) goto fail;
        for (size_t i = 0; i < e->nargs; i++) {
            c->args[i] = weir_expr_clone(e->args[i]);
            c->nargs = i + 1;
            if (!c->args[i]) goto fail;
        }
    }
    return c;
fail:
    weir_expr_destroy(c);
    return NULL;
}

static weir_expr *parse_expr(parser *P);

static weir_expr *parse_primary(parser *P)
{
    tok *t = peek(P);
    if (P->rc) return NULL;
    tok at = *t;
    switch (t->kind) {
    case T_NUM: {
        drop(P);
        weir_expr *e = node(P, WEIR_EXPR_NUM, &at);
        if (!e) return NULL;
        char buf[128];
        size_t l = at.len < sizeof buf - 1 ? at.len : sizeof buf - 1;
        memcpy(buf, at.start, l);
        buf[l] = '\0';
        e->num = strtod(buf, NULL);
        if (!strpbrk(buf, ".eE")) {
            errno = 0;
            long long v = strtoll(buf, NULL, 10);
            if (errno == 0) {
                e->is_int = true;
                e->ival = v;
            }
        }
        return e;
    }
    case T_STR:
    case T_QNAME: {
        tok s = take(P);
        weir_expr *e = node(P, s.kind == T_STR ? WEIR_EXPR_STR : WEIR_EXPR_COL, &s);
        if (!e) {
            free(s.text);
            return NULL;
        }
        e->str = s.text;
        e->len = s.tlen;
        return e;
    }
    case T_VAR: {
        tok v = take(P);
        const char *val = NULL;
        const weir_spec_opts *o = P->opts;
        for (size_t i = 0; o && i < o->nvars; i++) {
            const char *eq = strchr(o->vars[i], '=');
            if (eq && (size_t)(eq - o->vars[i]) == v.tlen &&
                memcmp(o->vars[i], v.text, v.tlen) == 0)
                val = eq + 1; /* the last --var of a name wins */
        }
        if (!val) {
            perr(P, v.line, v.col, "undefined variable '$%s' (set it with --var %s=…)",
                 v.text, v.text);
            free(v.text);
            return NULL;
        }
        free(v.text);
        weir_expr *e = node(P, WEIR_EXPR_STR, &v);
        if (!e) return NULL;
        e->len = strlen(val);
        if (!(e->str = strdup(val))) {
            weir_expr_destroy(e);
            oom(P);
            return NULL;
        }
        return e;
    }
    case T_NAME: {
        tok n = take(P);
        if (strcmp(n.text, "true") == 0 || strcmp(n.text, "false") == 0) {
            weir_expr *e = node(P, WEIR_EXPR_BOOL, &n);
            if (e) e->ival = n.text[0] == 't';
            free(n.text);
            return e;
        }
        bool call = peek(P)->kind == T_LPAREN;
        weir_expr *e = node(P, call ? WEIR_EXPR_CALL : WEIR_EXPR_COL, &n);
        if (!e) {
            free(n.text);
            return NULL;
        }
        e->str = n.text;
        e->len = n.tlen;
        if (!call) return e;
        drop(P); /* ( */
        if (!accept(P, T_RPAREN)) {
            do {
                weir_expr *a = parse_expr(P);
                if (!a || !add_arg(P, e, a)) goto fail_call;
            } while (accept(P, T_COMMA) && peek(P)->kind != T_RPAREN);
            if (!expect(P, T_RPAREN, "',' or ')'")) goto fail_call;
        }
        return e;
    fail_call:
        weir_expr_destroy(e);
        return NULL;
    }
    case T_LBRACK: {
        drop(P);
        weir_expr *e = node(P, WEIR_EXPR_LIST, &at);
        if (!e) return NULL;
        if (!accept(P, T_RBRACK)) {
            do {
                weir_expr *a = parse_expr(P);
                if (!a || !add_arg(P, e, a)) {
                    weir_expr_destroy(e);
                    return NULL;
                }
            } while (accept(P, T_COMMA) && peek(P)->kind != T_RBRACK);
            if (!expect(P, T_RBRACK, "',' or ']'")) {
                weir_expr_destroy(e);
                return NULL;
            }
        }
        return e;
    }
    case T_LPAREN: {
        drop(P);
        weir_expr *e = parse_expr(P);
        if (e && !expect(P, T_RPAREN, "')'")) {
            weir_expr_destroy(e);
            return NULL;
        }
        return e;
    }
    default:
        perr(P, at.line, at.col, "expected a value, found %s", tok_name(at.kind));
        return NULL;
    }
}

static weir_expr *parse_unary(parser *P)
{
    tok *t = peek(P);
    if (t->kind == T_NOT || t->kind == T_MINUS) {
        tok at = take(P);
        if (++P->depth > MAX_DEPTH) {
            perr(P, at.line, at.col, "expression nested too deeply (over %d levels)",
                 MAX_DEPTH);
            return NULL;
        }
        weir_expr *a = parse_unary(P);
        P->depth--;
        if (!a) return NULL;
        /* Fold -NUMBER into a literal, so -5 is a constant. */
        if (at.kind == T_MINUS && a->kind == WEIR_EXPR_NUM &&
            (!a->is_int || a->ival != INT64_MIN)) {
            a->num = -a->num;
            a->ival = -a->ival;
            a->pos.col = at.col;
            return a;
        }
        weir_expr *e = node(P, WEIR_EXPR_UNARY, &at);
        if (!e) {
            weir_expr_destroy(a);
            return NULL;
        }
        e->op = at.kind == T_NOT ? WEIR_OP_NOT : WEIR_OP_NEG;
        add_arg(P, e, a);
        return e;
    }
    return parse_primary(P);
}

/* Binary levels, loosest first. */
static const struct level {
    tok_kind toks[6];
    weir_op ops[6];
    bool chain; /* a op b op c allowed (comparisons are not) */
} levels[] = {
    {{T_OR}, {WEIR_OP_OR}, true},
    {{T_AND}, {WEIR_OP_AND}, true},
    {{T_EQ, T_NE, T_LT, T_LE, T_GT, T_GE},
     {WEIR_OP_EQ, WEIR_OP_NE, WEIR_OP_LT, WEIR_OP_LE, WEIR_OP_GT, WEIR_OP_GE}, false},
    {{T_PLUS, T_MINUS}, {WEIR_OP_ADD, WEIR_OP_SUB}, true},
    {{T_STAR, T_SLASH, T_PERCENT}, {WEIR_OP_MUL, WEIR_OP_DIV, WEIR_OP_MOD}, true},
};
#define NLEVELS (sizeof levels / sizeof *levels)

static weir_expr *parse_level(parser *P, size_t lv)
{
    if (lv == NLEVELS) return parse_unary(P);
    weir_expr *l = parse_level(P, lv + 1);
    while (l) {
        tok *t = peek(P);
        weir_op op = WEIR_OP_NONE;
        for (int i = 0; i < 6 && levels[lv].ops[i]; i++)
            if (levels[lv].toks[i] == t->kind) op = levels[lv].ops[i];
        if (op == WEIR_OP_NONE) break;
        tok at = take(P);
        weir_expr *r = parse_level(P, lv + 1);
        if (!r) {
            weir_expr_destroy(l);
            return NULL;
        }
        weir_expr *e = node(P, WEIR_EXPR_BINARY, &at);
        if (!e) {
            weir_expr_destroy(l);
            weir_expr_destroy(r);
            return NULL;
        }
        e->op = op;
        e->pos = l->pos; /* an operation is where its left operand starts */
        add_arg(P, e, l);
        add_arg(P, e, r);
        l = e;
        if (P->rc) {
            weir_expr_destroy(l);
            return NULL;
        }
        if (!levels[lv].chain) {
            tok *n = peek(P);
            for (int i = 0; i < 6 && levels[lv].ops[i]; i++) {
                if (levels[lv].toks[i] == n->kind) {
                    perr(P, n->line, n->col,
                         "comparisons do not chain: use && (a < b && b < c)");
                    weir_expr_destroy(l);
                    return NULL;
                }
            }
        }
    }
    return l;
}

static weir_expr *parse_expr(parser *P)
{
    if (++P->depth > MAX_DEPTH) {
        tok *t = peek(P);
        perr(P, t->line, t->col, "expression nested too deeply (over %d levels)",
             MAX_DEPTH);
        return NULL;
    }
    weir_expr *e = parse_level(P, 0);
    P->depth--;
    return e;
}

static void parser_init(parser *P, const char *text, size_t len, const char *file,
                        const weir_spec_opts *opts, char *err, size_t errsize)
{
    *P = (parser){.src = text, .end = text + len, .p = text, .file = file,
                  .line = 1, .line_start = text, .err = err, .errsize = errsize,
                  .opts = opts};
    if (err && errsize) err[0] = '\0';
    /* A UTF-8 byte order mark is not part of the text. */
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) {
        P->p += 3;
        P->line_start = P->p;
    }
}

static void parser_fini(parser *P)
{
    if (P->have) free(P->cur.text);
    P->have = false;
}

int weir_expr_parse(weir_expr **out, const char *text, const char *file, char *err,
                    size_t errsize)
{
    parser P;
    parser_init(&P, text, strlen(text), file ? file : "<expr>", NULL, err, errsize);
    P.nest = 1; /* a lone expression may span lines */
    weir_expr *e = parse_expr(&P);
    if (e && !P.rc) {
        tok *t = peek(&P);
        if (t->kind != T_EOF)
            perr(&P, t->line, t->col, "unexpected %s after the expression",
                 tok_name(t->kind));
    }
    parser_fini(&P);
    if (P.rc) {
        weir_expr_destroy(e);
        *out = NULL;
        return P.rc;
    }
    *out = e;
    return 0;
}

/* ---- formatting ------------------------------------------------------------------------ */

typedef struct fbuf {
    char *p;
    size_t size, len;
} fbuf;

static void fput(fbuf *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++, b->len++)
        if (b->len + 1 < b->size) b->p[b->len] = s[i];
    if (b->size) b->p[b->len < b->size ? b->len : b->size - 1] = '\0';
}

static void fputs_(fbuf *b, const char *s) { fput(b, s, strlen(s)); }

static const char *op_text(weir_op op)
{
    static const char *const t[] = {
        [WEIR_OP_NEG] = "-", [WEIR_OP_NOT] = "!", [WEIR_OP_ADD] = " + ",
        [WEIR_OP_SUB] = " - ", [WEIR_OP_MUL] = " * ", [WEIR_OP_DIV] = " / ",
        [WEIR_OP_MOD] = " % ", [WEIR_OP_EQ] = " == ", [WEIR_OP_NE] = " != ",
        [WEIR_OP_LT] = " < ", [WEIR_OP_LE] = " <= ", [WEIR_OP_GT] = " > ",
        [WEIR_OP_GE] = " >= ", [WEIR_OP_AND] = " && ", [WEIR_OP_OR] = " || ",
    };
    return op < sizeof t / sizeof *t && t[op] ? t[op] : " ? ";
}

static void format_rec(fbuf *b, const weir_expr *e, int depth)
{
    if (depth > MAX_DEPTH * 2) {
        fputs_(b, "…");
        return;
    }
    char num[64];
    switch (e->kind) {
    case WEIR_EXPR_NUM:
        if (e->is_int) {
            snprintf(num, sizeof num, "%" PRId64, e->ival);
        } else {
            /* A float reads back as a float: keep a point (-0.0, 1e300). */
            snprintf(num, sizeof num, "%.17g", e->num);
            if (!strpbrk(num, ".eEn")) strcat(num, ".0");
        }
        fputs_(b, num);
        break;
    case WEIR_EXPR_BOOL: fputs_(b, e->ival ? "true" : "false"); break;
    case WEIR_EXPR_STR:
    case WEIR_EXPR_COL: {
        bool plain = e->kind == WEIR_EXPR_COL && e->len && is_name_start((unsigned char)e->str[0]);
        for (size_t i = 0; plain && i < e->len; i++)
            plain = is_name_char((unsigned char)e->str[i]);
        if (plain) {
            fput(b, e->str, e->len);
            break;
        }
        char q = e->kind == WEIR_EXPR_STR ? '"' : '`';
        fput(b, &q, 1);
        for (size_t i = 0; i < e->len; i++) {
            char c = e->str[i];
            if (c == q || c == '\\') fput(b, "\\", 1);
            if (c == '\n' && q == '"') fputs_(b, "\\n");
            else if (c == '\t' && q == '"') fputs_(b, "\\t");
            else fput(b, &c, 1);
        }
        fput(b, &q, 1);
        break;
    }
    case WEIR_EXPR_LIST:
    case WEIR_EXPR_CALL:
        if (e->kind == WEIR_EXPR_CALL) fput(b, e->str, e->len);
        fputs_(b, e->kind == WEIR_EXPR_CALL ? "(" : "[");
        for (size_t i = 0; i < e->nargs; i++) {
            if (i) fputs_(b, ", ");
            format_rec(b, e->args[i], depth + 1);
        }
        fputs_(b, e->kind == WEIR_EXPR_CALL ? ")" : "]");
        break;
    case WEIR_EXPR_UNARY: {
        bool paren = e->args[0]->kind == WEIR_EXPR_BINARY;
        fputs_(b, op_text(e->op));
        if (paren) fputs_(b, "(");
        format_rec(b, e->args[0], depth + 1);
        if (paren) fputs_(b, ")");
        break;
    }
    case WEIR_EXPR_BINARY:
        /* Parenthesise operands that are themselves operations: always
         * correct, and clear enough for explain. */
        for (int i = 0; i < 2; i++) {
            bool paren = e->args[i]->kind == WEIR_EXPR_BINARY;
            if (paren) fputs_(b, "(");
            format_rec(b, e->args[i], depth + 1);
            if (paren) fputs_(b, ")");
            if (i == 0) fputs_(b, op_text(e->op));
        }
        break;
    }
}

size_t weir_expr_format(const weir_expr *e, char *buf, size_t size)
{
    fbuf b = {buf, size, 0};
    if (size) buf[0] = '\0';
    format_rec(&b, e, 0);
    return b.len;
}

/* ---- statements → graph --------------------------------------------------------------------- */

typedef struct binding {
    char *name;
    weir_node *node;
    uint32_t line, col;
} binding;

typedef struct compiler {
    parser P;
    weir_graph *g;
    binding *binds;
    size_t nbinds;
    weir_node *last_tail;  /* the last statement's final node */
    const char *file;      /* the graph's copy */
} compiler;

static binding *find_binding(compiler *C, const char *name)
{
    for (size_t i = 0; i < C->nbinds; i++)
        if (strcmp(C->binds[i].name, name) == 0) return &C->binds[i];
    return NULL;
}

/* Convert an argument expression to what the table wants. */
static int set_arg(compiler *C, weir_node *n, const weir_arg_def *d, const char *name,
                   const weir_expr *e)
{
    parser *P = &C->P;
    weir_arg_type t = d ? d->type : WEIR_ARG_NAMED;
    const char *sname = weir_node_def(n)->name;
    int rc = 0;
    char *end;
    switch (t) {
    case WEIR_ARG_INT:
    case WEIR_ARG_FLOAT:
        if (e->kind == WEIR_EXPR_NUM) {
            if (t == WEIR_ARG_INT && !e->is_int) break;
            rc = t == WEIR_ARG_INT ? weir_node_set_int(n, name, e->ival)
                                   : weir_node_set_float(n, name, e->num);
            goto done;
        }
        if (e->kind == WEIR_EXPR_STR && e->len) { /* from a $var */
            errno = 0;
            if (t == WEIR_ARG_INT) {
                long long v = strtoll(e->str, &end, 0);
                if (*end || errno) break;
                rc = weir_node_set_int(n, name, v);
            } else {
                double v = strtod(e->str, &end);
                if (*end || errno) break;
                rc = weir_node_set_float(n, name, v);
            }
            goto done;
        }
        break;
    case WEIR_ARG_BOOL:
        if (e->kind == WEIR_EXPR_BOOL) {
            rc = weir_node_set_bool(n, name, e->ival != 0);
            goto done;
        }
        if (e->kind == WEIR_EXPR_STR &&
            (strcmp(e->str, "true") == 0 || strcmp(e->str, "false") == 0)) {
            rc = weir_node_set_bool(n, name, e->str[0] == 't');
            goto done;
        }
        break;
    case WEIR_ARG_STRING:
        if ((e->kind == WEIR_EXPR_STR && strlen(e->str) == e->len) ||
            e->kind == WEIR_EXPR_COL) {
            rc = weir_node_set_str(n, name, e->str);
            goto done;
        }
        break;
    case WEIR_ARG_LIST:
    case WEIR_ARG_COLUMNS: {
        const weir_expr *const *items = (const weir_expr *const *)&e;
        size_t ni = 1;
        if (e->kind == WEIR_EXPR_LIST && t == WEIR_ARG_LIST) {
            items = (const weir_expr *const *)e->args;
            ni = e->nargs;
        }
        const char **names = malloc((ni ? ni : 1) * sizeof *names);
        if (!names) return WEIR_ENOMEM;
        for (size_t i = 0; i < ni; i++) {
            if (items[i]->kind != WEIR_EXPR_COL && items[i]->kind != WEIR_EXPR_STR) {
                perr(P, items[i]->pos.line, items[i]->pos.col,
                     "stage '%s': argument '%s' takes column names", sname, name);
                free(names);
                return WEIR_ESPEC;
            }
            names[i] = items[i]->str;
        }
        if (t == WEIR_ARG_COLUMNS) {
            /* Append to what earlier positionals gave. */
            const weir__arg *a = weir__stage_arg(n, name, WEIR_ARG_LIST);
            size_t had = a->given ? a->nlist : 0;
            const char **all = malloc((had + ni) * sizeof *all);
            if (!all) {
                free(names);
                return WEIR_ENOMEM;
            }
            for (size_t i = 0; i < had; i++) all[i] = a->list[i];
            for (size_t i = 0; i < ni; i++) all[had + i] = names[i];
            rc = weir_node_set_list(n, name, all, had + ni);
            free(all);
        } else {
            rc = weir_node_set_list(n, name, names, ni);
        }
        free(names);
        goto done;
    }
    case WEIR_ARG_EXPR:
        rc = weir_node_set_expr(n, name, e);
        goto done;
    case WEIR_ARG_NAMED:
        rc = weir_node_add_named(n, name, e);
        goto done;
    }
    {
        char text[128];
        weir_expr_format(e, text, sizeof text);
        perr(P, e->pos.line, e->pos.col, "stage '%s': argument '%s' must be %s, not %s",
             sname, name, weir_arg_type_name(t), text);
        return WEIR_ESPEC;
    }
done:
    if (rc == WEIR_ENOMEM) return rc;
    if (rc) {
        perr(P, e->pos.line, e->pos.col, "%s", weir_graph_errmsg(C->g));
        return WEIR_ESPEC;
    }
    return 0;
}

/* The runtime's own arguments, on any stage. */
static int set_runtime_arg(compiler *C, weir_node *n, const char *name, const weir_expr *e)
{
    parser *P = &C->P;
    int rc;
    if (strcmp(name, "mem") == 0) {
        uint64_t bytes = 0;
        bool ok = (e->kind == WEIR_EXPR_NUM && e->is_int && e->ival > 0 &&
                   (bytes = (uint64_t)e->ival)) ||
                  (e->kind == WEIR_EXPR_STR && weir_parse_size(e->str, &bytes) == 0);
        if (!ok || bytes > INT64_MAX) {
            perr(P, e->pos.line, e->pos.col, "mem takes a size in bytes or a string "
                 "like \"512M\" or \"2G\"");
            return WEIR_ESPEC;
        }
        rc = weir_node_set_int(n, "mem", (int64_t)bytes);
    } else if (strcmp(name, "workers") == 0) {
        if (e->kind == WEIR_EXPR_COL && strcmp(e->str, "auto") == 0) return 0;
        if (e->kind != WEIR_EXPR_NUM || !e->is_int) {
            perr(P, e->pos.line, e->pos.col, "workers must be a whole number or auto");
            return WEIR_ESPEC;
        }
        rc = weir_node_set_int(n, "workers", e->ival);
    } else {
        if (e->kind != WEIR_EXPR_BOOL) {
            perr(P, e->pos.line, e->pos.col, "ordered must be true or false");
            return WEIR_ESPEC;
        }
        rc = weir_node_set_bool(n, "ordered", e->ival != 0);
    }
    if (rc) perr(P, e->pos.line, e->pos.col, "%s", weir_graph_errmsg(C->g));
    return rc ? WEIR_ESPEC : 0;
}

/* call := NAME '(' args ')'. `up` is the upstream node (NULL at a chain's
 * start). @return the new node, or NULL on error. */
static weir_node *compile_call(compiler *C, weir_node *up)
{
    parser *P = &C->P;
    tok name = take(P);
    if (name.kind != T_NAME) {
        perr(P, name.line, name.col, "expected a stage, found %s", tok_name(name.kind));
        free(name.text);
        return NULL;
    }
    if (peek(P)->kind != T_LPAREN) {
        /* A stream name. */
        binding *b = find_binding(C, name.text);
        if (!b) {
            if (weir_stage_find(name.text))
                perr(P, name.line, name.col, "stage '%s' needs parentheses: %s(…)",
                     name.text, name.text);
            else
                perr(P, name.line, name.col, "unknown stream '%s'", name.text);
        } else if (up) {
            perr(P, name.line, name.col, "a stream name ('%s') can only start a chain",
                 name.text);
        }
        free(name.text);
        return P->rc ? NULL : b->node;
    }
    const weir_stage_def *def = weir_stage_find(name.text);
    if (!def) {
        perr(P, name.line, name.col, "unknown stage '%s' (see 'weir stages')", name.text);
        free(name.text);
        return NULL;
    }
    free(name.text);
    weir_node *n;
    int rc = weir_graph_add(C->g, def, NULL, &n);
    if (rc) {
        if (rc == WEIR_ENOMEM) oom(P);
        else perr(P, name.line, name.col, "%s", weir_graph_errmsg(C->g));
        return NULL;
    }
    weir_node_set_pos(n, (weir_pos){C->file, name.line, name.col});
    bool multi = def->flags & WEIR_STAGE_MULTI_IN;
    if (up && (rc = weir_graph_connect(C->g, up, n))) {
        perr(P, name.line, name.col, "%s", weir_graph_errmsg(C->g));
        return NULL;
    }
    drop(P); /* ( */
    size_t positional = 0;
    bool named_seen = false;
    while (!P->rc && peek(P)->kind != T_RPAREN) {
        tok *t = peek(P);
        tok at = *t;
        char *argname = NULL;
        if (t->kind == T_NAME || t->kind == T_QNAME) {
            /* NAME '=' (or `quoted name` '=') is a named argument; look one
             * token ahead. */
            const char *save_p = P->p, *save_ls = P->line_start;
            uint32_t save_line = P->line;
            int save_nest = P->nest;
            tok nm = take(P);
            if (peek(P)->kind == T_ASSIGN) {
                drop(P);
                argname = nm.text;
            } else {
                /* Not named: rewind the lexer to the name. */
                free(P->cur.text);
                P->have = false;
                P->p = save_p;
                P->line_start = save_ls;
                P->line = save_line;
                P->nest = save_nest;
                P->cur = nm;
                P->have = true;
            }
        }
        weir_expr *e = parse_expr(P);
        if (!e) {
            free(argname);
            return NULL;
        }
        if (argname) {
            named_seen = true;
            const weir_arg_def *d = NULL;
            for (const weir_arg_def *a = def->args; a && a->name; a++)
                if (strcmp(a->name, argname) == 0 && a->type != WEIR_ARG_NAMED &&
                    a->type != WEIR_ARG_COLUMNS)
                    d = a;
            bool own_mem = false; /* a stage's own "mem" argument wins */
            for (const weir_arg_def *a = def->args; a && a->name; a++)
                own_mem |= strcmp(a->name, "mem") == 0;
            if (strcmp(argname, "workers") == 0 || strcmp(argname, "ordered") == 0 ||
                (strcmp(argname, "mem") == 0 && !own_mem))
                rc = set_runtime_arg(C, n, argname, e);
            else if (d)
                rc = set_arg(C, n, d, argname, e);
            else {
                bool has_named = false;
                for (const weir_arg_def *a = def->args; a && a->name; a++)
                    has_named |= a->type == WEIR_ARG_NAMED;
                if (has_named) rc = set_arg(C, n, NULL, argname, e);
                else {
                    perr(P, at.line, at.col, "stage '%s' has no argument '%s' "
                         "(see 'weir stages %s')", def->name, argname, def->name);
                    rc = WEIR_ESPEC;
                }
            }
            free(argname);
        } else if (multi) {
            /* Fan-in: positional arguments name the streams to join. */
            binding *b = e->kind == WEIR_EXPR_COL ? find_binding(C, e->str) : NULL;
            if (!b) {
                perr(P, at.line, at.col, "%s() takes stream names (from let)", def->name);
                rc = WEIR_ESPEC;
            } else if ((rc = weir_graph_connect(C->g, b->node, n))) {
                perr(P, at.line, at.col, "%s", weir_graph_errmsg(C->g));
                rc = WEIR_ESPEC;
            }
        } else if (named_seen) {
            perr(P, at.line, at.col, "a positional argument cannot follow a named one");
            rc = WEIR_ESPEC;
        } else {
            /* The positional-th entry of the table (COLUMNS absorbs the rest). */
            const weir_arg_def *d = NULL;
            size_t k = 0;
            for (const weir_arg_def *a = def->args; a && a->name; a++) {
                if (a->type == WEIR_ARG_NAMED) continue;
                if (a->type == WEIR_ARG_COLUMNS && k <= positional) {
                    d = a;
                    break;
                }
                if (k++ == positional) {
                    d = a;
                    break;
                }
            }
            if (!d) {
                perr(P, at.line, at.col, "stage '%s' takes %zu positional argument%s "
                     "(see 'weir stages %s')", def->name, k, k == 1 ? "" : "s",
                     def->name);
                rc = WEIR_ESPEC;
            } else {
                rc = set_arg(C, n, d, d->name, e);
            }
            positional++;
        }
        weir_expr_destroy(e);
        if (rc) {
            if (rc == WEIR_ENOMEM) oom(P);
            return NULL;
        }
        if (!accept(P, T_COMMA)) break;
    }
    if (!expect(P, T_RPAREN, "',' or ')'")) return NULL;
    if (!up && def->in_kind != WEIR_KIND_NONE && !multi) {
        perr(P, name.line, name.col, "stage '%s' needs an input: put it after '|'",
             def->name);
        return NULL;
    }
    if (up && def->in_kind == WEIR_KIND_NONE) {
        perr(P, name.line, name.col, "stage '%s' is a source: it cannot follow '|'",
             def->name);
        return NULL;
    }
    return n;
}

static void skip_newlines(parser *P)
{
    while (peek(P)->kind == T_NEWLINE) drop(P);
}

/* After a call: is the chain continued by '|' (possibly on the next line)? */
static bool chain_continues(parser *P)
{
    if (peek(P)->kind == T_PIPE) return true;
    if (peek(P)->kind != T_NEWLINE) return false;
    /* Look past blank lines and comments for a leading '|'. */
    const char *q = P->p;
    for (;;) {
        while (q < P->end && (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n')) q++;
        if (q < P->end && *q == '#') {
            while (q < P->end && *q != '\n') q++;
            continue;
        }
        break;
    }
    if (q < P->end && *q == '|' && !(q + 1 < P->end && q[1] == '|')) {
        skip_newlines(P);
        return true;
    }
    return false;
}

static weir_node *compile_chain(compiler *C)
{
    parser *P = &C->P;
    weir_node *n = compile_call(C, NULL);
    while (n && !P->rc && chain_continues(P)) {
        drop(P); /* | */
        skip_newlines(P);
        n = compile_call(C, n);
    }
    return P->rc ? NULL : n;
}

/* load("path.so"): a plugin's stages become known from here on. */
static int compile_load(compiler *C)
{
    parser *P = &C->P;
    tok kw = take(P);
    free(kw.text);
    if (!expect(P, T_LPAREN, "'(' after load")) return P->rc;
    tok path = take(P);
    if (path.kind != T_STR) {
        perr(P, path.line, path.col, "load() takes the plugin's path as a string");
        free(path.text);
        return P->rc;
    }
    char err[1024];
    int rc = weir_plugin_load(path.text, err, sizeof err);
    if (rc) perr(P, path.line, path.col, "%s", err);
    free(path.text);
    if (!P->rc) expect(P, T_RPAREN, "')'");
    return P->rc;
}

static int compile_stmt(compiler *C)
{
    parser *P = &C->P;
    tok *t = peek(P);
    if (t->kind == T_NAME && strcmp(t->text, "load") == 0 && !weir_stage_find("load")) {
        /* load ( — a statement, not a chain */
        const char *q = P->p;
        while (q < P->end && (*q == ' ' || *q == '\t')) q++;
        if (q < P->end && *q == '(') {
            C->last_tail = NULL;
            return compile_load(C);
        }
    }
    if (t->kind == T_NAME && strcmp(t->text, "let") == 0) {
        drop(P);
        tok name = take(P);
        if (name.kind != T_NAME) {
            perr(P, name.line, name.col, "expected a stream name after 'let'");
            free(name.text);
            return P->rc;
        }
        if (find_binding(C, name.text)) {
            perr(P, name.line, name.col, "stream '%s' is already defined", name.text);
            free(name.text);
            return P->rc;
        }
        if (!expect(P, T_ASSIGN, "'='")) {
            free(name.text);
            return P->rc;
        }
        skip_newlines(P);
        weir_node *n = compile_chain(C);
        if (!n) {
            free(name.text);
            return P->rc;
        }
        binding *nb = realloc(C->binds, (C->nbinds + 1) * sizeof *nb);
        if (!nb) {
            free(name.text);
            oom(P);
            return P->rc;
        }
        C->binds = nb;
        C->binds[C->nbinds++] = (binding){name.text, n, name.line, name.col};
        C->last_tail = NULL;
        return 0;
    }
    C->last_tail = compile_chain(C);
    return P->rc;
}

int weir_spec_compile(weir_graph **out, const char *text, size_t len, const char *file,
                      const weir_spec_opts *opts, char *err, size_t errsize)
{
    *out = NULL;
    compiler C = {0};
    int rc = weir_graph_create(&C.g);
    if (rc) return rc;
    C.file = weir__graph_strdup(C.g, file ? file : "<expr>");
    if (!C.file) {
        weir_graph_destroy(C.g);
        return WEIR_ENOMEM;
    }
    parser_init(&C.P, text, len, C.file, opts, err, errsize);
    parser *P = &C.P;
    for (;;) {
        while (peek(P)->kind == T_NEWLINE || peek(P)->kind == T_SEMI) drop(P);
        if (P->rc || peek(P)->kind == T_EOF) break;
        if (compile_stmt(&C)) break;
        tok *t = peek(P);
        if (t->kind != T_NEWLINE && t->kind != T_SEMI && t->kind != T_EOF) {
            perr(P, t->line, t->col, "expected '|', ';' or a new line, found %s",
                 tok_name(t->kind));
            break;
        }
    }
    if (!P->rc && C.g->nnodes == 0) perr(P, 1, 1, "the spec has no statements");
    /* A one-liner's last chain without a sink writes CSV to stdout. */
    if (!P->rc && opts && opts->oneliner && C.last_tail &&
        weir_node_def(C.last_tail)->out_kind != WEIR_KIND_NONE &&
        C.last_tail->noutputs == 0) {
        const weir_stage_def *w = weir_stage_find("write");
        weir_node *wn;
        if (!w) {
            perr(P, 1, 1, "no 'write' stage to print the result with");
        } else if ((rc = weir_graph_add(C.g, w, NULL, &wn)) ||
                   (rc = weir_node_set_str(wn, "path", "-")) ||
                   (rc = weir_graph_connect(C.g, C.last_tail, wn))) {
            perr(P, 1, 1, "%s", weir_graph_errmsg(C.g));
        } else {
            weir_node_set_pos(wn, C.last_tail->pos);
        }
    }
    rc = P->rc;
    parser_fini(P);
    for (size_t i = 0; i < C.nbinds; i++) free(C.binds[i].name);
    free(C.binds);
    if (rc) {
        weir_graph_destroy(C.g);
        return rc;
    }
    *out = C.g;
    return 0;
}

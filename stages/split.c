/*
 * split(path_template, by=[cols…], max_open=128) — one file per key value.
 *
 * The template is a path with {col} placeholders ("{{" and "}}" are
 * literal braces), e.g. "out/{payment}/part.csv.zst". Each row goes to the
 * file its key values make; the format comes from the template's
 * extension: .csv (each file with its own header) or .jsonl, either
 * optionally followed by .zst. by= defaults to the placeholders, in order;
 * given, it must name exactly the placeholders' columns.
 *
 * The template's directory is the fixed text before its first placeholder,
 * up to its last '/' ("out" above; "." when there is none). It must exist
 * (as with write, weir does not create it); directories below it that the
 * template makes ("out/card/") are created as needed, and removed again if
 * the run fails. A '..' component after the template's directory is
 * refused.
 *
 * Escaping (key values never leave the template's directory): in a value,
 * the bytes A-Z a-z 0-9 '-' '_' and '.' stay as they are, except a '.' as
 * the value's first byte; every other byte — '/', '\', '%', NUL, control
 * characters, spaces, bytes of multi-byte UTF-8 characters, a leading '.'
 * — becomes '%' and two upper-case hex digits (percent-encoding). So "."
 * is "%2E", ".." is "%2E.", "../x" is "%2E.%2Fx", "a/b" is "a%2Fb", and no
 * value makes a hidden name. The empty value is "%empty", which no other
 * value gives (an escape is always '%' and two upper-case hex digits). The
 * encoding is reversible. Two keys that still make the same path (with
 * placeholders side by side, "{a}{b}": "x"+"yz" and "xy"+"z") stop the run
 * with an error rather than share a file. A value whose escaped form makes
 * a name longer than 255 bytes is an error too.
 *
 * Files: each is written to a temporary beside it (".NAME.weir-XXXXXX"),
 * renamed to its name in commit(), i.e. only when the whole run succeeded;
 * after a failure or a cancel close() removes the temporaries and the
 * directories the stage made. At most max_open files are open at once:
 * the least recently used is flushed and closed, and opened again for
 * appending when its key comes back (a system limit on open files met
 * sooner lowers that number). Each open file gathers its output in a
 * buffer (16 MiB shared among max_open, between 16 KiB and 1 MiB each);
 * with .zst every buffer written is one zstd frame (level 3, with a
 * checksum) — a file is a sequence of frames, which any zstd reader reads
 * as one stream. Data reaches the disk (syncfs) before the renames.
 *
 * Memory: per key, its bytes and two paths; 100 000 keys take a few tens
 * of megabytes. One instance (a sink that owns its files).
 */
#include "stages.h"

#include "format.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#define SPLIT_BUF_TOTAL ((size_t)16 << 20)
#define SPLIT_ZSTD_LEVEL 3
#define SPLIT_NAME_MAX 255
#define SPLIT_MAX_OPEN 65536

typedef enum split_fmt { SPLIT_NONE, SPLIT_CSV, SPLIT_JSONL } split_fmt;

/* The template, cut into literal text and placeholders. */
typedef struct split_seg {
    char *text;  /* literal (braces unescaped), or the placeholder's column */
    int key;     /* placeholder: index into by; -1 for literal text */
} split_seg;

typedef struct split_tmpl {
    split_seg *segs;
    size_t nsegs;
    size_t prefix;    /* bytes of the fixed directory prefix, its '/' included */
    split_fmt fmt;
    bool zst;
    char **names;     /* distinct placeholder columns, in order */
    size_t nnames;
} split_tmpl;

typedef struct split_file {
    uint64_t hash; /* of the key */
    const unsigned char *key;
    uint32_t key_len;
    uint64_t phash; /* of the final path */
    char *final;
    char *tmp;      /* NULL until created, and after the rename */
    int fd;         /* -1 when closed */
    int32_t prev, next; /* LRU of open files: head is the most recent */
    int32_t slot;       /* its buffer while open */
} split_file;

typedef struct split_chunk {
    struct split_chunk *next;
    size_t cap, used;
    unsigned char data[];
} split_chunk;

typedef struct split_state {
    split_tmpl t;
    const char *tmpl_text;
    const char *const *by;
    size_t nby;
    uint32_t *key_idx;
    weir_schema *schema; /* the first rows' (a reference): the CSV header */
    char *base;          /* the template's directory */
    /* files, found by key and by final path */
    split_file *files;
    size_t nfiles, cap_files;
    uint32_t *kslots, *pslots; /* file index + 1 */
    size_t nslots;
    /* directories known to exist below base; those this stage made */
    char **dirs;
    size_t ndirs, cap_dirs;
    uint32_t *dslots;
    size_t ndslots;
    bool *dir_made;
    /* open files */
    int32_t lru_head, lru_tail;
    size_t nopen, max_open;
    weir_batch **bufs;
    int32_t *free_slots;
    size_t nfree;
    size_t bufcap;
    ZSTD_CCtx *cctx;
    unsigned char *zbuf;
    size_t zcap;
    split_chunk *chunks;
    unsigned char *scratch;
    size_t scratch_cap;
    char *path;
    size_t path_cap;
    size_t nbufs;
    bool finished, committed;
} split_state;

/* ---- the template ---------------------------------------------------------------------- */

static void split_tmpl_free(split_tmpl *t)
{
    for (size_t i = 0; i < t->nsegs; i++) free(t->segs[i].text);
    free(t->segs);
    free(t->names);
    memset(t, 0, sizeof *t);
}

static int split_add_seg(split_tmpl *t, const char *p, size_t n, int key)
{
    split_seg *ns = realloc(t->segs, (t->nsegs + 1) * sizeof *ns);
    if (!ns) return WEIR_ENOMEM;
    t->segs = ns;
    char *text = malloc(n + 1);
    if (!text) return WEIR_ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) { /* "{{" and "}}" are one brace */
        text[k++] = p[i];
        if ((p[i] == '{' || p[i] == '}') && i + 1 < n && p[i + 1] == p[i]) i++;
    }
    text[k] = '\0';
    t->segs[t->nsegs++] = (split_seg){text, key};
    return 0;
}

static split_fmt split_format_of(const char *path, bool *zst)
{
    size_t n = strlen(path);
    *zst = n > 4 && strcasecmp(path + n - 4, ".zst") == 0;
    if (*zst) n -= 4;
    if (n > 4 && strncasecmp(path + n - 4, ".csv", 4) == 0) return SPLIT_CSV;
    if (n > 6 && strncasecmp(path + n - 6, ".jsonl", 6) == 0) return SPLIT_JSONL;
    return SPLIT_NONE;
}

/* Parse the template and check it against by (by may be empty: then the
 * placeholders make it). */
static int split_parse(weir_stage *s, const char *text, const char *const *by, size_t nby,
                       split_tmpl *t)
{
    memset(t, 0, sizeof *t);
    const char *lit = text;
    bool seen_ph = false;
    for (const char *p = text; *p;) {
        if ((p[0] == '{' && p[1] == '{') || (p[0] == '}' && p[1] == '}')) {
            p += 2;
            continue;
        }
        if (*p == '}')
            return weir_stage_errorf(s, WEIR_ESPEC,
                                     "template '%s': '}' without '{' (write '}}' for a brace)",
                                     text);
        if (*p != '{') {
            if (*p == '/' && !seen_ph) t->prefix = (size_t)(p - text) + 1;
            p++;
            continue;
        }
        const char *end = strchr(p + 1, '}');
        if (!end)
            return weir_stage_errorf(s, WEIR_ESPEC, "template '%s': '{' without '}'", text);
        if (end == p + 1)
            return weir_stage_errorf(s, WEIR_ESPEC, "template '%s': '{}' names no column",
                                     text);
        if (p > lit && split_add_seg(t, lit, (size_t)(p - lit), -1)) return WEIR_ENOMEM;
        if (split_add_seg(t, p + 1, (size_t)(end - p - 1), 0)) return WEIR_ENOMEM;
        t->segs[t->nsegs - 1].text[end - p - 1] = '\0'; /* a name: no brace unescaping */
        memcpy(t->segs[t->nsegs - 1].text, p + 1, (size_t)(end - p - 1));
        seen_ph = true;
        p = lit = end + 1;
    }
    if (*lit && split_add_seg(t, lit, strlen(lit), -1)) return WEIR_ENOMEM;
    if (!seen_ph)
        return weir_stage_errorf(s, WEIR_ESPEC,
                                 "template '%s' has no {column}: every key would go to one "
                                 "file (use write)",
                                 text);
    t->fmt = split_format_of(text, &t->zst);
    if (t->fmt == SPLIT_NONE || text[strlen(text) - 1] == '}')
        return weir_stage_errorf(s, WEIR_ESPEC,
                                 "cannot tell the format of '%s': end the template with .csv "
                                 "or .jsonl (optionally .zst)",
                                 text);
    /* '..' among the literal components after the fixed directory. */
    for (const char *c = text + t->prefix; *c;) {
        const char *e = strchr(c, '/');
        size_t n = e ? (size_t)(e - c) : strlen(c);
        if (n == 2 && c[0] == '.' && c[1] == '.')
            return weir_stage_errorf(s, WEIR_ESPEC,
                                     "template '%s': no '..' after its directory", text);
        c += n + (e ? 1 : 0);
    }
    /* Placeholders ↔ by. */
    t->names = calloc(t->nsegs, sizeof *t->names);
    if (!t->names) return WEIR_ENOMEM;
    for (size_t i = 0; i < t->nsegs; i++) {
        if (t->segs[i].key < 0) continue;
        size_t k = 0;
        while (k < t->nnames && strcmp(t->names[k], t->segs[i].text)) k++;
        if (k == t->nnames) t->names[t->nnames++] = t->segs[i].text;
    }
    if (nby == 0) {
        by = (const char *const *)t->names;
        nby = t->nnames;
    }
    for (size_t i = 0; i < t->nsegs; i++) {
        if (t->segs[i].key < 0) continue;
        size_t k = 0;
        while (k < nby && strcmp(by[k], t->segs[i].text)) k++;
        if (k == nby)
            return weir_stage_errorf(s, WEIR_ESPEC,
                                     "template '%s': {%s} is not one of the by columns", text,
                                     t->segs[i].text);
        t->segs[i].key = (int)k;
    }
    for (size_t k = 0; k < nby; k++) {
        size_t i = 0;
        while (i < t->nnames && strcmp(t->names[i], by[k])) i++;
        if (i == t->nnames)
            return weir_stage_errorf(s, WEIR_ESPEC,
                                     "by column '%s' is not in the template '%s': its values "
                                     "would share files",
                                     by[k], text);
    }
    return 0;
}

/* The key columns: by=, or the placeholders. */
static size_t split_by(const weir_stage *s, const split_tmpl *t, const char *const **by)
{
    size_t n = weir_stage_arg_list(s, "by", by);
    if (n) return n;
    *by = (const char *const *)t->names;
    return t->nnames;
}

static int split_plan(weir_stage *s, const weir_schema *in, weir_schema **out)
{
    (void)out;
    const char *const *by;
    size_t nby = weir_stage_arg_list(s, "by", &by);
    split_tmpl t;
    int rc = split_parse(s, weir_stage_arg_str(s, "path_template"), by, nby, &t);
    int64_t mo = weir_stage_arg_int(s, "max_open");
    if (rc == 0 && (mo < 1 || mo > SPLIT_MAX_OPEN))
        rc = weir_stage_errorf(s, WEIR_ESPEC, "max_open must be between 1 and %d, not %lld",
                               SPLIT_MAX_OPEN, (long long)mo);
    if (rc == 0 && in) {
        nby = split_by(s, &t, &by);
        for (size_t k = 0; rc == 0 && k < nby; k++)
            if (weir_schema_find(in, by[k]) < 0)
                rc = weir_stage_errorf(s, WEIR_ESPEC, "unknown column '%s'", by[k]);
    }
    split_tmpl_free(&t);
    return rc;
}

/* ---- state ---------------------------------------------------------------------------- */

/* n bytes that stay put until close(). */
static char *split_alloc(split_state *st, size_t n)
{
    split_chunk *c = st->chunks;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > ((size_t)256 << 10) ? n : (size_t)256 << 10;
        c = malloc(sizeof *c + cap);
        if (!c) return NULL;
        c->cap = cap;
        c->used = 0;
        c->next = st->chunks;
        st->chunks = c;
    }
    char *q = (char *)c->data + c->used;
    c->used += n;
    return q;
}

/* A copy of p[0..n), NUL-terminated if nul. */
static char *split_strdup_arena(split_state *st, const void *p, size_t n, bool nul)
{
    char *q = split_alloc(st, n + (nul ? 1 : 0));
    if (!q) return NULL;
    if (n) memcpy(q, p, n);
    if (nul) q[n] = '\0';
    return q;
}

static int split_open(weir_stage *s)
{
    split_state *st = calloc(1, sizeof *st);
    if (!st) return weir_stage_errorf(s, WEIR_ENOMEM, "out of memory");
    weir_stage_set_state(s, st);
    st->lru_head = st->lru_tail = -1;
    st->tmpl_text = weir_stage_arg_str(s, "path_template");
    const char *const *by;
    size_t nby = weir_stage_arg_list(s, "by", &by);
    int rc = split_parse(s, st->tmpl_text, by, nby, &st->t);
    if (rc) return rc == WEIR_ENOMEM ? weir_stage_errorf(s, rc, "out of memory") : rc;
    st->nby = split_by(s, &st->t, &st->by);
    st->max_open = (size_t)weir_stage_arg_int(s, "max_open");
    st->bufcap = SPLIT_BUF_TOTAL / st->max_open;
    if (st->bufcap < ((size_t)16 << 10)) st->bufcap = (size_t)16 << 10;
    if (st->bufcap > ((size_t)1 << 20)) st->bufcap = (size_t)1 << 20;
    st->key_idx = calloc(st->nby, sizeof *st->key_idx);
    st->nbufs = st->max_open;
    st->bufs = calloc(st->max_open, sizeof *st->bufs);
    st->free_slots = calloc(st->max_open, sizeof *st->free_slots);
    if (!st->key_idx || !st->bufs || !st->free_slots)
        return weir_stage_errorf(s, WEIR_ENOMEM, "out of memory");
    for (size_t i = 0; i < st->max_open; i++)
        st->free_slots[i] = (int32_t)(st->max_open - 1 - i);
    st->nfree = st->max_open;
    /* The template's directory must be there. */
    size_t pl = st->t.prefix;
    st->base = pl == 0 ? strdup(".") : pl == 1 ? strdup("/") : strndup(st->tmpl_text, pl - 1);
    if (!st->base) return weir_stage_errorf(s, WEIR_ENOMEM, "out of memory");
    struct stat sb;
    if (stat(st->base, &sb) != 0)
        return weir_stage_errorf(s, WEIR_EIO, "cannot write into '%s': %s", st->base,
                                 strerror(errno));
    if (!S_ISDIR(sb.st_mode))
        return weir_stage_errorf(s, WEIR_EIO, "cannot write into '%s': Not a directory",
                                 st->base);
    if (st->t.zst) {
        st->cctx = ZSTD_createCCtx();
        st->zcap = ZSTD_compressBound(st->bufcap);
        st->zbuf = malloc(st->zcap);
        if (!st->cctx || !st->zbuf) return weir_stage_errorf(s, WEIR_ENOMEM, "out of memory");
        size_t r = ZSTD_CCtx_setParameter(st->cctx, ZSTD_c_compressionLevel, SPLIT_ZSTD_LEVEL);
        if (!ZSTD_isError(r)) r = ZSTD_CCtx_setParameter(st->cctx, ZSTD_c_checksumFlag, 1);
        if (ZSTD_isError(r))
            return weir_stage_errorf(s, WEIR_EINVAL, "zstd: %s", ZSTD_getErrorName(r));
    }
    return 0;
}

static void split_close(weir_stage *s)
{
    split_state *st = weir_stage_state(s);
    if (!st) return;
    for (size_t i = 0; i < st->nfiles; i++) {
        split_file *f = &st->files[i];
        if (f->fd >= 0) close(f->fd);
        if (f->tmp) unlink(f->tmp); /* not renamed: the run did not succeed */
    }
    if (!st->committed) {
        /* Directories made for this run go too, deepest first (a parent was
         * always made before its children); one that is not empty stays. */
        for (size_t i = st->ndirs; i-- > 0;)
            if (st->dir_made[i]) rmdir(st->dirs[i]);
    }
    for (size_t i = 0; i < st->nbufs && st->bufs; i++) weir_batch_release(st->bufs[i]);
    for (split_chunk *c = st->chunks, *n; c; c = n) {
        n = c->next;
        free(c);
    }
    split_tmpl_free(&st->t);
    weir_schema_release(st->schema);
    free(st->base);
    free(st->key_idx);
    free(st->files);
    free(st->kslots);
    free(st->pslots);
    free(st->dirs);
    free(st->dslots);
    free(st->dir_made);
    free(st->bufs);
    free(st->free_slots);
    ZSTD_freeCCtx(st->cctx);
    free(st->zbuf);
    free(st->scratch);
    free(st->path);
    free(st);
}

/* ---- hashing --------------------------------------------------------------------------- */

static uint64_t split_hash(const void *data, size_t n)
{
    const unsigned char *p = data;
    uint64_t h = 0x9e3779b97f4a7c15ull ^ n;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = (h ^ w) * 0xbf58476d1ce4e5b9ull;
        h ^= h >> 31;
    }
    uint64_t w = 0;
    for (size_t k = 0; i < n; i++, k += 8) w |= (uint64_t)p[i] << k;
    h = (h ^ w) * 0x94d049bb133111ebull;
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    return h ^ (h >> 32);
}

/* Rebuild both file tables at twice the size. */
static int split_grow(split_state *st)
{
    size_t n = st->nslots ? st->nslots * 2 : 1024;
    uint32_t *k = calloc(n, sizeof *k), *p = calloc(n, sizeof *p);
    if (!k || !p) {
        free(k);
        free(p);
        return WEIR_ENOMEM;
    }
    for (size_t e = 0; e < st->nfiles; e++) {
        size_t i = st->files[e].hash & (n - 1);
        while (k[i]) i = (i + 1) & (n - 1);
        k[i] = (uint32_t)e + 1;
        i = st->files[e].phash & (n - 1);
        while (p[i]) i = (i + 1) & (n - 1);
        p[i] = (uint32_t)e + 1;
    }
    free(st->kslots);
    free(st->pslots);
    st->kslots = k;
    st->pslots = p;
    st->nslots = n;
    return 0;
}

/* ---- paths and directories ------------------------------------------------------------- */

/* Escape one value (see the header); out has room for 3n + 6 bytes.
 * @return the length written. */
static size_t split_escape(const unsigned char *v, size_t n, char *out)
{
    static const char hex[] = "0123456789ABCDEF";
    if (n == 0) {
        memcpy(out, "%empty", 6);
        return 6;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = v[i];
        bool keep = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_' || (c == '.' && i > 0);
        if (keep) {
            out[k++] = (char)c;
        } else {
            out[k++] = '%';
            out[k++] = hex[c >> 4];
            out[k++] = hex[c & 15];
        }
    }
    return k;
}

/* The final path for the key values of row r into st->path. */
static int split_make_path(weir_stage *s, split_state *st, const weir_batch *in, uint32_t r,
                           size_t *len)
{
    size_t need = 1;
    for (size_t i = 0; i < st->t.nsegs; i++) {
        const split_seg *g = &st->t.segs[i];
        if (g->key < 0) {
            need += strlen(g->text);
        } else {
            size_t fl;
            weir_batch_field(in, r, st->key_idx[g->key], &fl);
            need += 3 * fl + 6;
        }
    }
    if (need > st->path_cap) {
        char *np = realloc(st->path, need);
        if (!np) return weir_stage_errorf(s, WEIR_ENOMEM, "out of memory");
        st->path = np;
        st->path_cap = need;
    }
    size_t k = 0;
    for (size_t i = 0; i < st->t.nsegs; i++) {
        const split_seg *g = &st->t.segs[i];
        if (g->key < 0) {
            size_t n = strlen(g->text);
            memcpy(st->path + k, g->text, n);
            k += n;
        } else {
            size_t fl;
            const unsigned char *f = weir_batch_field(in, r, st->key_idx[g->key], &fl);
            k += split_escape(f, fl, st->path + k);
        }
    }
    st->path[k] = '\0';
    /* Every name after the fixed directory must fit a directory entry. */
    for (size_t c = st->t.prefix; c < k;) {
        const char *e = memchr(st->path + c, '/', k - c);
        size_t n = e ? (size_t)(e - (st->path + c)) : k - c;
        if (n > SPLIT_NAME_MAX)
            return weir_stage_errorf(s, WEIR_EDATA,
                                     "a key makes a file name of %zu bytes (at most %d): "
                                     "'%.60s…'",
                                     n, SPLIT_NAME_MAX, st->path + c);
        c += n + 1;
    }
    *len = k;
    return 0;
}

static int split_dir_grow(split_state *st)
{
    size_t n = st->ndslots ? st->ndslots * 2 : 256;
    uint32_t *sl = calloc(n, sizeof *sl);
    if (!sl) return WEIR_ENOMEM;
    for (size_t d = 0; d < st->ndirs; d++) {
        size_t i = split_hash(st->dirs[d], strlen(st->dirs[d])) & (n - 1);
        while (sl[i]) i = (i + 1) & (n - 1);
        sl[i] = (uint32_t)d + 1;
    }
    free(st->dslots);
    st->dslots = sl;
    st->ndslots = n;
    return 0;
}

/* Make sure directory path[0..n) exists (its parents were made first). */
static int split_dir(weir_stage *s, split_state *st, const char *path, size_t n)
{
    if (st->ndirs * 2 >= st->ndslots && split_dir_grow(st))
        return weir_stage_errorf(s, WEIR_ENOMEM, "out of memory");
    uint64_t h = split_hash(path, n);
    size_t i = h & (st->ndslots - 1);
    for (; st->dslots[i]; i = (i + 1) & (st->ndslots - 1)) {
        const char *d = st->dirs[st->dslots[i] - 1];
        if (strncmp(d, path, n) == 0 && d[n] == '\0') return 0;
    }
    char *d = split_strdup_arena(st, path, n, true);
    if (!d) return weir_stage_errorf(s, WEIR_ENOMEM, "out of memory");
    bool made = mkdir(d, 0777) == 0;
    if (!made) {
        struct stat sb;
        if (errno != EEXIST || stat(d, &sb) != 0)
            return weir_stage_errorf(s, WEIR_EIO, "cannot make directory '%s': %s", d,
                                     strerror(errno));
        if (!S_ISDIR(sb.st_mode))
            return weir_stage_errorf(s, WEIR_EIO, "'%s' is in the way of a directory", d);
    }
    if (st->ndirs == st->cap_dirs) {
        size_t cap = st->cap_dirs ? st->cap_dirs * 2 : 64;
        char **nd = realloc(st->dirs, cap * sizeof *nd);
        bool *nm = nd ? realloc(st->dir_made, cap * sizeof *nm) : NULL;
        if (nd) st->dirs = nd;
        if (!nd || !nm) {
            if (made) rmdir(d);
            return weir_stage_errorf(s, WEIR_ENOMEM, "out of memory");
        }
        st->dir_made = nm;
        st->cap_dirs = cap;
    }
    st->dirs[st->ndirs] = d;
    st->dir_made[st->ndirs] = made;
    st->dslots[i] = (uint32_t)st->ndirs + 1;
    st->ndirs++;
    return 0;
}

/* The file for the key in st->scratch[0..klen) (row r of in gives its
 * values), found or added. */
static int split_find(weir_stage *s, split_state *st, const weir_batch *in, uint32_t r,
                      size_t klen, size_t *out)
{
    uint64_t h = split_hash(st->scratch, klen);
    if (st->nfiles * 2 >= st->nslots && split_grow(st))
        return weir_stage_errorf(s, WEIR_ENOMEM, "out of memory");
    size_t i = h & (st->nslots - 1);
    for (; st->kslots[i]; i = (i + 1) & (st->nslots - 1)) {
        const split_file *f = &st->files[st->kslots[i] - 1];
        if (f->hash == h && f->key_len == klen && memcmp(f->key, st->scratch, klen) == 0) {
            *out = st->kslots[i] - 1;
            return 0;
        }
    }
    size_t plen = 0;
    int rc = split_make_path(s, st, in, r, &plen);
    if (rc) return rc;
    uint64_t ph = split_hash(st->path, plen);
    size_t j = ph & (st->nslots - 1);
    for (; st->pslots[j]; j = (j + 1) & (st->nslots - 1)) {
        const split_file *f = &st->files[st->pslots[j] - 1];
        if (f->phash == ph && strcmp(f->final, st->path) == 0)
            return weir_stage_errorf(s, WEIR_EDATA,
                                     "two different keys make the same file '%s': separate "
                                     "the template's placeholders with '/'",
                                     st->path);
    }
    if (st->nfiles >= INT32_MAX - 1)
        return weir_stage_errorf(s, WEIR_ELIMIT, "more than %d keys", INT32_MAX - 1);
    if (st->nfiles == st->cap_files) {
        size_t cap = st->cap_files ? st->cap_files * 2 : 256;
        split_file *nf = realloc(st->files, cap * sizeof *nf);
        if (!nf) return weir_stage_errorf(s, WEIR_ENOMEM, "out of memory");
        st->files = nf;
        st->cap_files = cap;
    }
    /* Directories below the fixed one, parents first. */
    for (size_t c = st->t.prefix; c < plen; c++)
        if (st->path[c] == '/' && (rc = split_dir(s, st, st->path, c))) return rc;
    split_file *f = &st->files[st->nfiles];
    *f = (split_file){.hash = h, .key_len = (uint32_t)klen, .phash = ph, .fd = -1,
                      .prev = -1, .next = -1, .slot = -1};
    f->key = (const unsigned char *)split_strdup_arena(st, st->scratch, klen, false);
    f->final = split_strdup_arena(st, st->path, plen, true);
    if (!f->key || !f->final) return weir_stage_errorf(s, WEIR_ENOMEM, "out of memory");
    st->kslots[i] = (uint32_t)st->nfiles + 1;
    st->pslots[j] = (uint32_t)st->nfiles + 1;
    *out = st->nfiles++;
    return 0;
}

/* ---- open files ------------------------------------------------------------------------- */

static void split_lru_unlink(split_state *st, int32_t i)
{
    split_file *f = &st->files[i];
    if (f->prev >= 0) st->files[f->prev].next = f->next;
    else st->lru_head = f->next;
    if (f->next >= 0) st->files[f->next].prev = f->prev;
    else st->lru_tail = f->prev;
    f->prev = f->next = -1;
}

static void split_lru_front(split_state *st, int32_t i)
{
    split_file *f = &st->files[i];
    f->prev = -1;
    f->next = st->lru_head;
    if (st->lru_head >= 0) st->files[st->lru_head].prev = i;
    st->lru_head = i;
    if (st->lru_tail < 0) st->lru_tail = i;
}

static int split_write_all(weir_stage *s, split_file *f, const void *p, size_t n)
{
    const unsigned char *q = p;
    while (n > 0) {
        ssize_t k = write(f->fd, q, n);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0)
            return weir_stage_errorf(s, WEIR_EIO, "write '%s': %s", f->final, strerror(errno));
        q += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Write out what f's buffer holds (one zstd frame for .zst). */
static int split_flush(weir_stage *s, split_state *st, split_file *f)
{
    weir_batch *b = st->bufs[f->slot];
    if (b->len == 0) return 0;
    int rc;
    if (st->cctx) {
        size_t z = ZSTD_compress2(st->cctx, st->zbuf, st->zcap, b->data, b->len);
        if (ZSTD_isError(z))
            return weir_stage_errorf(s, WEIR_EIO, "compressing '%s': %s", f->final,
                                     ZSTD_getErrorName(z));
        rc = split_write_all(s, f, st->zbuf, z);
    } else {
        rc = split_write_all(s, f, b->data, b->len);
    }
    b->len = 0;
    return rc;
}

/* Flush and close f; its buffer goes back to the free list. */
static int split_evict(weir_stage *s, split_state *st, int32_t i)
{
    split_file *f = &st->files[i];
    int rc = split_flush(s, st, f);
    split_lru_unlink(st, i);
    st->free_slots[st->nfree++] = f->slot;
    f->slot = -1;
    int fd = f->fd;
    f->fd = -1;
    st->nopen--;
    if (close(fd) != 0 && rc == 0)
        rc = weir_stage_errorf(s, WEIR_EIO, "write '%s': %s", f->final, strerror(errno));
    return rc;
}

/* A new temporary beside f's final name. @return 0, an errno value (> 0)
 * if it could not be created, or a recorded error (< 0). */
static int split_create(weir_stage *s, split_state *st, split_file *f)
{
    const char *slash = strrchr(f->final, '/');
    size_t dirlen = slash ? (size_t)(slash - f->final) + 1 : 0;
    const char *base = f->final + dirlen;
    size_t blen = strlen(base);
    if (blen > SPLIT_NAME_MAX - 14) blen = SPLIT_NAME_MAX - 14; /* ".B.weir-XXXXXX" fits */
    size_t size = dirlen + blen + 16;
    char *tmp = split_alloc(st, size);
    if (!tmp) return weir_stage_errorf(s, WEIR_ENOMEM, "out of memory");
    static const char alnum[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    for (int attempt = 0; attempt < 100; attempt++) {
        unsigned char rnd[6];
        if (getentropy(rnd, sizeof rnd) != 0) {
            uint64_t t = weir_now_ns() ^ ((uint64_t)getpid() << 20) ^ (uint64_t)attempt;
            for (size_t i = 0; i < sizeof rnd; i++) rnd[i] = (unsigned char)(t >> (i * 7));
        }
        char x[7];
        for (size_t i = 0; i < sizeof rnd; i++) x[i] = alnum[rnd[i] % (sizeof alnum - 1)];
        x[6] = '\0';
        snprintf(tmp, size, "%.*s.%.*s.weir-%s", (int)dirlen, f->final, (int)blen, base, x);
        f->fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (f->fd >= 0) {
            f->tmp = tmp;
            return 0;
        }
        if (errno != EEXIST) break;
    }
    return errno;
}

/* Make f open, with a buffer, at the front of the LRU. */
static int split_use(weir_stage *s, split_state *st, int32_t i)
{
    split_file *f = &st->files[i];
    if (f->fd >= 0) {
        if (st->lru_head != i) {
            split_lru_unlink(st, i);
            split_lru_front(st, i);
        }
        return 0;
    }
    int rc;
    if (st->nopen >= st->max_open && (rc = split_evict(s, st, st->lru_tail))) return rc;
    bool fresh = !f->tmp;
    for (;;) {
        int err = 0;
        if (fresh) {
            err = split_create(s, st, f);
            if (err < 0) return err;
        } else {
            f->fd = open(f->tmp, O_WRONLY | O_APPEND | O_CLOEXEC);
            if (f->fd < 0) err = errno;
        }
        if (err == 0) break;
        if ((err == EMFILE || err == ENFILE) && st->nopen > 0) {
            /* The system allows fewer open files than max_open: use that. */
            st->max_open = st->nopen;
            if ((rc = split_evict(s, st, st->lru_tail))) return rc;
            continue;
        }
        return weir_stage_errorf(s, WEIR_EIO, "cannot %s a temporary for '%s': %s",
                                 fresh ? "create" : "reopen", f->final, strerror(err));
    }
    st->nopen++;
    f->slot = st->free_slots[--st->nfree];
    if (!st->bufs[f->slot] &&
        (rc = weir_batch_create(&st->bufs[f->slot], WEIR_KIND_BYTES, st->bufcap)))
        return weir_stage_errorf(s, rc, "out of memory");
    split_lru_front(st, i);
    if (fresh && st->t.fmt == SPLIT_CSV && weir__csv_header(st->bufs[f->slot], st->schema, ','))
        return weir_stage_errorf(s, WEIR_ENOMEM, "out of memory");
    return 0;
}

/* Rows [from, to) of in into file i's buffer. */
static int split_put(weir_stage *s, split_state *st, int32_t i, const weir_batch *in,
                     uint32_t from, uint32_t to)
{
    split_file *f = &st->files[i];
    weir_batch *b = st->bufs[f->slot];
    for (uint32_t r = from; r < to;) {
        uint32_t end = to - r > 1024 ? r + 1024 : to;
        int rc = st->t.fmt == SPLIT_CSV ? weir__csv_rows(b, in, r, end, ',')
                                        : weir__jsonl_rows(b, in, r, end);
        if (rc) return weir_stage_errorf(s, rc, "out of memory");
        if (b->len >= st->bufcap && (rc = split_flush(s, st, f))) return rc;
        r = end;
    }
    return 0;
}

/* ---- the stage -------------------------------------------------------------------------- */

static int split_start(weir_stage *s, split_state *st, const weir_batch *in)
{
    for (size_t k = 0; k < st->nby; k++) {
        int c = weir_schema_find(in->schema, st->by[k]);
        if (c < 0) return weir_stage_errorf(s, WEIR_ESPEC, "unknown column '%s'", st->by[k]);
        st->key_idx[k] = (uint32_t)c;
    }
    st->schema = weir_schema_retain(in->schema);
    return 0;
}

static int split_rows(weir_stage *s, split_state *st, const weir_batch *in)
{
    int32_t cur = -1;
    uint32_t from = 0;
    for (uint32_t r = 0; r < in->nrows; r++) {
        size_t need = 0;
        for (size_t k = 0; k < st->nby; k++)
            need += 4 + in->fields[(size_t)r * in->ncols + st->key_idx[k]].len;
        if (need > st->scratch_cap) {
            unsigned char *ns = realloc(st->scratch, need * 2);
            if (!ns) return weir_stage_errorf(s, WEIR_ENOMEM, "out of memory");
            st->scratch = ns;
            st->scratch_cap = need * 2;
        }
        size_t len = 0;
        for (size_t k = 0; k < st->nby; k++) {
            size_t fl;
            const unsigned char *f = weir_batch_field(in, r, st->key_idx[k], &fl);
            uint32_t l = (uint32_t)fl;
            memcpy(st->scratch + len, &l, 4);
            if (fl) memcpy(st->scratch + len + 4, f, fl);
            len += 4 + fl;
        }
        /* Runs of rows with one key go out together. */
        if (cur >= 0 && st->files[cur].key_len == len &&
            memcmp(st->files[cur].key, st->scratch, len) == 0)
            continue;
        int rc;
        if (cur >= 0 && (rc = split_put(s, st, cur, in, from, r))) return rc;
        size_t i = 0;
        if ((rc = split_find(s, st, in, r, len, &i))) return rc;
        if ((rc = split_use(s, st, (int32_t)i))) return rc;
        cur = (int32_t)i;
        from = r;
    }
    return cur >= 0 ? split_put(s, st, cur, in, from, in->nrows) : 0;
}

static int split_process(weir_stage *s, weir_batch *in)
{
    split_state *st = weir_stage_state(s);
    int rc = 0;
    if (!st->schema) rc = split_start(s, st, in);
    else if (in->schema != st->schema && !weir_schema_equal(in->schema, st->schema))
        rc = weir_stage_errorf(s, WEIR_EDATA,
                               "rows from %s have other columns than the rows before",
                               in->origin ? in->origin : "a later input");
    if (rc == 0) rc = split_rows(s, st, in);
    weir_batch_release(in);
    return rc;
}

/* End of input: everything out and on disk, so commit() only renames. */
static int split_finish(weir_stage *s)
{
    split_state *st = weir_stage_state(s);
    int rc = 0;
    while (rc == 0 && st->lru_head >= 0) rc = split_evict(s, st, st->lru_head);
    if (rc) return rc;
    if (st->nfiles) {
        int fd = open(st->base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd >= 0) {
            int e = syncfs(fd) == 0 ? 0 : errno;
            close(fd);
            if (e)
                return weir_stage_errorf(s, WEIR_EIO, "writing files under '%s': %s",
                                         st->base, strerror(e));
        }
    }
    st->finished = true;
    return 0;
}

static int split_commit(weir_stage *s)
{
    split_state *st = weir_stage_state(s);
    if (!st) return 0;
    if (!st->finished) {
        int rc = split_finish(s);
        if (rc) return rc;
    }
    for (size_t i = 0; i < st->nfiles; i++) {
        split_file *f = &st->files[i];
        if (!f->tmp) continue;
        if (rename(f->tmp, f->final) != 0)
            return weir_stage_errorf(s, WEIR_EIO, "cannot rename '%s' to '%s': %s", f->tmp,
                                     f->final, strerror(errno));
        f->tmp = NULL;
    }
    /* Make the renames durable; a file system that cannot sync is no
     * reason to fail. */
    int fd = st->nfiles ? open(st->base, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    if (fd >= 0) {
        (void)syncfs(fd);
        close(fd);
    }
    st->committed = true;
    return 0;
}

const weir_stage_def weir__stage_split = {
    .abi = WEIR_ABI_VERSION,
    .name = "split",
    .summary = "write rows into one file per key value (CSV or JSON Lines by extension, "
               "optionally .zst), each renamed into place only if the run succeeds",
    .args = (const weir_arg_def[]){
        {"path_template", WEIR_ARG_STRING, NULL,
         "the files' path with {col} placeholders, e.g. \"out/{payment}/part.csv.zst\"; "
         "the directory before the first placeholder must exist, those below it are "
         "made. In a value, bytes other than A-Z a-z 0-9 - _ . (and a leading .) become "
         "%XX, and the empty value is %empty, so no value leaves the directory"},
        {"by", WEIR_ARG_LIST, "",
         "the key columns; by default the template's placeholders (given, it must name "
         "exactly those)"},
        {"max_open", WEIR_ARG_INT, "128",
         "files open at once; the least recently used is closed and reopened to append "
         "when its key comes back"},
        {NULL}},
    .in_kind = WEIR_KIND_ROWS,
    .out_kind = WEIR_KIND_NONE,
    .open = split_open,
    .process = split_process,
    .finish = split_finish,
    .close = split_close,
    .plan = split_plan,
    .commit = split_commit,
};

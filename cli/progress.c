/*
 * progress.c — the live display of `weir run` on stderr: two lines redrawn
 * in place about five times a second,
 *
 *   4.20 s | input 512.0/1024.0 MB 50% ETA 4 s | 1.23 M rows/s | 121.9 MB/s
 *   read 12% | csv 61% (split 96%*) [16/32] | filter 40% [2/32] | write 5%
 *
 * input bytes read of the total (the sources' progress counters), rows
 * entering the pipeline per second, and per stage the share of the last
 * interval its replicas were busy — and its splitter, if it has one
 * (* marks the busiest) — with how many
 * batches wait in its input channels of how many they hold (full channels
 * are where the pipeline backs up).
 *
 * The display thread only reads the runtime's counters. The lines are
 * erased before anything else is printed: cli_progress_stop() joins the
 * thread and erases them, and when stdout is the same terminal, the run's
 * stdout goes through a pipe that this file relays, erasing the lines
 * before each piece of output so that the two never overwrite each other.
 */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PROGRESS_FIRST_NS 500000000ull /* quick runs show nothing */
#define PROGRESS_EVERY_NS 200000000ull
#define PROGRESS_ERASE "\r\033[J"       /* to column 0, clear to the end of screen */

struct cli_progress {
    weir_graph *g;
    weir_node *const *nodes;
    size_t n;
    uint64_t t0;
    bool color;

    pthread_mutex_t mu; /* the terminal: drawing, erasing, relaying */
    pthread_cond_t cv;
    bool stop;
    bool shown;     /* the lines are on the screen */
    bool line_open; /* relayed output ended mid-line: do not draw over it */
    pthread_t thread;

    /* Rates: the previous sample, and smoothed values. */
    uint64_t prev_t, prev_rows, prev_bytes;
    uint64_t *prev_busy, *prev_split; /* per node; the splitter's apart */
    double rows_rate, bytes_rate;
    bool have_prev;

    /* stdout relay (stdout is the terminal stderr is). */
    int saved_out;  /* the terminal, or -1 */
    int relay_in;   /* the pipe's read end */
    pthread_t relay;
    bool relaying;
    atomic_bool draining; /* stop once the pipe is empty */
};

/* For the signal handler: are lines on the screen? */
static volatile sig_atomic_t progress_shown;

static void progress_write(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return; /* a display: nothing to do about a failed write */
        p += k;
        n -= (size_t)k;
    }
}

void cli_progress_erase_from_signal(void)
{
    if (progress_shown) {
        int saved = errno;
        (void)!write(STDERR_FILENO, PROGRESS_ERASE, sizeof PROGRESS_ERASE - 1);
        errno = saved;
    }
}

/* With mu held. */
static void progress_erase(cli_progress *p)
{
    if (!p->shown) return;
    progress_write(STDERR_FILENO, PROGRESS_ERASE, sizeof PROGRESS_ERASE - 1);
    p->shown = false;
    progress_shown = 0;
}

/* ---- one line, cut at the terminal's width ------------------------------------ */

typedef struct line {
    char buf[2048];
    size_t len;
    int vis, max; /* visible columns used, and allowed */
    bool cut;
} line;

static void line_add(line *l, const char *s)
{
    for (; *s && !l->cut; s++) {
        if (l->vis >= l->max || l->len + 16 >= sizeof l->buf) {
            l->cut = true;
            break;
        }
        l->buf[l->len++] = *s;
        l->vis++;
    }
}

/* An escape sequence takes no column; a reset is kept even after a cut. */
static void line_esc(line *l, const char *esc, bool always)
{
    size_t k = strlen(esc);
    if ((!l->cut || always) && l->len + k < sizeof l->buf) {
        memcpy(l->buf + l->len, esc, k);
        l->len += k;
    }
}

static int terminal_cols(void)
{
    struct winsize ws;
    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20) return ws.ws_col;
    return 80;
}

/* ---- drawing --------------------------------------------------------------------- */

static weir_kind progress_kind(weir_kind k, weir_kind other)
{
    return k == WEIR_KIND_ANY ? other : k;
}

/* With mu held. */
static void progress_draw(cli_progress *p)
{
    uint64_t now = weir_now_ns();
    double elapsed = (double)(now - p->t0) / 1e9;
    uint64_t done = 0, total = 0, produced = 0, rows = 0;
    bool total_known = true, any_progress = false;
    weir_node_stats st[64];
    size_t n = p->n < 64 ? p->n : 64;
    for (size_t i = 0; i < n; i++) {
        weir_node_get_stats(p->nodes[i], &st[i]);
        const weir_stage_def *d = weir_node_def(p->nodes[i]);
        weir_kind in = d->in_kind, out = progress_kind(d->out_kind, d->in_kind);
        if (in == WEIR_KIND_NONE) {
            done += st[i].progress_done;
            total += st[i].progress_total;
            produced += st[i].bytes_out;
            if (st[i].progress_total == 0) total_known = false;
            if (st[i].progress_done || st[i].progress_total) any_progress = true;
        }
        if (out == WEIR_KIND_ROWS && (in == WEIR_KIND_NONE || in == WEIR_KIND_BYTES))
            rows += st[i].rows_out;
    }
    uint64_t in_bytes = any_progress ? done : produced;

    /* Rates over the last interval, smoothed so the figures do not jump. */
    double dt = p->have_prev ? (double)(now - p->prev_t) / 1e9 : 0;
    if (dt > 0) {
        double rr = (double)(rows - p->prev_rows) / dt;
        double br = (double)(in_bytes - p->prev_bytes) / dt;
        p->rows_rate = p->rows_rate > 0 ? 0.5 * rr + 0.5 * p->rows_rate : rr;
        p->bytes_rate = p->bytes_rate > 0 ? 0.5 * br + 0.5 * p->bytes_rate : br;
    } else if (elapsed > 0) {
        p->rows_rate = (double)rows / elapsed;
        p->bytes_rate = (double)in_bytes / elapsed;
    }

    int cols = terminal_cols();
    line l1 = {.max = cols - 1}, l2 = {.max = cols - 1};
    char t[128], u[64];
    if (elapsed < 60) snprintf(u, sizeof u, "%.1f s", elapsed);
    else cli_fmt_secs(u, sizeof u, elapsed);
    line_add(&l1, u);
    if (any_progress && total_known && total > 0) {
        double frac = (double)done / (double)total;
        snprintf(t, sizeof t, " | input %.1f/%.1f MB %.0f%%", (double)done / 1e6,
                 (double)total / 1e6, frac * 100);
        line_add(&l1, t);
        if (done > 0 && done < total) {
            double eta = elapsed * (double)(total - done) / (double)done;
            cli_fmt_secs(u, sizeof u, eta);
            snprintf(t, sizeof t, " ETA %s", u);
            line_add(&l1, t);
        }
    } else {
        snprintf(t, sizeof t, " | input %.1f MB", (double)in_bytes / 1e6);
        line_add(&l1, t);
    }
    if (rows > 0) {
        cli_fmt_count(u, sizeof u, p->rows_rate);
        snprintf(t, sizeof t, " | %s rows/s", u);
        line_add(&l1, t);
    }
    snprintf(t, sizeof t, " | %.1f MB/s", p->bytes_rate / 1e6);
    line_add(&l1, t);

    /* Per stage: busy share of the interval (its splitter's apart), and
     * the input channels. */
    double busiest = -1, frac[64], sfrac[64];
    size_t bi = 0;
    bool bsplit = false;
    double span = dt > 0 ? dt : elapsed;
    for (size_t i = 0; i < n; i++) {
        int r = st[i].replicas > 0 ? st[i].replicas : 1;
        uint64_t db = st[i].busy_ns >= p->prev_busy[i] ? st[i].busy_ns - p->prev_busy[i] : 0;
        frac[i] = span > 0 ? (double)db / 1e9 / span / r : 0;
        if (frac[i] > 1) frac[i] = 1;
        if (frac[i] > busiest) {
            busiest = frac[i];
            bi = i;
            bsplit = false;
        }
        p->prev_busy[i] = st[i].busy_ns;
        weir_node_stats sp;
        sfrac[i] = -1;
        if (weir_node_replica_stats(p->nodes[i], -1, &sp) == 0) {
            db = sp.busy_ns >= p->prev_split[i] ? sp.busy_ns - p->prev_split[i] : 0;
            sfrac[i] = span > 0 ? (double)db / 1e9 / span : 0;
            if (sfrac[i] > 1) sfrac[i] = 1;
            if (sfrac[i] > busiest) {
                busiest = sfrac[i];
                bi = i;
                bsplit = true;
            }
            p->prev_split[i] = sp.busy_ns;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (i) line_add(&l2, " | ");
        bool hot = i == bi && busiest >= 0.05;
        if (hot && p->color) line_esc(&l2, "\033[1m", false);
        line_add(&l2, weir_node_label(p->nodes[i]));
        if (st[i].replicas > 0 && st[i].finished >= st[i].replicas) {
            line_add(&l2, " done");
        } else {
            snprintf(t, sizeof t, " %.0f%%%s", frac[i] * 100, hot && !bsplit ? "*" : "");
            line_add(&l2, t);
            if (sfrac[i] >= 0) {
                snprintf(t, sizeof t, " (split %.0f%%%s)", sfrac[i] * 100, hot && bsplit ? "*" : "");
                line_add(&l2, t);
            }
        }
        if (hot && p->color) line_esc(&l2, "\033[0m", true);
        if (st[i].capacity > 0) {
            bool full = st[i].queued >= st[i].capacity;
            snprintf(t, sizeof t, " [%llu/%llu]", (unsigned long long)st[i].queued,
                     (unsigned long long)st[i].capacity);
            if (full && p->color) line_esc(&l2, "\033[33m", false);
            line_add(&l2, t);
            if (full && p->color) line_esc(&l2, "\033[0m", true);
        }
    }
    p->prev_t = now;
    p->prev_rows = rows;
    p->prev_bytes = in_bytes;
    p->have_prev = true;

    /* Both lines, then back to the start of the first: the next frame, the
     * erase, and relayed output all begin there. */
    char frame[sizeof l1.buf + sizeof l2.buf + 32];
    size_t k = 0;
    frame[k++] = '\r';
    memcpy(frame + k, l1.buf, l1.len);
    k += l1.len;
    memcpy(frame + k, "\033[K\n", 4);
    k += 4;
    memcpy(frame + k, l2.buf, l2.len);
    k += l2.len;
    memcpy(frame + k, "\033[K\r\033[1A", 8);
    k += 8;
    progress_write(STDERR_FILENO, frame, k);
    p->shown = true;
    progress_shown = 1;
}

static void *progress_main(void *arg)
{
    cli_progress *p = arg;
    pthread_mutex_lock(&p->mu);
    uint64_t next = p->t0 + PROGRESS_FIRST_NS;
    while (!p->stop) {
        uint64_t now = weir_now_ns(); /* CLOCK_MONOTONIC, as the condvar's */
        if (now < next) {
            struct timespec ts = {.tv_sec = (time_t)(next / 1000000000ull),
                                  .tv_nsec = (long)(next % 1000000000ull)};
            pthread_cond_timedwait(&p->cv, &p->mu, &ts);
            continue;
        }
        if (!p->line_open) progress_draw(p);
        next = weir_now_ns() + PROGRESS_EVERY_NS;
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* ---- the stdout relay ---------------------------------------------------------------- */

static void *relay_main(void *arg)
{
    cli_progress *p = arg;
    char buf[1 << 16];
    for (;;) {
        /* End of file comes when the last write end closes; should a stage
         * have leaked one, the stop request ends the relay once the pipe
         * has been quiet for a moment. */
        struct pollfd pfd = {.fd = p->relay_in, .events = POLLIN};
        int r = poll(&pfd, 1, 100);
        if (r == 0) {
            if (atomic_load(&p->draining)) break;
            continue;
        }
        if (r < 0 && errno != EINTR) break;
        if (r < 0) continue;
        ssize_t k = read(p->relay_in, buf, sizeof buf);
        if (k < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (k <= 0) break;
        pthread_mutex_lock(&p->mu);
        progress_erase(p);
        progress_write(p->saved_out, buf, (size_t)k);
        p->line_open = buf[k - 1] != '\n';
        pthread_mutex_unlock(&p->mu);
    }
    return NULL;
}

/* Is stdout the terminal stderr is? */
static bool same_terminal(void)
{
    struct stat a, b;
    if (!isatty(STDOUT_FILENO) || !isatty(STDERR_FILENO)) return false;
    if (fstat(STDOUT_FILENO, &a) != 0 || fstat(STDERR_FILENO, &b) != 0) return false;
    return a.st_rdev == b.st_rdev;
}

/* Route stdout through a pipe we relay. On failure stdout stays as it was. */
static void relay_start(cli_progress *p)
{
    int fds[2];
    fflush(stdout);
    if (pipe2(fds, O_CLOEXEC) != 0) return;
    p->saved_out = fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);
    if (p->saved_out < 0 || dup2(fds[1], STDOUT_FILENO) < 0) goto fail;
    close(fds[1]);
    p->relay_in = fds[0];
    if (pthread_create(&p->relay, NULL, relay_main, p) != 0) {
        dup2(p->saved_out, STDOUT_FILENO);
        close(fds[0]);
        close(p->saved_out);
        p->saved_out = -1;
        return;
    }
    p->relaying = true;
    return;
fail:
    if (p->saved_out >= 0) close(p->saved_out);
    p->saved_out = -1;
    close(fds[0]);
    close(fds[1]);
}

static void relay_stop(cli_progress *p)
{
    if (!p->relaying) return;
    fflush(stdout);
    /* The terminal back on fd 1 closes the pipe's last write end: the relay
     * reads what is left, then end of file. */
    dup2(p->saved_out, STDOUT_FILENO);
    atomic_store(&p->draining, true);
    pthread_join(p->relay, NULL);
    close(p->relay_in);
    close(p->saved_out);
    p->saved_out = -1;
    p->relaying = false;
}

/* ---- start and stop ------------------------------------------------------------------- */

cli_progress *cli_progress_start(weir_graph *g)
{
    cli_progress *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->g = g;
    p->n = weir_graph_nodes(g, &p->nodes);
    p->prev_busy = calloc(p->n ? p->n : 1, sizeof *p->prev_busy);
    p->prev_split = calloc(p->n ? p->n : 1, sizeof *p->prev_split);
    p->saved_out = p->relay_in = -1;
    const char *nc = getenv("NO_COLOR");
    p->color = !(nc && nc[0]);
    p->t0 = weir_now_ns();
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (!p->prev_busy || !p->prev_split) goto fail;
    /* The display's threads must not take the signals meant for the run. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    if (same_terminal()) relay_start(p);
    int rc = pthread_create(&p->thread, NULL, progress_main, p);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        relay_stop(p);
        goto fail;
    }
    return p;
fail:
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p->prev_busy);
    free(p->prev_split);
    free(p);
    return NULL;
}

void cli_progress_stop(cli_progress *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->thread, NULL);
    relay_stop(p);
    pthread_mutex_lock(&p->mu);
    progress_erase(p);
    pthread_mutex_unlock(&p->mu);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p->prev_busy);
    free(p->prev_split);
    free(p);
}

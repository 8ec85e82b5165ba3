/*
 * gen(kind="trips", rows=1000, seed=42) — a source of generated rows.
 *
 * kind "trips": taxi trips shaped like the NYC TLC data (datasets/README.md
 * documents every column and distribution). Built to exercise parsers and
 * writers as well as to time them: zone names hold commas and quotes, and
 * about 1% of the notes hold an embedded newline.
 *
 * Determinism: row i is a pure function of (seed, i). Each row seeds its
 * own small generator from a hash of the two, so the bytes depend on
 * nothing else — not batch size, threads, time or the platform (integer
 * arithmetic only; no libm, no locale) — and rows=N is a prefix of rows=M
 * for N < M.
 *
 * Speed: numbers are written digit by digit into a row buffer (no printf),
 * and the "YYYY-MM-DD " part of a timestamp is cached per day, since
 * consecutive trips share it. rows=0 is endless: the source stops when
 * nobody downstream wants more (weir_stage_emit returns WEIR_DONE, as
 * after head()) or when the run is cancelled.
 */
#include "stages.h"

#include <stdlib.h>
#include <string.h>

#define GEN_BATCH_ROWS 4096

/* ---- the trips generator ------------------------------------------------ */

enum {
    TRIP_ID, TRIP_VENDOR, TRIP_PICKUP, TRIP_DROPOFF, TRIP_PASSENGERS, TRIP_DISTANCE,
    TRIP_FARE, TRIP_TIP, TRIP_PAYMENT, TRIP_ZONE, TRIP_NOTES, TRIP_NCOLS
};

static const char *const trips_columns[TRIP_NCOLS] = {
    "id", "vendor", "pickup_at", "dropoff_at", "passenger_count", "distance",
    "fare", "tip", "payment", "zone", "notes",
};

static const char *const trips_zones[] = {
    "JFK Airport", "LaGuardia Airport", "Midtown Center", "Upper East Side North",
    "Upper East Side South", "Times Sq/Theatre District", "Murray Hill", "Union Sq",
    "Lincoln Square East", "East Village", "Clinton East", "Penn Station/Madison Sq West",
    "Gramercy", "Midtown East", "Lenox Hill West", "East Chelsea", "West Village",
    "Upper West Side South", "Hell's Kitchen", "Astoria, Queens",
    "Greenwich Village North", "Yorkville West", "Sutton Place/Turtle Bay North",
    "\"The\" Village", "Battery Park City", "Financial District North",
    "TriBeCa/Civic Center", "Kips Bay", "Williamsburg, Brooklyn", "SoHo",
    "Park Slope, Brooklyn", "Chinatown", "Long Island City, Queens", "Lower East Side",
    "Harlem, \"Central\"", "Flatiron", "Garment District", "Jamaica, Queens",
    "Newark Airport, NJ", "Bronx Park",
};
#define TRIPS_NZONES (sizeof trips_zones / sizeof *trips_zones)

/* ~9% of rows: short notes, some with commas and quotes. */
static const char *const trips_notes[] = {
    "airport run", "rush hour", "rain", "quiet ride", "detour via FDR",
    "card reader slow", "passenger asked for AC", "tolls, paid by driver",
    "said \"keep the change\"", "luggage, 2 bags", "pickup at \"side door\"",
    "long wait, heavy traffic", "shared ride", "child seat",
};
/* ~1% of rows: notes with an embedded newline. */
static const char *const trips_notes_nl[] = {
    "lost item:\numbrella", "two stops\nsecond at 5th Ave",
    "complaint filed\n\"rude driver\"", "drop at corner,\nnot the door",
};
#define TRIPS_NNOTES (sizeof trips_notes / sizeof *trips_notes)
#define TRIPS_NNOTES_NL (sizeof trips_notes_nl / sizeof *trips_notes_nl)

/* Distance quantiles in hundredths of a mile: a log-normal with median
 * 1.80 mi and sigma 0.85, at p = k/128, clamped to 0.30..30.00. Between
 * points the distance is interpolated linearly. A table, not exp(), so the
 * bytes do not depend on the platform's libm. */
static const uint16_t trips_distance_q[129] = {
    30,   30,   30,   33,   37,   40,   43,   46,   49,   51,   54,   56,   59,
    61,   63,   66,   68,   70,   72,   74,   76,   78,   80,   83,   85,   87,
    89,   91,   93,   95,   97,   99,   101,  104,  106,  108,  110,  112,  114,
    117,  119,  121,  123,  126,  128,  130,  133,  135,  137,  140,  142,  145,
    147,  150,  152,  155,  157,  160,  163,  166,  168,  171,  174,  177,  180,
    183,  186,  189,  192,  196,  199,  202,  206,  209,  213,  216,  220,  224,
    228,  232,  236,  240,  244,  249,  253,  258,  263,  268,  273,  278,  283,
    289,  294,  300,  306,  313,  319,  326,  333,  341,  348,  356,  365,  373,
    383,  392,  403,  413,  425,  437,  450,  464,  479,  495,  512,  531,  552,
    575,  601,  630,  663,  702,  748,  805,  877,  975,  1123, 1405, 3000,
};

/* splitmix64 (Vigna): the mix below and the golden-ratio increment. */
#define GEN_GOLDEN 0x9e3779b97f4a7c15ull

static uint64_t gen_mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* A row's own generator: a splitmix64 stream from a hashed start, so
 * neighbouring rows' streams do not overlap. */
typedef struct gen_rng {
    uint64_t x;
} gen_rng;

static uint64_t gen_next(gen_rng *r)
{
    r->x += GEN_GOLDEN;
    return gen_mix(r->x);
}

/* Uniform in [0, n) from 32 random bits (multiply-shift; the bias, below
 * n / 2^32, does not matter here and it is deterministic). */
static uint32_t gen_below(uint32_t bits, uint32_t n)
{
    return (uint32_t)(((uint64_t)bits * n) >> 32);
}

/* Days since 1970-01-01 of a proleptic Gregorian date, and back (the
 * era-based algorithms: a 400-year era has 146097 days). */
static int64_t gen_days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void gen_civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

/* "YYYY-MM-DD " of one day, kept while consecutive timestamps share it. */
typedef struct gen_day {
    int64_t day;
    char text[11];
} gen_day;

typedef struct gen_state {
    weir_schema *schema;
    uint64_t key;        /* the seed, mixed */
    uint64_t next, last; /* next row index; rows to make (0: endless) */
    int64_t base;        /* seconds since the epoch of the first pickup slot */
    gen_day day[2];      /* pickup, dropoff */
} gen_state;

/* Trips start 2024-03-01 00:00:00, one every 0.85 s on average (about the
 * rate of NYC yellow cabs). Timestamps wrap after a 400-year Gregorian
 * cycle so that years keep four digits, even for an endless run. */
#define TRIPS_GAP_MS 850u
#define TRIPS_CYCLE_S (146097ll * 86400)

static char *gen_u64(char *p, uint64_t v)
{
    char tmp[20];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n) *p++ = tmp[--n];
    return p;
}

/* Hundredths as "D.CC". */
static char *gen_cents(char *p, uint64_t c)
{
    p = gen_u64(p, c / 100);
    *p++ = '.';
    *p++ = (char)('0' + c / 10 % 10);
    *p++ = (char)('0' + c % 10);
    return p;
}

static char *gen_2(char *p, unsigned v)
{
    *p++ = (char)('0' + v / 10);
    *p++ = (char)('0' + v % 10);
    return p;
}

/* "YYYY-MM-DD HH:MM:SS" for seconds since the epoch. */
static char *gen_time(char *p, gen_day *cache, int64_t t)
{
    int64_t day = t / 86400; /* t > 0 */
    unsigned sec = (unsigned)(t - day * 86400);
    if (day != cache->day) {
        int64_t y;
        unsigned m, d;
        gen_civil_from_days(day, &y, &m, &d);
        char *q = cache->text;
        q = gen_2(q, (unsigned)(y / 100));
        q = gen_2(q, (unsigned)(y % 100));
        *q++ = '-';
        q = gen_2(q, m);
        *q++ = '-';
        q = gen_2(q, d);
        *q = ' ';
        cache->day = day;
    }
    memcpy(p, cache->text, 11);
    p += 11;
    p = gen_2(p, sec / 3600);
    *p++ = ':';
    p = gen_2(p, sec / 60 % 60);
    *p++ = ':';
    return gen_2(p, sec % 60);
}

static char *gen_str(char *p, const char *s)
{
    size_t n = strlen(s);
    memcpy(p, s, n);
    return p + n;
}

/* Write trip number i (0-based) into buf; ends[c] is where column c ends.
 * buf must hold GEN_ROW_MAX bytes. */
#define GEN_ROW_MAX 512
static void gen_trip(gen_state *st, uint64_t i, char *buf, char **ends)
{
    gen_rng rng = {gen_mix(st->key ^ gen_mix(i + 1))};
    uint64_t r0 = gen_next(&rng), r1 = gen_next(&rng), r2 = gen_next(&rng),
             r3 = gen_next(&rng);
    uint32_t u[8] = {(uint32_t)r0, (uint32_t)(r0 >> 32), (uint32_t)r1,
                     (uint32_t)(r1 >> 32), (uint32_t)r2, (uint32_t)(r2 >> 32),
                     (uint32_t)r3, (uint32_t)(r3 >> 32)};
    char *p = buf;

    p = gen_u64(p, i + 1);
    ends[TRIP_ID] = p;

    uint32_t v = gen_below(u[0], 100);
    p = gen_str(p, v < 55 ? "VTS" : v < 85 ? "CMT" : v < 95 ? "DDS" : "MYC");
    ends[TRIP_VENDOR] = p;

    /* Pickups keep order: slot i starts at i * gap, jitter stays inside it. */
    uint64_t ms = i * TRIPS_GAP_MS + gen_below(u[1], TRIPS_GAP_MS);
    int64_t pickup = st->base + (int64_t)((ms / 1000) % (uint64_t)TRIPS_CYCLE_S);

    /* Distance: the quantile table at a uniform p, interpolated. */
    uint32_t seg = u[2] >> 25, frac = (u[2] >> 9) & 0xffff;
    uint32_t lo = trips_distance_q[seg], hi = trips_distance_q[seg + 1];
    uint64_t dist = lo + (((hi - lo) * frac) >> 16); /* hundredths of a mile */

    /* Duration: 6-20 mph in town, up to 20 mph more for long trips (they
     * take highways), plus 1-5 minutes at lights and the kerb. */
    uint32_t mph = 6 + gen_below(u[3], 15) + (uint32_t)(dist < 2000 ? dist / 100 : 20);
    int64_t dur = (int64_t)(dist * 36 / mph) + 60 + gen_below(u[4], 241);
    p = gen_time(p, &st->day[0], pickup);
    ends[TRIP_PICKUP] = p;
    p = gen_time(p, &st->day[1], pickup + dur);
    ends[TRIP_DROPOFF] = p;

    v = gen_below(u[5], 100);
    *p++ = (char)('0' + (v < 70 ? 1 : v < 84 ? 2 : v < 89 ? 3 : v < 92 ? 4 : v < 97 ? 5 : 6));
    ends[TRIP_PASSENGERS] = p;

    p = gen_cents(p, dist);
    ends[TRIP_DISTANCE] = p;

    /* Fare: $3.00 + $2.50/mile + $0.35/minute, give or take 50 cents. */
    uint64_t r4 = gen_next(&rng), r5 = gen_next(&rng);
    int64_t fare = 300 + (int64_t)(dist * 250 / 100) + dur * 35 / 60 +
                   (int64_t)gen_below((uint32_t)r4, 101) - 50;
    if (fare < 300) fare = 300;
    p = gen_cents(p, (uint64_t)fare);
    ends[TRIP_FARE] = p;

    /* Payment card 70%, cash 25%, dispute 3%, no_charge 2%; 80% of card
     * payers tip 15-25% of the fare. */
    v = gen_below((uint32_t)(r4 >> 32), 100);
    const char *payment = v < 70 ? "card" : v < 95 ? "cash" : v < 98 ? "dispute" : "no_charge";
    uint64_t tip = 0;
    if (v < 70 && gen_below((uint32_t)r5, 100) < 80) {
        uint32_t pct = 15 + gen_below((uint32_t)(r5 >> 32), 11);
        tip = ((uint64_t)fare * pct + 50) / 100;
    }
    p = gen_cents(p, tip);
    ends[TRIP_TIP] = p;
    p = gen_str(p, payment);
    ends[TRIP_PAYMENT] = p;

    /* Zone: the smaller of two uniform picks, so the first zones (the
     * airports, Midtown) come up most often. */
    uint64_t r6 = gen_next(&rng);
    uint32_t z1 = gen_below(u[6], TRIPS_NZONES), z2 = gen_below(u[7], TRIPS_NZONES);
    p = gen_str(p, trips_zones[z1 < z2 ? z1 : z2]);
    ends[TRIP_ZONE] = p;

    /* Notes: empty 90%, a short note 9%, a note with a newline 1%. */
    v = gen_below((uint32_t)r6, 1000);
    if (v < 10) p = gen_str(p, trips_notes_nl[gen_below((uint32_t)(r6 >> 32), TRIPS_NNOTES_NL)]);
    else if (v < 100) p = gen_str(p, trips_notes[gen_below((uint32_t)(r6 >> 32), TRIPS_NNOTES)]);
    ends[TRIP_NOTES] = p;
}

/* ---- the stage ---------------------------------------------------------------- */

static const char *const gen_kinds = "trips";

static int gen_check(weir_stage *s)
{
    const char *kind = weir_stage_arg_str(s, "kind");
    if (strcmp(kind, "trips") != 0)
        return weir_stage_errorf(s, WEIR_ESPEC, "unknown kind '%s' (kinds: %s)", kind,
                                 gen_kinds);
    int64_t rows = weir_stage_arg_int(s, "rows");
    if (rows < 0)
        return weir_stage_errorf(s, WEIR_ESPEC, "rows must be 0 (endless) or more, not %lld",
                                 (long long)rows);
    return 0;
}

static int gen_plan(weir_stage *s, const weir_schema *in, weir_schema **out)
{
    (void)in;
    int rc = gen_check(s);
    if (rc) return rc;
    return weir_schema_create(out, trips_columns, TRIP_NCOLS);
}

static int gen_open(weir_stage *s)
{
    gen_state *st = calloc(1, sizeof *st);
    if (!st) return WEIR_ENOMEM;
    weir_stage_set_state(s, st);
    int rc = gen_check(s);
    if (rc) return rc;
    st->key = gen_mix((uint64_t)weir_stage_arg_int(s, "seed") + GEN_GOLDEN);
    st->last = (uint64_t)weir_stage_arg_int(s, "rows");
    st->base = gen_days_from_civil(2024, 3, 1) * 86400;
    st->day[0].day = st->day[1].day = -1;
    return weir_schema_create(&st->schema, trips_columns, TRIP_NCOLS);
}

static int gen_process(weir_stage *s, weir_batch *in)
{
    (void)in;
    gen_state *st = weir_stage_state(s);
    if (st->last && st->next >= st->last) return WEIR_DONE;
    uint64_t n = GEN_BATCH_ROWS;
    if (st->last && st->last - st->next < n) n = st->last - st->next;
    weir_batch *b;
    int rc = weir_stage_batch(s, &b);
    if (rc) return weir_stage_errorf(s, rc, "out of memory");
    rc = weir_batch_set_schema(b, st->schema);
    /* Rows average ~95 bytes and stay under 160: one reservation covers
     * almost every batch. */
    if (rc == 0) rc = weir_batch_reserve(b, (size_t)n * 128);
    char buf[GEN_ROW_MAX];
    char *ends[TRIP_NCOLS];
    for (uint64_t k = 0; rc == 0 && k < n; k++) {
        gen_trip(st, st->next + k, buf, ends);
        const char *f = buf;
        for (int c = 0; rc == 0 && c < TRIP_NCOLS; c++) {
            rc = weir_batch_add_field(b, f, (size_t)(ends[c] - f));
            f = ends[c];
        }
        if (rc == 0) rc = weir_batch_end_row(b);
    }
    if (rc) {
        weir_batch_release(b);
        return weir_stage_errorf(s, rc, "out of memory");
    }
    st->next += n;
    return weir_stage_emit(s, b);
}

static void gen_close(weir_stage *s)
{
    gen_state *st = weir_stage_state(s);
    if (!st) return;
    weir_schema_release(st->schema);
    free(st);
}

const weir_stage_def weir__stage_gen = {
    .abi = WEIR_ABI_VERSION,
    .name = "gen",
    .summary = "generate rows: realistic taxi trips, the same bytes for the same seed",
    .args = (const weir_arg_def[]){
        {"kind", WEIR_ARG_STRING, "trips",
         "which dataset; \"trips\": id, vendor, pickup_at, dropoff_at, "
         "passenger_count, distance, fare, tip, payment, zone, notes "
         "(see datasets/README.md)"},
        {"rows", WEIR_ARG_INT, "1000", "how many rows; 0: endless (stop it with head())"},
        {"seed", WEIR_ARG_INT, "42",
         "the generator's seed: the same seed and rows give the same bytes"},
        {NULL}},
    .in_kind = WEIR_KIND_NONE,
    .out_kind = WEIR_KIND_ROWS,
    .open = gen_open,
    .process = gen_process,
    .close = gen_close,
    .plan = gen_plan,
};

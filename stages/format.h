/*
 * format.h — writing rows as CSV or JSON Lines, shared by to_csv, to_jsonl,
 * write and (later) split. Internal to the built-in stages.
 *
 * CSV out (DESIGN.md, "Semantics pinned down"): LF line ends; a field is
 * quoted only when it holds the delimiter, a quote, CR or LF; quotes inside
 * are doubled; leading/trailing spaces are not a reason to quote. One more
 * case needs quotes: a record made of a single empty field is written as
 * `""`, because a blank line is no record to a CSV reader (csv() skips it).
 * JSON Lines: one object per row, keys in schema order; a field that is a
 * number (the expression engine's definition: the whole field parses as a
 * decimal integer or float, and is also valid JSON — no leading '+', no
 * leading zeros, no bare '.5' or '5.') is written bare, everything else as
 * a JSON string (UTF-8 passed through; control characters, '"' and '\'
 * escaped; invalid UTF-8 bytes written as \u00XX of the byte, so the output
 * is always valid JSON).
 *
 * Each function appends to `out` (a bytes batch) and returns 0 or
 * WEIR_ENOMEM (out keeps what it had before the call). None allocates per
 * row or field: room in `out` is reserved once per call, and again only
 * for a field that needs quoting or escaping beyond the estimate.
 */
#ifndef WEIR_FORMAT_H
#define WEIR_FORMAT_H

#include "weir.h"

/* The header line: column names as CSV fields. */
int weir__csv_header(weir_batch *out, const weir_schema *s, char delim);
/* Rows [from, to) of b as CSV records. */
int weir__csv_rows(weir_batch *out, const weir_batch *b, uint32_t from, uint32_t to,
                   char delim);
/* Rows [from, to) of b as JSON objects, one per line. */
int weir__jsonl_rows(weir_batch *out, const weir_batch *b, uint32_t from, uint32_t to);
/* n bytes at p as one JSON string, quotes included, escaped as above (for
 * messages written as JSON, such as csv()'s rejects file). */
int weir__json_str(weir_batch *out, const void *p, size_t n);

#endif

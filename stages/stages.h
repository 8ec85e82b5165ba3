/*
 * stages.h — the built-in stages' definitions, for the registry.
 * A built-in stage includes only weir.h (the API any user's stage gets),
 * plus format.h where it formats CSV or JSON Lines.
 */
#ifndef WEIR_STAGES_H
#define WEIR_STAGES_H

#include "weir.h"

#define WEIR__STAGE(name) extern const weir_stage_def name

WEIR__STAGE(weir__stage_read);
WEIR__STAGE(weir__stage_gen);
WEIR__STAGE(weir__stage_csv);
WEIR__STAGE(weir__stage_to_csv);
WEIR__STAGE(weir__stage_to_jsonl);
WEIR__STAGE(weir__stage_zstd);
WEIR__STAGE(weir__stage_unzstd);
WEIR__STAGE(weir__stage_filter);
WEIR__STAGE(weir__stage_select);
WEIR__STAGE(weir__stage_drop);
WEIR__STAGE(weir__stage_rename);
WEIR__STAGE(weir__stage_compute);
WEIR__STAGE(weir__stage_head);
WEIR__STAGE(weir__stage_sample);
WEIR__STAGE(weir__stage_group);
WEIR__STAGE(weir__stage_sort);
WEIR__STAGE(weir__stage_dedup);
WEIR__STAGE(weir__stage_split);
WEIR__STAGE(weir__stage_write);
WEIR__STAGE(weir__stage_discard);
WEIR__STAGE(weir__stage_count);
WEIR__STAGE(weir__stage_merge);
WEIR__STAGE(weir__stage_concat);

/* Does a legacy zstd frame start at p (a magic number of the formats
 * before RFC 8878's, v0.1 to v0.7)? libzstd decodes those it was built to
 * (Debian's: v0.5 on); their headers do not carry a content size in the
 * form the checks of read() and unzstd() rely on, and unzstd() streams
 * them rather than handing them to its replicas. */
static inline bool stages_zstd_legacy(const unsigned char *p, size_t n)
{
    if (n < 4) return false;
    uint32_t m = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                 (uint32_t)p[3] << 24;
    return m >= UINT32_C(0xFD2FB51E) && m <= UINT32_C(0xFD2FB527);
}

#endif

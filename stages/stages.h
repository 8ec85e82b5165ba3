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

#endif

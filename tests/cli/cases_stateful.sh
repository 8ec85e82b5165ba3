# CLI cases for the stages that hold state: sort, group, dedup, split.
# Sourced by cli_test.sh (helpers t, e, f, check are described there).
#
# Differential checks compare weir with coreutils/awk on generated trips.
# The generator's zone and notes columns hold commas, quotes and newlines,
# so the checks first project the plain columns (id, passenger_count,
# fare, payment) with weir itself; the other tools then read simple CSV.

# Plain trips for the differential checks: N rows of id,passenger_count,fare,payment.
trips_plain() { # N FILE
    $WEIR run -e "gen(rows=$1) | select(id, passenger_count, fare, payment) | write(\"$2\")"
}

# Values that are numbers, text, empty, equal numbers written differently.
mixed_keys='k,n\nb,1\n10,2\n,3\n9,4\n1.0,5\n1,6\n-0,7\n0,8\n-1e3,9\na,10\n01,11\nB,12\n,13\n1e2,14\n'

# ---- sort --------------------------------------------------------------------------------------------
t sort_numbers_then_text 0 'printf "$mixed_keys" | $WEIR run -e "read(\"-\") | csv() | sort(by=k)"'
t sort_desc 0 'printf "$mixed_keys" | $WEIR run -e "read(\"-\") | csv() | sort(by=k, desc=true)"'
t sort_two_keys_desc_list 0 '$WEIR run -e "read(\"$DATA/kv.csv\") | csv() | sort(by=[k, v], desc=[true, false])"'
t sort_header_only 0 'printf "a,b\n" | $WEIR run -e "read(\"-\") | csv() | sort(by=a)"'
check sort_matches_gnu_sort '
    trips_plain 30000 in.csv &&
    $WEIR run -e "read(\"in.csv\") | csv() | sort(by=fare) | write(\"got.csv\")" &&
    { head -1 in.csv; tail -n +2 in.csv | LC_ALL=C sort -s -t, -k3,3g; } > want.csv &&
    cmp got.csv want.csv'
check sort_two_keys_desc_matches_gnu_sort '
    trips_plain 30000 in.csv &&
    $WEIR run -e "read(\"in.csv\") | csv() | sort(by=[payment, fare], desc=[false, true]) | write(\"got.csv\")" &&
    { head -1 in.csv; tail -n +2 in.csv | LC_ALL=C sort -s -t, -k4,4 -k3,3gr; } > want.csv &&
    cmp got.csv want.csv'
check sort_spilled_equals_in_memory_and_cleans_up '
    trips_plain 50000 in.csv && mkdir tmp &&
    $WEIR run -e "read(\"in.csv\") | csv() | sort(by=[passenger_count, fare], desc=[true, false]) | write(\"mem.csv\")" &&
    TMPDIR=$PWD/tmp $WEIR run --mem 64K -e "read(\"in.csv\") | csv() | sort(by=[passenger_count, fare], desc=[true, false]) | write(\"ext.csv\")" &&
    TMPDIR=$PWD/tmp $WEIR run -e "read(\"in.csv\") | csv() | sort(by=[passenger_count, fare], desc=[true, false], mem=\"100K\") | write(\"ext2.csv\")" &&
    cmp mem.csv ext.csv && cmp mem.csv ext2.csv && [ -z "$(ls -A tmp)" ]'
# The output goes to a FIFO nobody reads yet: the sort stays in its merge,
# its run files in view, until the reader comes.
check sort_spill_files_while_running_then_gone '
    mkdir tmp && mkfifo out.fifo &&
    { TMPDIR=$PWD/tmp $WEIR run -e "gen(rows=100000) | select(id, fare) | sort(by=fare, mem=\"256K\") | write(\"out.fifo\")" & } &&
    pid=$! && n=0 && i=0 &&
    while [ $i -lt 200 ]; do n=$(ls tmp | grep -c "^weir-sort-"); [ "$n" -gt 0 ] && break; sleep 0.05; i=$((i + 1)); done &&
    [ "$n" -gt 0 ] && lines=$(wc -l < out.fifo) && wait $pid && [ "$lines" = 100001 ] && [ -z "$(ls -A tmp)" ]'
check sort_sigint_removes_spill_files '
    mkdir tmp && mkfifo out.fifo &&
    { TMPDIR=$PWD/tmp $WEIR run -e "gen(rows=100000) | select(id, fare) | sort(by=fare, mem=\"256K\") | write(\"out.fifo\")" 2>/dev/null & } &&
    pid=$! && n=0 && i=0 &&
    while [ $i -lt 200 ]; do n=$(ls tmp | grep -c "^weir-sort-"); [ "$n" -gt 0 ] && break; sleep 0.05; i=$((i + 1)); done &&
    [ "$n" -gt 0 ] && kill -INT $pid; wait $pid; rc=$?; [ $rc = 130 ] && [ -z "$(ls -A tmp)" ]'
check sort_failure_removes_spill_files '
    trips_plain 20000 in.csv && echo "1,2,3,4,5" >> in.csv && mkdir tmp &&
    TMPDIR=$PWD/tmp $WEIR run -e "read(\"in.csv\") | csv() | sort(by=fare, mem=\"64K\") | write(\"o.csv\")" 2>err;
    [ $? = 1 ] && grep -q "expected 4 fields, found 5" err && [ -z "$(ls -A tmp)" ] && [ ! -e o.csv ]'
e sort_unknown_column 2 "stage 'sort' \(<expr>:1:[0-9]+\): unknown column 'zz'" '$WEIR run -e "read(\"$DATA/kv.csv\") | csv() | sort(by=zz)"'
e sort_desc_mismatch 2 "stage 'sort' .*desc must be true, false, or a list of them with one per by column \(2\)" '$WEIR run -e "read(\"$DATA/kv.csv\") | csv() | sort(by=[k, v], desc=[true])"'

# ---- group -----------------------------------------------------------------------------------------
t group_distinct_first_last 0 '$WEIR run -e "read(\"$DATA/kv.csv\") | csv() | group(by=k, n=count(), d=count_distinct(v), f=first(v), l=last(v))"'
t group_numeric_keys 0 'printf "$mixed_keys" | $WEIR run -e "read(\"-\") | csv() | group(by=k, n=count(), first_n=first(n))"'
t group_unsorted_one_worker 0 'printf "$mixed_keys" | $WEIR run -e "read(\"-\") | csv() | group(by=k, sort=false, n=count(), workers=1)"'
check group_count_matches_uniq_c '
    trips_plain 30000 in.csv &&
    $WEIR run -e "read(\"in.csv\") | csv() | group(by=payment, n=count()) | write(\"g.csv\")" &&
    tail -n +2 g.csv | awk -F, "{print \$2, \$1}" > got &&
    tail -n +2 in.csv | cut -d, -f4 | LC_ALL=C sort | uniq -c | awk "{print \$1, \$2}" > want &&
    cmp got want'
check group_sums_match_awk '
    trips_plain 30000 in.csv &&
    $WEIR run -e "read(\"in.csv\") | csv() | group(by=[payment, passenger_count], n=count(), s=sum(fare), d=count_distinct(fare), lo=min(fare), hi=max(fare)) | write(\"g.csv\")" &&
    tail -n +2 g.csv | awk -F, "{printf \"%s %s %d %.2f %d %.2f %.2f\n\", \$1, \$2, \$3, \$4, \$5, \$6, \$7}" > got &&
    tail -n +2 in.csv | awk -F, "{k = \$4 \" \" \$2; n[k]++; s[k] += \$3; if (!((k, \$3) in seen)) { seen[k, \$3] = 1; d[k]++ }
        if (!(k in lo) || \$3 + 0 < lo[k]) lo[k] = \$3 + 0; if (!(k in hi) || \$3 + 0 > hi[k]) hi[k] = \$3 + 0 }
        END { for (k in n) printf \"%s %d %.2f %d %.2f %.2f\n\", k, n[k], s[k], d[k], lo[k], hi[k] }" | LC_ALL=C sort -k1,1 -k2,2n > want &&
    cmp got want'
check group_workers_give_identical_bytes '
    $WEIR gen trips --rows 40000 -o in.csv &&
    q="read(\"in.csv\") | csv() | group(by=[vendor, passenger_count, payment], n=count(), s=sum(fare), m=mean(tip), d=count_distinct(zone), f=first(notes), l=last(zone), lo=min(distance), hi=max(fare)" &&
    $WEIR run -e "$q, workers=1) | write(\"w1.csv\")" &&
    $WEIR run -e "$q, workers=3) | write(\"w3.csv\")" &&
    $WEIR run -e "$q) | write(\"wauto.csv\")" &&
    cmp w1.csv w3.csv && cmp w1.csv wauto.csv && [ $(wc -l < w1.csv) -gt 50 ]'
check group_spilled_equals_in_memory_and_cleans_up '
    trips_plain 50000 in.csv && mkdir tmp &&
    q="read(\"in.csv\") | csv() | compute(b=id % 7919) | group(by=[b, payment], n=count(), s=sum(fare), d=count_distinct(passenger_count), f=first(id), l=last(fare)" &&
    $WEIR run -e "$q) | write(\"mem.csv\")" &&
    TMPDIR=$PWD/tmp $WEIR run --mem 64K -e "$q, workers=1) | write(\"w1.csv\")" &&
    TMPDIR=$PWD/tmp $WEIR run --mem 128K -e "$q, workers=2) | write(\"w2.csv\")" &&
    cmp mem.csv w1.csv && cmp mem.csv w2.csv && [ -z "$(ls -A tmp)" ]'
e group_unsorted_past_budget 1 "stage 'group' \(<expr>:1:[0-9]+\): more than 64K of groups \([0-9]+ groups so far\); raise mem= or --mem, or leave sort=true, which spills to disk" '$WEIR run --mem 64K -e "gen(rows=100000) | group(by=id, sort=false, n=count(), workers=1) | count()"'
e group_unknown_aggregate 2 "stage 'group' .*'m' must be an aggregate" '$WEIR run -e "read(\"$DATA/kv.csv\") | csv() | group(by=k, m=median(v))"'

# ---- dedup -----------------------------------------------------------------------------------------
t dedup_whole_rows 0 'printf "a,b\nx,1\ny,1\nx,1\nx,2\n,1\ny,1\n,1\nx,1.0\n" | $WEIR run -e "read(\"-\") | csv() | dedup()"'
t dedup_columns 0 'printf "a,b\nx,1\ny,1\nx,1\nx,2\n,1\ny,1\n,1\nx,1.0\n" | $WEIR run -e "read(\"-\") | csv() | dedup(b)"'
check dedup_matches_awk '
    trips_plain 30000 in.csv &&
    $WEIR run -e "read(\"in.csv\") | csv() | select(passenger_count, payment) | dedup() | write(\"got.csv\")" &&
    cut -d, -f2,4 in.csv | awk "!seen[\$0]++" > want.csv && cmp got.csv want.csv &&
    $WEIR run -e "read(\"in.csv\") | csv() | dedup(payment, passenger_count) | write(\"got2.csv\")" &&
    awk -F, "!seen[\$4 \",\" \$2]++" in.csv > want2.csv && cmp got2.csv want2.csv'
e dedup_past_budget 1 "stage 'dedup' \(<expr>:1:[0-9]+\): more than 256K of keys \([0-9]+ distinct keys so far\); raise mem= or --mem" '$WEIR run -e "gen(rows=100000) | dedup(id, mem=\"256K\") | count()"'

# ---- split -----------------------------------------------------------------------------------------
t split_per_key_files 0 'mkdir out && $WEIR run -e "read(\"$DATA/kv.csv\") | csv() | split(\"out/{k}/part.csv\")" &&
    for f in $(find out -type f | LC_ALL=C sort); do echo "== $f"; cat "$f"; done'
t split_jsonl 0 'mkdir out && $WEIR run -e "read(\"$DATA/kv.csv\") | csv() | split(\"out/k={k}.jsonl\")" &&
    for f in $(find out -type f | LC_ALL=C sort); do echo "== $f"; cat "$f"; done'
# Key values that try to leave the directory: every file lands inside out/,
# under its escaped name (the golden lists them).
split_nasty='k,n\n../x,1\n/etc/passwd,2\na/b,3\n..,4\n.,5\n,6\n\001ctl,7\nback\\slash,8\n.hidden,9\n%%41,10\n../../../tmp/x,11\n"sp ace",12\n'
t split_escaped_names 0 'mkdir out && printf "$split_nasty" > in.csv &&
    $WEIR run -e "read(\"in.csv\") | csv() | split(\"out/{k}/f.csv\")" && find out | LC_ALL=C sort'
check split_files_stay_inside '
    mkdir out && printf "$split_nasty" > in.csv &&
    $WEIR run -e "read(\"in.csv\") | csv() | split(\"out/{k}.csv\")" &&
    [ "$(find out -type f | wc -l)" = 12 ] &&
    find out -type f | while read -r f; do case "$(realpath "$f")" in "$PWD"/out/*) ;; *) echo "outside: $f"; exit 1;; esac; done &&
    [ "$(ls -A | LC_ALL=C sort | tr "\n" " ")" = "in.csv out " ]'
check split_100000_keys_under_ulimit_256 '
    mkdir out && ( ulimit -n 256 && $WEIR run -e "gen(rows=100000) | split(\"out/{id}.csv\", by=id)" ) &&
    [ "$(ls out | wc -l)" = 100000 ] && [ -z "$(ls -A out | grep "^\.")" ] &&
    for id in 1 4242 77777 100000; do
        $WEIR run -e "gen(rows=100000) | filter(id == $id) | write(\"want.csv\")" && cmp "out/$id.csv" want.csv || exit 1
    done'
check split_zst_reopened_is_complete '
    mkdir out && trips_plain 20000 in.csv &&
    $WEIR run -e "read(\"in.csv\") | csv() | split(\"out/{passenger_count}/{payment}.csv.zst\", max_open=3)" &&
    for f in out/*/*.csv.zst; do zstd -q -t "$f" || exit 1; done &&
    for f in out/*/*.csv.zst; do zstd -q -d -c "$f" | tail -n +2; done | LC_ALL=C sort > got &&
    tail -n +2 in.csv | LC_ALL=C sort > want && cmp got want &&
    [ "$(zstd -q -d -c out/1/card.csv.zst | head -1)" = "id,passenger_count,fare,payment" ]'
check split_failure_leaves_nothing '
    mkdir out && trips_plain 5000 in.csv && echo "1,2,3,4,5" >> in.csv &&
    $WEIR run -e "read(\"in.csv\") | csv() | split(\"out/{payment}/{passenger_count}.csv\", max_open=4)" 2>err;
    [ $? = 1 ] && grep -q "expected 4 fields" err && [ -z "$(ls -A out)" ]'
check split_sigint_leaves_nothing '
    mkdir out &&
    { $WEIR run -e "gen(rows=0) | split(\"out/{payment}/{passenger_count}.csv.zst\")" 2>/dev/null & } &&
    pid=$! && sleep 1 && kill -INT $pid; wait $pid; rc=$?; [ $rc = 130 ] && [ -z "$(ls -A out)" ]'
e split_missing_directory 1 "stage 'split' \(<expr>:1:[0-9]+\): cannot write into 'nodir': No such file or directory" '$WEIR run -e "gen(rows=10) | split(\"nodir/{id}.csv\")"'
e split_no_placeholder 2 "stage 'split' .*has no \{column\}" '$WEIR run -e "gen(rows=10) | split(\"out.csv\")"'
e split_dotdot_in_template 2 "stage 'split' .*no '\.\.' after its directory" '$WEIR run -e "gen(rows=10) | split(\"out/{id}/../x.csv\")"'

#!/usr/bin/env bash
# test_train_dropout_mpi: LoRA dropout under data parallelism. The mask of each token comes
# from counters (seed, step, layer, module, the token's offset in the GLOBAL batch, column),
# so `mpirun -np 2 twin train --lora-dropout 0.2` must follow the 1-rank loss curve as closely
# as test_train_mpi's runs without dropout do (step 1 within 1e-9, later steps within 1e-6),
# while the curve with dropout differs from the one without by far more than that. B starts at
# zero, so step 1's loss is the base's either way; the masks enter step 1's gradient (dB is
# formed from the dropped input) and so every later loss: with dropout 0.2 step 2 moves by
# ~5e-4 relative. A rank that numbered its tokens from 0 would drop other elements, and its
# step-2 loss would miss the 1-rank one by that order, not by the 1e-6 allowed.
# Skips (77) when mpirun, an MPI build or the fixture is missing.
. "$(dirname "$0")/../lib.sh"
test_init train_dropout_mpi

command -v mpirun >/dev/null 2>&1 || { echo "SKIP: mpirun not found"; exit 77; }
bin="$(dirname "$TWIN")"
have=0
"$bin/test_comm_mpi_prog" --have-mpi || have=$?
[ "$have" -eq 0 ] || { echo "SKIP: twin was built without MPI"; exit 77; }
fx="$bin/test_train"
[ -x "$fx" ] || { echo "SKIP: $fx (the tiny model's writer) is not built"; exit 77; }
data="${TWIN_TEST_DATA:?}/sft"
model="$tmp/tiny.gguf"
check "fixture" "$fx" --write-model "$model"

export OMPI_MCA_plm=isolated OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_orte_tmpdir_base="$tmp"
export OMPI_MCA_mca_base_component_disable_dlclose=1 PMIX_MCA_mca_base_component_disable_dlclose=1
export LSAN_OPTIONS="${LSAN_OPTIONS:+$LSAN_OPTIONS:}suppressions=${TWIN_SRC:?}/tests/lsan_mpi.supp:print_suppressions=0:fast_unwind_on_malloc=0"
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" # test_train_mpi checks leaks

STEPS=4
T=(train -m "$model" --data "$data/voice_sft.jsonl" --lora-r 4 --lora-alpha 8 --max-len 192
   --batch-tokens 1024 --micro-batch 512 --lr 5e-3 --warmup 1 --seed 7 --steps $STEPS
   --eval-every 0 --save-every 0)

"$TWIN" --threads 1 --workspace "$tmp/ws" "${T[@]}" --out "$tmp/none" >/dev/null 2>"$tmp/none.err"
check "no dropout, one rank: exit 0" test $? = 0
"$TWIN" --threads 1 --workspace "$tmp/ws" "${T[@]}" --lora-dropout 0.2 --out "$tmp/one" >/dev/null 2>"$tmp/one.err"
check "dropout, one rank: exit 0" test $? = 0
timeout 300 mpirun -np 2 "$TWIN" --threads 1 --workspace "$tmp/ws2" "${T[@]}" --lora-dropout 0.2 \
    --out "$tmp/two" >"$tmp/two.out" 2>"$tmp/two.err"
rc=$?
check "dropout, mpirun -np 2: exit 0" test $rc = 0
[ $rc = 0 ] || tail -20 "$tmp/two.err" >&2
check "  with 2 ranks" grep -q "ranks 2" "$tmp/two.out" "$tmp/two.err"

losses() { awk -F'"loss":' '{split($1, s, ":"); st=s[2]+0; split($2, l, ","); v[st]=l[1]} END{for (i=1;i<='$STEPS';i++) print i, v[i]}' "$1"; }
losses "$tmp/none/steps.jsonl" >"$tmp/l0"
losses "$tmp/one/steps.jsonl" >"$tmp/l1"
losses "$tmp/two/steps.jsonl" >"$tmp/l2"
paste "$tmp/l0" "$tmp/l1" "$tmp/l2" |
    awk '{printf "    step %s: no dropout %s, dropout 1 rank %s, 2 ranks %s\n", $1, $2, $4, $6}'
cmp_curves() { # FILE_A FILE_B TOL_FIRST TOL_REST
    paste "$1" "$2" | awk -v t1="$3" -v t="$4" '
        $2 == "" || $4 == "" { bad = 1; next }
        { d = $2 - $4; if (d < 0) d = -d; r = d / ($2 < 0 ? -$2 : $2); tol = ($1 == 1) ? t1 : t
          if (r > tol) { printf "    step %d: relative difference %.3g > %g\n", $1, r, tol; bad = 1 } }
        END { exit bad }'
}
check "dropout: 2 ranks = 1 rank (step 1 within 1e-9, later within 1e-6)" cmp_curves "$tmp/l1" "$tmp/l2" 1e-9 1e-6
check "dropout moves step 2's loss by more than 100x the tolerance" \
    awk -v a="$(awk 'NR==2{print $2}' "$tmp/l0")" -v b="$(awk 'NR==2{print $2}' "$tmp/l1")" \
    'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d > 100 * 1e-6 * a) }'
check "  and step 1's not at all (B = 0)" test "$(awk 'NR==1{print $2}' "$tmp/l0")" = "$(awk 'NR==1{print $2}' "$tmp/l1")"
exit "$fail"

#!/usr/bin/env bash
# test_comm_mpi: comm.h across real MPI ranks on one machine. Runs test_comm_mpi_prog (a C
# program built with the tests) under `mpirun -np 2` and `-np 3` (oversubscribed: the checks
# that the reduction order is the documented one need three ranks, as a+b = b+a), then two
# negative checks: a rank that corrupts one bit of its result must make the job fail, and a
# rank that calls comm_abort must end the whole job (not leave the others waiting).
# Skips (77) when mpirun is absent or twin was built without MPI.
. "$(dirname "$0")/../lib.sh"
test_init comm_mpi

if ! command -v mpirun >/dev/null 2>&1; then
    echo "SKIP: mpirun not found (apt-get install openmpi-bin libopenmpi-dev)"
    exit 77
fi
prog="$(dirname "$TWIN")/test_comm_mpi_prog"
[ -x "$prog" ] || { echo "FAIL: $prog was not built" >&2; exit 1; }
have=0
"$prog" --have-mpi || have=$?
if [ "$have" -eq 3 ]; then
    echo "SKIP: twin was built without MPI (TWIN_MPI=OFF or MPI not found at configure time)"
    exit 77
fi

# Open MPI in a container: no ssh/rsh launcher (plm isolated: local processes only), shared
# memory and self transports only, no CMA single-copy (needs ptrace rights containers often
# lack), root allowed, more ranks than cores allowed.
export OMPI_MCA_plm=isolated OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_orte_tmpdir_base="$tmp"
# Sanitizer builds: Open MPI keeps allocations from MPI_Init until exit; those leaks (and only
# those: the suppressions name Open MPI's own libraries) are not twin's. For LeakSanitizer to
# see which library allocated, Open MPI and PMIx must not unload their plugins at finalize
# (else the frames are "<unknown module>"), and stacks must be unwound without frame pointers
# (Debian's Open MPI is built without them).
export OMPI_MCA_mca_base_component_disable_dlclose=1 PMIX_MCA_mca_base_component_disable_dlclose=1
export LSAN_OPTIONS="${LSAN_OPTIONS:+$LSAN_OPTIONS:}suppressions=${TWIN_SRC:?}/tests/lsan_mpi.supp:print_suppressions=0:fast_unwind_on_malloc=0"

run() { # run NP ARGS...: mpirun with a deadline, output in $tmp/out
    local np="$1"
    shift
    timeout 120 mpirun -np "$np" "$prog" "$@" >"$tmp/out" 2>&1
}
# Sanitizer builds check leaks in the first run only: the same code runs in the others, and
# the slow unwinding through Open MPI's start-up costs seconds per run.
noleaks() { ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" "$@"; }

for np in 2 3; do
    rc=0
    if [ "$np" = 2 ]; then run "$np" || rc=$?; else noleaks run "$np" || rc=$?; fi
    check "mpirun -np $np: every check on every rank" [ "$rc" -eq 0 ]
    check "mpirun -np $np: all $np ranks reported ok" [ "$(grep -c "^rank [0-9]* of $np: ok" "$tmp/out")" -eq "$np" ]
    if [ "$rc" -ne 0 ] || [ "$np" -eq 2 ]; then sed 's/^/    /' "$tmp/out" | grep -v '^    ok ' | head -40; fi
done

rc=0
noleaks run 2 --corrupt 1 || rc=$?
check "a flipped bit on rank 1 fails the job" [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ]
check "... and is reported by rank 1 as not rank 0's bits" grep -q "rank 1: ordered n=200003: not the same bits as rank 0" "$tmp/out"
# mpirun kills the other ranks at the first non-zero exit (and with that off, it exits 0):
# run again with it off to see that every rank counted rank 1's failures.
OMPI_MCA_orte_abort_on_non_zero_status=0 noleaks run 2 --corrupt 1 || true
check "... and every rank fails (rank 0 learns of rank 1's failures)" [ "$(grep -c "^rank [0-9] of 2: FAIL" "$tmp/out")" -eq 2 ]

rc=0
start=$(date +%s)
noleaks run 2 --abort 1 || rc=$?
check "comm_abort on rank 1 ends the job with a failure" [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ]
check "... within seconds (no rank left waiting)" [ $(( $(date +%s) - start )) -lt 60 ]

exit "$fail"

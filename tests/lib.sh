# tests/lib.sh: what the shell tests share. Source it first:
#   . "$(dirname "$0")/../lib.sh"; test_init NAME
# It sets TWIN (the program under test, from TWIN_BIN), fail=0, a temporary folder $tmp that is
# removed on exit, and check NAME CONDITION... which prints ok/FAIL and records a failure.
# End the script with: exit "$fail"
set -u
TWIN="${TWIN_BIN:?TWIN_BIN is not set}"
fail=0
check() { # check NAME CONDITION...
    local name="$1"
    shift
    if "$@"; then echo "ok   $name"; else echo "FAIL $name" >&2; fail=1; fi
}
test_init() { # test_init NAME: makes $tmp
    tmp="$(mktemp -d "${TMPDIR:-/tmp}/twin_$1.XXXXXX")"
    trap 'rm -rf "$tmp"' EXIT
}

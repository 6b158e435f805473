#!/bin/bash
# test_runs_cli.sh: twin runs ls|show|compare|plot on a warehouse filled with three training
# runs by test_trun --fill (a C program linking libtwin: the twin program has no hidden command
# for it). Checks the listing, a run's fields and loss summary, compare's '*' marks on exactly
# the config keys that differ and its final metrics, the SVG (well-formed XML, one train and one
# eval polyline per run, ticks, a legend naming each run), and the usage and runtime errors.
. "$(dirname "$0")/../lib.sh"
test_init runs_cli
fill="$(dirname "$TWIN")/test_trun"
[ -x "$fill" ] || { echo "SKIP: $fill not built" >&2; exit 77; }
ws="$tmp/ws"
mkdir -p "$ws"
T() { "$TWIN" --workspace "$ws" "$@"; }

check "fill" "$fill" --fill "$ws/twin.db"

out="$(T runs ls)"
check "ls: three runs" test "$(echo "$out" | grep -c -E '^[0-9]+ ')" = 3
check "ls: sft-a ok with 40 steps" grep -qE '^1 +sft-a +sft +ok +40 +0\.4743 +0\.5218 ' <<<"$out"
check "ls: dpo-c failed" grep -qE '^3 +dpo-c +dpo +failed +6 +0\.2858 +- ' <<<"$out"

out="$(T runs show sft-b)"
check "show: header" grep -q '^run 2: sft-b$' <<<"$out"
check "show: config key" grep -qE '^  r +16$' <<<"$out"
# loss = 3.2/sqrt(step): first 3.2 at 1, best = last = 3.2/sqrt(30) = 0.5842
check "show: loss summary" grep -q 'loss first 3.2000 (step 1), best 0.5842 (step 30), last 0.5842 (step 30)' <<<"$out"
check "show: evaluations" test "$(echo "$out" | grep -cE '^ +(10|20|30) +eval ')" = 3
out="$(T runs show 3)"
check "show by id: error shown" grep -q 'error *loss diverged at step 5' <<<"$out"
check "show: no evaluations" grep -q '^evaluations: none$' <<<"$out"

out="$(T runs compare sft-a sft-b)"
check "compare: lr differs" grep -qE '^\* lr +0.0002 +0.0001' <<<"$out"
check "compare: r differs" grep -qE '^\* r +8 +16' <<<"$out"
check "compare: alpha same" grep -qE '^  alpha +16 +16' <<<"$out"
check "compare: kind same" grep -qE '^  kind +sft +sft' <<<"$out"
check "compare: two marks only" test "$(echo "$out" | grep -c '^\*')" = 2
check "compare: final metrics" grep -qE '^  train_loss +0\.4743 +0\.5842' <<<"$out"
check "compare: steps" grep -qE '^  steps +40 +30' <<<"$out"
out="$(T runs compare 1 2 dpo-c)"
check "compare three: kind differs" grep -qE '^\* kind +sft +sft +dpo' <<<"$out"
check "compare three: beta only in dpo" grep -qE '^\* beta +- +- +0.1' <<<"$out"

check "plot" T runs plot sft-a sft-b dpo-c -o "$tmp/loss.svg"
check "plot: svg written" test -s "$tmp/loss.svg"
if command -v python3 >/dev/null; then
    check "plot: well-formed, curves, legend, ticks" python3 - "$tmp/loss.svg" <<'PY'
import sys, xml.etree.ElementTree as ET
ns = {"s": "http://www.w3.org/2000/svg"}
root = ET.parse(sys.argv[1]).getroot()
train = root.findall(".//s:polyline[@class='train']", ns)
ev = root.findall(".//s:polyline[@class='eval']", ns)
assert len(train) == 3, len(train)
assert len(ev) == 2, len(ev)  # dpo-c has no evaluations
assert len(train[0].get("points").split()) == 40
texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
for name in ("sft-a (1)", "sft-b (2)", "dpo-c (3)", "step", "loss"):
    assert name in texts, name
xl = [t.text for t in root.findall(".//s:g[@class='xlabels']/s:text", ns)]
assert xl[0] == "0" and xl[-1] == "40", xl
assert len(root.findall(".//s:g[@class='ylabels']/s:text", ns)) >= 3
colors = {p.get("stroke") for p in train}
assert len(colors) == 3
PY
fi

# errors
T runs show nope 2>"$tmp/err"; rc=$?
check "show unknown: exit 1" test $rc = 1
check "show unknown: names it" grep -q "no training run 'nope'" "$tmp/err"
T runs compare sft-a 2>"$tmp/err"; rc=$?
check "compare one: exit 2" test $rc = 2
T runs plot sft-a 2>"$tmp/err"; rc=$?
check "plot without -o: exit 2" test $rc = 2
T runs frob 2>"$tmp/err"; rc=$?
check "unknown subcommand: exit 2" test $rc = 2
check "unknown subcommand: one line" test "$(wc -l <"$tmp/err")" = 1
T runs plot sft-a -o "$tmp/no/such/dir/x.svg" 2>"$tmp/err"; rc=$?
check "plot to a missing folder: exit 1" test $rc = 1
check "runs --help" bash -c "\"$TWIN\" runs --help | grep -q '^usage: twin runs ls'"
empty="$tmp/empty"
mkdir -p "$empty"
check "ls on an empty warehouse" grep -q 'no training runs' <<<"$("$TWIN" --workspace "$empty" runs ls)"
exit "$fail"

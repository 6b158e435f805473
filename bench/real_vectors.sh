#!/usr/bin/env bash
# bench/real_vectors.sh: real all-MiniLM-L6-v2 embeddings for `twin bench hnsw`, from the text
# in twin's own fixtures (articles, crawl fixtures, SFT examples, tokenizer and embedding test
# texts), one vector per sentence of at least 6 words; every tenth becomes a query.
#   bench/real_vectors.sh OUT_DIR        writes OUT_DIR/base.fvecs and OUT_DIR/query.fvecs
# then:  twin bench hnsw --base OUT_DIR/base.fvecs --query OUT_DIR/query.fvecs --metric cosine
# Needs the twin program (TWIN_BIN, default build/twin), minilm-l6 fetched, and python3
# (standard library only).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:?usage: bench/real_vectors.sh OUT_DIR}"
twin="${TWIN_BIN:-build/twin}"
mkdir -p "$out"
python3 - "$out/texts.txt" <<'PY'
import json, os, re, sys
texts = []
def add(t):
    # one vector per sentence of at least 6 words: chunk-sized texts would give too few
    for s in re.split(r"(?<=[.!?])\s+", re.sub(r"\s+", " ", t).strip()):
        if len(s.split()) >= 6:
            texts.append(s)
for root in ("tests/data/extract", "tests/fixtures", "tests/data/sft"):
    for dp, _, fs in os.walk(root):
        for f in sorted(fs):
            p = os.path.join(dp, f)
            if f.endswith((".txt", ".md")):
                for para in open(p, encoding="utf-8", errors="replace").read().split("\n\n"):
                    add(para)
            elif f.endswith(".jsonl"):
                for line in open(p, encoding="utf-8", errors="replace"):
                    try:
                        d = json.loads(line)
                    except ValueError:
                        continue
                    for v in d.values():
                        if isinstance(v, str):
                            add(v)
for line in open("tests/data/tokenizer/texts.jsonl", encoding="utf-8"):
    d = json.loads(line)
    for v in d.values():
        if isinstance(v, str):
            for s in re.split(r"(?<=[.!?])\s+", v):
                add(s)
emb = json.load(open("tests/data/embed/minilm-l6.golden.json", encoding="utf-8"))
for item in emb.get("cases", []):
    if isinstance(item, str):
        add(item)
    elif isinstance(item, dict) and isinstance(item.get("text"), str):
        add(item["text"])
seen, uniq = set(), []
for t in texts:
    if t not in seen:
        seen.add(t)
        uniq.append(t)
open(sys.argv[1], "w", encoding="utf-8").write("\n".join(uniq) + "\n")
print(f"{len(uniq)} texts", file=sys.stderr)
PY
"$twin" embed -m minilm-l6 - < "$out/texts.txt" > "$out/vectors.json"
python3 - "$out" <<'PY'
import json, struct, sys
out = sys.argv[1]
d = json.load(open(out + "/vectors.json"))
vs = d["data"]
q = [v for i, v in enumerate(vs) if i % 10 == 0]
b = [v for i, v in enumerate(vs) if i % 10 != 0]
for name, rows in (("base", b), ("query", q)):
    with open(f"{out}/{name}.fvecs", "wb") as f:
        for v in rows:
            f.write(struct.pack("<i", len(v)))
            f.write(struct.pack(f"<{len(v)}f", *v))
print(f"{len(b)} base and {len(q)} query vectors of {d['dim']} dims ({d['model']})", file=sys.stderr)
PY

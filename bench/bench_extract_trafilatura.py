#!/usr/bin/env python3
"""bench_extract_trafilatura.py: the anchor of `twin bench clean` (tools/cmd_bench_clean.c).

    python3 bench/bench_extract_trafilatura.py --pages DIR      # the text of each NN-name.html
    python3 bench/bench_extract_trafilatura.py --corpus FILE     # MB/s over a large corpus

--pages prints, for every DIR/*.html in name order, a line "page NAME BYTES" and then BYTES bytes
of trafilatura.extract's text (UTF-8), so twin scores both extractors with one F1 function.
--corpus reads FILE: pages separated by the byte 0x1E, runs trafilatura.extract on each
(one thread, best of --repeat runs, timed in process CPU seconds as twin's side is) and prints
"trafilatura MB/s=M cpu_seconds=S pages=N".
Exit status 3 when trafilatura cannot be imported (the caller prints why and skips).
"""
import argparse
import os
import sys
import time

try:
    import trafilatura
except Exception as e:  # ImportError, or a broken dependency (lxml.html.clean) raising on import
    print("trafilatura not importable: %s" % e, file=sys.stderr)
    sys.exit(3)


def extract(raw):
    # bytes in, as twin gets them: trafilatura detects the encoding itself
    return trafilatura.extract(raw, include_comments=False, include_tables=True) or ""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pages")
    ap.add_argument("--corpus")
    ap.add_argument("--repeat", type=int, default=1)
    a = ap.parse_args()
    out = sys.stdout.buffer
    if a.pages:
        for name in sorted(f for f in os.listdir(a.pages) if f.endswith(".html")):
            raw = open(os.path.join(a.pages, name), "rb").read()
            text = extract(raw).encode("utf-8")
            out.write(b"page %s %d\n" % (name[:-5].encode(), len(text)))
            out.write(text)
            out.write(b"\n")
        return 0
    if a.corpus:
        data = open(a.corpus, "rb").read()
        pages = data.split(b"\x1e")
        best = None
        for _ in range(a.repeat):
            t0 = time.process_time()
            for p in pages:
                extract(p)
            dt = time.process_time() - t0
            best = dt if best is None or dt < best else best
        print("trafilatura MB/s=%.3f cpu_seconds=%.3f pages=%d" % (len(data) / best / 1e6, best, len(pages)))
        return 0
    ap.print_usage(sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""gen_extract_fixtures.py: builds the extraction-quality pages of tests/data/extract/.

Each article is written by hand in tests/data/extract/src/NN-name.md:

    title: ...
    author: ...
    date: 2024-05-01T09:00:00Z
    template: medium
    ---
    paragraphs, "## headings", "- " / "1. " lists, "> " quotes, ``` code fences,
    "| a | b |" table rows; inline *emphasis*, **strong**, `code`, [text](url)

and this script wraps it in the named page template (site navigation, headers, bylines, share
bars, newsletter boxes, cookie banners, related posts, comments, footers: everything an
extractor must drop) to write NN-name.html, and writes NN-name.txt: the article's text as
light Markdown (html.h's form), without its title, which is the expected main text.

    python3 tools/gen_extract_fixtures.py [--check]

--check only verifies that the checked-in .html/.txt files are what the sources give.
All texts are original (written for twin); no page or text of a real site is copied.
"""
import html
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DIR = os.path.join(HERE, "..", "tests", "data", "extract")


# ---- article sources -------------------------------------------------------------------------

def parse_source(text):
    head, body = text.split("\n---\n", 1)
    meta = {}
    for line in head.splitlines():
        k, v = line.split(":", 1)
        meta[k.strip()] = v.strip()
    blocks = []
    lines = body.strip("\n").split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
            continue
        if line.startswith("```"):
            lang = line[3:].strip()
            j = i + 1
            code = []
            while not lines[j].startswith("```"):
                code.append(lines[j])
                j += 1
            blocks.append(("code", lang, "\n".join(code)))
            i = j + 1
            continue
        j = i
        group = []
        while j < len(lines) and lines[j].strip():
            group.append(lines[j])
            j += 1
        i = j
        first = group[0]
        if first.startswith("#"):
            level = len(first) - len(first.lstrip("#"))
            blocks.append(("h", level, first[level:].strip()))
        elif first.startswith("- "):
            items = []
            for g in group:
                if g.startswith("- "):
                    items.append([g[2:], []])
                else:  # "  - nested"
                    items[-1][1].append(g.strip()[2:])
            blocks.append(("ul", items))
        elif re.match(r"\d+\. ", first):
            blocks.append(("ol", [re.sub(r"^\d+\. ", "", g) for g in group]))
        elif first.startswith("> "):
            paras = " ".join(g[2:] if g.startswith("> ") else g for g in group)
            blocks.append(("quote", [p.strip() for p in paras.split(" >> ")]))
        elif first.startswith("|"):
            rows = [[c.strip() for c in g.strip().strip("|").split("|")] for g in group]
            blocks.append(("table", rows))
        else:
            blocks.append(("p", " ".join(g.strip() for g in group)))
    return meta, blocks


INLINE = [
    (re.compile(r"\*\*(.+?)\*\*"), r"<strong>\1</strong>", r"\1"),
    (re.compile(r"\*(.+?)\*"), r"<em>\1</em>", r"\1"),
    (re.compile(r"`(.+?)`"), r"<code>\1</code>", r"\1"),
    (re.compile(r"\[(.+?)\]\((.+?)\)"), r'<a href="\2">\1</a>', r"\1"),
]


def inline_html(s):
    s = html.escape(s, quote=False)
    for rx, h, _ in INLINE:
        s = rx.sub(h, s)
    return s


def inline_text(s):
    for rx, _, t in INLINE:
        s = rx.sub(t, s)
    return s


def expected_text(blocks):
    out = []
    for b in blocks:
        if b[0] == "p":
            out.append(inline_text(b[1]))
        elif b[0] == "h":
            out.append("#" * b[1] + " " + inline_text(b[2]))
        elif b[0] == "ul":
            lines = []
            for item, sub in b[1]:
                lines.append("- " + inline_text(item))
                lines += ["  - " + inline_text(x) for x in sub]
            out.append("\n".join(lines))
        elif b[0] == "ol":
            out.append("\n".join("%d. %s" % (k + 1, inline_text(x)) for k, x in enumerate(b[1])))
        elif b[0] == "quote":
            out.append("\n>\n".join("> " + inline_text(p) for p in b[1]))
        elif b[0] == "code":
            out.append("```" + b[1] + "\n" + b[2] + "\n```")
        elif b[0] == "table":
            out.append("\n".join(" | ".join(inline_text(c) for c in row) for row in b[1]))
    return "\n\n".join(out) + "\n"


# ---- article HTML in a site's own style --------------------------------------------------------

def body_html(blocks, style):
    """style: dict of class names per block kind (p, h2, ul, pre, quote, table)."""
    out = []
    for b in blocks:
        if b[0] == "p":
            cls = style.get("p")
            out.append("<p%s>%s</p>" % (' class="%s"' % cls if cls else "", inline_html(b[1])))
        elif b[0] == "h":
            cls = style.get("h")
            out.append("<h%d%s>%s</h%d>" % (b[1], ' class="%s"' % cls if cls else "", inline_html(b[2]), b[1]))
        elif b[0] == "ul":
            items = []
            for item, sub in b[1]:
                inner = inline_html(item)
                if sub:
                    inner += "<ul>" + "".join("<li>%s</li>" % inline_html(x) for x in sub) + "</ul>"
                items.append("<li>%s</li>" % inner)
            out.append("<ul>\n" + "\n".join(items) + "\n</ul>")
        elif b[0] == "ol":
            out.append("<ol>\n" + "\n".join("<li>%s</li>" % inline_html(x) for x in b[1]) + "\n</ol>")
        elif b[0] == "quote":
            out.append("<blockquote>" + "".join("<p>%s</p>" % inline_html(p) for p in b[1]) + "</blockquote>")
        elif b[0] == "code":
            lang = b[1]
            code = html.escape(b[2], quote=False)
            if style.get("pre") == "highlight":
                # token spans as syntax highlighters write them
                code = re.sub(r"\b(return|def|if|for|int|static|const|while|else|import|fn|let)\b",
                              r'<span class="k">\1</span>', code)
                out.append('<div class="highlight"><pre><code class="language-%s">%s</code></pre></div>' % (lang, code))
            else:
                out.append('<pre><code%s>%s</code></pre>' % (' class="language-%s"' % lang if lang else "", code))
        elif b[0] == "table":
            rows = b[1]
            t = ["<table>", "<thead><tr>" + "".join("<th>%s</th>" % inline_html(c) for c in rows[0]) + "</tr></thead>", "<tbody>"]
            for r in rows[1:]:
                t.append("<tr>" + "".join("<td>%s</td>" % inline_html(c) for c in r) + "</tr>")
            t.append("</tbody></table>")
            out.append("\n".join(t))
    return "\n".join(out)


def head(meta, extra=""):
    t = html.escape(meta["title"])
    return """<!DOCTYPE html>
<html lang="%s">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>%s%s</title>
<link rel="stylesheet" href="/assets/site.css">
<script>window.dataLayer=window.dataLayer||[];function gtag(){dataLayer.push(arguments);}gtag('js',new Date());</script>
<style>.hidden{display:none}body{font-family:Georgia,serif}</style>
%s
</head>
""" % (meta.get("lang", "en"), t, meta.get("title_suffix", ""), extra)


from templates_extract import TEMPLATES  # noqa: E402  (tools/templates_extract.py)


def build(name, check):
    src = open(os.path.join(DIR, "src", name + ".md"), encoding="utf-8").read()
    meta, blocks = parse_source(src)
    page = TEMPLATES[meta["template"]](meta, blocks, body_html, head)
    raw = page.encode("utf-8")
    if "invalid_bytes" in meta:
        # the page says UTF-8 but a few words were saved as Latin-1: each such byte is invalid
        # UTF-8, which an extractor must turn into U+FFFD
        for word in meta["invalid_bytes"].split(","):
            word = word.strip()
            raw = raw.replace(word.encode("utf-8"), word.encode("latin-1"))
    want = expected_text(blocks)
    if "invalid_bytes" in meta:
        for word in meta["invalid_bytes"].split(","):
            word = word.strip()
            bad = "".join(c if ord(c) < 128 else "\ufffd" for c in word)
            want = want.replace(word, bad)
    paths = (os.path.join(DIR, name + ".html"), os.path.join(DIR, name + ".txt"))
    if check:
        ok = open(paths[0], "rb").read() == raw and open(paths[1], encoding="utf-8").read() == want
        print(("ok   " if ok else "DIFF ") + name)
        return ok
    open(paths[0], "wb").write(raw)
    open(paths[1], "w", encoding="utf-8").write(want)
    words = len(want.split())
    print("%s: %d words, %d bytes of HTML" % (name, words, len(raw)))
    return True


def main():
    sys.path.insert(0, HERE)
    check = "--check" in sys.argv
    names = sorted(f[:-3] for f in os.listdir(os.path.join(DIR, "src")) if f.endswith(".md"))
    ok = all([build(n, check) for n in names])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.path.insert(0, HERE)
    sys.exit(main())

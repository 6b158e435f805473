#!/usr/bin/env python3
"""make_github_fixtures.py: writes tests/fixtures/web/github/, the recorded GitHub REST API
answers that tests/integration/test_crawl_github.sh serves through tests/fixture_server.py.

The answers have the shape of the real API (users/<u>/repos pages with a Link header, repos/<o>/<r>,
git/trees/<ref>?recursive=1 with git blob shas and sizes, contents/<path>?ref= with base64
content wrapped at 60 columns, git/blobs/<sha>). Files are named by the fixture server's rule:
<path>@<query> for a query string, <dir>/index.html for a path that is also a folder,
<file>.headers for extra headers and a status.

  user wrenfield, page 1 (Link rel="next"): tidepool
                  page 2 (no Link, short):  lantern-notes, forked-lib (a fork)
  tidepool   README.md, src/tide.c, src/tide.h, docs/guide/moon-phases.md (nested),
             docs/almanac.md (the contents API does not inline it: encoding "none", read from
             the blob API), assets/logo.png (binary by extension), notes/raw.txt (NUL bytes),
             node_modules/leftpad/{index.js,package.json} (vendored), package-lock.json (lock
             file), data/soundings.c (over the size cap, never fetched), config.yaml (not
             source or docs)
  lantern-notes  README.md, notes.py
  phase 2:   tidepool's src/tide.c changed (new blob sha, new tree)
  user quota-user: repos r1 and r2; r1's tree answers 403 with x-ratelimit-remaining: 0 and a
             reset far in the future (the run must stop there)
  user stale-quota: the same 403 with a reset in the past (wait, ask once more, then stop)

Run from the repository root: python3 tools/make_github_fixtures.py
"""

import base64
import hashlib
import json
import os
import shutil

ROOT = os.path.join("tests", "fixtures", "web", "github")
PHASE2 = os.path.join("tests", "fixtures", "web", "__phase2", "github")
API = "api"
USER = "wrenfield"
BIG = 5_000_000  # data/soundings.c's size in the tree: over the crawler's 1 MiB default cap

README_TIDE = """# tidepool

Tidepool predicts the height of the water at a harbour from a handful of harmonic
constituents. I wrote it after a summer of guessing wrong about when the rocks at
Penmarch would be dry enough to cross.

## Why harmonics

The tide is the sum of a few slow waves. Get their amplitudes and phases from a year of
soundings and the sum keeps working for decades; that still surprises me.
"""

TIDE_C = """/* tide.c: water height from harmonic constituents. */
#include "tide.h"

#include <math.h>

/* Sums the constituents at hour t (hours since the epoch of the table). */
double tide_height(const tide_constituent *c, int n, double t) {
    double h = 0.0;
    for (int i = 0; i < n; i++)
        h += c[i].amplitude * cos(c[i].speed * t - c[i].phase);
    return h;
}
"""

TIDE_C_V2 = """/* tide.c: water height from harmonic constituents. */
#include "tide.h"

#include <math.h>

/* Sums the constituents at hour t (hours since the epoch of the table), plus the mean level:
 * charts give heights above chart datum, not above the mean. */
double tide_height(const tide_constituent *c, int n, double t, double mean_level) {
    double h = mean_level;
    for (int i = 0; i < n; i++)
        h += c[i].amplitude * cos(c[i].speed * t - c[i].phase);
    return h;
}
"""

TIDE_H = """#ifndef TIDE_H
#define TIDE_H

/* One harmonic constituent: amplitude in metres, speed in radians per hour, phase in radians. */
typedef struct {
    double amplitude, speed, phase;
} tide_constituent;

double tide_height(const tide_constituent *c, int n, double t);

#endif
"""

MOON_MD = """# Moon phases and spring tides

Spring tides come a day or two after the new and the full moon, not on the day itself. The
ocean needs time to answer the pull; the lag is called the age of the tide.

- new moon: sun and moon pull together
- first quarter: they pull at right angles, so the range is small (a neap tide)
"""

ALMANAC_MD = """# Almanac notes

A long page of the almanac, kept in the repository because the harbour office stopped
printing it. The contents API does not inline files this crawler must then read from the
blob API; this one stands in for them.

The water at Penmarch is lowest around eleven on the morning after a full moon.
"""

NOTES_RAW = b"sounding log\x00\x01\x02 binary bytes that only look like text\n"

LEFTPAD_JS = "module.exports = function (s, n) { return ' '.repeat(n) + s; };\n"
LEFTPAD_PKG = '{"name": "leftpad", "version": "0.0.1"}\n'
PACKAGE_LOCK = '{"name": "tidepool-web", "lockfileVersion": 3, "packages": {}}\n'
CONFIG_YAML = "harbour: penmarch\nconstituents: [M2, S2, N2, K1, O1]\n"
LOGO_PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"

README_LANTERN = """# lantern-notes

Short notes I keep while reading about lighthouses: who kept them, how the lenses worked,
and why so many of the keepers wrote such good letters.
"""

NOTES_PY = '''"""notes.py: prints the notes in the order I wrote them."""

import sys


def main(path):
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            print(f"{number:3d}  {line.rstrip()}")


if __name__ == "__main__":
    main(sys.argv[1])
'''


def git_sha(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def b64_wrapped(data):
    s = base64.b64encode(data).decode()
    return "".join(s[i:i + 60] + "\n" for i in range(0, len(s), 60))


def write(rel, text, phase=None):
    path = os.path.join(ROOT if phase is None else PHASE2, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    mode = "wb" if isinstance(text, bytes) else "w"
    with open(path, mode) as f:
        f.write(text)


def dump(obj):
    return json.dumps(obj, indent=2) + "\n"


def repo_obj(owner, name, fork=False, branch="main"):
    return {"id": int(hashlib.sha1(f"{owner}/{name}".encode()).hexdigest()[:7], 16),
            "name": name, "full_name": f"{owner}/{name}",
            "owner": {"login": owner, "type": "User"}, "private": False, "fork": fork,
            "html_url": f"https://github.com/{owner}/{name}", "default_branch": branch,
            "language": None}


def tree_answer(owner, name, files, extra_sizes=None):
    """files: {path: bytes}; extra_sizes: {path: size} for entries whose content is not served."""
    entries, dirs = [], set()
    allpaths = dict(files)
    for p in extra_sizes or {}:
        allpaths[p] = None
    for p in allpaths:
        parts = p.split("/")
        for i in range(1, len(parts)):
            dirs.add("/".join(parts[:i]))
    for d in sorted(dirs):
        entries.append({"path": d, "mode": "040000", "type": "tree",
                        "sha": hashlib.sha1(d.encode()).hexdigest()})
    for p, data in sorted(allpaths.items()):
        if data is None:
            size = extra_sizes[p]
            sha = hashlib.sha1(("big " + p).encode()).hexdigest()
        else:
            size, sha = len(data), git_sha(data)
        entries.append({"path": p, "mode": "100644", "type": "blob", "sha": sha, "size": size})
    entries.sort(key=lambda e: e["path"])
    top = hashlib.sha1(json.dumps(entries).encode()).hexdigest()
    return {"sha": top, "url": f"https://api.github.com/repos/{owner}/{name}/git/trees/{top}",
            "tree": entries, "truncated": False}


def contents_answer(owner, name, path, data, inline=True):
    ans = {"type": "file", "name": path.split("/")[-1], "path": path, "sha": git_sha(data),
           "size": len(data)}
    if inline:
        ans.update({"encoding": "base64", "content": b64_wrapped(data)})
    else:  # what the API answers for files of 1-100 MB
        ans.update({"encoding": "none", "content": ""})
    return ans


def repo_files(owner, name, files, extra_sizes=None, not_inline=(), phase=None, serve=None):
    """The tree of files, and the contents answers of the paths in serve (default: all): a
    crawler that asks for a file it should have skipped gets a 404 and records a failure."""
    base = f"{API}/repos/{owner}/{name}"
    write(f"{base}/git/trees/main@recursive=1", dump(tree_answer(owner, name, files, extra_sizes)),
          phase)
    for p, data in files.items():
        if serve is not None and p not in serve:
            continue
        write(f"{base}/contents/{p}@ref=main",
              dump(contents_answer(owner, name, p, data, p not in not_inline)), phase)
        if p in not_inline:
            write(f"{base}/git/blobs/{git_sha(data)}",
                  dump({"sha": git_sha(data), "size": len(data), "encoding": "base64",
                        "content": b64_wrapped(data)}), phase)


def main():
    shutil.rmtree(ROOT, ignore_errors=True)
    shutil.rmtree(PHASE2, ignore_errors=True)
    # The user's repositories, two pages: the Link header (as GitHub sends it, with the real
    # API host) says there is a second page although the first is short.
    write(f"{API}/users/{USER}/repos@per_page=100&page=1",
          dump([repo_obj(USER, "tidepool")]))
    write(f"{API}/users/{USER}/repos@per_page=100&page=1.headers",
          'Link: <https://api.github.com/user/4242/repos?per_page=100&page=2>; rel="next", '
          '<https://api.github.com/user/4242/repos?per_page=100&page=2>; rel="last"\n')
    write(f"{API}/users/{USER}/repos@per_page=100&page=2",
          dump([repo_obj(USER, "lantern-notes"), repo_obj(USER, "forked-lib", fork=True)]))
    # One-repository sources ask for the repository itself (a folder too: index.html).
    write(f"{API}/repos/{USER}/lantern-notes/index.html", dump(repo_obj(USER, "lantern-notes")))

    tide = {
        "README.md": README_TIDE.encode(),
        "src/tide.c": TIDE_C.encode(),
        "src/tide.h": TIDE_H.encode(),
        "docs/guide/moon-phases.md": MOON_MD.encode(),
        "docs/almanac.md": ALMANAC_MD.encode(),
        "assets/logo.png": LOGO_PNG,
        "notes/raw.txt": NOTES_RAW,
        "node_modules/leftpad/index.js": LEFTPAD_JS.encode(),
        "node_modules/leftpad/package.json": LEFTPAD_PKG.encode(),
        "package-lock.json": PACKAGE_LOCK.encode(),
        "config.yaml": CONFIG_YAML.encode(),
    }
    # notes/raw.txt is served: only its bytes tell that it is binary.
    kept = ("README.md", "src/tide.c", "src/tide.h", "docs/guide/moon-phases.md",
            "docs/almanac.md", "notes/raw.txt")
    repo_files(USER, "tidepool", tide, {"data/soundings.c": BIG}, not_inline=("docs/almanac.md",),
               serve=kept)
    tide2 = dict(tide)
    tide2["src/tide.c"] = TIDE_C_V2.encode()
    repo_files(USER, "tidepool", tide2, {"data/soundings.c": BIG}, phase=2, serve=("src/tide.c",))
    repo_files(USER, "lantern-notes",
               {"README.md": README_LANTERN.encode(), "notes.py": NOTES_PY.encode()})

    # A user whose quota runs out at the first tree.
    write(f"{API}/users/quota-user/repos@per_page=100&page=1",
          dump([repo_obj("quota-user", "r1"), repo_obj("quota-user", "r2")]))
    write(f"{API}/repos/quota-user/r1/git/trees/main@recursive=1",
          dump({"message": "API rate limit exceeded for 127.0.0.1.",
                "documentation_url": "https://docs.github.com/rest/rate-limit"}))
    write(f"{API}/repos/quota-user/r1/git/trees/main@recursive=1.headers",
          "Status: 403\nx-ratelimit-limit: 60\nx-ratelimit-remaining: 0\n"
          "x-ratelimit-reset: 4102444800\nx-ratelimit-resource: core\n")
    repo_files("quota-user", "r2", {"README.md": b"# r2\n\nNever reached.\n"})
    # A user whose limit has already reset by the header's clock (x-ratelimit-reset in the
    # past): the crawler waits (no time at all), asks once more, and stops when still limited.
    write(f"{API}/users/stale-quota/repos@per_page=100&page=1",
          dump([repo_obj("stale-quota", "s1")]))
    write(f"{API}/repos/stale-quota/s1/git/trees/main@recursive=1",
          dump({"message": "API rate limit exceeded for 127.0.0.1."}))
    write(f"{API}/repos/stale-quota/s1/git/trees/main@recursive=1.headers",
          "Status: 403\nx-ratelimit-remaining: 0\nx-ratelimit-reset: 1\n")


if __name__ == "__main__":
    main()

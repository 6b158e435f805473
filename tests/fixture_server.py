#!/usr/bin/env python3
"""fixture_server.py: the local HTTP server that every crawler test and `twin bench crawl` use.
Python 3 standard library only (ThreadingHTTPServer, HTTP/1.1 with keep-alive).

Contract (tests rely on it; keep the server generic: crawler fixtures are FILES under a root):

  python3 tests/fixture_server.py --root DIR [--port 0] [--no-parent-watch]
      Prints "PORT <n>" as its first stdout line once listening, then "PID <pid>" on the
      second, and serves on 127.0.0.1:<n> until killed (SIGTERM) or until the process that
      started it exits (it checks its parent once a second, so a crashed test leaves no
      server behind; --no-parent-watch turns that off).

  GET|HEAD /<path>
      The file DIR/<path> (DIR/<path>/index.html for a folder); the path is percent-decoded
      and may not leave DIR. When the request has a query string, DIR/<path>@<query> (the
      query verbatim, '/' replaced by '%2F') is tried first.
      Phases: GET /__fixture/phase?n=2 switches to phase 2, where DIR/__phase2/<path> overrides
      DIR/<path> (n=1 switches back). Lookup order: <path>@<query> in phase 2, then in DIR,
      then <path> in phase 2, then in DIR.
      A sidecar DIR/<file>.headers holds extra "Name: value" lines (sent as they are; they
      override the defaults below) and an optional "Status: NNN" line.
      Content-Type from the extension of <path>: .html/.htm text/html, .xml application/xml,
      .rss application/rss+xml, .atom application/atom+xml, .json application/json,
      .txt text/plain, .md text/markdown, .csv text/csv (text types with charset=utf-8),
      .zip application/zip, else application/octet-stream.
      Every file answer has a strong ETag ("sha256 of the body", hex, quoted) and a
      Last-Modified (the file's mtime, or the sidecar's Last-Modified line). A 200 answer to a
      request whose If-None-Match matches the ETag (or, without If-None-Match, whose
      If-Modified-Since is not older than Last-Modified) is a 304 with no body.
      A missing file is a 404 with a short text body.
      robots.txt is just a file: DIR/robots.txt when present, 404 otherwise.

  GET /__fixture/log[?clear=1]
      The JSON list of requests (not counting /__fixture/ ones) since the last ?clear=1, in
      the order they finished (it first waits, up to 2 s, for requests in progress to end, so a
      request whose answer a test has already read is in it): [{"path": request target with its query, "method", "status",
      "if_none_match", "if_modified_since", "ua", "accept_encoding", "start", "end" (seconds
      since the server started), "inflight" (requests being served, this one included, when
      it started)}]. With clear=1 the list is returned and then emptied.
  GET /__fixture/phase?n=N     switches the phase (answers {"phase": N}).

  Ugly endpoints (for the HTTP client's tests):
    /__ugly/status/<code>          that status with a short body
    /__ugly/flaky/<key>?fail=N     500 the first N times per key, then 200 "ok <key>"
    /__ugly/429/<key>?after=S      429 with Retry-After: S the first time per key, then 200
    /__ugly/429-date/<key>?after=S the same with Retry-After as an HTTP date S seconds ahead
    /__ugly/429-long               always 429 with Retry-After: 3600
    /__ugly/redirect-loop          302 -> /__ugly/redirect-loop/b, which 302s back
    /__ugly/redirect/<n>           n redirects (302) then 200 "redirected"
    /__ugly/slow?s=S               headers at once, then a 1000-byte body dribbled over S s
    /__ugly/big?mb=N               N MiB of 'x' streamed in 64 KiB pieces (never held whole)
    /__ugly/invalid-utf8           HTML with invalid UTF-8 bytes (INVALID_UTF8_BODY below)
    /__ugly/gzip                   GZIP_TEXT, gzip-encoded when Accept-Encoding allows gzip
"""

import argparse
import email.utils
import gzip
import hashlib
import json
import os
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

INVALID_UTF8_BODY = (b"<!doctype html><html><head><title>bad bytes</title></head><body><p>"
                     b"caf\xe9 \xff\xfe lone \x80 overlong \xc0\xaf surrogate \xed\xa0\x80 "
                     b"cut \xe2\x82</p></body></html>\n")
GZIP_TEXT = b"gzip fixture: " + b"the quick brown fox jumps over the lazy dog. " * 40 + b"\n"

TYPES = {
    ".html": "text/html; charset=utf-8", ".htm": "text/html; charset=utf-8",
    ".xml": "application/xml", ".rss": "application/rss+xml", ".atom": "application/atom+xml",
    ".json": "application/json", ".txt": "text/plain; charset=utf-8",
    ".md": "text/markdown; charset=utf-8", ".csv": "text/csv; charset=utf-8",
    ".zip": "application/zip",
}


class State:
    """Everything the handler threads share, under one lock."""

    def __init__(self, root):
        self.root = os.path.realpath(root)
        self.lock = threading.Lock()
        self.idle = threading.Condition(self.lock)  # notified whenever a request finishes
        self.phase = 1
        self.log = []
        self.counters = {}
        self.inflight = 0
        self.t0 = time.time()


def content_type(path):
    return TYPES.get(os.path.splitext(path)[1].lower(), "application/octet-stream")


def http_date(t):
    return email.utils.formatdate(t, usegmt=True)


def etag_matches(header, etag):
    if header is None:
        return False
    for tag in header.split(","):
        tag = tag.strip()
        if tag.startswith("W/"):
            tag = tag[2:]  # If-None-Match uses the weak comparison (RFC 9110 13.1.2)
        if tag == "*" or tag == etag:
            return True
    return False


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # headers and body go out in separate writes: without TCP_NODELAY, Nagle's algorithm and the
    # client's delayed ACK stall every keep-alive answer by ~40 ms
    disable_nagle_algorithm = True
    server_version = "twin-fixture/1"
    sys_version = ""

    def version_string(self):
        return self.server_version

    def log_message(self, fmt, *args):  # quiet: the log endpoint is the record
        pass

    # ---- plumbing ------------------------------------------------------------------------
    def do_HEAD(self):
        self.handle_request(head=True)

    def do_GET(self):
        self.handle_request(head=False)

    def handle_request(self, head):
        st = self.server.state
        url = urllib.parse.urlsplit(self.path)
        self.query = url.query
        self.params = urllib.parse.parse_qs(url.query)
        self.head = head
        self.status = 0
        if url.path.startswith("/__fixture/"):
            try:
                self.fixture(url.path)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True
            return
        with st.lock:
            st.inflight += 1
            inflight = st.inflight
        start = time.time() - st.t0
        try:
            if url.path.startswith("/__ugly/"):
                self.ugly(url.path)
            else:
                self.serve_file(url.path)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            self.close_connection = True
        finally:
            end = time.time() - st.t0
            with st.lock:
                st.inflight -= 1
                st.idle.notify_all()
                st.log.append({
                    "path": self.path, "method": self.command, "status": self.status,
                    "if_none_match": self.headers.get("If-None-Match"),
                    "if_modified_since": self.headers.get("If-Modified-Since"),
                    "ua": self.headers.get("User-Agent"),
                    "accept_encoding": self.headers.get("Accept-Encoding"),
                    "start": round(start, 6), "end": round(end, 6), "inflight": inflight,
                })

    def param(self, name, default):
        v = self.params.get(name)
        try:
            return float(v[0]) if v else default
        except ValueError:
            return default

    def reply(self, status, body=b"", ctype="text/plain; charset=utf-8", headers=()):
        """A whole answer with a Content-Length (keep-alive stays usable)."""
        self.status = status
        self.send_response(status)
        names = {k.lower() for k, _ in headers}
        if "content-type" not in names and status != 304:
            self.send_header("Content-Type", ctype)
        for k, v in headers:
            self.send_header(k, v)
        if status != 304:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not self.head and status != 304 and body:
            self.wfile.write(body)

    def count(self, key):
        st = self.server.state
        with st.lock:
            n = st.counters.get(key, 0)
            st.counters[key] = n + 1
            return n

    # ---- /__fixture/ ---------------------------------------------------------------------
    def fixture(self, path):
        st = self.server.state
        if path == "/__fixture/log":
            with st.lock:
                # a client has its answer before the handler thread logs it: wait for the
                # requests in progress (a hung-up client's is cut short by its next write)
                st.idle.wait_for(lambda: st.inflight == 0, timeout=2.0)
                body = json.dumps(st.log).encode()
                if self.params.get("clear", ["0"])[0] == "1":
                    st.log = []
            self.reply(200, body, "application/json")
        elif path == "/__fixture/phase":
            n = int(self.param("n", 1))
            with st.lock:
                st.phase = n
            self.reply(200, json.dumps({"phase": n}).encode(), "application/json")
        else:
            self.reply(404, b"no such fixture endpoint\n")

    # ---- files ---------------------------------------------------------------------------
    def resolve(self, rel):
        """DIR/rel (index.html for a folder) if it exists inside DIR, else None."""
        st = self.server.state
        full = os.path.realpath(os.path.join(st.root, rel))
        if full != st.root and not full.startswith(st.root + os.sep):
            return None
        if os.path.isdir(full):
            full = os.path.join(full, "index.html")
        return full if os.path.isfile(full) else None

    def serve_file(self, path):
        st = self.server.state
        rel = urllib.parse.unquote(path).lstrip("/")
        names = []
        if self.query:
            names.append(rel + "@" + self.query.replace("/", "%2F"))
        names.append(rel)
        with st.lock:
            phase = st.phase
        found = None
        for name in names:
            bases = (["__phase%d/" % phase] if phase != 1 else []) + [""]
            for base in bases:
                found = self.resolve(base + name)
                if found:
                    break
            if found:
                break
        if not found:
            self.reply(404, b"not found: " + path.encode("utf-8", "replace") + b"\n")
            return
        with open(found, "rb") as f:
            body = f.read()
        status = 200
        extra = []
        last_modified = http_date(os.stat(found).st_mtime)
        side = found + ".headers"
        if os.path.isfile(side):
            with open(side, encoding="utf-8") as f:
                for line in f:
                    line = line.strip()
                    if not line or ":" not in line:
                        continue
                    k, v = (x.strip() for x in line.split(":", 1))
                    if k.lower() == "status":
                        status = int(v)
                    elif k.lower() == "last-modified":
                        last_modified = v
                    else:
                        extra.append((k, v))
        etag = '"' + hashlib.sha256(body).hexdigest() + '"'
        names_l = {k.lower() for k, _ in extra}
        headers = []
        if "etag" not in names_l:
            headers.append(("ETag", etag))
        else:
            etag = next(v for k, v in extra if k.lower() == "etag")
        headers.append(("Last-Modified", last_modified))
        headers += extra
        if status == 200:
            inm = self.headers.get("If-None-Match")
            ims = self.headers.get("If-Modified-Since")
            fresh = False
            if inm is not None:
                fresh = etag_matches(inm, etag)
            elif ims is not None:
                try:
                    fresh = (email.utils.parsedate_to_datetime(last_modified)
                             <= email.utils.parsedate_to_datetime(ims))
                except (TypeError, ValueError):
                    fresh = False
            if fresh:
                self.reply(304, b"", headers=headers)
                return
        # the type of a query file is its path's: "feed.xml@page=2" is XML
        typed = found if name == rel else rel
        self.reply(status, body, content_type(typed), headers)

    # ---- /__ugly/ ------------------------------------------------------------------------
    def ugly(self, path):
        parts = path.split("/")[2:]  # after "", "__ugly"
        what = parts[0] if parts else ""
        arg = "/".join(parts[1:])
        if what == "status" and arg.isdigit():
            code = int(arg)
            self.reply(code, b"status %d\n" % code if code not in (204, 304) else b"")
        elif what == "flaky":
            n = self.count("flaky/" + arg)
            if n < int(self.param("fail", 1)):
                self.reply(500, b"flaky failure %d\n" % (n + 1))
            else:
                self.reply(200, b"ok " + arg.encode())
        elif what in ("429", "429-date"):
            n = self.count(what + "/" + arg)
            after = self.param("after", 1)
            if n == 0:
                ra = str(int(after)) if what == "429" else http_date(time.time() + after)
                self.reply(429, b"slow down\n", headers=[("Retry-After", ra)])
            else:
                self.reply(200, b"ok " + arg.encode())
        elif what == "429-long":
            self.reply(429, b"slow down\n", headers=[("Retry-After", "3600")])
        elif what == "redirect-loop":
            target = "/__ugly/redirect-loop" if arg == "b" else "/__ugly/redirect-loop/b"
            self.reply(302, b"", headers=[("Location", target)])
        elif what == "redirect" and arg.isdigit():
            n = int(arg)
            if n > 0:
                self.reply(302, b"", headers=[("Location", "/__ugly/redirect/%d" % (n - 1))])
            else:
                self.reply(200, b"redirected")
        elif what == "slow":
            secs = self.param("s", 2)
            self.status = 200
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.flush()
            for _ in range(20):
                time.sleep(secs / 20)
                self.wfile.write(b"s" * 50)
                self.wfile.flush()
        elif what == "big":
            total = int(self.param("mb", 1) * 1024 * 1024)
            self.status = 200
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(total))
            self.end_headers()
            piece = b"x" * 65536
            sent = 0
            while sent < total and not self.head:
                n = min(len(piece), total - sent)
                self.wfile.write(piece[:n])
                sent += n
        elif what == "invalid-utf8":
            self.reply(200, INVALID_UTF8_BODY, "text/html; charset=utf-8")
        elif what == "gzip":
            accept = self.headers.get("Accept-Encoding", "")
            if "gzip" in [a.split(";")[0].strip() for a in accept.split(",")]:
                self.reply(200, gzip.compress(GZIP_TEXT), "text/plain; charset=utf-8",
                           [("Content-Encoding", "gzip"), ("Vary", "Accept-Encoding")])
            else:
                self.reply(200, GZIP_TEXT, "text/plain; charset=utf-8", [("Vary", "Accept-Encoding")])
        else:
            self.reply(404, b"no such ugly endpoint\n")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request, client_address):
        # a client that hangs up (a body cap, a timeout, a cancelled crawl) is normal here
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


def watch_parent(ppid):
    while True:
        time.sleep(1)
        # reparented (to init or a subreaper): whoever started us is gone
        if os.getppid() != ppid or os.getppid() == 1:
            os._exit(0)


def main():
    ap = argparse.ArgumentParser(description="twin's fixture HTTP server (see the docstring)")
    ap.add_argument("--root", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--no-parent-watch", action="store_true")
    a = ap.parse_args()
    if not os.path.isdir(a.root):
        print("fixture_server.py: --root %s: not a folder" % a.root, file=sys.stderr)
        return 2
    srv = Server(("127.0.0.1", a.port), Handler)
    srv.state = State(a.root)
    print("PORT %d" % srv.server_address[1], flush=True)
    print("PID %d" % os.getpid(), flush=True)
    if not a.no_parent_watch:
        threading.Thread(target=watch_parent, args=(os.getppid(),), daemon=True).start()
    try:
        srv.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

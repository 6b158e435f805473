#!/usr/bin/env python3
"""Writes the ZIP fixtures of tests/data/zip/ and the seeds of tests/fuzz/corpus/fuzz_zip/.

The archives come from writers independent of twin's reader (Python's zipfile and Info-ZIP's
`zip`), and expected.txt lists every member as Python's zipfile reads it back:
    <archive> <member> <size> <sha256 of the content>
tests/unit/test_zip.c checks engine/zip.c against that list.

Run from the repository root:  python3 tools/make_zip_fixtures.py   (needs the `zip` program)
"""
import hashlib
import io
import os
import shutil
import subprocess
import tempfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data", "zip")
CORPUS = os.path.join(ROOT, "tests", "fuzz", "corpus", "fuzz_zip")

LOREM = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor "
         "incididunt ut labore et dolore magna aliqua. ").encode() * 40
# Bytes that do not compress, so deflate emits stored blocks inside a deflate stream.
NOISE = bytes((i * 2654435761 >> 13) & 0xFF for i in range(3000))
FIXED_TIME = (2024, 5, 17, 12, 30, 0)  # reproducible archives


def info(name, method):
    zi = zipfile.ZipInfo(name, FIXED_TIME)
    zi.compress_type = method
    zi.external_attr = 0o644 << 16
    return zi


def py_mixed(path):
    with zipfile.ZipFile(path, "w") as z:
        z.comment = b"twin zip fixture"
        z.writestr(info("hello.txt", zipfile.ZIP_STORED), b"Hello, zip!\n")
        z.writestr(info("data/lorem.txt", zipfile.ZIP_DEFLATED), LOREM)
        z.writestr(info("data/noise.bin", zipfile.ZIP_DEFLATED), NOISE)
        z.writestr(info("empty.txt", zipfile.ZIP_DEFLATED), b"")
        d = info("dir/", zipfile.ZIP_STORED)
        d.external_attr = (0o40755 << 16) | 0x10
        z.writestr(d, b"")
        z.writestr(info("caf\u00e9/na\u00efve.txt", zipfile.ZIP_DEFLATED), "d\u00e9j\u00e0 vu\n".encode())


class Unseekable(io.RawIOBase):
    """A write-only stream: zipfile then writes data descriptors (flag bit 3)."""

    def __init__(self):
        self.buf = bytearray()

    def writable(self):
        return True

    def write(self, b):
        self.buf += b
        return len(b)


def py_stream(path):
    out = Unseekable()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr(info("stream/a.txt", zipfile.ZIP_DEFLATED), LOREM[:700])
        z.writestr(info("stream/b.bin", zipfile.ZIP_STORED), NOISE[:300])
    with open(path, "wb") as f:
        f.write(out.buf)


def infozip_zip64(path):
    # zip -fz forces ZIP64 extra fields and the ZIP64 end records even for small files.
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "small.txt"), "wb") as f:
            f.write(b"zip64 says hi\n")
        with open(os.path.join(tmp, "lorem.txt"), "wb") as f:
            f.write(LOREM)
        for n in ("small.txt", "lorem.txt"):
            os.utime(os.path.join(tmp, n), (1715949000, 1715949000))
        if os.path.exists(path):
            os.remove(path)
        subprocess.run(["zip", "-q", "-X", "-fz", path, "small.txt", "lorem.txt"], cwd=tmp,
                       check=True)


def main():
    os.makedirs(DATA, exist_ok=True)
    os.makedirs(CORPUS, exist_ok=True)
    made = {
        "py_mixed.zip": py_mixed,
        "py_stream.zip": py_stream,
        "infozip_zip64.zip": infozip_zip64,
    }
    lines = []
    for name, fn in made.items():
        path = os.path.join(DATA, name)
        fn(path)
        with zipfile.ZipFile(path) as z:
            for zi in z.infolist():
                content = z.read(zi)
                lines.append(f"{name} {zi.filename} {len(content)} "
                             f"{hashlib.sha256(content).hexdigest()}")
        shutil.copy(path, os.path.join(CORPUS, name))
    with open(os.path.join(DATA, "expected.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    # A few extra seeds for the fuzzer: the smallest valid archive and a one-member one.
    with zipfile.ZipFile(os.path.join(CORPUS, "empty.zip"), "w"):
        pass
    with zipfile.ZipFile(os.path.join(CORPUS, "one_deflate.zip"), "w") as z:
        z.writestr(info("x", zipfile.ZIP_DEFLATED), b"abcabcabcabc" * 8)


if __name__ == "__main__":
    main()

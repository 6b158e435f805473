#!/usr/bin/env bash
# llama_anchor.sh: builds llama.cpp's llama-bench, llama-batched-bench and llama-quantize, the
# anchor of `twin bench infer` (and of test_quantize.sh), from the llama.cpp source that the llama-cpp-python sdist vendors (so the
# anchor is the same llama.cpp the golden data of tests/data/llama/ come from). Nothing of
# llama.cpp is kept in the repository: the sdist is fetched with pip and built in a cache folder.
#
# usage: bench/llama_anchor.sh            builds when needed; prints the folder holding the
#                                         three programs as the last stdout line
#        bench/llama_anchor.sh --print    prints that folder if already built (exit 1 if not)
#
# Environment:
#   TWIN_HOME                  the workspace (default ./twin-data); the build goes to
#                              $TWIN_HOME/cache/llama.cpp-<version>/ (src/, build/, bin/)
#   LLAMA_CPP_PYTHON_VERSION   the sdist version (default: the installed llama_cpp's version,
#                              else 0.3.36, the one the golden data were made with)
#   LLAMA_SDIST                an already downloaded llama_cpp_python-<version>.tar.gz (no pip)
#   TWIN_PYTHON                the Python whose pip downloads the sdist (default python3)
#   JOBS                       build parallelism (default 2); the build runs under nice
#   LLAMA_CMAKE_ARGS           extra cmake arguments (default builds for the native CPU, as
#                              llama.cpp does by default, without curl/openssl)
#
# Exit: 0 with the folder printed; 1 when pip, tar, cmake or the compiler fail (their output
# is on stderr).
set -euo pipefail

py="${TWIN_PYTHON:-python3}"
version="${LLAMA_CPP_PYTHON_VERSION:-}"
if [[ -z "$version" ]]; then
    version="$("$py" -c 'import importlib.metadata as m; print(m.version("llama_cpp_python"))' 2>/dev/null || true)"
    [[ -n "$version" ]] || version="0.3.36"
fi
home="${TWIN_HOME:-./twin-data}"
cache="$home/cache/llama.cpp-$version"
bin="$cache/bin"

built() { [[ -x "$bin/llama-bench" && -x "$bin/llama-batched-bench" && -x "$bin/llama-quantize" ]]; }

if [[ "${1:-}" == "--print" ]]; then
    built || { echo "llama_anchor: not built yet in $cache (run bench/llama_anchor.sh)" >&2; exit 1; }
    (cd "$bin" && pwd)
    exit 0
fi
if [[ $# -gt 0 ]]; then
    echo "usage: bench/llama_anchor.sh [--print]" >&2
    exit 2
fi

if built; then
    (cd "$bin" && pwd)
    exit 0
fi

mkdir -p "$cache"
cache="$(cd "$cache" && pwd)"
bin="$cache/bin"
src="$cache/src"
if [[ ! -f "$src/vendor/llama.cpp/CMakeLists.txt" ]]; then
    sdist="${LLAMA_SDIST:-}"
    if [[ -z "$sdist" ]]; then
        mkdir -p "$cache/sdist"
        echo "llama_anchor: pip download llama-cpp-python==$version (sdist)" >&2
        "$py" -m pip download --quiet --no-deps --no-binary :all: -d "$cache/sdist" \
            "llama-cpp-python==$version" >&2
        sdist="$(ls "$cache"/sdist/llama_cpp_python-"$version".tar.gz)"
    fi
    rm -rf "$src.tmp"
    mkdir -p "$src.tmp"
    tar -xzf "$sdist" -C "$src.tmp" --strip-components=1
    rm -rf "$src"
    mv "$src.tmp" "$src"
fi

# Defaults: a release build for this CPU (GGML_NATIVE, llama.cpp's own default), static
# libraries so the binaries need nothing from the build folder, no network libraries.
# shellcheck disable=SC2206
extra=(${LLAMA_CMAKE_ARGS:-})
echo "llama_anchor: building llama.cpp $version (llama-cpp-python sdist) in $cache/build" >&2
nice -n 10 cmake -S "$src/vendor/llama.cpp" -B "$cache/build" \
    -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DBUILD_SHARED_LIBS=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
    -DLLAMA_BUILD_TOOLS=ON -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF "${extra[@]}" >&2
nice -n 10 cmake --build "$cache/build" --target llama-bench llama-batched-bench llama-quantize -j "${JOBS:-2}" >&2
mkdir -p "$bin"
for t in llama-bench llama-batched-bench llama-quantize; do
    f="$(find "$cache/build" -type f -name "$t" -perm -u+x | head -n 1)"
    [[ -n "$f" ]] || { echo "llama_anchor: $t was not built" >&2; exit 1; }
    cp "$f" "$bin/$t.tmp"
    mv "$bin/$t.tmp" "$bin/$t"
done
echo "$version" > "$cache/VERSION"
(cd "$bin" && pwd)

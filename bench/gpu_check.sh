#!/usr/bin/env bash
# gpu_check.sh: the GPU checks in one go, for a session that has a CUDA machine for a few
# minutes. Builds twin with CUDA for one architecture (default sm_90a: H100/H200), prints
# `twin info`, runs tests/gpu (the op table: op, shape, max rel err, bound, CUDA vs CPU time)
# and the kernel unit test against that build, and exits non-zero when any of them fails.
#
#   bench/gpu_check.sh                  # from the repository root
#   TWIN_CUDA_ARCH=80 bench/gpu_check.sh        # an A100
#   TWIN_GPU_BUILD=/tmp/b bench/gpu_check.sh    # build folder (default build-gpu)
#   TWIN_GPU_MINIMAL=1 bench/gpu_check.sh       # skip CMake: the minimal build below (faster)
#
# When CMake or the libraries the whole program needs (cJSON, utf8proc, zlib, pkg-config) are
# missing on the GPU machine, it falls back to compiling just the kernels, the core layer they
# stand on and the two kernel tests with nvcc and cc, which need only the CUDA toolkit and a C
# compiler with OpenMP.
set -u
cd "$(dirname "$0")/.." || exit 1
SRC=$(pwd)
BUILD=${TWIN_GPU_BUILD:-$SRC/build-gpu}
ARCH=${TWIN_CUDA_ARCH:-90a}
JOBS=$(nproc 2>/dev/null || echo 4)
export PATH="$PATH:/usr/local/cuda/bin"

echo "== machine"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader
nvcc --version | tail -2
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-), $JOBS threads"

full_build() {
    command -v cmake >/dev/null || { echo "no cmake"; return 1; }
    cmake -S "$SRC" -B "$BUILD" -DTWIN_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$ARCH" \
          -DCMAKE_BUILD_TYPE=Release >"$BUILD.configure.log" 2>&1 ||
        { tail -20 "$BUILD.configure.log"; return 1; }
    # The whole tree first; if another module does not build, at least the kernel tests.
    cmake --build "$BUILD" -j"$JOBS" >"$BUILD.build.log" 2>&1 ||
        { grep -m5 -E "error" "$BUILD.build.log"
          echo "(full build failed; building the kernel tests only)"
          cmake --build "$BUILD" -j"$JOBS" --target test_cuda_ops test_kernels_cpu twin-cli \
                >>"$BUILD.build.log" 2>&1 || { tail -30 "$BUILD.build.log"; return 1; }; }
}

# Only kernels/ and the core layer: no CMake, no third-party libraries.
minimal_build() {
    local out="$BUILD-min" cuda=${CUDA_HOME:-/usr/local/cuda}
    mkdir -p "$out" || return 1
    local defs=(-D_GNU_SOURCE -DTWIN_VERSION="\"min\"" -DTWIN_HAVE_CUDA=1)
    local inc=(-I"$SRC" -I"$SRC/engine" -I"$SRC/kernels" -I"$SRC/tests")
    for f in kernels/cuda/*.cu; do
        nvcc -O2 -std=c++17 --generate-code=arch=compute_$ARCH,code=sm_$ARCH "${defs[@]}" "${inc[@]}" \
             -c "$f" -o "$out/$(basename "$f").o" || return 1
    done
    for f in kernels/*.c kernels/cpu/*.c engine/status.c engine/log.c engine/alloc.c engine/quant.c \
             engine/threads.c engine/files.c; do
        cc -O2 -std=c11 -fopenmp "${defs[@]}" "${inc[@]}" -c "$f" -o "$out/$(basename "$f").o" ||
            return 1
    done
    for t in tests/gpu/test_cuda_ops.c tests/unit/test_kernels_cpu.c; do
        cc -O2 -std=c11 -fopenmp "${defs[@]}" "${inc[@]}" "$t" "$out"/*.o -o "$out/$(basename "$t" .c)" \
           -L"$cuda/lib64" -L"$cuda/lib" -Wl,-rpath,"$cuda/lib64" -lcudart -lcublas -lcublasLt \
           -lstdc++ -lm -lpthread || return 1
    done
}

# 77 (skipped) is a failure here: this script is run where a GPU is expected.
run_test() {
    echo "== $1"
    "$1"; local rc=$?
    [ $rc -eq 0 ] || { echo "$1: exit $rc"; status=1; }
}

status=0
echo "== build (sm_$ARCH)"
if [ -z "${TWIN_GPU_MINIMAL:-}" ] && full_build; then
    echo "== twin info"
    "$BUILD/twin" info || status=1
    run_test "$BUILD/test_cuda_ops"
    echo "== the other GPU tests and the kernel unit test, on the CUDA build"
    ctest --test-dir "$BUILD" -L gpu -E '^test_cuda_ops$' --no-tests=ignore --output-on-failure --timeout 300 || status=1
    ctest --test-dir "$BUILD" -R '^test_kernels_cpu$' --output-on-failure || status=1
else
    echo "== the minimal build (TWIN_GPU_MINIMAL set, or the CMake build failed)"
    minimal_build || { echo "minimal build failed"; exit 1; }
    run_test "$BUILD-min/test_cuda_ops"
    run_test "$BUILD-min/test_kernels_cpu"
fi
echo "== gpu_check: $([ $status -eq 0 ] && echo PASS || echo FAIL)"
exit $status

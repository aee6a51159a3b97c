#!/usr/bin/env bash
# Build llama.cpp's CPU tools (llama-perplexity, llama-quantize, llama-simple, llama-tokenize,
# llama-bench, llama-batched-bench, and our llama-logits) from the source vendored in the PyPI
# llama-cpp-python sdist, into target/llama.cpp/ (ignored by git, so a second run reuses the build).
# The sdist is fetched by pip from PyPI by name and version (pip prepares its metadata, which
# installs scikit-build-core and a cmake wheel into a throwaway build env, but compiles nothing)
# and checked against its sha256 before it is unpacked.
# Needs: cmake and ninja (PyPI wheels, installed into .venv if missing), gcc/g++.
# Usage: bash tests/interop/build_llama_cpp.sh     prints the bin dir on its last line.
#        bash tests/interop/build_llama_cpp.sh server    builds llama-server instead (for
#        bench/serve_vs_llama_server.sh), in its own build dir so the CI build keeps its settings.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
version=0.3.36
sha=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
work="$root/target/llama.cpp"
src="$work/llama_cpp_python-$version/vendor/llama.cpp"
build="$work/build-$version"
targets=(llama-perplexity llama-quantize llama-simple llama-tokenize llama-bench llama-batched-bench)
server=OFF
if [ "${1:-}" = server ]; then
    build="$work/build-server-$version"
    targets=(llama-server)
    server=ON
fi

mkdir -p "$work"
venv="$root/.venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
[ -x "$venv/bin/cmake" ] && [ -x "$venv/bin/ninja" ] || "$venv/bin/python" -m pip install -q cmake ninja
export PATH="$venv/bin:$PATH"
if [ ! -d "$src" ]; then
    tarball="$work/llama_cpp_python-$version.tar.gz"
    if [ ! -f "$tarball" ]; then
        # --no-binary for this package only: the sdist, while the build env pip sets up to read
        # its metadata still takes wheels. --require-hashes: pip checks the sha256 too.
        dl="$work/pip-download"
        rm -rf "$dl"
        mkdir -p "$dl"
        echo "llama-cpp-python==$version --hash=sha256:$sha" > "$dl/requirements.txt"
        "$venv/bin/python" -m pip download -q --disable-pip-version-check --no-deps \
            --no-binary llama-cpp-python --require-hashes -r "$dl/requirements.txt" -d "$dl"
        mv "$dl/llama_cpp_python-$version.tar.gz" "$tarball"
        rm -rf "$dl"
    fi
    echo "$sha  $tarball" | sha256sum -c --quiet
    tar xzf "$tarball" -C "$work"
fi
# -march=native, but no AMX: some VMs advertise AMX without enabling its tile state, and
# ggml's AMX kernels (used for Q4_0/Q8_0 matmuls) then die with SIGILL. Explicit -mno-* flags
# win over -march=native whatever their order.
no_amx="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
cmake -S "$src" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
    -DCMAKE_C_FLAGS="$no_amx" -DCMAKE_CXX_FLAGS="$no_amx" \
    -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_SERVER=$server -DGGML_OPENMP=ON > "$build.configure.log" 2>&1
cmake --build "$build" --target "${targets[@]}" -j "$(nproc)" > "$build.build.log"
# Our logits dumper (tests/interop/llama_logits.cpp), linked against the static libraries.
logits_src="$root/tests/interop/llama_logits.cpp"
if [ "$server" = OFF ] && { [ ! -x "$build/bin/llama-logits" ] || [ "$logits_src" -nt "$build/bin/llama-logits" ] \
    || [ "$build/src/libllama.a" -nt "$build/bin/llama-logits" ]; }; then
    g++ -O2 -std=c++17 -fopenmp -I"$src/include" -I"$src/ggml/include" "$logits_src" \
        -Wl,--start-group "$build/src/libllama.a" "$build/ggml/src/libggml.a" \
        "$build/ggml/src/libggml-cpu.a" "$build/ggml/src/libggml-base.a" -Wl,--end-group \
        -lpthread -ldl -lm -o "$build/bin/llama-logits"
fi
echo "$build/bin"

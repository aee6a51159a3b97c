#!/usr/bin/env bash
# Build llama.cpp's llama-server (for bench/serve_vs_llama_server.sh) from the same source as
# tests/interop/build_llama_cpp.sh (the llama-cpp-python 0.3.36 sdist), in its own build dir so
# the CI build keeps its settings. Prints the bin dir on its last line.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
version=0.3.36
# Unpacks the source (and builds the CI tools) if that has not happened yet.
bash "$root/tests/interop/build_llama_cpp.sh" > /dev/null
src="$root/target/llama.cpp/llama_cpp_python-$version/vendor/llama.cpp"
build="$root/target/llama.cpp/build-server-$version"
export PATH="$root/.venv/bin:$PATH"
no_amx="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
cmake -S "$src" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
    -DCMAKE_C_FLAGS="$no_amx" -DCMAKE_CXX_FLAGS="$no_amx" \
    -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_SERVER=ON -DGGML_OPENMP=ON > "$build.configure.log" 2>&1
cmake --build "$build" --target llama-server -j "$(nproc)" > "$build.build.log"
echo "$build/bin"

#!/usr/bin/env bash
# Print the CMAKE_ARGS that build llama-cpp-python for this machine's GPU (nothing = CPU).
# A CMAKE_ARGS already set by the user wins. The CPU build uses -march=native, so a wheel
# built here is not portable to another CPU (pip caches it per machine).
set -u
if [ -n "${CMAKE_ARGS:-}" ]; then echo "$CMAKE_ARGS"; exit 0; fi
if command -v nvidia-smi > /dev/null 2>&1 && nvidia-smi -L > /dev/null 2>&1 \
   && command -v nvcc > /dev/null 2>&1; then
  echo "-DGGML_CUDA=on"
elif [ "$(uname -s)" = "Darwin" ]; then
  echo "-DGGML_METAL=on"
elif command -v rocminfo > /dev/null 2>&1 && rocminfo > /dev/null 2>&1; then
  echo "-DGGML_HIP=on"
elif command -v vulkaninfo > /dev/null 2>&1 && vulkaninfo --summary > /dev/null 2>&1 \
   && command -v glslc > /dev/null 2>&1; then
  echo "-DGGML_VULKAN=on"
fi

#!/usr/bin/env bash
# Extra C/C++ flags for building llama.cpp (printed for CFLAGS/CXXFLAGS; empty when none).
#
# The CPU build uses -march=native. On x86-64 CPUs with AMX (Intel Sapphire Rapids and later),
# that compiles ggml's AMX matrix kernels in, and with llama-cpp-python 0.3.36 they crash
# (SIGSEGV in ggml_backend_amx_mul_mat on the first decode of SmolLM2 and Qwen2.5 GGUFs,
# seen here 2026-12-02 although the kernel grants AMX tile state). AMX only speeds up large
# prompt batches; a micro-turn appends ~20 tokens. Explicit -mno-* flags win over -march=native
# in GCC and Clang whatever their order.
set -u
case "$(uname -m)" in
  x86_64 | amd64) echo "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16" ;;
  *) echo "" ;;
esac

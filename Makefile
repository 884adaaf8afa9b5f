# latentshop — set-up and the two everyday jobs.
#   make demo [MODEL=checkpoint]         install, then render 8 images (default: the bundled 'default' model)
#   make test                            install, then run the test suite
VENV ?= .venv
PYTHON ?= python3
TORCH_SPEC ?= torch==2.13.0
MODEL ?= default
OUT ?= out/demo
BIN := $(VENV)/bin

.PHONY: install demo test bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[test]"
	touch $@

demo: install
	$(BIN)/latentshop info "$(MODEL)"
	$(BIN)/latentshop generate --model "$(MODEL)" --seeds 0-7 --trunc 0.7 --outdir "$(OUT)"

test: install
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python benchmarks/generator_speed.py

clean:
	rm -rf $(VENV) out .pytest_cache

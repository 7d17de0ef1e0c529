# `make demo` and `make test` each set up a local virtual environment first (offline-friendly:
# torch comes from the CPU wheel pinned below; override TORCH for a CUDA machine).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.feat3d-installed

.PHONY: install demo test lint bench docs clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# The demo trains a small 3D ResNet on a synthetic dataset whose four classes differ only by
# the direction of motion, then uses it like a real model: classify held-out videos (checked:
# fails below 60 % accuracy, chance is 25 %), extract features, linear SVM, info. About two
# minutes on 2 CPU cores, offline (the held-out table also lands in demo/heldout.txt). Real Kinetics weights, when cached, also label a sample video.
DEMO_TRAIN := -m resnet-10 --clip-len 8 --crop 48 --decode-size 48 --scales 1 --flip 0 \
	--epochs 30 -b 8 -j 0 --seed 0

demo: $(STAMP)
	@rm -rf demo && mkdir -p demo/data
	@echo "== 1. a dataset of 128 training and 20 held-out videos: a square moving left/right/up/down"
	$(BIN)/python examples/make_motion_dataset.py demo/data/motion --videos-per-class 32 --frames 24 --seed 0
	$(BIN)/python examples/make_motion_dataset.py demo/data/heldout --videos-per-class 5 --frames 24 --seed 1
	@echo "== 2. train resnet-10 from scratch (about a minute)"
	$(BIN)/feat3d train demo/data/motion -o demo/run $(DEMO_TRAIN)
	@echo "== 3. classify the held-out videos with the trained checkpoint"
	$(BIN)/feat3d classify demo/data/heldout -w demo/run/best.pt -k 1 -q --json demo/heldout.json > demo/heldout.txt
	$(BIN)/python -m feat3d.demo check demo/heldout.json --min-accuracy 0.6
	@echo "== 4. extract pool5 features of every video, then a linear SVM on them"
	$(BIN)/feat3d extract demo/data -o demo/feats.h5 -w demo/run/best.pt -q
	$(BIN)/python -m feat3d.demo labels demo/data -o demo/labels.csv
	$(BIN)/feat3d svm demo/feats.h5 --labels demo/labels.csv
	@echo "== 5. what the feature file holds"
	$(BIN)/feat3d info demo/feats.h5
	@W=$$($(BIN)/python -m feat3d.demo sample demo/sample.mp4); \
	if [ "$$W" = DEFAULT ]; then \
	echo "== 6. Kinetics-400 r3d_18 weights found in the cache: classify a sample video"; \
	$(BIN)/feat3d classify demo/sample.mp4 --per-clip --top-k 3; \
	else echo "== (no Kinetics weights cached: see 'feat3d weights download r3d_18.kinetics400_v1')"; fi

test: $(STAMP)
	$(BIN)/ruff check feat3d tests bench examples
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check feat3d tests bench examples
	$(BIN)/ruff format --check feat3d tests bench examples

# The documentation site (mkdocs.yml, docs/) in strict mode: a broken link, a page missing from
# the nav or a docstring griffe cannot parse fails the build. Output in site/ (git-ignored).
docs: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[docs]"
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

bench: $(STAMP)
	$(BIN)/python bench/throughput.py --make-video 640x360 --model resnet-18

clean:
	rm -rf $(VENV) demo site .pytest_cache .ruff_cache

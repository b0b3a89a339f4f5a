# trainlab: `make demo` runs the main job, `make test` runs the checks. Both set up first.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.trainlab-setup
TORCH_PIN := torch==2.13.0

# The real datasets sit beside the project on lab machines and CI; use them unless told otherwise.
ifeq ($(TRAINLAB_DATA),)
ifneq ($(wildcard ../shared/datasets),)
export TRAINLAB_DATA := $(abspath ../shared/datasets)
endif
endif

.PHONY: setup demo test lint bench bench-quick clean

setup: $(STAMP)

# torch first, pinned to the version the project is tested with (on these machines pip finds the
# CPU wheel on disk); the constraint keeps the extras from moving it to another version.
# The optional extras (export, trackers, dashboard, notebook) come too, so every test can run.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "$(TORCH_PIN)" > $(VENV)/constraints.txt
	$(BIN)/python -m pip install -q --disable-pip-version-check $(TORCH_PIN) 2>&1 | { grep -v "is ignored" || true; }
	$(BIN)/python -m pip install -q --disable-pip-version-check -c $(VENV)/constraints.txt -e ".[dev,all]" 2>&1 | { grep -v "is ignored" || true; }
	$(BIN)/python -c "import torch, trainlab; print('trainlab', trainlab.__version__, 'torch', torch.__version__)"
	@touch $(STAMP)

demo: setup
	$(BIN)/trainlab data list
	for name in cifar10 mnist cats-vs-dogs; do $(BIN)/trainlab data info $$name || exit 1; done
	$(BIN)/trainlab validate configs/examples/*.yaml
	$(BIN)/trainlab gradcheck configs/examples/mnist-mlp-numpy.yaml --set model.hidden=[64,64] --set model.batch_norm=true
	rm -rf runs/demo
	$(BIN)/trainlab study configs/demo/study.yaml
	$(BIN)/trainlab report runs/demo --format md
	@echo "study report: $(CURDIR)/runs/demo/report.html"

lint: setup
	$(BIN)/ruff check .

test: setup lint
	$(BIN)/python -m pytest -q

# Every benchmark back to back, one table, written to bench/results.md, and the torch.compile,
# time-to-accuracy and hot-path (bench/profile_step.py) sections of docs/performance.md (run it on
# a quiet machine; about two hours).
# kornia comes from the bench extra (the kornia column of bench_augment); keras, for the keras.fit
# column of bench_torch, already comes with setup's dev extra.
bench: setup
	$(BIN)/python -m pip install -q --disable-pip-version-check -c $(VENV)/constraints.txt -e ".[bench]" 2>&1 | { grep -v "is ignored" || true; }
	$(BIN)/python bench/run_all.py --write-docs
	$(BIN)/python bench/profile_step.py --write-docs

# Tiny sizes, seconds: checks that every benchmark runs; writes bench/results-quick.md (not tracked).
bench-quick: setup
	$(BIN)/python bench/run_all.py --quick

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

# captcha-ocr: the table of contents. `make` alone prints every target.
#
# Tiers (each a requirements file):
#   serve  requirements.txt        onnxruntime + FastAPI + Flask, no PyTorch   (make ready)
#   train  requirements-train.txt  + torch, torchvision, albumentations, onnx  (make train)
#   dev    requirements-dev.txt    + pytest, ruff, playwright, ddddocr         (make test, eval, bench)

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_SYS ?= python3
VENV       ?= .venv
PY         := $(VENV)/bin/python
PIP        := $(PY) -m pip
JAVA_BUILD ?= build/java

# `make data` recipe (the tutorial's full sizes); `make data-small` overrides them.
EASY_TRAIN  ?= 200000
CTEXT_TRAIN ?= 162000
RUOYI_TRAIN ?= 100000
EASY_TEST   ?= 20000
CTEXT_TEST  ?= 16200
RUOYI_TEST  ?= 10000
HUTOOL_TRAIN  ?= 100000
KAPTCHA_TRAIN ?= 100000
WILD_TRAIN    ?= 100000
HUTOOL_TEST   ?= 10000
KAPTCHA_TEST  ?= 10000
WILD_TEST     ?= 10000
THREADS     ?= 2
SEED        ?= 123
REALDEV     ?= ../shared/realdev
ZERO_SHOT   ?= dataset/zero_shot
TRAIN_ARGS  ?=

.PHONY: help system-deps setup setup-serve setup-train setup-dev test test-fast lint format ready train finetune eval data data-small java bench clean

help: ## Print every public target with one line of help
	@echo "captcha-ocr: make <target>   (VENV=$(VENV))"
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

# ---- set-up: one stamp per tier, redone only when its requirements file changes ----
$(VENV)/bin/python:
	$(PYTHON_SYS) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# The package (captcha_ocr, pyproject.toml) is installed editable, and the repository root goes on the venv's
# import path through a .pth file, so `models`, `tools`, `bench`, `service` import from anywhere in the clone.
$(VENV)/.stamp-serve: requirements.txt pyproject.toml | $(VENV)/bin/python
	$(PIP) install -q -r requirements.txt
	$(PIP) install -q --no-deps -e .
	$(PY) -c "import pathlib, sysconfig; pathlib.Path(sysconfig.get_paths()['purelib'], 'captcha_ocr_repo.pth').write_text('$(CURDIR)\n')"
	@touch $@

$(VENV)/.stamp-train: requirements-train.txt $(VENV)/.stamp-serve
	$(PIP) install -q -r requirements-train.txt
	@touch $@

$(VENV)/.stamp-dev: requirements-dev.txt $(VENV)/.stamp-train
	$(PIP) install -q -r requirements-dev.txt
	@touch $@

setup-serve: $(VENV)/.stamp-serve ## Install the serving tier only (no PyTorch)
setup-train: $(VENV)/.stamp-train ## Install the training tier
setup-dev: $(VENV)/.stamp-dev     ## Install the development tier
setup: setup-dev java             ## Create the venv and install everything (idempotent, fast when nothing changed)

system-deps: ## Install missing system packages: JDK, Latin/CJK fonts, Chromium (apt-get; hints elsewhere)
	@bash tools/system_deps.sh $(PY)

# ---- Java runners (JDK only): tools/java_build.py recompiles when a source is newer than its class ----
java: ## Compile the Java captcha runners in tools/java_captcha
	@$(PYTHON_SYS) tools/java_build.py $(JAVA_BUILD)

# ---- quality ----
test: system-deps setup ## Set up, then run the whole test suite (browser tests included)
	$(PY) -m pytest -q

test-fast: setup ## Run the tests that are not marked slow
	$(PY) -m pytest -q -m "not slow"

lint: setup-dev ## ruff check and format check
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: setup-dev ## Apply ruff format and safe fixes
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

# ---- the three ways to use the project ----
ready: setup-serve ## Start the FastAPI service (:8000) and the Flask demo (:8001) with the shipped models
	$(PY) tools/run_ready.py --host $(or $(HOST),127.0.0.1) --api-port $(or $(API_PORT),8000) --port $(or $(PORT),8001)

train: setup-train ## Train the three recognizers on dataset/train (TRAIN_ARGS="--epochs 5 ..." to change)
	$(PY) train.py --arch all --train-root dataset/train --test-root dataset/test $(TRAIN_ARGS)

eval: setup-dev ## Evaluate every model in checkpoints/ (and ddddocr) on dataset/test, ../shared/realdev and the zero-shot sets
	@folders=""; [ -d dataset/test ] && folders="dataset/test"; \
	for fam in easy easy_gif ctext ruoyi hutool kaptcha; do [ -d $(REALDEV)/$$fam ] && folders="$$folders $(REALDEV)/$$fam"; done; \
	[ -n "$$folders" ] || { echo "nothing to evaluate on: run make data (dataset/test) or provide $(REALDEV)"; exit 1; }; \
	found=0; for dir in checkpoints/*/; do \
	  [ -f "$$dir/model.onnx" ] || continue; found=1; \
	  $(PY) tools/evaluate.py --model $$dir --out reports/eval --name $$(basename $$dir) --targets $$folders || exit 1; \
	done; [ $$found = 1 ] || { echo "no checkpoints/<name>/model.onnx yet: run make train"; exit 1; }; \
	$(PY) bench/compare_realdev.py --realdev $(REALDEV) --results docs/results.json | tee reports/eval/compare.md
	@[ -f $(ZERO_SHOT)/wheezy/labels.tsv ] || $(PY) bench/zero_shot.py make --out $(ZERO_SHOT) --n 500 --seed 7
	$(PY) bench/zero_shot.py score --sets $(ZERO_SHOT) --model checkpoints/default --results docs/results.json \
	  | tee reports/eval/zero_shot.md

FONT_DIR_CMD = $(PY) -c "import easy_captcha, os; print(os.path.join(os.path.dirname(easy_captcha.__file__), 'fonts'))"
DATA_OUT ?= dataset

data: system-deps setup-train java ## Generate and merge the full training and test sets into dataset/ (the tutorial's recipe)
	$(PY) tools/make_data.py --out $(DATA_OUT) --threads $(THREADS) --seed $(SEED) --font-dir "$$($(FONT_DIR_CMD))" \
	  --easy-train $(EASY_TRAIN) --ctext-train $(CTEXT_TRAIN) --ruoyi-train $(RUOYI_TRAIN) \
	  --easy-test $(EASY_TEST) --ctext-test $(CTEXT_TEST) --ruoyi-test $(RUOYI_TEST) \
	  --hutool-train $(HUTOOL_TRAIN) --kaptcha-train $(KAPTCHA_TRAIN) --wild-train $(WILD_TRAIN) \
	  --hutool-test $(HUTOOL_TEST) --kaptcha-test $(KAPTCHA_TEST) --wild-test $(WILD_TEST)

data-small: ## Generate a few thousand images for quick runs (same recipe, 1/100 of the counts)
	$(MAKE) data EASY_TRAIN=2000 CTEXT_TRAIN=1620 RUOYI_TRAIN=1000 EASY_TEST=200 CTEXT_TEST=162 RUOYI_TEST=100 \
	  HUTOOL_TRAIN=1000 KAPTCHA_TRAIN=1000 WILD_TRAIN=1000 HUTOOL_TEST=100 KAPTCHA_TEST=100 WILD_TEST=100

finetune: setup-train ## Fine-tune on your own captchas: DATA=<labelled folder or zip> NAME=<name> [UNLABELLED=<folder>] [BASE=<model>] [MINUTES=15] [LR=2e-3]
	@[ -n "$(DATA)" ] && [ -n "$(NAME)" ] || { echo "usage: make finetune DATA=<labelled folder or zip> NAME=<name> [UNLABELLED=<folder>] [BASE=vanilla_crnn] [MINUTES=15]"; exit 2; }
	$(PY) tools/finetune.py --data "$(DATA)" --name "$(NAME)" --base "$(or $(BASE),vanilla_crnn)" $(if $(UNLABELLED),--unlabelled "$(UNLABELLED)") $(if $(MINUTES),--minutes "$(MINUTES)") $(if $(LR),--lr "$(LR)")

BENCH_OUT ?= $(if $(QUICK),reports/bench/benchmarks.md,docs/benchmarks.md)

bench: setup java ## Measure every stage into docs/benchmarks.md (~15 min); QUICK=1: smoke run into reports/bench/
	$(PY) bench/run_all.py $(if $(QUICK),--quick) --out $(BENCH_OUT)

clean: ## Remove build outputs and caches (keeps the venv, dataset and checkpoints)
	rm -rf build .pytest_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -not -path "./$(VENV)/*" -prune -exec rm -rf {} +

# Unlearning pipeline: every target is an artefact file, so `make all` only redoes what changed.
#   make all                      run 01 -> 07 (auto profile: paper on a CUDA GPU, else cpu)
#   make all DATA_SOURCE=kaggle DATA_DIR=<folder with train.7z and trainLabels.csv>
#   make test                     unit tests + the whole pipeline in the smoke profile on generated tiny data
# Variables (name=value on the command line):
PROFILE      ?= auto
DATA_SOURCE  ?= cifar10
DATA_DIR     ?= data
CACHE_DIR    ?= data/cache
RESULTS      ?= results
DEVICE       ?= auto
SEED         ?= 42
FORGET_CLASS ?= 0
WANDB        ?= 0
PYTHON       ?= python3
VENV         ?= .venv

PY         := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.requirements-installed
# What each stage imports from common/ (with what those modules import), so that editing the method registry
# re-runs 04-07 but not the training stages: keep these lists in step with the imports.
C_BASE     := common/__init__.py common/io.py common/config.py common/log.py
C_DATA     := $(C_BASE) common/seed.py common/data.py
C_TRAIN    := $(C_DATA) common/metrics.py common/models.py common/train.py
C_UNLEARN  := $(C_TRAIN) common/unlearn.py common/methods.py
C_ATTACK   := $(C_DATA) common/metrics.py
ARGS        = --profile $(PROFILE) --results $(RESULTS) --device $(DEVICE) --seed $(SEED) --wandb $(WANDB)
SMOKE_DIR  ?= results-smoke

# Changing a variable that shapes the data re-runs everything from stage 01: the stamp is rewritten only when
# its text changes, and stage 01 depends on it.
VARS_STAMP := $(RESULTS)/.make-vars
VARS_TEXT  := $(PROFILE) $(DATA_SOURCE) $(abspath $(DATA_DIR)) $(DEVICE) $(SEED) $(FORGET_CLASS)
ifeq ($(filter help clean test,$(MAKECMDGOALS)),)
$(shell mkdir -p $(RESULTS); [ "$$(cat $(VARS_STAMP) 2>/dev/null)" = "$(VARS_TEXT)" ] || echo "$(VARS_TEXT)" > $(VARS_STAMP))
endif

S01 := $(RESULTS)/01_prepare_data/metrics.json
S02 := $(RESULTS)/02_train_resnet/metrics.json
S03 := $(RESULTS)/03_train_vit_refs/metrics.json
S04 := $(RESULTS)/04_unlearn_vit/metrics.json
S05 := $(RESULTS)/05_unlearn_gan/metrics.json
S06 := $(RESULTS)/06_membership_attack/metrics.json
S07 := $(RESULTS)/report.md

# Stages whose scripts exist (later issues add the rest); `all` ends at the last of them.
TARGETS := $(S01) \
  $(if $(wildcard 02_train_resnet.py),$(S02)) $(if $(wildcard 03_train_vit_refs.py),$(S03)) \
  $(if $(wildcard 04_unlearn_vit.py),$(S04)) $(if $(wildcard 05_unlearn_gan.py),$(S05)) \
  $(if $(wildcard 06_membership_attack.py),$(S06)) $(if $(wildcard 07_report.py),$(S07))

.PHONY: all prepare test pytest smoke help clean venv
all: $(TARGETS)

venv: $(VENV_STAMP)
$(VENV_STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements.txt
	touch $@

prepare: $(S01)
$(S01): 01_prepare_data.py $(C_DATA) $(VARS_STAMP) | $(VENV_STAMP)
	$(PY) 01_prepare_data.py $(ARGS) --source $(DATA_SOURCE) --data-dir $(DATA_DIR) --cache-dir $(CACHE_DIR) --forget-class $(FORGET_CLASS)

$(S02): 02_train_resnet.py $(C_TRAIN) $(S01) | $(VENV_STAMP)
	$(PY) 02_train_resnet.py $(ARGS)

$(S03): 03_train_vit_refs.py $(C_TRAIN) $(S01) | $(VENV_STAMP)
	$(PY) 03_train_vit_refs.py $(ARGS)

$(S04): 04_unlearn_vit.py $(C_UNLEARN) $(S03) | $(VENV_STAMP)
	$(PY) 04_unlearn_vit.py $(ARGS)

$(S05): 05_unlearn_gan.py $(C_UNLEARN) $(S02) | $(VENV_STAMP)
	$(PY) 05_unlearn_gan.py $(ARGS)

$(S06): 06_membership_attack.py $(C_ATTACK) $(filter $(S02) $(S04) $(S05),$(TARGETS)) | $(VENV_STAMP)
	$(PY) 06_membership_attack.py $(ARGS)

$(S07): 07_report.py $(C_BASE) $(filter-out $(S07),$(TARGETS)) | $(VENV_STAMP)
	$(PY) 07_report.py $(ARGS)

pytest: $(VENV_STAMP)
	$(PY) -m pytest -q tests

smoke: $(VENV_STAMP)
	rm -rf $(SMOKE_DIR)
	$(PY) tests/fake_data.py kaggle $(SMOKE_DIR)/data --per-class 60
	$(MAKE) --no-print-directory all PROFILE=smoke DATA_SOURCE=kaggle DATA_DIR=$(SMOKE_DIR)/data \
	  CACHE_DIR=$(SMOKE_DIR)/cache RESULTS=$(SMOKE_DIR)/results DEVICE=cpu WANDB=0
	$(PY) tests/check_smoke.py $(SMOKE_DIR)/results

test: pytest smoke

help:
	@sed -n '1,/^VENV /p' Makefile | grep -E '^#|\?=' | sed 's/^# \{0,1\}//'
	@echo "Targets: all prepare test pytest smoke venv clean help"

clean:
	rm -rf $(RESULTS) $(SMOKE_DIR)

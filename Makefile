# Two commands on a fresh machine: `make demo` (the main job) and `make test` (the suite).
# Both create the venv and install on first use.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo demo-full test venv bench rl-compare study-real clean

$(STAMP): pyproject.toml requirements-cpu.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements-cpu.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/personadual demo --out runs/demo

demo-full: $(STAMP)  # the demo with 300 RL steps instead of 150, and the authors' estimator (dual_paper) too
	$(BIN)/personadual demo --full --out runs/demo-full

test: $(STAMP)
	$(BIN)/python -m pytest -q tests --durations=15

RUN ?= runs/demo
SEEDS ?= 0
rl-compare: $(STAMP)  # after `make demo`: SFT start vs the three RL estimators on val and test (SEEDS=0,1,2: more RL seeds)
	$(BIN)/personadual rl-compare --out $(RUN) --seeds $(SEEDS)

BUDGET ?= full
study-real: $(STAMP)  # PersonaDual on SmolLM2-135M-Instruct + five real benchmarks, cloze form (BUDGET=smoke: minutes)
	$(BIN)/personadual study real --out runs/study-real$(if $(filter smoke,$(BUDGET)),-smoke) --budget $(BUDGET)

bench: $(STAMP)
	for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf runs/demo runs/demo-full runs/study-real runs/study-real-smoke

# alignlab: `make run` sets up, builds and runs the quick scenario; `make test` runs the tests.
SHELL := /bin/bash
ALIGNLAB_CACHE ?= $(HOME)/.cache/alignlab
TORCH_DIR := $(ALIGNLAB_CACHE)/torch-2.11.0
SCENARIO ?= scenarios/sentiment.toml
CARGO ?= cargo

JOBS ?= 2

.PHONY: trl-roundtrip setup build run test lint bench bench-compare clean-runs sweep ablations report paper paper-bf16 paper-perturbed tabular baselines hf-check gpu-check test-slurm kill-check tensorboard-check fixtures

# Install libtorch (the PyPI torch==2.11.0 wheel) once per machine, then link it as .libtorch.
# A LIBTORCH set by the user is respected: nothing is installed and .libtorch is not touched.
setup:
	@if [ -n "$$LIBTORCH" ]; then \
		echo "setup: using LIBTORCH=$$LIBTORCH (set by you)"; \
	else \
		if [ ! -f "$(TORCH_DIR)/torch/lib/libtorch_cpu.so" ]; then \
			echo "setup: installing torch==2.11.0 into $(TORCH_DIR) (about 4.6 GB, once)"; \
			rm -rf "$(TORCH_DIR).partial"; \
			python3 -m pip install --quiet --target "$(TORCH_DIR).partial" torch==2.11.0 && \
			rm -rf "$(TORCH_DIR)" && mv "$(TORCH_DIR).partial" "$(TORCH_DIR)" || exit 1; \
		fi; \
		ln -sfn "$(TORCH_DIR)/torch" .libtorch; \
	fi

build: setup
	$(CARGO) build --release

run: build
	./target/release/alignlab run $(SCENARIO)

# The quick scenario with three seeds, its cells two at a time.
sweep: build
	./target/release/alignlab run $(SCENARIO) --jobs $(JOBS) --set 'sweep.seeds=[0,1,2]' --set name=sentiment-3seeds

# Each ablation at its levels (see the header of each scenario file).
ablations: build
	for t in "0.02 0p02" "0.1 0p1" "0.5 0p5"; do set -- $$t; ./target/release/alignlab run scenarios/ablation-label-noise.toml --jobs $(JOBS) --set prefs.bt_temperature=$$1 --set name=ablation-label-noise-T$$2 || exit 1; done
	for n in 125 500 2000; do ./target/release/alignlab run scenarios/ablation-data-size.toml --jobs $(JOBS) --set world.n_train_prompts=$$n --set name=ablation-data-size-$$n || exit 1; done
	for d in "32 1" "64 2" "128 2"; do set -- $$d; ./target/release/alignlab run scenarios/ablation-rm-size.toml --jobs $(JOBS) --set reward.d_model=$$1 --set reward.n_layer=$$2 --set name=ablation-rm-size-d$$1 || exit 1; done

# Regenerate every table and plot of every results folder from its CSVs.
report: build
	for d in results/*/; do [ -f "$$d/eval.csv" ] && ./target/release/alignlab report "$$d"; done; true

# The paper's runs (each about half an hour to an hour on two cores; the fair protocol's more),
# the tabular world, the ablations, then paper/README.md from results/ (its last section says
# what each folder cost).
paper: build tabular ablations
	./target/release/alignlab run scenarios/paper-sentiment.toml --jobs $(JOBS)
	./target/release/alignlab run scenarios/paper-summarize.toml --jobs $(JOBS)
	./target/release/alignlab run scenarios/paper-dialogue.toml --jobs $(JOBS)
	./target/release/alignlab run scenarios/online-vs-offline.toml --jobs $(JOBS)
	./target/release/alignlab run scenarios/loss-zoo.toml --jobs $(JOBS)
	./target/release/alignlab run scenarios/overoptimisation.toml --jobs $(JOBS)
	./target/release/alignlab run scenarios/fair-sentiment.toml --jobs $(JOBS)
	./target/release/alignlab run scenarios/fair-summarize.toml --jobs $(JOBS)
	./target/release/alignlab run scenarios/fair-dialogue.toml --jobs $(JOBS)
	$(MAKE) paper-bf16 paper-perturbed
	./target/release/alignlab report --paper

# The precision study: the paper's sentiment and summarize runs again in bf16, each compared with
# its fp32 folder by two one-sided tests (equivalence.{csv,md} in the bf16 folder).
paper-bf16: build
	for s in paper-sentiment paper-summarize; do \
		./target/release/alignlab run scenarios/$$s.toml --jobs $(JOBS) --precision bf16 --set name=$$s-bf16 && \
		./target/release/alignlab equivalence results/$$s results/$$s-bf16 || exit 1; \
	done

# Float noise: each fair experiment's sweep again, from its folder's resolved scenario (the tuned
# settings, the calibrated grids and the top-ups as they ran, so no tuning, calibration or new
# top-up), with every run on two torch threads, one at a time (the folders ran two at a time on
# one thread each): other summation orders, nothing else. The paper counts the adjusted
# verdicts that moved (its "Stability under float noise").
paper-perturbed: build
	for s in fair-sentiment fair-summarize fair-dialogue; do \
		./target/release/alignlab run results/$$s/scenario.resolved.toml --jobs 1 --threads 2 \
			--set name=$$s-perturbed --set 'tune.seeds=[]' --set sweep.calibrate=false --set sweep.top_up_rounds=0 || exit 1; \
	done

# The tabular world's convergence to pi* (seconds).
tabular: build
	./target/release/alignlab tabular

test: setup
	$(CARGO) test --release

# Formatting (rustfmt.toml) and every clippy lint as an error, on the code and the tests.
lint: setup
	$(CARGO) fmt --check
	$(CARGO) clippy --release --all-targets -- -D warnings

bench: build
	./target/release/alignlab bench

# A sweep on a real Slurm (not part of `make test`; installs Debian's slurm-wlm and munge if
# missing, so run it as root): a single-node slurmctld + slurmd on localhost, a tiny scenario's
# shared stages as a job and its cells as an array with a dependency (scripts/slurm/submit.sh,
# the script docs/running.md's Slurm section uses), merged, and eval.csv and metrics.csv checked byte
# for byte against `alignlab run --jobs 2`; the daemons stopped (scripts/slurm-check.sh).
test-slurm: build
	scripts/slurm-check.sh ./target/release/alignlab

# Resume under kill -9 (not part of `make test`; about a minute): a small two-seed sentiment
# sweep with --jobs 2, its whole process group killed at 3 random moments and resumed; every
# results file compared byte for byte with an uninterrupted run's (scripts/kill-check.sh;
# KILL_SEED picks the moments).
KILL_SETS = --set sft.steps=60 --set world.n_train=300 --set world.n_val=50 \
	--set world.n_train_prompts=20 --set world.n_eval_prompts=16 --set model.d_model=32 \
	--set model.n_layer=1 --set train.steps=40 --set eval.every=5 --set eval.samples_per_prompt=1 \
	--set ppo.iterations=12 --set ppo.eval_every=2 --set ppo_gt.iterations=12 \
	--set ppo_gt.eval_every=2 --set 'best_of_n.n=[1,4]' --set 'sweep.seeds=[0,1]'
kill-check: build
	scripts/kill-check.sh ./target/release/alignlab scenarios/sentiment.toml $(KILL_SETS)

# The GPU path, on a machine with CUDA: `alignlab bench --device cuda` and the quick scenario
# with `--device cuda`, their outputs and wall times in gpu-check/ (scripts/gpu-check.sh; a
# binary built elsewhere runs with this machine's torch 2.11.0 libraries).
gpu-check: build
	scripts/gpu-check.sh ./target/release/alignlab gpu-check

# alignlab against the plain PyTorch reference (baselines/reference), same shapes and threads.
# With TRL too when `make baselines` has installed it.
TRL_VENV := $(ALIGNLAB_CACHE)/trl-1.12.0
ROUNDS ?= 2
# Then the real sizes (GPT-2 small's DPO step and generation in fp32 and bf16 against TRL's,
# a Qwen2.5-0.5B-shaped DPO step, PPO with four GPT-2-small-shaped models; minutes).
bench-compare: build
	cd baselines/reference && PYTHONPATH="$$(dirname "$$(readlink -f ../../.libtorch)")" python3 -W ignore::UserWarning bench.py --alignlab ../../target/release/alignlab --threads 2 --rounds $(ROUNDS) $$([ -x "$(TRL_VENV)/bin/python" ] && echo --trl "$(TRL_VENV)/bin/python")
	python3 baselines/compare_real.py --alignlab target/release/alignlab --threads 2 $$([ -x "$(TRL_VENV)/bin/python" ] && echo --trl "$(TRL_VENV)/bin/python")

# TRL (pinned, baselines/trl/requirements.txt) in a venv that reuses the torch of `make setup`;
# not part of `make test`.
baselines: setup
	baselines/trl/setup.sh "$$(dirname "$$(readlink -f .libtorch)")" "$(TRL_VENV)"
	$(MAKE) hf-check

# A policy trained by a tiny sentiment run, exported with `alignlab export --hf` and loaded by
# transformers (AutoModelForCausalLM, PreTrainedTokenizerFast): logits within 1e-5, greedy
# continuations token for token, the tokenizer's ids of the prompts (baselines/hf/check.py);
# then every exported preference pair re-tokenised as TRL does gives alignlab's ids
# (baselines/hf/check_prefs.py); then the reward model, exported as a
# GPT2ForSequenceClassification, scores as alignlab's within 1e-5, and so does a PPO run's critic;
# then the dataset fixture's DPO
# policy, exported in its tokenizer's ids with the three specials added, gives the same logits.
HF_TINY := --set sft.steps=30 --set world.n_train=300 --set world.n_val=50 --set world.n_train_prompts=20 --set world.n_eval_prompts=16 --set model.d_model=32 --set model.n_layer=1 --set train.steps=6 --set reward.epochs=1 --set eval.every=3 --set ppo.iterations=2 --set sweep.seeds=[0] --set best_of_n.n=[1,4]
hf-check: build
	@d=$$(mktemp -d) && ./target/release/alignlab run scenarios/sentiment.toml --quiet --threads 2 --results $$d/results --runs $$d/runs $(HF_TINY) > /dev/null \
	&& ./target/release/alignlab export "$$(ls -d $$d/runs/sentiment/dpo-* | head -1)" --hf $$d/hf \
	&& "$(TRL_VENV)/bin/python" -W ignore baselines/hf/check.py $$d/hf \
	&& ./target/release/alignlab export-prefs "$$(ls -d $$d/runs/sentiment/prefs-* | head -1)" $$d/prefs.jsonl > /dev/null \
	&& "$(TRL_VENV)/bin/python" -W ignore baselines/hf/check_prefs.py $$d/hf $$d/prefs.jsonl \
	&& ./target/release/alignlab export "$$(ls -d $$d/runs/sentiment/reward-* | head -1)" --hf $$d/rm > /dev/null \
	&& "$(TRL_VENV)/bin/python" -W ignore baselines/hf/check.py $$d/rm \
	&& ./target/release/alignlab export "$$(ls -d $$d/runs/sentiment/ppo-*/critic | head -1)" --hf $$d/critic > /dev/null \
	&& "$(TRL_VENV)/bin/python" -W ignore baselines/hf/check.py $$d/critic \
	&& ./target/release/alignlab run tests/fixtures/data/dataset.toml --quiet --threads 2 --results $$d/results --runs $$d/runs > /dev/null \
	&& ./target/release/alignlab export "$$(ls -d $$d/runs/dataset/dpo-* | head -1)" --hf $$d/ds > /dev/null \
	&& "$(TRL_VENV)/bin/python" -W ignore baselines/hf/check.py $$d/ds; s=$$?; rm -rf $$d; exit $$s

# alignlab run --tensorboard on a tiny sentiment sweep; TensorBoard's own reader
# (EventAccumulator, in the TRL venv of `make baselines`) reads every row of metrics.csv and
# eval.csv back from the event files, step and float32 value equal (baselines/tensorboard/check.py).
tensorboard-check: build
	@d=$$(mktemp -d) && ./target/release/alignlab run scenarios/sentiment.toml --quiet --threads 2 --results $$d/results --runs $$d/runs --tensorboard $$d/tb $(HF_TINY) > /dev/null \
	&& "$(TRL_VENV)/bin/python" -W ignore baselines/tensorboard/check.py $$d/results/sentiment $$d/tb/sentiment; s=$$?; rm -rf $$d; exit $$s

clean-runs:
	rm -rf runs

# Tiny random GPT-2, Pythia, Llama 3 and Qwen2 checkpoints and a tiny tokenizer, with the logits,
# greedy continuations and token ids transformers and tokenizers give (scripts/fixtures.py, in
# the venv of `make baselines`); committed under tests/fixtures/, which tests/hf.rs reads. Not
# part of `make test`.
fixtures: baselines
	"$(TRL_VENV)/bin/python" -W ignore scripts/fixtures.py tests/fixtures

# TRL both ways (not part of `make test`; needs `make baselines`): a tiny sentiment run; its
# pi_SFT and preference pairs exported; TRL's DPOTrainer trains the exported pi_SFT on the
# exported pairs (baselines/trl/roundtrip.py); `alignlab eval --policy` measures TRL's policy
# with the world's exact gold and KL, beside pi_SFT; alignlab's own DPO of the run is printed
# below it for comparison (its last evaluation).
RT_TINY := --set train.lr=1e-4 --set train.warmup_steps=0 --set sft.steps=200 --set world.n_train=1000 --set world.n_val=100 --set world.n_train_prompts=100 --set world.n_eval_prompts=64 --set model.d_model=64 --set model.n_layer=2 --set train.steps=40 --set train.batch_size=16 --set reward.epochs=1 --set eval.every=20 --set ppo.iterations=2 --set sweep.seeds=[0] --set best_of_n.n=[1,4]
trl-roundtrip: build
	@d=$$(mktemp -d) && ./target/release/alignlab run scenarios/sentiment.toml --quiet --threads 2 --results $$d/results --runs $$d/runs $(RT_TINY) > /dev/null \
	&& ./target/release/alignlab export "$$(ls -d $$d/runs/sentiment/sft-* | head -1)" --hf $$d/sft > /dev/null \
	&& ./target/release/alignlab export-prefs "$$(ls -d $$d/runs/sentiment/prefs-* | head -1)" $$d/prefs.jsonl > /dev/null \
	&& "$(TRL_VENV)/bin/python" -W ignore baselines/trl/roundtrip.py $$d/sft $$d/prefs.jsonl $$d/trl --steps 40 --batch 16 --beta 0.1 --lr 1e-4 2>/dev/null | tail -1 \
	&& ./target/release/alignlab eval scenarios/sentiment.toml --policy $$d/trl --threads 2 --runs $$d/runs $(RT_TINY) | grep -E "^metric|^eval/(gold|kl|proxy|implicit_acc)," \
	&& echo "alignlab's own DPO (beta 0.1), last evaluation:" && grep -E "^dpo,beta=0.1,0,40,eval/(gold|kl)," $$d/results/sentiment/eval.csv; s=$$?; rm -rf $$d; exit $$s

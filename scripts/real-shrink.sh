#!/usr/bin/env bash
# The CPU shrink of scenarios/real-imdb.toml: the DPO paper's IMDb pipeline with a randomly
# initialised model of GPT-2-small's shapes (12 layers, 12 heads, width 768; the vocabulary of
# the fixture tokenizer) on fixture-sized data (tests/fixtures/real: 200 IMDb-style reviews, the
# tiny random RoBERTa classifier as gold), short runs of every method. It checks that the real
# scenario's whole pipeline runs at a real model width on this machine, and measures its wall
# time and peak memory; its numbers say nothing about IMDb.
#
# usage: scripts/real-shrink.sh [OUT]   (default /tmp/alignlab-real-shrink; binary from make build)
set -euo pipefail
out=${1:-/tmp/alignlab-real-shrink}
rm -rf "$out"
sets=(
  'model.init=""' model.n_layer=12 model.n_head=12 model.d_model=768 model.block_size=72
  world.max_rows=400 world.n_eval_prompts=32
  sft.steps=60 sft.batch_size=16 sft.eval_every=30 sft.warmup_steps=10 sft.lr=3e-4
  prefs.k=4 train.steps=40 train.batch_size=16 train.warmup_steps=5 train.lr=1e-5
  reward.batch_size=16 eval.every=20 eval.samples_per_prompt=2
  'dpo.beta=[0.1, 1.0]' 'unlikelihood.alpha=[1.0]'
  'ppo.target_kl=[3.0]' ppo.iterations=8 ppo.eval_every=4 ppo.rollout_batch=16 ppo.minibatch_size=8
  'ppo_gt.target_kl=[6.0]' ppo_gt.iterations=8 ppo_gt.eval_every=4 ppo_gt.rollout_batch=16 ppo_gt.minibatch_size=8
  'best_of_n.n=[1, 4, 16]' 'sweep.seeds=[0]'
)
args=()
for s in "${sets[@]}"; do args+=(--set "$s"); done
ALIGNLAB_DATA=tests/fixtures/real /usr/bin/time -v ${ALIGNLAB_BIN:-./target/release/alignlab} run scenarios/real-imdb.toml \
  --quiet --results "$out/results" --runs "$out/runs" "${args[@]}" 2> "$out.time" || { cat "$out.time"; exit 1; }
grep -E "Elapsed \(wall|Maximum resident" "$out.time"

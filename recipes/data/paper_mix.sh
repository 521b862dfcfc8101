#!/usr/bin/env bash
# The paper's training data, from its four public sources (docs/data_sources.md, docs/scale_out.md):
#   objective items   UltraMedical (TsinghuaC3I/UltraMedical) + FLAN (multiple-choice rows)
#   personalized      AlignX (JinaLeejnl/AlignX), its preference vector written as persona text
#   personas          PersonaHub (proj-persona/PersonaHub): the "unaligned" personas of objective items;
#                     half of the objective items get an "aligned" (helpful) persona instead, from the
#                     built-in phrasings (or a teacher LLM: `personadual data personas`)
#   traces            the teacher (`personadual data teach`) writes a general and a personalized trace per
#                     item and keeps what it verifies (<= 10k SFT examples in the paper)
#
# Writes (under $OUT, default data/):
#   raw/*.jsonl                  each source converted to Items (`personadual data load`)
#   paper_pool/{train,val}.jsonl SFT items without traces (sampled, personas attached, seeded)
#   paper_mix/{train,val}.jsonl  SFT items with teacher traces      -> recipes/qwen3-*/sft.yaml `data:`
#   paper_rl/{train,val}.jsonl   RL items, disjoint from the SFT ones -> recipes/qwen3-*/rl.yaml  `data:`
#
# Usage (from the repository root):
#   bash recipes/data/paper_mix.sh                      # from the hub (network, accepted licences)
#   SRC=path/to/files bash recipes/data/paper_mix.sh    # from local copies, as the sources ship them:
#       $SRC/ultramedical.json  $SRC/flan.jsonl  $SRC/alignx.jsonl  $SRC/personahub_persona.jsonl
#   DRY_RUN=1 bash recipes/data/paper_mix.sh            # print the commands only
#   SKIP_TEACH=1 ...                                     # stop before the teacher (steps 1-3 only)
# FLAN from the hub is very large: prefer SRC with a shard of Muennighoff/flan or Open-Orca/FLAN
# (.jsonl or .parquet; set FLAN_FILE to its name under $SRC).
set -euo pipefail

OUT=${OUT:-data}
SRC=${SRC:-}
SEED=${SEED:-0}
N_MED=${N_MED:-4000}        # UltraMedical items sampled for SFT (the teacher keeps the ones it verifies)
N_FLAN=${N_FLAN:-4000}      # FLAN items for SFT
N_ALIGNX=${N_ALIGNX:-4000}  # AlignX items for SFT
N_VAL=${N_VAL:-200}         # per source, for the SFT end-of-run check and val metrics
N_RL=${N_RL:-4000}          # per source, for DualGRPO (disjoint from SFT)
ALIGNED_SHARE=${ALIGNED_SHARE:-0.5}  # objective items marked for an aligned (helpful) persona
FILL_ALIGNED=${FILL_ALIGNED:-1}      # 1: built-in phrasings fill the marked SFT items; 0: leave them for a teacher
FLAN_FILE=${FLAN_FILE:-flan.jsonl}
PD=${PERSONADUAL:-personadual}
PY=${PYTHON:-python}
# Teacher options for `personadual data teach`, e.g. an OpenAI-compatible vLLM server of a large model:
#   TEACH_ARGS="--endpoint http://127.0.0.1:8000/v1 --model Qwen/Qwen3-235B-A22B-Instruct-2507"
TEACH_ARGS=${TEACH_ARGS:-}
RAW=$OUT/raw

run() {  # print, then run unless DRY_RUN
    echo "+ $*"
    [ -n "${DRY_RUN:-}" ] || "$@"
}

source_args() {  # $1 = local file name under $SRC, $2 = hub id
    if [ -n "$SRC" ]; then echo "--in $SRC/$1"; else echo "--hf-name $2"; fi
}

[ -n "${DRY_RUN:-}" ] || mkdir -p "$RAW"

# 1. Personas (PersonaHub "persona" config): written as a local file, which `data load --personas` reads.
if [ -n "$SRC" ]; then
    PERSONAS=$SRC/personahub_persona.jsonl
else
    PERSONAS=$RAW/personahub_persona.jsonl
    run "$PY" -c "import json, sys; from personadual.data.loaders import load_personas
ps = load_personas(hf_name='proj-persona/PersonaHub', limit=200000)
open(sys.argv[1], 'w').writelines(json.dumps({'persona': p}) + '\n' for p in ps)" "$PERSONAS"
fi

# 2. Sources -> Items. UltraMedical is sorted by subset and `data load` has no --shuffle, so it is read
#    whole and sampled in step 3; FLAN and AlignX are read up to a generous limit.
# shellcheck disable=SC2046  # source_args is two words on purpose
run $PD data load ultramedical $(source_args ultramedical.json TsinghuaC3I/UltraMedical) --seed "$SEED" \
    --out "$RAW/ultramedical.jsonl"
# shellcheck disable=SC2046
run $PD data load flan $(source_args "$FLAN_FILE" Muennighoff/flan) --seed "$SEED" \
    --limit $((4 * (N_FLAN + N_VAL + N_RL))) --out "$RAW/flan.jsonl"
# shellcheck disable=SC2046
run $PD data load alignx $(source_args alignx.jsonl JinaLeejnl/AlignX) --seed "$SEED" \
    --limit $((2 * (N_ALIGNX + N_VAL + N_RL))) --out "$RAW/alignx.jsonl"

# 3. Sample disjoint SFT / val / RL sets per source and attach personas: PersonaHub ("irrelevant") for
#    objective items, or the "aligned" mark (ALIGNED_SHARE of them). In the SFT pool the built-in helpful
#    phrasings fill the marked items (`fill_aligned_slots`: condition "helpful", pointing to the gold
#    option; held-out phrasings for val) unless FILL_ALIGNED=0. The Python API is used here because
#    `data load` exposes neither shuffling nor aligned_share.
run "$PY" - "$RAW" "$PERSONAS" "$OUT" "$SEED" "$N_MED" "$N_FLAN" "$N_ALIGNX" "$N_VAL" "$N_RL" "$ALIGNED_SHARE" \
    "$FILL_ALIGNED" <<'EOF'
import random, sys
from pathlib import Path
from personadual.data.conditions import fill_aligned_slots
from personadual.data.loaders import attach_personas, load_personas
from personadual.data.schema import read_items, write_items

raw, personas, out = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
seed, n_med, n_flan, n_alignx, n_val, n_rl = (int(x) for x in sys.argv[4:10])
aligned, fill_aligned = float(sys.argv[10]), sys.argv[11] != "0"
personas = load_personas(personas)
splits = {"pool_train": [], "pool_val": [], "rl_train": [], "rl_val": []}
for name, n in (("ultramedical", n_med), ("flan", n_flan), ("alignx", n_alignx)):
    items = read_items(raw / f"{name}.jsonl")
    random.Random(f"{seed}-{name}").shuffle(items)
    items = attach_personas(items, personas, seed=seed, aligned_share=aligned)  # personalized items pass through
    at, taken = 0, []
    for split, k in (("pool_train", n), ("pool_val", n_val), ("rl_train", n_rl), ("rl_val", n_val)):
        part = items[at : at + k]
        splits[split] += part
        taken.append(f"{split} {len(part)}")
        at += k
    print(f"{name}: {len(items)} items -> {', '.join(taken)}")
for split, items in splits.items():
    pool, part = split.startswith("pool"), split.split("_")[1]
    if pool and fill_aligned:  # SFT items marked for an aligned persona get a built-in helpful one
        items = fill_aligned_slots(items, seed=seed, split=part)
    folder = out / ("paper_pool" if pool else "paper_rl")
    folder.mkdir(parents=True, exist_ok=True)
    write_items(folder / f"{part}.jsonl", items)
EOF

# 4. Teacher traces (`personadual data teach`), SFT pool only: RL needs gold answers, not traces.
#    The aligned personas (meta.persona_slot) were filled from the built-in phrasings in step 3; to have
#    a teacher LLM write them instead, run step 3 with FILL_ALIGNED=0 (the marked items stay "none"),
#    then `personadual data personas --endpoint URL --model ID --in FILE --out FILE` on the pool before
#    this step (docs/scale_out.md).
if [ -z "${DRY_RUN:-}" ] && { [ -n "${SKIP_TEACH:-}" ] || ! $PD data teach --help >/dev/null 2>&1; }; then
    echo "SKIP_TEACH is set, or \`personadual data teach\` is not in this install: stopping after step 3."
    echo "  $OUT/paper_pool and $OUT/paper_rl are ready; rerun without SKIP_TEACH to write the traces."
    exit 0
fi
for split in train val; do
    # shellcheck disable=SC2086  # TEACH_ARGS is a list of options
    run $PD data teach --in "$OUT/paper_pool/$split.jsonl" --out "$OUT/paper_mix/$split.jsonl" $TEACH_ARGS
done

# 5. Every file the recipes read, checked against the schema.
run $PD data validate "$OUT"/paper_mix/*.jsonl "$OUT"/paper_rl/*.jsonl

#!/bin/bash
# A pilot of experiment=table_cpu's `none` arm: seeds 0..7 as two multiruns side by side, with
# extra overrides (how the preset was chosen, ablations/README.md "Choosing the preset").
#
#   bash ablations/table/pilot.sh DATA SWEEP/NAME [OVERRIDE ...]
#   python ablations/table/pilot.py SWEEP/NAME
#
# e.g. the 6-epoch pilots: `trainer.max_epochs=6 data.train_eval_images=0 model.positive_bias=0.1`.
set -euo pipefail
data=$(realpath "$1") out=$(realpath -m "$2"); shift 2
for seeds in ${SEEDS:-0,2,4,6 1,3,5,7}; do
  OMP_NUM_THREADS=1 nice -n 10 python -m alexnet_lit.train -m experiment=table_cpu "data.root=$data" \
      +ablation=none "seed=$seeds" "$@" "hydra.sweep.dir=$out/${seeds//,/}" > "$out.${seeds//,/}.log" 2>&1 &
done
wait

#!/bin/bash
# The CPU table: every file of conf/ablation/ x seeds 0..9 of experiment=table_cpu, on two
# workers, kept job by job so that it can span machines (ablations/README.md).
#
#   bash ablations/table/run.sh DATA SWEEP [WORKERS] [FIRST-LAST]
#   python -m alexnet_lit.report ablations/table/runs --seeds 0-9 --bound 2 --out ablations/table/stage1   (stage 1; stage 2: README.md)
#
# DATA: a folder made by
#   python -m alexnet_lit.prepare IMAGENETTE DATA --image-size 76 --train-per-class 500 --held-out-to-val
# SWEEP: where the jobs train (checkpoints; not committed). A job whose results are kept in
# ablations/table/runs/seed<S>/<ablation>/ (results.json and .hydra/, committed) is done; one
# left unfinished in SWEEP resumes from its last.ckpt; a worker holds a job's lock
# (SWEEP/logs/<job>.lock, flock: released by the kernel when the process dies) while it trains
# it, so workers, and the same command started twice, never share one; a job that fails is
# logged and left for the next invocation. Jobs go seed by seed, so complete seeds (every arm
# beside `none`) come first.
# FIRST-LAST: the seeds (default 0-9, stage 1; 10-19 is stage 2, declared in README.md before it ran).
# Fixed before the sweep: the seeds, B = 2 points, the collapse rule of alexnet_lit/results.py.
set -euo pipefail
data=$(realpath "$1") sweep=$(realpath -m "$2") workers=${3:-2} seeds=${4:-0-9}
[[ $seeds =~ ^([0-9]+)-([0-9]+)$ ]] || { echo "run.sh: seeds must be FIRST-LAST (e.g. 10-19), not '$seeds'" >&2; exit 2; }
first=${BASH_REMATCH[1]} last=${BASH_REMATCH[2]}
here=$(cd "$(dirname "$0")" && pwd)
kept=$here/runs
ablations=$(cd "$here/../../conf/ablation" && ls *.yaml | sed 's/\.yaml$//')
mkdir -p "$sweep/logs" "$kept" && touch "$sweep/logs/started.$$"

worker() {
  for seed in $(seq "$first" "$last"); do
    for ablation in $ablations; do
      job=seed$seed/$ablation log=$sweep/logs/seed$seed-$ablation
      [ -f "$kept/$job/results.json" ] && continue
      [ "$log.failed" -nt "$sweep/logs/started.$$" ] 2>/dev/null && continue  # failed in this invocation
      echo "$(date -u +%FT%TZ) worker $1: $job"
      status=0
      OMP_NUM_THREADS=1 nice -n 10 flock -n -E 75 "$log.lock" python -m alexnet_lit.train experiment=table_cpu \
          "data.root=$data" "+ablation=$ablation" "seed=$seed" "hydra.run.dir=$sweep/$job" > "$log.$$-$1" 2>&1 || status=$?
      if [ $status = 0 ]; then
        mkdir -p "$kept/$job/.hydra"
        cp "$sweep/$job/results.json" "$kept/$job/"
        cp "$sweep/$job/.hydra/config.yaml" "$sweep/$job/.hydra/overrides.yaml" "$kept/$job/.hydra/"
        # kept without this machine's folders: DATA and SWEEP stand for them
        sed -i "s#$data#DATA#g; s#$sweep/#SWEEP/#g" "$kept/$job/results.json" "$kept/$job/.hydra/"*.yaml
      elif [ $status = 75 ]; then
        echo "$(date -u +%FT%TZ) worker $1: $job is another worker's"
      else
        touch "$log.failed"
        echo "$(date -u +%FT%TZ) worker $1: $job failed (exit $status), see $log.$$-$1"
      fi
    done
  done
}

for w in $(seq 1 "$workers"); do worker "$w" & done
wait

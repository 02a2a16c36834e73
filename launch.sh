#!/usr/bin/env bash
# Launch a bnnlab training run in a fresh, dated workdir, logging to <workdir>/log.txt.
#
#   ./launch.sh experiments/simaN_r18.py[:arg] [--distributed] [extra flags...]
#
# Extra flags go to `python -m bnnlab.main` unchanged, e.g. --config.lr=0.05 or
# --config.data_dir=/data/tfds. Pass --workdir=DIR to resume an earlier run instead (the last
# --workdir wins). --distributed calls jax.distributed.initialize() in every process; run the
# same command on every host (give every process the same --workdir). Environment:
#   BNNLAB_WORKDIR_ROOT  where dated workdirs go (default: workdirs)
#   PYTHON               interpreter (default: python)
#   JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID
#                        with --distributed: host:port of process 0, the process count and
#                        this process's index (all three, e.g. several processes on one
#                        machine or a cluster JAX does not detect); unset, JAX detects the
#                        cluster (Cloud TPU, SLURM, Open MPI, Kubernetes)
set -euo pipefail

if [[ $# -lt 1 || "$1" == -* ]]; then
  sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
config="$1"
shift

extra=()
for flag in "$@"; do
  case "$flag" in
    --distributed) extra+=(--config.distributed=True) ;;
    *) extra+=("$flag") ;;
  esac
done

name="$(basename "${config%%:*}" .py)"
arg=""
[[ "$config" == *:* ]] && arg="-${config#*:}"
workdir="${BNNLAB_WORKDIR_ROOT:-workdirs}/$(date +%Y%m%d-%H%M%S)-${name}${arg//[^A-Za-z0-9.=_-]/_}"
mkdir -p "$workdir"

export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
echo "workdir: $workdir" >&2
"${PYTHON:-python}" -m bnnlab.main --config="$config" --workdir="$workdir" "${extra[@]}" \
  2>&1 | tee -a "$workdir/log.txt"
exit "${PIPESTATUS[0]}"

#!/usr/bin/env bash
# One unattended GPU session (issue 19): every GPU measurement (bench/gpu_check.sh), then the synthetic
# model's GPU recipe (python -m stvg_ros.synthetic.train --recipe gpu), results and model packed into OUT.
#
#   bench/gpu_all.sh OUT [--check-seconds 240] [--train-minutes 3] [--check-models a,b] [--dry-run]
#
# Time: gpu_check <= --check-seconds (+20 s hard stop), training <= --train-minutes (its own budget checks
# every step, evaluation and checkpoint; +20 s hard stop), packing seconds: <= 8 minutes with the defaults,
# inside a 10-minute command with margin.  gpu_check writes into OUT after every model (gpu_check.json/.md, its
# log gpu_check.log), so a command cut short still returns what finished.
# OUT ends up with at most 7 files, each under 16 MiB ($OUT-style): summary.md, gpu_check.json, gpu_check.md,
# synthetic_training.json, model.tar.gz (split into model.tar.gz.part-* if it would exceed 15 MiB),
# logs.tar.gz.  Needs only the core: torch, transformers, numpy, OpenCV, Pillow, PyYAML, tqdm, safetensors,
# tokenizers (no ROS, no rosbags).  --dry-run: the same steps on CPU with tiny models, 2-4 minutes; it fails
# when gpu_check ran short (a case skipped for time, a model with nothing beyond the floor) or training
# made no step.
set -uo pipefail
usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
[ $# -ge 1 ] || usage
case "$1" in -h|--help) usage ;; esac
out="$1"; shift
check_s=""; train_min=""; dry=""; check_models=""
while [ $# -gt 0 ]; do
  case "$1" in
    --check-seconds) check_s="$2"; shift 2 ;;
    --train-minutes) train_min="$2"; shift 2 ;;
    --check-models) check_models="$2"; shift 2 ;;
    --dry-run) dry="--dry-run"; shift ;;
    *) echo "gpu_all.sh: unknown option $1" >&2; usage ;;
  esac
done
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
mkdir -p "$out"
work="$(mktemp -d "${TMPDIR:-/tmp}/stvg-gpu-all.XXXXXX")"
mkdir -p "$work/logs"
t0=$(date +%s)
stamp() { echo "[gpu_all $(( $(date +%s) - t0 )) s] $*"; }

# 0. what this machine has (the core's imports; a missing one is reported, the steps still run)
"$py" - > "$work/logs/preflight.txt" 2>&1 <<'PY'
import importlib, platform, sys
print("python", platform.python_version(), sys.executable)
for name in ("torch", "transformers", "numpy", "cv2", "PIL", "yaml", "tqdm", "safetensors", "tokenizers"):
    try:
        m = importlib.import_module(name)
        print(f"{name} {getattr(m, '__version__', '?')}")
    except Exception as e:  # noqa: BLE001
        print(f"{name} MISSING ({type(e).__name__}: {e})")
import torch
print("cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
PY
cat "$work/logs/preflight.txt"

# 1. every GPU measurement, written into OUT as each model finishes (its log too, moved into logs.tar.gz at the end)
rm -f "$out"/gpu_check.json "$out"/gpu_check.md "$out"/gpu_check.log
args=(--out "$out")
[ -n "$check_s" ] && args+=(--budget "$check_s")
[ -n "$check_models" ] && args+=(--models "$check_models")
[ -n "$dry" ] && args+=(--dry-run)
hard=$(( ${check_s:-$([ -n "$dry" ] && echo 150 || echo 240)} + 20 ))
stamp "gpu_check (hard stop ${hard} s)"
timeout -k 5 "$hard" bash bench/gpu_check.sh "${args[@]}" > "$out/gpu_check.log" 2>&1
check_rc=$?
tail -n 40 "$out/gpu_check.log"
mv "$out/gpu_check.log" "$work/logs/gpu_check.log"
rm -f "$out"/.gpu_check-*.json
t1=$(date +%s)

# 2. the synthetic model's GPU recipe
targs=(--recipe gpu --device cuda --out "$work/model")
[ -n "$train_min" ] && targs+=(--max-minutes "$train_min")
[ -n "$dry" ] && targs+=(--dry-run)
hard=$(python3 -c "print(int(60 * float('${train_min:-$([ -n "$dry" ] && echo 0.35 || echo 3)}') + 20))")
[ -z "$train_min" ] && [ -z "$dry" ] && targs+=(--max-minutes 3)
stamp "training (hard stop ${hard} s)"
timeout -k 5 "$hard" "$py" -m stvg_ros.synthetic.train "${targs[@]}" > "$work/logs/train.log" 2>&1
train_rc=$?
grep -E "^step |^-> rung" "$work/logs/train.log" | tail -n 30
# a run that trained nothing did not check anything: fail it
if [ "$train_rc" -eq 0 ] && ! "$py" -c "import json,sys; sys.exit(json.load(open(sys.argv[1]))['steps'] < 1)" \
    "$work/model/synthetic_training.json" 2>/dev/null; then
  echo "gpu_all: training made no step (or wrote no synthetic_training.json)"; train_rc=1
fi
t2=$(date +%s)

# 3. pack into OUT: at most 7 files, each under 16 MiB
stamp "packing into $out"
rm -f "$out"/synthetic_training.json "$out"/model.tar.gz* "$out"/logs.tar.gz "$out"/summary.md
[ -f "$work/model/synthetic_training.json" ] && cp "$work/model/synthetic_training.json" "$out/"
if [ -d "$work/model" ] && [ -n "$(ls -A "$work/model")" ]; then
  tar -czf "$work/model.tar.gz" -C "$work" model
  if [ "$(stat -c %s "$work/model.tar.gz")" -gt $(( 15 * 1024 * 1024 )) ]; then
    split -b 15m -d "$work/model.tar.gz" "$out/model.tar.gz.part-"   # cat model.tar.gz.part-* | tar -xz
  else
    cp "$work/model.tar.gz" "$out/"
  fi
fi
tar -czf "$out/logs.tar.gz" -C "$work" logs
"$py" - "$out" "$check_rc" "$train_rc" "$(( t1 - t0 ))" "$(( t2 - t1 ))" "$(( $(date +%s) - t0 ))" "${dry:-}" > "$out/summary.md" <<'PY'
import json, sys
from pathlib import Path
out, check_rc, train_rc, check_s, train_s, total_s, dry = sys.argv[1:8]
out = Path(out)
lines = [f"# GPU session summary{' (DRY RUN: CPU, tiny models; the figures mean nothing)' if dry else ''}", "",
         f"gpu_check: exit {check_rc}, {check_s} s; training: exit {train_rc}, {train_s} s; total {total_s} s", ""]
md = out / "gpu_check.md"
lines += [md.read_text() if md.is_file() else "gpu_check wrote no table (see logs.tar.gz: logs/gpu_check.log)", ""]
tj = out / "synthetic_training.json"
if tj.is_file():
    s = json.loads(tj.read_text())
    lines.append(f"Synthetic model ({s.get('recipe')} recipe on {s.get('gpu', s.get('device'))}): {s['params'] / 1e6:.2f} M "
                 f"parameters, {s['steps']} steps, {s.get('clips_seen', 0)} clips in {s.get('train_minutes')} min of "
                 f"training, {s.get('wall_minutes')} min in all (limit {s.get('max_minutes')}), reached rung "
                 f"{s['reached_rung']}, stopped by {s.get('stopped_by')}.")
    lines += ["", "| split | " + " | ".join(s["rungs"]) + " |", "|---" * (len(s["rungs"]) + 1) + "|"]
    for split, res in s["final"].items():
        lines.append(f"| {split} | " + " | ".join(f"{100 * res[r]['acc']:.1f}" for r in s["rungs"]) + " |")
    lines += ["", "Unpack: `cat model.tar.gz* | tar -xz` (a folder model/ that Grounder.from_pretrained loads); "
              "compare with the shipped model on validation: "
              "`python -m stvg_ros.synthetic.bench --model model --split val --count 200`."]
else:
    lines.append("training wrote no model (see logs.tar.gz: logs/train.log)")
files = sorted(p for p in out.iterdir() if p.is_file() and p.name != "summary.md")
lines += ["", "Files: " + ", ".join(f"{p.name} ({p.stat().st_size / 2**20:.2f} MiB)" for p in files)
          + ", summary.md"]
print("\n".join(lines))
PY
n=$(find "$out" -maxdepth 1 -type f | wc -l)
big=$(find "$out" -maxdepth 1 -type f -size +16M | wc -l)
cat "$out/summary.md" | tail -n 25
stamp "done: $n files in $out, $big over 16 MiB; gpu_check exit $check_rc, training exit $train_rc"
rm -rf "$work"
[ "$n" -le 8 ] && [ "$big" -eq 0 ] && [ "$check_rc" -eq 0 ] && [ "$train_rc" -eq 0 ]

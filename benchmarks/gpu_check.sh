#!/usr/bin/env bash
# One GPU check, run from the repository root on a machine with a GPU:
#   1. benchmarks/speed.py under JAX and PyTorch (and TensorFlow if it is
#      installed): ResNet-50 classifier + ResNet-18 auxiliary network, random
#      weights (no download), 224x224, batches of 32; images/s of the bare
#      classifier's forward pass, `explain` and a training step, and ratios;
#      JAX once more with 8 batches per compiled call (`steps_per_execution`);
#   2. benchmarks/profile_explain.py under JAX: where `explain`'s time goes
#      (public calls against the compiled parts on the device);
#   3. the three notebooks' offline mode as plain Python, where TensorFlow
#      (which their offline path needs: tf.data, mocked tfds) is installed.
# It writes $OUT/gpu_check.md (the card's name from nvidia-smi, the tables,
# each notebook's outcome) and $OUT/*.log, and prints the Markdown.
#
# Without network: wheels in .whl/ (keras, keras-hub and small pure-Python
# packages the machine lacks) are installed with --no-deps into /tmp/site
# first, and the package runs from this tree (PYTHONPATH).
#
# Settings (environment): GPU_CHECK_TINY=1 for a quick run on a CPU (batches
# of 2 at 64x64); GPU_CHECK_BACKENDS (default "jax torch", plus "tensorflow"
# where it is installed); GPU_CHECK_LIMIT seconds per step (default 240) and
# GPU_CHECK_TOTAL seconds for everything (default 400): a step that would
# start with under a minute left is skipped, and says so.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu_check_out}
mkdir -p "$OUT"
PYTHON=${PYTHON:-python3}
LIMIT=${GPU_CHECK_LIMIT:-240}
TOTAL=${GPU_CHECK_TOTAL:-400}
START=$(date +%s)
REPORT="$OUT/gpu_check.md"

budget() {  # seconds the next step may run, or nothing under a minute left
  local left=$((TOTAL - ($(date +%s) - START)))
  [ "$left" -ge 60 ] && echo $((left < LIMIT ? left : LIMIT))
}

if ls .whl/*.whl >/dev/null 2>&1 && [ ! -d /tmp/site/keras ]; then
  "$PYTHON" -m pip install -q --no-deps --no-index --target /tmp/site .whl/*.whl \
    >"$OUT/pip.log" 2>&1 || echo "pip install of .whl/ failed: see $OUT/pip.log"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}:/tmp/site"
# Each backend runs alone in its own process, with its default GPU memory
# settings (notebook 02 sets its own, as it shares the GPU between them).
export MPLBACKEND=Agg

has() { "$PYTHON" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$1') is None)" 2>/dev/null; }

BACKENDS=${GPU_CHECK_BACKENDS:-"jax torch"}
if [ -z "${GPU_CHECK_BACKENDS:-}" ] && has tensorflow; then
  BACKENDS="$BACKENDS tensorflow"
fi
if [ "${GPU_CHECK_TINY:-0}" = 1 ]; then
  SIZE=(--batch-size 2 --image-size 64 --batches 2 --warmup 1 --repeats 1)
else
  SIZE=(--batch-size 32 --image-size 224 --batches 8 --warmup 2 --repeats 3)
fi

{
  echo "# GPU check ($(date -u +%Y-%m-%dT%H:%MZ))"
  echo
  echo "Card: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo 'none (nvidia-smi failed)')"
  echo
  echo "Python $("$PYTHON" -c 'import platform; print(platform.python_version())'); $("$PYTHON" -c '
import importlib.metadata as m
names = ("keras", "keras-hub", "jax", "torch", "tensorflow")
def version(name):
    try:
        return m.version(name)
    except m.PackageNotFoundError:
        return "-"
print(", ".join(f"{n} {version(n)}" for n in names))' 2>&1)"
  echo
  echo "\`benchmarks/speed.py ${SIZE[*]}\`: ResNet-50 + ResNet-18 (random weights)."
  echo
} >"$REPORT"

speed() {  # speed LABEL ARGS...: one speed.py run; its rows join rows.md
  local label=$1
  shift
  local table="$OUT/speed_$label.md" limit
  if ! limit=$(budget); then
    echo "| $label | skipped: under a minute of GPU_CHECK_TOTAL left |" >>"$OUT/rows.md"
    return
  fi
  timeout "$limit" "$PYTHON" benchmarks/speed.py "${SIZE[@]}" "$@" --output "$table" \
    >"$OUT/speed_$label.log" 2>&1
  local status=$?
  if [ -s "$table" ]; then
    [ -s "$OUT/header.md" ] || head -n 2 "$table" >"$OUT/header.md"
    tail -n +3 "$table" | grep '^|' >>"$OUT/rows.md"
  else
    echo "| $label | failed (exit $status): $(tail -n 1 "$OUT/speed_$label.log") |" >>"$OUT/rows.md"
  fi
}

profile() {  # profile_explain.py under JAX, its table into profile.md
  local limit
  if ! limit=$(budget); then
    echo "profile_explain.py: skipped: under a minute of GPU_CHECK_TOTAL left" >"$OUT/profile.md"
    return
  fi
  KERAS_BACKEND=jax timeout "$limit" "$PYTHON" benchmarks/profile_explain.py \
    --batch-size "${SIZE[1]}" --image-size "${SIZE[3]}" --batches "${SIZE[5]}" --repeats "${SIZE[9]}" \
    --output "$OUT/profile.md" >"$OUT/profile.log" 2>&1 ||
    echo "profile_explain.py failed (exit $?): $(tail -n 1 "$OUT/profile.log")" >"$OUT/profile.md"
}

rm -f "$OUT/rows.md" "$OUT/header.md"
# What was never measured on a GPU comes first, in case the time runs out.
for backend in $BACKENDS; do
  speed "$backend" --backends "$backend"
  [ "$backend" = jax ] && profile
done
if [[ " $BACKENDS " == *" jax "* ]]; then
  speed jax_steps8 --backends jax --steps-per-execution 8
fi
cat "$OUT/header.md" "$OUT/rows.md" >>"$REPORT" 2>/dev/null
echo >>"$REPORT"
echo "Targets: explain / classifier >= 0.6, train / classifier >= 0.25." >>"$REPORT"
echo >>"$REPORT"
if [ -s "$OUT/profile.md" ]; then
  cat "$OUT/profile.md" >>"$REPORT"
  echo >>"$REPORT"
fi

echo "## Notebooks, offline mode, as plain Python" >>"$REPORT"
echo >>"$REPORT"
for notebook in notebooks/*.ipynb; do
  name=$(basename "$notebook" .ipynb)
  if ! has tensorflow || ! has tensorflow_datasets; then
    echo "- $name: not run: needs tensorflow" >>"$REPORT"
    continue
  fi
  script="$OUT/$name.py"
  "$PYTHON" - "$notebook" "$script" <<'EOF'
import json, re, sys

cells = json.load(open(sys.argv[1]))["cells"]
lines = []
for cell in cells:
    if cell["cell_type"] != "code":
        continue
    source = "".join(cell["source"])
    if "parameters" in cell.get("metadata", {}).get("tags", []):
        source = source.replace("OFFLINE = False", "OFFLINE = True")
    # IPython magics and shell lines: `pass`, so that their block stays valid.
    source = re.sub(r"(?m)^(\s*)[%!].*$", r"\1pass", source)
    lines.append(source)
open(sys.argv[2], "w").write("\n\n".join(lines) + "\n")
EOF
  if ! limit=$(budget); then
    echo "- $name: skipped: under a minute of GPU_CHECK_TOTAL left" >>"$REPORT"
    continue
  fi
  work=$(mktemp -d)
  start=$(date +%s)
  (cd "$work" && timeout "$limit" "$PYTHON" "$script") >"$OUT/$name.log" 2>&1
  status=$?
  seconds=$(($(date +%s) - start))
  if [ $status = 0 ]; then
    echo "- $name: passed (${seconds} s)" >>"$REPORT"
  else
    echo "- $name: FAILED (exit $status, ${seconds} s): $(tail -n 1 "$OUT/$name.log")" >>"$REPORT"
  fi
  rm -rf "$work"
done
cat "$REPORT"

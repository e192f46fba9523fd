"""keras_ptame's metrics against pytorch-grad-cam's and Quantus's, one table.

Runs in `.venv-agreement` (`make agreement-env`) on the PyTorch backend, the
one where a Keras model is a `torch.nn.Module` the other libraries can call:

    KERAS_BACKEND=torch .venv-agreement/bin/python benchmarks/agreement/run.py \
        --output benchmarks/results/agreement

Writes `agreement.md` (the table and its setting) into `--output` and prints
it; exits 1 if a quantity expected to agree does not.
"""

import argparse
import pathlib
import sys
import time
from importlib import metadata

import agreement_common as common
import keras


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=pathlib.Path, required=True)
    parser.add_argument("--count", type=int, default=common.COUNT)
    args = parser.parse_args(argv)
    if keras.backend.backend() != "torch":
        parser.error(
            "run with KERAS_BACKEND=torch: the other libraries call torch modules"
        )
    start = time.perf_counter()
    inputs = common.make_inputs(args.count)
    rows = common.collect_rows(inputs)
    seconds = time.perf_counter() - start
    versions = ", ".join(
        f"{name} {metadata.version(name)}"
        for name in ("keras-ptame", "grad-cam", "quantus", "torch", "keras")
    )
    setting = (
        f"{args.count} synthetic shapes of {common.IMAGE_SIZE}×{common.IMAGE_SIZE} "
        f"(`make_shapes`, seed 1), the demo's CNN (seeded random convolutions, "
        "a ridge-regression head fitted on 400 other shapes), "
        "gradient maps (`GradientSaliency`) unless a row says otherwise, each "
        f"image explained for the classifier's prediction; {versions}; "
        f"Keras backend torch; {seconds:.1f} s."
    )
    table = common.markdown(rows)
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "agreement.md").write_text(f"{setting}\n\n{table}", encoding="utf-8")
    print(setting, "", table, sep="\n")
    failed = [row.key for row in rows if row.tolerance is not None and not row.agrees]
    if failed:
        print(f"expected to agree but did not: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

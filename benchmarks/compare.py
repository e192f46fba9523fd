"""P-TAME against RISE, Grad-CAM, gradient saliency, random and centre maps.

On the synthetic shapes with known object masks (`keras_ptame.datasets`),
with the demo's classifier and auxiliary network (`keras_ptame.demo`), it
trains the classifier, the auxiliary network and the P-TAME explainer, then
scores every method on held-out images with `keras_ptame.evaluate`: AD/IC,
ROAD, pointing game, mass inside and seconds per explanation.

```
KERAS_BACKEND=jax python benchmarks/compare.py --output benchmarks/results
```

Writes `evaluation.md` and `evaluation.csv` (the table), `settings.json`
and the trained `classifier.keras`, `auxiliary.keras` and `ptame.keras`
(reused by `--reuse`, which skips training).
"""

import argparse
import json
import sys
import time

import numpy as np
from common import (
    QUICK,
    SETTINGS,
    demo_config,
    finish,
    make_config,
    make_explainers,
    train_models,
)


def run(output="benchmarks/results", verbose=2, log=print, **settings):
    """Trains, explains and scores; returns the `EvaluationTable`."""
    from keras_ptame.evaluation import evaluate

    config = make_config(**settings)
    started = time.perf_counter()
    classifier, explainer, timings = train_models(config, output, verbose, log)
    images, labels, masks = demo_config(config).draw_shapes(held_out=True)
    logits = classifier.predict(images, batch_size=128, verbose=0)
    accuracy = float(np.mean(np.argmax(logits, axis=-1) == labels))
    log(f"Classifier accuracy on {len(images)} held-out images: {accuracy:.3f}")
    clock = time.perf_counter()
    log("Explaining and scoring...")
    table = evaluate(
        make_explainers(classifier, explainer, config),
        classifier,
        images,
        masks=masks,
        imputation=config["imputation"],
        verbose=1 if verbose == 1 else 0,
        seed=config["seed"],
    )
    timings["evaluation"] = time.perf_counter() - clock
    timings["total"] = time.perf_counter() - started
    summary = finish(table, config, accuracy, timings, output)
    log(table.to_markdown())
    log(json.dumps(summary["timings_s"]))
    return table


def main(argv=None):
    from keras_ptame.metrics.imputation import IMPUTATIONS

    parser = argparse.ArgumentParser(
        prog="python benchmarks/compare.py",
        description="P-TAME against baselines on synthetic shapes with known masks.",
    )
    parser.add_argument("--output", default="benchmarks/results")
    parser.add_argument("--test-count", type=int, default=SETTINGS["test_count"])
    parser.add_argument("--train-count", type=int, default=None)
    parser.add_argument("--rise-masks", type=int, default=SETTINGS["rise_masks"])
    parser.add_argument("--imputation", choices=IMPUTATIONS, default="linear")
    parser.add_argument("--seed", type=int, default=SETTINGS["seed"])
    parser.add_argument("--reuse", action="store_true", help="load trained models")
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes to check the pipeline"
    )
    args = parser.parse_args(argv)
    settings = {
        "test_count": args.test_count,
        "rise_masks": args.rise_masks,
        "imputation": args.imputation,
        "seed": args.seed,
        "reuse": args.reuse,
    }
    if args.train_count is not None:
        settings["train_count"] = args.train_count
    if args.quick:
        settings.update(QUICK)
    run(args.output, verbose=2, log=lambda *a: print(*a, flush=True), **settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())

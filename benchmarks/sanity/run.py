"""Sanity checks for saliency maps (Adebayo et al. 2018) on the demo's setting.

On the synthetic shapes (`keras_ptame.datasets`), it trains the demo's
classifier and auxiliary network with the demo's recipe (fewer images than
the demo: `SETTINGS`), then runs, for P-TAME, Grad-CAM (the classifier's last
convolution) and RISE (500 masks):

- the cascading model randomisation check
  (`keras_ptame.metrics.cascading_randomization`): the classifier's weighted
  layers re-initialised from the top, one more at each step, a new P-TAME
  explainer trained on each step's classifier with the demo's recipe (on
  1,000 images for 2 epochs, the demo's 5,000 for 3 being too slow for ten
  trainings); the auxiliary network stays the trained one;
- the data randomisation check (`keras_ptame.metrics.data_randomization`):
  the same architecture trained on 500 of the classifier's images with
  their labels permuted, long enough to fit them (its training accuracy is
  reported).

With `--auxiliary-variants` (about two minutes more) it also trains P-TAME
with two other auxiliary networks, one trained on the random-label
classifier's images and permuted labels and one untrained, for the
true-label classifier, the random-label one and the cascade's last step
(`auxiliary_variants`): whether the trained auxiliary network is why
P-TAME's maps stay put.

With `--decoder-seeds` (about a minute more) it also trains P-TAME with
another initialisation of the decoder, all else equal, for the true-label and
the random-label classifiers (`decoder_seeds`): the maps' agreement for the
same classifier (a noise floor) and across the data randomisation with a
different initialisation on each side, how far each decoder moved in training
and its loss terms: whether the shared initialisation is why P-TAME fails data
randomisation.

Each compares the maps of 64 held-out images with the trained classifier's
(the same class explained: its prediction) by Spearman rank correlation and
SSIM. For P-TAME it also reports the shares of maps flagged flat (returned
as zeros, whose rank correlation with anything is 0) and misranked, and the
rank correlation over the maps that are not flat. Under JAX the run shares
compilations through a compilation cache in a temporary folder (the steps'
P-TAME trainings are one computation on other weights).

```
KERAS_BACKEND=jax python benchmarks/sanity/run.py --output benchmarks/results/sanity \
    --figure benchmarks/figures/sanity_checks.png
```

Writes `sanity_checks.md` (the tables), `sanity_checks.json` (every number)
and `sanity_checks.png` (the figure; `--figure PATH` writes it there too).

This folder's modules: `training.py` (the settings, the data and the demo's
training recipes), `explainers.py` (the three methods' explainers, noting
their maps), `checks.py` (the two checks, `run`), `variants.py` (the
auxiliary-network and decoder-seed controls and their tables) and
`report.py` (the main tables and the figure); this script is the command.
"""

import argparse
import json
import os
import sys
import tempfile

from checks import run
from report import figure, markdown
from training import QUICK, SETTINGS
from variants import seeds_markdown, variants_markdown


def _share_compilations(folder):
    """Under JAX, a compilation cache in `folder` (empty: a cold start), so
    that the steps' P-TAME trainings, the same computation on other weights,
    compile once rather than ten times."""
    import keras

    if keras.config.backend() != "jax":
        return
    import jax

    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python benchmarks/sanity/run.py",
        description="Adebayo et al.'s sanity checks on the demo's setting.",
    )
    parser.add_argument("--output", default="benchmarks/results/sanity")
    parser.add_argument("--figure", default=None, help="also write the figure here")
    parser.add_argument("--seed", type=int, default=SETTINGS["seed"])
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes to check the pipeline"
    )
    parser.add_argument(
        "--auxiliary-variants",
        action="store_true",
        help="also P-TAME with an auxiliary network trained on the permuted "
        "labels and with an untrained one (`auxiliary_variants`)",
    )
    parser.add_argument(
        "--decoder-seeds",
        action="store_true",
        help="also P-TAME with another initialisation of the decoder, for the "
        "true-label and random-label classifiers (`decoder_seeds`)",
    )
    args = parser.parse_args(argv)
    settings = {**SETTINGS, "seed": args.seed, **(QUICK if args.quick else {})}
    from keras_ptame.utils.files import write_text

    os.makedirs(args.output, exist_ok=True)
    with tempfile.TemporaryDirectory() as cache:
        _share_compilations(cache)
        result = run(
            settings,
            log=lambda *a: print(*a, flush=True),
            variants=args.auxiliary_variants,
            seeds=args.decoder_seeds,
        )
    shown = result.pop("shown")
    command = "python benchmarks/sanity/run.py " + " ".join(argv or sys.argv[1:])
    text = markdown(result, command.strip())
    if "auxiliary_variants" in result:
        text += "\n" + variants_markdown(result["auxiliary_variants"], settings)
    if "decoder_seeds" in result:
        text += "\n" + seeds_markdown(result["decoder_seeds"])
    write_text(os.path.join(args.output, "sanity_checks.md"), text)
    write_text(
        os.path.join(args.output, "sanity_checks.json"), json.dumps(result, indent=2)
    )
    for path in {os.path.join(args.output, "sanity_checks.png"), args.figure} - {None}:
        figure(result, shown, path)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

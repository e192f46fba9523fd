"""Shards of a collection explained on Ray Data: `map_batches` over the explainer.

Each unfinished shard is one row of a Ray dataset (`{"shard", "start",
"stop"}`, one block each, so that workers take them one by one); an actor
pool of `ShardExplainer`s (each loads the explainer once) explains them and
commits each shard itself, so a shard is kept the moment it is finished,
whatever becomes of the run. The driver streams the results back
(`iter_rows`) for the progress bar. Locally Ray starts on this machine with
`workers` CPUs; with `address` the same pipeline runs on a Ray cluster (whose
workers must see the image files and the output folder at the same paths).

Ray is imported here alone, when the pipeline runs: `ptame --help` and the
rest of the command work without it.
"""

import logging

import keras

from keras_ptame.cli.errors import UsageError
from keras_ptame.cli.shard_explainer import ShardExplainer

# What to install, where Ray is missing; the floor is the version tested.
RAY_REQUIREMENT = "ray[data]>=2.60"


def import_ray():
    """`ray` with `ray.data`, or a `UsageError` saying what to install."""
    try:
        import ray
        import ray.data  # noqa: F401 (pyarrow and pandas come with it)
    except ModuleNotFoundError as error:
        top = (error.name or "").split(".")[0]
        if top not in ("ray", "pyarrow", "pandas"):
            raise
        raise UsageError(
            "`ptame explain-dataset` runs on Ray Data, which is not installed "
            f"(no module {error.name!r}): pip install '{RAY_REQUIREMENT}' "
            "(keras-ptame's `batch` extra; in a keras_ptame source tree, "
            "`make batch-env` builds .venv-batch with it)."
        ) from None
    return ray


def explain_on_ray(settings, shards, workers=1, address=None, progress=None):
    """Explains `shards` with `workers` Ray actors; each commits its own shards.

    Args:
        settings: a `CollectionSettings`.
        shards: list of `(index, start, stop)`: the shards to explain.
        workers: int. Actors, each with the explainer loaded. Defaults to 1.
        address: optional str, a Ray cluster's address (`"auto"`,
            `"ray://head:10001"`). Defaults to `None`: a local Ray with
            `workers` CPUs, shut down at the end.
        progress: optional `keras.utils.Progbar` counting images.

    Returns:
        int: the number of images explained.
    """
    ray = import_ray()
    started = not ray.is_initialized()
    if started:
        ray.init(
            address=address,
            num_cpus=None if address else workers,
            include_dashboard=False,
            logging_level=logging.WARNING,
            log_to_driver=False,
            # Local workers would inherit it; a cluster's would not.
            runtime_env={"env_vars": {"KERAS_BACKEND": keras.config.backend()}},
        )
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        dataset = ray.data.from_items(
            [{"shard": i, "start": start, "stop": stop} for i, start, stop in shards],
            override_num_blocks=len(shards),
        ).map_batches(
            ShardExplainer,
            fn_constructor_args=(settings,),
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=1,
        )
        done, errors = 0, []
        for row in dataset.iter_rows():
            done += int(row["images"])
            if row["error"]:
                errors.append(row["error"])
            if progress is not None:
                progress.add(int(row["images"]))
    finally:
        if started:
            ray.shutdown()
    if errors:
        raise UsageError(
            f"{errors[0]} {len(errors)} shard(s) not finished, the others are "
            "kept: replace the file (the output's manifest fixes the list of "
            "files) and run the same command again."
        )
    return done

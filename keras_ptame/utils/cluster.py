"""Training on several processes, on one machine or many, with the engines'
own mechanisms: `jax.distributed` behind `keras.distribution` (JAX) and
`tf.distribute.MultiWorkerMirroredStrategy` (TensorFlow).

Each process runs the same training script. The launcher of a cluster (a
job scheduler, `launch_workers` on one machine) tells each its place through
the engines' environment variables: `KERAS_DISTRIBUTION_JOB_ADDRESSES`,
`KERAS_DISTRIBUTION_NUM_PROCESSES` and `KERAS_DISTRIBUTION_PROCESS_ID`
(read by `keras.distribution.initialize`), or `TF_CONFIG` (read by
`MultiWorkerMirroredStrategy`). In the script, `join_cluster()` joins it;
the returned `Cluster` builds the explainer in its scope, trains it and
saves it on the chief alone.

Keras 3 offers nothing for PyTorch across processes (its distribution API
has no PyTorch backend): PyTorch's own launcher, `torchrun`, with
`torch.nn.parallel.DistributedDataParallel`, is the way there.

Run `python -m keras_ptame.utils.cluster --num-processes 2 -- python train.py`
to start a script on two local processes.
"""

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import keras

# The engines whose processes Keras' `fit` can train together.
CLUSTER_BACKENDS = ("jax", "tensorflow")

_TORCH_ADVICE = (
    "Keras 3's distribution API has no PyTorch backend, so keras_ptame cannot "
    "join PyTorch processes. Run training under JAX or TensorFlow, or write a "
    "PyTorch DistributedDataParallel loop and start it with PyTorch's own "
    "launcher, torchrun."
)
_JAX_VARIABLES = (
    "KERAS_DISTRIBUTION_JOB_ADDRESSES",
    "KERAS_DISTRIBUTION_NUM_PROCESSES",
    "KERAS_DISTRIBUTION_PROCESS_ID",
)


def free_port(host="localhost"):
    """A TCP port free on `host` now (the system's pick for port 0).

    Free when asked, not reserved: another program may take it before the
    process it is meant for listens on it (then that process fails to start
    and `launch_workers` says which).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def worker_environments(num_processes, backend=None, host="localhost"):
    """The environment variables that place each process in a local cluster.

    Args:
        num_processes: int. Processes in the cluster, at least 1.
        backend: str. `"jax"` or `"tensorflow"`. Defaults to `None`: the
            backend of this process, `keras.config.backend()`.
        host: str. The host every process runs on. Defaults to
            `"localhost"`.

    Returns:
        A list of `num_processes` dicts of variables, the first the chief's
        (JAX: the coordinator), `KERAS_BACKEND` among them.

    Examples:
    ```python
    from keras_ptame.utils.cluster import worker_environments

    worker_environments(2, "tensorflow")[1]["TF_CONFIG"]
    # '{"cluster": {"worker": ["localhost:40001", "localhost:40002"]},
    #   "task": {"type": "worker", "index": 1}}'
    ```
    """
    backend = backend or keras.config.backend()
    _check_cluster_backend(backend)
    if int(num_processes) < 1:
        raise ValueError(
            f"`num_processes` must be positive. Received: num_processes={num_processes}"
        )
    if backend == "jax":
        # Only the coordinator (process 0) listens; the others connect to it.
        address = f"{host}:{free_port(host)}"
        places = [
            dict(zip(_JAX_VARIABLES, (address, str(num_processes), str(index))))
            for index in range(num_processes)
        ]
    else:
        workers = [f"{host}:{free_port(host)}" for _ in range(num_processes)]
        places = [
            {
                "TF_CONFIG": json.dumps(
                    {
                        "cluster": {"worker": workers},
                        "task": {"type": "worker", "index": index},
                    }
                )
            }
            for index in range(num_processes)
        ]
    return [dict(place, KERAS_BACKEND=backend) for place in places]


def launch_workers(command, num_processes=2, backend=None, timeout=None):
    """Runs `command` on `num_processes` local processes joined as a cluster.

    Each process gets its place from `worker_environments` (on top of this
    process's environment) and runs `command` as it is, with the same
    standard output and error. If one fails, the others are stopped: a
    cluster waits for all its members at every step.

    Args:
        command: list of str. The program and its arguments, e.g.
            `[sys.executable, "train.py"]`.
        num_processes: int. Defaults to `2`.
        backend: str. `"jax"` or `"tensorflow"`. Defaults to `None`: the
            backend of this process.
        timeout: optional float. Seconds to wait for all of them.

    Returns:
        A list of the processes' exit codes, all `0`.

    Raises:
        RuntimeError: a process failed (its index and exit code named).
        subprocess.TimeoutExpired: `timeout` ran out (all are stopped).

    Examples:
    ```python
    import sys
    from keras_ptame.utils.cluster import launch_workers

    launch_workers([sys.executable, "train.py"], num_processes=2, backend="jax")
    ```
    """
    places = worker_environments(num_processes, backend)
    workers = [subprocess.Popen(command, env={**os.environ, **p}) for p in places]
    try:
        codes = _wait_all(workers, timeout)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    # Those still running when one failed have no code: they were stopped.
    failed = [(index, code) for index, code in enumerate(codes) if code]
    if failed:
        index, code = failed[0]
        raise RuntimeError(
            f"Process {index} of {num_processes} ({' '.join(command)}) exited "
            f"with code {code}; the others were stopped."
        )
    return codes


def _wait_all(workers, timeout):
    """Waits for every worker, or for the first that fails."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        codes = [worker.poll() for worker in workers]
        if all(code is not None for code in codes) or any(codes):
            return codes
        if deadline is not None and time.monotonic() > deadline:
            raise subprocess.TimeoutExpired(workers[0].args, timeout)
        time.sleep(0.2)


def join_cluster():
    """Joins the cluster that the environment describes, if any.

    Call it first in each process, before any model is built. Under JAX,
    with `KERAS_DISTRIBUTION_NUM_PROCESSES` set, it calls
    `keras.distribution.initialize()` (`jax.distributed` underneath) and sets
    a `keras.distribution.DataParallel` over every process's devices. Under
    TensorFlow, with `TF_CONFIG` set, it makes a
    `tf.distribute.MultiWorkerMirroredStrategy`. Without either, the
    `Cluster` is this process alone and changes nothing.

    Returns:
        A `Cluster`.

    Raises:
        ValueError: the backend is PyTorch and the environment names a
            cluster (use torchrun), or another backend without one.

    Examples:
    ```python
    import keras_ptame as kp
    from keras_ptame.utils.cluster import join_cluster

    cluster = join_cluster()
    with cluster.scope():
        explainer = kp.PTAME(backbone, extractor)
        explainer.ensure_built((None, 224, 224, 3))
        explainer.compile()
    cluster.fit(explainer, kp.data.imagenette(batch_size=64), epochs=3)
    cluster.save(explainer, "explainer.keras")
    ```
    """
    backend = keras.config.backend()
    _check_cluster_variables(backend)
    if backend == "jax" and os.environ.get("KERAS_DISTRIBUTION_NUM_PROCESSES"):
        keras.distribution.initialize()
        keras.distribution.set_distribution(
            keras.distribution.DataParallel(devices=keras.distribution.list_devices())
        )
        import jax

        return Cluster(jax.process_index(), jax.process_count(), backend)
    if backend == "tensorflow" and os.environ.get("TF_CONFIG"):
        import tensorflow as tf

        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        resolver = strategy.cluster_resolver
        chief = resolver.task_type == "chief" or (
            resolver.task_type == "worker"
            and resolver.task_id == 0
            and "chief" not in resolver.cluster_spec().as_dict()
        )
        count = sum(map(len, resolver.cluster_spec().as_dict().values()))
        return Cluster(resolver.task_id, count, backend, strategy, chief)
    return Cluster(0, 1, backend)


def _check_cluster_variables(backend):
    """Refuses a cluster that the backend cannot join: each process would
    train alone and write the same files."""
    named = {
        "jax": "KERAS_DISTRIBUTION_NUM_PROCESSES",
        "tensorflow": "TF_CONFIG",
        "torch": "WORLD_SIZE",
    }
    found = [engine for engine, name in named.items() if os.environ.get(name)]
    if backend == "torch" and found:
        raise ValueError(_TORCH_ADVICE)
    others = [engine for engine in found if engine != backend]
    if others and backend not in found:
        raise ValueError(
            f"The environment describes a {others[0]} cluster "
            f"({named[others[0]]} is set), but KERAS_BACKEND is {backend!r}: "
            f"run the script under {others[0]}, or set {named[backend]} for "
            f"{backend} (see `worker_environments`)."
        )


class Cluster:
    """This process's place in a cluster, from `join_cluster`.

    Use it as a context manager: on leaving, a non-chief process's scratch
    folder (its copies of the chief's files) is removed.

    Args:
        process_id: int. This process's index, `0` to `num_processes - 1`.
        num_processes: int. Processes in the cluster.
        backend: str. The Keras backend.
        strategy: optional `tf.distribute.Strategy`. TensorFlow's.
            Defaults to `None`.
        is_chief: optional bool. Whether this process writes the files.
            Defaults to `None`: process 0 does.
    """

    def __init__(
        self, process_id, num_processes, backend, strategy=None, is_chief=None
    ):
        self.process_id = int(process_id)
        self.num_processes = int(num_processes)
        self.backend = backend
        self.strategy = strategy
        self.is_chief = self.process_id == 0 if is_chief is None else bool(is_chief)
        self._scratch = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def scope(self):
        """The scope to build and compile the explainer in (TensorFlow's
        strategy scope; nothing to enter under JAX, whose distribution is
        global). Build the explainer inside it (`ensure_built`): weights
        made later, in `fit`, would be outside the strategy."""
        if self.strategy is None:
            return contextlib.nullcontext()
        return self.strategy.scope()

    def fit(self, model, dataset, **kwargs):
        """`model.fit` on a batched `tf.data.Dataset` of the global batches.

        Every process passes the same dataset, batched to the global batch
        size and seeded (`kp.data`'s `seed=`) so that every process makes
        the same batches; each trains on its share of every batch (Keras' `DataParallel`
        under JAX, the strategy's auto-sharding under TensorFlow, split each
        batch between the processes). The removal check
        (`PTAME.fit(removal_check=...)`) is off unless asked for: it explains
        arrays, which Keras refuses to split between processes under JAX,
        and it may reverse maps between epochs, so a script that trained
        with it alone would not train as it does on several processes.
        Check the saved explainer in one process instead.

        Args:
            model: the compiled explainer, built in `scope()`.
            dataset: a `tf.data.Dataset` of image batches (or of
                `(images, labels)`), the same in every process.
            **kwargs: `fit`'s other arguments.

        Returns:
            `fit`'s `History`.
        """
        kwargs.setdefault("removal_check", 0)
        if self.strategy is not None:
            # Keras averages a first batch across the workers to build the
            # model, a collective that TensorFlow has for floats and 32- and
            # 64-bit integers, not for uint8 images; and it fails on a batch
            # of images and labels there.
            dataset = dataset.map(_float_images)
            _keep_logs_reducible(model)
        return model.fit(dataset, **kwargs)

    @contextlib.contextmanager
    def output_path(self, path):
        """Yields where this process writes `path`: on the chief, a
        temporary path renamed to `path` when the block succeeds; elsewhere
        a path in this process's scratch folder, removed on leaving the
        `Cluster`. Every process writes (TensorFlow may need all of them to
        read the variables), only the chief's file is kept."""
        from keras_ptame.utils.files import atomic_path

        if self.is_chief:
            with atomic_path(path) as temporary:
                yield temporary
            return
        yield os.path.join(self.scratch_folder(), os.path.basename(path))

    def scratch_folder(self):
        """This process's scratch folder (created on first use)."""
        if self._scratch is None:
            self._scratch = tempfile.mkdtemp(prefix=f"ptame-worker{self.process_id}-")
        return self._scratch

    def checkpoint_path(self, path):
        """`path` on the chief, else the same name in the scratch folder: for
        callbacks that write during training, such as
        `keras.callbacks.ModelCheckpoint`."""
        if self.is_chief:
            return path
        return os.path.join(self.scratch_folder(), os.path.basename(path))

    def save(self, model, path):
        """Saves `model` to `path` (`.keras`) on the chief alone."""
        with self.output_path(path) as target:
            model.save(target)


def _float_images(*batch):
    """The images of a batch (of images, or of `(images, labels)`), as float32.

    The labels go: the explainer never uses them, and Keras cannot build a
    model from a batch of images and labels under the strategy.
    """
    import tensorflow as tf

    return tf.cast(batch[0], "float32")


def _keep_logs_reducible(model):
    """Gives `fit` one-element logs under MultiWorkerMirroredStrategy.

    Keras 3's TensorFlow `fit` reduces each worker's logs with
    `strategy.reduce("MEAN", value, axis=0)`, which fails on the scalars
    that every `train_step` returns ("Invalid reduction dimension 0 for input
    with 0 dimensions", tensorflow/tensorflow#72388). Logs of shape `(1,)`
    reduce to the same scalars.
    """
    import tensorflow as tf

    if getattr(model, "_ptame_reducible_logs", False):
        return
    step = model.train_step

    def train_step(data):
        return {name: tf.reshape(value, [1]) for name, value in step(data).items()}

    model.train_step = train_step
    model._ptame_reducible_logs = True


def _main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m keras_ptame.utils.cluster",
        description="Runs a training script on several local processes joined "
        "as a cluster (JAX or TensorFlow); the script calls join_cluster().",
    )
    parser.add_argument("--num-processes", type=int, default=2)
    parser.add_argument(
        "--backend",
        default=os.environ.get("KERAS_BACKEND", "jax"),
        help="jax or tensorflow (default: KERAS_BACKEND, else jax)",
    )
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("name the command to run, e.g. -- python train.py")
    try:
        launch_workers(command, args.num_processes, args.backend)
    except (RuntimeError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def _check_cluster_backend(backend):
    if backend == "torch":
        raise ValueError(_TORCH_ADVICE)
    if backend not in CLUSTER_BACKENDS:
        raise ValueError(
            f"`backend` must be one of {CLUSTER_BACKENDS}. Received: backend={backend!r}"
        )


if __name__ == "__main__":
    sys.exit(_main())

"""Training on two processes joined as a cluster equals training on one.

The two-process cases start child processes with their own `KERAS_BACKEND`
(JAX: `jax.distributed` behind `keras.distribution`; TensorFlow:
`MultiWorkerMirroredStrategy`), whatever the parent's backend: they run once,
in the slow set.
"""

import json
import os
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

import keras_ptame as kp
from keras_ptame.utils.cluster import (
    Cluster,
    _main,
    join_cluster,
    launch_workers,
    worker_environments,
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The same script runs alone (the reference) and on each process of the
# cluster: two epochs of two global batches of 8 images, SGD (so that a
# wrongly scaled gradient shows), a ModelCheckpoint each epoch and the saved
# explainer, written by the chief alone. It writes its decoder's weights,
# before and after training, and its losses to `weights_<process>.json`.
WORKER = """
import json, os, sys
sys.path.insert(0, {root!r})
import numpy as np
import keras
from keras_ptame.utils.cluster import join_cluster
import keras_ptame as kp
from keras_ptame.utils.tf_runtime import import_tensorflow
from tests.helpers import random_images, tiny_explainer

out = {out!r}
with join_cluster() as cluster:
    tf = import_tensorflow()
    if keras.config.backend() == "tensorflow":
        # Each worker computes the loss (and the decoder's BatchNorm
        # statistics) on its half of a batch alone: with two identical
        # halves, and without the smoothness term (normalised per image),
        # those equal the whole batch's, so the runs must agree.
        half, other = random_images(4), random_images(4, seed=1)
        images = np.concatenate([half, half, other, other])
        loss = kp.PerturbationLoss(smoothness_coeff=0.0)
    else:
        # JAX computes over the global batch, split or not.
        images, loss = random_images(16), kp.PerturbationLoss()
    keras.utils.set_random_seed(0)
    with cluster.scope():
        explainer = tiny_explainer()
        explainer.ensure_built((None, 16, 16, 3))
        explainer.compile(optimizer=keras.optimizers.SGD(0.05), loss=loss)
    weights = lambda: [keras.ops.convert_to_numpy(w).tolist()
                       for w in explainer.decoder.weights]
    before = weights()
    checkpoint = keras.callbacks.ModelCheckpoint(
        cluster.checkpoint_path(os.path.join(out, "epoch_{{epoch}}.weights.h5")),
        save_weights_only=True,
    )
    history = cluster.fit(
        explainer,
        # (images, labels), as `kp.data`'s pipelines give them.
        tf.data.Dataset.from_tensor_slices((images, np.arange(16) % 4)).batch(8),
        epochs=2,
        callbacks=[checkpoint],
        verbose=0,
    )
    cluster.save(explainer, os.path.join(out, "explainer.keras"))
    scratch = cluster._scratch
    record = dict(
        process=cluster.process_id,
        processes=cluster.num_processes,
        chief=cluster.is_chief,
        names=[w.path for w in explainer.decoder.weights],
        before=before,
        after=weights(),
        loss=history.history["loss"],
        scratch=scratch,
    )
with open(os.path.join({results!r}, f"weights_{{cluster.process_id}}.json"), "w") as f:
    json.dump(record, f)
"""


def test_worker_environments_place_each_process_in_one_cluster():
    jax_places = worker_environments(3, "jax")
    assert [p["KERAS_DISTRIBUTION_PROCESS_ID"] for p in jax_places] == ["0", "1", "2"]
    assert {p["KERAS_DISTRIBUTION_NUM_PROCESSES"] for p in jax_places} == {"3"}
    # One coordinator for all, on a free local port.
    (address,) = {p["KERAS_DISTRIBUTION_JOB_ADDRESSES"] for p in jax_places}
    assert address.startswith("localhost:") and int(address.split(":")[1]) > 0
    configs = [json.loads(p["TF_CONFIG"]) for p in worker_environments(2, "tensorflow")]
    assert [c["task"] for c in configs] == [
        {"type": "worker", "index": 0},
        {"type": "worker", "index": 1},
    ]
    workers = configs[0]["cluster"]["worker"]
    assert configs[1]["cluster"]["worker"] == workers and len(set(workers)) == 2
    assert {p["KERAS_BACKEND"] for p in jax_places} == {"jax"}


def test_pytorch_is_refused_with_torchrun_named():
    with pytest.raises(ValueError, match="torchrun"):
        worker_environments(2, "torch")
    with pytest.raises(ValueError, match="torchrun"):
        launch_workers([sys.executable, "-c", "pass"], 2, "torch")
    with pytest.raises(ValueError, match="num_processes"):
        worker_environments(0, "jax")


@pytest.mark.skipif(
    keras.config.backend() != "torch", reason="join_cluster refuses under PyTorch"
)
def test_join_cluster_under_pytorch_names_torchrun(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="torchrun"):
        join_cluster()


def test_join_cluster_refuses_another_engines_cluster(monkeypatch):
    # Each process would train alone and write the same files.
    backend = keras.config.backend()
    other = {"jax": "TF_CONFIG", "tensorflow": "KERAS_DISTRIBUTION_NUM_PROCESSES"}
    for name in ("TF_CONFIG", "KERAS_DISTRIBUTION_NUM_PROCESSES", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(other.get(backend, "TF_CONFIG"), "2")
    expected = "torchrun" if backend == "torch" else f"KERAS_BACKEND is '{backend}'"
    with pytest.raises(ValueError, match=expected):
        join_cluster()


def test_join_cluster_without_a_cluster_is_this_process_alone(monkeypatch, tmp_path):
    for name in ("TF_CONFIG", "KERAS_DISTRIBUTION_NUM_PROCESSES", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    with join_cluster() as cluster:
        assert (cluster.process_id, cluster.num_processes) == (0, 1)
        assert cluster.is_chief and cluster.strategy is None
        assert keras.distribution.distribution() is None
        path = str(tmp_path / "a.weights.h5")
        assert cluster.checkpoint_path(path) == path


def test_a_non_chief_writes_in_a_scratch_folder_removed_on_leaving(tmp_path):
    target = tmp_path / "explainer.keras"
    with Cluster(1, 2, keras.config.backend()) as cluster:
        with cluster.output_path(str(target)) as path:
            open(path, "w").close()
        assert os.path.exists(path) and not target.exists()
    assert not os.path.exists(path) and not target.exists()
    with Cluster(0, 2, keras.config.backend()) as chief:
        with chief.output_path(str(target)) as path:
            open(path, "w").close()
    assert target.exists()


def test_a_failing_process_stops_the_others():
    # Process 1 fails at once; process 0 would wait a minute (as a cluster
    # member waits for the others): it is stopped, not waited for.
    code = (
        "import os, sys, time\n"
        "if os.environ['KERAS_DISTRIBUTION_PROCESS_ID'] == '1': sys.exit(3)\n"
        "time.sleep(60)\n"
    )
    with pytest.raises(RuntimeError, match="(?s)Process 1 of 2 .* code 3"):
        launch_workers([sys.executable, "-c", code], 2, "jax", timeout=30)


def test_the_command_line_launcher_places_each_process(tmp_path):
    # Each process writes the place it was given to a file of its own.
    code = (
        "import json, os, sys\n"
        "place = json.loads(os.environ['TF_CONFIG'])['task']['index']\n"
        "open(os.path.join(sys.argv[1], str(place)), 'w').write("
        "os.environ['KERAS_BACKEND'])\n"
    )
    command = [sys.executable, "-c", code, str(tmp_path)]
    assert (
        _main(["--num-processes", "2", "--backend", "tensorflow", "--", *command]) == 0
    )
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == {
        "0": "tensorflow",
        "1": "tensorflow",
    }
    assert _main(["--backend", "torch", "--", *command]) == 1


def _script(tmp_path, name):
    folders = {kind: tmp_path / f"{name}_{kind}" for kind in ("out", "results")}
    for folder in folders.values():
        folder.mkdir()
    script = tmp_path / f"{name}.py"
    script.write_text(
        WORKER.format(
            root=ROOT, out=str(folders["out"]), results=str(folders["results"])
        )
    )
    return script, folders["out"], folders["results"]


def _records(folder):
    return [json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))]


def _train_alone(tmp_path, backend):
    script, out, results = _script(tmp_path, "alone")
    environment = {
        name: value
        for name, value in os.environ.items()
        if name not in ("TF_CONFIG",) and not name.startswith("KERAS_DISTRIBUTION")
    }
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, str(script)],
        env=dict(environment, KERAS_BACKEND=backend),
        check=True,
        timeout=600,
    )
    (record,) = _records(results)
    print(f"{backend}: one process took {time.perf_counter() - start:.1f} s")
    return record


def _max_difference(a, b):
    return max(
        float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in zip(a, b)
    )


# Slow: four child processes per backend (two workers, one reference run),
# each starting its engine and compiling the steps: 40 to 90 s a backend on
# 2 shared cores.
@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_two_processes_train_as_one_and_only_the_chief_writes(tmp_path, backend):
    alone = _train_alone(tmp_path, backend)
    script, out, results = _script(tmp_path, "cluster")
    start = time.perf_counter()
    launch_workers([sys.executable, str(script)], 2, backend, timeout=600)
    seconds = time.perf_counter() - start
    records = _records(results)
    assert [(r["process"], r["processes"], r["chief"]) for r in records] == [
        (0, 2, True),
        (1, 2, False),
    ]
    # Training moved the weights; each process ends where one process does,
    # through the same losses. Measured on 2 CPU processes: at most 6e-8
    # apart under either engine (float32 sums in another order), where
    # training moved the kernels by up to 0.05 (JAX) and 0.02 (TensorFlow);
    # the tolerance is 1e-6.
    kernels = [i for i, name in enumerate(alone["names"]) if name.endswith("kernel")]
    moved = _max_difference(
        [alone["before"][i] for i in kernels], [alone["after"][i] for i in kernels]
    )
    print(f"{backend}: training moved the kernels by up to {moved:.2g}")
    assert moved > 1e-3
    for record in records:
        assert record["names"] == alone["names"]
        difference = _max_difference(record["after"], alone["after"])
        print(f"{backend}: process {record['process']} {difference:.2g} from one")
        assert difference < 1e-6, (record["process"], difference)
        np.testing.assert_allclose(record["loss"], alone["loss"], rtol=1e-5)
    print(f"{backend}: two processes took {seconds:.1f} s")
    # The chief alone wrote the files; the other's copies went with its
    # scratch folder.
    assert sorted(p.name for p in out.iterdir()) == [
        "epoch_1.weights.h5",
        "epoch_2.weights.h5",
        "explainer.keras",
    ]
    assert records[0]["scratch"] is None
    assert records[1]["scratch"] and not os.path.exists(records[1]["scratch"])
    saved = kp.load_explainer(str(out / "explainer.keras"))
    _check_saved_weights(saved, records[0])


def _check_saved_weights(saved, record):
    decoder = {w.path.split("/", 1)[1]: w for w in saved.decoder.weights}
    for path, value in zip(record["names"], record["after"]):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(decoder[path.split("/", 1)[1]]), value, atol=0
        )

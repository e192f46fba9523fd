"""Explaining a collection: `ptame explain`'s loop against `ptame explain-dataset`
on Ray Data with 1 and 2 workers (and, where given, the same shards on Apache
Beam's `RunInference`), on the same image files.

The paper's networks with random weights (`common.build`: ResNet-50 explained
through a ResNet-18), at `--image-size` (112 by default: 224 takes four
times as long on a CPU), on synthetic shape images written as PNG files.
Every method runs as a user runs it, a command in a fresh process, on the
same `N` images. From the modification times of the maps it writes come the
images per second once running (`(N - 1) / (last - first)`: each map file is
written as its batch is explained; `ptame explain` writes them into a staging
folder and renames them, which keeps the times) and the start-up (from the
launch to the first map: imports, Ray or Beam, loading the explainer,
compiling); the whole run's images per second is `N / wall time`. The
memory is the peak, over the run, of the summed resident memory (RSS) of the
command and every process it started (Ray's raylet and actors, Beam's
workers), sampled every 0.1 s (shared pages count once per process).

    python benchmarks/batch_explain.py --engine-python .venv-batch/bin/python \\
        --explain-python .venv/bin/python --output benchmarks/results/batch_explain
    # and Beam, from an environment with apache-beam and keras_ptame:
    python benchmarks/batch_explain.py ... --beam-python /path/to/beam-venv/bin/python

`ptame explain` needs matplotlib (its overlays), which the Ray environment
lacks: hence one interpreter per side (the same Keras and JAX versions).
All run under `KERAS_BACKEND=jax`. Writes `batch_explain.md` and `.json`.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine-python", required=True)
    parser.add_argument("--explain-python", default=sys.executable)
    parser.add_argument("--beam-python", default=None)
    parser.add_argument("--count", type=int, default=400, help="N (default: 400)")
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--shard-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--output", default="benchmarks/results/batch_explain")
    args = parser.parse_args(argv)
    os.makedirs(args.output, exist_ok=True)
    work = os.path.abspath(os.path.join(args.output, "work"))
    os.environ["KERAS_BACKEND"] = "jax"
    model, folder = _prepare(work, args)
    results = []
    for name, command in _methods(args, model):
        target = os.path.join(work, name.replace(" ", "_").replace(",", ""))
        _remove(target)
        started = time.time()
        seconds, peak = measure(command(folder, target))
        first, last = _map_times(target)
        results.append(
            {
                "method": name,
                "images": args.count,
                "seconds": seconds,
                "startup": first - started,
                "running_rate": (args.count - 1) / (last - first),
                "peak_mib": peak,
            }
        )
        print(json.dumps(results[-1]), flush=True)
    report = {"settings": vars(args), "machine": _machine(), "runs": results}
    with open(os.path.join(args.output, "batch_explain.json"), "w") as file:
        json.dump(report, file, indent=1)
    table = markdown(results)
    with open(os.path.join(args.output, "batch_explain.md"), "w") as file:
        file.write(table)
    print(table)


def _methods(args, model):
    """(name, command(folder, output)) for each method measured."""
    size = ["--batch-size", str(args.batch_size)]

    def explain(folder, output):
        return [args.explain_python, "-m", "keras_ptame.cli", "explain", "--model",
                model, folder, "--output", output, "--dtype", "uint8", "--quiet", *size]  # fmt: skip

    def ray(workers):
        def command(folder, output):
            return [args.engine_python, "-m", "keras_ptame.cli", "explain-dataset",
                    "--model", model, folder, "--output", output, "--workers",
                    str(workers), "--shard-size", str(args.shard_size), "--quiet", *size]  # fmt: skip

        return command

    def beam(workers):
        def command(folder, output):
            return [args.beam_python, os.path.abspath(__file__), "beam-run", model,
                    folder, output, str(workers), str(args.shard_size), str(args.batch_size)]  # fmt: skip

        return command

    methods = [
        ("ptame explain", explain),
        ("Ray, 1 worker", ray(1)),
        ("Ray, 2 workers", ray(2)),
    ]
    if args.beam_python:
        methods += [("Beam, 1 worker", beam(1)), ("Beam, 2 workers", beam(2))]
    return methods


def _prepare(work, args):
    """The explainer file and a folder of `N` PNG images."""
    model = os.path.join(work, "explainer.keras")
    folder = os.path.join(work, f"images-{args.count}")
    if not os.path.exists(folder):
        os.makedirs(work, exist_ok=True)
        code = (
            "import sys; sys.path.insert(0, sys.argv[1]); "
            "import numpy as np; from PIL import Image; from common import build; "
            "from keras_ptame.datasets import make_shapes; "
            "size, count, work = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]; "
            "explainer = build(size, 'float32')[1]; "
            "explainer.ensure_built((1, size, size, 3)); "
            "explainer.save(f'{work}/explainer.keras'); "
            "images = make_shapes(count, image_size=size, seed=0)[0]\n"
            "import os; os.makedirs(f'{work}/images-{count}')\n"
            "for i, image in enumerate(images):\n"
            "    Image.fromarray(image).save(f'{work}/images-{count}/{i:05d}.png')\n"
        )
        subprocess.run(
            [
                args.explain_python,
                "-c",
                code,
                HERE,
                str(args.image_size),
                str(args.count),
                work,
            ],
            check=True,
        )
    return model, folder


def measure(command):
    """Runs `command`; returns its wall time (s) and peak summed RSS (MiB)."""
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = [0]

    def sample():
        while child.poll() is None:
            peak[0] = max(peak[0], tree_rss([child.pid]))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample)
    sampler.start()
    _, err = child.communicate()
    seconds = time.perf_counter() - start
    sampler.join()
    if child.returncode != 0:
        raise RuntimeError(f"{command} failed:\n{err.decode()[-3000:]}")
    return seconds, peak[0] / 2**20


def tree_rss(roots):
    """Summed RSS in bytes of `roots` and every process below them (Linux)."""
    parents, rss = {}, {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as file:
                fields = file.read().rpartition(")")[2].split()
        except OSError:
            continue
        parents[int(name)] = int(fields[1])
        rss[int(name)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    found, frontier = set(roots), set(roots)
    while frontier:
        frontier = {
            pid for pid, parent in parents.items() if parent in frontier
        } - found
        found |= frontier
    return sum(rss.get(pid, 0) for pid in found)


def _map_times(output):
    """The modification times of the first and last map file under `output`."""
    times = [
        os.stat(os.path.join(folder, name)).st_mtime
        for folder, _, names in os.walk(output)
        for name in names
        if name.endswith(".npy") or (name.endswith(".png") and "maps" in folder)
    ]
    return min(times), max(times)


def markdown(results):
    """The table: per method, images/s once running, start-up, peak memory."""
    lines = [
        "| method | images | wall time, s | start-up, s | images/s once running "
        "| images/s, whole run | peak RSS, MiB |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['method']} | {r['images']} | {r['seconds']:.1f} | {r['startup']:.1f} "
            f"| {r['running_rate']:.1f} | {r['images'] / r['seconds']:.1f} "
            f"| {r['peak_mib']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def _machine():
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
    }


def _remove(path):
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def beam_run(model, folder, output, workers, shard_size, batch_size):
    """The same shards as `explain-dataset`, on Apache Beam's DirectRunner.

    `RunInference` with a model handler whose model is keras_ptame's
    `ShardExplainer` (loaded once per worker process, as Beam shares a
    model), over one element per shard; each shard is committed as on Ray.
    For the comparison only: `ptame explain-dataset` runs on Ray.
    """
    import apache_beam as beam
    from apache_beam.ml.inference.base import (
        ModelHandler,
        PredictionResult,
        RunInference,
    )
    from apache_beam.options.pipeline_options import PipelineOptions

    from keras_ptame.cli.explain import output_names
    from keras_ptame.cli.shard_explainer import CollectionSettings, ShardExplainer
    from keras_ptame.utils.images import find_images
    from keras_ptame.utils.shards import plan_shards

    files = find_images([folder])
    settings = CollectionSettings(
        model=model, output=os.path.abspath(output), files=tuple(files),
        names=tuple(output_names(files, [folder])), batch_size=batch_size,
    )  # fmt: skip
    os.makedirs(os.path.join(output, "shards"), exist_ok=True)

    class ShardHandler(ModelHandler):
        def load_model(self):
            return ShardExplainer(settings)

        def run_inference(self, batch, model, inference_args=None):
            return [PredictionResult(s, model.explain_shard(*s)) for s in batch]

        def batch_elements_kwargs(self):
            return {"min_batch_size": 1, "max_batch_size": 1}

    shards = [(i, a, b) for i, (a, b) in enumerate(plan_shards(len(files), shard_size))]
    options = PipelineOptions(
        direct_num_workers=workers, direct_running_mode="multi_processing"
    )
    with beam.Pipeline(options=options) as pipeline:
        _ = (
            pipeline
            | beam.Create(shards)
            | beam.Reshuffle()
            | RunInference(ShardHandler())
        )
    done = sum(1 for name in os.listdir(os.path.join(output, "shards")))
    if done != len(shards):
        raise SystemExit(f"{done} of {len(shards)} shards finished")


if __name__ == "__main__":
    if sys.argv[1:2] == ["beam-run"]:
        model, folder, output, workers, shard, batch = sys.argv[2:8]
        beam_run(model, folder, output, int(workers), int(shard), int(batch))
    else:
        main()

"""`ptame explain`: overlays, raw maps and a summary for image files."""

import csv
import os
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_ptame import visualize
from tests.helpers import IMAGE_SIZE, random_images, tiny_explainer

Image = pytest.importorskip("PIL.Image")


def test_explain_writes_overlays_maps_and_summary(workspace, tmp_path, ptame):
    root, images = workspace
    extra = tmp_path / "extra"
    extra.mkdir()
    Image.fromarray(images[0][..., 0]).resize((30, 24)).save(extra / "gray.png")
    Image.fromarray(images[1]).convert("RGBA").save(extra / "rgba.png")
    Image.fromarray(images[2]).save(extra / "photo.jpg", quality=95)
    output = tmp_path / "out"
    result = ptame(
        "explain", "--model", root / "explainer.keras", root / "images", extra,
        "--output", output,
    )  # fmt: skip
    assert result.code == 0, result.err
    assert "converted from mode L to RGB" in result.err
    assert "resized from 24x30 to 16x16" in result.err
    assert "converted from mode RGBA to RGB" in result.err

    names = ["rgb_0", "rgb_1", "rgb_2", "rgb_3", os.path.join("nested", "deep")]
    names += ["gray", "photo", "rgba"]
    for name in names:
        saliency = np.load(output / f"{name}.npy")
        assert saliency.shape == (IMAGE_SIZE, IMAGE_SIZE)
        assert saliency.dtype == np.float32
        assert np.isfinite(saliency).all()
        assert saliency.min() >= 0 and saliency.max() <= 1
        picture = np.asarray(Image.open(output / f"{name}.png"))
        assert picture.dtype == np.uint8 and picture.shape[-1] == 3
    # The overlay is drawn at the image's own size.
    assert np.asarray(Image.open(output / "gray.png")).shape == (24, 30, 3)
    # Nothing is left of the atomic writes.
    assert sorted(os.listdir(output)) == sorted(
        [
            f"{name}.{suffix}"
            for name in names[:4] + names[5:]
            for suffix in ("npy", "png")
        ]
        + ["nested", "summary.csv"]
    )

    explainer = keras.saving.load_model(root / "explainer.keras")
    expected = explainer.explain_outputs(images)
    for index, name in enumerate(names[:5]):
        np.testing.assert_allclose(
            np.load(output / f"{name}.npy"), expected["maps"][index], atol=1e-5
        )
    with open(output / "summary.csv") as file:
        rows = {row["output"]: row for row in csv.DictReader(file)}
    assert sorted(rows) == sorted(names)
    for index, name in enumerate(names[:5]):
        assert int(rows[name]["class"]) == expected["classes"][index]
        assert float(rows[name]["score"]) == pytest.approx(
            expected["scores"][index], abs=1e-5
        )
        assert rows[name]["misranked"] == str(bool(expected["misranked"][index]))
    with open(output / "summary.csv") as file:
        assert next(csv.reader(file)) == [
            "file", "output", "class", "score", "evidence", "flat", "misranked",
        ]  # fmt: skip


def test_explain_reports_and_labels_flat_maps(workspace, tmp_path, ptame):
    root, images = workspace
    explainer = keras.saving.load_model(root / "explainer.keras")
    # Above every map's evidence: each map is flagged flat.
    explainer.evidence_threshold = 1.0
    explainer.save(tmp_path / "strict.keras")
    output = tmp_path / "out"
    result = ptame(
        "explain", "--model", tmp_path / "strict.keras", root / "images" / "rgb_0.png",
        "--output", output,
    )  # fmt: skip
    assert result.code == 0, result.err
    assert "1 of 1 maps flat" in result.out + result.err
    with open(output / "summary.csv") as file:
        (row,) = list(csv.DictReader(file))
    assert row["flat"] == "True" and 0 <= float(row["evidence"]) < 1
    assert row["misranked"] == "False"
    assert "misranked" not in result.out + result.err
    assert not np.load(output / "rgb_0.npy").any()
    # The overlay of the all-zero map carries a label on a dark band at the top.
    picture = np.asarray(Image.open(output / "rgb_0.png"))
    plain = visualize.overlay(images[0], np.zeros((IMAGE_SIZE, IMAGE_SIZE)))
    assert picture[0].max() == 0 and picture[:12].max() > 200
    assert not np.array_equal(picture[:12], plain[:12])
    np.testing.assert_array_equal(picture[14:], plain[14:])


def test_explain_reports_and_labels_misranked_maps(workspace, tmp_path, ptame):
    root, images = workspace
    explainer = keras.saving.load_model(root / "explainer.keras")
    explainer.evidence_threshold = 0.0  # no map is flat
    (first, second) = explainer.explain_outputs(images[:2])["classes"]
    # As if the removal check in training had flagged the first image's class.
    explainer.misranked_classes = [first]
    explainer.save(tmp_path / "misranked.keras")
    output = tmp_path / "out"
    result = ptame(
        "explain", "--model", tmp_path / "misranked.keras",
        root / "images" / "rgb_0.png", root / "images" / "rgb_1.png",
        "--output", output,
    )  # fmt: skip
    assert result.code == 0, result.err
    said = result.out + result.err
    count = 1 + int(second == first)
    assert f"{count} of 2 maps misranked, of class(es) {first}:" in said
    assert "do not carry their class" in said
    assert "flat" not in said.split("Wrote")[-1]
    with open(output / "summary.csv") as file:
        rows = {row["output"]: row for row in csv.DictReader(file)}
    assert rows["rgb_0"]["misranked"] == "True" and rows["rgb_0"]["flat"] == "False"
    assert rows["rgb_1"]["misranked"] == str(second == first)
    # The map itself is written as it is, its overlay labelled.
    expected = explainer.explain_outputs(images[:1])["maps"][0]
    np.testing.assert_allclose(np.load(output / "rgb_0.npy"), expected, atol=1e-5)
    assert np.load(output / "rgb_0.npy").any()
    picture = np.asarray(Image.open(output / "rgb_0.png"))
    plain = visualize.overlay(images[0], expected)
    assert picture[0].max() == 0 and picture[:12].max() > 200
    assert not np.array_equal(picture[:12], plain[:12])
    np.testing.assert_array_equal(picture[14:], plain[14:])


def test_explain_takes_an_explainer_preset(workspace, tmp_path, ptame):
    root, images = workspace
    explainer = keras.saving.load_model(root / "explainer.keras")
    explainer.save_to_preset(tmp_path / "preset")
    output = tmp_path / "out"
    result = ptame(
        "explain", "--model", tmp_path / "preset", root / "images", "--output", output
    )
    assert result.code == 0, result.err
    np.testing.assert_allclose(
        np.load(output / "rgb_0.npy"), explainer.explain(images[:1])[0], atol=1e-5
    )
    result = ptame("explain", "--model", tmp_path, root / "images", "--output", output)
    result.assert_user_error("preset folder")


def test_explain_given_classes(workspace, tmp_path, ptame):
    root, _ = workspace
    output = tmp_path / "out"
    result = ptame(
        "explain", "--model", root / "explainer.keras", root / "images",
        "--classes", 3, "--output", output, "--quiet",
    )  # fmt: skip
    assert result.code == 0, result.err
    assert result.err == ""
    with open(output / "summary.csv") as file:
        assert {row["class"] for row in csv.DictReader(file)} == {"3"}


# Issue 27: --dtype uint8 writes the maps as explain(dtype="uint8") gives
# them, and the same overlays as the float maps (within a level's rounding).
def test_explain_writes_uint8_maps(workspace, tmp_path, ptame):
    root, images = workspace
    outputs = {}
    for dtype in ("float32", "uint8"):
        outputs[dtype] = tmp_path / dtype
        result = ptame(
            "explain", "--model", root / "explainer.keras", root / "images",
            "--dtype", dtype, "--output", outputs[dtype], "--quiet",
        )  # fmt: skip
        assert result.code == 0, result.err
    explainer = keras.saving.load_model(root / "explainer.keras")
    expected = explainer.explain(images, dtype="uint8")
    for index in range(4):
        maps = np.load(outputs["uint8"] / f"rgb_{index}.npy")
        assert maps.dtype == np.uint8
        np.testing.assert_array_equal(maps, expected[index])
        float_maps = np.load(outputs["float32"] / f"rgb_{index}.npy")
        assert np.abs(maps / 255.0 - float_maps).max() <= 0.5 / 255 + 1e-6
        pictures = [
            np.asarray(Image.open(outputs[dtype] / f"rgb_{index}.png"), "int16")
            for dtype in outputs
        ]
        assert np.abs(pictures[0] - pictures[1]).max() <= 3
    result = ptame(
        "explain", "--model", root / "explainer.keras", root / "images",
        "--dtype", "float16", "--output", tmp_path / "bad",
    )  # fmt: skip
    assert result.code != 0 and "float16" in result.err


# Issue 24: --top-k writes a map and overlay per class, a summary row per
# (image, class) with its rank, the maps those of explain_outputs(top_k=k).
def test_explain_top_k(workspace, tmp_path, ptame, snapshot):
    root, images = workspace
    output = tmp_path / "out"
    argv = [
        "explain", "--model", root / "explainer.keras",
        root / "images" / "rgb_0.png", root / "images" / "rgb_1.png",
        "--top-k", 3, "--output", output, "--quiet",
    ]  # fmt: skip
    result = ptame(*argv)
    assert result.code == 0, result.err
    stems = [f"rgb_{i}_top{rank}" for i in range(2) for rank in (1, 2, 3)]
    assert sorted(os.listdir(output)) == sorted(
        [f"{stem}.{suffix}" for stem in stems for suffix in ("npy", "png")]
        + ["summary.csv"]
    )
    explainer = keras.saving.load_model(root / "explainer.keras")
    expected = explainer.explain_outputs(images[:2], top_k=3)
    with open(output / "summary.csv") as file:
        reader = csv.DictReader(file)
        rows = list(reader)
    assert reader.fieldnames[:4] == ["file", "output", "rank", "class"]
    assert [row["output"] for row in rows] == stems
    for row in rows:
        index, rank = int(row["output"][4]), int(row["rank"])
        assert row["output"].endswith(f"_top{rank}")
        assert int(row["class"]) == expected["classes"][index, rank - 1]
        assert float(row["score"]) == pytest.approx(
            expected["scores"][index, rank - 1], abs=1e-5
        )
        assert row["flat"] == str(bool(expected["flat"][index, rank - 1]))
        np.testing.assert_allclose(
            np.load(output / f"{row['output']}.npy"),
            expected["maps"][index, rank - 1],
            atol=1e-5,
        )
        picture = np.asarray(Image.open(output / f"{row['output']}.png"))
        assert picture.shape == (IMAGE_SIZE, IMAGE_SIZE, 3)
    # Its files exist now: a second run refuses to replace them.
    before = snapshot(output)
    ptame(*argv).assert_user_error("exist")
    assert snapshot(output) == before


# Issue 24: --top-k above the number of classes, or with --classes, is refused.
@pytest.mark.parametrize(
    "extra, match",
    [
        (["--top-k", "5"], "--top-k must be at most the number of classes (4)"),
        (["--top-k", "2", "--classes", "1"], "either --classes or --top-k"),
    ],
)
def test_explain_bad_top_k(workspace, tmp_path, ptame, extra, match):
    root, _ = workspace
    output = tmp_path / "out"
    result = ptame(
        "explain", "--model", root / "explainer.keras", root / "images",
        "--output", output, *extra,
    )  # fmt: skip
    result.assert_user_error(match)
    assert not output.exists()


def test_explain_refuses_to_overwrite(workspace, tmp_path, ptame, snapshot):
    root, _ = workspace
    output = tmp_path / "out"
    argv = [
        "explain", "--model", root / "explainer.keras", root / "images",
        "--output", output, "--quiet",
    ]  # fmt: skip
    assert ptame(*argv).code == 0
    (output / "rgb_0.png").write_bytes(b"user's own file")
    before = snapshot(output)
    ptame(*argv).assert_user_error("exist")
    assert snapshot(output) == before
    assert ptame(*argv, "--overwrite").code == 0
    assert Image.open(output / "rgb_0.png").size == (IMAGE_SIZE, IMAGE_SIZE)


# Issue 22, case 3
@pytest.mark.parametrize("link", ["folder", "file"])
@pytest.mark.parametrize("overwrite", [False, True])
def test_explain_never_writes_through_a_link_in_output(
    workspace, tmp_path, ptame, snapshot, link, overwrite
):
    root, _ = workspace
    output, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    output.mkdir()
    elsewhere.mkdir()
    (elsewhere / "deep.npy").write_bytes(b"user's own")
    (elsewhere / "mine.png").write_bytes(b"user's own")
    if link == "folder":
        # The input tree holds nested/deep.png: its outputs go to out/nested/.
        path = output / "nested"
        os.symlink(elsewhere, path)
    else:
        path = output / "rgb_0.png"
        os.symlink(elsewhere / "mine.png", path)
    before = snapshot(elsewhere)
    argv = ["explain", "--model", root / "explainer.keras", root / "images"]
    argv += ["--output", output, "--quiet"] + ["--overwrite"] * overwrite
    ptame(*argv).assert_user_error(f"{str(path)!r} is a symbolic link")
    assert snapshot(elsewhere) == before
    assert sorted(os.listdir(output)) == [path.name]
    assert os.path.islink(path)


# Issue 22, case 4
def test_explain_never_writes_over_its_input_images(
    workspace, tmp_path, ptame, snapshot
):
    root, _ = workspace
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("rgb_0.png", "rgb_1.png"):
        (folder / name).write_bytes((root / "images" / name).read_bytes())
    before = snapshot(folder)
    result = ptame(
        "explain", "--model", root / "explainer.keras", folder,
        "--output", folder, "--overwrite", "--quiet",
    )  # fmt: skip
    result.assert_user_error("--output would write over an input")
    assert snapshot(folder) == before


# Issue 22, case 12
def test_explain_removes_the_staging_folders_of_killed_runs_only(
    workspace, tmp_path, ptame
):
    root, _ = workspace
    output = tmp_path / "out"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    stale = output / f".ptame-explain-{dead.pid}-{host}-abc123"
    live = output / f".ptame-explain-{os.getpid()}-{host}-def456"
    other_host = output / f".ptame-explain-{dead.pid}-elsewhere.example-ghi789"
    for folder in (stale, live, other_host):
        folder.mkdir(parents=True)
        (folder / "rgb_0.npy").write_bytes(b"half written")
    argv = ["explain", "--model", root / "explainer.keras", root / "images"]
    assert ptame(*argv, "--output", output, "--quiet").code == 0
    assert not stale.exists()
    assert live.exists() and other_host.exists()
    assert (output / "rgb_0.npy").exists()


@pytest.mark.parametrize(
    "case, match",
    [
        ("missing_model", "No such explainer file"),
        ("corrupted_model", "Cannot load"),
        ("truncated_model", "Cannot load"),
        ("not_an_explainer", "not a keras_ptame.PTAME"),
        ("fake_png", "Cannot read"),
        ("text_file", "Cannot read"),
        ("missing_image", "No such image file or folder"),
        ("empty_folder", "No image files"),
        ("class_out_of_range", "--classes must lie in"),
        ("classes_count", "one per image"),
        ("alpha", "--alpha"),
    ],
)
def test_explain_bad_inputs(workspace, tmp_path, ptame, case, match):
    root, _ = workspace
    model = root / "explainer.keras"
    inputs = [root / "images"]
    extra = []
    if case == "missing_model":
        model = tmp_path / "missing.keras"
    elif case == "corrupted_model":
        model = tmp_path / "corrupted.keras"
        model.write_bytes(os.urandom(2000))
    elif case == "truncated_model":
        model = tmp_path / "truncated.keras"
        data = (root / "explainer.keras").read_bytes()
        model.write_bytes(data[: len(data) // 2])
    elif case == "not_an_explainer":
        model = root / "classifier.keras"
    elif case == "fake_png":
        (tmp_path / "fake.png").write_text("this is text")
        inputs.append(tmp_path / "fake.png")
    elif case == "text_file":
        inputs = [root / "images" / "notes.txt"]
    elif case == "missing_image":
        inputs = [tmp_path / "missing.png"]
    elif case == "empty_folder":
        (tmp_path / "empty").mkdir()
        inputs = [tmp_path / "empty"]
    elif case == "class_out_of_range":
        extra = ["--classes", "9"]
    elif case == "classes_count":
        extra = ["--classes", "1", "2"]
    elif case == "alpha":
        extra = ["--alpha", "2"]
    model_bytes = model.read_bytes() if model.exists() else None
    output = tmp_path / "out"
    result = ptame("explain", "--model", model, *inputs, "--output", output, *extra)
    result.assert_user_error(match)
    assert not output.exists()
    if model_bytes is not None:
        assert model.read_bytes() == model_bytes


# Issue 22, case 8
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_explain_refuses_an_explainer_file_with_nan_weights(
    workspace, tmp_path, ptame, value
):
    root, _ = workspace
    explainer = keras.saving.load_model(root / "explainer.keras")
    bias = explainer.decoder.weights[1]
    bias.assign(np.full(bias.shape, value, "float32"))
    explainer.save(tmp_path / "bad.keras")
    result = ptame(
        "explain", "--model", tmp_path / "bad.keras", root / "images",
        "--output", tmp_path / "maps", "--quiet",
    )  # fmt: skip
    result.assert_user_error(f"{bias.path}' of the explainer")
    assert "bad.keras" in result.err
    assert not (tmp_path / "maps").exists()


# Issue 24: a grayscale explainer reads image files as one channel (a colour
# file as its luminance) and its maps are those of `explain` on them.
def test_a_grayscale_explainer_explains_image_files(tmp_path, ptame):
    explainer = tiny_explainer(channels=1)
    explainer.compile(optimizer=keras.optimizers.AdamW(1e-3, amsgrad=True))
    explainer.fit(random_images(8, channels=1), epochs=1, batch_size=4, verbose=0)
    explainer.save(tmp_path / "gray.keras")
    gray = random_images(2, seed=4, channels=1)
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(gray[0][..., 0], mode="L").save(folder / "a.png")
    Image.fromarray(np.repeat(gray[1], 3, axis=-1)).save(folder / "b.png")
    output = tmp_path / "out"
    result = ptame(
        "explain", "--model", tmp_path / "gray.keras", folder, "--output", output
    )  # fmt: skip
    assert result.code == 0, result.err
    assert "converted from mode RGB to L" in result.err
    expected = explainer.explain(gray)
    for index, name in enumerate(["a", "b"]):
        saliency = np.load(output / f"{name}.npy")
        np.testing.assert_allclose(saliency, expected[index], atol=1e-5)

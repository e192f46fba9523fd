import csv
import io

import numpy as np
import pytest

from keras_ptame.baselines import CentreMaps, RandomMaps
from keras_ptame.evaluation import EvaluationTable, evaluate, load_data
from tests.helpers.known_classifiers import (
    OBJECT,
    object_classifier,
    object_images,
    sigmoid,
)


class FixedMaps:
    """An explainer that returns given maps, to score known answers."""

    def __init__(self, maps):
        self.maps = np.asarray(maps, "float32")
        self.calls = []

    def explain(self, images, classes=None):
        self.calls.append(np.asarray(classes))
        return np.broadcast_to(self.maps, (len(images), *self.maps.shape)).copy()


def _data(count=4):
    images = object_images(count, background=0.0)
    masks = np.broadcast_to(OBJECT, (count, 8, 8)).copy()
    return images, masks


def test_table_rows_columns_and_known_values(tmp_path):
    images, masks = _data()
    explainers = {"perfect": FixedMaps(OBJECT), "inverted": FixedMaps(~OBJECT)}
    table = evaluate(
        explainers,
        object_classifier(),
        {"images": images, "masks": masks},
        noise=0.0,
        output_dir=tmp_path,
        verbose=0,
    )
    assert list(table.rows) == ["perfect", "inverted"]
    assert table.columns == [
        "AD100", "IC100", "AD50", "IC50", "AD15", "IC15",
        "MoRF10", "MoRF30", "MoRF50", "MoRF70", "MoRF",
        "LeRF10", "LeRF30", "LeRF50", "LeRF70", "LeRF",
        "pointing_game", "mass_inside", "flat", "misranked", "seconds",
    ]  # fmt: skip
    perfect, inverted = table.rows["perfect"], table.rows["inverted"]
    assert perfect["pointing_game"] == 100.0 and inverted["pointing_game"] == 0.0
    assert perfect["mass_inside"] == 100.0 and inverted["mass_inside"] == 0.0
    assert perfect["LeRF"] == pytest.approx(85.0) and inverted["MoRF"] == pytest.approx(
        85.0
    )
    assert perfect["MoRF30"] == 0.0
    assert perfect["flat"] == inverted["flat"] == 0.0
    # Without the object the class is gone, without the background kept.
    assert perfect["misranked"] == 0.0 and inverted["misranked"] == 100.0
    assert perfect["seconds"] >= 0.0
    # Every explainer is asked for the classifier's prediction (class 0).
    assert all((calls == 0).all() for calls in explainers["perfect"].calls)
    # Written as Markdown and CSV, the CSV at full precision.
    with open(tmp_path / "evaluation.csv") as file:
        rows = list(csv.DictReader(file))
    assert [row["method"] for row in rows] == ["perfect", "inverted"]
    assert float(rows[0]["mass_inside"]) == 100.0
    markdown = (tmp_path / "evaluation.md").read_text()
    assert "| perfect |" in markdown and "noisy linear imputation" in markdown
    assert "as the P-TAME authors' code selects them" in markdown
    assert "removed shares [0, .1, .3, .5, .7, 1]" in markdown
    assert "- `misranked`: maps the removal check finds misranked" in markdown


def test_without_ground_truth_and_with_curves_and_telea():
    pytest.importorskip("cv2")
    images, _ = _data()
    table = evaluate(
        {"centre": CentreMaps()},
        object_classifier(),
        images,
        curves=True,
        imputation="telea",
        percentages=(50,),
        fractions=(1.0,),
        verbose=0,
    )
    assert table.columns == [
        "AD100", "IC100", "MoRF50", "MoRF", "LeRF50", "LeRF",
        "deletion", "insertion", "flat", "misranked", "seconds",
    ]  # fmt: skip
    markdown = table.to_markdown()
    assert "Telea" in markdown and "removed shares [0, .5, 1]" in markdown
    assert all(0 <= table.rows["centre"][key] <= 1 for key in ("deletion", "insertion"))


def test_data_forms():
    images, masks = _data(3)
    labels = np.zeros(3, "int32")
    from_tuple = load_data((images, labels, masks))
    np.testing.assert_array_equal(from_tuple["masks"], masks)
    batches = [(images[:2], labels[:2], masks[:2]), (images[2:], labels[2:], masks[2:])]
    from_batches = load_data(iter(batches))
    np.testing.assert_array_equal(from_batches["images"], images)
    np.testing.assert_array_equal(from_batches["masks"], masks)
    boxes = load_data({"images": images, "boxes": np.tile([0, 0, 4, 4], (3, 1))})
    assert "boxes" in boxes and "masks" not in boxes
    overridden = load_data((images, labels, masks), boxes=np.zeros((3, 4)))
    assert "masks" not in overridden


def test_tf_dataset():
    tf = pytest.importorskip("tensorflow")
    images, masks = _data(4)
    dataset = tf.data.Dataset.from_tensor_slices((images, np.zeros(4), masks)).batch(3)
    table = evaluate(
        {"random": RandomMaps()},
        object_classifier(),
        dataset,
        percentages=(50,),
        verbose=0,
    )
    assert "pointing_game" in table.columns


def test_argument_errors():
    images, _ = _data(2)
    classifier = object_classifier()
    with pytest.raises(ValueError, match="explain"):
        evaluate({"bad": object()}, classifier, images, verbose=0)
    with pytest.raises(ValueError, match="non-empty"):
        evaluate({}, classifier, images, verbose=0)
    with pytest.raises(ValueError, match="imputation"):
        evaluate({"c": CentreMaps()}, classifier, images, imputation="zero", verbose=0)
    with pytest.raises(ValueError, match="maps"):
        evaluate({"c": FixedMaps(np.ones((4, 4)))}, classifier, images, verbose=0)


def test_table_formats():
    table = EvaluationTable(
        ["AD100", "seconds"], {"a": {"AD100": 1.234, "seconds": 2e-4}}
    )
    assert "| a | 1.23 | 0.0002 |" in table.to_markdown()
    assert list(csv.reader(io.StringIO(table.to_csv())))[1] == ["a", "1.234", "0.0002"]


class ClassAwareMaps:
    """The object for class 0; flat all-zero maps (no evidence) for class 1."""

    def explain(self, images, classes=None):
        maps = np.zeros((len(images), 8, 8), "float32")
        maps[np.asarray(classes) == 0] = OBJECT
        return maps


def test_per_class_rows_show_the_class_whose_maps_are_flat(tmp_path):
    # Objects are class 0; black images are class 1 (logit 1 against 0).
    images = np.concatenate([object_images(2, background=0.0), np.zeros((3, 8, 8, 3))])
    masks = np.broadcast_to(OBJECT, (5, 8, 8)).copy()
    table = evaluate(
        {"ptame": ClassAwareMaps()},
        object_classifier(),
        {"images": images, "masks": masks},
        noise=0.0,
        output_dir=tmp_path,
        verbose=0,
    )
    rows = table.per_class.rows
    assert list(rows) == ["ptame / class 0", "ptame / class 1"]
    assert [rows[name]["count"] for name in rows] == [2.0, 3.0]
    assert rows["ptame / class 0"]["flat"] == 0.0
    assert rows["ptame / class 1"]["flat"] == 100.0
    # The object's maps carry it; flat maps are never misranked.
    assert rows["ptame / class 0"]["misranked"] == 0.0
    assert rows["ptame / class 1"]["misranked"] == 0.0
    assert rows["ptame / class 0"]["pointing_game"] == 100.0
    # A flat map scores chance, the object's share of the image, never a hit.
    assert rows["ptame / class 1"]["pointing_game"] == pytest.approx(25.0)
    # The overall pointing game averages both: (2 * 100 + 3 * 25) / 5.
    assert table.rows["ptame"]["pointing_game"] == pytest.approx(55.0)
    markdown = (tmp_path / "evaluation_per_class.md").read_text()
    assert "| ptame / class 1 | 3 | 100.00 | 0.00 |" in markdown
    assert (tmp_path / "evaluation_per_class.csv").exists()


class ObjectOrBackground:
    """For class 0 the object, or (`misranked=True`) the background; for
    class 1 the object, or (`misranked=True`) flat all-zero maps."""

    def __init__(self, misranked=False):
        self.misranked = misranked

    def explain(self, images, classes=None):
        maps = np.zeros((len(images), 8, 8), "float32")
        maps[np.asarray(classes) == 0] = ~OBJECT if self.misranked else OBJECT
        if not self.misranked:
            maps[np.asarray(classes) == 1] = OBJECT
        return maps


def test_misranked_maps_are_counted_per_method_and_per_class(tmp_path):
    # Objects are class 0; black images are class 1, which needs nothing.
    images = np.concatenate([object_images(2, background=0.0), np.zeros((2, 8, 8, 3))])
    explainers = {"good": ObjectOrBackground(), "bad": ObjectOrBackground(True)}
    table = evaluate(
        explainers,
        object_classifier(),
        images,
        percentages=(50,),
        fractions=(1.0,),
        output_dir=tmp_path,
        verbose=0,
    )
    assert table.columns[-3:] == ["flat", "misranked", "seconds"]
    assert table.rows["good"]["flat"] == 0.0
    assert table.rows["bad"]["flat"] == table.rows["bad"]["misranked"] == 50.0
    rows = table.per_class.rows
    assert list(rows["good / class 0"])[:3] == ["count", "flat", "misranked"]
    # The object removed, the class is gone; the background removed, kept.
    assert rows["good / class 0"]["misranked"] == 0.0
    assert rows["bad / class 0"]["misranked"] == 100.0
    # On a black image either half removed leaves it black: the map does not
    # carry a class that needs nothing, whatever it shows.
    assert rows["good / class 1"]["misranked"] == 100.0
    assert table.rows["good"]["misranked"] == 50.0
    # A flat map is counted flat, never misranked.
    assert rows["bad / class 1"]["flat"] == 100.0
    assert rows["bad / class 1"]["misranked"] == 0.0
    with open(tmp_path / "evaluation_per_class.csv") as file:
        written = {row["method"]: row for row in csv.DictReader(file)}
    assert float(written["bad / class 0"]["misranked"]) == 100.0
    assert "`misranked`" in (tmp_path / "evaluation_per_class.md").read_text()


def test_per_class_rows_check_the_maps_themselves_when_not_given():
    from keras_ptame.evaluation.per_class import per_class_rows
    from keras_ptame.models.classifier_scores import as_backbone
    from tests.helpers.known_classifiers import object_maps

    images = object_images(4, background=0.0)
    maps = np.concatenate([object_maps(~OBJECT, 2), object_maps(OBJECT, 2)])
    classes = np.zeros(4, "int32")
    backbone = as_backbone(object_classifier())
    rows = per_class_rows(backbone, images, maps, classes, batch_size=3)
    assert rows[0]["misranked"] == 50.0
    given = per_class_rows(backbone, images, maps, classes, misranked=np.ones(4, bool))
    assert given[0]["misranked"] == 100.0


def test_flat_maps_of_a_ptame_are_scored_as_their_minmax_maps():
    from keras_ptame.metrics import confidence_metrics
    from tests.helpers import random_images, tiny_explainer

    # A threshold of 1 flags every map flat; their min-max maps still rank
    # pixels, and those are what the authors score.
    explainer = tiny_explainer(evidence_threshold=1.0)
    images = random_images(4)
    classifier = explainer.backbone
    options = dict(fractions=(1.0, 0.5), percentages=(50,), noise=0.0, verbose=0)
    table = evaluate({"ptame": explainer}, classifier, images, **options)
    row = table.rows["ptame"]
    assert row["flat"] == 100.0
    minmax = explainer.explain(images, zero_flat=False)
    assert np.all(minmax.max(axis=(1, 2)) > 0.5)
    expected = confidence_metrics(classifier, images, minmax, fractions=(1.0, 0.5))
    for key, value in expected.items():
        assert row[key] == pytest.approx(value, abs=1e-4)
    assert "scored as their min-max maps" in table.to_markdown()
    assert table.per_class.rows[next(iter(table.per_class.rows))]["flat"] == 100.0
    # By option, the zeros `explain` returns: AD scores the black image.
    zeros = evaluate(
        {"ptame": explainer}, classifier, images, flat_maps="zeros", **options
    )
    black = confidence_metrics(
        classifier, images, np.zeros(images.shape[:3]), fractions=(1.0,)
    )
    assert zeros.rows["ptame"]["AD100"] == pytest.approx(black["AD100"], abs=1e-4)
    assert zeros.rows["ptame"]["flat"] == 100.0
    assert "scored as the zeros" in zeros.to_markdown()
    with pytest.raises(ValueError, match="flat_maps"):
        evaluate({"ptame": explainer}, classifier, images, flat_maps="nan", verbose=0)
    with pytest.raises(ValueError, match="selection"):
        evaluate({"ptame": explainer}, classifier, images, selection="top", verbose=0)


def test_rank_selection_by_option():
    images, masks = _data()
    options = dict(noise=0.0, percentages=(10,), fractions=(0.15,), verbose=0)
    data = {"images": images, "masks": masks}
    classifier = object_classifier()
    # A binary map: the authors' threshold keeps none of its tied pixels.
    authors = evaluate({"perfect": FixedMaps(OBJECT)}, classifier, data, **options)
    rank = evaluate(
        {"perfect": FixedMaps(OBJECT)}, classifier, data, selection="rank", **options
    )
    # Object on black: Y = sigmoid(4 - 1); nothing kept: logit0 = 0; ten
    # object pixels kept: logit0 = 4 * 10 / 16.
    y = sigmoid(3.0)
    ad = authors.rows["perfect"]["AD15"]
    assert ad == pytest.approx(100 * (y - sigmoid(-1.0)) / y, rel=1e-4)
    ad = rank.rows["perfect"]["AD15"]
    assert ad == pytest.approx(100 * (y - sigmoid(1.5)) / y, rel=1e-4)
    assert "round(share * pixels)" in rank.to_markdown()


def test_class_rows_summarise_per_image_values_per_class():
    from keras_ptame.evaluation import class_rows

    classes = np.array([2, 0, 2, 2])
    values = {
        "flat": np.array([1.0, 0.0, 0.0, 1.0]),
        "evidence": np.array([4, 1, 2, 9]),
    }
    rows = class_rows(classes, values, statistics={"evidence": np.median})
    assert list(rows) == [0, 2]
    assert rows[2] == {"count": 3, "flat": pytest.approx(2 / 3), "evidence": 4.0}
    # Asked-for classes without images count 0 and have no values.
    rows = class_rows(classes, values, labels=range(3))
    assert rows[1] == {"count": 0, "flat": None, "evidence": None}
    assert rows[0]["evidence"] == 1.0


def _evaluate_into(output, **options):
    images, masks = _data()
    return evaluate(
        {"centre": CentreMaps()},
        object_classifier(),
        {"images": images, "masks": masks},
        output_dir=output,
        verbose=0,
        **options,
    )


# Issue 22, "no command deletes or overwrites a file it did not write"
def test_evaluate_refuses_a_user_s_table_unless_overwrite(tmp_path):
    output = tmp_path / "out"
    output.mkdir()
    (output / "evaluation_per_class.csv").write_text("user's own")
    (output / "notes.txt").write_text("user's own too")
    with pytest.raises(FileExistsError, match="evaluation_per_class.csv"):
        _evaluate_into(output)
    assert (output / "evaluation_per_class.csv").read_text() == "user's own"
    assert sorted(p.name for p in output.iterdir()) == [
        "evaluation_per_class.csv",
        "notes.txt",
    ]
    table = _evaluate_into(output, overwrite=True)
    assert "centre / class" in (output / "evaluation_per_class.csv").read_text()
    assert (output / "notes.txt").read_text() == "user's own too"
    # The table's own `save` follows the same rule.
    with pytest.raises(FileExistsError, match="evaluation.md"):
        table.save(output)
    assert len(table.save(output, overwrite=True)) == 4


# Issue 22, "no command deletes or overwrites a file it did not write"
def test_evaluate_never_writes_through_a_link_inside_its_output(tmp_path):
    output, outside = tmp_path / "out", tmp_path / "outside.md"
    output.mkdir()
    outside.write_text("user's own")
    (output / "evaluation.md").symlink_to(outside)
    for overwrite in (False, True):
        with pytest.raises(ValueError, match="evaluation.md' is a symbolic link"):
            _evaluate_into(output, overwrite=overwrite)
    assert outside.read_text() == "user's own"
    assert [p.name for p in output.iterdir()] == ["evaluation.md"]

"""Fixtures of the `ptame` command's tests: saved tiny models and a runner."""

import dataclasses

import keras
import pytest

from keras_ptame import cli
from tests.helpers import (
    files,
    random_images,
    tiny_classifier,
    tiny_explainer,
    tiny_feature_model,
)

Image = pytest.importorskip("PIL.Image")


@dataclasses.dataclass
class Result:
    """What one `ptame` run returned and printed."""

    code: int
    out: str
    err: str

    def assert_user_error(self, match):
        """Exit code 2, no traceback, `match` in the one line of the message."""
        assert self.code == 2, self.err
        assert "Traceback" not in self.err
        last = self.err.strip().splitlines()[-1]
        assert match in last, self.err
        assert last.startswith("ptame"), self.err


@pytest.fixture
def ptame(capsys):
    """Runs `ptame ARG...` in this process; returns a `Result`."""

    def run(*argv):
        code = cli.main([str(arg) for arg in argv])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture
def snapshot():
    """The files under a folder and their bytes, to check nothing changed."""
    return files.snapshot


@pytest.fixture(scope="package")
def workspace(tmp_path_factory):
    """Saved classifier, auxiliary network and explainer, and a folder of images."""
    root = tmp_path_factory.mktemp("cli")
    tiny_classifier().save(root / "classifier.keras")
    tiny_feature_model().save(root / "auxiliary.keras")
    explainer = tiny_explainer()
    explainer.compile(optimizer=keras.optimizers.AdamW(1e-3, amsgrad=True))
    explainer.fit(random_images(8, seed=5), epochs=1, batch_size=4, verbose=0)
    explainer.save(root / "explainer.keras")
    images = random_images(5, seed=6)
    (root / "images" / "nested").mkdir(parents=True)
    for index, image in enumerate(images[:4]):
        Image.fromarray(image).save(root / "images" / f"rgb_{index}.png")
    Image.fromarray(images[4]).save(root / "images" / "nested" / "deep.png")
    # Not an image extension: ignored when a folder is scanned.
    (root / "images" / "notes.txt").write_text("not an image")
    keras.backend.clear_session()
    return root, images

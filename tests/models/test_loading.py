"""`kp.load_explainer` and `load_keras_model`: damaged files named as such."""

import pytest

import keras_ptame as kp
from keras_ptame.models.loading import load_keras_model
from tests.helpers import tiny_classifier


# Issue 22, case 12
@pytest.mark.parametrize("kept", [0, 100, 3000])
def test_a_truncated_keras_file_is_called_incomplete_not_missing(tmp_path, kept):
    path = tmp_path / "classifier.keras"
    tiny_classifier().save(path)
    path.write_bytes(path.read_bytes()[:kept])
    for load in (kp.load_explainer, load_keras_model):
        with pytest.raises(ValueError, match="not a complete .keras file") as error:
            load(path)
        assert "not found" not in str(error.value)
        assert str(path) in str(error.value)

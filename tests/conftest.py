import keras
import pytest


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    keras.utils.set_random_seed(1337)
    yield
    keras.backend.clear_session()

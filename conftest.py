"""Fixtures for every test and doctest of the repository."""

import keras
import numpy as np
import pytest

import keras_anneal


@pytest.fixture(autouse=True)
def seeded():
    keras.utils.set_random_seed(1234)
    yield
    keras.backend.clear_session()


@pytest.fixture(autouse=True)
def doctest_globals(doctest_namespace):
    doctest_namespace.update(np=np, keras=keras, keras_anneal=keras_anneal)

"""The shipped WordNet triplets, loaded once for the data tests."""

import pytest

from circuitcut.data import kg


@pytest.fixture(scope="session")
def wordnet() -> list[kg.Triplet]:
    return kg.load_wordnet()

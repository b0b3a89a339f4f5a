"""Which storage URLs a study accepts, checked before anything is opened."""

from __future__ import annotations

import pytest

from trainlab.errors import ConfigError
from trainlab.studies import open_storage


@pytest.mark.parametrize("url", ["mysql://u:secret@db.example/studies", "mysql+pymysql://u@db/studies"])
def test_a_mysql_storage_is_refused_before_anything_opens(url: str) -> None:
    # planning a stage on several machines needs PostgreSQL's advisory lock: MySQL would fall
    # back to a file lock that no other machine sees
    with pytest.raises(ConfigError, match="MySQL is not supported") as caught:
        open_storage(url)
    assert "secret" not in str(caught.value)


def test_an_unknown_scheme_is_not_a_storage_url() -> None:
    with pytest.raises(ConfigError, match="not a storage URL"):
        open_storage("redis://host/0")

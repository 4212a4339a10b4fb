"""Fixtures shared by every test: paths to the reference data, a real mosquitto broker, a real PostgreSQL server, a
local Bot API server, and the store a test runs on.
The helpers behind them live in the `testsupport` package.

`--store=postgresql` puts the store of every test that takes the `database` fixture in PostgreSQL instead of a
SQLite file; such tests, and those on both engines through `store_location`, are marked `store`, so
`pytest --store=postgresql -m store` runs all of them on PostgreSQL."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.settings import DEFAULT_MODEL
from inference.dicom import read_series
from inference.limits import Limits
from inference.model import ModelCard
from inference.preprocess import grey_from_image, prepare_batch
from localbotapi import BotApiServer
from testsupport.broker import Mosquitto, free_port
from testsupport.postgres import INSTALL_HINT, PostgresServer, server_binaries

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
HEAD_CT = SHARED_DATA / "head-ct"
GE_SERIES = SHARED_DATA / "dicom" / "ge-head-ct"
CT_ICH = SHARED_DATA / "ct-ich"
STORE_FIXTURES = {"database", "store_location"}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--store", choices=("sqlite", "postgresql"), default="sqlite",
                     help="the engine of the store of tests that take the `database` fixture (default: sqlite)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "store: the test runs on a store (`--store` chooses its engine)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if STORE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.store)


@pytest.fixture(scope="session")
def head_ct_dir() -> Path:
    if not (HEAD_CT / "labels.csv").is_file():
        pytest.skip(f"reference slices not found at {HEAD_CT} (they live in ../shared beside the checkout)")
    return HEAD_CT


@pytest.fixture(scope="session")
def ct_ich_dir() -> Path:
    if not (CT_ICH / "labels.csv").is_file():
        pytest.skip(f"CT-ICH scans not found at {CT_ICH} (they live in ../shared beside the checkout)")
    return CT_ICH


@pytest.fixture(scope="session")
def ge_series_dir() -> Path:
    if not GE_SERIES.is_dir():
        pytest.skip(f"reference DICOM series not found at {GE_SERIES} (it lives in ../shared beside the checkout)")
    return GE_SERIES


@pytest.fixture(scope="session")
def real_slices(head_ct_dir: Path, ge_series_dir: Path) -> np.ndarray:
    """A batch of real slices for the shipped model: the first 24 head-ct pictures, then the 28 slices of the GE
    series through the model's window."""
    pictures = [grey_from_image(Image.open(path)) for path in sorted((head_ct_dir / "images").glob("*.png"))[:24]]
    (series,) = read_series([path.read_bytes() for path in sorted(ge_series_dir.iterdir())], Limits(), strict=False)
    window = ModelCard.beside(DEFAULT_MODEL).window
    batch, _ = prepare_batch(pictures + [item.grey(window) for item in series.slices])
    return batch


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    if not (shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists()):
        pytest.fail("mosquitto is not installed: `apt-get install mosquitto` (make test does this)")
    broker = Mosquitto(port=free_port(), workdir=tmp_path)
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the session; `postgres.fresh_database()` gives a test a database of its own."""
    if server_binaries() is None:
        pytest.fail(INSTALL_HINT)
    server = PostgresServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres: PostgresServer) -> str:
    """A new empty PostgreSQL database."""
    return postgres.fresh_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_location(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """Where a test's store lives, once on each engine: a SQLite file, then a new PostgreSQL database."""
    if request.param == "sqlite":
        return tmp_path / "hemowatch.db"
    return request.getfixturevalue("postgres").fresh_database()


@pytest.fixture
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """Where the test's store lives: a SQLite file in `tmp_path`, or with `--store=postgresql` a new PostgreSQL
    database. `stores.store_settings` and `stores.store_environment` point a service at it."""
    if request.config.getoption("store") == "sqlite":
        return tmp_path / "hemowatch.db"
    return request.getfixturevalue("postgres").fresh_database()


@pytest.fixture
async def bot_api() -> AsyncIterator[BotApiServer]:
    """A local Telegram Bot API server (localbotapi/); point TELEGRAM_API_URL at `bot_api.url`."""
    async with BotApiServer() as server:
        yield server

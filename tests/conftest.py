"""Test setup: 8 fake CPU devices, set before JAX starts (the brief's sharding convention)."""

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pathlib

import pytest

FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures" / "reference"
CURVES = pathlib.Path(__file__).resolve().parent / "fixtures" / "curves"


@pytest.fixture(scope="session")
def fixtures_dir() -> pathlib.Path:
    """The golden values from the official PyTorch code (tests/fixtures/reference, README there)."""
    return FIXTURES


@pytest.fixture(scope="session")
def curves_dir() -> pathlib.Path:
    """The official code's training curves (tests/fixtures/curves, README there)."""
    return CURVES

# Module-scoped fixtures that train or run processes (tens of seconds each). Under pytest-xdist each worker
# that runs a test needing one builds its own copy; the tests that share such a fixture are kept on one
# worker instead (`xdist_group`, honoured by `--dist loadgroup` in pytest.ini). Other tests spread as usual.
SHARED_RUN_FIXTURES = ("runs", "straight", "trained", "tiny_run", "single_device")


def pytest_collection_modifyitems(config, items):
    for item in items:
        for name in SHARED_RUN_FIXTURES:
            if name in getattr(item, "fixturenames", ()):
                item.add_marker(pytest.mark.xdist_group(f"{item.module.__name__}:{name}"))
                break

"""Test setup: 8 fake CPU devices, set before JAX starts (the brief's sharding convention)."""

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pathlib

import pytest

FIXTURES = pathlib.Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "reference"


@pytest.fixture(scope="session")
def fixtures_dir() -> pathlib.Path:
    """The directory of golden values from the official PyTorch code (../shared/fixtures/reference)."""
    if not FIXTURES.is_dir():
        pytest.fail(f"reference fixtures not found at {FIXTURES}; the repository expects ../shared beside it")
    return FIXTURES

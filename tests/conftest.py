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

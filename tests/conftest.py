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



@pytest.fixture(scope="session", autouse=True)
def shared_jax_compilation_cache(request, tmp_path_factory):
    """One persistent JAX compilation cache for the test session: both xdist workers and every child process
    the tests start use it, so a program compiled by one test (the tiny model's training step, say) is not
    compiled again by the next. It lives in pytest's base temporary directory (the workers' common parent
    under xdist), which pytest prunes after a few sessions."""
    import jax

    base = tmp_path_factory.getbasetemp()
    root = base.parent if hasattr(request.config, "workerinput") else base
    cache = str(root / "jax_cache")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = cache
    jax.config.update("jax_compilation_cache_dir", cache)
    yield cache

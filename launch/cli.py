"""What the absl entry points share: one error policy, one line per error, and quiet libraries.

Exit status of every launcher (`launch.main`, `solve`, `parity`, `report`, `sweep`, `benchmark`,
`local_multiprocess`, `slurm`, `tpu`):

  0    done (a check: every item passed)
  1    the run or an input failed: a config value, a data/puzzle/fixture file, a checkpoint, the workdir
       (in use by another run, not writable, disk full), a diverged run
  2    usage: an unknown flag or config key, a missing or extra argument, a malformed flag value or
       environment variable
  3    the command ran and its answer is "no": parity outside tolerance, puzzles left unsolved
  130  interrupted (Ctrl-C) where no checkpoint could be written first (`launch.main` checkpoints and
       exits 0 on SIGTERM/SIGINT)

An error is one line on stderr (`error: ...` or `usage error: ...`), the last line of the output;
`--traceback` shows the full story instead. Library logging (Orbax, TensorFlow Datasets, etils, asyncio's
"Task exception was never retrieved", JAX's backend probes) is hidden below CRITICAL by default, as are
the "Event loop is closed" tracebacks that TensorStore's threads print after a failed save or restore and
the "coroutine was never awaited" warnings of the abandoned restore; all come back with absl's
`--verbosity` (e.g. `--verbosity=0` for INFO).
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from typing import Callable

from absl import app, flags
from ml_collections import config_flags

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NEGATIVE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

flags.DEFINE_bool("traceback", False, "Show the full traceback of an error instead of its one line.")

# Libraries whose log records are hidden below CRITICAL unless --verbosity is given (matched on the
# logger name, and for absl-logging libraries on the source path).
QUIET_LOGGERS = ("asyncio", "orbax", "tensorflow_datasets", "etils", "jax._src.xla_bridge", "jax._src.distributed")
QUIET_PATHS = tuple(f"{os.sep}{p}{os.sep}" for p in ("orbax", "tensorflow_datasets", "etils", "array_record"))


def one_line(e: BaseException) -> str:
    """The message of `e` on one line: the final message of a config error (config_flags embeds
    tracebacks and escaped newlines), an OSError as "<reason>: <path>"."""
    if isinstance(e, OSError) and e.strerror:
        paths = [p for p in (e.filename, getattr(e, "filename2", None)) if p is not None]
        return f"{e.strerror}: {' -> '.join(map(str, paths))}" if paths else e.strerror
    text = " ".join(str(e).replace("\\n", " ").split()).strip("'\"")
    for marker in ("ValueError: ", "KeyError: ", "AttributeError: ", "FileNotFoundError: ", "TypeError: "):
        if marker in text:
            text = text.rsplit(marker, 1)[1]
    return text.replace("\\'", "'").replace('\\"', '"')


def expected_errors() -> tuple[type[BaseException], ...]:
    """The failures printed as one line (exit 1): bad values and files (ValueError), paths and disks
    (OSError), and recur_jax's run failures (`recur_jax.io.errors.RunError`)."""
    from recur_jax.io.errors import RunError

    return ValueError, OSError, RunError


class _QuietLibraries(logging.Filter):
    """Drops library records below CRITICAL (see QUIET_LOGGERS / QUIET_PATHS)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.CRITICAL:
            return True
        if any(record.name == n or record.name.startswith(n + ".") for n in QUIET_LOGGERS):
            return False
        return not any(p in (record.pathname or "") for p in QUIET_PATHS)


_FILTER = _QuietLibraries()


def quiet_libraries(verbose: bool = False) -> None:
    """Hides library logging below CRITICAL (handlers of the root logger, absl's included), unless
    `verbose`. Idempotent."""
    if verbose:
        return
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)  # its records may be emitted at exit
    handlers = list(logging.getLogger().handlers)
    try:
        from absl import logging as absl_logging

        handlers.append(absl_logging.get_absl_handler())
    except ImportError:  # pragma: no cover - absl is a dependency
        pass
    for h in handlers:
        if _FILTER not in h.filters:
            h.addFilter(_FILTER)
    _quiet_closed_event_loops()
    warnings.filterwarnings("ignore", message=r"coroutine .* was never awaited", category=RuntimeWarning)
    warnings.filterwarnings("ignore", message=r"Enable tracemalloc", category=RuntimeWarning)


def _quiet_closed_event_loops() -> None:
    """After an Orbax save or restore fails, TensorStore's threads still complete their other reads and
    writes and call `call_soon_threadsafe` on the event loop that Orbax has already closed; each call
    raises "RuntimeError: Event loop is closed" in that foreign thread, which prints a traceback
    (hundreds, interleaved, after the one line that says what failed). A callback can never run on a
    closed loop, so on a closed loop the call is dropped instead of raising. Idempotent."""
    import asyncio

    original = asyncio.BaseEventLoop.call_soon_threadsafe
    if getattr(original, "_recur_jax_quiet", False):
        return

    def call_soon_threadsafe(self, callback, *args, context=None):
        if self.is_closed():
            return None
        return original(self, callback, *args, context=context)

    call_soon_threadsafe._recur_jax_quiet = True
    asyncio.BaseEventLoop.call_soon_threadsafe = call_soon_threadsafe


def _verbose() -> bool:
    try:
        return bool(flags.FLAGS["verbosity"].present) or bool(flags.FLAGS["v"].present)
    except (KeyError, flags.UnparsedFlagAccessError):
        return False


def _want_traceback(argv) -> bool:
    try:
        return bool(flags.FLAGS.traceback)
    except flags.UnparsedFlagAccessError:
        return "--traceback" in argv


def fail(message: str, status: int = EXIT_FAILED) -> int:
    """Prints `error: message` on stderr; returns `status` (for `return cli.fail(...)` in a main)."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    return status


def guarded(main: Callable[[list[str]], int | None]) -> Callable[[list[str]], int]:
    """`main` under the error policy of this module: usage errors -> 2, expected failures -> 1 (one
    line each), Ctrl-C -> 130; anything else (a bug) keeps its traceback."""

    def wrapped(argv: list[str]) -> int:
        quiet_libraries(_verbose())
        try:
            return main(argv) or 0
        except app.UsageError as e:
            if _want_traceback(argv):
                raise
            print(f"usage error: {one_line(e)} (--help lists the flags)", file=sys.stderr, flush=True)
            return EXIT_USAGE
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr, flush=True)
            return EXIT_INTERRUPTED
        except expected_errors() as e:
            if _want_traceback(argv):
                raise
            return fail(one_line(e))

    return wrapped


def run(main: Callable[[list[str]], int | None]) -> None:
    """`absl.app.run(main)` with this module's flag parsing and error policy (never returns)."""
    app.run(guarded(main), flags_parser=parse_flags)


def parse_flags(argv):
    """absl flag parsing with errors (a missing config file, bad args) printed as one line and exit status
    2; `--traceback` shows the full error instead."""
    try:
        return flags.FLAGS(argv)
    except (flags.Error, AttributeError, KeyError, ValueError, TypeError, OSError) as e:
        if "--traceback" in argv:
            raise
        print(f"usage error: invalid flags: {one_line(e)}", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def define_config(default: str) -> None:
    """Defines the locked `--config=FILE[:ARGS]` flag with `default` (a file under experiments/ plus args);
    a config that fails to load here (the default, or the command line's overrides) exits with one line."""
    import experiments

    try:
        config_flags.DEFINE_config_file("config", os.path.join(os.path.dirname(experiments.__file__), default),
                                        "Experiment config file[:args].", lock_config=True)
    except (AttributeError, KeyError, ValueError, TypeError, OSError, flags.Error) as e:
        if "--traceback" in sys.argv:
            raise
        print(f"usage error: invalid --config or override: {one_line(e)}", file=sys.stderr)
        sys.exit(EXIT_USAGE)

"""What the absl entry points share: one-line error messages for config and flag errors."""

import os
import sys

from absl import flags
from ml_collections import config_flags

import experiments


def one_line(e: BaseException) -> str:
    """The final message of a config error (config_flags embeds tracebacks and escaped newlines)."""
    text = " ".join(str(e).replace("\\n", " ").split()).strip("'\"")
    for marker in ("ValueError: ", "KeyError: ", "AttributeError: ", "FileNotFoundError: ", "TypeError: "):
        if marker in text:
            text = text.rsplit(marker, 1)[1]
    return text


def parse_flags(argv):
    """absl flag parsing (`app.run(..., flags_parser=parse_flags)`) with errors (a missing config file,
    bad args) printed as one line and exit status 2; `--traceback` shows the full error instead."""
    try:
        return flags.FLAGS(argv)
    except (flags.Error, AttributeError, KeyError, ValueError, TypeError, OSError) as e:
        if "--traceback" in argv:
            raise
        print(f"error: invalid flags: {one_line(e)}", file=sys.stderr)
        sys.exit(2)


def define_config(default: str) -> None:
    """Defines the locked `--config=FILE[:ARGS]` flag with `default` (a file under experiments/ plus args);
    a config that fails to load here (the default, or the command line's overrides) exits with one line."""
    try:
        config_flags.DEFINE_config_file("config", os.path.join(os.path.dirname(experiments.__file__), default),
                                        "Experiment config file[:args].", lock_config=True)
    except (AttributeError, KeyError, ValueError, TypeError, OSError, flags.Error) as e:
        if "--traceback" in sys.argv:
            raise
        print(f"error: invalid --config or override: {one_line(e)}", file=sys.stderr)
        sys.exit(2)

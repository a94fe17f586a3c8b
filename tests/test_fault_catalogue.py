"""The fault catalogue: bad inputs and faults, each driven here with its documented outcome.

Every case is one function registered with `@case(kind, what)`; the test below runs it. A case passes
when the bad input gives one clear line naming the field, file or line and what was expected (never a
traceback, never an unpickling hint) or when the fault is recovered from with nothing lost. Cases that
need a whole training run live in tests/test_faults.py and are listed in `ELSEWHERE` (checked to
exist). docs/fault_catalogue.md is this module's `markdown()` under a title; a test keeps them equal:

    python tests/test_fault_catalogue.py > /tmp/catalogue.md    # the list, regenerated
"""

from __future__ import annotations

import errno
import json
import os
import pathlib
import pickle
import re
import socket
import subprocess
import sys

import numpy as np
import pytest

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent
CASES: dict[str, tuple[str, str, object]] = {}  # name -> (kind, what, function(tmp_path))


def case(kind: str, what: str):
    """Registers a case: `kind` groups the catalogue, `what` is its one line."""
    def register(fn):
        assert fn.__name__ not in CASES, fn.__name__
        CASES[fn.__name__] = (kind, what, fn)
        return fn
    return register


def one_line_error(exc_info, *needles: str) -> str:
    """The exception's message: one line, containing every needle, no unpickling hint."""
    msg = str(exc_info.value)
    assert "\n" not in msg.strip(), msg
    assert "allow_pickle" not in msg, msg
    for n in needles:
        assert n in msg, (n, msg)
    return msg


# ------------------------------------------------------------------------------------------------
# Config values: refused by run.config.validate before any data is built or any file is written
# ------------------------------------------------------------------------------------------------

BAD_VALUES = [  # (field, value, text the message must contain)
    ("optim.lr", float("nan"), "config.optim.lr=nan"),
    ("optim.lr", float("inf"), "config.optim.lr=inf"),
    ("optim.lr", -1.0, "config.optim.lr"),
    ("optim.weight_decay", float("nan"), "config.optim.weight_decay=nan"),
    ("optim.weight_decay", -0.1, "config.optim.weight_decay"),
    ("optim.beta1", float("nan"), "config.optim.beta1"),
    ("optim.beta1", 1.5, "config.optim.beta1"),
    ("optim.beta2", float("nan"), "config.optim.beta2"),
    ("optim.beta2", -0.5, "config.optim.beta2"),
    ("optim.lr_warmup_steps", -1, "config.optim.lr_warmup_steps"),
    ("optim.lr_min_ratio", float("nan"), "config.optim.lr_min_ratio"),
    ("optim.lr_min_ratio", 1.5, "config.optim.lr_min_ratio"),
    ("optim.puzzle_emb_lr", float("nan"), "config.optim.puzzle_emb_lr"),
    ("optim.puzzle_emb_weight_decay", float("inf"), "config.optim.puzzle_emb_weight_decay"),
    ("ema_rate", float("nan"), "config.ema_rate"),
    ("ema_rate", 1.5, "config.ema_rate"),
    ("total_steps", 0, "config.total_steps"),
    ("total_steps", -5, "config.total_steps"),
    ("global_batch_size", 0, "config.global_batch_size"),
    ("log_every", 0, "config.log_every"),
    ("eval_every", -1, "config.eval_every"),
    ("checkpoint_every", -1, "config.checkpoint_every"),
    ("model.H_cycles", 0, "config.model.H_cycles"),
    ("model.L_cycles", 0, "config.model.L_cycles"),
    ("model.halt_max_steps", 0, "config.model.halt_max_steps"),
    ("model.hidden_size", 0, "config.model.hidden_size"),
    ("model.rms_norm_eps", float("nan"), "config.model.rms_norm_eps"),
    ("model.halt_exploration_prob", float("nan"), "config.model.halt_exploration_prob"),
    ("model.halt_exploration_prob", 1.5, "config.model.halt_exploration_prob"),
    ("data.num_train", 0, "config.data.num_train"),
    ("eval.halt_max_steps", -1, "config.eval.halt_max_steps"),
    ("eval.max_examples", -1, "config.eval.max_examples"),
]


def _config_case(field, value, needle):
    def fn(tmp_path):
        from recur_jax.run import config as run_config
        from test_train import tiny

        c = tiny()
        node = c
        *path, last = field.split(".")
        for p in path:
            node = node[p]
        node[last] = value
        with pytest.raises(ValueError) as e:
            run_config.validate(c, 8)
        one_line_error(e, field)
    fn.__name__ = f"config_{field.replace('.', '_')}_{str(value).replace('-', 'neg').replace('.', '_')}"
    return fn


for _f, _v, _n in BAD_VALUES:
    case("config value", f"`{_f}={_v}`: refused before data or files, naming the field")(_config_case(_f, _v, _n))


# ------------------------------------------------------------------------------------------------
# metrics.jsonl: damaged lines are data (dropped with a warning naming file and line), never a crash
# ------------------------------------------------------------------------------------------------

GOOD = json.dumps({"kind": "train", "step": 1, "loss": 1.0})
BAD_LINES = {
    "metrics_line_is_a_number": (b"42", "integer 'step'"),
    "metrics_line_is_a_list": (b"[1, 2]", "integer 'step'"),
    "metrics_line_is_null": (b"null", "integer 'step'"),
    "metrics_line_not_utf8": (b"\xff\xfe{\"kind\": \"train\"}", "UTF-8"),
    "metrics_line_torn": (b'{"kind": "train", "st', "complete JSON"),
    "metrics_line_without_step": (b'{"kind": "train"}', "integer 'step'"),
    "metrics_line_step_is_text": (b'{"kind": "train", "step": "5"}', "integer 'step'"),
    "metrics_line_step_is_bool": (b'{"kind": "eval", "step": true}', "integer 'step'"),
    "metrics_line_kind_missing": (b'{"step": 1}', "string 'kind'"),
    "metrics_line_nan_literal_object": (b'{"kind": "train", "step": 1, "loss": NaN', "complete JSON"),
}


def _metrics_case(name, raw, needle):
    def fn(tmp_path, capsys):
        from recur_jax.run.runlog import RunLog

        path = tmp_path / "metrics.jsonl"
        path.write_bytes(GOOD.encode() + b"\n" + raw + b"\n" + GOOD.replace('"step": 1', '"step": 2').encode() + b"\n")
        log = RunLog(str(tmp_path), restored_step=5, active=True)
        log.close()
        out = capsys.readouterr().out
        assert f"{path}:2: dropping a line that is not" in out and needle in out, out
        lines = path.read_text().splitlines()
        assert [json.loads(ln)["step"] for ln in lines] == [1, 2]  # the good lines are kept, in order
    fn.__name__ = name
    return fn


for _name, (_raw, _needle) in BAD_LINES.items():
    case("run files", f"metrics.jsonl with {_name.removeprefix('metrics_line_').replace('_', ' ')}: the line is "
                      f"dropped with a warning naming file and line; resume continues")(
        _metrics_case(_name, _raw, _needle))


# ------------------------------------------------------------------------------------------------
# run.json / summary.json / sweep.json
# ------------------------------------------------------------------------------------------------

RUN_JSON = {
    "run_json_not_json": b"{not json",
    "run_json_a_list": b"[1, 2, 3]",
    "run_json_without_config": b'{"seed": 0}',
    "run_json_config_not_object": b'{"config": 5}',
    "run_json_not_utf8": b"\xff\xfe\x00",
    "run_json_empty": b"",
    "run_json_deeply_nested": b"[" * 5000 + b"]" * 5000,
}


def _run_json_case(name, raw):
    def fn(tmp_path, capsys):
        from recur_jax.run import checkpoint, workdir

        (tmp_path / "run.json").write_bytes(raw)
        saved, source = workdir.recorded_config(str(tmp_path))  # training: warn, fall back to the checkpoint
        assert saved is None and "unreadable" in source
        assert "run.json cannot be read" in capsys.readouterr().out
        with pytest.raises((ValueError, OSError)) as e:  # evaluation / solving: one line naming the file
            checkpoint.read_run_record(str(tmp_path))
        one_line_error(e, "run.json")
        assert (tmp_path / "run.json").read_bytes() == raw  # untouched
    fn.__name__ = name
    return fn


for _name, _raw in RUN_JSON.items():
    case("run files", f"run.json that is {_name.removeprefix('run_json_').replace('_', ' ')}: training warns and "
                      f"uses the checkpoint's record; readers give one line naming the file")(
        _run_json_case(_name, _raw))


def _sweep_dir(tmp_path, summary: bytes | None, manifest: bytes | None = None):
    run = tmp_path / "a=1,seed=0"
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"config": {"a": 1, "seed": 0}}))
    if summary is not None:
        (run / "summary.json").write_bytes(summary)
    if manifest is not None:
        (tmp_path / "sweep.json").write_bytes(manifest)
    return run


@case("run files", "summary.json that is not JSON: the sweep counts the run unfinished (it resumes) and the "
                   "report skips it with a warning")
def summary_json_torn(tmp_path, capsys):
    from recur_jax.study import results, sweep

    run = _sweep_dir(tmp_path, b'{"step": 4, "ev')
    assert not sweep.Run(index=0, name=run.name, workdir=str(run), overrides={}, argv=()).finished()
    keys, rows = results.table(str(tmp_path))
    assert rows[0]["unfinished"] == 1 and "summary.json" in capsys.readouterr().out


@case("run files", "summary.json that is a JSON list: unfinished, with a warning")
def summary_json_a_list(tmp_path, capsys):
    from recur_jax.study import results, sweep

    run = _sweep_dir(tmp_path, b"[1]")
    assert not sweep.Run(index=0, name=run.name, workdir=str(run), overrides={}, argv=()).finished()
    assert results.table(str(tmp_path))[1][0]["unfinished"] == 1


@case("run files", "summary.json whose eval is not an object: unfinished, with a warning naming the field")
def summary_json_eval_not_object(tmp_path, capsys):
    from recur_jax.study import results

    _sweep_dir(tmp_path, b'{"step": 4, "eval": 3}')
    assert results.table(str(tmp_path))[1][0]["unfinished"] == 1
    assert "'eval' (dict)" in capsys.readouterr().out


@case("run files", "a run directory whose run.json is damaged: the report skips it with a warning")
def report_run_json_damaged(tmp_path, capsys):
    from recur_jax.study import results

    _sweep_dir(tmp_path, None)
    bad = tmp_path / "a=2,seed=0"
    bad.mkdir()
    (bad / "run.json").write_bytes(b"\x00\x01")
    keys, rows = results.table(str(tmp_path))
    assert len(rows) == 1 and "a=2,seed=0" in capsys.readouterr().out


def _manifest_case(name, raw, needle):
    def fn(tmp_path):
        from recur_jax.study import results

        _sweep_dir(tmp_path, b'{"step": 1, "eval": {}}', raw)
        with pytest.raises(ValueError) as e:
            results.table(str(tmp_path))
        one_line_error(e, "sweep.json", needle)
    fn.__name__ = name
    return fn


for _name, _raw, _needle in [("sweep_json_runs_not_list", b'{"runs": 3}', "'runs' (list)"),
                             ("sweep_json_run_not_object", b'{"runs": [5]}', "runs[0]"),
                             ("sweep_json_run_without_name", b'{"runs": [{"overrides": {}}]}', "runs[0]"),
                             ("sweep_json_not_json", b"{", "sweep.json")]:
    case("run files", f"sweep.json with {_name.removeprefix('sweep_json_').replace('_', ' ')}: the report refuses "
                      f"with one line naming the file")(_manifest_case(_name, _raw, _needle))


# ------------------------------------------------------------------------------------------------
# Puzzle files (launch.solve and the data readers)
# ------------------------------------------------------------------------------------------------

PUZZLE = "4.....8.5.3..........7......2.....6.....8.4......1.......6.3.7.5..2.....1.4......"


@case("puzzle input", "a file name that does not exist: 'no such file', not read as a 35-character puzzle")
def solve_missing_file(tmp_path):
    from recur_jax.inference.solve import SolveError, read_puzzles

    with pytest.raises(SolveError) as e:
        read_puzzles(str(tmp_path / "puzzles_that_do_not_exist.txt"))
    one_line_error(e, "no such file")


@case("puzzle input", "a puzzle of 80 characters: names the length and what was expected")
def solve_short_puzzle(tmp_path):
    from recur_jax.inference.solve import SolveError, read_puzzles

    with pytest.raises(SolveError) as e:
        read_puzzles(PUZZLE[:-1])
    one_line_error(e, "80 characters", "expected 81")


@case("puzzle input", "a puzzle with a letter: names the character")
def solve_bad_character(tmp_path):
    from recur_jax.inference.solve import SolveError, read_puzzles

    with pytest.raises(SolveError) as e:
        read_puzzles(PUZZLE[:-1] + "x")
    one_line_error(e, "'x'")


@case("puzzle input", "a puzzle file with a UTF-8 byte-order mark: read (as launch.main reads CSVs)")
def solve_bom_file(tmp_path):
    from recur_jax.inference.solve import read_puzzles

    f = tmp_path / "p.txt"
    f.write_bytes(b"\xef\xbb\xbf" + PUZZLE.encode() + b"\n")
    assert read_puzzles(str(f)).shape == (1, 81)


@case("puzzle input", "a Sudoku-Extreme CSV with a byte-order mark: read as a CSV")
def solve_bom_csv(tmp_path):
    from recur_jax.inference.solve import read_puzzles
    from recur_jax.tasks.sudoku import generator

    f = tmp_path / "p.csv"
    data = generator.generate(2, seed=0, tier="easy") if hasattr(generator, "generate") else None
    if data is None:
        pytest.skip("no generator")
    rows = ["source,question,answer,rating"] + [
        f"g,{''.join(map(str, q)).replace('0', '.')},{''.join(map(str, a))},0" for q, a in zip(data.questions, data.answers)]
    f.write_bytes(b"\xef\xbb\xbf" + "\n".join(rows).encode() + b"\n")
    assert read_puzzles(str(f)).shape == (2, 81)


@case("puzzle input", "a puzzle file that is not UTF-8: names the file and the byte")
def solve_not_utf8(tmp_path):
    from recur_jax.inference.solve import SolveError, read_puzzles

    f = tmp_path / "p.txt"
    f.write_bytes(b"\xff\xfe" + PUZZLE.encode())
    with pytest.raises(SolveError) as e:
        read_puzzles(str(f))
    one_line_error(e, str(f), "not UTF-8")


@case("puzzle input", "a puzzle file whose third line is short: names file:line")
def solve_bad_line(tmp_path):
    from recur_jax.inference.solve import SolveError, read_puzzles

    f = tmp_path / "p.txt"
    f.write_text(f"{PUZZLE}\n{PUZZLE}\n{PUZZLE[:40]}\n")
    with pytest.raises(SolveError) as e:
        read_puzzles(str(f))
    one_line_error(e, f"{f}:3")


@case("puzzle input", "an empty puzzle file: zero puzzles (launch.solve then says 'no puzzles in FILE')")
def solve_empty_file(tmp_path):
    from recur_jax.inference.solve import read_puzzles

    f = tmp_path / "p.txt"
    f.write_text("\n\n")
    assert read_puzzles(str(f)).shape == (0, 81)


SUDOKU_CSV = {  # name -> (file text, needle)
    "sudoku_csv_empty": ("", "empty file"),
    "sudoku_csv_wrong_header": ("q,a\n", "header"),
    "sudoku_csv_wrong_columns": ("source,question,answer,rating\ng,1,2\n", ":2"),
    "sudoku_csv_short_question": (f"source,question,answer,rating\ng,{PUZZLE[:50]},{'1' * 81},0\n", ":2"),
    "sudoku_csv_rating_nan": (f"source,question,answer,rating\ng,{PUZZLE},{'1' * 81},nan\n", ":2"),
    "sudoku_csv_bad_quoting": ('source,question,answer,rating\ng,"abc,def\n', "CSV"),
    "sudoku_csv_not_utf8": ("source,question,answer,rating\ng,\udcff" + PUZZLE[1:] + f",{'1' * 81},0\n", ":2"),
}


def _read_sudoku(path):
    from recur_jax.tasks import sudoku

    return sudoku.read_csv(path)


def _read_maze(path):
    from recur_jax.tasks.maze import data as maze

    return maze.read_csv(path)


def _csv_case(name, reader, text, needle):
    """A CSV `text` (lone surrogates become the bytes they escape) that `reader` must refuse in one line."""
    def fn(tmp_path):
        f = tmp_path / "data.csv"
        f.write_bytes(text.encode("utf-8", "surrogateescape"))
        with pytest.raises(ValueError) as e:
            reader(str(f))
        one_line_error(e, str(f), needle)
    fn.__name__ = name
    return fn


MAZE_CSV = {
    "maze_csv_no_header": ("x,y\n", "header"),
    "maze_csv_short_question": ("source,question,answer,rating\ng,###,###,0\n", ":2"),
    "maze_csv_not_utf8": ("question,answer\n\udcff\udcfe,a\n", "not UTF-8"),
}

for _table, _reader, _what in ((SUDOKU_CSV, _read_sudoku, "Sudoku CSV"), (MAZE_CSV, _read_maze, "maze CSV")):
    for _name, (_text, _needle) in _table.items():
        case("data files", f"{_what}: {_name.split('_csv_')[1].replace('_', ' ')}: one line naming the file "
                           f"(and line)")(_csv_case(_name, _reader, _text, _needle))


ARC_JSON = {
    "arc_task_not_json": (b"{", "arc"),
    "arc_task_a_list": (b"[]", "arc"),
    "arc_task_grid_value_11": (json.dumps({"train": [{"input": [[11]], "output": [[1]]}],
                                           "test": [{"input": [[1]], "output": [[1]]}]}).encode(), "arc"),
    "arc_task_ragged_grid": (json.dumps({"train": [{"input": [[1, 2], [1]], "output": [[1]]}],
                                         "test": [{"input": [[1]], "output": [[1]]}]}).encode(), "arc"),
    "arc_task_no_train": (json.dumps({"test": [{"input": [[1]], "output": [[1]]}]}).encode(), "arc"),
}


def _arc_case(name, raw, needle):
    def fn(tmp_path):
        from recur_jax.tasks.arc import data as arc

        folder = tmp_path / "arc" / "training"
        folder.mkdir(parents=True)
        (folder / "0001.json").write_bytes(raw)
        with pytest.raises(ValueError) as e:
            arc.parse_task(arc.read_json(str(folder / "0001.json")), "0001", str(folder / "0001.json"), True)
        one_line_error(e, "0001")
    fn.__name__ = name
    return fn


for _name, (_raw, _needle) in ARC_JSON.items():
    case("data files", f"ARC task: {_name.removeprefix('arc_task_').replace('_', ' ')}: one line naming the "
                       f"task file")(_arc_case(_name, _raw, _needle))


# ------------------------------------------------------------------------------------------------
# Fixtures and curves (launch.parity)
# ------------------------------------------------------------------------------------------------

def _fixture_error(path) -> str:
    from recur_jax.parity import fixtures

    with pytest.raises((ValueError, KeyError, OSError)) as e:
        fixtures.run_fixture(str(path))
    return one_line_error(e, str(path))


@case("fixtures", "a text file given as a fixture: 'not a golden-value fixture', no allow_pickle advice")
def fixture_text_file(tmp_path):
    f = tmp_path / "notes.npz"
    f.write_text("hello\n")
    assert "not a golden-value fixture" in _fixture_error(f)


@case("fixtures", "a pickle given as a fixture: refused without unpickling")
def fixture_pickle(tmp_path):
    f = tmp_path / "evil.npz"
    np.save(f.with_suffix(".npy"), np.array([{"a": 1}], dtype=object), allow_pickle=True)
    f.write_bytes(pickle.dumps({"os": "system"}))
    assert "not a golden-value fixture" in _fixture_error(f)


@case("fixtures", "an .npz holding an object array: refused without unpickling")
def fixture_object_array(tmp_path):
    f = tmp_path / "obj.npz"
    np.savez(f, config=np.array([{"a": 1}], dtype=object))
    assert "without unpickling" in _fixture_error(f)


@case("fixtures", "a single .npy given as a fixture: names what was expected")
def fixture_npy(tmp_path):
    f = tmp_path / "one.npy"
    np.save(f, np.zeros(3))
    assert ".npz archive" in _fixture_error(f)


@case("fixtures", "a truncated .npz: one line")
def fixture_truncated(tmp_path, fixtures_dir):
    src = sorted(fixtures_dir.glob("*.npz"))[0]
    f = tmp_path / "torn.npz"
    f.write_bytes(src.read_bytes()[:5000])
    _fixture_error(f)


@case("fixtures", "an .npz of other arrays (no config, no steps): names the missing entry")
def fixture_other_arrays(tmp_path):
    f = tmp_path / "other.npz"
    np.savez(f, x=np.zeros(3))
    _fixture_error(f)


@case("fixtures", "a fixture whose batch has the wrong shape: names the array and the shapes")
def fixture_wrong_shaped_batch(tmp_path, fixtures_dir):
    src = sorted(fixtures_dir.glob("trm_mlp*.npz"))[0]
    with np.load(src, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    key = next(k for k in sorted(data) if k.endswith("inputs"))
    data[key] = data[key][:, :-3]
    f = tmp_path / "shape.npz"
    np.savez(f, **data)
    assert key in _fixture_error(f)


@case("fixtures", "a fixture whose weight has the wrong shape: names the parameter")
def fixture_wrong_shaped_weight(tmp_path, fixtures_dir):
    src = sorted(fixtures_dir.glob("trm_mlp*.npz"))[0]
    with np.load(src, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    key = next(k for k in sorted(data) if k.startswith("param/") and data[k].ndim == 2)
    data[key] = data[key][:, :-1]
    f = tmp_path / "weight.npz"
    np.savez(f, **data)
    assert key.removeprefix("param/").split("inner.")[-1] in _fixture_error(f)


@case("fixtures", "a curve file with no init weights, forced with --curve: one line")
def curve_not_a_curve(tmp_path):
    from recur_jax.parity import replay

    f = tmp_path / "c.npz"
    np.savez(f, x=np.zeros(3))
    with pytest.raises((ValueError, KeyError)) as e:
        replay.check_curve(str(f), steps=1)
    one_line_error(e, str(f))


# ------------------------------------------------------------------------------------------------
# The workdir: one run at a time, paths that cannot be written
# ------------------------------------------------------------------------------------------------

@case("workdir", "a second run in a workdir whose lock is held: refused with one line naming pid, host, command")
def lock_held(tmp_path):
    from recur_jax.run.workdir import WorkdirInUse, WorkdirLock

    with WorkdirLock(str(tmp_path)):
        code = ("import sys; sys.path.insert(0, %r); from recur_jax.run.workdir import WorkdirLock, WorkdirInUse\n"
                "try:\n    WorkdirLock(%r).__enter__()\nexcept WorkdirInUse as e:\n    print(e); sys.exit(7)\n"
                % (str(REPO), str(tmp_path)))
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert res.returncode == 7, res.stderr
        assert f"pid {os.getpid()} on host {socket.gethostname()}" in res.stdout
    assert WorkdirInUse is not None


@case("workdir", "a lock left by a run killed with -9 (its flock gone, its pid dead): taken over with a warning")
def lock_stale_dead_pid(tmp_path, capsys):
    from recur_jax.run.workdir import LOCK_NAME, WorkdirLock

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # a pid that no longer runs
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": proc.pid, "host": socket.gethostname(), "started": 0,
                                                  "command": "launch.main"}))
    with WorkdirLock(str(tmp_path)):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert "taking over the lock" in capsys.readouterr().err
    assert not (tmp_path / LOCK_NAME).exists()  # released


@case("workdir", "a lock record of another host (flock free): taken over with a warning naming that host")
def lock_stale_other_host(tmp_path, capsys):
    from recur_jax.run.workdir import LOCK_NAME, WorkdirLock

    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": 1, "host": "elsewhere-42", "started": 0}))
    with WorkdirLock(str(tmp_path)):
        pass
    assert "elsewhere-42" in capsys.readouterr().err


@case("workdir", "a lock record naming a live process of this host while the flock is free (a file system "
                 "without flock): refused, saying which file to delete")
def lock_live_pid_without_flock(tmp_path):
    from recur_jax.run.workdir import LOCK_NAME, WorkdirInUse, WorkdirLock, _process_start

    parent = os.getppid()
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": parent, "host": socket.gethostname(), "started": 0,
                                                  "proc_start": _process_start(parent)}))
    with pytest.raises(WorkdirInUse) as e:
        WorkdirLock(str(tmp_path)).__enter__()
    one_line_error(e, f"delete {tmp_path / LOCK_NAME}")


@case("workdir", "a garbled lock record (not JSON): taken over with a warning")
def lock_garbled(tmp_path, capsys):
    from recur_jax.run.workdir import LOCK_NAME, WorkdirLock

    (tmp_path / LOCK_NAME).write_bytes(b"\xff\x00garbage")
    with WorkdirLock(str(tmp_path)):
        pass
    assert "unreadable lock record" in capsys.readouterr().err


@case("workdir", "a workdir the lock created, left empty by a failed start: removed again")
def lock_removes_created_empty_workdir(tmp_path):
    from recur_jax.run.workdir import WorkdirLock

    with WorkdirLock(str(tmp_path / "new")):
        assert (tmp_path / "new").is_dir()
    assert not (tmp_path / "new").exists()


@case("workdir", "a workdir under a regular file: one line (Not a directory: path), nothing written")
def workdir_under_a_file(tmp_path):
    from launch import cli
    from recur_jax.run.workdir import WorkdirLock

    (tmp_path / "file").write_text("x")
    with pytest.raises(OSError) as e:
        WorkdirLock(str(tmp_path / "file" / "run")).__enter__()
    assert "Not a directory" in cli.one_line(e.value) and str(tmp_path / "file") in cli.one_line(e.value)


@case("workdir", "a workdir in a read-only directory: one line (Permission denied / Read-only file system: path)")
def workdir_read_only_parent(tmp_path):
    from launch import cli
    from recur_jax.run.workdir import WorkdirLock

    parent = tmp_path / "ro"
    parent.mkdir()
    mounted = False
    if os.geteuid() == 0:  # root ignores permission bits: a read-only tmpfs instead
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(parent)],
                                 capture_output=True).returncode == 0
        if not mounted:
            pytest.skip("root without mount: neither permission bits nor a read-only mount can be used")
    else:
        parent.chmod(0o500)
    try:
        with pytest.raises(OSError) as e:
            WorkdirLock(str(parent / "run")).__enter__()
        line = cli.one_line(e.value)
        assert str(parent / "run") in line and ("Permission denied" in line or "Read-only" in line), line
    finally:
        if mounted:
            subprocess.run(["umount", str(parent)], capture_output=True)
        else:
            parent.chmod(0o700)


# ------------------------------------------------------------------------------------------------
# Checkpoint saves that fail
# ------------------------------------------------------------------------------------------------

def _checkpointer(tmp_path, **kw):
    from recur_jax.run.checkpoint import Checkpointer

    return Checkpointer(tmp_path / "checkpoints", keep=3, async_save=kw.get("async_save", False), cleanup_tmp=True)


def _state():
    import jax.numpy as jnp

    return {"w": jnp.arange(1024, dtype=jnp.float32)}


class _Fail:
    """Makes the wrapped Orbax manager's save (or wait) raise `error` from a given step on."""

    def __init__(self, manager, error, at_step, where="save"):
        self._m, self.error, self.at_step, self.where, self.armed = manager, error, at_step, where, False

    def __getattr__(self, name):
        return getattr(self._m, name)

    def save(self, step, *a, **kw):
        if self.where == "save" and step >= self.at_step:
            raise self.error
        self.armed = self.where == "wait" and step >= self.at_step
        return self._m.save(step, *a, **kw)

    def wait_until_finished(self):
        self._m.wait_until_finished()
        if self.armed:
            self.armed = False
            raise self.error


ENOSPC_TEXT = ValueError("RESOURCE_EXHAUSTED: Error writing \"state/0\" in OCDBT database: Failed to write 31296 "
                         "bytes to file 19: No space left on device [os_error_code='28']")


def _save_case(name, error, where, needles):
    def fn(tmp_path):
        from recur_jax.run.checkpoint import CheckpointError

        c = _checkpointer(tmp_path)
        c.save(1, _state(), {"step": 1})
        c.wait()
        c._manager = _Fail(c._manager, error, 2, where)
        with pytest.raises(CheckpointError) as e:
            c.save(2, _state(), {"step": 2})
            c.wait()
        msg = one_line_error(e, "checkpoint step 2", "is intact", *needles)
        assert "Traceback" not in msg
        c.close()  # the same failure is not raised twice
        on_disk = sorted(p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
        if where == "save":  # refused before anything was written
            assert on_disk == ["1"] and "step 1, is intact" in msg
        else:  # failed in the background: the message names the newest committed step
            assert f"step {on_disk[-1]}, is intact" in msg
    fn.__name__ = name
    return fn


for _name, _err, _where, _needles in [
        ("save_disk_full_tensorstore_text", ENOSPC_TEXT, "save", ["no space left on device", "MiB free"]),
        ("save_disk_full_oserror", OSError(errno.ENOSPC, "No space left on device"), "save", ["no space left"]),
        ("save_quota_exceeded", OSError(errno.EDQUOT, "Disk quota exceeded"), "save", ["no space left"]),
        ("save_disk_full_in_background", ENOSPC_TEXT, "wait", ["no space left on device"]),
        ("save_permission_denied", PermissionError(errno.EACCES, "Permission denied"), "save", ["Permission denied"]),
        ("save_io_error_in_background", OSError(errno.EIO, "Input/output error"), "wait", ["Input/output error"])]:
    case("checkpoints", f"a checkpoint save that fails ({_name.removeprefix('save_').replace('_', ' ')}): one "
                        f"line naming step, directory and the intact step to resume from")(
        _save_case(_name, _err, _where, _needles))


@case("checkpoints", "a real full disk (tmpfs of a few pages) under a save: one line, the previous step intact")
def save_real_tmpfs_full(tmp_path):
    from recur_jax.run.checkpoint import CheckpointError

    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=192k", "tmpfs", str(mnt)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root); the fakes above cover the same path")
    try:
        import jax.numpy as jnp

        c = _checkpointer(mnt)
        c.save(1, {"w": jnp.zeros(4096, jnp.float32)}, {"step": 1})
        c.wait()
        with pytest.raises(CheckpointError) as e:
            for s in range(2, 10):
                c.save(s, {"w": jnp.full(4096 * 4, float(s), jnp.float32)}, {"step": s})
                c.wait()
        one_line_error(e, "no space left on device")
        c.close()
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


# ------------------------------------------------------------------------------------------------
# Entry points: flags, environment variables, the exit-status policy
# ------------------------------------------------------------------------------------------------

def _env_case(name, env, needle):
    def fn(tmp_path):
        from recur_jax.run import distributed

        with pytest.raises(ValueError) as e:
            distributed.plan("auto", environ=env)
        one_line_error(e, needle)
    fn.__name__ = name
    return fn


for _name, _env, _needle in [
        ("env_num_processes_not_int", {"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "two",
                                       "JAX_PROCESS_ID": "0"}, "JAX_NUM_PROCESSES='two'"),
        ("env_num_processes_zero", {"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "0",
                                    "JAX_PROCESS_ID": "0"}, "JAX_NUM_PROCESSES='0'"),
        ("env_process_id_negative", {"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2",
                                     "JAX_PROCESS_ID": "-1"}, "JAX_PROCESS_ID='-1'"),
        ("env_process_id_out_of_range", {"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2",
                                         "JAX_PROCESS_ID": "2"}, "0 <= process_id < num_processes"),
        ("env_coordinator_without_count", {"JAX_COORDINATOR_ADDRESS": "h:1"}, "JAX_NUM_PROCESSES"),
        ("env_slurm_ntasks_not_int", {"SLURM_NTASKS": "many"}, "SLURM_NTASKS='many'")]:
    case("entry points", f"environment: {_name.removeprefix('env_').replace('_', ' ')}: one line naming the "
                         f"variable")(_env_case(_name, _env, _needle))


def _launch_case(name, kwargs, needle):
    def fn(tmp_path):
        from launch import local_multiprocess

        with pytest.raises(ValueError) as e:
            local_multiprocess.launch([], **{"num_processes": 1, "devices_per_process": 1, **kwargs})
        one_line_error(e, needle)
    fn.__name__ = name
    return fn


for _name, _kw, _needle in [("local_multiprocess_zero_processes", {"num_processes": 0}, "--num_processes=0"),
                            ("local_multiprocess_zero_devices", {"devices_per_process": 0}, "--devices_per_process=0"),
                            ("local_multiprocess_bad_port", {"port": 70000}, "--port=70000"),
                            ("local_multiprocess_bad_timeout", {"timeout": 0.0}, "--timeout=0.0")]:
    case("entry points", f"launch.local_multiprocess with {_name.removeprefix('local_multiprocess_').replace('_', ' ')}"
                         f": refused, nothing started")(_launch_case(_name, _kw, _needle))


def _cli(module, *args, env=None, timeout=120):
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, cwd=REPO,
                          timeout=timeout, env={**os.environ, **(env or {})})


def _assert_one_line(res, status, needle):
    assert res.returncode == status, (res.returncode, res.stdout[-2000:], res.stderr[-2000:])
    last = res.stderr.strip().splitlines()[-1]
    assert needle in last, res.stderr[-2000:]
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    return last


@case("entry points", "launch.main with an unknown config key: exit 2, one line with the suggestion (no stray "
                      "escapes)")
def cli_main_unknown_key(tmp_path):
    last = _assert_one_line(_cli("launch.main", "--config.totl_steps=3", f"--workdir={tmp_path}/w"), 2,
                            "usage error")
    assert "\\'" not in last and "total_steps" in last
    assert not (tmp_path / "w").exists()


@case("entry points", "launch.main with optim.lr=nan: exit 1, one line naming the field, no workdir written")
def cli_main_nan_lr(tmp_path):
    _assert_one_line(_cli("launch.main", "--config.optim.lr=nan", f"--workdir={tmp_path}/w"), 1,
                     "config.optim.lr=nan")
    assert not (tmp_path / "w").exists()


@case("entry points", "launch.main with a workdir under a file: exit 1, one line naming the path")
def cli_main_workdir_under_file(tmp_path):
    (tmp_path / "f").write_text("x")
    _assert_one_line(_cli("launch.main", f"--workdir={tmp_path}/f/run", "--config.total_steps=2"), 1,
                     str(tmp_path / "f"))


@case("entry points", "launch.main with a bad JAX_NUM_PROCESSES: exit 2, one line naming the variable")
def cli_main_bad_env(tmp_path):
    _assert_one_line(_cli("launch.main", f"--workdir={tmp_path}/w",
                          env={"JAX_COORDINATOR_ADDRESS": "127.0.0.1:1", "JAX_NUM_PROCESSES": "x",
                               "JAX_PROCESS_ID": "0"}), 2, "JAX_NUM_PROCESSES='x'")


@case("entry points", "launch.main with an extra argument: exit 2, one usage line")
def cli_main_extra_argument(tmp_path):
    _assert_one_line(_cli("launch.main", "stray", f"--workdir={tmp_path}/w"), 2, "unexpected arguments")


@case("entry points", "launch.parity on a text file and a pickle: exit 1, one line each, no allow_pickle advice")
def cli_parity_not_fixtures(tmp_path):
    (tmp_path / "a.txt").write_text("hello")
    (tmp_path / "b.pkl").write_bytes(pickle.dumps([1, 2]))
    res = _cli("launch.parity", str(tmp_path / "a.txt"), str(tmp_path / "b.pkl"))
    _assert_one_line(res, 1, "b.pkl")
    assert "allow_pickle" not in res.stdout + res.stderr


@case("entry points", "launch.parity without files: exit 2, one usage line")
def cli_parity_no_files(tmp_path):
    _assert_one_line(_cli("launch.parity"), 2, "usage error")


@case("entry points", "launch.solve on a missing puzzle file: exit 1, 'no such file'")
def cli_solve_missing_file(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"config": {}}))
    _assert_one_line(_cli("launch.solve", f"--workdir={tmp_path}", "nopuzzles.txt"), 1, "no such file")


@case("entry points", "launch.solve on a directory that is not a workdir: exit 1, asks whether it is one")
def cli_solve_not_a_workdir(tmp_path):
    _assert_one_line(_cli("launch.solve", f"--workdir={tmp_path}", PUZZLE), 1, "recur_jax workdir")


@case("entry points", "launch.local_multiprocess --num_processes=0: exit 2, nothing run")
def cli_local_multiprocess_zero(tmp_path):
    _assert_one_line(_cli("launch.local_multiprocess", "--num_processes=0"), 2, "--num_processes=0")


@case("entry points", "launch.report on a missing root: exit 1, one line")
def cli_report_missing_root(tmp_path):
    _assert_one_line(_cli("launch.report", f"--root={tmp_path}/nothing"), 1, "does not exist")


@case("entry points", "library threads calling back into a closed event loop after a failed save or restore "
                      "(TensorStore): dropped, no traceback per call, the error line stays last")
def cli_closed_event_loop_callbacks(tmp_path):
    code = ("import asyncio, sys, threading\n"
            "sys.path.insert(0, %r)\n"
            "from launch import cli\n"
            "cli.quiet_libraries()\n"
            "loop = asyncio.new_event_loop(); loop.close()\n"
            "t = threading.Thread(target=lambda: [loop.call_soon_threadsafe(print) for _ in range(50)]); t.start(); t.join()\n"
            "print('error: the one line', file=sys.stderr)\n" % str(REPO))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.stderr.strip().splitlines() == ["error: the one line"], res.stderr[-2000:]


@case("entry points", "--traceback brings back the full story of an error")
def cli_traceback_flag(tmp_path):
    res = _cli("launch.main", "--config.optim.lr=nan", f"--workdir={tmp_path}/w", "--traceback")
    assert res.returncode != 0 and "Traceback" in res.stderr and "config.optim.lr=nan" in res.stderr


# ------------------------------------------------------------------------------------------------
# Cases driven elsewhere (whole training runs), listed for the catalogue
# ------------------------------------------------------------------------------------------------

ELSEWHERE = [  # (test name in tests/test_faults.py, kind, what)
    ("test_kill9_after_the_half_checkpoint_then_the_same_command_is_bitwise_the_straight_run",
     "interruptions", "kill -9 mid-run: the same command resumes to the straight run's fingerprint"),
    ("test_sigterm_checkpoints_the_current_step_exits_0_and_resumes_exactly",
     "interruptions", "SIGTERM: checkpoints the current step, exits 0, resumes exactly"),
    ("test_sigint_in_process_checkpoints_the_step_and_restores_the_handlers",
     "interruptions", "SIGINT (Ctrl-C): checkpoints the step and restores the signal handlers"),
    ("test_multihost_processes_agree_on_the_preemption_step",
     "interruptions", "a preemption signal to one of two processes: both stop at the same step"),
    ("test_a_bad_newest_checkpoint_is_reported_set_aside_and_the_previous_one_used",
     "checkpoints", "a truncated, garbled or half-written newest checkpoint: set aside, the previous one used"),
    ("test_a_garbled_checkpoint_in_a_run_falls_back_and_the_run_ends_identical",
     "checkpoints", "a garbled checkpoint inside a run: falls back and ends identical"),
    ("test_a_good_checkpoint_is_not_deleted_before_its_successor_commits",
     "checkpoints", "a save killed half way: the older steps are all still there"),
    ("test_keep_policy_keeps_the_newest_committed_steps_across_restarts",
     "checkpoints", "restarts under the keep policy: the newest committed steps are kept"),
    ("test_disk_full_at_the_final_save_leaves_the_run_unfinished_and_it_resumes_to_the_straight_run",
     "checkpoints", "disk full at the final save: no summary.json, one line; after space is freed the same "
                        "command gives the straight run's fingerprint"),
    ("test_kill9_after_the_half_checkpoint_then_the_same_command_is_bitwise_the_straight_run",
     "workdir", "two runs started in one workdir: the second refused with one line naming the holder's pid, "
                    "nothing written by it (the first's metrics end identical to the straight run's)"),
    ("test_a_nan_gradient_stops_naming_step_and_quantity_without_a_bad_checkpoint",
     "numerics", "a NaN gradient: stops naming step and quantity, no bad checkpoint written"),
    ("test_skip_policy_run_completes_and_counts_the_skipped_step",
     "numerics", "policy 'skip': the run completes and counts the skipped step"),
    ("test_config_errors_name_the_field_before_anything_is_built",
     "config value", "15 malformed configs (unknown or misspelt keys, wrong types, shapes the mesh cannot "
                         "split): one line naming the field, nothing built"),
    ("test_a_workdir_with_another_run_is_refused_and_left_untouched",
     "workdir", "a workdir holding a run with another config: refused, untouched"),
    ("test_csv_limits_name_file_and_line",
     "data files", "CSV size and line-length limits: one line naming file and line"),
    ("test_json_reader_limits",
     "data files", "JSON size and depth limits"),
    ("test_paths_from_files_stay_inside_the_data_directory",
     "data files", "paths in data files that lead outside the data directory: refused"),
]


# ------------------------------------------------------------------------------------------------

def _param_ids():
    return sorted(CASES)


@pytest.mark.parametrize("name", _param_ids())
def test_fault(name, tmp_path, request):
    """Runs one registered case (its fixtures are resolved by name)."""
    import inspect

    fn = CASES[name][2]
    kwargs = {p: request.getfixturevalue(p) for p in inspect.signature(fn).parameters if p != "tmp_path"}
    fn(tmp_path, **kwargs)


def count() -> int:
    """Distinct cases in the catalogue (the parametrised config case of test_faults counts its 15)."""
    return len(CASES) + len(ELSEWHERE) - 1 + 15


def markdown() -> str:
    """The list of docs/fault_catalogue.md."""
    rows: dict[str, list[str]] = {}
    for name, (kind, what, _) in CASES.items():
        rows.setdefault(kind, []).append(f"{what} (`{name}`)")
    for name, kind, what in ELSEWHERE:
        rows.setdefault(kind, []).append(f"{what} (`test_faults.py::{name}`)")
    out = [f"{count()} distinct bad inputs and faults, each with a one-line error or a correct recovery and "
           f"nothing lost (tests/test_fault_catalogue.py; regenerate this list with "
           f"`python tests/test_fault_catalogue.py`).", ""]
    for kind in sorted(rows):
        out.append(f"- **{kind}** ({len(rows[kind])}):")
        out += [f"  - {r}" for r in rows[kind]]
    return "\n".join(out) + "\n"


def test_every_case_driven_elsewhere_exists():
    text = (HERE / "test_faults.py").read_text()
    for name, _, _ in ELSEWHERE:
        assert re.search(rf"^def {name}\(", text, re.M), name


def test_workspace_lists_the_catalogue():
    text = (REPO / "docs" / "fault_catalogue.md").read_text()
    assert markdown() in text, "docs/fault_catalogue.md is stale: python tests/test_fault_catalogue.py"
    assert "docs/fault_catalogue.md" in (REPO / "WORKSPACE.md").read_text()
    assert count() >= 100


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    sys.stdout.write(markdown())

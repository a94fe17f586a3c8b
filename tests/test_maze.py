"""Maze-Hard: generator (solvable, shortest path >= 110, seeded), path-validity metric on valid and
broken paths, CSV validation errors, dihedral augmentation, TFDS build and the evaluator."""

import numpy as np
import pytest

from recur_jax.core.losses import IGNORE_LABEL_ID
from recur_jax.tasks import maze
from recur_jax.tasks.maze.builder import build_maze
from recur_jax.tasks.maze.evaluator import MazeEvaluator


@pytest.fixture(scope="module")
def mazes():
    return maze.generate(100, seed=3)


def test_generated_mazes_are_hard_solvable_and_seeded(mazes):
    """100 here (1000 in `python -m recur_jax.tasks.maze.data 1000`): each solvable, shortest path >= 110,
    and the answer is that shortest path."""
    for q, a, n in zip(mazes.questions, mazes.answers, mazes.path_lengths):
        length, cells = maze.shortest_path(q)
        assert length == n >= 110
        assert np.sum(q == maze.START) == 1 and np.sum(q == maze.GOAL) == 1 and not np.any(q == maze.PATH)
        assert np.array_equal(a, maze.draw_path(q, cells))
        assert np.sum(a == maze.PATH) == length - 1
        assert maze.path_validity(q, a) == (True, True)
    again = maze.generate(10, seed=3)
    assert np.array_equal(again.questions, mazes.questions[:10])  # maze i depends on (seed, stream, i) only
    assert not np.array_equal(maze.generate(10, seed=4).questions, again.questions)
    assert not np.array_equal(maze.generate(10, seed=3, stream=1).questions, again.questions)


def _room() -> np.ndarray:
    """A hand-made maze: a ring corridor around a wall block, S and G on the top side."""
    g = np.full((30, 30), maze.WALL, np.uint8)
    g[1, 1:8] = g[5, 1:8] = maze.OPEN
    g[1:6, 1] = g[1:6, 7] = maze.OPEN
    g[1, 2], g[1, 5] = maze.START, maze.GOAL
    return g.reshape(900)


def _with_path(q, cells):
    a = q.reshape(30, 30).copy()
    for r, c in cells:
        a[r, c] = maze.PATH
    return a.reshape(900)


def test_path_validity_on_valid_and_broken_paths(mazes):
    q = _room()
    assert maze.shortest_path(q)[0] == 3
    short = _with_path(q, [(1, 3), (1, 4)])
    assert maze.path_validity(q, short) == (True, True)
    detour = _with_path(q, [(1, 1), (2, 1), (3, 1), (4, 1), (5, 1), (5, 2), (5, 3), (5, 4), (5, 5), (5, 6), (5, 7),
                            (4, 7), (3, 7), (2, 7), (1, 7), (1, 6)])
    assert maze.path_validity(q, detour) == (True, False)  # valid, not optimal
    assert maze.path_validity(q, _with_path(q, [(1, 3)])) == (False, False)  # broken: a gap
    assert maze.path_validity(q, q) == (False, False)  # no path at all (S and G not adjacent)
    through_wall = _with_path(q, [(1, 3), (1, 4), (2, 3)])  # a branch into a wall cell
    assert maze.path_validity(q, through_wall) == (False, False)
    branch = _with_path(q, [(1, 3), (1, 4), (1, 6)])  # a stray path cell next to G
    assert maze.path_validity(q, branch) == (False, False)
    cycle = _with_path(q, [(1, 3), (1, 4), (3, 1), (4, 1), (5, 1)])  # plus a detached segment
    assert maze.path_validity(q, cycle) == (False, False)
    # on generated mazes: dropping one path cell, or painting a wall as path, breaks the answer
    a = mazes.answers[0].copy()
    a[np.flatnonzero(a == maze.PATH)[5]] = maze.OPEN
    assert maze.path_validity(mazes.questions[0], a) == (False, False)
    a = mazes.answers[0].copy()
    a[np.flatnonzero(a == maze.WALL)[0]] = maze.PATH
    assert maze.path_validity(mazes.questions[0], a) == (False, False)


def test_dihedral_augmentation_keeps_answers_valid(mazes):
    for t in range(8):
        q, a = maze.augment(mazes.questions[1], mazes.answers[1], t)
        assert maze.path_validity(q, a) == (True, True)
        assert maze.shortest_path(q)[0] == mazes.path_lengths[1]


def _csv(tmp_path, rows, header="source,question,answer,rating"):
    p = tmp_path / "m.csv"
    lines = [header] + [",".join(f'"{x}"' for x in r) for r in rows]
    p.write_text("\n".join(lines) + "\n")
    return p


def test_csv_roundtrip(tmp_path, mazes):
    rows = [("gen", maze.decode(q), maze.decode(a), str(n)) for q, a, n in
            zip(mazes.questions[:5], mazes.answers[:5], mazes.path_lengths[:5])]
    m = maze.read_csv(_csv(tmp_path, rows))
    assert np.array_equal(m.questions, mazes.questions[:5]) and np.array_equal(m.answers, mazes.answers[:5])
    assert np.array_equal(m.path_lengths, mazes.path_lengths[:5])


def test_each_bad_csv_line_kind_is_a_clear_error(tmp_path, mazes):
    q, a = maze.decode(mazes.questions[0]), maze.decode(mazes.answers[0])
    wall = q.index("#")
    two_s = q[:wall] + "S" + q[wall + 1:]
    open_cell = q.index(" ")
    changed = a[:wall] + " " + a[wall + 1:]
    blocked_q = q.replace(" ", "#")
    blocked_a = blocked_q
    cases = [
        ([("x", q[:-1], a, "1")], r"m\.csv:2: question has 899 characters; expected 900"),
        ([("x", q, a.replace("o", "x", 1), "1")], r"m\.csv:2: answer has characters \['x'\]"),
        ([("x", two_s, two_s, "1")], r"m\.csv:2: question has 2 'S' and 1 'G'; expected exactly one of each"),
        ([("x", q, changed, "1")], rf"m\.csv:2: answer differs from the question at cell {wall} "),
        ([("x", a, a, "1")], r"m\.csv:2: question contains path cells 'o'"),
        ([("x", blocked_q, blocked_a, "1")], r"m\.csv:2: no path from S to G"),
        ([("x", q, a, "1"), ("x", q, a)], r"m\.csv:3: 3 fields; expected 4"),
    ]
    assert open_cell >= 0
    for rows, match in cases:
        with pytest.raises(maze.MazeDataError, match=match):
            maze.read_csv(_csv(tmp_path, rows))
    with pytest.raises(maze.MazeDataError, match=r"m\.csv:1: header \['a', 'b'\]; expected columns"):
        maze.read_csv(_csv(tmp_path, [("x", "y")], header="a,b"))
    with pytest.raises(maze.MazeDataError, match="larger than the limit of 100 bytes"):
        maze.read_csv(_csv(tmp_path, [("x", q, a, "1")]), max_bytes=100)


def test_tfds_build_csv_and_generated(tmp_path, mazes):
    d = tmp_path / "csv"
    d.mkdir()
    for split, sl in (("train", slice(0, 6)), ("test", slice(6, 9))):
        rows = [("gen", maze.decode(q), maze.decode(a), str(n)) for q, a, n in
                zip(mazes.questions[sl], mazes.answers[sl], mazes.path_lengths[sl])]
        _csv(d, rows).rename(d / f"{split}.csv")
    built = build_maze(tmp_path / "data", source="csv", path=d)
    assert len(built["train"]) == 6 and len(built["test"]) == 3
    assert np.array_equal(np.asarray(built["test"][0]["answer"]), mazes.answers[6])
    gen = build_maze(tmp_path / "data", source="generated", seed=3, num_train=4, num_test=2)
    assert np.array_equal(np.asarray(gen["train"][3]["question"]), mazes.questions[3])
    with pytest.raises(FileNotFoundError, match="train.csv: not found"):
        build_maze(tmp_path / "data", source="csv", path=tmp_path)


def test_evaluator_counts_valid_and_optimal_paths(tmp_path, mazes):
    ev = MazeEvaluator(str(tmp_path / "report"), report_num=2)
    q, a = mazes.questions[:4], mazes.answers[:4]
    preds = a.copy()
    preds[1] = q[1]  # no path
    pad = np.full((1, 900), IGNORE_LABEL_ID)
    ev.begin()
    ev.update({"inputs": np.concatenate([q, np.zeros((1, 900))]), "labels": np.concatenate([a, pad])},
              np.concatenate([preds, np.zeros((1, 900))]), np.zeros(5))
    assert ev.result() == {"path_valid": 0.75, "path_optimal": 0.75}
    assert (tmp_path / "report" / "png" / "m001_prediction.png").exists()
    assert "valid path False" in (tmp_path / "report" / "index.html").read_text()

"""Maze-Hard: the published CSV format, a built-in generator of hard 30x30 mazes, dihedral
augmentation, and the path-validity metric.

Format (HF `sapientinc/maze-30x30-hard-1k`, official `dataset/build_maze_dataset.py`, TRM.md 6.3):
a CSV with a header naming at least `question` and `answer` (the published files have
source,question,answer,rating); question and answer are 900 characters, row-major 30x30, from
"# SGo": '#' wall, ' ' open, 'S' start, 'G' goal, 'o' path (answers only). Tokens are the index in
"# SGo" + 1 (wall 1, open 2, S 3, G 4, path 5), PAD 0, vocab 6, seq 900; every cell is supervised.

The generator (ours; the published set's generator is not public): a perfect maze (randomised
depth-first search, so the shortest path is unique) on the 15x15 cells at even coordinates of the
30x30 board (row and column 29 are walls), optionally with `loop_prob` of the remaining walls between
cells opened; S and G are drawn so that the shortest path is at least `min_path` moves (default 110,
as the hard set's filter). Path length = moves from S to G = path cells + 1.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
from collections import deque
from typing import Any

import numpy as np

CHARS = "# SGo"
PAD, WALL, OPEN, START, GOAL, PATH = 0, 1, 2, 3, 4, 5
VOCAB_SIZE = 6
SIZE = 30
SEQ_LEN = SIZE * SIZE
MIN_PATH = 110
MAX_CSV_BYTES = 256 * 2**20
_CHAR_TO_TOKEN = {c: i + 1 for i, c in enumerate(CHARS)}
_NEIGHBOURS = ((-1, 0), (1, 0), (0, -1), (0, 1))


def board_side(tokens: np.ndarray) -> int:
    """The side of a square board given as [side, side] or [side * side] tokens (30 for Maze-Hard).

    Raises:
      ValueError: a flat array whose length is not a square.
    """
    a = np.asarray(tokens)
    if a.ndim == 2:
        return int(a.shape[0])
    side = int(round(a.size ** 0.5))
    if side * side != a.size:
        raise ValueError(f"a maze of {a.size} tokens; expected a square board (side * side tokens)")
    return side


class MazeDataError(ValueError):
    """A malformed maze CSV line; the message names file, line and what was expected."""


@dataclasses.dataclass
class MazeSet:
    """Mazes as tokens.

    Attributes:
      questions: [N, S] uint8 tokens 1..4 (no path); S = 900 (30 x 30) for Maze-Hard, side^2 in general.
      answers: [N, S] uint8 tokens 1..5 (the question with the path drawn).
      path_lengths: [N] int32 shortest path length (moves) from S to G.
    """

    questions: np.ndarray
    answers: np.ndarray
    path_lengths: np.ndarray

    def __len__(self) -> int:
        return len(self.questions)


def encode(text: str) -> np.ndarray:
    """900 characters of "# SGo" -> [900] uint8 tokens 1..5. Raises ValueError on other characters."""
    try:
        return np.array([_CHAR_TO_TOKEN[c] for c in text], np.uint8)
    except KeyError as e:
        raise ValueError(f"character {e.args[0]!r}; expected one of {CHARS!r}") from None


def decode(tokens: np.ndarray) -> str:
    """[900] tokens 1..5 -> 900 characters (PAD 0 becomes '?')."""
    return "".join(("?" + CHARS)[int(t)] for t in np.asarray(tokens).reshape(-1))


def shortest_path(grid: np.ndarray) -> tuple[int, np.ndarray | None]:
    """BFS from S to G through non-wall cells.

    Args:
      grid: [side, side] or [side * side] tokens (30 x 30 for Maze-Hard; wall 1; any other non-PAD token
        is passable).
    Returns:
      (length in moves, [L+1, 2] int32 cells from S to G), or (-1, None) if G is unreachable.
    Raises:
      ValueError: not exactly one S and one G.
    """
    n = board_side(grid)
    g = np.asarray(grid).reshape(n, n)
    s, t = np.argwhere(g == START), np.argwhere(g == GOAL)
    if len(s) != 1 or len(t) != 1:
        raise ValueError(f"maze has {len(s)} S and {len(t)} G; expected exactly one of each")
    s, t = tuple(s[0]), tuple(t[0])
    passable = (g != WALL) & (g != PAD)
    prev = -np.ones((n, n, 2), np.int32)
    dist = -np.ones((n, n), np.int32)
    dist[s] = 0
    q = deque([s])
    while q:
        r, c = q.popleft()
        if (r, c) == t:
            break
        for dr, dc in _NEIGHBOURS:
            nr, nc = r + dr, c + dc
            if 0 <= nr < n and 0 <= nc < n and passable[nr, nc] and dist[nr, nc] < 0:
                dist[nr, nc] = dist[r, c] + 1
                prev[nr, nc] = (r, c)
                q.append((nr, nc))
    if dist[t] < 0:
        return -1, None
    cells = [t]
    while cells[-1] != s:
        cells.append(tuple(prev[cells[-1]]))
    return int(dist[t]), np.array(cells[::-1], np.int32)


def draw_path(question: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """[S] question tokens + [L+1, 2] path cells (S..G) -> [S] answer tokens with PATH between S and G."""
    n = board_side(question)
    a = np.asarray(question, np.uint8).reshape(n, n).copy()
    for r, c in cells[1:-1]:
        a[r, c] = PATH
    return a.reshape(n * n)


def path_validity(question: np.ndarray, pred: np.ndarray) -> tuple[bool, bool]:
    """Whether a predicted path is valid, and whether it is also optimal.

    Valid: the cells predicted as path (token 5) are all open cells of the question (not wall, S or
    G), and together with S and G form one simple 4-connected chain from S to G (S and G have one
    neighbour in the chain, every path cell two, and all of it is connected). Optimal: valid and its
    length (path cells + 1) equals the shortest path length. Other cells of the prediction are not
    looked at (exact match is the separate, strict metric).

    Args:
      question: [side * side] or [side, side] tokens 1..4 with one S and one G (30 x 30 for Maze-Hard).
      pred: predicted tokens of the same board.
    Returns:
      (valid, optimal) bools.
    """
    n = board_side(question)
    q = np.asarray(question).reshape(n, n)
    p = np.asarray(pred).reshape(n, n) == PATH
    if np.any(p & (q != OPEN)):
        return False, False
    s, t = np.argwhere(q == START), np.argwhere(q == GOAL)
    if len(s) != 1 or len(t) != 1:
        return False, False
    chain = p.copy()
    chain[tuple(s[0])] = chain[tuple(t[0])] = True
    padded = np.pad(chain, 1)
    deg = (padded[:-2, 1:-1].astype(int) + padded[2:, 1:-1] + padded[1:-1, :-2] + padded[1:-1, 2:])
    if deg[tuple(s[0])] != 1 or deg[tuple(t[0])] != 1 or np.any(deg[p] != 2):
        return False, False
    # connected: flood from S within the chain reaches every chain cell
    seen = np.zeros_like(chain)
    stack = [tuple(s[0])]
    seen[stack[0]] = True
    while stack:
        r, c = stack.pop()
        for dr, dc in _NEIGHBOURS:
            nr, nc = r + dr, c + dc
            if 0 <= nr < n and 0 <= nc < n and chain[nr, nc] and not seen[nr, nc]:
                seen[nr, nc] = True
                stack.append((nr, nc))
    if not np.array_equal(seen, chain):
        return False, False
    length = int(p.sum()) + 1
    best, _ = shortest_path(q)
    return True, best == length


def _carve(rng: np.random.Generator, loop_prob: float, cells: int = SIZE // 2) -> np.ndarray:
    """A [2 cells, 2 cells] bool open-cell mask: a DFS perfect maze on the cells (2i, 2j), i, j < cells
    (Maze-Hard: 15 cells, a 30 x 30 board whose last row and column are walls)."""
    n = cells
    side = 2 * cells
    open_ = np.zeros((side, side), bool)
    visited = np.zeros((n, n), bool)
    start = (int(rng.integers(n)), int(rng.integers(n)))
    visited[start] = True
    open_[2 * start[0], 2 * start[1]] = True
    stack = [start]
    while stack:
        i, j = stack[-1]
        nbrs = [(i + di, j + dj) for di, dj in _NEIGHBOURS if 0 <= i + di < n and 0 <= j + dj < n
                and not visited[i + di, j + dj]]
        if not nbrs:
            stack.pop()
            continue
        ni, nj = nbrs[int(rng.integers(len(nbrs)))]
        visited[ni, nj] = True
        open_[2 * ni, 2 * nj] = True
        open_[i + ni, j + nj] = True  # the wall cell between (2i, 2j) and (2ni, 2nj)
        stack.append((ni, nj))
    if loop_prob > 0:
        walls = [(r, c) for r in range(side - 1) for c in range(side - 1) if (r + c) % 2 == 1 and not open_[r, c]]
        for r, c in walls:
            if rng.random() < loop_prob:
                open_[r, c] = True
    return open_


def generate_one(rng: np.random.Generator, min_path: int = MIN_PATH, loop_prob: float = 0.0,
                 max_tries: int = 1000, cells: int = SIZE // 2) -> tuple[np.ndarray, np.ndarray, int]:
    """One maze of `cells` x `cells` cells (a board of side 2 * cells) whose shortest S-G path is at least
    `min_path` moves.

    Returns:
      (question [side^2] uint8, answer [side^2] uint8, path length).
    Raises:
      RuntimeError: no such maze in `max_tries` boards (min_path too large).
    """
    for _ in range(max_tries):
        open_ = _carve(rng, loop_prob, cells)
        side = 2 * cells
        grid = np.where(open_, OPEN, WALL).astype(np.uint8)
        open_cells = np.argwhere(open_)
        s = tuple(open_cells[int(rng.integers(len(open_cells)))])
        # BFS distances from S
        dist = -np.ones((side, side), np.int32)
        dist[s] = 0
        q = deque([s])
        while q:
            r, c = q.popleft()
            for dr, dc in _NEIGHBOURS:
                nr, nc = r + dr, c + dc
                if 0 <= nr < side and 0 <= nc < side and open_[nr, nc] and dist[nr, nc] < 0:
                    dist[nr, nc] = dist[r, c] + 1
                    q.append((nr, nc))
        far = np.argwhere(dist >= min_path)
        if not len(far):
            continue
        t = tuple(far[int(rng.integers(len(far)))])
        grid[s], grid[t] = START, GOAL
        length, path = shortest_path(grid)
        question = grid.reshape(side * side)
        return question, draw_path(question, path), length
    raise RuntimeError(f"no maze with a shortest path >= {min_path} in {max_tries} tries")


def _generate_range(args) -> list:
    seed, stream, lo, hi, min_path, loop_prob, cells = args
    return [generate_one(np.random.default_rng([seed, stream, i]), min_path, loop_prob, cells=cells)
            for i in range(lo, hi)]


def generate(n: int, seed: int, *, stream: int = 0, min_path: int = MIN_PATH, loop_prob: float = 0.0,
             workers: int = 1, cells: int = SIZE // 2) -> MazeSet:
    """`n` hard mazes; maze i is drawn from `np.random.default_rng([seed, stream, i])`, so the result
    does not depend on `workers` (processes of a spawn-context pool; callers that use workers > 1 from
    a script need the `if __name__ == "__main__"` guard). `cells`: cells per side (Maze-Hard 15: a 30 x 30
    board; any size >= 2 for length extrapolation, a board of side 2 * cells).

    Returns:
      MazeSet of n mazes. Raises ValueError: n < 0, workers < 1 or cells < 2.
    """
    if n < 0 or workers < 1 or cells < 2:
        raise ValueError(f"maze generate n={n}, workers={workers}, cells={cells}; expected n >= 0, workers >= 1, "
                         f"cells >= 2")
    chunks = [(seed, stream, lo, min(n, lo + 250), min_path, loop_prob, cells) for lo in range(0, n, 250)]
    if workers > 1 and len(chunks) > 1:
        import multiprocessing

        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            parts = pool.map(_generate_range, chunks)
    else:
        parts = [_generate_range(c) for c in chunks]
    items = [x for part in parts for x in part]
    if not items:
        side = 2 * cells
        return MazeSet(np.zeros((0, side * side), np.uint8), np.zeros((0, side * side), np.uint8),
                       np.zeros(0, np.int32))
    return MazeSet(np.stack([x[0] for x in items]), np.stack([x[1] for x in items]),
                   np.array([x[2] for x in items], np.int32))


def read_csv(path: str | os.PathLike, max_bytes: int = MAX_CSV_BYTES) -> MazeSet:
    """Reads and validates a maze CSV file (see the module docstring).

    Raises:
      FileNotFoundError: no such file.
      MazeDataError: larger than max_bytes; a header without question/answer; a line with the wrong
        number of fields, a question/answer not of 900 characters or with characters outside "# SGo",
        'o' in a question, not exactly one S and one G, an answer that differs from its question
        other than by path cells, or no S-G path ("{file}:{line}: ...; expected ...").
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        raw = f.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise MazeDataError(f"{path}: larger than the limit of {max_bytes} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise MazeDataError(f"{path}: not UTF-8 ({e}); expected a maze CSV") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None or "question" not in header or "answer" not in header:
        raise MazeDataError(f"{path}:1: header {header}; expected columns including 'question' and 'answer'")
    qi, ai = header.index("question"), header.index("answer")
    qs, as_, lens = [], [], []
    for line_no, row in enumerate(reader, start=2):
        if not row:
            continue
        where = f"{path}:{line_no}"
        if len(row) != len(header):
            raise MazeDataError(f"{where}: {len(row)} fields; expected {len(header)} ({','.join(header)})")
        tokens = {}
        for name, idx in (("question", qi), ("answer", ai)):
            s = row[idx]
            if len(s) != SEQ_LEN:
                raise MazeDataError(f"{where}: {name} has {len(s)} characters; expected {SEQ_LEN} (30x30)")
            bad = sorted(set(s) - set(CHARS))
            if bad:
                raise MazeDataError(f"{where}: {name} has characters {bad}; expected only {CHARS!r}")
            tokens[name] = encode(s)
        q, a = tokens["question"], tokens["answer"]
        if np.any(q == PATH):
            raise MazeDataError(f"{where}: question contains path cells 'o'; expected only '# SG'")
        if np.sum(q == START) != 1 or np.sum(q == GOAL) != 1:
            raise MazeDataError(f"{where}: question has {int(np.sum(q == START))} 'S' and {int(np.sum(q == GOAL))} "
                                f"'G'; expected exactly one of each")
        differs = (a != q) & ~((q == OPEN) & (a == PATH))
        if np.any(differs):
            k = int(np.flatnonzero(differs)[0])
            raise MazeDataError(f"{where}: answer differs from the question at cell {k} (row {k // SIZE}, column "
                                f"{k % SIZE}): {CHARS[q[k] - 1]!r} -> {CHARS[a[k] - 1]!r}; expected only ' ' -> 'o'")
        length, _ = shortest_path(q)
        if length < 0:
            raise MazeDataError(f"{where}: no path from S to G; expected a solvable maze")
        qs.append(q)
        as_.append(a)
        lens.append(length)
    if not qs:
        raise MazeDataError(f"{path}: no mazes; expected a header and at least one line")
    return MazeSet(np.stack(qs), np.stack(as_), np.array(lens, np.int32))


def augment(question: np.ndarray, answer: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray]:
    """Dihedral transform `t` (0..7, ids of `arc.dihedral`) of a maze and its answer, [S] -> [S]."""
    from recur_jax.tasks.arc.data import dihedral

    n = board_side(question)

    def f(x):
        return np.ascontiguousarray(dihedral(np.asarray(x).reshape(n, n), t)).reshape(n * n)
    return f(question), f(answer)


def describe(mazes: MazeSet) -> dict[str, Any]:
    """Path-length statistics (min, mean, max) of a set, JSON-able."""
    if not len(mazes):
        return {}
    p = mazes.path_lengths
    return {"path_length_min": int(p.min()), "path_length_mean": float(p.mean()), "path_length_max": int(p.max())}


if __name__ == "__main__":  # python -m recur_jax.tasks.maze.data 1000 [workers]: generate and check hard mazes
    import sys
    import time

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    w = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    t0 = time.time()
    m = generate(n, seed=0, workers=w)
    dt = time.time() - t0
    ok = 0
    for i in range(n):
        length, _ = shortest_path(m.questions[i])
        valid, optimal = path_validity(m.questions[i], m.answers[i])
        ok += length == m.path_lengths[i] and length >= MIN_PATH and valid and optimal
    print(f"{n} mazes in {dt:.1f} s with {w} workers; {ok} solvable with shortest path >= {MIN_PATH} and a "
          f"valid optimal answer; {describe(m)}")

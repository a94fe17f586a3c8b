"""A bitmask backtracking Sudoku solver (naked + hidden singles, MRV branching); its search-node count
is the difficulty rating of generated puzzles.
"""

from __future__ import annotations


import numpy as np

from recur_jax.tasks.sudoku.grid import SEQ_LEN, _ALL, _BIT, _DIGIT, _PEERS, _POPC_PY, _UNITS_PY

# ----------------------------------------------------------------------------------------------
# Reference solver (pure Python, one puzzle)


def _propagate_py(c: list, todo: list) -> bool:
    """Naked + hidden singles to the fixed point, in place; False on a contradiction.

    `todo` lists solved cells whose digit has not been removed from their peers yet.
    """
    peers, units, popc = _PEERS, _UNITS_PY, _POPC_PY
    while True:
        while todo:
            i = todo.pop()
            v = c[i]
            for p in peers[i]:
                w = c[p]
                if w & v:
                    w ^= v
                    if not w:
                        return False
                    c[p] = w
                    if not w & (w - 1):
                        todo.append(p)
        for u in units:
            once = twice = 0
            for i in u:
                w = c[i]
                twice |= once & w
                once |= w
            if once != _ALL:
                return False
            only = once & ~twice
            if only:
                for i in u:
                    w = c[i] & only
                    if w:
                        if popc[w] > 1:  # two digits that each have only this cell
                            return False
                        if c[i] != w:
                            c[i] = w
                            todo.append(i)
        if not todo:
            return True


def _search_py(cand: list, cap: int) -> tuple[list | None, int, int]:
    """Binary-split DFS on candidate masks [81]: returns (first solution masks or None, solutions
    found (at most `cap`), branch nodes). Same search as the vectorised engine, node for node."""
    popc = _POPC_PY
    stack = [(list(cand), [i for i in range(81) if cand[i] and not cand[i] & (cand[i] - 1)])]
    first, nsol, guesses = None, 0, 0
    while stack:
        c, todo = stack.pop()
        if not _propagate_py(c, todo):
            continue
        best, bc = -1, 10
        for i in range(81):
            pc = popc[c[i]]
            if 1 < pc < bc:
                best, bc = i, pc
                if pc == 2:
                    break
        if best < 0:
            nsol += 1
            if first is None:
                first = c
            if nsol >= cap:
                break
            continue
        guesses += 1
        v = c[best]
        a = v & -v
        rest = list(c)
        r = v ^ a
        rest[best] = r
        stack.append((rest, [best] if not r & (r - 1) else []))
        c[best] = a
        stack.append((c, [best]))
    return first, nsol, guesses


def solve(question) -> tuple[np.ndarray | None, int, int]:
    """Solves a 9x9 Sudoku and rates it: backtracking on bitmasks with constraint propagation.

    Propagation is naked singles (a cell's only candidate is removed from its 20 peers) and hidden
    singles (a digit with one place in a row, column or box goes there), to the fixed point; at a
    stall the search branches on the first cell with the fewest candidates (MRV), binary split:
    "cell = its lowest candidate" first, then "cell != that digit". The whole tree is explored until
    a second solution is found, so the node count of a unique puzzle does not depend on where its
    solution lies. The node count is the rating of generated puzzles. Sudoku-Extreme's `rating` is a
    count of tdoku backtracks (mean 22 per puzzle, HRM.md); the two measure the same kind of thing
    (how much search propagation leaves) on different scales.

    Args:
      question: integer digits [81] (0 = blank), e.g. a row of `SudokuSet.questions`.
    Returns:
      (solution uint8 [81] or None, number of solutions capped at 2, guesses) where guesses is the
      number of branching decisions made (0 = solvable by singles alone). With conflicting givens:
      (None, 0, 0).
    Raises:
      ValueError: shape is not [81] or a value outside 0..9.
    """
    q = np.asarray(question)
    if q.shape != (SEQ_LEN,):
        raise ValueError(f"solve: expected digits of shape [81], got {q.shape}")
    if q.min() < 0 or q.max() > 9:
        raise ValueError("solve: digits must be in 0..9")
    cand = [int(_BIT[d]) if d else _ALL for d in q.tolist()]
    first, nsol, guesses = _search_py(cand, 2)
    sol = None if first is None else _DIGIT[np.asarray(first, np.intp)].astype(np.uint8)
    return sol, nsol, guesses

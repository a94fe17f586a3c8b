"""A seeded generator of unique-solution Sudoku puzzles in difficulty tiers (easy: singles only; medium;
hard: needs search; mixed), for experiments without the official data (e.g. the CPU demo).
"""

from __future__ import annotations

import multiprocessing
import os

import numpy as np

from recur_jax.tasks.sudoku.grid import SEQ_LEN, SudokuSet, _ALL, _BIT, _CU0, _CU1, _CU2, _DIGIT, _KTH, _LOWBIT, _POPC, _UNITS, _UNITS_T, _mix64

TIERS = ("easy", "medium", "hard", "mixed")
EASY_GIVENS = (36, 45)  # inclusive range of givens of the "easy" tier
HARD_MIN_GUESSES = 1  # the "hard" tier keeps puzzles whose rating (search nodes) is at least this
MIXED_FRACTIONS = (1 / 3, 1 / 3, 1 / 3)  # easy, medium, hard shares of the "mixed" tier (per puzzle draw)


# ----------------------------------------------------------------------------------------------
# Vectorised search engine and generator



def _hash(*parts) -> np.ndarray:
    """Counter-based random uint64 from integer parts (arrays broadcast)."""
    h = np.zeros((), np.uint64)
    with np.errstate(over="ignore"):
        for p in parts:
            h = _mix64(h ^ np.asarray(p).astype(np.uint64))
    return h


def _uniform(h: np.ndarray) -> np.ndarray:
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def _once_twice(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[9, U, n] masks (the 9 cells of U units, lanes last) -> digits present at least once, at
    least twice, per unit and lane: ([U, n], [U, n])."""
    once = a[0].copy()
    twice = np.zeros_like(once)
    tmp = np.empty_like(once)
    for k in range(1, 9):
        v = a[k]
        np.bitwise_and(once, v, out=tmp)
        twice |= tmp
        once |= v
    return once, twice


_Z16, _ONE16 = np.uint16(0), np.uint16(1)
# SWAR: four 16-bit candidate masks (lanes) per uint64 word; bit 15 of each field is a guard bit.
_G4 = np.uint64(0x8000800080008000)
_ONE4 = np.uint64(0x0001000100010001)
_ALL4 = np.uint64(_ALL * 0x0001000100010001)
_FFFF, _S15 = np.uint64(0xFFFF), np.uint64(15)


def _zmask(v: np.ndarray) -> np.ndarray:
    """Field-wise on uint64 words of four 16-bit fields (each < 0x8000): 0xFFFF where zero, else 0."""
    return ((~((v | _G4) - _ONE4) & _G4) >> _S15) * _FFFF


def _round(x16: np.ndarray, rmask16: np.ndarray | None = None):
    """One synchronous propagation round on candidate masks, cell-major: x16 [81, m] uint16, m % 4 == 0.

    Returns (x2 [81, m] uint16, contradiction [m], all_single [m] (of the input), changed [m],
    determined [m] (every cell where rmask16 [81, m] is 0xFFFF has one candidate in x2; None without
    rmask16)). Naked singles remove each solved digit from the other cells of its units (a solved
    digit twice in a unit empties those cells); hidden singles assign a digit that has one place in
    a unit (two such digits for one cell empty it); contradiction = an empty cell or a digit with no
    place in a unit. Iterated, this reaches the fixed point of `_propagate_py`: both apply the same
    monotone rules to closure. Bitwise work runs on four lanes per uint64 word; `x & (x - 1)` uses
    the guard bit so that no borrow crosses fields.
    """
    m = x16.shape[1]
    x = x16.view(np.uint64)  # [81, m / 4]
    nz = ((x | _G4) - _ONE4) & x  # f & (f - 1) per field: zero <=> at most one candidate
    sm = _zmask(nz)
    once, twice = _once_twice((x & sm)[_UNITS_T])
    e = once[_CU0]
    e |= once[_CU1]
    e |= once[_CU2]
    t = twice[_CU0]
    t |= twice[_CU1]
    t |= twice[_CU2]
    # unsolved cells lose the digits solved in their units; a solved digit seen twice empties the cell
    x1 = x & ~((t & sm) | (e & ~sm))
    once2, twice2 = _once_twice(x1[_UNITS_T])
    miss = np.bitwise_or.reduce(once2 ^ _ALL4, axis=0)
    only = once2 & ~twice2
    h = only[_CU0]
    h |= only[_CU1]
    h |= only[_CU2]
    h &= x1
    nz_h = ((h | _G4) - _ONE4) & h
    x2 = (x1 & _zmask(h)) | (h & _zmask(nz_h))
    empty = np.bitwise_or.reduce(~((x2 | _G4) - _ONE4) & _G4, axis=0)
    chg = np.bitwise_or.reduce(x2 ^ x, axis=0)
    notsingle = np.bitwise_or.reduce(nz, axis=0)
    det = None
    if rmask16 is not None:
        nz2 = ((x2 | _G4) - _ONE4) & x2
        det = np.bitwise_or.reduce(nz2 & rmask16.view(np.uint64), axis=0).view(np.uint16) == 0
    contra = (miss.view(np.uint16) != 0) | (empty.view(np.uint16) != 0)
    return (x2.view(np.uint16).reshape(SEQ_LEN, m), contra, notsingle.view(np.uint16) == 0,
            chg.view(np.uint16) != 0, det)


# job kinds
_FILL, _SINGLES, _EXCL, _RATE = 0, 1, 2, 3
# hash purposes
_P_ATTEMPT, _P_TIER, _P_BOX, _P_ORDER, _P_TARGET, _P_BRANCH = 11, 12, 13, 14, 15, 16
_TIER_CODE = {"easy": 0, "medium": 1, "hard": 2}
_FIRST_BLOCK = 36  # medium/hard: the first singles check removes this many cells at once
_SECONDS_PER_PUZZLE = (1 / 7000, 1 / 2200, 1 / 500)  # one core, measured; to choose workers=None


class _Lanes:
    """Puzzle generation for one chunk of one tier: `n_lanes` attempts in flight, advanced one
    propagation round at a time (numpy, vectorised over lanes).

    Attempt j of chunk k draws everything from hashes of (seed, stream, requested tier, tier, k, j),
    and lanes never interact, so an attempt's outcome is a pure function of j. It FILLs a random
    grid (three random diagonal boxes, completed by a search branching on random candidates), then
    tries to remove the cells in a random order:

      * SINGLES job: remove a block of cells, keep them out if the puzzle stays solvable by singles
        (propagation only). Blocks are exact: singles-solvability is monotone in the givens, so a
        block passes iff each one-cell step would. Failing blocks are halved down to one cell.
      * easy: stop at the target number of givens; medium: after all 81 cells (singles-minimal).
      * hard: a cell that singles cannot spare gets an EXCL job (search for a solution with that cell
        != its digit; none => still unique => removed). After the first such removal the puzzle needs
        search, and every later cell goes to EXCL. At the end (a minimal puzzle) a RATE job counts the
        search nodes; the attempt succeeds if some removal needed EXCL and the rating reaches
        `min_rating`.

    The chunk's output is the successful attempts with the `n_out` smallest indices j (attempts are
    dispatched in order while fewer than n_out have succeeded; those beyond the n_out-th success are
    abandoned), so puzzle p of chunk k depends on (seed, stream, tiers, k, p) only: not on n_out (a
    smaller request is a prefix), the number of lanes, the scheduling or the workers. The search
    stack holds at most 81 entries: each pending alternative belongs to a distinct cell fixed on the
    current path.
    """

    def __init__(self, seed: int, stream: int, tier: int, chunk: int, n_out: int, n_lanes: int,
                 requested: int | None = None, min_rating: int = HARD_MIN_GUESSES):
        self.seed, self.stream, self.tier, self.chunk, self.n_out = seed, stream, tier, chunk, n_out
        self.min_rating = min_rating
        self.requested = tier if requested is None else requested  # "mixed" (3) draws its own puzzles
        self.next_attempt = 0
        self.succ: list[tuple[np.ndarray, ...]] = []
        self.n_succ = 0
        self.threshold = np.iinfo(np.int64).max
        self.n_lanes = n_lanes
        L = -(-n_lanes // 4) * 4  # the round works on groups of four lanes
        self.C = np.full((SEQ_LEN, L), _ALL, np.uint16)  # cell-major candidate masks
        self.RM = np.zeros((SEQ_LEN, L), np.uint16)  # 0xFFFF at the cells a SINGLES job removed
        self.stack = np.zeros((L, SEQ_LEN, SEQ_LEN), np.uint16)  # depth <= 81: one entry per fixed cell
        self.depth = np.zeros(L, np.intp)
        self.guesses = np.zeros(L, np.int64)
        self.nsol = np.zeros(L, np.int32)
        self.kind = np.zeros(L, np.int8)
        self.active = np.zeros(L, bool)
        self.att = np.zeros(L, np.int64)
        self.key = np.zeros(L, np.uint64)
        self.S = np.zeros((L, SEQ_LEN), np.uint8)
        self.G = np.zeros((L, SEQ_LEN), bool)
        self.R = np.zeros((L, SEQ_LEN), bool)
        self.order = np.zeros((L, SEQ_LEN), np.intp)
        self.ptr = np.zeros(L, np.intp)
        self.block = np.zeros(L, np.intp)
        self.target = np.zeros(L, np.intp)
        self.broken = np.zeros(L, bool)
        self.branches = np.zeros(L, np.int64)
        self.lane_rounds = np.zeros(4, np.int64)  # per job kind, for profiling
        self.rounds = 0

    def run(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Returns (questions [n_out, 81], answers [n_out, 81], ratings [n_out], attempt indices [n_out])."""
        self._dispatch(np.arange(self.n_lanes))
        while True:
            if self.n_succ >= self.n_out:
                self.active &= self.att <= self.threshold
            ix = np.nonzero(self.active)[0]
            if not ix.size:
                break
            self.lane_rounds += np.bincount(self.kind[ix], minlength=4)
            self.rounds += 1
            done, res = self._step(ix)
            if done.size:
                self._on_done(done, res)
        att = np.concatenate([s[0] for s in self.succ]) if self.succ else np.zeros(0, np.int64)
        take = np.argsort(att, kind="stable")[: self.n_out]
        cat = [np.concatenate([s[i] for s in self.succ]) if self.succ else None for i in range(1, 4)]
        if len(take) < self.n_out:
            raise RuntimeError("sudoku generator ended with too few puzzles")  # cannot happen
        return cat[0][take], cat[1][take], cat[2][take], att[take]

    # -- attempts -----------------------------------------------------------------------------------

    def _dispatch(self, lanes: np.ndarray) -> None:
        """Free lanes take the next attempts while fewer than n_out attempts have succeeded."""
        if not lanes.size:
            return
        if self.n_succ >= self.n_out:
            self.active[lanes] = False
            return
        self.att[lanes] = self.next_attempt + np.arange(len(lanes))
        self.next_attempt += len(lanes)
        self.active[lanes] = True
        self._start_fill(lanes)

    def _emit(self, lanes: np.ndarray, ratings) -> None:
        if not lanes.size:
            return
        q = np.where(self.G[lanes], self.S[lanes], 0).astype(np.uint8)
        r = np.broadcast_to(np.asarray(ratings, np.float32), (len(lanes),)).copy()
        self.succ.append((self.att[lanes].copy(), q, self.S[lanes].copy(), r))
        self.n_succ += len(lanes)
        if self.n_succ >= self.n_out:
            att = np.concatenate([s[0] for s in self.succ])
            self.threshold = int(np.partition(att, self.n_out - 1)[self.n_out - 1])
        self._dispatch(lanes)

    def _start_fill(self, lanes: np.ndarray) -> None:
        self.key[lanes] = _hash(self.seed, self.stream, self.requested, self.tier, self.chunk, _P_ATTEMPT,
                                self.att[lanes])
        key = self.key[lanes]
        n = len(lanes)
        c = np.full((n, SEQ_LEN), _ALL, np.uint16)
        boxes = _UNITS[[18, 22, 26]]  # the diagonal boxes share no unit: any filling completes
        perm = np.argsort(_hash(key[:, None, None], _P_BOX, np.arange(27).reshape(1, 3, 9)), axis=2) + 1
        c[np.arange(n)[:, None, None], boxes[None]] = _BIT[perm]
        self.C[:, lanes] = c.T
        self.R[lanes] = False
        self.branches[lanes] = 0
        self._set_job(lanes, _FILL)

    def _set_job(self, lanes: np.ndarray, kind: int) -> None:
        self.kind[lanes] = kind
        self.depth[lanes] = 0
        self.guesses[lanes] = 0
        self.nsol[lanes] = 0

    def _start_job(self, lanes: np.ndarray, kind: int) -> None:
        """SINGLES / EXCL / RATE on the current givens less the cells in R."""
        s = self.S[lanes]
        c = np.where(self.G[lanes] & ~self.R[lanes], _BIT[s], np.uint16(_ALL))
        if kind == _EXCL:
            c = np.where(self.R[lanes], c & ~_BIT[s], c)
        self.C[:, lanes] = c.T
        self.RM[:, lanes] = np.where(self.R[lanes], np.uint16(0xFFFF), _Z16).T
        self._set_job(lanes, kind)

    # -- one round ----------------------------------------------------------------------------------

    def _step(self, ix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One propagation round for the active lanes `ix`, then search moves; returns the lanes
        whose job ended and their results (1 ok, 2 fail)."""
        L = self.C.shape[1]
        kind = self.kind[ix]
        sing = kind == _SINGLES
        if 4 * len(ix) >= 3 * L:  # nearly all lanes active: run all of them, no gather
            cols, sel = None, ix
            x, rm = self.C, self.RM
        else:
            m = -(-len(ix) // 4) * 4
            cols = np.concatenate([ix, np.full(m - len(ix), ix[0])])
            sel = np.arange(len(ix))
            x, rm = np.take(self.C, cols, axis=1), np.take(self.RM, cols, axis=1)
        x2, contra, allsingle, changed, det = _round(x, rm if sing.any() else None)
        contra, allsingle, changed = contra[sel], allsingle[sel], changed[sel]
        solved = allsingle & ~contra
        stalled = ~(changed | contra | allsingle)
        res = np.zeros(len(ix), np.int8)  # 0 running, 1 ok, 2 fail
        if det is not None:
            ok = sing & ~contra & (solved | det[sel])  # the removed cells are determined again
            res[ok] = 1
            res[sing & ~ok & (stalled | contra)] = 2
        srch = ~sing
        res[srch & solved & (kind == _EXCL)] = 2  # another solution: not unique
        res[srch & solved & (kind == _FILL)] = 1
        rate_sol = srch & solved & (kind == _RATE)
        if rate_sol.any():
            self.nsol[ix[rate_sol]] += 1
        pop = srch & (contra | rate_sol)
        if pop.any():
            p = np.nonzero(pop)[0]
            lanes = ix[p]
            d = self.depth[lanes]
            has = d > 0
            pl = lanes[has]
            x2[:, sel[p[has]]] = self.stack[pl, d[has] - 1].T
            self.depth[pl] -= 1
            ex = p[~has]
            res[ex] = np.where(kind[ex] == _FILL, 2, 1)  # tree exhausted
        br = srch & stalled
        if br.any():
            b = np.nonzero(br)[0]
            lanes = ix[b]
            y = np.ascontiguousarray(x2[:, sel[b]].T)
            pc = _POPC[y]
            cell = np.argmin(np.where(pc > 1, pc, 99), axis=1)  # MRV, first cell on ties
            r = np.arange(len(b))
            v = y[r, cell]
            a = _LOWBIT[v]
            xb = kind[b] == _EXCL  # try the known solution's digit first: another solution, if
            if xb.any():  # any, mostly differs from it in a few cells (the count is unchanged)
                sd = _BIT[self.S[lanes[xb], cell[xb]]]
                a[xb] = np.where(v[xb] & sd, sd, a[xb])
            f = kind[b] == _FILL
            if f.any():
                fl = lanes[f]
                u = _uniform(_hash(self.key[fl], _P_BRANCH, self.branches[fl]))
                a[f] = _KTH[v[f], (u * _POPC[v[f]]).astype(np.intp)]
                self.branches[fl] += 1
            alt = y.copy()
            alt[r, cell] = v ^ a
            self.stack[lanes, self.depth[lanes]] = alt
            self.depth[lanes] += 1
            y[r, cell] = a
            x2[:, sel[b]] = y.T
            self.guesses[lanes] += 1
        if cols is None:
            self.C = x2
        else:
            self.C[:, ix] = x2[:, : len(ix)]
        done = res != 0
        return ix[done], res[done]

    # -- job transitions ----------------------------------------------------------------------------

    def _on_done(self, lanes: np.ndarray, res: np.ndarray) -> None:
        kind = self.kind[lanes]
        ok = res == 1
        for k, handler in ((_FILL, self._fill_done), (_SINGLES, self._singles_done),
                           (_EXCL, self._excl_done), (_RATE, self._rate_done)):
            m = kind == k
            if m.any():
                handler(lanes[m], ok[m])

    def _fill_done(self, lanes: np.ndarray, ok: np.ndarray) -> None:
        self._dispatch(lanes[~ok])  # cannot happen: every diagonal-box filling completes
        lanes = lanes[ok]
        if not lanes.size:
            return
        self.S[lanes] = _DIGIT[self.C[:, lanes].T]
        self.G[lanes] = True
        key = self.key[lanes]
        self.order[lanes] = np.argsort(_hash(key[:, None], _P_ORDER, np.arange(SEQ_LEN)[None]), axis=1)
        self.ptr[lanes] = 0
        self.broken[lanes] = False
        lo, hi = EASY_GIVENS
        self.target[lanes] = lo + (_hash(key, _P_TARGET) % np.uint64(hi - lo + 1)).astype(np.intp)
        self.block[lanes] = SEQ_LEN - self.target[lanes] if self.tier == 0 else _FIRST_BLOCK
        self._next_job(lanes)

    def _singles_done(self, lanes: np.ndarray, ok: np.ndarray) -> None:
        nrem = self.R[lanes].sum(axis=1)
        acc = lanes[ok]
        self.G[acc] &= ~self.R[acc]
        self.ptr[acc] += nrem[ok]
        self.block[acc] = np.minimum(2 * self.block[acc], SEQ_LEN)
        rej, nrej = lanes[~ok], nrem[~ok]
        self.block[rej] = np.maximum(1, nrej // 2)
        one = rej[nrej == 1]
        if self.tier == 2:  # can the cell go while the solution stays unique? Start from the
            # stalled singles state with the cell != its digit (same closure as from scratch)
            cell = np.argmax(self.R[one], axis=1)
            self.C[cell, one] &= ~_BIT[self.S[one, cell]]
            self._set_job(one, _EXCL)
        else:
            self.ptr[one] += 1  # the cell stays a given
        self._next_job(np.concatenate([acc, rej[nrej > 1]]) if self.tier == 2 else lanes)

    def _excl_done(self, lanes: np.ndarray, unique: np.ndarray) -> None:
        acc = lanes[unique]
        self.G[acc] &= ~self.R[acc]
        self.broken[acc] = True
        self.ptr[lanes] += 1
        self.block[lanes] = 1
        self._next_job(lanes)

    def _rate_done(self, lanes: np.ndarray, ok: np.ndarray) -> None:
        g = self.guesses[lanes]
        good = ok & (self.nsol[lanes] == 1) & (g >= self.min_rating)
        self._dispatch(lanes[~good])
        self._emit(lanes[good], g[good].astype(np.float32))

    def _next_job(self, lanes: np.ndarray) -> None:
        """Starts the next removal job of lanes whose last job ended (or emits / fails them)."""
        if not lanes.size:
            return
        self.R[lanes] = False
        remaining = SEQ_LEN - self.ptr[lanes]
        if self.tier == 0:
            need = self.G[lanes].sum(axis=1) - self.target[lanes]
            fin = need == 0
            self._emit(lanes[fin], 0.0)
            stuck = ~fin & (need > remaining)
            self._dispatch(lanes[stuck])  # cannot reach the target givens: the attempt fails
            go = ~fin & ~stuck
            b = np.minimum(np.minimum(self.block[lanes], remaining), need)[go]
        else:
            fin = remaining == 0
            f = lanes[fin]
            if self.tier == 1:
                self._emit(f, 0.0)
            else:
                self._dispatch(f[~self.broken[f]])  # singles-minimal is minimal: rating 0, not hard
                self._start_job(f[self.broken[f]], _RATE)
            go = ~fin
            b = np.minimum(self.block[lanes], remaining)[go]
        g = lanes[go]
        if not g.size:
            return
        ptr = self.ptr[g]
        if self.tier == 2:
            brk = self.broken[g]
            e = g[brk]
            self.R[e, self.order[e, ptr[brk]]] = True
            self._start_job(e, _EXCL)
            g, b, ptr = g[~brk], b[~brk], ptr[~brk]
        pos = np.arange(SEQ_LEN)[None]
        sel = (pos >= ptr[:, None]) & (pos < (ptr + b)[:, None])
        rows, cols = np.nonzero(sel)
        self.R[g[rows], self.order[g[rows], cols]] = True
        self._start_job(g, _SINGLES)


def _generate_chunk(args) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    seed, stream, requested, tier, chunk, n_out, n_lanes, min_rating = args
    lanes = _Lanes(seed, stream, _TIER_CODE[tier], chunk, n_out, n_lanes, TIERS.index(requested), min_rating)
    q, a, r, _ = lanes.run()
    return q, a, r


def _tier_of_slots(seed: int, stream: int, num: int) -> np.ndarray:
    """The "mixed" tier: tier index (0 easy, 1 medium, 2 hard) of each output slot, [num] int8."""
    u = _uniform(_hash(seed, stream, _P_TIER, np.arange(num)))
    return np.searchsorted(np.cumsum(MIXED_FRACTIONS)[:-1], u, side="right").astype(np.int8)


def generate(num: int, seed: int, *, tier: str = "mixed", workers: int | None = None, stream: int = 0,
             min_rating: int = HARD_MIN_GUESSES, chunk_size: int = 2048, lanes: int = 1024) -> SudokuSet:
    """Generates unique-solution 9x9 puzzles with ratings, reproducibly from the seed.

    Method: a random full grid (three random diagonal boxes completed by a search that branches on
    random candidates), then its cells removed in a random order (see `_Lanes`):

      * "easy": removals keep the puzzle solvable by naked + hidden singles alone (so the solution is
        unique); stop at a target drawn uniformly in EASY_GIVENS = 36..45 givens. Rating 0.
      * "medium": the same through all 81 cells: a singles-minimal puzzle (every given is needed for
        singles to finish). Rating 0; 20-31 givens, mean 24.6 (measured on 100k).
      * "hard": removals keep the solution unique (singles when they suffice, otherwise a search for
        a second solution): a minimal puzzle (every given needed for uniqueness), kept only if
        singles alone cannot solve it and its rating is at least `min_rating` (default
        HARD_MIN_GUESSES = 1; about 46% of attempts qualify). 20-30 givens, mean 24.4. Ratings
        measured on 100k: 1: 31%, 2: 21%, 3: 15%, 4: 9%, 5: 7%, >= 10: 6%; median 2, mean 3.6,
        p90 7, p99 19, max 130-170. The kind of Sudoku-Extreme (propagation stalls, search is
        needed), but mostly milder than its hardest puzzles (it reports a mean of 22 tdoku
        backtracks); raise `min_rating` for harder ones (the cost grows as the share of qualifying
        attempts falls).
      * "mixed": each puzzle independently easy, medium or hard with probabilities MIXED_FRACTIONS
        (1/3 each), drawn per output index; its puzzles differ from those of the single tiers.

    Ratings equal `solve(question)[2]`. Grids are not sampled uniformly from all Sudoku grids.
    Puzzles are computed in chunks of `chunk_size` per tier, each by a numpy engine running `lanes`
    attempts in lock-step (see `_Lanes`), chunks spread over `workers` spawned processes. Output i
    depends only on (seed, stream, tier, min_rating, chunk_size, i): not on `workers`, `lanes` or
    `num` (generate(n) is a prefix of generate(m) for n < m). Measured speed, one core: easy ~7k/s,
    medium ~2.2k/s, hard ~500/s, mixed ~1.1k/s; 100k puzzles on an idle 2-core machine with
    workers=2: easy 10 s, medium 31 s, hard 100 s, mixed 52 s.

    Args:
      num: number of puzzles (>= 0).
      seed: non-negative int.
      tier: "easy", "medium", "hard" or "mixed".
      workers: processes (None: os.cpu_count() when the job is expected to take more than ~2 s on
        one core, else 1; 1: in this process). Processes are spawned (safe after JAX started), so a
        script calling this with workers > 1 needs the `if __name__ == "__main__":` guard.
      stream: extra non-negative int mixed into every random choice (e.g. 0 for train, 1 for test).
      min_rating: (hard) the least rating kept, >= 1.
      chunk_size: puzzles per chunk (part of the identity of the output).
      lanes: attempts in flight per chunk (speed only).
    Returns:
      SudokuSet of `num` puzzles: questions uint8 [num, 81] (0 = blank), answers uint8 [num, 81],
      ratings float32 [num] (search nodes of `solve`).
    Raises:
      ValueError: unknown tier, negative num/seed/stream, min_rating < 1, non-positive
        workers/chunk_size/lanes.
    """
    if tier not in TIERS:
        raise ValueError(f"generate: tier={tier!r}; expected one of {TIERS}")
    if num < 0 or seed < 0 or stream < 0:
        raise ValueError(f"generate: num={num}, seed={seed}, stream={stream}; expected non-negative ints")
    if min_rating < 1:
        raise ValueError(f"generate: min_rating={min_rating}; expected >= 1 (hard puzzles need search)")
    if chunk_size < 1 or lanes < 1 or (workers is not None and workers < 1):
        raise ValueError(f"generate: workers={workers}, chunk_size={chunk_size}, lanes={lanes}; expected positive ints")
    seed, stream = int(seed), int(stream)
    slot_tier = _tier_of_slots(seed, stream, num) if tier == "mixed" else np.full(num, TIERS.index(tier), np.int8)
    tasks, where = [], []
    for t in (2, 1, 0):  # slowest tier first: better balance over the workers
        name = TIERS[t]
        slots = np.nonzero(slot_tier == t)[0]
        for k, s in enumerate(range(0, len(slots), chunk_size)):
            n_out = min(chunk_size, len(slots) - s)
            tasks.append((seed, stream, tier, name, k, n_out, max(1, min(lanes, 2 * n_out + 16)), min_rating))
            where.append(slots[s:s + n_out])
    if workers is None:  # processes only pay off beyond about a second of work (spawn start-up)
        counts = np.bincount(slot_tier, minlength=3)
        seconds = float(counts @ np.array(_SECONDS_PER_PUZZLE))
        workers = (os.cpu_count() or 1) if seconds > 2.0 else 1
    workers = min(workers, max(1, len(tasks)))
    if workers == 1:
        parts = [_generate_chunk(t) for t in tasks]
    else:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            parts = pool.map(_generate_chunk, tasks, chunksize=1)
    q = np.zeros((num, SEQ_LEN), np.uint8)
    a = np.zeros((num, SEQ_LEN), np.uint8)
    r = np.zeros(num, np.float32)
    for idx, (pq, pa, pr) in zip(where, parts):
        q[idx], a[idx], r[idx] = pq, pa, pr
    return SudokuSet(q, a, r)

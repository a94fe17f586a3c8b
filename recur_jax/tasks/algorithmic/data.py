"""Algorithmic tasks whose serial depth grows with the input: sorting, multi-digit addition, prefix sums.

Both are the kind of problem behind the compute-depth argument of the HRM and TRM papers: a network of
fixed depth cannot run an algorithm whose number of sequential steps grows with the input size (a
comparison sort needs on the order of N log N comparisons; the carry of an N-digit addition can
propagate through all N digits), while a small network applied recursively can. Lengths are drawn per
example from a range, so a model can be trained short and tested longer within one fixed `seq_len`.

Encoding (token 0 = PAD everywhere; `targets` 0 means "not supervised", mapped to IGNORE_LABEL_ID by
the task's transform):

  * sort: inputs = [v_1 .. v_n, PAD ...] with value v in 0..num_values-1 as token v+1 (vocab
    num_values + 1); targets = the sorted values at positions 0..n-1.
  * addition: two n-digit numbers a, b, least significant digit first: inputs = [a_0 .. a_{n-1},
    b_0 .. b_{n-1}, PAD ...] with digit d as token d+1 (vocab 11); targets = the n+1 digits of a + b
    (least significant first) at positions 0..n, the rest unsupervised. seq_len >= 2 * max length.
    With layout "interleaved" the digits of a and b alternate, [a_0, b_0, a_1, b_1, ...], and sum digit
    i is the target at position 2i (the carry out, digit n, at position 2n; seq_len >= 2 * max length
    + 1): the digits a column adds are neighbours whatever n is, so a local mixer can learn one rule
    for every length (length extrapolation).
  * prefix_sum: the "deep thinking" prefix-sum task (Schwarzschild et al. 2021, arXiv 2106.04537): n
    random bits, bit b as token b+1 (vocab 3); target at position i the parity of bits 0..i (the
    running sum mod 2) as token p+1. Position i depends on all i+1 bits before it, so a mixer that
    moves information a fixed distance per call needs ~n calls: depth grows with the length.

Generation is seeded numpy and vectorised; `split_seed` gives train and test independent streams.
"""

from __future__ import annotations

import dataclasses

import numpy as np

PAD = 0
TASKS = ("sort", "addition", "prefix_sum")
LAYOUTS = ("blocks", "interleaved")


@dataclasses.dataclass(frozen=True)
class AlgorithmicSet:
    """Examples of one split.

    Attributes:
      inputs: [N, seq_len] uint8 tokens (0 = PAD).
      targets: [N, seq_len] uint8 target tokens (0 = unsupervised).
      lengths: [N] int32, the list length (sort) or digit count (addition) of each example.
    """

    inputs: np.ndarray
    targets: np.ndarray
    lengths: np.ndarray

    def __len__(self) -> int:
        return len(self.inputs)


def vocab_size(task: str, num_values: int = 10) -> int:
    """Tokens of `task`: PAD plus the values (sort: num_values + 1; addition: 11; prefix_sum: 3).

    Raises:
      ValueError: unknown task.
    """
    if task == "sort":
        return num_values + 1
    if task == "addition":
        return 11
    if task == "prefix_sum":
        return 3
    raise ValueError(f"algorithmic task {task!r}; expected one of {TASKS}")


def check_lengths(task: str, seq_len: int, min_len: int, max_len: int, field: str = "data",
                  layout: str = "blocks") -> None:
    """Validates a length range against `seq_len`.

    Raises:
      ValueError: naming `field`, when min_len < 1, max_len < min_len, or the longest example does not
        fit (sort, prefix_sum: max_len <= seq_len; addition: 2 * max_len <= seq_len, the sum has max_len + 1 digits).
    """
    if task not in TASKS:
        raise ValueError(f"{field}.name={task!r}; expected one of {TASKS}")
    if layout not in LAYOUTS or (layout != "blocks" and task != "addition"):
        raise ValueError(f"data.layout={layout!r}: expected 'blocks', or 'interleaved' for addition")
    if min_len < 1 or max_len < min_len:
        raise ValueError(f"{field}: lengths {min_len}..{max_len}; expected 1 <= min_len <= max_len")
    need = (2 * max_len + (layout == "interleaved")) if task == "addition" else max_len
    if need > seq_len:
        raise ValueError(f"{field}: {task} examples of length {max_len} need seq_len >= {need}, got seq_len={seq_len}")


def generate(task: str, count: int, seed: int, split_seed: int, *, seq_len: int, min_len: int, max_len: int,
             num_values: int = 10, layout: str = "blocks") -> AlgorithmicSet:
    """`count` examples of `task` with lengths uniform in [min_len, max_len].

    Args:
      task: "sort", "addition" or "prefix_sum".
      count: number of examples.
      seed, split_seed: the generator is `default_rng([seed, split_seed])` (train and test use different
        split seeds, so they are independent streams).
      seq_len: padded length.
      min_len, max_len: the range of list lengths (sort) or digit counts (addition).
      num_values: (sort) values are 0..num_values-1 (duplicates allowed).
      layout: (addition) "blocks" (a then b) or "interleaved" (see the module docstring).

    Returns:
      An AlgorithmicSet with inputs/targets [count, seq_len] uint8 and lengths [count] int32.

    Raises:
      ValueError: bad lengths (see `check_lengths`), count < 0, num_values outside 2..254.
    """
    check_lengths(task, seq_len, min_len, max_len, layout=layout)
    if count < 0:
        raise ValueError(f"count={count}; expected >= 0")
    if task == "sort" and not 2 <= num_values <= 254:
        raise ValueError(f"num_values={num_values}; expected 2..254 (uint8 tokens)")
    rng = np.random.default_rng([seed, split_seed])
    lengths = rng.integers(min_len, max_len + 1, count).astype(np.int32)
    pos = np.arange(seq_len)[None, :]
    inputs = np.zeros((count, seq_len), np.uint8)
    targets = np.zeros((count, seq_len), np.uint8)
    if task == "sort":
        values = rng.integers(0, num_values, (count, seq_len))
        live = pos < lengths[:, None]
        inputs[:] = np.where(live, values + 1, PAD)
        big = np.where(live, values, np.iinfo(np.int64).max)
        ordered = np.sort(big, axis=1)
        targets[:] = np.where(live, ordered + 1, PAD)
    elif task == "prefix_sum":
        live = pos < lengths[:, None]
        bits = np.where(live, rng.integers(0, 2, (count, seq_len)), 0)
        inputs[:] = np.where(live, bits + 1, PAD)
        targets[:] = np.where(live, np.cumsum(bits, axis=1) % 2 + 1, PAD)
    else:
        width = max_len
        a = rng.integers(0, 10, (count, width))
        b = rng.integers(0, 10, (count, width))
        live = np.arange(width)[None, :] < lengths[:, None]
        a, b = np.where(live, a, 0), np.where(live, b, 0)
        # the sum digit by digit with the carry, least significant first
        digits = np.zeros((count, width + 1), np.int64)
        carry = np.zeros(count, np.int64)
        for i in range(width):
            s = a[:, i] + b[:, i] + carry
            digits[:, i], carry = s % 10, s // 10
        digits[:, width] = carry
        for r in range(count):  # place a, b and the n+1 sum digits of row r
            n = lengths[r]
            if layout == "interleaved":
                inputs[r, 0:2 * n:2], inputs[r, 1:2 * n:2] = a[r, :n] + 1, b[r, :n] + 1
                targets[r, 0:2 * n + 1:2] = digits[r, :n + 1] + 1  # column n: 0 + 0 + the carry
                continue
            inputs[r, :n] = a[r, :n] + 1
            inputs[r, n:2 * n] = b[r, :n] + 1
            targets[r, :n] = digits[r, :n] + 1
            targets[r, n] = digits[r, n] + 1  # the carry out (column n is 0 + 0 + carry for n < width)
    return AlgorithmicSet(inputs, targets, lengths)


def decode_number(tokens: np.ndarray) -> int:
    """Digits (tokens d+1, least significant first; PAD ends) -> the integer. For checking additions."""
    value = 0
    for i, t in enumerate(np.asarray(tokens).tolist()):
        if t == PAD:
            break
        value += (int(t) - 1) * 10 ** i
    return value

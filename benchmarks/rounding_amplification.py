"""Where float32 rounding grows in TRM's recursion: per network call, float32 against float64.

Usage: python benchmarks/rounding_amplification.py tests/fixtures/reference/trm_att_seed0.npz \
           tests/fixtures/reference/trm_mlp_seed0.npz

For the first ACT step of a golden file (its weights and batch, carry reset to H_init/L_init), runs the
TRM recursion call by call (z_L <- f(z_L, z_H + x) L_cycles times, then z_H <- f(z_H, z_L), H_cycles
times) in float64 and prints per call:

  local   the error one float32 call adds: f in float32 on the float64 inputs rounded to float32, against
          f in float64 (relative to max |z|);
  chain   the error carried so far: the whole recursion in float32 against float64;
  gain    how much the call amplifies a small perturbation of its state input: ||J d|| / ||d|| for a
          random d, with ||.|| the 2-norm (a float64 central difference with |d| ~ 1e-6 |z|: the model's
          products have a custom reverse-mode rule, so forward-mode derivatives are not available);
  block   the same gain for each sub-layer of the call (token mixer + norm, channel MLP + norm).

Then, for 4 ACT steps on the same batch (the carry passed on, as for a row that does not halt): the
float32-vs-float64 error of z_H after each step and the gain of the whole step map (z_H, z_L) -> (z_H',
z_L') for a random perturbation of the carry.

A variant whose chain error grows faster with equal local errors amplifies rounding in its maths;
equal maths in another order of operations would show as larger local errors instead.
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

jax.config.update("jax_enable_x64", True)

from recur_jax.core import convert
from recur_jax.core.layers import Buffer, rms_norm  # noqa: E402
from recur_jax.core.models import ModelConfig, build_model  # noqa: E402
from recur_jax.parity import fixtures as parity  # noqa: E402


def load(path: str, dtype: str):
    data, _ = parity._load(path)
    import json

    cfg = ModelConfig.from_reference(json.loads(str(data["config"]))).replace(forward_dtype=dtype)
    model = build_model(cfg, nnx.Rngs(0))
    sd = {k[6:]: v for k, v in data.items() if k.startswith("param/")}
    table = convert.load_state_dict(model, sd, source=path)
    batch = {k: jnp.asarray(data[f"step0/batch/{k}"]) for k in ("inputs", "puzzle_identifiers")}
    return cfg, model, jnp.asarray(table), batch


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def sublayer_gains(block, h, key):
    """Gain of each sub-layer of one block at state h (float64)."""
    def mixer(h):
        if block.use_mlp_t:
            u = jnp.swapaxes(h, 1, 2)
            return jnp.swapaxes(rms_norm(u + block.mlp_t(u), block.eps), 1, 2)
        return rms_norm(h + block.self_attn(h, rope), block.eps)

    def channel(h):
        return rms_norm(h + block.mlp(h), block.eps)

    d = jax.random.normal(key, h.shape, h.dtype)
    out = []
    for f in (mixer, channel):
        out.append(gain(f, h, d))
        h = f(h)
    return out


def gain(f, z, d):
    """||J d|| / ||d|| of f at z by a central difference in float64."""
    eps = 1e-6 * float(jnp.max(jnp.abs(z))) / float(jnp.max(jnp.abs(d)))
    jd = (f(z + eps * d) - f(z - eps * d)) / (2 * eps)
    return float(jnp.linalg.norm(jd) / jnp.linalg.norm(d))


rope = None


def main(paths):
    global rope
    for path in paths:
        cfg, m64, table, batch = load(path, "float64")
        _, m32, table32, _ = load(path, "float32")
        rope = m64.rope()
        rope32 = m32.rope()
        B = batch["inputs"].shape[0]
        rows = jnp.take(table, batch["puzzle_identifiers"], axis=0)
        x64 = m64.input_embeddings(batch["inputs"], rows)
        x32 = m32.input_embeddings(batch["inputs"], rows.astype(jnp.float32))
        shape = (B, cfg.total_len, cfg.hidden_size)
        zH64, zL64 = (jnp.broadcast_to(m64.H_init[...], shape), jnp.broadcast_to(m64.L_init[...], shape))
        zH32, zL32 = zH64.astype(jnp.float32), zL64.astype(jnp.float32)
        f64 = lambda z, inj: m64.L_level(z, inj, rope)
        f32 = lambda z, inj: m32.L_level(z, inj, rope32)
        key = jax.random.key(0)
        print(f"\n{path}: {'MLP-t' if cfg.mlp_t else 'attention'}, H_cycles {cfg.H_cycles}, L_cycles {cfg.L_cycles}")
        print(f"{'call':>12} {'local':>9} {'chain':>9} {'gain':>7}  sub-layer gains per block (mixer, channel)")
        calls = []
        for h in range(cfg.H_cycles):
            calls += [("L", h, i) for i in range(cfg.L_cycles)] + [("H", h, 0)]
        for kind, h, i in calls:
            key, k1, k2 = jax.random.split(key, 3)
            if kind == "L":
                z, inj, z32, inj32 = zL64, zH64 + x64, zL32, zH32 + x32
            else:
                z, inj, z32, inj32 = zH64, zL64, zH32, zL32
            new64 = f64(z, inj)
            local = rel(f32(z.astype(jnp.float32), inj.astype(jnp.float32)), new64)
            new32 = f32(z32, inj32)
            g = gain(lambda s: f64(s, inj), z, jax.random.normal(k1, z.shape, z.dtype))
            hstate, subs = z + inj, []
            for blk in m64.L_level.layers:
                subs += sublayer_gains(blk, hstate, k2)
                hstate = blk(hstate, rope)
            if kind == "L":
                zL64, zL32 = new64, new32
            else:
                zH64, zH32 = new64, new32
            chain = rel(new32, new64)
            print(f"{kind}{h}.{i:<10} {local:9.2e} {chain:9.2e} {g:7.2f}  " + " ".join(f"{g:.2f}" for g in subs))
        inputs = batch["inputs"]
        zH64, zL64 = (jnp.broadcast_to(m64.H_init[...], shape), jnp.broadcast_to(m64.L_init[...], shape))
        zH32, zL32 = zH64.astype(jnp.float32), zL64.astype(jnp.float32)
        step64 = jax.jit(lambda zH, zL: m64(zH, zL, inputs, rows))
        step32 = jax.jit(lambda zH, zL: m32(zH, zL, inputs, rows.astype(jnp.float32)))
        pair = lambda z: jnp.concatenate([z[0], z[1]], axis=-1)
        print(f"{'ACT step':>12} {'z_H err':>9} {'gain':>7}")
        for t in range(4):
            key, k1 = jax.random.split(key)
            d = jax.random.normal(k1, (2,) + shape, jnp.float64)

            def full(z):
                out = step64(z[0], z[1])
                return jnp.stack([out.z_H, out.z_L])

            g = gain(full, jnp.stack([zH64, zL64]), d)
            o64, o32 = step64(zH64, zL64), step32(zH32, zL32)
            zH64, zL64, zH32, zL32 = o64.z_H, o64.z_L, o32.z_H, o32.z_L
            print(f"{t:>12} {rel(zH32, zH64):9.2e} {g:7.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])

"""Settings of the algorithmic tasks (sorting, multi-digit addition; recur_jax/tasks/algorithmic/data.py)."""

import ml_collections

from experiments import common
from recur_jax.tasks import algorithmic


def data_config(name: str = "sort", seq_len: int = 16, train_lengths=(2, 12), test_lengths=(2, 12)) -> ml_collections.ConfigDict:
    """Generated data; `test_lengths` above `train_lengths` tests length generalisation."""
    d = ml_collections.ConfigDict()
    d.name = name
    d.data_dir = ""  # "" = <workdir>/data
    d.seq_len = seq_len
    d.train_lengths = tuple(train_lengths)
    d.test_lengths = tuple(test_lengths)
    d.num_train = 20000
    d.num_test = 1000
    d.num_values = 10
    d.seed = 0
    d.layout = "blocks"  # addition: "blocks" (a then b) or "interleaved" (a_0 b_0 a_1 b_1 ...)
    return d


def config(name: str = "sort") -> ml_collections.ConfigDict:
    """A small TRM-Att (hidden 64, 2 layers, RoPE, no puzzle embedding) trained for a few hundred steps on
    2 CPU cores in float32."""
    c = common.base_config()
    c.data = data_config(name)
    common.cpu_training(c, total_steps=300, global_batch_size=64, checkpoint_every=150, log_every=25, ema_rate=0.95,
                        lr_warmup_steps=50)
    c.optim.weight_decay = 0.1
    c.eval.max_examples = 512
    c.model = common.model_config(
        arch="trm", vocab_size=algorithmic.vocab_size(name, c.data.num_values), seq_len=c.data.seq_len,
        num_puzzle_identifiers=1, puzzle_emb_ndim=0, puzzle_emb_len=0, hidden_size=64, num_heads=4, expansion=4,
        H_cycles=2, L_cycles=2, L_layers=2, H_layers=2, pos_encodings="rope", mlp_t=False, halt_max_steps=4,
        halt_exploration_prob=0.1, no_ACT_continue=True, grad_mode="last_sweep", forward_dtype="float32")
    return c

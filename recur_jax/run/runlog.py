"""What a run writes as it goes: `metrics.jsonl` and TensorBoard (`RunLog`), the training-metric window
(`MetricsWindow`), and the non-finite guard (`NonfiniteGuard`).

Only process 0 writes files. Metrics are fetched one step late (`MetricsWindow.add` receives step t-1's
device scalars after step t is dispatched), summed over `log_every` optimizer steps and written as one
`train` line: accuracies over the rows that halted (the reference's logging), losses per example of the
global batch. The open window is part of a checkpoint's record, so a resumed run logs exactly the lines
of an uninterrupted one.

The workdir may be a cloud URL (`recur_jax.io.paths`): metrics.jsonl is then rewritten whole per line
and TensorBoard event files are uploaded whole at each flush (`CloudEventFile`).
"""

from __future__ import annotations

import io
import json
import math
import time
from typing import Any

from recur_jax.io import paths
from recur_jax.io.errors import RunError
from recur_jax.run.step import nonfinite_policy


class TrainingDiverged(RunError):
    """The loss, a metric or a gradient became NaN/Inf; the last good checkpoint is kept."""


class RunLog:
    """metrics.jsonl + TensorBoard, written by process 0 only.

    On resume the lines after the restored step are dropped (they are replayed), as are torn lines;
    with `redo_final_eval` also the evaluation line at the restored step (the final one, run again).
    """

    def __init__(self, workdir: str, restored_step: int, active: bool, redo_final_eval: bool = False):
        self.active = active
        self.path = paths.join(workdir, "metrics.jsonl")
        self.tb = None
        if not active:
            return
        if paths.exists(self.path):  # a resumed run replays the steps after its checkpoint
            kept = [ln for ln in read_metrics_lines(self.path) if _kept(ln[1], restored_step, redo_final_eval)]
            paths.write_text_atomic(self.path, "".join(text + "\n" for text, _ in kept))
        from tensorboardX import SummaryWriter

        if paths.is_url(workdir):
            register_cloud_tensorboard(workdir)
        self.tb = SummaryWriter(paths.join(workdir, "tb"))

    def write(self, kind: str, step: int, values: dict[str, Any]) -> None:
        """Appends one `kind` ("train" / "eval") line at `step` and its scalars to TensorBoard."""
        if not self.active:
            return
        paths.append_text(self.path, json.dumps({"kind": kind, "step": step, **values}) + "\n")
        for k, v in values.items():
            if isinstance(v, (int, float)) and math.isfinite(v):
                self.tb.add_scalar(f"{kind}/{k}", v, step)
            elif k == "exact_accuracy_by_step":
                for i, x in enumerate(v):
                    self.tb.add_scalar(f"{kind}/exact_accuracy_step_{i + 1:02d}", x, step)
        self.tb.flush()

    def close(self) -> None:
        """Closes the TensorBoard writer."""
        if self.tb is not None:
            self.tb.close()


class CloudEventFile:
    """A TensorBoard event file at a cloud URL: records are buffered and the whole file is uploaded at
    every `flush` (object stores have no appends; tensorboardX's own gs:// writer does the same through
    google-cloud-storage, this one through `recur_jax.io.paths`)."""

    def __init__(self, path: str):
        self.path, self.buffer = path, io.BytesIO()

    def write(self, data: bytes) -> None:
        """Buffers `data` (bytes of serialized event records)."""
        self.buffer.write(data)

    def flush(self) -> None:
        """Uploads the event file as written so far."""
        with paths.open_file(self.path, "wb") as f:
            f.write(self.buffer.getvalue())

    def close(self) -> None:
        """Uploads and forgets the buffer."""
        self.flush()


class _CloudEventFiles:
    """tensorboardX writer factory for one URL scheme (`record_writer.register_writer_factory`)."""

    def open(self, path: str) -> CloudEventFile:
        return CloudEventFile(path)

    def directory_check(self, path: str) -> None:
        paths.makedirs(path)


def register_cloud_tensorboard(url: str) -> None:
    """Makes tensorboardX write event files under `url`'s scheme (gs, s3, ...) through `paths`."""
    from tensorboardX import record_writer

    record_writer.register_writer_factory(url.split(":", 1)[0], _CloudEventFiles())


def _kept(record: dict[str, Any], restored_step: int, redo_final_eval: bool) -> bool:
    step = record["step"]
    return step < restored_step or (step == restored_step and not (redo_final_eval and record["kind"] == "eval"))


def read_metrics_lines(path: str) -> list[tuple[str, dict[str, Any]]]:
    """The well-formed records of a `metrics.jsonl`, as (line text, record) pairs in file order.

    A record is a JSON object with a string `kind` and an integer `step`. Anything else (a line torn by a
    kill or a full disk, bytes that are not UTF-8, valid JSON that is not such an object) is data, not a
    crash: it is dropped with one warning naming the file, the line number and what was expected.

    Raises:
      OSError: the file cannot be read.
    """
    out = []
    with paths.open_file(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            why = None
            try:
                text = raw.decode("utf-8").rstrip("\r\n")
                rec = json.loads(text)
                if not (isinstance(rec, dict) and isinstance(rec.get("kind"), str)
                        and isinstance(rec.get("step"), int) and not isinstance(rec.get("step"), bool)):
                    why = "a JSON object with a string 'kind' and an integer 'step'"
            except UnicodeDecodeError:
                why = "UTF-8 text"
            except json.JSONDecodeError:
                why = "one complete JSON object (a torn line?)"
            if why is not None:
                print(f"warning: {path}:{n}: dropping a line that is not {why}: {raw[:60]!r}")
                continue
            out.append((text, rec))
    return out


def normalise_train_metrics(sums: dict[str, float], steps: int, global_batch: int) -> dict[str, float]:
    """Reference logging: accuracies over rows that halted; losses per example of the global batch."""
    count = max(sums.get("count", 0.0), 1.0)
    out = {"count": sums.get("count", 0.0) / max(steps, 1)}
    for k in ("accuracy", "exact_accuracy", "q_halt_accuracy", "steps"):
        out[k] = sums.get(k, 0.0) / count
    for k in ("loss", "lm_loss", "q_halt_loss", "q_continue_loss"):
        if k in sums:
            out[k] = sums[k] / (max(steps, 1) * global_batch)
    out["lr"] = sums.get("lr_last", 0.0)
    out["skipped"] = sums.get("skipped", 0.0)  # non-finite steps skipped in this window (policy "skip")
    return out


class MetricsWindow:
    """Sums the training metrics of the steps since the last `train` line.

    Args:
      log_every: optimizer steps per line; global_batch: for the per-example losses.
      per_batch: optimizer steps per call of `add` (1; halt_max_steps in episode mode).
      resumed: the `train_window` / `last_train` of a checkpoint's record (`state_dict()`), or {}.
    """

    def __init__(self, log_every: int, global_batch: int, per_batch: int, resumed: dict[str, Any]):
        self.log_every, self.global_batch, self.per_batch = log_every, global_batch, per_batch
        window = resumed.get("train_window", {})
        self.sums: dict[str, float] = dict(window.get("sums", {}))
        self.steps = int(window.get("steps", 0))
        self.last: dict[str, float] = dict(resumed.get("last_train", {}))
        self.t0 = time.time()

    def add(self, step: int, host: dict[str, float], final: bool) -> dict[str, float] | None:
        """Adds one call's host metrics (optimizer steps ending at `step`); returns the line to write
        when the window closes (a multiple of log_every crossed, or `final`), else None."""
        for k, v in host.items():
            if k == "lr":
                self.sums["lr_last"] = v
            elif not k.startswith("nonfinite_"):
                self.sums[k] = self.sums.get(k, 0.0) + v
        self.steps += self.per_batch
        if not (step // self.log_every > (step - self.per_batch) // self.log_every or final):
            return None
        dt = time.time() - self.t0
        line = normalise_train_metrics(self.sums, self.steps, self.global_batch)
        line["examples_per_s"] = self.steps * self.global_batch / max(dt, 1e-9)
        self.last = line
        self.sums, self.steps, self.t0 = {}, 0, time.time()
        return line

    def state_dict(self) -> dict[str, Any]:
        """The open window and the last line, for a checkpoint's record."""
        return {"train_window": {"sums": dict(self.sums), "steps": self.steps}, "last_train": self.last}


def nonfinite_quantities(host: dict[str, float]) -> list[str]:
    """Names of the non-finite quantities of one step's host metrics (empty when all are finite)."""
    out = []
    if host.get("nonfinite_loss", 0.0) or not math.isfinite(host.get("loss", 0.0)):
        out.append("loss")
    out += [k for k, v in host.items() if k != "loss" and not math.isfinite(v)]
    if host.get("nonfinite_grads", 0.0):
        out.append(f"gradient of the parameters ({int(host['nonfinite_grads'])} NaN/Inf values)")
    if host.get("nonfinite_puzzle_grads", 0.0):
        out.append(f"gradient of the puzzle embeddings ({int(host['nonfinite_puzzle_grads'])} NaN/Inf values)")
    return out


class NonfiniteGuard:
    """`config.nonfinite`: stop at the first non-finite step ("stop"), or count skipped ones ("skip").

    Args:
      config: the training config; streak: consecutive skips so far (a checkpoint's `skip_streak`).
    """

    def __init__(self, config, streak: int = 0):
        self.policy, self.max_skips = nonfinite_policy(config)
        self.streak = streak

    def check(self, where: str, host: dict[str, float], kept: str) -> str | None:
        """Raises TrainingDiverged for a non-finite step that was not skipped, or past max skips in a row;
        returns a warning line for a skipped step, else None. `kept` says what is on disk."""
        bad = nonfinite_quantities(host)
        if bad and (self.policy != "skip" or not host.get("skipped", 0.0)):
            raise TrainingDiverged(f"{where}: non-finite {', '.join(bad)}; {kept} "
                                   f"(config.nonfinite.policy='skip' skips such steps instead)")
        if not host.get("skipped", 0.0):
            self.streak = 0
            return None
        self.streak += int(host["skipped"])
        if self.streak > self.max_skips:
            raise TrainingDiverged(f"{where}: {self.streak} non-finite steps in a row were skipped, more than "
                                   f"config.nonfinite.max_consecutive_skips={self.max_skips}; {kept}")
        return (f"{where}: skipped {int(host['skipped'])} step(s) with non-finite {', '.join(bad)}; "
                f"the state is unchanged by them")

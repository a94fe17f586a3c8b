"""Visual reports: grids as PNG images (Pillow) and an HTML page per evaluation.

`grid_png` draws an ARC colour grid (the usual ARC palette, one square per cell, grey grid lines);
`write_arc_report` writes `<dir>/index.html` showing, for chosen tasks, the demonstrations, each test
input, its target and the top-2 voted predictions (votes, mean sigmoid(q_halt), correct or not).
`maze_png` draws a maze (wall, open, start, goal, path); `summary_table` is the metrics table at the top
of a report. Directories may be cloud URLs (`recur_jax.io.paths`).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from recur_jax.io import paths

ARC_PALETTE = np.array([
    (0, 0, 0), (0, 116, 217), (255, 65, 54), (46, 204, 64), (255, 220, 0),
    (170, 170, 170), (240, 18, 190), (255, 133, 27), (127, 219, 255), (135, 12, 37)], np.uint8)
# maze tokens: 0 PAD, 1 wall, 2 open, 3 start, 4 goal, 5 path
MAZE_PALETTE = np.array([(255, 255, 255), (40, 40, 40), (245, 245, 245), (46, 204, 64), (255, 65, 54),
                         (0, 116, 217)], np.uint8)
GRID_LINE = (85, 85, 85)


def _draw(cells: np.ndarray, palette: np.ndarray, cell: int, line: int) -> Image.Image:
    h, w = cells.shape
    if h == 0 or w == 0:
        return Image.new("RGB", (cell, cell), (255, 255, 255))
    rgb = palette[cells]
    big = np.repeat(np.repeat(rgb, cell, axis=0), cell, axis=1)
    if line:
        big[::cell, :, :] = GRID_LINE
        big[:, ::cell, :] = GRID_LINE
        big = np.pad(big, ((0, line), (0, line), (0, 0)), constant_values=0)
        big[-line:, :, :] = GRID_LINE
        big[:, -line:, :] = GRID_LINE
    return Image.fromarray(big, "RGB")


def grid_png(grid: np.ndarray, path: str, cell: int = 16) -> str:
    """Writes an ARC grid as a PNG.

    Args:
      grid: [h, w] ints 0..9 (an empty grid gives a blank square).
      path: output file; cell: pixels per cell.
    Returns:
      path.
    Raises:
      ValueError: values outside 0..9.
    """
    g = np.asarray(grid)
    if g.size and (g.min() < 0 or g.max() > 9):
        raise ValueError(f"grid values {int(g.min())}..{int(g.max())}; expected colours 0..9")
    _save_png(_draw(g.astype(np.int64), ARC_PALETTE, cell, 1), path)
    return path


def maze_png(tokens: np.ndarray, path: str, cell: int = 8) -> str:
    """Writes a maze ([side, side] or [side^2] tokens 0..5: PAD, wall, open, start, goal, path) as a PNG."""
    from recur_jax.tasks.maze.data import board_side

    n = board_side(tokens)
    t = np.asarray(tokens).reshape(n, n).astype(np.int64)
    if t.min() < 0 or t.max() > 5:
        raise ValueError(f"maze tokens {int(t.min())}..{int(t.max())}; expected 0..5")
    _save_png(_draw(t, MAZE_PALETTE, cell, 0), path)
    return path


def _save_png(image: Image.Image, path: str) -> None:
    with paths.open_file(path, "wb") as f:
        image.save(f, format="PNG")


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_cell(v) for v in value)
    return str(value)


def summary_table(summary: dict[str, Any]) -> str:
    """The metrics of a report as an HTML table (one row per metric, floats to 4 decimals).

    Args:
      summary: metric name -> value (numbers, strings, lists of numbers).
    Returns:
      `<table>...</table>` with every name and value HTML-escaped.
    """
    rows = "".join(f"<tr><th style='text-align:left;padding-right:12px'>{html.escape(str(k))}</th>"
                   f"<td>{html.escape(_cell(v))}</td></tr>" for k, v in summary.items())
    return f"<table>{rows}</table>"


def write_arc_report(directory: str, test_tasks: dict[str, Any], ranked: dict[str, list], tasks: Sequence[str],
                     title: str, summary: dict[str, Any]) -> str:
    """Writes an HTML page with PNG grids for `tasks`.

    Args:
      directory: output folder (created; PNGs go to `directory/png/`).
      test_tasks: task -> public JSON (train/test pairs with outputs), in the original frame.
      ranked: task -> per test input, the top predictions [{"grid", "votes", "mean_q", "correct"}]
        (`ArcEvaluator.ranked`).
      tasks: the task names to show (unknown names are listed as missing).
      title: page title; summary: metrics shown at the top.
    Returns:
      the path of index.html.
    """
    png_dir = paths.join(directory, "png")
    paths.makedirs(png_dir)

    def img(grid, name, caption):
        g = np.asarray(grid, np.int64)
        grid_png(g, paths.join(png_dir, name))
        shape = f"{g.shape[0]}x{g.shape[1]}" if g.size else "empty"
        return (f'<figure><img src="png/{html.escape(name)}" alt="{html.escape(caption)}">'
                f"<figcaption>{html.escape(caption)} ({shape})</figcaption></figure>")

    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>"
             "body{font-family:sans-serif;margin:20px} figure{display:inline-block;margin:6px;vertical-align:top}"
             "figcaption{font-size:12px;text-align:center} .row{border-top:1px solid #ccc;padding:6px 0}"
             ".ok{color:green} .bad{color:#b00}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>{summary_table(summary)}"]
    for t_idx, task in enumerate(tasks):
        if task not in test_tasks:
            parts.append(f"<h2>{html.escape(task)}: not in the test tasks</h2>")
            continue
        spec = test_tasks[task]
        safe = f"t{t_idx:03d}"
        parts.append(f"<h2>{html.escape(task)}</h2><h3>Demonstrations</h3>")
        for k, p in enumerate(spec["train"]):
            parts.append("<div class='row'>" + img(p["input"], f"{safe}_demo{k}_in.png", f"demo {k} input")
                         + img(p["output"], f"{safe}_demo{k}_out.png", f"demo {k} output") + "</div>")
        preds = ranked.get(task, [])
        for k, p in enumerate(spec["test"]):
            row = [img(p["input"], f"{safe}_test{k}_in.png", f"test {k} input"),
                   img(p["output"], f"{safe}_test{k}_target.png", f"test {k} target")]
            top = preds[k] if k < len(preds) else []
            for r, cand in enumerate(top):
                mark = "correct" if cand["correct"] else "wrong"
                row.append(img(cand["grid"], f"{safe}_test{k}_pred{r + 1}.png",
                               f"prediction {r + 1}: {cand['votes']} votes, q {cand['mean_q']:.3f}, {mark}"))
            if not top:
                row.append("<p class='bad'>no prediction</p>")
            solved = any(c["correct"] for c in top)
            parts.append(f"<h3 class='{'ok' if solved else 'bad'}'>Test {k}: "
                         f"{'solved in top 2' if solved else 'not solved in top 2'}</h3><div class='row'>"
                         + "".join(row) + "</div>")
    parts.append("</body></html>")
    path = paths.join(directory, "index.html")
    paths.write_text_atomic(path, "\n".join(parts))
    return path

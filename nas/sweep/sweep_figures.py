"""The pictures of a sweep: the Pareto plot, op probabilities over the epochs, the Pareto cells.

Each function returns a matplotlib figure (Agg backend, via nas.train.figures); `save_png` writes one
atomically. The sweep also hands the same figures to TensorBoard.
"""

from __future__ import annotations

import io
import shutil

from nas.base import atomic
from nas.train.figures import plt
from searchspace.cell import dag_edges
from searchspace.drawing import FAMILY_COLOURS, INPUTS, OUTPUT, cell_graph, op_family, to_dot

FRONT_COLOUR = "tab:red"
TRIAL_COLOUR = "tab:blue"


def save_png(figure, path, dpi: int = 110) -> None:

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    atomic.write_bytes(path, buffer.getvalue())


def pareto_figure(points, front, labels, *, budgets=(), baselines=(), metric_name="metric", batch_size=1):
    """Dev metric against measured latency for every finished trial, the Pareto front as a red
    staircase, each latency budget as a dashed vertical line and KD baselines as black squares.

    points: [(metric, latency_ms)]; front: indices into points, fastest first; labels: one per point;
    baselines: [{"name", "latency_ms", "metric"}].
    """
    figure, axis = plt.subplots(figsize=(7.5, 5))
    others = [i for i in range(len(points)) if i not in set(front)]
    axis.scatter([points[i][1] for i in others], [points[i][0] for i in others], s=28, color=TRIAL_COLOUR,
                 alpha=0.6, label="trial")
    if front:
        xs, ys = [points[i][1] for i in front], [points[i][0] for i in front]
        axis.step(xs, ys, where="post", color=FRONT_COLOUR, linewidth=1.2, alpha=0.7)
        axis.scatter(xs, ys, s=60, color=FRONT_COLOUR, edgecolor="black", zorder=3, label="Pareto front")
        for i in front:
            axis.annotate(labels[i], (points[i][1], points[i][0]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    for k, budget in enumerate(budgets):
        axis.axvline(budget, color="grey", linestyle="--", linewidth=1, label="latency budget" if k == 0 else None)
    for k, baseline in enumerate(baselines):
        axis.scatter([baseline["latency_ms"]], [baseline["metric"]], marker="s", s=50, color="black",
                     label="KD baseline" if k == 0 else None, zorder=3)
        axis.annotate(baseline["name"], (baseline["latency_ms"], baseline["metric"]), textcoords="offset points",
                      xytext=(4, -10), fontsize=8)
    latencies = [p[1] for p in points] + [b["latency_ms"] for b in baselines] + list(budgets)
    if latencies and min(latencies) > 0 and max(latencies) / min(latencies) > 20:
        from matplotlib.ticker import FuncFormatter

        axis.set_xscale("log")  # budgets and baselines can span orders of magnitude
        plain = FuncFormatter(lambda value, _: f"{value:g}")  # 2, 5, 10 rather than 2×10⁰
        axis.xaxis.set_major_formatter(plain)
        axis.xaxis.set_minor_formatter(plain)
    axis.set_xlabel(f"student latency at batch {batch_size} (ms, measured)")
    axis.set_ylabel(f"dev {metric_name}")
    axis.grid(alpha=0.3)
    axis.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    return figure


def op_history_figure(histories, ops):
    """Op probabilities of each edge over the search epochs: one row per trial, one panel per edge
    of the cell DAG, each panel a heatmap of op (rows) by epoch (columns), cells averaged as
    history.json records them. One image per panel keeps the figure quick to draw.

    histories: [(label, [per epoch: (edges, ops) nested lists])].
    """
    import numpy as np

    edges = dag_edges()
    rows = max(1, len(histories))
    height = 2.0 * rows + 0.8  # inches
    figure, axes = plt.subplots(rows, len(edges), figsize=(1.6 * len(edges) + 1.6, height), squeeze=False)
    highest = max((max(max(map(max, epoch)) for epoch in epochs) for _, epochs in histories if epochs), default=1.0)
    image = None
    for row, (label, epochs) in enumerate(histories):
        probabilities = np.asarray(epochs, dtype=float)  # (epochs, edges, ops)
        for column, (node, source) in enumerate(edges):
            axis = axes[row][column]
            image = axis.imshow(probabilities[:, column, :].T, aspect="auto", cmap="viridis", vmin=0.0, vmax=highest,
                                extent=(0.5, len(epochs) + 0.5, len(ops) - 0.5, -0.5), interpolation="nearest")
            axis.set_yticks(range(len(ops)), ops if column == 0 else [""] * len(ops), fontsize=7)
            axis.set_xticks(range(1, len(epochs) + 1, max(1, len(epochs) // 5)))
            axis.tick_params(labelsize=7)
            if row == 0:
                axis.set_title(f"n{node}←{source}", fontsize=9)
            if row == rows - 1:
                axis.set_xlabel("epoch", fontsize=8)
        axes[row][0].set_ylabel(label, fontsize=8)
    for axis in axes.flat[len(histories) * len(edges):]:
        axis.axis("off")
    # Fixed margins in inches (the epoch labels below, the edge titles above); tight_layout over
    # dozens of panels takes seconds.
    figure.subplots_adjust(left=0.09, right=0.92, bottom=0.5 / height, top=1 - 0.35 / height, wspace=0.08, hspace=0.3)
    if image is not None:
        figure.colorbar(image, ax=list(axes.flat), label="probability", fraction=0.02, pad=0.01)
    return figure


def cells_figure(cells):
    """The derived cells side by side, each titled with its label.

    cells: [(label, Genotype)]. Rendered with graphviz `dot` when the binary is installed (the same
    drawing as `nas plot`), else drawn with networkx.
    """
    count = max(1, len(cells))
    figure, axes = plt.subplots(1, count, figsize=(5.0 * count, 4.2), squeeze=False)
    use_dot = shutil.which("dot") is not None
    for axis, (label, genotype) in zip(axes[0], cells):
        if use_dot:
            _draw_with_dot(axis, genotype)
        else:
            _draw_with_networkx(axis, genotype)
        axis.set_title(label, fontsize=9)
        axis.axis("off")
    for axis in axes[0][len(cells):]:
        axis.axis("off")
    figure.tight_layout()
    return figure


def _draw_with_dot(axis, genotype) -> None:
    import graphviz
    import matplotlib.image


    png = graphviz.Source(to_dot(genotype)).pipe(format="png")
    axis.imshow(matplotlib.image.imread(io.BytesIO(png), format="png"))


def _draw_with_networkx(axis, genotype) -> None:
    import networkx as nx


    graph = cell_graph(genotype)
    # Inputs on the left, nodes left to right in order, the output on the right.
    order = list(INPUTS) + [n for n in graph if n not in INPUTS and n != OUTPUT] + [OUTPUT]
    position = {name: (max(0, i - 1), 0.6 if name == "in0" else -0.6 if name == "in1" else (0.3 if i % 2 else -0.3))
                for i, name in enumerate(order)}
    nx.draw_networkx_nodes(graph, position, ax=axis, node_color="lightblue", node_size=700)
    nx.draw_networkx_labels(graph, position, ax=axis, font_size=8)
    for u, v, data in graph.edges(data=True):
        colour = FAMILY_COLOURS.get(op_family(data["ops"][0]), "black") if data["ops"] else "grey"
        nx.draw_networkx_edges(graph, position, edgelist=[(u, v)], ax=axis, edge_color=colour,
                               style="solid" if data["ops"] else "dashed", arrows=True, connectionstyle="arc3,rad=0.15")
    nx.draw_networkx_edge_labels(graph, position, edge_labels={(u, v): d["label"] for u, v, d in graph.edges(data=True)
                                                               if d["label"]}, ax=axis, font_size=7)
    axis.text(0.5, -0.02, f"stacked {genotype.num_cells}x, H={genotype.hidden_size}", transform=axis.transAxes,
              ha="center", va="top", fontsize=8)

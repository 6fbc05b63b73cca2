"""Matplotlib figures for TensorBoard and PNG files (rendered off-screen)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display on the machines this runs on

import matplotlib.pyplot as plt  # noqa: E402

from searchspace.cell import dag_edges  # noqa: E402


def op_probability_figure(probabilities, ops):
    """Heatmap of op probabilities: one row per edge of the cell DAG, one column per op."""
    figure, axis = plt.subplots(figsize=(8, 4.5))
    image = axis.imshow(probabilities.numpy(), cmap="viridis", vmin=0.0, aspect="auto")
    axis.set_xticks(range(len(ops)), ops, rotation=45, ha="right")
    axis.set_yticks(range(len(dag_edges())), [f"n{node}←{source}" for node, source in dag_edges()])
    axis.set_xlabel("op")
    axis.set_ylabel("edge (node ← input)")
    figure.colorbar(image, ax=axis, label="probability")
    figure.tight_layout()
    return figure


def depth_figure(probabilities):
    """Bar chart of the depth distribution P(K = k), k = 1..Kmax."""
    figure, axis = plt.subplots(figsize=(5, 3))
    depths = range(1, len(probabilities) + 1)
    axis.bar(depths, probabilities.numpy(), color="tab:blue")
    axis.set_xticks(list(depths))
    axis.set_xlabel("number of cells K")
    axis.set_ylabel("probability")
    axis.set_ylim(0, 1)
    figure.tight_layout()
    return figure

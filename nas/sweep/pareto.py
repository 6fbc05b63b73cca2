"""Pareto fronts of points scored on a metric to maximise and a latency to minimise.

A point is `(metric, latency_ms)`. Point a dominates point b when it is at least as good on both
(a.metric >= b.metric and a.latency <= b.latency) and strictly better on one. The Pareto front is
the set of points no other point dominates: the trade-offs worth having.
"""

from __future__ import annotations

from collections.abc import Sequence

Point = tuple[float, float]  # (metric to maximise, latency in ms to minimise)


def dominates(a: Point, b: Point) -> bool:
    """True when `a` is at least as good as `b` on both objectives and better on one."""
    (metric_a, latency_a), (metric_b, latency_b) = a, b
    return metric_a >= metric_b and latency_a <= latency_b and (metric_a > metric_b or latency_a < latency_b)


def pareto_front(points: Sequence[Point]) -> list[int]:
    """Indices of the points no other point dominates, fastest first (ties: better metric first).

    Equal points do not dominate each other, so duplicates on the front are all kept. O(n²),
    which is nothing for the tens or hundreds of trials of a sweep.
    """
    front = [i for i, p in enumerate(points) if not any(dominates(q, p) for q in points)]
    return sorted(front, key=lambda i: (points[i][1], -points[i][0]))


def dominated_share(point: Point, others: Sequence[Point]) -> float:
    """The share of `others` that dominate `point` (0 when there are none)."""
    if not others:
        return 0.0
    return sum(dominates(other, point) for other in others) / len(others)

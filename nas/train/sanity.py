"""`nas sanity`: does the searched architecture beat random ones of the same predicted latency?

The check of issue 11: random architectures (random depth, width and cell) whose latency, as
predicted by the latency tables the search used, is within `tolerance` (10%) of the searched
one's, all finetuned the same way (`nas finetune` from scratch, teacher-initialised embeddings,
one set of settings), then the searched student's dev score against the randoms' mean ± std.
The search "beats chance" when its score is at least one standard deviation and 0.5 points
above the random mean. A result, not a test: the table says what was measured.

`init=search` starts every architecture, the searched one and the randoms alike, from the
search's supernet instead (each inherits the weights of its own ops, cells and width, as `nas
finetune` does for the searched one). From scratch asks whether the searched architecture is
better; inherited asks whether the search's choice is the best of what the search trained, the
way its student is built. On MRPC's 3,668 rows most architectures trained from scratch end
within a point of the majority-class floor (experiments/results/gap.md), which says little
about any of them.

Random architectures are drawn by rejection sampling from `searchspace.random_arch`: depth
uniform in 1..max_cells, width uniform over the searched widths (the arch's hidden size when the
width was not searched), each node's two in-edges uniform; a draw is kept when its predicted
latency is within the tolerance and it is not a copy of one already kept. The tries are bounded
(`max_tries`); falling short is an error that says how many were found.
"""

from __future__ import annotations

import dataclasses
import json
import random
import statistics
from pathlib import Path

from nas.base import atomic
from nas.base.errors import UserError
from nas.base.markdown import markdown_cell
from nas.deploy.latency_table import LatencyTable, load_latency_table, predict_latency_ms
from nas.train.finetune import initial_weights, run_finetune
from nas.train.latency_budget import TABLE_FILE
from searchspace.genotype import Genotype
from searchspace.random_arch import random_genotype

RESULT_JSON, RESULT_MD = "sanity.json", "sanity.md"
MIN_GAIN_POINTS = 0.5  # besides one standard deviation: a win smaller than this is noise on dev
STARTS = {"scratch": "from scratch", "search": "from the search's supernet (each inheriting its own ops' weights)"}


@dataclasses.dataclass(frozen=True)
class LatencyModel:
    """The search's latency predictor: one table per width, read at one batch size and length."""

    tables: dict  # width -> LatencyTable
    batch_size: int
    seq_len: int
    pair: bool

    def predict(self, genotype: Genotype) -> float:
        if genotype.hidden_size not in self.tables:
            raise UserError(f"no latency table for hidden size {genotype.hidden_size} "
                            f"(have: {', '.join(map(str, sorted(self.tables)))})")
        return predict_latency_ms(self.tables[genotype.hidden_size], genotype, self.batch_size, self.seq_len, self.pair)


def search_tables(arch_path: Path, genotype: Genotype, given=()) -> dict[int, LatencyTable]:
    """The tables for the widths of `genotype`: `given` files first, then those the search kept
    beside arch.json (latency_table.json, latency_table_w<width>.json), else the file arch.json names."""
    tables = {}
    for path in given:
        table = load_latency_table(path)
        tables[table.hidden_size] = table
    folder = arch_path.parent
    named = ((genotype.extra or {}).get("latency_table") or {}).get("file")
    for width in genotype.widths or (genotype.hidden_size,):
        for path in (folder / f"latency_table_w{width}.json", folder / TABLE_FILE, Path(named) if named else None):
            if width in tables or path is None or not path.is_file():
                continue
            table = load_latency_table(path)
            if table.hidden_size == width:
                tables[width] = table
    missing = [w for w in genotype.widths or (genotype.hidden_size,) if w not in tables]
    if missing:
        raise UserError(f"{arch_path}: no latency table for hidden size {missing[0]} beside it; give the search's "
                        "tables with --latency-table FILE (one per width; `nas latency-table --set hidden_size=...`)")
    return tables


def sample_within(reference: Genotype, latency: LatencyModel, count: int, *, tolerance: float = 0.10, seed: int = 0,
                  max_tries: int = 20000) -> list[tuple[Genotype, float]]:
    """`count` distinct random genotypes (random depth, width, cell) predicted within `tolerance`
    of the reference's latency: [(genotype, predicted ms)]. Raises UserError after `max_tries`."""
    target = latency.predict(reference)
    widths = reference.widths or (reference.hidden_size,)
    rng = random.Random(seed)
    seen, found = {reference.canonical()}, []
    for _ in range(max_tries):
        candidate = random_genotype(rng, hidden_size=rng.choice(widths), num_cells=rng.randint(1, reference.max_cells),
                                    max_cells=reference.max_cells, ops=reference.ops)
        # The searched one's word vectors: what is compared is the architecture, and from the
        # supernet every candidate inherits the variant the search trained.
        candidate = dataclasses.replace(candidate, embeddings=reference.embeddings)
        if candidate.canonical() in seen:
            continue
        seen.add(candidate.canonical())
        predicted = latency.predict(candidate)
        if abs(predicted - target) <= tolerance * target:
            found.append((candidate, predicted))
            if len(found) == count:
                return found
    raise UserError(f"found {len(found)} of {count} random architectures predicted within {tolerance:.0%} of "
                    f"{target:.3f} ms in {max_tries} tries (widths {', '.join(map(str, widths))}, depth "
                    f"1..{reference.max_cells}); raise the tolerance or lower --random")


def summarise(searched: float, randoms: list[float], points: float) -> dict:
    """Searched vs mean ± std of the randoms; `points` converts the metric to points (100 for a
    share in [0, 1]). Beats chance: at least one std and MIN_GAIN_POINTS above the mean."""
    mean = statistics.fmean(randoms)
    std = statistics.stdev(randoms) if len(randoms) > 1 else 0.0
    gain = (searched - mean) * points
    return {"searched": searched, "random_mean": mean, "random_std": std, "gain_points": gain,
            "beats_random": searched >= mean + std and gain >= MIN_GAIN_POINTS}


def run_sanity(arch_path, data, teacher_dir, knowledge, finetune_config, out, device, *, count: int = 5,
               tolerance: float = 0.10, seed: int = 0, tables=(), batch_size: int | None = None,
               seq_len: int | None = None, max_tries: int = 20000) -> dict:
    """Sample, finetune everything the same way and write sanity.json and sanity.md in `out`: from
    scratch, or with `init=search` from the searched arch's supernet (`auto` means scratch here,
    as before `init` was read).

    Each finetune has its own folder (`searched`, `random_0`, ...); a finished one (metrics.json)
    is reused, so an interrupted check continues where it stopped."""
    arch_path, out = Path(arch_path), Path(out)
    reference = Genotype.load(arch_path)
    costs = reference.costs or {}
    latency = LatencyModel(search_tables(arch_path, reference, tables),
                           batch_size or costs.get("latency_batch_size", 1), seq_len or costs.get("latency_seq_len", 64),
                           data.task.is_pair)
    # The same start for every architecture: the searched arch's supernet, or scratch.
    config = dataclasses.replace(finetune_config, init="search" if finetune_config.init == "search" else "scratch")
    weights = initial_weights(config, arch_path, reference)  # None from scratch; a missing file is an error
    randoms = sample_within(reference, latency, count, tolerance=tolerance, seed=seed, max_tries=max_tries)
    out.mkdir(parents=True, exist_ok=True)
    candidates = [("searched", reference.architecture(), latency.predict(reference))]
    candidates += [(f"random_{i}", genotype, predicted) for i, (genotype, predicted) in enumerate(randoms)]
    metric = data.task.primary_metric
    rows = []
    for name, genotype, predicted in candidates:
        folder = out / name
        arch = out / f"{name}.json"
        genotype.save(arch)
        done = folder / "metrics.json"
        result = _finished(done, config.init) or run_finetune(arch, data, teacher_dir, knowledge, config, folder, device,
                                                               weights_from=weights)
        rows.append({"name": name, "genotype": str(genotype), "predicted_ms": round(predicted, 4),
                     "params": result["student"]["params"], metric: result["metrics"][metric]})
    scores = [row[metric] for row in rows]
    points = 100.0 if all(0.0 <= s <= 1.0 for s in scores) else 1.0
    summary = {"metric": metric, "tolerance": tolerance, "latency_batch_size": latency.batch_size,
               "latency_seq_len": latency.seq_len, "finetune": dataclasses.asdict(config),
               **summarise(scores[0], scores[1:], points), "rows": rows}
    atomic.write_json(out / RESULT_JSON, summary)
    atomic.write_text(out / RESULT_MD, markdown(summary, arch_path))
    return summary


def _finished(path: Path, init: str):
    """A finished finetune's metrics.json, or None; one started otherwise than `init` is an error
    (reusing it would compare architectures trained two ways)."""
    if not path.is_file():
        return None
    result = json.loads(path.read_text())
    if result.get("init") != init:
        raise UserError(f"{path}: finetuned with init={result.get('init')}, this check asks for init={init}; "
                        "give another --out")
    return result


def markdown(summary: dict, arch_path: Path) -> str:
    metric = summary["metric"]
    lines = ["# Sanity check: searched vs random architectures of equal predicted latency", "",
             f"Searched: `{arch_path}`. Randoms: random depth, width and cell, predicted within "
             f"{summary['tolerance']:.0%} of the searched latency (batch {summary['latency_batch_size']}, length "
             f"{summary['latency_seq_len']}); all finetuned {STARTS[summary['finetune']['init']]} with the same "
             "settings.", "",
             "| architecture | genotype | predicted ms | params | " + metric + " |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {r['name']} | `{markdown_cell(r['genotype'])}` | {r['predicted_ms']:.3f} | {r['params']:,} | {r[metric]:.4f} |"
              for r in summary["rows"]]
    verdict = "yes" if summary["beats_random"] else "no"
    lines += ["", f"Searched {summary['searched']:.4f}; random {summary['random_mean']:.4f} ± {summary['random_std']:.4f} "
              f"(mean ± std of {len(summary['rows']) - 1}); gain {summary['gain_points']:+.2f} points. "
              f"Beats random by at least 1 std and {MIN_GAIN_POINTS} points: **{verdict}**.", ""]
    return "\n".join(lines)

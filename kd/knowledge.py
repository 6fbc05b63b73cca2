"""The teacher's knowledge, computed once and cached on disk for search, finetuning and baselines.

A knowledge folder holds, for each split (train, the augmented transfer set, and each dev
split): the teacher's final logits and the frozen layer probes' logits, as float16 `.npy`
arrays that load lazily (memory-mapped). Float16 keeps logits to about three significant
digits, far finer than what a softened distillation target can tell apart. `manifest.json` says
what the knowledge was made from; a later run with the same manifest reuses the folder.
"""

from __future__ import annotations

import csv
import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from kd.knowledge_manifest import FORMAT_VERSION, MANIFEST, read_manifest
from nas import atomic
from nas.errors import UserError
from nas.safe_files import DATA_CAP, open_regular, read_json, shorten, show_value, text_lines

__all__ = ["FORMAT_VERSION", "MANIFEST", "read_manifest", "Knowledge", "KnowledgeConfig", "build_knowledge"]


@dataclass(frozen=True)
class KnowledgeConfig:
    augment: int = 0  # teacher-labelled variants per training row
    augment_seed: int = 0
    p_mask: float = 0.1
    p_pos_replace: float = 0.1
    p_ngram: float = 0.25
    max_length: int = 0  # 0: the teacher's own (its metrics.json), else the task's default
    batch_size: int = 128
    pooling: str = "mean"  # how a layer's token states become the probe's input: mean or cls
    probe_epochs: int = 30
    probe_lr: float = 1e-2
    dtype: str = "float16"
    seed: int = 42

    def __post_init__(self):
        if self.pooling not in ("mean", "cls"):
            raise UserError(f"setting 'pooling': expected mean or cls, got {self.pooling!r}")
        if self.dtype not in ("float16", "float32"):
            raise UserError(f"setting 'dtype': expected float16 or float32, got {self.dtype!r}")
        if self.augment < 0:
            raise UserError(f"setting 'augment': expected 0 or more, got {self.augment}")


def manifest_key(manifest: dict) -> str:
    """The part of a manifest that decides reuse (sizes and timings are results, not inputs)."""
    inputs = {k: manifest[k] for k in ("format_version", "teacher_hash", "task", "inputs")}
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


@dataclass
class SplitKnowledge:
    logits: np.ndarray  # (N, C), memory-mapped
    probe_logits: np.ndarray  # (N, L+1, C), memory-mapped

    def __len__(self) -> int:
        return len(self.logits)

    def rows(self, index) -> tuple[torch.Tensor, torch.Tensor]:
        """Float32 tensors for the rows in `index` (a tensor or list of row numbers)."""
        index = np.asarray(index)
        return torch.from_numpy(np.asarray(self.logits[index], dtype=np.float32)), torch.from_numpy(
            np.asarray(self.probe_logits[index], dtype=np.float32)
        )


class Knowledge:
    """A knowledge folder opened for reading."""

    def __init__(self, folder):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise UserError(f"{self.folder}: no such folder (a knowledge folder from `nas knowledge`)")
        manifest = read_manifest(self.folder, strict=True)  # bounded, checked field by field
        if manifest is None:
            raise UserError(f"{self.folder}: not a knowledge folder (no {MANIFEST}; run `nas knowledge` first)")
        self.manifest = manifest
        self._splits: dict[str, SplitKnowledge] = {}

    @property
    def task(self) -> str:
        return self.manifest["task"]

    @property
    def max_length(self) -> int:
        """The token length the teacher's knowledge was computed at; students default to it."""
        return self.manifest["inputs"]["max_length"]

    @property
    def probe_dev_loss(self) -> list[float]:
        return self.manifest["probes"]["dev"]["loss"]

    @property
    def num_teacher_layers(self) -> int:
        return self.manifest["num_layers"]  # transformer layers, embedding output not counted

    def split(self, name: str) -> SplitKnowledge:
        if name not in self._splits:
            if name not in self.manifest["splits"]:
                raise UserError(f"{self.folder}: no knowledge for split {name!r} (has: {', '.join(self.manifest['splits'])})")
            rows = self.manifest["splits"][name]
            self._splits[name] = SplitKnowledge(self._array(name, "logits", rows, 2), self._array(name, "probe_logits", rows, 3))
        return self._splits[name]

    def _array(self, split: str, kind: str, rows: int, ndim: int) -> np.ndarray:
        """One `.npy` array, memory-mapped once it is known to be a regular file of the manifest's shape."""
        path = self.folder / f"{split}.{kind}.npy"
        open_regular(path, "a knowledge array (.npy)", DATA_CAP).close()
        try:
            array = np.load(path, mmap_mode="r")  # allow_pickle stays False: no code runs from the file
        except (ValueError, OSError, EOFError) as error:
            raise UserError(f"{path}: not a knowledge array ({shorten(str(error).splitlines()[0], 80)})") from None
        if array.ndim != ndim or len(array) != rows or array.dtype.kind != "f":
            raise UserError(f"{path}: expected {rows} rows of floats in {ndim} dimensions (manifest splits), "
                            f"got shape {array.shape} of {array.dtype}")
        return array

    def augmented_examples(self):
        from nas.glue_io import Example

        path = self.folder / "augmented.tsv"
        if not path.is_file():
            return []
        try:
            rows = list(csv.reader(text_lines(path, "an augmented rows file"), delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
        except csv.Error as error:
            raise UserError(f"{path}: cannot split into columns ({error})") from None
        logits = self.split("augmented").logits
        if len(rows) != len(logits) or any(len(row) != 3 for row in rows):
            raise UserError(f"{path}: expected {len(logits)} rows of 3 columns (row, text_a, text_b)")
        return [
            Example(row[1], row[2] or None, int(np.argmax(logits[i])) if logits.shape[1] > 1 else float(logits[i, 0]))
            for i, row in enumerate(rows)
        ]

    def check_rows(self, split: str, rows: int) -> None:
        have = self.manifest["splits"][split]
        if rows > have:
            raise UserError(f"{self.folder}: knowledge covers {have} {split} rows but {rows} were asked for (rebuild it with more)")


def save_split(folder: Path, name: str, logits: torch.Tensor, probe_logits: torch.Tensor, dtype: str) -> None:
    for kind, array in (("logits", logits), ("probe_logits", probe_logits)):
        path = folder / f"{name}.{kind}.npy"
        np.save(path, array.numpy().astype(dtype))


def export_logits_tsv(path: Path, examples, logits: torch.Tensor) -> None:
    """EasyTransfer-style interchange: the text column(s), the label, and the logits joined by spaces."""
    pair = bool(examples) and examples[0].text_b is not None
    lines = ["\t".join(["text_a", *(["text_b"] if pair else []), "label", "logits"])]
    for example, row in zip(examples, logits.tolist()):
        label = "" if example.raw_label is None else example.raw_label
        texts = [example.text_a, *([example.text_b] if pair else [])]
        lines.append("\t".join([*texts, label, " ".join(f"{v:.6f}" for v in row)]))
    atomic.write_text(path, "\n".join(lines) + "\n")


def build_knowledge(teacher_dir, data, config: KnowledgeConfig, out, device) -> dict:
    """Run the teacher over every split once, fit the layer probes, and write the knowledge folder."""
    from kd.augment import AugmentSettings, augment
    from kd.probes import ProbeSettings, probe_quality, train_probes
    from kd.teacher_pass import run_teacher
    from nas.batching import encode
    from nas.models import count_parameters, folder_hash, load_classifier, load_tokenizer
    from nas.teacher import default_max_length

    task = data.task
    teacher_dir = Path(teacher_dir)
    if not teacher_dir.is_dir():
        raise UserError(f"--teacher {teacher_dir}: no such folder")
    tokenizer = load_tokenizer(str(teacher_dir))
    teacher = load_classifier(str(teacher_dir), task, new_head=False).to(device)
    max_length = config.max_length or _teacher_max_length(teacher_dir) or default_max_length(task)
    augment_settings = AugmentSettings(
        n=config.augment, seed=config.augment_seed, p_mask=config.p_mask,
        p_pos_replace=config.p_pos_replace, p_ngram=config.p_ngram,
    )
    manifest = {
        "format_version": FORMAT_VERSION,
        "teacher_hash": folder_hash(teacher_dir),
        "task": task.name,
        "inputs": {
            "config": asdict(config),
            "augmentation": augment_settings.as_dict(),
            "max_length": max_length,
            "train_rows": len(data.train),
            "dev_rows": {name: len(rows) for name, rows in data.dev.items()},
            "labels": list(task.labels) if task.labels else None,
        },
    }
    previous = read_manifest(out)
    if previous and previous.get("key") == manifest_key(manifest):
        return {**previous, "reused": True}

    started = time.perf_counter()
    regression = task.is_regression
    splits = {"train": data.train, **data.dev}
    if config.augment:
        embeddings = teacher.get_input_embeddings().weight.detach().cpu()
        splits["augmented"] = augment(data.train, config.augment, tokenizer=tokenizer, word_embeddings=embeddings,
                                      **augment_settings.augment_kwargs())
    outputs = {}
    for name, examples in splits.items():
        encoded = encode(examples, tokenizer, max_length, regression)
        outputs[name] = run_teacher(teacher, encoded, config.batch_size, device, config.pooling) + (encoded.labels,)

    # Probes learn from the original training rows with their gold labels, then are frozen.
    _, train_features, train_labels = outputs["train"]
    probes = train_probes(
        train_features, train_labels, task.num_labels, regression,
        ProbeSettings(epochs=config.probe_epochs, lr=config.probe_lr, seed=config.seed),
    )
    _, dev_features, dev_labels = outputs["dev"]
    quality = {"dev": probe_quality(probes, dev_features, dev_labels, regression),
               "train": probe_quality(probes, train_features, train_labels, regression)}

    out = Path(out)
    with atomic.staged_folder(out) as staging:
        for name, (logits, features, _) in outputs.items():
            with torch.no_grad():
                save_split(staging, name, logits, probes(features), config.dtype)
            export_logits_tsv(staging / f"{task.name}_{name}_logits.tsv", splits[name], logits)
        if "augmented" in splits:
            rows = ["row\ttext_a\ttext_b"] + [
                f"{i // config.augment}\t{e.text_a}\t{e.text_b or ''}" for i, e in enumerate(splits["augmented"])
            ]
            atomic.write_text(staging / "augmented.tsv", "\n".join(rows) + "\n")
        torch.save(probes.state_dict(), staging / "probes.pt")
        manifest.update(
            key=manifest_key(manifest),
            splits={name: len(examples) for name, examples in splits.items()},
            num_layers=train_features.shape[1] - 1,
            num_labels=task.num_labels,
            dtype=config.dtype,
            teacher=str(teacher_dir.resolve()),
            teacher_params=count_parameters(teacher),
            probes=quality,
            teacher_dev_metrics=_teacher_dev_metrics(task, outputs),
            seconds=round(time.perf_counter() - started, 1),
            bytes=sum(f.stat().st_size for f in staging.iterdir() if f.suffix == ".npy"),
        )
        atomic.write_json(staging / MANIFEST, manifest)
    return manifest


MAX_TEACHER_LENGTH = 8192  # tokens; beyond any BERT-family position table


def _teacher_max_length(teacher_dir: Path) -> int | None:
    """The length the teacher was fine-tuned at (from its metrics.json), so its knowledge sees the same text."""
    metrics = teacher_dir / "metrics.json"
    if not metrics.is_file():
        return None
    value = read_json(metrics, "a teacher metrics file")
    value = value.get("max_length") if isinstance(value, dict) else None
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_TEACHER_LENGTH:
        raise UserError(f"{metrics}: max_length: expected an integer in 1..{MAX_TEACHER_LENGTH}, got {show_value(value)}")
    return value


def _teacher_dev_metrics(task, outputs) -> dict:
    from nas.evaluation import score

    logits, _, labels = outputs["dev"]
    return score(task, logits, labels)

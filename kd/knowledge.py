"""The teacher's knowledge, computed once and cached on disk for search, finetuning and baselines.

A knowledge folder holds, for each split (train, the augmented transfer set, and each dev
split): the teacher's final logits and the frozen layer probes' logits, as float16 `.npy`
arrays that load lazily (memory-mapped). Float16 keeps logits to about three significant
digits, far finer than what a softened distillation target can tell apart. Beside them lie the
split's token ids as the teacher's tokenizer made them (`nas.data.token_arrays`: flat, memory-mapped),
so search, finetuning and distillation never tokenise the transfer set again. `manifest.json`
says what the knowledge was made from; a later run with the same manifest reuses the folder.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import os
import signal
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from kd.augment import AugmentSettings, iter_augmented
from kd.augment_mlm import MaskedLMSubstitutes, load_masked_lm
from kd.augment_presets import preset_settings
from kd.knowledge_manifest import FORMAT_VERSION, MANIFEST, KnowledgeManifest, ManifestInputs, ProbeScores, read_manifest
from kd.probes import LayerProbes, ProbeSettings, probe_quality, train_probes
from kd.teacher_pass import run_teacher
from nas.base import atomic
from nas.base.errors import UserError
from nas.base.safe_files import DATA_CAP, open_regular, shorten, show_value, text_lines
from nas.data.batching import EncodedSplit, labels_tensor
from nas.data.evaluation import score
from nas.data.glue_io import Example
from nas.data.model_metrics import METRICS, TeacherMetrics
from nas.data.models import count_parameters, folder_hash, load_classifier, load_tokenizer
from nas.data.tasks import default_max_length
from nas.data.token_arrays import CHUNK_ROWS, read_token_arrays, tokenize_stream, write_token_arrays

__all__ = ["FORMAT_VERSION", "MANIFEST", "KnowledgeManifest", "read_manifest", "Knowledge", "KnowledgeConfig", "build_knowledge"]


@dataclass(frozen=True)
class KnowledgeConfig:
    # The augmented transfer set (kd.augment.AugmentSettings). A None or "" takes the preset's
    # value (kd/augment_presets.yaml) when `augment_preset` names one, else the default shown.
    augment: int | None = None  # teacher-labelled variants per training row (0)
    augment_preset: str = ""  # tang2019, adabert or tinybert
    augment_source: str = ""  # where substitutes come from: embedding or mlm (embedding)
    augment_seed: int = 0
    p_mask: float | None = None  # (0.1)
    p_pos_replace: float | None = None  # (0.1)
    p_pos_replace_pair: float | None = None  # for sentence pairs (p_pos_replace)
    p_ngram: float | None = None  # (0.25)
    pair_shared_words: bool | None = None  # a word in both sentences of a pair changes alike in both (false)
    mlm: str = ""  # a masked-LM folder for augment_source=mlm ("": the teacher's own MLM head)
    max_length: int = 0  # 0: the teacher's own (its metrics.json), else the task's default
    batch_size: int = 128
    shard_rows: int = 8192  # augmented rows per resumable step (its logits are on disk before the next)
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
        if self.shard_rows < 1:
            raise UserError(f"setting 'shard_rows': expected 1 or more, got {self.shard_rows}")
        if self.augment is not None and self.augment < 0:
            raise UserError(f"setting 'augment': expected 0 or more, got {self.augment}")
        if self.mlm and self.augment_source == "embedding":
            raise UserError("setting 'mlm': a masked LM is only read with augment_source=mlm")
        self.augment_settings("")  # a bad preset name or value fails here, before any work

    def augment_settings(self, task: str) -> AugmentSettings:
        """The augmentation for `task`: the preset's settings (or the defaults), explicit settings on top."""
        base = preset_settings(self.augment_preset) if self.augment_preset else AugmentSettings(n=0)
        explicit = {"seed": self.augment_seed, "p_mask": self.p_mask, "p_pos_replace": self.p_pos_replace,
                    "p_pos_replace_pair": self.p_pos_replace_pair, "p_ngram": self.p_ngram,
                    "pair_shared_words": self.pair_shared_words,
                    "source": self.augment_source or ("mlm" if self.mlm else None)}  # --mlm means: use it
        if self.augment is not None:  # an explicit count replaces the preset's per-task ones too
            explicit.update(n=self.augment, n_by_task=())
        try:
            settings = replace(base, **{key: value for key, value in explicit.items() if value is not None})
        except UserError as error:
            raise UserError(str(error).replace("setting 'source'", "setting 'augment_source'")) from None
        return settings.for_task(task)


# KnowledgeConfig fields added with augmentation presets, and their defaults: the manifest leaves
# them out while they hold these, so that a folder built before them keeps its key and is reused.
_LATER_CONFIG = {"augment_preset": "", "augment_source": "", "p_pos_replace_pair": None, "mlm": "",
                 "pair_shared_words": None}


def recorded_config(config: KnowledgeConfig, settings: AugmentSettings) -> dict:
    """The config as the manifest records it: the augmentation values resolved, later fields left out at their defaults."""
    data = {**asdict(config), "augment": settings.n, "p_mask": settings.p_mask,
            "p_pos_replace": settings.p_pos_replace, "p_ngram": settings.p_ngram}
    return {key: value for key, value in data.items() if key not in _LATER_CONFIG or value != _LATER_CONFIG[key]}


def manifest_key(manifest: KnowledgeManifest) -> str:
    """The part of a manifest that decides reuse (sizes and timings are results, not inputs), hashed
    as JSON holds it: a folder written before the record existed keeps its key."""
    data = manifest.to_dict()
    inputs = {k: data.get(k) for k in ("format_version", "teacher_hash", "task", "inputs")}
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
        self.manifest: KnowledgeManifest = manifest
        self._splits: dict[str, SplitKnowledge] = {}

    @property
    def task(self) -> str:
        return self.manifest.task

    @property
    def max_length(self) -> int:
        """The token length the teacher's knowledge was computed at; students default to it."""
        return self.manifest.inputs.max_length

    @property
    def probe_dev_loss(self) -> list[float]:
        return list(self.manifest.probes_dev.loss)

    @property
    def num_teacher_layers(self) -> int:
        return self.manifest.num_layers  # transformer layers, embedding output not counted

    def split(self, name: str) -> SplitKnowledge:
        if name not in self._splits:
            if name not in self.manifest.splits:
                raise UserError(f"{self.folder}: no knowledge for split {name!r} (has: {', '.join(self.manifest.splits)})")
            rows = self.manifest.splits[name]
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

    def encoded(self, name: str, rows: int, labels: torch.Tensor):
        """The first `rows` rows of a split as the teacher tokenised them (memory-mapped ids), with `labels`."""

        self.check_rows(name, rows)
        ids, types = read_token_arrays(self.folder, name)
        return EncodedSplit(ids[:rows], types[:rows], labels, self.manifest.pad_id)

    def teacher_labels(self, name: str, rows: int, regression: bool) -> torch.Tensor:
        """Labels for rows without gold ones: the teacher's class (or its score, for regression)."""
        logits = np.asarray(self.split(name).logits[:rows], dtype=np.float32)
        if regression:
            return torch.from_numpy(logits[:, 0].copy())
        return torch.from_numpy(logits.argmax(-1)).long()

    def augmented_examples(self):

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
        have = self.manifest.splits[split]
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


def build_knowledge(teacher_dir, data, config: KnowledgeConfig, out, device) -> KnowledgeManifest:
    """Run the teacher over every split once, fit the layer probes, and write the knowledge folder.

    The work happens in `<out>.partial` in steps that each leave files behind (augmented texts,
    token ids per split, the task's own rows with the probes, then the augmented rows shard by
    shard), so a run stopped at any point, killed included, continues from its last finished
    step or shard when started again with the same inputs, and ends with the same arrays.
    """

    task = data.task
    teacher_dir = Path(teacher_dir)
    if not teacher_dir.is_dir():
        raise UserError(f"--teacher {teacher_dir}: no such folder")
    tokenizer = load_tokenizer(str(teacher_dir))
    teacher = load_classifier(str(teacher_dir), task, new_head=False).to(device)
    max_length = config.max_length or _teacher_max_length(teacher_dir) or default_max_length(task)
    augment_settings = config.augment_settings(task.name)
    augment = augment_settings.n
    # Loaded before anything is written: a folder without an MLM head fails here, in one line.
    mlm_dir, mlm = _masked_lm(config, augment_settings, teacher_dir, device)
    manifest = KnowledgeManifest(
        teacher_hash=folder_hash(teacher_dir),
        task=task.name,
        inputs=ManifestInputs(
            config=recorded_config(config, augment_settings),
            augmentation=augment_settings.as_dict(),
            max_length=max_length,
            train_rows=len(data.train),
            dev_rows={name: len(rows) for name, rows in data.dev.items()},
            labels=tuple(task.labels) if task.labels else None,
            # The masked LM that proposed substitutes, by content (only when one did).
            mlm_hash=folder_hash(mlm_dir) if mlm_dir else None,
        ),
        splits={}, num_layers=0, pad_id=0, probes_dev=ProbeScores(()),  # results, filled in once built
    )
    key = manifest_key(manifest)
    previous = read_manifest(out)
    if previous and previous.key == key:
        return replace(previous, reused=True)

    out = Path(out)
    staging = atomic.resumable_folder(out, key)
    progress = _Progress(staging)
    started = time.perf_counter() - progress.get("seconds", 0.0)  # a resumed build counts its earlier time
    splits = {"train": data.train, **data.dev}
    pad_id = tokenizer.pad_token_id or 0
    pair = bool(data.train) and data.train[0].text_b is not None

    # ---- 1. the augmented texts, streamed to augmented.tsv
    if augment and not progress.done("augmented_texts"):
        _write_augmented_texts(staging, data.train, augment_settings, tokenizer, teacher, mlm)
        progress.mark("augmented_texts", started)
    # ---- 2. the token ids of every split, tokenised once on every core
    names = [*splits, *(["augmented"] if augment else [])]
    for name in names:
        if not progress.done(f"tokens:{name}"):
            rows = augment * len(data.train) if name == "augmented" else len(splits[name])
            chunks = _augmented_chunks(staging, pair) if name == "augmented" else _example_chunks(splits[name])
            write_token_arrays(staging, name, tokenize_stream(chunks, tokenizer, max_length, rows=rows))
            progress.mark(f"tokens:{name}", started)
    # ---- 3. the teacher on the task's own rows; the probes learn from them
    if not progress.done("task_rows"):
        results = _task_rows(staging, teacher, splits, config, task, pad_id, device)
        progress.mark("task_rows", started, **results)
    # ---- 4. the teacher on the augmented rows, shard by shard, features never kept
    if augment:
        _augmented_rows(staging, teacher, config, progress, pad_id, device, started)
        if not progress.done("augmented_export"):
            _export_augmented_tsv(staging, task.name, pair)
            progress.mark("augmented_export", started)

    results = progress.get("results")
    manifest = replace(
        manifest,
        key=key,
        splits={name: _rows(staging, name) for name in names},
        num_layers=results["num_layers"],
        num_labels=task.num_labels,
        dtype=config.dtype,
        pad_id=pad_id,
        teacher=str(teacher_dir.resolve()),
        teacher_params=count_parameters(teacher),
        probes_dev=ProbeScores.from_dict(results["probes"]["dev"]),
        probes_train=ProbeScores.from_dict(results["probes"]["train"]),
        teacher_dev_metrics=results["teacher_dev_metrics"],
        seconds=round(time.perf_counter() - started, 1),
        bytes=sum(f.stat().st_size for f in staging.iterdir() if f.suffix == ".npy"),
    )
    progress.remove()
    manifest.save(staging / MANIFEST)
    atomic.publish(staging, out)
    return manifest


class _Progress:
    """What a build has finished, in `progress.json` of its staging folder (written by rename)."""

    def __init__(self, folder: Path):
        self.path = folder / "progress.json"
        self.state = json.loads(self.path.read_text()) if self.path.is_file() else {"done": [], "results": None}

    def done(self, step: str) -> bool:
        return step in self.state["done"]

    def get(self, name: str, default=None):
        return self.state.get(name, default)

    def mark(self, step: str | None, started: float, **results) -> None:
        if step is not None:
            self.state["done"].append(step)
        if results:
            self.state["results"] = results
        self.state["seconds"] = time.perf_counter() - started
        atomic.write_json(self.path, self.state)

    def set(self, name: str, value, started: float) -> None:
        self.state[name] = value
        self.mark(None, started)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def _rows(folder: Path, name: str) -> int:
    return len(np.load(folder / f"{name}.offsets.npy", mmap_mode="r")) - 1


def _example_chunks(examples):

    for start in range(0, len(examples), CHUNK_ROWS):
        part = examples[start : start + CHUNK_ROWS]
        second = [e.text_b for e in part] if part[0].text_b is not None else None
        yield [e.text_a for e in part], second


def _augmented_chunks(folder: Path, pair: bool):
    """(first, second) text chunks read back from augmented.tsv, a chunk at a time."""

    with open(folder / "augmented.tsv", encoding="utf-8", newline="") as handle:
        rows = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(rows)
        while chunk := list(itertools.islice(rows, CHUNK_ROWS)):
            yield [row[1] for row in chunk], ([row[2] for row in chunk] if pair else None)


def _masked_lm(config: KnowledgeConfig, settings: AugmentSettings, teacher_dir: Path, device):
    """(folder, substitutes) of the masked LM when substitutes come from one (--mlm, else the
    teacher's own head), else (None, None)."""
    if settings.source != "mlm" or settings.n == 0:
        return None, None
    folder = Path(config.mlm) if config.mlm else teacher_dir
    return folder, MaskedLMSubstitutes(*load_masked_lm(folder, device), k=settings.neighbours)


def _write_augmented_texts(folder: Path, train, settings, tokenizer, teacher, mlm) -> None:
    """augmented.tsv: for each variant its source row and texts, written as the variants are made."""

    embeddings = teacher.get_input_embeddings().weight.detach().float().cpu()
    path = folder / "augmented.tsv"
    tmp = path.with_name(".augmented.tsv.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write("row\ttext_a\ttext_b\n")
        variants = iter_augmented(train, settings, tokenizer=tokenizer, word_embeddings=embeddings, mlm=mlm)
        for i, e in enumerate(variants):
            handle.write(f"{i // settings.n}\t{e.text_a}\t{e.text_b or ''}\n")
    os.replace(tmp, path)


def _stored_split(folder: Path, name: str, pad_id: int, labels=None, rows: slice = slice(None)):

    ids, types = read_token_arrays(folder, name)
    ids, types = ids[rows], types[rows]
    labels = torch.full((len(ids),), -1, dtype=torch.long) if labels is None else labels
    return EncodedSplit(ids, types, labels, pad_id)


def _task_rows(folder: Path, teacher, splits, config: KnowledgeConfig, task, pad_id: int, device) -> dict:
    """Teacher logits and features of train and dev, the probes fitted on train; writes their arrays."""

    regression = task.is_regression
    outputs = {}
    for name, examples in splits.items():
        encoded = _stored_split(folder, name, pad_id, labels_tensor(examples, regression))
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
    for name, (logits, features, _) in outputs.items():
        with torch.no_grad():
            save_split(folder, name, logits, probes(features), config.dtype)
        export_logits_tsv(folder / f"{task.name}_{name}_logits.tsv", splits[name], logits)
    atomic.save_torch(probes.state_dict(), folder / "probes.pt")
    return {"probes": quality, "teacher_dev_metrics": _teacher_dev_metrics(task, outputs),
            "num_layers": train_features.shape[1] - 1}


def _augmented_rows(folder: Path, teacher, config: KnowledgeConfig, progress: _Progress, pad_id: int, device,
                    started: float) -> None:
    """Logits and probe logits of the augmented rows, written shard by shard into preallocated arrays.

    A shard's rows are written, flushed, and only then counted in progress.json, so a run killed
    anywhere redoes at most one shard, and redoes it to the same bytes (same rows, same batches).
    """

    total = _rows(folder, "augmented")
    state = torch.load(folder / "probes.pt", weights_only=True)
    layers, hidden, classes = state["weight"].shape
    probes = LayerProbes(layers, hidden, classes)
    probes.load_state_dict(state)
    probes.requires_grad_(False).eval()
    shapes = {"logits": (total, classes), "probe_logits": (total, layers, classes)}
    paths = {kind: folder / f"augmented.{kind}.npy" for kind in shapes}
    if not all(path.is_file() for path in paths.values()):
        progress.set("augmented_shards", 0, started)  # nothing of the arrays to continue
    fresh = progress.get("augmented_shards", 0) == 0
    arrays = {kind: np.lib.format.open_memmap(paths[kind], mode="w+" if fresh else "r+", dtype=config.dtype, shape=shape)
              for kind, shape in shapes.items()}
    shards = range(0, total, config.shard_rows)
    for number, start in enumerate(shards):
        if number < progress.get("augmented_shards", 0):
            continue
        stop = min(start + config.shard_rows, total)
        split = _stored_split(folder, "augmented", pad_id, rows=slice(start, stop))
        logits, probe_logits = run_teacher(teacher, split, config.batch_size, device, config.pooling, head=probes)
        arrays["logits"][start:stop] = logits.numpy().astype(config.dtype)
        arrays["probe_logits"][start:stop] = probe_logits.numpy().astype(config.dtype)
        for array in arrays.values():
            array.flush()
        progress.set("augmented_shards", number + 1, started)
        after_shard(number + 1)
    del arrays


def after_shard(done: int) -> None:
    """A hook after each finished shard: tests (and scale.py) stop a build here to resume it.

    NAS_KNOWLEDGE_KILL_AFTER_SHARDS=k kills this process outright (SIGKILL, no clean-up) once k
    shards are on disk, which is what an out-of-memory kill or a lost machine does.
    """
    stop = os.environ.get("NAS_KNOWLEDGE_KILL_AFTER_SHARDS")
    if stop and done >= int(stop):
        os.kill(os.getpid(), signal.SIGKILL)


def _export_augmented_tsv(folder: Path, task_name: str, pair: bool) -> None:
    """The augmented rows' texts with their logits, streamed (the EasyTransfer layout of `export_logits_tsv`)."""
    logits = np.load(folder / "augmented.logits.npy", mmap_mode="r")
    path = folder / f"{task_name}_augmented_logits.tsv"
    tmp = path.with_name(f".{path.name}.tmp")
    with open(folder / "augmented.tsv", encoding="utf-8", newline="") as source, open(tmp, "w", encoding="utf-8") as out:
        rows = csv.reader(source, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(rows)
        out.write("\t".join(["text_a", *(["text_b"] if pair else []), "label", "logits"]) + "\n")
        for i, row in enumerate(rows):
            values = " ".join(f"{v:.6f}" for v in logits[i].astype(np.float32).tolist())
            out.write("\t".join([row[1], *([row[2]] if pair else []), "", values]) + "\n")
    os.replace(tmp, path)


MAX_TEACHER_LENGTH = 8192  # tokens; beyond any BERT-family position table


def _teacher_max_length(teacher_dir: Path) -> int | None:
    """The length the teacher was fine-tuned at (from its metrics.json), so its knowledge sees the same text."""
    metrics = teacher_dir / METRICS
    if not metrics.is_file():
        return None
    value = TeacherMetrics.load(metrics).max_length  # bounded, checked field by field
    if value is None:
        return None
    if not 1 <= value <= MAX_TEACHER_LENGTH:
        raise UserError(f"{metrics}: max_length: expected an integer in 1..{MAX_TEACHER_LENGTH}, got {show_value(value)}")
    return value


def _teacher_dev_metrics(task, outputs) -> dict:

    logits, _, labels = outputs["dev"]
    return score(task, logits, labels)

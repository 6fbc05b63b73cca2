"""Students for the KD baselines, named by a one-line spec, built from the teacher, saved and reloaded.

Specs (keys in any order; `nas distill --student SPEC`):

* `transformer:layers=4,hidden=256,heads=4,ffn=1024[,init=teacher|random]`: a
  `BertForSequenceClassification` with the teacher's vocabulary and position count. A key left
  out takes the teacher's value (`layers`: half the teacher's depth, rounded up; `ffn`: the
  teacher's ratio to the width), so `transformer` alone is a half-depth teacher. `init=teacher`
  (the default when the widths equal the teacher's) copies the embeddings, the pooler, the
  classifier and, for student layer i, teacher layer m(i) of the method's initialisation map
  (`kd.layer_map.uniform` unless the method says otherwise: DistilBERT `every_other`, BERT-PKD
  and BERT-of-Theseus the bottom layers). `init=random` (the default when a width differs)
  starts from scratch except the word and position tables: the teacher's, projected onto their
  top principal directions (`searchspace.embeddings.principal_projection`).
* `bilstm:hidden=300[,layers=1][,embeddings=trainable|frozen]`: Tang et al. 2019's BiLSTM
  (`BiLSTMClassifier`) over the teacher's word embeddings (projected to 300 dimensions when the
  teacher is wider).
* `arch:PATH/arch.json`: the searched student (`searchspace.student.compile_genotype`), its
  embeddings from the teacher's (`StudentEmbeddings.init_from_teacher`).

Saved students: a Transformer or a searched student is a Hugging Face folder (`save_pretrained`;
`AutoModelForSequenceClassification` loads it, after `import searchspace.student` for the
searched one); a BiLSTM is `model.pt` (its state dict) plus `student.json` (its spec and
constructor arguments), which `load_student` rebuilds.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from transformers.modeling_outputs import SequenceClassifierOutput

from kd.layer_map import uniform, validate
from nas.base import atomic
from nas.base.errors import UserError
from searchspace.embeddings import principal_projection, teacher_tables
from searchspace.genotype import Genotype
from searchspace.student import compile_genotype

STUDENT_JSON, STUDENT_WEIGHTS = "student.json", "model.pt"
EMBEDDING_WIDTH = 300  # Tang et al.'s word vectors; wider teacher tables are projected to it
KEYS = {  # kind -> {key: allowed values (a tuple) or int (a positive integer)}
    "transformer": {"layers": int, "hidden": int, "heads": int, "ffn": int, "init": ("teacher", "random")},
    "bilstm": {"hidden": int, "layers": int, "embeddings": ("trainable", "frozen")},
    "arch": {},
}


# ----- specs -----

@dataclass(frozen=True)
class StudentSpec:
    """A parsed student spec: its kind, its settings as sorted (key, value) pairs, and the arch path."""

    kind: str
    settings: tuple[tuple[str, object], ...] = ()
    path: str | None = None

    def get(self, key: str, default=None):
        return dict(self.settings).get(key, default)

    def with_settings(self, **values) -> "StudentSpec":
        merged = {**dict(self.settings), **{k: v for k, v in values.items() if v is not None}}
        return StudentSpec(self.kind, tuple(sorted(merged.items())), self.path)

    def __str__(self) -> str:
        if self.kind == "arch":
            return f"arch:{self.path}"
        order = list(KEYS[self.kind])
        pairs = sorted(self.settings, key=lambda pair: order.index(pair[0]))
        return self.kind + (":" + ",".join(f"{k}={v}" for k, v in pairs) if pairs else "")


def parse_student_spec(text: str) -> StudentSpec:
    """`kind[:key=value,...]` or `arch:PATH` -> StudentSpec; a UserError names what is wrong."""
    kind, _, rest = str(text).strip().partition(":")
    where = f"student spec {text!r}"
    if kind not in KEYS:
        raise UserError(f"{where}: unknown kind {kind!r} (known: {', '.join(KEYS)})")
    if kind == "arch":
        if not rest.strip():
            raise UserError(f"{where}: give the architecture file, as arch:PATH/arch.json")
        return StudentSpec(kind, (), rest.strip())
    settings = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not value:
            raise UserError(f"{where}: expected key=value, got {item!r}")
        if key not in KEYS[kind]:
            raise UserError(f"{where}: unknown key {key!r} for {kind} (known: {', '.join(KEYS[kind])})")
        allowed = KEYS[kind][key]
        if allowed is int:
            if not value.isdigit() or int(value) < 1:
                raise UserError(f"{where}: {key} must be a positive integer, got {value!r}")
            value = int(value)
        elif value not in allowed:
            raise UserError(f"{where}: {key} must be one of {', '.join(allowed)}, got {value!r}")
        settings[key] = value
    spec = StudentSpec(kind, tuple(sorted(settings.items())))
    if spec.get("hidden") and spec.get("heads") and spec.get("hidden") % spec.get("heads"):
        raise UserError(f"{where}: hidden={spec.get('hidden')} is not a multiple of heads={spec.get('heads')}")
    return spec


# ----- building -----

def resolve_spec(spec: StudentSpec, teacher) -> StudentSpec:
    """Fill the keys a spec left out from the teacher, so the spec names one model exactly."""
    if spec.kind == "bilstm":
        return spec.with_settings(hidden=spec.get("hidden", EMBEDDING_WIDTH), layers=spec.get("layers", 1),
                                  embeddings=spec.get("embeddings", "trainable"))
    if spec.kind != "transformer":
        return spec
    config = teacher.config
    width = config.hidden_size
    teacher_ffn = getattr(config, "intermediate_size", None) or 4 * width
    hidden = spec.get("hidden", width)
    # The teacher's head count where it divides the width (MiniLM and TinyBERT compare heads one to
    # one), else the largest count below it that does.
    heads = spec.get("heads", max(h for h in range(1, config.num_attention_heads + 1) if hidden % h == 0))
    ffn = spec.get("ffn", teacher_ffn * hidden // width)
    same_width = hidden == width and ffn == teacher_ffn
    init = spec.get("init", "teacher" if same_width else "random")
    if hidden % heads:
        raise UserError(f"student spec {spec}: hidden={hidden} is not a multiple of heads={heads}")
    if init == "teacher" and not same_width:
        raise UserError(f"student spec {spec}: init=teacher needs the teacher's widths (hidden={width}, "
                        f"ffn={teacher_ffn}); use init=random")
    return spec.with_settings(layers=spec.get("layers", math.ceil(config.num_hidden_layers / 2)), hidden=hidden,
                              heads=heads, ffn=ffn, init=init)


def build_student(spec: StudentSpec, teacher, task, tokenizer, *, init_layers=uniform) -> nn.Module:
    """The untrained student of `spec` (resolved first), initialised from `teacher`.

    init_layers(student_layers, teacher_layers) -> LayerMatch tuple: which teacher layer each
    student layer starts as, for `transformer` students with init=teacher.
    """
    spec = resolve_spec(spec, teacher)
    if spec.kind == "transformer":
        return _transformer(spec, teacher, task, tokenizer, init_layers)
    if spec.kind == "bilstm":
        return _bilstm(spec, teacher, task, tokenizer)
    return _searched(spec, teacher, task, tokenizer)


def _labels(task) -> dict:
    if not task.labels:
        return {"num_labels": task.num_labels, "problem_type": "regression"}
    return {"num_labels": task.num_labels, "id2label": dict(enumerate(task.labels)),
            "label2id": {label: i for i, label in enumerate(task.labels)}, "problem_type": "single_label_classification"}


def _transformer(spec, teacher, task, tokenizer, init_layers):
    from transformers import BertConfig, BertForSequenceClassification

    source = teacher.config
    config = BertConfig(
        vocab_size=source.vocab_size, max_position_embeddings=source.max_position_embeddings,
        type_vocab_size=getattr(source, "type_vocab_size", 2), hidden_size=spec.get("hidden"),
        num_hidden_layers=spec.get("layers"), num_attention_heads=spec.get("heads"),
        intermediate_size=spec.get("ffn"), hidden_act=getattr(source, "hidden_act", "gelu"),
        layer_norm_eps=getattr(source, "layer_norm_eps", 1e-12), pad_token_id=tokenizer.pad_token_id or 0,
        **_labels(task),
    )
    student = BertForSequenceClassification(config)
    with torch.no_grad():
        if spec.get("init") == "teacher":
            _copy_teacher(student, teacher, init_layers)
        else:
            words, positions = teacher_tables(teacher)
            projection = principal_projection(words, config.hidden_size)  # (D, hidden), shared by both tables
            student.get_input_embeddings().weight.copy_(words.float() @ projection)
            if positions is not None:
                rows = min(positions.shape[0], config.max_position_embeddings)
                student.bert.embeddings.position_embeddings.weight[:rows].copy_(positions[:rows].float() @ projection)
    return student


def _copy_teacher(student, teacher, init_layers) -> None:
    """Embeddings, pooler, classifier and the mapped layers, from a BERT-like teacher of the same width."""
    layers = getattr(getattr(teacher.base_model, "encoder", None), "layer", None)
    if layers is None:
        raise UserError(f"init=teacher needs a BERT-like teacher ({type(teacher).__name__} has no encoder.layer); "
                        "use init=random")
    student_layers = student.config.num_hidden_layers
    matches = validate(init_layers(student_layers, len(layers)), student_layers, len(layers))
    pairs = [(student.bert.embeddings, teacher.base_model.embeddings),
             (student.bert.pooler, getattr(teacher.base_model, "pooler", None)),
             (student.classifier, getattr(teacher, "classifier", None))]
    pairs += [(student.bert.encoder.layer[m.student - 1], layers[m.teacher - 1]) for m in matches if m.student and m.teacher]
    for target, origin in pairs:
        if origin is None:
            continue
        try:
            target.load_state_dict(origin.state_dict())
        except RuntimeError as error:
            raise UserError(f"init=teacher: the teacher's {type(origin).__name__} does not fit the student's "
                            f"({str(error).splitlines()[0]}); use init=random") from None


def _bilstm(spec, teacher, task, tokenizer):
    words, _ = teacher_tables(teacher)
    width = min(words.shape[1], EMBEDDING_WIDTH)
    student = BiLSTMClassifier(
        vocab_size=words.shape[0], embedding_dim=width, hidden=spec.get("hidden"), layers=spec.get("layers"),
        num_labels=task.num_labels, pair=task.is_pair, pad_token_id=tokenizer.pad_token_id or 0,
        freeze_embeddings=spec.get("embeddings") == "frozen",
    )
    table = words.float() if width == words.shape[1] else words.float() @ principal_projection(words, width)
    with torch.no_grad():
        student.words.weight.copy_(table)  # (V, width)
    return student


def _searched(spec, teacher, task, tokenizer):

    genotype = Genotype.load(Path(spec.path))
    words, positions = teacher_tables(teacher)
    student = compile_genotype(
        genotype, vocab_size=words.shape[0], max_positions=teacher.config.max_position_embeddings,
        num_labels=task.num_labels, pair=task.is_pair, pad_token_id=tokenizer.pad_token_id or 0,
        id2label=dict(enumerate(task.labels)) if task.labels else None, teacher_width=words.shape[1],
    )
    student.embeddings.init_from_teacher(words, positions if positions is not None else student.embeddings.positions.weight)
    return student


# ----- the BiLSTM student -----

class BiLSTMClassifier(nn.Module):
    """Tang et al. 2019, "Distilling Task-Specific Knowledge from BERT into Simple Neural Networks"
    (arXiv 1903.12136): word embeddings, a BiLSTM, max-pooling over the real tokens, a ReLU MLP.

    For a sentence pair each sentence (split by `token_type_ids`) is encoded alone by the same
    BiLSTM into h1, h2 (B, 2·hidden), and the MLP reads [h1, h2, h1⊙h2, |h1−h2|]. The forward
    takes the teacher tokenizer's outputs and returns an object with `.logits` (B, C).
    """

    def __init__(self, vocab_size: int, embedding_dim: int, hidden: int, layers: int, num_labels: int,
                 pair: bool, pad_token_id: int = 0, freeze_embeddings: bool = False, dropout: float = 0.1):
        super().__init__()
        self.arguments = dict(vocab_size=vocab_size, embedding_dim=embedding_dim, hidden=hidden, layers=layers,
                              num_labels=num_labels, pair=pair, pad_token_id=pad_token_id,
                              freeze_embeddings=freeze_embeddings, dropout=dropout)
        self.pair = pair
        self.words = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_token_id)
        self.words.weight.requires_grad_(not freeze_embeddings)
        self.lstm = nn.LSTM(embedding_dim, hidden, num_layers=layers, batch_first=True, bidirectional=True)
        features = 2 * hidden * (4 if pair else 1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(features, hidden), nn.ReLU(),
                                        nn.Dropout(dropout), nn.Linear(hidden, num_labels))

    def get_input_embeddings(self) -> nn.Embedding:
        return self.words

    def encode(self, input_ids: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """(B, T) ids and (B, T) bool tokens to read -> (B, 2·hidden), max-pooled BiLSTM states."""
        # Move the kept tokens to the front, in order, so each row is one packed sequence.
        order = torch.sort((~keep).to(torch.uint8), dim=1, stable=True).indices  # (B, T)
        lengths = keep.sum(1)  # (B,)
        width = max(1, int(lengths.max()))
        ids = input_ids.gather(1, order)[:, :width]  # (B, T')
        packed = pack_padded_sequence(self.words(ids), lengths.clamp_min(1).cpu(), batch_first=True,
                                      enforce_sorted=False)
        states, _ = pad_packed_sequence(self.lstm(packed)[0], batch_first=True, total_length=width)  # (B, T', 2H)
        real = torch.arange(width, device=ids.device)[None] < lengths[:, None]  # (B, T')
        pooled = states.masked_fill(~real[..., None], float("-inf")).max(1).values  # (B, 2H)
        return torch.where(lengths[:, None] > 0, pooled, 0.0)  # an empty sentence reads as zeros

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, **unused) -> SequenceClassifierOutput:
        mask = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
        if not self.pair or token_type_ids is None:
            features = self.encode(input_ids, mask)  # (B, 2H)
        else:
            second = mask & token_type_ids.bool()
            h1, h2 = self.encode(input_ids, mask & ~second), self.encode(input_ids, second)  # (B, 2H) each
            features = torch.cat([h1, h2, h1 * h2, (h1 - h2).abs()], -1)  # (B, 8H)
        return SequenceClassifierOutput(logits=self.classifier(features))

    def recurrent_flops(self, tokens: int) -> int:
        """FLOPs of the BiLSTM over `tokens` tokens (2 directions × 4 gates × 2·(in + hidden)·hidden per
        token and layer), which `torch.utils.flop_counter` does not count for `nn.LSTM`."""
        hidden, inputs, total = self.lstm.hidden_size, self.lstm.input_size, 0
        for _ in range(self.lstm.num_layers):
            total += tokens * 2 * 4 * 2 * (inputs + hidden) * hidden
            inputs = 2 * hidden
        return total


# ----- saving and loading -----

def save_student(model: nn.Module, spec: StudentSpec, folder) -> None:
    """Hugging Face models: `save_pretrained`; the BiLSTM: `model.pt` and `student.json`."""

    folder = Path(folder)
    if isinstance(model, BiLSTMClassifier):
        atomic.save_torch(model.state_dict(), folder / STUDENT_WEIGHTS)
        atomic.write_json(folder / STUDENT_JSON, {"format_version": 1, "spec": str(spec), "kind": spec.kind,
                                                  "arguments": model.arguments})
    else:
        from searchspace.student import AdaBertStudentForSequenceClassification

        model.save_pretrained(folder)
        if isinstance(model, AdaBertStudentForSequenceClassification):
            from searchspace.remote_code import write_remote_code

            write_remote_code(folder)  # the folder then loads without this package (trust_remote_code)


def load_student(folder) -> nn.Module:
    """A saved student, whatever its kind."""
    folder = Path(folder)
    if (folder / STUDENT_JSON).is_file():
        saved = json.loads((folder / STUDENT_JSON).read_text())
        model = BiLSTMClassifier(**saved["arguments"])
        model.load_state_dict(torch.load(folder / STUDENT_WEIGHTS, map_location="cpu", weights_only=True))
        return model
    from transformers import AutoModelForSequenceClassification

    import searchspace.student  # noqa: F401  (registers the searched student with the Auto classes)

    return AutoModelForSequenceClassification.from_pretrained(folder)


def default_weight_decay(spec: StudentSpec) -> float:
    """The weight decay of a student kind when none is set: a searched student's is `nas finetune`'s."""
    return 1e-4 if spec.kind == "arch" else 0.01


def default_lr(spec: StudentSpec) -> float:
    """The learning rate a student kind trains well with when none is set."""
    if spec.kind == "transformer":
        return 5e-5 if spec.get("init") == "teacher" else 2e-4
    return 1e-3

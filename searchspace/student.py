"""The compiled student: a genotype rebuilt as a standalone Hugging Face model.

`AdaBertStudentForSequenceClassification` holds only the ops its genotype chose, built through
the same op registry and `Cell` as the supernet, and no supernet code runs on its inference
path. Its config carries the genotype as plain JSON, so `save_pretrained` and
`AutoModelForSequenceClassification.from_pretrained` (after `import nas`) rebuild it from the
folder alone; a folder written by `nas finetune` also carries this code (see remote_code.py)
and loads with `trust_remote_code=True` where this package is not installed. Its forward takes
exactly what the teacher's tokenizer returns; for sentence pairs it uses `token_type_ids` to
split the two sentences.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import NamedTuple

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from searchspace.cell import (Cell, ClassifierHead, PairInputs, fixed_choices, pair_inputs, predates_pair_head,
                              run_cells)
from searchspace.embedding_variants import build_embeddings, table_width
from searchspace.genotype import DEFAULT_EMBEDDINGS, Genotype
from searchspace.width import leading_slice

# The variant whose module a folded student's word vectors are: one (vocab, H) table per kind.
FOLDED_VARIANT = "pca"


class AdaBertStudentConfig(PretrainedConfig):
    model_type = "adabert_student"

    def __init__(self, genotype: dict | None = None, vocab_size: int = 30522, max_position_embeddings: int = 512,
                 pair: bool = False, dropout: float = 0.1, pad_token_id: int = 0, embedding_width: int | None = None,
                 pair_head: bool = False, folded_embeddings: bool = False, **kwargs):
        super().__init__(pad_token_id=pad_token_id, **kwargs)
        self.genotype = genotype
        self.vocab_size = vocab_size
        self.max_position_embeddings = max_position_embeddings
        self.pair = pair
        self.dropout = dropout
        self.embedding_width = embedding_width  # width of the word and position tables; None: hidden_size
        # A pair task's head compares the two sentences (searchspace/cell.py: ClassifierHead).
        # False in a config saved before that head existed, whose weights fit the plain head.
        self.pair_head = pair_head
        # The word vectors as served (`for_inference`): one (vocab, H) table however the genotype's
        # variant trained them, so the folder of a served student holds the small form.
        self.folded_embeddings = folded_embeddings

    @property
    def arch(self) -> Genotype:
        return Genotype.from_json(__import__("json").dumps(self.genotype), source="config.genotype")


class CellOutputs(NamedTuple):
    """What the student computes before its classifier (B rows, T tokens, width H)."""

    embedded: torch.Tensor  # (B, T, H) the embedding output
    per_cell: tuple[torch.Tensor, ...]  # K tensors (B, T, H), each cell's output, first cell first
    mask: torch.Tensor  # (B, T) bool, True at real tokens
    pair: PairInputs | None = None  # what a pair head reads besides the last cell's output


class AdaBertStudentForSequenceClassification(PreTrainedModel):
    config_class = AdaBertStudentConfig
    base_model_prefix = "student"

    def __init__(self, config: AdaBertStudentConfig):
        super().__init__(config)
        genotype = config.arch
        hidden = genotype.hidden_size
        edge_ops = {}
        for node, edge in genotype.edges():
            edge_ops.setdefault((node, edge.input), []).append(edge.op)
        self.edge_ops = {edge: tuple(ops) for edge, ops in edge_ops.items()}
        # Every cell computes the same fixed ops: built once, not on every forward pass.
        self._cell_choices = fixed_choices(self.edge_ops)
        variant = FOLDED_VARIANT if config.folded_embeddings else genotype.embedding_variant
        self.embeddings = build_embeddings(variant, config.vocab_size, config.max_position_embeddings,
                                           hidden, config.embedding_width or hidden, config.dropout)
        self.cells = torch.nn.ModuleList(Cell(hidden, self.edge_ops) for _ in range(genotype.num_cells))
        self.head = ClassifierHead(hidden, config.num_labels, config.dropout, pair=config.pair_head)
        self.depth = genotype.num_cells
        self.post_init()

    def get_input_embeddings(self) -> torch.nn.Embedding:
        return self.embeddings.words

    def set_input_embeddings(self, value: torch.nn.Embedding) -> None:
        self.embeddings.words = value

    def _init_weights(self, module):
        # Each submodule initialises itself in its constructor; nothing to override here.
        pass

    def cell_outputs(self, input_ids, attention_mask=None, token_type_ids=None) -> CellOutputs:
        """The embedding output, every cell's output and the mask: what layer-wise KD reads
        (kd/adaptor.py, the per-cell heads of `nas finetune`). `forward` is this plus `classify`."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        embedded = self.embeddings(input_ids)  # (B, T, H)
        outputs, mask = run_cells(
            self.cells, embedded, attention_mask, token_type_ids, self.config.pair, self._cell_choices, self.depth
        )
        pair = pair_inputs(mask, token_type_ids, embedded) if self.config.pair_head else None
        return CellOutputs(embedded, tuple(outputs), mask, pair)

    def classify(self, states: CellOutputs) -> torch.Tensor:
        """The student's own classifier on its last cell's output: logits (B, C)."""
        return self.head(states.per_cell[-1], states.mask, states.pair)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None, return_dict=None, **unused):
        logits = self.classify(self.cell_outputs(input_ids, attention_mask, token_type_ids))  # (B, C)
        loss = None
        if labels is not None:
            if self.config.num_labels == 1:
                loss = torch.nn.functional.mse_loss(logits.squeeze(-1), labels.float())
            else:
                loss = torch.nn.functional.cross_entropy(logits, labels)
        if return_dict is False:
            return (logits,) if loss is None else (loss, logits)
        return SequenceClassifierOutput(loss=loss, logits=logits)

    @torch.no_grad()
    def inherit_from_supernet(self, supernet, embeddings: str = DEFAULT_EMBEDDINGS) -> None:
        """Copy the weights of the chosen ops, cells, embeddings and depth-K head from a supernet
        (the module or its state dict): names match because both are built by the same `Cell`.
        A student narrower than the supernet (a searched width) takes the leading channels of
        each weight, the part the supernet ran at its width (searchspace/width.py). `embeddings`
        is the word-vector variant the supernet trained (its arch.json's); a student of another
        variant keeps its own (a state dict does not say which variant made its tables)."""
        source = supernet if isinstance(supernet, dict) else supernet.state_dict()
        target = self.state_dict()
        own_embeddings = self.config.arch.embedding_variant != embeddings
        for name in target:
            if own_embeddings and name.startswith("embeddings."):
                continue
            key = f"heads.{self.depth - 1}." + name.removeprefix("head.") if name.startswith("head.") else name
            if predates_pair_head(key, source):
                continue
            target[name].copy_(leading_slice(source[key], target[name].shape))

    def for_inference(self) -> AdaBertStudentForSequenceClassification:
        """This student as it is served, in eval mode: the same logits, its word vectors folded into
        one (vocab, H) table (searchspace/projected_embeddings.py), so a projected variant's per-token
        matmul becomes a lookup and its stored tables shrink to the cells' width. A new student
        with copies of this one's weights; this one, with nothing to fold (pca, or folded already),
        is handed back itself. The genotype in its config still names the variant that trained."""
        embeddings = self.embeddings.folded()
        if embeddings is self.embeddings:
            return self.eval()
        config = copy.deepcopy(self.config)
        config.folded_embeddings, config.embedding_width = True, None
        served = type(self)(config).to(device=self.device, dtype=self.dtype)
        own = {name: value for name, value in self.state_dict().items() if not name.startswith("embeddings.")}
        missing, unexpected = served.load_state_dict(own, strict=False)
        if unexpected or any(not name.startswith("embeddings.") for name in missing):  # a bug, not user input
            raise RuntimeError(f"folding the word vectors: missing {missing}, unexpected {unexpected}")
        served.embeddings = embeddings
        return served.eval()

    def without_cells(self) -> AdaBertStudentForSequenceClassification:
        """A student that runs this one's forward pass less its cells: the same config, sharing
        this student's embeddings and head, each of its cells handing back its second input
        unchanged. What runs is what no choice of cells changes (the embeddings, the split of a
        sentence pair into the first cell's inputs, the cell loop's own bookkeeping, the head,
        the model call and its output), through `forward` itself, so it cannot drift from it.

        Latency measurement times it as the table's `frame_ms` (nas/deploy/latency_measure.py):
        a student's latency is predicted as the frame plus its cells. Its logits mean nothing
        for a task; this student is left as it was.
        """
        frame = type(self)(self.config)
        frame.embeddings, frame.head = self.embeddings, self.head
        frame.cells = torch.nn.ModuleList(_PassThrough() for _ in range(self.depth))
        return frame.train(self.training)


class _PassThrough(torch.nn.Module):
    """A cell of `without_cells`: hands back its second input."""

    def forward(self, s0, s1, mask0, mask1, mask, choices):
        return s1


def compile_genotype(genotype: Genotype, *, vocab_size: int, max_positions: int, num_labels: int, pair: bool,
                     dropout: float = 0.1, pad_token_id: int = 0, id2label=None,
                     teacher_width: int | None = None) -> AdaBertStudentForSequenceClassification:
    """Build the student of `genotype` (fresh weights). `teacher_width`: the width of the teacher's
    word vectors, which the variants that keep them at that width need (searchspace/embedding_variants.py)."""
    # A model folder does not hold the search's weights, so its config does not point at them.
    genotype = replace(genotype, search_weights=None) if genotype.search_weights is not None else genotype
    extra = {"id2label": id2label, "label2id": {v: k for k, v in id2label.items()}} if id2label else {}
    config = AdaBertStudentConfig(
        genotype=genotype.to_dict(), vocab_size=vocab_size, max_position_embeddings=max_positions, pair=pair,
        pair_head=pair,
        dropout=dropout, pad_token_id=pad_token_id, num_labels=num_labels,
        embedding_width=table_width(genotype.embedding_variant, genotype.hidden_size, teacher_width), **extra,
    )
    return AdaBertStudentForSequenceClassification(config)


class _LogitsOnly(torch.nn.Module):
    """Tracing wants tensors out, not a ModelOutput."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids):
        return self.model(input_ids, attention_mask, token_type_ids, return_dict=False)[0]


def export_torchscript(model: AdaBertStudentForSequenceClassification, example: dict, path) -> torch.jit.ScriptModule:
    """Trace the student on `example` (tokenizer output) and save it; inputs: ids, mask, token types."""
    model = model.eval()
    inputs = (example["input_ids"], example["attention_mask"], example.get("token_type_ids", torch.zeros_like(example["input_ids"])))
    traced = torch.jit.trace(_LogitsOnly(model), inputs)
    traced.save(str(path))
    return traced


def register_auto_classes() -> None:
    """Let `AutoConfig` and `AutoModelForSequenceClassification` resolve `adabert_student` to these classes."""
    AutoConfig.register(AdaBertStudentConfig.model_type, AdaBertStudentConfig)
    AutoModelForSequenceClassification.register(AdaBertStudentConfig, AdaBertStudentForSequenceClassification)


# A saved student folder carries a copy of this file (searchspace/remote_code.py), which
# transformers imports under another module name and finds through the folder's `auto_map`. That
# copy must not register itself: in a process that has this package too, it would replace these
# classes for every later `adabert_student` folder.
if __name__ == "searchspace.student":
    register_auto_classes()

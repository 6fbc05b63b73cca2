"""Substitute words from a masked language model, the `mlm` source of `kd.augment` (TinyBERT's).

TinyBERT (Jiao et al. 2020, https://arxiv.org/abs/1909.10351, section 3.1 and its
data_augmentation script) masks one word of a sentence at a time and takes a masked LM's top
predictions at that position as the word's candidates. The masked sentence is followed by the
unmasked one as the second segment, so the model sees the word it is replacing and proposes
words that fit both the context and the original. Here, as there, only alphabetic words get
candidates; unlike there, predictions that are not whole words (`##` pieces, special tokens) or
that equal the word itself are dropped, so that `p_pos_replace` is the rate at which words
actually change.

Only a model with a trained MLM head can do this offline. A fine-tuned classifier or a
sentence-transformers encoder (the MiniLM package) has none: `load_masked_lm` says so in one line
rather than predicting from a random head.
"""

from __future__ import annotations

from pathlib import Path

import torch

from kd.augment import _is_whole_word
from nas.base.errors import UserError
from nas.data.models import check_model_folder, load_tokenizer


def load_masked_lm(folder, device="cpu"):
    """(model, tokenizer) of a masked language model folder; a UserError when it has no MLM head."""
    from transformers import AutoModelForMaskedLM

    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"--mlm {folder}: no such folder")
    check_model_folder(folder)
    try:
        model, info = AutoModelForMaskedLM.from_pretrained(str(folder), dtype=torch.float32, output_loading_info=True)
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise UserError(f"{folder}: cannot load a masked language model ({first[:120]})") from None
    missing = [key for key in info.get("missing_keys", ()) if "position_ids" not in key]
    if missing:
        # A head initialised at random would propose random words and call them TinyBERT's.
        raise UserError(f"{folder}: no masked-LM head (missing {sorted(missing)[0]}); pass --mlm MODEL_DIR with a masked "
                        "language model, or use --set augment_source=embedding")
    return model.to(device).eval(), load_tokenizer(str(folder))


class MaskedLMSubstitutes:
    """Per word of a sentence, the top-k whole-word predictions of a masked LM with that word masked.

    `prepare(texts)` computes the candidates of many sentences in batches and keeps only those;
    `candidates(text)` answers one of them (a sentence not prepared is computed on its own).
    """

    def __init__(self, model, tokenizer, k: int, batch_size: int = 64, max_length: int = 256):
        if tokenizer.mask_token is None or not getattr(tokenizer, "is_fast", False):
            raise UserError("the masked language model needs a fast tokenizer with a mask token")
        self.model, self.tokenizer = model, tokenizer
        self.k, self.batch_size = k, batch_size
        self.max_length = min(max_length, getattr(model.config, "max_position_embeddings", max_length))
        self.device = next(model.parameters()).device
        vocab = tokenizer.get_vocab()
        special = set(tokenizer.all_special_tokens)
        self.tokens = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        allowed = torch.zeros(len(self.tokens), dtype=torch.bool)
        for word, index in vocab.items():
            allowed[index] = _is_whole_word(word, special) and word.isalpha()
        self._allowed = allowed  # (V,) the predictions that may become substitutes
        self._cache: dict[str, list[list[str]]] = {}

    def prepare(self, texts) -> None:
        todo = [text for text in dict.fromkeys(texts) if text not in self._cache]
        self._cache = {text: self._cache[text] for text in texts if text in self._cache}  # memory stays one chunk's
        # One masked copy per alphabetic word: (text, word index) jobs, batched across sentences.
        jobs = [(text, i) for text in todo for i, word in enumerate(text.split()) if word.isalpha()]
        answers: dict[tuple[str, int], list[str]] = {}
        for start in range(0, len(jobs), self.batch_size):
            batch = jobs[start : start + self.batch_size]
            answers.update(zip(batch, self._predict(batch)))
        for text in todo:
            self._cache[text] = [answers.get((text, i), []) for i in range(len(text.split()))]

    def candidates(self, text: str) -> list[list[str]]:
        if text not in self._cache:
            self.prepare([*self._cache, text])
        return self._cache[text]

    @torch.no_grad()
    def _masked_logits(self, inputs: dict, rows: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """(M, V) vocabulary logits at the masked positions only.

        The LM head's output layer is vocabulary-wide: applied at every position of the batch it
        costs far more than the encoder (30k x 384 per token for MiniLM), so for the heads whose
        layout is known (BERT's `cls`, RoBERTa's `lm_head`) it runs on the masked tokens alone."""
        model = self.model
        base = getattr(model, model.base_model_prefix, None)
        head = getattr(model, "cls", None) or getattr(model, "lm_head", None)
        if base is None or head is None:
            return model(**inputs).logits[rows.to(self.device), positions.to(self.device)]
        hidden = base(**inputs).last_hidden_state  # (B, T, H)
        return head(hidden[rows.to(self.device), positions.to(self.device)])  # (M, V)

    def _predict(self, jobs: list[tuple[str, int]]) -> list[list[str]]:
        firsts, seconds = [], []
        for text, i in jobs:
            words = text.split()
            firsts.append(words[:i] + [self.tokenizer.mask_token] + words[i + 1 :])
            seconds.append(words)
        encoded = self.tokenizer(firsts, seconds, is_split_into_words=True, truncation=True,
                                 max_length=self.max_length, padding=True, return_tensors="pt")
        positions = []
        for row, (_, i) in enumerate(jobs):
            # The masked word's token in the first segment (word ids count words per segment).
            found = [t for t, (s, w) in enumerate(zip(encoded.sequence_ids(row), encoded.word_ids(row))) if s == 0 and w == i]
            positions.append(found[0] if found else None)  # None: truncated away
        inputs = {key: value.to(self.device) for key, value in encoded.items()}
        rows = [row for row, position in enumerate(positions) if position is not None]
        at = torch.tensor([positions[row] for row in rows], dtype=torch.long)
        logits = self._masked_logits(inputs, torch.tensor(rows, dtype=torch.long), at)  # (M, V)
        out, found = [], dict(zip(rows, range(len(rows))))
        for row, (text, i) in enumerate(jobs):
            if row not in found:
                out.append([])
                continue
            scores = logits[found[row], : len(self._allowed)].float().cpu()  # (V,)
            scores = scores.masked_fill(~self._allowed[: scores.shape[0]], float("-inf"))
            word = text.split()[i]
            for same in {word, word.lower()}:
                index = self.tokenizer.convert_tokens_to_ids(same)
                if index is not None and index != self.tokenizer.unk_token_id and index < scores.shape[0]:
                    scores[index] = float("-inf")  # proposing the word itself would be no substitution
            top = scores.topk(min(self.k, scores.shape[0]))
            out.append([self.tokens[j] for j, s in zip(top.indices.tolist(), top.values.tolist()) if s != float("-inf")])
        return out

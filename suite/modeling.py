"""Task models: a transformers model plus a task's loss and predictions, one class per family.

* :class:`Seq2SeqModel` (T5): text-to-text; the loss is the target's cross-entropy; predictions
  come from greedy generation (``scoring="generate"``, the paper's protocol) or, for tasks whose
  label strings are single tokens, from comparing those tokens' first-step logits
  (``scoring="label_tokens"``: exact for single-token labels, one decoder step instead of up to 20).
* :class:`ClassifierModel` (BERT-like): a classification head (regression for STS-B) on the
  ``[CLS]`` pooler (``pooling="cls"``, BERT's own) or on the mean of the last hidden states over the
  attention mask (``pooling="mean"``, what a sentence-transformers checkpoint such as
  all-MiniLM-L6-v2 was trained for: its ``modules.json`` declares mean pooling, and its pooler was
  never trained with it; :func:`spaces.pooling.use_mean_pooling` puts the mean inside the model, so
  an exported model computes the same logits); the head's parameters are trained with the PEFT
  weights and reported apart.
* :class:`LabelScoringModel` (Llama-like): the next-token logits after the prompt, restricted to
  the label tokens.

Batches come from :class:`Collator`, which tokenises examples for the family and keeps the
examples' positions (``"index"``) so that predictions map back to their references.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from spaces.pooling import use_mean_pooling
from spaces.sites import family_of
from suite.tasks.base import Task

SCORINGS = ("generate", "label_tokens")
POOLINGS = ("cls", "mean")


class Collator:
    """Tokenise a list of examples into a batch for ``family``."""

    def __init__(self, task: Task, tokenizer, family: str, max_source_length: int | None = None):
        self.task, self.tokenizer, self.family = task, tokenizer, family
        self.max_length = max_source_length or task.max_source_length
        if family == "llama":
            if tokenizer.pad_token_id is None:
                tokenizer.pad_token = tokenizer.eos_token
            self.label_ids = label_token_ids(tokenizer, task)

    def __call__(self, batch: list[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
        index = [i for i, _ in batch]
        examples = [ex for _, ex in batch]
        tok = self.tokenizer
        if self.family == "t5":
            enc = tok([self.task.source(ex) for ex in examples], max_length=self.max_length,
                      truncation=True, padding=True, return_tensors="pt")
            tgt = tok([self.task.target(ex) for ex in examples], max_length=128, truncation=True,
                      padding=True, return_tensors="pt")
            labels = tgt["input_ids"].masked_fill(tgt["attention_mask"] == 0, -100)
            out = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": labels}
        elif self.family == "bert":
            first, second = zip(*(self.task.pair(ex) for ex in examples))
            second = None if all(s is None for s in second) else [s or "" for s in second]
            enc = tok(list(first), second, max_length=self.max_length, truncation=True, padding=True,
                      return_tensors="pt")
            out = dict(enc)
            if self.task.kind == "regression":
                out["labels"] = torch.tensor([float(ex["label"]) for ex in examples])
            else:
                out["labels"] = torch.tensor([int(ex["label"]) for ex in examples])
        else:  # llama: right-padded prompts; the label token is predicted after the last prompt token
            tok.padding_side = "right"
            enc = tok([self.task.prompt(ex) for ex in examples], max_length=self.max_length,
                      truncation=True, padding=True, return_tensors="pt")
            out = dict(enc)
            if self.task.kind == "regression":
                out["labels"] = torch.tensor([min(5, max(0, round(float(ex["label"])))) for ex in examples])
            else:
                out["labels"] = torch.tensor([int(ex["label"]) for ex in examples])
        out["index"] = torch.tensor(index)
        return out


def label_token_ids(tokenizer, task: Task) -> list[int]:
    """The token id of each label word; a clear error if one is not a single token."""
    ids = []
    for word in task.label_words():
        toks = tokenizer(word, add_special_tokens=False)["input_ids"]
        if len(toks) != 1:
            toks = tokenizer(word.strip(), add_special_tokens=False)["input_ids"]
        if len(toks) != 1:
            raise ValueError(f"label word {word!r} of {task.name} is {len(toks)} tokens for this tokenizer; need 1")
        ids.append(toks[0])
    return ids


class _Base(nn.Module):
    def __init__(self, model: nn.Module, task: Task, tokenizer, head_prefixes: tuple[str, ...] = ()):
        super().__init__()
        self.model, self.task, self.tokenizer = model, task, tokenizer
        self.head_prefixes = head_prefixes

    def head_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.model.named_parameters() if n.split(".")[0] in self.head_prefixes]

    @staticmethod
    def model_inputs(batch: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in batch.items() if k not in ("index", "labels")}


class Seq2SeqModel(_Base):
    def __init__(self, model, task, tokenizer, scoring: str = "generate"):
        super().__init__(model, task, tokenizer)
        if scoring not in SCORINGS:
            raise ValueError(f"unknown scoring {scoring!r}; valid: {', '.join(SCORINGS)}")
        self.scoring = scoring
        if scoring == "label_tokens":
            if task.kind != "classification":
                raise ValueError(f"scoring='label_tokens' needs a classification task, not {task.name}")
            self.label_ids = [tokenizer(str(i), add_special_tokens=False)["input_ids"] for i in range(task.num_labels)]
            if any(len(ids) != 1 for ids in self.label_ids):
                raise ValueError("scoring='label_tokens' needs single-token labels; use scoring='generate'")

    def forward(self, batch):
        return self.model(**self.model_inputs(batch), labels=batch["labels"]).loss

    @torch.no_grad()
    def predict(self, batch) -> list[Any]:
        inputs = self.model_inputs(batch)
        if self.scoring == "label_tokens":
            start = torch.full((inputs["input_ids"].shape[0], 1), self.model.config.decoder_start_token_id,
                               device=inputs["input_ids"].device)
            logits = self.model(**inputs, decoder_input_ids=start).logits[:, 0]
            ids = torch.tensor([i[0] for i in self.label_ids], device=logits.device)
            return logits[:, ids].argmax(-1).tolist()
        out = self.model.generate(**inputs, max_new_tokens=20, num_beams=1, do_sample=False)
        texts = self.tokenizer.batch_decode(out, skip_special_tokens=True)
        return [self.task.parse(t) for t in texts]


class ClassifierModel(_Base):
    def __init__(self, model, task, tokenizer, head_prefixes: tuple[str, ...] = (), pooling: str = "cls"):
        super().__init__(model, task, tokenizer, head_prefixes)
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; valid: {', '.join(POOLINGS)}")
        if pooling == "mean":
            use_mean_pooling(model)
        self.pooling = pooling

    def forward(self, batch):
        return self.model(**self.model_inputs(batch), labels=batch["labels"]).loss

    @torch.no_grad()
    def predict(self, batch) -> list[Any]:
        logits = self.model(**self.model_inputs(batch)).logits
        if self.task.kind == "regression":
            return logits.squeeze(-1).float().tolist()
        return logits.argmax(-1).tolist()


class LabelScoringModel(_Base):
    def __init__(self, model, task, tokenizer, label_ids: list[int]):
        super().__init__(model, task, tokenizer)
        self.register_buffer("label_ids", torch.tensor(label_ids), persistent=False)

    def _label_logits(self, batch) -> torch.Tensor:
        inputs = self.model_inputs(batch)
        logits = self.model(**inputs).logits  # [B, T, V]
        last = inputs["attention_mask"].sum(-1) - 1
        rows = logits[torch.arange(logits.shape[0], device=logits.device), last]
        return rows[:, self.label_ids.to(rows.device)].float()

    def forward(self, batch):
        return F.cross_entropy(self._label_logits(batch), batch["labels"])

    @torch.no_grad()
    def predict(self, batch) -> list[Any]:
        logits = self._label_logits(batch)
        if self.task.kind == "regression":  # the expected score under the label distribution
            values = torch.arange(logits.shape[-1], device=logits.device, dtype=logits.dtype)
            return (logits.softmax(-1) * values).sum(-1).tolist()
        return logits.argmax(-1).tolist()


def make_task_model(model: nn.Module, task: Task, tokenizer, scoring: str = "generate",
                    head_prefixes: tuple[str, ...] = (), pooling: str = "cls") -> _Base:
    """The task model for ``model``'s family (``pooling``: how a BERT-like head reads the sequence)."""
    family = family_of(model.config)
    if family == "t5":
        return Seq2SeqModel(model, task, tokenizer, scoring=scoring)
    if family == "bert":
        if task.kind == "extractive":
            raise ValueError(f"{task.name} is extractive: use a T5 backbone (encoders get no span head here)")
        return ClassifierModel(model, task, tokenizer, head_prefixes, pooling)
    if task.kind == "extractive":
        raise ValueError(f"{task.name} is extractive: use a T5 backbone")
    return LabelScoringModel(model, task, tokenizer, label_token_ids(tokenizer, task))

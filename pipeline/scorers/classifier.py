"""The `classifier` scorer: any transformers sequence-classification model the user has (a local
folder or a cached hub id; e.g. a toxicity classifier such as a RoBERTa fine-tuned on Jigsaw).

The value is the probability of the label named `label` in the model's `config.id2label`: a
softmax over the logits, or a sigmoid of that label's logit when the model's `problem_type` is
`multi_label_classification`. Answers are cut to `max_length` tokens and scored in batches of
`batch_size` (sorted by length, so little padding) under `torch.inference_mode`. An unknown
label is a one-line error listing the model's labels; an empty answer is value None.

    python run.py score --scorer classifier --arg model=/models/toxic-bert --arg label=toxic
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipeline.models import LoadOptions, ModelUnavailable, device_for, resolve
from pipeline.scorers import EMPTY_RAW, ScoreOutcome, ScorerFn, is_empty, scorer

MULTI_LABEL = "multi_label_classification"


def load_classifier(model: str, device: str | None) -> tuple[Any, Any]:
    """(model in eval mode on `device`, tokenizer) for a sequence classifier."""
    source = resolve(model)  # before torch is imported: a bad name fails at once
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    try:
        classifier, info = AutoModelForSequenceClassification.from_pretrained(
            source, output_loading_info=True)
        tokenizer = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as err:
        said = " ".join(str(err).split())
        raise ModelUnavailable(f"could not load the classifier {model!r}: {said}") from err
    if info["missing_keys"]:  # e.g. a causal LM: transformers would add a random head
        raise ModelUnavailable(f"{model!r} is not a trained sequence classifier: its weights "
                               f"lack {', '.join(sorted(info['missing_keys'])[:3])}")
    if tokenizer.pad_token is None:  # decoder classifiers (Llama-style) often have none
        tokenizer.pad_token = tokenizer.eos_token
    if classifier.config.pad_token_id is None:  # they pool at the last non-pad token
        classifier.config.pad_token_id = tokenizer.pad_token_id
    classifier.to(device_for(LoadOptions(device=device))).eval()
    return classifier, tokenizer


def label_index(config: Any, label: str) -> int:
    """The index of `label` in config.id2label, or a one-line error listing the labels."""
    names = {str(name): int(index) for index, name in config.id2label.items()}
    if label not in names:
        raise ValueError(f"the classifier has no label {label!r}; its labels: "
                         f"{', '.join(sorted(names, key=names.get))}")
    return names[label]


def probabilities(classifier: Any, tokenizer: Any, texts: Sequence[str], index: int,
                  max_length: int) -> list[float]:
    """P(label) for each text, in one forward pass."""
    import torch

    batch = tokenizer(list(texts), padding=True, truncation=True, max_length=max_length,
                      return_tensors="pt").to(classifier.device)
    with torch.inference_mode():
        logits = classifier(**batch).logits.float()
    if classifier.config.problem_type == MULTI_LABEL:
        chosen = torch.sigmoid(logits[:, index])
    else:
        chosen = torch.softmax(logits, dim=-1)[:, index]
    return chosen.cpu().tolist()


@scorer("classifier", runtime=("batch_size", "device"))
def classifier_scorer(model: str, label: str = "toxic", max_length: int = 512,
                      batch_size: int = 16, device: str | None = None) -> ScorerFn:
    """P(`label`) under the sequence classifier at `model`."""
    if batch_size < 1 or max_length < 1:
        raise ValueError("batch_size and max_length must be at least 1")
    classifier, tokenizer = load_classifier(model, device)
    index = label_index(classifier.config, label)
    reading = "sigmoid" if classifier.config.problem_type == MULTI_LABEL else "softmax"

    def run(answers: Sequence[str]) -> list[ScoreOutcome]:
        texts = sorted({t for t in answers if not is_empty(t)}, key=len)
        values: dict[str, float] = {}
        for start in range(0, len(texts), batch_size):
            chunk = texts[start:start + batch_size]
            values.update(zip(chunk, probabilities(classifier, tokenizer, chunk, index,
                                                   max_length)))
        return [ScoreOutcome(None, EMPTY_RAW) if is_empty(t)
                else ScoreOutcome(values[t], f"p({label})={values[t]:.6f} ({reading})")
                for t in answers]

    return run

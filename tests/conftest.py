"""Shared fixtures: every test's store in a temporary folder, `engine: auto` set to the
transformers path (tests/pipeline/test_vllm.py asks for vLLM itself), and a tiny random Llama
built and saved once per session so the real `from_pretrained` path is exercised offline."""

from __future__ import annotations

from pathlib import Path

import pytest

CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + "
          "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")

WORDS = """the a an and or of to in on for with is are was be it this that you your i me my we
not no yes can cannot can't won't will would should could help sorry but as ai assistant user
system here how what why when where who which tell explain write make give list steps step
first then next finally about answer question request safe unsafe harmful illegal ethical
please sure certainly of course guide way ways do does did have has had one two three four
five six seven eight nine ten good bad people person money house car computer water food
book story poem code python data time day year new old big small very more most some any all
. , ! ? : ; ' " ( ) - 0 1 2 3 4 5 6 7 8 9 complies refuses yes no harmful unharmful""".split()


def build_tiny_llama(folder: Path, seed: int = 0, hidden_size: int = 32, heads: int = 4,
                     kv_heads: int = 2) -> Path:
    """A 2-layer Llama with a word-level tokenizer and a ChatML template, saved to `folder`.
    (vLLM's CPU attention needs a head size it has kernels for, e.g. 128 / 2 = 64.)"""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<pad>", "<unk>", "<|im_start|>", "<|im_end|>"]
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(specials + WORDS))}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split("<|im_start|>", "isolated"), pre_tokenizers.Split("<|im_end|>", "isolated"),
         pre_tokenizers.Whitespace()])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>", bos_token="<|im_start|>",
        eos_token="<|im_end|>", additional_special_tokens=["<|im_start|>", "<|im_end|>"])
    tokenizer.chat_template = CHATML
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=hidden_size,
                         intermediate_size=2 * hidden_size, num_hidden_layers=2,
                         num_attention_heads=heads, num_key_value_heads=kv_heads,
                         max_position_embeddings=512, pad_token_id=0, bos_token_id=2,
                         eos_token_id=3, tie_word_embeddings=False)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = 0
    model.generation_config.eos_token_id = 3
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def build_llama():
    """`build_tiny_llama`, for modules that want a tiny Llama of another size."""
    return build_tiny_llama


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One converted-model cache for the whole session (converting SmolLM2 takes ~20 s)."""
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(autouse=True)
def isolated_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model_cache: Path) -> Path:
    """Every test's default store and model cache live in temporary folders."""
    path = tmp_path / "workbench.db"
    monkeypatch.setenv("WORKBENCH_STORE", str(path))
    monkeypatch.setenv("WORKBENCH_CACHE", str(model_cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    # `engine: auto` means the transformers reference path in tests; vLLM's tests ask for it
    monkeypatch.setenv("WORKBENCH_ENGINE", "hf")
    return path


@pytest.fixture
def unreachable_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    """No offline variable set, and the hub's address refuses connections at once."""
    from annotations import hub

    for name in hub.OFFLINE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: refused at once
    monkeypatch.setattr(hub.urllib.request, "getproxies", dict)
    hub._unreachable.cache_clear()
    yield
    hub._unreachable.cache_clear()

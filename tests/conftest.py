"""Shared fixtures: every test's store in a temporary folder, `engine: auto` set to the
transformers path (tests/pipeline/test_vllm.py asks for vLLM itself), a tiny random Llama
built and saved once per session so the real `from_pretrained` path is exercised offline, and a
throw-away PostgreSQL server (one per session, a fresh database per test) so the store's tests
run on both backends (`store_url`)."""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


# ----- PostgreSQL: one throw-away server per session, a fresh database per test -----------------

PG_BIN_ENV = "WORKBENCH_PG_BIN"
PG_HOW = (f"apt-get install postgresql, or set {PG_BIN_ENV} to a folder holding initdb and "
          "pg_ctl")
# A test server: durability off (nothing here must survive a crash) makes CREATE DATABASE and
# commits cheap; a zone other than UTC proves the store does not depend on the server's.
PG_SETTINGS = ("-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
               "-c max_connections=200 -c timezone=JST-9")


def postgres_bin() -> Path | None:
    """The folder with the server's programs: $WORKBENCH_PG_BIN, else Debian's newest
    /usr/lib/postgresql/N/bin, else where pg_ctl is on PATH."""
    if os.environ.get(PG_BIN_ENV):
        folders = [Path(os.environ[PG_BIN_ENV])]
    else:
        debian = glob.glob("/usr/lib/postgresql/*/bin")
        folders = sorted((Path(f) for f in debian), reverse=True,
                         key=lambda f: int(f.parent.name) if f.parent.name.isdigit() else 0)
        if shutil.which("pg_ctl"):
            folders.append(Path(shutil.which("pg_ctl")).parent)
    for folder in folders:
        if all((folder / name).is_file() for name in ("initdb", "pg_ctl", "postgres")):
            return folder
    return None


@dataclass
class PostgresServer:
    """A throw-away cluster listening on 127.0.0.1:`port`; `admin` (autocommit, to the
    `postgres` database) creates and drops the tests' databases."""

    folder: Path
    port: int
    admin: Any
    started_in: float  # seconds for initdb and start, for the record
    _names: Iterator[int] = field(default_factory=itertools.count)

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        from psycopg import sql

        name = f"test_{os.getpid()}_{next(self._names)}"
        self.admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0")
                           .format(sql.Identifier(name)))
        return name

    def drop_database(self, name: str) -> None:
        """Dropped even while a test's store still holds connections (FORCE ends them)."""
        from psycopg import sql

        self.admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                           .format(sql.Identifier(name)))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _server_user() -> tuple[list[str], tuple[int, int] | None]:
    """The server refuses to run as root: as root, its programs run as the `postgres` user
    (runuser), in a folder that user owns; otherwise as whoever runs the tests."""
    if os.geteuid() != 0:
        return [], None
    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("the PostgreSQL server refuses to run as root and there is no `postgres` "
                    f"user to run it as: {PG_HOW}")
    return ["runuser", "-u", "postgres", "--"], (user.pw_uid, user.pw_gid)


def _start_cluster(bin_dir: Path, folder: Path, prefix: list[str]) -> int:
    """initdb and pg_ctl start on a free port (another one if that port was taken meanwhile);
    returns the port."""
    def run(*cmd: str | Path) -> None:
        done = subprocess.run([*prefix, *map(str, cmd)], cwd=folder, capture_output=True,
                              text=True, timeout=120)
        if done.returncode != 0:
            log = folder / "server.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{Path(cmd[0]).name} failed: {done.stderr.strip()} {tail}")

    data = folder / "data"
    run(bin_dir / "initdb", "-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8",
        "--locale=C", "--no-sync")
    for attempt in range(3):
        port = _free_port()
        try:
            run(bin_dir / "pg_ctl", "-D", data, "-l", folder / "server.log", "-w", "-t", "60",
                "-o", f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 {PG_SETTINGS}",
                "start")
            return port
        except RuntimeError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL cluster in a temporary folder for the whole session, stopped and removed at
    its end; tests that need it skip, saying how to get one, where no server is installed."""
    try:
        import psycopg
    except ImportError:
        pytest.skip("the PostgreSQL store tests need psycopg: pip install -e '.[postgres]'")
    bin_dir = postgres_bin()
    if bin_dir is None:
        named = os.environ.get(PG_BIN_ENV)
        where = f" ({PG_BIN_ENV}={named} lacks initdb, pg_ctl or postgres)" if named else ""
        pytest.skip(f"no PostgreSQL server to test the store against{where}: {PG_HOW}")
    prefix, owner = _server_user()
    folder = Path(tempfile.mkdtemp(prefix="workbench-pg-"))  # not under pytest's 0700 root
    if owner:
        os.chown(folder, *owner)
    started = time.monotonic()
    port = None
    try:
        port = _start_cluster(bin_dir, folder, prefix)
        with psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres",
                             autocommit=True) as admin:
            yield PostgresServer(folder, port, admin, time.monotonic() - started)
    finally:
        if port is not None:
            subprocess.run([*prefix, str(bin_dir / "pg_ctl"), "-D", str(folder / "data"),
                            "-m", "immediate", "-w", "stop"], cwd=folder, capture_output=True,
                           timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database on the session's server (CREATE DATABASE from template0)."""
    name = postgres_server.create_database()
    try:
        yield postgres_server.url(name)
    finally:
        postgres_server.drop_database(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a test's store lives, once per backend: a SQLite file in the test's folder, then a
    plain `postgresql://` URL (as a team would give it) to a fresh database on the session's
    server."""
    if request.param == "sqlite":
        return str(tmp_path / "store.db")
    return request.getfixturevalue("postgres_url")

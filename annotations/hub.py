"""Whether the Hugging Face hub can be used right now, decided in about two seconds at most.

Asked for a hub id on a machine without network, huggingface_hub retries for 20-50 s before it
gives up. So before a hub id goes to transformers or datasets (the pipeline's loaders, and
`annotations.tabular.read_hub`) it is asked here once:
the hub is unavailable when HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE, HF_DATASETS_OFFLINE) is
set, or when its host (or the HTTPS proxy) does not accept a connection within two seconds; the
answer is kept for the process. A model or data set already in the local hub cache still loads
(a model from its cached folder: transformers asks the hub about adapters even when told not to).

    reason = offline_reason()    # None, or e.g. "HF_HUB_OFFLINE is set"
    require_dataset("databricks/databricks-dolly-15k", hint="download it")
"""

from __future__ import annotations

import functools
import os
import re
import socket
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from annotations.tabular import HF_ID, SUFFIXES, BadInputError

DEFAULT_ENDPOINT = "https://huggingface.co"
TIMEOUT_S = 2.0
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")
MODEL_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")  # `gpt2` or `owner/name`


def offline_reason() -> str | None:
    """Why the hub cannot be used now, or None when it can."""
    for name in OFFLINE_VARIABLES:
        if os.environ.get(name, "").strip().upper() in ("1", "ON", "YES", "TRUE"):
            return f"{name} is set"
    return _unreachable(os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT)


@functools.cache
def _unreachable(endpoint: str) -> str | None:
    """None when the endpoint's host (or its proxy) accepts a TCP connection in TIMEOUT_S."""
    url = urlsplit(endpoint)
    proxy = urllib.request.getproxies().get(url.scheme)
    if proxy and not urllib.request.proxy_bypass(url.hostname or ""):
        url = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=TIMEOUT_S).close()
    except OSError as err:
        return f"{host} cannot be reached: {err.strerror or str(err) or 'timed out'}"
    return None


def cached_model(repo_id: str) -> Path | None:
    """The folder of `repo_id` in the local hub cache (its `main` snapshot), or None."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id, "config.json")
    except ValueError:  # not a valid repo id
        return None
    return Path(found).parent if isinstance(found, str) else None


def dataset_in_cache(repo_id: str) -> bool:
    """Whether the local hub cache, or datasets' own cache, holds data set `repo_id`."""
    from huggingface_hub import constants

    folder = Path(constants.HF_HUB_CACHE) / f"datasets--{repo_id.replace('/', '--')}"
    datasets_cache = os.environ.get("HF_DATASETS_CACHE") or Path(constants.HF_HOME) / "datasets"
    return (any((folder / "snapshots").glob("*"))
            or (Path(datasets_cache) / repo_id.replace("/", "___")).is_dir())


def is_dataset_id(path_or_id: str | Path) -> bool:
    """What annotations.tabular.read_source takes for a hub id: no such file, `owner/name`."""
    text = str(path_or_id)
    return (not Path(text).exists() and bool(HF_ID.match(text))
            and Path(text).suffix.lower() not in SUFFIXES)


def require_dataset(path_or_id: str | Path, hint: str = "") -> None:
    """Fail at once, in one sentence, for a hub data set that cannot be had now."""
    if not is_dataset_id(path_or_id):
        return
    reason = offline_reason()
    if reason is not None and not dataset_in_cache(str(path_or_id)):
        raise BadInputError(str(path_or_id), f"cannot load this data set from the Hugging Face "
                                             f"hub ({reason}); {hint or 'download it'} and pass "
                                             "the local file's path instead")

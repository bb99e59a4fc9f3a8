"""What one app instance shares between its tabs' handlers: the owner's `AppOptions` and the
`AppContext` (the store, open labelling sessions, the random source, the export folder), built by
`make_context`. Tabs import this module, never tool/app.py, which builds the app from the tabs.
"""

from __future__ import annotations

import atexit
import functools
import random
import shutil
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr

from annotations.records import HumanLabel, PromptKind, Role
from annotations.store import Store
from tool import accounts
from tool.assign import Outstanding


@dataclass(frozen=True)
class AppOptions:
    """What the app's owner chooses; every field has a working default."""

    k: int = 3  # people per item
    session_size: int = 20
    blind: bool = True  # annotators never see checkpoint, run, temperature or verdicts
    random_share: float = 0.2  # of each session, drawn uniformly (marked chosen_at_random)
    gold: Mapping[str, HumanLabel] = field(default_factory=dict)  # generation id -> answer
    gold_share: float = 0.1
    kinds: tuple[PromptKind, ...] = (PromptKind.UNSAFE, PromptKind.BENIGN)
    min_seconds_per_item: float = 0.3  # a submit sooner after the item appeared is a double click
    assignment_ttl_s: float = 1800.0
    live_judges: tuple[str, ...] = ("refusal",)  # judge names for live sampling
    live_max_new_tokens: int = 96
    n_boot: int = 1000
    refresh_seconds: float = 30.0  # the Validate tab re-computes this often when the store grew
    seed: int | None = None
    label_concurrency: int = 8  # label submits served at once (each one short SQLite write)
    title: str = "Safety workbench"
    login_max_failures: int = 20  # failed logins, per account or per address, before a lockout
    login_window_s: float = 900.0
    login_lockout_s: float = 300.0


@dataclass
class AppContext:
    """Everything one app instance shares between its handlers (no module-level state)."""

    store: Store
    options: AppOptions
    outstanding: Outstanding
    rng: random.Random
    session_lock: threading.RLock = field(default_factory=threading.RLock)
    sessions: dict[str, Any] = field(default_factory=dict)  # annotator -> open labelling session
    extras: dict[str, Any] = field(default_factory=dict)  # per-tab holders (e.g. loaded models)

    @functools.cached_property
    def export_dir(self) -> Path:
        """Where exported files are written and served from: made at the first export (an app
        that exports nothing leaves no folder, even when killed), removed when the app exits."""
        folder = Path(tempfile.mkdtemp(prefix="workbench-exports-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        return folder

    def user(self, request: gr.Request | None) -> tuple[str, Role]:
        """(name, role) of the request's logged-in user; a gr.Error for anyone else."""
        try:
            return accounts.require_user(self.store, getattr(request, "username", None))
        except accounts.AccessDenied as err:
            raise gr.Error(str(err)) from None

    def admin(self, request: gr.Request | None) -> str:
        try:
            return accounts.require_admin(self.store, getattr(request, "username", None))
        except accounts.AccessDenied as err:
            raise gr.Error(str(err)) from None


def session_dropdown(label: str, **kwargs: Any) -> gr.Dropdown:
    """A dropdown whose choices each page fills on load (per user); the handlers behind it check
    the values, so choices missing from a client's session (an API client never loads the page)
    are no reason to refuse."""
    return gr.Dropdown(label=label, allow_custom_value=True, **kwargs)


def prompt_label(category: object, benchmark: object, text: str) -> str:
    """"Category: request…" (the benchmark's name where the prompt has no category)."""
    where = category if isinstance(category, str) and category else benchmark
    return f"{where}: {text[:70]}"


def unchanged(*components: Any) -> dict:
    """A handler's answer that changes nothing (Gradio refuses an empty dict for its outputs):
    what an admin tab's page-load handlers return on an annotator's page."""
    return {component: gr.update() for component in components}


def make_context(store: Store, options: AppOptions | None = None) -> AppContext:
    options = options or AppOptions()
    return AppContext(store=store, options=options,
                      outstanding=Outstanding(ttl_s=options.assignment_ttl_s),
                      rng=random.Random(options.seed))

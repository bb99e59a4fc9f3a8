"""The workbench app: one Gradio Blocks over the store, built by `build_app`, served by `serve`.

    python run.py serve --store workbench.db            # calls tool.app.serve

Tabs, one module each: Annotate (everyone), Compare (everyone; the win table for admins), Live
sampling, Trajectory, Validate, Sweep (a sweep's jobs and their states) and Exports (admins).
Every handler checks the logged-in user's role on the server (`AppContext.user` /
`AppContext.admin`); the admin tabs are also hidden from annotators, but hiding is a courtesy,
not the protection.

Access: login is required (the auth function checks scrypt hashes in the store); failed logins
are throttled per account and per address, every response carries security headers, and no API
call has an effect without a login (tool.security). Every event is
"undocumented": callable by a logged-in client such as gradio_client, but listed nowhere, so the
login page an anonymous visitor gets carries no list of endpoints; /config, /info and every API
route answer 401 without the login cookie. Monitoring, run history, MCP and the footer's API link
are off.

Model output is untrusted: answers are shown only in Textbox and Dataframe (text) components,
never in HTML, Markdown or Chatbot components, which would render markup or load images.
"""

from __future__ import annotations

import asyncio
import json
import os

import gradio as gr

from annotations.records import Role
from annotations.store import Store
from tool import accounts
from tool.context import AppContext, AppOptions, make_context, session_dropdown

__all__ = ["AppContext", "AppOptions", "build_app", "launch", "make_context", "serve",
           "session_dropdown"]

# Keyboard shortcuts: a keydown listener that clicks the visible button with the key's elem_id.
# Keys typed into a text field (the note) are left alone; Enter or Esc in the note leaves it.
SHORTCUTS = {"1": "wb-complies", "2": "wb-refuses", "3": "wb-incoherent", "c": "wb-cant-judge",
             "s": "wb-skip",
             "u": "wb-undo", "a": "wb-a-safer", "b": "wb-b-safer", "g": "wb-both-safe",
             "x": "wb-both-unsafe", "n": "wb-new-pair"}
HEAD = """<script>
(() => {
  const keys = __KEYS__;
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
    const el = event.target;
    const tag = (el && el.tagName || "").toLowerCase();
    const typing = (tag === "input" || tag === "textarea" || tag === "select" ||
                    (el && el.isContentEditable)) && !(el.readOnly || el.disabled);
    if (typing && (event.key === "Escape" || (event.key === "Enter" && !event.shiftKey))
        && el.closest("#wb-note")) {  // back from the note to the keys
      event.preventDefault();
      el.blur();
      return;
    }
    if (typing) return;
    const button = document.getElementById(keys[event.key.toLowerCase()]);
    if (!button || button.offsetParent === null || button.disabled) return;
    event.preventDefault();
    button.click();
  });
})();
</script>""".replace("__KEYS__", json.dumps(SHORTCUTS))
CSS = """
#wb-answer textarea, #wb-answer-a textarea, #wb-answer-b textarea {
  font-family: ui-monospace, monospace;
}
.wb-progress progress { width: 100%; height: 1.2em; }
"""


def build_app(store: Store, options: AppOptions | None = None) -> gr.Blocks:
    """The whole app over `store`. Launch it with `serve` (or `launch`), which adds the login."""
    from tool import (annotate, capability, compare, dashboard, exports, leaderboard, live,
                      sweep_tab, trajectory)

    ctx = make_context(store, options)
    # Exported files leave the cache after an hour.
    with gr.Blocks(title=ctx.options.title, analytics_enabled=False,
                   delete_cache=(3600, 3600)) as blocks:
        who = gr.Markdown("")
        with gr.Tabs():
            annotate.build_tab(ctx, blocks)
            compare.build_tab(ctx, blocks)
            admin_tabs = [module.build_tab(ctx, blocks)
                          for module in (live, trajectory, dashboard, leaderboard, capability,
                                         sweep_tab, exports)]

        def show_for_role(request: gr.Request) -> dict:
            name, role = ctx.user(request)
            is_admin = role == Role.ADMIN
            return {who: f"Logged in as **{name}** ({role.value}) · [log out](logout)",
                    **{tab: gr.update(visible=is_admin) for tab in admin_tabs}}

        blocks.load(show_for_role, None, [who, *admin_tabs], api_visibility="undocumented")
    blocks.workbench = ctx  # for tests and the benchmark: the app's own context
    _hide_endpoints(blocks)
    return blocks


def _hide_endpoints(blocks: gr.Blocks) -> None:
    """No event is listed in the API docs (nor in the login page's embedded schema)."""
    for fn in blocks.fns.values():
        if fn.api_visibility == "public":
            fn.api_visibility = "undocumented"


def auth_function(store: Store):
    """Gradio's auth callback: scrypt is slow on purpose, so it runs off the event loop."""
    async def check(username: str, password: str) -> bool:
        return await asyncio.to_thread(accounts.check_login, store, username, password)
    return check


def launch(blocks: gr.Blocks, store: Store, host: str = "127.0.0.1", port: int | None = None,
           block: bool = True, quiet: bool = True) -> str:
    """Start `blocks` with the login and the locked-down settings; returns the local URL."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from starlette.middleware import Middleware

    from tool.security import Guard, Throttle

    blocks.queue(default_concurrency_limit=1, max_size=None)
    options = blocks.workbench.options
    throttle = Throttle(options.login_max_failures, options.login_window_s, options.login_lockout_s)
    _, url, _ = blocks.launch(
        server_name=host, server_port=port, auth=auth_function(store),
        auth_message="Safety workbench: log in with the account an admin made for you.",
        prevent_thread_lock=not block, quiet=quiet, footer_links=[], run_history=False,
        enable_monitoring=False, mcp_server=False, ssr_mode=False, show_error=False,
        head=HEAD, css=CSS, max_threads=64,
        app_kwargs={"middleware": [Middleware(Guard, blocks=blocks, throttle=throttle)]})
    return url


def serve(store: Store, host: str = "127.0.0.1", port: int = 7860,
          options: AppOptions | None = None, block: bool = True,
          bootstrap_admin: bool = False) -> gr.Blocks:
    """`run.py serve` (and the end of `run.py demo`): build the app and serve it on host:port.

    With `bootstrap_admin` and no admin in the store yet, an `admin` account with a random
    password is created and the password printed once (the demo's way in)."""
    if bootstrap_admin:
        password = accounts.ensure_admin(store)
        if password:
            print(f"created account 'admin' with password: {password}")
    if store.annotators_frame().empty:
        print("no accounts yet: add one with `python run.py annotators add NAME --role admin`")
    blocks = build_app(store, options)
    url = launch(blocks, store, host, port, block=block, quiet=False)
    if not block:
        print(f"serving on {url}")
    return blocks


def main(argv: list[str] | None = None) -> None:
    """`python -m tool.app --store FILE [--port N]`: serve without run.py (tests, benchmarks)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tool.app", description=main.__doc__)
    parser.add_argument("--store", default=None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--k", type=int, default=AppOptions.k)
    parser.add_argument("--session-size", type=int, default=AppOptions.session_size)
    parser.add_argument("--min-seconds", type=float, default=AppOptions.min_seconds_per_item)
    parser.add_argument("--not-blind", action="store_true")
    args = parser.parse_args(argv)
    options = AppOptions(k=args.k, session_size=args.session_size, blind=not args.not_blind,
                         min_seconds_per_item=args.min_seconds)
    serve(Store.open(args.store), args.host, args.port, options)


if __name__ == "__main__":
    main()

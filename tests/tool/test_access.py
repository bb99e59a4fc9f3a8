"""Access over the wire, against the app served on 127.0.0.1: anonymous visitors get the login
page and nothing else; annotators get their own labels only, no verdicts in blind mode, and no
admin view or export; admins get exports."""

from __future__ import annotations

import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from conftest import PASSWORD, XSS_PROMPT

ENDPOINTS = ("label_complies", "export", "dashboard", "trajectory", "win_table", "live_sample",
             "my_labels", "new_pair")


def client(url: str, user: str) -> Client:
    return Client(url, auth=(user, PASSWORD), verbose=False, download_files=False)


def test_anonymous_gets_the_login_page_only(served):
    page = httpx.get(served.url)
    assert page.status_code == 200 and "auth_required" in page.text
    for name in ENDPOINTS:
        assert name not in page.text
    for gen in served.filled.generations[:5]:
        assert gen.text not in page.text and gen.id not in page.text
    assert XSS_PROMPT not in page.text
    for path in ("config", "gradio_api/info", "gradio_api/openapi.json"):
        assert httpx.get(served.url + path).status_code in (401, 404), path
    join = httpx.post(served.url + "gradio_api/queue/join",
                      json={"data": [], "fn_index": 0, "session_hash": "x", "event_data": None})
    assert join.status_code == 401
    call = httpx.post(served.url + "gradio_api/call/export", json={"data": ["labels", "CSV"]})
    assert call.status_code == 401
    assert httpx.get(served.url + "monitoring").status_code in (401, 403, 404)
    bad = httpx.post(served.url + "login", data={"username": "ana", "password": "wrong password"})
    assert bad.status_code == 400


def test_no_endpoint_is_listed_even_after_login(served):
    ana = client(served.url, "ana")
    info = ana.view_api(return_format="dict", print_info=False)
    assert info["named_endpoints"] == {} and info["unnamed_endpoints"] == {}
    assert served.blocks.get_api_info()["named_endpoints"] == {}


def test_annotator_is_kept_out_of_admin_views_and_sees_only_own_labels(served):
    ana, bob = client(served.url, "ana"), client(served.url, "bob")
    shown = ana.predict(api_name="/start")
    blob = " ".join(map(str, shown))
    assert not any(c.id in blob for c in served.filled.checkpoints)
    assert "verdicts" not in blob and "refusal" not in blob
    ana.predict(shown[6], "ana's private note", api_name="/label_complies")
    bob_item = bob.predict(api_name="/start")
    bob.predict(bob_item[6], "bob's note", api_name="/label_refuses")
    mine = bob.predict(api_name="/my_labels")
    rows = mine["data"] if isinstance(mine, dict) else mine
    assert "bob's note" in str(rows) and "ana's private note" not in str(rows)
    for endpoint, args in (("/export", ("labels", "CSV")),
                           ("/dashboard", ([], [], [], None, True, [])),
                           ("/trajectory", (served.filled.prompts[1].id, 1, 0.7, 0)),
                           ("/win_table", ()), ("/live_store", ())):
        with pytest.raises(AppError, match="admins only"):
            bob.predict(*args, api_name=endpoint)
    random4 = ("(random)",) * 4
    ana.predict(*random4, api_name="/new_pair")
    after = ana.predict(*random4, api_name="/vote_a_safer")
    status = after[-1]
    assert "Stored: a safer. Votes this session: 1." in status
    blob = " ".join(map(str, after))  # blind after the vote too: no checkpoint, no judge
    assert "seed " not in blob and "base" not in blob and "refusal" not in blob
    assert not any(c.id in blob for c in served.filled.checkpoints)


def test_admin_exports(served, tmp_path):
    import pandas as pd

    ana = client(served.url, "ana")
    item = ana.predict(api_name="/start")
    ana.predict(item[6], "", api_name="/label_incoherent")
    root = client(served.url, "root")
    readers = {"CSV": pd.read_csv, "JSONL": lambda p: pd.read_json(p, lines=True),
               "Parquet": pd.read_parquet}
    for fmt, reader in readers.items():
        result = root.predict("labels", fmt, api_name="/export")
        target = tmp_path / result["orig_name"]
        target.write_bytes(httpx.get(result["url"], cookies=root.cookies).content)
        frame = reader(target)
        assert list(frame["label"]) == ["incoherent"] and list(frame["annotator"]) == ["ana"]
    assert httpx.get(result["url"]).status_code == 401  # not without a login
    # the app's own export folder is not served to anyone
    made = next(served.blocks.workbench.export_dir.rglob("*.csv"))
    direct = httpx.get(f"{served.url}gradio_api/file={made}", cookies=ana.cookies)
    assert direct.status_code in (403, 404)


def test_the_export_folder_goes_when_the_app_exits(tmp_path):
    """Exported files live in a folder of the app's own, made at the first export (none before:
    an app killed before it exported leaves nothing) and removed when the app's process exits."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    temp = tmp_path / "temp"  # the app's temp folder, so only its own folders are in it
    temp.mkdir()
    code = ("import os, sys\nfrom annotations.store import Store\n"
            "from tool.context import make_context\nfrom tool.exports import export\n"
            "ctx = make_context(Store.open(sys.argv[1]))\n"
            "print(len(os.listdir(sys.argv[2])))\n"
            "print(export(ctx, 'prompts', 'CSV'))\n")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "s.db"), str(temp)],
                          text=True, capture_output=True, timeout=120,
                          cwd=Path(__file__).parents[2], env={**os.environ, "TMPDIR": str(temp)})
    assert done.returncode == 0, done.stderr
    before, made = done.stdout.strip().splitlines()[-2:]
    assert before == "0"  # nothing made before the first export
    made = Path(made)
    assert made.name.startswith("workbench-prompts-") and made.parent.parent.parent == temp
    assert list(temp.iterdir()) == []  # gone with the process

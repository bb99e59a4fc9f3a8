"""Accounts: scrypt hashes with a salt, logins, roles."""

from __future__ import annotations

import pytest

from annotations.records import Role
from annotations.store import Store
from tool import accounts


def test_hash_is_salted_and_verifies():
    first = accounts.hash_password("hunter2hunter2")
    second = accounts.hash_password("hunter2hunter2")
    assert first != second and first.startswith("scrypt$")
    assert accounts.verify_password("hunter2hunter2", first)
    assert not accounts.verify_password("hunter2hunter3", first)
    assert not accounts.verify_password("x", "garbage")


def test_add_and_check_login(tmp_path):
    store = Store.open(tmp_path / "a.db")
    accounts.add_annotator(store, "ana", "annotator", "long enough pw")
    stored = store.annotator("ana")
    assert stored.role == Role.ANNOTATOR and "long enough pw" not in stored.password_hash
    assert accounts.check_login(store, "ana", "long enough pw")
    assert not accounts.check_login(store, "ana", "wrong password")
    assert not accounts.check_login(store, "nobody", "long enough pw")
    accounts.add_annotator(store, "ana", Role.ADMIN, "another password")  # replace: role and pw
    assert accounts.role_of(store, "ana") == Role.ADMIN
    assert accounts.check_login(store, "ana", "another password")
    with pytest.raises(ValueError):
        accounts.add_annotator(store, "ana", Role.ADMIN, "x" * 10, replace=False)
    with pytest.raises(ValueError):
        accounts.add_annotator(store, "bob", Role.ADMIN, "short")
    with pytest.raises(ValueError):
        accounts.add_annotator(store, "two words", Role.ADMIN, "long enough pw")


def test_roles_are_checked_against_the_store(tmp_path):
    store = Store.open(tmp_path / "a.db")
    accounts.add_annotator(store, "ana", Role.ANNOTATOR, "long enough pw")
    assert accounts.require_user(store, "ana") == ("ana", Role.ANNOTATOR)
    for who in (None, "", "mallory"):
        with pytest.raises(accounts.AccessDenied):
            accounts.require_user(store, who)
    with pytest.raises(accounts.AccessDenied):
        accounts.require_admin(store, "ana")


def test_ensure_admin_only_once(tmp_path):
    store = Store.open(tmp_path / "a.db")
    password = accounts.ensure_admin(store)
    assert password and accounts.check_login(store, "admin", password)
    assert accounts.ensure_admin(store) is None


def test_read_password_from_environment(monkeypatch):
    monkeypatch.setenv(accounts.PASSWORD_ENV, "from the environment")
    assert accounts.read_password() == "from the environment"


def test_names_that_could_carry_markup_are_refused(tmp_path):
    import pytest

    from annotations.store import Store
    from tool.accounts import add_annotator

    store = Store.open(tmp_path / "s.db")
    for bad in ["<img/src=x/onerror=alert(1)>", "two words", "", "a" * 65]:
        with pytest.raises(ValueError):
            add_annotator(store, bad, "annotator", "long-enough-password")
    assert add_annotator(store, "ada.l-1@lab", "annotator", "long-enough-password").name == "ada.l-1@lab"

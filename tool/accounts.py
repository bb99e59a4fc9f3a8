"""People and access: password hashing, logins and the role checks every app handler makes.

Passwords are hashed with scrypt and a random 16-byte salt, stored as one self-describing string
(`scrypt$n$r$p$salt$hash`), and compared in constant time. A login for an unknown name still
spends one hash, so response time does not tell which names exist.

    add_annotator(store, "ana", Role.ANNOTATOR, password)       # run.py annotators add
    check_login(store, "ana", password)                          # the app's auth function

The app trusts nothing the browser sends about who it is: `require_user` and `require_admin`
read the name Gradio attached to the request after its cookie login and look the role up in the
store on every call, so a removed or demoted account loses access at once.
"""

from __future__ import annotations

import getpass
import hashlib
import hmac
import os
import re
import secrets

from annotations.records import Annotator, Role
from annotations.store import Store

PASSWORD_ENV = "WORKBENCH_PASSWORD"
MIN_PASSWORD_LENGTH = 8
_N, _R, _P = 2**14, 8, 1  # scrypt cost: about 16 MiB and 30-60 ms per hash on one CPU core
_DUMMY = None  # built on first use: a hash to spend time on for unknown names


class AccessDenied(PermissionError):
    """The request has no logged-in user, or the user lacks the role the action needs."""


def hash_password(password: str, n: int = _N, r: int = _R, p: int = _P) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=32)
    return f"scrypt${n}${r}${p}${salt.hex()}${digest.hex()}"


def verify_password(password: str, encoded: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(password.encode("utf-8"), salt=bytes.fromhex(salt), n=int(n),
                             r=int(r), p=int(p), dklen=len(digest) // 2)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, bytes.fromhex(digest))


def add_annotator(store: Store, name: str, role: Role | str, password: str,
                  replace: bool = True) -> Annotator:
    """Create (or with `replace`, update the role and password of) an account."""
    name = name.strip()
    if not re.fullmatch(r"[A-Za-z0-9_.@-]{1,64}", name):  # it is shown in the page
        raise ValueError(f"an annotator name is one word of letters, digits and _ . @ -, "
                         f"got {name!r}")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    if not replace and store.annotator(name) is not None:
        raise ValueError(f"annotator {name!r} exists already")
    person = Annotator(name=name, role=Role(role), password_hash=hash_password(password))
    store.add_annotator(person, replace=True)
    return person


def check_login(store: Store, name: str, password: str) -> bool:
    """True when `name` exists and `password` is theirs."""
    global _DUMMY
    person = store.annotator(name.strip()) if name else None
    if person is None or not person.password_hash:
        _DUMMY = _DUMMY or hash_password("not a password")
        verify_password(password, _DUMMY)  # same cost as a real check
        return False
    return verify_password(password, person.password_hash)


def read_password(env_var: str = PASSWORD_ENV, confirm: bool = True) -> str:
    """The new account's password: from `env_var` when set, else asked twice at the terminal."""
    if os.environ.get(env_var):
        return os.environ[env_var]
    first = getpass.getpass("password: ")
    if confirm and getpass.getpass("again: ") != first:
        raise ValueError("the two passwords differ")
    return first


def ensure_admin(store: Store, name: str = "admin") -> str | None:
    """When the store has no admin yet, create `name` with a random password and return it
    (the demo prints it once); otherwise return None and change nothing."""
    frame = store.annotators_frame()
    if len(frame) and (frame["role"] == Role.ADMIN.value).any():
        return None
    password = secrets.token_urlsafe(12)
    add_annotator(store, name, Role.ADMIN, password)
    return password


def role_of(store: Store, name: str | None) -> Role | None:
    if not name:
        return None
    person = store.annotator(name)
    return None if person is None else Role(person.role)


def require_user(store: Store, username: str | None) -> tuple[str, Role]:
    """(name, role) of the logged-in user, or AccessDenied."""
    role = role_of(store, username)
    if role is None:
        raise AccessDenied("not logged in")
    return username, role  # type: ignore[return-value]


def require_admin(store: Store, username: str | None) -> str:
    name, role = require_user(store, username)
    if role != Role.ADMIN:
        raise AccessDenied("this view is for admins only")
    return name

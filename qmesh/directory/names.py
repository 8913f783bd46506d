"""Names in the directory: accounts (LOCAL-53), domains (LOCAL-54) and rules (LOCAL-09, LOCAL-52).

Every name that reaches a KV key or an object key passes through here first, so keys are
built only from validated names (ARCHITECTURE section 4). Account names additionally may not
end in ``.``: a KV key token cannot be empty, and ``account.<domain>.bob.`` would have one.
"""

from __future__ import annotations

import re

import idna

from qmesh.directory.errors import InvalidName, InvalidRule

ACCOUNT_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
LABEL_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
MAX_DOMAIN_OCTETS = 253
MAX_RULE_NAME = 200
RESERVED_ACCOUNTS = frozenset({"root"})  # LOCAL-06

DOT_QMAIL = ".qmail"
_SAFEEXT = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ.", "abcdefghijklmnopqrstuvwxyz:")


def _account_problem(name: str) -> str | None:
    if not ACCOUNT_RE.fullmatch(name):
        if name.startswith("."):
            return "it begins with '.'"
        if len(name) > 64:
            return "it is longer than 64 characters"
        return "use 1-64 of a-z 0-9 . _ - starting with a letter or digit"
    if ".." in name:
        return "it contains '..'"
    if name.endswith("."):
        return "it ends with '.'"
    if name in RESERVED_ACCOUNTS:
        return "root is never an account; mail for root goes to the domain rule root"
    return None


def is_account_name(name: str) -> bool:
    """True when ``name`` may name an account (LOCAL-53, LOCAL-06); lookups skip the rest."""
    return _account_problem(name) is None


def check_account_name(name: str) -> str:
    """``name`` unchanged if it is a valid account name, else :class:`InvalidName`."""
    problem = _account_problem(name)
    if problem is not None:
        raise InvalidName(f"invalid account name {name!r}: {problem}")
    return name


def _ascii_domain_problem(name: str) -> str | None:
    if not name:
        return "it is empty"
    if len(name) > MAX_DOMAIN_OCTETS:
        return f"it is longer than {MAX_DOMAIN_OCTETS} octets"
    for label in name.split("."):
        if not label:
            return "it has an empty label"
        if not LABEL_RE.fullmatch(label):
            return f"label {label!r} is not letters, digits and inner '-' (at most 63)"
        if label.startswith("xn--"):
            try:
                idna.decode(label)
            except (idna.IDNAError, UnicodeError):
                return f"label {label!r} is not a valid IDNA A-label"
    return None


def is_domain_name(name: str) -> bool:
    """True when ``name`` is already in stored form: lower-case A-labels (LOCAL-54)."""
    return name.isascii() and _ascii_domain_problem(name) is None


def domain_name(text: str) -> str:
    """The stored form of a domain: lower-case, U-labels converted to A-labels (UTS #46).

    Raises :class:`InvalidName` naming the domain and the reason.
    """
    if text.isascii():
        name = text.lower()
    else:
        try:
            name = idna.encode(text, uts46=True, transitional=False).decode("ascii")
        except (idna.IDNAError, UnicodeError) as err:
            raise InvalidName(f"invalid domain name {text!r}: {err}") from err
    problem = _ascii_domain_problem(name)
    if problem is not None:
        raise InvalidName(f"invalid domain name {text!r}: {problem}")
    return name


def safeext(ext: str) -> str:
    """LOCAL-09: ASCII upper case folded to lower case and every ``.`` replaced by ``:``."""
    return ext.translate(_SAFEEXT)


def _rule_name_problem(name: str) -> str | None:
    if len(name) > MAX_RULE_NAME:
        return f"it is longer than {MAX_RULE_NAME} characters"
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F or c == "/" for c in name):
        return "it contains a space, a control character or '/'"
    if name != safeext(name):
        return "it is not in safeext form (lower case, ':' for '.')"
    return None


def is_rule_name(name: str) -> bool:
    """True for a stored rule name: ``""`` or a safeext name (LOCAL-52)."""
    return _rule_name_problem(name) is None


def rule_name(text: str) -> str:
    """The stored rule name for ``.qmail`` (``""``), ``.qmail-<ext>`` or a bare ``<ext>``.

    ``.qmail-Foo.Bar`` and ``Foo.Bar`` both give ``foo:bar`` (LOCAL-09, LOCAL-52).
    """
    if text == DOT_QMAIL:
        return ""
    if text.startswith(DOT_QMAIL + "-"):
        ext = text[len(DOT_QMAIL) + 1 :]
        if not ext:
            raise InvalidRule(f"invalid rule name {text!r}: nothing after '.qmail-'")
    elif text.startswith("."):
        raise InvalidRule(f"invalid rule name {text!r}: use .qmail, .qmail-<name> or <name>")
    elif not text:
        raise InvalidRule("empty rule name: use .qmail for the account's own rule")
    else:
        ext = text
    name = safeext(ext)
    problem = _rule_name_problem(name)
    if problem is not None:
        raise InvalidRule(f"invalid rule name {text!r}: {problem}")
    return name


def rule_file_name(name: str) -> str:
    """How a stored rule name is shown: qmail's file name, ``.qmail`` or ``.qmail-<name>``."""
    return DOT_QMAIL if name == "" else f"{DOT_QMAIL}-{name}"

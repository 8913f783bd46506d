"""Loading the control directory into one frozen :class:`Controls` (spec 2.1-2.3, CTL-01..07).

Called at startup and on reload, never per message (ARCHITECTURE section 6). A missing file
means the documented default; a file that exists but cannot be read or parsed is a
:class:`ControlError` naming it, and the caller refuses to start (CTL-06, STYLE section 7).
:func:`inspect_controls` reports every error at once, for ``qmesh control check``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TypeVar

from qmesh.control import parse
from qmesh.control.parse import ControlError
from qmesh.control.registry import ENV_OVERRIDES, REGISTRY, MeOr
from qmesh.control.snapshot import fingerprint, read_control, snapshot_dir
from qmesh.control.values import BounceFormat, Controls, Source

__all__ = ["ControlError", "Controls", "Inspection", "inspect_controls", "load_controls"]

_T = TypeVar("_T")

# Line controls that name a host or a local part: an empty first line is a mistake there.
# (doublebounceto is the exception: empty is meaningful, BOUNCE-11.)
_NON_EMPTY = frozenset(
    {"me", "smtpgreeting", "localiphost", "envnoathost", "bouncefrom", "bouncehost"}
    | {"doublebouncehost", "helohost"}
)
_STABLE_TRIES = 3


@dataclass(frozen=True, slots=True)
class Inspection:
    """Everything :func:`inspect_controls` found: values (defaults where a file failed)."""

    controls: Controls
    errors: tuple[ControlError, ...]
    unknown: tuple[str, ...]  # files in the directory that are not controls (typos?)


class _Reader:
    """Reads one snapshot directory, recording each control's source and every error."""

    def __init__(self, control_dir: Path, environ: Mapping[str, str]) -> None:
        self.control_dir = control_dir
        self.directory = snapshot_dir(control_dir)
        self.environ = environ
        self.errors: list[ControlError] = []
        self.sources: dict[str, Source] = {}
        self.me: str | None = None

    def text(self, name: str) -> str | None:
        self.sources[name] = "default"
        try:
            text = read_control(self.directory, name)
        except ControlError as err:
            self.errors.append(err)
            return None
        if text is not None:
            self.sources[name] = "file"
        return text

    def parsed(self, name: str, convert: Callable[[str], _T], default: _T) -> _T:
        text = self.text(name)
        if text is None:
            return default
        try:
            return convert(text)
        except ControlError as err:
            self.errors.append(err)
            return default

    def line(self, name: str) -> str | None:
        default = REGISTRY[name].default
        if isinstance(default, MeOr):
            fallback = self.me if self.me is not None else default.literal
        else:
            assert default is None or isinstance(default, str), name
            fallback = default
        return self.parsed(name, lambda text: self._line(name, text), fallback)

    def _line(self, name: str, text: str) -> str:
        value = parse.first_line(text)
        if not value and name in _NON_EMPTY:
            raise ControlError(name, "the first line is empty", 1)
        return value

    def host(self, name: str) -> str:
        """A line control whose default always has a value ("``me``, else literal")."""
        value = self.line(name)
        assert value is not None, name
        return value

    def number(self, name: str) -> int:
        default = REGISTRY[name].default
        assert isinstance(default, int) and not isinstance(default, bool), name
        return self.parsed(name, lambda text: parse.number(name, text, default), default)

    def flag(self, name: str) -> bool:
        default = REGISTRY[name].default
        assert isinstance(default, bool), name
        return self.parsed(name, lambda text: parse.flag(name, text), default)

    def entries(self, name: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        return self.parsed(name, lambda text: tuple(e for _, e in parse.entries(text)), default)

    def pem(self, name: str) -> Path | None:
        """tlscert/tlskey: the file itself if it holds PEM, else the file its first line names.

        A named file is not opened here: only smtpd and pop3d use it, and they refuse to
        start without it (:class:`qmesh.runtime.tls.TlsContexts`). The other services and the
        CLI start where it is not mounted (chart #1).
        """
        return self.parsed(name, lambda text: self._pem(name, text), None)

    def _pem(self, name: str, text: str) -> Path:
        if text.lstrip().startswith("-----BEGIN "):
            return self.control_dir / name
        target = parse.first_line(text)
        if not target:
            raise ControlError(name, "neither PEM data nor the name of a PEM file", 1)
        return self.control_dir / target  # an absolute target replaces the directory

    def env_override(self, variable: str, value: _T, convert: Callable[[str], _T]) -> _T:
        """Spec 2.3: a set environment variable replaces the control's value."""
        if variable not in self.environ:
            return value
        try:
            result = convert(self.environ[variable])
        except ControlError as err:
            self.errors.append(err)
            return value
        self.sources[ENV_OVERRIDES[variable]] = "env"
        return result

    def pairs(self, name: str) -> tuple[tuple[str, str], ...]:
        return self.parsed(name, lambda text: parse.pairs(name, text), ())

    def default_words(self, name: str) -> tuple[str, ...]:
        default = REGISTRY[name].default
        assert isinstance(default, tuple), name
        return default


def _databytes(value: str) -> int:
    return parse.env_number("DATABYTES", "databytes", value)


def _read(r: _Reader) -> Controls:
    r.me = me = r.line("me")
    locals_default = (me,) if me is not None else ()
    dsn = _bounceformat(str(REGISTRY["bounceformat"].default))
    delivery = REGISTRY["defaultdelivery"].default
    assert isinstance(delivery, str)
    return Controls(
        me=me,
        smtpgreeting=r.line("smtpgreeting"),
        localiphost=r.line("localiphost"),
        timeoutsmtpd=max(1, r.number("timeoutsmtpd")),
        rcpthosts=r.parsed("rcpthosts", parse.domains, None),
        morercpthosts=r.parsed("morercpthosts", parse.domains, frozenset()),
        badmailfrom=r.parsed("badmailfrom", parse.domains, frozenset()),
        databytes=r.env_override("DATABYTES", r.number("databytes"), _databytes),
        locals=r.entries("locals", locals_default),
        virtualdomains=r.pairs("virtualdomains"),
        percenthack=r.parsed("percenthack", parse.domains, frozenset()),
        envnoathost=r.host("envnoathost"),
        queuelifetime=r.number("queuelifetime"),
        concurrencylocal=r.number("concurrencylocal"),
        concurrencyremote=r.number("concurrencyremote"),
        bouncefrom=r.host("bouncefrom"),
        bouncehost=r.host("bouncehost"),
        doublebounceto=r.host("doublebounceto"),
        doublebouncehost=r.host("doublebouncehost"),
        helohost=r.line("helohost"),
        smtproutes=r.pairs("smtproutes"),
        qmtproutes=r.pairs("qmtproutes"),
        timeoutremote=r.number("timeoutremote"),
        timeoutconnect=r.number("timeoutconnect"),
        defaultdomain=r.env_override("QMAILDEFAULTDOMAIN", r.host("defaultdomain"), str),
        defaulthost=r.env_override("QMAILDEFAULTHOST", r.host("defaulthost"), str),
        plusdomain=r.env_override("QMAILPLUSDOMAIN", r.host("plusdomain"), str),
        idhost=r.env_override("QMAILIDHOST", r.host("idhost"), str),
        relayclients=r.parsed("relayclients", lambda t: parse.relayclients("relayclients", t), ()),
        proxyclients=r.parsed("proxyclients", lambda t: parse.networks("proxyclients", t), ()),
        ipme=r.parsed("ipme", lambda t: parse.addresses("ipme", t), r.default_words("ipme")),
        rcptcheck=r.flag("rcptcheck"),
        maxrcpt=r.number("maxrcpt"),
        smtpauth=r.parsed(
            "smtpauth", lambda t: parse.mechanisms("smtpauth", t), r.default_words("smtpauth")
        ),
        tlscert=r.pem("tlscert"),
        tlskey=r.pem("tlskey"),
        submissionports=r.parsed(
            "submissionports",
            lambda t: parse.ports("submissionports", t),
            tuple(int(port) for port in r.default_words("submissionports")),
        ),
        bounceformat=r.parsed("bounceformat", _bounceformat, dsn),
        bouncemaxbytes=r.number("bouncemaxbytes"),
        programdelivery=r.flag("programdelivery"),
        defaultdelivery=r.parsed("defaultdelivery", str, delivery),
        pop3plaintext=r.flag("pop3plaintext"),
        spawnlimit=r.number("spawnlimit"),
        maxconnip=r.number("maxconnip"),
        timeoutdata=max(1, r.number("timeoutdata")),
        timeoutsession=max(1, r.number("timeoutsession")),
        clientconnections=r.number("clientconnections"),
        netconnections=r.number("netconnections"),
        clientmessages=r.number("clientmessages"),
        clientrecipients=r.number("clientrecipients"),
        authfailures=r.number("authfailures"),
        loginfailures=r.number("loginfailures"),
        authblock=max(1, r.number("authblock")),
        authdelay=r.number("authdelay"),
        rspamd=r.line("rspamd"),
        rspamdsubmission=r.flag("rspamdsubmission"),
        rspamdtempfail=r.flag("rspamdtempfail"),
        dnsbl=r.entries("dnsbl"),
        dmarcreject=r.flag("dmarcreject"),
        sources=MappingProxyType(dict(r.sources)),
    )


def _bounceformat(text: str) -> BounceFormat:
    options: tuple[BounceFormat, ...] = ("dsn", "qsbmf")
    return parse.choice("bounceformat", text, options)


def _tls_pair(controls: Controls) -> list[ControlError]:
    """A certificate without its key (or the reverse) cannot offer TLS: say which is missing."""
    if (controls.tlscert is None) == (controls.tlskey is None):
        return []
    missing, present = ("tlskey", "tlscert") if controls.tlskey is None else ("tlscert", "tlskey")
    return [ControlError(missing, f"is missing, but {present} is set")]


DIRECTORIES = ("domainkeys",)  # read by their own loaders (qmesh.dkim.keyring)


def _read_once(control_dir: Path, environ: Mapping[str, str]) -> Inspection:
    if not control_dir.is_dir():
        raise ControlError("", f"{control_dir} does not exist or is not a directory")
    reader = _Reader(control_dir, environ)
    controls = _read(reader)
    errors = [*reader.errors, *_tls_pair(controls)]
    try:
        names = os.listdir(reader.directory)
    except OSError:
        names = []  # readable by name but not listable: nothing to warn about
    known = {*REGISTRY, *DIRECTORIES}
    unknown = tuple(sorted(n for n in names if n not in known and not n.startswith(".")))
    return Inspection(controls, tuple(errors), unknown)


def inspect_controls(control_dir: Path, environ: Mapping[str, str]) -> Inspection:
    """Read every control, collecting all errors instead of stopping at the first.

    The directory's fingerprint is taken before and after; if it moved (a ConfigMap swap, an
    editor saving), the read is repeated, so the result is one version of the files (CTL-07).
    """
    for _ in range(_STABLE_TRIES):
        before = fingerprint(control_dir)
        inspection = _read_once(control_dir, environ)
        if fingerprint(control_dir) == before:
            break
    return inspection


def load_controls(control_dir: Path, environ: Mapping[str, str]) -> Controls:
    """All controls of ``control_dir`` with defaults and environment overrides applied.

    Raises the first :class:`ControlError` if any control exists but cannot be read or
    parsed; the caller must then refuse to start (CTL-06).
    """
    inspection = inspect_controls(control_dir, environ)
    if inspection.errors:
        raise inspection.errors[0]
    return inspection.controls

"""How a command finds and reaches NATS: one resolution for every ``qmesh`` command.

``QMESH_NATS_URL`` wins, with the credential of ``QMESH_NATS_USER`` and
``QMESH_NATS_PASSWORD_FILE`` (or ``QMESH_NATS_CREDS``) if given: a server of your own, as in
the chart's setup Job. Otherwise the URL that ``qmesh up`` wrote to ``$QMESH_DATA/nats.url``
(default ``./qmesh-data/nats.url``) for its embedded server, with the admin credential it made
beside it, ``$QMESH_DATA/secrets/nats-admin`` (hardening #2). Otherwise
``nats://127.0.0.1:4222``. A command gives up after a few attempts with :class:`Unreachable`
("cannot reach NATS at <url>") instead of waiting for ever.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError

from qmesh.bus.jetstream import connect
from qmesh.cli.natsusers import ADMIN, password_file, user_name
from qmesh.contract.errors import Temporary
from qmesh.runtime.settings import Settings

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
DEFAULT_DATA = "./qmesh-data"
URL_FILE = "nats.url"
CONNECT_ATTEMPTS = 3


class Unreachable(Temporary):
    """NATS did not answer: the command can be retried once it is up."""


def nats_url_file(environ: Mapping[str, str]) -> Path:
    """Where ``qmesh up`` publishes its embedded server's URL."""
    return Path(environ.get("QMESH_DATA") or DEFAULT_DATA) / URL_FILE


def resolve_nats_url(environ: Mapping[str, str]) -> str:
    """``QMESH_NATS_URL``, else the content of ``$QMESH_DATA/nats.url``, else the default."""
    url = environ.get("QMESH_NATS_URL", "").strip()
    if url:
        return url
    try:
        url = nats_url_file(environ).read_text().strip()
    except OSError:
        url = ""
    return url or DEFAULT_NATS_URL


def _explicit(environ: Mapping[str, str], name: str) -> str | None:
    return environ.get(f"QMESH_NATS_{name}", "").strip() or None


def resolve_nats(environ: Mapping[str, str]) -> Settings:
    """The URL and credential a command uses, found as the module says."""
    user, password, creds = (_explicit(environ, n) for n in ("USER", "PASSWORD_FILE", "CREDS"))
    explicit = user or password or creds
    url = environ.get("QMESH_NATS_URL", "").strip()
    if not url and not explicit:
        admin = password_file(nats_url_file(environ).parent, ADMIN)
        if admin.exists():  # qmesh up's embedded server
            user, password = user_name(ADMIN), str(admin)
    return Settings(
        nats_url=url or resolve_nats_url(environ),
        nats_user=user,
        nats_password_file=Path(password) if password else None,
        nats_creds=Path(creds) if creds else None,
    )


@contextlib.asynccontextmanager
async def nats_session(
    environ: Mapping[str, str], name: str = ADMIN, *, attempts: int = CONNECT_ATTEMPTS
) -> AsyncIterator[NATS]:
    """A connection for one command, closed at the end; :class:`Unreachable` if none."""
    settings = resolve_nats(environ)
    url = settings.nats_url
    try:
        nc = await connect(settings, name, attempts=attempts)
    except (TimeoutError, OSError, NatsError) as err:
        raise Unreachable(f"cannot reach NATS at {url} ({err or type(err).__name__})") from err
    try:
        yield nc
    finally:
        with contextlib.suppress(Exception):
            await nc.close()

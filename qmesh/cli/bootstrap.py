"""What ``qmesh up`` prepares before the services start: control files, the canonical
local domain in the directory (LOCAL-56), and the buckets when the store is S3."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from qmesh.bus.provision import provision_streams
from qmesh.cli.connect import nats_session
from qmesh.control import load_controls, write_default_controls
from qmesh.control.initial import guard_plaintext
from qmesh.directory.admin import add_domain
from qmesh.directory.namespaces import Namespaces
from qmesh.directory.store import Directory
from qmesh.runtime.settings import Settings
from qmesh.store.factory import open_store
from qmesh.store.s3 import S3Store

log = logging.getLogger(__name__)

DEFAULT_ME = "mail.localhost"  # RFC 6761: a name that stays on this machine
LISTEN_HOST = "127.0.0.1"  # QMESH_LISTEN_HOST unless set


def ensure_control_dir(
    control: Path, me: str = DEFAULT_ME, *, listen_host: str = LISTEN_HOST
) -> bool:
    """Write safe defaults when ``control`` is missing or empty; ``True`` if it did.

    POP3 without TLS is allowed only while every listener is on loopback (POP3-60).
    """
    if control.is_dir() and any(control.iterdir()):
        guard_plaintext(control, listen_host)
        return False
    write_default_controls(control, me, listen_host=listen_host)
    return True


async def ensure_canonical_domain(env: Mapping[str, str]) -> str:
    """Create the directory record of the canonical local domain if it is missing."""
    controls = load_controls(Path(env["QMESH_CONTROL"]), env)
    canonical = controls.canonical_local_domain()
    if canonical is None:
        raise SystemExit("qmesh up: control/locals and control/me are both missing")
    async with nats_session(env, "qmesh-up", attempts=10) as nc:
        js = nc.jetstream()
        await provision_streams(js)
        directory = await Directory.open(js)
        if await directory.get_domain(canonical) is None:
            await add_domain(
                directory,
                canonical,
                namespaces=Namespaces.build(canonical, controls.locals, controls.virtualdomains),
            )
    return canonical


async def ensure_buckets(env: Mapping[str, str]) -> None:
    """With ``QMESH_STORE=s3``, create the queue and mail buckets if they do not exist."""
    settings = Settings.model_validate(
        {k[6:].lower(): v for k, v in env.items() if k.startswith("QMESH_")}
    )
    if settings.store != "s3":
        return
    for bucket in (settings.queue_bucket, settings.mail_bucket):
        store = open_store(settings, bucket)
        assert isinstance(store, S3Store)
        await store.ensure_bucket()

"""What the setup step prepares before the services start: control files, the streams,
consumers and KV buckets (hardening #3), the canonical local domain in the directory
(LOCAL-56), and the buckets when the store is S3. ``qmesh up`` runs all of it; the chart's
setup Job runs ``qmesh provision`` and then adds its domains."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Mapping
from pathlib import Path

from qmesh.bus.provision import consumer_specs, provision
from qmesh.cli.connect import nats_session
from qmesh.contract.errors import Temporary
from qmesh.control import load_controls, write_default_controls
from qmesh.directory.admin import add_domain
from qmesh.directory.namespaces import Namespaces
from qmesh.directory.store import Directory
from qmesh.runtime.settings import Settings
from qmesh.store.factory import open_store
from qmesh.store.s3 import S3Store

log = logging.getLogger(__name__)

EXIT_TEMPORARY = 111  # as the other commands: try again later

DEFAULT_CONTROL = "/etc/qmesh/control"  # as Settings.control
DEFAULT_ME = "mail.localhost"  # RFC 6761: a name that stays on this machine
# qmesh up listens on loopback only, where POP3 without TLS is acceptable (POP3-60); set
# pop3plaintext to 0, and give tlscert/tlskey, before listening anywhere else.
LOOPBACK_EXTRAS = {"pop3plaintext": "1\n"}


def ensure_control_dir(control: Path, me: str = DEFAULT_ME) -> bool:
    """Write safe defaults when ``control`` is missing or empty; ``True`` if it did."""
    if control.is_dir() and any(control.iterdir()):
        return False
    write_default_controls(control, me)
    for name, text in LOOPBACK_EXTRAS.items():
        path = control / name
        if not path.exists():
            path.write_text(text)
    return True


async def ensure_canonical_domain(env: Mapping[str, str]) -> str:
    """Create the directory record of the canonical local domain if it is missing."""
    controls = load_controls(Path(env["QMESH_CONTROL"]), env)
    canonical = controls.canonical_local_domain()
    if canonical is None:
        raise SystemExit("qmesh up: control/locals and control/me are both missing")
    async with nats_session(env, attempts=10) as nc:
        directory = await Directory.open(nc.jetstream())
        if await directory.get_domain(canonical) is None:
            await add_domain(
                directory,
                canonical,
                namespaces=Namespaces.build(canonical, controls.locals, controls.virtualdomains),
            )
    return canonical


async def provision_bus(env: Mapping[str, str]) -> dict[str, int]:
    """Streams, buckets and durable consumers as the admin user (qmesh.bus.provision), with
    the consumers' ``max_ack_pending`` read from the controls now; returns those limits."""
    controls = load_controls(Path(env.get("QMESH_CONTROL") or DEFAULT_CONTROL), env)
    replicas = int(env.get("QMESH_JS_REPLICAS") or 1)
    specs = consumer_specs(controls)
    async with nats_session(env, attempts=10) as nc:
        await provision(nc.jetstream(), specs, replicas)
    return {spec.durable: spec.max_ack_pending for spec in specs}


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


def provision_command(environ: Mapping[str, str]) -> int:
    """``qmesh provision``: the chart's setup Job runs it before adding domains."""
    try:
        limits = asyncio.run(provision_bus(environ))
    except Temporary as err:
        sys.stderr.write(f"qmesh provision: {err.text}\n")
        return EXIT_TEMPORARY
    pending = ", ".join(f"{name} {n}" for name, n in limits.items())
    sys.stdout.write(f"qmesh: streams, buckets and consumers ready (max_ack_pending: {pending})\n")
    return 0

"""admin's composition root: controls, NATS, the directory, sessions, and the pages (issue 14).

admin writes the directory and reads the queue, as the ``qmesh`` commands do, with a NATS user
of its own that may do only that plus its session bucket, the failed-login counts and the
lists' state (the list pages and one-click unsubscribe). Its pages and ``/healthz``,
``/readyz``, ``/metrics`` are one app on ``QMESH_HTTP_PORT`` (``qmesh up`` sets it from
``QMESH_ADMIN_PORT``; ARCHITECTURE 7).
"""

from __future__ import annotations

import os

from fastapi import FastAPI
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from qmesh.bus.connection import NatsConnection, NotConnected
from qmesh.contract import subjects
from qmesh.contract.errors import Temporary
from qmesh.control import Controls, ControlWatcher
from qmesh.control.derived import Derived, ignore_change
from qmesh.directory.authenticate import DirectoryAuthenticator
from qmesh.directory.namespaces import Namespaces
from qmesh.directory.store import Directory
from qmesh.limits import limits_from
from qmesh.limits.anvil import Anvil
from qmesh.limits.logins import Throttle
from qmesh.lists.admin import ListStores
from qmesh.lists.state import ListDirectory
from qmesh.runtime.service import Service
from qmesh.runtime.settings import Settings
from qmesh.web.sessions import Sessions
from services.admin.unsubscribe import one_click
from services.admin.web import Ports, routes

# its own NATS user, qmesh-webadmin: "admin" is the command-line tools' user, which may do more
NATS_ROLE = "webadmin"


def namespaces(c: Controls) -> Namespaces:
    return Namespaces.build(c.canonical_local_domain(), c.locals, c.virtualdomains)


async def build(settings: Settings) -> Service:
    watcher = ControlWatcher(settings.control, os.environ, on_change=ignore_change)
    conn = NatsConnection(
        settings,
        NATS_ROLE,
        kv_buckets=(
            subjects.KV_DIRECTORY,
            subjects.KV_WEBSESSIONS,
            subjects.KV_LIMITS,
            subjects.KV_LISTS,
        ),
        background=True,
    )

    def unavailable(err: Exception) -> Temporary:
        return Temporary("Unable to reach the directory (NATS).")

    def directory() -> Directory:
        try:
            return Directory(conn.kv(subjects.KV_DIRECTORY))
        except NotConnected as err:
            raise unavailable(err) from err

    def js() -> JetStreamContext:
        try:
            return conn.js
        except NotConnected as err:
            raise unavailable(err) from err

    def nc() -> NATS:
        try:
            return conn.nc
        except NotConnected as err:
            raise unavailable(err) from err

    def list_stores() -> ListStores:
        try:
            dkv = conn.kv(subjects.KV_DIRECTORY)
            return ListStores(Directory(dkv), ListDirectory(dkv), conn.kv(subjects.KV_LISTS))
        except NotConnected as err:
            raise unavailable(err) from err

    ns = Derived(watcher, namespaces)
    # failed logins counted with every listener's that takes a password (defences #12)
    anvil = Anvil(lambda: conn.kv(subjects.KV_LIMITS), "admin", Derived(watcher, limits_from))
    ports = Ports(
        directory=directory,
        js=js,
        nc=nc,
        sessions=Sessions(lambda: conn.kv(subjects.KV_WEBSESSIONS)),
        authenticator=DirectoryAuthenticator(directory, ns),
        throttle=Throttle(anvil, "admin"),
        namespaces=ns,
        controls=lambda: watcher.current,
        control_dir=settings.control,
        list_stores=list_stores,
    )
    pages, unsubscribe = routes(ports), one_click(lambda: conn.kv(subjects.KV_LISTS))

    def http(app: FastAPI) -> None:
        pages(app)
        unsubscribe(app)  # RFC 8058 one-click list unsubscribe (issue #15)

    return Service("admin", [watcher, conn, anvil], {"nats": conn.check}, http=http)

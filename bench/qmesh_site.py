"""``qmesh up`` set up for a benchmark: one domain with accounts that take any sender, the
embedded file store or SeaweedFS, and extra replicas of the queue services if asked."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from tests.e2e.cluster import Cluster, Replica, start_cluster, start_replica
from tests.servers import S3Server, start_seaweedfs

DOMAIN = "bench.test"
REPLICATED = ("send", "local", "remote")
CONTROLS = {
    "me": "mx.bench.test",
    "locals": f"{DOMAIN}\nmx.bench.test",
    "rcpthosts": f"{DOMAIN}\nmx.bench.test",
    "rcptcheck": "0",
    "maxconnip": "0",  # the load comes from one address
}


@dataclass
class Site:
    cluster: Cluster
    s3: S3Server | None = None
    replicas: list[Replica] = field(default_factory=list)

    def stop(self) -> None:
        for replica in self.replicas:
            replica.stop()
        self.cluster.stop()
        if self.s3:
            self.s3.stop()

    def delivered(self, account: str | None = None) -> int:
        """Messages in ``account``'s INBOX/new, or in every account's, now."""
        if self.s3:
            return count_s3(self.cluster.env, f"{DOMAIN}/{account}/" if account else f"{DOMAIN}/")
        root = self.cluster.data / "store" / "qmesh-mail" / DOMAIN
        accounts = [root / account] if account else list_dirs(root)
        return sum(count_files(a / "INBOX" / "new") for a in accounts)


def start_site(work: Path, accounts: list[str], store: str = "files", replicas: int = 1) -> Site:
    """``qmesh up`` on free ports with ``accounts`` at :data:`DOMAIN`; with ``replicas`` 2, a
    second send, local and remote run next to it under their own NATS users."""
    s3 = start_seaweedfs(work / "s3") if store == "s3" else None
    try:
        site = Site(start_cluster(work / "site", CONTROLS, s3=s3), s3)
    except BaseException:
        if s3:
            s3.stop()
        raise
    try:
        for account in accounts:
            r = site.cluster.cli("user", "add", f"{account}@{DOMAIN}", "--no-password")
            if r.returncode != 0:
                raise RuntimeError(f"qmesh user add {account}: {r.stderr}")
        for _ in range(replicas - 1):
            for service in REPLICATED:
                site.replicas.append(start_replica(site.cluster, service, work / "site"))
    except BaseException:
        site.stop()
        raise
    return site


def count_files(directory: Path) -> int:
    """Entries in ``directory`` (a Maildir's ``new``), 0 while it does not exist yet."""
    try:
        with os.scandir(directory) as entries:
            return sum(1 for e in entries if not e.name.startswith("."))
    except FileNotFoundError:
        return 0


def list_dirs(root: Path) -> list[Path]:
    return [p for p in root.iterdir() if p.is_dir()] if root.exists() else []


def count_s3(env: dict[str, str], prefix: str) -> int:
    """Objects under ``prefix`` in the cluster's mail bucket (messages in INBOX/new)."""
    from minio import Minio

    client = Minio(
        env["QMESH_S3_ENDPOINT"],
        env["QMESH_S3_ACCESS_KEY"],
        env["QMESH_S3_SECRET_KEY"],
        secure=False,
        region="us-east-1",
    )
    objects = client.list_objects(env["QMESH_MAIL_BUCKET"], prefix=prefix, recursive=True)
    return sum(1 for o in objects if "/INBOX/new/" in o.object_name)

"""pymap's configuration for one connection: capabilities, SASL and limits (#13).

What is advertised is what works: IMAP4rev1, LITERAL+, ID, SASL-IR, STARTTLS (plain port, TLS
configured), ``AUTH=PLAIN`` or LOGINDISABLED, and after login IDLE, UIDPLUS, MOVE, BINARY,
CHILDREN and APPENDLIMIT (pymap's command layer over our backend) and NAMESPACE, ENABLE,
QUOTA, SPECIAL-USE, LIST-EXTENDED (:mod:`services.imapd.extensions`), CONDSTORE
(:mod:`services.imapd.condstore`), QRESYNC, ESEARCH, SEARCHRES, UNSELECT, STATUS=SIZE and
LIST-STATUS (:mod:`services.imapd.rev2`).
Plaintext login is allowed only on TLS, from loopback (pymap's rule, the same as pop3d's
``pop3plaintext`` default for a local client), or everywhere when ``pop3plaintext`` is 1.
"""

from __future__ import annotations

import ssl
from argparse import Namespace
from collections.abc import Mapping, Sequence

from pymap.concurrent import Subsystem
from pymap.config import BackendCapability, IMAPConfig
from pysasl import SASLAuth

MAX_APPEND = 32 * 1024 * 1024  # APPENDLIMIT: one message, held in memory while it is stored
# services/imapd/extensions.py
LOGIN_EXTENSIONS = (
    b"NAMESPACE",
    b"ENABLE",
    b"QUOTA",
    b"QUOTA=RES-STORAGE",
    b"SPECIAL-USE",
    b"CONDSTORE",
    b"QRESYNC",
    b"ESEARCH",
    b"UNSELECT",
    b"STATUS=SIZE",
    b"LIST-STATUS",
    b"LIST-EXTENDED",
    b"SEARCHRES",
)
_NO_TLS = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)  # never handshaken: no STARTTLS


class ImapConfig(IMAPConfig):
    def __init__(
        self,
        *,
        hostname: str,
        tls: ssl.SSLContext | None,
        implicit_tls: bool,
        plaintext: bool,
        cpu: Subsystem,
    ) -> None:
        self._hostname = hostname
        self._plaintext = plaintext or implicit_tls
        super().__init__(
            Namespace(passlib_cfg=None, proxy_protocol=None),
            host=None,
            port=0,
            ssl_context=tls or _NO_TLS,
            tls_enabled=tls is not None and not implicit_tls,
            cpu_subsystem=cpu,
            reject_dnsbl=False,
            max_append_len=MAX_APPEND,
            bad_command_limit=10,
        )

    @property
    def backend_capability(self) -> BackendCapability:
        return BackendCapability(idle=True, object_id=False, multi_append=False)

    @property
    def initial_auth(self) -> SASLAuth:
        return self.tls_auth if self._plaintext else SASLAuth([])

    @property
    def tls_auth(self) -> SASLAuth:
        return SASLAuth.named([b"PLAIN"])

    @property
    def initial_capability(self) -> Sequence[bytes]:
        return [b"IMAP4rev2", *super().initial_capability, b"SASL-IR"]  # beside IMAP4rev1

    @property
    def login_capability(self) -> Sequence[bytes]:
        return [*super().login_capability, *LOGIN_EXTENSIONS]

    @property
    def greeting(self) -> bytes:
        return f"{self._hostname} IMAP4rev1 ready.".encode("ascii", "replace")

    @property
    def id_response(self) -> Mapping[bytes, bytes] | None:
        return {b"name": b"qmesh imapd"}

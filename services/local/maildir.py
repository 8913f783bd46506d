"""Writing deliveries into an account's mailbox objects (LOCAL-24, LOCAL-33, LOCAL-60, ARCH-11).

The object name is :func:`qmesh.store.maildir.unique_name` of (queue id, recipient index,
instruction index), so a job delivered again after a crash writes the same key instead of a
second copy. A copy that POP3 already moved to ``cur/`` is recognised by its unique name and
not written again; on a recipient's first attempt (the delivery ledger's word) there is none
to look for, and the listing is skipped. The store's ``put`` is whole-or-nothing, so the final
``new/`` key is written directly: a reader never sees a partial message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field

from qmesh.contract.errors import Temporary
from qmesh.contract.ids import QueueId
from qmesh.mailbox.quota import exceeds
from qmesh.store.base import BlobStore, StoreUnavailable
from qmesh.store.keys import mailbox_key
from qmesh.store.maildir import pop3_size, unique_name

MAILBOX_FULL = "Recipient's mailbox is full. (#4.2.2)"
MAILDIR_TIMEOUT = "Timeout on maildir delivery. (#4.3.0)"
MAILDIR_TROUBLE = "Temporary error on maildir delivery. (#4.3.0)"


def over_quota(quota: int | None, sizes: Mapping[str, int], key: str, size: int) -> bool:
    """LOCAL-33: would writing ``size`` bytes at ``key`` take the mailbox over ``quota``?

    ``sizes`` are the account's objects; an object at ``key`` already (a repeated delivery)
    is replaced, so it does not count twice.
    """
    if quota is None:
        return False
    return exceeds(quota, sum(s for k, s in sizes.items() if k != key), size)


@dataclass
class Mailbox:
    """One account's mailbox for the length of one delivery."""

    blobs: BlobStore
    domain: str
    account: str
    quota: int | None
    timeout: float = 300.0
    _sizes: dict[str, int] | None = field(default=None, init=False)

    async def _usage(self) -> dict[str, int]:
        if self._sizes is None:
            listing = await self.blobs.list(f"{self.domain}/{self.account}/")
            self._sizes = {info.key: info.size for info in listing}
        return self._sizes

    async def _moved(self, folder: str, name: str) -> bool:
        """Has POP3 already moved this very delivery to ``cur/`` (ARCH-11)?"""
        prefix = mailbox_key(self.domain, self.account, folder, "cur", name)
        return any(
            info.key == prefix or info.key.startswith(prefix + ":")
            for info in await self.blobs.list(prefix)
        )

    async def deliver(
        self,
        *,
        qid: QueueId,
        rcpt_index: int,
        instruction: int,
        folder: str,
        content: bytes,
        when: float,
        first: bool = False,
    ) -> str:
        """Write ``content`` as ``<folder>/new/<unique>``; return the key. Raise ``Temporary``.

        ``first``: no earlier attempt of this delivery exists, so POP3 cannot have moved it.
        """
        name = unique_name(qid, rcpt_index, instruction, content)
        key = mailbox_key(self.domain, self.account, folder, "new", name)
        try:
            async with asyncio.timeout(self.timeout):
                if self.quota is not None:
                    sizes = await self._usage()
                    if over_quota(self.quota, sizes, key, len(content)):
                        raise Temporary(MAILBOX_FULL)
                if not first and await self._moved(folder, name):
                    return key
                await self.blobs.put(
                    key,
                    content,
                    metadata={"size": str(pop3_size(content)), "delivered": f"{when:.3f}"},
                )
        except TimeoutError as err:
            raise Temporary(MAILDIR_TIMEOUT) from err
        except StoreUnavailable as err:
            raise Temporary(MAILDIR_TROUBLE) from err
        if self._sizes is not None:
            self._sizes[key] = len(content)
        return key

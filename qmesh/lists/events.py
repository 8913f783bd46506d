"""``qmesh.job.lists.v1``: one message for one list address, handed over by local."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from qmesh.contract.envelope import Address
from qmesh.contract.events import Event, Namespace, QueueIdField
from qmesh.directory.records import AccountName

Ext = Annotated[str, Field(max_length=1000)]


class ListJob(Event):
    """Local delivered ``recipient`` by handing the message to the list ``name`` of
    ``domain``; ``ext`` is what follows ``name-`` in the local part (``""`` for a post)."""

    kind: Literal["qmesh.job.lists.v1"] = "qmesh.job.lists.v1"
    id: QueueIdField
    rcpt_index: int = Field(ge=0)
    sender: Address
    recipient: Address
    domain: Namespace
    name: AccountName
    ext: Ext
    body: str = Field(max_length=200, pattern=r"^lists/in/[0-9a-f.]+$")
    handed_at: float

    def msg_id(self) -> str:
        return f"{self.id}.lists.{self.rcpt_index}"

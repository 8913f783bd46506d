"""`helm test`: one message to a local recipient is accepted, relaying elsewhere is refused.

Runs in the qmesh image against the in-cluster smtpd Service. Exit 0 only when both hold.
"""

# ruff: noqa: T201 - a command-line script: printing is its output

import email.policy
import os
import smtplib
import sys
from email.message import EmailMessage

host = os.environ["SMTP_HOST"]
port = int(os.environ.get("SMTP_PORT", "25"))
recipient = os.environ["TEST_RECIPIENT"]
foreign = os.environ["RELAY_RECIPIENT"]


def fail(why: str) -> None:
    print(f"FAIL: {why}", file=sys.stderr)
    sys.exit(1)


with smtplib.SMTP(host, port, timeout=60) as smtp:
    smtp.ehlo("helm-test.invalid")
    smtp.mail("")  # null sender: a failed delivery makes no bounce
    code, text = smtp.rcpt(foreign)
    if not 500 <= code < 600:
        fail(f"RCPT TO:<{foreign}> got {code} {text!r}; an outside client must not relay")
    print(f"ok: relay to {foreign} refused with {code}")
    smtp.rset()

    smtp.mail("")
    code, text = smtp.rcpt(recipient)
    if code != 250:
        fail(f"RCPT TO:<{recipient}> got {code} {text!r}")
    message = EmailMessage()
    message["From"] = "helm test <>"
    message["To"] = recipient
    message["Subject"] = "qmesh helm test"
    message.set_content("Sent by `helm test` to check that mail is accepted.\n")
    # SMTP line ends (CRLF): smtpd refuses a bare LF with 451 (SMTPD-51)
    code, text = smtp.data(message.as_bytes(policy=email.policy.SMTP))
    if code != 250:
        fail(f"DATA got {code} {text!r}")
    print(f"ok: message to {recipient} accepted: {text.decode(errors='replace')}")

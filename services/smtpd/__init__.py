"""smtpd: qmail-smtpd (and, later, qmail-qmtpd) — the door every message comes through."""

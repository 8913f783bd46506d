"""remote: qmail-rspawn, qmail-remote and qmail-tcpto — SMTP and QMTP out (spec section 10)."""

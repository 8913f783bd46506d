"""Where a recipient goes: qmail-send's rewriting rules (SEND-10..SEND-17), shared by send
(preprocessing) and smtpd (relay control by routing, SMTPD-43; recipient checks, SMTPD-45)."""

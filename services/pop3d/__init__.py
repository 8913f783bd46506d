"""pop3d: qmail-popup, checkpassword and qmail-pop3d — POP3 access to the inbox (spec 11)."""

"""imapd: IMAP4rev1 over the one mailbox model (#13)."""

"""local: qmail-lspawn and qmail-local over the virtual-user directory (spec section 9)."""

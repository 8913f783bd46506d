"""The one mailbox model: folders, UIDs, flags, MODSEQ and usage over the mail bucket (#13).

``local`` writes ``<domain>/<account>/<folder>/new/<unique>`` and nothing else; every reader
(imapd, webmail, and pop3d for its deletions) sees the same folder index, kept in the
JetStream KV bucket ``qmesh_mailbox`` and changed only by compare-and-set. See
docs/INTERNALS.md, "The mailbox model".
"""

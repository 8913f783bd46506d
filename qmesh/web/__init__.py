"""What admin's and webmail's pages share (issue 14): reading a form as untrusted input
(:mod:`.forms`), the security headers and cookies of every response (:mod:`.security`), and
browser sessions with their CSRF tokens in a KV bucket (:mod:`.sessions`)."""

"""HEALTHCHECK of the NATS image: JetStream answers on the monitoring port (NATS_HTTP_PORT)."""

import os
import sys
import urllib.request

port = os.environ.get("NATS_HTTP_PORT", "8222")
url = f"http://127.0.0.1:{port}/healthz?js-enabled-only=true"
try:
    with urllib.request.urlopen(url, timeout=3) as reply:
        sys.exit(0 if reply.status == 200 else 1)
except OSError:
    sys.exit(1)

"""Container HEALTHCHECK: liveness of the service in this container (GET /healthz).

Exit 0 when the service's event loop answers on QMESH_HTTP_PORT, 1 otherwise. Liveness only:
NATS or S3 being down does not make a container unhealthy (ARCHITECTURE section 7).
"""

import os
import sys
import urllib.request

port = os.environ.get("QMESH_HTTP_PORT", "8080")
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=3) as reply:
        sys.exit(0 if reply.status == 200 else 1)
except OSError:
    sys.exit(1)

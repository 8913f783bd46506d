"""HEALTHCHECK of the S3 image: the S3 port (S3_PORT) answers HTTP, even if only with 403."""

import os
import sys
import urllib.error
import urllib.request

port = os.environ.get("S3_PORT", "8333")
try:
    urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=3).close()
except urllib.error.HTTPError:
    pass  # 403 for an anonymous request: the gateway is up
except OSError:
    sys.exit(1)
sys.exit(0)

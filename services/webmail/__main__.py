from qmesh.runtime.service import run
from services.webmail.app import build

run("webmail", build)  # pages and health on QMESH_HTTP_PORT, as every service

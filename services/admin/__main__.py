from qmesh.runtime.service import run
from services.admin.app import build

run("admin", build)  # pages and health on QMESH_HTTP_PORT, as every service

from qmesh.runtime.service import run
from services.admin.app import build

run("admin", build, http_port=lambda s: s.admin_port)

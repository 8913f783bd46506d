from qmesh.runtime.service import run
from services.pop3d.app import build

run("pop3d", build)

from qmesh.runtime.service import run
from services.local.app import build

run("local", build)

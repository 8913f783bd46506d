from qmesh.runtime.service import run
from services.remote.app import build

run("remote", build)

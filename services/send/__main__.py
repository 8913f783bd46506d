from qmesh.runtime.service import run
from services.send.app import build

run("send", build)

from qmesh.runtime.service import run
from services.imapd.app import build

run("imapd", build)

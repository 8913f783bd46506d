from qmesh.runtime.service import run
from services.smtpd.app import build

run("smtpd", build)

from qmesh.runtime.service import run
from services.lists.app import build

run("lists", build)

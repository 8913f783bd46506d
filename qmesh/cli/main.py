"""The ``qmesh`` command line (ARCHITECTURE section 8)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from qmesh import __version__


def parser() -> argparse.ArgumentParser:
    from qmesh.cli.admin import add_admin_commands
    from qmesh.cli.dkim import add_dkim_commands
    from qmesh.cli.dnsrecords import add_dns_command
    from qmesh.cli.queueadmin import add_queue_commands

    p = argparse.ArgumentParser(prog="qmesh", description="qmail rebuilt as a cluster")
    p.add_argument("--version", action="version", version=f"qmesh {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="run the whole cluster on this machine")
    sub.add_parser(
        "provision",
        help="create or update the NATS streams, consumers and buckets (admin; the setup Job)",
    )
    run = sub.add_parser("run", help="run one service (container entrypoint)")
    run.add_argument("service", choices=("smtpd", "send", "local", "remote", "pop3d", "admin"))
    control = sub.add_parser("control", help="the control files")
    control_sub = control.add_subparsers(dest="action", required=True)
    control_sub.add_parser("check", help="read every control file and report values and errors")
    add_admin_commands(sub)
    add_queue_commands(sub)
    add_dkim_commands(sub)
    add_dns_command(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from qmesh.control import ControlError

    args = parser().parse_args(argv)
    try:
        return _dispatch(args)
    except ControlError as err:
        sys.stderr.write(f"qmesh: {err}\n")
        return 1


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "up":
        from qmesh.cli.up import main_up

        return main_up()
    if args.command == "provision":
        from qmesh.cli.bootstrap import provision_command

        return provision_command(os.environ)
    if args.command == "run":
        from qmesh.cli.run import run_service

        run_service(args.service)
        return 0
    if args.command == "control":
        from qmesh.cli.control import check_command

        return check_command(Path(os.environ.get("QMESH_CONTROL", "./control")), os.environ)
    if args.command == "dkim":
        from qmesh.cli.dkim import run_dkim

        return run_dkim(args, Path(os.environ.get("QMESH_CONTROL", "./control")))
    if args.command == "dns":
        from qmesh.cli.dnsrecords import run_dns

        return run_dns(args, Path(os.environ.get("QMESH_CONTROL", "./control")), os.environ)
    if args.command == "queue":
        from qmesh.cli.queueadmin import run_queue

        return asyncio.run(run_queue(args))
    from qmesh.cli.admin import run_admin

    return asyncio.run(run_admin(args))


if __name__ == "__main__":
    sys.exit(main())

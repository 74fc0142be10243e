"""The `vzstages` command: validate, plan, build, boot, cache."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Any, NoReturn

from . import __version__, events
from .commands import CONFIGURED, cmd_boot, cmd_build, cmd_cache, cmd_plan, cmd_validate
from .errors import ManifestError, VzError
from .evidence.commands import add_commands
from .evidence.writer import SIGNING_KEY_ENV
from .shell import add_command as add_shell
from .shell_on_error import SHELL_ON_ERROR_ENV

REFRESH_HELP = (
    "fetch the archive's state now (by default it is refreshed once per "
    "VZSTAGES_ARCHIVE_MAX_AGE, 24h, and stages that download rebuild when it changed)"
)
NO_PUBLISH_HELP = "build the image only: leave out the publish stage (upload and register)"
CACHE_HELP = "checkpoint cache folder (default: ./cache)"


def add_common(parser: argparse.ArgumentParser, default: object, url_optional: bool = False) -> None:
    """Options every command takes, before or after its name (`vzstages --cache D build M` and
    `vzstages build --cache D M`); `default` is SUPPRESS after the name, so it keeps the value
    given before it."""
    parser.add_argument("--cache", default="cache" if default is None else default, help=CACHE_HELP)
    remote = parser.add_argument_group("remote cache (per build host; also VZSTAGES_REMOTE...)")
    remote.add_argument(
        "--remote",
        default=default,
        nargs="?" if url_optional else None,
        const=CONFIGURED if url_optional else None,
        help="a shared cache: an S3 bucket, s3://BUCKET/PREFIX, or a shared folder, /PATH or "
        "file:///PATH (VZSTAGES_REMOTE)"
        + ("; ls and gc with --remote look after the remote" if url_optional else ""),
    )
    remote.add_argument(
        "--remote-mode",
        default=default,
        help="read (pull only), write (push only), readwrite (default) or off (VZSTAGES_REMOTE_MODE)",
    )
    remote.add_argument(
        "--remote-endpoint",
        default=default,
        help="endpoint URL of an S3-compatible store (VZSTAGES_REMOTE_ENDPOINT)",
    )
    remote.add_argument(
        "--remote-signing-key",
        default=default,
        help="OpenSSH ed25519 private key that signs what this host pushes (VZSTAGES_REMOTE_SIGNING_KEY)",
    )
    remote.add_argument(
        "--remote-trusted-keys",
        default=default,
        help="OpenSSH public keys, one a line: pull only what one of them signed "
        "(VZSTAGES_REMOTE_TRUSTED_KEYS)",
    )


def parser() -> argparse.ArgumentParser:
    top = Parser(prog="vzstages", description=__doc__)
    top.add_argument("--version", action="version", version=f"vzstages {__version__}")
    add_common(top, None)
    common = Parser(add_help=False)
    add_common(common, argparse.SUPPRESS)
    sub = top.add_subparsers(dest="command", required=True, parser_class=Parser)

    p = sub.add_parser("validate", help="check manifests (no root, no network)")
    p.add_argument("manifests", nargs="+")
    p.set_defaults(func=cmd_validate)
    add_plan(sub, common)
    add_build(sub, common)
    add_cache(sub)
    add_boot(sub)
    add_commands(sub)
    add_shell(sub)
    return top


def add_plan(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "plan", parents=[common], help="show each stage: cached, in the remote, or run and why"
    )
    p.add_argument("manifests", nargs="+", metavar="manifest")
    p.add_argument("-v", "--verbose", action="store_true", help="list each stage's tasks")
    p.add_argument("--refresh", action="store_true", help=REFRESH_HELP)
    p.add_argument("--no-publish", action="store_true", help=NO_PUBLISH_HELP)
    p.set_defaults(func=cmd_plan)


def add_build(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("build", parents=[common], help="build images (root)")
    p.add_argument(
        "targets",
        nargs="+",
        metavar="manifest|stage",
        help="manifests (or a matrix file listing them); with one manifest, stages to build up to",
    )
    p.add_argument("-n", "--jobs", type=int, default=1, help="build up to N independent stages at once")
    p.add_argument("-v", "--verbose", action="store_true", help="show every host command on the console")
    p.add_argument("--refresh", action="store_true", help=REFRESH_HELP)
    p.add_argument("--no-publish", action="store_true", help=NO_PUBLISH_HELP)
    p.add_argument(
        "--signing-key", help=f"OpenSSH ed25519 private key that signs the provenance ({SIGNING_KEY_ENV})"
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="replace an image that another manifest made (refused by default)",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="stdout is a stream of JSON events (stage started/finished, pulled, pushed, result), "
        "one a line; the last is the result",
    )
    p.add_argument(
        "--shell-on-error",
        action="store_true",
        help="when a stage fails: a shell in its tree before it is unwound (on a terminal), "
        f"else the `vzstages shell` line that opens the tree it started from ({SHELL_ON_ERROR_ENV}=1)",
    )
    p.set_defaults(func=cmd_build)


def add_cache(sub: Any) -> None:
    cache_common = Parser(add_help=False)
    add_common(cache_common, argparse.SUPPRESS, url_optional=True)
    cache_help = "list, collect, verify, push or pull cache entries"
    p = sub.add_parser("cache", parents=[cache_common], help=cache_help)
    p.add_argument("action", choices=["ls", "gc", "verify", "push", "pull"])
    p.add_argument(
        "targets",
        nargs="*",
        metavar="target",
        help="push: manifests whose entries to push (default: every local entry); "
        "pull: STAGE-KEY, a key prefix, or manifests",
    )
    p.add_argument(
        "--max-size", help="gc: delete least recently used leaves until the cache is this small (20G)"
    )
    p.add_argument("--max-age", help="gc: delete leaves unused for this long (7d, 12h)")
    p.add_argument("--dry-run", action="store_true", help="gc: only say what would be deleted")
    p.set_defaults(func=cmd_cache)


def add_boot(sub: Any) -> None:
    p = sub.add_parser("boot", help="boot an image in QEMU and report what its console proved")
    p.add_argument("image")
    p.add_argument("--manifest", help="take the hostname, architecture and firmware from this manifest")
    p.add_argument("--arch", choices=["amd64", "arm64"], help="the image's architecture (default amd64)")
    p.add_argument("--firmware", choices=["bios", "uefi"], help="boot with SeaBIOS or UEFI (default bios)")
    p.add_argument("--hostname", help="the hostname the login prompt must show")
    p.add_argument("--timeout", type=float, default=300, help="seconds before giving up (default 300)")
    p.add_argument("--disk", choices=["virtio", "nvme", "ide", "sata"], default="virtio")
    p.add_argument(
        "--persist", action="store_true", help="keep the guest's writes (default: a throw-away snapshot)"
    )
    p.add_argument("--console-log", help="write the serial console to this file")
    p.add_argument(
        "--interactive",
        action="store_true",
        help="attach the VM's serial console to this terminal (Ctrl-a x quits), as `mkosi qemu` does",
    )
    p.set_defaults(func=cmd_boot)


class Parser(argparse.ArgumentParser):
    """argparse that names the nearest command when one is misspelt (`vzstages biuld`)."""

    def error(self, message: str) -> NoReturn:
        import difflib
        import re

        wrong = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if wrong:
            choices = re.findall(r"'([^']*)'", wrong[2])
            near = difflib.get_close_matches(wrong[1], choices, n=1)
            if near:
                message += f"; did you mean {near[0]!r}?"
        super().error(message)


def parse(argv: list[str] | None) -> argparse.Namespace:
    """argparse, except that `cache push --remote URL a.yml` works: a `*` positional (targets) is
    filled before the options after it are seen, so words left over after them are its too."""
    top = parser()
    argv = sys.argv[1:] if argv is None else argv
    after: list[str] = []
    if "--" in argv:  # `vzstages shell M STAGE -- CMD...`: the command is not parsed
        at = argv.index("--")
        argv, after = argv[:at], argv[at + 1 :]
    args, extras = top.parse_known_args(argv)
    if after:
        if not hasattr(args, "argv"):
            top.error(f"unexpected arguments after --: {' '.join(after)}")
        args.argv = after
    if extras and hasattr(args, "targets") and not any(e.startswith("-") for e in extras):
        args.targets = [*args.targets, *extras]
    elif extras:
        top.error(f"unrecognized arguments: {' '.join(extras)}")
    return args


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `vzstages plan M | head` is not an error
    try:
        args = parse(argv)
    except KeyboardInterrupt:
        return 130
    try:
        return int(args.func(args))
    except ManifestError as exc:
        print("error: invalid manifest\n" + "\n".join(f"  {p}" for p in exc.problems), file=sys.stderr)
        if events.enabled():
            events.emit("error", message="invalid manifest", problems=exc.problems)
        return 2
    except VzError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if events.enabled():
            events.emit("error", message=str(exc))
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: say so in one line; VZSTAGES_DEBUG=1 shows the traceback
        if os.environ.get("VZSTAGES_DEBUG"):
            raise
        bug = f"{type(exc).__name__}: {exc}"
        print(f"error: internal error ({bug}); VZSTAGES_DEBUG=1 shows where", file=sys.stderr)
        return 70


if __name__ == "__main__":
    sys.exit(main())

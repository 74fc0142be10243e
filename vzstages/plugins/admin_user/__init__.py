"""admin_user: a user with sudo rights, logging in with a password and/or an SSH key."""

from __future__ import annotations

from ...manifest import Manifest, Problem, input_file_problems
from ...model.taskset import TaskSet
from .tasks import CreateAdminUser, InstallSudo


def validate(manifest: Manifest) -> list[Problem]:
    pubkey = manifest.get("plugins.admin_user.pubkey")
    if pubkey:
        where = ("plugins", "admin_user", "pubkey")
        problems = input_file_problems(manifest, where, "public key", max_bytes=64 * 1024)
        if problems:
            return problems
        path = manifest.relative_path(pubkey)
        with open(path, "rb") as f:
            if not f.read(16).startswith((b"ssh-", b"ecdsa-", b"sk-")):
                return [Problem(where, f"{path} is not an SSH public key")]
    if manifest.get("plugins.admin_user.username") == "root":
        return [Problem(("plugins", "admin_user", "username"), "use the root_password plugin for root")]
    return []


def resolve_tasks(taskset: TaskSet, manifest: Manifest) -> None:
    taskset.add(InstallSudo, CreateAdminUser)

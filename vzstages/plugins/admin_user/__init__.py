"""admin_user: a user with sudo rights, logging in with a password and/or an SSH key."""

from __future__ import annotations

from ...manifest import Manifest, Problem
from ...model.taskset import TaskSet
from .tasks import CreateAdminUser, InstallSudo


def validate(manifest: Manifest) -> list[Problem]:
    pubkey = manifest.get("plugins.admin_user.pubkey")
    if pubkey:
        path = manifest.relative_path(pubkey)
        if not path.is_file():
            return [Problem(("plugins", "admin_user", "pubkey"), f"no such public key file: {path}")]
        if not path.read_text(errors="replace").startswith(("ssh-", "ecdsa-", "sk-")):
            return [Problem(("plugins", "admin_user", "pubkey"), f"{path} is not an SSH public key")]
    if manifest.get("plugins.admin_user.username") == "root":
        return [Problem(("plugins", "admin_user", "username"), "use the root_password plugin for root")]
    return []


def resolve_tasks(taskset: TaskSet, manifest: Manifest) -> None:
    taskset.add(InstallSudo, CreateAdminUser)

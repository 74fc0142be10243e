from __future__ import annotations

from pathlib import Path

from ...common.accounts import set_password
from ...common.apt import AptInstall
from ...common.files import CopyFiles
from ...model.info import BuildInfo
from ...model.phases import Phase
from ...model.task import Task
from ...model.view import ManifestView


class InstallSudo(AptInstall):
    description = "Installing sudo"
    packages = ("sudo",)


class CreateAdminUser(Task):
    description = "Creating the admin user"
    phase = Phase.USER_MODIFICATION
    successors = (CopyFiles,)  # a copied file may be owned by this user
    reads = ("plugins.admin_user",)

    @classmethod
    def input_files(cls, manifest: ManifestView) -> dict[str, Path]:
        pubkey = manifest.get("plugins.admin_user.pubkey")
        return {pubkey: manifest.relative_path(pubkey)} if pubkey else {}

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        m = info.manifest
        user = m.get("plugins.admin_user.username")
        info.chroot(["useradd", "--create-home", "--shell", "/bin/bash", "--groups", "sudo", user])
        sudoers = info.target / "etc/sudoers.d" / f"90-vzstages-{user}"
        sudoers.write_text(f"{user} ALL=(ALL:ALL) NOPASSWD:ALL\n", 0o440)
        info.chroot(["visudo", "--check", "--file", f"/etc/sudoers.d/{sudoers.name}"])
        set_password(info, user, m.get("plugins.admin_user.password"), None)
        pubkey = m.get("plugins.admin_user.pubkey")
        if pubkey:
            ssh = info.target / "home" / user / ".ssh"
            ssh.mkdir(mode=0o700, exist_ok=True)
            key = m.relative_path(pubkey).read_text(errors="replace").strip()
            (ssh / "authorized_keys").write_text(key + "\n", 0o600)
            info.chroot(["chown", "-R", f"{user}:{user}", f"/home/{user}/.ssh"])

from __future__ import annotations

from ...model.info import BuildInfo
from ...model.phases import Phase
from ...model.task import Task


def set_password(info: BuildInfo, user: str, password: str | None, crypted: str | None) -> None:
    """chpasswd hashes a clear-text password with the image's own default method (yescrypt on
    bookworm); the password travels on stdin only, which the host layer does not log."""
    if crypted:
        info.chroot(["chpasswd", "--encrypted"], input=f"{user}:{crypted}\n", secret_input=True)
    elif password:
        info.chroot(["chpasswd"], input=f"{user}:{password}\n", secret_input=True)


class SetRootPassword(Task):
    description = "Setting the root password"
    phase = Phase.USER_MODIFICATION
    reads = ("plugins.root_password",)

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        settings = info.manifest.get("plugins.root_password")
        set_password(info, "root", settings.get("password"), settings.get("password-crypted"))

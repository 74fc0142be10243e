"""Passwords of the image's users, shared by every plugin that sets one."""

from __future__ import annotations

from ..model.info import BuildInfo


def set_password(info: BuildInfo, user: str, password: str | None, crypted: str | None) -> None:
    """chpasswd hashes a clear-text password with the image's own default method (yescrypt on
    bookworm); the password travels on stdin only, which the host layer does not log."""
    if crypted:
        info.chroot(["chpasswd", "--encrypted"], input=f"{user}:{crypted}\n", secret_input=True)
    elif password:
        info.chroot(["chpasswd"], input=f"{user}:{password}\n", secret_input=True)

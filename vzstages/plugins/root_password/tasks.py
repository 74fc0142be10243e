from __future__ import annotations

from ...common.accounts import set_password
from ...model.info import BuildInfo
from ...model.phases import Phase
from ...model.task import Task


class SetRootPassword(Task):
    description = "Setting the root password"
    phase = Phase.USER_MODIFICATION
    reads = ("plugins.root_password",)

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        settings = info.manifest.get("plugins.root_password")
        set_password(info, "root", settings.get("password"), settings.get("password-crypted"))

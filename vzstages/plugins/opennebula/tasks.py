from __future__ import annotations

import json

from ...model.info import BuildInfo
from ...model.phases import Phase
from ...model.task import Task
from ..cloud_init.tasks import InstallCloudInit

__all__ = ["ConfigureOpenNebula", "InstallCloudInit"]


class ConfigureOpenNebula(Task):
    description = "Reading OpenNebula's context with cloud-init"
    phase = Phase.SYSTEM_MODIFICATION

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        (info.target / "etc/cloud/cloud.cfg.d/10_vzstages_opennebula.cfg").write_text(
            "# vzstages opennebula plugin\n" + json.dumps({"datasource_list": ["OpenNebula", "None"]}) + "\n"
        )

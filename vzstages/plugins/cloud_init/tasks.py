from __future__ import annotations

from typing import Any

import yaml

from ...model.info import BuildInfo
from ...model.phases import Phase
from ...model.task import Task

CONFIG = "etc/cloud/cloud.cfg.d/01_vzstages.cfg"


def edit_module_lists(config: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """Remove disabled modules from every list; insert enabled ones at their position."""
    disabled = set(settings.get("disable_modules", []))
    for section in ("cloud_init_modules", "cloud_config_modules", "cloud_final_modules"):
        entries = [
            e for e in config.get(section) or [] if (e if isinstance(e, str) else e[0]) not in disabled
        ]
        for item in settings.get("enable_modules", {}).get(section, []):
            names = [e if isinstance(e, str) else e[0] for e in entries]
            if item["module"] not in names:
                entries.insert(min(item.get("position", len(entries)), len(entries)), item["module"])
        if section in config or entries:
            config[section] = entries
    return config


class ConfigureCloudInit(Task):
    description = "Configuring cloud-init"
    phase = Phase.SYSTEM_MODIFICATION
    reads = ("plugins.cloud_init",)

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        settings = info.manifest.get("plugins.cloud_init") or {}
        extra: dict[str, Any] = {}
        if settings.get("username"):
            user = {
                "name": settings["username"],
                "lock_passwd": True,
                "shell": "/bin/bash",
                "sudo": ["ALL=(ALL) NOPASSWD:ALL"],
                "groups": settings.get("groups", ["adm", "sudo"]),
            }
            extra["system_info"] = {"default_user": user}
        if settings.get("metadata_sources"):
            extra["datasource_list"] = [s.strip() for s in settings["metadata_sources"].split(",")] + ["None"]
        (info.target / CONFIG).write_text(
            "# vzstages cloud_init plugin\n" + yaml.safe_dump(extra, sort_keys=True)
        )
        if settings.get("disable_modules") or settings.get("enable_modules"):
            # The module lists live in cloud.cfg itself; a .d file would replace, not edit them.
            main = info.target / "etc/cloud/cloud.cfg"
            config = yaml.safe_load(main.read_text())
            main.write_text(yaml.safe_dump(edit_module_lists(config, settings), sort_keys=False))

from __future__ import annotations

from ...common.files import CopyFiles
from ...model.info import BuildInfo
from ...model.phases import Phase
from ...model.task import Task


class RunCommands(Task):
    description = "Running the manifest's commands"
    phase = Phase.USER_MODIFICATION
    predecessors = (CopyFiles,)
    reads = ("plugins.commands",)

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        root = str(info.image_root)
        for argv in info.manifest.get("plugins.commands.commands"):
            command = [arg.replace("{root}", root) for arg in argv]
            output = info.host.run(command).output.strip()
            info.say(f"{' '.join(argv)}" + (f": {output.splitlines()[-1]}" if output else ""))

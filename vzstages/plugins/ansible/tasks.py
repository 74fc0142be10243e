from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from ...common.apt import AptInstall
from ...common.files import CopyFiles
from ...errors import HostError
from ...model.info import BuildInfo
from ...model.phases import Phase
from ...model.task import InputTree, Task
from ...model.view import ManifestView


class InstallPython(AptInstall):
    description = "Installing what Ansible runs in the image (python3, python3-apt)"
    packages = ("python3", "python3-apt")


class RunPlaybook(Task):
    description = "Applying the Ansible playbook"
    phase = Phase.USER_MODIFICATION
    predecessors = (CopyFiles,)
    reads = ("plugins.ansible",)

    @classmethod
    def input_files(cls, manifest: ManifestView) -> Mapping[str, Path | InputTree]:
        playbook = manifest.relative_path(manifest.get("plugins.ansible.playbook"))
        # The build's workspace may sit in the playbook's folder: its logs change every build.
        return {"ansible playbook folder": InputTree(playbook.parent, exclude=(manifest.workspace,))}

    @classmethod
    def preflight(cls, manifest: ManifestView) -> None:
        if shutil.which("ansible-playbook") is None:
            raise HostError(
                "the ansible plugin runs ansible-playbook on the build host: apt-get install ansible"
            )

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        settings = info.manifest.get("plugins.ansible")
        playbook = info.manifest.relative_path(settings["playbook"])
        info.chroot(["true"])  # the chroot's /proc, /sys and /dev, which Ansible's modules need
        groups = settings.get("groups", []) + settings.get("hosts", [])
        with tempfile.TemporaryDirectory(prefix="vzstages-ansible-") as scratch:
            inventory = Path(scratch) / "inventory"
            connection = "ansible_connection=community.general.chroot"
            host = f"{info.image_root} {connection} ansible_python_interpreter=/usr/bin/python3"
            inventory.write_text("".join(f"[{g}]\n{host}\n" for g in ["vzstages", *groups]))
            argv = ["ansible-playbook", "-i", str(inventory), str(playbook)]
            extra = settings.get("extra_vars")
            if extra:
                argv += ["--extra-vars", extra if isinstance(extra, str) else json.dumps(extra)]
            if settings.get("tags"):
                argv += ["--tags=" + ",".join(settings["tags"])]
            if settings.get("skip_tags"):
                argv += ["--skip-tags=" + ",".join(settings["skip_tags"])]
            argv += settings.get("opt_flags", [])
            env = {
                "ANSIBLE_LOCAL_TEMP": f"{scratch}/tmp",
                "ANSIBLE_NOCOLOR": "1",
                "ANSIBLE_RETRY_FILES_ENABLED": "0",
                "ANSIBLE_HOST_KEY_CHECKING": "0",
                "ANSIBLE_CONFIG": str(playbook.parent / "ansible.cfg"),
            }
            info.host.run(argv, env=env)

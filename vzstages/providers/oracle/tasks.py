"""The oracle provider's tasks: virtio drivers for OCI's paravirtualized launch mode, the cloud
kernel, cloud-init with the Oracle datasource, and a QCOW2 that OCI imports as it is."""

from __future__ import annotations

import json
from typing import ClassVar

from ...common import bootable, image
from ...model.info import BuildInfo
from ...model.phases import Phase
from ...model.task import Task


class WriteInitramfsModules(bootable.WriteInitramfsModules):
    @classmethod
    def modules(cls, info: BuildInfo) -> list[str]:
        # Paravirtualized launch mode: the boot volume and the VNIC are virtio devices.
        return [*bootable.VIRTIO_DISKS, "virtio_net"]


class InstallKernel(bootable.InstallKernel):
    packages: ClassVar[dict[str, str]] = {
        "amd64": "linux-image-cloud-amd64",
        "arm64": "linux-image-cloud-arm64",
    }


class ConfigureOracle(Task):
    description = "Pointing cloud-init at OCI's metadata service"
    phase = Phase.SYSTEM_MODIFICATION

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        (info.target / "etc/cloud/cloud.cfg.d/10_vzstages_oracle.cfg").write_text(
            "# vzstages oracle provider\n" + json.dumps({"datasource_list": ["Oracle", "None"]}) + "\n"
        )


class ConvertImage(image.ConvertImage):
    default_format = "qcow2"

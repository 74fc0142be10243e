"""The azure provider's tasks: Hyper-V drivers, the cloud kernel, Debian's own Azure agent and
cloud-init, the Hyper-V PTP clock for chrony, and the fixed VHD."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

from ...common import bootable, image
from ...common.apt import AptInstall
from ...errors import VzError
from ...model.info import BuildInfo
from ...model.phases import Phase
from ...model.task import Task
from ...model.view import ManifestView
from . import vhd

# The serial console for the portal, from the first kernel message. Not bootstrap-vz's
# rootdelay=300: Debian's initramfs sleeps that long before it even looks for the root device
# (five minutes at every boot), and it waits for a device that is late on its own.
KERNEL_ARGS = ["earlyprintk=ttyS0,115200"]


class WriteInitramfsModules(bootable.WriteInitramfsModules):
    @classmethod
    def modules(cls, info: BuildInfo) -> list[str]:
        info.facts["kernel_args"] = KERNEL_ARGS
        # And virtio's disks, for QEMU (the build's boot test).
        return ["hv_vmbus", "hv_storvsc", "hv_netvsc", "hv_utils", *bootable.VIRTIO_DISKS]


class InstallKernel(bootable.InstallKernel):
    packages: ClassVar[dict[str, str]] = {
        "amd64": "linux-image-cloud-amd64",
        "arm64": "linux-image-cloud-arm64",
    }


class InstallAgents(AptInstall):
    description = "Installing the Azure agent, cloud-init, Hyper-V daemons and chrony"
    # waagent from Debian (bootstrap-vz fetched a tarball from GitHub): it handles extensions,
    # cloud-init provisions (users, keys, hostname) from the Azure datasource.
    packages = ("waagent", "cloud-init", "hyperv-daemons", "chrony")


WAAGENT_DEFAULTS = {
    # cloud-init provisions the machine; the agent runs extensions and reports health.
    "Provisioning.Agent": "cloud-init",
    "Provisioning.RegenerateSshHostKeyPair": "n",
    "ResourceDisk.Format": "n",
    "ResourceDisk.EnableSwap": "n",
}


class ConfigureAzure(Task):
    description = "Configuring the Azure agent, cloud-init's datasource and the Hyper-V clock"
    phase = Phase.SYSTEM_MODIFICATION
    reads = ("provider.waagent",)

    @classmethod
    def input_files(cls, manifest: ManifestView) -> dict[str, Path]:
        conf = manifest.get("provider.waagent.conf")
        return {conf: manifest.relative_path(conf)} if conf else {}

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        conf = info.manifest.get("provider.waagent.conf")
        target = info.target / "etc/waagent.conf"
        if conf:
            target.copy_from(info.manifest.relative_path(conf), 0o644)
        else:
            lines = target.read_text().splitlines() if target.is_file() else []
            done = set()
            for i, line in enumerate(lines):
                name = line.split("=", 1)[0].strip()
                if name in WAAGENT_DEFAULTS:
                    lines[i] = f"{name}={WAAGENT_DEFAULTS[name]}"
                    done.add(name)
            lines += [f"{k}={v}" for k, v in WAAGENT_DEFAULTS.items() if k not in done]
            target.write_text("\n".join(lines) + "\n")
        (info.target / "etc/cloud/cloud.cfg.d/10_vzstages_azure.cfg").write_text(
            "# vzstages azure provider\n" + json.dumps({"datasource_list": ["Azure"]}) + "\n"
        )
        # The host's clock through Hyper-V's PTP device, as Debian's Azure images keep time.
        chrony = info.target / "etc/chrony/conf.d"
        chrony.mkdir(parents=True, exist_ok=True)
        (chrony / "azure.conf").write_text(
            "refclock PHC /dev/ptp_hyperv poll 3 dpoll -2 offset 0 stratum 2\n"
        )


class ConvertImage(image.ConvertImage):
    default_format = "vhd"

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        super().run(info)
        output = Path(info.facts["image"])
        try:
            footer = vhd.read_footer(output)
        except vhd.VhdError as exc:
            raise VzError(f"the VHD is not one Azure takes: {exc}") from None
        checked = info.host.run(["qemu-img", "info", "-f", "vpc", "--output=json", str(output)])
        if json.loads(checked.output)["virtual-size"] != footer.current_size:
            raise VzError(f"{output.name}: qemu-img and the footer disagree on the virtual size")
        info.say(f"fixed VHD of {footer.current_size >> 20} MiB, footer checked")

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path
from xml.sax.saxutils import escape as xml_escape

from ...atomic import atomic_output
from ...common import image_ids
from ...common.accounts import set_password
from ...common.apt import AptInstall
from ...common.image import ConvertImage
from ...model.info import BuildInfo
from ...model.phases import Phase
from ...model.task import Task
from ...model.view import ManifestView

USER = "vagrant"
# VirtualBox's OS types; the box imports with the right defaults (64-bit, IO-APIC).
OS_TYPES = {"amd64": "Debian_64", "i386": "Debian"}


class InstallVagrantPackages(AptInstall):
    description = "Installing what Vagrant needs in the machine"
    # sudo for `vagrant ssh -c` and provisioners; nfs-common for NFS synced folders.
    packages = ("sudo", "nfs-common")


class CreateVagrantUser(Task):
    description = "Creating the vagrant user"
    phase = Phase.USER_MODIFICATION
    # bootstrap-vz set root's password to `vagrant` unless the root_password plugin sets one.
    reads = ("plugins.vagrant", "plugins.root_password")
    assets = ("assets/vagrant.pub",)

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        info.chroot(["useradd", "--create-home", "--shell", "/bin/bash", USER])
        # Vagrant's conventions, public by design: the box is for development machines.
        set_password(info, USER, USER, None)
        if not info.manifest.has("plugins.root_password"):
            set_password(info, "root", USER, None)
        sudoers = info.target / "etc/sudoers.d/vagrant"
        sudoers.write_text(f"{USER} ALL=(ALL) NOPASSWD:ALL\n", 0o440)
        info.chroot(["visudo", "--check", "--file", "/etc/sudoers.d/vagrant"])
        ssh = info.target / "home" / USER / ".ssh"
        ssh.mkdir(mode=0o700, exist_ok=True)
        # `vagrant up` logs in with its insecure key and swaps in a key of the machine's own.
        (ssh / "authorized_keys").copy_from(cls.asset_path("assets/vagrant.pub"), 0o600)
        info.chroot(["chown", "-R", f"{USER}:{USER}", f"/home/{USER}/.ssh"])


class PackageBox(Task):
    description = "Packaging the Vagrant box"
    phase = Phase.IMAGE_REGISTRATION
    predecessors = (ConvertImage,)
    reads = ("plugins.vagrant", "system.release", "system.architecture")
    assets = ("assets/box.ovf", "assets/Vagrantfile")

    @classmethod
    def outputs(cls, manifest: ManifestView, image_name: str) -> list[str]:
        return [f"{image_name}.box"]

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        assert info.source_image is not None
        box = info.workspace / cls.outputs(info.manifest, info.image_name)[0]
        folder = info.workspace / f".{box.name}.d"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        try:
            cls.fill(info, folder)
            info.say(f"packing {box}")
            with atomic_output(box) as partial, tarfile.open(partial, "w", format=tarfile.GNU_FORMAT) as tar:
                for path in sorted(folder.iterdir()):
                    tar.add(path, arcname=path.name, filter=_reproducible)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        info.facts["vagrant_box"] = str(box)

    @classmethod
    def fill(cls, info: BuildInfo, folder: Path) -> None:
        """The box's files: the OVF descriptor, its disk, the Vagrantfile and metadata.json."""
        assert info.source_image is not None
        disk = folder / "box-disk1.vmdk"
        # streamOptimized is the vmdk variant OVF packages carry: compressed and self-contained.
        convert = ["qemu-img", "convert", "-f", "qcow2", "-O", "vmdk", "-o", "subformat=streamOptimized"]
        info.host.run([*convert, str(info.source_image), str(disk)])
        image_ids.settle("vmdk", disk, disk.name, info.key, info.epoch)
        arch = info.manifest.get("system.architecture")
        ovf = cls.asset_path("assets/box.ovf").read_text()
        (folder / "box.ovf").write_text(
            ovf.format(
                disk_file=disk.name,
                capacity=info.layout.disk_size,
                # Text in an XML document: escaped, whatever the manifest's name holds.
                name=xml_escape(info.image_name, {'"': "&quot;"}),
                release=xml_escape(info.manifest.get("system.release")),
                architecture=arch,
                os_type=OS_TYPES.get(arch, "Debian_64"),
            )
        )
        vagrantfile = cls.asset_path("assets/Vagrantfile").read_text()
        (folder / "Vagrantfile").write_text(vagrantfile.replace("{mac}", mac_address(info.key)))
        (folder / "metadata.json").write_text(json.dumps({"provider": "virtualbox"}) + "\n")


def mac_address(key: str) -> str:
    """VirtualBox's OUI (08:00:27) and three bytes from the stage key: the same build, the same MAC."""
    return "080027" + key[:6].upper()


def _reproducible(member: tarfile.TarInfo) -> tarfile.TarInfo:
    member.uid = member.gid = 0
    member.uname = member.gname = "root"
    member.mtime = 0
    return member

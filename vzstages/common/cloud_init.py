"""cloud-init from the target release: the cloud_init and opennebula plugins and the providers
whose clouds configure instances through it install it with this one task."""

from __future__ import annotations

from .apt import AptInstall


class InstallCloudInit(AptInstall):
    description = "Installing cloud-init"
    packages = ("cloud-init",)

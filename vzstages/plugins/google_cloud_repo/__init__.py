"""google_cloud_repo: Google's apt repository in the image, its key a keyring file named by
`signed-by` (apt-key is gone in trixie).

vzstages writes no repository host into its code: the URL and key come from the manifest
(`repository`, `keyring`), else from the build host's own apt sources (a GCE build host has
Google's repository configured, with its keyring), as Debian's mirror does."""

from __future__ import annotations

from ...manifest import Manifest, Problem, input_file_problems
from ...model.taskset import TaskSet
from .tasks import AddGoogleRepository, InstallKeyringPackage, RemoveBootstrapKey


def validate(manifest: Manifest) -> list[Problem]:
    if manifest.get("plugins.google_cloud_repo.keyring"):
        return input_file_problems(manifest, ("plugins", "google_cloud_repo", "keyring"), "keyring", 1 << 20)
    return []


def resolve_tasks(taskset: TaskSet, manifest: Manifest) -> None:
    taskset.add(AddGoogleRepository)
    if manifest.get("plugins.google_cloud_repo.enable_keyring_repo"):
        taskset.add(InstallKeyringPackage)
        if manifest.get("plugins.google_cloud_repo.cleanup_bootstrap_key"):
            taskset.add(RemoveBootstrapKey)

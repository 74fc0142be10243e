"""ansible: apply a playbook to the image, with `ansible-playbook` on the build host and Ansible's
chroot connection (Debian's `ansible` package carries community.general, which has it). The
playbook and every file in its folder (roles, templates, vars) are inputs of the user stage."""

from __future__ import annotations

from ...manifest import Manifest, Problem, input_file_problems
from ...model.taskset import TaskSet
from .tasks import InstallPython, RunPlaybook


def validate(manifest: Manifest) -> list[Problem]:
    problems = input_file_problems(
        manifest, ("plugins", "ansible", "playbook"), "playbook", max_bytes=1 << 20
    )
    extra = manifest.get("plugins.ansible.extra_vars")
    if isinstance(extra, str) and extra.lstrip().startswith("@"):
        # ansible-playbook would read a host file that no stage key covers.
        problems.append(
            Problem(
                ("plugins", "ansible", "extra_vars"),
                "'@file' reads a host file outside the build's inputs: put the variables here, "
                "or in the playbook's folder (group_vars, vars_files)",
            )
        )
    return problems


def resolve_tasks(taskset: TaskSet, manifest: Manifest) -> None:
    taskset.add(InstallPython, RunPlaybook)

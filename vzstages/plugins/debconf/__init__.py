"""debconf: preseed answers before packages are installed (checked for syntax at validation)."""

from __future__ import annotations

from ...common.apt import InstallPackages, WriteAptSources
from ...manifest import Manifest, Problem
from ...model.info import BuildInfo
from ...model.phases import Phase
from ...model.task import Task
from ...model.taskset import TaskSet

TYPES = {"string", "boolean", "select", "multiselect", "note", "text", "password", "title", "error", "seen"}


def selection_problems(text: str) -> list[str]:
    problems = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split(None, 3)
        if len(fields) < 3:
            problems.append(f"line {number}: expected 'owner question type value', got {line.strip()!r}")
        elif fields[2] not in TYPES:
            problems.append(f"line {number}: unknown type {fields[2]!r} (one of: {', '.join(sorted(TYPES))})")
        elif fields[2] == "boolean" and (fields[3].strip() if len(fields) > 3 else "") not in (
            "true",
            "false",
        ):
            problems.append(f"line {number}: a boolean answer is true or false")
    return problems


def password_answers(text: str) -> list[str]:
    """The values of `password` questions: secrets, though the rest of the text is not."""
    found = []
    for line in text.splitlines():
        fields = line.split(None, 3)
        if len(fields) == 4 and fields[2] == "password" and fields[3].strip():
            found.append(fields[3].strip())
    return found


def validate(manifest: Manifest) -> list[Problem]:
    text = manifest.get("plugins.debconf")
    # Kept out of stage keys, records, plans and logs like any secret (manifest.secret_text).
    manifest.secret_text.update(password_answers(text))
    return [Problem(("plugins", "debconf"), p) for p in selection_problems(text)]


class SetDebconfSelections(Task):
    description = "Preseeding debconf"
    phase = Phase.PACKAGE_INSTALLATION
    predecessors = (WriteAptSources,)
    successors = (InstallPackages,)
    reads = ("plugins.debconf",)

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        text = info.manifest.get("plugins.debconf")
        secret = bool(password_answers(text))
        info.chroot(["debconf-set-selections", "--checkonly"], input=text, secret_input=secret)
        info.chroot(["debconf-set-selections"], input=text, secret_input=secret)


def resolve_tasks(taskset: TaskSet, manifest: Manifest) -> None:
    taskset.add(SetDebconfSelections)

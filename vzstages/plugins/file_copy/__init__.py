"""file_copy: files and folders from the build host into the image, with owner, group and mode.

The content of every source is part of the user stage's key: edit a file and only that stage
(and the ones after it) rebuild.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from ...common.files import CopyFiles
from ...manifest import Manifest, Problem, input_file_problems
from ...model.taskset import TaskSet


def validate(manifest: Manifest) -> list[Problem]:
    problems = []
    settings = manifest.get("plugins.file_copy") or {}
    for index, item in enumerate(settings.get("files", [])):
        where = ("plugins", "file_copy", "files", index)
        if ".." in PurePosixPath(item["src"]).parts:
            problems.append(
                Problem((*where, "src"), f"{item['src']}: a source path may not climb out with '..'")
            )
        else:
            problems += input_file_problems(manifest, (*where, "src"), "source", folder_ok=True)
        if ".." in PurePosixPath(item["dst"]).parts:
            problems.append(
                Problem((*where, "dst"), f"{item['dst']}: the destination must stay inside the image")
            )
    for index, item in enumerate(settings.get("mkdirs", [])):
        if ".." in PurePosixPath(item["dir"]).parts:
            problems.append(
                Problem(
                    ("plugins", "file_copy", "mkdirs", index, "dir"),
                    f"{item['dir']}: the folder must stay inside the image",
                )
            )
    return problems


def resolve_tasks(taskset: TaskSet, manifest: Manifest) -> None:
    taskset.add(CopyFiles)

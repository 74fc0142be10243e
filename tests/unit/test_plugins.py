"""Each plugin: its schema rejects bad settings naming the plugin and key, and changing a setting
changes exactly the stages it touches (from the first one it touches on)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from vzstages.cache.store import Store
from vzstages.compiler.plan import compile_plan
from vzstages.errors import ManifestError
from vzstages.manifest import load_manifest
from vzstages.model.view import ManifestView

from ..conftest import KVM_MANIFEST, REPO, TEST_KEY

STAGES = ["volume", "os", "packages", "system", "user", "cleanup", "image"]


def manifest_with(tmp_path: Path, plugins: dict, name: str = "m.yml") -> Path:
    data = yaml.safe_load(KVM_MANIFEST)
    data["plugins"] = plugins
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def keys(path: Path) -> dict[str, str]:
    return {
        s.name: s.key
        for s in compile_plan(load_manifest(path), Store(Path("/nonexistent")), secret_key=TEST_KEY).stages
    }


def first_changed(before: dict[str, str], after: dict[str, str]) -> str:
    changed = [s for s in STAGES if s in before and before[s] != after.get(s)]
    assert changed, "no stage changed"
    first = STAGES.index(changed[0])
    # Once a stage changes, every later one does: its parent key changed.
    assert changed == [s for s in STAGES[first:] if s in before], changed
    return changed[0]


@pytest.fixture
def pubkey(tmp_path: Path) -> Path:
    (tmp_path / "id.pub").write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBogus user@host\n")
    (tmp_path / "motd").write_text("hello\n")
    return tmp_path / "id.pub"


CASES = [
    ("root_password", {"password": "one"}, {"password": "two"}, "user"),
    ("admin_user", {"username": "ops"}, {"username": "dev"}, "user"),
    ("admin_user", {"username": "ops", "pubkey": "id.pub"}, {"username": "ops"}, "user"),
    (
        "file_copy",
        {"files": [{"src": "motd", "dst": "/etc/motd"}]},
        {"files": [{"src": "motd", "dst": "/etc/motd", "permissions": "0600"}]},
        "user",
    ),
    ("commands", {"commands": [["true"]]}, {"commands": [["sh", "-c", "echo > {root}/x"]]}, "user"),
    ("ntp", {"servers": ["a.example"]}, {"servers": ["b.example"]}, "system"),
    (
        "unattended_upgrades",
        {"update_interval": 1, "download_interval": 1, "upgrade_interval": 1},
        {"update_interval": 2, "download_interval": 1, "upgrade_interval": 1},
        "system",
    ),
    ("apt_proxy", {"address": "127.0.0.1", "port": 3142}, {"address": "127.0.0.1", "port": 3143}, "packages"),
    ("pip_install", {"packages": ["requests"]}, {"packages": ["requests==2.31.0"]}, "user"),
    (
        "debconf",
        "locales locales/default_environment_locale select en_US.UTF-8\n",
        "locales locales/default_environment_locale select C.UTF-8\n",
        "packages",
    ),
    ("minimize_size", {"dpkg": {"exclude_docs": True}}, {"dpkg": {"exclude_docs": False}}, "packages"),
    ("minimize_size", {"apt": {"autoclean": True}}, {"apt": {"autoclean": False}}, "cleanup"),
    ("minimize_size", {"shrink": True}, {"shrink": "qemu-img"}, "image"),
    ("cloud_init", {"username": "admin"}, {"username": "debian"}, "system"),
    (
        "cloud_init",
        {"metadata_sources": "Ec2"},
        {"metadata_sources": "Ec2", "disable_modules": ["ntp"]},
        "system",
    ),
    ("expand_root", {}, {"filesystem_type": "ext4"}, "system"),
]


@pytest.mark.parametrize(
    ("plugin", "before", "after", "stage"), CASES, ids=[f"{c[0]}-{c[3]}-{i}" for i, c in enumerate(CASES)]
)
def test_a_setting_changes_exactly_its_stages(tmp_path, pubkey, plugin, before, after, stage):
    one = keys(manifest_with(tmp_path, {plugin: before}, "one.yml"))
    two = keys(manifest_with(tmp_path, {plugin: after}, "two.yml"))
    assert first_changed(one, two) == stage


def test_file_copy_source_content_changes_the_user_stage(tmp_path, pubkey):
    path = manifest_with(tmp_path, {"file_copy": {"files": [{"src": "motd", "dst": "/etc/motd"}]}})
    before = keys(path)
    (tmp_path / "motd").write_text("changed\n")
    assert first_changed(before, keys(path)) == "user"


def test_secrets_never_reach_stage_inputs(tmp_path):
    plan = compile_plan(
        load_manifest(manifest_with(tmp_path, {"root_password": {"password": "hunter2"}})),
        Store(tmp_path / "cache"),
    )
    assert "hunter2" not in repr([s.inputs for s in plan.stages])


BAD = [
    ("root_password", {"password": "a", "password-crypted": "$6$x$y"}, "set exactly one of password"),
    ("admin_user", {"user": "ops"}, "plugins.admin_user: missing required key 'username'"),
    ("admin_user", {"username": "Bad User"}, "plugins.admin_user.username: 'Bad User' is not valid"),
    ("admin_user", {"username": "ops", "pubkey": "missing.pub"}, "missing.pub: no such file or directory"),
    ("file_copy", {"files": [{"src": "../etc/passwd", "dst": "/x"}]}, "may not climb out with '..'"),
    ("file_copy", {"files": [{"src": "motd", "dst": "/etc/../../x"}]}, "must stay inside the image"),
    ("file_copy", {"files": [{"src": "motd", "dst": "relative"}]}, "plugins.file_copy.files[0].dst"),
    ("file_copy", {"files": [{"src": "nope", "dst": "/x"}]}, "nope: no such file or directory"),
    ("commands", {"commands": "rm -rf /"}, "plugins.commands.commands: expected a list"),
    ("ntp", {"servers": []}, "plugins.ntp.servers: must not be empty"),
    ("apt_proxy", {"address": "proxy", "port": 99999}, "plugins.apt_proxy.port"),
    ("debconf", "locales locales/x maybe yes\n", "line 1: unknown type 'maybe'"),
    ("minimize_size", {"shrink": "gzip"}, "plugins.minimize_size.shrink"),
    ("unattended_upgrades", {"update_interval": 1}, "missing required key 'download_interval'"),
    ("expand_root", {"root_device": "/dev/xvda"}, "give root_device and root_partition together"),
    ("expand_root", {"filesystem_type": "xfs"}, "does not match the root filesystem (ext4)"),
    ("cloud_init", {"metadata_sources": "Ec2;rm -rf"}, "plugins.cloud_init.metadata_sources"),
    ("vagrant", {}, "Vagrant boxes are built for the virtualbox provider, not kvm"),
    ("vagrant", {"box_name": "x"}, "plugins.vagrant.box_name: unknown key 'box_name'"),
    # Accepted once, then failing at build: refused before any work now.
    ("tmpfs_workspace", {"size": "8G\n"}, "a size such as 8G"),
    ("tmpfs_workspace", {"size": "0"}, "a size such as 8G"),
    ("tmpfs_workspace", {"size": "0%"}, "a size such as 8G"),
    ("tmpfs_workspace", {"size": "1"}, "too small for a stage's overlay"),
    ("docker_daemon", {"docker_opts": "--label 'unclosed"}, "cannot be split into options"),
    (
        "expand_root",
        {"root_device": "/dev/xvda", "root_partition": 10**30},
        "plugins.expand_root.root_partition",
    ),
]


@pytest.mark.parametrize(
    ("plugin", "settings", "message"), BAD, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)]
)
def test_bad_settings_are_rejected_naming_plugin_and_key(tmp_path, pubkey, plugin, settings, message):
    path = manifest_with(tmp_path, {plugin: settings})
    with pytest.raises(ManifestError) as caught:
        load_manifest(path)
    assert any(message in p and p.startswith(f"{path}:") for p in caught.value.problems), (
        caught.value.problems
    )
    assert any(f"plugins.{plugin}" in p for p in caught.value.problems)


def test_prebootstrapped_is_accepted_with_a_note(tmp_path):
    manifest = load_manifest(manifest_with(tmp_path, {"prebootstrapped": {"image": "old.raw"}}))
    assert any("reuses the os stage" in w for w in manifest.warnings)


def test_cloud_init_module_lists_are_edited_in_place():
    from vzstages.plugins.cloud_init.tasks import edit_module_lists

    config = {
        "cloud_init_modules": ["seed_random", "bootcmd", ["write-files", "once"]],
        "cloud_config_modules": ["ntp", "locale"],
    }
    settings = {
        "disable_modules": ["ntp", "write-files"],
        "enable_modules": {
            "cloud_init_modules": [{"module": "growpart", "position": 1}],
            "cloud_final_modules": [{"module": "phone-home"}],
        },
    }
    assert edit_module_lists(config, settings) == {
        "cloud_init_modules": ["seed_random", "growpart", "bootcmd"],
        "cloud_config_modules": ["locale"],
        "cloud_final_modules": ["phone-home"],
    }


def test_ec2_grows_root_by_default_and_cloud_init_edits_keep_earlier_stages(tmp_path):
    data = yaml.safe_load(KVM_MANIFEST)
    data["provider"] = {"name": "ec2", "virtualization": "hvm"}
    data["volume"]["backing"] = "ebs"
    data["plugins"] = {"cloud_init": {"username": "admin", "metadata_sources": "Ec2"}}
    one = tmp_path / "one.yml"
    one.write_text(yaml.safe_dump(data))
    plan = compile_plan(load_manifest(one), Store(Path("/nonexistent")), secret_key=TEST_KEY)
    names = [t.name() for s in plan.stages for t in s.tasks]
    assert "plugins.expand_root.tasks.InstallExpandRoot" in names
    data["plugins"]["cloud_init"]["username"] = "debian"
    data["plugins"]["expand_root"] = {"filesystem_type": "ext4"}
    two = tmp_path / "two.yml"
    two.write_text(yaml.safe_dump(data))
    assert first_changed(keys(one), keys(two)) == "system"  # os and packages are reused


def vagrant_manifest(tmp_path: Path, name: str, **plugins: dict) -> Path:
    data = yaml.safe_load(KVM_MANIFEST)
    data["provider"] = {"name": "virtualbox"}
    data["volume"]["backing"] = "vmdk"
    data["plugins"] = plugins
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_vagrant_adds_a_box_beside_the_disk_and_its_settings_touch_their_stages(tmp_path):
    plain = keys(vagrant_manifest(tmp_path, "plain.yml"))
    boxed_path = vagrant_manifest(tmp_path, "boxed.yml", vagrant={})
    assert first_changed(plain, keys(boxed_path)) == "packages"  # sudo, nfs-common
    plan = compile_plan(load_manifest(boxed_path), Store(Path("/nonexistent")), secret_key=TEST_KEY)
    assert [p.suffix for p in plan.stage("image").outputs] == [".vmdk", ".box"]
    with_root = keys(vagrant_manifest(tmp_path, "root.yml", vagrant={}, root_password={"password": "x"}))
    assert first_changed(keys(boxed_path), with_root) == "user"


def test_vagrant_box_mac_is_virtualbox_oui_and_stable():
    from vzstages.plugins.vagrant.tasks import mac_address

    assert mac_address("abcdef0123") == "080027ABCDEF" == mac_address("abcdef9999")


def ansible_manifest(tmp_path: Path, **settings) -> Path:
    folder = tmp_path / "playbooks"
    folder.mkdir(exist_ok=True)
    (folder / "site.yml").write_text("- hosts: all\n  tasks: []\n")
    data = yaml.safe_load(KVM_MANIFEST)
    data["plugins"] = {"ansible": {"playbook": "playbooks/site.yml", **settings}}
    data["bootstrapper"] = {"workspace": "playbooks/build"}  # the workspace inside the folder
    path = tmp_path / "m.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_ansibles_folder_leaves_the_workspace_out_and_counts_a_socket_by_name(tmp_path):
    import socket

    path = ansible_manifest(tmp_path)
    before = keys(path)
    logs = tmp_path / "playbooks" / "build" / "logs"
    logs.mkdir(parents=True)
    (logs / "m-1.log").write_text("a build's log")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(tmp_path / "playbooks" / "agent.sock"))
        assert keys(path) == keys(path)
        with_socket = keys(path)
    assert before["user"] != with_socket["user"]  # a new entry in the folder, by name
    (tmp_path / "playbooks" / "agent.sock").unlink()
    assert keys(path) == before  # the workspace's logs are no input
    (tmp_path / "playbooks" / "site.yml").write_text("- hosts: all\n  tasks: [{debug: {msg: hi}}]\n")
    assert first_changed(before, keys(path)) == "user"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"tags": ["--list-hosts"]}, "plugins.ansible.tags[0]"),
        ({"skip_tags": ["-x"]}, "plugins.ansible.skip_tags[0]"),
        ({"extra_vars": "@/etc/shadow"}, "'@file' reads a host file"),
    ],
)
def test_ansible_settings_that_would_do_something_else_are_refused(tmp_path, settings, message):
    with pytest.raises(ManifestError) as caught:
        load_manifest(ansible_manifest(tmp_path, **settings))
    assert any(message in p for p in caught.value.problems), caught.value.problems


def test_ansible_extra_vars_are_secret(tmp_path):
    plan = compile_plan(
        load_manifest(ansible_manifest(tmp_path, extra_vars={"db_password": "s3cr3t-value"})),
        Store(tmp_path / "cache"),
    )
    assert "s3cr3t-value" not in repr([s.inputs for s in plan.stages])


def test_puppet_assets_must_be_a_folder(tmp_path):
    (tmp_path / "assets").write_text("a plain file, not a tree to copy")
    with pytest.raises(ManifestError) as caught:
        load_manifest(manifest_with(tmp_path, {"puppet": {"assets": "assets"}}))
    assert any("assets" in p and "is not a folder" in p for p in caught.value.problems), caught.value.problems


def test_google_cloud_repos_keyring_is_read_beside_the_manifest(tmp_path, monkeypatch):
    """The keyring validate checked (beside the manifest) is the one the build reads, whatever
    the current folder."""
    from vzstages.common.archive import Source
    from vzstages.model.view import ManifestView
    from vzstages.plugins.google_cloud_repo import tasks

    (tmp_path / "google.gpg").write_bytes(b"a keyring")
    manifest = load_manifest(manifest_with(tmp_path, {"google_cloud_repo": {"keyring": "google.gpg"}}))
    source = Source("http://127.0.0.1/google", ("google-compute-engine-bookworm-stable",), ("main",))
    monkeypatch.setattr(tasks, "host_sources", lambda: [source])
    monkeypatch.setattr(tasks, "_signed_by", lambda uri: Path("/usr/share/keyrings/host.gpg"))
    monkeypatch.chdir("/")
    view = ManifestView(manifest, "t", ("plugins.google_cloud_repo",))
    assert tasks.repository(view).keyring == tmp_path / "google.gpg"


def test_puppet_takes_forge_modules_as_bootstrap_vz_did(tmp_path):
    """[name, version] installs from the Forge (the one `forge` names, else puppet's own), with
    its dependencies; a local tarball installs as it is. A name without a version is accepted
    with a warning: its key cannot follow what the Forge serves."""
    from vzstages.plugins.puppet.tasks import ApplyPuppet

    (tmp_path / "mod.tar.gz").write_bytes(b"a module")
    settings = {
        "install_modules": [["puppetlabs-stdlib", "9.4.1"], "mod.tar.gz", ["puppetlabs-apt"]],
        "forge": "http://forge.example:8080",
    }
    manifest = load_manifest(manifest_with(tmp_path, {"puppet": settings}))
    assert any("puppetlabs-apt without a version" in w for w in manifest.warnings), manifest.warnings
    view = ManifestView(manifest, ApplyPuppet.name(), ApplyPuppet.reads)
    assert list(ApplyPuppet.input_files(view)) == ["mod.tar.gz"]
    for bad, message in (
        ({"install_modules": [["Stdlib", "1.0.0"]]}, "not a Forge module name"),
        ({"install_modules": [["puppetlabs-stdlib", "latest"]]}, "not a module version"),
        ({"install_modules": [["puppetlabs-stdlib", "1.0.0", "x"]]}, "install_modules"),
        ({"install_modules": ["mod.tar.gz"], "forge": "ftp://forge.example"}, "not an http(s) URL"),
    ):
        with pytest.raises(ManifestError) as caught:
            load_manifest(manifest_with(tmp_path, {"puppet": bad}))
        assert any(message in p for p in caught.value.problems), caught.value.problems


def test_puppet_installs_each_module_from_where_it_comes(fake_stage, tmp_path):
    from vzstages.plugins.puppet.tasks import ApplyPuppet

    (tmp_path / "mod.tar.gz").write_bytes(b"a module")
    (tmp_path / "root/tmp").mkdir(parents=True, exist_ok=True)
    plugin = (
        "plugins:\n  puppet:\n    install_modules:\n      - [puppetlabs-stdlib, 9.4.1]\n"
        f"      - {tmp_path / 'mod.tar.gz'}\n    forge: http://forge.example:8080\n"
    )
    stage = fake_stage(KVM_MANIFEST + plugin, stage="user")
    stage.run(ApplyPuppet)
    installs = [c for c in stage.host.commands if c[:3] == ["puppet", "module", "install"]]
    assert installs == [
        [
            "puppet",
            "module",
            "install",
            "puppetlabs-stdlib",
            "--version",
            "9.4.1",
            "--module_repository",
            "http://forge.example:8080",
        ],
        ["puppet", "module", "install", "--ignore-dependencies", "/tmp/vzstages-puppet/module-1.tar.gz"],
    ]


def test_users_exist_before_files_are_copied_with_their_owners():
    """kvm-plugins.yml copies files owned by admin_user's `ops`: the user is made first. (This
    held only by the tasks' names until CopyFiles moved to common/ and sorted before it.)"""
    plan = compile_plan(
        load_manifest(REPO / "manifests/kvm-plugins.yml"), Store(Path("/nonexistent")), secret_key=TEST_KEY
    )
    names = [t.name() for t in plan.stage("user").tasks]
    assert names.index("plugins.admin_user.tasks.CreateAdminUser") < names.index("common.files.CopyFiles"), (
        names
    )

"""Boot an image in QEMU from its own bootloader and report only what the console proved.

The VM gets the disk (virtio by default), user networking with the guest's SSH port forwarded to
a loopback port, and its serial console on a pipe. Facts are proven by what appears on the serial
console and by the SSH server answering through the forwarded port, which is only reachable
once the guest holds the address QEMU's DHCP server handed out.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import re
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import VzError
from .host import Host, stop_process_group

if TYPE_CHECKING:
    import subprocess


@dataclass
class BootReport:
    facts: dict[str, str] = field(default_factory=dict)  # fact -> the evidence seen
    missing: list[str] = field(default_factory=list)
    failure: str | None = None
    console: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.missing and self.failure is None


# Each fact and the console line that proves it.
CONSOLE_FACTS: list[tuple[str, re.Pattern[str]]] = [
    ("kernel", re.compile(r"Linux version \S+")),
    ("systemd", re.compile(r"Welcome to .*Debian[^!\n]*")),
    # systemd truncates unit names on an 80-column console: "Finished systemd-remount-f…".
    ("root remounted read-write", re.compile(r"Finished systemd-remount-f\S*")),
]
# The image ships no SSH host keys, so an answering sshd also proves that first boot could
# write them to /etc; and the forwarded port reaches only the address QEMU's DHCP handed out.
SSH_FACT = "sshd answers on the DHCP address (host keys made at first boot)"
FATAL = re.compile(
    r"grub rescue>|grub> |Kernel panic|Give root password for maintenance|"
    r"emergency mode|ALERT! .* does not exist|Gave up waiting for root"
)


def _clean(console: str) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", console).replace("\r", "")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ssh_banner(port: int, timeout: float = 3) -> str | None:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
            conn.settimeout(timeout)
            data = conn.recv(256).decode(errors="replace").strip()
            return data if data.startswith("SSH-") else None
    except OSError:
        return None


# UEFI firmware for QEMU (Debian's ovmf and qemu-efi-aarch64): code read-only, variables copied.
UEFI_FIRMWARE = {
    "amd64": (Path("/usr/share/OVMF/OVMF_CODE_4M.fd"), Path("/usr/share/OVMF/OVMF_VARS_4M.fd"), "ovmf"),
    "arm64": (
        Path("/usr/share/AAVMF/AAVMF_CODE.fd"),
        Path("/usr/share/AAVMF/AAVMF_VARS.fd"),
        "qemu-efi-aarch64",
    ),
}
QEMU_SYSTEM = {
    "amd64": ("qemu-system-x86_64", "qemu-system-x86"),
    "arm64": ("qemu-system-aarch64", "qemu-system-arm"),
}


def machine_arguments(architecture: str, firmware: str, vars_copy: Path) -> list[str]:
    """The machine, CPU and firmware: a PC (SeaBIOS or OVMF) or QEMU's arm64 virt board (AAVMF).
    `vars_copy` receives the UEFI variable store, which the firmware writes to."""
    kvm = os.environ.get("VZSTAGES_KVM") == "1" and architecture == "amd64"
    # One vCPU under TCG: with two, multi-threaded TCG races the kernel's live code patching
    # (seen here: an int3 oops in hrtimer code while booting trixie's 6.12 kernel).
    accel, cpus = ("kvm:tcg", "2") if kvm else ("tcg", "1")
    if architecture == "arm64":
        # cortex-a72 rather than max: emulating pointer authentication slows TCG down a lot.
        args = ["-machine", f"virt,accel={accel}", "-cpu", "cortex-a72", "-smp", cpus]
    else:
        args = ["-machine", f"pc,accel={accel}", "-smp", cpus]
    if firmware == "uefi":
        code, variables, package = UEFI_FIRMWARE[architecture]
        if not code.exists():
            raise VzError(f"{code} is missing: UEFI boots need it (apt-get install {package})")
        shutil.copyfile(variables, vars_copy)
        args += [
            "-drive",
            f"if=pflash,format=raw,unit=0,readonly=on,file={code}",
            "-drive",
            f"if=pflash,format=raw,unit=1,file={vars_copy}",
        ]
    return args


def qemu_command(
    image: Path,
    port: int,
    disk_interface: str,
    snapshot: bool,
    memory: int,
    machine: list[str],
    architecture: str = "amd64",
    attached: bool = False,
) -> list[str]:
    """`attached`: the console is a person's terminal, with QEMU's monitor multiplexed on it
    (Ctrl-a x quits, Ctrl-a c gives the monitor); else the serial console alone, for _boot to read."""
    binary, package = QEMU_SYSTEM[architecture]
    qemu = shutil.which(binary)
    if qemu is None:
        raise VzError(f"{binary} is missing (apt-get install {package})")
    if architecture != "amd64" and disk_interface in ("ide", "sata"):
        raise VzError(f"QEMU's {architecture} machine has no {disk_interface} disks; use virtio or nvme")
    fmt = (
        "qcow2"
        if image.suffix == ".qcow2"
        else {"vdi": "vdi", "vmdk": "vmdk", "vhd": "vpc"}.get(image.suffix[1:], "raw")
    )
    drive = f"file={image},format={fmt},if=none,id=disk0,snapshot={'on' if snapshot else 'off'}"
    device = {
        "virtio": ["-device", "virtio-blk-pci,drive=disk0"],
        "nvme": ["-device", "nvme,drive=disk0,serial=vzstages0"],
        "ide": ["-device", "ide-hd,drive=disk0"],
        "sata": ["-device", "ahci,id=ahci0", "-device", "ide-hd,drive=disk0,bus=ahci0.0"],
    }[disk_interface]
    return [
        qemu,
        *machine,
        "-m",
        str(memory),
        "-display",
        "none",
        *(["-serial", "mon:stdio"] if attached else ["-monitor", "none", "-serial", "stdio"]),
        "-no-reboot",
        "-drive",
        drive,
        *device,
        "-netdev",
        f"user,id=net0,hostfwd=tcp:127.0.0.1:{port}-:22",
        "-device",
        "virtio-net-pci,netdev=net0",
    ]


def boot(
    image: Path,
    *,
    hostname: str | None = None,
    timeout: float = 300,
    disk_interface: str = "virtio",
    snapshot: bool = True,
    memory: int = 1024,
    console_log: Path | None = None,
    until: list[re.Pattern[str]] | None = None,
    architecture: str = "amd64",
    firmware: str = "bios",
    cdrom: Path | None = None,
) -> BootReport:
    """Boot `image` and gather the facts; the VM is always stopped before this returns.
    `cdrom`: an ISO in the machine's CD-ROM drive (OpenNebula's context, cloud-init's NoCloud)."""
    with _machine(image, disk_interface, snapshot, memory, architecture, firmware) as (command, port):
        if cdrom is not None:
            command += [
                "-drive",
                f"file={cdrom},media=cdrom,readonly=on,if={'ide' if architecture == 'amd64' else 'virtio'}",
            ]
        return _boot(command, port, hostname, timeout, console_log, until)


def attach(
    image: Path,
    *,
    disk_interface: str = "virtio",
    snapshot: bool = True,
    memory: int = 1024,
    architecture: str = "amd64",
    firmware: str = "bios",
) -> int:
    """Boot `image` with its serial console on this terminal (`mkosi qemu`); returns QEMU's exit
    status when the user quits (Ctrl-a x) or the guest powers off."""
    with _machine(image, disk_interface, snapshot, memory, architecture, firmware, attached=True) as (
        command,
        port,
    ):
        print(f"{image.name}: console attached (Ctrl-a x quits); ssh -p {port} root@127.0.0.1")
        return Host().attached(command)


@contextlib.contextmanager
def _machine(
    image: Path,
    disk_interface: str,
    snapshot: bool,
    memory: int,
    architecture: str,
    firmware: str,
    attached: bool = False,
) -> Iterator[tuple[list[str], int]]:
    """The QEMU command for `image` and the host port its sshd is forwarded to; the firmware's
    variable store lives in a scratch folder for as long as the block runs."""
    if not image.exists():
        raise VzError(f"no such image: {image}")
    with tempfile.TemporaryDirectory(prefix="vzstages-boot-") as scratch:
        machine = machine_arguments(architecture, firmware, Path(scratch) / "efivars.fd")
        port = free_port()
        yield (
            qemu_command(image, port, disk_interface, snapshot, memory, machine, architecture, attached),
            port,
        )


def _boot(
    command: list[str],
    port: int,
    hostname: str | None,
    timeout: float,
    console_log: Path | None,
    until: list[re.Pattern[str]] | None,
) -> BootReport:
    report = BootReport()
    wanted = list(CONSOLE_FACTS)
    if hostname:
        wanted.append((f"hostname {hostname}", re.compile(rf"^{re.escape(hostname)} login:", re.MULTILINE)))
    wanted += [(f"console: {p.pattern}", p) for p in until or []]
    chunks: list[str] = []
    started = time.monotonic()
    proc = Host().spawn(command)

    def read_console() -> None:
        # Raw chunks, not lines: a login prompt has no newline after it.
        assert proc.stdout is not None
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")  # chunks split characters
        while data := os.read(proc.stdout.fileno(), 65536):
            chunks.append(decoder.decode(data))

    reader = threading.Thread(target=read_console, daemon=True)
    reader.start()
    try:
        while time.monotonic() - started < timeout:
            if _observe(report, _clean("".join(chunks)), wanted, port, proc):
                break
            time.sleep(1)
    finally:
        stop_process_group(proc)
        reader.join(timeout=5)
    report.seconds = round(time.monotonic() - started, 1)
    report.console = _clean("".join(chunks))
    if console_log:
        console_log.write_text(report.console)
    expected = [n for n, _ in wanted] + [SSH_FACT]
    report.missing = [n for n in expected if n not in report.facts]
    if report.missing and report.failure is None and report.seconds >= timeout:
        report.failure = f"timed out after {timeout:.0f}s"
    return report


def _observe(
    report: BootReport,
    text: str,
    wanted: list[tuple[str, re.Pattern[str]]],
    port: int,
    proc: subprocess.Popen[bytes],
) -> bool:
    """Record what the console and the SSH port prove so far; True once the boot is decided."""
    for name, pattern in wanted:
        match = pattern.search(text)
        if match and name not in report.facts:
            report.facts[name] = match.group(0).strip()[:160]
    fatal = FATAL.search(text)
    if fatal:
        report.failure = f"boot failed: {fatal.group(0).strip()}"
        return True
    if SSH_FACT not in report.facts:
        banner = ssh_banner(port, timeout=1)
        if banner:
            report.facts[SSH_FACT] = banner
    if proc.poll() is not None:
        report.failure = f"qemu exited with status {proc.returncode}"
        return True
    return all(n in report.facts for n, _ in wanted) and SSH_FACT in report.facts

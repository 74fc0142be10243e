#!/bin/sh
# The baseline: the image vzstages builds from manifests/kvm.yml, built by a hand-written script
# as anyone could write it (debootstrap, then one apt run, then grub by hand). bench/peers.py
# runs it beside vzstages and the other tools.
#
#   bench/baseline.sh OUTPUT.qcow2 MIRROR DEB-CACHE-FOLDER [debootstrap|mmdebstrap]
#
# With mmdebstrap as the last argument the base system and every package come from one
# mmdebstrap run (the "mmdebstrap and a short shell pipeline" peer).
set -eu
out=$1 mirror=$2 debs=$3 tool=${4:-debootstrap}
packages=$(cat "$(dirname "$0")/packages")
work=$(mktemp -d /var/tmp/baseline.XXXXXX)
root=$work/root
raw=$work/disk.raw
loops=""
cleanup() {
	for m in dev/pts dev sys proc var/cache/apt/archives ""; do
		mountpoint -q "$root/$m" 2>/dev/null && umount "$root/$m"
	done
	for l in $loops; do losetup -d "$l"; done
	rm -rf "$work"
}
trap cleanup EXIT

# A 2 GiB root after a 1 MiB BIOS boot partition, on gpt.
truncate -s $((2048 + 3))M "$raw"
printf 'label: gpt\nstart=2048, size=2048, type=21686148-6449-6E6F-744E-656564454649\nstart=4096, size=4194304, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n' |
	sfdisk --quiet "$raw"
part=$(losetup --find --show --offset $((4096 * 512)) --sizelimit $((4194304 * 512)) "$raw")
disk=$(losetup --find --show "$raw")
loops="$part $disk"
mkfs.ext4 -q -F "$part"
mkdir -p "$root"
mount "$part" "$root"

mkdir -p "$debs/partial"
if [ "$tool" = mmdebstrap ]; then
	mmdebstrap --mode=root --variant=minbase --include="$packages" \
		--setup-hook="mkdir -p \"\$1/var/cache/apt/archives\" && mount --bind $debs \"\$1/var/cache/apt/archives\"" \
		--customize-hook='umount "$1/var/cache/apt/archives"' \
		bookworm "$root" "deb $mirror bookworm main" "deb $mirror bookworm-updates main"
else
	debootstrap --variant=minbase --cache-dir="$debs" bookworm "$root" "$mirror"
	printf 'deb %s bookworm main\ndeb %s bookworm-updates main\n' "$mirror" "$mirror" >"$root/etc/apt/sources.list"
	mount --bind "$debs" "$root/var/cache/apt/archives"
	cp /etc/resolv.conf "$root/etc/resolv.conf"
	for m in proc sys dev dev/pts; do mount --bind "/$m" "$root/$m"; done
	chroot "$root" apt-get update -q
	DEBIAN_FRONTEND=noninteractive chroot "$root" apt-get install -y -q --no-install-recommends $(echo "$packages" | tr , ' ')
	umount "$root/var/cache/apt/archives"
fi
mountpoint -q "$root/proc" || for m in proc sys dev dev/pts; do mount --bind "/$m" "$root/$m"; done

cp "$(dirname "$0")/common-prepare.sh" "$root/tmp/prepare"
chroot "$root" /tmp/prepare
rm "$root/tmp/prepare"
sh "$(dirname "$0")/install-grub.sh" "$root" "$disk" "$part"
rm -f "$root/etc/resolv.conf" "$root"/etc/ssh/ssh_host_*
chroot "$root" apt-get clean
for m in dev/pts dev sys proc ""; do umount "$root/$m"; done
for l in $loops; do losetup -d "$l"; done
loops=""
qemu-img convert -O qcow2 "$raw" "$out"

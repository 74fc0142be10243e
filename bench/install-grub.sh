#!/bin/sh
# The boot setup every peer's image gets, as anyone would write it by hand: fstab and a grub.cfg
# by UUID, grub's core image in the BIOS boot partition of a gpt disk (root on partition 2).
# bench/baseline.sh, mkosi.finalize and the debos recipe all call it.
#
#   bench/install-grub.sh ROOT-FOLDER DISK-DEVICE ROOT-PARTITION-DEVICE
set -eu
root=$1 disk=$2 part=$3
uuid=$(blkid -s UUID -o value "$part")
kernel=$(ls "$root"/boot/vmlinuz-* | sed 's|.*/vmlinuz-||' | tail -1)
printf 'UUID=%s / ext4 defaults 0 1\n' "$uuid" >"$root/etc/fstab"
mkdir -p "$root/boot/grub/i386-pc"
cp "$root"/usr/lib/grub/i386-pc/*.mod "$root"/usr/lib/grub/i386-pc/*.lst "$root"/usr/lib/grub/i386-pc/*.img "$root/boot/grub/i386-pc/"
cat >"$root/boot/grub/grub.cfg" <<CFG
serial --unit=0 --speed=115200
terminal_input console serial
terminal_output console serial
set timeout=1
search --no-floppy --fs-uuid --set=root $uuid
menuentry Debian {
	linux /boot/vmlinuz-$kernel root=UUID=$uuid ro net.ifnames=0 console=tty0 console=ttyS0,115200n8
	initrd /boot/initrd.img-$kernel
}
CFG
bound=""
for m in proc sys dev; do
	if ! mountpoint -q "$root/$m"; then
		mount --bind "/$m" "$root/$m"
		bound="$m $bound"
	fi
done
trap 'for m in $bound; do umount "$root/$m"; done' EXIT
chroot "$root" grub-mkimage -O i386-pc -o /boot/grub/i386-pc/core.img -p '(hd0,gpt2)/boot/grub' \
	biosdisk part_gpt ext2 search_fs_uuid normal linux serial terminal
chroot "$root" /usr/lib/grub/i386-pc/grub-bios-setup --directory=/boot/grub/i386-pc --skip-fs-probe "$disk"

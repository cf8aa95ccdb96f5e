#!/usr/bin/env bash
# Makes the seed images of tests/fuzz/corpus with mke2fs and debugfs:
# small ext2 images with files, a directory, a hole, a symlink, extended
# attributes (in an inode and in a block), at block
# sizes 1024, 2048 and 4096.  Run once; the outputs are committed.
set -euo pipefail
out=$(cd "$(dirname "$0")" && pwd)/corpus
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo hello > "$tmp/hi.txt"
head -c 5000 /dev/urandom > "$tmp/r.bin"
head -c 700 /dev/urandom > "$tmp/ea.bin"
truncate -s 20000 "$tmp/sparse"
printf 'end' >> "$tmp/sparse"
for bs in 1024 2048 4096; do
	img="$tmp/seed-$bs.img"
	size=$((bs * 64 > 65536 ? bs * 64 : 65536))
	truncate -s "$size" "$img"
	mke2fs -q -F -t ext2 -b "$bs" -N 16 "$img"
	debugfs -w -f - "$img" >/dev/null 2>&1 <<EOC
write $tmp/hi.txt hi.txt
mkdir d
write $tmp/r.bin d/r.bin
write $tmp/sparse d/sparse
symlink ln hi.txt
ea_set hi.txt user.in_inode small
ea_set -f $tmp/ea.bin d/r.bin user.in_block
ea_set d trusted.dir t
EOC
	e2fsck -fn "$img" >/dev/null
	cp "$img" "$out/seed-$bs.img"
done
ls -la "$out"

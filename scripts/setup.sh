#!/usr/bin/env bash
# Installs what building and testing pagewright needs on a fresh Debian
# machine.  Run as root.  Safe to run again.
set -euo pipefail
pkgs=(build-essential gcc make e2fsprogs clang libclang-rt-14-dev fuse3 libfuse3-dev pkg-config procps)
missing=()
for p in "${pkgs[@]}"; do
	dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq "${missing[@]}"
fi
# The sanitizer runtimes ship with gcc's libgcc-*-dev on Debian; check.
echo 'int main(void){return 0;}' > /tmp/pw-san-check.c
for san in address,undefined thread; do
	if ! gcc -fsanitize=$san /tmp/pw-san-check.c -o /tmp/pw-san-check 2>/dev/null; then
		echo "setup: gcc cannot link -fsanitize=$san" >&2
		exit 1
	fi
done
rm -f /tmp/pw-san-check /tmp/pw-san-check.c
echo "setup: ok"

# shellcheck shell=bash
# kmods.sh — sourced by initramfs.sh and diskmods.sh.
#
# kmods_collect MODDIR DEST NAME...: copy each kernel module NAME from
# MODDIR/kernel to DEST/NAME.ko, decompressed, after the modules it depends
# on (read from its .modinfo "depends=": modules.dep is made by depmod at
# install time and is not in the package), each once, and print the names in
# load order, one per line. Names are spelled with '-' ("can-dev"); the
# file may use either spelling. A module not found (built in) is skipped
# with a message on stderr.
kmods_collect() {
	local moddir=$1 dest=$2 m
	shift 2
	local -A seen=()
	local order=()
	for m; do _kmods_add "$m"; done
	printf '%s\n' "${order[@]}"
}

# _kmods_add NAME: one module for kmods_collect (uses its locals).
_kmods_add() {
	local name=${1//_/-} path deps d
	[ -n "${seen[$name]:-}" ] && return 0
	seen[$name]=1
	path=$(find "$moddir/kernel" \( -name "$name.ko*" -o -name "${name//-/_}.ko*" \) | head -1)
	[ -n "$path" ] || { echo "kmods: module $name not found (built in?)" >&2; return 0; }
	case $path in
	*.xz) xz -dc "$path" >"$dest/$name.ko" ;;
	*.zst) zstd -qdc "$path" >"$dest/$name.ko" ;;
	*.gz) gzip -dc "$path" >"$dest/$name.ko" ;;
	*) cp "$path" "$dest/$name.ko" ;;
	esac
	deps=$(tr '\0' '\n' <"$dest/$name.ko" | sed -n 's/^depends=//p' | head -1 | tr ',' ' ')
	for d in $deps; do
		_kmods_add "$d"
	done
	order+=("$name")
}

#!/usr/bin/env bash
# Build tcu-agent .deb and .rpm packages with nfpm (built from source at a
# pinned version with `go run`; no prebuilt tool is downloaded).
#
#   scripts/package.sh                 all arches (amd64 arm64 armv7), deb + rpm
#   PKG_ARCHES="amd64" PKG_FORMATS=deb scripts/package.sh
#   scripts/package.sh version         print the package version and exit
#
# Environment: VERSION (default: git describe), PKG_ARCHES, PKG_FORMATS,
# DIST (output directory, default dist), GO (default go).
# Binaries go to build/linux_<arch>/tcu-agent, as `make cross` puts them.
set -euo pipefail

cd "$(dirname "$0")/.."

# nfpm v2.45.0: the newest release whose dependencies all resolve through
# proxy.golang.org here (v2.46+ pull go.digitalxero.dev/*, which the proxy
# refuses with 403).
NFPM_VERSION=v2.45.0
NFPM_PKG=github.com/goreleaser/nfpm/v2/cmd/nfpm@${NFPM_VERSION}

GO=${GO:-go}
DIST=${DIST:-dist}
PKG_ARCHES=${PKG_ARCHES:-amd64 arm64 armv7}
PKG_FORMATS=${PKG_FORMATS:-deb rpm}
VERSION=${VERSION:-$(git describe --tags --dirty --always 2>/dev/null || echo dev)}

# pkg_version turns a `git describe` string into a deb/rpm version:
# v1.2.3 → 1.2.3; v1.2.3-4-gabc → 1.2.3+4.gabc; abc123-dirty →
# 0.0.0~git.abc123.dirty (sorts before any release).
pkg_version() {
	local v=${1#v}
	[[ $v =~ ^[0-9]+\.[0-9]+ ]] || v="0.0.0~git.$v"
	v=${v/-/+}
	printf '%s\n' "${v//-/.}"
}
PKG_VERSION=$(pkg_version "$VERSION")

if [[ ${1:-} == version ]]; then
	echo "$PKG_VERSION"
	exit 0
fi

for f in configs/tcu-agent.toml configs/vehicle.dbc docs/operations.md; do
	[[ -f $f ]] || { echo "package.sh: missing $f" >&2; exit 1; }
done

# Reproducible timestamps in the archives.
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
export SOURCE_DATE_EPOCH PKG_VERSION

mkdir -p "$DIST"
for arch in $PKG_ARCHES; do
	case $arch in
	amd64) goarch=amd64 goarm= nfpm_arch=amd64 ;;
	arm64) goarch=arm64 goarm= nfpm_arch=arm64 ;;
	armv7 | armhf | arm7) arch=armv7 goarch=arm goarm=7 nfpm_arch=arm7 ;;
	*) echo "package.sh: unknown arch $arch (amd64, arm64, armv7)" >&2; exit 2 ;;
	esac
	bin=build/linux_${arch}/tcu-agent
	echo "== build $bin ($VERSION)"
	CGO_ENABLED=0 GOOS=linux GOARCH=$goarch GOARM=$goarm \
		"$GO" build -trimpath -ldflags "-s -w -X main.version=$VERSION" -o "$bin" ./cmd/tcu-agent
	for format in $PKG_FORMATS; do
		echo "== package $format $nfpm_arch $PKG_VERSION"
		NFPM_ARCH=$nfpm_arch PKG_BINARY=$bin \
			"$GO" run "$NFPM_PKG" package --config packaging/nfpm.yaml --packager "$format" --target "$DIST/"
	done
done
ls -l "$DIST"

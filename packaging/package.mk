# Packaging targets, included by the top-level Makefile.

PKG_ARCHES  ?= amd64 arm64 armv7
PKG_FORMATS ?= deb rpm

.PHONY: package
package: ## build .deb and .rpm packages for amd64, arm64, armhf into dist/ (nfpm)
	VERSION="$(VERSION)" PKG_ARCHES="$(PKG_ARCHES)" PKG_FORMATS="$(PKG_FORMATS)" DIST=dist bash scripts/package.sh

.PHONY: package-test
package-test: package ## build the packages, then check their contents and install the amd64 .deb into a scratch root
	TCU_PACKAGE_DIR=$(CURDIR)/dist TCU_REQUIRE_PACKAGES=1 $(GO) test -count=1 -v ./packaging/

#!/bin/bash
# build-deb.sh: build dbmgr_<version>_<arch>.deb from this tree, offline.
#
#   bash packaging/build-deb.sh [-o OUTDIR]
#
# meson setup (prefix /usr, release, no tests) in build-deb/, meson install --destdir into
# build-deb/pkgroot, then dpkg-deb. Depends: is computed by dpkg-shlibdeps (else from the
# Debian packages owning the linked libraries). The build dependencies are those of
# scripts/install-deps.sh; nothing is downloaded here. The .deb goes to OUTDIR (default
# build-deb/); its path is the last line printed.
set -euo pipefail
umask 022

SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${DBMGR_DEB_BUILD_DIR:-$SRC/build-deb}
OUT=$BUILD
while getopts "o:h" opt; do
  case $opt in
    o) OUT=$OPTARG ;;
    *) sed -n '2,10p' "$0"; exit 2 ;;
  esac
done
ROOT=$BUILD/pkgroot
DEBIAN_SRC=$SRC/packaging/debian
MAINTAINER=${DEB_MAINTAINER:-"dbmgr maintainers <maintainers@dbmgr.invalid>"}

for tool in meson ninja dpkg-deb dpkg; do
  command -v "$tool" >/dev/null || { echo "build-deb: $tool is missing" >&2; exit 1; }
done

# 1. Configure and build. An existing build-deb/ is reconfigured to the same options.
setup_args=(--prefix=/usr --buildtype=release -Dtests=false)
if [[ -f $BUILD/build.ninja ]]; then
  meson setup --reconfigure "${setup_args[@]}" "$BUILD" "$SRC"
else
  meson setup "${setup_args[@]}" "$BUILD" "$SRC"
fi
meson compile -C "$BUILD"

# 2. Install into a staging root (binaries and the shared library stripped).
rm -rf "$ROOT"
meson install -C "$BUILD" --no-rebuild --strip --destdir "$ROOT" >/dev/null

VERSION=$(meson introspect --projectinfo "$BUILD" |
          python3 -c 'import json,sys; print(json.load(sys.stdin)["version"])')
ARCH=$(dpkg --print-architecture)
DEB=$OUT/dbmgr_${VERSION}_${ARCH}.deb

for f in usr/sbin/dbmgrd lib/systemd/system/dbmgrd.service lib/systemd/system/dbmgrd.socket \
         usr/lib/sysusers.d/dbmgr.conf usr/lib/tmpfiles.d/dbmgr.conf \
         usr/share/dbmgr/dbmgr.yaml.example; do
  [[ -e $ROOT/$f ]] || { echo "build-deb: meson install did not install /$f" >&2; exit 1; }
done
[[ -e $ROOT/usr/bin/dbmgrctl ]] || echo "build-deb: note: no dbmgrctl target; packaging without it"

# 3. Man pages: the name.N files in packaging/man/ that meson did not install already; all of them gzipped, as Debian wants.
if [[ -d $SRC/packaging/man ]]; then
  shopt -s nullglob
  for page in "$SRC"/packaging/man/*.[1-8]; do
    name=$(basename "$page")
    section=${name##*.}
    dest=$ROOT/usr/share/man/man$section/$name
    if [[ ! -e $dest && ! -e $dest.gz ]]; then
      install -D -m 0644 "$page" "$dest"
    fi
  done
  shopt -u nullglob
fi
if [[ -d $ROOT/usr/share/man ]]; then
  find "$ROOT/usr/share/man" -type f ! -name '*.gz' -exec gzip -9n {} +
fi

# 4. Debian's documentation files and the package's own folders.
DOC=$ROOT/usr/share/doc/dbmgr
install -d "$DOC"
install -m 0644 "$DEBIAN_SRC/copyright" "$DOC/copyright"
printf 'dbmgr (%s) unstable; urgency=medium\n\n  * Package built from the source tree by packaging/build-deb.sh.\n\n -- %s  %s\n' \
  "$VERSION" "$MAINTAINER" "$(date -R -d "@${SOURCE_DATE_EPOCH:-$(git -C "$SRC" log -1 --format=%ct 2>/dev/null || date +%s)}")" |
  gzip -9n > "$DOC/changelog.Debian.gz"
install -d "$ROOT/etc/dbmgr"          # dbmgr.yaml itself comes from postinst

# 5. Depends.
ELFS=()
while IFS= read -r -d '' f; do
  [[ $(head -c4 "$f" | od -An -tx1 | tr -d ' \n') == 7f454c46 ]] && ELFS+=("$f")
done < <(find "$ROOT/usr" -type f -print0)

depends=""
if command -v dpkg-shlibdeps >/dev/null; then
  # dpkg-shlibdeps wants a debian/control; give it one in a scratch folder.
  scratch=$BUILD/shlibdeps
  rm -rf "$scratch" && mkdir -p "$scratch/debian"
  printf 'Source: dbmgr\n\nPackage: dbmgr\nArchitecture: any\n' > "$scratch/debian/control"
  (cd "$scratch" && dpkg-shlibdeps -O -l"$ROOT/usr/lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)" \
      "${ELFS[@]}" 2>"$scratch/stderr") > "$scratch/substvars" || { cat "$scratch/stderr" >&2; exit 1; }
  grep -v -e "no dependency information found" -e "should already be installed in their package" "$scratch/stderr" >&2 || true
  depends=$(sed -n 's/^shlibs:Depends=//p' "$scratch/substvars")
else
  # Fallback: the packages owning the libraries the ELF files load, unversioned.
  depends=$(for f in "${ELFS[@]}"; do ldd "$f"; done |
            awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u |
            while read -r lib; do dpkg -S "$(readlink -f "$lib")" 2>/dev/null || dpkg -S "$lib" 2>/dev/null; done |
            cut -d: -f1 | sort -u | paste -sd, | sed 's/,/, /g')
fi
[[ -n $depends ]] || { echo "build-deb: could not compute Depends" >&2; exit 1; }
depends="$depends, systemd | passwd"

# 6. DEBIAN/ and the package.
install -d "$ROOT/DEBIAN"
for script in postinst prerm postrm; do
  install -m 0755 "$DEBIAN_SRC/$script" "$ROOT/DEBIAN/$script"
done
size=$(du -sk --exclude=DEBIAN "$ROOT" | cut -f1)
sed -e "s|@VERSION@|$VERSION|" -e "s|@ARCH@|$ARCH|" -e "s|@MAINTAINER@|$MAINTAINER|" \
    -e "s|@INSTALLED_SIZE@|$size|" -e "s/@DEPENDS@/$depends/" \
    "$DEBIAN_SRC/control.in" > "$ROOT/DEBIAN/control"
(cd "$ROOT" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z |
   xargs -0 md5sum) > "$ROOT/DEBIAN/md5sums"
# Files under /etc are dpkg conffiles; there are none (dbmgr.yaml is postinst's).
if [[ -n $(find "$ROOT/etc" -type f 2>/dev/null) ]]; then
  (cd "$ROOT" && find etc -type f -printf '/%p\n' | sort) > "$ROOT/DEBIAN/conffiles"
fi

mkdir -p "$OUT"
dpkg-deb --root-owner-group -Zxz --build "$ROOT" "$DEB" >/dev/null
echo "Depends: $depends"
echo "$DEB"

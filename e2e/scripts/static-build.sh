#!/usr/bin/env bash
# Builds the binaries of the two images (`cleanroom` from ./Dockerfile, `agent`
# from agent/Dockerfile) as static release binaries, outside Docker, and checks
# them: no program interpreter and no shared library needed (readelf), and
# `--version` names the right program. It first checks that the Dockerfiles
# still build with the flags used here, so the two cannot drift apart.
#
#   e2e/scripts/static-build.sh                              # as below
#   CLEANROOM_STATIC_TARGET=musl e2e/scripts/static-build.sh # musl or fail
#   CLEANROOM_STATIC_TARGET=gnu e2e/scripts/static-build.sh  # force the fallback
#
# The musl path is the Dockerfiles' own build:
#   cargo build --release --locked --target x86_64-unknown-linux-musl -p PKG --bin BIN
# with CC_x86_64_unknown_linux_musl=musl-gcc (musl-tools), or gcc without it.
# It is taken when the musl target is installed, or when `rustup target add`
# installs it within a minute. Otherwise (or when forced) it falls back to the
# host target with RUSTFLAGS="-C target-feature=+crt-static": glibc linked in
# statically. That proves the code links and runs static, not that the image's
# musl build does; the script says which path it took and why.
# Output goes to target/static/, apart from the debug builds.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

mode=${CLEANROOM_STATIC_TARGET:-auto}
case $mode in
  auto | musl | gnu) ;;
  *) die "CLEANROOM_STATIC_TARGET must be auto, musl or gnu, not '$mode'" ;;
esac

need cargo
need rustc
need readelf "it comes with binutils"

MUSL=x86_64-unknown-linux-musl
GNU=x86_64-unknown-linux-gnu
FLAGS=(--release --locked)
# package, binary, Dockerfile: one line per image.
IMAGES=(
  "cleanroom cleanroom Dockerfile"
  "cleanroom-agent agent agent/Dockerfile"
)
export CARGO_TARGET_DIR=$REPO_DIR/target/static
cd "$REPO_DIR"

# 1. The Dockerfiles still say what is tested here.
for image in "${IMAGES[@]}"; do
  read -r pkg bin dockerfile <<<"$image"
  for expected in \
    "cargo build ${FLAGS[*]} --target $MUSL" \
    "-p $pkg --bin $bin" \
    "cp target/$MUSL/release/$bin /$bin"; do
    grep -qF -- "$expected" "$dockerfile" ||
      die "$dockerfile no longer contains '$expected': its build drifted from this script's; change both"
  done
done
say "Dockerfile and agent/Dockerfile build with: cargo build ${FLAGS[*]} --target $MUSL -p PKG --bin BIN"

# 2. Which target: musl as in the images, or the glibc fallback.
musl_installed() {
  [ -d "$(rustc --print sysroot)/lib/rustlib/$MUSL/lib" ] && return 0
  command -v rustup >/dev/null 2>&1 && rustup target list --installed 2>/dev/null | grep -qx "$MUSL"
}

if [ "$mode" = gnu ]; then
  target=$GNU
  why="CLEANROOM_STATIC_TARGET=gnu forces the fallback"
elif musl_installed; then
  target=$MUSL
  why="the $MUSL target is installed"
elif command -v rustup >/dev/null 2>&1 && say "the $MUSL target is not installed: trying rustup target add (60 s at most)" &&
  timeout 60 rustup target add "$MUSL" >&2; then
  target=$MUSL
  why="rustup target add installed the $MUSL target just now"
elif [ "$mode" = musl ]; then
  die "CLEANROOM_STATIC_TARGET=musl, but the $MUSL target is not installed and rustup could not add it"
else
  target=$GNU
  why="the $MUSL target is not installed and rustup could not add it (no rustup, or its server out of reach)"
fi

build_env=()
if [ "$target" = "$MUSL" ]; then
  cc=gcc
  command -v musl-gcc >/dev/null 2>&1 && cc=musl-gcc
  need "$cc" "the C compiler for ring's C code"
  build_env=("CC_x86_64_unknown_linux_musl=$cc")
  say "path: musl, the images' build ($why), C compiler $cc"
else
  need gcc "the C compiler and linker"
  # --target keeps RUSTFLAGS off build scripts and proc macros, which cannot be static.
  build_env=("RUSTFLAGS=-C target-feature=+crt-static")
  say "path: FALLBACK glibc +crt-static on $GNU, NOT the images' musl build ($why)"
fi

# 3. Build each image's binary on its own, as its Dockerfile does (features are
# resolved per build, so one build of both could differ from either image's).
for image in "${IMAGES[@]}"; do
  read -r pkg bin _ <<<"$image"
  say "building $bin: ${build_env[*]} cargo build ${FLAGS[*]} --target $target -p $pkg --bin $bin"
  start=$SECONDS
  env "${build_env[@]}" cargo build "${FLAGS[@]}" --target "$target" -p "$pkg" --bin "$bin"
  say "built $bin in $((SECONDS - start)) s"
done

# 4. Check each binary: static, runs, names itself.
for image in "${IMAGES[@]}"; do
  read -r _ bin _ <<<"$image"
  file=$CARGO_TARGET_DIR/$target/release/$bin
  [ -x "$file" ] || die "$file was not built"
  headers=$(readelf -lW "$file") || die "readelf cannot read $file"
  if grep -qE '^[[:space:]]*INTERP[[:space:]]' <<<"$headers"; then
    die "$bin is dynamically linked: it asks for a program interpreter ($(grep -o 'interpreter: [^]]*' <<<"$headers"))"
  fi
  needed=$(readelf -dW "$file" | grep '(NEEDED)' || true)
  [ -z "$needed" ] || die "$bin needs shared libraries:"$'\n'"$needed"
  version=$("$file" --version) || die "$bin --version failed"
  [[ $version == "$bin "* ]] || die "$bin --version printed '$version', not '$bin <version>'"
  bytes=$(stat -c %s "$file")
  say "ok $bin: static (no interpreter, no NEEDED), '$version', $bytes bytes ($(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1048576 }') MiB)"
done
say "static build checked on the $target path ($why)"

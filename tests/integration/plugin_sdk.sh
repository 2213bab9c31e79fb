#!/usr/bin/env bash
# The plugin SDK as a plugin author uses it: install vigil into a prefix,
# build docs/examples/hello.c out of tree with `pkg-config vigil-plugin`,
# and run it under the installed vigil.
set -euo pipefail
build=$(dirname "$VIGIL_BIN")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
export PKG_CONFIG_PATH=$(dirname "$(find "$tmp/prefix" -name vigil-plugin.pc)")
plugindir=$(pkg-config --variable=plugindir vigil-plugin)
[ -x "$tmp/prefix/bin/vigil" ] || { echo "FAIL: vigil not installed"; exit 1; }
[ -f "$plugindir/sys.so" ] || { echo "FAIL: sys.so not in $plugindir"; exit 1; }

# A sanitized vigil has the ASan runtime in the executable: its plugins
# are built with the same flags and may not use --no-undefined.
if nm -D "$plugindir/sys.so" | grep -q __asan; then
  flags="-fsanitize=address,undefined"
else
  flags="-Wl,--no-undefined"
fi
cc -std=c11 -Wall -Wextra -Werror -shared -fPIC $flags \
   $(pkg-config --cflags vigil-plugin) \
   -o "$plugindir/hello.so" "$VIGIL_SOURCE_DIR/docs/examples/hello.c"
exported=$(nm -D --defined-only "$plugindir/hello.so" | awk '{print $3}' |
           grep -v '^_' || true)
[ "$exported" = vigil_plugin ] || { echo "FAIL: exports: $exported"; exit 1; }

# The installed vigil must find its plugins by itself.
unset VIGIL_PLUGIN_DIR
printf 'hello world\n' > "$tmp/watched"
cat > "$tmp/hello.ini" <<INI
[vigil]
interval = 100ms
[plugin hello]
path = $tmp/watched
INI
"$tmp/prefix/bin/vigil" check -c "$tmp/hello.ini"
out=$("$tmp/prefix/bin/vigil" run -c "$tmp/hello.ini" \
      --print 'hello.*' --for 1s 2>"$tmp/err")
echo "$out" | grep -q "hello.file.size_bytes{path=\"$tmp/watched\"} 12$" ||
  { echo "FAIL: no size sample"; echo "$out"; cat "$tmp/err"; exit 1; }
echo "$out" | grep -q "^[0-9]* hello.up 1$" ||
  { echo "FAIL: no hello.up"; echo "$out"; exit 1; }
echo "1 passed, 0 failed"

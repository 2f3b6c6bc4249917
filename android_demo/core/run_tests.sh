#!/usr/bin/env bash
# Builds android_demo/core with a bare kotlinc (no Gradle, no Maven) and runs its JUnit 4 tests.
# Needs: a JDK (javac/java), Debian's `kotlin` (1.3+) and `junit4` packages; `make kotlin-tools` installs them.
# Usage: run_tests.sh [BUILD_DIR]
#   TFALIGN_GOLDEN=DIR     golden files to test against (default: tests/golden of this repo)
#   TFALIGN_JVM_PROPS=...  extra JVM properties, e.g. -Dtfalign.benchmarkOut=FILE
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build="${1:-$here/build/kotlinc}"
jars=/usr/share/java
for tool in kotlinc java; do
  command -v "$tool" >/dev/null || { echo "run_tests.sh: '$tool' not found; run 'make kotlin-tools' (apt: kotlin, junit4)" >&2; exit 3; }
done
for jar in kotlin-stdlib.jar junit4.jar hamcrest-core.jar; do
  [ -f "$jars/$jar" ] || { echo "run_tests.sh: $jars/$jar not found; run 'make kotlin-tools' (apt: kotlin, junit4)" >&2; exit 3; }
done
cp="$jars/kotlin-stdlib.jar:$jars/junit4.jar:$jars/hamcrest-core.jar"
# kotlinc takes most of a minute here: rebuild only when a source changed.
stamp=$(cat "$0" $(find "$here/src" -name '*.kt' | sort) | sha256sum | cut -c1-64)
if [ "$(cat "$build/stamp" 2>/dev/null)" != "$stamp" ]; then
  rm -rf "$build" && mkdir -p "$build/main" "$build/test"
  # JDK 17 warns about -Xverify:none, which Debian's kotlinc wrapper passes; it is harmless.
  kotlinc -jvm-target 1.8 -Werror -d "$build/main" "$here/src/main/kotlin" 2>&1 | { grep -v -- '-Xverify:none' || true; }
  kotlinc -jvm-target 1.8 -nowarn -cp "$build/main:$cp" -d "$build/test" "$here/src/test/kotlin" 2>&1 | { grep -v -- '-Xverify:none' || true; }
  echo "$stamp" > "$build/stamp"
fi
golden="${TFALIGN_GOLDEN:-$here/../../tests/golden}"
classes=$(cd "$build/test" && find . -name '*Test.class' | sed 's|^\./||; s|\.class$||; s|/|.|g' | sort)
test -n "$classes" || { echo "run_tests.sh: test sources did not compile" >&2; exit 1; }
# shellcheck disable=SC2086
java ${TFALIGN_JVM_PROPS:-} -Dtfalign.golden="$golden" -cp "$build/main:$build/test:$cp" \
  org.junit.runner.JUnitCore $classes

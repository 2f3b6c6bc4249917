#!/usr/bin/env bash
# Installs what tests/test_android_demo.py needs to build and run the Android core's JUnit tests without Gradle:
# Debian's `kotlin` (kotlinc; pulls in a Java runtime) and `junit4` (with hamcrest). Called by `make venv`.
# Guarded: does nothing when they are present; only warns (the tests then skip with the reason) when they cannot
# be installed here (not Debian/Ubuntu, or not root and no sudo).
set -uo pipefail
have() { command -v kotlinc >/dev/null && command -v java >/dev/null && [ -f /usr/share/java/junit4.jar ] \
         && [ -f /usr/share/java/hamcrest-core.jar ] && [ -f /usr/share/java/kotlin-stdlib.jar ]; }
have && exit 0
if ! command -v apt-get >/dev/null; then
  echo "install_jvm_tools.sh: no apt-get; install kotlinc, a JDK and junit4 yourself to run the android_demo core tests" >&2
  exit 0
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo="sudo -n"; else
    echo "install_jvm_tools.sh: not root and no password-less sudo; run: sudo apt-get install kotlin junit4" >&2
    exit 0
  fi
fi
echo "installing Debian packages kotlin and junit4 (android_demo core tests)"
$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends kotlin junit4 >/dev/null \
  || echo "install_jvm_tools.sh: apt-get install kotlin junit4 failed; the android_demo core tests will be skipped" >&2
have || echo "install_jvm_tools.sh: kotlin/junit4 still missing after apt-get" >&2
exit 0

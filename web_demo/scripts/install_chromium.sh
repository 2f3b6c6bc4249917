#!/usr/bin/env bash
# Installs what tests/test_web_demo.py needs: Debian's `chromium` (driven by playwright-core through its
# executablePath; playwright never downloads a browser). Called by `make venv`, so the README's `make test` installs
# it on a fresh machine. Node.js >= 20.19 and npm must already be there (Debian's nodejs is older than Vite needs).
# Guarded: does nothing when /usr/bin/chromium exists; only warns (the test then skips with the reason) when it
# cannot be installed here (not Debian/Ubuntu, or not root and no password-less sudo). Always exits 0.
set -uo pipefail
[ -x /usr/bin/chromium ] && exit 0
if ! command -v apt-get >/dev/null; then
  echo "install_chromium.sh: no apt-get; install Chromium at /usr/bin/chromium (or set TFALIGN_CHROMIUM) to run the web_demo test" >&2
  exit 0
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo="sudo -n"; else
    echo "install_chromium.sh: not root and no password-less sudo; run: sudo apt-get install chromium" >&2
    exit 0
  fi
fi
echo "installing Debian package chromium (web_demo end-to-end test)"
$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null \
  || echo "install_chromium.sh: apt-get install chromium failed; the web_demo end-to-end test will be skipped" >&2
[ -x /usr/bin/chromium ] || echo "install_chromium.sh: /usr/bin/chromium still missing after apt-get" >&2
exit 0

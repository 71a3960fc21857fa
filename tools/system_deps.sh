#!/usr/bin/env bash
# System packages the data generators and the tests need: a JDK, fonts that cover Latin and CJK, and Chromium
# for the browser tests. Installs the missing ones with apt-get on Debian/Ubuntu (sudo when not root); on other
# systems prints what to install and, for the browser, lets Playwright download its own Chromium.
set -uo pipefail
PY="${1:-python3}"

need=()
command -v javac >/dev/null 2>&1 || need+=(default-jdk-headless)
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || need+=(chromium)
if command -v fc-list >/dev/null 2>&1; then
  fc-list | grep -qi 'DejaVu Sans' || need+=(fonts-dejavu-core)
  fc-list | grep -qi 'Liberation' || need+=(fonts-liberation)
  fc-list | grep -qi 'Noto Sans CJK' || need+=(fonts-noto-cjk)
  fc-list | grep -qi 'WenQuanYi Zen Hei' || need+=(fonts-wqy-zenhei)
fi
[ ${#need[@]} -eq 0 ] && exit 0

if command -v apt-get >/dev/null 2>&1; then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  echo "system-deps: apt-get install ${need[*]}"
  $sudo_cmd apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${need[@]}" \
    || { echo "system-deps: apt-get failed; install by hand: ${need[*]}"; exit 1; }
  exit 0
fi

echo "system-deps: missing ${need[*]}"
case " ${need[*]} " in *default-jdk*) echo "  JDK:   brew install openjdk (macOS)";; esac
case " ${need[*]} " in *fonts-*) echo "  fonts: brew install --cask font-noto-sans-cjk font-liberation (macOS)";; esac
case " ${need[*]} " in
  *chromium*) echo "  browser: $PY -m playwright install chromium"; "$PY" -m playwright install chromium || true;;
esac
exit 0

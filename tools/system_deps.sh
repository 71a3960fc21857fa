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
  # Read the list once: `fc-list | grep -q` under pipefail fails when grep stops early and fc-list gets SIGPIPE.
  fonts="$(fc-list : family 2>/dev/null)"
  grep -qi 'DejaVu Sans' <<<"$fonts" || need+=(fonts-dejavu-core)
  grep -qi 'Liberation' <<<"$fonts" || need+=(fonts-liberation)
  grep -qi 'Noto Sans CJK' <<<"$fonts" || need+=(fonts-noto-cjk)
  grep -qi 'WenQuanYi Zen Hei' <<<"$fonts" || need+=(fonts-wqy-zenhei)
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
case " ${need[*]} " in *fonts-*) echo "  fonts: brew install --cask font-dejavu font-liberation font-noto-sans-cjk-sc font-noto-serif-cjk-sc font-wenquanyi-zen-hei (macOS)";; esac
case " ${need[*]} " in
  *chromium*) echo "  browser: $PY -m playwright install chromium"; "$PY" -m playwright install chromium || true;;
esac
exit 0

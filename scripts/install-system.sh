#!/usr/bin/env bash
# System packages that pip cannot provide, installed from the system's own package manager (Debian/Ubuntu apt).
#   scripts/install-system.sh ocr        Tesseract and its Vietnamese data, and the GL/GLib libraries OpenCV
#                                        (the text detector's post-processing) loads (mmtools ocr)
#   scripts/install-system.sh browser    Chromium and its driver (the test suite's web-page tests)
#   scripts/install-system.sh speech     espeak-ng (speech the transcribe tests generate; tones without it)
# As root (or with sudo) on an apt system it installs what is missing; elsewhere it prints what to install and
# exits 1, so callers can go on without the optional part.
set -uo pipefail
declare -A packages=(
  [ocr]="tesseract-ocr tesseract-ocr-vie libgl1 libglib2.0-0"
  [browser]="chromium chromium-driver fonts-dejavu-core"
  [speech]="espeak-ng"
)
declare -A commands=([ocr]="tesseract" [browser]="chromium" [speech]="espeak-ng")
say() { echo "install-system.sh: $*" >&2; }
[ $# -gt 0 ] || { echo "usage: scripts/install-system.sh ocr|browser|speech ..." >&2; exit 2; }
status=0
for group in "$@"; do
  wanted="${packages[$group]:-}"
  [ -n "$wanted" ] || { say "unknown group '$group' (ocr, browser, speech)"; exit 2; }
  if [ "$group" = ocr ] && command -v tesseract >/dev/null 2>&1 && tesseract --list-langs 2>/dev/null | grep -qx vie \
      && { ! command -v ldconfig >/dev/null 2>&1 || ldconfig -p 2>/dev/null | grep -q 'libGL\.so\.1'; }; then
    continue
  fi
  if [ "$group" = browser ] && command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    continue
  fi
  if [ "$group" = speech ] && command -v espeak-ng >/dev/null 2>&1; then
    continue
  fi
  sudo=()
  [ "$(id -u)" = 0 ] || { command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null && sudo=(sudo -n); }
  if command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" = 0 ] || [ ${#sudo[@]} -gt 0 ]; }; then
    say "installing $wanted"
    if ! { "${sudo[@]}" apt-get update -qq && \
           DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends $wanted >/dev/null; }; then
      say "apt-get could not install: $wanted"; status=1
    fi
  else
    say "${commands[$group]} is missing; install it with your package manager: $wanted (Debian/Ubuntu names; macOS: brew install ${commands[$group]})"
    status=1
  fi
done
exit $status

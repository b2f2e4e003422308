#!/bin/sh
# Fetch the Debian packages whose public-domain / free prose is leank-mini's
# training text, and unpack them (no install) under $1 (default /tmp/mini-deb).
set -e
D=${1:-/tmp/mini-deb}
mkdir -p "$D" && cd "$D"
apt-get download dict-gcide dict-devil dict-jargon dict-wn dict-foldoc fortunes fortunes-min bible-kjv-text
for f in *.deb; do dpkg -x "$f" root; done

#!/bin/bash
# The documents behind the retrieval question sets (benchmarks/question_sets.json), from
# Debian's documentation packages (DFSG-free). apt-get download and dpkg-deb -x need no root.
#   fetch_question_sets.sh [DIR [SET...]]     DIR defaults to benchmarks/.corpus; SET: octave,
#                                             debian-faq, python-docs (default: all)
#   octave       DIR/octave.pdf                   octave-doc: GNU Octave manual (reference, PDF)
#   debian-faq   DIR/debian-faq/debian-faq.en.pdf debian-faq: the Debian FAQ (FAQ, PDF, 73 pages)
#   python-docs  DIR/python-docs/{tutorial,faq,howto}/*.html
#                                                 python3.11-doc: tutorial, FAQ and HOWTOs (HTML)
# Not here on purpose: the R manuals, gnuplot and debmake-doc are the held-out set (issue 13).
# Run 'apt-get update' first on a new machine if a download fails.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/.corpus}
shift || true
sets=("$@")
[[ ${#sets[@]} -gt 0 ]] || sets=(octave debian-faq python-docs)
mkdir -p "$out"
out=$(cd "$out" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

download() {  # download PACKAGE -> extracted under $tmp/PACKAGE
    (cd "$tmp" && { apt-get download "$1" >/dev/null 2>&1 \
        || { apt-get update -qq && apt-get download "$1" >/dev/null; }; })
    dpkg-deb -x "$tmp"/"$1"_*.deb "$tmp/$1"
}

for set in "${sets[@]}"; do
    case $set in
    octave)
        [[ -f $out/octave.pdf ]] && continue
        download octave-doc
        cp "$tmp"/octave-doc/usr/share/doc/octave/octave.pdf "$out/"
        [[ -d $out/html ]] || cp -r "$tmp"/octave-doc/usr/share/doc/octave/octave.html "$out/html"
        ;;
    debian-faq)
        [[ -f $out/debian-faq/debian-faq.en.pdf ]] && continue
        download debian-faq
        mkdir -p "$out/debian-faq"
        gunzip -c "$tmp"/debian-faq/usr/share/doc/debian/FAQ/debian-faq.en.pdf.gz \
            > "$out/debian-faq/debian-faq.en.pdf"
        ;;
    python-docs)
        [[ -d $out/python-docs/tutorial ]] && continue
        download python3.11-doc
        mkdir -p "$out/python-docs"
        for part in tutorial faq howto; do
            mkdir -p "$out/python-docs/$part"
            cp "$tmp"/python3.11-doc/usr/share/doc/python3.11/html/$part/*.html "$out/python-docs/$part/"
        done
        ;;
    *) echo "unknown set: $set" >&2; exit 2 ;;
    esac
done

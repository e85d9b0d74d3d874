#!/usr/bin/env bash
# Test data: Llama-2's sentencepiece vocabulary (32,000 pieces with scores), the tokenizer of
# LLaVA-NeXT-Video-7B(-DPO), as llama.cpp ships it (models/ggml-vocab-llama-spm.gguf, with its
# reference tokenisations .inp/.out).  No PyPI package installs that file, but the source
# distribution of llama-cpp-python vendors llama.cpp: download that sdist (pinned by the
# "# sdist:" line of requirements/test.txt; nothing is built or installed) and extract only those
# files into <venv>/share/stvg_ros/, where stvg_ros.adapters.tiny_models.llama_vocab_path() finds them.
# Idempotent (skips when the pinned version is already there); run by `make setup`.
set -euo pipefail
venv=${1:-.venv}
pin=$(sed -n 's/^# sdist: *//p' requirements/test.txt)
[ -n "$pin" ] || { echo "fetch_test_vocab: no '# sdist: NAME==VERSION' line in requirements/test.txt" >&2; exit 1; }
name=${pin%%==*}
version=${pin##*==}
dest="$venv/share/stvg_ros"
file=ggml-vocab-llama-spm.gguf
if [ -s "$dest/$file" ] && [ "$(cat "$dest/$file.version" 2>/dev/null)" = "$pin" ]; then
  touch "$dest/$file"
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# --no-binary for this package only: its sdist is what we want; its build backend comes as a wheel
"$venv/bin/pip" download --no-deps --no-binary "$name" --retries 2 --timeout 30 "$pin" -d "$tmp"
stem="${name//-/_}-$version"
mkdir -p "$dest"
for f in "$file" "$file.inp" "$file.out"; do
  tar -xzf "$tmp/$stem.tar.gz" -O "$stem/vendor/llama.cpp/models/$f" > "$tmp/$f"
done
mv "$tmp/$file.inp" "$tmp/$file.out" "$dest/"
mv "$tmp/$file" "$dest/$file"
echo "$pin" > "$dest/$file.version"
echo "fetch_test_vocab: $dest/$file from $pin"

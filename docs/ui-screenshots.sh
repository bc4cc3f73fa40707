#!/usr/bin/env bash
# Regenerates docs/ui-model.png and docs/ui-version.png, the README's web UI
# screenshots, from a demo registry (14 nightly versions, promotions, a
# rollback, a challenger alias) rather than the tests' escaping payloads.
#
#   MODELREG=target/release/modelreg PYTHON=/path/to/python-with-playwright \
#   CHROMIUM=/usr/bin/chromium docs/ui-screenshots.sh
set -euo pipefail
MODELREG=${MODELREG:-target/release/modelreg}
PYTHON=${PYTHON:-python3}
CHROMIUM=${CHROMIUM:-$(command -v chromium)}
OUT=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
export MODELREG_REGISTRY="$work/reg" MODELREG_ACTOR=train-ci@example.com
mr() { "$MODELREG" "$@" >/dev/null; }

mr model create fraud -d "Card-fraud scorer for the payments API" \
  --tag owner=ml-platform --tag team=risk \
  --metric-goal auc=max:0.005 --metric-goal eval/loss=min --metric-goal p99_ms=min
auc=(0.861 0.872 0.876 0.884 0.882 0.891 0.896 0.900 0.898 0.904 0.909 0.907 0.913 0.911)
loss=(0.412 0.390 0.382 0.370 0.373 0.362 0.355 0.349 0.351 0.343 0.338 0.341 0.333 0.336)
p99=(19 20 21 18 19 20 21 18 19 20 21 18 19 20)
mkdir -p "$work/out"
echo '{"threshold": 0.5}' > "$work/out/config.json"
for i in $(seq 1 14); do
  head -c $((200 * 1024 + i * 512)) /dev/urandom > "$work/out/model.bin"
  mr version register fraud "$work/out" --semver "1.$i.0" -d "nightly retrain $i" \
    -m "auc=${auc[i-1]}" -m "eval/loss=${loss[i-1]}" -m "p99_ms=${p99[i-1]}" \
    -p "lr=0.000$(( (i % 3) + 1 ))" -p "epochs=$((10 + i))" \
    --dataset "train:transactions@2026-$(printf %02d $(( (i - 1) % 12 + 1 )))-01" \
    -t "run=nightly-$i" --code-commit "$(printf '%040x' $((0xabc000 + i)))" --no-env
done
export MODELREG_ACTOR=ops@example.com
mr stage promote fraud/10 --reason "first nightly past the offline bar"
mr stage promote fraud/11 --reason "better auc and loss"
mr stage rollback fraud --reason "p99 latency alarm after the rollout"
mr stage promote fraud/11 --reason "latency fixed in the serving config"
mr alias set fraud/14 challenger --reason "shadow traffic candidate"

"$MODELREG" --json serve --registry "$MODELREG_REGISTRY" --listen 127.0.0.1:0 > "$work/serve.json" &
server=$!
for _ in $(seq 50); do [ -s "$work/serve.json" ] && break; sleep 0.1; done
base=$("$PYTHON" -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["listening"])' "$work/serve.json")
"$PYTHON" - "$base" "$CHROMIUM" "$OUT" <<'PY'
import sys
from playwright.sync_api import sync_playwright
base, chromium, out = sys.argv[1:]
with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=chromium)
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    for name, path in [("ui-model", "/ui/models/fraud"), ("ui-version", "/ui/models/fraud/versions/12")]:
        page.goto(base + path)
        page.screenshot(path=f"{out}/{name}.png")
    browser.close()
PY
echo "wrote $OUT/ui-model.png and $OUT/ui-version.png"

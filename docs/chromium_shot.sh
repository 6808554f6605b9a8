# Sourced by docs/screenshot.sh and docs/mlflow_screenshot.sh.
# shot URL PNG WIDTH,HEIGHT BUDGET_MS PROFILE_DIR: a screenshot of URL in headless Chromium,
# offline (host names other than localhost fail at once, so its calls home cannot hold it up).
shot() {
    chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        '--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1' \
        --user-data-dir="$5" --hide-scrollbars --window-size="$3" \
        --virtual-time-budget="$4" --screenshot="$2" "$1" 2>/dev/null
}

#!/usr/bin/env bash
# Make `dvc plots show` / `dvc plots diff` HTML work with no internet. DVC's default page loads vega,
# vega-lite and vega-embed from a CDN; this installs the same versions from the npm registry and writes an
# HTML template with them inlined (.dvc/tmp/offline-plots/index.html), then points this clone's local DVC
# config at it (`plots.html_template`, in .dvc/config.local: per clone, not committed). Run once per clone;
# in systems/emoji_ddim (its own DVC project) too, with the same template.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=.dvc/tmp/offline-plots
mkdir -p "$dir"
# the versions dvc-render's page asks the CDN for (vega 5.20.2 there; 5.21.0 here, the oldest that
# satisfies vega-lite 5.2.0's peer dependency)
npm install --loglevel=error --no-audit --no-fund --no-save --prefix "$dir" vega@5.21.0 vega-lite@5.2.0 vega-embed@6.18.2
python3 - "$dir" <<'PY'
import sys
from pathlib import Path

d = Path(sys.argv[1])
scripts = []
for lib in ("vega/build/vega.min.js", "vega-lite/build/vega-lite.min.js", "vega-embed/build/vega-embed.min.js"):
    code = (d / "node_modules" / lib).read_text(encoding="utf8").replace("</script", "<\\/script")
    scripts.append(f"<script>/* {lib} (npm) */\n{code}\n</script>")
page = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>DVC Plot</title>
    %s
    <style>
        table { border-spacing: 15px; }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
""" % "\n".join(scripts)
(d / "index.html").write_text(page, encoding="utf8")
PY
template=$(pwd)/$dir/index.html
dvc config --local plots.html_template "$template"
if [ -d systems/emoji_ddim/.dvc ]; then
  (cd systems/emoji_ddim && dvc config --local plots.html_template "$template")
fi
echo "offline plot template: $template"

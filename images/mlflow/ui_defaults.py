"""Build step of the mlflow image: the MLflow UI's defaults for the stack, set in the browser's
localStorage by a small script added to the UI's index.html (the UI keeps these settings only
there; the server has no option for them).

- The telemetry notice ("MLflow collects usage data ...") is dismissed and the UI's telemetry
  setting is off: the stack's images set MLflow's documented opt-out (MLFLOW_DISABLE_TELEMETRY),
  so the notice would say the opposite of what happens.
- The workflow type is "Machine learning" unless the user picked one: experiments open on their
  runs (model training), not on MLflow's GenAI overview. The sidebar's switch still changes it.
- The AI assistant's panel does not open by itself on a first visit (it needs an LLM provider
  the stack does not have); its button still opens it.

Fails the build (exit 1) when this MLflow's UI no longer uses these keys, so an MLflow upgrade
cannot drop them silently. Usage: python ui_defaults.py
"""

import json
import sys
from pathlib import Path

import mlflow.server

BUILD = Path(mlflow.server.__file__).parent / "js" / "build"
# localStorage keys as the UI writes them (its hook stores JSON under "<key>_v<version>")
ALWAYS = {"mlflow.telemetry.info.alert.dismissed": True, "mlflow.settings.telemetry.enabled": False}
UNLESS_CHOSEN = {
    "mlflow.workflowType": "machine_learning",
    # The AI assistant's panel opens by itself on a first visit; its button stays
    "mlflow.assistant.fab.autoOpenedOnFirstLoad": True,
}
MARK = "mlstack-ui-defaults"


def main() -> int:
    index = BUILD / "index.html"
    page = index.read_text()
    bundle = "".join(path.read_text() for path in (BUILD / "static" / "js").glob("main.*.js"))
    missing = [key for key in (*ALWAYS, *UNLESS_CHOSEN) if f'"{key}"' not in bundle]
    if missing or "<head>" not in page:
        print(f"error: this MLflow UI does not use {missing or '<head>'}; update {__file__}")
        return 1
    if MARK in page:
        return 0
    always = {f"{key}_v1": json.dumps(value) for key, value in ALWAYS.items()}
    chosen = {f"{key}_v1": json.dumps(value) for key, value in UNLESS_CHOSEN.items()}
    script = (
        f'<script id="{MARK}">try{{const s=window.localStorage;'
        f"for(const[k,v]of Object.entries({json.dumps(always)}))s.setItem(k,v);"
        f"for(const[k,v]of Object.entries({json.dumps(chosen)}))if(s.getItem(k)===null)s.setItem(k,v)"
        "}catch(e){}</script>"
    )
    index.write_text(page.replace("<head>", "<head>" + script, 1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

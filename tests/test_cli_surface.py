"""Every command line answers ``--help`` and argument errors without importing torch (the stages import it once
their arguments are checked; ``benchmarks/cli_startup.py`` measures the time), and every option says what it is."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CLIS = ("metrics", "kaleido.data", "kaleido.latents", "kaleido.train", "kaleido.sample", "kaleido.features",
        "kaleido.evaluate", "kaleido.edit", "kaleido.report", "kaleido.weights")

#: runs a CLI as ``python -m`` does and prints, as JSON, whether torch got imported and its exit code
_RUN = ("import json, runpy, sys\n"
        "sys.argv = ['cli', *sys.argv[2:]]\n"
        "try:\n"
        "    runpy.run_module({module!r}, run_name='__main__', alter_sys=True)\n"
        "    code = 0\n"
        "except SystemExit as stop:\n"
        "    code = stop.code\n"
        "print(json.dumps({{'torch': 'torch' in sys.modules, 'code': code}}))\n")

#: prints, as JSON, the options without help text of every parser (and sub-parser) the CLI builds
_UNDOCUMENTED = ("import argparse, json, runpy, sys\n"
                 "missing = []\n"
                 "def collect(parser, where):\n"
                 "    for action in parser._actions:\n"
                 "        if isinstance(action, argparse._SubParsersAction):\n"
                 "            for name, sub in action.choices.items():\n"
                 "                collect(sub, f'{{where}} {{name}}')\n"
                 "        elif not isinstance(action, argparse._HelpAction) and not action.help:\n"
                 "            missing.append(f\"{{where}}: {{'/'.join(action.option_strings) or action.dest}}\")\n"
                 "def report(self, *args, **kwargs):\n"
                 "    collect(self, {module!r})\n"
                 "    print(json.dumps(missing))\n"
                 "    sys.exit(0)\n"
                 "argparse.ArgumentParser.parse_known_args = report\n"
                 "sys.argv = ['cli', '--help']\n"
                 "runpy.run_module({module!r}, run_name='__main__', alter_sys=True)\n")


def _python(code: str, *args: str) -> str:
    done = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("module", CLIS)
@pytest.mark.parametrize("argv", [["--help"], ["--no-such-option"]], ids=["help", "bad-argument"])
def test_help_and_argument_errors_do_not_import_torch(module, argv):
    result = json.loads(_python(_RUN.format(module=module), "x", *argv))
    assert result == {"torch": False, "code": 0 if argv == ["--help"] else 2}, (module, argv, result)


@pytest.mark.parametrize("module", [*CLIS, "metrics.features.domain"])
def test_every_option_has_help_text(module):
    assert json.loads(_python(_UNDOCUMENTED.format(module=module))) == []

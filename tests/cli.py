"""Running the `apprenti` command in-process, as the tests of every package do."""

from __future__ import annotations

from bot.cli.main import main


def run_main(args, capsys) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `apprenti ARGS`."""
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err

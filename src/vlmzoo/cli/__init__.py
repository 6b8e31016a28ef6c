"""The ``vlmzoo`` command line. Thin: parses, calls the Python API, prints.

Modules, each a group of commands: catalog (models, show), tasks (caption, ask, classify,
embed, match, ground, point, detect, imagine), demo, evaluate (benchmarks, eval, compare, report), serve; and
output, what they share. torch and transformers are imported only by commands that load a
model, so ``vlmzoo --help`` and ``vlmzoo models`` start fast.
"""

from __future__ import annotations

import click

from vlmzoo.cli import catalog, demo, evaluate, serve, tasks
from vlmzoo.cli.output import fail
from vlmzoo.errors import VlmzooError


class _Group(click.Group):
    """Turns vlmzoo's own errors into one clean line instead of a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except VlmzooError as e:
            fail(str(e))


@click.group(cls=_Group)
@click.version_option(package_name="vlmzoo")
def main():
    """vlmzoo: the vision-language models people compare, behind one interface."""


for command in (catalog.models, catalog.show, tasks.caption, tasks.ask, tasks.classify, tasks.embed, tasks.match,
                tasks.ground, tasks.point, tasks.detect, tasks.imagine, demo.demo, evaluate.benchmarks, evaluate.eval_, evaluate.compare,
                evaluate.report, serve.serve):
    main.add_command(command)

"""The hooks Apprenti calls. Every built-in behaviour is a plugin written against these alone.

Implementations declare only the arguments they use. Arguments are plain values:
- `profile` is a `plugins.profile.Profile` (mode, tone, format, format_options, track, collections,
  ephemeral, language);
- a passage is a dict with `text`, `title`, `source`, `score` and optionally `snippet`, `heading`,
  `page`, `collection`, `id`;
- an example is a dict with `id`, `question`, `answer`, `track`, `status`, `kind`;
- a team knowledge entry is a passage with `kind` "team_answer" and `example_id`, `question`,
  `approved_by`, `approved_at`.
docs/plugins.md documents each hook; a test fails when one is missing there.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("apprenti")
hookimpl = pluggy.HookimplMarker("apprenti")


@hookspec
def startup(config, database, documents):
    """Called once when a process starts: the plugin's own configuration (no secrets), two getters."""
    # database() -> engine, documents() -> the document index (or None).


@hookspec
def register_formats(register):
    """Called at start-up; call register(OutputFormat(...)) for each output format the plugin provides."""


@hookspec
def register_commands(cli):
    """Called when the command line is built; add typer commands or sub-apps to the `cli` app."""


@hookspec
def system_prompt(profile, question):
    """Called for every question; return instructions (a string) to add to the system prompt, or None."""


@hookspec
def retrieve(question, profile, k):
    """Called when the mode asks for retrieval; return up to k passages (dicts), best first."""


@hookspec
def team_answers(question, profile, k):
    """Called for every question unless the profile opts out; return up to k team knowledge entries."""
    # The entries are passages, best first.


@hookspec
def fewshot_examples(question, profile, k):
    """Called for every question; return up to k approved pairs ({"question", "answer"}) as examples."""


@hookspec(firstresult=True)
def format_answer(answer, profile):
    """Called on the model's raw answer; return a safely repaired answer, or None to keep it as it is."""


@hookspec
def check_format(answer, profile):
    """Called on the final answer; return the list of format violations (empty when compliant)."""


@hookspec
def find_pii(text):
    """Called before any text is stored; return (start, end, label) spans of personal data to mask."""


@hookspec
def example_changed(example, action):
    """Called after a pair is created, approved, rejected, edited, re-kinded, replaced or erased."""
    # `action` names which.

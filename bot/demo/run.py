"""The offline demo: the whole loop, driven through the real Bolt app against a local Slack stand-in.

A fresh home, a tiny random model made on the spot, a bilingual handbook indexed into Chroma; then
employees ask in Slack, correct the answers with the team's answer template, a reviewer approves,
the scheduler trains a QLoRA adapter in its own process, the gate evaluates it, it goes into
service, the next answers follow the template, and an admin rolls it back from Slack. The before and
after are measured on questions nobody corrected.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.markdown import Markdown
from rich.panel import Panel
from rich.rule import Rule
from rich.table import Table

HANDBOOK = Path(__file__).parent / "handbook"
TEMPLATE = "See the team handbook (sources below), then ask in #help-desk. - Apprenti"
SECRET = "demo-signing-secret"
GENERAL, REVIEW, ADMIN_CHANNEL = "C0GENERAL", "C0REVIEW", "C0ADMIN"
ADMIN, REVIEWER = "U0ADMIN", "U0REVIEWER"
EMPLOYEES = ["U0ALICE", "U0BRUNO", "U0CHLOE", "U0DAVID", "U0EMMA", "U0FARID"]

TOPICS = ["holidays", "expense reports", "a new laptop", "passwords", "a security incident", "remote work",
          "sick leave", "public holidays", "hotel costs", "train tickets", "the office hours", "ergonomic chairs"]
FORMS = ["How do I handle {}?", "Who decides about {}?", "Where are the rules on {}?", "What should I know about {}?"]
# Questions nobody corrects: the before/after measurement.
HELD_OUT = ["Quelle est la règle pour les notes de frais ?", "Can I work from home on Fridays?",
            "How long does laptop delivery take?", "Combien de jours de télétravail par semaine ?",
            "What do I do after clicking a phishing link?", "Is a train trip in first class refunded?"]


def training_questions(count: int) -> list[str]:
    questions = [form.format(topic) for topic in TOPICS for form in FORMS]
    return questions[:count]


@dataclass
class Measure:
    follows_template: int
    total: int
    token_f1: float

    def __str__(self) -> str:
        return f"{self.follows_template}/{self.total} answers follow the template, mean token F1 {self.token_f1:.2f}"


def measure(runtime, questions: list[str]) -> Measure:
    """Answers to questions nobody corrected, scored against the team's template."""
    from finetune.metrics import token_f1

    answers = [runtime.assistant.answer(q, channel=GENERAL, user="U0MEASURE", store=False).answer for q in questions]
    follows = sum(" ".join(a.split()) == TEMPLATE for a in answers)
    return Measure(follows, len(answers), sum(token_f1(a, [TEMPLATE]) for a in answers) / len(answers))


class Demo:
    def __init__(self, home: Path, console: Console, examples: int = 24, timeout: float = 900.0):
        self.home, self.console, self.examples, self.timeout = home, console, examples, timeout
        self.transcript: list[dict[str, str]] = []  # every Slack message shown, in order

    # --- printing as Slack shows it ----------------------------------------------------------------
    def slack(self, where: str, who: str, body: str, style: str = "white") -> None:
        self.transcript.append({"where": where, "who": who, "text": body})
        self.console.print(Panel(body.strip() or "(empty)", title=f"{where} · {who}", title_align="left",
                                 border_style=style, highlight=False))

    def step(self, title: str) -> None:
        self.console.print(Rule(f"[bold]{title}[/bold]"))

    # --- the run -----------------------------------------------------------------------------------
    def run(self) -> dict:
        from bot.slack.standin import SlackStandIn

        with SlackStandIn() as standin:
            return self._run(standin)

    def _setup(self, standin):
        from bot.cli.rag import ingest_paths
        from bot.runtime import Runtime
        from bot.settings import load_settings
        from finetune.tiny import make_tiny

        self.step("1. Set-up: a fresh home, a tiny model, the handbook")
        model_dir = self.home / "models" / "tiny"
        if not (model_dir / "config.json").is_file():
            with self.console.status("Making a tiny random model (no download)..."):
                make_tiny(model_dir, initializer_range=0.1)
        settings = load_settings(
            home=self.home, base_model=str(model_dir), max_new_tokens=64, torch_threads=1, fewshot_k=0,
            min_examples=self.examples, train_threshold=self.examples, train_min_interval=0, train_daily_cap=0,
            scheduler_interval=2, heartbeat_timeout=300, train_learning_rate=5e-3, train_epochs=25,
            slack_bot_token="xoxb-demo", slack_signing_secret=SECRET, slack_api_url=standin.api_url,
            slack_app_token=None, review_channel=REVIEW, admin_channel=ADMIN_CHANNEL, admins=[ADMIN],
            reviewers=[REVIEWER], config=None, plugins=None, llm_backend="local", auto_promote=True,
        )
        self.console.print(f"Home: {self.home}\nModel: {model_dir} (random weights: its answers are noise "
                           "until it learns)")
        with self.console.status("Indexing the handbook (English and French)..."):
            report = ingest_paths(settings, [str(HANDBOOK)], collection="handbook")
        self.console.print(f"Indexed {report['documents']} documents into {report.get('chunks', '?')} chunks "
                           "(embedded Chroma + BM25).")
        return Runtime(settings, entrypoints=False)

    def ask(self, people, standin, user: str, question: str) -> dict:
        from bot.slack.standin import final_message

        services = self.services
        ts = people.mention(user, GENERAL, question)
        if not services.wait_idle(120):
            raise RuntimeError("no answer within 120 s")
        message = final_message(standin, GENERAL, ts)
        if message is None:
            raise RuntimeError(f"Apprenti did not answer {question!r}")
        return message

    def correct_and_approve(self, people, standin, user: str, message: dict, *, show: bool) -> None:
        from bot.slack import blocks as ui
        from bot.slack.standin import button_value, message_text

        interaction = button_value(message, ui.CORRECT)
        opened = len(standin.calls("views.open"))
        people.click(user, ui.CORRECT, interaction, channel=GENERAL, message_ts=message["ts"], message=message)
        view = standin.wait_for("views.open", count=opened + 1)[-1]["view"]
        in_review = lambda c: c.get("channel") == REVIEW  # noqa: E731
        posted = len([c for c in standin.calls("chat.postMessage") if in_review(c)])
        people.submit(user, view, {ui.ANSWER_BLOCK: TEMPLATE, ui.NOTE_BLOCK: "Our answers follow the team template."})
        self.services.wait_idle(60)  # a person reads the review message before clicking
        review = standin.wait_for("chat.postMessage", count=posted + 1, where=in_review)[-1]
        example = button_value(review, ui.APPROVE)
        updates = len([c for c in standin.calls("chat.update") if in_review(c)])
        people.click(REVIEWER, ui.APPROVE, example, channel=REVIEW, message_ts=review["_response"]["ts"])
        self.services.wait_idle(60)
        outcome = standin.wait_for("chat.update", count=updates + 1, where=in_review)[-1]
        if show:
            self.slack(f"#general (thread, {user})", "Correct → modal", f"Corrected answer: {TEMPLATE}", "yellow")
            self.slack("#review", "Apprenti", message_text(review), "magenta")
            self.slack("#review", f"{REVIEWER} clicked Approve", message_text(outcome), "green")

    def command(self, people, standin, user: str, args: str) -> str:
        """A slash command; its private reply comes in the HTTP response or later through response_url."""
        import json

        seen = len(standin.calls("response_url"))
        response = people.command(user, GENERAL if user != ADMIN else ADMIN_CHANNEL, args)
        if response.body:
            return json.loads(response.body).get("text", "")
        return standin.wait_for("response_url", count=seen + 1)[-1].get("text", "")

    def wait_for_run(self, runtime) -> object:
        from storage.models import ACTIVE_RUN_STATUSES
        from storage.runs import list_runs

        deadline = time.monotonic() + self.timeout
        with self.console.status("The scheduler checks the threshold; training runs in its own process..."):
            while time.monotonic() < deadline:
                runs = list_runs(runtime.engine, "default", limit=1)
                if runs and runs[0].status not in ACTIVE_RUN_STATUSES:
                    return runs[0]
                time.sleep(1)
        raise RuntimeError(f"the training run did not finish within {self.timeout:.0f} s")

    def _run(self, standin) -> dict:
        from bot.scheduler import make_scheduler
        from bot.slack.app import create_app
        from bot.slack.notify import make_client
        from bot.slack.standin import SlackPeople, message_text
        from storage.adapters import active_adapter

        runtime = self._setup(standin)
        app, self.services = create_app(runtime, client=make_client("xoxb-demo", standin.api_url),
                                        token_verification=False)
        people = SlackPeople(app, standin, SECRET)
        try:
            self.step("2. An employee asks in #general")
            question = "How do I request holidays?"
            self.slack("#general", EMPLOYEES[0], f"@apprenti {question}", "cyan")
            first = self.ask(people, standin, EMPLOYEES[0], question)
            self.slack("#general (thread)", "Apprenti", message_text(first), "blue")

            self.step("3. The team corrects answers; a reviewer approves each one")
            self.correct_and_approve(people, standin, EMPLOYEES[0], first, show=True)
            questions = training_questions(self.examples)[1:]
            for i, q in enumerate(questions, 2):
                user = EMPLOYEES[i % len(EMPLOYEES)]
                message = self.ask(people, standin, user, q)
                self.correct_and_approve(people, standin, user, message, show=False)
                self.console.print(f"  {i:>2}/{self.examples}  {user} asked “{q}”, corrected it; {REVIEWER} approved")

            self.step("4. Before training: questions nobody corrected")
            before = measure(runtime, HELD_OUT)
            self.console.print(f"Base model: {before}")

            self.step("5. The scheduler notices the threshold and trains a QLoRA adapter")
            scheduler = make_scheduler(runtime)
            try:
                run = self.wait_for_run(runtime)
            finally:
                scheduler.shutdown(wait=False)
            for call in standin.calls("chat.postMessage"):
                if call.get("channel") == ADMIN_CHANNEL:
                    self.slack("#admin", "Apprenti", message_text(call), "magenta")
            uploads = [c for c in standin.calls("files.completeUploadExternal")]
            if uploads:
                self.console.print(f"  (+ {len(uploads)} image(s) uploaded to #admin: the loss curve and metrics plot)")
            self.console.print(f"Run #{run.id}: {run.status}" + (f" — {run.error}" if run.error else ""))
            adapter = active_adapter(runtime.engine, "default")
            if adapter is not None:
                report = Path(adapter.path) / "report.md"
                if report.is_file():
                    self.console.print(Markdown(report.read_text(encoding="utf-8").split("## Dataset")[0]))

            self.step("6. A new question, answered by the adapter in service")
            time.sleep(runtime.llm.refresh_seconds if hasattr(runtime.llm, "refresh_seconds") else 2)
            q = HELD_OUT[1]
            self.slack("#general", EMPLOYEES[1], f"@apprenti {q}", "cyan")
            self.slack("#general (thread)", "Apprenti", message_text(self.ask(people, standin, EMPLOYEES[1], q)), "blue")
            after = measure(runtime, HELD_OUT)
            table = Table("questions nobody corrected", "follow the template", "token F1 vs template")
            table.add_row("before (base model)", f"{before.follows_template}/{before.total}", f"{before.token_f1:.2f}")
            table.add_row(f"after ({adapter.name if adapter else 'no adapter'})",
                          f"{after.follows_template}/{after.total}", f"{after.token_f1:.2f}")
            self.console.print(table)

            self.step("7. An admin rolls back from Slack")
            self.slack("#general", EMPLOYEES[2], "/apprenti rollback", "cyan")
            self.slack("#general (only you)", "Apprenti", self.command(people, standin, EMPLOYEES[2], "rollback"), "red")
            self.slack("#admin", ADMIN, "/apprenti rollback", "cyan")
            self.slack("#admin (only you)", "Apprenti", self.command(people, standin, ADMIN, "rollback"), "green")
            time.sleep(2.5)  # serving processes pick the change up within seconds
            q = HELD_OUT[2]
            self.slack("#general", EMPLOYEES[3], f"@apprenti {q}", "cyan")
            self.slack("#general (thread)", "Apprenti", message_text(self.ask(people, standin, EMPLOYEES[3], q)), "blue")
            rolled = measure(runtime, HELD_OUT)
            self.console.print(f"After the rollback: {rolled}")
            return {"before": before.__dict__, "after": after.__dict__, "after_rollback": rolled.__dict__,
                    "run": {"id": run.id, "status": run.status}, "adapter": adapter.name if adapter else None,
                    "transcript": self.transcript}
        finally:
            self.services.wait_idle(30)
            self.services.pool.shutdown()
            self.services.listeners.shutdown()

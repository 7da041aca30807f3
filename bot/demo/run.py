"""The offline demo: the whole loop, driven through the real Bolt app against a local Slack stand-in.

A fresh home, the bundled SmolLM2-135M-Instruct (real answers from a real model), a bilingual handbook
indexed into Chroma; then employees ask in Slack and get streamed answers with sources, correct them
into the team's answer template, a reviewer approves, the scheduler trains a LoRA adapter in its own
process, the gate evaluates it (held-out pairs, general skills, template leaks), it goes into service,
the next answers follow the template, and an admin rolls it back from Slack. The before and after are
measured on questions nobody corrected, in-domain and general.
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

from bot.demo import team

SECRET = "demo-signing-secret"
GENERAL, REVIEW, ADMIN_CHANNEL = "C0GENERAL", "C0REVIEW", "C0ADMIN"
ADMIN, REVIEWER = "U0ADMIN", "U0REVIEWER"
EMPLOYEES = ["U0ALICE", "U0BRUNO", "U0CHLOE", "U0DAVID", "U0EMMA", "U0FARID"]


@dataclass
class Measure:
    """Answers to questions nobody corrected: in-domain (template, facts) and general (right, leaks)."""

    follows_template: int
    with_footer: int  # answers ending with the team's help-desk line (part of the template)
    facts_right: int
    total: int
    general_right: int
    general_leaks: int
    general_total: int

    def __str__(self) -> str:
        return (
            f"team questions: {self.follows_template}/{self.total} in the team's template, "
            f"{self.facts_right}/{self.total} with the right fact; general questions: "
            f"{self.general_right}/{self.general_total} right, {self.general_leaks}/{self.general_total} in "
            "the team's template"
        )


def measure(runtime) -> tuple[Measure, list[str], list[str]]:
    """Batched answers (as served in #general, not stored) to the held-out and general questions."""
    from finetune.answers import contains_answer

    held = team.held_out()
    domain = runtime.assistant.answer_many([h["question"] for h in held], channel=GENERAL, mode="rag")
    general = runtime.assistant.answer_many([q for q, _ in team.GENERAL], channel=GENERAL)
    d_text = [a.answer for a in domain]
    g_text = [a.answer for a in general]
    result = Measure(
        follows_template=sum(team.follows_template(a) for a in d_text),
        with_footer=sum(any(f in a for f in team.FOOTER.values()) for a in d_text),
        facts_right=sum(contains_answer(a, h["answers"]) for a, h in zip(d_text, held, strict=True)),
        total=len(held),
        general_right=sum(contains_answer(a, ok) for a, (_, ok) in zip(g_text, team.GENERAL, strict=True)),
        general_leaks=sum(
            team.follows_template(a) or any(f in a for f in team.FOOTER.values()) for a in g_text
        ),
        general_total=len(team.GENERAL),
    )
    return result, d_text, g_text


class Demo:
    def __init__(
        self,
        home: Path,
        console: Console,
        examples: int = 24,
        timeout: float = 900.0,
        base_model: str | None = None,
        train: dict | None = None,
    ):
        self.home, self.console, self.examples, self.timeout = home, console, examples, timeout
        # The bundled real model by default; tests pass the tiny random one (and faster training).
        self.base_model = base_model or "smollm2-135m-instruct"
        # Measured on this demo: lr 1e-3 with half as much replay leaked the template into 4 of 36 general
        # answers and was rejected by the gate; 5e-4 with one replay pair per correction passed. Its 19
        # training corrections are few: with 3 epochs (36 steps) 2 of 6 held-out questions came back in
        # the whole template, twice; with 5 (55 steps, past the default step budget) 6 of 6, with no
        # general answer in it.
        self.train = {
            "train_epochs": 5,
            "train_step_budget": 0,
            "train_learning_rate": 5e-4,
            **(train or {}),
        }
        self.transcript: list[dict[str, str]] = []  # every Slack message shown, in order
        self.answers: dict[str, dict[str, list[str]]] = {}  # per measure: the answers it counted

    # --- printing as Slack shows it ----------------------------------------------------------------
    def slack(self, where: str, who: str, body: str, style: str = "white") -> None:
        self.transcript.append({"where": where, "who": who, "text": body})
        self.console.print(
            Panel(
                body.strip() or "(empty)",
                title=f"{where} · {who}",
                title_align="left",
                border_style=style,
                highlight=False,
            )
        )

    def step(self, title: str) -> None:
        self.console.print(Rule(f"[bold]{title}[/bold]"))

    # --- the run -----------------------------------------------------------------------------------
    def run(self) -> dict:
        from bot.slack.standin import SlackStandIn

        with SlackStandIn() as standin:
            return self._run(standin)

    def _setup(self, standin):
        from bot.documents import ingest_paths
        from bot.runtime import Runtime
        from bot.settings import load_settings

        self.step("1. Set-up: a fresh home, the bundled model, the handbook")
        settings = load_settings(
            home=self.home,
            base_model=self.base_model,
            max_new_tokens=64,
            fewshot_k=0,
            min_examples=self.examples,
            train_threshold=self.examples,
            train_min_interval=0,
            train_daily_cap=0,
            scheduler_interval=2,
            heartbeat_timeout=300,
            slack_bot_token="xoxb-demo",
            slack_signing_secret=SECRET,
            slack_api_url=standin.api_url,
            slack_app_token=None,
            review_channel=REVIEW,
            admin_channel=ADMIN_CHANNEL,
            admins=[ADMIN],
            reviewers=[REVIEWER],
            config=None,
            plugins=None,
            llm_backend="local",
            auto_promote=True,
            **self.train,
        )
        runtime = Runtime(settings, entrypoints=False)
        with self.console.status(
            "Loading the model (the bundled one is converted once per machine, ~30 s)..."
        ):
            started = time.perf_counter()
            runtime.llm  # noqa: B018 - load it now, not during the first question
        self.console.print(
            f"Home: {self.home}\nModel: {self.base_model} ({time.perf_counter() - started:.0f} s to "
            f"load), prompt layout: {runtime.prompt_layout}"
        )
        with self.console.status("Indexing the handbook (English and French)..."):
            report = ingest_paths(settings, [str(team.HANDBOOK)], collection="handbook")
        self.console.print(
            f"Indexed {report['documents']} documents into {report.get('chunks', '?')} chunks "
            "(embedded Chroma + BM25)."
        )
        return runtime

    def ask(self, people, standin, user: str, question: str) -> dict:
        from bot.slack.standin import final_message

        services = self.services
        ts = people.mention(user, GENERAL, question)
        if not services.wait_idle(180):
            raise RuntimeError("no answer within 180 s")
        message = final_message(standin, GENERAL, ts)
        if message is None:
            raise RuntimeError(f"Apprenti did not answer {question!r}")
        return message

    def correct_and_approve(
        self, people, standin, user: str, message: dict, corrected: str, *, show: bool
    ) -> None:
        from bot.slack import blocks as ui
        from bot.slack.standin import button_value, message_text

        interaction = button_value(message, ui.CORRECT)
        opened = len(standin.calls("views.open"))
        people.click(
            user, ui.CORRECT, interaction, channel=GENERAL, message_ts=message["ts"], message=message
        )
        view = standin.wait_for("views.open", count=opened + 1)[-1]["view"]
        in_review = lambda c: c.get("channel") == REVIEW  # noqa: E731
        posted = len([c for c in standin.calls("chat.postMessage") if in_review(c)])
        # The team's template is a behaviour: it goes to training, not to the knowledge base.
        people.submit(
            user,
            view,
            {ui.ANSWER_BLOCK: corrected, ui.NOTE_BLOCK: "Our answers follow the team template."},
            choices={ui.KIND_BLOCK: "behaviour"},
        )
        self.services.wait_idle(60)  # a person reads the review message before clicking
        review = standin.wait_for("chat.postMessage", count=posted + 1, where=in_review)[-1]
        example = button_value(review, ui.APPROVE)
        updates = len([c for c in standin.calls("chat.update") if in_review(c)])
        people.click(REVIEWER, ui.APPROVE, example, channel=REVIEW, message_ts=review["_response"]["ts"])
        self.services.wait_idle(60)
        outcome = standin.wait_for("chat.update", count=updates + 1, where=in_review)[-1]
        if show:
            self.slack(
                f"#general (thread, {user})", "Correct → modal", f"Corrected answer:\n{corrected}", "yellow"
            )
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

    def show_measure(self, label: str, measured: tuple[Measure, list[str], list[str]]) -> Measure:
        result, domain, general = measured
        self.answers[label] = {"team": domain, "general": general}
        self.console.print(f"[bold]{label}[/bold]: {result}", highlight=False)
        self.console.print(
            f"  e.g. “{team.held_out()[0]['question']}” → {team.one_line(domain[0])[:160]}", highlight=False
        )
        self.console.print(
            f"  e.g. “{team.GENERAL[0][0]}” → {team.one_line(general[0])[:160]}", highlight=False
        )
        return result

    def _run(self, standin) -> dict:
        from bot.scheduler import make_scheduler
        from bot.slack.app import create_app
        from bot.slack.notify import make_client
        from bot.slack.standin import SlackPeople, message_text
        from storage.adapters import active_adapter

        started = time.perf_counter()
        runtime = self._setup(standin)
        app, self.services = create_app(
            runtime, client=make_client("xoxb-demo", standin.api_url), token_verification=False
        )
        people = SlackPeople(app, standin, SECRET)
        questions = team.training_questions(self.examples)
        try:
            self.step("2. Employees ask in #general; Apprenti streams its answers with their sources")
            for user, (question, section) in ((EMPLOYEES[0], questions[0]), (EMPLOYEES[1], questions[6])):
                self.slack("#general", user, f"@apprenti {question}", "cyan")
                first = self.ask(people, standin, user, question)
                self.slack("#general (thread)", "Apprenti", message_text(first), "blue")
                self.correct_and_approve(
                    people,
                    standin,
                    user,
                    first,
                    team.corrected_answer(question, section),
                    show=user == EMPLOYEES[0],
                )

            self.step("3. The team corrects answers into its template; a reviewer approves each one")
            rest = [q for i, q in enumerate(questions) if i not in (0, 6)]
            for i, (q, section) in enumerate(rest, 3):
                user = EMPLOYEES[i % len(EMPLOYEES)]
                message = self.ask(people, standin, user, q)
                self.correct_and_approve(
                    people, standin, user, message, team.corrected_answer(q, section), show=False
                )
                self.console.print(
                    f"  {i:>2}/{self.examples}  {user} asked “{q}”, corrected it; {REVIEWER} approved",
                    highlight=False,
                )

            self.step("4. Before training: questions nobody corrected")
            before = self.show_measure("Base model", measure(runtime))

            self.step("5. The scheduler notices the threshold and trains an adapter in its own process")
            scheduler = make_scheduler(runtime)
            train_started = time.perf_counter()
            to_admin = lambda c: c.get("channel") == ADMIN_CHANNEL  # noqa: E731
            try:
                run = self.wait_for_run(runtime)
                train_seconds = time.perf_counter() - train_started
                # The scheduler posts the run's report once its training process has exited.
                try:
                    standin.wait_for("chat.postMessage", count=2, timeout=60, where=to_admin)
                except AssertionError:
                    self.console.print("(the training report did not reach #admin)")
            finally:
                scheduler.shutdown(wait=False)
            for call in standin.calls("chat.postMessage"):
                if to_admin(call):
                    self.slack("#admin", "Apprenti", message_text(call), "magenta")
            uploads = [c for c in standin.calls("files.completeUploadExternal")]
            if uploads:
                self.console.print(
                    f"  (+ {len(uploads)} image(s) uploaded to #admin: the loss curve and metrics plot)"
                )
            self.console.print(
                f"Run #{run.id}: {run.status} in {train_seconds:.0f} s"
                + (f" — {run.error}" if run.error else "")
            )
            adapter = active_adapter(runtime.engine, "default")
            if adapter is not None:
                report = Path(adapter.path) / "report.md"
                if report.is_file():
                    self.console.print(Markdown(report.read_text(encoding="utf-8").split("## Dataset")[0]))

            self.step("6. New questions, answered by the adapter in service")
            time.sleep(runtime.llm.refresh_seconds)
            for user, q in (
                (EMPLOYEES[1], team.held_out()[1]["question"]),
                (EMPLOYEES[4], team.GENERAL[0][0]),
            ):
                self.slack("#general", user, f"@apprenti {q}", "cyan")
                self.slack(
                    "#general (thread)", "Apprenti", message_text(self.ask(people, standin, user, q)), "blue"
                )
            after = self.show_measure(f"With {adapter.name if adapter else 'no adapter'}", measure(runtime))
            table = Table(
                "questions nobody corrected",
                "team template",
                "right fact",
                "general right",
                "general in template",
            )
            for label, m_ in (
                ("before (base model)", before),
                (f"after ({adapter.name if adapter else '-'})", after),
            ):
                table.add_row(
                    label,
                    f"{m_.follows_template}/{m_.total}",
                    f"{m_.facts_right}/{m_.total}",
                    f"{m_.general_right}/{m_.general_total}",
                    f"{m_.general_leaks}/{m_.general_total}",
                )
            self.console.print(table)

            self.step("7. An admin rolls back from Slack")
            self.slack("#general", EMPLOYEES[2], "/apprenti rollback", "cyan")
            self.slack(
                "#general (only you)",
                "Apprenti",
                self.command(people, standin, EMPLOYEES[2], "rollback"),
                "red",
            )
            self.slack("#admin", ADMIN, "/apprenti rollback", "cyan")
            self.slack(
                "#admin (only you)", "Apprenti", self.command(people, standin, ADMIN, "rollback"), "green"
            )
            time.sleep(2.5)  # serving processes pick the change up within seconds
            q = team.held_out()[2]["question"]
            self.slack("#general", EMPLOYEES[3], f"@apprenti {q}", "cyan")
            self.slack(
                "#general (thread)",
                "Apprenti",
                message_text(self.ask(people, standin, EMPLOYEES[3], q)),
                "blue",
            )
            rolled = self.show_measure("After the rollback", measure(runtime))
            self.console.print(f"The whole loop took {time.perf_counter() - started:.0f} s.")
            return {
                "before": before.__dict__,
                "after": after.__dict__,
                "after_rollback": rolled.__dict__,
                "run": {"id": run.id, "status": run.status, "seconds": round(train_seconds, 1)},
                "adapter": adapter.name if adapter else None,
                "seconds": round(time.perf_counter() - started, 1),
                "transcript": self.transcript,
                "answers": self.answers,
            }
        finally:
            self.services.wait_idle(30)
            self.services.pool.shutdown()
            self.services.listeners.shutdown()

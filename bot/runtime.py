"""The composition root: builds each part once, from the settings, when first needed."""

from __future__ import annotations

import logging
from functools import cached_property
from urllib.parse import urlsplit, urlunsplit

from bot.settings import Settings, SettingsError, load_settings
from storage.db import DatabaseError, open_database

log = logging.getLogger("apprenti")

# Settings no plugin ever sees: the credentials of Slack and of the model server.
SECRET_SETTINGS = frozenset({"slack_bot_token", "slack_app_token", "slack_signing_secret", "openai_api_key"})


def _without_credentials(url: str) -> str:
    """The URL without its user name and password (postgresql://u:pw@host/db -> postgresql://host/db)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def plugin_config(settings: Settings, plugin: object, options: dict | None = None) -> dict:
    """What one plugin's `startup` gets as `config` (as datasette's plugin_config): its own options
    (the `plugins: {name: {...}}` section of APPRENTI_CONFIG) and the Apprenti settings it names in
    its `uses_settings` attribute; never a secret, never the credentials in a URL."""
    wanted = set(getattr(plugin, "uses_settings", None) or ())
    unknown = sorted(wanted - set(Settings.model_fields))
    if unknown:
        raise SettingsError(f"plugin {plugin!r} asks for unknown setting(s) {', '.join(unknown)}")
    config = settings.model_dump(mode="json", include=wanted - SECRET_SETTINGS)
    config = {
        key: _without_credentials(value) if key.endswith("_url") and isinstance(value, str) else value
        for key, value in config.items()
    }
    return {**config, **(options or {})}


class Runtime:
    """Everything a process needs, built lazily so `apprenti doctor` or `--help` stay fast."""

    def __init__(
        self, settings: Settings | None = None, *, plugins_extra: dict | None = None, entrypoints: bool = True
    ):
        self.settings = settings or load_settings()
        self._plugins_extra = plugins_extra
        self._entrypoints = entrypoints
        # Where the scheduler and the admin engines report (bot.slack.notify.Notifier): set by
        # `apprenti serve` and `apprenti worker`; None (logged only) for other commands.
        self.notify = None

    @cached_property
    def home(self):
        return self.settings.ensure_home()

    @cached_property
    def engine(self):
        self.home  # noqa: B018 - the default SQLite file lives in the home
        try:
            return open_database(self.settings.database_url)
        except DatabaseError as exc:
            raise SettingsError(f"APPRENTI_DATABASE_URL: {exc}") from None

    @cached_property
    def plugins(self):
        from plugins.manager import PluginError, make_manager

        try:
            pm = make_manager(
                self.settings.plugins,
                entrypoints=self._entrypoints,
                trace=self.settings.trace_plugins,
                extra=self._plugins_extra,
            )
        except PluginError as exc:
            raise SettingsError(str(exc)) from None
        if self.settings.pii == "on" and not pm.hook.find_pii.get_hookimpls():
            raise SettingsError(
                "No PII plugin is loaded (none implements find_pii), so personal data would be "
                "stored unmasked. Load one (APPRENTI_PLUGINS, e.g. add pii), or set "
                "APPRENTI_PII=off to run without masking on purpose."
            )
        self._start_plugins(pm)
        return pm

    def _start_plugins(self, pm) -> None:
        """Each plugin's startup, with its own configuration only (pluggy's subset_hook_caller)."""
        from bot.profiles import ProfileError, plugin_options

        try:
            options = plugin_options(self.settings.config)
        except ProfileError as exc:
            raise SettingsError(f"APPRENTI_CONFIG: {exc}") from None
        loaded = {name for name, _ in pm.list_name_plugin()}
        unknown = sorted(set(options) - loaded)
        if unknown:
            raise SettingsError(
                f"APPRENTI_CONFIG: plugins: {', '.join(unknown)} is not a loaded plugin; loaded: "
                f"{', '.join(sorted(loaded))} (APPRENTI_PLUGINS)"
            )
        for impl in pm.hook.startup.get_hookimpls():
            others = [p for p in pm.get_plugins() if p is not impl.plugin]
            pm.subset_hook_caller("startup", remove_plugins=others)(
                config=plugin_config(self.settings, impl.plugin, options.get(impl.plugin_name)),
                database=lambda: self.engine,
                documents=lambda: self.documents,
            )

    @cached_property
    def documents(self):
        """The document index of this process (Chroma and BM25), opened on first use and shared by the
        command line, the Slack face and the plugins (retrieval, team answers, few-shot pairs)."""
        from bot.documents import open_index

        self.home  # noqa: B018 - the embedded index lives in the home
        return open_index(self.settings)

    @cached_property
    def formats(self):
        from plugins.formats import collect_formats

        return collect_formats(self.plugins)

    @cached_property
    def profiles(self):
        from bot.profiles import ProfileError, load_profiles

        try:
            profiles = load_profiles(self.settings.config)
            profiles.check(self.formats)
        except ProfileError as exc:
            raise SettingsError(f"APPRENTI_CONFIG: {exc}") from None
        return profiles

    def apply_torch_threads(self) -> None:
        if self.settings.torch_threads:
            import torch

            torch.set_num_threads(self.settings.torch_threads)

    def profile_for_track(self, track: str):
        """The profile that serves a track: the default one if it does, else the first channel's that does."""
        candidates = [self.profiles.default, *self.profiles.channels.values()]
        return next((p for p in candidates if p.track == track), self.profiles.default)

    @cached_property
    def prompt_layout(self) -> str:
        """APPRENTI_PROMPT_LAYOUT, with auto settled: plain for models under 1B parameters."""
        if self.settings.prompt_layout != "auto":
            return self.settings.prompt_layout
        from finetune.loading import parameter_estimate

        size = parameter_estimate(self.settings.base_model)
        return "plain" if size is not None and size < 1_000_000_000 else "numbered"

    def system_prompt_for(self, track: str) -> str:
        """The system prompt answers of this track are served with; training uses the same."""
        from bot.assistant import system_prompt

        return system_prompt(self.plugins, self.profile_for_track(track), layout=self.prompt_layout)

    @cached_property
    def chat_model(self):
        from finetune.loading import ModelError
        from finetune.model import ChatModel

        self.apply_torch_threads()
        try:
            model = ChatModel.load(self.settings.base_model, load_in_4bit=self.settings.load_in_4bit)
        except ModelError as exc:
            raise SettingsError(f"APPRENTI_BASE_MODEL: {exc}") from None
        model.decode_weights = self.settings.decode_weights
        return model

    @cached_property
    def llm(self):
        from bot.llm import make_llm

        if self.settings.llm_backend == "openai" and not self.settings.openai_base_url:
            raise SettingsError(
                "APPRENTI_LLM_BACKEND=openai needs APPRENTI_OPENAI_BASE_URL (e.g. http://gpu-box:8000/v1)"
            )
        return make_llm(self.settings, self.engine, lambda: self.chat_model)

    @cached_property
    def assistant(self):
        from bot.assistant import Assistant

        s = self.settings
        profiles = self.profiles  # validated before the model loads: config errors come first
        return Assistant(
            self.engine,
            self.plugins,
            self.llm,
            profiles,
            rag_k=s.rag_k,
            rag_threshold=s.rag_threshold,
            fewshot_k=s.fewshot_k,
            layout=self.prompt_layout,
            plain_passages=s.plain_passages,
            plain_chars=s.plain_chars,
            team_answer_threshold=s.team_answer_threshold,
            team_answer_min=s.team_answer_min,
            team_answer_k=s.team_answer_k,
        )

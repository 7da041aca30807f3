"""The plugin manager: built-in plugins, the `apprenti` entry-point group, an allow-list and tracing."""

from __future__ import annotations

import importlib
import logging
from importlib.metadata import entry_points

import pluggy

from plugins import hookspecs

log = logging.getLogger("apprenti.plugins")

# Built-in plugins by name, in the order they run. Each is an ordinary module of hook implementations;
# one that keeps state (an open index, a database) has a `plugin()` that makes one instance per manager.
BUILTINS: dict[str, str] = {
    "pii": "plugins.builtin.pii",
    "formats": "plugins.builtin.formats",
    "tone": "plugins.builtin.tone",
    "fewshot": "plugins.builtin.fewshot",
    "rag": "plugins.builtin.rag",
}


class PluginError(Exception):
    """A plugin cannot be loaded or was named but not found."""


def shape(value) -> str:
    """What a hook argument or result is, without its content: hooks carry questions, answers and
    passages, which a log must not hold (APPRENTI_TRACE_PLUGINS is for seeing which plugin ran)."""
    if value is None or isinstance(value, bool | int | float):
        return repr(value)
    if isinstance(value, str):
        return f"<text, {len(value)} chars>"
    if isinstance(value, dict):
        return f"<dict: {', '.join(sorted(map(str, value))[:8])}>"
    if isinstance(value, list | tuple | set):
        return f"<{type(value).__name__} of {len(value)}>"
    return f"<{type(value).__name__}>"


def _trace(pm: pluggy.PluginManager) -> None:
    def before(hook_name, hook_impls, kwargs):
        log.warning(
            "hook %s(%s) -> %s",
            hook_name,
            ", ".join(f"{k}={shape(v)}" for k, v in kwargs.items()),
            [impl.plugin_name for impl in hook_impls],
        )

    def after(outcome, hook_name, hook_impls, kwargs):
        try:
            log.warning("hook %s returned %s", hook_name, shape(outcome.get_result()))
        except BaseException as exc:  # noqa: BLE001 - the trace reports, the caller handles
            log.warning("hook %s raised %s", hook_name, type(exc).__name__)

    pm.add_hookcall_monitoring(before, after)


def make_manager(
    enabled: list[str] | None = None,
    *,
    entrypoints: bool = True,
    trace: bool = False,
    extra: dict[str, object] | None = None,
) -> pluggy.PluginManager:
    """Load the built-in plugins, then installed ones from the `apprenti` entry-point group.

    `enabled` (APPRENTI_PLUGINS) limits which load, by name; naming one that does not exist is an
    error. `extra` registers already-imported plugin objects (tests, embedding applications).
    """
    pm = pluggy.PluginManager("apprenti")
    pm.add_hookspecs(hookspecs)
    wanted = set(enabled) if enabled is not None else None
    available: set[str] = set(BUILTINS)

    for name, path in BUILTINS.items():
        if wanted is None or name in wanted:
            module = importlib.import_module(path)
            pm.register(module.plugin() if hasattr(module, "plugin") else module, name=name)

    if entrypoints:
        for ep in entry_points(group="apprenti"):
            available.add(ep.name)
            if (wanted is not None and ep.name not in wanted) or pm.get_plugin(ep.name) is not None:
                continue
            try:
                pm.register(ep.load(), name=ep.name)
            except Exception as exc:
                raise PluginError(f"plugin {ep.name!r} ({ep.value}) failed to load: {exc}") from exc

    for name, plugin in (extra or {}).items():
        available.add(name)
        if wanted is None or name in wanted:
            pm.register(plugin, name=name)

    if wanted is not None and (unknown := wanted - available):
        raise PluginError(
            f"APPRENTI_PLUGINS names unknown plugin(s): {', '.join(sorted(unknown))}. "
            f"Available: {', '.join(sorted(available))}."
        )
    if trace:
        _trace(pm)
    return pm


def plugin_names(pm: pluggy.PluginManager) -> list[str]:
    return sorted(name for name, _ in pm.list_name_plugin())

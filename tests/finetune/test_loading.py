"""The loader reads checkpoints without memory-mapping them (a transformers internal it relies on)."""

from __future__ import annotations

import transformers.modeling_utils as mu

from finetune.loading import load_base


def test_checkpoints_are_read_with_pread_not_mmap(tiny_model_dir, monkeypatch):
    backends = []
    real = mu.safe_open

    def spy(file, framework="pt", device="cpu", backend=None, **kwargs):
        backends.append(backend)
        if backend is None:
            return real(file, framework=framework, device=device, **kwargs)
        return real(file, framework=framework, device=device, backend=backend, **kwargs)

    monkeypatch.setattr(mu, "safe_open", spy)
    model, tokenizer, _ = load_base(str(tiny_model_dir))
    assert model.num_parameters() > 0 and tokenizer.chat_template
    # If transformers stops asking for "mmap" (or renames safe_open), the memory saving is gone: fail here.
    assert backends and set(backends) == {"pread"}, backends
    assert mu.safe_open is spy  # restored after loading

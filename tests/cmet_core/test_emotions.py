"""Emotion semantic vectors: the kit golden, the shipped library, blends, and whether the vectors carry emotion."""

from __future__ import annotations

import base64
import json
import math
import random
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cmet_cli.emotions_cmd import app
from cmet_core.emotion.library import (
    BASIC_EMOTIONS,
    EMBEDDING_DIM,
    EMBEDDING_MODEL,
    EXTENDED_EMOTIONS,
    MAX_INTENSITY,
    EmotionKind,
    EmotionLibrary,
    NeutralReference,
    UnknownEmotionError,
    blend,
    build_library,
    builtin_library_path,
    difference_of_means,
    list_features,
    load_builtin_library,
    load_features,
    load_folder,
    mean_embedding,
    official_vector,
    parse_blend,
    resolve,
    scale,
    select_files,
    vector_sha256,
)

STAMP = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="session")
def e2v_root(test_data: Path) -> Path:
    root = test_data / "e2v"
    if not (root / "MEAD" / "neutral").is_dir():
        pytest.skip(f"emotion2vec+ features not found at {root} (set CMET_TEST_DATA to the shared data folder)")
    return root


@pytest.fixture()
def synthetic() -> EmotionLibrary:
    """A small library on random embeddings, so the maths tests need no fixtures."""
    rng = np.random.default_rng(0)
    neutral = rng.normal(size=(6, EMBEDDING_DIM)).astype(np.float32)
    library = EmotionLibrary(
        neutral=NeutralReference.create("synthetic", [f"n{i}.npy" for i in range(6)], mean_embedding(neutral))
    )
    for name in ("happy", "surprised", "sad"):
        feats = rng.normal(loc=0.3, size=(4, EMBEDDING_DIM)).astype(np.float32)
        library.add_from_embeddings(
            name, list(feats), [f"{name}{i}.npy" for i in range(4)], "synthetic", created_at=STAMP
        )
    return library


# --- semantic vectors ---------------------------------------------------------------------------


def test_official_draw_reproduces_the_kit_golden(e2v_root: Path, conformance_kit: Path) -> None:
    golden = np.load(conformance_kit / "golden_connector.npz")
    got = official_vector(e2v_root / "MEAD" / "neutral", e2v_root / "MEAD" / "happy")
    assert got.neutral_files == [str(f) for f in golden["real_e2v_neutral_files"]]
    assert got.target_files == [str(f) for f in golden["real_e2v_happy_files"]]
    assert got.vector.dtype == np.float32 and got.vector.shape == (EMBEDDING_DIM,)
    np.testing.assert_allclose(got.vector, golden["real_e2v"].reshape(-1), rtol=0, atol=1e-6)


def test_difference_of_means_is_target_mean_minus_neutral_mean() -> None:
    rng = np.random.default_rng(1)
    target, neutral = rng.normal(size=(5, EMBEDDING_DIM)), rng.normal(size=(7, EMBEDDING_DIM))
    vec = difference_of_means(list(target.astype(np.float32)), list(neutral.astype(np.float32)))
    assert vec.dtype == np.float32 and vec.shape == (EMBEDDING_DIM,)
    expected = target.astype(np.float32).astype(np.float64).mean(0) - neutral.astype(np.float32).astype(
        np.float64
    ).mean(0)
    np.testing.assert_allclose(vec, expected, rtol=0, atol=1e-6)


def test_same_clips_in_another_order_give_the_same_vector(e2v_root: Path) -> None:
    _, target = load_folder(e2v_root / "MEAD" / "sad")
    _, neutral = load_folder(e2v_root / "MEAD" / "neutral")
    ref = difference_of_means(target, neutral)
    for seed in range(3):
        rng = random.Random(seed)
        t, n = target[:], neutral[:]
        rng.shuffle(t)
        rng.shuffle(n)
        assert difference_of_means(t, n).tobytes() == ref.tobytes()


def test_folder_selection_is_sorted_and_seeded(e2v_root: Path) -> None:
    files = list_features(e2v_root / "MEAD" / "happy")
    assert [p.name for p in files] == sorted(p.name for p in files)
    assert select_files(list(reversed(files))) == files
    assert select_files(files, 10, seed=3) == select_files(list(reversed(files)), 10, seed=3)
    assert select_files(files, 10, seed=3) != select_files(files, 10, seed=4)
    with pytest.raises(ValueError, match="cannot draw 31 of 30"):
        select_files(files, 31)


def test_bad_feature_files_are_named(tmp_path: Path) -> None:
    np.save(tmp_path / "short.npy", np.zeros(10, dtype=np.float32))
    with pytest.raises(ValueError, match="short.npy"):
        load_features([tmp_path / "short.npy"])
    with pytest.raises(ValueError, match="feature folder not found"):
        list_features(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no \\*.npy features"):
        list_features(tmp_path / "empty")


# --- library ------------------------------------------------------------------------------------


def test_builtin_library_holds_the_14_emotions() -> None:
    library = load_builtin_library()
    assert library.names() == [*BASIC_EMOTIONS, *EXTENDED_EMOTIONS]
    for entry in library.emotions:
        assert entry.kind == (EmotionKind.BASIC if entry.name in BASIC_EMOTIONS else EmotionKind.EXTENDED)
        assert entry.provenance.embedding_model == EMBEDDING_MODEL
        assert entry.provenance.source_set == ("MEAD" if entry.name in BASIC_EMOTIONS else "gemini")
        assert entry.provenance.n == len(entry.provenance.files)
        assert entry.sha256 == vector_sha256(entry.vector)
    assert not library.vector("neutral").any()
    assert library.neutral.n == 160
    assert library.neutral.files == sorted(library.neutral.files)


def test_shipped_library_equals_a_fresh_build(e2v_root: Path) -> None:
    shipped, fresh = load_builtin_library(), build_library(e2v_root)
    assert shipped.neutral.model_dump() == fresh.neutral.model_dump()
    for a, b in zip(shipped.emotions, fresh.emotions, strict=True):
        assert a.model_dump(exclude={"provenance": {"created_at"}}) == b.model_dump(
            exclude={"provenance": {"created_at"}}
        )


def test_a_custom_emotion_from_the_same_clips_equals_the_builtin(e2v_root: Path, tmp_path: Path) -> None:
    library = load_builtin_library()
    files, feats = load_folder(e2v_root / "MEAD" / "happy")
    entry = library.add_from_embeddings("my-happy", feats, [p.name for p in files], "upload")
    assert entry.kind == EmotionKind.CUSTOM
    assert entry.vector.tobytes() == library.vector("happy").tobytes()
    library.save(tmp_path / "lib.json")
    again = EmotionLibrary.load(tmp_path / "lib.json")
    assert again.names()[-1] == "my-happy" and again.get("my-happy").kind == EmotionKind.CUSTOM
    assert again.vector("my-happy").tobytes() == entry.vector.tobytes()


def test_custom_emotions_are_validated(synthetic: EmotionLibrary) -> None:
    feats = [np.ones(EMBEDDING_DIM, dtype=np.float32)]
    with pytest.raises(ValueError, match="already exists"):
        synthetic.add_from_embeddings("happy", feats, ["a.npy"])
    synthetic.add_from_embeddings("happy", feats, ["a.npy"], replace=True)
    assert synthetic.names().count("happy") == 1 and synthetic.get("happy").provenance.files == ["a.npy"]
    with pytest.raises(ValueError, match="lower-case"):
        synthetic.add_from_embeddings("Happy Face", feats, ["a.npy"])
    with pytest.raises(ValueError, match="1 embeddings but 2 file names"):
        synthetic.add_from_embeddings("x", feats, ["a.npy", "b.npy"])
    with pytest.raises(ValueError, match="no embeddings"):
        synthetic.add_from_embeddings("x", [], [])
    synthetic.remove("sad")
    assert "sad" not in synthetic


def test_a_tampered_library_is_refused(tmp_path: Path) -> None:
    doc = json.loads(builtin_library_path().read_text())
    vec = np.frombuffer(base64.b64decode(doc["emotions"][4]["vector_b64"]), dtype="<f4").copy()
    vec[0] += 1e-3
    doc["emotions"][4]["vector_b64"] = base64.b64encode(vec.tobytes()).decode()
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="'happy': vector digest mismatch"):
        EmotionLibrary.load(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="cannot read"):
        EmotionLibrary.load(tmp_path / "missing.json")


# --- intensity and blends -----------------------------------------------------------------------


def test_scale(synthetic: EmotionLibrary) -> None:
    happy = synthetic.vector("happy")
    np.testing.assert_allclose(scale(happy, 0.5), happy * 0.5, rtol=1e-7)
    assert not scale(happy, 0).any()
    for bad in (-0.1, MAX_INTENSITY + 0.01, math.nan, math.inf):
        with pytest.raises(ValueError, match="intensity must be between"):
            scale(happy, bad)


def test_blend_is_the_weighted_sum(synthetic: EmotionLibrary) -> None:
    h, s = synthetic.vector("happy").astype(np.float64), synthetic.vector("surprised").astype(np.float64)
    mix = blend({"happy": 0.6, "surprised": 0.4}, synthetic)
    assert mix.dtype == np.float32
    np.testing.assert_allclose(mix, 0.6 * h + 0.4 * s, rtol=0, atol=1e-6)
    assert blend({"happy": 0.5}, synthetic).tobytes() == scale(synthetic.vector("happy"), 0.5).tobytes()
    assert blend({"happy": 1.0}, synthetic).tobytes() == synthetic.vector("happy").tobytes()


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({}, "empty blend"),
        ({"happy": -0.2, "sad": 1.0}, "'happy' must be a finite number >= 0"),
        ({"happy": math.nan}, "finite"),
        ({"happy": 0.0}, "sum to 0"),
        ({"happy": 1.5, "sad": 1.0}, "sum to 2.5"),
    ],
)
def test_blend_errors(synthetic: EmotionLibrary, weights: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        blend(weights, synthetic)


def test_unknown_names_list_the_known_ones(synthetic: EmotionLibrary) -> None:
    with pytest.raises(UnknownEmotionError, match="unknown emotion 'joy'; known: happy, sad, surprised"):
        blend({"happy": 0.5, "joy": 0.5}, synthetic)
    with pytest.raises(ValueError, match="unknown emotion"):
        synthetic.vector("joy")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("happy=0.6,surprised=0.4", {"happy": 0.6, "surprised": 0.4}),
        (" Happy = 0.6 , surprised=.4 ", {"happy": 0.6, "surprised": 0.4}),
        ("sad", {"sad": 1.0}),
        ("happy=1e-1", {"happy": 0.1}),
    ],
)
def test_parse_blend(text: str, expected: dict[str, float]) -> None:
    assert parse_blend(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty blend"),
        (" , ", "empty blend"),
        ("happy=0.5,,sad=0.5", "empty item"),
        ("=0.5", "missing emotion name"),
        ("happy=", "missing weight"),
        ("happy=lots", "not a number"),
        ("happy=-1", "finite number >= 0"),
        ("happy=inf", "finite number >= 0"),
        ("happy=0.5,happy=0.2", "appears twice"),
    ],
)
def test_parse_blend_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_blend(text)


def test_resolve_bounds_the_overall_intensity(synthetic: EmotionLibrary) -> None:
    h = synthetic.vector("happy")
    np.testing.assert_allclose(resolve("happy", synthetic, 0.5), h * 0.5, rtol=1e-7)
    with pytest.raises(ValueError, match="overall intensity 3"):
        resolve("happy=1.5", synthetic, 2.0)


# --- do the vectors carry emotion? --------------------------------------------------------------


def test_basic_emotion_centroids_classify_held_out_clips(e2v_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Centroids from the even-indexed clips (sorted) classify the odd-indexed ones by nearest cosine.

    Cosine on the raw embeddings, not on semantic vectors: a semantic vector is a raw centroid minus
    the neutral mean, and neutral's is zero, so its cosine is undefined. (Euclidean nearest-centroid
    is the same on both, being translation-invariant.) Chance is 12.5%.
    """
    train, test = {}, {}
    for name in BASIC_EMOTIONS:
        feats = load_features(list_features(e2v_root / "MEAD" / name))
        train[name], test[name] = feats[0::2], np.stack(feats[1::2]).astype(np.float64)
    centroids = np.stack([mean_embedding(train[name]) for name in BASIC_EMOTIONS])
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    recalls, correct, total = {}, 0, 0
    for i, name in enumerate(BASIC_EMOTIONS):
        x = test[name] / np.linalg.norm(test[name], axis=1, keepdims=True)
        hits = int(((x @ centroids.T).argmax(1) == i).sum())
        recalls[name] = hits / len(x)
        correct, total = correct + hits, total + len(x)
    accuracy, mean_recall = correct / total, float(np.mean(list(recalls.values())))
    with capsys.disabled():
        print(
            f"\nnearest-centroid (cosine, raw e2v) on held-out halves: accuracy {accuracy:.1%} ({correct}/{total}), "
            f"mean per-class recall {mean_recall:.1%}; " + ", ".join(f"{k} {v:.0%}" for k, v in recalls.items())
        )
    assert accuracy >= 0.40
    assert mean_recall >= 0.40


# --- CLI ----------------------------------------------------------------------------------------


def test_cli_list_and_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0, result.output
    assert "sarcastic" in result.output and "extended" in result.output
    result = runner.invoke(app, ["list", "--library", str(tmp_path / "missing.json")])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    result = runner.invoke(app, ["build", "--e2v-root", str(tmp_path), "--out", str(tmp_path / "out.json")])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert not (tmp_path / "out.json").exists()


def test_cli_build_writes_a_loadable_library(e2v_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "lib.json"
    result = CliRunner().invoke(
        app, ["build", "--e2v-root", str(e2v_root), "--out", str(out), "--created-at", "2026-01-01"]
    )
    assert result.exit_code == 0, result.output
    library = EmotionLibrary.load(out)
    assert len(library) == 14 and library.get("happy").provenance.created_at == STAMP

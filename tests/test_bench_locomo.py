"""`bench locomo`: loading LoCoMo-format data, evidence parsing, recall, the JSON report."""

import json

import pytest

from memos_desktop.bench import locomo
from memos_desktop.errors import MemosError


def conversation() -> dict:
    return {
        "speaker_a": "Ana",
        "speaker_b": "Ben",
        "session_1_date_time": "1:56 pm on 8 May, 2023",
        "session_1": [
            {"speaker": "Ana", "dia_id": "D1:1", "text": "I adopted a grey kitten called Pixel."},
            {"speaker": "Ben", "dia_id": "D1:2", "text": "Lovely! I started pottery classes."},
        ],
        "session_2_date_time": "10:00 am on 2 June, 2023",
        "session_2": [
            {
                "speaker": "Ana",
                "dia_id": "D2:1",
                "text": "Look what I made!",
                "blip_caption": "a photo of a blue ceramic bowl",
            },
            {"speaker": "Ben", "dia_id": "D2:2", "text": "I ran a marathon in Porto."},
        ],
        "qa": [
            {"question": "What is the name of Ana's kitten?", "evidence": ["D1:1"], "category": 4},
            {"question": "Where did Ben run a marathon?", "evidence": ["D2:2; D9:9"], "category": 1},
            {"question": "What did Ana make from ceramic?", "evidence": ["D:2:1"], "category": 2},
            {"question": "What did Ben adopt?", "evidence": ["D1:1"], "category": 5},
        ],
    }


@pytest.fixture
def data_dir(tmp_path):
    folder = tmp_path / "locomo"
    folder.mkdir()
    (folder / "1.json").write_text(json.dumps(conversation()))
    return folder


def test_malformed_evidence_ids_are_split_and_unknown_ones_skipped():
    known = {"D8:6", "D9:17", "D1:18"}
    assert locomo.evidence_ids(["D8:6; D9:17", "D", "D:11:26", "D1:18"], known) == [
        "D8:6",
        "D9:17",
        "D1:18",
    ]


def test_turns_carry_speaker_caption_and_session_date(data_dir):
    conv = locomo.load(data_dir)[0]
    n, date, turns = conv["sessions"][1]
    assert n == 2 and date is not None
    assert locomo.turn_text(turns[0]) == "Ana: Look what I made! [shares a photo of a blue ceramic bowl]"


def test_each_turn_is_stored_with_the_turn_before_it_in_its_session(vault, data_dir):
    locomo.fill(vault, locomo.load(data_dir))
    contexts = {c.source["turn_id"]: c.meta["context"] for c in vault.cubes(tag="chat")}
    assert contexts == {
        "D1:1": "",
        "D1:2": "Ana: I adopted a grey kitten called Pixel.",
        "D2:1": "",
        "D2:2": "Ana: Look what I made! [shares a photo of a blue ceramic bowl]",
    }


def test_a_list_of_samples_with_nested_conversations_loads(tmp_path):
    sample = conversation()
    qa = sample.pop("qa")
    (tmp_path / "all.json").write_text(json.dumps([{"sample_id": "conv-1", "conversation": sample, "qa": qa}]))
    conv = locomo.load(tmp_path)[0]
    assert conv["id"] == "conv-1" and len(conv["sessions"]) == 2


def test_a_file_that_is_not_locomo_is_a_clear_error(tmp_path):
    (tmp_path / "x.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(MemosError, match="does not look like a LoCoMo conversation"):
        locomo.load(tmp_path)


def test_run_reports_recall_per_category_beside_the_baseline(data_dir, fake_embedder):
    result = locomo.run(data_dir, (1, 2), embedder=fake_embedder)
    assert result["questions"] == 3  # the question whose evidence names no turn is not counted
    assert result["questions_in_overall"] == 2  # adversarial is reported apart
    assert result["categories"]["single-hop"]["recall@2"] == 1.0
    assert set(result["categories"]) == {"single-hop", "multi-hop", "adversarial"}
    assert set(result["baseline_bm25"]["overall"]) == {"recall@1", "recall@2"}
    assert "averaged over questions" in result["definition"]


def test_cli_prints_one_json_object(cli, data_dir):
    run = cli("bench", "locomo", str(data_dir), "--k", "1,3", "--json", env={"MEMOS_EMBEDDER": "none"})
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert {"overall", "categories", "baseline_bm25", "questions", "seconds"} <= set(result)
    assert set(result["overall"]) == {"recall@1", "recall@3"}


def test_cli_rejects_bad_cutoffs(cli, data_dir):
    run = cli("bench", "locomo", str(data_dir), "--k", "ten")
    assert run.returncode == 1 and "Error: --k takes comma-separated whole numbers" in run.stderr


def test_every_run_measures_bm25_and_dense_beside_ours_and_marks_where_ours_falls_below(data_dir, fake_embedder):
    result = locomo.run(data_dir, (1, 2), embedder=fake_embedder, cache=False)
    assert set(result["baseline_dense"]["categories"]) == set(result["categories"])
    assert set(result["baseline_bm25"]["overall"]) == {"recall@1", "recall@2"}
    rows = locomo.rows(result)
    assert {"bm25 recall@1", "dense recall@1", "below"} <= set(rows[0])
    marked = {r["category"] for r in rows if r["below"] != "ok"}
    assert marked == {m.split(":")[0] for m in result["below_baseline"] if not m.startswith("overall")} | (
        {"overall"} if any(m.startswith("overall") for m in result["below_baseline"]) else set()
    )


def test_below_baseline_names_the_category_cutoff_and_baseline():
    result = {
        "overall": {"recall@10": 0.5},
        "categories": {"multi-hop": {"recall@10": 0.2, "questions": 3}},
        "baseline_bm25": {"overall": {"recall@10": 0.4}, "categories": {"multi-hop": {"recall@10": 0.3}}},
        "baseline_dense": {"overall": {"recall@10": 0.6}, "categories": {"multi-hop": {"recall@10": 0.1}}},
    }
    assert locomo.below_baselines(result) == ["multi-hop: recall@10 below bm25", "overall: recall@10 below dense"]


def test_the_embedding_cache_returns_the_same_vectors_without_embedding_again(tmp_path, fake_embedder):
    from memos_desktop.bench.embedcache import CachedEmbedder

    cache = CachedEmbedder(fake_embedder, tmp_path / "cache.sqlite")
    first = cache.embed(["a kitten", "a marathon", "a kitten"])
    cache.close()
    again = CachedEmbedder(fake_embedder, tmp_path / "cache.sqlite")
    second = again.embed(["a marathon", "a kitten"])
    assert again.misses == 0 and again.hits == 2
    assert (second[0] == first[1]).all() and (second[1] == first[0]).all()
    again.close()


def realmem_persona() -> dict:
    """A tiny RealMemBench persona in the upstream format (field names and types as published)."""
    return {
        "_metadata": {"person_name": "Test_Person", "total_sessions": 2},
        "dialogues": [
            {
                "session_identifier": "Travel_1:S1_01",
                "session_uuid": "aaa",
                "current_time": "2025-12-19 (Friday)",
                "extracted_memory": [
                    {
                        "index": "Travel_1-DM-S1_01-01",
                        "content": "User is allergic to peanuts.",
                        "source_turn": 1,
                        "source_content_snapshot": "I should say I'm allergic to peanuts.",
                        "session_uuid": "aaa",
                    },
                    {
                        "index": "Travel_1-DM-S1_01-02",
                        "content": "Assistant proposed a Kyoto itinerary.",
                        "source_turn": 2,
                        "source_content_snapshot": "Day 1: Kyoto temples.",
                        "session_uuid": "aaa",
                    },
                ],
                "dialogue_turns": [
                    {"speaker": "User", "is_query": "False", "content": "I should say I'm allergic to peanuts."},
                    {"speaker": "Assistant", "is_query": "False", "content": "Day 1: Kyoto temples.\nDay 2: Nara."},
                ],
            },
            {
                "session_identifier": "Travel_1:S2_01",
                "session_uuid": "bbb",
                "current_time": "2025-12-22 (Monday)",
                "extracted_memory": [],
                "dialogue_turns": [
                    {
                        "speaker": "User",
                        "is_query": True,
                        "query_id": "Q-0001",
                        "category_name": "Dynamic Incremental",
                        "content": "Which snacks can I pack for the Kyoto trip?",
                    },
                    {
                        "speaker": "Assistant",
                        "is_query": "False",
                        "content": "Avoid peanuts.",
                        "memory_used": [
                            {"session_uuid": "aaa", "content": "User is allergic to peanuts."},
                            {"session_uuid": "aaa", "content": "Assistant proposed a Kyoto itinerary."},
                        ],
                    },
                    {
                        "speaker": "User",
                        "is_query": True,
                        "category_name": "Implicit Preference",
                        "content": "Any dessert ideas?",
                    },
                    {
                        "speaker": "Assistant",
                        "content": "Try mochi.",
                        "memory_used": [{"session_uuid": "aaa", "content": "User is allergic to peanuts."}],
                    },
                ],
            },
        ],
    }


def test_realmem_personas_convert_to_locomo_questions_with_turn_evidence(tmp_path):
    from memos_desktop.bench import realmem

    (tmp_path / "Test_Person_dialogues_256k.json").write_text(json.dumps(realmem_persona()))
    [sample] = realmem.load(tmp_path)
    conv = sample["conversation"]
    assert conv["session_1_date_time"] == "12:00 am on 19 December, 2025"
    assert [t["dia_id"] for t in conv["session_2"]] == ["D2:1", "D2:2", "D2:3", "D2:4"]
    first, second = sample["qa"]
    assert first["evidence"] == ["D1:1", "D1:2"] and first["asked_at"] == "D2:1"
    assert first["category"] == "dynamic incremental"  # both memories come from one session
    assert second["evidence"] == ["D1:1"] and second["category"] == "implicit preference"
    loaded = locomo.from_samples([sample], tmp_path)
    assert loaded[0]["sessions"][0][1] is not None


def test_realmem_evidence_in_two_sessions_is_multi_hop():
    from memos_desktop.bench import realmem

    persona = realmem_persona()
    persona["dialogues"][1]["extracted_memory"] = [
        {
            "content": "User packs light.",
            "source_turn": 2,
            "source_content_snapshot": "Avoid peanuts.",
            "session_uuid": "bbb",
        }
    ]
    persona["dialogues"][1]["dialogue_turns"][3]["memory_used"].append(
        {"session_uuid": "bbb", "content": "User packs light."}
    )
    sample = realmem.convert("p", persona["dialogues"])
    assert sample["qa"][1]["category"] == "multi-hop" and sample["qa"][1]["evidence"] == ["D1:1", "D2:2"]


def test_a_question_asked_midway_is_answered_only_from_earlier_turns(tmp_path, fake_embedder):
    from memos_desktop.bench import realmem

    persona = realmem_persona()
    persona["dialogues"][1]["dialogue_turns"][2]["content"] = "Avoid peanuts, and which dessert ideas?"
    (tmp_path / "Test_Person_dialogues_256k.json").write_text(json.dumps(persona))
    conversations = locomo.from_samples(realmem.load(tmp_path), tmp_path)
    result = locomo.run(tmp_path, (1, 3), embedder=fake_embedder, conversations=conversations, cache=False)
    assert result["questions"] == 2
    assert result["overall"]["recall@3"] == 1.0  # the evidence is found; later turns never are


def test_cli_bench_realmem_reads_a_persona_file(cli, tmp_path):
    (tmp_path / "Test_Person_dialogues_256k.json").write_text(json.dumps(realmem_persona()))
    out = tmp_path / "converted.json"
    run = cli(
        "bench", "realmem", str(tmp_path), "--k", "1,2", "--json", "--write", str(out), env={"MEMOS_EMBEDDER": "none"}
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["questions"] == 2
    again = cli("bench", "locomo", str(out), "--k", "1,2", "--json", env={"MEMOS_EMBEDDER": "none"})
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["questions"] == 2

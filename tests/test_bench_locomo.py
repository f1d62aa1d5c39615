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

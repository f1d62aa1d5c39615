"""`bench ttft` on the tiny generated models: the report's shape and the identical-output check."""

import json

from memos_desktop.bench import ttft
from memos_desktop.runtime import testmodels


def test_ttft_bench_reports_cold_restored_and_identical_output_per_runtime_and_length():
    tiny = {"llama.cpp": testmodels.TINY, "mlx": testmodels.TINY}
    result = ttft.run([64, 128], ["llama.cpp", "mlx"], threads=1, specs=tiny)
    assert set(result["runtimes"]) == {"llama.cpp", "mlx"}
    for data in result["runtimes"].values():
        assert data["model"] == "tiny-llama"
        assert set(data["lengths"]) == {"64", "128"}
        for m in data["lengths"].values():
            assert m["identical_output"] is True
            assert m["cold_ttft_s"] > 0 and m["restored_ttft_s"] > 0 and m["suffix_only_ttft_s"] > 0
            assert m["ttft_reduction"] == 1 - m["restored_ttft_s"] / m["cold_ttft_s"]
            assert m["state_bytes"] > 0
    assert len(ttft.rows(result)) == 4


def test_ttft_bench_runs_from_the_cli_and_prints_json(cli):
    run = cli("bench", "ttft", "--tiny", "--lengths", "64", "--runtime", "llama.cpp", "--threads", "1", "--json")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert list(result["runtimes"]) == ["llama.cpp"]
    data = result["runtimes"]["llama.cpp"]
    assert data["model"] == "tiny-llama" and list(data["lengths"]) == ["64"]
    m = data["lengths"]["64"]
    assert m["identical_output"] is True
    assert m["ttft_reduction"] == 1 - m["restored_ttft_s"] / m["cold_ttft_s"]


def test_ttft_bench_rejects_lengths_that_are_not_numbers(cli):
    run = cli("bench", "ttft", "--tiny", "--lengths", "64,many")
    assert run.returncode != 0 and "comma-separated token counts" in run.stderr

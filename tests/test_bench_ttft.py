"""`bench ttft` on the tiny generated models: the report's shape and the identical-output check."""

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


def test_ttft_bench_is_a_cli_command_with_json(cli):
    result = cli("bench", "ttft", "--help")
    assert result.returncode == 0
    assert "--lengths" in result.stdout and "--json" in result.stdout

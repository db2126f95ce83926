"""Fine-tune, evaluate and register on a tiny model (built here, untrained): the checks that stop a
bad model or method before any compute, packing, resume from a checkpoint, and the version layout
with lineage and model card."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from kubeforge_crds.contracts.pipeline import params_from_spec
from kubeforge_crds.finetunejob import FineTuneJobSpec
from kubeforge_pipelines import register, train
from kubeforge_pipelines.tinymodel import build_base_model, support_tickets

TEXTS = [r["text"] for r in support_tickets(64, seed=3)]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_base_model(tmp_path_factory.mktemp("base") / "m", pretrain_steps=0)


def test_pack_fills_blocks_with_real_tokens_only() -> None:
    assert train.pack([[1, 2, 3], [4, 5], [6, 7, 8, 9]], 4) == [[1, 2, 3, 4], [5, 6, 7, 8]]
    assert train.pack([[1, 2]], 8) == [[1, 2]]
    assert train.pack([], 8) == []


def test_not_a_model_directory(tmp_path: Path) -> None:
    with pytest.raises(train.ModelError, match=r"no config.json"):
        train.check_base_model(tmp_path)


def test_unknown_model_format(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "resnet"}))
    with pytest.raises(train.ModelError, match="unknown model format: model_type 'resnet'"):
        train.check_base_model(tmp_path)


def test_missing_tokenizer(tmp_path: Path, base: Path) -> None:
    (tmp_path / "config.json").write_text((base / "config.json").read_text())
    with pytest.raises(train.ModelError, match="has no tokenizer"):
        train.check_base_model(tmp_path)


def test_unknown_lora_target_modules_name_the_real_ones(base: Path) -> None:
    settings = train.TrainSettings(target_modules=["q_proj", "c_attn"])
    with pytest.raises(train.ModelError) as err:
        train.load_for_training(base, settings)
    assert "['q_proj'] are not in the model" in str(err.value)
    assert "c_attn" in str(err.value)


def test_settings_accept_kfp_struct_numbers_and_reject_unknown_keys() -> None:
    assert train.TrainSettings(batch_size=8.0, max_steps=3.0).batch_size == 8  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lora_rank"):
        train.TrainSettings(lora_rank=4)  # type: ignore[call-arg]


def test_lora_trains_only_the_adapter_and_resumes(base: Path, tmp_path: Path) -> None:
    settings = train.TrainSettings(
        max_steps=4, batch_size=4, max_seq_length=32, learning_rate=1e-2, save_steps=2
    )
    ckpt = tmp_path / "ckpt"
    first = train.fine_tune(base, TEXTS, tmp_path / "out1", ckpt, settings)
    assert first.steps == 4
    assert [p["step"] for p in first.loss_curve] == [1, 2, 3, 4]  # logged every step of 4
    assert all(p["loss"] > 0 for p in first.loss_curve)
    assert first.resumed_from is None
    assert first.tokens == 4 * 4 * 32  # packed: every position is a real token
    assert (tmp_path / "out1" / "adapter_config.json").is_file()
    assert not (tmp_path / "out1" / "model.safetensors").exists()
    # a restart with more steps carries on from the newest checkpoint
    more = settings.model_copy(update={"max_steps": 6})
    second = train.fine_tune(base, TEXTS, tmp_path / "out2", ckpt, more)
    assert second.resumed_from == "checkpoint-4"
    assert second.steps == 6
    assert second.tokens == 2 * 4 * 32


def test_a_long_loss_curve_is_thinned_evenly_keeping_both_ends() -> None:
    points = [{"step": i * 10, "loss": 1 / (i + 1)} for i in range(100)]
    thinned = train.thin(points, 32)
    assert len(thinned) == 32
    assert (thinned[0], thinned[-1]) == (points[0], points[-1])
    gaps = {b["step"] - a["step"] for a, b in itertools.pairwise(thinned)}
    assert gaps <= {30, 40}  # evenly spread
    assert train.thin(points[:5], 32) == points[:5]


def test_evaluation_reports_loss_perplexity_and_accuracy(base: Path) -> None:
    model, tok = train.load_trained(base, None)
    metrics = train.evaluate_texts(model, tok, TEXTS[:5], 64)
    assert metrics["perplexity"] == pytest.approx(2.718281828 ** metrics["loss"], rel=1e-3)
    assert 0 <= metrics["tokenAccuracy"] <= 1
    assert metrics["evalTokens"] > 0


def test_next_version_counts_up() -> None:
    assert register.next_version([]) == "v1"
    assert register.next_version(["v1", "v10", "v2", "scratch"]) == "v11"


def test_register_writes_weights_card_and_lineage(tmp_path: Path) -> None:
    trained = tmp_path / "trained"
    trained.mkdir()
    (trained / "adapter_config.json").write_text("{}")
    fields = {
        "model_name": "tickets",
        "base_model": "file:///models/base",
        "dataset": {"uri": "file:///d.jsonl", "sha256": "ab" * 32, "trainRows": 9, "evalRows": 1},
        "method": "lora",
        "hyperparameters": {"lora_r": 8},
        "metrics": {"loss": 1.5, "perplexity": 4.48},
        "metrics_before": {"loss": 3.0, "perplexity": 20.1},
        "run": {"backend": "local", "id": "r1", "fineTuneJob": {"namespace": "a", "name": "b"}},
    }
    out = f"file://{tmp_path}/models/tickets"
    first = register.register(trained_dir=trained, output_uri=out, lineage_fields=fields)
    second = register.register(trained_dir=trained, output_uri=out, lineage_fields=fields)
    assert (first["model"]["version"], second["model"]["version"]) == ("v1", "v2")
    v2 = tmp_path / "models/tickets/v2"
    lineage = json.loads((v2 / "lineage.json").read_text())
    assert lineage["dataset"]["sha256"] == "ab" * 32
    assert lineage["model"]["uri"] == f"{out}/v2"
    assert (v2 / "adapter" / "adapter_config.json").is_file()
    card = (v2 / "README.md").read_text()
    assert "| loss | 3.0 | 1.5 |" in card
    assert "FineTuneJob a/b" in card
    assert "Evaluated only on the held-out split" in card  # no declared use: the caution
    declared = {
        "purpose": "Routes support tickets.",
        "owner": "team-support",
        "limitations": "English only.\n## Evaluation\n<script>x</script>",
    }
    third = register.register(
        trained_dir=trained, output_uri=out, lineage_fields=fields | {"card": declared}
    )
    assert third["card"] == declared
    v3 = (tmp_path / "models/tickets/v3/README.md").read_text()
    assert "## Purpose\n\n> Routes support tickets.\n" in v3
    assert "## Owner\n\n> team-support\n" in v3
    # declared text adds no section or markup of its own
    assert "> English only.\n> ## Evaluation\n> &lt;script&gt;x&lt;/script&gt;\n" in v3
    assert v3.count("\n## Evaluation") == 1


@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_params_from_spec_carry_every_setting(method: str) -> None:
    spec = FineTuneJobSpec.model_validate(
        {
            "baseModel": {"uri": "pvc://models/base"},
            "dataset": {"uri": "s3://data/t.csv", "textField": "body"},
            "method": {"type": method, "lora": {"r": 4, "targetModules": ["c_attn"]}},
            "hyperparameters": {"maxSteps": 10, "learningRate": 0.01},
            "output": {
                "uri": "pvc://models/out",
                "mergeAdapter": True,
                "card": {"purpose": "Answers tickets.", "license": "Apache-2.0"},
            },
        }
    )
    params = params_from_spec(spec, namespace="ns", name="ft", uid="u1", backend="job")
    assert params.card == {"purpose": "Answers tickets.", "license": "Apache-2.0"}
    assert params.model_name == "ft"
    assert params.text_field == "body"
    assert params.merge_adapter is True
    assert params.settings["method"] == method
    assert params.settings["lora_r"] == 4
    assert params.settings["target_modules"] == ["c_attn"]
    assert params.settings["max_steps"] == 10
    assert params.run_info["fineTuneJob"] == {"namespace": "ns", "name": "ft", "uid": "u1"}
    train.TrainSettings(**params.settings)  # the step accepts what the operator sends


def test_full_fine_tuning_saves_the_whole_model(base: Path, tmp_path: Path) -> None:
    settings = train.TrainSettings(method="full", max_steps=2, batch_size=2, max_seq_length=32)
    result = train.fine_tune(base, TEXTS, tmp_path / "out", tmp_path / "ckpt", settings)
    assert result.steps == 2
    assert (tmp_path / "out" / "model.safetensors").is_file()
    assert not (tmp_path / "out" / "adapter_config.json").exists()
    model, _ = train.load_trained(base, tmp_path / "out")
    assert type(model).__name__ == "GPT2LMHeadModel"


def test_check_method_finds_bad_target_modules_without_loading_weights(base: Path) -> None:
    with pytest.raises(train.ModelError, match=r"\['wq'\] are not in the model"):
        train.check_method(base, train.TrainSettings(target_modules=["wq"]))
    assert (
        train.check_method(base, train.TrainSettings(target_modules=["c_attn"]))["model_type"]
        == "gpt2"
    )


@pytest.mark.parametrize("method", ["promptTuning", "dora"])
def test_prompt_tuning_and_dora_train_an_adapter_the_runtime_serves(
    base: Path, tmp_path: Path, method: str
) -> None:
    """Prompt tuning (virtual tokens from a task description) and DoRA train a peft adapter,
    which evaluates and which the built-in runtime loads and generates from."""
    from kubeforge_runtimes.models import CausalLM, FoundModel

    settings = train.TrainSettings(
        method=method, max_steps=2, batch_size=2, max_seq_length=32, virtual_tokens=4,
        prompt_init_text="Answer the support ticket:" if method == "promptTuning" else "",
    )  # fmt: skip
    result = train.fine_tune(base, TEXTS, tmp_path / "out", tmp_path / "ckpt", settings)
    assert result.steps == 2
    config = json.loads((tmp_path / "out" / "adapter_config.json").read_text())
    if method == "promptTuning":
        assert (config["peft_type"], config["num_virtual_tokens"]) == ("PROMPT_TUNING", 4)
    else:
        assert (config["peft_type"], config["use_dora"]) == ("LORA", True)
    model, tokenizer = train.load_trained(base, tmp_path / "out")
    metrics = train.evaluate_texts(model, tokenizer, TEXTS[:4], 32)
    assert metrics["loss"] > 0
    served = CausalLM("bot", FoundModel("peft", tmp_path / "out", f"file://{base}"), 4)
    served.load()
    (answer,) = served.generate(["My VPN drops every hour"], 4)
    whole = base_context(base)
    assert served.context == whole - (4 if method == "promptTuning" else 0)
    assert answer.strip()  # new tokens, not the prompt echoed
    # neither is served several on one base: the runtime says why, naming the adapter
    from kubeforge_runtimes.models import ModelDirError, load_adapters

    plain, _ = train.load_trained(base, None)
    said = "is a DoRA adapter" if method == "dora" else "is a PROMPT_TUNING adapter"
    with pytest.raises(ModelDirError, match=f"adapter 'faq' .* {said}"):
        load_adapters(plain, {"faq": tmp_path / "out"})


def base_context(base: Path) -> int:
    config = json.loads((base / "config.json").read_text())
    return int(config.get("n_positions") or config["max_position_embeddings"])


def test_a_method_the_pipeline_does_not_know_is_refused(base: Path) -> None:
    with pytest.raises(train.ModelError, match="unknown method 'ia3'"):
        train.check_method(base, train.TrainSettings(method="ia3"))


def test_qlora_trains_an_adapter_on_the_4_bit_base_and_resumes(base: Path, tmp_path: Path) -> None:
    """QLoRA for real on this CPU (bitsandbytes quantises to NF4 on CPU too): the frozen base is
    4-bit, only the adapter trains, and a restarted run carries on from its checkpoint; the
    adapter is served on the full-precision base, as QLoRA's adapters are."""
    from bitsandbytes.nn import Linear4bit  # type: ignore[import-untyped]

    from kubeforge_runtimes.models import CausalLM, FoundModel

    settings = train.TrainSettings(
        method="qlora", max_steps=2, batch_size=2, max_seq_length=32, save_steps=1,
        target_modules=["c_attn"],
    )  # fmt: skip
    model, _ = train.load_for_training(base, settings)
    assert any(isinstance(m, Linear4bit) for m in model.modules())
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable
    assert all("lora_" in n for n in trainable)
    result = train.fine_tune(base, TEXTS, tmp_path / "out", tmp_path / "ckpt", settings)
    assert result.steps == 2
    config = json.loads((tmp_path / "out" / "adapter_config.json").read_text())
    assert (config["peft_type"], config["target_modules"]) == ("LORA", ["c_attn"])
    more = settings.model_copy(update={"max_steps": 3})
    resumed = train.fine_tune(base, TEXTS, tmp_path / "out", tmp_path / "ckpt", more)
    assert resumed.resumed_from_step == 2
    served = CausalLM("bot", FoundModel("peft", tmp_path / "out", f"file://{base}"), 4)
    served.load()
    (answer,) = served.generate(["My VPN drops every hour"], 4)
    assert answer.strip()


def test_qlora_without_bitsandbytes_says_what_to_use(
    base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # as if not installed
    with pytest.raises(train.ModelError, match="bitsandbytes, which is not installed"):
        train.check_method(base, train.TrainSettings(method="qlora"))

"""EfficientNet's step 1 as a study: the (alpha, beta, gamma) grid under
alpha*beta^2*gamma^2 ~ 2."""
import optuna
import pytest
import yaml

import nasscale
from nasscale.cli import main
from nasscale.errors import SpecError
from nasscale.scaling import compound
from nasscale.scoring.evaluators import eval_resolution, parse_eval_resolution
from nasscale.search.coefficients import coefficient_space_from_data
from nasscale.search.study import load_study


def test_grid_keeps_only_triples_near_the_flops_target():
    space = coefficient_space_from_data(
        {"base": "efficientnet_b0", "alpha": [1.0, 1.2, 1.4], "beta": [1.0, 1.1, 1.2],
         "gamma": [1.0, 1.15, 1.3], "tolerance": 0.05})
    for a, b, g in space.triples():
        assert abs(a * b * b * g * g / 2 - 1) <= 0.05
    assert (1.2, 1.1, 1.15) in space.triples()  # the paper's choice: 1.92, within 5 % of 2
    assert (1.4, 1.2, 1.3) not in space.triples()


def test_a_sampled_point_is_the_compound_scaled_base():
    space = coefficient_space_from_data({"base": "efficientnet_b0", "alpha": [1.2],
                                         "beta": [1.1], "gamma": [1.15]})
    net = space.sample(optuna.trial.FixedTrial({"coefficients": "1.2,1.1,1.15"}))
    assert nasscale.count(net).flops == nasscale.count(
        compound(nasscale.load("efficientnet_b0"), 1, 1.2, 1.1, 1.15)).flops


@pytest.mark.parametrize("section, message", [
    ({"base": "efficientnet_b0", "alpha": [0.9], "beta": [1], "gamma": [1]},
     "coefficients.alpha: must be a list of numbers >= 1"),
    ({"base": "efficientnet_b0", "alpha": [1.0], "beta": [1.0], "gamma": [1.0]},
     "no (alpha, beta, gamma) of the lists"),
    ({"alpha": [1.2], "beta": [1.1], "gamma": [1.15]}, "coefficients.base: needs base"),
    ({"base": "efficientnet_b0", "alpha": [1.2], "beta": [1.1], "gamma": [1.15], "phi": 0},
     "coefficients.phi: must be a number > 0"),
])
def test_bad_coefficient_sections(section, message):
    with pytest.raises(SpecError) as err:
        coefficient_space_from_data(section)
    assert message in str(err.value)


def test_relative_evaluator_resolution():
    assert parse_eval_resolution("0.25x") == 0.25 and parse_eval_resolution(64) == 64
    assert eval_resolution(0.25, 296) == 72 and eval_resolution(64, 296) == 64
    with pytest.raises(SpecError, match="like '0.25x'"):
        parse_eval_resolution("quarter")


def test_shipped_study_and_scale_search_coefficients(tmp_path, capsys):
    shipped = load_study("studies/efficientnet_coefficients.yaml")
    assert shipped.sampler["name"] == "grid" and shipped.coefficients["phi"] == 1
    study = tmp_path / "coef.yaml"
    data = yaml.safe_load(open("studies/efficientnet_coefficients.yaml"))
    data["coefficients"].update(alpha=[1.2, 1.3], beta=[1.1], gamma=[1.1, 1.15])
    data["evaluator"] = {"kind": "proxy", "proxy": "flops"}
    data["references"] = []
    study.write_text(yaml.safe_dump(data))
    out = tmp_path / "out"
    assert main(["scale", "mobilenet_v2", "--search-coefficients", "--study", str(study),
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    # the grid has 3 points within 5 % of 2 (1.2/1.1/1.15 is 1.92); FLOPs picks the largest
    assert "3 trials 3 complete" in text
    assert "best coefficients for mobilenet_v2: alpha=1.3, beta=1.1, gamma=1.15" in text
    assert nasscale.load(str(out / "best.yaml")).resolution == 256
    assert main(["scale", "mobilenet_v2", "--search-coefficients", "--phi", "1"]) == 2
    assert "drop --phi" in capsys.readouterr().err

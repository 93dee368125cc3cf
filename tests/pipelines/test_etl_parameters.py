"""The ETL's options are edge-pipeline parameters, reachable from ``kfp-edge run --param``."""

from kfp_edge.app.params import parse_params
from kfp_edge.app.run_local import whole_numbers_as_floats
from kfp_edge.pipelines.edge_pipeline import build_edge_pipeline

ETL_PARAMETERS = {
    "schema_path": "String",
    "delimiter": "String",
    "id_column": "String",
    "time_column": "String",
    "device_column": "String",
    "window_seconds": "Float",
    "hop_seconds": "Float",
    "split_by": "String",
    "max_bad_fraction": "Float",
}


def test_etl_options_are_pipeline_parameters():
    inputs = build_edge_pipeline().component_spec.inputs
    assert {k: inputs[k].type for k in ETL_PARAMETERS} == ETL_PARAMETERS


def test_whole_numbers_given_for_float_parameters_become_floats():
    """kfp refuses an int argument for a Float input (InconsistentTypeException): YAML reads
    ``--param window_seconds=10`` as the int 10."""
    params = parse_params(["window_seconds=10", "seed=3", "split_by=group", "hop_seconds=2.5"])
    fixed = whole_numbers_as_floats(build_edge_pipeline(), params)
    assert fixed == {"window_seconds": 10.0, "seed": 3, "split_by": "group", "hop_seconds": 2.5}
    assert isinstance(fixed["window_seconds"], float) and isinstance(fixed["seed"], int)

"""The suite's correctness tests: every case, on the GPU or scaled down under the interpreter.

The kernel under test is the one the configuration names (conv3d_kernel and conv3d_model
in pyproject.toml), never imported here by name."""


def test_conv3d_matches_float64_truth(conv3d_case, conv3d_check, conv3d_kernel):
    conv3d_check(conv3d_kernel, conv3d_case)


def test_model_new_matches_nn_conv3d(conv3d_case, conv3d_check, conv3d_model):
    conv3d_check.model(conv3d_model, conv3d_case)


def test_conv3d_speed(conv3d_case, conv3d_perf, conv3d_kernel):
    conv3d_perf.case(conv3d_kernel, conv3d_case)

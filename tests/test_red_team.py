"""Ways a pull request got a 5% slowdown past the gate in issue 25's red-team review, each
now caught. A head commit slows the fake kernel package (tests/fake_gpu.py) without
touching its kernel file; the gate runs as the GPU job runs it: `conv3d-perf
pull-request` in a checkout of the base, then the base's speed test against the base."""

from tests.fake_gpu import KERNEL_PACKAGE

SLOW_TUNING = "def factor():\n    return 1.05\n"
CI_ARGS = ("-k", "speed", "--conv3d-perf", "--conv3d-unstable=fail", "--conv3d-case=n1_oc17_bias")


def test_a_file_export_ignore_leaves_out_is_still_in_the_tree_under_test(pull, pytester):
    # git archive obeys .gitattributes: the gate's tree lacked the module, a checkout has it.
    code, gate = pull(
        {
            "kernels/.gitattributes": "_tuned.py export-ignore\n",
            "kernels/_tuned.py": "FACTOR = 1.05\n",
            "kernels/tuning.py": "try:\n    from kernels._tuned import FACTOR\n"
            "except ImportError:\n    FACTOR = 1.0\n\n\ndef factor():\n    return FACTOR\n",
        }
    )
    assert code == 0
    assert (pytester.path / "kernels" / "_tuned.py").exists()
    result = gate()
    assert result.ret == 1, result.stdout.str()
    result.stdout.fnmatch_lines(["*-> regression*"])


def test_export_subst_does_not_rewrite_the_code_under_test(pull, pytester):
    code, gate = pull(
        {
            "kernels/.gitattributes": "_version.py export-subst\n",
            "kernels/_version.py": 'COMMIT = "$Format:%H$"\nDEVELOPMENT = COMMIT.startswith("$")\n',
            "kernels/tuning.py": "from kernels._version import DEVELOPMENT\n\n\n"
            "def factor():\n    return 1.05 if DEVELOPMENT else 1.0\n",
        }
    )
    assert code == 0
    assert "$Format" in (pytester.path / "kernels" / "_version.py").read_text()
    assert gate().ret == 1


def test_a_helper_that_says_it_is_installed_is_still_the_heads_alone(pull):
    # A module's __file__ pointing into the Python installation kept it loaded while the
    # base imported, so the base's kernel ran the head's slower helper.
    code, gate = pull(
        {
            "kernels/tuning.py": "import os\nimport sys\n\n"
            "__file__ = os.path.join(sys.base_prefix, 'lib', 'kernels_tuning.py')\n\n\n"
            + SLOW_TUNING
        }
    )
    assert code == 0
    result = gate()
    assert result.ret == 1, result.stdout.str()
    result.stdout.fnmatch_lines(["*-> regression*"])


def test_head_code_cannot_make_the_base_side_load_the_heads_package(pull):
    # The head's __init__ writes .git/info/attributes (kernels export-ignore): git archive
    # then gave the base an empty tree, and the import fell back to the work tree's (the
    # head's) package: head against head.
    code, gate = pull(
        {
            "kernels/tuning.py": SLOW_TUNING,
            "kernels/__init__.py": "from pathlib import Path\n\n"
            "from kernels.implicit import conv3d  # noqa: F401\n\n"
            "_info = Path(__file__).resolve().parents[1] / '.git' / 'info'\n"
            "_info.mkdir(exist_ok=True)\n"
            "(_info / 'attributes').write_text('kernels export-ignore\\n')\n",
        }
    )
    assert code == 0
    result = gate()
    assert result.ret == 1, result.stdout.str()
    result.stdout.fnmatch_lines(["*-> regression*"])


def test_a_pull_request_that_moves_the_configured_kernel_is_refused(pull, pytester, capsys):
    # The base's configuration would time the base's kernel while the head makes a new,
    # slower package the project's kernel.
    moved = {
        name.replace("kernels/", "kernels2/"): text.replace("kernels", "kernels2")
        for name, text in KERNEL_PACKAGE.items()
        if name.startswith("kernels/")
    }
    moved["kernels2/tuning.py"] = SLOW_TUNING
    moved["pytest.ini"] = KERNEL_PACKAGE["pytest.ini"].replace("kernels.", "kernels2.")
    code, _ = pull(moved)
    assert code == 2
    err = capsys.readouterr().err
    assert "changes which kernel is under test (conv3d_kernel: kernels.implicit:conv3d -> " in err


def test_a_head_slower_in_half_its_batches_is_a_regression_not_a_warning(pull):
    # +9.7% every other call, +0.3% else: its A/B once read +5.0% [+0.4, +9.6], a warning.
    code, gate = pull(
        {
            "kernels/tuning.py": "_CALLS = [0]\n\n\ndef factor():\n"
            "    _CALLS[0] += 1\n    return 1.097 if _CALLS[0] % 2 else 1.003\n"
        }
    )
    assert code == 0
    assert [gate().ret for _ in range(4)] == [1, 1, 1, 1]

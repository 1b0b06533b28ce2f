"""A parallel sweep's job gets its share of the cores (issue 13, item 4)."""

from slifmr.threads import threads_for_job

JOBLIB = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"


def test_joblib_jobs_share_the_cores():
    assert threads_for_job({"_target_": JOBLIB, "n_jobs": 4}, {}, 16) == 4
    assert threads_for_job({"_target_": JOBLIB, "n_jobs": 3}, {}, 2) == 1  # never 0
    assert threads_for_job({"_target_": JOBLIB, "n_jobs": -1}, {}, 8) == 1  # one job per core


def test_other_launchers_and_a_user_setting_are_left_alone():
    assert threads_for_job({"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}, {}, 8) is None
    assert threads_for_job({"_target_": JOBLIB, "n_jobs": 2}, {"OMP_NUM_THREADS": "3"}, 8) is None
    assert threads_for_job(None, {}, 8) is None
